"""Calls to hosted LLM APIs from real kernels: the real OpenAI, Anthropic and LiteLLM
SDKs pointed at a stand-in API on 127.0.0.1, captured per cell, estimated with EcoLogits
(checked against its own function for the same inputs), recorded in the ledger, and
removed on unload."""

import json
import sqlite3

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")
pytest.importorskip("ecologits")

from ecologits.tracers.utils import llm_impacts  # noqa: E402

from carbon_magic import ledger as ledger_module  # noqa: E402

from .fake_llm_api import FakeLLMServer  # noqa: E402
from .kernels import Kernel  # noqa: E402

pytestmark = pytest.mark.kernel

ASK = 'messages=[{"role": "user", "content": "hi"}]'


@pytest.fixture
def api():
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def ledger_path(tmp_path):
    return str(tmp_path / "ledger.sqlite3")


@pytest.fixture
def kernel(ledger_path, tmp_path):
    # LiteLLM fetches a price list at import unless told to use its own copy.
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "CARBON_MAGIC_INTERVAL": "0.5"}
    k = Kernel(ledger_path, env)
    yield k
    k.shutdown()


def ok(kernel, code):
    run = kernel.execute(code)
    assert run.reply["content"]["status"] == "ok", run.text
    return run


def calls_of(ledger_path):
    """{first source line: [call rows in order]} from the ledger."""
    conn = sqlite3.connect(ledger_path)
    conn.row_factory = sqlite3.Row
    rows = conn.execute(
        "SELECT c.source, r.* FROM cell_remote_calls r JOIN cells c ON c.id = r.cell_ref "
        "ORDER BY r.cell_ref, r.seq"
    ).fetchall()
    conn.close()
    found = {}
    for row in rows:
        found.setdefault(row["source"], []).append(dict(row))
    return found


def assert_ecologits_estimate(call, provider, model):
    """The stored estimate is EcoLogits' own for the stored tokens and latency."""
    impacts = llm_impacts(provider, model, call["output_tokens"], call["latency_s"])
    energy = impacts.usage.energy.value
    gwp = impacts.usage.gwp.value
    assert call["energy_low_kwh"] == pytest.approx(energy.min, rel=1e-9)
    assert call["energy_high_kwh"] == pytest.approx(energy.max, rel=1e-9)
    assert call["emissions_low_g"] == pytest.approx(gwp.min * 1000, rel=1e-9)
    assert call["emissions_high_g"] == pytest.approx(gwp.max * 1000, rel=1e-9)
    assert call["water_low_l"] == pytest.approx(impacts.usage.wcf.value.min, rel=1e-9)
    assert call["embodied_high_g"] == pytest.approx(impacts.embodied.gwp.value.max * 1000)
    assert call["method"].startswith("estimated (EcoLogits ")


