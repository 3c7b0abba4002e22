"""Stand-in counters and a Sensors builder, so trackers run over injected sources."""

from __future__ import annotations

import threading

from carbon_magic.cpu_model.power import CpuPowerModel
from carbon_magic.sensors import Sensors
from carbon_magic.sensors.base import MEASURED, SHARE_BY_CPU_TIME, GpuUse, SensorStatus
from carbon_magic.sensors.models import ModelledCpu, ModelledRam


class FakeCpuTimes:
    """Settable cumulative CPU seconds: the machine's busy time and the kernel tree's."""

    source = "fake"

    def __init__(self) -> None:
        self.busy = 0.0
        self.process = 0.0
        self.rss = 0
        self.fail = False

    # system counter
    def busy_s(self) -> float:
        if self.fail:
            raise OSError("stat unreadable")
        return self.busy

    def close(self) -> None:
        pass

    # process tree
    def refresh_children(self) -> None:
        pass

    def pids(self) -> set[int]:
        return {4242}

    def cpu_s(self) -> float:
        return self.process

    def rss_bytes(self) -> int:
        return self.rss


class CounterSource:
    """A measured source whose cumulative joules the test sets by hand."""

    method = MEASURED
    available = True
    reason = None
    itemised = True
    process_share = SHARE_BY_CPU_TIME

    def __init__(self, name: str, component: str, keys: tuple[str, ...], vendor: str = "") -> None:
        self.name = name
        self.component = component
        self.vendor = vendor
        self.joules = dict.fromkeys(keys, 0.0)
        self.error: Exception | None = None
        self.use: dict[str, GpuUse] = {}
        self.closed = False
        self._lock = threading.Lock()

    def add(self, key: str, joules: float) -> None:
        with self._lock:
            self.joules[key] += joules

    def read_j(self) -> dict[str, float]:
        if self.error is not None:
            raise self.error
        with self._lock:
            return dict(self.joules)

    def range_j(self) -> None:
        return None

    def poll_interval_s(self) -> None:
        return None

    def status(self) -> SensorStatus:
        return SensorStatus(self.name, self.component, True, self.method, "fake counters")

    def gpu_names(self) -> dict[str, str]:
        return {key: f"{self.vendor} fake" for key in self.joules}

    def use_by(self, pids) -> dict[str, GpuUse]:
        return dict(self.use)

    def close(self) -> None:
        self.closed = True


def make_sensors(
    times: FakeCpuTimes,
    *,
    cpu=None,
    ram=None,
    gpus=(),
    idle_w: float = 10.0,
    max_w: float = 50.0,
    n_cpus: float = 4,
    total_bytes: int = 16 * 10**9,
    w_per_gb: float = 0.5,
) -> Sensors:
    power = CpuPowerModel(idle_w, max_w, n_cpus, "test curve")
    cpu_model = ModelledCpu(power, times)
    ram_model = ModelledRam(total_bytes, lambda: w_per_gb)
    return Sensors(
        cpu=cpu or cpu_model,
        ram=ram or ram_model,
        gpus=list(gpus),
        cpu_model=cpu_model,
        ram_model=ram_model,
        system_cpu=times,
        process_tree=times,
        cpu_power=power,
        cpu_model_name="Test CPU",
        n_cpus=n_cpus,
        total_memory_bytes=total_bytes,
    )
