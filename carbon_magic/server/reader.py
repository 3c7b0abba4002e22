"""Read-only queries on the ledger, shaped for the server's endpoints.

Every query goes through an index of ``schema.sql``: a kernel's latest session
(``sessions_kernel``), a session's latest heartbeat (``heartbeats_session``), today's
cells (``cells_started``). Per-session cell counts and sums are kept in memory and
brought up to date from the cells added since the last read (a range of the primary key:
the ledger only appends cells, and removes the oldest ones when a retention time is set,
which starts the sums over), so no request scans the cells or heartbeats tables whole,
however long the ledger grows.

Units: seconds since the epoch (UTC) for times, watts, kWh, grams CO2e, gCO2e/kWh.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from carbon_magic import ledger
from carbon_magic.server.cell_pages import (
    CELL_PAGE_DEFAULT,
    CELL_PAGE_MAX,
    KERNEL_CELLS_SQL,
    NOTEBOOK_CELLS_SQL,
    CellPage,
    cell_record,
)
from carbon_magic.server.gpus import session_gpus
from carbon_magic.server.heartbeat_columns import (
    decode_hint,
    decode_next_beat,
    heartbeat_select,
    missing_later_columns,
)

COMPONENTS = ("cpu", "gpu", "ram")
MAX_DAY_CACHES = 4  # day starts whose cell sums are kept (clients in a few time zones)


class LedgerUnavailable(Exception):
    """The ledger file does not exist (yet) or has no tables: nothing was recorded."""


@dataclass(frozen=True)
class Totals:
    """Cumulative figures: facility energy (kWh), operational emissions with their range
    and amortised embodied emissions (grams CO2e)."""

    energy_kwh: float = 0.0
    emissions_g: float = 0.0
    emissions_low_g: float = 0.0
    emissions_high_g: float = 0.0
    embodied_g: float = 0.0

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def since(self, baseline: Totals) -> Totals:
        """The growth from ``baseline`` to these totals, never negative."""
        return Totals(
            *(max(0.0, getattr(self, f.name) - getattr(baseline, f.name)) for f in fields(self))
        )

    def to_json(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Heartbeat:
    """A tracker's latest sign of life: live power per component and running totals."""

    at: float
    power_w: dict[str, float]
    totals: Totals
    intensity_g_per_kwh: float
    intensity_source: str
    tracker_state: str
    running_cell: str | None
    running_cell_started_at: float | None
    # The running cell's predicted total at completion: {"fraction": 0..1, "emissions_g",
    # "emissions_range_g": [low, high], "eta_s"}, or None.
    prediction: dict[str, Any] | None = None
    hint: str | None = None  # the carbon-aware hint of the grid forecast, or None
    # The longest the tracker said it may take to write the next heartbeat (seconds);
    # None for heartbeats written before ledger schema 5.
    next_beat_s: float | None = None


@dataclass(frozen=True)
class Session:
    """One tracker lifetime in one kernel process (a kernel restart starts a new one)."""

    id: int
    session_uuid: str
    kernel_id: str | None
    notebook_path: str | None
    host: str
    pid: int
    started_at: float
    ended_at: float | None
    tracker_state: str
    interval_s: float
    mode: str
    methods: dict[str, str]
    intensity_g_per_kwh: float
    intensity_source: str
    # The machine's GPUs: {device key: {"vendor": "nvidia", "model": "NVIDIA H200"}}.
    gpus: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class SessionFigures:
    """A session with its latest heartbeat and its totals, all time and since a day start."""

    session: Session
    heartbeat: Heartbeat | None
    all_time: Totals
    today: Totals
    n_cells: int | None = None
    totals_from: str = "heartbeat"  # heartbeat | cells

    @property
    def last_seen(self) -> float:
        """When this session last wrote anything we read (seconds since the epoch)."""
        if self.heartbeat is not None:
            return self.heartbeat.at
        return self.session.started_at

    @property
    def tracker_state(self) -> str:
        """``running`` or ``stopped``; a session with ``ended_at`` set is stopped."""
        if self.session.ended_at is not None:
            return "stopped"
        if self.heartbeat is not None:
            return self.heartbeat.tracker_state
        return self.session.tracker_state


