"""Build a large ledger in an older schema (version 3), quickly, directly in SQL.

Users upgrade carbon_magic with a ledger of years of cells written by an older version;
this file is one such: ``--cells`` cells (default a million) over ``--kernels`` kernels
(two tracker sessions each, the older one ended), a Dask cluster part on one cell in a
hundred, and half an hour of heartbeats per live session, the latest stamped now. The
heartbeats lack the columns of schema 4 and 5, so the first kernel that opens the file
migrates it.

    python benchmarks/make_old_ledger.py PATH [--cells 1000000] [--kernels 50]

Prints the counts and the seconds it took. Units as in the ledger: UTC epoch seconds,
joules, kWh, grams CO2e.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path

from carbon_magic.ledger import MIGRATIONS

OLD_VERSION = 3
HEARTBEATS_PER_SESSION = 900  # half an hour at one beat every 2 s
CELL_SPACING_S = 0.25  # a million cells span about three days, up to now

# A pseudo-random fraction in [0, 1) of the row number i, deterministic.
_FRACTION = "(((i * 2654435761) % 1000003) / 1000003.0)"
_CELLS = f"""
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :count - 1),
f(i, x, session) AS (SELECT i, {_FRACTION}, i % :sessions + 1 FROM n)
INSERT INTO cells (
    session_id, kernel_id, cell_id, execution_count, name, source, via, status,
    started_at, ended_at, duration_s, cpu_j, gpu_j, ram_j, energy_kwh, energy_low_kwh,
    energy_high_kwh, emissions_g, emissions_low_g, emissions_high_g, embodied_g,
    intensity_g_per_kwh, intensity_source, pue, mode, methods_json, devices_json, budget)
SELECT
    session, 'kernel-' || ((session - 1) / 2), printf('%08x', i), i / :sessions + 1,
    CASE WHEN i % 50 = 0 THEN 'train-' || (i % 7) END,
    CASE WHEN i % 3 = 0 THEN 'model.fit(x_' || (i % 997) || ', epochs=3)'
         ELSE 'df_' || (i % 991) || ' = df.groupby(''key'').sum()' END,
    'auto', CASE WHEN i % 97 = 0 THEN 'error' ELSE 'ok' END,
    :end - (:count - i) * {CELL_SPACING_S}, :end - (:count - i) * {CELL_SPACING_S} + 0.2 + x,
    0.2 + x, 20.0 + 400.0 * x, 150.0 * x, 1.5, (21.5 + 550.0 * x) * 1.2 / 3600000.0,
    (21.5 + 550.0 * x) * 1.2 / 3600000.0 * 0.8, (21.5 + 550.0 * x) * 1.2 / 3600000.0 * 1.25,
    (21.5 + 550.0 * x) * 1.2 / 3600000.0 * 380.0 * (1.0 + 9.0 * x * x * x),
    (21.5 + 550.0 * x) * 1.2 / 3600000.0 * 300.0 * (1.0 + 9.0 * x * x * x),
    (21.5 + 550.0 * x) * 1.2 / 3600000.0 * 470.0 * (1.0 + 9.0 * x * x * x),
    (0.2 + x) * 0.002, 380.0, 'static table (DE, 2023)', 1.2, 'process',
    '{{"cpu":"measured","gpu":"measured","ram":"assumed"}}',
    '{{"nvidia:0":' || (150.0 * x) || '}}', CASE WHEN i % 200 = 0 THEN '5g' END
FROM f
"""
_CLUSTERS = """
INSERT INTO cell_clusters (cell_ref, missing_workers, energy_kwh, emissions_g, embodied_g)
SELECT id, 0, energy_kwh * 0.5, emissions_g * 0.5, embodied_g * 0.5 FROM cells WHERE id % 100 = 0
"""
_HOSTS = """
INSERT INTO cell_hosts (cell_ref, host_id, name, workers, in_kernel, cpu_j, gpu_j, ram_j,
                        embodied_g, methods_json)
SELECT cell_ref, 'host-' || h.n, 'worker-' || h.n, 2, 0, 10.0, 0.0, 1.0, 0.001,
       '{"cpu":"measured","ram":"assumed"}'
FROM cell_clusters, (SELECT 1 AS n UNION ALL SELECT 2) AS h
"""
_HEARTBEATS = f"""
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {HEARTBEATS_PER_SESSION} - 1)
INSERT INTO heartbeats (
    session_id, kernel_id, at, cpu_w, gpu_w, ram_w, energy_kwh, emissions_g, emissions_low_g,
    emissions_high_g, embodied_g, intensity_g_per_kwh, intensity_source, tracker_state,
    running_cell, running_cell_started_at, prediction_json)
SELECT s.id, s.kernel_id, :now - ({HEARTBEATS_PER_SESSION} - 1 - n.i) * 2.0, 20.0, 0.0, 3.0,
       n.i * 1e-5, n.i * 1e-5 * 380, n.i * 1e-5 * 300, n.i * 1e-5 * 470, n.i * 1e-6, 380.0,
       'static table (DE, 2023)', 'running', NULL, NULL, NULL
FROM sessions AS s, n WHERE s.ended_at IS NULL
"""


def build_old_ledger(path: Path, cells: int, kernels: int) -> dict[str, int]:
    """Write a schema-3 ledger of ``cells`` cells at ``path`` (replaced if present);
    returns the row counts per table."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    now = time.time()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("BEGIN")
        for migration in MIGRATIONS[:OLD_VERSION]:
            migration(connection)
        connection.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(OLD_VERSION),)
        )
        sessions = kernels * 2
        for number in range(sessions):
            live = number % 2 == 1
            started = now - (3600.0 if live else 4 * 86400.0)
            connection.execute(
                "INSERT INTO sessions (session_uuid, kernel_id, notebook_path, host, pid, "
                "started_at, ended_at, tracker_state, interval_s, mode, hardware_json, "
                "methods_json, settings_json, intensity_source, intensity_g_per_kwh) "
                "VALUES (?, ?, ?, 'bench', ?, ?, ?, ?, 1.0, 'process', ?, ?, ?, ?, 380.0)",
                (
                    f"session-{number:04d}",
                    f"kernel-{number // 2}",
                    f"project/notebook-{number // 2:02d}.ipynb",
                    10_000 + number,
                    started,
                    None if live else started + 7200.0,
                    "running" if live else "stopped",
                    '{"cpu_model":"bench CPU","n_cpus":16,"ram_gb":64,'
                    '"gpus":{"nvidia:0":"NVIDIA H100"}}',
                    '{"cpu":"measured","gpu":"measured","ram":"assumed"}',
                    '{"country":"DE","pue":1.2,"mode":"process"}',
                    "static table (DE, 2023)",
                ),
            )
        parameters = {"count": cells, "sessions": sessions, "end": now - 60.0}
        connection.execute(_CELLS, parameters)
        connection.execute(_CLUSTERS)
        connection.execute(_HOSTS)
        connection.execute(_HEARTBEATS, {"now": now})
        connection.execute("COMMIT")
        counts = {
            table: connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("sessions", "cells", "cell_clusters", "cell_hosts", "heartbeats")
        }
    finally:
        connection.close()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--kernels", type=int, default=50)
    args = parser.parse_args()
    started = time.perf_counter()
    counts = build_old_ledger(args.path, args.cells, args.kernels)
    size_mb = args.path.stat().st_size / 1e6
    print(
        f"schema-{OLD_VERSION} ledger {args.path}: "
        + ", ".join(f"{n:,} {table}" for table, n in counts.items())
        + f", {size_mb:.0f} MB, built in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
