"""The ledger's tables as frozen dataclasses: one per table, the one place a row's
columns are named.

Each dataclass lists the columns a writer supplies, in the schema's order; the table's
``id`` and the links a writer adds when it commits (``session_id``, ``kernel_id``) are not
fields. The column tuples (``CELL_COLUMNS``...) and the INSERT statements are derived from
them, and so are the readers' column names.

Units: times are UTC seconds since the epoch, energy in joules per component (IT, before
PUE) and kWh (facility, after PUE) in total, power in watts, emissions in grams CO2e,
intensity in gCO2e/kWh. ``*_json`` columns hold compact JSON text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, get_args, get_type_hints

__all__ = [
    "CELL_CLUSTER_COLUMNS",
    "CELL_COLUMNS",
    "CELL_HOST_COLUMNS",
    "CELL_REMOTE_CALL_COLUMNS",
    "HEARTBEAT_COLUMNS",
    "HEARTBEAT_LATER_COLUMNS",
    "INSERT_CELL",
    "INSERT_CELL_CLUSTER",
    "INSERT_CELL_HOST",
    "INSERT_CELL_REMOTE_CALL",
    "INSERT_HEARTBEAT",
    "INSERT_SESSION",
    "LINK_COLUMNS",
    "SESSION_COLUMNS",
    "CellClusterRow",
    "CellHostRow",
    "CellRemoteCallRow",
    "CellRow",
    "HeartbeatRow",
    "SessionRow",
    "column_names",
    "later_columns",
]

# Columns of cells and heartbeats set when the row is committed, not by the recorder.
LINK_COLUMNS = ("session_id", "kernel_id")


class _Row:
    """What the row dataclasses share: their values as INSERT parameters."""

    def params(self) -> dict[str, Any]:
        """The columns as a dict, in schema order (``:name`` parameters)."""
        return dict(vars(self))


@dataclass(frozen=True)
class SessionRow(_Row):
    """``sessions``: one tracker lifetime in one kernel process."""

    session_uuid: str
    kernel_id: str | None  # from the kernel's connection file, when there is one
    notebook_path: str | None  # JPY_SESSION_NAME when Jupyter Server started the kernel
    host: str
    pid: int
    started_at: float
    ended_at: float | None  # set by a clean stop; None while running or after a crash
    tracker_state: str  # running | stopped
    interval_s: float  # sampling interval, seconds
    mode: str  # process | machine
    hardware_json: str
    methods_json: str
    settings_json: str  # settings without secrets
    intensity_source: str
    intensity_g_per_kwh: float


@dataclass(frozen=True)
class CellRow(_Row):
    """``cells``: one completed cell (or ``measure()`` window)."""

    cell_id: str | None
    execution_count: int | None
    name: str | None  # %%carbon --name, else None
    source: str | None  # first source line, secrets redacted
    via: str  # auto | magic | api
    status: str  # ok | error | interrupted | stopped by budget
    started_at: float
    ended_at: float
    duration_s: float
    cpu_j: float
    gpu_j: float
    ram_j: float
    energy_kwh: float
    energy_low_kwh: float
    energy_high_kwh: float
    emissions_g: float
    emissions_low_g: float
    emissions_high_g: float
    embodied_g: float
    intensity_g_per_kwh: float
    intensity_source: str
    pue: float
    mode: str
    methods_json: str
    devices_json: str
    budget: str | None  # e.g. "5g" or "0.2kWh", None when none


@dataclass(frozen=True)
class HeartbeatRow(_Row):
    """``heartbeats``: a tracker's state now, with its session's running totals."""

    at: float
    cpu_w: float
    gpu_w: float
    ram_w: float
    energy_kwh: float  # running totals of the session (attributed, facility)
    emissions_g: float
    emissions_low_g: float
    emissions_high_g: float
    embodied_g: float
    intensity_g_per_kwh: float
    intensity_source: str
    tracker_state: str  # running | stopped
    running_cell: str | None  # first line of the cell running now, None when idle
    running_cell_started_at: float | None
    # Later columns (schema version 2 on): nullable, default None, added last; an older
    # file gets the ones it lacks from ``schema.migrate``, and its rows read NULL.
    prediction_json: str | None = None  # the running cell's predicted total (version 2)
    hint: str | None = None  # the carbon-aware hint of the grid forecast (version 4)
    # The longest the tracker may take to write its next heartbeat, seconds (version 5):
    # short while a cell runs, the idle tick while none does. NULL in older rows.
    next_beat_s: float | None = None
    ledger_bytes: int | None = None  # the ledger file's size as the beat is written, bytes


@dataclass(frozen=True)
class CellClusterRow(_Row):
    """``cell_clusters``: the cluster part of a cell (already in its figures)."""

    cell_ref: int  # cells.id
    missing_workers: int  # workers (Ray: nodes) whose energy this cell lacks
    energy_kwh: float  # the cluster's share of cells.energy_kwh
    emissions_g: float  # its share of cells.emissions_g
    embodied_g: float  # its share of cells.embodied_g
    engine: str | None = None  # dask | ray (NULL: written before engines were named: Dask)
    partial: str | None = None  # why some of it is missing; NULL when complete


@dataclass(frozen=True)
class CellHostRow(_Row):
    """``cell_hosts``: one host the cell's workers (or Ray nodes) ran on."""

    cell_ref: int  # cells.id
    host_id: str  # machine identity (boot id or machine id hash)
    name: str  # host name, for people
    workers: int  # workers seen at both cell edges
    in_kernel: int  # of them, those the kernel's figures include
    cpu_j: float
    gpu_j: float
    ram_j: float
    embodied_g: float
    methods_json: str


