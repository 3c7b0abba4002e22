"""Calls a recorded cell made to hosted model APIs: written with the cell, read back.

A cell row whose Measurement has ``remote`` carries its call records under
``REMOTE_KEY`` (not a column); :func:`write_remote_calls` writes one
``cell_remote_calls`` row per call in the cell's transaction. :func:`summarise_rows`
turns a cell's call records into its remote part (``Measurement.remote``): totals add
the estimated calls only, and ``unestimated`` counts the others, so a total is never
read as complete when it is not.

Units: kWh (facility energy, as EcoLogits counts it), grams CO2e, litres, seconds.
Ranges are ``[low, high]``; a central figure is the middle of its range.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from carbon_magic.ledger.tables import (
    CELL_REMOTE_CALL_COLUMNS,
    INSERT_CELL_REMOTE_CALL,
    CellRemoteCallRow,
)

__all__ = [
    "CALL_FIELDS",
    "REMOTE_KEY",
    "REMOTE_SHARE_COLUMNS",
    "pending_remote_share",
    "read_cell_remote",
    "remote_share",
    "summarise_rows",
    "with_remote_share",
    "write_remote_calls",
]

REMOTE_KEY = "_remote_calls"
CALL_FIELDS = CELL_REMOTE_CALL_COLUMNS[2:]  # a call's record: the row less its links
# Added to the rows of cells that made calls (read_cells); absent on the others.
REMOTE_SHARE_COLUMNS = (
    "remote_calls",
    "remote_unestimated",
    "remote_energy_kwh",
    "remote_energy_low_kwh",
    "remote_energy_high_kwh",
    "remote_emissions_g",
    "remote_emissions_low_g",
    "remote_emissions_high_g",
    "remote_embodied_g",
    "remote_water_l",
    "remote_method",
)

Query = Callable[[Any, str, Iterable[Any]], list[dict[str, Any]]]


def write_remote_calls(
    conn: sqlite3.Connection, cell_ref: int, calls: Iterable[Mapping[str, Any]]
) -> None:
    """One ``cell_remote_calls`` row per call record (``CALL_FIELDS``)."""
    for seq, call in enumerate(calls):
        values: dict[str, Any] = {name: call.get(name) for name in CALL_FIELDS}
        values["streamed"] = bool(values["streamed"])
        values["sdk"] = str(values["sdk"] or "")
        values["api"] = str(values["api"] or "")
        values["status"] = str(values["status"] or "ok")
        conn.execute(
            INSERT_CELL_REMOTE_CALL,
            CellRemoteCallRow(cell_ref=cell_ref, seq=seq, **values).params(),
        )


def _total(records: Sequence[Mapping[str, Any]], low: str, high: str) -> tuple[float, float]:
    estimated = [r for r in records if r.get(low) is not None]
    return sum(r[low] for r in estimated), sum(r[high] for r in estimated)


def summarise_rows(records: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The remote part of a cell from its call records (None when there are none):
    ``{"calls", "count", "estimated", "unestimated", "energy_kwh", "energy_range_kwh",
    "emissions_g", "emissions_range_g", "embodied_g", "water_l", "water_range_l",
    "method"}``; ``method`` is ``"not estimated"`` when no call has an estimate."""
    calls: list[dict[str, Any]] = [
        {name: record.get(name) for name in CALL_FIELDS} for record in records
    ]
    if not calls:
        return None
    energy = _total(calls, "energy_low_kwh", "energy_high_kwh")
    emissions = _total(calls, "emissions_low_g", "emissions_high_g")
    embodied = _total(calls, "embodied_low_g", "embodied_high_g")
    water = _total(calls, "water_low_l", "water_high_l")
    estimated = sum(1 for r in calls if r.get("energy_low_kwh") is not None)
    methods = sorted({str(r["method"]) for r in calls if r.get("method")})
    return {
        "calls": calls,
        "count": len(calls),
        "estimated": estimated,
        "unestimated": len(calls) - estimated,
        "energy_kwh": sum(energy) / 2,
        "energy_range_kwh": list(energy),
        "emissions_g": sum(emissions) / 2,
        "emissions_range_g": list(emissions),
        "embodied_g": sum(embodied) / 2,
        "water_l": sum(water) / 2,
        "water_range_l": list(water),
        "method": "; ".join(methods) if methods else "not estimated",
    }


