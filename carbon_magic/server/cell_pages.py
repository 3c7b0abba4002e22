"""Recorded cells page by page, for ``GET …/kernels/{id}/cells`` and ``GET …/cells?path=``.

Units: IT energy per component in joules, facility energy in kWh, emissions in grams
CO2e, times in seconds since the epoch (UTC).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from carbon_magic import records
from carbon_magic.record_json import field_types, from_json

__all__ = [
    "CELL_PAGE_DEFAULT",
    "CELL_PAGE_MAX",
    "KERNEL_CELLS_SQL",
    "NOTEBOOK_CELLS_SQL",
    "CellPage",
    "cell_record",
]


CELL_PAGE_DEFAULT = 100  # cells per page when the client does not say
CELL_PAGE_MAX = 1000


@dataclass(frozen=True)
class CellPage:
    """A page of cells, oldest first, and whether more cells follow the last one."""

    cells: list[records.CellRecord]
    more: bool


_CELL_RECORD_COLUMNS = (
    "c.id, c.cell_id, c.kernel_id, s.session_uuid, c.execution_count, c.name, c.source, "
    "c.via, c.status, c.started_at, c.ended_at, c.duration_s, c.cpu_j, c.gpu_j, c.ram_j, "
    "c.energy_kwh, c.energy_low_kwh, c.energy_high_kwh, c.emissions_g, c.emissions_low_g, "
    "c.emissions_high_g, c.embodied_g, c.intensity_g_per_kwh, c.intensity_source, c.pue, "
    "c.mode, c.methods_json, c.budget"
)
# Both go through the sessions (sessions_kernel, or a scan of the small sessions table)
# and then cells_session, whose entries are (session_id, row id): a page is a range seek
# per session in row id order that stops at the limit, however many cells came before.
# Never a scan of the whole cells table (ORDER BY the row id alone would tempt SQLite).
KERNEL_CELLS_SQL = f"""
SELECT {_CELL_RECORD_COLUMNS}
FROM cells AS c INDEXED BY cells_session JOIN sessions AS s ON s.id = c.session_id
WHERE c.session_id IN (SELECT id FROM sessions WHERE kernel_id = ?)
  AND c.id > ? AND c.ended_at >= ?
ORDER BY c.id LIMIT ?
"""
NOTEBOOK_CELLS_SQL = f"""
SELECT {_CELL_RECORD_COLUMNS}
FROM cells AS c INDEXED BY cells_session JOIN sessions AS s ON s.id = c.session_id
WHERE c.session_id IN (
    SELECT id FROM sessions
    WHERE notebook_path IN (SELECT value FROM json_each(?))
       OR kernel_id IN (SELECT value FROM json_each(?))
) AND c.id > ? AND c.ended_at >= ?
ORDER BY c.id LIMIT ?
"""


def _json_object(text: str | None) -> dict:
    """A JSON object column as a dict; anything else (NULL, bad JSON, a list) as {}."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# The fields of a cell's record that are its row's columns of the same name, as they are.
_COLUMN_NAMES = {column.strip().partition(".")[2] for column in _CELL_RECORD_COLUMNS.split(",")}
_SAME_AS_COLUMNS = tuple(
    name for name, _ in field_types(records.CellRecord) if name in _COLUMN_NAMES
)


def cell_record(row: sqlite3.Row, remote: dict[str, Any] | None = None) -> records.CellRecord:
    """A row of ``KERNEL_CELLS_SQL`` / ``NOTEBOOK_CELLS_SQL``, read by column name, with
    its remote part (``read_cell_remote``) when it has one. ``power_w`` is the mean power
    over the cell (IT energy per component over its duration, before PUE)."""
    duration = row["duration_s"]
    energy = records.Components(cpu=row["cpu_j"], gpu=row["gpu_j"], ram=row["ram_j"])
    cpu, gpu, ram = (
        joules / duration if duration > 0 else 0.0
        for joules in (energy.cpu, energy.gpu, energy.ram)
    )
    return records.CellRecord(
        **{name: row[name] for name in _SAME_AS_COLUMNS},
        energy_j=energy,
        power_w=records.Power(cpu=cpu, gpu=gpu, ram=ram, total=cpu + gpu + ram),
        energy_range_kwh=(row["energy_low_kwh"], row["energy_high_kwh"]),
        emissions_range_g=(row["emissions_low_g"], row["emissions_high_g"]),
        intensity=records.Intensity(row["intensity_g_per_kwh"], row["intensity_source"]),
        methods=_json_object(row["methods_json"]),
        remote=from_json(records.RemotePart, remote) if remote else None,
        totals_include_remote=False,
    )
