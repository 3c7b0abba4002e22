"""detect() and the tracker over injected and fake-hardware sources."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from carbon_magic.cpu_model.power import ModelledEnergy
from carbon_magic.engine.tracker import Tracker
from carbon_magic.sensors import CoveredByPsys, detect
from carbon_magic.sensors.base import GpuUse
from carbon_magic.sensors.cputime import PsutilProcessTreeCounter, PsutilSystemCpuCounter
from carbon_magic.setting_parsers import gpu_list
from carbon_magic.settings import Settings
from tests.sources import CounterSource, FakeCpuTimes, make_sensors
from tests.test_rapl import FakePowercap, add_mmio_zone


def settings(**values) -> Settings:
    result = Settings(environ={})
    result.update(**{"country": "FR", "interval": 60, **values})
    return result


def laptop_tree(tmp_path: Path) -> FakePowercap:
    """Two packages (one with core), DRAM, psys, and an MMIO copy of package 0."""
    fake = FakePowercap(tmp_path)
    fake.add("intel-rapl:0", "package-0", energy_uj=1_000)
    fake.add("intel-rapl:0:0", "core", energy_uj=1_000)
    fake.add("intel-rapl:0:1", "dram", energy_uj=1_000)
    fake.add("intel-rapl:1", "package-1", energy_uj=1_000)
    fake.add("intel-rapl:2", "psys", energy_uj=1_000)
    add_mmio_zone(fake.root, "intel-rapl-mmio:0", "package-0", 1_000, 2**40)
    return fake


# -- detect ------------------------------------------------------------------------


def test_detect_splits_rapl_into_cpu_and_dram(tmp_path: Path) -> None:
    fake = laptop_tree(tmp_path)
    sensors = detect(settings(powercap_root=str(fake.root), gpus="none"), apple_silicon=False)
    assert sensors.cpu.name == "rapl" and sensors.cpu.component == "cpu"
    assert sensors.ram.name == "rapl" and sensors.ram.component == "ram"
    assert set(sensors.cpu.read_j()) == {"package-0", "package-1"}
    assert set(sensors.ram.read_j()) == {"dram-0"}
    assert sensors.gpus == []
    sensors.close()


def test_detect_with_psys_says_dram_is_inside(tmp_path: Path) -> None:
    fake = laptop_tree(tmp_path)
    sensors = detect(
        settings(powercap_root=str(fake.root), rapl_psys=True, gpus="none"), apple_silicon=False
    )
    assert set(sensors.cpu.read_j()) == {"psys"}
    assert isinstance(sensors.ram, CoveredByPsys)
    assert "inside RAPL psys" in sensors.ram.status().detail
    assert "including DRAM" in sensors.cpu.status().detail


def test_detect_without_counters_uses_the_models(tmp_path: Path) -> None:
    sensors = detect(
        settings(powercap_root=str(tmp_path / "none"), gpus="none"), apple_silicon=False
    )
    assert (sensors.cpu.name, sensors.ram.name) == ("cpu-model", "ram-model")
    assert sensors.cpu is sensors.cpu_model and sensors.ram is sensors.ram_model
    assert any(s.name == "rapl" and not s.available for s in sensors.unused)


def test_psutil_path_forced_on_linux(tmp_path: Path) -> None:
    sensors = detect(
        settings(powercap_root=str(tmp_path / "none"), gpus="none"),
        proc_root=str(tmp_path / "no-proc"),
        apple_silicon=False,
    )
    assert isinstance(sensors.system_cpu.counter, PsutilSystemCpuCounter)
    assert isinstance(sensors.process_tree, PsutilProcessTreeCounter)
    assert "psutil" in sensors.cpu.status().detail
    before = sensors.process_tree.cpu_s()
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert sensors.process_tree.cpu_s() - before >= 0.25
    assert sensors.system_cpu.busy_s() > 0
    assert sensors.process_tree.rss_bytes() > 10**6


def test_tracker_runs_on_the_psutil_path(tmp_path: Path) -> None:
    def factory(values):
        return detect(values, proc_root=str(tmp_path / "no-proc"), apple_silicon=False)

    tracker = Tracker(settings(powercap_root=str(tmp_path / "none"), gpus="none"), factory)
    try:
        with tracker.measure("spin") as m:
            end = time.process_time() + 0.3
            while time.process_time() < end:
                pass
    finally:
        tracker.close()
    assert m.energy_j["cpu"] > 0 and m.energy_j["ram"] > 0
    assert m.methods == {"cpu": "modelled", "ram": "assumed"}


@pytest.mark.parametrize("value", ["intel", "nvidia,cuda", "", "auto,nvidia"])
def test_unknown_gpus_value_names_the_choices_and_changes_nothing(value: str) -> None:
    values = settings()
    with pytest.raises(ValueError, match="auto, none or a comma list of nvidia, amd, apple"):
        values.update(gpus=value, mode="machine")
    assert values.gpus == "auto" and values.mode == "process"


def test_gpus_setting_from_the_environment() -> None:
    assert Settings(environ={"CARBON_MAGIC_GPUS": "AMD, nvidia"}).gpus == "amd,nvidia"
    assert gpu_list("none") == "none"
    with pytest.raises(ValueError, match="CARBON_MAGIC_GPUS"):
        Settings(environ={"CARBON_MAGIC_GPUS": "tpu"})


def test_naming_a_vendor_skips_the_driver_check(tmp_path: Path) -> None:
    from tests.test_amdsmi import FakeAmdGpu, fake_amdsmi

    module = fake_amdsmi([FakeAmdGpu()])
    sensors = detect(
        settings(powercap_root=str(tmp_path / "none"), gpus="amd"),
        modules={"amdsmi": module},
        driver_root=str(tmp_path),  # no /dev/kfd here
        apple_silicon=False,
        environ={},
    )
    assert [gpu.name for gpu in sensors.gpus] == ["amdsmi"]
    assert sensors.gpu_names() == {"amd:0": "AMD Instinct MI300X"}
    auto = detect(
        settings(powercap_root=str(tmp_path / "none")),
        modules={},
        driver_root=str(tmp_path),
        apple_silicon=False,
    )
    assert auto.gpus == []
    assert [s.name for s in auto.unused if s.component == "gpu"] == ["nvml"]


# -- the tracker over injected sources --------------------------------------------


def injected(sensors, **values) -> Tracker:
    return Tracker(settings(**values), sensors_factory=lambda _settings: sensors)


def test_machine_mode_counts_dram_once_over_a_fake_powercap(tmp_path: Path) -> None:
    """package-0 30 J, package-1 20 J (with a core zone inside), DRAM 5 J."""
    fake = laptop_tree(tmp_path)
    tracker = Tracker(
        settings(powercap_root=str(fake.root), mode="machine", gpus="none"),
        lambda values: detect(values, apple_silicon=False),
    )
    tracker.start()
    try:
        time.sleep(0.06)  # past the freeze check; counters move below
        for zone in ("intel-rapl:0", "intel-rapl:1", "intel-rapl:0:1"):
            fake.set(zone, 2_000)
        window = tracker.begin("w")
        fake.set("intel-rapl:0", 2_000 + 30_000_000)
        fake.set("intel-rapl:0:0", 2_000 + 25_000_000)  # core: inside package 0
        fake.set("intel-rapl:1", 2_000 + 20_000_000)
        fake.set("intel-rapl:0:1", 2_000 + 5_000_000)
        # The MMIO copy of package 0 moves too: it must not be counted again.
        (fake.root / "intel-rapl-mmio:0" / "energy_uj").write_text(f"{1_000 + 30_000_000}\n")
        m = tracker.end(window)
    finally:
        tracker.close()
    assert m.energy_j["cpu"] == pytest.approx(50.0)
    assert m.energy_j["ram"] == pytest.approx(5.0)
    assert m.methods == {"cpu": "measured", "ram": "measured"}
    assert m.devices == pytest.approx({"package-0": 30.0, "package-1": 20.0, "dram-0": 5.0})


def test_process_mode_charges_measured_dram_by_cpu_share() -> None:
    times = FakeCpuTimes()
    rapl = CounterSource("rapl", "cpu", ("package-0",))
    dram = CounterSource("rapl", "ram", ("dram-0",))
    tracker = injected(make_sensors(times, cpu=rapl, ram=dram))
    tracker.start()
    try:
        window = tracker.begin("w")
        times.busy += 4.0
        times.process += 1.0  # a quarter of the busy time
        rapl.add("package-0", 40.0)
        dram.add("dram-0", 8.0)
        m = tracker.end(window)
    finally:
        tracker.close()
    assert m.energy_j["cpu"] == pytest.approx(10.0)
    assert m.energy_j["ram"] == pytest.approx(2.0)
    assert m.devices == pytest.approx({"package-0": 10.0, "dram-0": 2.0})


class SkewedCurve:
    """A CPU model with a deliberately lopsided range: 10 J per tick, 7–20 J."""

    idle_w, max_w, n_cpus, source = 1.0, 2.0, 1, "skewed"

    def energy_j(self, duration_s: float, busy_cpu_s: float) -> ModelledEnergy:
        return ModelledEnergy(10.0, 7.0, 20.0)


def test_modelled_cpu_range_comes_from_the_model() -> None:
    from carbon_magic.sensors.models import ModelledCpu

    times = FakeCpuTimes()
    sensors = make_sensors(times, w_per_gb=0.0)
    sensors.cpu = sensors.cpu_model = ModelledCpu(SkewedCurve(), times)
    tracker = injected(sensors, mode="machine", pue=1.0)
    tracker.start()
    try:
        window = tracker.begin("w")
        m = tracker.end(window)
    finally:
        tracker.close()
    # Each read is one model tick (the thread may add one between the edges).
    ticks = m.energy_j["cpu"] / 10.0
    assert ticks >= 1 and ticks == round(ticks)
    low, high = m.energy_range_kwh
    assert (low * 3.6e6, high * 3.6e6) == pytest.approx((7.0 * ticks, 20.0 * ticks))


def test_shared_gpu_charges_the_kernel_its_sm_share_above_idle() -> None:
    times = FakeCpuTimes()
    gpu = CounterSource("nvml", "gpu", ("nvidia:0", "nvidia:1"), vendor="nvidia")
    gpu.use = {"nvidia:0": GpuUse(0.25, True, "shared")}
    tracker = injected(make_sensors(times, gpus=[gpu]))
    tracker.start()
    try:
        tracker.tick_now(slow=True)  # learns how the kernel uses the GPUs
        time.sleep(0.25)
        gpu.add("nvidia:0", 0.25 * 40)  # an idle-looking tick: the idle estimate
        gpu.add("nvidia:1", 50.0)
        tracker.tick_now(slow=False)
        window = tracker.begin("w")
        time.sleep(0.3)
        gpu.add("nvidia:0", 100.0)
        gpu.add("nvidia:1", 100.0)
        m = tracker.end(window)
    finally:
        tracker.close()
    # Idle ≈ 40 W (the quiet tick); the kernel gets a quarter of the energy above it.
    expected = 0.25 * (100.0 - 40.0 * m.duration_s)
    assert m.energy_j["gpu"] == pytest.approx(expected, rel=0.1)
    assert m.devices.get("nvidia:1", 0.0) == 0.0  # not the kernel's
    assert tracker.hardware()["gpus"] == {"nvidia:0": "nvidia fake", "nvidia:1": "nvidia fake"}


def test_failing_gpu_is_dropped_with_one_line() -> None:
    times = FakeCpuTimes()
    gpu = CounterSource("amdsmi", "gpu", ("amd:0",), vendor="amd")
    tracker = injected(make_sensors(times, gpus=[gpu]))
    tracker.start()
    try:
        gpu.error = RuntimeError("amdsmi read failed on amd:0: GPU hung")
        with tracker.measure("w") as m:
            pass
    finally:
        tracker.close()
    assert tracker.components() == ["cpu", "ram"]
    assert "gpu" not in m.methods
    assert sum("amdsmi failed" in n for n in tracker.notices) == 1


def test_idle_tracker_sleeps_until_watched() -> None:
    from carbon_magic.engine.wake import IDLE_TICK_S

    times = FakeCpuTimes()
    tracker = injected(make_sensors(times), interval=0.5)
    assert tracker.next_sleep_s() == IDLE_TICK_S
    window = tracker.begin("w")
    assert tracker.next_sleep_s() == 0.5
    tracker.end(window)
    assert tracker.next_sleep_s() == 0.5  # one more tick shows the window ended
    time.sleep(0.8)  # the interval cadence holds for 1.5 intervals after a window
    assert tracker.next_sleep_s() == IDLE_TICK_S
    tracker.add_listener(lambda reading: None, watching=False)
    assert tracker.next_sleep_s() == IDLE_TICK_S
    panel = lambda reading: None  # noqa: E731
    tracker.add_listener(panel)
    assert tracker.next_sleep_s() == 0.5
    tracker.remove_listener(panel)
    assert tracker.next_sleep_s() == IDLE_TICK_S
    tracker.close()


def test_the_first_tick_after_a_window_comes_half_a_second_later_not_an_interval() -> None:
    """The heartbeat that shows a cell has ended (and the idle power since) is written
    by the first tick after its window: half a second later, even at a 3 s interval."""
    from carbon_magic.engine.wake import AFTER_WINDOW_TICK_S

    times = FakeCpuTimes()
    tracker = injected(make_sensors(times), interval=3.0)
    ticks: list[float] = []
    tracker.add_listener(lambda reading: ticks.append(time.monotonic()), watching=False)
    tracker.start()
    try:
        window = tracker.begin("w")
        time.sleep(0.2)
        tracker.end(window)
        closed = time.monotonic()
        deadline = closed + 2.5
        while time.monotonic() < deadline and not [t for t in ticks if t > closed]:
            time.sleep(0.02)
    finally:
        tracker.close()
    after = [t - closed for t in ticks if t > closed]
    assert after, "no tick within 2.5 s of the window's end"
    assert AFTER_WINDOW_TICK_S - 0.05 <= after[0] < AFTER_WINDOW_TICK_S + 0.5, after


def test_heartbeat_listener_hears_a_window_open_and_close_within_the_interval() -> None:
    times = FakeCpuTimes()
    tracker = injected(make_sensors(times), interval=0.3)
    ticks: list[float] = []
    tracker.add_listener(lambda reading: ticks.append(time.monotonic()), watching=False)
    tracker.start()
    try:
        time.sleep(0.5)
        idle_ticks = len(ticks)
        started = time.monotonic()
        window = tracker.begin("cell")
        time.sleep(1.0)
        assert any(started < t < started + 0.3 + 0.5 for t in ticks)  # generous margin
        ended = time.monotonic()
        tracker.end(window)
        time.sleep(1.0)
        assert any(ended < t < ended + 0.3 + 0.5 for t in ticks)
        after = len(ticks)
        time.sleep(1.0)
        assert len(ticks) == after  # idle again: no tick for IDLE_TICK_S
    finally:
        tracker.close()
    assert idle_ticks <= 1


def test_device_keys_name_their_vendor_and_old_keys_still_read() -> None:
    from carbon_magic.engine.measurement import device_vendor

    assert device_vendor("nvidia:0") == "nvidia"
    assert device_vendor("amd:3") == "amd"
    assert device_vendor("apple:ane") == "apple"
    assert device_vendor("gpu0") == "nvidia"  # ledgers from before vendors were told apart
    assert device_vendor("package-0") is None and device_vendor("dram-0") is None
    assert device_vendor("gpux") is None


def test_a_named_vendor_whose_library_fails_is_one_status_line_and_a_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.test_amdsmi import AmdSmiLibraryException, FakeAmdGpu, fake_amdsmi

    broken = fake_amdsmi([FakeAmdGpu()], init_error=AmdSmiLibraryException(8, "DRIVER"))
    with caplog.at_level("WARNING", logger="carbon_magic"):
        sensors = detect(
            settings(powercap_root=str(tmp_path / "none"), gpus="amd"),
            modules={"amdsmi": broken},
            apple_silicon=False,
            environ={},
        )
    assert sensors.gpus == []
    (line,) = [s for s in sensors.statuses() if s.name == "amdsmi"]
    assert not line.available and "initialisation failed" in line.detail
    assert sum("amd GPUs not measured" in r.getMessage() for r in caplog.records) == 1


def test_session_is_current_while_the_idle_thread_sleeps() -> None:
    times = FakeCpuTimes()
    rapl = CounterSource("rapl", "cpu", ("package-0",))
    tracker = injected(make_sensors(times, cpu=rapl), mode="machine")
    tracker.start()
    try:
        before = tracker.session().energy_j["cpu"]
        rapl.add("package-0", 12.0)
        after = tracker.session().energy_j["cpu"]  # no tick in between: read at the call
    finally:
        tracker.close()
    assert after - before == pytest.approx(12.0)
