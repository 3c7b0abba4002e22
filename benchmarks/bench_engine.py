"""Engine benchmarks: start-up, window cost, idle overhead (tracker alone, with the
extension loaded in an IPython shell, and in a real ipykernel against one without it),
accuracy under a busy GIL, machine-mode accuracy over a fake powercap tree (packages, a
core zone, DRAM, fast wraps), timeline memory. Prints medians and ratios against the
targets; exits 0 either way (the machine is shared and noisy: these are measurements,
not pass/fail tests).

    python benchmarks/bench_engine.py [--vs-codecarbon] [--quick]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from carbon_magic.engine.wake import IDLE_TICK_S

COLD_START = r"""
import time
t0 = time.perf_counter()
import carbon_magic
tracker = carbon_magic.get_tracker()
tracker.start()
t1 = time.perf_counter()
tracker.stop()
print((t1 - t0) * 1000)
"""

IDLE = r"""
import os, sys, time, threading
import carbon_magic
tracker = carbon_magic.get_tracker()
tracker.start()
time.sleep(1.0)
clock = time.pthread_getcpuclockid(tracker.thread.ident)  # the thread's own CPU clock, ns
def thread_cpu_s():
    return time.clock_gettime(clock)
c0, t0 = thread_cpu_s(), time.monotonic()
time.sleep(float(sys.argv[1]))
c1, t1 = thread_cpu_s(), time.monotonic()
print(100 * (c1 - c0) / (t1 - t0))
"""

BUSY = r"""
import json, os, sys, time
import carbon_magic
from carbon_magic.sensors.cputime import read_proc_stat_cpu_s
seconds = float(sys.argv[1])
tracker = carbon_magic.get_tracker()
tracker.start()
time.sleep(0.5)
model = tracker.cpu_power
busy0, t0, times0 = read_proc_stat_cpu_s()[0], time.monotonic(), os.times()
with carbon_magic.measure("spin") as m:
    end = time.monotonic() + seconds
    while time.monotonic() < end:   # one pure-Python thread holding the GIL
        pass
busy1, t1, times1 = read_proc_stat_cpu_s()[0], time.monotonic(), os.times()
proc_s = (times1.user + times1.system) - (times0.user + times0.system)
# The CPU model's own curve over the window's measured busy CPU seconds (steady load).
machine_j = model.energy_j(t1 - t0, busy1 - busy0).central_j
expected_w = machine_j * min(1.0, proc_s / (busy1 - busy0)) / (t1 - t0)
print(json.dumps({"reported_w": m.energy_j["cpu"] / m.duration_s, "expected_w": expected_w,
                  "proc_cpu_s": proc_s, "duration_s": m.duration_s,
                  "idle_w": model.idle_w, "max_w": model.max_w, "n_cpus": model.n_cpus}))
"""

IDLE_LOADED = r"""
import sys, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
if sys.argv[2] == "loaded":
    shell.run_line_magic("load_ext", "carbon_magic")
shell.run_cell("x = 1")  # one (recorded) cell, then nothing runs
time.sleep(2.0)
c0, t0 = time.process_time(), time.monotonic()   # every thread of the process
time.sleep(float(sys.argv[1]))
c1, t1 = time.process_time(), time.monotonic()
print(100 * (c1 - c0) / (t1 - t0))
"""

KERNEL_IDLE = r"""
import json, os, sys, time
from jupyter_client.manager import start_new_kernel

def run_ns(pid):  # CPU time of every thread of the process, ns (schedstat's first field)
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
                total += int(handle.read().split()[0])
        except OSError:  # a thread that ended
            pass
    return total

seconds, pairs = float(sys.argv[1]), int(sys.argv[2])
kernels = []
for label in ("bare", "loaded") * pairs:  # idle side by side, so all see the same machine
    manager, client = start_new_kernel(kernel_name="python3")
    if label == "loaded":
        client.execute_interactive("%load_ext carbon_magic", timeout=60)
    client.execute_interactive("x = 1", timeout=60)
    kernels.append((label, manager, client, manager.provisioner.process.pid))
time.sleep(3)
before = [run_ns(pid) for _, _, _, pid in kernels]
t0 = time.monotonic()
time.sleep(seconds)
elapsed = time.monotonic() - t0
result = {"bare": [], "loaded": []}
for (label, manager, client, pid), start_ns in zip(kernels, before):
    result[label].append(100 * (run_ns(pid) - start_ns) / 1e9 / elapsed)
    client.stop_channels()
    manager.shutdown_kernel(now=True)
