"""Reading the ledger: the ``read_*`` functions, cell filters and sums (connections and
the row query are in :mod:`carbon_magic.ledger.sql`).

Readers never block the writers (WAL mode) and never write. Units as in
:mod:`carbon_magic.ledger`: UTC epoch seconds, joules, kWh, grams CO2e.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from carbon_magic.ledger.cluster import with_cluster_share
from carbon_magic.ledger.remote_calls import remote_totals_in, with_remote_share
from carbon_magic.ledger.sql import connect_readonly, query

__all__ = [
    "CELL_SUM_COLUMNS",
    "LOST_AFTER_S",
    "cell_filters",
    "cell_totals",
    "heaviest_cells",
    "latest_heartbeat",
    "ledger_problem",
    "read_cells",
    "read_sessions",
    "session_state",
]

# A session silent for this long (no heartbeat) reads as ended, lost: its kernel was
# killed. Far above the heartbeat period (seconds), so a busy kernel is never lost.
LOST_AFTER_S = 300.0


def cell_filters(
    *,
    kernel_id: str | None = None,
    session_uuid: str | None = None,
    notebook_path: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (``""`` without filters) and its parameters selecting cells
    (alias ``c``): ``since <= started_at < until`` (UTC epoch seconds), and the kernel,
    session and notebook when given. Session columns are matched in a subquery, so a
    query that needs no session column scans ``cells`` alone (a join to ``sessions``
    costs more than the scan over a million cells)."""
    where: list[str] = []
    params: list[Any] = []
    for condition, value in (
        ("c.kernel_id = ?", kernel_id),
        ("c.session_id IN (SELECT id FROM sessions WHERE session_uuid = ?)", session_uuid),
        ("c.session_id IN (SELECT id FROM sessions WHERE notebook_path = ?)", notebook_path),
    ):
        if value is not None:
            where.append(condition)
            params.append(value)
    if since is not None:
        where.append("c.started_at >= ?")
        params.append(float(since))
    if until is not None:
        where.append("c.started_at < ?")
        params.append(float(until))
    return (" WHERE " + " AND ".join(where) if where else ""), params


_CELLS_FROM = "FROM cells c JOIN sessions s ON s.id = c.session_id"
_CELLS_SELECT = f"SELECT c.*, s.session_uuid, s.notebook_path, s.host {_CELLS_FROM}"


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
    where, params = cell_filters(
        kernel_id=kernel_id,
        session_uuid=session_uuid,
        notebook_path=notebook_path,
        since=since,
        until=until,
    )
    sql = _CELLS_SELECT + where
    if limit is None:
        sql += " ORDER BY c.started_at, c.id"
    else:
        sql = f"SELECT * FROM ({sql} ORDER BY c.started_at DESC, c.id DESC LIMIT ?) "
        sql += "ORDER BY started_at, id"
        params.append(int(limit))

    rows = with_cluster_share(path_or_conn, query(path_or_conn, sql, params))
    return with_remote_share(query, path_or_conn, rows)


# The columns a report sums over cells (and the count), in the units of the ledger.
CELL_SUM_COLUMNS = (
    "duration_s",
    "energy_kwh",
    "energy_low_kwh",
    "energy_high_kwh",
    "emissions_g",
    "emissions_low_g",
    "emissions_high_g",
    "embodied_g",
)
# CROSS JOIN keeps the (small) cluster table outside: SQLite would scan every cell.
_CLUSTER_FROM = " FROM cell_clusters cc CROSS JOIN cells c ON c.id = cc.cell_ref"
_CLUSTER_SUMS = (
    "SELECT COUNT(*) AS cluster_cells, TOTAL(cc.energy_kwh) AS cluster_kwh, "
    "TOTAL(cc.emissions_g) AS cluster_emissions_g" + _CLUSTER_FROM
)


def cell_totals(
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection, **filters: Any
) -> dict[str, Any]:
    """Sums over the cells that ``filters`` (those of :func:`cell_filters`) select,
    computed by SQLite in one pass (nothing per row in Python): ``n_cells``, each of
    ``CELL_SUM_COLUMNS`` (seconds, kWh, grams CO2e), and the Dask cluster part
    ``cluster_cells``, ``cluster_kwh``, ``cluster_emissions_g``, and ``remote``: the calls
    to hosted models added up (None without any). Raises as :func:`read_cells`."""

    where, params = cell_filters(**filters)
    sums = ", ".join(f"TOTAL(c.{name}) AS {name}" for name in CELL_SUM_COLUMNS)
    rows = query(path_or_conn, f"SELECT COUNT(*) AS n_cells, {sums} FROM cells c{where}", params)
    totals: dict[str, Any] = dict.fromkeys(("n_cells", *CELL_SUM_COLUMNS), 0.0)
    totals.update(rows[0] if rows else {})
    # A ledger from before the cluster tables (schema 3) has no cluster part.
    cluster = query(path_or_conn, _CLUSTER_SUMS + where, params)
    totals.update(
        cluster[0]
        if cluster
        else {"cluster_cells": 0, "cluster_kwh": 0.0, "cluster_emissions_g": 0.0}
    )
    totals["cluster_engines"] = _cluster_engines(path_or_conn, where, params)
    totals["remote"] = remote_totals_in(query, path_or_conn, where, params)
    return totals


