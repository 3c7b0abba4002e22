"""Which CPU a model name describes: microarchitecture, family, TDP, CCF coefficients.

The tables behind the CPU power model, read once from the packaged data
(``carbon_magic/data``): the TDP table (CodeCarbon's, from vendor specification
sheets) and Cloud Carbon Footprint's per-vCPU coefficients by microarchitecture.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterable

PROVIDERS = ("aws", "gcp", "azure")

# CCF's figures for an unknown microarchitecture, W per vCPU at 0 % and 100 % load:
# the average (AWS, Azure) or median (GCP) over the provider's microarchitectures
# (Cloud Carbon Footprint methodology, Appendix I).
CCF_AVERAGE_W_PER_VCPU = {"aws": (0.74, 3.5), "gcp": (0.71, 4.26), "azure": (0.78, 3.76)}

# Idle power as a fraction of full-load power when only the TDP is known. CCF's
# SPECpower-derived averages above have idle/max = 0.74/3.5 = 0.21 (AWS), 0.17 (GCP)

# When a microarchitecture has no CCF coefficients, the previous generation's are
# used. Power per hardware thread changed little across these generations (TDP per
# thread from the packaged table: Cascade Lake 8259CL 4.4 W, Ice Lake 8375C 4.7 W;
# EPYC Milan 7763 2.2 W, Genoa 9654 1.9 W), so the older figure is a fair stand-in.
_PREVIOUS_GENERATION = {
    "Emerald Rapids": "Sapphire Rapids",
    "Sapphire Rapids": "Ice Lake",
    "Ice Lake": "Cascade Lake",
    "Cooper Lake": "Cascade Lake",  # a Cascade Lake derivative
    "Comet Lake": "Coffee Lake",  # both Skylake-derived client parts
    "Kaby Lake": "Coffee Lake",
    "EPYC 5th Gen": "EPYC 4th Gen",
    "EPYC 4th Gen": "EPYC 3rd Gen",
    "EPYC 3rd Gen": "EPYC 2nd Gen",
    "Graviton4": "Graviton3",
    "Graviton3": "Graviton2",
}

# Plain "AMD EPYC" (hypervisors often hide the model number): average of the EPYC
# generations in the table.
EPYC_FAMILY = "EPYC"

_EPYC_GENERATIONS = {
    "1": "EPYC 1st Gen",
    "2": "EPYC 2nd Gen",
    "3": "EPYC 3rd Gen",
    "4": "EPYC 4th Gen",
    "5": "EPYC 5th Gen",
}
_EPYC_CODENAMES = {
    "naples": "1",
    "rome": "2",
    "milan": "3",
    "genoa": "4",
    "bergamo": "4",
    "siena": "4",
    "turin": "5",
}
# Intel Xeon Scalable: the second digit of the model number is the generation
# (Platinum 8175M: 1st, Skylake; 8259CL: 2nd, Cascade Lake; 8375C: 3rd, Ice Lake,
# or Cooper Lake with an H suffix; 8488C: 4th, Sapphire Rapids; 8592+: 5th).
_XEON_SCALABLE = {
    "1": "Skylake",
    "2": "Cascade Lake",
    "3": "Ice Lake",
    "4": "Sapphire Rapids",
    "5": "Emerald Rapids",
}
# Xeon E3/E5/E7 "vN" suffix.
_XEON_E_VERSION = {
    "": "Sandy Bridge",
    "2": "Ivy Bridge",
    "3": "Haswell",
    "4": "Broadwell",
    "5": "Skylake",
    "6": "Kaby Lake",
}
# Intel Core iN-XYYY: X is the generation.
_CORE_GENERATION = {
    "2": "Sandy Bridge",
    "3": "Ivy Bridge",
    "4": "Haswell",
    "5": "Broadwell",
    "6": "Skylake",
    "7": "Kaby Lake",
    "8": "Coffee Lake",
    "9": "Coffee Lake",
}
# Codenames as virtual machines report them ("Intel Xeon Processor (Icelake)").
_CODENAMES = [
    (r"sapphire[\s-]*rapids", "Sapphire Rapids"),
    (r"emerald[\s-]*rapids", "Emerald Rapids"),
    (r"ice[\s-]*lake", "Ice Lake"),
    (r"cooper[\s-]*lake", "Cooper Lake"),
    (r"cascade[\s-]*lake", "Cascade Lake"),
    (r"sky[\s-]*lake", "Skylake"),
    (r"kaby[\s-]*lake", "Kaby Lake"),
    (r"coffee[\s-]*lake", "Coffee Lake"),
    (r"broadwell", "Broadwell"),
    (r"haswell", "Haswell"),
    (r"ivy[\s-]*bridge", "Ivy Bridge"),
    (r"sandy[\s-]*bridge", "Sandy Bridge"),
    # Arm Neoverse cores of the Graviton generations (also in Ampere and other chips).
    (r"neoverse[\s-]*n1", "Graviton2"),
    (r"neoverse[\s-]*v1", "Graviton3"),
    (r"neoverse[\s-]*v2", "Graviton4"),
]


def _mean(values: list[float]) -> float:
    # statistics.fmean would cost an import of several milliseconds at start-up.
    return sum(values) / len(values)


# ------------------------------------------------------------------------- the tables


@functools.cache
def coefficient_tables() -> dict[str, dict[str, tuple[float, float]]]:
    """provider → microarchitecture → (min, max) W per vCPU, read once."""
    from carbon_magic.data import COEFFICIENT_FILE, read_table

    tables: dict[str, dict[str, tuple[float, float]]] = {p: {} for p in PROVIDERS}
    for row in read_table(COEFFICIENT_FILE):
        tables[row["provider"]][row["architecture"]] = (
            float(row["min_w_per_vcpu"]),
            float(row["max_w_per_vcpu"]),
        )
    return tables


def tdp_key(name: str) -> str:
    """Model name reduced for matching: no (R)/(TM)/(…), "CPU", "Processor", clock, cores."""
    text = name.replace("®", " ").replace("™", " ").casefold()
    text = re.sub(r"\([^)]*\)", " ", text)
    text = text.split("@")[0].split(" with ")[0]
    text = re.sub(r"\b\d+-core\b|\bcpu\b|\bprocessor\b", " ", text)
    return " ".join(text.split())


@functools.cache
def tdp_rows() -> tuple[tuple[str, str, float], ...]:
    """(name casefolded, name as listed, TDP watts) for every row of the TDP table, read
    once; splitting the lines by hand is a fraction of what the csv module costs."""
    from carbon_magic.data import TDP_FILE, read_text

    rows = []
    for line in read_text(TDP_FILE).splitlines()[1:]:  # after the "name,tdp_w" header
        if '"' in line:  # a quoted name (it holds a comma): the csv module reads it
            name, tdp = next(csv.reader([line]))
        else:
            name, _, tdp = line.rpartition(",")
        if name:
            rows.append((name.casefold(), name, float(tdp)))
    return tuple(rows)


def _table_of(rows: Iterable[tuple[str, str, float]]) -> dict[str, tuple[str, float]]:
    table: dict[str, tuple[str, float]] = {}
    for _, name, tdp_w in rows:
        table.setdefault(tdp_key(name), (name, tdp_w))
    return table


@functools.cache
def tdp_table() -> dict[str, tuple[str, float]]:
    """Reduced model name → (name as listed, TDP in watts), read once."""
    return _table_of(tdp_rows())


def _candidates(key: str) -> dict[str, tuple[str, float]]:
    """The part of ``tdp_table()`` that can match the reduced name ``key``, found without
    reducing all the table's names (that costs tens of milliseconds at start-up).

    A listed name matches when its reduced form is ``key`` or, for names with a model
    number, stands whole inside ``key``; either way the listed name contains one of the
    key's words with a digit, or (a key without digits can only match exactly) its
    longest word.
    """
    words = key.split()
    wanted = [word for word in words if any(ch.isdigit() for ch in word)]
    if not wanted:
        wanted = [max(words, key=len)]
    return _table_of(row for row in tdp_rows() if any(word in row[0] for word in wanted))


def find_tdp(model_name: str) -> tuple[str, float] | None:
    """(model as listed, TDP watts) for a CPU model name, or ``None`` if not listed.

    ``"Intel(R) Xeon(R) Gold 6122 CPU @ 1.80GHz"`` finds ``Intel Xeon Gold 6122``.
    Failing an exact match of the reduced names, the longest listed name with a model
    number that appears whole inside the given one is taken.
    """
    key = tdp_key(model_name)
    if not key:
        return None
    table = _candidates(key)
    if key in table:
        return table[key]
    padded = f" {key} "
    best: str | None = None
    for listed in table:
        # At least vendor-or-family plus a model number, so "AMD EPYC" matches nothing.
        if " " in listed and re.search(r"\d", listed) and f" {listed} " in padded:
            if best is None or len(listed) > len(best):
                best = listed
    return table[best] if best else None


def cpu_microarchitecture(model_name: str) -> str | None:
    """Microarchitecture named as in CCF's tables (``"Cascade Lake"``, ``"EPYC 3rd Gen"``)
    recognised from a CPU model name, ``"EPYC"`` for an AMD EPYC of unknown generation,
    or ``None`` when not recognised.
    """
    text = model_name.replace("®", " ").replace("™", " ").casefold()
    text = re.sub(r"\((r|tm)\)", " ", text)
    if match := re.search(r"xeon.*\b(?:platinum|gold|silver|bronze)\s+\d(\d)\d\d([a-z]*)", text):
        generation, suffix = match.groups()
        if generation == "3" and suffix.startswith("h"):
            return "Cooper Lake"
        if generation in _XEON_SCALABLE:
            return _XEON_SCALABLE[generation]
    if match := re.search(r"xeon.*\be([357])-\d{4}[a-z]*(?:\s*v(\d))?", text):
        family, version = match.groups()
        if family == "7" and not version:
            return None  # E7 without a version is Westmere, not in the tables
        return _XEON_E_VERSION.get(version or "")
    if re.search(r"xeon.*\be-2[12]\d\d", text):
        return "Coffee Lake"
    if match := re.search(r"\bcore.*\bi[3579]-(\d{4,5})", text):
        digits = match.group(1)
        if len(digits) == 4:
            return _CORE_GENERATION.get(digits[0])
        return "Comet Lake" if digits.startswith("10") else None
    if "epyc" in text:
        if match := re.search(r"epyc[\s-]*\d[0-9a-z]{2}(\d)[a-z]*\b", text):
            return _EPYC_GENERATIONS.get(match.group(1), EPYC_FAMILY)
        if match := re.search(r"epyc[\s-]*(" + "|".join(_EPYC_CODENAMES) + ")", text):
            return _EPYC_GENERATIONS[_EPYC_CODENAMES[match.group(1)]]
        return EPYC_FAMILY
    if match := re.search(r"graviton\s*([1-4])?", text):
        generation = match.group(1)
        return f"Graviton{generation}" if generation and generation != "1" else "Graviton"
    for pattern, name in _CODENAMES:
        if re.search(pattern, text):
            return name
    return None


def ccf_coefficients(architecture: str, provider: str) -> tuple[float, float, str] | None:
    """(min, max) W per vCPU and a description, walking back to older generations and
    to other providers' tables when the provider's table lacks the architecture."""
    tables = coefficient_tables()
    if architecture == EPYC_FAMILY:
        rows = {a: v for a, v in tables[provider].items() if a.startswith("EPYC ")}
        if not rows:
            return None
        names = ", ".join(sorted(rows))
        return (
            _mean([v[0] for v in rows.values()]),
            _mean([v[1] for v in rows.values()]),
            f"CCF {provider} coefficients, AMD EPYC of unknown generation (average of {names})",
        )
    wanted: str | None = architecture
    while wanted is not None:
        holders = (
            [provider]
            if wanted in tables[provider]
            else [p for p in PROVIDERS if wanted in tables[p]]
        )
        if holders:
            note = "" if wanted == architecture else f" ({architecture} not in the tables)"
            return (
                _mean([tables[p][wanted][0] for p in holders]),
                _mean([tables[p][wanted][1] for p in holders]),
                f"CCF {'/'.join(holders)} coefficients for {wanted}{note}",
            )
        wanted = _PREVIOUS_GENERATION.get(wanted)
    return None


def check_provider(cloud_provider: str | None) -> str | None:
    if cloud_provider is None:
        return None
    provider = cloud_provider.partition(":")[0].strip().casefold()
    if provider not in PROVIDERS:
        raise ValueError(f"unknown cloud provider {cloud_provider!r}; use aws, gcp or azure")
    return provider


# The curve families of ``carbon_magic.cpu_model.curves`` a model name belongs to.
ZEN_FAMILY, XEON_FAMILY, GENERIC_FAMILY = "amd-zen", "intel-xeon", "generic"


def cpu_family(model_name: str) -> str:
    """The load-curve family of a CPU model name: ``"amd-zen"`` (EPYC, Ryzen,
    Threadripper), ``"intel-xeon"`` (any Xeon, also as virtual machines name them:
    ``"Intel Xeon Processor (Icelake)"``), else ``"generic"`` (Opteron, Core, Arm,
    Apple, unknown or empty)."""
    text = model_name.casefold()
    if re.search(r"\b(epyc|ryzen|threadripper)", text):
        return ZEN_FAMILY
    if "xeon" in text:
        return XEON_FAMILY
    return GENERIC_FAMILY


def package_threads_from_name(model_name: str) -> int | None:
    """Hardware threads of one package when the model name gives its cores, else None.

    AMD names carry the core count (``"AMD EPYC 7763 64-Core Processor"``); Zen parts
    run two threads per core, as cloud providers expose them (one vCPU per thread).
    Other vendors' names do not say, so ``None``.
    """
    match = re.search(r"\b(\d{1,3})-core\b", model_name.casefold())
    if match is None or cpu_family(model_name) != ZEN_FAMILY:
        return None
    return 2 * int(match.group(1))


# ------------------------------------------------------------- what else a name says


def cores_from_name(model_name: str) -> int | None:
    """Cores of one package when the name gives them (``"AMD EPYC 7763 64-Core
    Processor"`` → 64), else None."""
    match = re.search(r"\b(\d{1,3})-core\b", model_name.casefold())
    return int(match.group(1)) if match else None


def base_ghz_from_name(model_name: str) -> float | None:
    """Base frequency in GHz from an ``@ 2.40GHz`` in the name, else None."""
    match = re.search(r"@\s*(\d+(?:\.\d+)?)\s*ghz", model_name.casefold())
    return float(match.group(1)) if match else None


@functools.cache
def cloud_specs() -> dict[str, dict[str, str]]:
    """Reduced model name → row of the cloud CPU table (cloud-custom SKUs: TDP, cores,
    threads, base GHz and where each comes from), read once."""
    from carbon_magic.data import CLOUD_CPU_FILE, read_table

    return {tdp_key(row["name"]): row for row in read_table(CLOUD_CPU_FILE)}


def cloud_spec(model_name: str) -> dict[str, str] | None:
    """The cloud CPU table's row for a model name (``"Intel(R) Xeon(R) Platinum 8252C
    CPU @ 3.80GHz"``), or None."""
    key = tdp_key(model_name)
    specs = cloud_specs()
    if key in specs:
        return specs[key]
    padded = f" {key} "
    matches = [listed for listed in specs if f" {listed} " in padded]
    return specs[max(matches, key=len)] if matches else None


def tdp_per_core(family: str) -> tuple[float, float, float]:
    """(median, lowest, highest) TDP per core in watts over the cloud CPU table, for the
    family (``cpu_family``) or over all rows when the family has none."""
    ratios = {
        name: float(row["tdp_w"]) / float(row["cores"]) for name, row in cloud_specs().items()
    }
    chosen = [r for name, r in ratios.items() if cpu_family(name) == family] or list(
        ratios.values()
    )
    return _median_and_extremes(chosen)


@functools.cache
def ccf_per_tdp_per_thread() -> tuple[float, float, float]:
    """(median, lowest, highest) over the cloud CPU table of CCF's full-load watts per
    vCPU (AWS table, the row's microarchitecture) divided by the row's TDP per hardware
    thread: what turns CCF's figure into the TDP of one vCPU of a cloud host."""
    ratios = []
    for row in cloud_specs().values():
        architecture = cpu_microarchitecture(row["name"])
        found = ccf_coefficients(architecture, "aws") if architecture else None
        if found is not None:
            ratios.append(found[1] / (float(row["tdp_w"]) / float(row["threads"])))
    return _median_and_extremes(ratios)


def _median_and_extremes(values: Iterable[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return median, ordered[0], ordered[-1]
