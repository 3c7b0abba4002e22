"""The JSON export: every column of each cell, its JSON columns decoded.

Written one record at a time, so an export of millions of cells takes constant memory;
read back with :func:`read_json_records`. Units as in the ledger: joules, kWh, grams
CO2e, UTC epoch seconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, cast

try:
    import orjson
except ImportError:  # the export is slower without it, and the same
    orjson = None  # type: ignore[assignment]

from carbon_magic._version import __version__
from carbon_magic.ledger import PART_COLUMNS, LedgerCells
from carbon_magic.redact import redact_secrets
from carbon_magic.reports.cell_rows import Row
from carbon_magic.reports.export_text import float_texts

__all__ = [
    "GENERATOR",
    "JSON_FORMAT",
    "JSON_FORMAT_VERSION",
    "json_record",
    "read_json_records",
    "redacted_source",
    "write_json",
    "write_json_cells",
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


def _document_head() -> str:
    """The document's head as json.dump writes it, up to its ``records`` list's ``[``."""
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
    head = json.dumps(document, indent=1, ensure_ascii=False)
    return head[: head.rindex("[]")] + "["


_DOCUMENT_TAIL = "\n ]\n}\n"
_SEPARATOR = ",\n  "


def write_json(rows: Iterable[Row], hardware: Mapping[str, Any], stream: IO[str]) -> None:
    """The JSON export: a document with its format, units and ``records``, one record
    per line (every column of the row, JSON columns decoded)."""
    stream.write(_document_head())
    separator = "\n  "
    for row in rows:
        stream.write(separator + _json_record_text(row))
        separator = _SEPARATOR
    stream.write(_DOCUMENT_TAIL)


# ---------------------------------------------------------------- the ledger's cells


class _SessionTexts(dict[int, tuple[str, str]]):
    """Session id: the text of the session's fields of a record (``session_uuid``...),
    and that of its decoded JSON columns at the record's end (``, "hardware": ...``,
    ``""`` without), as :func:`_json_record_text` writes them."""

    def __init__(self, cells: LedgerCells) -> None:
        super().__init__()
        self.cells = cells

    def __missing__(self, session_id: int) -> tuple[str, str]:
        row = self.cells.session_row(session_id)
        inline: dict[str, Any] = {}
        fragments: list[str] = []
        for key, value in row.items():
            fragment = None
            if key in _SESSION_JSON_COLUMNS and isinstance(value, str):
                fragment = _json_fragment(value)
            if fragment is None:
                inline[key] = value
            else:
                fragments.append(f'"{key[: -len("_json")]}": {fragment}')
        end = "".join(f", {fragment}" for fragment in fragments)
        found = self[session_id] = (_encode(inline)[1:-1], end)
        return found


_encode_text = json.encoder.encode_basestring
_cached_encode = lru_cache(maxsize=4096)(_encode)
_NO_PARTS = _encode(dict.fromkeys(PART_COLUMNS))[1:-1]
# Between the decoded devices of two cells, encoded in one call: split on afterwards.
_APART = "\x00apart\x00"
_ENCODED_APART = f", {_encode(_APART)}, "


def _value_texts(values: tuple[Any, ...], declared_text: bool = False) -> list[str]:
    """The JSON text of each value of a column: numbers and texts at once, others one
    at a time (``declared_text``: a TEXT column, no numbers looked for)."""
    texts = None if declared_text else float_texts(values)
    if texts is not None:
        return texts
    try:
        "".join(values)
    except TypeError:  # None among texts: names, budgets, which repeat
        return list(map(_cached_encode, values))
    return list(map(_encode_text, values))


@lru_cache(maxsize=4096)
def _source_text(source: Any) -> str:
    return _encode(redacted_source(source) if isinstance(source, str) else source)


def _decode_all(texts: tuple[str, ...]) -> list[Any] | None:
    """Each of ``texts`` decoded as :func:`json.loads` decodes it; None where one is not
    JSON. orjson decodes the same, faster, but for integers beyond 64 bits (which it
    makes floats: texts with such long numbers are left to json) and what it refuses
    (NaN, 1e400, lone surrogates)."""
    if orjson is not None and _LONG_NUMBER not in "".join(texts).translate(_DIGITS_AS_9):
        try:
            return list(map(orjson.loads, texts))
        except ValueError:
            pass
    try:
        return list(map(_decode, texts))
    except ValueError:
        return None


# 19 digits in a row: a number json may decode as an integer beyond 64 bits.
_DIGITS_AS_9 = str.maketrans("0123456789", "9" * 10)
_LONG_NUMBER = "9" * 19


def _devices_texts(values: tuple[Any, ...]) -> list[str] | None:
    """The devices of each cell, decoded and encoded again as :func:`_json_record_text`
    does; None where one is not JSON text (it then stays text in its place)."""
    if not all(isinstance(value, str) for value in values):
        return None
    decoded = _decode_all(values)
    if decoded is None:
        return None
    apart: list[Any] = [_APART] * (2 * len(decoded) - 1)
    apart[0::2] = decoded
    texts = _encode(apart)[1:-1].split(_ENCODED_APART)
    return texts if len(texts) == len(values) else list(map(_encode, decoded))


def write_json_cells(cells: LedgerCells, hardware: Mapping[str, Any], stream: IO[str]) -> int:
    """The JSON export of the ledger's ``cells``, the same bytes as :func:`write_json`
    writes for them, a batch at a time, each column spelled at once; returns the
    number of cells written."""
    stream.write(_document_head())
    declared = cells.cell_columns()
    names = [name for name, _ in declared]
    text_names = {name for name, kind in declared if "TEXT" in kind or "CHAR" in kind}
    sessions = _SessionTexts(cells)
    count = 0
    if names:
        # A record: the cell's columns but its JSON ones, the session's, the parts, then
        # the devices and the decoded JSON columns (see _json_record_text).
        shown = [name for name in names if name not in ("methods_json", "devices_json")]
        record = "{{" + "".join(f"{_encode_text(name)}: {{}}, " for name in shown)
        record += '{}, {}, "devices": {}, "methods": {}{}}}'
        for batch, parts in cells.batches([f"c.{name}" for name in names]):
            text = _batch_text(cells, names, text_names, record.format, batch, parts, sessions)
            stream.write(("\n  " if not count else _SEPARATOR) + text)
            count += len(batch)
    stream.write(_DOCUMENT_TAIL)
    return count


def _batch_text(
    cells: LedgerCells,
    names: list[str],
    text_names: set[str],
    record: Callable[..., str],
    batch: list[tuple[Any, ...]],
    parts: Mapping[int, Mapping[str, Any]],
    sessions: _SessionTexts,
) -> str:
    """The records of one batch (rows ``(id, *cells columns)``), one a line."""
    columns = dict(zip(["", *names], zip(*batch, strict=True), strict=True))
    ids = columns[""]
    fragments = [
        _json_fragment(value) if isinstance(value, str) else None
        for value in columns["methods_json"]
    ]
    devices = _devices_texts(columns["devices_json"])
    if devices is None or None in fragments:  # left as text in its place: as dicts
        return _dict_batch_text(cells, ids)
    methods = cast(list[str], fragments)  # None is not among them
    fields = [
        list(map(_source_text, values))
        if name == "source"
        else _value_texts(values, name in text_names)
        for name, values in columns.items()
        if name not in ("", "methods_json", "devices_json")
    ]
    found = [sessions[session_id] for session_id in columns["session_id"]]
    fields.append([session[0] for session in found])
    if parts:
        fields.append([_encode(dict(parts[i]))[1:-1] if i in parts else _NO_PARTS for i in ids])
    else:
        fields.append([_NO_PARTS] * len(ids))
    fields += [devices, methods, [session[1] for session in found]]
    return _SEPARATOR.join(map(record, *fields))


def _dict_batch_text(cells: LedgerCells, ids: Iterable[int]) -> str:
    """The records of the cells ``ids`` written as :func:`write_json` writes them."""
    return _SEPARATOR.join(map(_json_record_text, cells.rows_by_id(list(ids))))
