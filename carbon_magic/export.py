"""Exports of recorded cells: CodeCarbon's ``emissions.csv``, a flat CSV, JSON, pandas.

Input rows are ledger cell rows (see ``carbon_magic.report``): joules, kWh, grams,
UTC epoch seconds. Units change only here, where a format wants them (kg and kWh for
CodeCarbon).
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from carbon_magic.export_json import (
    GENERATOR,
    JSON_FORMAT,
    JSON_FORMAT_VERSION,
    json_record,
    read_json_records,
    redacted_source,
    write_json,
)
from carbon_magic.export_target import resolve_target, write_to
from carbon_magic.ledger import CELL_COLUMNS, CLUSTER_SHARE_COLUMNS, REMOTE_SHARE_COLUMNS
from carbon_magic.measurement import J_PER_KWH, is_gpu_key
from carbon_magic.report import Row, row_devices, row_hardware, row_methods, row_settings
from carbon_magic.vocabulary import COMPONENTS
from carbon_magic.water import WaterFactors, water_factors

if TYPE_CHECKING:
    import pandas

# The JSON format lives in ``export_json``; importers of this module keep its names.
__all__ = [
    "CODECARBON_COLUMNS",
    "DEFAULT_FILE_NAMES",
    "DEFAULT_FORMAT",
    "EXPORT_FORMATS",
    "FLAT_COLUMNS",
    "FORMATS",
    "GENERATOR",
    "JSON_FORMAT",
    "JSON_FORMAT_VERSION",
    "ExportFormat",
    "codecarbon_record",
    "describe_formats",
    "describe_gpus",
    "export_format",
    "export_records",
    "flat_record",
    "json_record",
    "read_json_records",
    "to_dataframe",
    "write_export",
]


# CodeCarbon's emissions.csv header, in its order (EmissionsData in
# codecarbon/output_methods/emissions_data.py). Units: s, kg, kg/s, W, kWh, L, GB.
CODECARBON_COLUMNS = (
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
)

# Our flat CSV / DataFrame columns. Times are ISO 8601 UTC; energy per component in
# joules (IT, before PUE); energy_* in kWh (facility, after PUE); emissions in grams.
FLAT_COLUMNS = (
    "session_uuid",
    "notebook_path",
    "host",
    "kernel_id",
    # The cells table's columns, its JSON ones flattened below:
    *(name for name in CELL_COLUMNS if not name.endswith("_json") and name != "budget"),
    *(f"method_{component}" for component in COMPONENTS),
    "devices",
    "budget",
    # The Dask cluster's share of the figures above (empty for cells without one):
    *CLUSTER_SHARE_COLUMNS,
    # Calls to hosted LLM APIs, estimated, NOT in the figures above (empty without any):
    *REMOTE_SHARE_COLUMNS,
)

# ---------------------------------------------------------------- helpers


@lru_cache(maxsize=256)
def _utc_second(second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a whole UTC epoch second; cells follow one another in
    time, so consecutive cells mostly share one."""
    return datetime.fromtimestamp(second, tz=timezone.utc).isoformat()[: -len("+00:00")]


def _utc_parts(epoch_s: float) -> tuple[int, int]:
    """(whole second, microseconds) of a UTC epoch time, rounded to the microsecond as
    ``datetime.fromtimestamp`` rounds it (half to even), without making a datetime."""
    fraction, whole = math.modf(epoch_s)
    micro = round(fraction * 1e6)
    if micro >= 1_000_000:
        micro -= 1_000_000
        whole += 1.0
    elif micro < 0:
        micro += 1_000_000
        whole -= 1.0
    return int(whole), micro


def _utc_iso(epoch_s: Any) -> str:
    """``datetime.fromtimestamp(epoch_s, timezone.utc).isoformat()``, character for
    character, at a fraction of its cost (it runs twice per exported cell)."""
    if epoch_s is None:
        return ""
    second, micro = _utc_parts(float(epoch_s))
    if micro:
        return f"{_utc_second(second)}.{micro:06d}+00:00"
    return _utc_second(second) + "+00:00"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _gpu_names(hardware: Mapping[str, Any]) -> list[str] | None:
    """The names of the GPUs in a hardware summary, other accelerators (Apple's Neural
    Engine) left out; ``None`` where the summary has no ``gpus``."""
    gpus = hardware.get("gpus")
    if gpus is None:
        return None
    if isinstance(gpus, Mapping):
        return [str(name) for key, name in gpus.items() if is_gpu_key(str(key))]
    return [str(g.get("name", g)) if isinstance(g, Mapping) else str(g) for g in gpus]


