"""Fitting the CPU load curves to measured package-power sweeps, judged out of sample.

A sweep is one CPU's package power (RAPL, turbostat) measured at a series of loads.
Every figure here is a fraction of the CPU's TDP (times its sockets). For each family
the fit takes the median idle and full-load fractions and the median curvature over
the CPUs measured; full load may also follow the number of cores per package (the
data decide, see ``choose_features``). Ranges come from leave-one-CPU-out residuals:
the curve fitted without a CPU, compared with that CPU's measurements, at every load
level. ``scripts/build_cpu_curves.py`` runs all this and writes the packaged tables.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from carbon_magic.cpu_model.curves import band_at, full_within_limits, shape
from carbon_magic.cpu_model.identify import GENERIC_FAMILY, cpu_family

# Load levels (per cent) at which the ranges are stated; between them they are
# interpolated.
LEVELS = tuple(range(0, 101, 10))
# A uniform 0–100 % sweep, 1 % apart, for sweep energies.
GRID = tuple(i / 100 for i in range(101))
# Curvatures tried when fitting one sweep.
K_CHOICES = tuple(x / 10 for x in range(-60, 151))
# Quantile pairs tried for the range, and margins added to both ends (in log space: the
# low end × e^−m, the high end × e^m) for when the measured spread of a few CPUs
# understates that of the next one (see ``choose_band``). A margin widens every load
# level alike; raising each end to a power instead widens the already wide low-load
# levels most, and on the measured sweeps reaches 90 % only at about 1.5× the width.
BAND_QUANTILES = (0.10, 0.05, 0.0)
BAND_MARGINS = tuple(m / 100 for m in range(0, 81, 5))
COVERAGE_GOAL = 0.90
REFERENCE_CORES = 16  # full load is stated for this many cores when cores count
MAX_CORES_SLOPE = 0.2  # full-load change per doubling of cores, at most


@dataclass(frozen=True)
class Sweep:
    """One measured sweep: package watts of all sockets at loads 0–1, and the CPU."""

    cpu: str
    source: str
    load_type: str
    sockets: int
    tdp_w: float  # one package
    cores: int | None  # one package
    points: tuple[tuple[float, float], ...]  # (load 0–1, watts), ascending load

    @property
    def family(self) -> str:
        return cpu_family(self.cpu)

    def fraction(self, load: float) -> float:
        """Measured power at ``load`` (0–1) over TDP × sockets, linear between points."""
        scale = self.tdp_w * self.sockets
        points = self.points
        if load <= points[0][0]:
            return points[0][1] / scale
        for (u0, p0), (u1, p1) in zip(points, points[1:], strict=False):
            if load <= u1:
                return (p0 + (p1 - p0) * (load - u0) / (u1 - u0)) / scale
        return points[-1][1] / scale

    @property
    def idle(self) -> float:
        return self.fraction(0.0)

    @property
    def full(self) -> float:
        return self.fraction(1.0)


def load_sweeps(path: str | Path) -> list[Sweep]:
    """The sweeps of a CSV with columns source, cpu, sockets, tdp_w, cores, load_type,
    load_pct, package_w (one row per measured point)."""
    grouped: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            grouped.setdefault((row["source"], row["cpu"], row["load_type"]), []).append(row)
    sweeps = []
    for (source, cpu, load_type), rows in grouped.items():
        first = rows[0]
        points = sorted((float(r["load_pct"]) / 100, float(r["package_w"])) for r in rows)
        sweeps.append(
            Sweep(
                cpu=cpu,
                source=source,
                load_type=load_type,
                sockets=int(first["sockets"]),
                tdp_w=float(first["tdp_w"]),
                cores=int(first["cores"]) if first["cores"] else None,
                points=tuple(points),
            )
        )
    return sweeps


def fit_k(sweep: Sweep) -> float:
    """The curvature whose shape best matches the sweep's (least squares, between its
    own idle and full-load power)."""
    idle, full = sweep.idle, sweep.full
    span = full - idle
    measured = [(u, sweep.fraction(u)) for u, _ in sweep.points]

    def misfit(k: float) -> float:
        return sum((idle + span * shape(u, k) - value) ** 2 for u, value in measured)

    return min(K_CHOICES, key=misfit)


@dataclass(frozen=True)
class FamilyCurve:
    """Fitted figures of one family: fractions of TDP and curvature."""

    family: str
    idle: float
    full: float  # at REFERENCE_CORES when cores_slope is not 0
    k: float
    cores_slope: float  # full-load change per doubling of cores
    cpus: int

    def full_for(self, cores: int | None) -> float:
        """Full-load fraction for a package of ``cores`` (the family's figure if None)."""
        if cores is None or not self.cores_slope:
            return self.full
        value = self.full + self.cores_slope * math.log2(cores / REFERENCE_CORES)
        return full_within_limits(self.family, value)

    def fraction(self, load: float, cores: int | None) -> float:
        """Modelled power at ``load`` over TDP."""
        full = self.full_for(cores)
        return self.idle + (full - self.idle) * shape(load, self.k)


def _by_cpu(sweeps: Iterable[Sweep]) -> dict[str, list[Sweep]]:
    grouped: dict[str, list[Sweep]] = {}
    for sweep in sweeps:
        grouped.setdefault(sweep.cpu, []).append(sweep)
    return grouped


def _cores_slope(sweeps: Sequence[Sweep]) -> float:
    """Least-squares slope of full load over log2(cores), CPUs with a known core count,
    kept within [0, MAX_CORES_SLOPE]."""
    pairs = [
        (math.log2(group[0].cores), statistics.fmean(s.full for s in group))
        for group in _by_cpu(sweeps).values()
        if group[0].cores
    ]
    if len(pairs) < 3:
        return 0.0
    mean_x = statistics.fmean(x for x, _ in pairs)
    mean_y = statistics.fmean(y for _, y in pairs)
    sxx = sum((x - mean_x) ** 2 for x, _ in pairs)
    if sxx == 0:
        return 0.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in pairs) / sxx
    # Physics bounds the sign: more cores share one package power limit, so a package
    # with more cores reaches a larger share of its TDP under full load, never a
    # smaller one. A negative slope from a handful of CPUs is noise.
    return min(MAX_CORES_SLOPE, max(0.0, slope))