def test_openai_calls_are_captured_per_cell_and_estimated(kernel, api, ledger_path):
    ok(kernel, "import openai\n%load_ext carbon_magic")
    ok(
        kernel,
        f"client = openai.OpenAI(base_url={api.url + '/v1'!r}, api_key='x', max_retries=0)\n"
        f"aclient = openai.AsyncOpenAI(base_url={api.url + '/v1'!r}, api_key='x', max_retries=0)",
    )
    one = ok(
        kernel,
        f"r = client.chat.completions.create(model='gpt-4o-mini', {ASK}, max_tokens=5)\n"
        "type(r) is openai.types.chat.ChatCompletion, r.usage.completion_tokens, hasattr(r, 'impacts')",
    )
    assert one.result == "(True, 5, False)"  # the SDK's own answer, untouched
    ok(kernel, f"for i in range(20): client.chat.completions.create(model='gpt-4o-mini', {ASK})")
    stream = ok(
        kernel,
        f"s = client.chat.completions.create(model='gpt-4o-mini', {ASK}, max_tokens=6, "
        "stream=True, stream_options={'include_usage': True})\n"
        "type(s) is openai.Stream, ''.join(c.choices[0].delta.content or '' for c in s if c.choices)",
    )
    assert stream.result == "(True, 'tok0 tok1 tok2 tok3 tok4 tok5 ')"
    ok(
        kernel,
        f"half = client.chat.completions.create(model='gpt-4o-mini', {ASK}, max_tokens=30, "
        "stream=True)\nfor n, chunk in enumerate(half):\n    if n == 4: break",
    )
    ok(
        kernel,
        "import asyncio\n"
        f"rs = await asyncio.gather(*[aclient.chat.completions.create(model='gpt-4o-mini', {ASK}, "
        "max_tokens=3) for _ in range(3)])",
    )
    ok(
        kernel,
        "resp = client.responses.create(model='gpt-4o-mini', input='hi', max_output_tokens=4)\n"
        "events = list(client.responses.create(model='gpt-4o-mini', input='hi', stream=True))",
    )
    failed = kernel.execute(f"client.chat.completions.create(model='error-500', {ASK})")
    assert failed.error["ename"] == "InternalServerError"  # raised as the SDK raises it
    unknown = ok(kernel, f"client.chat.completions.create(model='my-own-model', {ASK});")
    assert "EcoLogits" not in unknown.text  # its log lines stay out of the cell

    calls = calls_of(ledger_path)
    [single] = calls[
        "r = client.chat.completions.create(model='gpt-4o-mini', " + ASK + ", max_tokens=5)"
    ]
    assert (single["sdk"], single["api"], single["provider"], single["model"]) == (
        "openai",
        "chat.completions",
        "openai",
        "gpt-4o-mini",
    )
    assert single["output_tokens"] == 5 and single["status"] == "ok" and not single["streamed"]
    assert 0 < single["latency_s"] < 5
    assert_ecologits_estimate(single, "openai", "gpt-4o-mini")

    many = calls[
        "for i in range(20): client.chat.completions.create(model='gpt-4o-mini', " + ASK + ")"
    ]
    assert len(many) == 20 and {c["output_tokens"] for c in many} == {7}
    [streamed] = next(v for k, v in calls.items() if k.startswith("s = client"))
    assert streamed["streamed"] and streamed["output_tokens"] == 6 and streamed["status"] == "ok"
    assert_ecologits_estimate(streamed, "openai", "gpt-4o-mini")
    [abandoned] = next(v for k, v in calls.items() if k.startswith("half = "))
    # Chunks 0 to 4 were read: the role chunk and four content chunks.
    assert abandoned["status"] == "abandoned" and abandoned["output_tokens"] == 4
    assert abandoned["energy_low_kwh"] > 0  # estimated on the tokens seen
    gathered = next(v for k, v in calls.items() if k == "import asyncio")
    assert [c["output_tokens"] for c in gathered] == [3, 3, 3]
    responses = next(v for k, v in calls.items() if k.startswith("resp = "))
    assert [(c["api"], c["streamed"], c["output_tokens"]) for c in responses] == [
        ("responses", 0, 4),
        ("responses", 1, 7),
    ]
    [error] = next(v for k, v in calls.items() if "error-500" in k)
    assert error["status"] == "error" and error["error"] == "InternalServerError"
    assert error["energy_low_kwh"] is None and "failed" in error["note"]
    [mystery] = next(v for k, v in calls.items() if "my-own-model" in k)
    assert mystery["output_tokens"] == 7 and mystery["energy_low_kwh"] is None
    assert mystery["emissions_low_g"] is None and mystery["note"] == "model unknown to EcoLogits"

    by_source = {row["source"]: row for row in ledger_module.read_cells(ledger_path)}
    row = by_source[
        "for i in range(20): client.chat.completions.create(model='gpt-4o-mini', " + ASK + ")"
    ]
    assert row["remote_calls"] == 20 and row["remote_unestimated"] == 0
    assert row["remote_emissions_low_g"] == pytest.approx(sum(c["emissions_low_g"] for c in many))
    assert (
        row["remote_emissions_low_g"] < row["remote_emissions_g"] < row["remote_emissions_high_g"]
    )
    unknown_row = next(r for k, r in by_source.items() if k and "my-own-model" in k)
    assert unknown_row["remote_calls"] == 1 and unknown_row["remote_unestimated"] == 1
    assert unknown_row["remote_emissions_g"] is None  # not an estimate of zero
    quiet = by_source[
        "client = openai.OpenAI(base_url=" + repr(api.url + "/v1") + ", api_key='x', max_retries=0)"
    ]
    assert "remote_calls" not in quiet  # a cell without calls has no remote part


