"""NvmlSensor over a fake ``pynvml`` module, and once over the real one without a GPU."""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from carbon_magic.sensors.base import MEASURED, MODELLED
from carbon_magic.sensors.nvml import NvmlSensor, parse_visible_devices

# -- a fake pynvml with the real exception shape ------------------------------------


class NVMLError(Exception):
    """Like pynvml.NVMLError: carries the NVML return code in ``value``."""

    code = 999
    text = "Unknown Error"

    def __init__(self, value: int | None = None) -> None:
        super().__init__(self.code if value is None else value)
        self.value = self.code if value is None else value

    def __str__(self) -> str:
        return self.text


def _error_class(name: str, code: int, text: str) -> type[NVMLError]:
    return type(name, (NVMLError,), {"code": code, "text": text})


ERRORS = {
    "NVMLError_Uninitialized": _error_class("NVMLError_Uninitialized", 1, "Uninitialized"),
    "NVMLError_NotSupported": _error_class("NVMLError_NotSupported", 3, "Not Supported"),
    "NVMLError_NoPermission": _error_class("NVMLError_NoPermission", 4, "Insufficient Permissions"),
    "NVMLError_DriverNotLoaded": _error_class("NVMLError_DriverNotLoaded", 9, "Driver Not Loaded"),
    "NVMLError_LibraryNotFound": _error_class(
        "NVMLError_LibraryNotFound", 12, "NVML Shared Library Not Found"
    ),
    "NVMLError_GpuIsLost": _error_class("NVMLError_GpuIsLost", 15, "GPU is lost"),
}
NotSupported = ERRORS["NVMLError_NotSupported"]


def test_fake_errors_mirror_the_real_module() -> None:
    pynvml = pytest.importorskip("pynvml")
    for name, cls in ERRORS.items():
        real = getattr(pynvml, name)
        assert issubclass(real, pynvml.NVMLError)
        assert real(cls.code).value == cls.code


class Clock:
    """A settable monotonic clock, in nanoseconds."""

    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += round(seconds * 1e9)

    @property
    def s(self) -> float:
        return self.ns / 1e9


@dataclass
class FakeGpu:
    name: str
    uuid: str
    energy_mj: int | None = 1_000_000  # None: no energy counter (pre-Volta)
    power_w: Callable[[float], float] | None = None  # of the clock, in seconds
    compute_pids: list[int] | None = field(default_factory=list)  # None: NotSupported
    graphics_pids: list[int] | None = field(default_factory=list)
    lost: bool = False
    # (pid, smUtil) samples nvmlDeviceGetProcessUtilization returns; None: NotSupported
    utilisation: list[tuple[int, int]] | None = field(default_factory=list)


