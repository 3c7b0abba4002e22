"""Exports of recorded cells: the formats (CodeCarbon's ``emissions.csv`` in
``export_codecarbon``, JSON in ``export_json``, and here a flat CSV and pandas), where
they are written, and how.

Input rows are ledger cell rows (see ``carbon_magic.reports.report``): joules, kWh, grams,
UTC epoch seconds. Units change only here, where a format wants them (kg and kWh for
CodeCarbon).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from carbon_magic.ledger import LedgerCells
from carbon_magic.reports.cell_rows import Row
from carbon_magic.reports.export_codecarbon import write_codecarbon, write_codecarbon_cells
from carbon_magic.reports.export_flat import FLAT_COLUMNS, flat_record, write_flat, write_flat_cells
from carbon_magic.reports.export_json import write_json, write_json_cells
from carbon_magic.reports.export_target import resolve_target, write_to

if TYPE_CHECKING:
    import pandas

__all__ = [
    "DEFAULT_FILE_NAMES",
    "DEFAULT_FORMAT",
    "EXPORT_FORMATS",
    "FORMATS",
    "ExportFormat",
    "describe_formats",
    "export_format",
    "export_records",
    "to_dataframe",
    "write_export",
]


# ---------------------------------------------------------------- export

Writer = Callable[[Iterable[Row], Mapping[str, Any], IO[str]], None]
LedgerWriter = Callable[[LedgerCells, Mapping[str, Any], IO[str]], int]


@dataclass(frozen=True)
class ExportFormat:
    """One export format: its name (``--format NAME``), the file name a folder gets,
    a one-line description for help texts, and the function writing rows to a text
    stream (rows, the session's hardware, the stream). Writers take the rows one at a
    time: an export of millions of cells holds one batch of them in memory.
    ``write_cells``, where a format has one, writes the ledger's cells (from
    :func:`carbon_magic.ledger.iter_cells`) the same, faster, and returns their number."""

    name: str
    default_file_name: str
    description: str
    write: Writer
    write_cells: LedgerWriter | None = None


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
            write_codecarbon_cells,
        ),
        ExportFormat(
            "csv",
            "carbon_cells.csv",
            "our columns with ranges and methods",
            write_flat,
            write_flat_cells,
        ),
        ExportFormat("json", "carbon_cells.json", "every column", write_json, write_json_cells),
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

    def write(stream: IO[str]) -> None:
        nonlocal count
        if spec.write_cells is not None and isinstance(rows, LedgerCells):
            count = spec.write_cells(rows, machine, stream)
        else:
            spec.write(counted(rows), machine, stream)

    write_to(target, write)
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
