"""One tick's counter differences, charged to each attribution mode.

The tracker reads every source's cumulative counters at one instant (``RawCounters``);
``TickAttributor`` turns two consecutive readings into what machine and process mode are
charged over the tick (``accounting.Attribution``). It also keeps what process mode
needs between ticks: which GPUs the kernel uses, each GPU's idle power, the embodied
rates. Nothing here reads hardware or clocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from carbon_magic.engine import accounting
from carbon_magic.engine.measurement import is_gpu_key
from carbon_magic.sensors.base import SHARE_BY_CPU_TIME, EnergySource, GpuUse
from carbon_magic.settings import Settings
from carbon_magic.vocabulary import COMPONENTS

# Ticks shorter than this do not update a GPU's idle-power estimate (noise), seconds.
MIN_IDLE_SAMPLE_S = 0.2

# One device's reading: (its source, cumulative joules, cumulative (low, high) joules
# for sources whose model carries its own range, else None).
CounterReading = tuple[EnergySource, float, tuple[float, float] | None]


@dataclass(frozen=True)
class RawCounters:
    """Raw counters read at one instant: ``t_ns`` (monotonic ns), every device's
    ``CounterReading``, the machine's busy CPU seconds, the kernel tree's CPU seconds
    and its resident memory (bytes)."""

    t_ns: int
    counters: dict[str, CounterReading]
    system_busy_s: float
    process_cpu_s: float
    process_rss_b: int


class TickAttributor:
    """Charges a tick's energy to machine mode (all of it) and process mode (the
    kernel's share: CPU time, memory, the GPUs it uses).

    Until ``set_gpu_use`` is first called, every GPU counts as used, whole."""

    def __init__(self) -> None:
        # device key -> how the kernel uses it (None: used, share unknown); a GPU not
        # listed is unused.
        self._gpu_use: dict[str, GpuUse | None] = {}
        self._gpu_use_known = False
        self._gpu_idle_w: dict[str, float] = {}
        self._embodied_cache: tuple[tuple[float, float, float], tuple[float, float]] | None = None

    def set_gpu_use(self, use: dict[str, GpuUse | None]) -> None:
        """What the kernel's processes use now: device key -> ``GpuUse`` (``None``:
        the whole device); devices not in ``use`` are unused."""
        self._gpu_use = use
        self._gpu_use_known = True

    def attribute(
        self,
        previous: RawCounters,
        raw: RawCounters,
        total_memory_bytes: int,
        settings: Settings,
    ) -> dict[str, accounting.Attribution] | None:
        """What each mode is charged between ``previous`` and ``raw``; ``None`` when
        no time passed. A device absent from ``previous`` (a fallback that appeared
        since) only takes its baseline."""
        dt_s = (raw.t_ns - previous.t_ns) / 1e9
        if dt_s <= 0:
            return None
        share = accounting.cpu_share(
            raw.process_cpu_s - previous.process_cpu_s, raw.system_busy_s - previous.system_busy_s
        )
        memory = accounting.memory_share(raw.process_rss_b, total_memory_bytes)
        ticks: list[accounting.DeviceTick] = []
        gpu_keys: list[str] = []
        for key, (source, joules, bounds) in raw.counters.items():
            before = previous.counters.get(key)
            if before is None:
                continue
            delta_j = joules - before[1]
            before_bounds = before[2]
            if bounds is not None and before_bounds is not None:
                low, high = bounds[0] - before_bounds[0], bounds[1] - before_bounds[1]
                energy = accounting.EnergyRange(delta_j, low, high)
            else:
                energy = accounting.method_range(delta_j, source.method)
            if source.component == "gpu":
                if is_gpu_key(key):  # embodied emissions count GPUs, not the Neural Engine
                    gpu_keys.append(key)
                fraction = self._gpu_fraction(key, delta_j, dt_s)
            elif source.process_share == SHARE_BY_CPU_TIME:
                fraction = share
            else:
                fraction = memory
            ticks.append(
                accounting.DeviceTick(
                    source.component, key if source.itemised else None, energy, fraction
                )
            )
        server_rate, gpu_rate = self._embodied_rates(settings)
        used = sum(1 for key in gpu_keys if self._gpu_used(key))
        embodied = accounting.embodied_tick_g(
            dt_s, server_rate, gpu_rate, len(gpu_keys), used, share
        )
        return accounting.attribute_tick(ticks, embodied, COMPONENTS)

    def _gpu_fraction(self, key: str, energy_j: float, dt_s: float) -> float:
        """Process mode's fraction of one GPU's tick energy (see accounting)."""
        if not self._gpu_use_known:
            return 1.0
        if key not in self._gpu_use:
            return 0.0
        use = self._gpu_use[key]
        # Idle power: the lowest power seen on this GPU on earlier ticks (0 before any).
        idle_w = self._gpu_idle_w.get(key, 0.0)
        if dt_s >= MIN_IDLE_SAMPLE_S:
            power = energy_j / dt_s
            self._gpu_idle_w[key] = min(self._gpu_idle_w.get(key, power), power)
        sm_share = use.sm_share if use is not None else None
        return accounting.gpu_process_fraction(energy_j, dt_s, True, sm_share, idle_w)

    def _gpu_used(self, key: str) -> bool:
        return not self._gpu_use_known or key in self._gpu_use

    def _embodied_rates(self, settings: Settings) -> tuple[float, float]:
        """(server, per-GPU) embodied g/s, recomputed only when their settings change."""
        inputs = (settings.embodied_server_kg, settings.embodied_gpu_kg, settings.lifetime_years)
        cached = self._embodied_cache
        if cached is None or cached[0] != inputs:
            rates = accounting.embodied_rate_g_per_s(inputs[0], inputs[1], 1, inputs[2])
            self._embodied_cache = cached = (inputs, rates)
        return cached[1]
