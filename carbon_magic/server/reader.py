"""Read-only queries on the ledger, shaped for the server's endpoints.

Every query goes through an index of ``schema.sql``: a kernel's latest session
(``sessions_kernel``), a session's latest heartbeat (``heartbeats_session``), today's
cells (``cells_started``). Per-session cell counts and sums are kept in memory and
brought up to date from the cells added since the last read
(:mod:`carbon_magic.server.cell_sums`), so no request scans the cells or heartbeats
tables whole, however long the ledger grows; and a snapshot is read again only when
something was committed since the last (SQLite's ``data_version``).

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
from dataclasses import replace
from pathlib import Path
from typing import Any

from carbon_magic import ledger, records
from carbon_magic.ledger.remote_calls import read_cell_remote
from carbon_magic.ledger.sql import query
from carbon_magic.record_json import RecordError, field_types, from_json
from carbon_magic.records import TOTALS_NAMES, Totals, TotalsSource
from carbon_magic.server.cell_pages import (
    CELL_PAGE_DEFAULT,
    CELL_PAGE_MAX,
    KERNEL_CELLS_SQL,
    NOTEBOOK_CELLS_SQL,
    CellPage,
    cell_record,
)
from carbon_magic.server.cell_sums import CellSums, totals_of
from carbon_magic.server.gpus import session_gpus
from carbon_magic.server.heartbeat_columns import (
    decode_hint,
    decode_next_beat,
    heartbeat_select,
    missing_later_columns,
)
from carbon_magic.server.journals import JournalCatchUp
from carbon_magic.server.ledger_records import (
    Heartbeat,
    LedgerSnapshot,
    Session,
    SessionFigures,
)
from carbon_magic.vocabulary import COMPONENTS

MAX_DAY_CACHES = 4  # day starts whose cell sums are kept (clients in a few time zones)


class LedgerUnavailable(Exception):
    """The ledger file does not exist (yet) or has no tables: nothing was recorded."""


# Rows are read by column name (sqlite3.Row). Heartbeat columns are named h_<column>,
# apart from the session columns they share a row with.
_SESSION_NAMES = (
    "id session_uuid kernel_id notebook_path host pid started_at ended_at tracker_state "
    "interval_s mode methods_json intensity_g_per_kwh intensity_source hardware_json"
).split()
_SESSION_COLUMNS = ", ".join(f"s.{name}" for name in _SESSION_NAMES)
_HEARTBEAT_COLUMNS = heartbeat_select()
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
_ALL_SESSIONS_SQL = f"""
SELECT {_SESSION_COLUMNS}, {{columns}}
FROM sessions AS s LEFT JOIN heartbeats AS h ON h.id = {_LATEST_HEARTBEAT}
"""
_ALL_SESSIONS = _ALL_SESSIONS_SQL.format(columns=_HEARTBEAT_COLUMNS)


@functools.lru_cache(maxsize=8)
def queries_for_older_ledgers(missing: frozenset[str]) -> tuple[str, str]:
    """The same two queries for a ledger whose heartbeats lack the ``missing`` columns."""
    columns = heartbeat_select(missing)
    return (
        _SESSION_LATEST_HEARTBEAT_SQL.format(columns=columns),
        _ALL_SESSIONS_SQL.format(columns=columns),
    )


# Running totals at the last heartbeat before the day started, for sessions alive then.
_DAY_BASELINES = f"""
SELECT s.id AS session_id, {", ".join(f"h.{name}" for name in TOTALS_NAMES)}
FROM sessions AS s JOIN heartbeats AS h ON h.id = {_BASELINE_HEARTBEAT}
WHERE s.started_at < :day_start AND (s.ended_at IS NULL OR s.ended_at >= :day_start)
"""


def _session(row: sqlite3.Row) -> Session:
    return _session_of(tuple(row[name] for name in _SESSION_NAMES))


@functools.lru_cache(maxsize=4096)
def _session_of(values: tuple[Any, ...]) -> Session:
    """The Session of a row's ``_SESSION_NAMES`` values. A session row seldom changes,
    and every request reads every session: its JSON is decoded once, not per request."""
    row = dict(zip(_SESSION_NAMES, values, strict=True))
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
        gpus={
            key: records.Gpu(gpu["vendor"], gpu["model"])
            for key, gpu in session_gpus(row["hardware_json"]).items()
        },
    )


# What the kernel's document shows of a heartbeat: the columns of these names.
_SHOWN_HEARTBEAT = tuple(name for name, _ in field_types(records.Heartbeat))


def _heartbeat(row: sqlite3.Row | None) -> Heartbeat | None:
    """The heartbeat in a row's ``h_*`` columns; None without one (no row, or a session
    row whose LEFT JOIN found no heartbeat)."""
    if row is None or row["h_at"] is None:
        return None
    shown = from_json(
        records.Heartbeat, {name: row[f"h_{name}"] for name in _SHOWN_HEARTBEAT}, lenient=True
    )
    return Heartbeat(
        **vars(shown),
        power_w={component: row[f"h_{component}_w"] for component in COMPONENTS},
        totals=totals_of(row, "h_"),
        intensity_g_per_kwh=row["h_intensity_g_per_kwh"],
        intensity_source=row["h_intensity_source"],
        tracker_state=row["h_tracker_state"],
        prediction=_prediction(row["h_prediction_json"]),
        hint=decode_hint(row["h_hint"]),
        next_beat_s=decode_next_beat(row["h_next_beat_s"]),
    )


def _prediction(text: str | None) -> records.Prediction | None:
    """A heartbeat's prediction JSON, or None when absent or not the expected shape."""
    if not text:
        return None
    try:
        return from_json(records.Prediction, json.loads(text))
    except (ValueError, RecordError):
        return None


