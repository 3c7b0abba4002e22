"""The cells of the ledger read in batches, in constant memory, for exports: as dicts
(:func:`iter_cells`), or as tuples of SQL expressions an export chooses
(:meth:`LedgerCells.batches`), so that SQLite does per row what it can.

Units as in :mod:`carbon_magic.ledger`: UTC epoch seconds, joules, kWh, grams CO2e.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any

from carbon_magic.ledger.cluster import CLUSTER_SHARE_COLUMNS, with_cluster_share
from carbon_magic.ledger.read import cell_filters
from carbon_magic.ledger.remote_calls import REMOTE_SHARE_COLUMNS, with_remote_share
from carbon_magic.ledger.sql import query

__all__ = ["PART_COLUMNS", "SESSION_COLUMNS_OF_CELLS", "LedgerCells", "iter_cells"]

# The session columns each row of iter_cells carries, after the cell's own.
SESSION_COLUMNS_OF_CELLS = (
    "session_uuid",
    "notebook_path",
    "host",
    "hardware_json",
    "settings_json",
)
# The parts of a cell kept in their own tables, after the session's columns.
PART_COLUMNS = (*CLUSTER_SHARE_COLUMNS, *REMOTE_SHARE_COLUMNS)
_CELLS_FROM = "FROM cells c JOIN sessions s ON s.id = c.session_id"
_ORDER = " ORDER BY c.started_at, c.id"


def iter_cells(conn: sqlite3.Connection, *, batch_rows: int = 500, **filters: Any) -> LedgerCells:
    """The rows of :func:`carbon_magic.ledger.read_cells` (``filters``: its keyword
    filters, no ``limit``), each with its session's ``hardware_json`` and
    ``settings_json`` too, read ``batch_rows`` at a time: memory stays the same however
    many cells match.

    ``conn`` must stay open until the iteration ends. Raises as ``read_cells``."""
    where, params = cell_filters(**filters)
    return LedgerCells(conn, where, params, batch_rows)


class LedgerCells(Iterator[dict[str, Any]]):
    """The cells a filter selects, oldest first: iterated, one dict per cell (all
    ``cells`` columns, then ``SESSION_COLUMNS_OF_CELLS``, then ``PART_COLUMNS``, None
    without a cluster or calls to hosted models); or read in batches of tuples with
    :meth:`batches`. One of the two, once."""

    def __init__(
        self, conn: sqlite3.Connection, where: str, params: list[Any], batch_rows: int
    ) -> None:
        self.conn, self.where, self.params = conn, where, params
        self.batch_rows = batch_rows
        self._dicts: Iterator[dict[str, Any]] | None = None

    def __next__(self) -> dict[str, Any]:
        if self._dicts is None:
            self._dicts = self._iter_dicts(self.where, self.params)
        return next(self._dicts)

    def cell_columns(self) -> list[tuple[str, str]]:
        """(name, declared type) of each column of this ledger's ``cells`` table, in its
        order (that of ``SELECT c.*``); empty for a file without the table."""
        found = self.conn.execute("PRAGMA table_info(cells)").fetchall()
        return [(str(row[1]), str(row[2]).upper()) for row in found]

    def session_row(self, session_id: int) -> dict[str, Any]:
        """The ``SESSION_COLUMNS_OF_CELLS`` of the session ``session_id`` (of a cell
        of this selection)."""
        found = self.conn.execute(
            f"SELECT {', '.join(SESSION_COLUMNS_OF_CELLS)} FROM sessions WHERE id = ?",
            (session_id,),
        ).fetchone()
        return dict(zip(SESSION_COLUMNS_OF_CELLS, found, strict=True))

    def rows_by_id(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """The dict rows of the cells ``ids`` (of this selection), in its order."""
        wanted = ", ".join(str(int(i)) for i in ids)
        return list(self._iter_dicts(f" WHERE c.id IN ({wanted})", []))

    def batches(
        self, columns: Sequence[str], with_parts: bool = True
    ) -> Iterator[tuple[list[tuple[Any, ...]], dict[int, dict[str, Any]]]]:
        """``(rows, parts)`` per batch of up to ``batch_rows`` cells: each row the tuple
        ``(cells.id, *columns)`` (SQL expressions over ``c``, the cell, and ``s``, its
        session), and ``parts`` the ``PART_COLUMNS`` of the cells of the batch that have
        a cluster part or calls to hosted models, by ``cells.id`` (none looked up
        without ``with_parts``).

        Raises ``sqlite3.OperationalError`` when an expression names a column this
        ledger lacks (a file from an older schema); nothing is yielded then."""
        select = f"SELECT c.id, {', '.join(columns)} {_CELLS_FROM}"
        cursor = self._execute(select, self.where, self.params)
        if cursor is None:
            return
        # The parts are looked up only for batches that may have some (see _iter_dicts).
        tables = ("cell_clusters", "cell_remote_calls") if with_parts else ()
        lowest_refs = [_lowest_ref(self.conn, table) for table in tables]
        first_part = min((ref for ref in lowest_refs if ref is not None), default=None)
        while batch := cursor.fetchmany(self.batch_rows):
            parts: dict[int, dict[str, Any]] = {}
            if first_part is not None:
                ids = list(map(_first, batch))
                if max(ids) >= first_part:
                    parts = self._parts(min(ids), max(ids))
            yield batch, parts

    def _parts(self, lowest: int, highest: int) -> dict[int, dict[str, Any]]:
        """The part columns of the cells from id ``lowest`` to ``highest`` that have
        some, by id."""
        ids: set[int] = set()
        tables: list[str] = []
        for table in ("cell_clusters", "cell_remote_calls"):
            try:
                found = self.conn.execute(
                    f"SELECT cell_ref FROM {table} WHERE cell_ref BETWEEN ? AND ?",
                    (lowest, highest),
                )
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    continue
                raise
            refs = [row[0] for row in found]
            if refs:
                tables.append(table)
                ids.update(refs)
        rows: list[dict[str, Any]] = [
            {"id": cell_id, **dict.fromkeys(PART_COLUMNS)} for cell_id in ids
        ]
        if "cell_clusters" in tables:
            rows = with_cluster_share(self.conn, rows)
        if "cell_remote_calls" in tables:
            rows = with_remote_share(query, self.conn, rows)
        return {int(row.pop("id")): row for row in rows}

    def _execute(self, select: str, where: str, params: list[Any]) -> sqlite3.Cursor | None:
        """A cursor of plain tuples over ``select`` with ``where``, in the selection's
        order; None for a file without the tables (nothing recorded yet)."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        try:
            cursor.execute(select + where + _ORDER, params)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
        return cursor

    def _iter_dicts(self, where: str, params: list[Any]) -> Iterator[dict[str, Any]]:
        # The session's columns are read once per session, not with every cell (five
        # texts a cell cost more than the rest of its row); the join keeps the same cells.
        cursor = self._execute(f"SELECT c.* {_CELLS_FROM}", where, params)
        if cursor is None:
            return
        conn = self.conn
        # Every row has the cluster and remote share columns (None without a cluster or
        # calls to hosted models), so rows all have the same keys.
        cell_names = [column[0] for column in cursor.description]
        names = [*cell_names, *SESSION_COLUMNS_OF_CELLS, *PART_COLUMNS]
        session_at, newest_of = cell_names.index("session_id"), itemgetter(cell_names.index("id"))
        tails = _SessionTails(conn, (None,) * len(PART_COLUMNS))
        # The cluster and remote parts are looked up only for batches that may have
        # some: most ledgers have none, or only for their newer cells.
        cluster_from = _lowest_ref(conn, "cell_clusters")
        remote_from = _lowest_ref(conn, "cell_remote_calls")
        while batch := cursor.fetchmany(self.batch_rows):
            rows = [dict(zip(names, row + tails[row[session_at]], strict=True)) for row in batch]
            newest = max(map(newest_of, batch))
            if cluster_from is not None and newest >= cluster_from:
                rows = with_cluster_share(conn, rows)
            if remote_from is not None and newest >= remote_from:
                rows = with_remote_share(query, conn, rows)
            yield from rows


_first = itemgetter(0)


class _SessionTails(dict[int, tuple[Any, ...]]):
    """Session id: the ``SESSION_COLUMNS_OF_CELLS`` of the session, then ``no_parts``;
    each session read when its first cell comes (it exists: the cell was joined to it)."""

    def __init__(self, conn: sqlite3.Connection, no_parts: tuple[None, ...]) -> None:
        super().__init__()
        self.conn, self.no_parts = conn, no_parts

    def __missing__(self, session_id: int) -> tuple[Any, ...]:
        found = self.conn.execute(
            f"SELECT {', '.join(SESSION_COLUMNS_OF_CELLS)} FROM sessions WHERE id = ?",
            (session_id,),
        ).fetchone()
        tail = self[session_id] = (*found, *self.no_parts)
        return tail


def _lowest_ref(conn: sqlite3.Connection, table: str) -> int | None:
    """The lowest ``cell_ref`` in ``table`` (a table of parts of cells), None when it is
    empty or absent (a ledger from before it)."""
    try:
        found = conn.execute(f"SELECT MIN(cell_ref) FROM {table}").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if found is None or found[0] is None else int(found[0])
