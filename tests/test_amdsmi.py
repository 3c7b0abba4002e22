"""AmdSmiSensor over a stand-in ``amdsmi`` module built from its documented 7.x API
(and, where said, the 6.x one before 6.2, whose process list holds handles)."""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import pytest

from carbon_magic.engine import accounting
from carbon_magic.sensors.amdsmi import WRAP_32_BITS, AmdSmiSensor, visible_indices
from carbon_magic.sensors.base import MEASURED, MODELLED


class AmdSmiException(Exception):
    """Like amdsmi.AmdSmiException."""


class AmdSmiLibraryException(AmdSmiException):
    """Like amdsmi.AmdSmiLibraryException: carries the library's status code."""

    def __init__(self, code: int, text: str = "AMDSMI_STATUS_NOT_SUPPORTED") -> None:
        super().__init__(f"{text} ({code})")
        self.code = code

    def get_error_code(self) -> int:
        return self.code


NOT_SUPPORTED = 2
NOT_FOUND = 31


@dataclass
class FakeAmdGpu:
    name: str = "AMD Instinct MI300X"
    count: int | None = 1_000  # energy_accumulator; None: NotSupported
    resolution_uj: float = 15.3
    power_w: float | str | None = 300  # "N/A" or None: unsupported
    pids: list[int] | None = field(default_factory=list)  # None: NotSupported
    old_key: bool = False  # amdsmi 6.x named the counter "power"
    gfx_ns: dict[int, int] = field(default_factory=dict)  # cumulative gfx busy ns per pid
    engine_usage: bool = True  # False: process entries without engine_usage


@dataclass(frozen=True)
class ProcessHandle:
    """Like amdsmi_process_handle_t, what the process list held before amdsmi 6.2."""

    value: int


def process_info(gpu: FakeAmdGpu, pid: int) -> dict:
    """One process as amdsmi_get_gpu_process_list (7.x) or _info (6.x) describes it."""
    info = {
        "name": "python",
        "pid": pid,
        "mem": 1 << 20,
        "memory_usage": {"gtt_mem": 0, "cpu_mem": 0, "vram_mem": 1 << 20},
    }
    if gpu.engine_usage:
        info["engine_usage"] = {"gfx": gpu.gfx_ns.get(pid, 0), "enc": 0}
    return info


def fake_amdsmi(
    gpus: list[FakeAmdGpu],
    init_error: Exception | None = None,
    version: int = 7,
    process_handles: bool = False,
):
    mod = types.ModuleType("amdsmi")
    mod.AmdSmiException = AmdSmiException
    mod.AmdSmiLibraryException = AmdSmiLibraryException
    mod.AmdSmiInitFlags = types.SimpleNamespace(INIT_AMD_GPUS=2)
    mod.calls = {"init": 0, "shutdown": 0}

    def init(flags=None):
        if init_error is not None:
            raise init_error
        mod.calls["init"] += 1

    def shut_down():
        mod.calls["shutdown"] += 1

    def energy(handle):
        gpu = gpus[handle]
        if gpu.count is None:
            raise AmdSmiLibraryException(NOT_SUPPORTED)
        key = "power" if gpu.old_key else "energy_accumulator"
        return {key: gpu.count, "counter_resolution": gpu.resolution_uj, "timestamp": 1}

    def power(handle):
        watts = gpus[handle].power_w
        if watts is None:
            raise AmdSmiLibraryException(NOT_SUPPORTED)
        return {"current_socket_power": watts, "average_socket_power": watts, "gfx_voltage": 1}

    def processes(handle):
        pids = gpus[handle].pids
        if pids is None:
            raise AmdSmiLibraryException(NOT_SUPPORTED)
        if process_handles:
            return [ProcessHandle(pid) for pid in pids]
        return [process_info(gpus[handle], pid) for pid in pids]

    def one_process(handle, process):
        if process.value not in (gpus[handle].pids or []):
            raise AmdSmiLibraryException(NOT_FOUND, "AMDSMI_STATUS_NOT_FOUND")
        return process_info(gpus[handle], process.value)

    mod.amdsmi_init = init
    mod.amdsmi_shut_down = shut_down
    mod.amdsmi_get_processor_handles = lambda: list(range(len(gpus)))
    mod.amdsmi_get_gpu_asic_info = lambda h: {"market_name": gpus[h].name, "vendor_id": 4098}
    mod.amdsmi_get_power_info = power
    mod.amdsmi_get_gpu_process_list = processes
    if process_handles:
        mod.amdsmi_get_gpu_process_info = one_process
    if version >= 6:
        mod.amdsmi_get_energy_count = energy
    return mod


class Clock:
    def __init__(self) -> None:
        self.ns = 10**9

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += round(seconds * 1e9)


def make(gpus, env=None, **kw):
    clock = Clock()
    module = fake_amdsmi(gpus, **kw)
    return AmdSmiSensor(amdsmi_module=module, environ=env or {}, clock_ns=clock), module, clock


