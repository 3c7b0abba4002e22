"""When the ledger's background writer removes cells past the retention time, and how
many at a time (``ledger_keep_days``; :func:`housekeeping.prune_cells` removes them).

A pass removes one bounded batch in its own transaction and says when to come back: at
once (after a short pause) while more are due, an hour later once none are, a minute
later when the file was busy or failing. Times in seconds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from carbon_magic.ledger.housekeeping import keep_seconds, prune_cells
from carbon_magic.ledger.schema import Transaction

__all__ = ["PRUNE_BATCH_CELLS", "Retention"]

PRUNE_BATCH_CELLS = 200  # cells removed per retention transaction (the lock is let go between)
RETENTION_EVERY_S = 3600.0  # how often old cells are looked for, seconds
RETENTION_RETRY_S = 60.0  # after a retention pass could not run (file busy or failing)
RETENTION_PAUSE_S = 0.05  # between two batches, so records and other kernels get the file


class Retention:
    """The retention time and the schedule of its passes. Not thread-safe by itself:
    the writer calls it under its lock."""

    def __init__(self, keep_days: float | None) -> None:
        """Raises ValueError, naming the valid range, for a bad ``keep_days``."""
        self.keep_s = keep_seconds(keep_days)  # None keeps everything
        self._next_at = 0.0  # time.monotonic() of the next pass

    def set_keep_days(self, keep_days: float | None) -> None:
        """Keep cells ``keep_days`` days (None: all), from the next pass on, which is
        due at once. Raises ValueError for a bad value, and nothing changes then."""
        self.keep_s = keep_seconds(keep_days)
        self._next_at = 0.0

    def run(
        self, connection: Callable[[], sqlite3.Connection | None], busy_timeout_s: float
    ) -> float | None:
        """Remove one batch of cells that started before the retention time, through
        ``connection()`` (None: the file is busy or failing, left alone until later);
        returns the seconds until the next pass (None: no retention)."""
        if self.keep_s is None:
            return None
        now = time.monotonic()
        if now < self._next_at:
            return self._next_at - now
        conn = connection()
        if conn is None:
            self._next_at = now + RETENTION_RETRY_S
            return RETENTION_RETRY_S
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            with Transaction(conn):
                removed = prune_cells(conn, time.time() - self.keep_s, PRUNE_BATCH_CELLS)
        except (sqlite3.Error, OSError):
            self._next_at = now + RETENTION_RETRY_S
            return RETENTION_RETRY_S
        if removed >= PRUNE_BATCH_CELLS:
            return RETENTION_PAUSE_S  # more to remove: records and other writers go first
        self._next_at = now + RETENTION_EVERY_S
        return RETENTION_EVERY_S
