"""Nothing recorded is lost or hidden while another process holds the ledger's write lock
(a clean exit, a ledger switch, reports): real kernels, a real lock holder in another process."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carbon_magic.ledger import Ledger, read_cells, read_sessions

from .kernels import WAIT_FOR_REPORTS, Kernel

pytestmark = pytest.mark.kernel

HOLDER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
conn.execute("COMMIT")
"""


class LockHolder:
    """Another process holding an exclusive lock on the ledger until released."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


def test_clean_exit_while_locked_keeps_every_record_and_ends_the_session(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    kernel = Kernel(str(path), {"CARBON_MAGIC_INTERVAL": "0.5"})
    holder = None
    try:
        assert kernel.execute("%load_ext carbon_magic").reply["content"]["status"] == "ok"
        kernel.execute("warmup = 1")
        holder = LockHolder(path)
        for i in range(6):
            started = time.monotonic()
            run = kernel.execute(f"value_{i} = {i} * 7")
            assert run.reply["content"]["status"] == "ok"
            assert time.monotonic() - started < 2.0  # the cell never waits out the lock
        kernel.client.stop_channels()
        kernel.manager.shutdown_kernel(now=False)  # a normal shutdown request
        assert not kernel.manager.is_alive()
    finally:
        kernel.shutdown()
        if holder is not None:
            holder.release()

    on_disk = {row["source"] for row in read_cells(path)}
    assert not any(f"value_{i} = {i} * 7" in on_disk for i in range(6))
    [journal] = path.parent.glob("ledger.sqlite3.pending-*.json")
    assert (os.stat(journal).st_mode & 0o777) == 0o600

    # The next writer of the ledger (a kernel starting) imports it, exactly once.
    for uuid in ("next-1", "next-2"):
        with Ledger(path) as later:
            later.open_session(
                session_uuid=uuid,
                kernel_id=None,
                notebook_path=None,
                host="box",
                pid=1,
                started_at=time.time(),
                interval_s=1.0,
                mode="process",
                hardware={},
                methods={},
                settings={},
                intensity_source="static",
                intensity_g_per_kwh=50.0,
            )
    sources = [row["source"] for row in read_cells(path)]
    for i in range(6):
        assert sources.count(f"value_{i} = {i} * 7") == 1
    recorded = [s for s in sources if s and s.startswith("value_")]
    assert recorded == [f"value_{i} = {i} * 7" for i in range(6)]  # in order
    assert not list(path.parent.glob("ledger.sqlite3.pending-*"))
    [session] = read_sessions(path, kernel_id=kernel.kernel_id)
    assert session["ended_at"] is not None and session["tracker_state"] == "stopped"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM meta WHERE key LIKE 'journal:%'").fetchone()[0]


def test_switching_ledger_while_records_are_pending_carries_them(tmp_path):
    old_path, new_path = tmp_path / "old.sqlite3", tmp_path / "new.sqlite3"
    kernel = Kernel(str(old_path), {"CARBON_MAGIC_INTERVAL": "0.5"})
    holder = None
    try:
        kernel.execute("%load_ext carbon_magic")
        holder = LockHolder(old_path)
        for i in range(4):
            kernel.execute(f"pending_{i} = {i}")
        switch = kernel.execute(f"%carbon config ledger={new_path}")
        assert switch.reply["content"]["status"] == "ok", switch.text
        assert "lost" not in switch.text
        kernel.execute("after_switch = 1")
        status = kernel.execute("%carbon status").text
        assert f"ledger: ok: {new_path}" in status
    finally:
        kernel.shutdown()
        if holder is not None:
            holder.release()
    sources = [row["source"] for row in read_cells(new_path)]
    expected = [f"pending_{i} = {i}" for i in range(4)]
    assert [s for s in sources if s.startswith("pending_")] == expected
    assert "after_switch = 1" in sources
    assert not any((row["source"] or "").startswith("pending_") for row in read_cells(old_path))


def test_reports_and_exports_include_pending_records_and_say_so(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    kernel = Kernel(str(path), {"CARBON_MAGIC_INTERVAL": "0.5"})
    holder = None
    try:
        kernel.execute("%load_ext carbon_magic")
        for i in range(3):
            kernel.execute(f"written_{i} = {i}")
        holder = LockHolder(path)
        for i in range(6):
            kernel.execute(f"pending_{i} = {i}")
        report = kernel.execute(WAIT_FOR_REPORTS + "%carbon report").text
        target = tmp_path / "cells.json"
        export = kernel.execute(f"%carbon export {target} --format json").text
    finally:
        kernel.shutdown()
        if holder is not None:
            holder.release()
    # 3 written, 6 pending (the report cell itself is recorded after it ran)
    assert "Total: 9 cells" in report, report
    assert "6 cells are included but not yet written to the ledger" in report
    assert "wrote 10 records" in export and "not yet written to the ledger" in export
    records = json.loads(target.read_text())["records"]
    assert sum(1 for r in records if (r.get("source") or "").startswith("pending_")) == 6


def test_the_kernel_keeps_a_bounded_number_of_records_and_the_ledger_all(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    kernel = Kernel(str(path), {"CARBON_MAGIC_INTERVAL": "0.5"})
    try:
        kernel.execute("%load_ext carbon_magic")
        run = kernel.execute(
            "from carbon_magic.kernel.kernel_session import RECORDS_KEPT\n"
            "from carbon_magic.kernel.magics import current_magics\n"
            "from carbon_magic.engine.measurement import Measurement\n"
            "_m = current_magics().session\n"
            "for _i in range(RECORDS_KEPT + 500):\n"
            "    _m.record(Measurement(name=f'n{_i}', duration_s=0.01), via='api')\n"
            "print(len(_m.records), _m.records.maxlen, _m.records[-1].name, _m.last.name)"
        )
        assert run.text.split() == ["1000", "1000", "n1499", "n1499"], run.text
        report = kernel.execute(WAIT_FOR_REPORTS + "%carbon report --top 1").text
        status = kernel.execute("%carbon status").text
    finally:
        kernel.shutdown()
    assert sum(1 for row in read_cells(path) if row["via"] == "api") == 1500
    assert re.search(r"Total: 150\d cells", report), report  # all, from the ledger
    assert re.search(r"150\d cells recorded", status), status


def test_secret_settings_never_reach_the_ledger_file(tmp_path):
    path = tmp_path / "private" / "ledger.sqlite3"
    kernel = Kernel(str(path), {"CARBON_MAGIC_INTERVAL": "0.5"})
    try:
        kernel.execute("%load_ext carbon_magic")
        kernel.execute('options = dict(electricitymaps_token="tok-4f9a2c", t=1)\nt = 2')
        kernel.execute("%carbon config electricitymaps_token=tok-4f9a2c")
        kernel.execute("%carbon config electricitymaps_token=")
    finally:
        kernel.shutdown()
    sources = [row["source"] for row in read_cells(path)]
    assert 'options = dict(electricitymaps_token="***", t=1)' in sources
    assert "%carbon config electricitymaps_token=***" in sources
    for name in (path.name, f"{path.name}-wal"):
        data = (path.parent / name).read_bytes() if (path.parent / name).exists() else b""
        assert b"tok-4f9a2c" not in data
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_warnings_as_errors_at_load_never_turn_the_ledger_off(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the ledger's folder should be")
    path = blocker / "ledger.sqlite3"
    kernel = Kernel(str(path), {"CARBON_MAGIC_INTERVAL": "0.5"})
    try:
        kernel.execute("import warnings\nwarnings.simplefilter('error')")  # pytest -W error
        load = kernel.execute("%load_ext carbon_magic")
        assert load.reply["content"]["status"] == "ok", load.text
        kernel.execute("before_fix = 1")
        blocker.unlink()  # the folder can be made now
        kernel.execute("after_fix = 2")
        deadline = time.monotonic() + 20  # the first retry comes after a 5 s back-off
        while time.monotonic() < deadline:
            status = kernel.execute("%carbon status").text
            if f"ledger: ok: {path}" in status and "pending" not in status:
                break
            time.sleep(0.5)
        assert f"ledger: ok: {path}" in status, status
    finally:
        kernel.shutdown()
    sources = {row["source"] for row in read_cells(path)}
    assert {"before_fix = 1", "after_fix = 2"} <= sources