def _full_at_reference(group: Sequence[Sweep], slope: float) -> float:
    full = statistics.fmean(s.full for s in group)
    cores = group[0].cores
    if slope and cores:
        full -= slope * math.log2(cores / REFERENCE_CORES)
    return full


def fit(
    sweeps: Sequence[Sweep], use_cores: bool, family_shape: bool = False
) -> dict[str, FamilyCurve]:
    """Family curves from ``sweeps``: medians over CPUs (each CPU's sweeps averaged
    first), the curvature the median over sweeps. Idle power is the family's (an AMD
    package keeps its I/O die awake); full load and curvature are pooled over every
    CPU unless ``family_shape``. ``generic`` pools everything."""
    slope = _cores_slope(sweeps) if use_cores else 0.0
    families = {s.family for s in sweeps} | {GENERIC_FAMILY}
    everyone = _by_cpu(sweeps).values()
    pooled_full = statistics.median(_full_at_reference(g, slope) for g in everyone)
    pooled_k = statistics.median(fit_k(s) for s in sweeps)
    curves = {}
    for family in sorted(families):
        members = [s for s in sweeps if family == GENERIC_FAMILY or s.family == family]
        if not members:
            continue
        groups = _by_cpu(members).values()
        full, k = pooled_full, pooled_k
        if family_shape:
            full = statistics.median(_full_at_reference(g, slope) for g in groups)
            k = statistics.median(fit_k(s) for s in members)
        curves[family] = FamilyCurve(
            family=family,
            idle=round(statistics.median(statistics.fmean(s.idle for s in g) for g in groups), 4),
            full=round(full, 4),
            k=round(k, 2),
            cores_slope=round(slope, 4),
            cpus=len(groups),
        )
    return curves


def curve_for(curves: dict[str, FamilyCurve], family: str) -> FamilyCurve:
    """The family's curve, or the pooled one when the family was not measured."""
    return curves.get(family) or curves[GENERIC_FAMILY]


def sweep_mean(values: Sequence[float]) -> float:
    """Mean over a uniform sweep given at GRID (trapezoids)."""
    return (sum(values) - (values[0] + values[-1]) / 2) / (len(values) - 1)


@dataclass(frozen=True)
class OutOfSample:
    """One sweep judged by the curve fitted without its CPU."""

    sweep: Sweep
    energy_error: float  # modelled / measured sweep energy − 1
    ratios: tuple[float, ...]  # measured / modelled at each of LEVELS
    point_ratios: tuple[tuple[float, float], ...]  # (load, measured / modelled), measured points


