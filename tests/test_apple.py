"""Apple Silicon sources over a stand-in ``zeus_apple_silicon`` built from its documented
API: ``AppleEnergyMonitor().get_cumulative_energy()`` -> ``AppleEnergyMetrics`` (mJ)."""

from __future__ import annotations

import types
from dataclasses import dataclass

import pytest

from carbon_magic.engine.measurement import is_gpu_key
from carbon_magic.engine.tracker import Tracker
from carbon_magic.sensors import detect
from carbon_magic.sensors.apple import AppleSoc, AppleSource, is_apple_silicon
from carbon_magic.settings import Settings


@dataclass
class AppleEnergyMetrics:
    cpu_total_mj: int | None = 0
    efficiency_cores_mj: list[int] | None = None
    performance_cores_mj: list[int] | None = None
    efficiency_core_manager_mj: int | None = None
    performance_core_manager_mj: int | None = None
    dram_mj: int | None = 0
    gpu_mj: int | None = 0
    gpu_sram_mj: int | None = 0
    ane_mj: int | None = 0


class Chip:
    """Energy so far per part (mJ), advanced by the test at known powers."""

    def __init__(self, **parts: int | None) -> None:
        self.metrics = AppleEnergyMetrics(**parts)
        self.fail = False
        self.reads = 0

    def run(self, seconds: float, **watts: float) -> None:
        for part, w in watts.items():
            setattr(self.metrics, part, getattr(self.metrics, part) + round(w * seconds * 1000))


def stand_in(chip: Chip) -> types.ModuleType:
    mod = types.ModuleType("zeus_apple_silicon")

    class AppleEnergyMonitor:
        def get_cumulative_energy(self) -> AppleEnergyMetrics:
            if chip.fail:
                raise RuntimeError("IOReport subscription failed")
            chip.reads += 1
            return AppleEnergyMetrics(**vars(chip.metrics))

        def begin_window(self, key: str) -> None:
            pass

        def end_window(self, key: str) -> AppleEnergyMetrics:
            return self.get_cumulative_energy()

    mod.AppleEnergyMonitor = AppleEnergyMonitor
    mod.AppleEnergyMetrics = AppleEnergyMetrics
    return mod


def test_parts_at_known_powers() -> None:
    chip = Chip()
    soc = AppleSoc(stand_in(chip))
    cpu, ram, gpu = (AppleSource(soc, c) for c in ("cpu", "ram", "gpu"))
    assert cpu.available and ram.available and gpu.available
    chip.run(10, cpu_total_mj=8, dram_mj=1.5, gpu_mj=12, gpu_sram_mj=0.5, ane_mj=2)
    soc.expire_sample()  # the next read is a new sample
    assert cpu.read_j() == pytest.approx({"apple:cpu": 80.0})
    assert ram.read_j() == pytest.approx({"apple:dram": 15.0})
    assert gpu.read_j() == pytest.approx({"apple:gpu": 125.0, "apple:ane": 20.0})
    assert gpu.gpu_names()["apple:ane"].endswith("Neural Engine")
    assert gpu.use_by({1}) and all(u.sm_share is None for u in gpu.use_by({1}).values())


def test_the_neural_engine_is_an_accelerator_but_not_a_gpu() -> None:
    gpu = AppleSource(AppleSoc(stand_in(Chip())), "gpu")
    assert set(gpu.gpu_names()) == {"apple:gpu", "apple:ane"}
    assert [key for key in gpu.gpu_names() if is_gpu_key(key)] == ["apple:gpu"]
    assert is_gpu_key("nvidia:0") and is_gpu_key("amd:1") and is_gpu_key("gpu0")


def test_one_sample_serves_the_three_views() -> None:
    chip = Chip()
    soc = AppleSoc(stand_in(chip))
    sources = [AppleSource(soc, c) for c in ("cpu", "ram", "gpu")]
    soc.expire_sample()
    reads = chip.reads
    for source in sources:
        source.read_j()
    assert chip.reads == reads + 1