@dataclass
class CellSums:
    """Cell counts and totals per session id, of the cells from id ``first_id`` up to
    ``watermark``; with a
    ``day_start``, only of the cells that started since then (seconds since the epoch)."""

    day_start: float | None = None
    watermark: int = 0
    first_id: int = 0
    per_session: dict[int, tuple[int, Totals]] = field(default_factory=dict)

    def get(self, session_id: int) -> tuple[int, Totals]:
        """(number of cells, their totals) of one session; (0, zeros) without cells."""
        return self.per_session.get(session_id, (0, Totals()))

    def refresh(self, connection: sqlite3.Connection, min_id: int, max_id: int) -> None:
        """Add the cells after ``watermark`` up to ``max_id`` (``min_id``, ``max_id``: the
        table's smallest and largest ids in the caller's read transaction). Starts over
        when cells were removed (a replaced file, or old cells past the retention time)."""
        if max_id < self.watermark or (self.watermark and min_id != self.first_id):
            self.watermark, self.per_session = 0, {}  # old cells were removed (retention)
        self.first_id = min_id
        if max_id == self.watermark:
            return
        if self.day_start is None:
            rows = connection.execute(_CELLS_AFTER, (self.watermark,))
        elif self.watermark == 0:
            rows = connection.execute(_CELLS_SINCE, (self.day_start,))
        else:
            rows = connection.execute(_CELLS_AFTER_SINCE, (self.watermark, self.day_start))
        for row in rows:
            session_id = row["session_id"]
            known_count, known = self.get(session_id)
            self.per_session[session_id] = (known_count + row["n_cells"], known + _totals(row))
        self.watermark = max_id


@dataclass
class LedgerSnapshot:
    """Every session of the ledger with its figures, read in one read transaction."""

    now: float
    day_start: float
    sessions: list[SessionFigures] = field(default_factory=list)
    # Per kernel id: the cluster part (Dask, Ray) of its cells (facility kWh, grams CO2e).
    cluster: dict[str, tuple[float, float]] = field(default_factory=dict)


# Rows are read by column name (sqlite3.Row). Heartbeat columns are named h_<column>,
# apart from the session columns they share a row with.
_SESSION_NAMES = (
    "id session_uuid kernel_id notebook_path host pid started_at ended_at tracker_state "
    "interval_s mode methods_json intensity_g_per_kwh intensity_source hardware_json"
).split()
_SESSION_COLUMNS = ", ".join(f"s.{name}" for name in _SESSION_NAMES)
_HEARTBEAT_COLUMNS = heartbeat_select()
_TOTALS_NAMES = tuple(f.name for f in fields(Totals))
_TOTALS_SUMS = ", ".join(f"TOTAL({name}) AS {name}" for name in _TOTALS_NAMES)
# The id of a session's latest heartbeat: one seek in heartbeats_session (session_id, at).
_LATEST_HEARTBEAT = "(SELECT id FROM heartbeats WHERE session_id = s.id ORDER BY at DESC LIMIT 1)"
_BASELINE_HEARTBEAT = (
    "(SELECT id FROM heartbeats WHERE session_id = s.id AND at < :day_start "
    "ORDER BY at DESC LIMIT 1)"
)

_KERNEL_LATEST_SESSION = f"""
SELECT {_SESSION_COLUMNS} FROM sessions AS s
WHERE s.kernel_id = ? ORDER BY s.started_at DESC, s.id DESC LIMIT 1
"""
_SESSION_LATEST_HEARTBEAT_SQL = """
SELECT {columns} FROM heartbeats AS h
WHERE h.session_id = ? ORDER BY h.at DESC LIMIT 1
"""
_SESSION_LATEST_HEARTBEAT = _SESSION_LATEST_HEARTBEAT_SQL.format(columns=_HEARTBEAT_COLUMNS)
# Two seeks in the primary key: cells are only ever appended, and removed oldest first.
_CELL_ID_RANGE = (
    "SELECT (SELECT MIN(id) FROM cells) AS min_id, (SELECT MAX(id) FROM cells) AS max_id"
)
# Cell counts and sums per session: of the cells added after a known id (a range of the
# primary key), of the cells started since a day start (cells_started), and of both
# (the unary + keeps SQLite on the primary key range).
_CELLS_AFTER = f"""
SELECT session_id, COUNT(*) AS n_cells, {_TOTALS_SUMS} FROM cells WHERE id > ?
GROUP BY +session_id
"""
_CELLS_SINCE = f"""
SELECT session_id, COUNT(*) AS n_cells, {_TOTALS_SUMS} FROM cells WHERE started_at >= ?
GROUP BY +session_id
"""
_CELLS_AFTER_SINCE = f"""
SELECT session_id, COUNT(*) AS n_cells, {_TOTALS_SUMS} FROM cells
WHERE id > ? AND +started_at >= ?
GROUP BY +session_id
"""

