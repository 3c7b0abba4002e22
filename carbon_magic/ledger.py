"""The ledger: every measured cell, session and heartbeat in one local SQLite file.

One :class:`Ledger` (one writer connection) per kernel process, shared by the main thread
(cells) and the tracker thread (heartbeats). Several kernels may write the same file at
once: WAL mode, ``BEGIN IMMEDIATE`` and a busy timeout serialise them. Readers (the
server extension, reports) use :func:`connect_readonly` and the ``read_*`` functions.

The writer never raises for file problems. A locked, read-only or unopenable ledger keeps
records in memory, warns once (:class:`LedgerWarning`) and retries on a later write; a
corrupt file is renamed aside (never deleted) and a fresh ledger is started.

Units: times are UTC seconds since the epoch, energy in joules per component and kWh
(facility, after PUE) in total, emissions in grams CO2e, intensity in gCO2e/kWh.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from carbon_magic.measurement import Measurement

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
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

BUSY_TIMEOUT_S = 5.0  # how long a write waits for another process's transaction
RETRY_AFTER_S = 5.0  # first back-off after a failed write; doubles up to MAX_BACKOFF_S
MAX_BACKOFF_S = 60.0
RETRY_BUSY_TIMEOUT_S = 0.2  # a retry while faulted must not hold a cell up for seconds
HEARTBEAT_KEEP_S = 86400.0  # heartbeats older than this are pruned (the latest is kept)
PRUNE_EVERY_S = 60.0  # per session, in heartbeat time
MAX_PENDING_CELLS = 10_000  # bound on memory while the file cannot be written
MAX_PENDING_HEARTBEATS = 1_000
SOURCE_MAX_CHARS = 200

_SECRET_MARKERS = ("token", "secret", "password", "api_key")


class LedgerWarning(UserWarning):
    """The ledger file cannot be written (records are kept in memory) or was replaced."""


class _NewerSchemaError(Exception):
    """The file was written by a newer carbon_magic; this code must not touch it."""


def default_ledger_path() -> Path:
    """``jupyter_data_dir()/carbon_magic/ledger.sqlite3`` (the file need not exist)."""
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "carbon_magic" / "ledger.sqlite3"


# --- schema and migrations ------------------------------------------------------------

Migration = Callable[[sqlite3.Connection], None]


def _statements(script: str) -> Iterable[str]:
    """Split an SQL script into complete statements (comments and all)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    leftover = [
        line for line in pending.splitlines() if line.strip() and not line.strip().startswith("--")
    ]
    if leftover:
        raise ValueError(f"incomplete SQL statement: {leftover[0][:80]}")


def _migration_1_create(conn: sqlite3.Connection) -> None:
    """Version 1: the tables of ``schema.sql`` (which stays the v1 script forever)."""
    script = resources.files("carbon_magic").joinpath("schema.sql").read_text(encoding="utf-8")
    # One statement at a time: executescript() would commit the migration's transaction.
    for statement in _statements(script):
        conn.execute(statement)


def _migration_2_cluster(conn: sqlite3.Connection) -> None:
    """Version 2: the Dask cluster part of a cell (already included in its ``cells``
    figures): one ``cell_clusters`` row per such cell and one ``cell_hosts`` row per host
    its workers ran on. Joules are IT energy before PUE; kWh facility; grams CO2e."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS cell_clusters (
            cell_ref        INTEGER PRIMARY KEY REFERENCES cells (id),
            missing_workers INTEGER NOT NULL,  -- workers whose energy this cell lacks
            energy_kwh      REAL NOT NULL,     -- the cluster's share of cells.energy_kwh
            emissions_g     REAL NOT NULL,     -- its share of cells.emissions_g
            embodied_g      REAL NOT NULL      -- its share of cells.embodied_g
        )"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS cell_hosts (
            cell_ref     INTEGER NOT NULL REFERENCES cells (id),
            host_id      TEXT NOT NULL,     -- machine identity (boot id or machine id hash)
            name         TEXT NOT NULL,     -- host name, for people
            workers      INTEGER NOT NULL,  -- workers seen at both cell edges
            in_kernel    INTEGER NOT NULL,  -- of them, those the kernel's figures include
            cpu_j        REAL NOT NULL,
            gpu_j        REAL NOT NULL,
            ram_j        REAL NOT NULL,
            embodied_g   REAL NOT NULL,
            methods_json TEXT NOT NULL,
            PRIMARY KEY (cell_ref, host_id)
        )"""
    )