def describe_gpus(hardware: Mapping[str, Any]) -> str:
    """``"2 x NVIDIA H200"`` (CodeCarbon's style) from a hardware summary; ``""`` if none.
    GPUs only: Apple's Neural Engine is not listed."""
    names = _gpu_names(hardware) or []
    return ", ".join(f"{count} x {name}" for name, count in Counter(names).items())


def _country(code: str) -> tuple[str, str]:
    """(ISO-3 code, name) as CodeCarbon writes them, from our ISO-2 setting."""
    try:
        from carbon_magic.grid.static import countries, validate_country

        row = countries()[validate_country(code)]
    except (ImportError, KeyError, ValueError):
        return code.upper(), ""
    return row.iso3, row.name


def _location(row: Row) -> dict[str, str]:
    """Country and cloud fields known from the session's settings (set by the user)."""
    settings = row_settings(row)
    country = _text(settings.get("country"))
    iso3, name = _country(country) if country else ("", "")
    cloud = _text(settings.get("cloud_region"))
    provider, _, region = cloud.partition(":") if cloud else ("", "", "")
    return {
        "country_name": name,
        "country_iso_code": iso3,
        "cloud_provider": provider,
        "cloud_region": region,
        "on_cloud": "Y" if cloud else "N",
    }


@lru_cache(maxsize=64)
def _water_factors(country: Any, cloud_region: Any, wue: Any) -> WaterFactors:
    return water_factors({"country": country, "cloud_region": cloud_region, "wue": wue})


@lru_cache(maxsize=64)
def _water_of_settings_text(text: str) -> WaterFactors:
    """The water factors of a session's settings JSON (the same for all its cells)."""
    settings = row_settings({"settings_json": text})
    return _water_factors(
        settings.get("country"), settings.get("cloud_region"), settings.get("wue")
    )


def _water(row: Row) -> WaterFactors:
    """The water factors of the cell's session (on-site WUE and the grid's water; see
    :mod:`carbon_magic.water`), from its settings."""
    text = row.get("settings_json")
    if isinstance(text, str) and "settings" not in row:
        return _water_of_settings_text(text)
    settings = row_settings(row)
    return _water_factors(
        settings.get("country"), settings.get("cloud_region"), settings.get("wue")
    )


# ---------------------------------------------------------------- records


def _session_fields(row: Row, hardware: Mapping[str, Any] | None) -> dict[str, Any]:
    """The CodeCarbon columns that come from the cell's session, not the cell: location,
    OS, Python and hardware. The same for every cell of a session, so computed once."""
    hw = row_hardware(row) or dict(hardware or {})
    fields: dict[str, Any] = dict(_location(row))
    host = row.get("host")
    if hw.get("os") or hw.get("python_version"):
        fields["os"] = _text(hw.get("os"))
        fields["python_version"] = _text(hw.get("python_version"))
    elif host is None or host == socket.gethostname():
        # The ledger is local, so this machine is the measured one.
        fields["os"] = platform.platform()
        fields["python_version"] = platform.python_version()
    if hw.get("n_cpus") is not None:
        fields["cpu_count"] = hw["n_cpus"]
    fields["cpu_model"] = _text(hw.get("cpu_model"))
    gpu_names = _gpu_names(hw)
    if gpu_names is not None:
        fields["gpu_count"] = len(gpu_names)
        fields["gpu_model"] = describe_gpus(hw)
    if hw.get("ram_gb") is not None:
        fields["ram_total_size"] = hw["ram_gb"]
    return fields


_CC_AT = {name: index for index, name in enumerate(CODECARBON_COLUMNS)}
_CC_COMPONENTS = [
    (f"{component}_j", _CC_AT[f"{component}_power"], _CC_AT[f"{component}_energy"])
    for component in COMPONENTS
]


