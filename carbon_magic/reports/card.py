"""The Hugging Face model-card ``co2_eq_emissions`` block and a plain-language statement.

The YAML is written by hand (no PyYAML at run time): strings are double-quoted JSON
strings, which YAML reads as double-quoted scalars, and numbers are written without
exponents so that every YAML parser reads them as numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from carbon_magic._version import __version__
from carbon_magic.formatting import (
    format_duration,
    format_grams,
    format_grams_range,
    format_kwh,
    round_sig,
)
from carbon_magic.remote.describe import remote_totals
from carbon_magic.reports.cell_rows import Row, row_hardware, row_methods, row_settings
from carbon_magic.reports.export_codecarbon import describe_gpus

_RANGE = re.compile(r"^(\d+)\s*(?:-\s*(\d+))?$")
CELLS_FORMS = "execution counts separated by commas, with ranges, e.g. 3,5-8"
MAX_EXECUTION_COUNT = 10**9  # far beyond any kernel's, small enough to reject typos
MAX_SELECTED_CELLS = 100_000  # a spec expanded without the recorded counts at hand

# How each method reads in a sentence.
_METHOD_WORDS = {
    "measured": "measured with hardware energy counters",
    "modelled": "modelled from utilisation",
    "assumed": "assumed from a constant power per unit of capacity (W/GB for memory)",
}
_COMPONENT_WORDS = {"cpu": "CPU", "gpu": "GPU", "ram": "memory"}


def parse_spans(spec: str) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` execution-count spans from a spec like ``"3,5-8"``.

    Raises ``ValueError`` naming the accepted form for anything else (empty parts,
    letters, reversed ranges, counts above MAX_EXECUTION_COUNT).
    """
    spans: list[tuple[int, int]] = []
    for part in (part.strip() for part in str(spec).split(",")):
        match = _RANGE.match(part)
        if not match:
            raise ValueError(f"cannot read cells {spec!r}: use {CELLS_FORMS}")
        if any(len(group or "") > len(str(MAX_EXECUTION_COUNT)) for group in match.groups()):
            first = last = MAX_EXECUTION_COUNT + 1  # too long to be worth converting
        else:
            first = int(match.group(1))
            last = int(match.group(2)) if match.group(2) else first
        if max(first, last) > MAX_EXECUTION_COUNT:
            raise ValueError(
                f"cannot read cells {spec!r}: execution counts go up to "
                f"{MAX_EXECUTION_COUNT:,}; use {CELLS_FORMS}"
            )
        if last < first:
            raise ValueError(f"cannot read cells {spec!r}: range {part!r} runs backwards")
        spans.append((first, last))
    return spans


def parse_cells(spec: str, recorded: Iterable[int] | None = None) -> set[int]:
    """Execution counts from a spec like ``"3,5-8"`` → ``{3, 5, 6, 7, 8}``; with
    ``recorded``, only those of them that were recorded (never more than those).

    Raises ``ValueError`` as :func:`parse_spans`, and for a spec spanning more than
    MAX_SELECTED_CELLS counts without ``recorded`` to intersect with.
    """
    spans = parse_spans(spec)
    if recorded is not None:
        return {c for c in recorded if any(first <= c <= last for first, last in spans)}
    if sum(last - first + 1 for first, last in spans) > MAX_SELECTED_CELLS:
        raise ValueError(
            f"cannot read cells {spec!r}: it spans more than {MAX_SELECTED_CELLS:,} cells"
        )
    return {c for first, last in spans for c in range(first, last + 1)}


def _compact(counts: Iterable[int]) -> str:
    """``{1, 2, 3, 7}`` → ``"1-3, 7"``."""
    ordered = sorted(set(counts))
    spans: list[str] = []
    start = previous = None
    for count in [*ordered, None]:
        if count is not None and previous is not None and count == previous + 1:
            previous = count
            continue
        if start is not None:
            spans.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = count
    return ", ".join(spans)


