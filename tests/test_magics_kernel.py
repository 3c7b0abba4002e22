"""The notebook experience in real kernels: loading, %%carbon, %carbon, the ledger."""

import json
import os
import signal
import sqlite3
import time

import pytest

from carbon_magic import ledger as ledger_module
from carbon_magic.kernel.recorder import HEARTBEAT_MIN_S

from .kernels import Kernel

pytestmark = pytest.mark.kernel

BUSY = "import time\n_end = time.time() + {s}\nwhile time.time() < _end:\n    pass\n"


@pytest.fixture
def ledger_path(tmp_path):
    return str(tmp_path / "ledger.sqlite3")


@pytest.fixture
def kernel(ledger_path):
    k = Kernel(ledger_path, {"CARBON_MAGIC_INTERVAL": "0.5"})
    yield k
    k.shutdown()


def test_every_cell_is_recorded_silently(kernel, ledger_path):
    load = kernel.execute("%load_ext carbon_magic")
    assert load.reply["content"]["status"] == "ok"
    # One line confirms the load: what is measured how, and the grid in use.
    [line] = load.text.splitlines()
    assert line.startswith("carbon_magic: recording every cell from now on (cpu modelled")
    assert "g/kWh" in line and "%carbon status" in line
    assert not load.of_type("display_data", "error")
    quiet = kernel.execute("x = sum(range(10**7))\nx")
    assert quiet.result == str(sum(range(10**7)))
    assert not quiet.of_type("display_data", "stream")
    failed = kernel.execute("1/0")
    assert failed.error["ename"] == "ZeroDivisionError"
    rows = ledger_module.read_cells(ledger_path)
    by_source = {row["source"]: row for row in rows}
    assert by_source["x = sum(range(10**7))"]["status"] == "ok"
    assert by_source["x = sum(range(10**7))"]["via"] == "auto"
    assert by_source["1/0"]["status"] == "error"
    # A cell long enough to span several CPU-time clock ticks (10 ms) has CPU energy.
    row = by_source["x = sum(range(10**7))"]
    assert row["kernel_id"] == kernel.kernel_id
    assert row["execution_count"] == 2
    assert row["cpu_j"] > 0 and row["emissions_g"] > 0
    assert row["emissions_low_g"] < row["emissions_g"] < row["emissions_high_g"]
    assert json.loads(row["methods_json"]) == {"cpu": "modelled", "ram": "assumed"}
    assert "FR" in row["intensity_source"]
    assert row["pue"] == 1.0
    sessions = ledger_module.read_sessions(ledger_path, kernel_id=kernel.kernel_id)
    assert len(sessions) == 1 and sessions[0]["tracker_state"] == "running"


def test_carbon_cell_panel_updates_live_and_returns_value(kernel, ledger_path):
    kernel.execute("%load_ext carbon_magic")
    run = kernel.execute("%%carbon --name busy\n" + BUSY.format(s=3) + "6 * 7")
    assert run.reply["content"]["status"] == "ok"
    assert run.result == "42"
    # Panel updates (comm messages setting the HTML value) arrive while the cell runs.
    updates = [
        m
        for m in run.of_type("comm_msg")
        if m["content"]["data"].get("method") == "update"
        and "value" in m["content"]["data"].get("state", {})
    ]
    assert len(updates) >= 3
    # Compared by the kernel's own send times: the test reads iopub and shell on separate
    # sockets, so a backlog on iopub can reach it after the reply was already read.
    replied = run.reply["header"]["date"]
    assert all(m["header"]["date"] <= replied for m in updates)
    started = run.of_type("display_data")[0]["header"]["date"]
    first_update_s = (updates[0]["header"]["date"] - started).total_seconds()
    assert first_update_s < 1.5  # at least once a second while busy
    values = [m["content"]["data"]["state"]["value"] for m in updates]
    assert len(set(values)) >= 3 and "cm-emissions" in values[-1]
    # The final state replaces the widget as plain output, with the status.
    final = run.of_type("update_display_data")[-1]["content"]["data"]
    assert "application/vnd.jupyter.widget-view+json" not in final
    assert "data-state='ok'" in final["text/html"] and "busy" in final["text/plain"]
    # Recorded once, by the magic, not again by the automatic recording.
    rows = [r for r in ledger_module.read_cells(ledger_path) if r["name"] == "busy"]
    assert len(rows) == 1 and rows[0]["via"] == "magic"
    assert rows[0]["duration_s"] == pytest.approx(3.0, abs=0.5)
    assert not [
        r for r in ledger_module.read_cells(ledger_path) if "%%carbon" in (r["source"] or "")
    ]
    last = kernel.execute(
        "m = %carbon last\nm.name, m.status, m.execution_count, round(m.duration_s)"
    )
    assert last.result == "('busy', 'ok', 2, 3)"


