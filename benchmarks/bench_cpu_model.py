"""The CPU power model against every public load curve gathered, with CodeCarbon's
formula and the previous linear model side by side.

    python benchmarks/bench_cpu_model.py [--csv benchmarks/data/specpower_load_curves.csv]

The curves are SPECpower_ssj2008 results (benchmarks/data/SOURCES.md): average wall
power of whole servers at active idle and 10 % … 100 % target load. Wall power adds
fans, memory, board and supply losses to the CPU packages, so the curves are compared
by shape: every curve, measured or modelled, is divided by its own full-load power.
Per CPU it prints the signed energy error over a uniform 0–100 % sweep (trapezoids over
the eleven load levels) and the share of load points inside the model's range:

- ours:   this package's family curve and band (carbon_magic.cpu_model.curves);
- cc:     CodeCarbon 3.x, TDP · (0.1 + 0.9 · u³);
- linear: the previous model, idle 20 % of TDP to full load = TDP, ±40 %.

It also prints wall power at full load over TDP × chips (the scale behind using CCF's
full-load watts per vCPU as TDP per vCPU), and each family curve against Boavizta's
TDP-ratio profile. Measurements, not pass/fail: exits 0.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carbon_magic import cpu_power  # noqa: E402
from carbon_magic.cpu_model.curves import FAMILIES, LoadCurve  # noqa: E402
from carbon_magic.cpu_model.identify import (  # noqa: E402
    ccf_coefficients,
    cpu_family,
    cpu_microarchitecture,
    find_tdp,
)

DATA = Path(__file__).parent / "data" / "specpower_load_curves.csv"
LOADS = [i / 10 for i in range(11)]
COLUMNS = ["w_idle"] + [f"w_{p}" for p in range(10, 101, 10)]
OLD_HALF_WIDTH = 0.40
# Boavizta's CPU consumption profile in fractions of TDP at 0, 10, 50 and 100 % load
# (boaviztapi, consumption_profile.py: _TDP_RATIOS), itself fitted on SPECpower.
BOAVIZTA = [(0.0, 0.12), (0.1, 0.32), (0.5, 0.75), (1.0, 1.02)]
# Hardware threads per package from the vendors' specification sheets, to set the
# per-vCPU path (CCF watts per vCPU) beside the TDP path for the same CPU.
THREADS_PER_PACKAGE = {
    "AMD EPYC 7702": 128,
    "AMD EPYC 7742": 128,
    "AMD EPYC 7763": 128,
    "Intel Xeon E5-2699 v3": 36,
    "Intel Xeon Platinum 8176": 56,
    "Intel Xeon Platinum 8180": 56,
    "Intel Xeon Platinum 8280L": 56,
    "Intel Xeon Gold 6226R": 32,
}


def sweep_energy(values: list[float]) -> float:
    """Mean of a curve over a uniform 0–100 % sweep, trapezoids over the eleven loads."""
    return (sum(values) - (values[0] + values[-1]) / 2) / (len(values) - 1)


def codecarbon(u: float) -> float:
    return 0.1 + 0.9 * u**3


def old_linear(u: float) -> float:
    return 0.2 + 0.8 * u


def compare(measured: list[float], curve: LoadCurve) -> dict[str, float]:
    """Signed sweep-energy errors and coverage of one measured curve (watts at LOADS)."""
    norm = [p / measured[-1] for p in measured]
    ours = [curve.fraction(u) / curve.full for u in LOADS]
    bands = [curve.band(u) for u in LOADS]
    truth = sweep_energy(norm)
    inside = [o * lo <= m <= o * hi for m, o, (lo, hi) in zip(norm, ours, bands, strict=True)]
    old = [old_linear(u) for u in LOADS]
    old_inside = [
        o * (1 - OLD_HALF_WIDTH) <= m <= o * (1 + OLD_HALF_WIDTH)
        for m, o in zip(norm, old, strict=True)
    ]
    return {
        "ours": sweep_energy(ours) / truth - 1,
        "cc": sweep_energy([codecarbon(u) for u in LOADS]) / truth - 1,
        "linear": sweep_energy(old) / truth - 1,
        "cover": sum(inside) / len(inside),
        "cover_linear": sum(old_inside) / len(old_inside),
    }


def _pct(value: float) -> str:
    return f"{value:+6.0%}"


def _summary(label: str, results: list[dict[str, float]]) -> str:
    def stats(key: str) -> str:
        errors = [r[key] for r in results]
        worst = max(errors, key=abs)
        return (
            f"{key} median {statistics.median(errors):+.0%} "
            f"mean|e| {statistics.fmean(abs(e) for e in errors):.0%} worst {worst:+.0%}"
        )

    cover = statistics.fmean(r["cover"] for r in results)
    cover_old = statistics.fmean(r["cover_linear"] for r in results)
    return (
        f"{label:<12} n={len(results):<3} {stats('ours')} | {stats('cc')} | {stats('linear')}"
        f" | coverage ours {cover:.0%}, linear ±40 % {cover_old:.0%}"
    )


def boavizta_rows() -> list[str]:
    """Each family curve against Boavizta's TDP-ratio profile (fractions of TDP)."""

    def profile(u: float) -> float:
        for (u0, p0), (u1, p1) in zip(BOAVIZTA, BOAVIZTA[1:], strict=False):
            if u <= u1:
                return p0 + (p1 - p0) * (u - u0) / (u1 - u0)
        return BOAVIZTA[-1][1]

    truth = sweep_energy([profile(u) for u in LOADS])
    rows = []
    for name in ("amd-zen", "intel-xeon", "generic"):
        curve = FAMILIES[name]
        ours = sweep_energy([curve.fraction(u) for u in LOADS])
        inside = sum(
            curve.fraction(u) * curve.band(u)[0] <= p <= curve.fraction(u) * curve.band(u)[1]
            for u, p in BOAVIZTA
        )
        rows.append(
            f"  {name:<11} sweep mean {ours:.2f} × TDP vs Boavizta {truth:.2f} × TDP "
            f"({ours / truth - 1:+.0%}); Boavizta's points inside the band: {inside}/4"
        )
    rows.append(
        f"  codecarbon  sweep mean {sweep_energy([codecarbon(u) for u in LOADS]):.2f} × TDP; "
        f"old linear {sweep_energy([old_linear(u) for u in LOADS]):.2f} × TDP"
    )
    return rows


