"""The ledger: every measured cell, session and heartbeat in one local SQLite file.

One :class:`Ledger` (one writer connection) per kernel process writes it; readers (the
server extension, reports, the CLI) use :func:`connect_readonly` and the ``read_*``
functions, which never block the writers (WAL mode) and never write.

The parts, one job each:

- :mod:`~carbon_magic.ledger.paths`: where the ledger is (:func:`default_ledger_path`,
  the one answer for the kernel, the server and the CLI);
- :mod:`~carbon_magic.ledger.tables`: one frozen dataclass per table, the column lists
  and INSERT statements derived from them;
- :mod:`~carbon_magic.ledger.schema` (+ ``schema.sql``): migrations, transactions, SQLite
  error kinds;
- :mod:`~carbon_magic.ledger.rows`: Measurement ↔ ``cells`` row, session and heartbeat rows;
- :mod:`~carbon_magic.ledger.read` and :mod:`~carbon_magic.ledger.cluster`: readers by
  column name; :mod:`~carbon_magic.ledger.cell_stream`: the cells in batches, as dicts or
  as tuples of SQL expressions, for exports;
- :mod:`~carbon_magic.ledger.writer` (the public writer, a facade over its parts):
  :mod:`~carbon_magic.ledger.connection` (the file and its faults),
  :mod:`~carbon_magic.ledger.operations` (what callers queue, one frozen type each),
  :mod:`~carbon_magic.ledger.store` (what is pending and its transaction),
  :mod:`~carbon_magic.ledger.writer_thread` (the background thread),
  :mod:`~carbon_magic.ledger.journal` (what a closing writer could not commit) and
  :mod:`~carbon_magic.ledger.housekeeping` (old heartbeats, retention of cells).

Units: times are UTC seconds since the epoch, energy in joules per component and kWh
(facility, after PUE) in total, emissions in grams CO2e, intensity in gCO2e/kWh.
"""

from __future__ import annotations

from carbon_magic.ledger.cell_stream import PART_COLUMNS, LedgerCells, iter_cells
from carbon_magic.ledger.cluster import CLUSTER_SHARE_COLUMNS, read_cell_clusters
from carbon_magic.ledger.connection import LedgerWarning
from carbon_magic.ledger.housekeeping import HEARTBEAT_KEEP_S, KEEP_DAYS_MAX
from carbon_magic.ledger.journal import import_waiting_journals
from carbon_magic.ledger.paths import LEDGER_ENV, default_ledger_path
from carbon_magic.ledger.read import (
    CELL_SUM_COLUMNS,
    LOST_AFTER_S,
    cell_totals,
    heaviest_cells,
    latest_heartbeat,
    ledger_problem,
    read_cells,
    read_sessions,
    session_state,
)
from carbon_magic.ledger.remote_calls import REMOTE_SHARE_COLUMNS
from carbon_magic.ledger.rows import SOURCE_MAX_CHARS, cell_row, measurement_from_row
from carbon_magic.ledger.schema import MIGRATIONS, SCHEMA_VERSION
from carbon_magic.ledger.sql import BUSY_TIMEOUT_S, connect_readonly, open_snapshot
from carbon_magic.ledger.tables import (
    CELL_CLUSTER_COLUMNS,
    CELL_COLUMNS,
    CELL_HOST_COLUMNS,
    HEARTBEAT_COLUMNS,
    SESSION_COLUMNS,
    CellClusterRow,
    CellHostRow,
    CellRow,
    HeartbeatRow,
    SessionRow,
)
from carbon_magic.ledger.writer import CELL_WAIT_S, EXIT_WAIT_S, Ledger

__all__ = [
    "BUSY_TIMEOUT_S",
    "CELL_CLUSTER_COLUMNS",
    "CELL_COLUMNS",
    "CELL_HOST_COLUMNS",
    "CELL_SUM_COLUMNS",
    "CELL_WAIT_S",
    "CLUSTER_SHARE_COLUMNS",
    "EXIT_WAIT_S",
    "HEARTBEAT_COLUMNS",
    "HEARTBEAT_KEEP_S",
    "KEEP_DAYS_MAX",
    "LEDGER_ENV",
    "LOST_AFTER_S",
    "MIGRATIONS",
    "REMOTE_SHARE_COLUMNS",
    "SCHEMA_VERSION",
    "SESSION_COLUMNS",
    "SOURCE_MAX_CHARS",
    "CellClusterRow",
    "CellHostRow",
    "CellRow",
    "HeartbeatRow",
    "Ledger",
    "LedgerWarning",
    "SessionRow",
    "cell_row",
    "cell_totals",
    "connect_readonly",
    "default_ledger_path",
    "heaviest_cells",
    "iter_cells",
    "LedgerCells",
    "PART_COLUMNS",
    "import_waiting_journals",
    "latest_heartbeat",
    "ledger_problem",
    "measurement_from_row",
    "open_snapshot",
    "read_cell_clusters",
    "read_cells",
    "read_sessions",
    "session_state",
]