TREE_CPU = (
    "import psutil, carbon_magic\n"
    "def _tree_cpu():\n"
    "    t = psutil.Process().cpu_times()\n"
    "    return t.user + t.system + t.children_user + t.children_system\n"
    "_counter = carbon_magic.get_tracker().sensors.process_tree\n"
)
BURN = "def _burn(s):\n    import time\n    e = time.process_time() + s\n    while time.process_time() < e: pass\n"


def test_reaped_children_count_once_and_the_kernel_after_them_in_full(kernel, ledger_path):
    # CPU seconds of the tracker's process-tree counter against psutil's, over cells
    # whose children are seen alive by the tracker (a cell over 5 s) and then reaped.
    kernel.execute("%load_ext carbon_magic\n" + TREE_CPU + BURN)
    deltas = "_counter.cpu_s() - _c0, _tree_cpu() - _p0"
    kernel.execute("%%carbon --quiet --name clean\n" + BUSY.format(s=3))
    pool = kernel.execute(
        "_c0, _p0 = _counter.cpu_s(), _tree_cpu()\n"
        "import multiprocessing, time\n"
        "with multiprocessing.get_context('fork').Pool(2) as _pool:\n"
        "    _pool.map(_burn, [1.0, 1.0])\n"
        "    time.sleep(6)\n"
        "    _pool.close()\n"
        "    _pool.join()\n" + deltas,
        timeout=90,
    )
    counted, spent = eval(pool.result)
    assert counted == pytest.approx(spent, abs=0.3), pool.text
    busy = kernel.execute(
        "_c0, _p0 = _counter.cpu_s(), _tree_cpu()\n"
        "_burn(2.0)\n"  # CPU seconds, however busy the machine is
        "time.sleep(5.5)\n" + deltas
    )
    counted, spent = eval(busy.result)
    assert spent > 1 and counted == pytest.approx(spent, abs=0.3), busy.text
    popen = kernel.execute(
        "_c0, _p0 = _counter.cpu_s(), _tree_cpu()\n"
        "import subprocess, sys\n"
        "_child = subprocess.Popen([sys.executable, '-c', 'import time\\n"
        "e = time.process_time() + 1.5\\nwhile time.process_time() < e: pass\\n"
        "time.sleep(6)'])\n"
        "_child.wait()\n" + deltas,
        timeout=60,
    )
    counted, spent = eval(popen.result)
    assert spent > 1 and counted == pytest.approx(spent, abs=0.3), popen.text
    # The same busy work as in a clean kernel costs about the same energy after them.
    kernel.execute("%%carbon --quiet --name after\n" + BUSY.format(s=3))
    rows = {r["name"]: r for r in ledger_module.read_cells(ledger_path) if r["name"]}
    assert rows["after"]["cpu_j"] > 0.5 * rows["clean"]["cpu_j"], rows


def test_errors_are_recorded_and_reraised_with_traceback(kernel, ledger_path):
    kernel.execute("%load_ext carbon_magic")
    run = kernel.execute(
        "%%carbon --quiet --name boom\ndef f():\n    raise ValueError('bad value')\nf()"
    )
    assert run.error["ename"] == "ValueError"
    trace = "\n".join(run.error["traceback"])
    assert "bad value" in trace and "f()" in trace
    assert "carbon: boom" in run.text  # quiet: one line of text instead of the panel
    row = [r for r in ledger_module.read_cells(ledger_path) if r["name"] == "boom"][0]
    assert row["status"] == "error"


def test_interrupt_is_recorded_and_reraised(kernel, ledger_path):
    kernel.execute("%load_ext carbon_magic")
    run = kernel.execute("%%carbon --name long\n" + BUSY.format(s=20), interrupt_after=1.5)
    assert run.error["ename"] == "KeyboardInterrupt"
    auto = kernel.execute(BUSY.format(s=20), interrupt_after=1.5)
    assert auto.error["ename"] == "KeyboardInterrupt"
    rows = ledger_module.read_cells(ledger_path)
    assert [r["status"] for r in rows if r["name"] == "long"] == ["interrupted"]
    assert [r["status"] for r in rows if r["via"] == "auto"][-1] == "interrupted"