def test_chip_without_ane_and_a_restarted_counter() -> None:
    chip = Chip(ane_mj=None)
    soc = AppleSoc(stand_in(chip))
    assert soc.parts("gpu") == ["apple:gpu"]
    chip.run(1, cpu_total_mj=5)
    soc.expire_sample()
    assert soc.read_j()["apple:cpu"] == pytest.approx(5.0)
    chip.metrics.cpu_total_mj = 1000  # went down: restarted, counted from zero
    soc.expire_sample()
    assert soc.read_j()["apple:cpu"] == pytest.approx(6.0)


def test_library_missing_or_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "zeus_apple_silicon", None)
    missing = AppleSoc()
    assert not missing.available and "carbon_magic[apple]" in missing.reason
    chip = Chip()
    chip.fail = True
    broken = AppleSoc(stand_in(chip))
    assert not broken.available and "IOReport" in broken.reason
    chip = Chip()
    soc = AppleSoc(stand_in(chip))
    chip.fail = True
    soc.expire_sample()
    with pytest.raises(RuntimeError, match="read failed"):
        soc.read_j()


def test_platform_check() -> None:
    assert is_apple_silicon("darwin", "arm64")
    assert not is_apple_silicon("darwin", "x86_64") and not is_apple_silicon("linux", "arm64")


def test_tracker_on_apple_silicon_measures_cpu_gpu_and_dram(tmp_path) -> None:
    chip = Chip()
    module = stand_in(chip)
    settings = Settings(environ={})
    settings.update(country="FR", interval=60, mode="machine", gpus="apple")

    def factory(values):
        return detect(
            values,
            modules={"zeus_apple_silicon": module},
            proc_root=str(tmp_path),
            apple_silicon=True,
        )

    tracker = Tracker(settings, factory)
    tracker.start()
    try:
        window = tracker.begin("w")
        chip.run(2, cpu_total_mj=10, dram_mj=2, gpu_mj=30, ane_mj=1)
        tracker.sensors.cpu.soc.expire_sample()
        m = tracker.end(window)
    finally:
        tracker.close()
    assert m.methods == {"cpu": "measured", "gpu": "measured", "ram": "measured"}
    assert m.energy_j == pytest.approx({"cpu": 20.0, "gpu": 62.0, "ram": 4.0})
    assert m.devices == pytest.approx(
        {"apple:cpu": 20.0, "apple:dram": 4.0, "apple:gpu": 60.0, "apple:ane": 2.0}
    )


def test_embodied_emissions_count_the_gpu_not_the_neural_engine() -> None:
    from carbon_magic.engine import accounting
    from carbon_magic.engine.tick_attribution import RawCounters, TickAttributor
    from tests.sources import CounterSource

    gpu = CounterSource("apple", "gpu", ("apple:gpu", "apple:ane"), vendor="apple")
    settings = Settings(environ={})

    def raw(t_s: float, gpu_j: float, ane_j: float) -> RawCounters:
        counters = {"apple:gpu": (gpu, gpu_j, None), "apple:ane": (gpu, ane_j, None)}
        return RawCounters(round(t_s * 1e9), counters, 0.0, 0.0, 0)

    attributed = TickAttributor().attribute(raw(0, 0, 0), raw(10, 50, 5), 16 * 10**9, settings)
    assert attributed is not None
    server_g_s, one_gpu_g_s = accounting.embodied_rate_g_per_s(
        settings.embodied_server_kg, settings.embodied_gpu_kg, 1, settings.lifetime_years
    )
    assert attributed["machine"].embodied_g == pytest.approx((server_g_s + one_gpu_g_s) * 10)
    assert attributed["process"].embodied_g == pytest.approx(one_gpu_g_s * 10)  # no CPU share
    # The Neural Engine's energy is still GPU energy.
    assert attributed["machine"].energy["gpu"].central_j == pytest.approx(55.0)
