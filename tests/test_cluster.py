"""Cells that fan out to real Dask clusters, in real kernels: nothing counted twice."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from carbon_magic.cpu_model.power import visible_cpu_count

from .dask_procs import BLOCK_IMPORT, DaskProcesses, PoweredTree, base_env
from .kernels import Kernel

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(300)]

LAST = (
    "import json as _json\nfrom carbon_magic.kernel.magics import current_magics as _cm\n"
    "print(_json.dumps(_cm().session.last.to_dict()))"
)
# Burns CPU seconds of its own thread (not wall seconds: the test machine is shared).
BURN = (
    "import time\n"
    "def burn(seconds):\n"
    "    end, give_up = time.thread_time() + seconds, time.time() + 20 * seconds\n"
    "    while time.thread_time() < end and time.time() < give_up:\n"
    "        pass\n"
    "    return seconds\n"
)
READY = "from carbon_magic.kernel.magics import current_magics\nassert current_magics().session.cluster_reader.wait_ready(60)"


def calibrated_model() -> dict[str, str]:
    """A CPU model of exactly 1 J per busy CPU-second (0 W idle), no RAPL: in process
    mode a window's CPU joules then equal its processes' CPU seconds."""
    return {
        "CARBON_MAGIC_CPU_IDLE_W": "0",
        "CARBON_MAGIC_CPU_MAX_W": str(visible_cpu_count()),
        "CARBON_MAGIC_POWERCAP_ROOT": "/nonexistent/powercap",
    }


def ok(execution):
    assert execution.reply["content"]["status"] == "ok", execution.text
    return execution


def last(kernel) -> dict:
    return json.loads(ok(kernel.execute(LAST)).text.strip().splitlines()[-1])


def cpu_s(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live descendants."""
    proc = psutil.Process(pid)
    times = proc.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in proc.children(recursive=True):
        try:
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
        except psutil.Error:
            pass
    return total


@pytest.fixture
def dask_procs(tmp_path):
    procs = DaskProcesses(tmp_path)
    yield procs
    procs.stop()


@pytest.fixture
def kernels():
    started = []

    def start(ledger, env):
        kernel = Kernel(ledger, {"CARBON_MAGIC_INTERVAL": "0.5", **env})
        started.append(kernel)
        return kernel

    yield start
    for kernel in started:
        kernel.shutdown()


def connect(kernel, address: str, n_workers: int) -> str:
    """A client made after %load_ext, as a notebook does; wait for its plugins.
    Returns what the cells printed."""
    ok(kernel.execute(BURN))
    made = ok(
        kernel.execute(
            f"from distributed import Client\nclient = Client({address!r})\n"
            f"client.wait_for_workers({n_workers}, timeout=60)"
        )
    )
    return made.text + "\n" + ok(kernel.execute(READY)).text


def test_machine_mode_counts_each_host_once(tmp_path, dask_procs, kernels):
    """Kernel host A (20 W) with one worker sharing its powercap tree; host B (50 W)
    with two workers, told apart by boot id only. The cell is A + B, each once."""
    host_a = PoweredTree(tmp_path / "a", 20.0)
    host_b = PoweredTree(tmp_path / "b", 50.0)
    boot_b = tmp_path / "boot_id_b"
    boot_b.write_text("b0b0b0b0-another-machine\n")
    try:
        address = dask_procs.start_scheduler()
        dask_procs.start_worker("a1", base_env(CARBON_MAGIC_POWERCAP_ROOT=host_a.root))
        for name in ("b1", "b2"):
            dask_procs.start_worker(
                name,
                base_env(
                    CARBON_MAGIC_POWERCAP_ROOT=host_b.root,
                    CARBON_MAGIC_BOOT_ID_PATH=str(boot_b),
                ),
            )
        kernel = kernels(
            str(tmp_path / "ledger.sqlite3"),
            {"CARBON_MAGIC_MODE": "machine", "CARBON_MAGIC_POWERCAP_ROOT": host_a.root},
        )
        ok(kernel.execute("%load_ext carbon_magic"))
        connect(kernel, address, 3)
        ok(kernel.execute("time.sleep(3)"))
        m = last(kernel)
    finally:
        host_a.stop()
        host_b.stop()
    cluster = m["cluster"]
    assert cluster is not None, dask_procs.logs_text()
    assert cluster["missing_workers"] == 0
    hosts = {
        entry["name"] if entry["in_kernel"] == 0 else "A": entry
        for entry in cluster["hosts"].values()
    }
    assert len(cluster["hosts"]) == 2
    a = hosts["A"]
    assert (a["workers"], a["in_kernel"], a["energy_j"]["cpu"]) == (1, 1, 0.0)
    (b,) = [e for e in cluster["hosts"].values() if e["in_kernel"] == 0]
    assert b["workers"] == 2
    assert b["methods"]["cpu"] == "measured"
    duration = m["duration_s"]
    assert b["energy_j"]["cpu"] == pytest.approx(50.0 * duration, rel=0.1)
    kernel_cpu = m["energy_j"]["cpu"] - b["energy_j"]["cpu"]
    assert kernel_cpu == pytest.approx(20.0 * duration, rel=0.1)
    assert m["energy_j"]["cpu"] == pytest.approx(70.0 * duration, rel=0.1)  # not 20+50+50+20
    assert m["methods"]["cpu"] == "measured"
    assert m["energy_kwh"] == pytest.approx(
        m["energy_j"]["cpu"] / 3.6e6 + m["energy_j"]["ram"] / 3.6e6, rel=0.01
    )