def _cluster_engines(
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection, where: str, params: list[Any]
) -> tuple[str, ...]:
    """The cluster engines (``dask``, ``ray``) of the cells ``where`` selects; a file
    from before engines were named (schema 6 or older, read without migrating) is Dask's."""
    sql = "SELECT DISTINCT {engine} AS engine" + _CLUSTER_FROM
    try:
        rows = query(path_or_conn, sql.format(engine="COALESCE(cc.engine, 'dask')") + where, params)
    except sqlite3.OperationalError as error:
        if "no such column" not in str(error):
            raise
        rows = query(path_or_conn, sql.format(engine="'dask'") + where, params)
    return tuple(sorted(str(row["engine"]) for row in rows))


def heaviest_cells(
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection, limit: int, **filters: Any
) -> list[dict[str, Any]]:
    """The ``limit`` cells with the highest emissions among those ``filters`` select
    (rows as :func:`read_cells`), heaviest first, ties in recording order. SQLite keeps
    only the ``limit`` heaviest while it scans. Raises as :func:`read_cells`."""

    where, params = cell_filters(**filters)
    # The ids first (the sort keeps small records), then their rows with the session's.
    order = "ORDER BY c.emissions_g DESC, c.started_at, c.id"
    ids = f"SELECT c.id FROM cells c{where} {order} LIMIT ?"
    sql = f"{_CELLS_SELECT} WHERE c.id IN ({ids}) {order}"
    rows = with_cluster_share(path_or_conn, query(path_or_conn, sql, [*params, int(limit)]))
    return with_remote_share(query, path_or_conn, rows)


def session_state(
    ended_at: float | None,
    tracker_state: str | None,
    last_seen_at: float | None,
    now: float,
    lost_after_s: float = LOST_AFTER_S,
) -> str:
    """How a session reads now: ``stopped`` (ended, or its tracker stopped), ``running``,
    or ``lost``: not ended, but silent (no heartbeat, nor a start) for longer than
    ``lost_after_s`` seconds, as a killed kernel leaves it. Times: UTC epoch seconds."""
    if ended_at is not None or tracker_state == "stopped":
        return "stopped"
    if last_seen_at is None or now - last_seen_at > lost_after_s:
        return "lost"
    return "running"


def read_sessions(
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection,
    *,
    kernel_id: str | None = None,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """Session rows (all ``sessions`` columns, JSON as text), oldest first; only those of
    ``kernel_id`` when given. Each also has ``last_seen_at`` (its latest heartbeat, else
    its start) and ``state`` (:func:`session_state` at ``now``, default the current
    time): a killed kernel's session reads ``lost``. Raises as :func:`read_cells`."""
    sql = (
        "SELECT s.*, COALESCE((SELECT MAX(h.at) FROM heartbeats h WHERE h.session_id = s.id), "
        "s.started_at) AS last_seen_at FROM sessions s"
    )
    params: list[Any] = []
    if kernel_id is not None:
        sql += " WHERE s.kernel_id = ?"
        params.append(kernel_id)
    rows = query(path_or_conn, sql + " ORDER BY s.started_at, s.id", params)
    at = time.time() if now is None else float(now)
    for row in rows:
        row["state"] = session_state(row["ended_at"], row["tracker_state"], row["last_seen_at"], at)
    return rows


def latest_heartbeat(
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection, kernel_id: str
) -> dict[str, Any] | None:
    """The newest heartbeat of ``kernel_id`` (across its sessions, e.g. after a restart):
    all ``heartbeats`` columns plus ``session_uuid``, ``notebook_path``, ``host``, ``pid``
    and the session's ``ended_at`` as ``session_ended_at``; None when there is none.
    Raises as :func:`read_cells`."""
    rows = query(
        path_or_conn,
        "SELECT h.*, s.session_uuid, s.notebook_path, s.host, s.pid, "
        "s.ended_at AS session_ended_at "
        "FROM heartbeats h JOIN sessions s ON s.id = h.session_id "
        "WHERE h.kernel_id = ? ORDER BY h.at DESC, h.id DESC LIMIT 1",
        (kernel_id,),
    )
    return rows[0] if rows else None


def ledger_problem(path: str | os.PathLike[str]) -> str | None:
    """What is wrong with the ledger file at ``path``, in a few words, or None when it
    reads well (or does not exist yet): not an SQLite file, damaged pages (``PRAGMA
    quick_check``), or an SQLite file that is not a ledger. Read-only; never raises."""
    path = Path(path).expanduser()
    if not path.is_file():
        return None
    try:
        conn = connect_readonly(path)
    except (OSError, sqlite3.Error) as error:
        return f"cannot be opened: {error}"
    try:
        damage = [row[0] for row in conn.execute("PRAGMA quick_check(5)") if row[0] != "ok"]
        if damage:
            return "damaged: " + "; ".join(damage)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if tables and "cells" not in tables:
            return "an SQLite file, but not a carbon_magic ledger (it has no cells table)"
    except sqlite3.Error as error:
        return str(error)
    finally:
        conn.close()
    return None
