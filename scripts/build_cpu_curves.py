"""Rebuild the CPU power model's packaged curves from the measured sweeps.

    python scripts/build_cpu_curves.py           # write carbon_magic/data/cpu_load_*.csv
    python scripts/build_cpu_curves.py --check   # exit 1 if the packaged files differ

Input: ``benchmarks/data/package_power_sweeps.csv`` (sources and licences in
``benchmarks/data/SOURCES.md``). The feature set (TDP alone or with the cores per
package; one shape for every family or each its own) is the one with the lowest mean
|sweep-energy error| when each CPU is left out of the fit; the range is the narrowest
whose coverage on CPUs left out of it reaches 90 % (``carbon_magic.cpu_model.fit``).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from carbon_magic.cpu_model import fit  # noqa: E402

SWEEPS = ROOT / "benchmarks" / "data" / "package_power_sweeps.csv"
DATA = ROOT / "carbon_magic" / "data"
CURVES = DATA / "cpu_load_curves.csv"
BANDS = DATA / "cpu_load_bands.csv"


def build(sweeps_path: Path = SWEEPS) -> dict[Path, str]:
    """The packaged files' text, keyed by path."""
    sweeps = fit.load_sweeps(sweeps_path)
    chosen, errors = fit.choose_features(sweeps)
    use_cores, family_shape = fit.FEATURE_CHOICES[chosen]
    curves = fit.fit(sweeps, use_cores, family_shape)
    results = fit.leave_one_cpu_out(sweeps, use_cores, family_shape)
    q, margin, coverage = fit.choose_band(results)
    band = fit.band_from(results, q, margin)
    tried = "; ".join(f"{name} {error:.0%}" for name, error in errors.items())
    basis = (
        f"fitted to {len({s.cpu for s in sweeps})} CPUs' measured package power "
        f"({len(sweeps)} sweeps, benchmarks/data); features: {chosen} (leave-one-CPU-out "
        f"mean |energy error|: {tried}); range: {q:.0%}–{1 - q:.0%} quantiles of the "
        f"out-of-sample ratios, widened ×e^±{margin:g}, {coverage:.0%} of points on "
        "CPUs left out inside"
    )
    curve_rows = io.StringIO()
    writer = csv.writer(curve_rows, lineterminator="\n")
    writer.writerow(
        ["family", "idle", "full", "k", "cores_slope", "reference_cores", "cpus", "basis"]
    )
    for name, curve in sorted(curves.items()):
        writer.writerow(
            [
                name,
                curve.idle,
                curve.full,
                curve.k,
                curve.cores_slope,
                fit.REFERENCE_CORES,
                curve.cpus,
                basis,
            ]
        )
    band_rows = io.StringIO()
    writer = csv.writer(band_rows, lineterminator="\n")
    writer.writerow(["load_pct", "low", "high"])
    for level, (low, high) in zip(fit.LEVELS, band, strict=True):
        writer.writerow([level, low, high])
    return {CURVES: curve_rows.getvalue(), BANDS: band_rows.getvalue()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--sweeps", type=Path, default=SWEEPS, help="measured sweeps CSV")
    args = parser.parse_args(argv)
    files = build(args.sweeps)
    if args.check:
        stale = [
            p.name
            for p, text in files.items()
            if not p.exists() or p.read_text(encoding="utf-8") != text
        ]
        if stale:
            print(f"out of date: {', '.join(stale)}; run scripts/build_cpu_curves.py")
            return 1
        print("packaged CPU curves match the sweeps")
        return 0
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