def fake_pynvml(gpus: list[FakeGpu], clock: Clock, init_error: Exception | None = None):
    """A module object offering the pynvml functions the sensor uses."""
    mod = types.ModuleType("pynvml")
    mod.NVMLError = NVMLError
    for name, cls in ERRORS.items():
        setattr(mod, name, cls)
    mod.calls = {"init": 0, "shutdown": 0}

    def init() -> None:
        if init_error is not None:
            raise init_error
        mod.calls["init"] += 1

    def shutdown() -> None:
        mod.calls["shutdown"] += 1  # every attempt counts
        if mod.calls["init"] < mod.calls["shutdown"]:
            raise ERRORS["NVMLError_Uninitialized"]()

    def gpu(handle: int) -> FakeGpu:
        if gpus[handle].lost:
            raise ERRORS["NVMLError_GpuIsLost"]()
        return gpus[handle]

    def energy(handle: int) -> int:
        if gpu(handle).energy_mj is None:
            raise NotSupported()
        value = gpu(handle).energy_mj
        time.sleep(0)  # the real call goes through ctypes, which releases the GIL
        return value

    def power(handle: int) -> int:
        if gpu(handle).power_w is None:
            raise NotSupported()
        value = round(gpu(handle).power_w(clock.s) * 1000)
        time.sleep(0)
        return value

    def procs(pids: list[int] | None) -> list[types.SimpleNamespace]:
        if pids is None:
            raise NotSupported()
        return [types.SimpleNamespace(pid=p, usedGpuMemory=1 << 20) for p in pids]

    def by_uuid(uuid: str) -> str:
        if uuid == "MIG-5a7e0000-1111-2222-3333-444455556666":
            return "mig-on-2"
        raise ERRORS["NVMLError_NotSupported"]()

    mod.nvmlInit = init
    mod.nvmlShutdown = shutdown
    mod.nvmlDeviceGetCount = lambda: len(gpus)
    mod.nvmlDeviceGetHandleByIndex = lambda i: i
    mod.nvmlDeviceGetName = lambda h: gpu(h).name
    mod.nvmlDeviceGetUUID = lambda h: gpu(h).uuid.encode()  # older versions return bytes
    mod.nvmlDeviceGetTotalEnergyConsumption = energy
    mod.nvmlDeviceGetPowerUsage = power
    mod.nvmlDeviceGetComputeRunningProcesses = lambda h: procs(gpu(h).compute_pids)
    mod.nvmlDeviceGetGraphicsRunningProcesses = lambda h: procs(gpu(h).graphics_pids)
    mod.nvmlDeviceGetHandleByUUID = by_uuid
    mod.nvmlDeviceGetDeviceHandleFromMigDeviceHandle = lambda mig: 2
    mod.nvmlDeviceGetIndex = lambda h: h

    def utilisation(handle: int, last_seen_us: int) -> list[types.SimpleNamespace]:
        samples = gpu(handle).utilisation
        if samples is None:
            raise NotSupported()
        return [
            types.SimpleNamespace(pid=pid, timeStamp=last_seen_us + 1, smUtil=sm, memUtil=0)
            for pid, sm in samples
        ]

    mod.nvmlDeviceGetProcessUtilization = utilisation
    return mod


UUIDS = [
    "GPU-aaaa1111-0000-0000-0000-000000000000",
    "GPU-bbbb2222-0000-0000-0000-000000000000",
    "GPU-bbbc3333-0000-0000-0000-000000000000",
]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gpus() -> list[FakeGpu]:
    return [FakeGpu("NVIDIA H200", uuid) for uuid in UUIDS]


def make(gpus: list[FakeGpu], clock: Clock, env: dict[str, str] | None = None, **kw):
    nvml = fake_pynvml(gpus, clock, **kw)
    return NvmlSensor(nvml_module=nvml, environ=env or {}, clock_ns=clock), nvml


# -- energy counters -------------------------------------------------------------


def test_energy_counter_gpus(gpus: list[FakeGpu], clock: Clock) -> None:
    sensor, _ = make(gpus, clock)
    assert sensor.available and sensor.reason is None
    assert (sensor.name, sensor.component, sensor.method) == ("nvml", "gpu", MEASURED)
    assert sensor.count == 3
    assert sensor.gpu_names() == dict.fromkeys(["nvidia:0", "nvidia:1", "nvidia:2"], "NVIDIA H200")
    assert sensor.poll_interval_s() is None
    gpus[0].energy_mj += 2_500
    gpus[2].energy_mj += 40
    assert sensor.read_j() == pytest.approx({"nvidia:0": 2.5, "nvidia:1": 0.0, "nvidia:2": 0.04})
    gpus[0].energy_mj += 500
    assert sensor.read_j()["nvidia:0"] == pytest.approx(3.0)
    assert sensor.status().detail == "3 GPUs: NVIDIA H200 (energy counter)"


