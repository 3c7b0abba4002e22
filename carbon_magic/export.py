"""Exports of recorded cells: CodeCarbon's ``emissions.csv``, a flat CSV, JSON, pandas.

Input rows are ledger cell rows (see ``carbon_magic.report``): joules, kWh, grams,
UTC epoch seconds. Units change only here, where a format wants them (kg and kWh for
CodeCarbon).
"""

from __future__ import annotations

import csv
import functools
import json
import os
import platform
import secrets
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from carbon_magic._version import __version__
from carbon_magic.ledger import CELL_COLUMNS, CLUSTER_SHARE_COLUMNS, REMOTE_SHARE_COLUMNS
from carbon_magic.measurement import J_PER_KWH, is_gpu_key
from carbon_magic.redact import redact_secrets
from carbon_magic.report import Row, row_devices, row_hardware, row_methods, row_settings
from carbon_magic.vocabulary import COMPONENTS
from carbon_magic.water import WaterFactors, water_factors

if TYPE_CHECKING:
    import pandas

GENERATOR = f"carbon_magic {__version__}"

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

_JSON_COLUMNS = ("methods", "devices", "hardware", "settings")
JSON_FORMAT = "carbon_magic.cells"
JSON_FORMAT_VERSION = 1


# ---------------------------------------------------------------- helpers


def _utc_iso(epoch_s: Any) -> str:
    if epoch_s is None:
        return ""
    return datetime.fromtimestamp(float(epoch_s), tz=timezone.utc).isoformat()


def _num(value: Any) -> float:
    return float(value) if value is not None else 0.0


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


@functools.lru_cache(maxsize=64)
def _water_factors(country: Any, cloud_region: Any, wue: Any) -> WaterFactors:
    return water_factors({"country": country, "cloud_region": cloud_region, "wue": wue})


def _water(row: Row) -> dict[str, float]:
    """CodeCarbon's ``wue`` (on-site, L/kWh) and ``water_consumed`` (L): on-site cooling
    water plus the grid's (see :mod:`carbon_magic.water`)."""
    settings = row_settings(row)
    factors = _water_factors(
        settings.get("country"), settings.get("cloud_region"), settings.get("wue")
    )
    it_kwh = sum(_num(row.get(f"{component}_j")) for component in COMPONENTS) / J_PER_KWH
    litres = factors.litres(it_kwh, _num(row.get("energy_kwh")))
    return {"wue": factors.wue_l_per_kwh, "water_consumed": litres}


def _resolve_target(path: str | os.PathLike[str], fmt: str, force: bool) -> Path:
    target = Path(path).expanduser()
    if target.is_dir():
        target = target / DEFAULT_FILE_NAMES[fmt]
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {target}: the folder {target.parent} does not exist "
            "(create it, or give a path in an existing folder)"
        )
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists; use --force to overwrite it")
    return target


