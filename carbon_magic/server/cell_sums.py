"""Cell counts and sums per tracker session, kept in memory and brought up to date.

The server reads a ledger's cells whole once, then only those added since (a range of the
primary key: the ledger only appends cells, and removes the oldest ones when a retention
time is set, which starts the sums over). The Dask cluster part of the cells, written in
the same transactions, is summed per kernel id the same way. So no request scans the
cells table, however long the ledger grows.

Units: kWh (facility, after PUE), grams CO2e.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from carbon_magic.records import TOTALS_NAMES, Totals

__all__ = ["CellSums", "totals_of"]


_TOTALS_SUMS = ", ".join(f"TOTAL({name}) AS {name}" for name in TOTALS_NAMES)


def totals_of(row: sqlite3.Row, prefix: str = "") -> Totals:
    """The Totals in a row's columns named ``<prefix><field>``."""
    return Totals(*(row[prefix + name] for name in TOTALS_NAMES))


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

# The cluster part of the cells after a known id, per kernel id: a range of
# cell_clusters' primary key, each row's cell found by its id (CROSS JOIN keeps that
# order: SQLite would otherwise scan every cell).
_CLUSTERS_AFTER = (
    "SELECT c.kernel_id, TOTAL(cc.energy_kwh) AS energy_kwh, TOTAL(cc.emissions_g) AS emissions_g, "
    "TOTAL(cc.embodied_g) AS embodied_g FROM cell_clusters AS cc CROSS JOIN cells AS c ON c.id = cc.cell_ref "
    "WHERE cc.cell_ref > ? GROUP BY c.kernel_id"
)


@dataclass
class CellSums:
    """Cell counts and totals per session id, of the cells from id ``first_id`` up to
    ``watermark``; with a
    ``day_start``, only of the cells that started since then (seconds since the epoch)."""

    day_start: float | None = None
    watermark: int = 0
    first_id: int = 0
    per_session: dict[int, tuple[int, Totals]] = field(default_factory=dict)
    # All time only: per kernel id, the Dask cluster part of its cells (no ranges).
    cluster: dict[str, Totals] = field(default_factory=dict)

    def get(self, session_id: int) -> tuple[int, Totals]:
        """(number of cells, their totals) of one session; (0, zeros) without cells."""
        return self.per_session.get(session_id, (0, Totals()))

    def refresh(self, connection: sqlite3.Connection, min_id: int, max_id: int) -> None:
        """Add the cells after ``watermark`` up to ``max_id`` (``min_id``, ``max_id``: the
        table's smallest and largest ids in the caller's read transaction). Starts over
        when cells were removed (a replaced file, or old cells past the retention time)."""
        if max_id < self.watermark or (self.watermark and min_id != self.first_id):
            # Old cells were removed (retention): start over.
            self.watermark, self.per_session, self.cluster = 0, {}, {}
        self.first_id = min_id
        if max_id == self.watermark:
            return
        if self.day_start is None:
            self._add_cluster(connection)
            rows = connection.execute(_CELLS_AFTER, (self.watermark,))
        elif self.watermark == 0:
            rows = connection.execute(_CELLS_SINCE, (self.day_start,))
        else:
            rows = connection.execute(_CELLS_AFTER_SINCE, (self.watermark, self.day_start))
        for row in rows:
            session_id = row["session_id"]
            known_count, known = self.get(session_id)
            self.per_session[session_id] = (known_count + row["n_cells"], known + totals_of(row))
        self.watermark = max_id

    def _add_cluster(self, connection: sqlite3.Connection) -> None:
        """Add the cluster part of the cells after ``watermark`` (written with them, in
        their transaction); nothing for a ledger from before the cluster tables."""
        try:
            rows = connection.execute(_CLUSTERS_AFTER, (self.watermark,)).fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return
            raise
        for row in rows:
            if row["kernel_id"]:
                part = Totals(row["energy_kwh"], row["emissions_g"], embodied_g=row["embodied_g"])
                self.cluster[row["kernel_id"]] = self.cluster.get(row["kernel_id"], Totals()) + part
