"""Load→power curves of CPU packages by family, and the range the true power lies in.

A curve gives package power as a fraction of the thermal design power (TDP) at
utilisation ``u`` (busy share of CPU time, 0–1)::

    P(u) / TDP = idle + (full - idle) · s(u),    s(u) = (1 - e^(-k·u)) / (1 - e^(-k))

``s`` rises from 0 to 1; ``k > 0`` is concave (most of the rise early), ``k = 0``
linear (``s = u``), ``k < 0`` convex. Full load may depend on the cores per package:
``full + cores_slope · log2(cores / reference_cores)``. The figures and the range (low
and high multipliers of the central value at 0, 10, … 100 % load) are fitted to
measured package-power sweeps by ``scripts/build_cpu_curves.py`` and packaged in
``carbon_magic/data`` (``cpu_load_curves.csv``, ``cpu_load_bands.csv``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

# Full load as a fraction of TDP stays inside what measured CPUs span.
FULL_LIMITS = (0.45, 1.3)
# An AMD package holds its power to the package power tracking limit (PPT), which is
# the TDP unless the platform sets it otherwise: its full load does not pass the TDP.
# Intel hosts may run a power limit above the TDP (cloud bare metal up to 1.3 × TDP).
FULL_CEILING = {"amd-zen": 1.0}


def full_within_limits(family: str, value: float) -> float:
    """A full-load fraction kept within FULL_LIMITS and the family's ceiling."""
    ceiling = FULL_CEILING.get(family, FULL_LIMITS[1])
    return min(ceiling, max(FULL_LIMITS[0], value))


def shape(utilisation: float, k: float) -> float:
    """Normalised rise ``s(u)`` in [0, 1] of a curve with curvature ``k`` (u clamped)."""
    u = min(1.0, max(0.0, utilisation))
    if abs(k) < 1e-9:
        return u
    return (1.0 - math.exp(-k * u)) / (1.0 - math.exp(-k))


def mean_shape(k: float) -> float:
    """Mean of ``s(u)`` over a uniform 0–100 % sweep (0.5 for a straight line)."""
    if abs(k) < 1e-9:
        return 0.5
    return (1.0 - (1.0 - math.exp(-k)) / k) / (1.0 - math.exp(-k))


def band_at(band: Sequence[tuple[float, float]], utilisation: float) -> tuple[float, float]:
    """(low, high) multipliers of a band given at evenly spaced loads 0…1, linear
    between them (``utilisation`` clamped to 0–1)."""
    if len(band) == 1:
        return band[0]
    position = min(1.0, max(0.0, utilisation)) * (len(band) - 1)
    index = min(int(position), len(band) - 2)
    t = position - index
    (lo0, hi0), (lo1, hi1) = band[index], band[index + 1]
    return lo0 + (lo1 - lo0) * t, hi0 + (hi1 - hi0) * t


@dataclass(frozen=True)
class LoadCurve:
    """A family's load→power curve in fractions of TDP, with its range and basis.

    ``idle`` and ``full`` are package power at 0 % and 100 % load as fractions of TDP
    (``full`` for ``reference_cores`` cores when ``cores_slope`` is not 0); ``k`` the
    curvature; ``band`` the (low, high) multipliers of the central power at evenly
    spaced loads from 0 to 100 %; ``basis`` one line saying where the figures come from.
    """

    name: str
    label: str
    idle: float
    full: float
    k: float
    band: tuple[tuple[float, float], ...]
    basis: str
    cores_slope: float = 0.0
    reference_cores: int = 16

    def shape(self, utilisation: float) -> float:
        """Normalised rise of this curve at ``utilisation`` (0 at idle, 1 at full load)."""
        return shape(utilisation, self.k)

    def full_for(self, cores: int | None) -> float:
        """Full-load power over TDP for a package of ``cores`` cores (None: unknown)."""
        if cores is None or not self.cores_slope:
            return self.full
        value = self.full + self.cores_slope * math.log2(cores / self.reference_cores)
        return full_within_limits(self.name, value)

    def fraction(self, utilisation: float, cores: int | None = None) -> float:
        """Central package power at ``utilisation`` as a fraction of TDP."""
        full = self.full_for(cores)
        return self.idle + (full - self.idle) * self.shape(utilisation)

    def band_at(self, utilisation: float) -> tuple[float, float]:
        """(low, high) multipliers of the central power at ``utilisation``."""
        return band_at(self.band, utilisation)

    def widened(self, low: float, high: float, why: str) -> LoadCurve:
        """This curve with its range multiplied by (``low``, ``high``): a further
        uncertainty (a TDP estimated, a per-vCPU figure) on top of the curve's own."""
        band = tuple((lo * low, hi * high) for lo, hi in self.band)
        return replace(
            self, band=band, basis=f"{self.basis}; range widened ×{low:.2f}–×{high:.2f} ({why})"
        )

    def describe(self) -> str:
        """One line: the curve's figures and their basis."""
        full = f"full load {self.full:.0%} of TDP"
        if self.cores_slope:
            full += (
                f" at {self.reference_cores} cores ({self.cores_slope:+.1%} of TDP per "
                "doubling of the cores)"
            )
        return (
            f"{self.label} curve: idle {self.idle:.0%}, {full}, "
            f"{_curvature_word(self.k)} (k={self.k:g}); {self.basis}"
        )


def _curvature_word(k: float) -> str:
    if k > 0.25:
        return "concave"
    if k < -0.25:
        return "slightly convex" if k > -1.5 else "convex"
    return "near-linear"


LABELS = {"amd-zen": "AMD Zen", "intel-xeon": "Intel Xeon", "generic": "generic"}


@functools.cache
def families() -> dict[str, LoadCurve]:
    """The fitted family curves (``amd-zen``, ``intel-xeon``, ``generic``) with the
    packaged range, read once."""
    from carbon_magic.data import CURVE_BAND_FILE, CURVE_FILE, read_table

    band = tuple((float(row["low"]), float(row["high"])) for row in read_table(CURVE_BAND_FILE))
    curves = {}
    for row in read_table(CURVE_FILE):
        name = row["family"]
        curves[name] = LoadCurve(
            name=name,
            label=LABELS.get(name, name),
            idle=float(row["idle"]),
            full=float(row["full"]),
            k=float(row["k"]),
            band=band,
            basis=row["basis"],
            cores_slope=float(row["cores_slope"]),
            reference_cores=int(row["reference_cores"]),
        )
    return curves


# Users who set idle and full-load watts themselves get a straight line between them
# (what they asked for) and a wide range: the figures are theirs, not measured.
LINEAR = LoadCurve(
    name="linear",
    label="linear",
    idle=0.2,
    full=1.0,
    k=0.0,
    band=((0.6, 1.4),),
    basis="a straight line between the idle and full-load watts given",
)
