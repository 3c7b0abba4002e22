"""What a closing kernel could not write reaches the readers: a closing writer keeps
trying the ledger for its whole wait, and the CLI and the server write journals into
the ledger before they read, so their cells count and the sessions they end read ended."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from carbon_magic.ledger import Ledger, LedgerWarning, read_cells, read_sessions
from carbon_magic.server.journals import JOURNAL_CHECK_S
from tests import test_server as server_tests
from tests.test_server import API, get_json

from .kernels import Kernel
from .test_ledger import measurement, open_session
from .test_ledger_faults_kernel import LockHolder

ledger_path = server_tests.ledger_path
builder = server_tests.builder
carbon_config = server_tests.carbon_config
jp_server_config = server_tests.jp_server_config
served = server_tests.served

KERNEL_ID = "5b0e3c52-6a4f-4e55-9d7f-0c1d2e3f4a5b"


def journal_of_an_ended_session(path: Path, n_cells: int = 3) -> Path:
    """A writer records a session and its cells and ends it while another process
    holds the lock through its close: all of it goes to a journal."""
    ledger = Ledger(path, busy_timeout_s=0.2, retry_after_s=0.1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        open_session(ledger, "closed", kernel_id=KERNEL_ID)
        for i in range(n_cells):
            ledger.record_cell("closed", measurement(i), via="auto")
        ledger.update_session("closed", tracker_state="stopped", ended_at=time.time())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LedgerWarning)
            ledger.close(0.1)
    finally:
        holder.execute("COMMIT")
        holder.close()
    [journal] = path.parent.glob(f"{path.name}.pending-*.json")
    return journal


def make_ledger(path: Path) -> None:
    with Ledger(path) as ledger:
        open_session(ledger, "earlier", kernel_id="k-earlier")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "carbon_magic.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_closing_writer_keeps_trying_the_ledger_until_its_time_is_up(tmp_path):
    blocker = tmp_path / "not-yet"
    blocker.write_text("a file where the ledger's folder will be")
    path = blocker / "ledger.sqlite3"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LedgerWarning)
        ledger = Ledger(path, retry_after_s=30.0)  # a long back-off, as after a long fault
        open_session(ledger)
        ledger.record_cell("s1", measurement(0), via="auto")
        assert ledger.status().startswith("in memory (1 pending)")

        def clear_the_way() -> None:
            time.sleep(0.3)
            blocker.unlink()

        clearing = threading.Thread(target=clear_the_way)
        clearing.start()
        started = time.monotonic()
        ledger.close(1.5)
        clearing.join()
    assert time.monotonic() - started < 1.5 + 0.5
    assert [row["source"] for row in read_cells(path)] == ["model.fit(x, y, epochs=0)"]
    assert not list(blocker.glob("*.pending-*"))


def test_the_cli_reports_journalled_cells_and_ends_their_sessions(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    make_ledger(path)
    journal = journal_of_an_ended_session(path)
    assert read_cells(path) == []

    report = cli("report", "--ledger", str(path))
    assert report.returncode == 0, report.stderr
    assert "Total: 3 cells" in report.stdout, report.stdout
    assert not journal.exists()
    [closed] = [s for s in read_sessions(path) if s["session_uuid"] == "closed"]
    assert closed["state"] == "stopped" and closed["ended_at"] is not None
    again = cli("report", "--ledger", str(path))
    assert "Total: 3 cells" in again.stdout  # imported once


async def test_the_server_answers_with_journalled_cells_and_ended_sessions(
    jp_fetch, jp_serverapp, builder, ledger_path, monkeypatch
):
    builder.session("k-earlier", started_at=time.time() - 60)
    journal_of_an_ended_session(ledger_path)
    monkeypatch.setattr(jp_serverapp.kernel_manager, "list_kernel_ids", lambda: [KERNEL_ID])

    # The server looks for journals at most every JOURNAL_CHECK_S (it read the ledger
    # once as it started): the kernel shows within that.
    deadline = time.monotonic() + JOURNAL_CHECK_S + 2
    while True:
        try:
            kernel = await get_json(jp_fetch, *API, "kernels", KERNEL_ID)
            break
        except HTTPClientError as error:
            if error.code != 404 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    page = await get_json(jp_fetch, *API, "kernels", KERNEL_ID, "cells")

    assert kernel["tracker_state"] == "stopped", kernel
    assert [cell["source"] for cell in page["cells"]] == [
        f"model.fit(x, y, epochs={i})" for i in range(3)
    ]
    assert not list(ledger_path.parent.glob("*.pending-*"))


@pytest.mark.kernel
def test_a_kernel_closed_while_locked_is_reported_whole_and_ended_by_the_cli(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    kernel = Kernel(str(path), {"CARBON_MAGIC_INTERVAL": "0.5"})
    holder = None
    try:
        assert kernel.execute("%load_ext carbon_magic").reply["content"]["status"] == "ok"
        holder = LockHolder(path)
        for i in range(20):
            kernel.execute(f"step_{i} = {i}")
        kernel.client.stop_channels()
        kernel.manager.shutdown_kernel(now=False)  # a clean exit while still locked
    finally:
        kernel.shutdown()
        if holder is not None:
            holder.release()
    assert list(path.parent.glob("ledger.sqlite3.pending-*.json"))
    env = {**os.environ, "CARBON_MAGIC_LEDGER": str(path)}
    report = subprocess.run(
        [sys.executable, "-m", "carbon_magic.cli", "report"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    sources = [row["source"] for row in read_cells(path)]
    assert [s for s in sources if s.startswith("step_")] == [f"step_{i} = {i}" for i in range(20)]
    [session] = read_sessions(path, kernel_id=kernel.kernel_id)
    assert session["state"] == "stopped" and session["ended_at"] is not None


@pytest.mark.kernel
def test_a_clean_exit_after_a_long_lock_writes_everything_to_the_ledger(tmp_path):
    """The writer faulted on the lock and backs off; the lock is let go; the kernel
    exits: the exit writes the ledger, not a journal."""
    path = tmp_path / "ledger.sqlite3"
    kernel = Kernel(str(path), {"CARBON_MAGIC_INTERVAL": "0.5"})
    holder = None
    try:
        assert kernel.execute("%load_ext carbon_magic").reply["content"]["status"] == "ok"
        holder = LockHolder(path)
        started, n = time.monotonic(), 0
        while time.monotonic() - started < 6.5:  # past the 5 s busy timeout: backing off
            kernel.execute(f"step_{n} = {n}")
            n += 1
        assert "in memory" in kernel.execute("%carbon status").text
        holder.release()
        kernel.client.stop_channels()
        kernel.manager.shutdown_kernel(now=False)
    finally:
        kernel.shutdown()
        if holder is not None:
            holder.release()
    assert not list(path.parent.glob("ledger.sqlite3.pending-*"))
    sources = [row["source"] for row in read_cells(path)]
    assert [s for s in sources if s.startswith("step_")] == [f"step_{i} = {i}" for i in range(n)]
    [session] = read_sessions(path, kernel_id=kernel.kernel_id)
    assert session["state"] == "stopped"
