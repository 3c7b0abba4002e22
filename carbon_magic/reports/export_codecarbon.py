"""The CodeCarbon export: ``emissions.csv`` with CodeCarbon's columns and units (kg,
kWh, W, s, L), one row per recorded cell; the session's columns worked out once."""

from __future__ import annotations

import csv
import io
import platform
import socket
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import IO, Any

from carbon_magic.engine.measurement import J_PER_KWH, is_gpu_key
from carbon_magic.engine.water import WaterFactors, water_factors
from carbon_magic.ledger import LedgerCells
from carbon_magic.reports.cell_rows import Row, row_hardware, row_settings
from carbon_magic.reports.export_json import GENERATOR
from carbon_magic.reports.export_text import csv_field, csv_texts, float_texts
from carbon_magic.reports.export_times import utc_parts, utc_second, utc_second_isos
from carbon_magic.vocabulary import COMPONENTS

__all__ = [
    "CODECARBON_COLUMNS",
    "codecarbon_record",
    "describe_gpus",
    "write_codecarbon",
    "write_codecarbon_cells",
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
    :mod:`carbon_magic.engine.water`), from its settings."""
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
        values[_CC_TIMESTAMP] = utc_second(utc_parts(float(ended))[0])[:19]
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


def write_codecarbon(rows: Iterable[Row], hardware: Mapping[str, Any], stream: IO[str]) -> None:
    """CodeCarbon's ``emissions.csv`` of ``rows``, streamed to ``stream`` (``hardware``:
    the session's, for rows that do not carry it)."""
    stream.write(",".join(CODECARBON_COLUMNS) + "\n")
    _write_rows(rows, hardware, stream)


def _write_rows(rows: Iterable[Row], hardware: Mapping[str, Any], stream: IO[str]) -> int:
    """The lines of ``rows``, one dict at a time; returns how many."""
    writer = csv.writer(stream, lineterminator="\n")
    # The session's columns and water factors, worked out once per session (by its
    # hardware, settings, host).
    sessions: dict[tuple[Any, ...], tuple[list[Any], WaterFactors]] = {}
    count = 0
    for row in rows:
        count += 1
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
    return count


# ---------------------------------------------------------------- the ledger's cells

# The cell's columns a CodeCarbon row is made of, read a batch at a time.
_CELL_SELECT = (
    "c.session_id",
    "c.ended_at",
    "c.duration_s",
    "c.emissions_g",
    "c.energy_kwh",
    "c.pue",
    *(f"c.{component}_j" for component in COMPONENTS),
    "coalesce(c.mode, '')",
)
# The columns worked out per cell; the others are the session's, the same for each of
# its cells, written once per session as runs of fields between the cell's.
_PER_CELL = (
    "timestamp",
    "duration",
    "emissions",
    "emissions_rate",
    *(f"{component}_power" for component in COMPONENTS),
    *(f"{component}_energy" for component in COMPONENTS),
    "energy_consumed",
    "water_consumed",
    "tracking_mode",
    "pue",
)
_PER_CELL_AT = sorted(_CC_AT[name] for name in _PER_CELL)
# (start, end) of each run of the session's columns, in order.
_SESSION_RUNS = [
    (start, end)
    for start, end in zip(
        [-1, *_PER_CELL_AT], [*_PER_CELL_AT, len(CODECARBON_COLUMNS)], strict=True
    )
    if end > start + 1
]


class _SessionRuns(dict[int, tuple[tuple[str, ...], float, float]]):
    """Session id: (the CSV text of each run of the session's columns, on-site WUE and
    the grid's water, L/kWh), worked out as :func:`write_codecarbon` works them out,
    when the session's first cell comes."""

    def __init__(self, cells: LedgerCells, hardware: Mapping[str, Any]) -> None:
        super().__init__()
        self.cells, self.hardware = cells, hardware

    def __missing__(self, session_id: int) -> tuple[tuple[str, ...], float, float]:
        row = self.cells.session_row(session_id)
        values = _codecarbon_template(_session_fields(row, self.hardware))
        values[_CC_PROJECT] = row.get("notebook_path") or "carbon_magic"
        values[_CC_RUN] = _text(row.get("session_uuid"))
        water = _water(row)
        values[_CC_WUE] = water.wue_l_per_kwh
        runs = tuple(
            ",".join(map(csv_field, values[start + 1 : end])) for start, end in _SESSION_RUNS
        )
        found = self[session_id] = (runs, water.wue_l_per_kwh, water.grid_l_per_kwh or 0.0)
        return found


