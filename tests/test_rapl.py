"""RaplSensor over fake powercap trees laid out like Linux sysfs."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from carbon_magic.sensors.base import MEASURED
from carbon_magic.sensors.rapl import FROZEN_REASON, RaplSensor

BIG_RANGE_UJ = 262_143_328_850  # a common Intel package value
DRAM_RANGE_UJ = 65_712_999_613


class FakePowercap:
    """A sysfs-like tree: real zones under devices/, symlinks under class/powercap.

    Every zone is reachable as class/powercap/intel-rapl:N[:M] and again through the
    control type link class/powercap/intel-rapl/intel-rapl:N[/intel-rapl:N:M].
    """

    def __init__(self, base: Path) -> None:
        self.devices = base / "devices" / "virtual" / "powercap" / "intel-rapl"
        self.root = base / "class" / "powercap"
        self.devices.mkdir(parents=True)
        self.root.mkdir(parents=True)
        (self.root / "intel-rapl").symlink_to(self.devices, target_is_directory=True)
        self.zones: dict[str, Path] = {}

    def set(self, zone_id: str, energy_uj: int) -> None:
        # Atomic replace, so a concurrent reader never sees a half-written file.
        tmp = self.zones[zone_id] / ".energy_uj.tmp"
        tmp.write_text(f"{energy_uj}\n")
        os.replace(tmp, self.zones[zone_id] / "energy_uj")

    def add(self, zone_id: str, name: str, energy_uj: int = 0, max_uj: int = BIG_RANGE_UJ):
        parts = zone_id.split(":")
        parent = self.devices if len(parts) == 2 else self.zones[":".join(parts[:2])]
        real = parent / zone_id
        real.mkdir()
        (real / "name").write_text(name + "\n")
        (real / "max_energy_range_uj").write_text(f"{max_uj}\n")
        self.zones[zone_id] = real
        self.set(zone_id, energy_uj)
        (self.root / zone_id).symlink_to(real, target_is_directory=True)


@pytest.fixture
def server(tmp_path: Path) -> FakePowercap:
    """Two Intel packages, each with core, uncore and dram, plus a psys zone."""
    fake = FakePowercap(tmp_path)
    for pkg in (0, 1):
        fake.add(f"intel-rapl:{pkg}", f"package-{pkg}", energy_uj=1_000_000 * (pkg + 1))
        fake.add(f"intel-rapl:{pkg}:0", "core", energy_uj=5)
        fake.add(f"intel-rapl:{pkg}:1", "uncore", energy_uj=7)
        fake.add(f"intel-rapl:{pkg}:2", "dram", energy_uj=300, max_uj=DRAM_RANGE_UJ)
    fake.add("intel-rapl:2", "psys", energy_uj=42)
    return fake


def test_counts_packages_and_dram_once_each(server: FakePowercap) -> None:
    sensor = RaplSensor(root=str(server.root))
    assert sensor.available and sensor.reason is None
    assert (sensor.name, sensor.component, sensor.method) == ("rapl", "cpu", MEASURED)
    assert sensor.read_j() == {"package-0": 0.0, "package-1": 0.0, "dram-0": 0.0, "dram-1": 0.0}
    zones = sensor.describe_zones()
    # 2 x (package, core, uncore, dram) + psys, each once despite two or three paths.
    assert sorted(z["zone"] for z in zones) == sorted(server.zones)
    assert all(Path(str(z["path"])).resolve() == Path(str(z["path"])) for z in zones)
    counted = {z["name"] for z in zones if z["counted"]}
    assert counted == {"package-0", "package-1", "dram"}
    assert {z["max_energy_range_uj"] for z in zones if z["name"] == "dram"} == {DRAM_RANGE_UJ}
    status = sensor.status()
    assert status.available and status.detail == "2 packages + dram (intel-rapl)"


def test_read_j_is_joules_since_construction(server: FakePowercap) -> None:
    sensor = RaplSensor(root=str(server.root))
    server.set("intel-rapl:0", 1_000_000 + 2_500_000)
    server.set("intel-rapl:1:2", 300 + 750_000)
    # core and uncore are inside the package: moving them must change nothing.
    server.set("intel-rapl:0:0", 99_000_000)
    server.set("intel-rapl:0:1", 99_000_000)
    server.set("intel-rapl:2", 99_000_000)
    assert sensor.read_j() == pytest.approx(
        {"package-0": 2.5, "package-1": 0.0, "dram-0": 0.0, "dram-1": 0.75}
    )
    server.set("intel-rapl:0", 1_000_000 + 4_000_000)
    assert sensor.read_j()["package-0"] == pytest.approx(4.0)


def test_wraparound_adds_the_max_range(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    fake.add("intel-rapl:0", "package-0", energy_uj=900_000, max_uj=1_000_000)
    sensor = RaplSensor(root=str(fake.root))
    fake.set("intel-rapl:0", 100_000)  # wrapped: 100_000 to the top, 100_000 after 0
    assert sensor.read_j()["package-0"] == pytest.approx(0.2)
    fake.set("intel-rapl:0", 950_000)
    assert sensor.read_j()["package-0"] == pytest.approx(1.05)
    fake.set("intel-rapl:0", 0)
    assert sensor.read_j()["package-0"] == pytest.approx(1.1)


def test_psys_replaces_package_and_dram_when_asked(server: FakePowercap) -> None:
    sensor = RaplSensor(root=str(server.root), use_psys=True)
    server.set("intel-rapl:2", 42 + 3_000_000)
    server.set("intel-rapl:0", 50_000_000)
    assert sensor.read_j() == pytest.approx({"psys": 3.0})
    assert sensor.status().detail == "psys, the whole SoC including DRAM (intel-rapl)"


def test_psys_requested_but_absent_falls_back(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    fake.add("intel-rapl:0", "package-0")
    fake.add("intel-rapl:0:0", "dram")
    sensor = RaplSensor(root=str(fake.root), use_psys=True)
    assert set(sensor.read_j()) == {"package-0", "dram-0"}
    assert "psys not present" in sensor.status().detail


def test_amd_packages_only(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    fake.add("intel-rapl:0", "package-0", energy_uj=10)
    fake.add("intel-rapl:0:0", "core", energy_uj=10)  # some AMD kernels expose core too
    sensor = RaplSensor(root=str(fake.root))
    fake.set("intel-rapl:0", 10 + 1_000_000)
    fake.set("intel-rapl:0:0", 10 + 800_000)
    assert sensor.read_j() == pytest.approx({"package-0": 1.0})
    assert sensor.status().detail == "1 package (intel-rapl)"


def test_mmio_duplicate_of_the_package_is_ignored(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    fake.add("intel-rapl:0", "package-0")
    mmio = tmp_path / "mmio"
    mmio.mkdir()
    (mmio / "name").write_text("package-0\n")
    (mmio / "energy_uj").write_text("5\n")
    (mmio / "max_energy_range_uj").write_text("1000\n")
    (fake.root / "intel-rapl-mmio:0").symlink_to(mmio, target_is_directory=True)
    sensor = RaplSensor(root=str(fake.root))
    assert sensor.read_j() == {"package-0": 0.0}
    zones = {z["zone"]: z for z in sensor.describe_zones()}
    assert set(zones) == {"intel-rapl:0", "intel-rapl-mmio:0"}
    assert not zones["intel-rapl-mmio:0"]["counted"]


def add_mmio_zone(root: Path, zone_id: str, name: str, energy_uj: int, max_uj: int) -> Path:
    real = root.parent / "mmio-devices" / zone_id
    real.mkdir(parents=True)
    (real / "name").write_text(name + "\n")
    (real / "energy_uj").write_text(f"{energy_uj}\n")
    (real / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (root / zone_id).symlink_to(real, target_is_directory=True)
    return real


def test_mmio_package_is_counted_when_msr_lacks_it(tmp_path: Path) -> None:
    """Recent Intel client CPUs: the package only through MMIO, DRAM through MSR."""
    fake = FakePowercap(tmp_path)
    fake.add("intel-rapl:1", "psys", energy_uj=0)
    real = add_mmio_zone(fake.root, "intel-rapl-mmio:0", "package-0", 100, BIG_RANGE_UJ)
    sensor = RaplSensor(root=str(fake.root), domain="cpu")
    (real / "energy_uj").write_text(f"{100 + 2_000_000}\n")
    assert sensor.read_j() == pytest.approx({"package-0": 2.0})
    assert sensor.status().detail == "1 package (intel-rapl-mmio)"


def test_domains_split_packages_and_dram(server: FakePowercap) -> None:
    cpu = RaplSensor(root=str(server.root), domain="cpu")
    dram = RaplSensor(root=str(server.root), domain="dram")
    server.set("intel-rapl:0", 1_000_000 + 3_000_000)
    server.set("intel-rapl:0:2", 300 + 500_000)
    assert cpu.read_j() == pytest.approx({"package-0": 3.0, "package-1": 0.0})
    assert dram.read_j() == pytest.approx({"dram-0": 0.5, "dram-1": 0.0})
    assert (cpu.component, dram.component) == ("cpu", "ram")
    assert dram.status().detail == "2 dram zones (intel-rapl)"


def test_dram_domain_is_empty_under_psys(server: FakePowercap) -> None:
    dram = RaplSensor(root=str(server.root), use_psys=True, domain="dram")
    assert not dram.available
    assert "inside the psys" in (dram.reason or "")


def test_unknown_domain_names_the_choices(server: FakePowercap) -> None:
    with pytest.raises(ValueError, match="all, cpu, dram"):
        RaplSensor(root=str(server.root), domain="gpu")


def test_permission_denied_names_the_fix(server: FakePowercap) -> None:
    def opener(path: str):
        if path.endswith("energy_uj") and not path.endswith("max_energy_range_uj"):
            raise PermissionError(13, "Permission denied", path)
        return open(path, "rb")

    sensor = RaplSensor(root=str(server.root), opener=opener)
    assert not sensor.available
    assert "\n" not in sensor.reason
    assert "chmod o+r" in sensor.reason and "energy_uj" in sensor.reason
    assert 'SUBSYSTEM=="powercap"' in sensor.reason
    assert sensor.status().detail == sensor.reason and not sensor.status().available
    assert sensor.poll_interval_s() is None
    assert sensor.check_advancing(min_wait_s=0) is False
    with pytest.raises(RuntimeError):
        sensor.read_j()


def test_read_error_after_construction_raises_oserror(server: FakePowercap) -> None:
    broken = threading.Event()

    def opener(path: str):
        if broken.is_set() and path.endswith("/energy_uj"):
            raise OSError(5, "Input/output error", path)
        return open(path, "rb")

    sensor = RaplSensor(root=str(server.root), opener=opener)
    assert sensor.available
    broken.set()
    with pytest.raises(OSError):
        sensor.read_j()


def test_frozen_counters_found_by_check_advancing(server: FakePowercap) -> None:
    started = time.monotonic()
    sensor = RaplSensor(root=str(server.root))
    assert sensor.check_advancing() is False  # default waits the 50 ms window
    assert time.monotonic() - started >= 0.05
    assert not sensor.available and sensor.reason == FROZEN_REASON
    assert sensor.status().detail == FROZEN_REASON
    with pytest.raises(RuntimeError, match="do not advance"):
        sensor.read_j()


def test_advancing_counters_pass_the_check(server: FakePowercap) -> None:
    sensor = RaplSensor(root=str(server.root))
    server.set("intel-rapl:1", 2_000_000 + 61)
    assert sensor.check_advancing(min_wait_s=0) is True
    assert sensor.available
    assert sensor.read_j()["package-1"] == pytest.approx(61e-6)


def test_frozen_counters_found_by_a_late_read(server: FakePowercap) -> None:
    sensor = RaplSensor(root=str(server.root))
    assert sensor.read_j()["package-0"] == 0.0  # too early to judge
    time.sleep(0.06)
    with pytest.raises(RuntimeError, match="do not advance"):
        sensor.read_j()
    assert not sensor.available
    assert sensor.check_advancing(min_wait_s=0) is False


def test_late_read_of_moving_counters_keeps_the_sensor(server: FakePowercap) -> None:
    sensor = RaplSensor(root=str(server.root))
    time.sleep(0.06)
    server.set("intel-rapl:0", 1_000_000 + 1_000)
    assert sensor.read_j()["package-0"] == pytest.approx(1e-3)
    server.set("intel-rapl:0", 1_000_000 + 1_000)
    assert sensor.read_j()["package-0"] == pytest.approx(1e-3)  # verdict taken once
    assert sensor.available and sensor.check_advancing(min_wait_s=0) is True


def test_constructor_does_not_wait(server: FakePowercap) -> None:
    started = time.perf_counter()
    RaplSensor(root=str(server.root))
    assert time.perf_counter() - started < 0.02  # well below the 50 ms freeze window


def test_missing_root_is_unavailable(tmp_path: Path) -> None:
    sensor = RaplSensor(root=str(tmp_path / "nope"))
    assert not sensor.available
    assert "no RAPL zones" in sensor.reason and str(tmp_path / "nope") in sensor.reason
    assert sensor.status().detail == sensor.reason
    sensor.close()


def test_only_core_zones_is_unavailable(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    fake.add("intel-rapl:0", "core")
    sensor = RaplSensor(root=str(fake.root))
    assert not sensor.available and "core" in sensor.reason


def test_poll_interval_uses_the_smallest_range(server: FakePowercap) -> None:
    sensor = RaplSensor(root=str(server.root), peak_power_w=500.0)
    assert sensor.poll_interval_s() == pytest.approx(DRAM_RANGE_UJ / 1e6 / 500.0 / 2)
    psys_only = RaplSensor(root=str(server.root), use_psys=True)
    assert psys_only.poll_interval_s() == pytest.approx(BIG_RANGE_UJ / 1e6 / 1000.0 / 2)
    with pytest.raises(ValueError):
        RaplSensor(root=str(server.root), peak_power_w=0)


def test_concurrent_reads_count_each_microjoule_once(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    fake.add("intel-rapl:0", "package-0", energy_uj=0, max_uj=10_000)
    sensor = RaplSensor(root=str(fake.root))
    done = threading.Event()
    seen: list[list[float]] = [[], []]
    errors: list[BaseException] = []

    def reader(out: list[float]) -> None:
        try:
            while not done.is_set():
                out.append(sensor.read_j()["package-0"])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(out,)) for out in seen]
    for t in threads:
        t.start()
    total = 0
    for _ in range(100):  # steps of 2_000 uJ wrap the 10_000 uJ counter often
        total += 2_000
        fake.set("intel-rapl:0", total % 10_000)
        # Let readers keep up, or a whole wrap could go unseen between two reads:
        # that is the poll-interval contract, not what this test is about.
        target = len(seen[0]) + len(seen[1]) + 2
        while len(seen[0]) + len(seen[1]) < target and not errors:
            time.sleep(0)
    done.set()
    for t in threads:
        t.join()
    assert not errors
    assert all(a <= b for out in seen for a, b in zip(out, out[1:], strict=False))
    assert sensor.read_j()["package-0"] == pytest.approx(total / 1e6)
