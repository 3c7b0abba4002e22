"""Keeping the ledger small: old heartbeats, and cells past the retention time.

Heartbeats are only needed for the live view and the last day's plots: those older than
HEARTBEAT_KEEP_S are removed, always keeping each session's latest. Cells are kept for
ever unless a retention time is set (the ``ledger_keep_days`` setting); then cells that
started before it are removed with their cluster rows, a bounded batch per transaction,
by the writer's background thread. Sessions are kept (they are few and small).

Every function here runs inside the caller's write transaction and raises sqlite3.Error.
Times are UTC seconds since the epoch.
"""

from __future__ import annotations

import math
import sqlite3

__all__ = [
    "HEARTBEAT_KEEP_S",
    "KEEP_DAYS_MAX",
    "PRUNE_EVERY_S",
    "keep_seconds",
    "prune_all_heartbeats",
    "prune_cells",
    "prune_session_heartbeats",
]

HEARTBEAT_KEEP_S = 86400.0  # heartbeats older than this are pruned (the latest is kept)
PRUNE_EVERY_S = 60.0  # per session, in heartbeat time
KEEP_DAYS_MAX = 36500.0  # a hundred years: the largest retention accepted, days
DAY_S = 86400.0


def keep_seconds(keep_days: float | None) -> float | None:
    """A retention time in days as seconds; None (keep everything) stays None.

    Raises ValueError, naming the valid range, for anything but a number above 0 and up
    to KEEP_DAYS_MAX (booleans, NaN, infinities and text included)."""
    if keep_days is None:
        return None
    valid = f"a number of days above 0 and up to {KEEP_DAYS_MAX:g}, or None to keep every cell"
    if isinstance(keep_days, bool) or not isinstance(keep_days, (int, float)):
        raise ValueError(f"ledger keep days must be {valid} (got {keep_days!r})")
    days = float(keep_days)
    if not math.isfinite(days) or days <= 0 or days > KEEP_DAYS_MAX:
        raise ValueError(f"ledger keep days must be {valid} (got {keep_days!r})")
    return days * DAY_S


def prune_all_heartbeats(conn: sqlite3.Connection, before: float) -> None:
    """Drop heartbeats older than ``before`` of every session (crashed kernels never
    prune their own), keeping each session's latest."""
    conn.execute(
        "DELETE FROM heartbeats WHERE at < ? AND id NOT IN "
        "(SELECT MAX(id) FROM heartbeats GROUP BY session_id)",
        (before,),
    )


def prune_session_heartbeats(
    conn: sqlite3.Connection, session_id: int, before: float, *, keep_id: int | None
) -> None:
    """Drop one session's heartbeats older than ``before``, except the row ``keep_id``."""
    conn.execute(
        "DELETE FROM heartbeats WHERE session_id = ? AND at < ? AND id <> ?",
        (session_id, before, -1 if keep_id is None else keep_id),
    )


def prune_cells(conn: sqlite3.Connection, before: float, limit: int) -> int:
    """Remove up to ``limit`` cells that started before ``before`` (oldest first, found
    through the ``cells_started`` index), with their ``cell_clusters``, ``cell_hosts``
    and ``cell_remote_calls`` rows; returns how many cells went."""
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM cells WHERE started_at < ? ORDER BY started_at LIMIT ?",
            (before, int(limit)),
        )
    ]
    if not ids:
        return 0
    marks = ", ".join("?" * len(ids))
    conn.execute(f"DELETE FROM cell_hosts WHERE cell_ref IN ({marks})", ids)
    conn.execute(f"DELETE FROM cell_clusters WHERE cell_ref IN ({marks})", ids)
    conn.execute(f"DELETE FROM cell_remote_calls WHERE cell_ref IN ({marks})", ids)
    conn.execute(f"DELETE FROM cells WHERE id IN ({marks})", ids)
    return len(ids)
