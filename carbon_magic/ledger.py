"""The ledger: every measured cell, session and heartbeat in one local SQLite file.

One :class:`Ledger` (one writer connection) per kernel process, shared by the main thread
(cells) and the tracker thread (heartbeats). Several kernels may write the same file at
once: WAL mode, ``BEGIN IMMEDIATE`` and a busy timeout serialise them. Readers (the
server extension, reports) use :func:`connect_readonly` and the ``read_*`` functions.

The writer never raises for file problems and never holds a cell up for more than
CELL_WAIT_S: a busy ledger's records are committed by a background writer, in order and
exactly once; a read-only or unopenable ledger keeps records in memory, warns once
(:class:`LedgerWarning`) and is retried after a back-off; a corrupt file is renamed aside
(never deleted) and a fresh ledger is started. What cannot be written when the writer
closes goes to a journal beside the ledger (:mod:`carbon_magic.journal`).

The parts: :mod:`carbon_magic.ledger_schema` (schema, migrations, transactions, SQLite
error kinds), :mod:`carbon_magic.ledger_rows` (columns and row conversions),
:mod:`carbon_magic.ledger_read` (readers, re-exported here) and the writer, here.

Units: times are UTC seconds since the epoch, energy in joules per component and kWh
(facility, after PUE) in total, emissions in grams CO2e, intensity in gCO2e/kWh.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import threading
import time
import warnings
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from carbon_magic import ledger_schema
from carbon_magic.journal import import_journals, write_journal
from carbon_magic.ledger_cluster import CLUSTER_KEY, insert_cell, read_cell_clusters
from carbon_magic.ledger_read import (
    BUSY_TIMEOUT_S,
    connect_readonly,
    latest_heartbeat,
    read_cells,
    read_sessions,
)
from carbon_magic.ledger_rows import (
    CELL_COLUMNS,
    HEARTBEAT_COLUMNS,
    INSERT_HEARTBEAT,
    SESSION_COLUMNS,
    SOURCE_MAX_CHARS,
    SessionState,
    cell_row,
    compact_json,
    epoch_s,
    first_line,
    measurement_from_row,
    placeholder_session,
    session_fields,
    without_secrets,
    write_session,
)
from carbon_magic.ledger_schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    NewerSchemaError,
    Transaction,
    describe_error,
    error_kind,
    migrate,
    schema_version,
)
from carbon_magic.measurement import Measurement
from carbon_magic.redact import redact_secrets

__all__ = [
    "BUSY_TIMEOUT_S",
    "CELL_COLUMNS",
    "CELL_WAIT_S",
    "EXIT_WAIT_S",
    "HEARTBEAT_COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SESSION_COLUMNS",
    "SOURCE_MAX_CHARS",
    "Ledger",
    "LedgerWarning",
    "cell_row",
    "connect_readonly",
    "default_ledger_path",
    "latest_heartbeat",
    "measurement_from_row",
    "read_cell_clusters",
    "read_cells",
    "read_sessions",
]

CELL_WAIT_S = 0.075  # the most a cell (or the tracker) waits on the ledger, seconds
WRITER_SLICE_S = 0.25  # the background writer waits for a lock in slices this long
# At interpreter exit, how long pending records may take to be written before they go to
# a journal: jupyter_client terminates a kernel that is still alive after half its
# shutdown_wait_time (5 s by default), and a terminated kernel writes nothing.
EXIT_WAIT_S = 1.5
RETRY_AFTER_S = 5.0  # first back-off after a failed write; doubles up to MAX_BACKOFF_S
MAX_BACKOFF_S = 60.0
HEARTBEAT_KEEP_S = 86400.0  # heartbeats older than this are pruned (the latest is kept)
PRUNE_EVERY_S = 60.0  # per session, in heartbeat time
MAX_PENDING_CELLS = 10_000  # bound on memory while the file cannot be written
MAX_PENDING_HEARTBEATS = 1_000

log = logging.getLogger("carbon_magic")


class LedgerWarning(UserWarning):
    """The ledger file cannot be written (records are kept in memory) or was replaced."""


def default_ledger_path() -> Path:
    """``jupyter_data_dir()/carbon_magic/ledger.sqlite3`` (the file need not exist)."""
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "carbon_magic" / "ledger.sqlite3"


# --- the writer -----------------------------------------------------------------------

# What callers hand to the writer, applied in order under the lock:
# ("session", uuid, SessionState) | ("update", uuid, columns) | ("cell", uuid, (row, m))
# | ("beat", uuid, row)
_Op = tuple[str, str, Any]


class Ledger:
    """The writer: one per kernel process, safe to call from several threads.

    ``path`` None means :func:`default_ledger_path`; a missing parent directory is
    created (0700), and a new file is created 0600: the ledger holds cell first lines and
    notebook paths. No method raises for file problems (locked, read-only, corrupt,
    unwritable, newer schema): records are then kept in memory, a :class:`LedgerWarning`
    is issued once per kind of problem, and a background writer retries after a back-off
    (``retry_after_s``, doubling up to 60 s) and writes them, in order, exactly once.

    A call that records (cells, heartbeats, session changes) waits at most
    ``cell_wait_s`` (~0.1 s): normally the record is committed before it returns; when
    another process holds the write lock longer, it stays pending and the background
    writer commits it as soon as the lock is free. ``busy_timeout_s`` is how long the
    file may stay locked before the ledger counts as locked (and warns).

    :meth:`close` (the magics also call it at interpreter exit, with EXIT_WAIT_S) writes
    what is pending within a bounded wait; what still cannot be written goes to a journal file
    beside the ledger (:mod:`carbon_magic.journal`), imported by the next writer.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        retry_after_s: float = RETRY_AFTER_S,
        cell_wait_s: float = CELL_WAIT_S,
    ) -> None:
        # Absolute now: a notebook's %cd must not move the ledger under a running kernel.
        self.path: Path = (default_ledger_path() if path is None else Path(path)).expanduser()
        self.path = self.path.absolute()
        self._busy_timeout_s = float(busy_timeout_s)
        self._retry_after_s = float(retry_after_s)
        self._cell_wait_s = min(float(cell_wait_s), self._busy_timeout_s)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = 0
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._reason: str | None = None  # why we are in memory; None when ok
        self._permanent = False  # newer schema: never write this file
        self._retry_at = 0.0  # time.monotonic() of the next attempt
        self._backoff = self._retry_after_s
        self._locked_since: float | None = None  # first failed attempt on a held lock
        self._warned: set[str] = set()
        self._sessions: dict[str, SessionState] = {}
        self._session_ids: dict[str, int] = {}  # session_uuid → sessions.id in this file
        self._cells: list[tuple[str, dict[str, Any]]] = []  # pending (session_uuid, row)
        self._heartbeats: deque[tuple[str, dict[str, Any]]] = deque(maxlen=MAX_PENDING_HEARTBEATS)
        self._last_prune: dict[str, float] = {}
        self._housekeeping_done = False
        self._journals_done = False
        # Records not yet applied (deque appends are atomic: no lock needed to add one).
        self._inbox: deque[_Op] = deque()
        self._backlog = False  # records wait for the background writer
        self._idle = threading.Event()  # set when nothing waits for the background writer
        self._idle.set()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._stopping = False
        with self._lock:
            self._open(defer_locked=True)  # a lock held now is waited out by the writes

    # public API ---------------------------------------------------------------------

    def status(self) -> str:
        """``"ok: <path>"`` (with ``(N pending)`` while the background writer has cells to
        write), or ``"in memory (N pending): <reason>"`` where N is the number of cells
        waiting to be written."""
        pending = self.pending_count()
        reason = self._reason
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
        queued = sum(1 for op in list(self._inbox) if op[0] == "cell")
        return len(self._cells) + queued

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
        row = {
            "session_uuid": session_uuid,
            "kernel_id": kernel_id,
            "notebook_path": notebook_path,
            "host": host,
            "pid": int(pid),
            "started_at": epoch_s(started_at),
            "ended_at": None,
            "tracker_state": "running",
            "interval_s": float(interval_s),
            "mode": mode,
            "hardware_json": compact_json(hardware),
            "methods_json": compact_json(methods),
            "settings_json": compact_json(without_secrets(settings)),
            "intensity_source": intensity_source,
            "intensity_g_per_kwh": float(intensity_g_per_kwh),
        }
        self._submit(("session", session_uuid, SessionState(row=row, opened=True)))
        return self._session_ids.get(session_uuid) if self._reason is None else None

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
        self._submit(("cell", session_uuid, (row, m)))

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
    ) -> None:
        """Record the tracker's state now: ``watts`` per component (cpu, gpu, ram), the
        session's running totals (kWh, gCO2e with range, embodied g), the intensity in use
        and the running cell's first line and start (UTC epoch seconds), and its predicted
        total at completion when it has one (``Prediction.to_json()``: fraction 0..1,
        grams CO2e and their range, ETA seconds). Heartbeats of the session older than a
        day are pruned now and then, always keeping the latest."""
        low, high = emissions_range_g
        row = {
            "at": float(at),
            "cpu_w": float(watts.get("cpu", 0.0)),
            "gpu_w": float(watts.get("gpu", 0.0)),
            "ram_w": float(watts.get("ram", 0.0)),
            "energy_kwh": float(energy_kwh),
            "emissions_g": float(emissions_g),
            "emissions_low_g": float(low),
            "emissions_high_g": float(high),
            "embodied_g": float(embodied_g),
            "intensity_g_per_kwh": float(intensity_g_per_kwh),
            "intensity_source": intensity_source,
            "tracker_state": tracker_state,
            "running_cell": first_line(redact_secrets(running_cell) if running_cell else None),
            "running_cell_started_at": running_cell_started_at,
            "prediction_json": compact_json(prediction) if prediction is not None else None,
        }
        self._submit(("beat", session_uuid, row))

    def update_session(self, session_uuid: str, **fields: Any) -> None:
        """Change a session's columns and commit, e.g. ``tracker_state="stopped"``,
        ``ended_at=time.time()``, ``mode="machine"``, ``settings={...}``, ``hardware``,
        ``methods``, ``intensity`` (gCO2e/kWh), ``intensity_source``.

        Raises ValueError for an unknown field name (nothing is changed then).
        """
        self._submit(("update", session_uuid, session_fields(fields)))

    def flush(self, timeout_s: float | None = None) -> bool:
        """Write pending records now, ignoring the back-off and waiting up to
        ``timeout_s`` (default: the busy timeout) for a lock; True when none are left.
        Never raises."""
        timeout = self._busy_timeout_s if timeout_s is None else max(0.001, float(timeout_s))
        with self._lock:
            self._drain()
            self._write(timeout, force=True, defer_locked=False)
            return self._settle()

    def cells_with_pending(
        self, *, session_uuid: str | None = None, since: float | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """The file's cell rows (as :func:`read_cells`, filtered by ``session_uuid`` and
        ``since``) followed by the recorded cells not yet written, and how many of those
        there are. Never raises: an unreadable file gives only the pending ones."""
        with self._lock:  # no commit of ours between the two reads: each row once
            self._drain()
            pending = [
                {
                    **row,
                    "session_uuid": uuid,
                    "kernel_id": self._sessions[uuid].row["kernel_id"],
                    "notebook_path": self._sessions[uuid].row["notebook_path"],
                    "host": self._sessions[uuid].row["host"],
                }
                for uuid, row in self._cells
                if (session_uuid is None or uuid == session_uuid)
                and (since is None or row["started_at"] >= since)
            ]
            try:
                rows = read_cells(self.path, session_uuid=session_uuid, since=since)
            except (OSError, sqlite3.Error):
                rows = []
        return rows + pending, len(pending)

    def hand_over_pending(self, other: Ledger) -> int:
        """Move every record not yet written here to ``other`` (another ledger file),
        keeping their order ahead of what ``other`` records later; returns how many cells
        moved. Sessions ``other`` already knows keep its own rows."""
        with self._lock:
            self._drain()
            sessions = {uuid: session for uuid, session in self._sessions.items()}
            cells, beats = list(self._cells), list(self._heartbeats)
            self._cells.clear()
            self._heartbeats.clear()
            for session in self._sessions.values():
                session.dirty = False
                session.changes.clear()
            self._settle()
        with other._lock:
            other._drain()
            for uuid, session in sessions.items():
                if uuid not in other._sessions:
                    other._sessions[uuid] = SessionState(
                        dict(session.row), session.opened, dict(session.changes)
                    )
            other._cells[:0] = cells
            for beat in reversed(beats):
                other._heartbeats.appendleft(beat)
            other._bound_pending()
            if other._has_pending():
                other._start_backlog()
        return len(cells)

    def close(self, timeout_s: float | None = None) -> None:
        """Write what is pending (waiting up to ``timeout_s``, default the busy timeout,
        for a lock) and close the connection. Records that still cannot be written are
        kept in a journal beside the ledger, written by the next writer of this ledger,
        and reported with one LedgerWarning. A later write reopens the file."""
        limit = self._busy_timeout_s if timeout_s is None else max(0.0, float(timeout_s))
        deadline = time.monotonic() + limit
        writer = self._writer
        self._stopping = True
        self._wake.set()
        # The background writer lets go of the lock between attempts (WRITER_SLICE_S).
        if not self._lock.acquire(timeout=limit + WRITER_SLICE_S):
            self._warn("stuck", "the writer did not let go of the ledger; closing without it")
            return
        try:
            self._drain()
            if self._has_pending() and not self._permanent:
                self._write(max(0.001, deadline - time.monotonic()), force=True)
            if self._has_pending():
                self._journal_pending()
            self._settle()
            if self._conn is not None and self._conn_pid == os.getpid():
                try:
                    self._conn.execute("PRAGMA optimize")
                    self._conn.close()
                except sqlite3.Error:
                    pass
            self._conn = None
        finally:
            self._lock.release()
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout=1.0)
        self._stopping = False

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Ledger {self.status()}>"

    # recording ----------------------------------------------------------------------

    def _submit(self, op: _Op) -> None:
        """Queue ``op``; commit it now when the file is free, else leave it to the
        background writer. Waits at most ``cell_wait_s`` in all."""
        started = time.monotonic()
        self._inbox.append(op)
        if not self._backlog:
            if self._lock.acquire(timeout=self._cell_wait_s):
                try:
                    if not self._backlog:
                        self._drain()
                        remaining = self._cell_wait_s - (time.monotonic() - started)
                        self._write(max(0.001, remaining), defer_locked=True)
                        if self._has_pending():
                            self._start_backlog()
                finally:
                    self._lock.release()
            else:
                self._start_backlog()
        if self._backlog:
            self._wake.set()
            if self._reason is None and self._locked_since is None:
                # A short wait may see it committed after all (not while a lock is held).
                self._idle.wait(max(0.0, self._cell_wait_s - (time.monotonic() - started)))

    def _drain(self) -> None:
        """Apply the queued records to the pending state, in order. Caller holds the lock."""
        while self._inbox:
            kind, uuid, payload = self._inbox.popleft()
            if kind == "session":
                self._sessions[uuid] = payload
                continue
            session = self._sessions.get(uuid)
            if session is None:
                m = payload[1] if kind == "cell" else None
                session = self._sessions[uuid] = SessionState(placeholder_session(uuid, m), False)
            if kind == "update":
                session.row.update(payload)
                session.changes.update(payload)
                session.dirty = True
            elif kind == "cell":
                self._cells.append((uuid, payload[0]))
            else:
                self._heartbeats.append((uuid, payload))
        self._bound_pending()

    def _start_backlog(self) -> None:
        """Hand what is pending to the background writer (started on first need)."""
        self._idle.clear()
        self._backlog = True
        with self._writer_lock:  # the main and tracker threads may both get here
            writer = self._writer
            if writer is None or not writer.is_alive():
                self._writer = threading.Thread(
                    target=self._run_writer, name="carbon-magic-ledger-writer", daemon=True
                )
                self._writer.start()
        self._wake.set()

    def _settle(self) -> bool:
        """Leave backlog mode when nothing is pending; True then. Caller holds the lock."""
        if self._has_pending() or self._inbox:
            return False
        self._backlog = False
        self._idle.set()
        return True

    def _run_writer(self) -> None:
        """The background writer: commits the backlog in slices of WRITER_SLICE_S (so
        :meth:`close` is never kept waiting), respecting the back-off after a fault."""
        delay: float | None = 0.0
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            with self._lock:
                if self._stopping:
                    return
                self._drain()
                if self._has_pending():
                    self._write(min(WRITER_SLICE_S, self._busy_timeout_s), defer_locked=True)
                if self._settle():
                    delay = None
                elif self._permanent:
                    delay = None
                elif self._reason is not None:
                    delay = max(0.0, self._retry_at - time.monotonic())
                else:
                    delay = 0.0  # locked: the next slice waits in SQLite's busy handler

    # connection ---------------------------------------------------------------------

    def _open(
        self,
        busy_timeout_s: float | None = None,
        *,
        recovering: bool = False,
        defer_locked: bool = False,
    ) -> bool:
        """Connect and migrate; a corrupt file is moved aside and a fresh one started.
        Returns True when a usable connection is open. Caller holds the lock."""
        try:
            self._connect(busy_timeout_s)
            return True
        except NewerSchemaError as exc:
            self._drop_connection()
            self._permanent = True
            self._fail(
                "newer",
                f"schema version {exc.args[0]} is newer than this carbon_magic understands "
                f"({len(ledger_schema.MIGRATIONS)}); the file is left untouched and records stay in memory",
            )
        except (sqlite3.Error, OSError) as exc:
            if error_kind(exc) == "corrupt" and not recovering:
                return self._recover_corrupt(exc, busy_timeout_s)
            if error_kind(exc) == "locked" and self._defer(defer_locked):
                self._drop_connection()
                return False
            self._fault(exc)
        return False

    def _connect(self, busy_timeout_s: float | None) -> None:
        """Open the writer connection: create the directory (0700) and the file (0600),
        check the version before touching the file, then WAL, synchronous=NORMAL, and
        migrations. Raises."""
        self._drop_connection()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot create the directory: {exc.strerror}", str(self.path.parent)
            ) from exc
        try:  # SQLite gives its -wal and -shm files the database file's permissions
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        timeout = self._busy_timeout_s if busy_timeout_s is None else busy_timeout_s
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE). The lock
        # makes the connection safe to share between the main and tracker threads.
        conn = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._conn, self._conn_pid = conn, os.getpid()
        stat = os.stat(self.path)
        self._identity = (stat.st_dev, stat.st_ino)
        self._session_ids.clear()
        for session in self._sessions.values():
            session.dirty = True  # the file may be new or restored: write every session
        version = schema_version(conn)
        if version > len(
            ledger_schema.MIGRATIONS
        ):  # checked before WAL, which would write the header
            raise NewerSchemaError(version)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        # A connection inherited through fork() belongs to the parent: never close it here.
        if conn is not None and self._conn_pid == os.getpid():
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _connection_current(self) -> bool:
        """The open connection is ours and still points at the file at ``self.path``
        (not renamed aside or deleted by someone else meanwhile)."""
        if self._conn is None or self._conn_pid != os.getpid():
            return False
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        return (stat.st_dev, stat.st_ino) == self._identity

    def _recover_corrupt(self, exc: BaseException, busy_timeout_s: float | None) -> bool:
        """Rename the corrupt file (and its -wal/-shm) aside and open a fresh ledger."""
        self._drop_connection()
        try:
            stat = os.stat(self.path)
            # Another kernel may have moved it aside and started afresh already: the file
            # there now is not the one that failed, so leave it alone.
            replaced = (stat.st_dev, stat.st_ino) != self._identity
            if not replaced:
                aside = self._move_aside()
        except FileNotFoundError:
            replaced = True
        except OSError as move_exc:
            self._fault(exc, extra=f"; could not move it aside: {describe_error(move_exc)}")
            return False
        if not replaced:
            self._warn(
                "corrupt",
                f"{describe_error(exc)}; moved it to {aside.name} and started a fresh ledger",
            )
        return self._open(busy_timeout_s, recovering=True)

    def _move_aside(self) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        serial = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{serial}")
            serial += 1
        os.rename(self.path, aside)
        # A stale -wal beside a fresh file could be replayed into it; keep the pair together.
        for suffix in ("-wal", "-shm"):
            companion = Path(f"{self.path}{suffix}")
            if companion.exists():
                os.rename(companion, Path(f"{aside}{suffix}"))
        return aside

    # writing ------------------------------------------------------------------------

    def _has_pending(self) -> bool:
        return bool(
            self._cells or self._heartbeats or any(s.dirty for s in self._sessions.values())
        )

    def _write(
        self,
        busy_timeout_s: float | None = None,
        *,
        force: bool = False,
        defer_locked: bool = False,
    ) -> None:
        """Write everything pending in one transaction, or stay in memory. Never raises.

        ``busy_timeout_s``: how long to wait for another process's lock this time.
        ``defer_locked``: a held lock is not a fault until it has been held for the busy
        timeout (the background writer keeps trying meanwhile). Caller holds the lock."""
        retrying = self._reason is not None
        if retrying:
            if self._permanent or (not force and time.monotonic() < self._retry_at):
                return
        timeout = self._busy_timeout_s if busy_timeout_s is None else busy_timeout_s
        if not self._connection_current():
            if not self._open(timeout, defer_locked=defer_locked):
                return
        conn = self._conn
        assert conn is not None
        try:
            conn.execute(f"PRAGMA busy_timeout = {max(1, int(timeout * 1000))}")
            self._flush(conn)
        except (sqlite3.Error, OSError) as exc:
            kind = error_kind(exc)
            if kind == "locked" and self._defer(defer_locked):
                return
            if kind != "corrupt":
                self._fault(exc)
                return
            if not self._recover_corrupt(exc, timeout):
                return  # already faulted
            try:
                self._flush(self._conn)  # type: ignore[arg-type]
            except (sqlite3.Error, OSError) as again:
                self._fault(again)
                return
        self._locked_since = None
        self._reason = None
        self._backoff = self._retry_after_s

    def _defer(self, allowed: bool) -> bool:
        """True when a held lock should just be waited out: ``allowed`` and held for
        less than the busy timeout so far."""
        now = time.monotonic()
        if self._locked_since is None:
            self._locked_since = now
        if allowed and now - self._locked_since < self._busy_timeout_s:
            return True
        self._locked_since = None
        return False

    def _flush(self, conn: sqlite3.Connection) -> None:
        """One transaction: journals left by earlier writers, sessions, then cells, then
        heartbeats; clears what it wrote."""
        ids = dict(self._session_ids)
        imported: list[Path] = []
        with Transaction(conn):
            if not self._housekeeping_done:
                _prune_all_heartbeats(conn, time.time() - HEARTBEAT_KEEP_S)
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
            conn.execute(
                "DELETE FROM heartbeats WHERE session_id = ? AND at < ? AND id <> ?",
                (session_id, row["at"] - HEARTBEAT_KEEP_S, cursor.lastrowid),
            )
            self._last_prune[uuid] = row["at"]

    def _bound_pending(self) -> None:
        """Drop the oldest pending cells beyond MAX_PENDING_CELLS (memory is finite)."""
        excess = len(self._cells) - MAX_PENDING_CELLS
        if excess > 0:
            del self._cells[:excess]
            self._warn(
                "dropped",
                f"more than {MAX_PENDING_CELLS} cells pending; the oldest are being dropped",
            )

    # faults -------------------------------------------------------------------------

    def _fault(self, exc: BaseException, extra: str = "") -> None:
        """Go (or stay) in memory after ``exc``; the next attempt waits for the back-off."""
        self._drop_connection()
        self._fail(error_kind(exc), f"{describe_error(exc)}{extra}")

    def _fail(self, kind: str, reason: str) -> None:
        self._reason = reason
        self._retry_at = time.monotonic() + self._backoff
        if self._permanent:
            self._warn(kind, reason)
        else:
            self._warn(
                kind, f"{reason}; keeping records in memory, retrying in {self._backoff:g} s"
            )
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)

    def _warn(self, kind: str, message: str) -> None:
        """One LedgerWarning per kind of problem for the life of this Ledger. Never raises,
        even under ``warnings.simplefilter("error")`` (then it is logged instead)."""
        if kind in self._warned:
            return
        self._warned.add(kind)
        text = f"carbon_magic ledger {self.path}: {message}"
        try:
            warnings.warn(text, LedgerWarning, stacklevel=_stacklevel_outside_module())
        except Exception:  # a filter turned warnings into errors: the ledger goes on
            log.warning("%s", text)


def _stacklevel_outside_module() -> int:
    """The warnings stacklevel of the first caller outside this module, so a warning
    points at the code that recorded (the magics, the tracker), not at ledger internals."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


def _prune_all_heartbeats(conn: sqlite3.Connection, before: float) -> None:
    """Drop old heartbeats of every session (crashed kernels never prune their own),
    keeping each session's latest."""
    conn.execute(
        "DELETE FROM heartbeats WHERE at < ? AND id NOT IN "
        "(SELECT MAX(id) FROM heartbeats GROUP BY session_id)",
        (before,),
    )