def _codecarbon_template(session_fields: Mapping[str, Any]) -> list[Any]:
    """A CodeCarbon row with the session's columns filled in and the cell's left empty."""
    values: list[Any] = [""] * len(CODECARBON_COLUMNS)
    values[_CC_AT["codecarbon_version"]] = GENERATOR
    for name, value in session_fields.items():
        values[_CC_AT[name]] = value
    return values


_CC_TIMESTAMP, _CC_PROJECT, _CC_RUN, _CC_DURATION, _CC_EMISSIONS, _CC_RATE = (
    _CC_AT[name]
    for name in ("timestamp", "project_name", "run_id", "duration", "emissions", "emissions_rate")
)
_CC_ENERGY, _CC_MODE, _CC_PUE, _CC_WUE, _CC_WATER = (
    _CC_AT[name] for name in ("energy_consumed", "tracking_mode", "pue", "wue", "water_consumed")
)


def _codecarbon_values(
    row: Row, template: list[Any], water: WaterFactors | None = None
) -> list[Any]:
    """The CodeCarbon row of one cell (``CODECARBON_COLUMNS`` order) on its session's
    ``template``; ``water``: the session's water factors when already known. Called once
    per exported cell, so written for speed."""
    get = row.get
    values = template.copy()
    duration = get("duration_s")
    duration = float(duration) if duration is not None else 0.0
    pue = get("pue")
    pue = (float(pue) if pue is not None else 0.0) or 1.0
    emissions_g = get("emissions_g")
    emissions_kg = (float(emissions_g) if emissions_g is not None else 0.0) / 1000.0
    energy_kwh = get("energy_kwh")
    energy_kwh = float(energy_kwh) if energy_kwh is not None else 0.0
    ended = get("ended_at")
    if ended is not None:
        # isoformat(timespec="seconds") of the cell's end, without making a datetime.
        values[_CC_TIMESTAMP] = _utc_second(_utc_parts(float(ended))[0])[:19]
    values[_CC_PROJECT] = get("notebook_path") or "carbon_magic"
    values[_CC_RUN] = _text(get("session_uuid"))
    values[_CC_DURATION] = duration
    values[_CC_EMISSIONS] = emissions_kg
    values[_CC_RATE] = emissions_kg / duration if duration > 0 else 0.0
    values[_CC_ENERGY] = energy_kwh
    values[_CC_MODE] = _text(get("mode"))
    values[_CC_PUE] = pue
    it_joules = 0.0
    for column, power_at, energy_at in _CC_COMPONENTS:
        joules = get(column)
        joules = float(joules) if joules is not None else 0.0
        it_joules += joules
        values[power_at] = joules / duration if duration > 0 else 0.0
        values[energy_at] = joules * pue / J_PER_KWH
    # CodeCarbon's wue (on-site, L/kWh) and water_consumed (L): cooling water plus the grid's.
    if water is None:
        water = _water(row)
    values[_CC_WUE] = water.wue_l_per_kwh
    values[_CC_WATER] = water.litres(it_joules / J_PER_KWH, energy_kwh)
    return values


def codecarbon_record(
    row: Row,
    hardware: Mapping[str, Any] | None = None,
    session_fields: Mapping[str, Any] | None = None,
) -> dict[str, str | float | int]:
    """One ``emissions.csv`` row for a ledger cell row, in CodeCarbon's units.

    As CodeCarbon does, ``cpu_energy``/``gpu_energy``/``ram_energy`` include the PUE
    (their sum is ``energy_consumed``, kWh), powers are the IT mean over the cell (W),
    ``emissions`` is in kg and ``emissions_rate`` in kg/s. ``timestamp`` is the cell's
    end, UTC. Unknown fields are left empty. ``hardware`` (``Tracker.hardware()``) is
    used when the row does not carry its session's hardware; ``session_fields`` are the
    session's columns when already worked out for another cell of the session.
    """
    fields = session_fields if session_fields is not None else _session_fields(row, hardware)
    values = _codecarbon_values(row, _codecarbon_template(fields))
    return dict(zip(CODECARBON_COLUMNS, values, strict=True))


@lru_cache(maxsize=1024)
def _methods_of(methods_json: str) -> tuple[str, ...]:
    """The method of each component (``COMPONENTS`` order) in a methods JSON text."""
    methods = row_methods({"methods_json": methods_json})
    return tuple(methods.get(component, "") for component in COMPONENTS)