# Migration N (1-based) brings a file from version N-1 to N, inside the transaction that
# also records the new version, so a failure leaves the file as it was. To change the
# schema, append one function here; never edit an existing entry.
MIGRATIONS: list[Migration] = [_migration_1_create, _migration_2_cluster]
SCHEMA_VERSION = len(MIGRATIONS)


def _schema_version(conn: sqlite3.Connection) -> int:
    """The file's schema version; 0 for an empty or pre-versioning file."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply the missing migrations; raises _NewerSchemaError for a newer file."""
    known = len(MIGRATIONS)
    version = _schema_version(conn)
    if version > known:
        raise _NewerSchemaError(version)
    if version == known:
        return
    with _transaction(conn):
        version = _schema_version(conn)  # again, under the write lock: another kernel may
        if version > known:  # have migrated meanwhile
            raise _NewerSchemaError(version)
        for migration in MIGRATIONS[version:]:
            migration(conn)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(known),)
        )


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection.

    IMMEDIATE takes the write lock up front, so the busy timeout applies and a transaction
    never fails half-way on a lock. SQLite answers some contention (WAL recovery, a
    concurrent journal-mode switch) with an immediate SQLITE_BUSY that skips the busy
    handler, so a BEGIN that fails fast is retried a few times.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        for attempt in range(4):
            started = time.monotonic()
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return self.conn
            except sqlite3.OperationalError as exc:
                waited = time.monotonic() - started
                timeout_s = self.conn.execute("PRAGMA busy_timeout").fetchone()[0] / 1000
                # A BEGIN that used up the busy timeout met a real lock holder: give up.
                if _kind(exc) != "locked" or attempt == 3 or waited >= timeout_s / 2:
                    raise
                time.sleep(0.02 * (attempt + 1))
        raise AssertionError("unreachable")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original error is the one worth reporting


# --- rows -----------------------------------------------------------------------------

SESSION_COLUMNS = tuple(
    """
    session_uuid kernel_id notebook_path host pid started_at ended_at tracker_state
    interval_s mode hardware_json methods_json settings_json intensity_source
    intensity_g_per_kwh
    """.split()
)
CELL_COLUMNS = tuple(
    """
    cell_id execution_count name source via status started_at ended_at duration_s cpu_j
    gpu_j ram_j energy_kwh energy_low_kwh energy_high_kwh emissions_g emissions_low_g
    emissions_high_g embodied_g intensity_g_per_kwh intensity_source pue mode
    methods_json devices_json budget
    """.split()
)
HEARTBEAT_COLUMNS = tuple(
    """
    at cpu_w gpu_w ram_w energy_kwh emissions_g emissions_low_g emissions_high_g
    embodied_g intensity_g_per_kwh intensity_source tracker_state running_cell
    running_cell_started_at
    """.split()
)


def _insert_sql(table: str, columns: Iterable[str], verb: str = "INSERT") -> str:
    columns = list(columns)
    names = ", ".join(columns)
    values = ", ".join(f":{name}" for name in columns)
    return f"{verb} INTO {table} ({names}) VALUES ({values})"


_INSERT_CELL = _insert_sql("cells", ("session_id", "kernel_id", *CELL_COLUMNS))
_INSERT_HEARTBEAT = _insert_sql("heartbeats", ("session_id", "kernel_id", *HEARTBEAT_COLUMNS))
_INSERT_SESSION = _insert_sql("sessions", SESSION_COLUMNS, "INSERT OR IGNORE")


def _json(value: Any) -> str:
    """Compact, stable JSON; numbers from numpy and the like become floats."""

    def fallback(obj: Any) -> Any:
        try:
            return float(obj)
        except (TypeError, ValueError):
            return str(obj)

    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=fallback)


