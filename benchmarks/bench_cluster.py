"""Cluster benchmarks: the latency a recorded cell gains when the notebook has a
4-worker Dask ``LocalCluster`` (two RPC rounds through the scheduler per cell), 4 Dask
workers started apart, or a 2-node Ray cluster (a head and a worker node started apart,
one read of each node's tracker actor per edge); and what a Dask worker's tracker costs
while the worker is idle.

Latency is timed inside a real kernel around ``run_cell("pass")`` with the extension
loaded, ``cluster=none`` against ``cluster=auto`` (target: ≤ 20 ms added at p95). The idle
cost is the CPU time of a ``dask worker`` process (not the kernel's child, so its tracker
runs) over an idle period, without and with the plugin. Prints medians and p95.

    python benchmarks/bench_cluster.py [--runs N] [--idle-s S] [--engines dask,ray]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.dask_procs import DaskProcesses  # noqa: E402
from tests.kernels import Kernel  # noqa: E402
from tests.ray_procs import RayProcesses, ray_env  # noqa: E402

# The cells are timed after the cell that asks for them has ended, from the kernel's
# event loop, so each is a recorded cell of its own (a cell run by a running cell is
# part of that cell).
TIME_CELLS = r"""
import asyncio, json, statistics, time
_samples = {}
def _time_cells(key, code, runs):
    shell = get_ipython()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        shell.run_cell(code, store_history=False)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    _samples[key] = samples
