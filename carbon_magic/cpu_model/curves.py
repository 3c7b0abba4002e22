"""Load→power curves of CPU packages by family, and the band the true power lies in.

A curve gives package power as a fraction of the thermal design power (TDP) at
utilisation ``u`` (busy share of CPU time, 0–1)::

    P(u) / TDP = idle + (full - idle) · s(u),    s(u) = (1 - e^(-k·u)) / (1 - e^(-k))

``s`` rises from 0 to 1; ``k > 0`` is concave (most of the rise early), ``k = 0``
linear (``s = u``), ``k < 0`` convex. Each family has a central curve and a span for
each of ``idle``, ``full`` and ``k``; the band at a load is the lowest and highest
curve those spans allow, capped at ±40 % of the central value. Where the numbers come
from is written next to each family (and in the README, "CPU power model").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The widest band we state, relative to the central value: a range wider than this
# says too little to be useful.
MAX_HALF_WIDTH = 0.40


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


@dataclass(frozen=True)
class LoadCurve:
    """A family's load→power curve in fractions of TDP, with its spans and sources.

    ``idle`` and ``full`` are package power at 0 % and 100 % load as fractions of TDP;
    ``k`` the curvature; ``*_span`` the (low, high) each may take; ``basis`` one line
    saying where the figures come from.
    """

    name: str
    label: str
    idle: float
    full: float
    k: float
    idle_span: tuple[float, float]
    full_span: tuple[float, float]
    k_span: tuple[float, float]
    basis: str

    def shape(self, utilisation: float) -> float:
        """Normalised rise of this curve at ``utilisation`` (0 at idle, 1 at full load)."""
        return shape(utilisation, self.k)

    def fraction(self, utilisation: float) -> float:
        """Central package power at ``utilisation`` as a fraction of TDP."""
        return self.idle + (self.full - self.idle) * self.shape(utilisation)

    def band(self, utilisation: float) -> tuple[float, float]:
        """(low, high) multipliers of the central power at ``utilisation``.

        The lowest curve (low idle, low full load, least concave) and the highest
        (high idle, high full load, most concave) bound every combination of the
        spans, because each parameter raises the curve at every load. Capped at
        ``1 ± MAX_HALF_WIDTH``.
        """
        central = self.fraction(utilisation)
        low = self.idle_span[0] + (self.full_span[0] - self.idle_span[0]) * shape(
            utilisation, self.k_span[0]
        )
        high = self.idle_span[1] + (self.full_span[1] - self.idle_span[1]) * shape(
            utilisation, self.k_span[1]
        )
        low_ratio = min(1.0, max(1.0 - MAX_HALF_WIDTH, low / central))
        high_ratio = max(1.0, min(1.0 + MAX_HALF_WIDTH, high / central))
        return low_ratio, high_ratio

    def describe(self) -> str:
        """One line: the curve's figures and their basis."""
        return (
            f"{self.label} curve: idle {self.idle:.0%}, full load {self.full:.0%} of TDP, "
            f"{_curvature_word(self.k)} (k={self.k:g}); {self.basis}"
        )


def _curvature_word(k: float) -> str:
    if k > 0.25:
        return "concave"
    if k < -0.25:
        return "slightly convex" if k > -1.5 else "convex"
    return "near-linear"


# ----------------------------------------------------------------------- the families
#
# Idle and full-load fractions are package power (RAPL), not wall power. Public facts
# used: sustained full-load package power is typically 0.5–0.95 × TDP and idle
# 0.08–0.25 × TDP; Boavizta's TDP-ratio profile (fitted on SPECpower) puts idle at
# 0.12 × TDP; AnandTech measured EPYC Rome package idle near 65 W per socket (Milan
# review, 2021), 0.29 × TDP for a 225 W part, the I/O die staying awake. The
# curvature of the Intel family is the median of the curvatures fitted to the
# SPECpower_ssj2008 results in benchmarks/data/specpower_load_curves.csv (wall power,
# whose dynamic part is mostly the CPU); its span covers their 10th–90th percentiles.
# Those results show AMD EPYC only mildly concave at the wall (k 0.36–1.7, median
# 0.74); their 10th percentile is the low end of the Zen span, as package power of Zen
# parts rises much faster than the wall's: most
# of it drawn by 20–50 % load (the I/O die and fabric wake with the first busy core,
# and boost clocks fall as more cores share the package power limit).

AMD_ZEN = LoadCurve(
    name="amd-zen",
    label="AMD Zen",
    idle=0.22,
    full=0.85,
    k=4.0,
    idle_span=(0.13, 0.31),
    full_span=(0.65, 1.0),
    k_span=(0.34, 8.0),
    basis="idle from AnandTech's EPYC package idle and the 0.08–0.25 × TDP band, full "
    "load near the package power limit, concave as Zen package power is (most drawn by "
    "20–50 % load); SPECpower EPYC results bound the shape from below",
)

INTEL_XEON = LoadCurve(
    name="intel-xeon",
    label="Intel Xeon",
    idle=0.12,
    full=0.75,
    k=-0.35,
    idle_span=(0.07, 0.20),
    full_span=(0.55, 0.95),
    k_span=(-1.25, 0.64),
    basis="idle 0.12 × TDP as in Boavizta's TDP-ratio profile, full load mid-band of "
    "0.5–0.95 × TDP, shape the median of 28 SPECpower_ssj2008 Xeon results (2009–2022)",
)

GENERIC = LoadCurve(
    name="generic",
    label="generic",
    idle=0.15,
    full=0.80,
    k=1.0,
    idle_span=(0.08, 0.25),
    full_span=(0.50, 0.95),
    k_span=(-1.25, 8.0),
    basis="CPU family not recognised: the middle of the public bands (idle 0.08–0.25, "
    "full load 0.5–0.95 × TDP) between the Intel and AMD shapes",
)

# Users who set idle and full-load watts themselves get a straight line between them
# (what they asked for) and the widest band we state.
LINEAR = LoadCurve(
    name="linear",
    label="linear",
    idle=0.2,
    full=1.0,
    k=0.0,
    idle_span=(0.12, 0.28),
    full_span=(0.6, 1.4),
    k_span=(0.0, 0.0),
    basis="a straight line between the idle and full-load watts given",
)

FAMILIES: dict[str, LoadCurve] = {c.name: c for c in (AMD_ZEN, INTEL_XEON, GENERIC, LINEAR)}


# ------------------------------------------------------------------------ fitting


def fit_curvature(loads: Sequence[float], powers: Sequence[float]) -> float:
    """Curvature ``k`` whose ``s(u)`` best fits a measured load curve (least squares).

    ``loads`` are utilisations (0–1) including 0 and 1, ``powers`` the measured watts
    at each. The curve is normalised by its idle and full-load points, and only the
    points in between are fitted; ``k`` is searched over [-6, 12] in steps of 0.01.
    Raises ``ValueError`` when there is no 0 and 1 point or full load is not above idle.
    """
    pairs = dict(zip(loads, powers, strict=True))
    if 0.0 not in pairs or 1.0 not in pairs or pairs[1.0] <= pairs[0.0]:
        raise ValueError("a load curve needs points at 0 and 1 with full load above idle")
    idle, full = pairs[0.0], pairs[1.0]
    inner = [(u, (p - idle) / (full - idle)) for u, p in pairs.items() if 0.0 < u < 1.0]
    best_k, best_error = 0.0, math.inf
    for step in range(-600, 1201):
        k = step / 100
        error = sum((shape(u, k) - s) ** 2 for u, s in inner)
        if error < best_error:
            best_k, best_error = k, error
    return best_k