def read_cell_remote(
    query: Query, path_or_conn: str | os.PathLike[str] | sqlite3.Connection, cell_ids: Iterable[int]
) -> dict[int, dict[str, Any]]:
    """The remote part (:func:`summarise_rows`) of the given cells (``cells.id``), read
    with ``query`` (:func:`carbon_magic.ledger.read.query`); cells without calls are
    absent. One range query (the ids of a read are mostly contiguous), filtered here."""
    wanted = {int(i) for i in cell_ids}
    if not wanted:
        return {}
    by_cell: dict[int, list[dict[str, Any]]] = {}
    sql = "SELECT * FROM cell_remote_calls WHERE cell_ref BETWEEN ? AND ? ORDER BY cell_ref, seq"
    for row in query(path_or_conn, sql, (min(wanted), max(wanted))):
        if row["cell_ref"] in wanted:
            row["streamed"] = bool(row["streamed"])
            by_cell.setdefault(row["cell_ref"], []).append(row)
    found = {cell: summarise_rows(rows) for cell, rows in by_cell.items()}
    return {cell: remote for cell, remote in found.items() if remote is not None}


def with_remote_share(
    query: Query,
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection,
    rows: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Add ``REMOTE_SHARE_COLUMNS`` to the rows of cells that called hosted models."""
    if not rows:
        return rows
    remote = read_cell_remote(query, path_or_conn, (row["id"] for row in rows))
    for row in rows:
        part = remote.get(row["id"])
        if part is not None:
            row.update(remote_share(part))
    return rows


def remote_share(part: Mapping[str, Any]) -> dict[str, Any]:
    """``REMOTE_SHARE_COLUMNS`` of a cell's remote part (``Measurement.remote``)."""
    energy_low, energy_high = part["energy_range_kwh"]
    low, high = part["emissions_range_g"]
    estimated = part["estimated"] > 0
    return {
        "remote_calls": part["count"],
        "remote_unestimated": part["unestimated"],
        "remote_energy_kwh": part["energy_kwh"] if estimated else None,
        "remote_energy_low_kwh": energy_low if estimated else None,
        "remote_energy_high_kwh": energy_high if estimated else None,
        "remote_emissions_g": part["emissions_g"] if estimated else None,
        "remote_emissions_low_g": low if estimated else None,
        "remote_emissions_high_g": high if estimated else None,
        "remote_embodied_g": part["embodied_g"] if estimated else None,
        "remote_water_l": part["water_l"] if estimated else None,
        "remote_method": part["method"],
    }


def pending_remote_share(row: Mapping[str, Any]) -> dict[str, Any]:
    """``REMOTE_SHARE_COLUMNS`` of a cell row not yet written (its calls under
    ``REMOTE_KEY``), as :func:`with_remote_share` adds them to written ones."""
    part = summarise_rows(row.get(REMOTE_KEY) or ())
    return remote_share(part) if part is not None else {}


_REMOTE_SUMS = (
    "SELECT COUNT(DISTINCT r.cell_ref) AS cells, COUNT(*) AS count, "
    "COUNT(r.energy_low_kwh) AS estimated, "
    "TOTAL(r.energy_low_kwh) AS energy_low_kwh, TOTAL(r.energy_high_kwh) AS energy_high_kwh, "
    "TOTAL(r.emissions_low_g) AS emissions_low_g, TOTAL(r.emissions_high_g) AS emissions_high_g, "
    "TOTAL(r.embodied_low_g) AS embodied_low_g, TOTAL(r.embodied_high_g) AS embodied_high_g, "
    "TOTAL(r.water_low_l) AS water_low_l, TOTAL(r.water_high_l) AS water_high_l, "
    "GROUP_CONCAT(DISTINCT r.method) AS methods "
    # CROSS JOIN keeps the (small) calls table outside: SQLite would scan every cell.
    "FROM cell_remote_calls r CROSS JOIN cells c ON c.id = r.cell_ref"
)


def remote_totals_in(
    query: Query,
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection,
    where: str,
    params: list[Any],
) -> dict[str, Any] | None:
    """The calls to hosted models of the cells ``where`` selects (a ``cells c`` filter)
    added up by SQLite, in the shape of the report's remote totals (kWh, g CO2e, L;
    middles of the ranges); None without any, or in a ledger older than the table."""
    rows = query(path_or_conn, _REMOTE_SUMS + where, params)
    row = rows[0] if rows else None
    if row is None or not row["count"]:
        return None
    methods = sorted(m for m in str(row["methods"] or "").split(",") if m)
    return {
        "cells": row["cells"],
        "count": row["count"],
        "estimated": row["estimated"],
        "unestimated": row["count"] - row["estimated"],
        "energy_kwh": (row["energy_low_kwh"] + row["energy_high_kwh"]) / 2,
        "energy_range_kwh": [row["energy_low_kwh"], row["energy_high_kwh"]],
        "emissions_g": (row["emissions_low_g"] + row["emissions_high_g"]) / 2,
        "emissions_range_g": [row["emissions_low_g"], row["emissions_high_g"]],
        "embodied_g": (row["embodied_low_g"] + row["embodied_high_g"]) / 2,
        "water_l": (row["water_low_l"] + row["water_high_l"]) / 2,
        "method": "; ".join(methods),
    }
