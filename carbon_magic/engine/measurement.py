"""The result of one measured window: the contract shared by the API, magics and ledger."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from carbon_magic.formatting import (
    format_duration,
    format_grams,
    format_grams_range,
    format_kwh,
    format_methods,
)
from carbon_magic.vocabulary import COMPONENTS, GPU_VENDORS

J_PER_KWH = 3.6e6

# Device keys in ``Measurement.devices``: CPU and DRAM zones (``package-0``, ``dram-0``,
# ``psys``, ``apple:cpu``, ``apple:dram``) and GPUs, which carry their vendor
# (``nvidia:0``, ``amd:1``, ``apple:gpu``, ``apple:ane``). Ledgers written before vendors
# were told apart hold ``gpu<index>`` for NVIDIA GPUs.
_LEGACY_GPU_PREFIX = "gpu"
# Apple's Neural Engine: measured with the accelerators (its energy is GPU energy), but
# not a GPU, so counts of GPUs (exports' gpu_count, embodied emissions per GPU) leave it out.
APPLE_ANE_KEY = "apple:ane"
_NOT_GPUS = frozenset({APPLE_ANE_KEY})


def device_vendor(key: str) -> str | None:
    """The vendor a device key names (``"nvidia"`` for ``nvidia:0`` and for the older
    ``gpu0``), or ``None`` for keys without one (``package-0``, ``dram-0``, ``psys``)."""
    vendor, sep, _ = key.partition(":")
    if sep and vendor in GPU_VENDORS:
        return vendor
    if key.startswith(_LEGACY_GPU_PREFIX) and key[len(_LEGACY_GPU_PREFIX) :].isdigit():
        return "nvidia"
    return None


def is_gpu_key(key: str) -> bool:
    """Whether an accelerator's device key names a GPU (``nvidia:0``, ``amd:1``,
    ``apple:gpu``, ``gpu0``) rather than another accelerator measured with them
    (``apple:ane``, Apple's Neural Engine)."""
    return key not in _NOT_GPUS


@dataclass
class Measurement:
    """Energy and emissions of one window (a block, a cell).

    Units: seconds, joules, kWh, grams CO2e, gCO2e/kWh. ``energy_j`` is IT energy per
    component (before PUE); ``energy_kwh`` is the facility total (after PUE).
    ``emissions_g`` is operational only; ``embodied_g`` is reported beside it.
    """

    name: str
    duration_s: float = 0.0
    energy_j: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0))
    energy_kwh: float = 0.0
    energy_range_kwh: tuple[float, float] = (0.0, 0.0)
    emissions_g: float = 0.0
    emissions_range_g: tuple[float, float] = (0.0, 0.0)
    embodied_g: float = 0.0
    intensity_g_per_kwh: float = 0.0
    intensity_source: str = ""
    pue: float = 1.0
    methods: dict[str, str] = field(default_factory=dict)
    devices: dict[str, float] = field(default_factory=dict)
    mode: str = "process"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    # Cell bookkeeping, filled by the magics (None for API windows).
    execution_count: int | None = None
    cell_id: str | None = None
    status: str = "ok"
    source: str | None = None
    # Work the cell sent to a cluster, already included in the figures above: None
    # without a cluster, else {"engine": "dask" | "ray", "hosts": {host_id: {"name",
    # "workers" (Ray: nodes), "in_kernel", "energy_j": {cpu, gpu, ram}, "embodied_g",
    # "methods"}}, "missing_workers": n, "energy_kwh", "emissions_g", "embodied_g"}, and
    # "partial": why, where some of it could not be measured (see carbon_magic.cluster).
    cluster: dict[str, Any] | None = None
    # Calls to hosted model APIs, estimated and NOT included in the figures above: None
    # without any, else carbon_magic.remote.summary's dict ("calls", "count",
    # "energy_kwh", "emissions_g" with ranges, "embodied_g", "water_l", "method"...).
    remote: dict[str, Any] | None = None

    @property
    def energy_total_j(self) -> float:
        """IT energy of all components, joules (before PUE)."""
        return sum(self.energy_j.values())

    @property
    def power_w(self) -> dict[str, float]:
        """Mean power per component over the window, watts."""
        if self.duration_s <= 0:
            return dict.fromkeys(self.energy_j, 0.0)
        return {name: joules / self.duration_s for name, joules in self.energy_j.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO 8601 UTC strings, tuples as lists)."""
        data = asdict(self)
        for key in ("started_at", "ended_at"):
            value = data[key]
            data[key] = value.astimezone(timezone.utc).isoformat() if value else None
        data["energy_range_kwh"] = list(self.energy_range_kwh)
        data["emissions_range_g"] = list(self.emissions_range_g)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """Inverse of ``to_dict``; unknown keys are ignored."""
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        for key in ("started_at", "ended_at"):
            if isinstance(known.get(key), str):
                known[key] = datetime.fromisoformat(known[key])
        for key in ("energy_range_kwh", "emissions_range_g"):
            if key in known and known[key] is not None:
                known[key] = tuple(known[key])
        return cls(**known)

    def summary_line(self, title: str | None = None) -> str:
        """One line summarising the figures (``title`` defaults to the name), e.g.
        ``fit: 12 s · 1.2 Wh · ≈ 0.5 g (0.3–0.7 g) CO2e · grid 56 g/kWh (static: FR)``."""
        parts = [
            f"{title or self.name or 'cell'}: {format_duration(self.duration_s)}",
            format_kwh(self.energy_kwh),
            f"{format_grams_range(self.emissions_g, *self.emissions_range_g)} CO2e",
        ]
        if self.embodied_g:
            parts.append(f"+ embodied {format_grams(self.embodied_g)}")
        parts.append(f"grid {self.intensity_g_per_kwh:.0f} g/kWh ({self.intensity_source})")
        if self.methods:
            parts.append(format_methods(self.methods))
        if self.status and self.status != "ok":
            parts.append(self.status)
        return " · ".join(parts)

    def __repr__(self) -> str:
        return f"<Measurement {self.summary_line()}>"