def test_counter_restart_never_goes_negative(gpus: list[FakeGpu], clock: Clock) -> None:
    sensor, _ = make(gpus[:1], clock)
    gpus[0].energy_mj += 1_000
    assert sensor.read_j()["nvidia:0"] == pytest.approx(1.0)
    gpus[0].energy_mj = 300  # driver reloaded: the counter starts again at 0
    assert sensor.read_j()["nvidia:0"] == pytest.approx(1.3)


# -- power integration (pre-Volta) ------------------------------------------------


def test_power_only_gpu_integrates_linear_power_exactly(clock: Clock) -> None:
    start = clock.s
    gpu = FakeGpu("Tesla P100", UUIDS[0], energy_mj=None, power_w=lambda t: 100 + 50 * (t - start))
    sensor, _ = make([gpu], clock)
    assert sensor.available and sensor.method == MODELLED
    assert sensor.poll_interval_s() == 1.0
    for step in (0.5, 0.8, 0.7):  # uneven polls, 2 s in all
        clock.advance(step)
        joules = sensor.read_j()["nvidia:0"]
    # The trapezoid is exact for linear power: 100 W * 2 s + 50 W/s * (2 s)^2 / 2.
    assert joules == pytest.approx(300.0)
    assert "integrated from power" in sensor.status().detail


def test_power_integration_matches_analytic_energy(clock: Clock) -> None:
    start = clock.s
    gpu = FakeGpu("Tesla K80", UUIDS[0], energy_mj=None)
    gpu.power_w = lambda t: 150 + 80 * math.sin(t - start)
    sensor, _ = make([gpu], clock)
    for _ in range(300):
        clock.advance(0.01)
        joules = sensor.read_j()["nvidia:0"]
    truth = 150 * 3 + 80 * (1 - math.cos(3))  # integral over 3 s
    assert joules == pytest.approx(truth, rel=1e-4)


def test_mixed_gpus_are_modelled(gpus: list[FakeGpu], clock: Clock) -> None:
    gpus[1].energy_mj = None
    gpus[1].power_w = lambda t: 60.0
    sensor, _ = make(gpus, clock)
    assert sensor.method == MODELLED and sensor.poll_interval_s() == 1.0
    clock.advance(2.0)
    gpus[0].energy_mj += 1_000
    assert sensor.read_j() == pytest.approx({"nvidia:0": 1.0, "nvidia:1": 120.0, "nvidia:2": 0.0})


def test_gpu_without_energy_or_power_is_skipped(gpus: list[FakeGpu], clock: Clock) -> None:
    gpus[1].energy_mj = None  # and power_w None
    sensor, _ = make(gpus, clock)
    assert sensor.available and sensor.method == MEASURED
    assert set(sensor.read_j()) == {"nvidia:0", "nvidia:2"}
    assert sensor.count == 2
    assert "skipped nvidia:1" in sensor.status().detail


def test_no_measurable_gpu_is_unavailable(gpus: list[FakeGpu], clock: Clock) -> None:
    for gpu in gpus:
        gpu.energy_mj = None
    sensor, nvml = make(gpus, clock)
    assert not sensor.available
    assert sensor.reason.startswith("no NVIDIA GPU to measure: nvidia:0")
    assert "Not Supported" in sensor.reason
    assert nvml.calls == {"init": 1, "shutdown": 1}  # released at once


def test_read_failure_raises_runtime_error(gpus: list[FakeGpu], clock: Clock) -> None:
    sensor, _ = make(gpus, clock)
    gpus[1].lost = True
    with pytest.raises(RuntimeError, match="nvidia:1.*GPU is lost"):
        sensor.read_j()


