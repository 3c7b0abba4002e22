"""Rebuild the reference tables packaged in ``carbon_magic/data/``.

Usage::

    python scripts/build_data.py [SOURCE_DIR] [--out OUT_DIR]

``SOURCE_DIR`` holds the reference CSV files (default: ``../shared/data`` relative to the
repository root); ``OUT_DIR`` defaults to ``carbon_magic/data``. The output is
deterministic: running it twice on the same inputs gives byte-identical files, so a
test can check that the committed tables match their sources.

The packaged files are small CSVs with units in the column names, plus ``SOURCES.md``
giving the source, year and licence of each and every repair made to the inputs.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = REPO_ROOT / "carbon_magic" / "data"

PROVIDERS = ("aws", "gcp", "azure")

# Output file names, shared with the loaders in carbon_magic.
COUNTRY_FILE = "grid_intensity_by_country.csv"
CLOUD_FILE = "cloud_region_intensity.csv"
COEFFICIENT_FILE = "cpu_power_by_microarchitecture.csv"
TDP_FILE = "cpu_tdp.csv"
SOURCES_FILE = "SOURCES.md"
# Packaged files another script builds (listed in SOURCES.md all the same).
BUILT_ELSEWHERE = {
    "cpu_load_curves.csv": "scripts/build_cpu_curves.py",
    "cpu_load_bands.csv": "scripts/build_cpu_curves.py",
    "cpu_cloud_specs.csv": "kept by hand, a source on every row",
}

# CCF spells one microarchitecture two ways ("Sky Lake" in the AWS table, "Skylake" in
# the others); one spelling lets a lookup find it in every table.
ARCHITECTURE_SPELLING = {"Sky Lake": "Skylake"}

# Plausibility bounds: a value outside them is a broken input, not data.
MAX_G_PER_KWH = 2000.0
MAX_W_PER_VCPU = 50.0
MAX_TDP_W = 1000.0


class DataError(ValueError):
    """An input file is missing, malformed or implausible."""


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f"missing input file {path}")
    # utf-8-sig drops a byte-order mark; newline="" lets csv handle CRLF rows.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        # A trailing comma gives an extra, unnamed field (key None); drop it.
        row.pop(None, None)  # type: ignore[call-overload]
    return rows


def _number(text: str) -> float:
    return float(text.strip())


def _fmt(value: float) -> str:
    """Six significant figures, no exponent for the magnitudes we store."""
    text = f"{value:.6g}"
    if "e" in text:
        text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def region_key(text: str) -> str:
    """Region name with case, spaces, hyphens and underscores ignored."""
    return re.sub(r"[\s_\-]+", "", text).lower()


def build_countries(source: Path, notes: list[str]) -> list[list[str]]:
    rows = []
    seen: set[str] = set()
    for row in _read_csv(source / "grid_intensity_by_country.csv"):
        iso2 = row["iso2"].strip().upper()
        iso3 = row["iso3"].strip().upper()
        name = row["country"].strip()
        year = int(row["year"])
        value = _number(row["gco2e_per_kwh"])
        if not re.fullmatch(r"[A-Z]{2}", iso2) or not re.fullmatch(r"[A-Z]{3}", iso3):
            raise DataError(f"bad country codes {iso2!r}/{iso3!r} for {name}")
        if iso2 in seen:
            raise DataError(f"country {iso2} listed twice")
        if not 0 <= value <= MAX_G_PER_KWH:
            raise DataError(f"implausible intensity {value} g/kWh for {iso2}")
        seen.add(iso2)
        rows.append([iso2, iso3, name, str(year), _fmt(value)])
    rows.sort()
    old = [f"{r[0]} ({r[3]})" for r in rows if int(r[3]) < 2021]
    if old:
        notes.append(f"Country rows older than 2021, kept as published: {', '.join(old)}.")
    zero = [r[0] for r in rows if float(r[4]) == 0]
    if zero:
        notes.append(f"Country rows with 0 g/kWh, kept as published: {', '.join(zero)}.")
    return rows


def _repair_tonnes(text: str, where: str, notes: list[str]) -> float:
    text = text.strip()
    # Two Azure rows read "000077" and "000402": the leading "0." was lost. A value of
    # 77 or 402 t/kWh is impossible; 0.000077 and 0.000402 are the intended figures.
    if re.fullmatch(r"0\d+", text):
        notes.append(f"{where}: read {text!r} as 0.{text} t/kWh (decimal point missing).")
        text = "0." + text
    return float(text)


def build_cloud_regions(source: Path, notes: list[str]) -> list[list[str]]:
    rows = []
    for provider in PROVIDERS:
        keys: set[str] = set()
        path = source / f"ccf_grid-emissions-factors-{provider}.csv"
        for row in _read_csv(path):
            name = row["Region"].strip()
            location = (row.get("Country") or row.get("Location") or "").strip()
            origin = (row.get("Source") or "").strip()
            tonnes = _repair_tonnes(row["CO2e (metric ton/kWh)"], f"{path.name} {name}", notes)
            g_per_kwh = tonnes * 1e6  # metric t/kWh -> g/kWh
            if not 0 <= g_per_kwh <= MAX_G_PER_KWH:
                raise DataError(f"implausible factor {tonnes} t/kWh for {provider}:{name}")
            # Azure's own region identifiers are the display names in lower case
            # without spaces ("France Central" -> "francecentral").
            region = region_key(name) if provider == "azure" else name.lower()
            key = region_key(name)
            if key in keys:
                raise DataError(f"region {provider}:{name} listed twice")
            keys.add(key)
            rows.append([provider, region, name, location, _fmt(g_per_kwh), origin])
    rows.sort()
    return rows


def build_coefficients(source: Path, notes: list[str]) -> list[list[str]]:
    rows = []
    for provider in PROVIDERS:
        seen: set[str] = set()
        for row in _read_csv(source / f"ccf_coefficients-{provider}-use.csv"):
            raw = row["Architecture"].strip()
            architecture = ARCHITECTURE_SPELLING.get(raw, raw)
            if architecture != raw:
                notes.append(f"{provider} coefficients: renamed {raw!r} to {architecture!r}.")
            low = _number(row["Min Watts"])
            high = _number(row["Max Watts"])
            if not 0 < low <= high <= MAX_W_PER_VCPU:
                raise DataError(f"implausible watts {low}/{high} for {provider} {architecture}")
            if architecture in seen:
                raise DataError(f"{provider} {architecture} listed twice")
            seen.add(architecture)
            rows.append([provider, architecture, _fmt(low), _fmt(high)])
    rows.sort()
    return rows


def build_tdp(source: Path, notes: list[str]) -> list[list[str]]:
    by_key: dict[str, list[str]] = {}
    unreadable = []
    non_positive = []
    duplicates = []
    for row in _read_csv(source / "cpu_tdp_watts.csv"):
        name = " ".join(row["Name"].split())
        text = row["TDP"].strip()
        if not re.fullmatch(r"\d+(\.\d+)?", text):
            unreadable.append(f"{name} ({text!r})")
            continue
        watts = float(text)
        if watts <= 0:
            non_positive.append(name)
            continue
        if watts > MAX_TDP_W:
            raise DataError(f"implausible TDP {watts} W for {name}")
        key = name.casefold()
        if key in by_key:
            duplicates.append(name)
            continue
        by_key[key] = [name, _fmt(watts)]
    if unreadable:
        notes.append(f"TDP rows dropped, watts unreadable: {', '.join(unreadable)}.")
    if non_positive:
        notes.append(f"TDP rows dropped, watts not positive: {', '.join(non_positive)}.")
    if duplicates:
        notes.append(
            f"TDP rows dropped, same name as an earlier row up to case: {', '.join(duplicates)}."
        )
    return [by_key[key] for key in sorted(by_key)]


SOURCES_TEMPLATE = """\
# Packaged reference data