_FLAT_METHODS_AT = FLAT_COLUMNS.index(f"method_{COMPONENTS[0]}")
_FLAT_HEAD = FLAT_COLUMNS[:_FLAT_METHODS_AT]  # the row's own columns, then methods...
_FLAT_TAIL = FLAT_COLUMNS[_FLAT_METHODS_AT + len(COMPONENTS) + 1 :]  # ...devices, the rest
_flat_head, _flat_tail = itemgetter(*_FLAT_HEAD), itemgetter(*_FLAT_TAIL)
_SOURCE_AT, _STARTED_AT, _ENDED_AT = (
    _FLAT_HEAD.index(name) for name in ("source", "started_at", "ended_at")
)


def _devices_text(row: Row) -> str:
    """The devices column: the ledger's JSON text as stored (compact JSON, written by the
    ledger's own writer: not decoded again, which would cost more than the rest of the
    row), else the devices encoded."""
    text = row.get("devices_json")
    if isinstance(text, str) and "devices" not in row and text.startswith("{"):
        return text
    return json.dumps(row_devices(row), sort_keys=True)


def _flat_values(row: Row) -> list[Any]:
    """The values of :func:`flat_record`, in ``FLAT_COLUMNS`` order. Called once per
    exported cell, so written for speed: rows from ``iter_cells`` carry every column."""
    try:
        head, tail = list(_flat_head(row)), _flat_tail(row)
    except KeyError:  # a row from elsewhere, without some columns
        head = [row.get(name) for name in _FLAT_HEAD]
        tail = tuple(row.get(name) for name in _FLAT_TAIL)
    source = head[_SOURCE_AT]
    if isinstance(source, str):  # rows written before redaction
        head[_SOURCE_AT] = redacted_source(source)
    head[_STARTED_AT] = _utc_iso(head[_STARTED_AT])
    head[_ENDED_AT] = _utc_iso(head[_ENDED_AT])
    methods_json = row.get("methods_json")
    if isinstance(methods_json, str) and "methods" not in row:
        methods = _methods_of(methods_json)
    else:
        decoded = row_methods(row)
        methods = tuple(decoded.get(component, "") for component in COMPONENTS)
    head += methods
    head.append(_devices_text(row))
    head += tail
    return head


def flat_record(row: Row) -> dict[str, Any]:
    """Our flat record of a ledger cell row (``FLAT_COLUMNS``), with ranges and methods;
    secret settings in the source are redacted (:func:`carbon_magic.redact.redact_secrets`)."""
    return dict(zip(FLAT_COLUMNS, _flat_values(row), strict=True))


# ---------------------------------------------------------------- export

Writer = Callable[[Iterable[Row], Mapping[str, Any], IO[str]], None]


@dataclass(frozen=True)
class ExportFormat:
    """One export format: its name (``--format NAME``), the file name a folder gets,
    a one-line description for help texts, and the function writing rows to a text
    stream (rows, the session's hardware, the stream). Writers take the rows one at a
    time: an export of millions of cells holds one batch of them in memory."""

    name: str
    default_file_name: str
    description: str
    write: Writer


def _write_codecarbon(rows: Iterable[Row], hardware: Mapping[str, Any], stream: IO[str]) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CODECARBON_COLUMNS)
    # The session's columns and water factors, worked out once per session (by its
    # hardware, settings, host).
    sessions: dict[tuple[Any, ...], tuple[list[Any], WaterFactors]] = {}
    for row in rows:
        if "hardware" in row or "settings" in row:  # decoded by the caller: not cached
            template = _codecarbon_template(_session_fields(row, hardware))
            writer.writerow(_codecarbon_values(row, template))
            continue
        key = (row.get("hardware_json"), row.get("settings_json"), row.get("host"))
        session = sessions.get(key)
        if session is None:
            fields = _session_fields(row, hardware)
            session = sessions[key] = (_codecarbon_template(fields), _water(row))
        writer.writerow(_codecarbon_values(row, *session))


def _write_flat(rows: Iterable[Row], hardware: Mapping[str, Any], stream: IO[str]) -> None:
    writer = csv.writer(stream, lineterminator="\n")  # None is written as ""
    writer.writerow(FLAT_COLUMNS)
    writer.writerows(_flat_values(row) for row in rows)