def test_energy_counter_at_a_known_power() -> None:
    gpu = FakeAmdGpu()
    sensor, _, clock = make([gpu])
    assert sensor.available and sensor.method == MEASURED
    # 10 s at 500 W = 5000 J = count × 15.3 µJ
    clock.advance(10)
    gpu.count += round(5000 / 15.3e-6)
    assert sensor.read_j() == pytest.approx({"amd:0": 5000.0}, rel=1e-6)
    assert sensor.gpu_names() == {"amd:0": "AMD Instinct MI300X"}
    assert "energy counter" in sensor.status().detail


def test_amdsmi_6_counter_name() -> None:
    gpu = FakeAmdGpu(old_key=True)
    sensor, _, _ = make([gpu])
    gpu.count += 1_000_000
    assert sensor.read_j()["amd:0"] == pytest.approx(15.3)


def test_32_bit_counter_wraps_and_poll_interval_sees_every_wrap() -> None:
    gpu = FakeAmdGpu(count=WRAP_32_BITS - 100, resolution_uj=1.0)
    sensor, _, _ = make([gpu])
    gpu.count = 400  # wrapped: 100 to the top, 400 after zero
    assert sensor.read_j()["amd:0"] == pytest.approx(500e-6)
    # 2**32 µJ at 1000 W wraps in 4.3 s: read at least every 2.1 s.
    assert sensor.poll_interval_s() == pytest.approx(WRAP_32_BITS / 1e6 / 1000 / 2)


def test_counter_restart_above_32_bits_counts_from_zero() -> None:
    gpu = FakeAmdGpu(count=2**40, resolution_uj=1.0)
    sensor, _, _ = make([gpu])
    gpu.count = 1_000_000
    assert sensor.read_j()["amd:0"] == pytest.approx(1.0)


def test_power_integration_where_there_is_no_counter() -> None:
    gpu = FakeAmdGpu(count=None, power_w=200)
    sensor, _, clock = make([gpu])
    assert sensor.method == MODELLED
    clock.advance(2)
    gpu.power_w = 300
    assert sensor.read_j()["amd:0"] == pytest.approx(500.0)  # trapezoid 2 s × 250 W
    assert sensor.poll_interval_s() == 1.0
    assert "integrated from power" in sensor.status().detail


def test_stuck_counter_under_load_switches_to_power() -> None:
    gpu = FakeAmdGpu(power_w=400)
    sensor, _, clock = make([gpu])
    for _ in range(6):
        clock.advance(1)
        sensor.read_j()  # the counter never moves while the GPU draws 400 W
    assert sensor.method == MODELLED
    assert "stuck" in sensor.status().detail
    clock.advance(1)
    # 7 s at 400 W: the stuck span at the power seen, then integrated.
    assert sensor.read_j()["amd:0"] == pytest.approx(400.0 * 7)


def test_idle_gpu_with_a_still_counter_is_not_stuck() -> None:
    gpu = FakeAmdGpu(power_w=2)
    sensor, _, clock = make([gpu])
    for _ in range(10):
        clock.advance(1)
        sensor.read_j()
    assert sensor.method == MEASURED


def test_gpu_with_neither_counter_nor_power_is_unavailable() -> None:
    sensor, module, _ = make([FakeAmdGpu(count=None, power_w="N/A")])
    assert not sensor.available
    assert "no energy counter" in sensor.reason
    assert module.calls["shutdown"] == 1


def test_library_missing_too_old_or_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "amdsmi", None)  # import fails
    missing = AmdSmiSensor(environ={})
    assert not missing.available and "not installed" in missing.reason
    old = AmdSmiSensor(amdsmi_module=types.ModuleType("amdsmi"), environ={})
    assert "too old" in old.reason
    failing, _, _ = make([FakeAmdGpu()], init_error=AmdSmiLibraryException(8, "DRIVER_NOT_LOADED"))
    assert not failing.available and "initialisation failed" in failing.reason


def test_read_failure_raises_runtime_error() -> None:
    gpu = FakeAmdGpu()
    sensor, _, _ = make([gpu])
    gpu.count = None
    with pytest.raises(RuntimeError, match="amd:0"):
        sensor.read_j()


def test_visible_devices() -> None:
    assert visible_indices({}, 4) == [0, 1, 2, 3]
    assert visible_indices({"HIP_VISIBLE_DEVICES": "2,0"}, 4) == [2, 0]
    assert visible_indices({"ROCR_VISIBLE_DEVICES": "1,3", "HIP_VISIBLE_DEVICES": "1"}, 4) == [3]
    assert visible_indices({"CUDA_VISIBLE_DEVICES": "1"}, 4) == [1]
    assert visible_indices({"HIP_VISIBLE_DEVICES": ""}, 4) == []
    assert visible_indices({"HIP_VISIBLE_DEVICES": "0,9,1"}, 4) == [0]
    sensor, _, _ = make(
        [FakeAmdGpu(), FakeAmdGpu(name="AMD Radeon PRO W7900")], {"HIP_VISIBLE_DEVICES": "1"}
    )
    assert sensor.gpu_names() == {"amd:1": "AMD Radeon PRO W7900"}
    hidden, _, _ = make([FakeAmdGpu()], {"ROCR_VISIBLE_DEVICES": "-1"})
    assert "hides them all" in hidden.reason