def test_process_mode_matches_cpu_seconds_of_kernel_and_workers(tmp_path, dask_procs, kernels):
    """Two workers on this host but not the kernel's children: each process adds its own
    CPU time, once. Checked against CPU seconds read independently with psutil."""
    env = calibrated_model()
    address = dask_procs.start_scheduler()
    for name in ("w1", "w2"):
        dask_procs.start_worker(name, base_env(**env))
    kernel = kernels(str(tmp_path / "ledger.sqlite3"), env)
    ok(kernel.execute("%load_ext carbon_magic"))
    connect(kernel, address, 2)
    kernel_pid = int(ok(kernel.execute("import os\nos.getpid()")).result)
    pids = json.loads(
        ok(kernel.execute("import json\njson.dumps(client.run(os.getpid))")).result[1:-1]
    )
    workers = sorted(pids)
    all_pids = [kernel_pid, *pids.values()]
    before = sum(cpu_s(pid) for pid in all_pids)
    ok(
        kernel.execute(
            f"futures = [client.submit(burn, 2.0, pure=False, workers=[a]) for a in {workers!r}]\n"
            "burn(1.0)\n"
            "client.gather(futures)"
        )
    )
    measured = sum(cpu_s(pid) for pid in all_pids) - before
    m = last(kernel)
    cluster = m["cluster"]
    assert cluster["missing_workers"] == 0
    (host,) = cluster["hosts"].values()
    assert (host["workers"], host["in_kernel"]) == (2, 0)
    assert host["methods"]["cpu"] == "modelled"
    assert measured > 2.0  # the workers really worked
    print("process mode: cell", m["energy_j"]["cpu"], "J; psutil", measured, "CPU s")
    assert m["energy_j"]["cpu"] == pytest.approx(measured, rel=0.05)
    assert host["energy_j"]["cpu"] > 0.5 * (m["energy_j"]["cpu"])
    # The ledger keeps the per-host figures of the cell.
    from carbon_magic import ledger as ledger_module

    ledger = str(tmp_path / "ledger.sqlite3")
    row = [
        r for r in ledger_module.read_cells(ledger) if (r["source"] or "").startswith("futures")
    ][-1]
    stored = ledger_module.read_cell_clusters(ledger, [row["id"]])[row["id"]]
    assert stored["hosts"] == cluster["hosts"]
    assert row["cluster_workers"] == 2 and row["cpu_j"] == pytest.approx(m["energy_j"]["cpu"])
    # Once the client is closed, cells have no cluster part again.
    ok(kernel.execute("client.close()"))
    ok(kernel.execute("y = 2"))
    assert last(kernel)["cluster"] is None