def _yaml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _yaml_number(value: float) -> str:
    """Two significant figures, positional (``0.000042``, ``12``, ``1200``)."""
    rounded = round_sig(float(value), 2)
    text = format(Decimal(repr(rounded)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True)
class Card:
    """A model-card block (``yaml``) and an emissions statement (``statement``).

    ``fields`` holds the ``co2_eq_emissions`` values; figures in grams and kWh.
    """

    yaml: str
    statement: str
    fields: dict[str, Any] = field(default_factory=dict)
    n_cells: int = 0
    energy_kwh: float = 0.0
    emissions_g: float = 0.0
    emissions_range_g: tuple[float, float] = (0.0, 0.0)
    embodied_g: float = 0.0

    def __str__(self) -> str:
        return f"{self.yaml}\n{self.statement}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_markdown_(self) -> str:
        return f"```yaml\n{self.yaml}```\n\n{self.statement}\n"


def _select(rows: Sequence[Row], cells: str | Iterable[int] | None) -> list[Row]:
    if cells is None:
        return list(rows)
    recorded = [r["execution_count"] for r in rows if r.get("execution_count") is not None]
    if isinstance(cells, str):
        wanted = parse_cells(cells, recorded)
        asked = cells
    else:
        wanted = {int(c) for c in cells}
        asked = _compact(wanted)
    chosen = [row for row in rows if row.get("execution_count") in wanted]
    if not chosen:
        have = _compact(recorded) if recorded else "none"
        raise ValueError(f"no recorded cell has execution count {asked} (recorded: {have})")
    return chosen


def _distinct(values: Iterable[Any]) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values if v))


def describe_hardware(hardware: Mapping[str, Any]) -> str:
    """``"1 x NVIDIA H200, AMD EPYC 9654 (96 CPUs)"`` from ``Tracker.hardware()``."""
    parts = []
    gpus = describe_gpus(hardware)
    if gpus:
        parts.append(gpus)
    if hardware.get("cpu_model"):
        cpu = str(hardware["cpu_model"])
        n_cpus = hardware.get("n_cpus")
        parts.append(f"{cpu} ({float(n_cpus):g} CPUs)" if n_cpus else cpu)
    return ", ".join(parts)


def _hardware_text(rows: Sequence[Row]) -> str | None:
    distinct = _distinct(describe_hardware(row_hardware(row)) for row in rows)
    return "; ".join(distinct) if distinct else None


def _place(settings: dict[str, Any]) -> str | None:
    """A readable place from a session's settings: "France", "aws:eu-west-3 (Paris)"."""
    cloud, zone, country = (settings.get(k) for k in ("cloud_region", "zone", "country"))
    try:
        from carbon_magic.grid.static import cloud_regions, countries, validate_country

        if cloud:
            region = cloud_regions().get(str(cloud))
            return f"{cloud} ({region.location})" if region and region.location else str(cloud)
        if country and not zone:
            return countries()[validate_country(str(country))].name
    except (ImportError, KeyError, ValueError):
        pass
    return cloud or zone or country or None


def _location_text(rows: Sequence[Row]) -> str | None:
    distinct = _distinct(_place(row_settings(row)) for row in rows)
    return ", ".join(distinct) if distinct else None


def _methods_sentence(rows: Sequence[Row]) -> str:
    by_component: dict[str, list[str]] = {}
    for row in rows:
        for component, method in row_methods(row).items():
            by_component.setdefault(component, [])
            if method not in by_component[component]:
                by_component[component].append(method)
    if not by_component:
        return "How energy was obtained was not recorded."
    parts = []
    for component, methods in by_component.items():
        words = " or ".join(_METHOD_WORDS.get(m, m) for m in methods)
        parts.append(f"{_COMPONENT_WORDS.get(component, component)} energy was {words}")
    return "; ".join(parts) + "."


def _remote_sentence(remote: Mapping[str, Any]) -> str:
    """The sentence on hosted LLM calls: estimated, on the providers' grids, not added."""
    count = remote["count"]
    calls = f"{count} call{'s' if count != 1 else ''} to hosted LLM APIs"
    if not remote["estimated"]:
        return f"The cells also made {calls}, with no estimate available; not included above."
    low, high = remote["emissions_range_g"]
    text = (
        f"The cells also made {calls}, remote (estimated) at about "
        f"{format_kwh(remote['energy_kwh'])} and {format_grams_range(remote['emissions_g'], low, high)} "
        f"CO2e on the providers' grids ({remote['method']}), not included above"
    )
    if remote["unestimated"]:
        text += f"; {remote['unestimated']} of the calls have no estimate"
    return text + "."