def test_use_by_process_list() -> None:
    gpus = [FakeAmdGpu(pids=[10]), FakeAmdGpu(pids=[10, 77]), FakeAmdGpu(pids=None), FakeAmdGpu()]
    sensor, _, _ = make(gpus)
    use = sensor.use_by({10})
    assert set(use) == {"amd:0", "amd:1", "amd:2"}
    assert not use["amd:0"].shared and use["amd:1"].shared
    assert all(u.sm_share is None for u in use.values())  # whole-device charging
    assert "whole GPU" in use["amd:1"].how and "unavailable" in use["amd:2"].how


def test_shared_gpu_split_by_gfx_engine_time() -> None:
    gpu = FakeAmdGpu(pids=[10, 11, 77], gfx_ns={10: 5_000, 11: 0, 77: 9_000})
    sensor, _, clock = make([gpu])
    first = sensor.use_by({10, 11})["amd:0"]
    assert first.shared and first.sm_share is None and "first sample" in first.how
    clock.advance(10)
    gpu.gfx_ns[10] += 2_000_000_000  # the kernel and its child: 3 s of gfx engine time
    gpu.gfx_ns[11] += 1_000_000_000
    gpu.gfx_ns[77] += 1_000_000_000  # another user's process: 1 s
    use = sensor.use_by({10, 11})["amd:0"]
    assert use.shared and use.sm_share == pytest.approx(0.75)
    assert use.how == "shared: split by gfx engine time"
    # That share of the energy above idle, as for NVIDIA: 10 s at 300 W, idle 100 W.
    fraction = accounting.gpu_process_fraction(3000.0, 10.0, True, use.sm_share, 100.0)
    assert fraction * 3000.0 == pytest.approx(0.75 * 2000.0)


def test_gfx_share_of_a_process_new_since_the_last_sample_counts_from_zero() -> None:
    gpu = FakeAmdGpu(pids=[77], gfx_ns={77: 4_000_000_000})
    sensor, _, _ = make([gpu])
    assert sensor.use_by({10}) == {}  # not the kernel's GPU yet; its sample is kept
    gpu.pids, gpu.gfx_ns = [10, 77], {10: 1_000_000_000, 77: 7_000_000_000}
    assert sensor.use_by({10})["amd:0"].sm_share == pytest.approx(0.25)


def test_gfx_share_through_the_process_handles_of_amdsmi_before_6_2() -> None:
    gpu = FakeAmdGpu(pids=[10, 77], gfx_ns={10: 0, 77: 0})
    sensor, _, _ = make([gpu], process_handles=True)
    sensor.use_by({10})
    gpu.gfx_ns = {10: 1_000, 77: 4_000}
    assert sensor.use_by({10})["amd:0"].sm_share == pytest.approx(0.2)


def test_shared_gpu_without_engine_usage_is_charged_whole() -> None:
    gpu = FakeAmdGpu(pids=[10, 77], engine_usage=False)
    sensor, _, _ = make([gpu])
    for _ in range(2):
        use = sensor.use_by({10})["amd:0"]
        assert use.shared and use.sm_share is None
        assert use.how == "shared, no per-process gfx engine time: whole GPU"


def test_gfx_time_that_went_back_or_did_not_grow_charges_the_whole_gpu() -> None:
    gpu = FakeAmdGpu(pids=[10, 77], gfx_ns={10: 1_000, 77: 8_000})
    sensor, _, _ = make([gpu])
    sensor.use_by({10})
    gpu.gfx_ns = {10: 3_000, 77: 500}  # pid 77 restarted (or was reused): no sample
    went_back = sensor.use_by({10})["amd:0"]
    assert went_back.sm_share is None and "went back" in went_back.how
    idle = sensor.use_by({10})["amd:0"]  # nobody's time grew since
    assert idle.sm_share is None and "no gfx engine time" in idle.how
    gpu.gfx_ns = {10: 4_000, 77: 3_500}  # measured again from the values after the reset
    assert sensor.use_by({10})["amd:0"].sm_share == pytest.approx(0.25)


def test_close_is_idempotent() -> None:
    sensor, module, _ = make([FakeAmdGpu()])
    sensor.close()
    sensor.close()
    assert module.calls["shutdown"] == 1 and not sensor.available
    with pytest.raises(RuntimeError):
        sensor.read_j()


def test_real_amdsmi_without_rocm_is_one_quiet_line() -> None:
    """The PyPI amdsmi package, where ROCm's library is absent (as on this test machine)."""
    try:
        import amdsmi  # noqa: F401
    except ImportError:
        pytest.skip("amdsmi is not installed")
    except Exception:
        pass  # installed, and its library does not load: the case under test
    else:
        pytest.skip("ROCm is installed here")
    sensor = AmdSmiSensor(environ={})
    assert not sensor.available
    assert "libamd_smi" in sensor.reason
