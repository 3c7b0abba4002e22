"""The cluster part (Dask, Ray) of recorded cells: written with the cell, read back by cell id.

A cell row that used a cluster carries ``Measurement.cluster`` under ``CLUSTER_KEY`` (not
a column); ``insert_cell`` writes the ``cells`` row and then its ``cell_clusters`` and
``cell_hosts`` rows in the same transaction. Joules are IT energy before PUE, kWh
facility energy, grams CO2e.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from carbon_magic.ledger.remote_calls import REMOTE_KEY, write_remote_calls
from carbon_magic.ledger.rows import compact_json
from carbon_magic.ledger.sql import query
from carbon_magic.ledger.tables import (
    INSERT_CELL,
    INSERT_CELL_CLUSTER,
    INSERT_CELL_HOST,
    CellClusterRow,
    CellHostRow,
)

__all__ = [
    "CLUSTER_KEY",
    "CLUSTER_SHARE_COLUMNS",
    "insert_cell",
    "read_cell_clusters",
    "with_cluster_share",
]

CLUSTER_KEY = "_cluster"
CLUSTER_SHARE_COLUMNS = (
    "cluster_kwh",
    "cluster_emissions_g",
    "cluster_workers",
    "cluster_hosts",
    "cluster_missing_workers",
    "cluster_engine",
    "cluster_partial",
)


def insert_cell(conn: sqlite3.Connection, params: Mapping[str, Any]) -> None:
    """Insert one ``cells`` row (``params``: its columns plus ``session_id`` and
    ``kernel_id``) and, when it carries ``CLUSTER_KEY``, its cluster rows (and, under
    ``REMOTE_KEY``, its calls to hosted models)."""
    cursor = conn.execute(INSERT_CELL, dict(params))
    cluster = params.get(CLUSTER_KEY)
    if cluster is not None and cursor.lastrowid is not None:
        _write_cluster(conn, int(cursor.lastrowid), cluster)
    remote_calls = params.get(REMOTE_KEY)
    if remote_calls and cursor.lastrowid is not None:
        write_remote_calls(conn, int(cursor.lastrowid), remote_calls)


def _write_cluster(conn: sqlite3.Connection, cell_ref: int, cluster: Mapping[str, Any]) -> None:
    row = CellClusterRow(
        cell_ref=cell_ref,
        missing_workers=int(cluster.get("missing_workers", 0)),
        energy_kwh=float(cluster.get("energy_kwh", 0.0)),
        emissions_g=float(cluster.get("emissions_g", 0.0)),
        embodied_g=float(cluster.get("embodied_g", 0.0)),
        engine=cluster.get("engine"),
        partial=cluster.get("partial"),
    )
    conn.execute(INSERT_CELL_CLUSTER, row.params())
    for host_id, host in cluster.get("hosts", {}).items():
        energy = host.get("energy_j", {})
        host_row = CellHostRow(
            cell_ref=cell_ref,
            host_id=str(host_id),
            name=str(host.get("name", "")),
            workers=int(host.get("workers", 0)),
            in_kernel=int(host.get("in_kernel", 0)),
            cpu_j=float(energy.get("cpu", 0.0)),
            gpu_j=float(energy.get("gpu", 0.0)),
            ram_j=float(energy.get("ram", 0.0)),
            embodied_g=float(host.get("embodied_g", 0.0)),
            methods_json=compact_json(host.get("methods", {})),
        )
        conn.execute(INSERT_CELL_HOST, host_row.params())


def with_cluster_share(
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Add the ``CLUSTER_SHARE_COLUMNS`` to the rows of cells that used a cluster (kWh
    facility, grams CO2e; counts; the engine and why it is partial), from the cluster
    tables."""
    if not rows:
        return rows
    clusters = read_cell_clusters(path_or_conn, (row["id"] for row in rows))
    for row in rows:
        cluster = clusters.get(row["id"])
        if cluster is not None:
            hosts = cluster["hosts"].values()
            row.update(
                cluster_kwh=cluster["energy_kwh"],
                cluster_emissions_g=cluster["emissions_g"],
                cluster_workers=sum(host["workers"] for host in hosts),
                cluster_hosts=len(cluster["hosts"]),
                cluster_missing_workers=cluster["missing_workers"],
                cluster_engine=cluster["engine"],
                cluster_partial=cluster.get("partial"),
            )
    return rows


def read_cell_clusters(
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection, cell_ids: Iterable[int]
) -> dict[int, dict[str, Any]]:
    """The cluster part of the given cells (``cells.id``), as ``Measurement.cluster``
    holds it: ``{cell id: {"hosts": {host_id: {"name", "workers", "in_kernel", "energy_j",
    "embodied_g", "methods"}}, "missing_workers", "energy_kwh", "emissions_g",
    "embodied_g", "engine", "partial" (only where some is missing)}}``. Cells
    without a cluster are absent. Raises as ``read_cells``."""
    wanted = {int(i) for i in cell_ids}
    found: dict[int, dict[str, Any]] = {}
    if not wanted:
        return found
    # One range query per table (the ids of a read are mostly contiguous), filtered here:
    # cheap on a ledger of 100,000 cells, and no limit on bound parameters.
    span = (min(wanted), max(wanted))
    where = "WHERE cell_ref BETWEEN ? AND ?"
    for row in query(path_or_conn, f"SELECT * FROM cell_clusters {where}", span):
        if row["cell_ref"] in wanted:
            found[row["cell_ref"]] = {
                "hosts": {},
                "missing_workers": row["missing_workers"],
                "energy_kwh": row["energy_kwh"],
                "emissions_g": row["emissions_g"],
                "embodied_g": row["embodied_g"],
                # A file of version 5 read without migrating (read-only) lacks both.
                "engine": row.get("engine") or "dask",
            }
            if row.get("partial"):
                found[row["cell_ref"]]["partial"] = row["partial"]
    if not found:
        return found
    for row in query(path_or_conn, f"SELECT * FROM cell_hosts {where}", span):
        cluster = found.get(row["cell_ref"])
        if cluster is not None:
            cluster["hosts"][row["host_id"]] = {
                "name": row["name"],
                "workers": row["workers"],
                "in_kernel": row["in_kernel"],
                "energy_j": {"cpu": row["cpu_j"], "gpu": row["gpu_j"], "ram": row["ram_j"]},
                "embodied_g": row["embodied_g"],
                "methods": json.loads(row["methods_json"] or "{}"),
            }
    return found
