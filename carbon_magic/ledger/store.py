"""What the writer has recorded but not yet committed, and how it is committed.

:class:`PendingStore` keeps the sessions, cells and heartbeats recorded in this process
until one transaction writes them (:meth:`PendingStore._flush`, called by
:class:`~carbon_magic.ledger.connection.LedgerFile` when the file can be written), or a
closing writer puts them in a journal (:meth:`PendingStore._journal_pending`). Callers
hold the writer's lock. Units as in :mod:`carbon_magic.ledger.tables`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import deque
from pathlib import Path
from typing import Any

from carbon_magic.ledger.cluster import insert_cell
from carbon_magic.ledger.connection import RETRY_AFTER_S, LedgerFile
from carbon_magic.ledger.housekeeping import (
    HEARTBEAT_KEEP_S,
    PRUNE_EVERY_S,
    prune_all_heartbeats,
    prune_session_heartbeats,
)
from carbon_magic.ledger.journal import import_journals, write_journal
from carbon_magic.ledger.remote_calls import pending_remote_share
from carbon_magic.ledger.rows import SessionState, write_session
from carbon_magic.ledger.schema import Transaction, describe_error
from carbon_magic.ledger.tables import INSERT_HEARTBEAT

__all__ = ["MAX_PENDING_CELLS", "MAX_PENDING_HEARTBEATS", "PendingStore"]

MAX_PENDING_CELLS = 10_000  # bound on memory while the file cannot be written
MAX_PENDING_HEARTBEATS = 1_000


class PendingStore(LedgerFile):
    """Records waiting for the file: sessions by uuid, then cells and heartbeats as
    ``(session_uuid, row)`` in the order recorded (rows as in :mod:`carbon_magic.ledger.
    rows`). ``path``, ``busy_timeout_s``, ``retry_after_s``: as for LedgerFile."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        busy_timeout_s: float,
        retry_after_s: float = RETRY_AFTER_S,
    ) -> None:
        super().__init__(path, busy_timeout_s=busy_timeout_s, retry_after_s=retry_after_s)
        self._sessions: dict[str, SessionState] = {}
        self._session_ids: dict[str, int] = {}  # session_uuid → sessions.id in this file
        self._cells: list[tuple[str, dict[str, Any]]] = []  # pending (session_uuid, row)
        self._heartbeats: deque[tuple[str, dict[str, Any]]] = deque(maxlen=MAX_PENDING_HEARTBEATS)
        self._last_prune: dict[str, float] = {}
        self._housekeeping_done = False
        self._journals_done = False

    def _on_connect(self) -> None:
        self._session_ids.clear()
        for session in self._sessions.values():
            session.dirty = True  # the file may be new or restored: write every session

    def _has_pending(self) -> bool:
        return bool(
            self._cells or self._heartbeats or any(s.dirty for s in self._sessions.values())
        )

    def _flush(self, conn: sqlite3.Connection) -> None:
        """One transaction: journals left by earlier writers, sessions, then cells, then
        heartbeats; clears what it wrote."""
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

    def _journal_pending(self) -> None:
        """Keep what cannot be written in a journal beside the ledger (or report it lost).
        Caller holds the lock."""
        count = len(self._cells) + len(self._heartbeats)
        reason = self._reason or "the ledger is locked"
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

    def _pending_cell_rows(
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