_ALL_SESSIONS_SQL = f"""
SELECT {_SESSION_COLUMNS}, {{columns}}
FROM sessions AS s LEFT JOIN heartbeats AS h ON h.id = {_LATEST_HEARTBEAT}
"""
_ALL_SESSIONS = _ALL_SESSIONS_SQL.format(columns=_HEARTBEAT_COLUMNS)


@functools.lru_cache(maxsize=8)
def _older_queries(missing: frozenset[str]) -> tuple[str, str]:
    """The same two queries for a ledger whose heartbeats lack the ``missing`` columns."""
    columns = heartbeat_select(missing)
    return (
        _SESSION_LATEST_HEARTBEAT_SQL.format(columns=columns),
        _ALL_SESSIONS_SQL.format(columns=columns),
    )


# Running totals at the last heartbeat before the day started, for sessions alive then.
_DAY_BASELINES = f"""
SELECT s.id AS session_id, {", ".join(f"h.{name}" for name in _TOTALS_NAMES)}
FROM sessions AS s JOIN heartbeats AS h ON h.id = {_BASELINE_HEARTBEAT}
WHERE s.started_at < :day_start AND (s.ended_at IS NULL OR s.ended_at >= :day_start)
"""


def _totals(row: sqlite3.Row, prefix: str = "") -> Totals:
    """The Totals in a row's columns named ``<prefix><field>``."""
    return Totals(*(row[prefix + name] for name in _TOTALS_NAMES))


