"""Cells that fan out to a real Ray cluster, in real kernels: nothing counted twice.

One cluster for the whole module (starting Ray nodes is slow): a head on the kernel's
host A and two worker nodes on host B (another boot id, a fake powercap tree at 50 W),
each its own ``ray start`` process group on 127.0.0.1. The head charges CPU time by a
model of exactly 1 J per busy CPU second, so process mode can be checked against CPU
seconds read with psutil. The test that kills a node runs last.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import time

import pytest

from carbon_magic.cluster.identity import host_id
from carbon_magic.cpu_model.power import visible_cpu_count

from .dask_procs import PoweredTree
from .kernels import Kernel
from .ray_procs import RayProcesses, ray_env
from .test_cluster import BURN, last, ok

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.timeout(600),
    # Not imported here: this process may have amdsmi (see ray_procs.NO_AMDSMI).
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray"),
]

CALIBRATED = {
    "CARBON_MAGIC_CPU_IDLE_W": "0",
    "CARBON_MAGIC_CPU_MAX_W": str(visible_cpu_count()),
    "CARBON_MAGIC_POWERCAP_ROOT": "/nonexistent/powercap",
}
# In a kernel with ``ray``: tasks pinned to a node by name (nodes are told apart by the
# node manager port each was started with), half a CPU slot each so two drivers' tasks
# run on one node at once.
PINNED = """
import json, os, time
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
def node_of(port):
    return [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeManagerPort"] == port][0]
@ray.remote(num_cpus=0.5)
def burn_on(seconds):
    burn(seconds)
    return os.getpid(), time.process_time()  # this worker process's CPU seconds so far
def on(port, seconds):
    strategy = NodeAffinitySchedulingStrategy(node_of(port), soft=False)
    return burn_on.options(scheduling_strategy=strategy).remote(seconds)
"""
READY = (
    "from carbon_magic.kernel.magics import current_magics\n"
    "assert current_magics().session.cluster_reader.wait_ready(120), current_magics().session.cluster_reader.notices"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray")
    host_a = PoweredTree(tmp / "a", 20.0)
    host_b = PoweredTree(tmp / "b", 50.0)
    boot_b = tmp / "boot_id_b"
    boot_b.write_text("b0b0b0b0-another-machine\n")
    procs = RayProcesses(tmp)
    try:
        procs.start_head(ray_env(tmp, **CALIBRATED))
        node_env = ray_env(
            tmp, CARBON_MAGIC_POWERCAP_ROOT=host_b.root, CARBON_MAGIC_BOOT_ID_PATH=str(boot_b)
        )
        procs.wait_nodes(1, ray_env(tmp))
        for count, name in enumerate(("n1", "n2"), start=2):  # one at a time: 2 cores
            procs.start_node(name, node_env)
            procs.wait_nodes(count, ray_env(tmp))
        procs.host_a = host_a  # type: ignore[attr-defined]
        yield procs
    finally:
        procs.stop()
        host_a.stop()
        host_b.stop()


@pytest.fixture
def kernels(tmp_path, cluster):
    started = []

    def start(name: str = "k", mode: str = "process", connect: bool = True) -> Kernel:
        env = ray_env(
            tmp_path,
            CARBON_MAGIC_INTERVAL="0.5",
            CARBON_MAGIC_MODE=mode,
            CARBON_MAGIC_POWERCAP_ROOT=cluster.host_a.root,
        )
        kernel = Kernel(str(tmp_path / f"{name}.sqlite3"), env)
        started.append(kernel)
        ok(kernel.execute("%load_ext carbon_magic"))
        ok(kernel.execute(BURN))
        if not connect:
            return kernel
        ok(
            kernel.execute(
                f"import ray\nray.init(address={cluster.address!r}, logging_level='ERROR')"
            )
        )
        ok(kernel.execute(PINNED))
        ok(kernel.execute(READY, timeout=180))
        return kernel

    yield start
    for kernel in started:
        kernel.shutdown()


def hosts_by_kind(m: dict) -> tuple[dict, dict]:
    """(the kernel's host A, host B) entries of a cell's cluster part."""
    hosts = dict(m["cluster"]["hosts"])
    assert len(hosts) == 2, m["cluster"]
    a = hosts.pop(host_id())
    (b,) = hosts.values()
    return a, b


def test_process_mode_charges_this_drivers_workers_not_another_drivers(cluster, kernels):
    """Process mode: the head node (on the kernel's host, not its child) adds the CPU
    seconds of this driver's worker processes there, and not those of another driver
    burning on the same node at the same time. Checked against the CPU time the
    workers' processes report of themselves (Ray may replace an idle worker meanwhile:
    one the cell started counts from zero)."""
    kernel = kernels()
    head = cluster.node_ports["head"]
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            BURN
            + PINNED
            + f"ray.init(address={cluster.address!r}, logging_level='ERROR')\n"
            + f"print(ray.get([on({head}, 4.0) for _ in range(2)]), flush=True)\n",
        ],
        env=ray_env(cluster.tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(8)  # the other driver connected and burning
        before = dict(
            [json.loads(ok(kernel.execute(f"json.dumps(ray.get(on({head}, 0)))")).result[1:-1])]
        )
        ran = ok(
            kernel.execute(f"json.dumps(ray.get([on({head}, 1.5), on({head}, 0.5)]))", timeout=120)
        )
    finally:
        output = other.communicate(timeout=120)[0].decode()
    cpu_after: dict[int, float] = {}
    for pid, cpu in json.loads(ran.result[1:-1]):
        cpu_after[pid] = max(cpu, cpu_after.get(pid, 0.0))
    measured = sum(cpu - before.get(pid, 0.0) for pid, cpu in cpu_after.items())
    m = last(kernel)
    cluster_part = m["cluster"]
    assert cluster_part["engine"] == "ray"
    host_a, host_b = hosts_by_kind(m)
    assert (host_a["workers"], host_a["in_kernel"], host_b["workers"]) == (1, 0, 2)
    assert host_a["methods"]["cpu"] == "modelled"
    print("ray process mode: head", host_a["energy_j"]["cpu"], "J; workers", measured, output)
    assert "Traceback" not in output
    assert measured > 1.8
    # Every CPU second of this driver's workers is charged (J = CPU s here), and none of
    # the other driver's (its two workers burned about 11 s meanwhile). The charge may
    # hold a little more than the tasks' own count: processes Ray starts for this job
    # on the node besides the task workers.
    printed = next(line for line in output.splitlines() if line.startswith("[("))
    others = sum(cpu for _, cpu in ast.literal_eval(printed))
    charged = host_a["energy_j"]["cpu"]
    assert measured * 0.9 <= charged < measured + others / 2, (charged, measured, others)


def test_machine_mode_counts_each_host_once(cluster, kernels):
    """Machine mode: the head is on the kernel's host (counted with the kernel); the two
    nodes on host B add host B once."""
    kernel = kernels("machine", mode="machine")
    ok(kernel.execute("time.sleep(3)"))
    m = last(kernel)
    cluster_part = m["cluster"]
    assert cluster_part["missing_workers"] == 0, cluster_part
    host_a, host_b = hosts_by_kind(m)
    assert (host_a["workers"], host_a["in_kernel"], host_a["energy_j"]["cpu"]) == (1, 1, 0.0)
    assert (host_b["workers"], host_b["in_kernel"]) == (2, 0)
    assert host_b["methods"]["cpu"] == "measured"
    duration = m["duration_s"]
    assert host_b["energy_j"]["cpu"] == pytest.approx(50.0 * duration, rel=0.15)
    assert m["energy_j"]["cpu"] == pytest.approx(70.0 * duration, rel=0.15)  # not 20+50+50
    panel = ok(kernel.execute("%%carbon --quiet\ntime.sleep(0.5)"))
    assert "· cluster " in panel.text and "3 nodes on 2 hosts" in panel.text, panel.text


def test_a_budget_stops_a_cell_whose_work_runs_on_ray(cluster, kernels):
    """The live figures include the nodes' part: an energy budget stops a cell that
    only waits for a task burning on the head node."""
    kernel = kernels("budget")
    head = cluster.node_ports["head"]
    ok(kernel.execute(f"ray.get(on({head}, 0.1))", timeout=120))
    started = time.monotonic()
    run = kernel.execute(
        f"%%carbon --budget 1.5J --on-exceed stop\nray.get(on({head}, 40.0))", timeout=120
    )
    elapsed = time.monotonic() - started
    assert "BudgetExceeded" in run.text or "budget" in run.text, run.text
    m = last(kernel)
    assert m["status"] == "stopped by budget", m["status"]
    assert elapsed < 30
    assert m["cluster"]["energy_kwh"] > 0.5 * m["energy_kwh"]
    ok(kernel.execute("ray.shutdown()"))  # its task dies with its driver


def test_shutdown_in_a_cell_then_a_reconnect_keeps_the_node_trackers(cluster, kernels):
    """``ray.shutdown()`` inside a cell: the kernel part is recorded, the cluster part
    marked partial, no traceback. Reconnecting finds the same node actors (detached):
    the next cells are measured again."""
    kernel = kernels("reconnect")
    actors = (
        "from carbon_magic.cluster import ray_node\n"
        "sorted(ray.get([ray.get_actor(ray_node.actor_name(n['NodeID']), "
        "namespace=ray_node.NAMESPACE).pid.remote() for n in ray.nodes() if n['Alive']]))"
    )
    before = ok(kernel.execute(actors)).result
    shut = ok(kernel.execute("burn(0.2)\nray.shutdown()"))
    assert "Traceback" not in shut.text
    m = last(kernel)
    assert m["energy_j"]["cpu"] > 0 and m["status"] == "ok"
    assert m["cluster"]["partial"] == "the ray connection was closed during the cell"
    assert m["cluster"]["missing_workers"] == 3
    ok(kernel.execute("x = 1"))
    assert last(kernel)["cluster"] is None  # not connected: no cluster part
    ok(kernel.execute(f"ray.init(address={cluster.address!r}, logging_level='ERROR')"))
    ok(kernel.execute(READY, timeout=180))
    assert ok(kernel.execute(actors)).result == before  # the same processes
    ok(kernel.execute("time.sleep(1)"))
    m = last(kernel)
    assert m["cluster"]["missing_workers"] == 0 and "partial" not in m["cluster"], m["cluster"]


def test_a_ray_without_the_needed_api_marks_the_cluster_part_partial(cluster, kernels):
    """A Ray that lacks NodeAffinitySchedulingStrategy (before 2.1): no trackers, no
    traceback; each cell's cluster part is empty and says why."""
    kernel = kernels("old", connect=False)
    ok(
        kernel.execute(
            "import ray, ray.util.scheduling_strategies as _strategies\n"
            "del _strategies.NodeAffinitySchedulingStrategy\n"
            f"ray.init(address={cluster.address!r}, logging_level='ERROR')"
        )
    )
    ready = ok(
        kernel.execute(
            "from carbon_magic.kernel.magics import current_magics\n"
            "print(current_magics().session.cluster_reader.wait_ready(60))"
        )
    )
    assert ready.text.strip().splitlines()[-1] == "False"
    run = ok(kernel.execute("burn(0.2)"))
    assert "Traceback" not in run.text
    m = last(kernel)
    assert m["status"] == "ok" and m["energy_j"]["cpu"] > 0
    assert m["cluster"]["hosts"] == {} and m["cluster"]["engine"] == "ray"
    assert "NodeAffinitySchedulingStrategy" in m["cluster"]["partial"]


def test_a_node_killed_mid_cell_is_missing_and_said_so(cluster, kernels):
    """Runs last: a node dies while a cell runs. The cell is not held up, the kernel
    part and the other nodes are recorded, the dead node is counted missing."""
    kernel = kernels("killed")  # process mode: the dead node's part is lost to the cell
    raylet = cluster.raylet_pid("n2")
    started = time.monotonic()
    ok(
        kernel.execute(
            "import os, signal, psutil\n"
            f"_raylet = psutil.Process({raylet})\n"
            "for _p in [_raylet, *_raylet.children(recursive=True)]:\n"
            "    _p.kill()\n"
            "time.sleep(1)"
        )
    )
    elapsed = time.monotonic() - started
    m = last(kernel)
    cluster.kill_node("n2")  # the rest of its processes
    assert m["status"] == "ok"
    assert m["cluster"]["missing_workers"] == 1, m["cluster"]
    assert "1 node missing" in m["cluster"]["partial"]
    _, host_b = hosts_by_kind(m)
    assert host_b["workers"] == 1
    assert elapsed - m["duration_s"] < 3.5
    panel = ok(kernel.execute("%%carbon --quiet\ntime.sleep(0.2)"))
    assert "Traceback" not in panel.text and "· cluster " in panel.text, panel.text
