"""Remote calls in-process: the ledger's cell_remote_calls (migration, round trip,
journal, retention), faults of EcoLogits and of unknown SDK versions, budgets, words."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time

import pytest

pytest.importorskip("openai")
pytest.importorskip("ecologits")

import openai  # noqa: E402

from carbon_magic import ledger as ledger_module  # noqa: E402
from carbon_magic.doctor import doctor_findings  # noqa: E402
from carbon_magic.engine.measurement import Measurement  # noqa: E402
from carbon_magic.kernel.budget import parse_budget  # noqa: E402
from carbon_magic.ledger import Ledger  # noqa: E402
from carbon_magic.ledger.housekeeping import prune_cells  # noqa: E402
from carbon_magic.ledger.schema import MIGRATIONS, SCHEMA_VERSION, migrate, schema_version  # noqa: E402
from carbon_magic.remote import RemoteCollector, targets  # noqa: E402
from carbon_magic.remote.calls import RemoteCall  # noqa: E402
from carbon_magic.remote.describe import describe_remote  # noqa: E402
from carbon_magic.remote.estimate import Estimator  # noqa: E402
from carbon_magic.remote.status import capture_status  # noqa: E402
from carbon_magic.remote.summary import summarise  # noqa: E402

from .fake_llm_api import FakeLLMServer  # noqa: E402
from .test_ledger import measurement, open_session  # noqa: E402

ASK = [{"role": "user", "content": "hi"}]


@pytest.fixture
def api():
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def collector():
    notices: list[str] = []
    remote = RemoteCollector(notices.append)
    remote.notices = notices
    remote.install()
    yield remote
    remote.close()


def client(api):
    return openai.OpenAI(base_url=api.url + "/v1", api_key="x", max_retries=0)


def run_cell(collector, body) -> Measurement:
    m = Measurement("cell")
    edge = collector.start()
    try:
        body()
    finally:
        collector.end(edge, m)
    return m


def a_call(model="gpt-4o-mini", tokens=10, latency_s=1.5, **changes) -> RemoteCall:
    call = RemoteCall("openai", "chat.completions", model, False, time.time(), 0)
    call.output_tokens, call.latency_s, call.status = tokens, latency_s, "ok"
    for name, value in changes.items():
        setattr(call, name, value)
    return call


# ------------------------------------------------------------------ ledger


def test_version_6_adds_the_remote_calls_table_to_a_version_5_file(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:5]:
        migration(conn)
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '5')")
    migrate(conn)
    assert schema_version(conn) == SCHEMA_VERSION == 7
    names = {row[1] for row in conn.execute("PRAGMA table_info(cell_remote_calls)")}
    assert {"cell_ref", "seq", "model", "output_tokens", "energy_low_kwh", "note"} <= names
    conn.close()


def remote_part(estimator=None):
    estimator = estimator or Estimator(lambda text: None)
    known, unknown = a_call(), a_call(model="no-such-model", tokens=4)
    return summarise((call, estimator.estimate(call)) for call in (known, unknown))


def test_a_cells_calls_round_trip_through_the_ledger_and_go_with_it(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    part = remote_part()
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", measurement(0, remote=part), via="auto")
        ledger.record_cell("s1", measurement(1), via="auto")
        assert ledger.flush()
    with_calls, without = ledger_module.read_cells(path)
    assert with_calls["remote_calls"] == 2 and with_calls["remote_unestimated"] == 1
    assert with_calls["remote_emissions_g"] == pytest.approx(part["emissions_g"])
    assert with_calls["remote_energy_low_kwh"] == pytest.approx(part["energy_range_kwh"][0])
    assert with_calls["remote_water_l"] == pytest.approx(part["water_l"]) and part["water_l"] > 0
    assert with_calls["remote_method"].startswith("estimated (EcoLogits ")
    assert with_calls["emissions_g"] == measurement(0).emissions_g  # local figures unchanged
    assert "remote_calls" not in without
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT model, note FROM cell_remote_calls ORDER BY seq").fetchall()
        assert rows == [("gpt-4o-mini", None), ("no-such-model", "model unknown to EcoLogits")]
        with ledger_module.schema.Transaction(conn):
            prune_cells(conn, time.time(), 10)
        assert conn.execute("SELECT count(*) FROM cell_remote_calls").fetchone()[0] == 0


@pytest.mark.filterwarnings("ignore::carbon_magic.ledger.LedgerWarning")
def test_calls_of_a_cell_kept_in_a_journal_reach_the_ledger(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    part = remote_part()
    with Ledger(path) as ledger:
        open_session(ledger)
        assert ledger.flush()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer cannot commit: it journals at close
    ledger = Ledger(path, busy_timeout_s=0.05)
    open_session(ledger)
    ledger.record_cell("s1", measurement(0, remote=part), via="auto")
    ledger.close(timeout_s=0.2)
    blocker.execute("ROLLBACK")
    blocker.close()
    with Ledger(path) as later:  # the next writer imports the journal
        open_session(later, uuid="s2")
        assert later.flush()
    [row] = ledger_module.read_cells(path)
    assert row["remote_calls"] == 2


# ------------------------------------------------------------------ faults


def test_an_sdk_version_the_capture_does_not_know_is_left_alone(api, monkeypatch):
    monkeypatch.setitem(targets.SDK_VERSIONS, "openai", ("openai", (1, 0), (2,)))
    from openai.resources.chat.completions import Completions

    own = Completions.create
    remote = RemoteCollector(lambda text: None)
    remote.install()
    try:
        assert Completions.create is own  # not wrapped
        m = run_cell(remote, lambda: client(api).chat.completions.create(model="m", messages=ASK))
        assert m.remote is None
        [line] = [line for line in remote.doctor_lines() if "openai" in line and "not" in line]
        assert "is not a version the capture knows" in line
    finally:
        remote.close()
    status = capture_status()
    [problem] = [p for p in status["problems"] if p["message"].startswith("openai ")]
    assert "pip install 'openai<2'" in problem["fix"]
    info = {"remote": status}
    findings = [f for f in doctor_findings_for(info) if f.topic == "remote calls"]
    assert any(f.fix and "openai" in f.message for f in findings)


def doctor_findings_for(extra):
    info = {
        "sensors": [],
        "location": {"country": "FR"},
        "intensity": {"source": "static"},
        "ledger": {"path": "/nonexistent/ledger.sqlite3", "exists": False},
        **extra,
    }
    return doctor_findings(info)


def test_without_ecologits_calls_are_recorded_without_estimates_and_warned_once(
    api, collector, monkeypatch
):
    monkeypatch.setitem(sys.modules, "ecologits", None)  # import ecologits fails
    make = client(api)
    m = run_cell(collector, lambda: make.chat.completions.create(model="gpt-4o-mini", messages=ASK))
    again = run_cell(collector, lambda: make.chat.completions.create(model="gpt-4o", messages=ASK))
    for cell in (m, again):
        [call] = cell.remote["calls"]
        assert call["output_tokens"] == 7 and call["energy_low_kwh"] is None
        assert call["note"] == "EcoLogits is not installed"
        assert cell.remote["method"] == "not estimated"
    assert len(collector.notices) == 1 and "EcoLogits is not installed" in collector.notices[0]
    assert "without estimate" in describe_remote(m.remote)


def test_ecologits_raising_leaves_the_call_recorded_and_warns_once():
    notices: list[str] = []
    estimator = Estimator(notices.append)

    def broken(**kwargs):
        raise RuntimeError("boom")

    estimator.estimate(a_call())  # loads EcoLogits
    estimator.llm_impacts = broken
    first, second = estimator.estimate(a_call()), estimator.estimate(a_call())
    assert first.energy_j is None and first.note == "EcoLogits raised RuntimeError"
    assert second.note == first.note and len(notices) == 1 and "boom" in notices[0]


def test_an_ecologits_too_old_is_not_used(monkeypatch):
    import ecologits

    monkeypatch.setattr(ecologits, "__version__", "0.5.2")
    notices: list[str] = []
    estimate = Estimator(notices.append).estimate(a_call())
    assert estimate.energy_j is None and estimate.note == "EcoLogits 0.5.2 is too old"
    assert len(notices) == 1 and "need 0.6 or later" in notices[0]


def test_a_reader_fault_loses_nothing_of_the_answer(api, collector, monkeypatch):
    from carbon_magic.remote import readers

    def broken(call, item):
        raise ValueError("unexpected shape")

    monkeypatch.setitem(readers.READERS, "openai_chat_chunk", broken)
    monkeypatch.setitem(readers.READERS, "openai_chat", broken)
    collector.close()
    collector.install()  # wrappers made with the broken readers
    make = client(api)
    texts: list[str] = []

    def body():
        answer = make.chat.completions.create(model="gpt-4o-mini", messages=ASK, max_tokens=2)
        texts.append(answer.choices[0].message.content)
        stream = make.chat.completions.create(model="gpt-4o-mini", messages=ASK, stream=True)
        texts.extend(c.choices[0].delta.content or "" for c in stream if c.choices)

    m = run_cell(collector, body)
    assert texts[0] == "tok tok" and "".join(texts[1:]).startswith("tok0 tok1")
    assert [c["status"] for c in m.remote["calls"]] == ["ok", "ok"]
    assert [c["note"] for c in m.remote["calls"]] == ["no token count in the answer"] * 2


def test_errors_and_slow_answers_pass_through_unchanged(api, collector):
    make = client(api)
    raised: list[BaseException] = []

    def body():
        try:
            make.chat.completions.create(model="error-429", messages=ASK)
        except openai.RateLimitError as error:
            raised.append(error)
        make.chat.completions.create(model="slow-gpt-4o-mini", messages=ASK)

    m = run_cell(collector, body)
    assert raised and raised[0].status_code == 429
    failed, slow = m.remote["calls"]
    assert failed["status"] == "error" and failed["error"] == "RateLimitError"
    assert slow["latency_s"] >= api.slow_s


def test_calls_outside_any_cell_are_not_kept(api, collector):
    client(api).chat.completions.create(model="gpt-4o-mini", messages=ASK)
    m = run_cell(collector, lambda: None)
    assert m.remote is None


# ------------------------------------------------------------------ budgets, words


def test_budgets_count_remote_emissions_unless_told_not_to():
    part = remote_part()
    m = measurement(0, emissions_g=0.0001, remote=part)
    limit = f"{(part['emissions_g'] + 0.0001) * 0.9}g"
    assert parse_budget(limit).exceeded(m)
    local_only = parse_budget(limit)
    local_only = type(local_only)(local_only.text, local_only.grams, count_remote=False)
    assert not local_only.exceeded(m)
    assert local_only.scope() == "local only"
    assert parse_budget("5g").scope() == "local + remote (estimated)"


def test_the_remote_part_is_described_apart_with_its_method():
    line = describe_remote(remote_part())
    assert line.startswith("remote (estimated), not in the local figures: 2 LLM calls")
    assert "1 without estimate: model unknown to EcoLogits" in line
    assert "EcoLogits" in line and "water" in line
    assert describe_remote(None) is None


# ------------------------------------------------------------------ shown apart


def recorded_rows(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", measurement(0, remote=remote_part()), via="auto")
        ledger.record_cell("s1", measurement(1), via="auto")
        assert ledger.flush()
    return ledger_module.read_cells(path)


def test_exports_carry_the_remote_columns_apart(tmp_path):
    from carbon_magic.reports.export_flat import FLAT_COLUMNS, flat_record
    from carbon_magic.reports.export_json import json_record

    rows = recorded_rows(tmp_path)
    for name in (
        "remote_energy_kwh",
        "remote_emissions_g",
        "remote_emissions_low_g",
        "remote_emissions_high_g",
        "remote_calls",
        "remote_water_l",
    ):
        assert name in FLAT_COLUMNS
    with_calls, without = (flat_record(row) for row in rows)
    assert with_calls["remote_calls"] == 2 and with_calls["remote_emissions_g"] > 0
    assert with_calls["emissions_g"] == measurement(0).emissions_g
    assert without["remote_calls"] is None  # an empty CSV cell, not 0
    assert json_record(rows[0])["remote_water_l"] == with_calls["remote_water_l"]


def test_report_and_model_card_say_the_totals_are_local(tmp_path):
    from carbon_magic.reports.card import model_card
    from carbon_magic.reports.report import build_report

    rows = recorded_rows(tmp_path)
    lines = build_report(rows).summary_lines()
    assert lines[0].endswith("(local; remote LLM calls not included)")
    [remote] = [line for line in lines if line.startswith("remote (estimated)")]
    assert "2 LLM calls" in remote and "1 without estimate" in remote
    statement = model_card(rows).statement
    assert "2 calls to hosted LLM APIs, remote (estimated)" in statement
    assert "not included above; 1 of the calls have no estimate" in statement
    plain = build_report(rows[1:]).summary_lines()
    assert "remote" not in " ".join(plain)


# ------------------------------------------------------------------ Mistral, Google GenAI


def assert_estimated_as_ecologits(call, provider, model):
    from ecologits.tracers.utils import llm_impacts

    impacts = llm_impacts(provider, model, call["output_tokens"], call["latency_s"])
    energy, gwp = impacts.usage.energy.value, impacts.usage.gwp.value  # a number or a range
    assert call["energy_low_kwh"] == pytest.approx(getattr(energy, "min", energy), rel=1e-9)
    assert call["emissions_high_g"] == pytest.approx(getattr(gwp, "max", gwp) * 1000)


def test_mistral_chat_sync_async_and_streamed(api, collector):
    mistral = pytest.importorskip("mistralai.client")
    client_ = mistral.Mistral(api_key="x", server_url=api.url)
    model = "mistral-small-latest"
    seen: list[int] = []

    def body():
        client_.chat.complete(model=model, messages=ASK, max_tokens=5)
        seen.append(len(list(client_.chat.stream(model=model, messages=ASK, max_tokens=4))))

        async def both():
            await client_.chat.complete_async(model=model, messages=ASK, max_tokens=3)
            stream = await client_.chat.stream_async(model=model, messages=ASK, max_tokens=2)
            return [event async for event in stream]

        asyncio.run(both())

    m = run_cell(collector, body)
    assert seen == [6]  # the SDK's stream, every event: the role event, 4 tokens, the end
    calls = m.remote["calls"]
    assert [(c["streamed"], c["output_tokens"]) for c in calls] == [
        (False, 5),
        (True, 4),
        (False, 3),
        (True, 2),
    ]
    for call in calls:
        assert call["sdk"] == "mistralai" and call["status"] == "ok"
        assert_estimated_as_ecologits(call, "mistralai", model)


def test_google_genai_content_sync_async_and_streamed(api, collector):
    genai = pytest.importorskip("google.genai")
    types = genai.types
    client_ = genai.Client(api_key="x", http_options=types.HttpOptions(base_url=api.url))
    model = "gemini-2.5-flash"
    texts: list[str] = []

    def body():
        config = types.GenerateContentConfig(max_output_tokens=5)
        texts.append(
            client_.models.generate_content(model=model, contents="hi", config=config).text
        )
        stream = client_.models.generate_content_stream(
            model=model, contents="hi", config=types.GenerateContentConfig(max_output_tokens=4)
        )
        texts.append("".join(chunk.text for chunk in stream))

        async def streamed():
            config = types.GenerateContentConfig(max_output_tokens=3)
            chunks = await client_.aio.models.generate_content_stream(
                model=model, contents="hi", config=config
            )
            return [chunk async for chunk in chunks]

        asyncio.run(streamed())

    m = run_cell(collector, body)
    assert texts == ["tok tok tok tok tok ", "tok0 tok1 tok2 tok3 "]
    calls = m.remote["calls"]
    assert [(c["streamed"], c["output_tokens"]) for c in calls] == [
        (False, 5),
        (True, 4),
        (True, 3),
    ]
    for call in calls:
        assert call["sdk"] == "google_genai" and call["model"] == model
        assert_estimated_as_ecologits(call, "google_genai", model)


def test_calls_from_worker_threads_of_the_cell_are_all_captured(api, collector):
    from concurrent.futures import ThreadPoolExecutor

    make = client(api)

    def body():
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda n: make.chat.completions.create(
                        model="gpt-4o-mini", messages=ASK, max_tokens=n
                    ),
                    range(1, 25),
                )
            )

    m = run_cell(collector, body)
    assert m.remote["count"] == 24
    assert sorted(c["output_tokens"] for c in m.remote["calls"]) == list(range(1, 25))


def test_anthropic_stream_helpers_are_followed(api, collector):
    anthropic = pytest.importorskip("anthropic")
    model = "claude-haiku-4-5-20251001"
    sync = anthropic.Anthropic(base_url=api.url, api_key="x", max_retries=0)
    asynchronous = anthropic.AsyncAnthropic(base_url=api.url, api_key="x", max_retries=0)
    texts: list[str] = []

    def body():
        with sync.messages.stream(model=model, max_tokens=5, messages=ASK) as stream:
            texts.append("".join(stream.text_stream))

        async def streamed():
            async with asynchronous.messages.stream(model=model, max_tokens=3, messages=ASK) as s:
                return [text async for text in s.text_stream]

        texts.append("".join(asyncio.run(streamed())))

    m = run_cell(collector, body)
    assert texts == ["tok0 tok1 tok2 tok3 tok4 ", "tok0 tok1 tok2 "]
    calls = m.remote["calls"]
    assert [(c["streamed"], c["status"], c["output_tokens"]) for c in calls] == [
        (True, "ok", 5),
        (True, "ok", 3),
    ]
    assert_estimated_as_ecologits(calls[0], "anthropic", model)


@pytest.mark.filterwarnings("ignore::carbon_magic.ledger.LedgerWarning")
def test_a_cell_not_yet_written_shows_its_remote_part_too(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger)
        assert ledger.flush()
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the cell stays pending
        try:
            ledger.record_cell("s1", measurement(0, remote=remote_part()), via="auto")
            rows, pending = ledger.cells_with_pending(session_uuid="s1")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    assert pending == 1 and rows[-1]["remote_calls"] == 2
    assert rows[-1]["remote_unestimated"] == 1
