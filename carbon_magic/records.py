"""The JSON documents the server sends to the browser, declared once as frozen
dataclasses: the kernel's figures (its session, latest heartbeat, the running cell's
prediction, its caps), a page of recorded cells, and the summary of every kernel.

The server builds these records and serialises them with :func:`record_json.to_json`;
``scripts/generate_schema_ts.py`` writes their TypeScript interfaces and runtime checks
(``labextension/src/records.generated.ts``) from the declarations here, so a field added
here reaches the browser's types and checks by regenerating that file. A ground-floor
module: it imports nothing of the package but the shared words of ``vocabulary``.

Field names carry their units: seconds (``*_s``, and times in seconds since the epoch,
UTC: ``at``, ``now``, ``*_at``), watts (``power_w``), joules (``energy_j``), kWh
(``energy_kwh``, facility, after PUE), grams CO2e (``*_g``), litres (``*_l``), bytes
(``*_bytes``), gCO2e/kWh (``g_per_kwh``). ``*_range_*`` pairs are [low, high].
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from carbon_magic.vocabulary import Mode, Via

Range = tuple[float, float]  # [low, high]
LiveState = Literal["running", "stopped", "lost"]  # lost: silent for too long, as if killed
Scope = Literal["server", "ledger"]  # which kernels /summary lists one by one
TotalsSource = Literal["heartbeat", "cells"]  # a session's running totals, or its cells' sum

__all__ = [
    "DOCUMENTS",
    "TOTALS_NAMES",
    "CellRecord",
    "CellsPage",
    "Components",
    "Gpu",
    "Heartbeat",
    "Intensity",
    "KernelFigures",
    "KernelHint",
    "KernelSession",
    "KernelTotals",
    "KernelsTotal",
    "LedgerFile",
    "LedgerTotals",
    "LiveState",
    "Power",
    "Prediction",
    "Range",
    "Scope",
    "RemotePart",
    "RemoteTotals",
    "ScopeBudget",
    "Summary",
    "Totals",
    "TotalsSource",
    "TrackedKernel",
    "UntrackedKernel",
]


@dataclass(frozen=True)
class Components:
    """Watts (or joules) per component."""

    cpu: float
    gpu: float
    ram: float


@dataclass(frozen=True)
class Power(Components):
    """Watts per component and their sum."""

    total: float


@dataclass(frozen=True)
class Intensity:
    """The grid intensity in use (gCO2e/kWh) and where it comes from."""

    g_per_kwh: float
    source: str


@dataclass(frozen=True)
class RemotePart:
    """A cell's calls to hosted LLM APIs, estimated (EcoLogits): kWh, grams CO2e (the
    providers' grids), litres. Never added to the cell's own figures."""

    count: int
    estimated: int
    unestimated: int
    energy_kwh: float
    energy_range_kwh: Range
    emissions_g: float
    emissions_range_g: Range
    embodied_g: float
    water_l: float
    water_range_l: Range
    method: str


@dataclass(frozen=True)
class CellRecord:
    """One recorded cell, as ``GET …/cells`` returns it."""

    id: int  # the ledger row id: increases in the order cells were recorded
    cell_id: str | None  # the notebook cell id the frontend sent with the execution
    kernel_id: str | None
    session_uuid: str
    execution_count: int | None
    name: str | None
    source: str | None  # the first source line, as text (never HTML)
    via: Via
    status: str  # ok | error | interrupted | stopped by budget (and which cap)
    started_at: float
    ended_at: float
    duration_s: float
    energy_j: Components  # IT energy per component, before PUE
    power_w: Power  # mean power over the cell per component, and their sum
    energy_kwh: float  # facility energy, after PUE
    energy_range_kwh: Range
    emissions_g: float
    emissions_range_g: Range
    embodied_g: float
    intensity: Intensity
    pue: float
    mode: Mode
    methods: dict[str, str]  # how each component was obtained: measured, modelled, assumed
    budget: str | None
    remote: RemotePart | None  # hosted LLM calls, not in the figures above
    totals_include_remote: bool  # whether the figures above include remote (never, today)


@dataclass(frozen=True)
class CellsPage:
    """A page of cells: ``GET …/kernels/{id}/cells`` or ``GET …/cells?path=``."""

    kernel_id: str | None
    notebook_path: str | None
    now: float
    after: int
    limit: int
    last_id: int  # the cursor of the next page (after=last_id)
    more: bool
    cells: list[CellRecord]


@dataclass(frozen=True)
class Prediction:
    """The running cell's predicted completion."""

    fraction: float  # done, 0 to 1
    emissions_g: float  # predicted emissions of the whole cell
    emissions_range_g: Range
    eta_s: float  # seconds until the cell is predicted to end