def write_codecarbon_cells(cells: LedgerCells, hardware: Mapping[str, Any], stream: IO[str]) -> int:
    """CodeCarbon's ``emissions.csv`` of the ledger's ``cells``, the same bytes as
    :func:`write_codecarbon` writes for them, a batch at a time, the arithmetic done by
    numpy a column at a time (the same float operations, in the same order); returns
    the number of cells written."""
    import numpy  # when an export runs: the CLI's other commands start without it

    stream.write(",".join(CODECARBON_COLUMNS) + "\n")
    sessions = _SessionRuns(cells, hardware)
    count = 0
    try:
        for batch, _ in cells.batches(_CELL_SELECT, with_parts=False):
            count += len(batch)
            with numpy.errstate(all="ignore"):  # inf and nan as Python makes them, silently
                stream.write(_batch_text(cells, batch, sessions, hardware))
    except sqlite3.OperationalError as error:
        if "no such column" not in str(error) or count:
            raise
        return _write_rows(cells, hardware, stream)  # a ledger from before the columns
    return count


def _floats(values: tuple[Any, ...]) -> Any:
    """A column as a numpy array of floats; None where a value is not a number."""
    import numpy  # when an export runs: the CLI's other commands start without it

    array = numpy.array(values)
    if array.dtype == numpy.int64:
        return array.astype(numpy.float64)
    return array if array.dtype == numpy.float64 else None


def _texts(array: Any) -> list[str]:
    values = array.tolist()
    texts = float_texts(values)
    return texts if texts is not None else list(map(csv_field, values))


def _batch_text(
    cells: LedgerCells,
    batch: list[tuple[Any, ...]],
    sessions: _SessionRuns,
    hardware: Mapping[str, Any],
) -> str:
    """The lines of one batch (rows ``(id, *_CELL_SELECT)``), as _codecarbon_values
    makes them."""
    import numpy  # when an export runs: the CLI's other commands start without it

    columns = list(zip(*batch, strict=True))
    numbers = [_floats(column) for column in columns[2 : 7 + len(COMPONENTS)]]
    if any(array is None for array in numbers):  # NULL or text: the batch as dicts
        return _dict_batch_text(cells, columns[0], hardware)
    ended, duration, grams, kwh, pue, *joules = numbers
    session_ids = columns[1]
    found = [sessions[session_id] for session_id in session_ids]
    pue = numpy.where(pue == 0.0, 1.0, pue)  # (pue or 0.0) or 1.0
    kg = grams / 1000.0
    positive = duration > 0
    per_second = numpy.where(positive, duration, 1.0)
    it_joules = numpy.zeros(len(batch))
    fields: dict[str, Any] = {
        "timestamp": utc_second_isos(columns[2]),
        "duration": _texts(duration),
        "emissions": _texts(kg),
        "emissions_rate": _texts(numpy.where(positive, kg / per_second, 0.0)),
        "energy_consumed": _texts(kwh),
        "tracking_mode": csv_texts(columns[-1]),
        "pue": _texts(pue),
    }
    for component, component_joules in zip(COMPONENTS, joules, strict=True):
        it_joules = it_joules + component_joules
        power = numpy.where(positive, component_joules / per_second, 0.0)
        fields[f"{component}_power"] = _texts(power)
        fields[f"{component}_energy"] = _texts(component_joules * pue / J_PER_KWH)
    wue = numpy.array([session[1] for session in found], dtype=numpy.float64)
    grid = numpy.array([session[2] for session in found], dtype=numpy.float64)
    fields["water_consumed"] = _texts(wue * (it_joules / J_PER_KWH) + grid * kwh)
    parts: list[Any] = []
    run = 0
    for at, name in enumerate(CODECARBON_COLUMNS):
        if name in fields:
            parts.append(fields[name])
        elif at == 0 or CODECARBON_COLUMNS[at - 1] in fields:  # a run of the session's
            parts.append([session[0][run] for session in found])
            run += 1
    return "\n".join(map(",".join, zip(*parts, strict=True))) + "\n"


def _dict_batch_text(cells: LedgerCells, ids: Iterable[int], hardware: Mapping[str, Any]) -> str:
    """The lines of the cells ``ids`` written as :func:`write_codecarbon` writes them."""
    out = io.StringIO()
    _write_rows(cells.rows_by_id(list(ids)), hardware, out)
    return out.getvalue()
