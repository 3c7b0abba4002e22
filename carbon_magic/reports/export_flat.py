"""Our flat CSV export (``--format csv``): one row of ``FLAT_COLUMNS`` per cell.

Rows from elsewhere (the kernel's memory, cells not yet written) are written one dict at
a time (:func:`flat_record`); the ledger's cells (:class:`carbon_magic.ledger.LedgerCells`)
a batch of tuples at a time, SQLite quoting the text columns, numbers spelled a column
at a time (:func:`carbon_magic.reports.export_text.float_texts`), so that an export of a million
cells takes seconds. Both write the same bytes.

Units as in the ledger: joules, kWh, grams CO2e; times as ISO 8601 UTC.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import IO, Any

from carbon_magic.ledger import (
    CELL_COLUMNS,
    CLUSTER_SHARE_COLUMNS,
    REMOTE_SHARE_COLUMNS,
    LedgerCells,
)
from carbon_magic.reports.cell_rows import Row, row_devices, row_methods
from carbon_magic.reports.export_json import redacted_source
from carbon_magic.reports.export_text import (
    csv_field,
    csv_texts,
    float_texts,
    needs_quotes,
)
from carbon_magic.reports.export_times import utc_iso, utc_isos
from carbon_magic.vocabulary import COMPONENTS

__all__ = ["FLAT_COLUMNS", "flat_record", "write_flat", "write_flat_cells"]

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

# ---------------------------------------------------------------- one dict at a time


@lru_cache(maxsize=1024)
def _methods_of(methods_json: Any) -> tuple[str, ...]:
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
    """The values of :func:`flat_record`, in ``FLAT_COLUMNS`` order."""
    try:
        head, tail = list(_flat_head(row)), _flat_tail(row)
    except KeyError:  # a row from elsewhere, without some columns
        head = [row.get(name) for name in _FLAT_HEAD]
        tail = tuple(row.get(name) for name in _FLAT_TAIL)
    source = head[_SOURCE_AT]
    if isinstance(source, str):  # rows written before redaction
        head[_SOURCE_AT] = redacted_source(source)
    head[_STARTED_AT] = utc_iso(head[_STARTED_AT])
    head[_ENDED_AT] = utc_iso(head[_ENDED_AT])
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


def write_flat(rows: Iterable[Row], hardware: Mapping[str, Any], stream: IO[str]) -> None:
    """The flat CSV of ``rows`` (a header, then one line per row) to ``stream``."""
    writer = csv.writer(stream, lineterminator="\n")  # None is written as ""
    writer.writerow(FLAT_COLUMNS)
    writer.writerows(_flat_values(row) for row in rows)


# ---------------------------------------------------------------- the ledger's cells

_NUMBER_COLUMNS = frozenset(
    name
    for name in CELL_COLUMNS
    if name.endswith(("_s", "_j", "_kwh", "_g")) or name in ("intensity_g_per_kwh", "pue")
)
_SESSION_COLUMNS = ("session_uuid", "notebook_path", "host")


# Text columns next to one another are read as one text, their values separated by
# this character (SQLite joins them, Python splits them); a value that holds it is
# found by counting, and its batch written as dicts.
_SEPARATOR = "\x1f"


def _plan() -> list[tuple[str, list[str]]]:
    """How each part of a line is made: (kind, SQL expressions) per part, in order; the
    cluster and remote columns follow. Numbers next to one another are one part, and
    so are texts."""
    plan: list[tuple[str, list[str]]] = []

    def add(kind: str, expression: str) -> None:
        if kind in ("numbers", "texts") and plan and plan[-1][0] == kind:
            plan[-1][1].append(expression)
        else:
            plan.append((kind, [expression]))

    for name in FLAT_COLUMNS[: _FLAT_METHODS_AT + len(COMPONENTS) + 2]:
        column = f"c.{name}"
        if name in _SESSION_COLUMNS:  # the same for all the session's cells
            if name == _SESSION_COLUMNS[0]:
                add("session", "c.session_id")
        elif name == "source":
            add("source", column)
        elif name in ("started_at", "ended_at"):
            add("time", column)
        elif name in _NUMBER_COLUMNS:
            add("numbers", column)
        elif name == "execution_count":  # an integer as text; NULL for anything else
            kind = f"typeof({column})"
            add("texts", f"CASE {kind} WHEN 'integer' THEN {column} WHEN 'null' THEN '' END")
        elif name == f"method_{COMPONENTS[0]}":
            add("methods", "c.methods_json")
        elif name.startswith("method_"):
            continue
        elif name == "devices":
            add("devices", "c.devices_json")
        else:  # None and '' are both written as nothing
            add("texts", f"coalesce({column}, '')")
    return plan


_PLAN = _plan()
_SELECT = [
    " || char(31) || ".join(expressions) if kind == "texts" else expression
    for kind, expressions in _PLAN
    for expression in (expressions if kind != "texts" else expressions[:1])
]
_EMPTY_PARTS = "," * (len(CLUSTER_SHARE_COLUMNS) + len(REMOTE_SHARE_COLUMNS) - 1)
_PART_COLUMNS = (*CLUSTER_SHARE_COLUMNS, *REMOTE_SHARE_COLUMNS)


@lru_cache(maxsize=4096)
def _source_field(source: Any) -> str:
    return csv_field(redacted_source(source) if isinstance(source, str) else source)


@lru_cache(maxsize=1024)
def _methods_fields(methods_json: Any) -> str:
    return ",".join(map(csv_field, _methods_of(methods_json)))


def _devices_fields(values: tuple[Any, ...]) -> Sequence[str]:
    """The devices column: texts that start as JSON objects as they are (quoted), at once;
    others one at a time (see _devices_text)."""
    try:
        joined = "\x1e".join(values)
    except TypeError:
        return list(map(_devices_field, values))
    starts = joined.count("\x1e{") + joined.startswith("{")
    if starts == len(values) == joined.count("\x1e") + 1:
        return csv_texts(values)
    return list(map(_devices_field, values))


def _devices_field(devices_json: Any) -> str:
    if type(devices_json) is str and devices_json.startswith("{"):
        return csv_field(devices_json)
    return csv_field(_devices_text({"devices_json": devices_json}))


class _SessionFields(dict[int, str]):
    """Session id: the session's columns of the line (``_SESSION_COLUMNS``), read when
    its first cell comes."""

    def __init__(self, cells: LedgerCells) -> None:
        super().__init__()
        self.cells = cells

    def __missing__(self, session_id: int) -> str:
        session = self.cells.session_row(session_id)
        fields = self[session_id] = ",".join(csv_field(session[name]) for name in _SESSION_COLUMNS)
        return fields


def _parts_fields(parts: Mapping[str, Any]) -> str:
    return ",".join(csv_field(parts.get(name)) for name in _PART_COLUMNS)


def write_flat_cells(cells: LedgerCells, hardware: Mapping[str, Any], stream: IO[str]) -> int:
    """The flat CSV of the ledger's ``cells``, the same bytes as :func:`write_flat`
    writes for them, a batch at a time; returns the number of cells written."""
    stream.write(",".join(FLAT_COLUMNS) + "\n")
    count = 0
    try:
        sessions = _SessionFields(cells)
        for batch, parts in cells.batches(_SELECT):
            count += len(batch)
            stream.write(_batch_text(cells, batch, parts, sessions))
    except sqlite3.OperationalError as error:
        if "no such column" not in str(error) or count:
            raise
        # A ledger from before some of the columns: one dict at a time.
        writer = csv.writer(stream, lineterminator="\n")
        for row in cells:
            writer.writerow(_flat_values(row))
            count += 1
    return count


def _batch_text(
    cells: LedgerCells,
    batch: list[tuple[Any, ...]],
    parts: Mapping[int, Mapping[str, Any]],
    sessions: Mapping[int, str],
) -> str:
    """The lines of one batch (rows ``(id, *_SELECT)``)."""
    columns = list(zip(*batch, strict=True))
    fields: list[Sequence[str] | Iterable[str]] = []
    at = 1
    for kind, expressions in _PLAN:
        values = columns[at]
        if kind == "texts":
            texts = _texts_fields(values, len(expressions))
            if texts is None:
                return _dict_batch_text(cells, columns[0])
            fields.append(texts)
            at += 1
            continue
        if kind == "session":
            fields.append(list(map(sessions.__getitem__, values)))
        elif kind == "devices":
            fields.append(_devices_fields(values))
        elif kind == "numbers":
            fields.extend(map(_numbers_fields, columns[at : at + len(expressions)]))
        elif kind == "source":
            fields.append(map(_source_field, values))
        elif kind == "time":
            fields.append(utc_isos(values))  # ISO text: never quoted
        else:
            fields.append(map(_methods_fields, values))
        at += len(expressions)
    if parts:
        fields.append([_parts_fields(parts[i]) if i in parts else _EMPTY_PARTS for i in columns[0]])
    else:
        fields.append([_EMPTY_PARTS] * len(batch))
    return "\n".join(map(",".join, zip(*fields, strict=True))) + "\n"


def _texts_fields(values: tuple[Any, ...], width: int) -> Sequence[str] | None:
    """The fields of ``width`` adjacent text columns read as one (see ``_SEPARATOR``),
    each row's joined by commas; None where a value was not text or held the separator."""
    if width == 1:
        return csv_texts(values)
    try:
        joined = "\x1e".join(values)
    except TypeError:  # NULL: a value only Python can spell
        return None
    rows = len(values)
    if joined.count(_SEPARATOR) != rows * (width - 1) or joined.count("\x1e") != rows - 1:
        return None
    if needs_quotes(joined):
        return [",".join(map(csv_field, value.split(_SEPARATOR))) for value in values]
    return joined.replace(_SEPARATOR, ",").split("\x1e")


def _numbers_fields(values: tuple[Any, ...]) -> list[str]:
    """The fields of a number column."""
    texts = float_texts(values)
    return texts if texts is not None else list(map(csv_field, values))


def _dict_batch_text(cells: LedgerCells, ids: Iterable[int]) -> str:
    """The lines of the cells ``ids`` written as :func:`write_flat` writes them."""
    lines: list[str] = []
    writer = csv.writer(_Lines(lines), lineterminator="\n")
    writer.writerows(_flat_values(row) for row in cells.rows_by_id(list(ids)))
    return "".join(lines)


class _Lines:
    """A stream that keeps what is written in a list."""

    def __init__(self, lines: list[str]) -> None:
        self.write = lines.append
