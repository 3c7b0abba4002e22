"""The ledger's writer: every measured cell, session and heartbeat into one SQLite file.

One :class:`Ledger` (one writer connection) per kernel process, shared by the main thread
(cells) and the tracker thread (heartbeats). Several kernels may write the same file at
once: WAL mode, ``BEGIN IMMEDIATE`` and a busy timeout serialise them.

The writer never raises for file problems and never holds a cell up for more than
CELL_WAIT_S: a busy ledger's records are committed by a background writer, in order and
exactly once. :class:`Ledger` is the facade over three parts, each with its own job: the
file and its faults (:class:`~carbon_magic.ledger.connection.LedgerFile`), the records
not yet written and their transaction (:class:`~carbon_magic.ledger.store.PendingStore`,
fed typed :mod:`~carbon_magic.ledger.operations`), and the background thread
(:class:`~carbon_magic.ledger.writer_thread.WriterThread`). What cannot be written when
the writer closes goes to a journal beside the ledger (:mod:`carbon_magic.ledger.
journal`). The background writer also does the housekeeping that may take a while
(:mod:`carbon_magic.ledger.housekeeping`), so a cell never waits for it.

Units: times are UTC seconds since the epoch, energy in joules per component and kWh
(facility, after PUE) in total, emissions in grams CO2e, intensity in gCO2e/kWh.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from carbon_magic.engine.measurement import Measurement
from carbon_magic.ledger.cluster import CLUSTER_KEY
from carbon_magic.ledger.connection import RETRY_AFTER_S, LedgerFile
from carbon_magic.ledger.operations import (
    OpenSession,
    Operation,
    RecordCell,
    RecordHeartbeat,
    UpdateSession,
)
from carbon_magic.ledger.read import read_cells
from carbon_magic.ledger.remote_calls import REMOTE_KEY
from carbon_magic.ledger.retention import Retention
from carbon_magic.ledger.rows import cell_row, heartbeat_row, session_fields, session_row
from carbon_magic.ledger.sql import BUSY_TIMEOUT_S
from carbon_magic.ledger.store import PendingBatch, PendingStore
from carbon_magic.ledger.writer_thread import WriterThread

T = TypeVar("T")

__all__ = ["CELL_WAIT_S", "EXIT_WAIT_S", "Ledger"]

CELL_WAIT_S = 0.075  # the most a cell (or the tracker) waits on the ledger, seconds
WRITER_SLICE_S = 0.25  # the background writer waits for a lock in slices this long
# At interpreter exit, how long pending records may take to be written before they go to
# a journal: jupyter_client terminates a kernel that is still alive after half its
# shutdown_wait_time (5 s by default), and a terminated kernel writes nothing.
EXIT_WAIT_S = 1.5
CLOSE_RETRY_S = 0.05  # between a closing writer's attempts within its wait, seconds


class Ledger:
    """The writer: one per kernel process, safe to call from several threads.

    ``path`` None means :func:`~carbon_magic.ledger.paths.default_ledger_path`; a missing
    parent directory is created (0700), and a new file is created 0600: the ledger holds
    cell first lines and notebook paths. No method raises for file problems (locked,
    read-only, corrupt, unwritable, newer schema): records are then kept in memory, a
    :class:`~carbon_magic.ledger.connection.LedgerWarning` is issued once per kind of
    problem, and a background writer retries after a back-off (``retry_after_s``,
    doubling up to 60 s) and writes them, in order, exactly once.

    A call that records (cells, heartbeats, session changes) waits at most
    ``cell_wait_s`` (~0.1 s): normally the record is committed before it returns; when
    another process holds the write lock longer, it stays pending and the background
    writer commits it as soon as the lock is free. ``busy_timeout_s`` is how long the
    file may stay locked before the ledger counts as locked (and warns).

    ``keep_days``: cells that started more than this many days ago are removed (with
    their cluster rows) by the background writer, a batch at a time, never by a call
    that records; None keeps everything. A value that is not a positive number raises
    ValueError (see :meth:`set_keep_days`).

    :meth:`close` (the magics also call it at interpreter exit, with EXIT_WAIT_S) writes
    what is pending within a bounded wait; what still cannot be written goes to a journal
    file beside the ledger (:mod:`carbon_magic.ledger.journal`), imported by the next
    writer.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        retry_after_s: float = RETRY_AFTER_S,
        cell_wait_s: float = CELL_WAIT_S,
        keep_days: float | None = None,
    ) -> None:
        retention = Retention(keep_days)  # raises before anything is opened
        self._file = LedgerFile(
            path,
            busy_timeout_s=busy_timeout_s,
            retry_after_s=retry_after_s,
            on_connect=self._reconnected,
        )
        self.path: Path = self._file.path
        self._store = PendingStore(self.path, self._file.warn)
        self._cell_wait_s = min(float(cell_wait_s), self._file.busy_timeout_s)
        self._lock = threading.Lock()  # held by whoever touches the file or the store
        self._retention = retention
        # Records not yet applied (deque appends are atomic: no lock needed to add one).
        self._inbox: deque[Operation] = deque()
        self._thread = WriterThread(self._background_pass, self._lock)
        with self._lock:
            self._file.open(defer_locked=True)  # a lock held now is waited out by the writes
        if retention.keep_s is not None:
            self._thread.ensure_running()

    # public API ---------------------------------------------------------------------

    def status(self) -> str:
        """``"ok: <path>"`` (with ``(N pending)`` while the background writer has cells to
        write), or ``"in memory (N pending): <reason>"`` where N is the number of cells
        waiting to be written."""
        pending = self.pending_count()
        reason = self._file.reason
        if reason is None:
            return f"ok: {self.path}" + (f" ({pending} pending)" if pending else "")
        return f"in memory ({pending} pending): {reason}"

    def pending_count(self) -> int:
        """How many recorded cells are not yet in the file."""
        if self._lock.acquire(timeout=self._cell_wait_s):
            try:
                self._drain()
            finally:
                self._lock.release()
        queued = sum(1 for op in list(self._inbox) if isinstance(op, RecordCell))
        return self._store.cell_count() + queued

    def open_session(
        self,
        *,
        session_uuid: str,
        kernel_id: str | None,
        notebook_path: str | None,
        host: str,
        pid: int,
        started_at: float,
        interval_s: float,
        mode: str,
        hardware: dict[str, Any],
        methods: dict[str, Any],
        settings: dict[str, Any],
        intensity_source: str,
        intensity_g_per_kwh: float,
    ) -> int | None:
        """Record a tracker session (``started_at`` in UTC epoch seconds, ``interval_s``
        the sampling interval in seconds, intensity in gCO2e/kWh) and commit it.

        Returns the ``sessions.id`` row id, or None while it is not written; cells and
        heartbeats of the session are linked to it whenever they reach the file.
        Settings keys that look like credentials are not stored.
        """
        row = session_row(
            session_uuid=session_uuid,
            kernel_id=kernel_id,
            notebook_path=notebook_path,
            host=host,
            pid=pid,
            started_at=started_at,
            interval_s=interval_s,
            mode=mode,
            hardware=hardware,
            methods=methods,
            settings=settings,
            intensity_source=intensity_source,
            intensity_g_per_kwh=intensity_g_per_kwh,
        )
        self._submit(OpenSession(session_uuid, row))
        return self._store.session_id(session_uuid) if self._file.reason is None else None

    def record_cell(
        self, session_uuid: str, m: Measurement, *, via: str, budget: str | None = None
    ) -> None:
        """Record one completed cell: committed before this returns unless the file is
        busy or unwritable (then kept pending and written in the background).

        ``via``: auto | magic | api; ``budget``: e.g. ``"5g"``, or None.
        """
        row = cell_row(m, via=via, budget=budget)
        if m.cluster is not None:
            row[CLUSTER_KEY] = m.cluster  # not a column: written to the cluster tables
        if m.remote is not None:
            row[REMOTE_KEY] = m.remote["calls"]  # written to cell_remote_calls
        self._submit(RecordCell(session_uuid, row, m))

    def heartbeat(
        self,
        session_uuid: str,
        *,
        at: float,
        watts: dict[str, float],
        energy_kwh: float,
        emissions_g: float,
        emissions_range_g: tuple[float, float],
        embodied_g: float,
        intensity_g_per_kwh: float,
        intensity_source: str,
        tracker_state: str,
        running_cell: str | None,
        running_cell_started_at: float | None,
        prediction: dict[str, Any] | None = None,
        hint: str | None = None,
        next_beat_s: float | None = None,
        **later: Any,
    ) -> None:
        """Record the tracker's state now: ``watts`` per component (cpu, gpu, ram), the
        session's running totals (kWh, gCO2e with range, embodied g), the intensity in use
        and the running cell's first line and start (UTC epoch seconds), and its predicted
        total at completion when it has one (``Prediction.to_json()``: fraction 0..1,
        grams CO2e and their range, ETA seconds), and the carbon-aware hint of the grid
        forecast (``Hint.text``) when there is one, and the longest the tracker may take to
        write the next heartbeat (``next_beat_s``, seconds). Heartbeats of the session
        older than a day are pruned now and then, always keeping the latest."""
        row = heartbeat_row(
            at=at,
            watts=watts,
            energy_kwh=energy_kwh,
            emissions_g=emissions_g,
            emissions_range_g=emissions_range_g,
            embodied_g=embodied_g,
            intensity_g_per_kwh=intensity_g_per_kwh,
            intensity_source=intensity_source,
            tracker_state=tracker_state,
            running_cell=running_cell,
            running_cell_started_at=running_cell_started_at,
            prediction=prediction,
            hint=hint,
            next_beat_s=next_beat_s,
            **later,  # other later columns by name (rows.heartbeat_row)
        )
        self._submit(RecordHeartbeat(session_uuid, row))

    def update_session(self, session_uuid: str, **fields: Any) -> None:
        """Change a session's columns and commit, e.g. ``tracker_state="stopped"``,
        ``ended_at=time.time()``, ``mode="machine"``, ``settings={...}``, ``hardware``,
        ``methods``, ``intensity`` (gCO2e/kWh), ``intensity_source``.

        Raises ValueError for an unknown field name (nothing is changed then).
        """
        self._submit(UpdateSession(session_uuid, session_fields(fields)))

    def flush(self, timeout_s: float | None = None) -> bool:
        """Write pending records now, ignoring the back-off and waiting up to
        ``timeout_s`` (default: the busy timeout) for a lock; True when none are left.
        Never raises."""
        timeout = self._file.busy_timeout_s if timeout_s is None else max(0.001, float(timeout_s))
        with self._lock:
            self._drain()
            self._file.write(self._store.commit, timeout, force=True, defer_locked=False)
            return self._settle()

    def cells_with_pending(
        self, *, session_uuid: str | None = None, since: float | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """The file's cell rows (as :func:`read_cells`, filtered by ``session_uuid`` and
        ``since``) followed by the recorded cells not yet written, and how many of those
        there are. Never raises: an unreadable file gives only the pending ones."""
        rows, pending = self.read_with_pending(
            lambda path: read_cells(path, session_uuid=session_uuid, since=since),
            session_uuid=session_uuid,
            since=since,
        )
        return (rows or []) + pending, len(pending)

    def read_with_pending(
        self,
        read: Callable[[Path], T],
        *,
        session_uuid: str | None = None,
        since: float | None = None,
    ) -> tuple[T | None, list[dict[str, Any]]]:
        """``read(path)`` of the ledger file (``None`` when it cannot be read), and the
        recorded cells not yet written to it (rows as :func:`read_cells` gives, filtered
        by ``session_uuid`` and ``since``). No commit of ours happens between the two, so
        each cell is in exactly one of them. Never raises for the file."""
        with self._lock:
            self._drain()
            pending = self._store.pending_cell_rows(session_uuid, since)
            try:
                result: T | None = read(self.path)
            except (OSError, sqlite3.Error):
                result = None
        return result, pending

    def hand_over_pending(self, other: Ledger) -> int:
        """Move every record not yet written here to ``other`` (another ledger file),
        keeping their order ahead of what ``other`` records later; returns how many cells
        moved. Sessions ``other`` already knows keep its own rows."""
        with self._lock:
            self._drain()
            batch = self._store.take_all()
            self._settle()
        other.take_over(batch)
        return len(batch.cells)

    def take_over(self, batch: PendingBatch) -> None:
        """Put the records another ledger handed over (:meth:`hand_over_pending`) ahead
        of what this one has pending; the background writer commits them."""
        with self._lock:
            self._drain()
            self._store.put_first(batch)
            if self._store.has_pending():
                self._thread.begin_backlog()

    def close(self, timeout_s: float | None = None) -> None:
        """Write what is pending (trying for up to ``timeout_s``, default the busy
        timeout, whatever the back-off) and close the connection. Records that still
        cannot be written are kept in a journal beside the ledger, written by the next
        writer of this ledger, and reported with one LedgerWarning. A later write
        reopens the file."""
        limit = self._file.busy_timeout_s if timeout_s is None else max(0.0, float(timeout_s))
        deadline = time.monotonic() + limit
        self._thread.stop()
        # The background writer lets go of the lock between attempts (WRITER_SLICE_S).
        if not self._lock.acquire(timeout=limit + WRITER_SLICE_S):
            self._file.warn("stuck", "the writer did not let go of the ledger; closing without it")
            return
        try:
            self._drain()
            # The ledger first, whatever the back-off, again and again until the time is
            # up: a fault that clears meanwhile (a lock let go, a folder made) still
            # lets everything in. Only what is left then goes to a journal.
            store = self._store
            while store.has_pending() and not self._file.permanent:
                self._file.write(store.commit, max(0.001, deadline - time.monotonic()), force=True)
                remaining = deadline - time.monotonic()
                if not store.has_pending() or remaining <= 0:
                    break
                time.sleep(min(CLOSE_RETRY_S, remaining))
            if store.has_pending():
                store.journal(self._file.reason)
            self._settle()
            self._file.close()
        finally:
            self._lock.release()
        self._thread.finish_stop()

    @property
    def connection(self) -> sqlite3.Connection | None:
        """The writer's open connection (None while none is open), to inspect the file
        as this writer sees it. What is written through it bypasses the pending records."""
        return self._file.connection

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Ledger {self.status()}>"

    # recording ----------------------------------------------------------------------

    def _reconnected(self) -> None:
        """The file's connection opened (the file may be new or restored)."""
        self._store.reconnected()

    def _submit(self, op: Operation) -> None:
        """Queue ``op``; commit it now when the file is free, else leave it to the
        background writer. Waits at most ``cell_wait_s`` in all."""
        started = time.monotonic()
        self._inbox.append(op)
        thread = self._thread
        if not thread.backlog:
            if self._lock.acquire(timeout=self._cell_wait_s):
                try:
                    if not thread.backlog:
                        self._drain()
                        remaining = self._cell_wait_s - (time.monotonic() - started)
                        self._file.write(
                            self._store.commit, max(0.001, remaining), defer_locked=True
                        )
                        if self._store.has_pending():
                            thread.begin_backlog()
                finally:
                    self._lock.release()
            else:
                thread.begin_backlog()
        if thread.backlog:
            thread.wake()
            if self._file.reason is None and not self._file.lock_held:
                # A short wait may see it committed after all (not while a lock is held).
                thread.wait_idle(max(0.0, self._cell_wait_s - (time.monotonic() - started)))

    def _drain(self) -> None:
        """Apply the queued records to the pending store, in order. Caller holds the lock."""
        inbox, apply = self._inbox, self._store.apply
        while inbox:
            apply(inbox.popleft())

    def _settle(self) -> bool:
        """Leave backlog mode when nothing is pending; True then. Caller holds the lock."""
        if self._store.has_pending() or self._inbox:
            return False
        self._thread.end_backlog()
        return True

    def _background_pass(self) -> float | None:
        """One pass of the background writer (lock held): commits the backlog in a slice
        of WRITER_SLICE_S (so :meth:`close` is never kept waiting), respecting the
        back-off after a fault; with nothing pending, it removes cells past the retention
        time, a batch at a time. Returns the seconds until the next pass (None: until
        woken)."""
        self._drain()
        if self._store.has_pending():
            self._file.write(
                self._store.commit,
                min(WRITER_SLICE_S, self._file.busy_timeout_s),
                defer_locked=True,
            )
        if self._settle():
            return self._retention.run(self._file.usable_connection, WRITER_SLICE_S)
        if self._file.permanent:
            return None
        if self._file.reason is not None:
            return max(0.0, self._file.retry_at - time.monotonic())
        return 0.0  # locked: the next slice waits in SQLite's busy handler

    # retention ----------------------------------------------------------------------

    @property
    def keep_s(self) -> float | None:
        """How long cells are kept, seconds (None: all of them)."""
        return self._retention.keep_s

    def set_keep_days(self, keep_days: float | None) -> None:
        """Keep cells for ``keep_days`` days (a positive number), or all of them (None).
        The background writer removes older ones soon after, never a call that records.
        Raises ValueError for any other value, and nothing changes then."""
        with self._lock:
            self._retention.set_keep_days(keep_days)
        if self._retention.keep_s is not None:
            self._thread.ensure_running()