def vcpu_rows() -> list[str]:
    """Sweep energy of the per-vCPU path over the TDP path, a whole package each."""
    rows = []
    for name, threads in THREADS_PER_PACKAGE.items():
        metal = cpu_power.cpu_power_model(name, threads, False, threads_per_package=threads)
        metal_j = sweep_energy([metal.power_w(u) for u in LOADS])
        vm = cpu_power.cpu_power_model(name, threads, True)
        ratio = sweep_energy([vm.power_w(u) for u in LOADS]) / metal_j
        # Before: CCF's idle and full-load watts per vCPU, a straight line between them.
        low, high, _ = ccf_coefficients(cpu_microarchitecture(name), "aws")
        before = threads * (low + high) / 2 / metal_j
        rows.append(
            f"  {name:<26} {threads:>3} threads: per-vCPU / TDP path {ratio - 1:+.0%} "
            f"(before, CCF min–max linear: {before - 1:+.0%})"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=DATA, help="load curves (default: %(default)s)")
    args = parser.parse_args(argv)
    with args.csv.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))

    print("Signed sweep-energy error of the shape (model / measured − 1) and range coverage")
    print(f"{'family':<11} {'cpu':<34} {'n':>1} {'published':<10} {'ours':>6} {'cc':>6} "
          f"{'linear':>6}  {'cover':>5} {'cov-lin':>7}  {'wall/TDP':>8}")  # fmt: skip
    by_family: dict[str, list[dict[str, float]]] = {}
    scales = []
    for row in rows:
        measured = [float(row[c]) for c in COLUMNS]
        curve = FAMILIES[cpu_family(row["cpu"])]
        result = compare(measured, curve)
        by_family.setdefault(row["family"], []).append(result)
        found = find_tdp(row["cpu"])
        scale = ""
        if found:
            ratio = measured[-1] / (found[1] * int(row["chips"]))
            scales.append(ratio)
            scale = f"{ratio:8.2f}"
        print(
            f"{row['family']:<11} {row['cpu'][:34]:<34} {row['chips']:>1} "
            f"{row['published']:<10} {_pct(result['ours'])} {_pct(result['cc'])} "
            f"{_pct(result['linear'])}  {result['cover']:5.0%} {result['cover_linear']:7.0%}"
            f"  {scale:>8}"
        )
    print()
    for family, results in by_family.items():
        print(_summary(family, results))
    everything = [r for results in by_family.values() for r in results]
    print(_summary("all", everything))
    print()
    print(
        f"wall power at full load / (TDP × chips), {len(scales)} results with a listed TDP: "
        f"median {statistics.median(scales):.2f}, range {min(scales):.2f}–{max(scales):.2f}"
    )
    print("Per-vCPU path (CCF full-load watts per vCPU / wall-per-TDP) beside the TDP path:")
    for line in vcpu_rows():
        print(line)
    print("Family package curves against Boavizta's TDP-ratio profile (0/10/50/100 % → "
          "0.12/0.32/0.75/1.02 × TDP, fitted on SPECpower wall power):")  # fmt: skip
    for line in boavizta_rows():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