_SESSION_REMOTE = """
SELECT COUNT(*) AS count, COUNT(r.energy_low_kwh) AS estimated,
       TOTAL(r.energy_low_kwh) AS energy_low_kwh, TOTAL(r.energy_high_kwh) AS energy_high_kwh,
       TOTAL(r.emissions_low_g) AS emissions_low_g, TOTAL(r.emissions_high_g) AS emissions_high_g,
       TOTAL(r.water_low_l) AS water_low_l, TOTAL(r.water_high_l) AS water_high_l
FROM cells AS c INDEXED BY cells_session JOIN cell_remote_calls AS r ON r.cell_ref = c.id
WHERE c.session_id = ?
"""


def session_remote(connection: sqlite3.Connection, session_id: int) -> records.RemoteTotals | None:
    """A session's calls to hosted LLM APIs added up (kWh, g CO2e, L; middles of the
    ranges), None without any or in a ledger older than the table."""
    try:
        row = connection.execute(_SESSION_REMOTE, (session_id,)).fetchone()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return None
        raise
    if row is None or not row["count"]:
        return None
    return records.RemoteTotals(
        count=row["count"],
        unestimated=row["count"] - row["estimated"],
        energy_kwh=(row["energy_low_kwh"] + row["energy_high_kwh"]) / 2,
        emissions_g=(row["emissions_low_g"] + row["emissions_high_g"]) / 2,
        emissions_range_g=(row["emissions_low_g"], row["emissions_high_g"]),
        water_l=(row["water_low_l"] + row["water_high_l"]) / 2,
    )


class LedgerReader:
    """Answers the server's questions from the ledger, read-only.

    Each thread that reads gets its own connection (the server uses one worker thread),
    reopened when the ledger file is replaced. A missing ledger, or one whose tables do
    not exist yet, raises ``LedgerUnavailable``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._journals = JournalCatchUp(self.path)

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
        self._local.last_snapshot = None

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
        return queries_for_older_ledgers(missing)

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
        self._journals.run()
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

    def warm_up(self, now: float, day_start: float) -> None:
        """Read the ledger once (:meth:`snapshot`), so that the first request finds the
        cell sums of a long ledger in memory rather than summing a million cells itself.
        Run on the reading thread when the server starts; never raises."""
        try:
            self.snapshot(now, day_start)
        except Exception:  # no ledger yet, or unreadable: the requests will say so
            pass

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
            remote = session_remote(connection, session.id)
        source: TotalsSource
        if heartbeat is not None:
            totals, source = heartbeat.totals, "heartbeat"
        else:
            totals, source = cell_totals, "cells"
        return SessionFigures(
            session, heartbeat, totals, totals, n_cells, source, cell_totals, remote
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
            # Read before anything else: the figures read next are at least this recent.
            version = connection.execute("PRAGMA data_version").fetchone()[0]
            known = getattr(self._local, "last_snapshot", None)
            if known is not None and known[0] == (version, day_start):
                # Nothing was committed since: the same figures, at a new ``now``.
                return replace(known[1], now=now, sessions=list(known[1].sessions))
            rows = connection.execute(self._heartbeat_queries(connection)[1]).fetchall()
            baselines = {
                row["session_id"]: totals_of(row)
                for row in connection.execute(_DAY_BASELINES, {"day_start": day_start})
            }
            all_cells = self._cell_sums(connection)
            cells_today = self._cell_sums(connection, day_start)
            result.cluster = dict(all_cells.cluster)
        for row in rows:
            session = _session(row)
            heartbeat = _heartbeat(row)
            n_cells, cell_totals = all_cells.get(session.id)
            source: TotalsSource
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
                SessionFigures(session, heartbeat, all_time, today, n_cells, source, cell_totals)
            )
        self._local.last_snapshot = ((version, day_start), result)
        return replace(result, sessions=list(result.sessions))

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
            remote = read_cell_remote(query, connection, [row["id"] for row in rows[:limit]])
        records = [cell_record(row, remote.get(row["id"])) for row in rows[:limit]]
        return CellPage(records, more=len(rows) > limit)