def test_anthropic_sync_streamed_and_async_messages(kernel, api, ledger_path):
    ok(kernel, "%load_ext carbon_magic\nimport anthropic")
    ok(
        kernel,
        f"client = anthropic.Anthropic(base_url={api.url!r}, api_key='x', max_retries=0)\n"
        f"aclient = anthropic.AsyncAnthropic(base_url={api.url!r}, api_key='x', max_retries=0)",
    )
    model = "claude-haiku-4-5-20251001"
    ok(kernel, f"m = client.messages.create(model={model!r}, max_tokens=9, {ASK})")
    streamed = ok(
        kernel,
        f"s = client.messages.create(model={model!r}, max_tokens=4, {ASK}, stream=True)\n"
        "type(s) is anthropic.Stream, [e.type for e in s][-1]",
    )
    assert streamed.result == "(True, 'message_stop')"
    ok(
        kernel,
        f"a = await aclient.messages.create(model={model!r}, max_tokens=5, {ASK}, stream=True)\n"
        "seen = [e async for e in a]",
    )
    calls = calls_of(ledger_path)
    [whole] = next(v for k, v in calls.items() if k.startswith("m = "))
    [stream] = next(v for k, v in calls.items() if k.startswith("s = "))
    [async_stream] = next(v for k, v in calls.items() if k.startswith("a = "))
    assert (whole["output_tokens"], stream["output_tokens"], async_stream["output_tokens"]) == (
        9,
        4,
        5,
    )
    for call in (whole, stream, async_stream):
        assert call["sdk"] == "anthropic" and call["status"] == "ok"
        assert_ecologits_estimate(call, "anthropic", model)


def test_litellm_calls_are_counted_once(kernel, api, ledger_path):
    ok(kernel, "%load_ext carbon_magic\nimport litellm")
    base = api.url + "/v1"
    ok(
        kernel,
        f"r = litellm.completion(model='openai/gpt-4o-mini', api_base={base!r}, api_key='x', "
        f"{ASK}, max_tokens=6)",
    )
    ok(
        kernel,
        f"s = litellm.completion(model='openai/gpt-4o-mini', api_base={base!r}, api_key='x', "
        f"{ASK}, max_tokens=3, stream=True)\nparts = [c for c in s]",
    )
    ok(
        kernel,
        f"a = await litellm.acompletion(model='openai/gpt-4o-mini', api_base={base!r}, "
        f"api_key='x', {ASK}, max_tokens=2)",
    )
    calls = calls_of(ledger_path)
    [whole] = next(v for k, v in calls.items() if k.startswith("r = "))
    [stream] = next(v for k, v in calls.items() if k.startswith("s = "))
    [awaited] = next(v for k, v in calls.items() if k.startswith("a = "))
    # One record per litellm call: the OpenAI SDK call LiteLLM makes inside is not another.
    assert (whole["sdk"], whole["output_tokens"], whole["provider"]) == ("litellm", 6, "openai")
    assert_ecologits_estimate(whole, "openai", whole["model"])
    assert stream["streamed"] and stream["output_tokens"] == 3 and stream["status"] == "ok"
    assert awaited["output_tokens"] == 2


def test_unload_restores_the_sdks_exactly(kernel, api, ledger_path):
    ok(
        kernel,
        "import sys, openai, anthropic\n"
        "from openai.resources.chat.completions import Completions, AsyncCompletions\n"
        "from anthropic.resources.messages.messages import Messages\n"
        "before = (Completions.create, AsyncCompletions.create, Messages.create, list(sys.meta_path))",
    )
    ok(kernel, "%load_ext carbon_magic")
    wrapped = ok(kernel, "Completions.create is before[0], Messages.create is before[2]")
    assert wrapped.result == "(False, False)"
    ok(kernel, "%unload_ext carbon_magic")
    restored = ok(
        kernel,
        "(Completions.create, AsyncCompletions.create, Messages.create, list(sys.meta_path)) == before",
    )
    assert restored.result == "True"
    ok(kernel, "%load_ext carbon_magic")
    ok(kernel, "import mistralai")  # imported after loading: wrapped when imported
    mistral = ok(
        kernel,
        "from mistralai.client.chat import Chat\n'carbon_magic' in Chat.complete.__code__.co_filename",
    )
    assert mistral.result == "True"


