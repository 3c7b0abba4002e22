"""Recorded cells page by page, for ``GET …/kernels/{id}/cells`` and ``GET …/cells?path=``.

Units: IT energy per component in joules, facility energy in kWh, emissions in grams
CO2e, times in seconds since the epoch (UTC).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from carbon_magic.vocabulary import COMPONENTS

__all__ = [
    "CELL_PAGE_DEFAULT",
    "CELL_PAGE_MAX",
    "KERNEL_CELLS_SQL",
    "NOTEBOOK_CELLS_SQL",
    "CellPage",
    "CellRecord",
    "cell_record",
]


CELL_PAGE_DEFAULT = 100  # cells per page when the client does not say
CELL_PAGE_MAX = 1000


@dataclass(frozen=True)
class CellRecord:
    """One recorded cell as the ledger keeps it (IT energy per component in joules,
    facility energy in kWh, emissions in grams CO2e, times in seconds since the epoch)."""

    id: int  # the ledger row id: increases in the order cells were recorded
    cell_id: str | None  # the notebook cell id the frontend sent, when it sent one
    kernel_id: str | None
    session_uuid: str
    execution_count: int | None
    name: str | None
    source: str | None  # first source line
    via: str
    status: str
    started_at: float
    ended_at: float
    duration_s: float
    energy_j: dict[str, float]
    energy_kwh: float
    energy_range_kwh: tuple[float, float]
    emissions_g: float
    emissions_range_g: tuple[float, float]
    embodied_g: float
    intensity_g_per_kwh: float
    intensity_source: str
    pue: float
    mode: str
    methods: dict[str, str]
    budget: str | None
    # Its calls to hosted LLM APIs, estimated and not in the figures above: the totals of
    # carbon_magic.ledger.remote_calls.summarise_rows (without the calls), or None.
    remote: dict[str, Any] | None = None


@dataclass(frozen=True)
class CellPage:
    """A page of cells, oldest first, and whether more cells follow the last one."""

    cells: list[CellRecord]
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


def cell_record(row: sqlite3.Row, remote: dict[str, Any] | None = None) -> CellRecord:
    """A row of ``KERNEL_CELLS_SQL`` / ``NOTEBOOK_CELLS_SQL``, read by column name, with
    its remote part (``read_cell_remote``) when it has one."""
    return CellRecord(
        id=row["id"],
        cell_id=row["cell_id"],
        kernel_id=row["kernel_id"],
        session_uuid=row["session_uuid"],
        execution_count=row["execution_count"],
        name=row["name"],
        source=row["source"],
        via=row["via"],
        status=row["status"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        duration_s=row["duration_s"],
        energy_j={component: row[f"{component}_j"] for component in COMPONENTS},
        energy_kwh=row["energy_kwh"],
        energy_range_kwh=(row["energy_low_kwh"], row["energy_high_kwh"]),
        emissions_g=row["emissions_g"],
        emissions_range_g=(row["emissions_low_g"], row["emissions_high_g"]),
        embodied_g=row["embodied_g"],
        intensity_g_per_kwh=row["intensity_g_per_kwh"],
        intensity_source=row["intensity_source"],
        pue=row["pue"],
        mode=row["mode"],
        methods=_json_object(row["methods_json"]),
        budget=row["budget"],
        remote={k: v for k, v in remote.items() if k != "calls"} if remote else None,
    )
