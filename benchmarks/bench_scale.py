"""Reports, exports and the server over a ledger of a million cells in an older schema.

Builds the ledger with ``make_old_ledger`` (schema 3, as an older carbon_magic wrote it)
unless ``--ledger`` names one already built, then times, each in its own process so its
peak memory (``ru_maxrss``) is its own:

- ``carbon-magic report --top 5``: median wall time and peak RSS over ``--runs``
  (targets: <= 2 s, <= 300 MB);
- ``carbon-magic export`` in each format: wall time, cells per second and peak RSS
  (targets: >= 100,000 cells/s, <= 300 MB);
- ``%carbon report --all-sessions --top 5`` in a real kernel (which migrates the file
  when it loads the extension): how long the cell is blocked (target <= 1 s) and when
  the report arrives;
- ``/metrics`` and ``/summary`` of a real Jupyter Server: the first request, then p50/p95
  over ``--requests``, once with the ledger unchanged between requests and once with a
  heartbeat written before each request, as live kernels do (target p95 <= 20 ms).

    python benchmarks/bench_scale.py [--cells 1000000] [--runs 3] [--requests 200]
        [--ledger PATH] [--skip report,export,kernel,server]

The file is migrated by the kernel phase; pass ``--ledger`` again to reuse it (the
later phases then read a migrated file). Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import http.client
import os
import queue
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_server import free_port, percentile, start_server, time_requests
from make_old_ledger import build_old_ledger

TARGET_REPORT_S = 2.0
TARGET_RSS_MB = 300.0
TARGET_EXPORT_RATE = 100_000.0
TARGET_BLOCKED_S = 1.0
TARGET_P95_MS = 20.0
FORMATS = ("csv", "codecarbon", "json")


def run_measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``command`` to completion: (wall seconds, peak RSS in MB, its output)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {output[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0, output


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def cli(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "carbon_magic.cli", *arguments]


def bench_report(ledger: Path, runs: int) -> bool:
    walls, peaks = [], []
    for _ in range(runs):
        wall, peak, output = run_measured(cli("report", "--top", "5", "--ledger", str(ledger)))
        walls.append(wall)
        peaks.append(peak)
    total = next((line for line in output.splitlines() if line.startswith("Total:")), "?")
    wall, peak = statistics.median(walls), max(peaks)
    ok = wall <= TARGET_REPORT_S and peak <= TARGET_RSS_MB
    print(
        f"carbon-magic report --top 5: median {wall:.2f} s over {runs} runs "
        f"(min {min(walls):.2f}, max {max(walls):.2f}), peak RSS {peak:.0f} MB "
        f"(targets <= {TARGET_REPORT_S:g} s, <= {TARGET_RSS_MB:g} MB: {verdict(ok)}); {total}"
    )
    return ok


def bench_exports(ledger: Path, cells: int, folder: Path) -> bool:
    ok_all = True
    for fmt in FORMATS:
        target = folder / f"export.{fmt}"
        wall, peak, _ = run_measured(
            cli("export", str(target), "--format", fmt, "--force", "--ledger", str(ledger))
        )
        rate = cells / wall
        ok = rate >= TARGET_EXPORT_RATE and peak <= TARGET_RSS_MB
        ok_all &= ok
        print(
            f"carbon-magic export --format {fmt}: {wall:.1f} s, {rate:,.0f} cells/s, "
            f"peak RSS {peak:.0f} MB, {target.stat().st_size / 1e6:.0f} MB written "
            f"(targets >= {TARGET_EXPORT_RATE:,.0f} cells/s, <= {TARGET_RSS_MB:g} MB: "
            f"{verdict(ok)})"
        )
        target.unlink()
    return ok_all


def _reply_and_report(client, msg_id: str, timeout_s: float) -> tuple[float, float]:
    """(seconds until the execute reply, seconds until a report's "Total:" line arrived)."""
    started = time.perf_counter()
    replied = reported = None
    deadline = started + timeout_s
    while (replied is None or reported is None) and time.perf_counter() < deadline:
        try:
            reply = client.get_shell_msg(timeout=0.05)
            if reply["parent_header"].get("msg_id") == msg_id:
                replied = time.perf_counter() - started
        except queue.Empty:
            pass
        try:
            while True:
                message = client.get_iopub_msg(timeout=0.01)
                data = message["content"].get("data") or {}
                text = data.get("text/plain", "") or message["content"].get("text", "")
                if "Total:" in text and reported is None:
                    reported = time.perf_counter() - started
        except queue.Empty:
            pass
    if replied is None or reported is None:
        raise RuntimeError(f"no reply or report within {timeout_s:g} s")
    return replied, reported


def bench_kernel(ledger: Path, runs: int) -> bool:
    from jupyter_client.manager import KernelManager

    env = {**os.environ, "CARBON_MAGIC_LEDGER": str(ledger), "CARBON_MAGIC_COUNTRY": "DE"}
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env=env)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        started = time.perf_counter()
        client.execute("%load_ext carbon_magic\n%carbon status", reply=True, timeout=120)
        load_s = time.perf_counter() - started
        blocked, arrived = [], []
        for _ in range(runs):
            msg_id = client.execute("%carbon report --all-sessions --top 5")
            reply_s, report_s = _reply_and_report(client, msg_id, 600.0)
            blocked.append(reply_s)
            arrived.append(report_s)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    worst = max(blocked)
    ok = worst <= TARGET_BLOCKED_S
    print(
        f"%carbon report --all-sessions --top 5 in a kernel: cell blocked median "
        f"{statistics.median(blocked):.2f} s, worst {worst:.2f} s over {runs} runs "
        f"(target <= {TARGET_BLOCKED_S:g} s: {verdict(ok)}); report shown after median "
        f"{statistics.median(arrived):.2f} s; %load_ext with the migration {load_s:.1f} s"
    )
    return ok