def test_the_notebooks_own_ecologits_is_used_not_doubled(kernel, api, ledger_path):
    # EcoLogits initialised before loading: its impacts are on the answer and are used.
    ok(
        kernel,
        "import openai\nfrom ecologits import EcoLogits\nEcoLogits.init(providers=['openai'])\n"
        f"client = openai.OpenAI(base_url={api.url + '/v1'!r}, api_key='x', max_retries=0)",
    )
    ok(kernel, "%load_ext carbon_magic")
    own = ok(
        kernel,
        f"r = client.chat.completions.create(model='gpt-4o-mini', {ASK}, max_tokens=5)\n"
        "r.impacts.usage.energy.value.min",
    )
    [call] = next(v for k, v in calls_of(ledger_path).items() if k.startswith("r = "))
    assert call["energy_low_kwh"] == pytest.approx(float(own.result))
    assert "the notebook's own EcoLogits" in call["method"]
    # Unloaded: EcoLogits goes on answering with impacts; nothing of ours is left.
    ok(kernel, "%unload_ext carbon_magic")
    after = ok(
        kernel,
        f"r2 = client.chat.completions.create(model='gpt-4o-mini', {ASK}, max_tokens=5)\n"
        "from openai.resources.chat.completions import Completions\n"
        "hasattr(r2, 'impacts'), 'carbon_magic' in Completions.create.__wrapped__.__code__.co_filename",
    )
    assert after.result == "(True, False)"


def test_ecologits_initialised_after_loading_wraps_ours_and_unload_takes_ours_out(
    kernel, api, ledger_path
):
    ok(kernel, "%load_ext carbon_magic\nimport openai")
    ok(
        kernel,
        "from ecologits import EcoLogits\nEcoLogits.init(providers=['openai'])\n"
        f"client = openai.OpenAI(base_url={api.url + '/v1'!r}, api_key='x', max_retries=0)",
    )
    both = ok(
        kernel,
        f"r = client.chat.completions.create(model='gpt-4o-mini', {ASK}, max_tokens=5)\n"
        "hasattr(r, 'impacts')",
    )
    assert both.result == "True"
    [call] = next(v for k, v in calls_of(ledger_path).items() if k.startswith("r = "))
    assert call["output_tokens"] == 5  # one record, estimated once
    ok(kernel, "%unload_ext carbon_magic")
    after = ok(
        kernel,
        "from openai.resources.chat.completions import Completions\n"
        f"r2 = client.chat.completions.create(model='gpt-4o-mini', {ASK}, max_tokens=5)\n"
        "hasattr(r2, 'impacts'), 'carbon_magic' in Completions.create.__wrapped__.__code__.co_filename",
    )
    assert after.result == "(True, False)"


def test_budgets_count_remote_emissions_and_the_panel_says_so(kernel, api, ledger_path):
    ok(kernel, "%load_ext carbon_magic\nimport openai")
    ok(kernel, f"client = openai.OpenAI(base_url={api.url + '/v1'!r}, api_key='x', max_retries=0)")
    cell = (
        "%%carbon --name llm --budget 0.05mg\n"
        f"for _ in range(3): client.chat.completions.create(model='gpt-4o-mini', {ASK})"
    )
    counted = ok(kernel, cell)
    # The local part alone (a few µg) is under the budget; with the calls it is over.
    assert "carbon budget 0.05 mg CO2e (local + remote (estimated)) exceeded" in counted.text
    assert "remote (estimated), not in the local figures: 3 LLM calls" in counted.text
    panel = json.dumps(counted.messages, ensure_ascii=False, default=str)
    assert "budget 0.05 mg CO2e (local + remote (estimated))" in panel
    ok(kernel, "%carbon config budget_remote=false")
    local = ok(kernel, cell)
    assert "budget 0.05 mg CO2e (local only)" in json.dumps(
        local.messages, ensure_ascii=False, default=str
    )
    assert "exceeded" not in local.text
    status = ok(kernel, "%carbon status")
    assert "remote calls: captured for openai" in status.text


def test_capture_is_switched_off_and_on_by_the_setting(kernel, api, ledger_path):
    ok(kernel, "%load_ext carbon_magic\nimport openai")
    ok(kernel, f"client = openai.OpenAI(base_url={api.url + '/v1'!r}, api_key='x', max_retries=0)")
    ok(kernel, "%carbon config remote_calls=off")
    off = ok(
        kernel,
        "from openai.resources.chat.completions import Completions\n"
        f"r = client.chat.completions.create(model='gpt-4o-mini', {ASK})\n"
        "'carbon_magic' in Completions.create.__code__.co_filename",
    )
    assert off.result == "False"
    ok(kernel, "%carbon config remote_calls=auto")
    ok(kernel, f"again = client.chat.completions.create(model='gpt-4o-mini', {ASK})")
    calls = calls_of(ledger_path)
    assert not any(k.startswith("from openai") for k in calls)
    assert len(next(v for k, v in calls.items() if k.startswith("again = "))) == 1
