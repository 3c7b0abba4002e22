"""%%carbon cells behave like plain cells, and the faults of bad input, in real kernels."""

import os
import re
import time

import pytest

from carbon_magic import ledger as ledger_module

from .kernels import Kernel

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def ledger_path(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cells") / "ledger.sqlite3")


def _kernel_as_in_jupyter(ledger_path, env=None):
    """A kernel that forwards its file descriptor 2 to the running cell, as in Jupyter
    (ipykernel does not when it sees PYTEST_CURRENT_TEST)."""
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        return Kernel(ledger_path, env)
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved


@pytest.fixture(scope="module")
def kernel(ledger_path):
    k = _kernel_as_in_jupyter(ledger_path, {"CARBON_MAGIC_INTERVAL": "0.5"})
    load = k.execute("%load_ext carbon_magic")
    assert load.reply["content"]["status"] == "ok"
    yield k
    k.shutdown()


def _usage_error(run):
    """The one-line ``UsageError`` IPython printed for the cell (None when none)."""
    lines = [line for line in run.text.splitlines() if line.startswith("UsageError: ")]
    assert len(lines) <= 1 and not run.error, run.text
    return lines[0] if lines else None


def _rows(ledger_path, **match):
    rows = ledger_module.read_cells(ledger_path)
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def test_syntax_error_looks_like_a_plain_cells(kernel):
    plain = kernel.execute("x = 1\ny = (1,\nz = 3\n")
    magic = kernel.execute("%%carbon --quiet\nx = 1\ny = (1,\nz = 3\n")
    for run, line in ((plain, "line 2"), (magic, "line 3")):  # the cell's own lines
        assert run.error["ename"] == "SyntaxError", run.text
        trace = "\n".join(run.error["traceback"])
        assert line in trace and "^" in trace
        assert "UsageError" not in trace and "cell_runner" not in trace
        assert "run_cell_magic" not in trace


def test_top_level_await_runs_in_the_kernels_loop(kernel, ledger_path):
    run = kernel.execute(
        "%%carbon --quiet --name awaited\nimport asyncio\nawait asyncio.sleep(0.2)\n"
        "await asyncio.sleep(0) or 'done'"
    )
    assert run.reply["content"]["status"] == "ok", run.text
    assert run.result == "'done'"
    row = _rows(ledger_path, name="awaited")[0]
    assert row["status"] == "ok" and row["duration_s"] >= 0.2 and row["via"] == "magic"
    failing = kernel.execute(
        "%%carbon --quiet --name async-boom\nimport asyncio\nawait asyncio.sleep(0)\n1/0"
    )
    assert failing.error["ename"] == "ZeroDivisionError"
    assert _rows(ledger_path, name="async-boom")[0]["status"] == "error"


def test_trailing_semicolon_hides_the_value(kernel):
    assert kernel.execute("%%carbon --quiet\n6 * 7;").result is None
    assert kernel.execute("%%carbon --quiet\n6 * 7  # no semicolon").result == "42"
    assert (
        kernel.execute("%%carbon --quiet\nimport asyncio\nawait asyncio.sleep(0);").result is None
    )


def test_nested_windows_are_recorded_once(kernel, ledger_path):
    kernel.execute("%%carbon --quiet --name outer\n%%carbon --quiet --name inner\nsum(range(1000))")
    names = [r["name"] for r in ledger_module.read_cells(ledger_path)]
    assert names.count("outer") == 1 and "inner" not in names
    kernel.execute("%%time\n%%carbon --quiet --name timed\nsum(range(1000))")
    rows = ledger_module.read_cells(ledger_path)
    assert [r["name"] for r in rows].count("timed") == 1
    assert not [r for r in rows if (r["source"] or "").startswith("%%time")]


@pytest.mark.parametrize(
    "code, expected",
    [
        ("%%carbon --name 'unclosed\n1", "no closing quotation"),
        ('%carbon report --since "2024', "no closing quotation"),
        ("%%carbon --budget -5g\n1", "finite and above 0"),
        ("%%carbon --budget 1e400kWh\n1", "finite and above 0"),
        ("%carbon export /nonexistent/dir/x.csv", "/nonexistent/dir/x.csv"),
        ("%carbon plot --save /nonexistent/dir/p.png", "/nonexistent/dir"),
        ("%carbon plot --save plot.nosuchtype", "valid: avif"),
    ],
)
def test_bad_input_is_one_usage_line(kernel, code, expected):
    message = _usage_error(kernel.execute(code))
    assert message is not None and expected in message, message
    assert ".tmp" not in message


def test_conflicting_settings_change_nothing(kernel):
    get = (
        "import carbon_magic; s = carbon_magic.current_settings(); s['cpu_idle_w'], s['cpu_max_w']"
    )
    message = _usage_error(kernel.execute("%carbon config cpu_idle_w=50 cpu_max_w=10"))
    assert "at most cpu_max_w" in message
    assert kernel.execute(get).result == "(None, None)"
    # Above the CPU model's own maximum: refused by the tracker, undone everywhere.
    assert "above its maximum" in _usage_error(kernel.execute("%carbon config cpu_idle_w=9000"))
    assert kernel.execute(get).result == "(None, None)"
    bad_trait = kernel.execute("%config CarbonMagics.cpu_idle_w = 9000")
    assert "above" in bad_trait.text
    assert (
        kernel.execute("str(get_ipython().find_magic('carbon').__self__.cpu_idle_w)").result
        == "'None'"
    )
    # Later sensor changes still work.
    ok = kernel.execute("%carbon config cpu_idle_w=5 cpu_max_w=60")
    assert ok.reply["content"]["status"] == "ok", ok.text
    assert kernel.execute(get).result == "(5.0, 60.0)"
    assert kernel.execute("%%carbon --quiet\n1 + 1").result == "2"
    kernel.execute("%carbon config cpu_idle_w=auto cpu_max_w=auto")


def test_secrets_are_masked_and_redacted(kernel, ledger_path):
    shown = kernel.execute(
        "import carbon_magic; carbon_magic.configure(electricitymaps_token='t', intensity='static')"
    )
    assert shown.result == "{'electricitymaps_token': '***', 'intensity': 'static'}"
    kernel.execute("%carbon config electricitymaps_token=s3cr3t-t0ken intensity=static")
    sources = [r["source"] or "" for r in ledger_module.read_cells(ledger_path)]
    assert "%carbon config electricitymaps_token=*** intensity=static" in sources
    assert not [s for s in sources if "s3cr3t" in s]
    # Redaction replaces the value only: other text keeps its letters.
    assert (
        "import carbon_magic; carbon_magic.configure(electricitymaps_token='***', "
        "intensity='static')"
    ) in sources
    kernel.execute("%carbon config electricitymaps_token=auto intensity=auto")


def test_background_warnings_stay_out_of_cells(kernel):
    run = kernel.execute(
        "import logging, threading, time\n"
        "t = threading.Thread(target=lambda: logging.getLogger('carbon_magic')"
        ".warning('carbon_magic: a background fault'))\n"
        "t.start(); t.join(); time.sleep(0.5)\n"
        "print('cell output')"
    )
    assert "cell output" in run.text and "background fault" not in run.text
    later = kernel.execute("import time; time.sleep(0.5)")
    assert "background fault" not in later.text


def test_conflicting_environment_names_variables_and_load_works_once_fixed(ledger_path):
    env = {"CARBON_MAGIC_CPU_IDLE_W": "50", "CARBON_MAGIC_CPU_MAX_W": "10"}
    k = Kernel(ledger_path, env)
    try:
        message = _usage_error(k.execute("%load_ext carbon_magic"))
        assert "CARBON_MAGIC_CPU_IDLE_W=50" in message and "CARBON_MAGIC_CPU_MAX_W=10" in message
        k.execute("%env CARBON_MAGIC_CPU_MAX_W=100")
        again = k.execute("%load_ext carbon_magic")
        assert again.reply["content"]["status"] == "ok", again.text
        run = k.execute("import carbon_magic; carbon_magic.current_settings()['cpu_max_w']")
        assert run.result == "100.0"
        # Only one variable, above the CPU model's maximum: the variable is named too.
        k.execute("%unload_ext carbon_magic")
        k.execute("%env CARBON_MAGIC_CPU_MAX_W=")
        k.execute("%env CARBON_MAGIC_CPU_IDLE_W=9000")
        third = _usage_error(k.execute("%load_ext carbon_magic"))
        assert "CARBON_MAGIC_CPU_IDLE_W" in third, third
        k.execute("%env CARBON_MAGIC_CPU_IDLE_W=")
        fourth = k.execute("%load_ext carbon_magic")
        assert fourth.reply["content"]["status"] == "ok", fourth.text
        assert k.execute("%%carbon --quiet\n6 * 7").result == "42"
    finally:
        k.shutdown()
    assert os.path.exists(ledger_path)


def test_a_fault_on_the_cells_path_is_one_line_once(kernel):
    kernel.execute(
        "import carbon_magic.engine.tracker as _tracker\n_end = _tracker.Tracker.end\n"
        "def _broken_end(*args, **kwargs):\n    raise RuntimeError('end broke')"
    )
    try:
        kernel.execute("_tracker.Tracker.end = _broken_end")
        first = kernel.execute("%%carbon --quiet\n40 + 2")
        second = kernel.execute("%%carbon --quiet\n40 + 2")
    finally:
        kernel.execute("_tracker.Tracker.end = _end")
    assert first.result == second.result == "42"
    lines = [line for line in first.text.splitlines() if "end broke" in line]
    assert len(lines) == 1 and "%%carbon recording failed" in lines[0]
    assert "end broke" not in second.text


def test_budget_stops_an_awaiting_cell(kernel, ledger_path):
    started = time.monotonic()
    run = kernel.execute(
        "%%carbon --quiet --name async-capped --budget 0.01J --on-exceed stop\n"
        "import asyncio\nawait asyncio.sleep(30)",
        timeout=60,
    )
    assert time.monotonic() - started < 8
    assert run.error["ename"] == "BudgetExceeded", run.text
    assert kernel.execute("import asyncio\nawait asyncio.sleep(0.1)\n6 * 7").result == "42"
    row = _rows(ledger_path, name="async-capped")[0]
    assert row["status"] == "stopped by budget" and "exceeded" in row["budget"]


def test_ledger_warnings_go_to_the_log_and_one_line_in_their_own_cell(kernel):
    setup = (
        "import threading, time, warnings\nfrom carbon_magic.ledger import LedgerWarning\n"
        "def _warn(text):\n    warnings.warn(text, LedgerWarning)\n"
    )
    kernel.execute(setup)
    other = kernel.execute(
        "t = threading.Thread(target=_warn, args=('ledger busy in the background',))\n"
        "t.start(); t.join(); time.sleep(0.5)"
    )
    assert "ledger busy" not in other.text
    own = kernel.execute("_warn('ledger broke while recording'); time.sleep(0.3)")
    lines = [line for line in own.text.splitlines() if "ledger broke" in line]
    assert len(lines) == 1 and "warnings.warn" not in own.text, own.text


def test_a_failing_cell_names_its_own_number_and_shows_its_value_as_the_cell(kernel):
    run = kernel.execute("%%carbon --quiet\ndef f():\n    return 1 / 0\n\nf()")
    count = run.reply["content"]["execution_count"]
    trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(run.error["traceback"]))
    assert f"Cell In[{count}], line 5" in trace and f"Cell In[{count + 1}]" not in trace
    assert "skipping hidden" not in trace and "run_cell_magic" not in trace
    kernel.execute("%config InteractiveShell.ast_node_interactivity = 'all'")
    try:
        both = kernel.execute("%%carbon --quiet\n6 * 7\n'second'")
    finally:
        kernel.execute("%config InteractiveShell.ast_node_interactivity = 'last_expr'")
    count = both.reply["content"]["execution_count"]
    shown = both.of_type("execute_result")
    assert [m["content"]["data"]["text/plain"] for m in shown] == ["42", "'second'"]
    assert {m["content"]["execution_count"] for m in shown} == {count}
    assert kernel.execute(f"Out[{count}], _").result == "('second', 'second')"