def write_heartbeat(ledger: Path) -> None:
    """One new heartbeat of one live session, stamped now (a running tracker's)."""
    with sqlite3.connect(ledger, timeout=5) as connection:
        names = [row[1] for row in connection.execute("PRAGMA table_info(heartbeats)")]
        columns = ", ".join(name for name in names if name not in ("id", "at"))
        connection.execute(
            f"INSERT INTO heartbeats (at, {columns}) SELECT ?, {columns} FROM heartbeats "
            "WHERE id = (SELECT MAX(id) FROM heartbeats)",
            (time.time(),),
        )
    connection.close()


def bench_server(ledger: Path, requests: int, workdir: Path) -> bool:
    token = secrets.token_hex(16)
    port = free_port()
    server = start_server(workdir, ledger, port, token)
    ok_all = True
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for name, path in (
            ("/metrics", "/carbon-magic/metrics"),
            ("/summary", "/carbon-magic/api/v1/summary"),
        ):
            first = time_requests(connection, [path], token)[0]
            steady = time_requests(connection, [path] * requests, token)
            written = []
            for _ in range(requests):
                write_heartbeat(ledger)
                written.extend(time_requests(connection, [path], token))
            p95_steady, p95_written = percentile(steady, 0.95), percentile(written, 0.95)
            ok = max(p95_steady, p95_written) <= TARGET_P95_MS
            ok_all &= ok
            print(
                f"{name}: first request {first:.0f} ms; unchanged ledger p50 "
                f"{percentile(steady, 0.5):.1f} ms, p95 {p95_steady:.1f} ms; a heartbeat "
                f"written before each request p50 {percentile(written, 0.5):.1f} ms, p95 "
                f"{p95_written:.1f} ms over {requests} each (target p95 <= "
                f"{TARGET_P95_MS:g} ms: {verdict(ok)})"
            )
        connection.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return ok_all


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--kernels", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--ledger", type=Path, help="reuse (or build once) this ledger file")
    parser.add_argument("--skip", default="", help="phases to skip: report,export,kernel,server")
    args = parser.parse_args()
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    workdir = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    try:
        ledger = args.ledger or workdir / "ledger.sqlite3"
        if not ledger.exists():
            started = time.perf_counter()
            counts = build_old_ledger(ledger, args.cells, args.kernels)
            print(
                f"schema-3 ledger: {counts['cells']:,} cells, {counts['sessions']} sessions, "
                f"{counts['heartbeats']:,} heartbeats, {ledger.stat().st_size / 1e6:.0f} MB "
                f"(built in {time.perf_counter() - started:.1f} s)"
            )
        with sqlite3.connect(ledger) as check:
            cells = check.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
        check.close()
        ok = True
        if "report" not in skip:
            ok &= bench_report(ledger, args.runs)
        if "export" not in skip:
            ok &= bench_exports(ledger, cells, workdir)
        if "kernel" not in skip:
            ok &= bench_kernel(ledger, args.runs)
        if "server" not in skip:
            ok &= bench_server(ledger, args.requests, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