def _epoch(value: datetime | float | None) -> float | None:
    """UTC seconds since the epoch; a naive datetime is taken to be UTC."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else float(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


def _first_line(source: str | None) -> str | None:
    """The first non-blank line of ``source``, clipped to SOURCE_MAX_CHARS."""
    if source is None:
        return None
    for line in source.splitlines():
        if line.strip():
            line = line.rstrip()
            if len(line) > SOURCE_MAX_CHARS:
                line = line[: SOURCE_MAX_CHARS - 1] + "…"
            return line
    return ""


def cell_row(m: Measurement, *, via: str, budget: str | None) -> dict[str, Any]:
    """The ``cells`` columns (except ``id``, ``session_id``, ``kernel_id``) for ``m``.

    ``via`` is how the cell was measured (auto | magic | api); ``budget`` the budget text
    (e.g. ``"5g"``) or None. Datetimes become UTC epoch seconds (a naive one is taken as
    UTC; a missing start is ``ended_at - duration_s``, a missing end is now). ``name`` is
    NULL when empty and ``source`` keeps only its first non-blank line.
    Raises TypeError/ValueError for values that are not numbers where numbers belong.
    """
    ended = _epoch(m.ended_at)
    started = _epoch(m.started_at)
    if ended is None:
        ended = time.time() if started is None else started + float(m.duration_s)
    if started is None:
        started = ended - float(m.duration_s)
    energy_low, energy_high = m.energy_range_kwh
    emissions_low, emissions_high = m.emissions_range_g
    return {
        "cell_id": m.cell_id,
        "execution_count": None if m.execution_count is None else int(m.execution_count),
        "name": m.name or None,
        "source": _first_line(m.source),
        "via": str(via),
        "status": str(m.status or "ok"),
        "started_at": started,
        "ended_at": ended,
        "duration_s": float(m.duration_s),
        "cpu_j": float(m.energy_j.get("cpu", 0.0)),
        "gpu_j": float(m.energy_j.get("gpu", 0.0)),
        "ram_j": float(m.energy_j.get("ram", 0.0)),
        "energy_kwh": float(m.energy_kwh),
        "energy_low_kwh": float(energy_low),
        "energy_high_kwh": float(energy_high),
        "emissions_g": float(m.emissions_g),
        "emissions_low_g": float(emissions_low),
        "emissions_high_g": float(emissions_high),
        "embodied_g": float(m.embodied_g),
        "intensity_g_per_kwh": float(m.intensity_g_per_kwh),
        "intensity_source": str(m.intensity_source or ""),
        "pue": float(m.pue),
        "mode": str(m.mode),
        "methods_json": _json(m.methods),
        "devices_json": _json(m.devices),
        "budget": budget,
    }


def measurement_from_row(row: Mapping[str, Any]) -> Measurement:
    """The Measurement stored in a ``cells`` row (a dict from :func:`read_cells` or a
    ``sqlite3.Row``): energies, ranges, methods, devices, times (aware UTC datetimes),
    ``execution_count``, ``cell_id``, ``status``, ``source``. ``via`` and ``budget`` are
    ledger-only and stay in the row."""
    return Measurement(
        name=row["name"] or "",
        duration_s=row["duration_s"],
        energy_j={"cpu": row["cpu_j"], "gpu": row["gpu_j"], "ram": row["ram_j"]},
        energy_kwh=row["energy_kwh"],
        energy_range_kwh=(row["energy_low_kwh"], row["energy_high_kwh"]),
        emissions_g=row["emissions_g"],
        emissions_range_g=(row["emissions_low_g"], row["emissions_high_g"]),
        embodied_g=row["embodied_g"],
        intensity_g_per_kwh=row["intensity_g_per_kwh"],
        intensity_source=row["intensity_source"],
        pue=row["pue"],
        methods=json.loads(row["methods_json"] or "{}"),
        devices=json.loads(row["devices_json"] or "{}"),
        mode=row["mode"],
        started_at=_utc(row["started_at"]),
        ended_at=_utc(row["ended_at"]),
        execution_count=row["execution_count"],
        cell_id=row["cell_id"],
        status=row["status"],
        source=row["source"],
    )


def _without_secrets(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings minus anything that looks like a credential (the ledger is plain text)."""
    return {
        key: value
        for key, value in settings.items()
        if not any(marker in key.lower() for marker in _SECRET_MARKERS)
    }


# Friendly names accepted by update_session(), beside the column names themselves.
_JSON_FIELDS = {"hardware": "hardware_json", "methods": "methods_json", "settings": "settings_json"}
_FIELD_ALIASES = {"intensity": "intensity_g_per_kwh"}