def test_an_interrupted_awaiting_cell_is_interrupted_plain_or_measured(kernel, ledger_path):
    body = "import asyncio\nawait asyncio.sleep(30)"
    plain = kernel.execute(body, timeout=60, interrupt_after=1.5)
    magic = kernel.execute(
        "%%carbon --quiet --name async-interrupted\n" + body, timeout=60, interrupt_after=1.5
    )
    assert plain.error["ename"] == magic.error["ename"] == "CancelledError"
    history = kernel.execute(f"In[{magic.reply['content']['execution_count']}]").result
    assert history.startswith("\"get_ipython().run_cell_magic('carbon',")
    rows = ledger_module.read_cells(ledger_path)
    assert [r["status"] for r in rows if r["source"] == "import asyncio"][-1] == "interrupted"
    assert _rows(ledger_path, name="async-interrupted")[0]["status"] == "interrupted"
    assert kernel.execute("6 * 7").result == "42"


def test_the_kernel_waits_for_a_blank_line_to_end_a_carbon_cell(kernel):
    """``jupyter console`` asks the kernel whether a cell is complete."""

    def is_complete(code):
        msg_id = kernel.client.is_complete(code)
        while True:
            reply = kernel.client.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]["status"]

    for body in ("import asyncio\nawait asyncio.sleep(0)\n", "x = 1\nif x:\n"):
        assert is_complete("%%carbon\n" + body) == is_complete("%%time\n" + body)
        assert is_complete("%%carbon\n" + body) == "incomplete"
    assert is_complete("%%carbon\nx = 1\n\n") == "complete"
