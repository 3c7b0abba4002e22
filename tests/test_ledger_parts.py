"""The ledger writer's parts on their own: typed operations, the pending store on any
connection, the background thread without a file, and the file with any transaction."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path

import pytest

from carbon_magic.ledger import Ledger, LedgerWarning, read_cells
from carbon_magic.ledger import schema as ledger_schema
from carbon_magic.ledger.connection import LedgerFile
from carbon_magic.ledger.operations import (
    OpenSession,
    RecordCell,
    RecordHeartbeat,
    UpdateSession,
)
from carbon_magic.ledger.rows import cell_row, heartbeat_row, session_fields, session_row
from carbon_magic.ledger.store import PendingStore
from carbon_magic.ledger.writer_thread import THREAD_NAME, WriterThread
from tests.test_ledger import T0, beat_values, measurement, session_values


def opened(uuid: str = "s1") -> OpenSession:
    return OpenSession(uuid, session_row(**session_values(uuid)))


def cell(i: int, uuid: str = "s1") -> RecordCell:
    m = measurement(i)
    return RecordCell(uuid, cell_row(m, via="auto", budget=None), m)


def beat(at: float, uuid: str = "s1") -> RecordHeartbeat:
    return RecordHeartbeat(uuid, heartbeat_row(**beat_values(at)))


def memory_ledger() -> sqlite3.Connection:
    """A migrated ledger that is no file at all."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    ledger_schema.migrate(conn)
    return conn


def apply_all(store: PendingStore, operations: list) -> None:
    for operation in operations:
        store.apply(operation)


def store_and_warnings(tmp_path: Path) -> tuple[PendingStore, list[tuple[str, str]]]:
    said: list[tuple[str, str]] = []
    return PendingStore(
        tmp_path / "ledger.sqlite3", lambda *kind_text: said.append(kind_text)
    ), said


# --- operations ------------------------------------------------------------------------


def test_operations_are_frozen_values():
    operation = UpdateSession("s1", session_fields({"tracker_state": "stopped"}))
    with pytest.raises(AttributeError):
        operation.session_uuid = "s2"  # type: ignore[misc]
    assert operation == UpdateSession("s1", {"tracker_state": "stopped"})


@pytest.mark.parametrize("bad", [("cell", "s1", {}), "beat", None])
def test_an_operation_of_an_unknown_type_is_refused_and_nothing_changes(tmp_path, bad):
    store, said = store_and_warnings(tmp_path)
    apply_all(store, [opened(), cell(0)])
    with pytest.raises(TypeError) as refused:
        store.apply(bad)
    message = str(refused.value)
    assert message.startswith(f"not a ledger operation: {type(bad).__name__};")
    assert "OpenSession, UpdateSession, RecordCell, RecordHeartbeat" in message
    assert "\n" not in message
    assert store.cell_count() == 1 and said == []
    assert [row["cell_id"] for row in store.pending_cell_rows(None, None)] == ["cell-0"]


# --- the pending store, on any connection ----------------------------------------------


def test_the_store_commits_typed_operations_in_order_to_a_ledger_that_is_no_file(tmp_path):
    store, said = store_and_warnings(tmp_path)
    conn = memory_ledger()
    apply_all(store, [cell(0, "s2"), opened(), cell(1), beat(T0.timestamp())])
    apply_all(store, [UpdateSession("s1", session_fields({"tracker_state": "stopped"}))])
    assert store.has_pending() and store.cell_count() == 2
    assert [row["cell_id"] for row in store.pending_cell_rows("s1", None)] == ["cell-1"]
    assert store.session_id("s1") is None

    store.commit(conn)

    assert not store.has_pending() and store.cell_count() == 0
    sessions = dict(conn.execute("SELECT session_uuid, tracker_state FROM sessions"))
    assert sessions == {"s1": "stopped", "s2": "running"}
    cells = conn.execute(
        "SELECT c.cell_id, s.session_uuid FROM cells c JOIN sessions s ON s.id = c.session_id"
        " ORDER BY c.id"
    ).fetchall()
    assert cells == [("cell-0", "s2"), ("cell-1", "s1")]
    assert conn.execute("SELECT count(*) FROM heartbeats").fetchone()[0] == 1
    assert (
        store.session_id("s1")
        == conn.execute("SELECT id FROM sessions WHERE session_uuid = 's1'").fetchone()[0]
    )
    assert said == []
    # A new connection may be a new file: every session is written again.
    store.reconnected()
    assert store.has_pending() and store.session_id("s1") is None


def test_a_failed_commit_leaves_everything_pending(tmp_path):
    store, _ = store_and_warnings(tmp_path)
    conn = memory_ledger()
    apply_all(store, [opened()])
    store.commit(conn)
    conn.execute("DROP TABLE heartbeats")  # the cell goes in, then the heartbeat fails
    apply_all(store, [cell(0), beat(T0.timestamp())])
    with pytest.raises(sqlite3.OperationalError):
        store.commit(conn)
    assert store.cell_count() == 1 and store.has_pending()
    assert conn.execute("SELECT count(*) FROM cells").fetchone()[0] == 0  # rolled back