# -- no library, no driver --------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("NVMLError_LibraryNotFound", "library (libnvidia-ml) not found"),
        ("NVMLError_DriverNotLoaded", "driver not loaded"),
        ("NVMLError_NoPermission", "initialisation failed: Insufficient Permissions"),
    ],
)
def test_init_failure_is_one_quiet_line(
    error: str, expected: str, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sensor, nvml = make([], clock, init_error=ERRORS[error]())
    assert not sensor.available and expected in sensor.reason and "\n" not in sensor.reason
    assert sensor.status().detail == sensor.reason and sensor.status().available is False
    assert caplog.records == []
    assert sensor.count == 0 and sensor.poll_interval_s() is None
    assert sensor.devices_used_by({1}) == set()
    with pytest.raises(RuntimeError):
        sensor.read_j()
    sensor.close()
    assert nvml.calls["shutdown"] == 0  # never initialised, nothing to shut down


def test_missing_pynvml_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    sensor = NvmlSensor(environ={})
    assert not sensor.available and "nvidia-ml-py" in sensor.reason


def test_real_pynvml_without_library(monkeypatch: pytest.MonkeyPatch) -> None:
    pynvml = pytest.importorskip("pynvml")

    def no_library() -> None:
        # The real module maps the return code to its NVMLError_LibraryNotFound class.
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_library)
    sensor = NvmlSensor(environ={})
    assert not sensor.available
    assert sensor.reason == "NVIDIA driver library (libnvidia-ml) not found: no NVIDIA GPU"
    sensor.close()


# -- CUDA_VISIBLE_DEVICES ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "keys"),
    [
        ("1", ["nvidia:1"]),
        ("2,0", ["nvidia:2", "nvidia:0"]),
        (" 0 , 2 ", ["nvidia:0", "nvidia:2"]),
        ("0,7,1", ["nvidia:0"]),  # CUDA stops at the first invalid entry
        (UUIDS[1], ["nvidia:1"]),
        ("GPU-aaaa", ["nvidia:0"]),  # unique prefix
        ("GPU-bbb,0", []),  # ambiguous prefix ends the list at once
        ("GPU-bbbc3333,1", ["nvidia:2", "nvidia:1"]),
        ("MIG-5a7e0000-1111-2222-3333-444455556666", ["nvidia:2"]),
        ("0,MIG-unknown,1", ["nvidia:0"]),
        ("1,1", ["nvidia:1"]),
    ],
)
def test_cuda_visible_devices(
    value: str, keys: list[str], gpus: list[FakeGpu], clock: Clock
) -> None:
    sensor, _ = make(gpus, clock, {"CUDA_VISIBLE_DEVICES": value})
    if keys:
        assert list(sensor.read_j()) == keys
        assert list(sensor.gpu_names()) == keys
    else:
        assert not sensor.available


@pytest.mark.parametrize("value", ["", "-1", "NoDevFiles"])
def test_cuda_visible_devices_hiding_all(value: str, gpus: list[FakeGpu], clock: Clock) -> None:
    sensor, nvml = make(gpus, clock, {"CUDA_VISIBLE_DEVICES": value})
    assert not sensor.available and "CUDA_VISIBLE_DEVICES" in sensor.reason
    assert nvml.calls == {"init": 1, "shutdown": 1}


def test_parse_visible_devices_unset_means_all() -> None:
    assert parse_visible_devices(None, UUIDS) is None
    assert parse_visible_devices("2,1", UUIDS) == [2, 1]


# -- processes, close, threads ---------------------------------------------------


def test_devices_used_by(gpus: list[FakeGpu], clock: Clock) -> None:
    gpus[0].compute_pids = [10, 11]
    gpus[1].graphics_pids = [20]
    sensor, _ = make(gpus, clock)
    assert sensor.devices_used_by({10}) == {"nvidia:0"}
    assert sensor.devices_used_by({20, 11}) == {"nvidia:0", "nvidia:1"}
    assert sensor.devices_used_by({99}) == set()
    assert sensor.devices_used_by(set()) == set()


def test_devices_used_by_not_supported_counts_the_gpu(gpus: list[FakeGpu], clock: Clock) -> None:
    gpus[0].compute_pids = [10]
    gpus[2].compute_pids = None  # NotSupported: it might be in use
    sensor, _ = make(gpus, clock)
    assert sensor.devices_used_by({10}) == {"nvidia:0", "nvidia:2"}
    for gpu in gpus:
        gpu.graphics_pids = None
    assert sensor.devices_used_by({10}) == {"nvidia:0", "nvidia:1", "nvidia:2"}