@dataclass(frozen=True)
class Totals:
    """Cumulative figures: facility energy (kWh), operational emissions with their range
    and amortised embodied emissions (grams CO2e)."""

    energy_kwh: float = 0.0
    emissions_g: float = 0.0
    emissions_low_g: float = 0.0
    emissions_high_g: float = 0.0
    embodied_g: float = 0.0

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(getattr(self, name) + getattr(other, name) for name in TOTALS_NAMES))

    def since(self, baseline: Totals) -> Totals:
        """The growth from ``baseline`` to these totals, never negative."""
        return Totals(
            *(max(0.0, getattr(self, name) - getattr(baseline, name)) for name in TOTALS_NAMES)
        )


TOTALS_NAMES = tuple(f.name for f in fields(Totals))


@dataclass(frozen=True)
class KernelTotals(Totals):
    """A kernel's running totals, and where they come from."""

    source: TotalsSource = "heartbeat"
    n_cells: int | None = None


@dataclass(frozen=True)
class Gpu:
    """A GPU of the kernel's machine, from the tracker's hardware summary."""

    vendor: str  # nvidia, amd, apple, …: the vendor its device key names
    model: str  # the product name, as text (never HTML): NVIDIA H200


@dataclass(frozen=True)
class KernelSession:
    """The tracker lifetime (kernel process) the figures come from."""

    session_uuid: str
    host: str
    pid: int
    started_at: float
    ended_at: float | None
    interval_s: float
    mode: Mode
    methods: dict[str, str]  # how each component is obtained: measured, modelled, assumed
    gpus: dict[str, Gpu]  # the machine's GPUs by device key (nvidia:0, amd:0, apple:gpu)


@dataclass(frozen=True)
class Heartbeat:
    """The latest heartbeat of the kernel's tracker: each field is read from the
    ``heartbeats`` column of the same name (NULL, or a value not of the field's type,
    reads None)."""

    at: float
    running_cell: str | None
    running_cell_started_at: float | None
    ledger_bytes: int | None  # the ledger file's size as the beat was written


@dataclass(frozen=True)
class KernelHint:
    """The carbon-aware hint of the kernel's grid forecast."""

    text: str


@dataclass(frozen=True)
class ScopeBudget:
    """A notebook or day cap of the kernel, with what every session on the ledger spent
    on it (grams CO2e or facility kWh, as ``unit`` says)."""

    scope: Literal["day", "notebook"]
    budget: str
    limit: float
    spent: float
    remaining: float
    fraction: float
    unit: Literal["g", "kWh"]
    on_exceed: Literal["warn", "stop"]


@dataclass(frozen=True)
class RemoteTotals:
    """A session's calls to hosted LLM APIs: kWh, grams CO2e, litres."""

    count: int
    unestimated: int
    energy_kwh: float
    emissions_g: float
    emissions_range_g: Range
    water_l: float


@dataclass(frozen=True)
class KernelFigures:
    """``GET carbon-magic/api/v1/kernels/{kernel_id}``."""

    kernel_id: str
    notebook_path: str | None
    now: float
    tracker_state: LiveState
    live: bool
    stale: bool
    age_s: float
    stale_after_s: float
    power_w: Power
    totals: KernelTotals
    intensity: Intensity
    prediction: Prediction | None  # the running cell's predicted completion
    hint: KernelHint | None  # the carbon-aware hint of the grid forecast, while live
    remote: RemoteTotals | None  # the session's hosted LLM calls, not in totals
    totals_include_remote: bool  # whether totals include remote (never, today)
    heartbeat: Heartbeat | None
    session: KernelSession
    budgets: list[ScopeBudget]  # the kernel's notebook and day caps (empty when none)


@dataclass(frozen=True)
class LedgerFile:
    """The ledger the server reads."""

    path: str
    exists: bool


@dataclass(frozen=True)
class TrackedKernel:
    """A kernel of ``/summary`` with a tracker: its live state and its totals."""

    kernel_id: str
    tracked: Literal[True]
    notebook_path: str | None
    tracker_state: LiveState
    live: bool
    stale: bool
    age_s: float
    power_w: Power
    intensity: Intensity
    sessions: int
    today: Totals
    all_time: Totals


@dataclass(frozen=True)
class UntrackedKernel:
    """A kernel of ``/summary`` the server runs without a tracker."""

    kernel_id: str
    tracked: Literal[False]


@dataclass(frozen=True)
class KernelsTotal:
    """The listed kernels together: live power, today and all time."""

    power_w: Power
    today: Totals
    all_time: Totals


@dataclass(frozen=True)
class LedgerTotals:
    """Everything recorded in the ledger: today and all time."""

    today: Totals
    all_time: Totals


@dataclass(frozen=True)
class Summary:
    """``GET carbon-magic/api/v1/summary``."""

    now: float
    day_start: float  # where "today" begins
    ledger: LedgerFile
    scope: Scope
    kernels: list[TrackedKernel | UntrackedKernel]
    kernels_total: KernelsTotal
    totals: LedgerTotals


# The documents the endpoints answer: each gets a check function in TypeScript.
DOCUMENTS = (KernelFigures, CellsPage, Summary, Prediction)
