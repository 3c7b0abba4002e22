"""What the writer has recorded but not yet committed, and how it is committed.

:class:`PendingStore` applies the queued operations (:mod:`carbon_magic.ledger.
operations`) and keeps the sessions, cells and heartbeats recorded in this process until
one transaction writes them (:meth:`PendingStore.commit`, which the writer hands to
:meth:`~carbon_magic.ledger.connection.LedgerFile.write` when the file can be written),
or a closing writer puts them in a journal (:meth:`PendingStore.journal`). It knows no
file connection of its own: any connection to a migrated ledger will do. Not
thread-safe by itself: callers hold the writer's lock. Units as in
:mod:`carbon_magic.ledger.tables`.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbon_magic.engine.measurement import Measurement
from carbon_magic.ledger.cluster import insert_cell
from carbon_magic.ledger.housekeeping import (
    HEARTBEAT_KEEP_S,
    PRUNE_EVERY_S,
    prune_all_heartbeats,
    prune_session_heartbeats,
)
from carbon_magic.ledger.journal import import_journals, write_journal
from carbon_magic.ledger.operations import (
    OpenSession,
    RecordCell,
    RecordHeartbeat,
    UpdateSession,
    not_an_operation,
)
from carbon_magic.ledger.remote_calls import pending_remote_share
from carbon_magic.ledger.rows import SessionState, placeholder_session, write_session
from carbon_magic.ledger.schema import Transaction, describe_error
from carbon_magic.ledger.tables import INSERT_HEARTBEAT

__all__ = ["MAX_PENDING_CELLS", "MAX_PENDING_HEARTBEATS", "PendingBatch", "PendingStore"]

MAX_PENDING_CELLS = 10_000  # bound on memory while the file cannot be written
MAX_PENDING_HEARTBEATS = 1_000


@dataclass
class PendingBatch:
    """Records taken out of one store for another (:meth:`PendingStore.take_all`):
    sessions by uuid, cells and heartbeats as ``(session_uuid, row)`` in order."""

    sessions: dict[str, SessionState] = field(default_factory=dict)
    cells: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    heartbeats: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class PendingStore:
    """Records waiting for the ledger file at ``ledger_path``: sessions by uuid, then
    cells and heartbeats as ``(session_uuid, row)`` in the order recorded (rows as in
    :mod:`carbon_magic.ledger.rows`). ``warn(kind, message)`` hears of records dropped,
    journals written or lost, and journals that could not be imported (once per kind is
    the caller's choice: :meth:`~carbon_magic.ledger.connection.LedgerFile.warn`)."""

    def __init__(self, ledger_path: Path, warn: Callable[[str, str], None]) -> None:
        self.path = ledger_path
        self._warn = warn
        self._sessions: dict[str, SessionState] = {}
        self._session_ids: dict[str, int] = {}  # session_uuid → sessions.id in this file
        self._cells: list[tuple[str, dict[str, Any]]] = []  # pending (session_uuid, row)
        self._heartbeats: deque[tuple[str, dict[str, Any]]] = deque(maxlen=MAX_PENDING_HEARTBEATS)
        self._last_prune: dict[str, float] = {}
        self._housekeeping_done = False
        self._journals_done = False

    # recording ----------------------------------------------------------------------

    def apply(self, operation: object) -> None:
        """Apply one operation, matched by its type (one of :data:`~carbon_magic.ledger.
        operations.OPERATION_TYPES`); the oldest cells beyond MAX_PENDING_CELLS are
        dropped. Raises TypeError, naming the valid types, for anything else, and
        nothing changes then."""
        # The records of every cell and beat come this way: the frequent kinds first.
        if isinstance(operation, RecordHeartbeat):
            self._session(operation.session_uuid, None)
            self._heartbeats.append((operation.session_uuid, operation.row))
        elif isinstance(operation, RecordCell):
            self._session(operation.session_uuid, operation.measurement)
            self._cells.append((operation.session_uuid, operation.row))
            self._bound_pending()
        elif isinstance(operation, UpdateSession):
            session = self._session(operation.session_uuid, None)
            session.row.update(operation.fields)
            session.changes.update(operation.fields)
            session.dirty = True
        elif isinstance(operation, OpenSession):
            self._sessions[operation.session_uuid] = SessionState(row=operation.row, opened=True)
        else:
            raise not_an_operation(operation)

    def _session(self, uuid: str, m: Measurement | None) -> SessionState:
        """The session ``uuid``, a placeholder made from ``m`` when it was never opened."""
        session = self._sessions.get(uuid)
        if session is None:
            session = self._sessions[uuid] = SessionState(placeholder_session(uuid, m), False)
        return session

    def has_pending(self) -> bool:
        """True while anything recorded is not yet in the file."""
        return bool(
            self._cells or self._heartbeats or any(s.dirty for s in self._sessions.values())
        )

    def cell_count(self) -> int:
        """How many recorded cells are not yet in the file."""
        return len(self._cells)

    def session_id(self, session_uuid: str) -> int | None:
        """The ``sessions.id`` of ``session_uuid`` in the file, once it is written."""
        return self._session_ids.get(session_uuid)

    # committing ---------------------------------------------------------------------

    def reconnected(self) -> None:
        """A connection opened: the file may be new or restored, so every session is
        written again with the next commit."""
        self._session_ids.clear()
        for session in self._sessions.values():
            session.dirty = True

    def commit(self, conn: sqlite3.Connection) -> None:
        """One transaction on ``conn``: journals left by earlier writers, sessions, then
        cells, then heartbeats; clears what it wrote. Raises sqlite3.Error or OSError,
        and then everything stays pending."""
        ids = dict(self._session_ids)
        imported: list[Path] = []
        with Transaction(conn):
            if not self._housekeeping_done:
                prune_all_heartbeats(conn, time.time() - HEARTBEAT_KEEP_S)
            if not self._journals_done:
                imported = import_journals(conn, self.path, self._warn)
            for uuid, session in self._sessions.items():
                if session.dirty or uuid not in ids:
                    ids[uuid] = write_session(conn, session)
            for uuid, row in self._cells:
                kernel_id = self._sessions[uuid].row["kernel_id"]
                insert_cell(conn, {**row, "session_id": ids[uuid], "kernel_id": kernel_id})
            for uuid, row in self._heartbeats:
                self._write_heartbeat(conn, ids[uuid], uuid, row)
        # Only after COMMIT: a rolled-back transaction leaves everything pending.
        self._session_ids = ids
        self._housekeeping_done = True
        self._journals_done = True
        for session in self._sessions.values():
            session.dirty = False
            session.changes.clear()
        self._cells.clear()
        self._heartbeats.clear()
        for path in imported:
            try:
                path.unlink()
            except OSError:
                pass  # imported already (its id is in meta): a later writer removes it

    # journals -----------------------------------------------------------------------

    def journal(self, reason: str | None) -> None:
        """Keep what cannot be written (``reason``, in words; None: the ledger is locked)
        in a journal beside the ledger, or report it lost."""
        count = len(self._cells) + len(self._heartbeats)
        reason = reason or "the ledger is locked"
        try:
            target = write_journal(
                self.path,
                (
                    {"row": s.row, "opened": s.opened, "changes": s.changes}
                    for s in self._sessions.values()
                ),
                self._cells,
                self._heartbeats,
            )
        except (OSError, TypeError, ValueError) as exc:
            self._warn(
                "lost",
                f"{count} pending record(s) could not be written ({reason}) and are lost: "
                f"no journal either ({describe_error(exc)})",
            )
            return
        self._warn(
            "journal-written",
            f"{count} pending record(s) could not be written ({reason}); kept in "
            f"{target.name}, written to the ledger by the next kernel that uses it",
        )
        for session in self._sessions.values():
            session.dirty = False
            session.changes.clear()
        self._session_ids.clear()  # rewritten (with their journal state) if used again
        self._cells.clear()
        self._heartbeats.clear()

    def _write_heartbeat(
        self, conn: sqlite3.Connection, session_id: int, uuid: str, row: dict[str, Any]
    ) -> None:
        kernel_id = self._sessions[uuid].row["kernel_id"]
        cursor = conn.execute(
            INSERT_HEARTBEAT, {**row, "session_id": session_id, "kernel_id": kernel_id}
        )
        # Pruning on every beat would be wasted work; once a minute (of heartbeat time) is
        # enough to keep the table small. The row just written is always kept.
        last = self._last_prune.get(uuid)
        if last is None or row["at"] - last >= PRUNE_EVERY_S:
            prune_session_heartbeats(
                conn, session_id, row["at"] - HEARTBEAT_KEEP_S, keep_id=cursor.lastrowid
            )
            self._last_prune[uuid] = row["at"]

    def pending_cell_rows(
        self, session_uuid: str | None, since: float | None
    ) -> list[dict[str, Any]]:
        """The pending cells as rows that :func:`~carbon_magic.ledger.read.read_cells`
        gives, of session ``session_uuid`` (None: all) started at or after ``since``."""
        return [
            {
                **row,
                "session_uuid": uuid,
                "kernel_id": self._sessions[uuid].row["kernel_id"],
                "notebook_path": self._sessions[uuid].row["notebook_path"],
                "host": self._sessions[uuid].row["host"],
                **pending_remote_share(row),
            }
            for uuid, row in self._cells
            if (session_uuid is None or uuid == session_uuid)
            and (since is None or row["started_at"] >= since)
        ]

    def _bound_pending(self) -> None:
        """Drop the oldest pending cells beyond MAX_PENDING_CELLS (memory is finite)."""
        excess = len(self._cells) - MAX_PENDING_CELLS
        if excess > 0:
            del self._cells[:excess]
            self._warn(
                "dropped",
                f"more than {MAX_PENDING_CELLS} cells pending; the oldest are being dropped",
            )

    # handing over -------------------------------------------------------------------

    def take_all(self) -> PendingBatch:
        """Take every record not yet written out of this store (sessions as copies, left
        known here and no longer dirty), for :meth:`put_first` of another."""
        for session in self._sessions.values():
            session.dirty = False
            session.changes.clear()
        # A copy is dirty, so written to the other file, with its row (every change so
        # far is in the row) and no explicit changes of its own.
        batch = PendingBatch(
            sessions={
                uuid: SessionState(dict(session.row), session.opened)
                for uuid, session in self._sessions.items()
            },
            cells=list(self._cells),
            heartbeats=list(self._heartbeats),
        )
        self._cells.clear()
        self._heartbeats.clear()
        return batch

    def put_first(self, batch: PendingBatch) -> None:
        """Add ``batch`` ahead of what is pending here; sessions known here keep their
        own rows. The oldest cells beyond MAX_PENDING_CELLS are dropped."""
        for uuid, session in batch.sessions.items():
            if uuid not in self._sessions:
                self._sessions[uuid] = session
        self._cells[:0] = batch.cells
        for beat in reversed(batch.heartbeats):
            self._heartbeats.appendleft(beat)
        self._bound_pending()