def judge(curve: FamilyCurve, sweep: Sweep) -> OutOfSample:
    """``sweep`` against ``curve``: signed sweep-energy error and ratios."""
    modelled = [curve.fraction(u, sweep.cores) for u in GRID]
    measured = [sweep.fraction(u) for u in GRID]
    return OutOfSample(
        sweep=sweep,
        energy_error=sweep_mean(modelled) / sweep_mean(measured) - 1,
        ratios=tuple(
            sweep.fraction(p / 100) / curve.fraction(p / 100, sweep.cores) for p in LEVELS
        ),
        point_ratios=tuple(
            (u, sweep.fraction(u) / curve.fraction(u, sweep.cores)) for u, _ in sweep.points
        ),
    )


def leave_one_cpu_out(
    sweeps: Sequence[Sweep], use_cores: bool, family_shape: bool = False
) -> list[OutOfSample]:
    """Every sweep judged by the curves fitted on the other CPUs' sweeps."""
    results = []
    for cpu, group in _by_cpu(sweeps).items():
        others = [s for s in sweeps if s.cpu != cpu]
        curves = fit(others, use_cores, family_shape)
        for sweep in group:
            results.append(judge(curve_for(curves, sweep.family), sweep))
    return results


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def band_from(
    results: Sequence[OutOfSample], q: float, margin: float = 0.0
) -> tuple[tuple[float, float], ...]:
    """(low, high) multipliers at each of LEVELS: the q and 1 − q quantiles of the
    out-of-sample ratios there (never above 1 / below 1, so the central value is
    inside), the low one × e^−``margin`` and the high one × e^``margin``."""
    band = []
    for index in range(len(LEVELS)):
        ratios = [r.ratios[index] for r in results]
        low = min(1.0, _quantile(ratios, q)) * math.exp(-margin)
        high = max(1.0, _quantile(ratios, 1 - q)) * math.exp(margin)
        band.append((round(low, 3), round(high, 3)))
    return tuple(band)


def inside(result: OutOfSample, band: Sequence[tuple[float, float]]) -> list[bool]:
    """Whether each measured point of the sweep lies inside the band."""
    flags = []
    for load, ratio in result.point_ratios:
        low, high = band_at(band, load)
        flags.append(low - 1e-9 <= ratio <= high + 1e-9)
    return flags


def held_out_coverage(results: Sequence[OutOfSample], q: float, margin: float = 0.0) -> float:
    """Share of measured points inside a band built without their CPU's residuals."""
    flags = []
    for result in results:
        others = [r for r in results if r.sweep.cpu != result.sweep.cpu]
        flags.extend(inside(result, band_from(others, q, margin)))
    return sum(flags) / len(flags)


def band_width(band: Sequence[tuple[float, float]]) -> float:
    """Mean of log(high / low) over the levels: how wide a band is."""
    return statistics.fmean(math.log(high / low) for low, high in band)


def choose_band(results: Sequence[OutOfSample]) -> tuple[float, float, float]:
    """(quantile, margin, held-out coverage): of the bands whose coverage on CPUs left
    out of them reaches COVERAGE_GOAL, the narrowest (the widest tried otherwise)."""
    tried = [(q, margin) for q in BAND_QUANTILES for margin in BAND_MARGINS]
    tried.sort(key=lambda pair: band_width(band_from(results, *pair)))
    for q, margin in tried:
        coverage = held_out_coverage(results, q, margin)
        if coverage >= COVERAGE_GOAL:
            return q, margin, coverage
    q, margin = tried[-1]
    return q, margin, held_out_coverage(results, q, margin)


def mean_abs_cpu_error(results: Sequence[OutOfSample]) -> float:
    """Mean over CPUs of |sweep-energy error| (each CPU's sweeps averaged first)."""
    per_cpu: dict[str, list[float]] = {}
    for result in results:
        per_cpu.setdefault(result.sweep.cpu, []).append(result.energy_error)
    return statistics.fmean(abs(statistics.fmean(e)) for e in per_cpu.values())


FEATURE_CHOICES = {
    # (use the core count, a shape of each family's own)
    "TDP": (False, True),
    "TDP, shape pooled": (False, False),
    "TDP and cores": (True, True),
    "TDP and cores, shape pooled": (True, False),
}


def choose_features(sweeps: Sequence[Sweep]) -> tuple[str, dict[str, float]]:
    """The feature set with the lowest mean |energy error| out of sample, and every
    set's error (FEATURE_CHOICES)."""
    errors = {
        name: mean_abs_cpu_error(leave_one_cpu_out(sweeps, *flags))
        for name, flags in FEATURE_CHOICES.items()
    }
    return min(errors, key=lambda name: errors[name]), errors