def _write_atomically(target: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, so a failure leaves no half file.

    The temporary file is created with ``open(..., "x")`` so that it gets the usual
    permissions (umask), unlike ``tempfile.mkstemp``'s private 0600.
    """
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "x", encoding="utf-8", newline="") as stream:
            write(stream)
        os.replace(temp, target)
    except OSError as error:  # named by the path asked for, not the temporary file's
        temp.unlink(missing_ok=True)
        raise type(error)(error.errno, f"cannot write {target}: {error.strerror}") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- records


def codecarbon_record(
    row: Row, hardware: Mapping[str, Any] | None = None
) -> dict[str, str | float | int]:
    """One ``emissions.csv`` row for a ledger cell row, in CodeCarbon's units.

    As CodeCarbon does, ``cpu_energy``/``gpu_energy``/``ram_energy`` include the PUE
    (their sum is ``energy_consumed``, kWh), powers are the IT mean over the cell (W),
    ``emissions`` is in kg and ``emissions_rate`` in kg/s. ``timestamp`` is the cell's
    end, UTC. Unknown fields are left empty. ``hardware`` (``Tracker.hardware()``) is
    used when the row does not carry its session's hardware.
    """
    hw = row_hardware(row) or dict(hardware or {})
    duration = _num(row.get("duration_s"))
    pue = _num(row.get("pue")) or 1.0
    emissions_kg = _num(row.get("emissions_g")) / 1000.0
    record: dict[str, str | float | int] = dict.fromkeys(CODECARBON_COLUMNS, "")
    ended = row.get("ended_at")
    record.update(
        timestamp=(
            datetime.fromtimestamp(float(ended), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            if ended is not None
            else ""
        ),
        project_name=row.get("notebook_path") or "carbon_magic",
        run_id=_text(row.get("session_uuid")),
        duration=duration,
        emissions=emissions_kg,
        emissions_rate=emissions_kg / duration if duration > 0 else 0.0,
        energy_consumed=_num(row.get("energy_kwh")),
        codecarbon_version=GENERATOR,
        tracking_mode=_text(row.get("mode")),
        pue=pue,
    )
    for component in COMPONENTS:
        joules = _num(row.get(f"{component}_j"))
        record[f"{component}_power"] = joules / duration if duration > 0 else 0.0
        record[f"{component}_energy"] = joules * pue / J_PER_KWH
    record.update(_location(row))
    record.update(_water(row))
    host = row.get("host")
    if hw.get("os") or hw.get("python_version"):
        record["os"] = _text(hw.get("os"))
        record["python_version"] = _text(hw.get("python_version"))
    elif host is None or host == socket.gethostname():
        # The ledger is local, so this machine is the measured one.
        record["os"] = platform.platform()
        record["python_version"] = platform.python_version()
    if hw.get("n_cpus") is not None:
        record["cpu_count"] = hw["n_cpus"]
    record["cpu_model"] = _text(hw.get("cpu_model"))
    gpu_names = _gpu_names(hw)
    if gpu_names is not None:
        record["gpu_count"] = len(gpu_names)
        record["gpu_model"] = describe_gpus(hw)
    if hw.get("ram_gb") is not None:
        record["ram_total_size"] = hw["ram_gb"]
    return record


def flat_record(row: Row) -> dict[str, Any]:
    """Our flat record of a ledger cell row (``FLAT_COLUMNS``), with ranges and methods;
    secret settings in the source are redacted (:func:`carbon_magic.redact.redact_secrets`)."""
    methods = row_methods(row)
    record: dict[str, Any] = {name: row.get(name) for name in FLAT_COLUMNS}
    record["source"] = redact_secrets(record["source"])  # rows written before redaction
    record["started_at"] = _utc_iso(row.get("started_at"))
    record["ended_at"] = _utc_iso(row.get("ended_at"))
    for component in COMPONENTS:
        record[f"method_{component}"] = methods.get(component, "")
    record["devices"] = json.dumps(row_devices(row), sort_keys=True)
    return record


def json_record(row: Row) -> dict[str, Any]:
    """Every column of the row, its JSON columns decoded (``methods``, ``devices``...);
    secret settings in the source are redacted."""
    record: dict[str, Any] = {}
    for key, value in row.items():
        base = key[: -len("_json")] if key.endswith("_json") else None
        if base in _JSON_COLUMNS and isinstance(value, str):
            try:
                record[base] = json.loads(value)
                continue
            except ValueError:
                pass
        record[key] = redact_secrets(value) if key == "source" else value
    return record


def read_json_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows from a JSON export, in ledger form again (``methods_json``... as text).

    The result feeds ``carbon_magic.ledger.measurement_from_row``. Raises ``ValueError``
    when the file is not a carbon_magic JSON export.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
        raise ValueError(f"{path} is not a carbon_magic JSON export")
    rows = []
    for record in data.get("records", []):
        row = {}
        for key, value in record.items():
            if key in _JSON_COLUMNS and not isinstance(value, str):
                row[f"{key}_json"] = json.dumps(value, sort_keys=True, separators=(",", ":"))
            else:
                row[key] = value
        rows.append(row)
    return rows


# ---------------------------------------------------------------- export

Writer = Callable[[list[Row], Mapping[str, Any], IO[str]], None]


@dataclass(frozen=True)
class ExportFormat:
    """One export format: its name (``--format NAME``), the file name a folder gets,
    a one-line description for help texts, and the function writing rows to a text
    stream (rows, the session's hardware, the stream)."""

    name: str
    default_file_name: str
    description: str
    write: Writer


def _write_json(rows: list[Row], hardware: Mapping[str, Any], stream: IO[str]) -> None:
    document = {
        "format": JSON_FORMAT,
        "format_version": JSON_FORMAT_VERSION,
        "generator": GENERATOR,
        "exported_at": datetime.now(timezone.utc).isoformat(),
        "units": {
            "time": "UTC seconds since the epoch",
            "cpu_j, gpu_j, ram_j": "J, IT energy before PUE",
            "energy_kwh": "kWh, facility energy after PUE",
            "emissions_g": "g CO2e, operational",
            "embodied_g": "g CO2e, amortised manufacturing",
            "intensity_g_per_kwh": "g CO2e/kWh",
            "remote_*": "hosted LLM calls, estimated (EcoLogits), not included above: "
            "kWh, g CO2e (providers' grids), L",
        },
        "records": [json_record(row) for row in rows],
    }
    json.dump(document, stream, indent=1, ensure_ascii=False)
    stream.write("\n")


def _write_csv(
    columns: tuple[str, ...], records: Iterable[Mapping[str, Any]], stream: IO[str]
) -> None:
    writer = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v for k, v in record.items()})


def _write_codecarbon(rows: list[Row], hardware: Mapping[str, Any], stream: IO[str]) -> None:
    _write_csv(CODECARBON_COLUMNS, (codecarbon_record(row, hardware) for row in rows), stream)


def _write_flat(rows: list[Row], hardware: Mapping[str, Any], stream: IO[str]) -> None:
    _write_csv(FLAT_COLUMNS, (flat_record(row) for row in rows), stream)


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
        ExportFormat("json", "carbon_cells.json", "every column", _write_json),
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


def export_records(
    rows: Iterable[Row],
    path: str | os.PathLike[str],
    fmt: str = DEFAULT_FORMAT,
    force: bool = False,
    hardware: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``rows`` to ``path`` in format ``fmt`` (one of :data:`FORMATS`) and return
    the path written.

    Formats: ``codecarbon`` (CodeCarbon's ``emissions.csv`` columns and units, one row
    per cell), ``csv`` (our flat columns with ranges and methods), ``json`` (every
    column, read back with ``read_json_records``). A directory ``path`` gets the
    format's default file name. ``hardware`` (``Tracker.hardware()``) fills CodeCarbon's
    hardware columns for rows that do not carry their session's.

    Raises ``ValueError`` for an unknown format (naming the valid ones) and
    ``FileExistsError`` when the file exists and ``force`` is false; nothing is written
    then. The file is replaced atomically.
    """
    spec = export_format(fmt)
    target = _resolve_target(path, spec.name, force)
    listed = list(rows)
    machine = dict(hardware or {})
    _write_atomically(target, lambda stream: spec.write(listed, machine, stream))
    return target


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