def test_budget_stop_interrupts_and_records(kernel, ledger_path):
    kernel.execute("%load_ext carbon_magic")
    started = time.monotonic()
    run = kernel.execute(
        "%%carbon --name capped --budget 0.01J --on-exceed stop\n" + BUSY.format(s=30)
    )
    assert time.monotonic() - started < 10
    assert run.error["ename"] == "BudgetExceeded"
    # One line says why, not a traceback through the library.
    [line] = run.error["traceback"]
    assert line.startswith("BudgetExceeded: carbon budget ")
    assert line.endswith(" exceeded; cell stopped") and "\n" not in line
    changed = kernel.execute("%carbon config pue=1.2 interval=0.5")
    assert changed.text.strip() == (
        "carbon_magic config: pue = 1.2 (was not set), interval = 0.5 (unchanged)"
    )
    row = [r for r in ledger_module.read_cells(ledger_path) if r["name"] == "capped"][0]
    assert row["status"] == "stopped by budget"
    # The record says how far over the budget the cell ran, and how soon it stopped.
    assert row["budget"].startswith("0.01J (exceeded: ") and "% used; stopped " in row["budget"]


def test_budget_stop_ends_sleeps_and_socket_waits(kernel, ledger_path):
    kernel.execute("%load_ext carbon_magic")
    for name, body in [
        ("sleeper", "import time\ntime.sleep(30)"),
        (
            "waiter",
            "import socket\n_s = socket.socket()\n_s.bind(('127.0.0.1', 0))\n_s.listen(1)\n"
            "_c = socket.create_connection(_s.getsockname())\n_c.recv(1)",
        ),
    ]:
        started = time.monotonic()
        run = kernel.execute(
            f"%%carbon --quiet --name {name} --budget 0.01J --on-exceed stop\n{body}", timeout=60
        )
        assert time.monotonic() - started < 8, name  # not the full 30 s
        assert run.error["ename"] == "BudgetExceeded"
    # The kernel's own interrupt still works after the budget's handler is gone.
    after = kernel.execute("import time\ntime.sleep(30)", interrupt_after=1.5)
    assert after.error["ename"] == "KeyboardInterrupt"
    later = kernel.execute("6 * 7")
    assert later.result == "42"
    rows = {r["name"]: r for r in ledger_module.read_cells(ledger_path) if r["name"]}
    assert rows["sleeper"]["status"] == rows["waiter"]["status"] == "stopped by budget"
    assert rows["sleeper"]["duration_s"] < 8


def test_milliwatt_hour_budget_stops_the_cell(kernel, ledger_path):
    # A budget of about 2 s of this work, in mWh as the panel prints it: the cell stops
    # long before its 30 s (a megawatt-hour would never be reached).
    kernel.execute("%load_ext carbon_magic")
    kernel.execute("%%carbon --quiet --name calibrate\n" + BUSY.format(s=2))
    watts = float(kernel.execute("_m = %carbon last\n_m.energy_kwh * 3.6e6 / _m.duration_s").result)
    budget = f"{watts * 2 / 3.6:.4g}mWh"
    started = time.monotonic()
    run = kernel.execute(
        f"%%carbon --name mwh --budget {budget} --on-exceed stop\n" + BUSY.format(s=30)
    )
    assert time.monotonic() - started < 15
    assert run.error and run.error["ename"] == "BudgetExceeded", run.text
    row = [r for r in ledger_module.read_cells(ledger_path) if r["name"] == "mwh"][0]
    assert row["status"] == "stopped by budget" and row["budget"].startswith(budget)
    ambiguous = kernel.execute("%%carbon --budget 1mwh\n1")
    assert "write mWh (milliwatt-hours) or MWh (megawatt-hours)" in ambiguous.text
    assert ambiguous.result is None


def test_budget_warn_marks_and_prints_once(kernel):
    kernel.execute("%load_ext carbon_magic")
    run = kernel.execute("%%carbon --budget 0.1J\n" + BUSY.format(s=1.5))
    assert run.reply["content"]["status"] == "ok"
    assert run.text.count("budget") >= 1
    assert sum("exceeded" in m["content"]["text"] for m in run.of_type("stream")) == 1
    final = run.of_type("update_display_data")[-1]["content"]["data"]["text/html"]
    assert "budget exceeded" in final


def test_bad_options_change_nothing(kernel):
    kernel.execute("%load_ext carbon_magic")
    for code, expected in [
        ("%%carbon --budget 5apples\n1", "expected a number with a unit"),
        ("%%carbon --on-exceed explode\n1", "invalid choice"),
        ("%%carbon --colour red\n1", "unrecognized arguments"),
        ("%carbon bogus", "valid: status, config"),
        ("%carbon config pue=9", "from 1 to 3"),
        ("%carbon config colour=red", "valid settings"),
        ("%carbon config country=$(id)", "grid_intensity_by_country.csv"),
        ("%carbon config mode", "key=value"),
        ("%carbon auto maybe", "on|off"),
        ("%config CarbonMagics.interval = 1000", "from 0.1 to 60"),
    ]:
        run = kernel.execute(code)
        assert expected in run.text, (code, run.text)
    config = kernel.execute(
        "import carbon_magic; carbon_magic.current_settings()['pue'], carbon_magic.current_settings()['interval']"
    )
    assert config.result == "(None, 0.5)"
    assert kernel.execute("carbon_magic.current_settings()['country']").result == "'FR'"