Generated by `scripts/build_data.py` from the project's reference inputs; do not edit by
hand. Units are in the column names: g/kWh is grams CO2e per kilowatt-hour, W is watts.

| file | rows | what | source | year | licence |
|---|---|---|---|---|---|
| `{country_file}` | {countries} | annual average carbon intensity of electricity generation per country (`iso2`, `iso3`, `name`, `year`, `g_per_kwh`) | Our World in Data energy dataset (Ember yearly electricity data, Energy Institute Statistical Review), as compiled in CodeCarbon's `global_energy_mix.json` | latest available per country, mostly 2022–2023 (see `year`) | OWID: CC BY 4.0; CodeCarbon: MIT |
| `{cloud_file}` | {regions} | grid emission factor per cloud region (`provider`, `region` identifier, `name` as published, `location`, `g_per_kwh`, `origin` of the figure) | Cloud Carbon Footprint (CCF) coefficients, from EPA eGRID, EEA, Google, EMA Singapore and carbonfootprint.com; metric t/kWh converted to g/kWh (× 10⁶) | annual averages of years before 2020 (CCF methodology) | Apache-2.0 |
| `{coefficient_file}` | {coefficients} | power per vCPU at 0 % (`min_w_per_vcpu`) and 100 % (`max_w_per_vcpu`) CPU load by provider and microarchitecture | Cloud Carbon Footprint coefficients, derived from SPECpower_ssj2008 results | SPECpower results available to CCF around 2021 | Apache-2.0 |
| `cpu_load_curves.csv`, `cpu_load_bands.csv` | 3, 11 | CPU load-curve figures per family (`idle`, `full`, `k`, `cores_slope`, fractions of TDP) and the range's low/high multipliers per load level | fitted by `scripts/build_cpu_curves.py` (not `build_data.py`) to `benchmarks/data/package_power_sweeps.csv`: CodeCarbon RAPL sweeps, Teads' turbostat mean curve | 2021–2025 | MIT (CodeCarbon); figures |
| `cpu_cloud_specs.csv` | 12 | cloud-custom CPUs: `tdp_w`, `cores`, `threads` per package, `base_ghz`, `source` per row | Teads AWS EC2 dataset, cpu-world.com, AWS instance types, CodeCarbon, Intel ARK, AMD | 2017–2023 parts | figures, sources per row |
| `{tdp_file}` | {tdp} | thermal design power by CPU model name (`name`, `tdp_w`) | CodeCarbon `cpu_power.csv` (vendor specification sheets) | snapshot including models released up to late 2024 | MIT |