@dataclass(frozen=True)
class CellRemoteCallRow(_Row):
    """``cell_remote_calls``: one call the cell made to a hosted model API, with its
    EcoLogits estimate (``None`` where there is none; ``note`` says why)."""

    cell_ref: int  # cells.id
    seq: int  # order of the call within the cell
    sdk: str
    api: str
    provider: str | None
    model: str | None
    streamed: bool
    status: str  # ok | error | abandoned | running
    error: str | None
    output_tokens: int | None
    latency_s: float | None
    energy_low_kwh: float | None
    energy_high_kwh: float | None
    emissions_low_g: float | None
    emissions_high_g: float | None
    embodied_low_g: float | None
    embodied_high_g: float | None
    water_low_l: float | None
    water_high_l: float | None
    method: str | None
    note: str | None


def column_names(table: type[_Row]) -> tuple[str, ...]:
    """The column names of a row dataclass, in schema order."""
    return tuple(f.name for f in fields(table))  # type: ignore[arg-type]


_SQL_TYPES = {float: "REAL", int: "INTEGER", bool: "INTEGER", str: "TEXT"}


def later_columns(table: type[_Row]) -> tuple[tuple[str, str], ...]:
    """``(name, SQL type)`` of the nullable columns a row dataclass declares with a
    default of None: those added to the table after version 1, in schema order."""
    hints = get_type_hints(table)
    found = []
    for f in fields(table):  # type: ignore[arg-type]
        if f.default is None:
            kinds = [kind for kind in get_args(hints[f.name]) if kind is not type(None)]
            found.append((f.name, _SQL_TYPES[kinds[0]]))
    return tuple(found)


def _insert_sql(table: str, columns: Iterable[str], verb: str = "INSERT") -> str:
    columns = list(columns)
    names = ", ".join(columns)
    values = ", ".join(f":{name}" for name in columns)
    return f"{verb} INTO {table} ({names}) VALUES ({values})"


SESSION_COLUMNS = column_names(SessionRow)
CELL_COLUMNS = column_names(CellRow)
HEARTBEAT_COLUMNS = column_names(HeartbeatRow)
# Nullable heartbeat columns added after version 1: older files (and journals) lack them.
HEARTBEAT_LATER_COLUMNS = tuple(name for name, _ in later_columns(HeartbeatRow))
CELL_CLUSTER_COLUMNS = column_names(CellClusterRow)
CELL_HOST_COLUMNS = column_names(CellHostRow)
CELL_REMOTE_CALL_COLUMNS = column_names(CellRemoteCallRow)

INSERT_SESSION = _insert_sql("sessions", SESSION_COLUMNS, "INSERT OR IGNORE")
INSERT_CELL = _insert_sql("cells", (*LINK_COLUMNS, *CELL_COLUMNS))
INSERT_HEARTBEAT = _insert_sql("heartbeats", (*LINK_COLUMNS, *HEARTBEAT_COLUMNS))
INSERT_CELL_CLUSTER = _insert_sql("cell_clusters", CELL_CLUSTER_COLUMNS)
INSERT_CELL_HOST = _insert_sql("cell_hosts", CELL_HOST_COLUMNS)
INSERT_CELL_REMOTE_CALL = _insert_sql("cell_remote_calls", CELL_REMOTE_CALL_COLUMNS)