print(json.dumps(result))
"""

POWERCAP = r"""
import json, os, sys, threading, time
root, seconds = sys.argv[1], float(sys.argv[2])
RANGE_UJ = 200_000_000  # 200 J: package-0 at 30 W wraps every 6.7 s
ZONES = {  # zone: (name, watts)
    "intel-rapl:0": ("package-0", 30.0), "intel-rapl:0:0": ("core", 22.0),
    "intel-rapl:0:1": ("dram", 5.0), "intel-rapl:1": ("package-1", 20.0),
}
for zone, (name, _) in ZONES.items():
    path = os.path.join(root, zone)
    os.makedirs(path, exist_ok=True)
    open(os.path.join(path, "name"), "w").write(name + "\n")
    open(os.path.join(path, "max_energy_range_uj"), "w").write(f"{RANGE_UJ}\n")
    open(os.path.join(path, "energy_uj"), "w").write("0\n")
t_start = time.monotonic()
stop = threading.Event()
def write():
    while not stop.is_set():
        elapsed = time.monotonic() - t_start
        for zone, (_, watts) in ZONES.items():
            value = round(watts * elapsed * 1e6) % RANGE_UJ
            tmp = os.path.join(root, zone, ".tmp")
            open(tmp, "w").write(f"{value}\n")
            os.replace(tmp, os.path.join(root, zone, "energy_uj"))
        time.sleep(0.005)
writer = threading.Thread(target=write, daemon=True)
writer.start()
import carbon_magic
tracker = carbon_magic.get_tracker()
tracker.settings.update(mode="machine", powercap_root=root, interval=1.0, gpus="none")
tracker.start()
time.sleep(0.3)
with carbon_magic.measure("machine") as m:
    time.sleep(seconds)
stop.set()
print(json.dumps({"cpu_w": m.energy_j["cpu"] / m.duration_s, "ram_w": m.energy_j["ram"] / m.duration_s,
                  "methods": m.methods, "devices": sorted(m.devices)}))
"""

CODECARBON = r"""
import json, logging, sys, time
from codecarbon import OfflineEmissionsTracker
seconds = float(sys.argv[1])
tracker = OfflineEmissionsTracker(country_iso_code="FRA", tracking_mode="process",
                                  measure_power_secs=1, save_to_file=False, log_level="error")
t0 = time.perf_counter()
tracker.start()
start_s = time.perf_counter() - t0
end = time.monotonic() + seconds
while time.monotonic() < end:
    pass
tracker.stop()
data = tracker.final_emissions_data
print(json.dumps({"cpu_w": data.cpu_energy * 3.6e6 / data.duration, "start_s": start_s}))
"""


def _python_env() -> dict[str, str]:
    env = {**os.environ, "CARBON_MAGIC_COUNTRY": "FR"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_python(code: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=_python_env(),
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def run_python_together(runs: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """``run_python`` for each (code, args) at the same time: idle measurements side by
    side see the same machine, and take the wall time of one."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_python_env(),
        )
        for code, args in runs
    ]
    outputs = []
    for proc in procs:
        stdout, _ = proc.communicate()
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, stdout)
        outputs.append(stdout.strip().splitlines()[-1])
    return outputs


def _spread(values: list[float]) -> str:
    """``median (min–max)`` of percentages."""
    return f"{statistics.median(values):.4f} % ({min(values):.4f}–{max(values):.4f})"


def bench_cold_start(runs: int) -> None:
    # Installed packages have their bytecode compiled at install time; compile ours
    # the same way so the figure is an import, not a compilation.
    import carbon_magic

    compileall.compile_dir(os.path.dirname(carbon_magic.__file__), quiet=1)
    run_python(COLD_START)  # warm the file cache
    times = [float(run_python(COLD_START)) for _ in range(runs)]
    print(
        f"cold import + tracker start: median {statistics.median(times):.1f} ms over {runs} runs "
        f"(min {min(times):.1f}, max {max(times):.1f}; target ≤ 100 ms)"
    )


def bench_window(iterations: int) -> None:
    import carbon_magic

    tracker = carbon_magic.get_tracker()
    tracker.settings.update(country="FR")
    tracker.start()
    for _ in range(200):
        tracker.end(tracker.begin("warm-up"))
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        tracker.end(tracker.begin("w"))
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    samples.sort()
    tracker.stop()
    print(
        f"begin+end of a window: median {statistics.median(samples):.3f} ms, "
        f"p95 {samples[int(0.95 * len(samples))]:.3f} ms over {iterations} (target median ≤ 1 ms)"
    )