def _session_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """update_session() keywords → column values; ValueError for an unknown name."""
    columns = {}
    for name, value in fields.items():
        if name in _JSON_FIELDS:
            if name == "settings":
                value = _without_secrets(value)
            columns[_JSON_FIELDS[name]] = _json(value)
        elif name in _FIELD_ALIASES:
            columns[_FIELD_ALIASES[name]] = float(value)
        elif name in SESSION_COLUMNS and name != "session_uuid":
            columns[name] = _epoch(value) if name in ("started_at", "ended_at") else value
        else:
            valid = sorted({*_JSON_FIELDS, *_FIELD_ALIASES, *SESSION_COLUMNS} - {"session_uuid"})
            raise ValueError(f"unknown session field {name!r}; valid: {', '.join(valid)}")
    return columns


def _placeholder_session(session_uuid: str, m: Measurement | None = None) -> dict[str, Any]:
    """A minimal session row for records whose session was never opened in this process."""
    return {
        "session_uuid": session_uuid,
        "kernel_id": None,
        "notebook_path": None,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": (_epoch(m.started_at) if m else None) or time.time(),
        "ended_at": None,
        "tracker_state": "running",
        "interval_s": 0.0,
        "mode": m.mode if m else "process",
        "hardware_json": "{}",
        "methods_json": _json(m.methods) if m else "{}",
        "settings_json": "{}",
        "intensity_source": m.intensity_source if m else "",
        "intensity_g_per_kwh": float(m.intensity_g_per_kwh) if m else 0.0,
    }


@dataclass
class _Session:
    """What this process knows of one session, so it can be (re)written at any time."""

    row: dict[str, Any]
    opened: bool  # True when open_session() gave the whole row (else a placeholder)
    changes: dict[str, Any] = field(default_factory=dict)  # update_session() since last write
    dirty: bool = True


# --- error classification -------------------------------------------------------------

_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_LOCKED_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_READONLY_CODES = {8}  # SQLITE_READONLY