def _session(row: sqlite3.Row) -> Session:
    try:
        methods = json.loads(row["methods_json"]) if row["methods_json"] else {}
    except ValueError:
        methods = {}
    return Session(
        id=row["id"],
        session_uuid=row["session_uuid"],
        kernel_id=row["kernel_id"],
        notebook_path=row["notebook_path"],
        host=row["host"],
        pid=row["pid"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        tracker_state=row["tracker_state"],
        interval_s=row["interval_s"],
        mode=row["mode"],
        methods=methods if isinstance(methods, dict) else {},
        intensity_g_per_kwh=row["intensity_g_per_kwh"],
        intensity_source=row["intensity_source"],
        gpus=session_gpus(row["hardware_json"]),
    )


def _heartbeat(row: sqlite3.Row | None) -> Heartbeat | None:
    """The heartbeat in a row's ``h_*`` columns; None without one (no row, or a session
    row whose LEFT JOIN found no heartbeat)."""
    if row is None or row["h_at"] is None:
        return None
    return Heartbeat(
        at=row["h_at"],
        power_w={component: row[f"h_{component}_w"] for component in COMPONENTS},
        totals=_totals(row, "h_"),
        intensity_g_per_kwh=row["h_intensity_g_per_kwh"],
        intensity_source=row["h_intensity_source"],
        tracker_state=row["h_tracker_state"],
        running_cell=row["h_running_cell"],
        running_cell_started_at=row["h_running_cell_started_at"],
        prediction=_prediction(row["h_prediction_json"]),
        hint=decode_hint(row["h_hint"]),
        next_beat_s=decode_next_beat(row["h_next_beat_s"]),
    )


def _prediction(text: str | None) -> dict[str, Any] | None:
    """A heartbeat's prediction JSON, or None when absent or not the expected shape."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    keys = {"fraction", "emissions_g", "emissions_range_g", "eta_s"}
    if not isinstance(value, dict) or not keys <= value.keys():
        return None
    return {key: value[key] for key in ("fraction", "emissions_g", "emissions_range_g", "eta_s")}


_CLUSTER_SUMS = (
    "SELECT c.kernel_id, TOTAL(cc.energy_kwh) AS energy_kwh, TOTAL(cc.emissions_g) AS emissions_g "
    "FROM cell_clusters AS cc JOIN cells AS c ON c.id = cc.cell_ref GROUP BY c.kernel_id"
)


def _cluster_sums(connection: sqlite3.Connection) -> dict[str, tuple[float, float]]:
    """Per kernel id, the cluster part of its cells (kWh, g); empty for a ledger written
    before the cluster tables existed."""
    try:
        rows = connection.execute(_CLUSTER_SUMS).fetchall()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return {}
        raise
    return {
        row["kernel_id"]: (row["energy_kwh"], row["emissions_g"])
        for row in rows
        if row["kernel_id"]
    }


class LedgerReader:
    """Answers the server's questions from the ledger, read-only.

    Each thread that reads gets its own connection (the server uses one worker thread),
    reopened when the ledger file is replaced. A missing ledger, or one whose tables do
    not exist yet, raises ``LedgerUnavailable``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._local = threading.local()

    def close(self) -> None:
        """Close this thread's connection (a later call reopens it)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
        self._local.connection = None
        self._local.identity = None
        self._local.all_cells = CellSums()
        self._local.cells_by_day = {}
        self._local.has_later_columns = False

    def _connect(self) -> sqlite3.Connection:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self.close()
            raise LedgerUnavailable(f"no ledger at {self.path}") from None
        identity = (stat.st_dev, stat.st_ino)
        connection = getattr(self._local, "connection", None)
        if connection is None or identity != self._local.identity:
            self.close()
            try:
                connection = ledger.connect_readonly(self.path)
            except (FileNotFoundError, sqlite3.Error) as error:
                raise LedgerUnavailable(f"cannot open the ledger {self.path}: {error}") from None
            connection.row_factory = sqlite3.Row  # rows are read by column name
            connection.isolation_level = None  # explicit read transactions below
            self._local.connection = connection
            self._local.identity = identity
            self._local.has_later_columns = False
        return connection

    def _heartbeat_queries(self, connection: sqlite3.Connection) -> tuple[str, str]:
        """(latest heartbeat of a session, every session with its latest heartbeat) for
        the columns this file has. A column once there stays there; until all are, they
        are looked for again, as a kernel may migrate the file meanwhile."""
        if getattr(self._local, "has_later_columns", None):
            return _SESSION_LATEST_HEARTBEAT, _ALL_SESSIONS
        missing = missing_later_columns(
            row["name"] for row in connection.execute("PRAGMA table_info(heartbeats)")
        )
        if not missing:
            self._local.has_later_columns = True
            return _SESSION_LATEST_HEARTBEAT, _ALL_SESSIONS
        return _older_queries(missing)

    def _cell_sums(
        self, connection: sqlite3.Connection, day_start: float | None = None
    ) -> CellSums:
        """This thread's cell sums (all time, or since ``day_start``), brought up to date."""
        ids = connection.execute(_CELL_ID_RANGE).fetchone()
        min_id, max_id = ids["min_id"] or 0, ids["max_id"] or 0
        if day_start is None:
            sums = self._local.all_cells
        else:
            by_day: dict[float, CellSums] = self._local.cells_by_day
            sums = by_day.get(day_start)
            if sums is None:
                while len(by_day) >= MAX_DAY_CACHES:
                    del by_day[next(iter(by_day))]
                sums = by_day[day_start] = CellSums(day_start)
        sums.refresh(connection, min_id, max_id)
        return sums

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one read transaction: every query sees the same state."""
        connection = self._connect()
        try:
            connection.execute("BEGIN")
            try:
                yield connection
            finally:
                connection.execute("ROLLBACK")
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                raise LedgerUnavailable(f"the ledger {self.path} has no tables yet") from None
            raise
        except sqlite3.DatabaseError:
            self.close()  # corrupt or replaced underneath us: reopen next time
            raise

    def kernel(self, kernel_id: str) -> SessionFigures | None:
        """The latest session of ``kernel_id`` with its live heartbeat and totals.

        Totals are the latest heartbeat's running totals, or the sum of the session's
        cells when it never wrote a heartbeat. ``None`` when the kernel has no session.
        """
        with self._snapshot() as connection:
            row = connection.execute(_KERNEL_LATEST_SESSION, (kernel_id,)).fetchone()
            if row is None:
                return None
            session = _session(row)
            heartbeat = _heartbeat(
                connection.execute(self._heartbeat_queries(connection)[0], (session.id,)).fetchone()
            )
            n_cells, cell_totals = self._cell_sums(connection).get(session.id)
        if heartbeat is not None:
            totals, source = heartbeat.totals, "heartbeat"
        else:
            totals, source = cell_totals, "cells"
        return SessionFigures(
            session, heartbeat, all_time=totals, today=totals, n_cells=n_cells, totals_from=source
        )

    def snapshot(self, now: float, day_start: float) -> LedgerSnapshot:
        """Every session with its latest heartbeat, its all-time totals and its growth
        since ``day_start`` (seconds since the epoch).

        A session's growth since the day start is its running total now minus its running
        total at its last heartbeat before the day start; for sessions without
        heartbeats, the sum of its cells that started since the day start.
        """
        result = LedgerSnapshot(now=now, day_start=day_start)
        with self._snapshot() as connection:
            rows = connection.execute(self._heartbeat_queries(connection)[1]).fetchall()
            baselines = {
                row["session_id"]: _totals(row)
                for row in connection.execute(_DAY_BASELINES, {"day_start": day_start})
            }
            all_cells = self._cell_sums(connection)
            cells_today = self._cell_sums(connection, day_start)
            result.cluster = _cluster_sums(connection)
        for row in rows:
            session = _session(row)
            heartbeat = _heartbeat(row)
            n_cells, cell_totals = all_cells.get(session.id)
            if heartbeat is None:
                all_time, today = cell_totals, cells_today.get(session.id)[1]
                source = "cells"
            else:
                all_time, source = heartbeat.totals, "heartbeat"
                if heartbeat.at < day_start:
                    today = Totals()
                else:
                    today = all_time.since(baselines.get(session.id, Totals()))
            result.sessions.append(
                SessionFigures(session, heartbeat, all_time, today, n_cells, source)
            )
        return result

    def cells(
        self,
        *,
        kernel_id: str | None = None,
        notebook_paths: Sequence[str] | None = None,
        kernel_ids: Sequence[str] = (),
        since: float | None = None,
        after: int = 0,
        limit: int = CELL_PAGE_DEFAULT,
    ) -> CellPage:
        """One page of recorded cells, in the order they were recorded (row id).

        Either the cells of ``kernel_id`` (every session of it, across restarts), or of a
        notebook: the sessions started for one of ``notebook_paths`` (the ledger keeps the
        path a kernel was started with: relative, or absolute as Jupyter Server gives it),
        and those of ``kernel_ids`` (the kernels the server runs for the notebook now,
        which may have been started under another name). ``since`` keeps the cells that ended at or after it
        (seconds since the epoch); ``after`` those recorded after the row id ``after`` (the
        previous page's ``last_id``). At most ``limit`` cells; ``CellPage.more`` says
        whether more follow. Raises ``LedgerUnavailable`` as the other reads do.
        """
        if (kernel_id is None) == (notebook_paths is None):
            raise ValueError("give exactly one of kernel_id and notebook_paths")
        limit = max(1, min(int(limit), CELL_PAGE_MAX))
        since_s = -math.inf if since is None else float(since)
        with self._snapshot() as connection:
            if kernel_id is not None:
                params: tuple = (kernel_id, int(after), since_s, limit + 1)
                rows = connection.execute(KERNEL_CELLS_SQL, params).fetchall()
            else:
                names, ids = json.dumps(list(notebook_paths or ())), json.dumps(list(kernel_ids))
                params = (names, ids, int(after), since_s)
                rows = connection.execute(NOTEBOOK_CELLS_SQL, (*params, limit + 1)).fetchall()
        records = [cell_record(row) for row in rows[:limit]]
        return CellPage(records, more=len(rows) > limit)
