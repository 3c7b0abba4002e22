"""The CPU power model out of sample: every measured CPU judged by the curves fitted
without it, beside CodeCarbon 3.3's formula and this package's previous curves.

    python benchmarks/bench_cpu_model.py [--sweeps benchmarks/data/package_power_sweeps.csv]

The sweeps are measured package power (RAPL) at a series of loads
(benchmarks/data/SOURCES.md). Per sweep it prints the signed energy error over a
uniform 0–100 % sweep (model / measured − 1, both as fractions of TDP × sockets,
measured points joined by straight lines) and the share of measured points inside the
range, for:

- ours:  the curve fitted with this CPU left out (carbon_magic.cpu_model.fit), its
         range built from the other CPUs' out-of-sample residuals;
- prev:  the previous family curves (Intel Xeon idle 0.12, full 0.75, k −0.35; AMD Zen
         0.22, 0.85, 4; generic 0.15, 0.80, 1) and their spans capped at ±40 %;
- cc:    CodeCarbon 3.3 without RAPL, max(TDP · u, 0.1 · TDP) (codecarbon/external/
         hardware.py; its Threadripper special case is not applied); it states no
         range, so its "in" is the share of points within ±20 % of its value;
- vcpu:  the per-vCPU path (CCF full-load watts per vCPU over its ratio to the TDP per
         thread of the cloud CPU table's hosts as TDP per vCPU, the curve fitted without
         this CPU), for CPUs the CCF tables recognise; vcpu-spec the same with SPECpower's
         relation (wall power at full load = 1.13 × TDP) instead.

Then that ratio judged out of sample on the cloud CPU table (each row's TDP per thread
from the ratio of the other rows, and from SPECpower's 1.13),

the range's width per load level and SPECpower wall-power shapes as a secondary
check. Measurements, not pass/fail: exits 0.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carbon_magic.cpu_model import fit  # noqa: E402
from carbon_magic.cpu_model.curves import shape  # noqa: E402
from carbon_magic.cpu_model.estimate import WALL_PER_TDP  # noqa: E402
from carbon_magic.cpu_model.identify import (  # noqa: E402
    ccf_coefficients,
    ccf_per_tdp_per_thread,
    cloud_specs,
    cpu_family,
    cpu_microarchitecture,
)

DATA = Path(__file__).parent / "data"
SWEEPS = DATA / "package_power_sweeps.csv"
SPECPOWER = DATA / "specpower_load_curves.csv"
CC_TOLERANCE = 0.20
# The previous curves: (idle, full, k) and (idle, full, k) spans, capped at ±40 %.
PREVIOUS = {
    "amd-zen": ((0.22, 0.85, 4.0), ((0.13, 0.31), (0.65, 1.0), (0.34, 8.0))),
    "intel-xeon": ((0.12, 0.75, -0.35), ((0.07, 0.20), (0.55, 0.95), (-1.25, 0.64))),
    "generic": ((0.15, 0.80, 1.0), ((0.08, 0.25), (0.50, 0.95), (-1.25, 8.0))),
}


def previous(family: str, u: float) -> tuple[float, float, float]:
    """(central, low, high) of the previous curve at ``u``, fractions of TDP."""
    (idle, full, k), ((i0, i1), (f0, f1), (k0, k1)) = PREVIOUS[family]
    central = idle + (full - idle) * shape(u, k)
    low = max(0.6 * central, min(central, i0 + (f0 - i0) * shape(u, k0)))
    high = min(1.4 * central, max(central, i1 + (f1 - i1) * shape(u, k1)))
    return central, low, high


def codecarbon(u: float) -> float:
    return max(u, 0.1)


def energy_error(model: list[float], sweep: fit.Sweep) -> float:
    measured = [sweep.fraction(u) for u in fit.GRID]
    return fit.sweep_mean(model) / fit.sweep_mean(measured) - 1


def share(flags: list[bool]) -> float:
    return sum(flags) / len(flags)


def vcpu_error(sweep: fit.Sweep, curve: fit.FamilyCurve, ratio: float) -> float | None:
    """Sweep-energy error of the per-vCPU path for this CPU (CCF's watts / ``ratio`` as
    the TDP per vCPU), None if not recognised."""
    architecture = cpu_microarchitecture(sweep.cpu)
    found = ccf_coefficients(architecture, "aws") if architecture else None
    if found is None or sweep.cores is None:
        return None
    threads = 2 * sweep.cores * sweep.sockets
    reference_w = found[1] / ratio * threads
    scale = sweep.tdp_w * sweep.sockets
    model = [reference_w * curve.fraction(u, None) / scale for u in fit.GRID]
    return energy_error(model, sweep)


def rows(sweeps: list[fit.Sweep]) -> list[dict]:
    chosen, _ = fit.choose_features(sweeps)
    flags = fit.FEATURE_CHOICES[chosen]
    results = fit.leave_one_cpu_out(sweeps, *flags)
    q, margin, _ = fit.choose_band(results)
    table = []
    for result in results:
        sweep = result.sweep
        others = [r for r in results if r.sweep.cpu != sweep.cpu]
        band = fit.band_from(others, q, margin)
        curves = fit.fit([s for s in sweeps if s.cpu != sweep.cpu], *flags)
        curve = fit.curve_for(curves, sweep.family)
        family = cpu_family(sweep.cpu)
        prev = [previous(family, u)[0] for u in fit.GRID]
        prev_in = [
            previous(family, u)[1] <= sweep.fraction(u) <= previous(family, u)[2]
            for u, _ in sweep.points
        ]
        cc_in = [
            abs(sweep.fraction(u) / codecarbon(u) - 1) <= CC_TOLERANCE for u, _ in sweep.points
        ]
        table.append(
            {
                "sweep": sweep,
                "ours": result.energy_error,
                "in": share(fit.inside(result, band)),
                "prev": energy_error(prev, sweep),
                "prev_in": share(prev_in),
                "cc": energy_error([codecarbon(u) for u in fit.GRID], sweep),
                "cc_in": share(cc_in),
                "vcpu": vcpu_error(sweep, curve, ccf_per_tdp_per_thread()[0]),
                "vcpu-spec": vcpu_error(sweep, curve, WALL_PER_TDP),
            }
        )
    return table


def _pct(value: float | None) -> str:
    return "     —" if value is None else f"{value:+6.0%}"


def summary(table: list[dict], key: str) -> str:
    per_cpu: dict[str, list[float]] = {}
    for row in table:
        if row[key] is not None:
            per_cpu.setdefault(row["sweep"].cpu, []).append(row[key])
    errors = [statistics.fmean(v) for v in per_cpu.values()]
    if not errors:
        return f"{key}: no CPU"
    worst = max(errors, key=abs)
    return (
        f"{key:<5} per CPU (n={len(errors)}): mean |e| {statistics.fmean(abs(e) for e in errors):.0%}, "
        f"worst {worst:+.0%}"
    )


def specpower_rows(curves: dict[str, fit.FamilyCurve]) -> list[str]:
    """Shape (each curve over its own full load) against SPECpower wall-power results."""
    lines = []
    by_family: dict[str, list[float]] = {}
    with SPECPOWER.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            measured = [float(row["w_idle"])] + [float(row[f"w_{p}"]) for p in range(10, 101, 10)]
            curve = fit.curve_for(curves, cpu_family(row["cpu"]))
            ours = [curve.fraction(p / 10, None) / curve.fraction(1.0, None) for p in range(11)]
            norm = [m / measured[-1] for m in measured]
            error = (sum(ours) - (ours[0] + ours[-1]) / 2) / (
                sum(norm) - (norm[0] + norm[-1]) / 2
            ) - 1
            by_family.setdefault(row["family"], []).append(error)
    for family, errors in by_family.items():
        lines.append(
            f"  {family:<11} n={len(errors):<3} shape error median {statistics.median(errors):+.0%}, "
            f"mean |e| {statistics.fmean(abs(e) for e in errors):.0%}"
        )
    return lines


def cloud_vcpu_rows() -> list[str]:
    """TDP per vCPU from CCF's watts, judged on the cloud CPU table: each row by the
    median ratio of the other rows, and by SPECpower's WALL_PER_TDP."""
    pairs = []
    for row in cloud_specs().values():
        architecture = cpu_microarchitecture(row["name"])
        found = ccf_coefficients(architecture, "aws") if architecture else None
        if found is not None:
            pairs.append((row["name"], found[1], float(row["tdp_w"]) / float(row["threads"])))
    held_out, spec = [], []
    for name, ccf_w, tdp_per_thread in pairs:
        others = [w / t for n, w, t in pairs if n != name]
        held_out.append(ccf_w / statistics.median(others) / tdp_per_thread - 1)
        spec.append(ccf_w / WALL_PER_TDP / tdp_per_thread - 1)
    ratio, lowest, highest = ccf_per_tdp_per_thread()
    return [
        f"TDP per vCPU from CCF's watts on the {len(pairs)} cloud CPUs (ratio {ratio:.2f}, "
        f"{lowest:.2f}–{highest:.2f}):",
        f"  cloud ratio, each CPU left out: mean |e| {statistics.fmean(abs(e) for e in held_out):.0%}, "
        f"worst {max(held_out, key=abs):+.0%}",
        f"  SPECpower's {WALL_PER_TDP:g}:               mean |e| {statistics.fmean(abs(e) for e in spec):.0%}, "
        f"worst {max(spec, key=abs):+.0%}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweeps", type=Path, default=SWEEPS, help="measured sweeps CSV")
    args = parser.parse_args(argv)
    sweeps = fit.load_sweeps(args.sweeps)
    chosen, errors = fit.choose_features(sweeps)
    print("Feature sets, leave-one-CPU-out mean |sweep-energy error| per CPU:")
    for name, error in errors.items():
        print(f"  {name:<28} {error:.0%}{'   <- used' if name == chosen else ''}")
    print()
    print("Signed sweep-energy error (model / measured − 1) and share of points in range")
    print(f"{'cpu':<40} {'load':<7} {'ours':>6} {'in':>5}  {'prev':>6} {'in':>5}  "
          f"{'cc':>6} {'±20%':>5}  {'vcpu':>6}")  # fmt: skip
    table = rows(sweeps)
    for row in table:
        sweep = row["sweep"]
        print(
            f"{sweep.cpu[:40]:<40} {sweep.load_type[:7]:<7} {_pct(row['ours'])} {row['in']:5.0%}  "
            f"{_pct(row['prev'])} {row['prev_in']:5.0%}  {_pct(row['cc'])} {row['cc_in']:5.0%}  "
            f"{_pct(row['vcpu'])}"
        )
    print()
    for key in ("ours", "prev", "cc", "vcpu", "vcpu-spec"):
        print(summary(table, key))
    points = sum(len(r["sweep"].points) for r in table)
    for key in ("in", "prev_in", "cc_in"):
        inside = sum(r[key] * len(r["sweep"].points) for r in table)
        print(f"{key:<8} {inside / points:.0%} of {points} measured points")
    results = fit.leave_one_cpu_out(sweeps, *fit.FEATURE_CHOICES[chosen])
    q, margin, coverage = fit.choose_band(results)
    band = fit.band_from(results, q, margin)
    print()
    print(f"Range (packaged): {q:.0%}–{1 - q:.0%} quantiles widened ×e^±{margin:g}; "
          f"held-out coverage {coverage:.0%}; low – high multipliers, width log(high/low):")  # fmt: skip
    for level, (low, high) in zip(fit.LEVELS, band, strict=True):
        print(f"  {level:>3} %  ×{low:.2f} – ×{high:.2f}   width {math.log(high / low):.2f}")
    print(f"  mean width {fit.band_width(band):.2f}")
    print()
    for line in cloud_vcpu_rows():
        print(line)
    print()
    print("SPECpower wall-power shapes (each curve / its own full load), not used by the fit:")
    for line in specpower_rows(fit.fit(sweeps, *fit.FEATURE_CHOICES[chosen])):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
