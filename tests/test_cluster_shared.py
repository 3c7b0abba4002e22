"""Kernels sharing one Dask cluster (a scheduler and workers started apart), in real
kernels: none of them takes another's cluster part away, joining or closing."""

from __future__ import annotations

import json
import threading
import time

import pytest

from . import test_cluster
from .dask_procs import base_env
from .test_cluster import BURN, calibrated_model, connect, last, ok

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(300)]
# The fixtures of the single-kernel cluster tests: real scheduler, workers and kernels.
dask_procs = test_cluster.dask_procs
kernels = test_cluster.kernels

# Defined in a kernel that has ``client``: what the workers and the scheduler hold.
PROBES = """
import json, time
def _plugged(dask_worker):
    plugin = dask_worker.plugins.get("carbon_magic")
    agent = getattr(plugin, "agent", None)
    return None if plugin is None else [id(plugin), getattr(agent, "token", None)]
def _users(dask_scheduler):
    plugin = dask_scheduler.plugins.get("carbon_magic")
    return None if plugin is None else plugin.active_users()
def _until(probe, wanted, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end and probe() != wanted:
        time.sleep(0.1)
    return probe()
"""
PLUGGED = "print(json.dumps(client.run(_plugged)))"
USERS = "print(json.dumps(client.run_on_scheduler(_users)))"


def printed(kernel, code: str):
    return json.loads(ok(kernel.execute(code)).text.strip().splitlines()[-1])


def count_users(kernel, wanted: int) -> int:
    """Wait (closing kernels leave in the background) until ``wanted`` kernels use the
    plugins; the number that do."""
    return printed(
        kernel,
        "_n = lambda: len(client.run_on_scheduler(_users) or [])\n"
        f"print(json.dumps(_until(_n, {wanted})))",
    )


def measured_host(m: dict) -> dict:
    cluster = m["cluster"]
    assert cluster is not None
    assert cluster["missing_workers"] == 0, cluster
    (host,) = cluster["hosts"].values()
    assert (host["workers"], host["in_kernel"]) == (2, 0)
    return host


def test_kernels_on_one_cluster_keep_each_others_cluster_part(tmp_path, dask_procs, kernels):
    """Kernel B joins while a cell of kernel A runs, with other settings; B closing
    leaves A measured; a kernel killed no longer counts; A, last, takes the plugins off."""
    env = calibrated_model()
    address = dask_procs.start_scheduler()
    for name in ("w1", "w2"):
        dask_procs.start_worker(name, base_env(**env))
    a = kernels(str(tmp_path / "a.sqlite3"), env)
    b = kernels(str(tmp_path / "b.sqlite3"), {**env, "CARBON_MAGIC_EMBODIED": "off"})
    for kernel in (a, b):
        ok(kernel.execute("%load_ext carbon_magic"))
        ok(kernel.execute(BURN))
    connect(a, address, 2)
    ok(a.execute(PROBES))
    plugged = printed(a, PLUGGED)
    assert all(plugged.values()), plugged

    # A's cell runs on the workers while B connects and runs a cell of its own.
    started, go = tmp_path / "started", tmp_path / "go"
    in_flight: list = []
    cell = (
        f"open({str(started)!r}, 'w').close()\n"
        "import os\n"
        "_f = [client.submit(burn, 1.5, pure=False, workers=[w])"
        " for w in sorted(client.scheduler_info(n_workers=-1)['workers'])]\n"
        f"while not os.path.exists({str(go)!r}):\n"
        "    time.sleep(0.05)\n"
        "client.gather(_f)"
    )
    runner = threading.Thread(target=lambda: in_flight.append(a.execute(cell, timeout=120)))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists()
        connect(b, address, 2)
        ok(b.execute("client.gather(client.map(burn, [0.3, 0.3], pure=False))"))
    finally:
        go.touch()
        runner.join(120)
    ok(in_flight[0])
    a_cell = last(a)
    host = measured_host(a_cell)
    assert host["energy_j"]["cpu"] > 2.5  # the workers' 3 CPU seconds, none lost
    assert a_cell["cluster"]["embodied_g"] > 0.0  # A's settings: embodied on
    assert printed(a, PLUGGED) == plugged  # no worker plugin or tracker replaced
    b_host = measured_host(last(b))
    assert b_host["energy_j"]["cpu"] > 0.5
    assert last(b)["cluster"]["embodied_g"] == 0.0  # B's settings: embodied off
    assert count_users(a, 2) == 2

    # B closes: A's cells are still measured, on the same trackers.
    ok(b.execute("%unload_ext carbon_magic"))
    assert count_users(a, 1) == 1
    ok(a.execute("client.gather(client.map(burn, [0.5, 0.5], pure=False))"))
    assert measured_host(last(a))["energy_j"]["cpu"] > 0.8
    assert printed(a, PLUGGED) == plugged

    # A kernel that dies without closing no longer counts once its client is gone.
    c = kernels(str(tmp_path / "c.sqlite3"), env)
    ok(c.execute("%load_ext carbon_magic"))
    connect(c, address, 2)
    assert count_users(a, 2) == 2
    c.shutdown()  # killed: it never says it leaves
    assert count_users(a, 1) == 1

    # A, the last user, closes: the plugins come off the workers and the scheduler.
    ok(a.execute("%unload_ext carbon_magic"))
    gone = printed(
        a,
        "print(json.dumps([_until(lambda: set(client.run(_plugged).values()), {None}) == {None},"
        " client.run_on_scheduler(_users)]))",
    )
    assert gone == [True, None]


# Plugins as a carbon_magic from before kernels shared a cluster installed them: no
# ``protocol``, a read handler on the scheduler and on each worker.
OLD_PLUGINS = """
from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin
class _OldScheduler(SchedulerPlugin):
    name = "carbon_magic"
    async def start(self, scheduler):
        scheduler.handlers["carbon_magic_read"] = self.read
    async def read(self, **kwargs):
        return {}
class _OldWorker(WorkerPlugin):
    name = "carbon_magic"
    def setup(self, worker):
        worker.handlers["carbon_magic_read"] = lambda **kwargs: {"error": "old"}
client.register_plugin(_OldScheduler())
client.register_plugin(_OldWorker())
"""


def test_plugins_of_another_protocol_are_replaced_and_said_so(tmp_path, dask_procs, kernels):
    env = calibrated_model()
    address = dask_procs.start_scheduler()
    for name in ("w1", "w2"):
        dask_procs.start_worker(name, base_env(**env))
    kernel = kernels(str(tmp_path / "ledger.sqlite3"), env)
    ok(kernel.execute(BURN))
    ok(
        kernel.execute(
            f"from distributed import Client\nclient = Client({address!r})\n"
            "client.wait_for_workers(2, timeout=60)"
        )
    )
    ok(kernel.execute(OLD_PLUGINS))
    ok(kernel.execute("%load_ext carbon_magic"))  # the client came first: joins now
    ok(kernel.execute(test_cluster.READY))
    notices = printed(
        kernel, "import json\nprint(json.dumps(current_magics().session.cluster_reader.notices))"
    )
    assert any("of protocol 1" in notice for notice in notices), notices
    protocols = printed(
        kernel,
        "print(json.dumps(sorted(set(client.run("
        "lambda dask_worker: getattr(dask_worker.plugins['carbon_magic'], 'protocol', 1)"
        ").values()))))",
    )
    assert protocols == [2]
    ok(kernel.execute("client.gather(client.map(burn, [0.5, 0.5], pure=False))"))
    assert measured_host(last(kernel))["energy_j"]["cpu"] > 0.8
