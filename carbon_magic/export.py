"""Exports of recorded cells: the formats (CodeCarbon's ``emissions.csv`` in
``export_codecarbon``, JSON in ``export_json``, and here a flat CSV and pandas), where
they are written, and how.

Input rows are ledger cell rows (see ``carbon_magic.report``): joules, kWh, grams,
UTC epoch seconds. Units change only here, where a format wants them (kg and kWh for
CodeCarbon).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from carbon_magic.export_codecarbon import write_codecarbon
from carbon_magic.export_json import redacted_source, write_json
from carbon_magic.export_target import resolve_target, write_to
from carbon_magic.export_times import utc_iso
from carbon_magic.ledger import CELL_COLUMNS, CLUSTER_SHARE_COLUMNS, REMOTE_SHARE_COLUMNS
from carbon_magic.report import Row, row_devices, row_methods
from carbon_magic.vocabulary import COMPONENTS

if TYPE_CHECKING:
    import pandas

__all__ = [
    "DEFAULT_FILE_NAMES",
    "DEFAULT_FORMAT",
    "EXPORT_FORMATS",
    "FLAT_COLUMNS",
    "FORMATS",
    "ExportFormat",
    "describe_formats",
    "export_format",
    "export_records",
    "flat_record",
    "to_dataframe",
    "write_export",
]


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
            write_codecarbon,
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
