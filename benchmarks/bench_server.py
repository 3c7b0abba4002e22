"""Latency of the server extension's endpoints on a large ledger.

Builds a ledger of 50 kernels (two tracker sessions each, the older one ended), 100,000
cell rows and an hour of heartbeats per live session in a temporary directory, starts a
real Jupyter Server on 127.0.0.1 with a token, and times sequential requests over one
keep-alive connection::

    python benchmarks/bench_server.py [--kernels 50] [--cells 100000] [--requests 300]

Prints p50/p95 per endpoint against the targets (kernel endpoint and cells endpoint
p95 ≤ 20 ms, /metrics p95 ≤ 50 ms) and exits 1 when a target is missed. The cells
endpoint is timed on a first page (100 of a kernel's 2,000 cells, the default page),
on a poll for what is new (``after`` the last row id) and by notebook path.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from carbon_magic.ledger import CELL_COLUMNS, HEARTBEAT_COLUMNS, Ledger

HEARTBEAT_PERIOD_S = 2.0
HEARTBEATS_PER_SESSION = 1800  # an hour at one beat every 2 s
TARGETS_MS = {
    "kernel endpoint": 20.0,
    "cells endpoint (first page)": 20.0,
    "cells endpoint (poll after)": 20.0,
    "cells by notebook path": 20.0,
    "/metrics": 50.0,
}


def build_ledger(path: Path, n_kernels: int, n_cells: int) -> list[str]:
    """Write the ledger; returns the kernel ids. Sessions go through ``Ledger`` (so the
    schema is the package's); bulk rows are inserted in one transaction for speed."""
    now = time.time()
    writer = Ledger(path)
    kernel_ids = [str(uuid.uuid4()) for _ in range(n_kernels)]
    live_sessions: list[tuple[str, str]] = []
    all_sessions: list[tuple[str, str]] = []
    for index, kernel_id in enumerate(kernel_ids):
        for age_s, live in ((86400.0 * 3, False), (3600.0, True)):
            session_uuid = uuid.uuid4().hex
            writer.open_session(
                session_uuid=session_uuid,
                kernel_id=kernel_id,
                notebook_path=f"project/notebook-{index:02d}.ipynb",
                host="bench",
                pid=10_000 + index,
                started_at=now - age_s,
                interval_s=1.0,
                mode="process",
                hardware={"cpu_model": "bench", "n_cpus": 16, "ram_gb": 64, "gpus": []},
                methods={"cpu": "measured", "gpu": "measured", "ram": "assumed"},
                settings={},
                intensity_source="static: DE (2023)",
                intensity_g_per_kwh=380.0,
            )
            all_sessions.append((kernel_id, session_uuid))
            if live:
                live_sessions.append((kernel_id, session_uuid))
            else:
                writer.update_session(
                    session_uuid, tracker_state="stopped", ended_at=now - age_s + 7200
                )
    writer.close()

    connection = sqlite3.connect(path)
    ids = dict(connection.execute("SELECT session_uuid, id FROM sessions"))
    cell_columns = ("session_id", "kernel_id", *CELL_COLUMNS)
    beat_columns = ("session_id", "kernel_id", *HEARTBEAT_COLUMNS)
    insert_cell = (
        f"INSERT INTO cells ({', '.join(cell_columns)}) "
        f"VALUES ({', '.join('?' for _ in cell_columns)})"
    )
    insert_beat = (
        f"INSERT INTO heartbeats ({', '.join(beat_columns)}) "
        f"VALUES ({', '.join('?' for _ in beat_columns)})"
    )
    rng = random.Random(1)

    def cells():
        for number in range(n_cells):
            kernel_id, session_uuid = all_sessions[number % len(all_sessions)]
            started = now - rng.uniform(60, 3 * 86400)
            energy_kwh = rng.uniform(1e-6, 1e-3)
            row = {
                "cell_id": uuid.uuid4().hex[:8],
                "execution_count": number,
                "name": None,
                "source": "df = df.groupby('key').sum()",
                "via": "auto",
                "status": "ok",
                "started_at": started,
                "ended_at": started + 1.0,
                "duration_s": 1.0,
                "cpu_j": energy_kwh * 3.6e6,
                "gpu_j": 0.0,
                "ram_j": 0.0,
                "energy_kwh": energy_kwh,
                "energy_low_kwh": energy_kwh * 0.8,
                "energy_high_kwh": energy_kwh * 1.2,
                "emissions_g": energy_kwh * 380,
                "emissions_low_g": energy_kwh * 300,
                "emissions_high_g": energy_kwh * 450,
                "embodied_g": energy_kwh * 40,
                "intensity_g_per_kwh": 380.0,
                "intensity_source": "static: DE (2023)",
                "pue": 1.0,
                "mode": "process",
                "methods_json": "{}",
                "devices_json": "{}",
                "budget": None,
            }
            yield (ids[session_uuid], kernel_id, *(row[name] for name in CELL_COLUMNS))

    def beats():
        for kernel_id, session_uuid in live_sessions:
            for step in range(HEARTBEATS_PER_SESSION):
                at = now - (HEARTBEATS_PER_SESSION - step) * HEARTBEAT_PERIOD_S
                energy_kwh = step * 1e-5
                row = dict.fromkeys(HEARTBEAT_COLUMNS)  # later columns: NULL
                row.update(
                    at=at,
                    cpu_w=rng.uniform(5, 60),
                    gpu_w=0.0,
                    ram_w=3.0,
                    energy_kwh=energy_kwh,
                    emissions_g=energy_kwh * 380,
                    emissions_low_g=energy_kwh * 300,
                    emissions_high_g=energy_kwh * 450,
                    embodied_g=energy_kwh * 40,
                    intensity_g_per_kwh=380.0,
                    intensity_source="static: DE (2023)",
                    tracker_state="running",
                    next_beat_s=HEARTBEAT_PERIOD_S,  # a running cell's beat period
                )
                yield (ids[session_uuid], kernel_id, *(row[name] for name in HEARTBEAT_COLUMNS))

    with connection:
        connection.executemany(insert_cell, cells())
        connection.executemany(insert_beat, beats())
    connection.execute("PRAGMA optimize")
    connection.close()
    return kernel_ids


def refresh_heartbeats(path: Path) -> None:
    """One new heartbeat per live session, stamped now, as running trackers would write."""
    columns = ", ".join(HEARTBEAT_COLUMNS[1:])
    with sqlite3.connect(path, timeout=5) as connection:
        connection.execute(
            f"INSERT INTO heartbeats (session_id, kernel_id, at, {columns}) "
            f"SELECT session_id, kernel_id, ?, {columns} FROM heartbeats "
            "WHERE id IN (SELECT MAX(id) FROM heartbeats GROUP BY session_id)",
            (time.time(),),
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(workdir: Path, ledger: Path, port: int, token: str) -> subprocess.Popen:
    """A Jupyter Server with the extension, reading ``ledger``; waits until it answers."""
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(workdir / "config"),
        "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
        "JUPYTER_DATA_DIR": str(workdir / "data"),
    }
    command = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--allow-root",  # this throwaway benchmark server may run as root
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--ServerApp.root_dir={workdir}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.jpserver_extensions={'carbon_magic': True}",
        f"--CarbonMagicServer.ledger={ledger}",
        "--CarbonMagicServer.kernels=ledger",
        "--ServerApp.log_level=WARN",
    ]
    log = open(workdir / "server.log", "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {(workdir / 'server.log').read_text()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/status", headers={"Authorization": f"token {token}"})
            if connection.getresponse().status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError("server did not start within 60 s")