def test_config_via_magic_and_traitlets(kernel, ledger_path):
    kernel.execute("%load_ext carbon_magic")
    kernel.execute("%carbon config pue=1.4 mode=machine")
    kernel.execute("%config CarbonMagics.interval = 2")
    kernel.execute("import carbon_magic; carbon_magic.configure(embodied=False)")
    session = ledger_module.read_sessions(ledger_path, kernel_id=kernel.kernel_id)[-1]
    stored = json.loads(session["settings_json"])
    assert (stored["pue"], stored["mode"], stored["interval"], stored["embodied"]) == (
        1.4,
        "machine",
        2.0,
        False,
    )
    assert session["mode"] == "machine"
    run = kernel.execute(
        "import carbon_magic; s = carbon_magic.current_settings(); s['pue'], s['mode'], s['interval']"
    )
    assert run.result == "(1.4, 'machine', 2.0)"
    status = kernel.execute("%carbon status")
    assert "machine mode" in status.text and "PUE: 1.4" in status.text
    assert "cpu-model" in status.text and "modelled" in status.text and "rapl" in status.text
    help_text = kernel.execute("%carbon?")
    assert help_text.reply["content"]["status"] == "ok"


def test_reload_is_idempotent_and_unload_stops(kernel, ledger_path):
    kernel.execute("%load_ext carbon_magic")
    kernel.execute("%load_ext carbon_magic")
    kernel.execute("%reload_ext carbon_magic")
    threads = kernel.execute(
        "import threading; sum(t.name == 'carbon_magic-tracker' for t in threading.enumerate())"
    )
    assert threads.result == "1"
    kernel.execute("y = 1")
    rows = [r for r in ledger_module.read_cells(ledger_path) if r["source"] == "y = 1"]
    assert len(rows) == 1  # events registered once
    kernel.execute("%unload_ext carbon_magic")
    gone = kernel.execute(
        "import threading; sum(t.name == 'carbon_magic-tracker' for t in threading.enumerate())"
    )
    assert gone.result == "0"
    kernel.execute("z = 2")
    assert not [r for r in ledger_module.read_cells(ledger_path) if r["source"] == "z = 2"]


def test_stop_start_auto(kernel, ledger_path):
    kernel.execute("%load_ext carbon_magic")
    kernel.execute("%carbon auto off")
    kernel.execute("a = 1")
    kernel.execute("%carbon auto on")
    kernel.execute("%carbon stop")
    kernel.execute("b = 2")
    kernel.execute("%carbon start")
    kernel.execute("c = 3")
    sources = [r["source"] for r in ledger_module.read_cells(ledger_path)]
    assert "a = 1" not in sources and "b = 2" not in sources and "c = 3" in sources


def test_sigkill_loses_at_most_the_running_cells_last_seconds(ledger_path):
    kernel = Kernel(ledger_path, {"CARBON_MAGIC_INTERVAL": "0.5"})
    try:
        kernel.execute("%load_ext carbon_magic")
        kernel.execute("done = 1")
        kernel.client.execute(BUSY.format(s=60))
        time.sleep(5)
        os.kill(kernel.manager.provisioner.process.pid, signal.SIGKILL)
        time.sleep(0.5)
    finally:
        kernel.shutdown()
    conn = sqlite3.connect(ledger_path)
    conn.row_factory = sqlite3.Row
    assert [r["source"] for r in ledger_module.read_cells(conn)][-1] == "done = 1"
    beat = ledger_module.latest_heartbeat(conn, kernel.kernel_id)
    assert beat is not None and beat["running_cell"].startswith("import time")
    # The heartbeat carries the running cell's energy up to a few seconds before the kill.
    assert beat["at"] - beat["running_cell_started_at"] >= 2.0
    assert beat["energy_kwh"] > 0


def latest_beat(ledger_path: str, kernel_id: str) -> dict | None:
    conn = sqlite3.connect(ledger_path)
    conn.row_factory = sqlite3.Row
    try:
        beat = ledger_module.latest_heartbeat(conn, kernel_id)
        return dict(beat) if beat is not None else None
    finally:
        conn.close()