def test_local_cluster_is_not_counted_twice(tmp_path, kernels):
    """A LocalCluster's worker processes are the kernel's children: with the plugin on,
    the figures are those with it off (both match the tree's CPU seconds)."""
    kernel = kernels(str(tmp_path / "ledger.sqlite3"), calibrated_model())
    ok(kernel.execute(BURN))
    ok(
        kernel.execute(
            "from distributed import Client, LocalCluster\n"
            "cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,"
            " dashboard_address=None)\n"
            "client = Client(cluster)\n"
            "client.wait_for_workers(2, timeout=60)"
        )
    )
    ok(kernel.execute("%load_ext carbon_magic"))  # the client came first
    ok(kernel.execute(READY))
    ok(kernel.execute("time.sleep(6)"))  # the tracker's child list is refreshed every 5 s
    kernel_pid = int(ok(kernel.execute("import os\nos.getpid()")).result)
    work = (
        "futures = [client.submit(burn, 1.5, pure=False, workers=[a]) "
        "for a in sorted(client.scheduler_info(n_workers=-1)['workers'])]\n"
        "burn(0.5)\nclient.gather(futures)"
    )
    results = {}
    for setting in ("none", "auto"):
        ok(kernel.execute(f"%carbon config cluster={setting}"))
        before = cpu_s(kernel_pid)
        ok(kernel.execute(work))
        measured = cpu_s(kernel_pid) - before
        results[setting] = (last(kernel), measured)
    off, off_measured = results["none"]
    on, on_measured = results["auto"]
    assert off["cluster"] is None
    (host,) = on["cluster"]["hosts"].values()
    assert (host["workers"], host["in_kernel"]) == (2, 2)
    assert host["energy_j"] == {"cpu": 0.0, "gpu": 0.0, "ram": 0.0}
    assert on_measured > 3.0 and off_measured > 3.0
    print("off", off["energy_j"]["cpu"], off_measured, "on", on["energy_j"]["cpu"], on_measured)
    assert off["energy_j"]["cpu"] == pytest.approx(off_measured, rel=0.05)
    assert on["energy_j"]["cpu"] == pytest.approx(on_measured, rel=0.05)
    # Machine mode: the LocalCluster runs on the kernel's machine, already counted.
    ok(kernel.execute("%carbon config mode=machine"))
    ok(kernel.execute("burn(0.2)"))
    machine = last(kernel)
    (host,) = machine["cluster"]["hosts"].values()
    assert (host["workers"], host["in_kernel"], machine["cluster"]["missing_workers"]) == (2, 2, 0)