Credits: Our World in Data and Ember (CC BY 4.0), Energy Institute, CodeCarbon (MIT),
Cloud Carbon Footprint by Thoughtworks (Apache-2.0).

## Repairs and omissions

{notes}
"""


def build(source: Path, out: Path) -> list[Path]:
    """Read the reference inputs in ``source`` and write the packaged tables to ``out``.

    Returns the paths written. Raises ``DataError`` when an input is missing or holds an
    implausible value (nothing is written then).
    """
    notes: list[str] = []
    countries = build_countries(source, notes)
    regions = build_cloud_regions(source, notes)
    coefficients = build_coefficients(source, notes)
    tdp = build_tdp(source, notes)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    tables = [
        (COUNTRY_FILE, ["iso2", "iso3", "name", "year", "g_per_kwh"], countries),
        (CLOUD_FILE, ["provider", "region", "name", "location", "g_per_kwh", "origin"], regions),
        (
            COEFFICIENT_FILE,
            ["provider", "architecture", "min_w_per_vcpu", "max_w_per_vcpu"],
            coefficients,
        ),
        (TDP_FILE, ["name", "tdp_w"], tdp),
    ]
    for name, header, rows in tables:
        _write_csv(out / name, header, rows)
        written.append(out / name)
    text = SOURCES_TEMPLATE.format(
        country_file=COUNTRY_FILE,
        cloud_file=CLOUD_FILE,
        coefficient_file=COEFFICIENT_FILE,
        tdp_file=TDP_FILE,
        countries=len(countries),
        regions=len(regions),
        coefficients=len(coefficients),
        tdp=len(tdp),
        notes="\n".join(f"- {note}" for note in notes) or "- None.",
    )
    (out / SOURCES_FILE).write_text(text, encoding="utf-8")
    written.append(out / SOURCES_FILE)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source",
        nargs="?",
        type=Path,
        default=DEFAULT_SOURCE,
        help="folder of reference CSV files (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="folder to write the packaged files to (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        written = build(args.source, args.out)
    except DataError as error:
        print(f"build_data: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