def model_card(
    rows: Sequence[Row],
    training_type: str | None = None,
    hardware: str | Mapping[str, Any] | None = None,
    cells: str | Iterable[int] | None = None,
    location: str | None = None,
) -> Card:
    """The ``co2_eq_emissions`` block for ``rows`` (or the cells picked by ``cells``).

    ``cells`` is a spec like ``"3,5-8"`` or an iterable of execution counts;
    ``training_type`` (e.g. "fine-tuning"), ``hardware`` (text, or ``Tracker.hardware()``)
    and ``location`` override what the rows tell (hardware and location come from the
    sessions' records when the rows carry them). Emissions are operational grams CO2e,
    two significant figures; embodied emissions are stated beside them, not added.

    Raises ``ValueError`` for a bad ``cells`` spec, or when it matches no recorded cell,
    or when there are no rows at all.
    """
    if not rows:
        raise ValueError("no recorded cells to describe")
    chosen = _select(rows, cells)
    emissions = sum(float(r.get("emissions_g") or 0.0) for r in chosen)
    low = sum(float(r.get("emissions_low_g") or 0.0) for r in chosen)
    high = sum(float(r.get("emissions_high_g") or 0.0) for r in chosen)
    energy = sum(float(r.get("energy_kwh") or 0.0) for r in chosen)
    energy_low = sum(float(r.get("energy_low_kwh") or 0.0) for r in chosen)
    energy_high = sum(float(r.get("energy_high_kwh") or 0.0) for r in chosen)
    embodied = sum(float(r.get("embodied_g") or 0.0) for r in chosen)
    duration = sum(float(r.get("duration_s") or 0.0) for r in chosen)
    intensity_sources = _distinct(r.get("intensity_source") for r in chosen)
    pues = sorted({float(r.get("pue") or 1.0) for r in chosen})
    if isinstance(hardware, Mapping):
        hardware = describe_hardware(hardware)
    hardware = hardware or _hardware_text(chosen)
    location = location or _location_text(chosen)

    fields: dict[str, Any] = {
        "emissions": float(_yaml_number(emissions)),
        "source": f"carbon_magic {__version__} (per-cell energy; grid intensity: "
        + ("; ".join(intensity_sources) or "unknown")
        + ")",
    }
    if training_type:
        fields["training_type"] = training_type
    if location:
        fields["geographical_location"] = location
    if hardware:
        fields["hardware_used"] = hardware
    lines = ["co2_eq_emissions:", f"  emissions: {_yaml_number(emissions)}"]
    lines += [
        f"  {key}: {_yaml_string(str(value))}"
        for key, value in fields.items()
        if key != "emissions"
    ]
    yaml_text = "\n".join(lines) + "\n"

    n = len(chosen)
    counts = [r["execution_count"] for r in chosen if r.get("execution_count") is not None]
    which = f"{n} notebook {'cell' if n == 1 else 'cells'}"
    if counts and cells is not None:
        which += f" (execution counts {_compact(counts)})"
    intensity = emissions / energy if energy > 0 else None
    pue_text = ", ".join(f"{p:g}" for p in pues)
    sentences = [
        f"The {which} ran for {format_duration(duration)} and used about {format_kwh(energy)} "
        f"of electricity (range {format_kwh(energy_low)}–{format_kwh(energy_high)}), "
        f"including facility overhead (PUE {pue_text}).",
        "At a grid carbon intensity of "
        + (f"about {intensity:.0f} gCO2e/kWh" if intensity is not None else "unknown")
        + (f" for {location}" if location else "")
        + f" (source: {'; '.join(intensity_sources) or 'unknown'}), this corresponds to "
        f"{format_grams_range(emissions, low, high)} CO2e of operational emissions.",
        _methods_sentence(chosen),
        "The range combines the uncertainty of each energy method with that of the grid intensity.",
    ]
    if embodied:
        sentences.append(
            f"Amortised embodied (manufacturing) emissions of the hardware add an estimated "
            f"{format_grams(embodied)} CO2e, not included above."
        )
    remote = remote_totals(chosen)
    if remote is not None:
        sentences.append(_remote_sentence(remote))
    sentences.append(f"Measured with carbon_magic {__version__}.")
    return Card(
        yaml=yaml_text,
        statement=" ".join(sentences),
        fields=fields,
        n_cells=n,
        energy_kwh=energy,
        emissions_g=emissions,
        emissions_range_g=(low, high),
        embodied_g=embodied,
    )