def bench_idle(seconds: float, repeats: int = 3) -> None:
    """Idle cost over ``seconds`` (a whole number of idle ticks keeps it phase-free),
    ``repeats`` processes of each kind side by side: a VM's noisy neighbours make single
    runs swing by a few milliseconds of CPU."""
    arg = str(seconds)
    kinds = [(IDLE, (arg,)), (IDLE_LOADED, (arg, "loaded")), (IDLE_LOADED, (arg, "bare"))]
    results = [float(v) for v in run_python_together([k for k in kinds for _ in range(repeats)])]
    thread, loaded, bare = (results[i * repeats : (i + 1) * repeats] for i in range(3))
    print(
        f"tracker thread CPU while idle at 1 s interval over {seconds:.0f} s, {repeats} runs: "
        f"{_spread(thread)} of one core (target ≤ 0.01 %; CodeCarbon about 0.30 %)"
    )
    print(
        f"whole process CPU, extension loaded in an IPython shell, no cell running, over "
        f"{seconds:.0f} s: {_spread(loaded)} of one core (target ≤ 0.01 %; the same shell "
        f"without the extension, measured the same way: {_spread(bare)})"
    )
    if not os.path.isdir("/proc/self/task"):
        return
    kernel = json.loads(run_python(KERNEL_IDLE, arg, str(repeats)))
    added = [
        with_ - without for with_, without in zip(kernel["loaded"], kernel["bare"], strict=True)
    ]
    print(
        f"real ipykernel idle over {seconds:.0f} s, every thread, {repeats} pairs: without the "
        f"extension {_spread(kernel['bare'])}, loaded {_spread(kernel['loaded'])} of one core "
        f"→ the extension adds {statistics.median(added):+.4f} % (target ≤ 0.01 %)"
    )


def bench_powercap(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as root:
        result = json.loads(run_python(POWERCAP, root, str(seconds)))
    cpu_error = abs(result["cpu_w"] - 50.0) / 50.0
    ram_error = abs(result["ram_w"] - 5.0) / 5.0
    print(
        f"machine mode over a fake powercap tree (packages 30 W + 20 W, a core zone, DRAM "
        f"5 W, 200 J wraps) for {seconds:.0f} s: CPU {result['cpu_w']:.2f} W "
        f"({100 * cpu_error:.2f} % off), RAM {result['ram_w']:.2f} W ({100 * ram_error:.2f} % "
        f"off) (target ≤ 2 % each); methods {result['methods']}"
    )


def bench_busy(seconds: float, vs_codecarbon: bool) -> None:
    result = json.loads(run_python(BUSY, str(seconds)))
    error = abs(result["reported_w"] - result["expected_w"]) / result["expected_w"]
    print(
        f"process mode, pure-Python thread spinning {seconds:.0f} s: reported CPU "
        f"{result['reported_w']:.2f} W vs model on measured CPU seconds "
        f"{result['expected_w']:.2f} W → {100 * error:.2f} % off (target ≤ 5 %); "
        f"model {result['idle_w']:.2f}–{result['max_w']:.2f} W for {result['n_cpus']:g} CPUs"
    )
    if vs_codecarbon:
        try:
            import codecarbon  # noqa: F401
        except ImportError:
            print("codecarbon is not installed: comparison skipped (pip install codecarbon)")
            return
        cc = json.loads(run_python(CODECARBON, str(seconds)))
        print(
            f"CodeCarbon process mode on the same workload: CPU {cc['cpu_w']:.2f} W "
            f"({cc['cpu_w'] / result['expected_w']:.1f}× the model's value); "
            f"its start() took {cc['start_s'] * 1000:.0f} ms"
        )


def bench_timeline_memory(ticks: int) -> None:
    import psutil

    from carbon_magic.engine.timeline import Timeline

    process = psutil.Process()
    timeline = Timeline()
    rss0 = process.memory_info().rss
    watts = {"cpu": 3.0, "gpu": 0.0, "ram": 1.0}
    for i in range(ticks):
        timeline.add(float(i), 1.0, watts)
    rss1 = process.memory_info().rss
    print(
        f"{ticks:,} ticks into the timeline: RSS growth {(rss1 - rss0) / 1e6:.2f} MB, "
        f"{len(timeline)} points kept (target ≤ 10 MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vs-codecarbon", action="store_true", help="also run CodeCarbon")
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    options = parser.parse_args()
    quick = options.quick
    with tempfile.TemporaryDirectory() as home:
        os.environ.setdefault("CARBON_MAGIC_LEDGER", os.path.join(home, "ledger.sqlite3"))
        bench_cold_start(5 if quick else 11)
        bench_window(2000 if quick else 10000)
        bench_idle(IDLE_TICK_S if quick else 2 * IDLE_TICK_S)
        bench_busy(3 if quick else 10, options.vs_codecarbon)
        bench_powercap(5 if quick else 15)
        bench_timeline_memory(10**6)


if __name__ == "__main__":
    main()
