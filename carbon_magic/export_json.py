"""The JSON export: every column of each cell, its JSON columns decoded.

Written one record at a time, so an export of millions of cells takes constant memory;
read back with :func:`read_json_records`. Units as in the ledger: joules, kWh, grams
CO2e, UTC epoch seconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from carbon_magic._version import __version__
from carbon_magic.cell_rows import Row
from carbon_magic.redact import redact_secrets

__all__ = [
    "GENERATOR",
    "JSON_FORMAT",
    "JSON_FORMAT_VERSION",
    "json_record",
    "read_json_records",
    "redacted_source",
    "write_json",
]

GENERATOR = f"carbon_magic {__version__}"
_JSON_COLUMNS = ("methods", "devices", "hardware", "settings")
JSON_FORMAT = "carbon_magic.cells"
JSON_FORMAT_VERSION = 1


@lru_cache(maxsize=4096)
def redacted_source(source: str) -> str:
    """``redact_secrets`` of a cell source; sources repeat (cells run again), so cached."""
    return redact_secrets(source)


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
        record[key] = (
            redacted_source(value) if key == "source" and isinstance(value, str) else value
        )
    return record


@lru_cache(maxsize=1024)
def _json_fragment(text: str) -> str | None:
    """A JSON column's text as it appears in a JSON export (decoded, encoded again), or
    None when it is not JSON. Methods, hardware and settings repeat from cell to cell of
    a session: decoded once each."""
    try:
        return json.dumps(json.loads(text), ensure_ascii=False)
    except ValueError:
        return None


_SESSION_JSON_COLUMNS = ("methods_json", "hardware_json", "settings_json")
# json.dumps(..., ensure_ascii=False) makes an encoder per call; one does for every record.
_encode = json.JSONEncoder(ensure_ascii=False).encode
_decode = json.JSONDecoder().decode


def _json_record_text(row: Row) -> str:
    """:func:`json_record` as JSON text, the session's JSON columns spliced in encoded.
    Called once per exported cell, so written for speed."""
    record = dict(row)
    fragments: list[str] = []
    for key in _SESSION_JSON_COLUMNS:
        value = record.get(key)
        if isinstance(value, str) and (fragment := _json_fragment(value)) is not None:
            del record[key]
            fragments.append(f'"{key[: -len("_json")]}": {fragment}')
    devices = record.get("devices_json")
    if isinstance(devices, str):
        try:
            record["devices"] = _decode(devices)
            del record["devices_json"]
        except ValueError:
            pass
    source = record.get("source")
    if isinstance(source, str):
        record["source"] = redacted_source(source)
    text = _encode(record)
    if not fragments:
        return text
    return text[:-1] + (", " if record else "") + ", ".join(fragments) + "}"


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


def write_json(rows: Iterable[Row], hardware: Mapping[str, Any], stream: IO[str]) -> None:
    """The JSON export: a document with its format, units and ``records``, one record
    per line (every column of the row, JSON columns decoded)."""
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
        "records": [],
    }
    # The document's head as json.dump writes it, then one record per line.
    head = json.dumps(document, indent=1, ensure_ascii=False)
    stream.write(head[: head.rindex("[]")] + "[")
    separator = "\n  "
    for row in rows:
        stream.write(separator + _json_record_text(row))
        separator = ",\n  "
    stream.write("\n ]\n}\n")
