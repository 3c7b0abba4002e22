import os
import subprocess
import sys
import threading
import time

import pytest

from carbon_magic.engine.tracker import Tracker
from carbon_magic.grid.base import Intensity
from carbon_magic.sensors.cputime import ProcessTreeCounter, read_proc_stat_cpu_s
from carbon_magic.settings import Settings
from carbon_magic.vocabulary import COMPONENTS
from tests.sources import CounterSource, FakeCpuTimes, make_sensors


def make_tracker(**settings):
    tracker = Tracker(Settings(environ={}))
    tracker.settings.update(**{"country": "FR", "powercap_root": "/nonexistent", **settings})
    return tracker


@pytest.fixture
def tracker():
    tracker = make_tracker(interval=0.1)
    yield tracker
    tracker.close()


class FixedProvider:
    name = "fixed"

    def __init__(self, g_per_kwh):
        self.value = g_per_kwh

    def current(self):
        return Intensity(self.value, "fixed", "XX", f"fixed {self.value}", 0.1)

    def forecast(self):
        return []

    def status(self):
        return "fixed"

    def close(self):
        pass


def spin(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def test_measure_fills_the_contract(tracker):
    with tracker.measure("block") as m:
        spin(0.3)
    assert m.name == "block"
    assert m.duration_s == pytest.approx(0.3, abs=0.1)
    assert set(m.energy_j) == set(COMPONENTS)
    assert m.energy_j["cpu"] > 0 and m.energy_j["ram"] > 0 and m.energy_j["gpu"] == 0
    assert m.energy_kwh == pytest.approx(sum(m.energy_j.values()) / 3.6e6)
    low, high = m.emissions_range_g
    assert 0 < low < m.emissions_g < high
    assert m.intensity_source.startswith("static")
    assert "FR" in m.intensity_source
    assert m.emissions_g == pytest.approx(m.energy_kwh * m.intensity_g_per_kwh)
    assert m.methods == {"cpu": "modelled", "ram": "assumed"}
    assert m.mode == "process"
    assert m.embodied_g > 0
    assert m.started_at < m.ended_at


def test_start_stop_idempotent_and_thread_daemon(tracker):
    tracker.start()
    thread = tracker.thread
    tracker.start()
    assert tracker.thread is thread and thread.daemon
    tracker.stop()
    tracker.stop()
    assert not tracker.running and not thread.is_alive()


def test_busy_main_thread_does_not_bend_process_cpu_energy(tracker):
    """Pure Python holding the GIL: energy must equal the model on measured CPU seconds."""
    tracker.start()
    model = tracker.cpu_power
    busy0, proc0, t0 = read_proc_stat_cpu_s()[0], ProcessTreeCounter().cpu_s(), time.monotonic()
    with tracker.measure("spin") as m:
        spin(2.0)
    busy1, proc1, t1 = read_proc_stat_cpu_s()[0], ProcessTreeCounter().cpu_s(), time.monotonic()
    # A steady load: the curve on the window's mean load equals the sum over its ticks.
    machine_j = model.energy_j(t1 - t0, busy1 - busy0).central_j
    expected_j = machine_j * min(1.0, (proc1 - proc0) / (busy1 - busy0))
    assert m.energy_j["cpu"] == pytest.approx(expected_j, rel=0.1)


def test_machine_mode_charges_everything(tracker):
    tracker.settings.update(mode="machine")
    with tracker.measure("m") as machine:
        time.sleep(0.3)
    assert machine.mode == "machine"
    # Idle power over 0.3 s is charged in full in machine mode.
    assert machine.energy_j["cpu"] >= tracker.cpu_power.idle_w * 0.29
    tracker.settings.update(mode="process")
    with tracker.measure("p") as process:
        time.sleep(0.3)
    assert process.energy_j["cpu"] < machine.energy_j["cpu"]


def test_windows_nest_and_overlap(tracker):
    outer = tracker.begin("outer")
    spin(0.2)
    inner = tracker.begin("inner")
    spin(0.2)
    overlapping = tracker.begin("overlap")
    inner_m = tracker.end(inner)
    spin(0.2)
    outer_m = tracker.end(outer)
    overlap_m = tracker.end(overlapping)
    assert 0 < inner_m.energy_j["cpu"] < outer_m.energy_j["cpu"]
    assert inner_m.duration_s < outer_m.duration_s
    assert overlap_m.duration_s > 0
    assert tracker.end(inner) is inner_m  # closing twice returns the same record


def test_child_processes_count_also_after_they_exit():
    counter = ProcessTreeCounter()
    before = counter.cpu_s()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import time\ne=time.process_time()+0.5\nwhile time.process_time()<e: pass",
        ],
        check=True,
    )
    assert counter.cpu_s() - before >= 0.45