def wait_for_beat(ledger_path: str, kernel_id: str, predicate, timeout_s: float) -> dict:
    """The first latest heartbeat that satisfies ``predicate`` within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        beat = latest_beat(ledger_path, kernel_id)
        if beat is not None and predicate(beat):
            return beat
        assert time.monotonic() < deadline, f"no such heartbeat in {timeout_s} s: {beat}"
        time.sleep(0.05)


def test_an_idle_kernel_beats_seldom_and_a_cell_shows_within_two_seconds(kernel, ledger_path):
    """Idle, the tracker sleeps its idle tick and its heartbeat says so; a cell starting
    and ending reaches the ledger (and so the status bar) within 2 s each."""
    kernel.execute("%load_ext carbon_magic")
    kernel.execute("x = 1")
    idle = wait_for_beat(
        ledger_path, kernel.kernel_id, lambda b: b["running_cell"] is None, timeout_s=5
    )
    assert idle["next_beat_s"] == 30.0  # the idle tick
    kernel.client.execute("import time; time.sleep(4)")
    started = time.monotonic()
    busy = wait_for_beat(
        ledger_path, kernel.kernel_id, lambda b: b["running_cell"] is not None, timeout_s=2
    )
    assert time.monotonic() - started < 2.0
    assert busy["running_cell"].startswith("import time")
    assert busy["next_beat_s"] == HEARTBEAT_MIN_S  # a beat each second while a cell runs
    ended = wait_for_beat(
        ledger_path,
        kernel.kernel_id,
        lambda b: b["running_cell"] is None and b["at"] > busy["at"],
        timeout_s=4 + 2,
    )
    assert ended["next_beat_s"] == 30.0 and ended["at"] - busy["running_cell_started_at"] < 4 + 2


def test_two_kernels_write_one_ledger(ledger_path):
    kernels = [Kernel(ledger_path, {"CARBON_MAGIC_INTERVAL": "0.2"}) for _ in range(2)]
    try:
        for k in kernels:
            k.execute("%load_ext carbon_magic")
        # Sixty cells queued in each kernel at once: both write as fast as they run.
        ids = [{k.client.execute(f"v = {i}") for i in range(60)} for k in kernels]
        for k, pending in zip(kernels, ids, strict=True):
            while pending:
                reply = k.client.get_shell_msg(timeout=60)
                if reply["parent_header"].get("msg_id") in pending:
                    assert reply["content"]["status"] == "ok"
                    pending.discard(reply["parent_header"]["msg_id"])
        warnings = [k.execute("%carbon status").text for k in kernels]
    finally:
        for k in kernels:
            k.shutdown()
    rows = ledger_module.read_cells(ledger_path)
    for k in kernels:
        mine = [r for r in rows if r["kernel_id"] == k.kernel_id and r["source"].startswith("v = ")]
        assert len(mine) == 60
    assert all("locked" not in text for text in warnings)


def test_loaded_from_ipython_config(tmp_path, ledger_path):
    profile = tmp_path / "ipython"
    (profile / "profile_default").mkdir(parents=True)
    (profile / "profile_default" / "ipython_config.py").write_text(
        "c.InteractiveShellApp.extensions = ['carbon_magic']\nc.CarbonMagics.pue = 1.25\n"
    )
    kernel = Kernel(ledger_path, {"IPYTHONDIR": str(profile)})
    try:
        run = kernel.execute("import carbon_magic; carbon_magic.current_settings()['pue']")
        assert run.result == "1.25"
        kernel.execute("w = 5")
    finally:
        kernel.shutdown()
    assert [r for r in ledger_module.read_cells(ledger_path) if r["source"] == "w = 5"]


def test_tracker_faults_never_break_a_cell(kernel):
    kernel.execute("%load_ext carbon_magic")
    kernel.execute(
        "import carbon_magic.kernel.panel as _panel, carbon_magic.engine.tracker as _tracker\n"
        "def _boom(*args, **kwargs):\n"
        "    raise RuntimeError('panel broke')\n"
        "_panel.Panel.show = _boom"
    )
    shown = kernel.execute("%%carbon --name fragile\n40 + 2")
    assert shown.reply["content"]["status"] == "ok" and shown.result == "42"
    kernel.execute("_tracker.Tracker.end = _boom")
    ended = kernel.execute("%%carbon --quiet\n'still runs'")
    assert ended.result == "'still runs'"
    auto = kernel.execute("7 * 6")
    assert auto.result == "42" and not auto.error
    status = kernel.execute("%carbon status").text
    assert "could not start measuring" in status and "panel broke" in status
    assert "recording failed" in status
