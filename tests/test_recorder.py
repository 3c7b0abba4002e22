"""The recorder: ``measure()`` windows of scripts reach the ledger; one session per process."""

import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import pytest

from carbon_magic import ledger as ledger_module
from carbon_magic.engine.measurement import Measurement
from carbon_magic.engine.tracker import Tracker
from carbon_magic.engine.wake import IDLE_TICK_S
from carbon_magic.engine.windows import LiveReading
from carbon_magic.kernel.recorder import HEARTBEAT_MIN_S, Recorder

from .kernels import Kernel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import sys
    import carbon_magic

    carbon_magic.configure(ledger=sys.argv[1], country="FR")
    with carbon_magic.measure("fit") as m:
        sum(range(10**6))
    with carbon_magic.measure("not-recorded", record=False):
        pass
    try:
        with carbon_magic.measure("boom"):
            1 / 0
    except ZeroDivisionError:
        print("raised on")
    print(m.name, m.duration_s > 0)
    """
)


def run_script(tmp_path, ledger, script=SCRIPT):
    path = tmp_path / "train.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("JPY_SESSION_NAME", None)
    return subprocess.run(
        [sys.executable, str(path), str(ledger)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )


def test_a_scripts_windows_are_in_the_ledger_via_api(tmp_path):
    ledger = tmp_path / "ledger.sqlite3"
    done = run_script(tmp_path, ledger)
    assert "raised on" in done.stdout and "fit True" in done.stdout
    rows = ledger_module.read_cells(ledger)
    assert [(r["name"], r["via"], r["status"]) for r in rows] == [
        ("fit", "api", "ok"),
        ("boom", "api", "error"),
    ]
    assert rows[0]["duration_s"] > 0 and rows[0]["emissions_g"] > 0
    assert "FR" in rows[0]["intensity_source"]
    [session] = ledger_module.read_sessions(ledger)
    assert session["kernel_id"] is None
    assert session["notebook_path"] == str(tmp_path / "train.py")
    assert session["tracker_state"] == "stopped" and session["ended_at"] is not None
    report = subprocess.run(
        [sys.executable, "-m", "carbon_magic.cli", "report", "--ledger", str(ledger)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert report.returncode == 0, report.stderr
    assert "fit" in report.stdout and "boom" in report.stdout
    assert "not-recorded" not in report.stdout


def test_two_scripts_are_two_sessions(tmp_path):
    ledger = tmp_path / "ledger.sqlite3"
    run_script(tmp_path, ledger)
    run_script(tmp_path, ledger)
    rows = ledger_module.read_cells(ledger)
    assert len({r["session_uuid"] for r in rows}) == 2 and len(rows) == 4


@pytest.mark.kernel
def test_a_window_inside_a_recorded_cell_is_recorded_once(tmp_path):
    ledger = str(tmp_path / "ledger.sqlite3")
    kernel = Kernel(ledger, {"CARBON_MAGIC_INTERVAL": "0.5", "JPY_SESSION_NAME": ""})
    try:
        kernel.execute("%load_ext carbon_magic")
        run = kernel.execute(
            "import carbon_magic\nwith carbon_magic.measure('inner'):\n    sum(range(10**5))"
        )
        assert run.reply["content"]["status"] == "ok", run.text
        kernel.execute("%unload_ext carbon_magic")
        # Without the extension the kernel is like a script: its windows are recorded.
        kernel.execute("with carbon_magic.measure('outside'):\n    pass")
    finally:
        kernel.shutdown()
    rows = ledger_module.read_cells(ledger)
    [outside] = [r for r in rows if r["via"] == "api"]
    assert outside["name"] == "outside" and outside["notebook_path"] is None
    assert any((r["source"] or "").startswith("import carbon_magic") for r in rows)


def test_recorder_writes_session_cells_heartbeats_and_ends(tmp_path):
    tracker = Tracker()
    tracker.settings.update(ledger=str(tmp_path / "a.sqlite3"))
    notices: list[str] = []
    recorder = Recorder(tracker, kernel_id="k1", notebook_path="n.ipynb", notice=notices.append)
    recorder.record_cell(Measurement(name="one", duration_s=0.5), via="magic", budget="5g")
    tracker.start()
    try:
        recorder.set_running_cell("x = 1")
        recorder.write_heartbeat()
        recorder.set_running_cell(None)
        tick = LiveReading(datetime.now(timezone.utc), {"cpu": 3.0}, tracker.session())
        recorder.on_tick(tick)  # the cell ended: a beat at once
        recorder.on_tick(tick)  # within the period: none
    finally:
        tracker.stop()
    rows, pending = recorder.cells()
    assert [(r["name"], r["via"], r["budget"]) for r in rows] == [("one", "magic", "5g")]
    assert pending == 0 and recorder.status().startswith("ok: ")
    # A new ledger path moves the session there; the old file keeps what it has.
    tracker.settings.update(ledger=str(tmp_path / "b.sqlite3"))
    recorder.settings_changed({"ledger": str(tmp_path / "b.sqlite3")})
    recorder.record_cell(Measurement(name="two", duration_s=0.1), via="api")
    recorder.end_session()
    recorder.record_cell(Measurement(name="late"), via="api")  # after the end: ignored
    assert notices == []
    [session] = ledger_module.read_sessions(tmp_path / "b.sqlite3")
    assert session["kernel_id"] == "k1" and session["ended_at"] is not None
    assert [r["name"] for r in ledger_module.read_cells(tmp_path / "b.sqlite3")] == ["two"]
    assert [r["name"] for r in ledger_module.read_cells(tmp_path / "a.sqlite3")] == ["one"]
    with ledger_module.connect_readonly(tmp_path / "a.sqlite3") as conn:
        beats = conn.execute(
            "SELECT running_cell, cpu_w, next_beat_s, ledger_bytes FROM heartbeats ORDER BY at"
        ).fetchall()
    assert [tuple(b)[0] for b in beats] == ["x = 1", None] and beats[1]["cpu_w"] == 3.0
    # Each beat says when the next is due: soon while a cell runs, the idle tick after.
    assert beats[0]["next_beat_s"] == HEARTBEAT_MIN_S
    assert beats[1]["next_beat_s"] == IDLE_TICK_S == tracker.longest_sleep_s()
    # Each beat says how large the ledger file was as it was written.
    size = (tmp_path / "a.sqlite3").stat().st_size
    assert all(0 < beat["ledger_bytes"] <= size for beat in beats)


def test_a_ledger_that_cannot_be_opened_is_one_notice_and_nothing_raises(tmp_path):
    tracker = Tracker()
    tracker.settings.update(ledger=str(tmp_path / "l.sqlite3"))
    notices: list[str] = []

    def broken_hardware():
        raise OSError("no hardware today")

    tracker.hardware = broken_hardware  # the session row cannot be built
    recorder = Recorder(tracker, notice=notices.append)
    assert recorder.ledger is None and recorder.status() == "unavailable"
    recorder.record_cell(Measurement(name="kept"), via="api")
    recorder.write_heartbeat()
    recorder.end_session()
    assert recorder.cells() == ([], 0)
    assert len(notices) == 1 and "no hardware today" in notices[0]


def test_ticks_an_interval_apart_each_beat_while_a_cell_runs(tmp_path, monkeypatch):
    """The tracker ticks about an interval apart, sometimes a little less: each tick of
    a running cell beats, so the status bar is never two intervals behind."""
    tracker = Tracker()
    tracker.settings.update(ledger=str(tmp_path / "a.sqlite3"), interval=1.0)
    recorder = Recorder(tracker, kernel_id="k1", notice=lambda _: None)
    clock = [1000.0]
    monkeypatch.setattr("carbon_magic.kernel.recorder.time.monotonic", lambda: clock[0])
    recorder.set_running_cell("fit()")
    tick = LiveReading(datetime.now(timezone.utc), {"cpu": 3.0}, tracker.session())
    for step in (0.0, 0.97, 0.98, 0.96):  # the cell's start, then three ticks
        clock[0] += step
        recorder.on_tick(tick)
    recorder.on_tick(tick)  # at once again: no beat
    with ledger_module.connect_readonly(tmp_path / "a.sqlite3") as conn:
        beats = conn.execute("SELECT running_cell FROM heartbeats").fetchall()
    assert [b[0] for b in beats] == ["fit()"] * 4