# The formats, in the order help texts list them; the first is the default. A new
# format is one writer function and one entry here: the magics, the CLI and their
# help texts take their choices from this table.
EXPORT_FORMATS: dict[str, ExportFormat] = {
    spec.name: spec
    for spec in (
        ExportFormat(
            "codecarbon",
            "emissions.csv",
            "CodeCarbon's emissions.csv columns and units (kg, kWh, W, s)",
            _write_codecarbon,
        ),
        ExportFormat("csv", "carbon_cells.csv", "our columns with ranges and methods", _write_flat),
        ExportFormat("json", "carbon_cells.json", "every column", write_json),
    )
}
FORMATS = tuple(EXPORT_FORMATS)
DEFAULT_FORMAT = FORMATS[0]
DEFAULT_FILE_NAMES = {name: spec.default_file_name for name, spec in EXPORT_FORMATS.items()}


def describe_formats() -> str:
    """``codecarbon: CodeCarbon's ...; csv: ...; json: ...``, for help texts."""
    return "; ".join(f"{spec.name}: {spec.description}" for spec in EXPORT_FORMATS.values())


def export_format(name: str) -> ExportFormat:
    """The format called ``name`` (case and surrounding spaces ignored); ``ValueError``
    naming the valid formats for any other."""
    spec = EXPORT_FORMATS.get(str(name).strip().lower())
    if spec is None:
        raise ValueError(f"unknown export format {name!r}; valid formats: {', '.join(FORMATS)}")
    return spec


def write_export(
    rows: Iterable[Row],
    path: str | os.PathLike[str],
    fmt: str = DEFAULT_FORMAT,
    force: bool = False,
    hardware: Mapping[str, Any] | None = None,
) -> tuple[Path, int]:
    """Write ``rows`` to ``path`` in format ``fmt`` (one of :data:`FORMATS`); returns the
    path written and how many rows it holds. The rows are read one at a time, so an
    iterator (:func:`carbon_magic.ledger.iter_cells`) exports in constant memory.

    Formats: ``codecarbon`` (CodeCarbon's ``emissions.csv`` columns and units, one row
    per cell), ``csv`` (our flat columns with ranges and methods), ``json`` (every
    column, read back with ``read_json_records``). A directory ``path`` gets the
    format's default file name; ``-`` is standard output. ``hardware``
    (``Tracker.hardware()``) fills CodeCarbon's hardware columns for rows that do not
    carry their session's.

    Raises ``ValueError`` for an unknown format (naming the valid ones),
    ``FileExistsError`` when the file exists and ``force`` is false, and ``OSError`` for a
    path that is not a regular file, a character device or a FIFO; nothing is written
    then. A file is replaced atomically; a character device or FIFO (``/dev/stdout``, a
    named pipe) is written through, never replaced. A failed write raises ``OSError``.
    """
    spec = export_format(fmt)
    target = resolve_target(path, spec.default_file_name, force)
    machine = dict(hardware or {})
    count = 0

    def counted(source: Iterable[Row]) -> Iterator[Row]:
        nonlocal count
        for row in source:
            count += 1
            yield row

    write_to(target, lambda stream: spec.write(counted(rows), machine, stream))
    return target.path, count


def export_records(
    rows: Iterable[Row],
    path: str | os.PathLike[str],
    fmt: str = DEFAULT_FORMAT,
    force: bool = False,
    hardware: Mapping[str, Any] | None = None,
) -> Path:
    """:func:`write_export`, returning only the path written."""
    return write_export(rows, path, fmt, force, hardware)[0]


def to_dataframe(rows: Iterable[Row]) -> pandas.DataFrame:
    """The rows as a pandas DataFrame of ``FLAT_COLUMNS`` (times as UTC datetimes).

    Raises ``ImportError`` saying how to install pandas when it is missing.
    """
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "to_dataframe needs pandas, which is not installed: pip install pandas"
        ) from None
    rows = list(rows)
    frame = pandas.DataFrame([flat_record(row) for row in rows], columns=list(FLAT_COLUMNS))
    for column in ("started_at", "ended_at"):
        epoch = pandas.Series([row.get(column) for row in rows], dtype="float64")
        frame[column] = pandas.to_datetime(epoch, unit="s", utc=True)
    return frame