"""

START_CLUSTER = r"""
from distributed import Client, LocalCluster
cluster = LocalCluster(n_workers=4, threads_per_worker=1, processes=True, dashboard_address=None)
client = Client(cluster)
client.wait_for_workers(4, timeout=120)
"""


def samples(kernel: Kernel, code: str, runs: int) -> list[float]:
    """Wall times of ``code`` run as a cell of its own inside the kernel, milliseconds."""
    call = f"_time_cells('latest', {code!r}, {runs})"
    kernel.execute(f"asyncio.get_running_loop().call_soon(lambda: {call})", timeout=600)
    run = kernel.execute("print(json.dumps(_samples.pop('latest')))", timeout=600)
    text = "".join(m["content"]["text"] for m in run.of_type("stream"))
    return json.loads(text.strip().splitlines()[-1])


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def cell_latency(
    runs: int,
    scheduler: str | None = None,
    ray_address: str | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """With ``scheduler``, connect to it (workers started apart, all read at each edge);
    with ``ray_address``, connect to that Ray cluster (every node read at each edge);
    else start a LocalCluster in the kernel (its workers are the kernel's children)."""
    with tempfile.TemporaryDirectory() as home:
        kernel = Kernel(os.path.join(home, "ledger.sqlite3"), env)
        try:
            kernel.execute(TIME_CELLS)
            kernel.execute("%load_ext carbon_magic")
            if ray_address is not None:
                kernel.execute(
                    f"import ray\nray.init(address={ray_address!r}, logging_level='ERROR')",
                    timeout=180,
                )
            elif scheduler is None:
                kernel.execute(START_CLUSTER, timeout=180)
            else:
                kernel.execute(
                    f"from distributed import Client\nclient = Client({scheduler!r})\n"
                    "client.wait_for_workers(4, timeout=120)",
                    timeout=180,
                )
            kernel.execute(
                "from carbon_magic.kernel.magics import current_magics\n"
                "assert current_magics().session.cluster_reader.wait_ready(120)",
                timeout=180,
            )
            results = {}
            for setting in ("none", "auto", "none", "auto"):  # interleaved against drift
                kernel.execute(f"%carbon config cluster={setting}")
                samples(kernel, "pass", 20)  # warm-up
                results.setdefault(setting, []).extend(samples(kernel, "pass", runs // 2))
            check = kernel.execute(
                "import json\nprint(json.dumps(current_magics().session.last.cluster))"
            )
            cluster = json.loads(check.text.strip().splitlines()[-1])
        finally:
            kernel.shutdown()
    off, on = results["none"], results["auto"]
    (host,) = cluster["hosts"].values()
    if ray_address is not None:
        kind = "Ray cluster of 2 nodes started apart (each node's actor read at both edges)"
    elif scheduler is None:
        kind = "4-worker LocalCluster (processes, the kernel's children: confirmed, not read)"
    else:
        kind = "4 dask worker processes started apart (each read at both edges)"
    print(f"recorded empty cell, {kind}, {len(on)} cells each:")
    print(f"  cluster=none: median {median(off):.2f} ms, p95 {p95(off):.2f} ms")
    print(f"  cluster=auto: median {median(on):.2f} ms, p95 {p95(on):.2f} ms")
    print(
        f"  added per cell: median {median(on) - median(off):+.2f} ms, "
        f"p95 {p95(on) - p95(off):+.2f} ms (p95 on − p95 off; target ≤ 20 ms)"
    )
    unit = "nodes" if ray_address is not None else "workers"
    print(
        f"  (the last cell read {host['workers']} {unit}, {host['in_kernel']} in the kernel's tree)"
    )


def ray_cell_latency(runs: int) -> None:
    """A head and one worker node, each started with ``ray start`` apart from the kernel."""
    with tempfile.TemporaryDirectory() as tmp:
        procs = RayProcesses(Path(tmp))
        env = ray_env(Path(tmp))
        try:
            procs.start_head(env)
            procs.wait_nodes(1, env)
            procs.start_node("n1", env)
            procs.wait_nodes(2, env)
            cell_latency(runs, ray_address=procs.address, env=env)
        finally:
            procs.stop()


def tracker_thread_cpu_s() -> float:
    """On a worker: CPU seconds of its carbon_magic tracker thread so far (Linux)."""
    import os
    import threading

    for thread in threading.enumerate():
        if thread.name == "carbon_magic-tracker":
            with open(f"/proc/self/task/{thread.native_id}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def worker_cpu_s(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def idle_cost(idle_s: float) -> None:
    """A worker started apart from the kernel (so its tracker runs), idle: its process's
    CPU time before and after a kernel installs the plugin, and the tracker thread's."""
    from distributed import Client

    with tempfile.TemporaryDirectory() as tmp:
        procs = DaskProcesses(Path(tmp))
        kernel = None
        try:
            address = procs.start_scheduler()
            worker = procs.start_worker("idle")
            client = Client(address)  # only to look into the worker
            client.wait_for_workers(1, timeout=120)
            time.sleep(5)  # let start-up work settle
            before = worker_cpu_s(worker.pid)
            time.sleep(idle_s)
            bare = (worker_cpu_s(worker.pid) - before) / idle_s
            kernel = Kernel(os.path.join(tmp, "ledger.sqlite3"))
            kernel.execute("%load_ext carbon_magic")
            kernel.execute(
                f"from distributed import Client\nclient = Client({address!r})\n"
                "from carbon_magic.kernel.magics import current_magics\n"
                "assert current_magics().session.cluster_reader.wait_ready(60)",
                timeout=180,
            )
            time.sleep(5)
            before = worker_cpu_s(worker.pid)
            (thread_before,) = client.run(tracker_thread_cpu_s).values()
            time.sleep(idle_s)
            tracked = (worker_cpu_s(worker.pid) - before) / idle_s
            (thread_after,) = client.run(tracker_thread_cpu_s).values()
            thread = (thread_after - thread_before) / idle_s
            client.close()
        finally:
            if kernel is not None:
                kernel.shutdown()
            procs.stop()
    print(f"idle dask worker process, {idle_s:g} s each, CPU time per second of wall time:")
    print(f"  without the plugin: {bare * 1000:.2f} ms/s")
    print(f"  with its tracker (interval 1 s): {tracked * 1000:.2f} ms/s")
    print(f"  difference: {(tracked - bare) * 1000:+.2f} ms/s (within the worker's own noise)")
    resolution = 1 / os.sysconf("SC_CLK_TCK") / idle_s  # one clock tick over the period
    if thread > 0:
        print(
            f"  the tracker thread itself: {thread * 1000:.2f} ms/s ({thread * 100:.2f} % of a CPU)"
        )
    else:
        print(
            "  the tracker thread itself: below one clock tick over the period "
            f"(< {resolution * 1000:.2f} ms/s, < {resolution * 100:.2f} % of a CPU)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--engines", default="dask,ray", help="dask, ray or both")
    options = parser.parse_args()
    engines = options.engines.split(",")
    if "dask" in engines:
        cell_latency(options.runs)
        with tempfile.TemporaryDirectory() as tmp:
            procs = DaskProcesses(Path(tmp))
            try:
                address = procs.start_scheduler()
                for n in range(4):
                    procs.start_worker(f"w{n}")
                cell_latency(options.runs, address)
            finally:
                procs.stop()
    if "ray" in engines:
        ray_cell_latency(options.runs)
    if "dask" in engines:
        idle_cost(options.idle_s)


if __name__ == "__main__":
    main()