def test_killed_or_stopped_worker_never_holds_up_or_breaks_a_cell(tmp_path, dask_procs, kernels):
    address = dask_procs.start_scheduler()
    env = calibrated_model()
    survivor = dask_procs.start_worker("w1", base_env(**env))
    dask_procs.start_worker("w2", base_env(**env))
    ledger = str(tmp_path / "ledger.sqlite3")
    kernel = kernels(ledger, env)
    ok(kernel.execute("%load_ext carbon_magic"))
    connect(kernel, address, 2)
    ok(kernel.execute("import os, signal\npids = client.run(os.getpid)"))
    started = time.monotonic()
    ok(
        kernel.execute(
            f"victim = [a for a, p in pids.items() if p != {survivor.pid}][0]\n"
            "keep = [a for a in pids if a != victim][0]\n"
            "f_keep = client.submit(burn, 2.0, pure=False, workers=[keep])\n"
            "f_gone = client.submit(burn, 30.0, pure=False, workers=[victim])\n"
            "time.sleep(0.5)\n"
            "os.kill(pids[victim], signal.SIGKILL)\n"
            "f_keep.result()"
        )
    )
    elapsed = time.monotonic() - started
    m = last(kernel)
    assert m["status"] == "ok"
    assert m["cluster"]["missing_workers"] == 1
    (host,) = m["cluster"]["hosts"].values()
    assert host["workers"] == 1 and host["energy_j"]["cpu"] > 1.0
    # What the cell took beyond its own run: the edges (at most a second each) and the
    # kernel's messaging, with slack for a busy machine.
    assert elapsed - m["duration_s"] < 2.5

    # A worker that joins later gets the plugin from the scheduler and is measured.
    dask_procs.start_worker("w3", base_env(**env))
    ok(kernel.execute("client.wait_for_workers(2, timeout=60)"))
    ok(kernel.execute("time.sleep(1)"))  # its first cell edge may come before its plugin
    ok(kernel.execute("client.gather(client.map(burn, [0.3, 0.3], pure=False))"))
    m = last(kernel)
    (host,) = m["cluster"]["hosts"].values()
    assert (host["workers"], m["cluster"]["missing_workers"]) == (2, 0)

    # A worker that stops answering (SIGSTOP): each edge waits at most a second.
    os.kill(survivor.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        ok(kernel.execute("x = 1"))
        stalled = time.monotonic() - started
        m = last(kernel)
    finally:
        os.kill(survivor.pid, signal.SIGCONT)
    assert m["source"] == "x = 1" and m["status"] == "ok"
    assert m["cluster"]["missing_workers"] >= 1
    assert stalled < 2 * 1.0 + 2.0

    # A scheduler that stops answering: the edge gives up after a second, then reading
    # pauses, so the next cells are not held up at all.
    scheduler = dask_procs.procs[0]
    os.kill(scheduler.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        ok(kernel.execute("z = 3"))
        first = time.monotonic() - started
        started = time.monotonic()
        ok(kernel.execute("z = 4"))
        second = time.monotonic() - started
    finally:
        os.kill(scheduler.pid, signal.SIGCONT)
    assert first < 1.0 + 2.0 and second < 1.0
    m = last(kernel)
    assert m["source"] == "z = 4" and m["cluster"]["missing_workers"] == 2
    from carbon_magic import ledger as ledger_module

    sources = [row["source"] for row in ledger_module.read_cells(ledger)]
    assert "x = 1" in sources and any(s and s.startswith("victim = ") for s in sources)


def test_worker_without_carbon_magic_is_named_once(tmp_path, dask_procs, kernels):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_IMPORT)
    address = dask_procs.start_scheduler()
    env = calibrated_model()
    dask_procs.start_worker("plain", base_env(**env))
    blocked_env = base_env(**env)
    blocked_env["PYTHONPATH"] = os.pathsep.join([str(blocker), blocked_env["PYTHONPATH"]])
    dask_procs.start_worker("bare", blocked_env)
    kernel = kernels(str(tmp_path / "ledger.sqlite3"), env)
    ok(kernel.execute("%load_ext carbon_magic"))
    printed = connect(kernel, address, 2)
    names = json.loads(
        ok(
            kernel.execute(
                "import json\n"
                "json.dumps({w['name']: a for a, w in "
                "client.scheduler_info(n_workers=-1)['workers'].items()})"
            )
        ).result[1:-1]
    )
    # The worker without carbon_magic really lacks it, and still works.
    probe = ok(
        kernel.execute(
            "def _has_cm():\n"
            "    import importlib.util\n"
            "    try:\n"
            "        return importlib.util.find_spec('carbon_magic') is not None\n"
            "    except ImportError:\n"
            "        return False\n"
            f"client.submit(_has_cm, workers=[{names['bare']!r}], pure=False).result()"
        )
    )
    assert probe.result == "False"
    first = ok(kernel.execute("client.submit(burn, 0.5, pure=False).result()"))
    second = ok(kernel.execute("client.submit(burn, 0.5, pure=False).result()"))
    everything = "\n".join([printed, *(e.text for e in (probe, first, second))])
    assert everything.count("could not be measured") == 1, everything
    assert names["bare"] in everything and names["plain"] not in everything
    assert "No module named 'carbon_magic'" in everything
    m = last(kernel)
    assert m["cluster"]["missing_workers"] == 1
    (host,) = m["cluster"]["hosts"].values()
    assert host["workers"] == 1
    # A %%carbon cell shows the kernel and the cluster apart.
    panel = ok(kernel.execute("%%carbon --quiet\nclient.submit(burn, 0.3, pure=False).result()"))
    assert "· cluster " in panel.text and "1 worker on 1 host" in panel.text, panel.text
    assert "1 worker not measured" in panel.text
    assert "could not be measured" not in panel.text  # said once, already
    # Unloading the extension takes the plugins off the cluster again.
    ok(kernel.execute("%unload_ext carbon_magic"))
    gone = ok(
        kernel.execute(
            "def _plugged(dask_worker):\n"
            "    return 'carbon_magic' in dask_worker.plugins\n"
            "for _ in range(100):\n"
            "    if not any(client.run(_plugged).values()):\n"
            "        break\n"
            "    time.sleep(0.1)\n"
            "any(client.run(_plugged).values())"
        )
    )
    assert gone.result == "False"


def test_a_budget_stops_a_cell_whose_work_runs_on_the_workers(tmp_path, dask_procs, kernels):
    """The live figures include the workers' part so far: an energy budget stops a
    cell that only waits for a task burning on a worker, well before it would end."""
    env = calibrated_model()
    address = dask_procs.start_scheduler()
    dask_procs.start_worker("w1", base_env(**env))
    kernel = kernels(str(tmp_path / "ledger.sqlite3"), env)
    ok(kernel.execute("%load_ext carbon_magic"))
    connect(kernel, address, 1)
    ok(kernel.execute("client.submit(burn, 0.1, pure=False).result()"))
    started = time.monotonic()
    run = kernel.execute(
        "%%carbon --budget 1.5J --on-exceed stop\nclient.submit(burn, 40.0, pure=False).result()",
        timeout=120,
    )
    elapsed = time.monotonic() - started
    m = last(kernel)
    assert m["status"] == "stopped by budget", run.text
    assert elapsed < 30
    (host,) = m["cluster"]["hosts"].values()
    assert host["workers"] == 1
    # Most of what stopped it ran on the worker, not in the waiting kernel.
    assert m["cluster"]["energy_kwh"] > 0.5 * m["energy_kwh"]