def test_close_is_idempotent(gpus: list[FakeGpu], clock: Clock) -> None:
    sensor, nvml = make(gpus, clock)
    sensor.close()
    sensor.close()
    assert nvml.calls == {"init": 1, "shutdown": 1}
    assert not sensor.available
    with pytest.raises(RuntimeError):
        sensor.read_j()


def test_concurrent_reads(gpus: list[FakeGpu], clock: Clock) -> None:
    gpus[1].energy_mj = None
    gpus[1].power_w = lambda t: 100.0
    sensor, _ = make(gpus[:2], clock)
    lock = threading.Lock()  # the fake clock and counter are advanced by the readers

    def worker() -> None:
        for _ in range(500):
            with lock:
                gpus[0].energy_mj += 1
                clock.advance(0.001)
            sensor.read_j()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sensor.read_j() == pytest.approx({"nvidia:0": 1.0, "nvidia:1": 100.0})


# -- shared GPUs -----------------------------------------------------------------


def test_two_processes_on_one_gpu_split_by_sm_utilisation(
    gpus: list[FakeGpu], clock: Clock
) -> None:
    gpus[0].compute_pids = [10, 77]  # 10 is the kernel's, 77 someone else's
    gpus[0].utilisation = [(10, 60), (77, 20)]
    gpus[1].compute_pids = [10]
    sensor, _ = make(gpus, clock)
    use = sensor.use_by({10})
    assert set(use) == {"nvidia:0", "nvidia:1"}
    assert use["nvidia:0"].shared and use["nvidia:0"].sm_share == pytest.approx(0.75)
    assert use["nvidia:1"].sm_share is None and not use["nvidia:1"].shared


def test_shared_gpu_without_process_utilisation_is_charged_whole(
    gpus: list[FakeGpu], clock: Clock
) -> None:
    gpus[0].compute_pids = [10, 77]
    gpus[0].utilisation = None  # NotSupported
    sensor, _ = make(gpus, clock)
    use = sensor.use_by({10})["nvidia:0"]
    assert use.shared and use.sm_share is None
    assert "whole GPU" in use.how


def test_stuck_energy_counter_under_load_falls_back_to_power(
    gpus: list[FakeGpu], clock: Clock
) -> None:
    gpus[0].power_w = lambda t: 300.0
    sensor, _ = make(gpus[:1], clock)
    for _ in range(5):
        clock.advance(1)
        sensor.read_j()  # the counter stays at 1_000_000 mJ while drawing 300 W
    assert sensor.method == MODELLED
    assert "stuck" in sensor.status().detail
    clock.advance(1)
    assert sensor.read_j()["nvidia:0"] == pytest.approx(300.0 * 6)
    assert sensor.poll_interval_s() == 1.0


def test_still_counter_on_an_idle_gpu_is_not_stuck(gpus: list[FakeGpu], clock: Clock) -> None:
    gpus[0].power_w = lambda t: 2.0
    sensor, _ = make(gpus[:1], clock)
    for _ in range(10):
        clock.advance(1)
        sensor.read_j()
    assert sensor.method == MEASURED


def test_driver_markers_linux_and_windows(tmp_path) -> None:
    from carbon_magic.sensors.nvml import nvidia_driver_present

    assert not nvidia_driver_present(str(tmp_path), environ={})
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nvidiactl").write_text("")
    assert nvidia_driver_present(str(tmp_path), environ={})
    windows = tmp_path / "Windows"
    (windows / "System32").mkdir(parents=True)
    (windows / "System32" / "nvml.dll").write_text("")
    assert nvidia_driver_present(str(tmp_path / "none"), environ={"SystemRoot": str(windows)})