def time_requests(
    connection: http.client.HTTPConnection, paths: list[str], token: str
) -> list[float]:
    """Milliseconds per request (full response read), in order."""
    timings = []
    headers = {"Authorization": f"token {token}"}
    for path in paths:
        started = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        timings.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
    return timings


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, default=50)
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="carbon-bench-") as tmp:
        workdir = Path(tmp)
        ledger = workdir / "ledger.sqlite3"
        started = time.perf_counter()
        kernel_ids = build_ledger(ledger, args.kernels, args.cells)
        with sqlite3.connect(ledger) as check:
            n_cells = check.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
            n_beats = check.execute("SELECT COUNT(*) FROM heartbeats").fetchone()[0]
            n_sessions = check.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
        print(
            f"ledger: {len(kernel_ids)} kernels, {n_sessions} sessions, {n_cells:,} cells, "
            f"{n_beats:,} heartbeats, {ledger.stat().st_size / 1e6:.0f} MB "
            f"(built in {time.perf_counter() - started:.1f} s)"
        )
        token = secrets.token_hex(16)
        port = free_port()
        server = start_server(workdir, ledger, port, token)
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            rng = random.Random(2)
            kernel_paths = [
                f"/carbon-magic/api/v1/kernels/{rng.choice(kernel_ids)}"
                for _ in range(args.requests)
            ]
            with sqlite3.connect(ledger) as check:
                last_id = check.execute("SELECT MAX(id) FROM cells").fetchone()[0]
            cells_first = [f"{path}/cells" for path in kernel_paths]
            cells_poll = [f"{path}/cells?after={last_id}" for path in kernel_paths]
            by_path = [
                "/carbon-magic/api/v1/cells?path="
                f"project/notebook-{kernel_ids.index(path.rsplit('/', 1)[1]):02d}.ipynb"
                "&limit=100"
                for path in kernel_paths
            ]
            plans = {
                "kernel endpoint": kernel_paths,
                "cells endpoint (first page)": cells_first,
                "cells endpoint (poll after)": cells_poll,
                "cells by notebook path": by_path,
                "/metrics": ["/carbon-magic/metrics"] * args.requests,
                "/summary": ["/carbon-magic/api/v1/summary"] * args.requests,
            }
            # Warm up (first connection, page cache), and check the answers make sense.
            refresh_heartbeats(ledger)
            time_requests(connection, kernel_paths[:20] + ["/carbon-magic/metrics"] * 5, token)
            connection.request(
                "GET", "/carbon-magic/api/v1/summary", headers={"Authorization": f"token {token}"}
            )
            summary = json.loads(connection.getresponse().read())
            assert len(summary["kernels"]) == args.kernels, len(summary["kernels"])
            failed = False
            for name, paths in plans.items():
                refresh_heartbeats(ledger)
                timings = time_requests(connection, paths, token)
                p50, p95 = percentile(timings, 0.5), percentile(timings, 0.95)
                target = TARGETS_MS.get(name)
                verdict = ""
                if target is not None:
                    ok = p95 <= target
                    failed |= not ok
                    verdict = f" (target p95 ≤ {target:g} ms{'' if ok else ': MISSED'})"
                print(
                    f"{name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
                    f"mean {statistics.fmean(timings):.1f} ms over {len(timings)}{verdict}"
                )
            connection.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