def test_running_children_are_seen_after_refresh():
    counter = ProcessTreeCounter()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\ne=time.process_time()+0.6\nwhile time.process_time()<e: pass\ntime.sleep(5)",
        ]
    )
    try:
        time.sleep(0.3)
        counter.refresh_children()
        assert child.pid in counter.pids()
        before = counter.cpu_s()
        time.sleep(0.8)
        assert counter.cpu_s() - before >= 0.2  # the child's CPU time, while it still runs
    finally:
        child.kill()
        child.wait()
    # Reaped: its time moved into our children_* times; the total never goes down.
    counter.refresh_children()
    assert counter.cpu_s() >= before


def tree_cpu_s() -> float:
    """This process's CPU seconds and its reaped children's, as the OS counts them."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def test_a_reaped_child_counts_once_and_later_work_still_counts():
    counter = ProcessTreeCounter()
    # The child burns 0.6 s of CPU, then waits for its stdin to close.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\ne=time.process_time()+0.6\n"
            "while time.process_time()<e: pass\nsys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        while counter.refresh_children() or child.pid not in counter.pids():
            time.sleep(0.05)
        counter_before, os_before = counter.cpu_s(), tree_cpu_s()
        while counter.cpu_s() - counter_before < 0.55:  # its burn, read while it lives
            time.sleep(0.05)
        child.stdin.close()
        child.wait()  # reaped: its time moves into our children times
        # Read before and after the child list is refreshed, as the tracker does.
        after_reap = counter.cpu_s()
        counter.refresh_children()
        after_refresh = counter.cpu_s()
    finally:
        child.kill()
        child.wait()
    os_spent = tree_cpu_s() - os_before
    assert after_reap - counter_before == pytest.approx(os_spent, abs=0.05)
    assert after_refresh - counter_before == pytest.approx(os_spent, abs=0.05)
    # The process's own work after the reap counts in full (no inflated high-water
    # mark to catch up with).
    before, os_before = counter.cpu_s(), tree_cpu_s()
    spin(0.5)
    assert counter.cpu_s() - before == pytest.approx(tree_cpu_s() - os_before, abs=0.05)


def test_a_child_that_leaves_the_tree_alive_keeps_its_time():
    # A daemon: the child starts a grandchild and exits; the grandchild, re-parented
    # outside the tree, burns before and after. What it burnt while ours stays counted.
    counter = ProcessTreeCounter()
    script = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    e = time.process_time() + 0.4\n"
        "    while time.process_time() < e: pass\n"
        "    os.write(1, b'burnt\\n')\n"
        "    time.sleep(1.5)\n"
        "    os._exit(0)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout.readline() == b"burnt\n"
        counter.refresh_children()
        assert len(counter.pids()) == 3  # us, the child, the grandchild
        seen = counter.cpu_s()
        child.stdin.close()
        child.wait()
        counter.refresh_children()  # the grandchild lives on, outside the tree
        assert counter.cpu_s() >= seen
        os_before = tree_cpu_s()
        spin(0.3)
        assert counter.cpu_s() - seen == pytest.approx(tree_cpu_s() - os_before, abs=0.05)
    finally:
        child.kill()
        child.wait()


def test_intensity_change_mid_window_is_integrated():
    tracker = make_tracker(
        interval=60, mode="machine", cpu_idle_w=100, cpu_max_w=100, ram_w_per_gb=0
    )
    tracker.start()
    provider = FixedProvider(100.0)
    tracker.intensity_provider = provider
    tracker.tick_now(slow=True)  # accounts at 100 g/kWh from now
    try:
        window = tracker.begin("w")
        time.sleep(0.3)
        tracker.tick_now(slow=True)  # energy so far at 100 g/kWh
        provider.value = 300.0
        tracker.tick_now(slow=True)  # at 300 g/kWh from now
        time.sleep(0.3)
        m = tracker.end(window)
    finally:
        tracker.close()
    # Half the energy at 100, half at 300: the effective intensity is in between.
    assert 150 < m.intensity_g_per_kwh < 250
    assert m.energy_j["cpu"] == pytest.approx(100 * m.duration_s, rel=0.05)
    assert m.emissions_g == pytest.approx(m.energy_kwh * m.intensity_g_per_kwh)


def injected_tracker(sensors, **settings):
    tracker = Tracker(Settings(environ={}), sensors_factory=lambda _settings: sensors)
    tracker.settings.update(**{"country": "FR", "interval": 60, **settings})
    return tracker


def test_failing_sensor_is_disabled_once_without_raising():
    times = FakeCpuTimes()
    rapl = CounterSource("rapl", "cpu", ("package-0",))
    tracker = injected_tracker(make_sensors(times, cpu=rapl))
    tracker.start()
    try:
        rapl.error = OSError("device vanished")
        with tracker.measure("after failure") as m:
            spin(0.1)
        with tracker.measure("again"):
            pass
    finally:
        tracker.close()
    assert tracker.sensors.cpu is tracker.sensors.cpu_model
    assert m.methods["cpu"] == "modelled"
    assert sum("RAPL failed" in notice for notice in tracker.notices) == 1
    assert rapl.closed
    assert any(s.name == "rapl" and not s.available for s in tracker.sensor_statuses())


def test_listener_errors_never_reach_callers(tracker):
    calls = []

    def bad(reading):
        calls.append(reading)
        raise RuntimeError("boom")

    tracker.add_listener(bad)
    tracker.start()
    time.sleep(0.5)
    assert len(calls) == 1  # removed after the first failure
    assert any("listener failed" in notice for notice in tracker.notices)
    assert tracker.running


def test_live_readings_arrive_while_main_thread_is_busy(tracker):
    readings = []
    tracker.add_listener(readings.append)
    tracker.start()
    spin(1.5)
    # Interval 0.1 s: even on a loaded machine several ticks get the GIL meanwhile.
    assert len(readings) >= 3
    assert readings[-1].watts["cpu"] > 0
    assert len(tracker.timeline) >= 3


def test_reset_keeps_open_windows_whole(tracker):
    tracker.start()
    window = tracker.begin("across reset")
    spin(0.2)
    tracker.reset()
    assert tracker.session().energy_j["cpu"] < 1.0
    spin(0.2)
    m = tracker.end(window)
    assert m.duration_s >= 0.4 - 0.05 and m.energy_j["cpu"] > 0


def test_concurrent_windows_from_threads(tracker):
    results = []

    def work():
        with tracker.measure("t") as m:
            spin(0.2)
        results.append(m)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(r.energy_j["cpu"] > 0 for r in results)


def write_zone(root, zone, name, energy_uj, max_uj=2**32):
    path = root / zone
    path.mkdir(parents=True, exist_ok=True)
    (path / "name").write_text(name + "\n")
    # Replaced whole, as sysfs reads are: the tracker thread may read it meanwhile.
    (path / "energy_uj.tmp").write_text(f"{energy_uj}\n")
    os.replace(path / "energy_uj.tmp", path / "energy_uj")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")


def test_rapl_counters_are_used_when_present(tmp_path):
    write_zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    tracker = make_tracker(interval=60, mode="machine", powercap_root=str(tmp_path))
    tracker.start()
    try:
        write_zone(tmp_path, "intel-rapl:0", "package-0", 2_000_000)  # advancing: not frozen
        time.sleep(0.06)
        window = tracker.begin("rapl")
        write_zone(tmp_path, "intel-rapl:0", "package-0", 7_000_000)  # +5 J
        m = tracker.end(window)
    finally:
        tracker.close()
    assert m.methods["cpu"] == "measured"
    assert m.energy_j["cpu"] == pytest.approx(5.0)
    assert m.devices["package-0"] == pytest.approx(5.0)