def test_records_taken_from_one_store_go_first_in_another(tmp_path):
    old, _ = store_and_warnings(tmp_path / "old")
    new, _ = store_and_warnings(tmp_path / "new")
    apply_all(old, [opened(), cell(0), cell(1)])
    apply_all(new, [cell(2)])
    batch = old.take_all()
    assert not old.has_pending() and len(batch.cells) == 2
    new.put_first(batch)
    assert [row["cell_id"] for row in new.pending_cell_rows(None, None)] == [
        "cell-0",
        "cell-1",
        "cell-2",
    ]


# --- the background thread, without a file -----------------------------------------------


def test_the_writer_thread_commits_a_pending_store_without_a_file(tmp_path):
    store, _ = store_and_warnings(tmp_path)
    conn = memory_ledger()
    lock = threading.Lock()
    inbox: deque = deque()
    passes: list[str] = []

    def run_pass() -> float | None:
        passes.append(threading.current_thread().name)
        while inbox:
            store.apply(inbox.popleft())
        if store.has_pending():
            store.commit(conn)
        thread.end_backlog()
        return None  # until woken

    thread = WriterThread(run_pass, lock)
    assert not thread.is_running() and not thread.backlog
    inbox.extend([opened(), cell(0), cell(1)])
    thread.begin_backlog()
    assert thread.wait_idle(5.0)
    assert not thread.backlog and passes[0] == THREAD_NAME
    assert conn.execute("SELECT count(*) FROM cells").fetchone()[0] == 2

    inbox.append(cell(2))
    thread.begin_backlog()  # a running thread is only woken
    assert thread.wait_idle(5.0)
    assert conn.execute("SELECT count(*) FROM cells").fetchone()[0] == 3

    thread.stop()
    assert thread.stopping
    thread.finish_stop(5.0)
    assert not thread.is_running() and not thread.stopping
    done = len(passes)
    inbox.append(cell(3))
    thread.wake()
    time.sleep(0.1)
    assert len(passes) == done  # no pass after the thread ended
    assert store.cell_count() == 0 and list(inbox) == [cell(3)]


def test_the_writer_thread_comes_back_after_the_delay_a_pass_asks_for():
    lock = threading.Lock()
    times: list[float] = []
    plan: list[float | None] = []  # what the next passes ask for; then None

    def run_pass() -> float | None:
        times.append(time.monotonic())
        return plan.pop(0) if plan else None

    def passes_reach(n: int) -> None:
        deadline = time.monotonic() + 5.0
        while len(times) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(times) == n

    thread = WriterThread(run_pass, lock)
    thread.ensure_running()
    time.sleep(0.1)  # its first pass (or two: started, then woken) asked for nothing
    first = len(times)
    assert first >= 1
    plan[:] = [0.2]
    thread.wake()
    passes_reach(first + 2)
    assert times[first + 1] - times[first] >= 0.19  # not woken: after its delay
    time.sleep(0.3)
    assert len(times) == first + 2  # None: no pass until woken
    thread.wake()
    passes_reach(first + 3)
    with lock:  # a pass runs under the lock: none starts while the caller holds it
        thread.wake()
        time.sleep(0.1)
        assert len(times) == first + 3
    passes_reach(first + 4)
    thread.stop()
    thread.finish_stop(5.0)
    assert not thread.is_running()


# --- the file, with any transaction ----------------------------------------------------


def test_the_file_runs_any_transaction_and_backs_off_after_a_fault(tmp_path):
    path = tmp_path / "private" / "ledger.sqlite3"
    connected: list[bool] = []
    file = LedgerFile(
        path, busy_timeout_s=0.2, retry_after_s=0.3, on_connect=lambda: connected.append(True)
    )
    assert file.open() and connected == [True]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert file.connection is not None and file.reason is None

    file.write(lambda conn: conn.execute("CREATE TABLE notes (text)"))
    calls: list[int] = []

    def failing(conn: sqlite3.Connection) -> None:
        calls.append(1)
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.warns(LedgerWarning, match="keeping records in memory, retrying in 0.3 s"):
        file.write(failing)
    assert file.reason is not None and "disk I/O" in file.reason
    assert file.connection is None and file.usable_connection() is None
    file.write(failing)  # within the back-off: not tried
    assert calls == [1]
    file.write(lambda conn: None, force=True)  # forced: tried, reconnected, cleared
    assert file.reason is None and connected == [True, True]
    assert file.usable_connection() is file.connection
    file.close()
    assert file.connection is None
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 0


def test_a_folder_is_refused_as_the_file(tmp_path):
    with pytest.raises(ValueError, match="must be a file, not the folder"):
        LedgerFile(tmp_path, busy_timeout_s=0.2)


# --- the facade -------------------------------------------------------------------------


def test_the_facade_shows_its_connection_only_while_open(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path, busy_timeout_s=0.2)
    assert ledger.connection is not None
    assert ledger.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    ledger.record_cell("s1", measurement(0), via="auto")
    ledger.close()
    assert ledger.connection is None
    assert [row["cell_id"] for row in read_cells(path)] == ["cell-0"]