def _kind(exc: BaseException) -> str:
    """corrupt | locked | read-only | unavailable: what went wrong with the file."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc).lower()
    if primary in _CORRUPT_CODES or "not a database" in text or "malformed" in text:
        return "corrupt"
    if primary in _LOCKED_CODES or "locked" in text:
        return "locked"
    if primary in _READONLY_CODES or "readonly" in text or "read-only" in text:
        return "read-only"
    return "unavailable"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


# --- the writer -----------------------------------------------------------------------


class Ledger:
    """The writer: one per kernel process, safe to call from several threads.

    ``path`` None means :func:`default_ledger_path`; a missing parent directory is
    created. No method raises for file problems (locked, read-only, corrupt, unwritable,
    newer schema): records are then kept in memory, a :class:`LedgerWarning` is issued
    once per kind of problem, and the next write after a back-off (``retry_after_s``,
    doubling up to 60 s) retries and flushes them. ``busy_timeout_s`` is how long a write
    waits for another process's transaction before the ledger counts as locked.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        retry_after_s: float = RETRY_AFTER_S,
    ) -> None:
        # Absolute now: a notebook's %cd must not move the ledger under a running kernel.
        self.path: Path = (default_ledger_path() if path is None else Path(path)).expanduser()
        self.path = self.path.absolute()
        self._busy_timeout_s = float(busy_timeout_s)
        self._retry_after_s = float(retry_after_s)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = 0
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._reason: str | None = None  # why we are in memory; None when ok
        self._permanent = False  # newer schema: never write this file
        self._retry_at = 0.0  # time.monotonic() of the next attempt
        self._backoff = self._retry_after_s
        self._warned: set[str] = set()
        self._sessions: dict[str, _Session] = {}
        self._session_ids: dict[str, int] = {}  # session_uuid → sessions.id in this file
        self._cells: list[tuple[str, dict[str, Any]]] = []  # pending (session_uuid, row)
        self._heartbeats: deque[tuple[str, dict[str, Any]]] = deque(maxlen=MAX_PENDING_HEARTBEATS)
        self._last_prune: dict[str, float] = {}
        self._housekeeping_done = False
        with self._lock:
            self._open()

    # public API ---------------------------------------------------------------------

    def status(self) -> str:
        """``"ok: <path>"``, or ``"in memory (N pending): <reason>"`` where N is the number
        of cells waiting to be written."""
        with self._lock:
            if self._reason is None:
                return f"ok: {self.path}"
            return f"in memory ({len(self._cells)} pending): {self._reason}"

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

        Returns the ``sessions.id`` row id, or None while the ledger is in memory; cells
        and heartbeats of the session are linked to it whenever they reach the file.
        Settings keys that look like credentials are not stored.
        """
        row = {
            "session_uuid": session_uuid,
            "kernel_id": kernel_id,
            "notebook_path": notebook_path,
            "host": host,
            "pid": int(pid),
            "started_at": _epoch(started_at),
            "ended_at": None,
            "tracker_state": "running",
            "interval_s": float(interval_s),
            "mode": mode,
            "hardware_json": _json(hardware),
            "methods_json": _json(methods),
            "settings_json": _json(_without_secrets(settings)),
            "intensity_source": intensity_source,
            "intensity_g_per_kwh": float(intensity_g_per_kwh),
        }
        with self._lock:
            self._sessions[session_uuid] = _Session(row=row, opened=True)
            self._write()
            return self._session_ids.get(session_uuid) if self._reason is None else None

    def record_cell(
        self, session_uuid: str, m: Measurement, *, via: str, budget: str | None = None
    ) -> None:
        """Commit one completed cell (or keep it in memory if the file cannot be written).

        ``via``: auto | magic | api; ``budget``: e.g. ``"5g"``, or None.
        """
        row = cell_row(m, via=via, budget=budget)
        if m.cluster is not None:
            row[_CLUSTER_KEY] = m.cluster  # not a column: written to the cluster tables
        with self._lock:
            if session_uuid not in self._sessions:
                self._sessions[session_uuid] = _Session(
                    _placeholder_session(session_uuid, m), False
                )
            self._cells.append((session_uuid, row))
            self._write()
            self._bound_pending()

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
    ) -> None:
        """Record the tracker's state now: ``watts`` per component (cpu, gpu, ram), the
        session's running totals (kWh, gCO2e with range, embodied g), the intensity in use
        and the running cell's first line and start (UTC epoch seconds). Heartbeats of the
        session older than a day are pruned now and then, always keeping the latest."""
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
            "running_cell": _first_line(running_cell),
            "running_cell_started_at": running_cell_started_at,
        }
        with self._lock:
            if session_uuid not in self._sessions:
                self._sessions[session_uuid] = _Session(_placeholder_session(session_uuid), False)
            self._heartbeats.append((session_uuid, row))
            self._write()

    def update_session(self, session_uuid: str, **fields: Any) -> None:
        """Change a session's columns and commit, e.g. ``tracker_state="stopped"``,
        ``ended_at=time.time()``, ``mode="machine"``, ``settings={...}``, ``hardware``,
        ``methods``, ``intensity`` (gCO2e/kWh), ``intensity_source``.

        Raises ValueError for an unknown field name (nothing is changed then).
        """
        columns = _session_fields(fields)
        with self._lock:
            session = self._sessions.get(session_uuid)
            if session is None:
                session = _Session(_placeholder_session(session_uuid), opened=False)
                self._sessions[session_uuid] = session
            session.row.update(columns)
            session.changes.update(columns)
            session.dirty = True
            self._write()

    def flush(self) -> bool:
        """Try to write pending records now, ignoring the back-off; True when none are
        left. Never raises."""
        with self._lock:
            self._write(force=True)
            return not self._has_pending()

    def close(self) -> None:
        """Flush (one last try) and close the connection. Records that still cannot be
        written are reported with one LedgerWarning. A later write reopens the file."""
        with self._lock:
            if self._has_pending():
                self._write(force=True)
            if self._has_pending():
                count = len(self._cells) + len(self._heartbeats)
                self._warn(
                    "lost",
                    f"{count} pending record(s) could not be written ({self._reason}) and are lost",
                )
            if self._conn is not None and self._conn_pid == os.getpid():
                try:
                    self._conn.execute("PRAGMA optimize")
                    self._conn.close()
                except sqlite3.Error:
                    pass
            self._conn = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Ledger {self.status()}>"

    # connection ---------------------------------------------------------------------

    def _open(self, busy_timeout_s: float | None = None, *, recovering: bool = False) -> bool:
        """Connect and migrate; a corrupt file is moved aside and a fresh one started.
        Returns True when a usable connection is open. Caller holds the lock."""
        try:
            self._connect(busy_timeout_s)
            return True
        except _NewerSchemaError as exc:
            self._drop_connection()
            self._permanent = True
            self._fail(
                "newer",
                f"schema version {exc.args[0]} is newer than this carbon_magic understands "
                f"({len(MIGRATIONS)}); the file is left untouched and records stay in memory",
            )
        except (sqlite3.Error, OSError) as exc:
            if _kind(exc) == "corrupt" and not recovering:
                return self._recover_corrupt(exc, busy_timeout_s)
            self._fault(exc)
        return False

    def _connect(self, busy_timeout_s: float | None) -> None:
        """Open the writer connection: create the directory, check the version before
        touching the file, then WAL, synchronous=NORMAL, and migrations. Raises."""
        self._drop_connection()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot create the directory: {exc.strerror}", str(self.path.parent)
            ) from exc
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
        version = _schema_version(conn)
        if version > len(MIGRATIONS):  # checked before WAL, which would write the header
            raise _NewerSchemaError(version)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        _migrate(conn)

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
            self._fault(exc, extra=f"; could not move it aside: {_describe(move_exc)}")
            return False
        if not replaced:
            self._warn(
                "corrupt", f"{_describe(exc)}; moved it to {aside.name} and started a fresh ledger"
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

    def _write(self, force: bool = False) -> None:
        """Write everything pending in one transaction, or stay in memory. Never raises.
        Caller holds the lock."""
        retrying = self._reason is not None
        if retrying:
            if self._permanent or (not force and time.monotonic() < self._retry_at):
                return
        if not self._connection_current():
            # Retries wait only briefly for a lock: a cell must not stall every few seconds.
            if not self._open(RETRY_BUSY_TIMEOUT_S if retrying else None):
                return
        conn = self._conn
        assert conn is not None
        try:
            self._flush(conn)
        except (sqlite3.Error, OSError) as exc:
            if _kind(exc) != "corrupt":
                self._fault(exc)
                return
            if not self._recover_corrupt(exc, None):
                return  # already faulted
            try:
                self._flush(self._conn)  # type: ignore[arg-type]
            except (sqlite3.Error, OSError) as again:
                self._fault(again)
                return
        if retrying:
            self._restore_busy_timeout()
        self._reason = None
        self._backoff = self._retry_after_s

    def _restore_busy_timeout(self) -> None:
        try:
            if self._conn is not None:
                self._conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        except sqlite3.Error:
            pass  # a later write reconnects if this connection is broken

    def _flush(self, conn: sqlite3.Connection) -> None:
        """One transaction: sessions, then cells, then heartbeats; clears what it wrote."""
        ids = dict(self._session_ids)
        with _transaction(conn):
            if not self._housekeeping_done:
                _prune_all_heartbeats(conn, time.time() - HEARTBEAT_KEEP_S)
            for uuid, session in self._sessions.items():
                if session.dirty or uuid not in ids:
                    ids[uuid] = self._write_session(conn, session)
            for uuid, row in self._cells:
                kernel_id = self._sessions[uuid].row["kernel_id"]
                cursor = conn.execute(
                    _INSERT_CELL, {**row, "session_id": ids[uuid], "kernel_id": kernel_id}
                )
                if row.get(_CLUSTER_KEY) is not None:
                    _write_cluster(conn, int(cursor.lastrowid), row[_CLUSTER_KEY])
            for uuid, row in self._heartbeats:
                self._write_heartbeat(conn, ids[uuid], uuid, row)
        # Only after COMMIT: a rolled-back transaction leaves everything pending.
        self._session_ids = ids
        self._housekeeping_done = True
        for session in self._sessions.values():
            session.dirty = False
            session.changes.clear()
        self._cells.clear()
        self._heartbeats.clear()

    def _write_session(self, conn: sqlite3.Connection, session: _Session) -> int:
        """Insert the session row if missing, else update it; returns its id."""
        row = session.row
        cursor = conn.execute(_INSERT_SESSION, row)
        if cursor.rowcount == 1:
            return int(cursor.lastrowid)  # type: ignore[arg-type]
        # An existing row: a placeholder must only apply explicit changes, never overwrite
        # the real row another Ledger wrote with made-up values.
        fields = {k: v for k, v in row.items() if k != "session_uuid"}
        if not session.opened:
            fields = session.changes
        if fields:
            assignments = ", ".join(f"{name} = :{name}" for name in fields)
            conn.execute(
                f"UPDATE sessions SET {assignments} WHERE session_uuid = :session_uuid",
                {**fields, "session_uuid": row["session_uuid"]},
            )
        found = conn.execute(
            "SELECT id FROM sessions WHERE session_uuid = ?", (row["session_uuid"],)
        ).fetchone()
        return int(found[0])

    def _write_heartbeat(
        self, conn: sqlite3.Connection, session_id: int, uuid: str, row: dict[str, Any]
    ) -> None:
        kernel_id = self._sessions[uuid].row["kernel_id"]
        cursor = conn.execute(
            _INSERT_HEARTBEAT, {**row, "session_id": session_id, "kernel_id": kernel_id}
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
        self._fail(_kind(exc), f"{_describe(exc)}{extra}")

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
        """One LedgerWarning per kind of problem for the life of this Ledger."""
        if kind in self._warned:
            return
        self._warned.add(kind)
        warnings.warn(
            f"carbon_magic ledger {self.path}: {message}",
            LedgerWarning,
            stacklevel=_stacklevel_outside_module(),
        )


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


_CLUSTER_KEY = "_cluster"


def _write_cluster(conn: sqlite3.Connection, cell_ref: int, cluster: Mapping[str, Any]) -> None:
    """The ``cell_clusters`` row and ``cell_hosts`` rows of one cell (``Measurement.cluster``)."""
    conn.execute(
        "INSERT INTO cell_clusters (cell_ref, missing_workers, energy_kwh, emissions_g, "
        "embodied_g) VALUES (?, ?, ?, ?, ?)",
        (
            cell_ref,
            int(cluster.get("missing_workers", 0)),
            float(cluster.get("energy_kwh", 0.0)),
            float(cluster.get("emissions_g", 0.0)),
            float(cluster.get("embodied_g", 0.0)),
        ),
    )
    for host_id, host in cluster.get("hosts", {}).items():
        energy = host.get("energy_j", {})
        conn.execute(
            "INSERT INTO cell_hosts (cell_ref, host_id, name, workers, in_kernel, cpu_j, "
            "gpu_j, ram_j, embodied_g, methods_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cell_ref,
                str(host_id),
                str(host.get("name", "")),
                int(host.get("workers", 0)),
                int(host.get("in_kernel", 0)),
                float(energy.get("cpu", 0.0)),
                float(energy.get("gpu", 0.0)),
                float(energy.get("ram", 0.0)),
                float(host.get("embodied_g", 0.0)),
                _json(host.get("methods", {})),
            ),
        )


# --- readers --------------------------------------------------------------------------


def connect_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A read-only connection (``mode=ro`` URI) with ``sqlite3.Row`` rows and the busy
    timeout. Raises FileNotFoundError when the file does not exist (SQLite would only say
    "unable to open database file")."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise FileNotFoundError(f"no ledger at {path}")
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    conn.row_factory = sqlite3.Row
    return conn


def _query(
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection, sql: str, params: Iterable[Any]
) -> list[dict[str, Any]]:
    """Rows as dicts, from a connection (left open) or a path (opened read-only, closed).
    A file without the table yet (nothing written so far) gives no rows."""
    own = not isinstance(path_or_conn, sqlite3.Connection)
    conn = connect_readonly(path_or_conn) if own else path_or_conn  # type: ignore[arg-type]
    try:
        cursor = conn.execute(sql, tuple(params))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        if own:
            conn.close()


def read_cells(
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection,
    *,
    kernel_id: str | None = None,
    session_uuid: str | None = None,
    notebook_path: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Cell rows (all ``cells`` columns plus the session's ``session_uuid``,
    ``notebook_path`` and ``host``), oldest first by ``started_at``.

    Filters combine: ``since <= started_at < until`` (UTC epoch seconds); ``limit`` keeps
    the most recent ``limit`` rows. Raises FileNotFoundError for a missing file and
    sqlite3.Error for an unreadable one.
    """
    where, params = [], []
    for column, value in (
        ("c.kernel_id", kernel_id),
        ("s.session_uuid", session_uuid),
        ("s.notebook_path", notebook_path),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("c.started_at >= ?")
        params.append(float(since))
    if until is not None:
        where.append("c.started_at < ?")
        params.append(float(until))
    sql = (
        "SELECT c.*, s.session_uuid, s.notebook_path, s.host "
        "FROM cells c JOIN sessions s ON s.id = c.session_id"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    if limit is None:
        sql += " ORDER BY c.started_at, c.id"
    else:
        sql = f"SELECT * FROM ({sql} ORDER BY c.started_at DESC, c.id DESC LIMIT ?) "
        sql += "ORDER BY started_at, id"
        params.append(int(limit))
    return _with_cluster_share(path_or_conn, _query(path_or_conn, sql, params))


CLUSTER_SHARE_COLUMNS = (
    "cluster_kwh",
    "cluster_emissions_g",
    "cluster_workers",
    "cluster_hosts",
    "cluster_missing_workers",
)


def _with_cluster_share(
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Add the ``CLUSTER_SHARE_COLUMNS`` to the rows of cells that used a Dask cluster
    (kWh facility, grams CO2e; counts), from the cluster tables."""
    if not rows:
        return rows
    clusters = read_cell_clusters(path_or_conn, (row["id"] for row in rows))
    for row in rows:
        cluster = clusters.get(row["id"])
        if cluster is not None:
            hosts = cluster["hosts"].values()
            row.update(
                cluster_kwh=cluster["energy_kwh"],
                cluster_emissions_g=cluster["emissions_g"],
                cluster_workers=sum(host["workers"] for host in hosts),
                cluster_hosts=len(cluster["hosts"]),
                cluster_missing_workers=cluster["missing_workers"],
            )
    return rows


def read_sessions(
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection, *, kernel_id: str | None = None
) -> list[dict[str, Any]]:
    """Session rows (all ``sessions`` columns, JSON as text), oldest first; only those of
    ``kernel_id`` when given. Raises as :func:`read_cells`."""
    sql = "SELECT * FROM sessions"
    params: list[Any] = []
    if kernel_id is not None:
        sql += " WHERE kernel_id = ?"
        params.append(kernel_id)
    return _query(path_or_conn, sql + " ORDER BY started_at, id", params)


def latest_heartbeat(
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection, kernel_id: str
) -> dict[str, Any] | None:
    """The newest heartbeat of ``kernel_id`` (across its sessions, e.g. after a restart):
    all ``heartbeats`` columns plus ``session_uuid``, ``notebook_path``, ``host``, ``pid``
    and the session's ``ended_at`` as ``session_ended_at``; None when there is none.
    Raises as :func:`read_cells`."""
    rows = _query(
        path_or_conn,
        "SELECT h.*, s.session_uuid, s.notebook_path, s.host, s.pid, "
        "s.ended_at AS session_ended_at "
        "FROM heartbeats h JOIN sessions s ON s.id = h.session_id "
        "WHERE h.kernel_id = ? ORDER BY h.at DESC, h.id DESC LIMIT 1",
        (kernel_id,),
    )
    return rows[0] if rows else None


def read_cell_clusters(
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection, cell_ids: Iterable[int]
) -> dict[int, dict[str, Any]]:
    """The Dask cluster part of the given cells (``cells.id``), as ``Measurement.cluster``
    holds it: ``{cell id: {"hosts": {host_id: {"name", "workers", "in_kernel", "energy_j",
    "embodied_g", "methods"}}, "missing_workers", "energy_kwh", "emissions_g",
    "embodied_g"}}``. Cells without a cluster are absent. Raises as :func:`read_cells`."""
    wanted = {int(i) for i in cell_ids}
    found: dict[int, dict[str, Any]] = {}
    if not wanted:
        return found
    # One range query per table (the ids of a read are mostly contiguous), filtered here:
    # cheap on a ledger of 100,000 cells, and no limit on bound parameters.
    span = (min(wanted), max(wanted))
    where = "WHERE cell_ref BETWEEN ? AND ?"
    for row in _query(path_or_conn, f"SELECT * FROM cell_clusters {where}", span):
        if row["cell_ref"] in wanted:
            found[row["cell_ref"]] = {
                "hosts": {},
                "missing_workers": row["missing_workers"],
                "energy_kwh": row["energy_kwh"],
                "emissions_g": row["emissions_g"],
                "embodied_g": row["embodied_g"],
            }
    if not found:
        return found
    for row in _query(path_or_conn, f"SELECT * FROM cell_hosts {where}", span):
        cluster = found.get(row["cell_ref"])
        if cluster is not None:
            cluster["hosts"][row["host_id"]] = {
                "name": row["name"],
                "workers": row["workers"],
                "in_kernel": row["in_kernel"],
                "energy_j": {"cpu": row["cpu_j"], "gpu": row["gpu_j"], "ram": row["ram_j"]},
                "embodied_g": row["embodied_g"],
                "methods": json.loads(row["methods_json"] or "{}"),
            }
    return found
