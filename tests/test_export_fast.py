"""The exports of the ledger's cells, written a batch of tuples at a time, are the same
bytes as a plain writer gives for the rows ``read_cells`` returns: over a ledger of
today's schema with Dask parts, calls to hosted models, NULLs and odd texts, and over an
older (schema 3) file; and the bulk spellings (numbers, times, CSV texts) are those of
``repr``, ``datetime`` and ``csv.writer`` one value at a time."""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import random
import sqlite3
import struct
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from carbon_magic.engine.measurement import Measurement
from carbon_magic.ledger import Ledger, connect_readonly, iter_cells, read_cells
from carbon_magic.ledger.remote_calls import CALL_FIELDS, summarise_rows
from carbon_magic.reports import export_text
from carbon_magic.reports.export import export_records, write_export
from carbon_magic.reports.export_flat import FLAT_COLUMNS, flat_record
from carbon_magic.reports.export_text import csv_field, csv_texts, float_texts
from carbon_magic.reports.export_times import utc_iso, utc_isos
from tests.test_cluster_ledger import CLUSTER, RAY_CLUSTER

GENERATOR = Path(__file__).parents[1] / "benchmarks" / "make_old_ledger.py"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
ODD_TEXTS = [
    'a "quoted", comma',
    "two\nlines",
    "carriage\rreturn",
    "ünïcødé ✓ 数据",
    "",
    "tab\there",
    "\x1fseparator\x1e",
    'ends with a quote"',
]


def call(estimated: bool, **changes):
    record = dict.fromkeys(CALL_FIELDS)
    record.update(sdk="openai", api="chat.completions", model="gpt-4o-mini", status="ok")
    record.update(streamed=False, output_tokens=10, latency_s=1.5)
    if estimated:
        record.update(
            energy_low_kwh=1.5e-5,
            energy_high_kwh=2.25e-5,
            emissions_low_g=0.004,
            emissions_high_g=0.0061,
            embodied_low_g=1e-7,
            embodied_high_g=3e-7,
            water_low_l=0.0001,
            water_high_l=0.00025,
            method="estimated (EcoLogits 0.6)",
        )
    record.update(changes)
    return record


def cell(i: int, **changes) -> Measurement:
    started = T0 + timedelta(seconds=7.25 * i, microseconds=i * 37)
    values = dict(
        name=f"cell-{i}" if i % 3 else None,
        duration_s=0.5 + i / 7,
        energy_j={"cpu": 12.0 + i / 3, "gpu": 0.0 if i % 2 else 900.5 / (i + 1), "ram": 7.25},
        energy_kwh=(21.5 + 9 * i) * 1.2 / 3.6e6,  # around 1e-5 kWh: repr's exponent -05
        energy_range_kwh=((21.5 + 9 * i) / 3.6e6, (21.5 + 9 * i) * 1.5 / 3.6e6),
        emissions_g=i * 0.0138 / 7,
        emissions_range_g=(1e-7 * i, 0.19 * i),
        embodied_g=0.011 * i,
        intensity_g_per_kwh=400.0 + i,
        intensity_source="static table (DE, 2023)",
        pue=1.2,
        methods={"cpu": "measured", "gpu": "measured" if i % 2 else "none", "ram": "assumed"},
        devices={"gpu0": 0.75 * i, "gpu,1": 1e-6} if i % 4 else {},
        mode="process",
        started_at=started,
        ended_at=started + timedelta(seconds=0.5 + i / 7),
        execution_count=i + 1 if i % 5 else None,
        cell_id=f"cell-{i}",
        status="ok" if i % 6 else "error",
        source=ODD_TEXTS[i % len(ODD_TEXTS)] + f" x{i} = 1e-5" if i % 9 else None,
    )
    values.update(changes)
    return Measurement(**values)


def new_ledger(path: Path) -> Path:
    with Ledger(path) as ledger:
        for number, notebook in enumerate(["plain.ipynb", 'odd, "name"\n.ipynb', None]):
            ledger.open_session(
                session_uuid=f"s{number}",
                kernel_id=f"k{number}" if number != 1 else 'kernel "1", odd',
                notebook_path=notebook,
                host="h" if number else "host, with comma",
                pid=1,
                started_at=T0.timestamp(),
                interval_s=1.0,
                mode="process",
                hardware={"cpu_model": "Xeon, 16 cores", "n_cpus": 16},
                methods={},
                settings={"country": "DE"},
                intensity_source="static",
                intensity_g_per_kwh=50.0,
            )
        for i in range(60):
            changes = {}
            if i in (3, 40):
                changes["cluster"] = CLUSTER
            if i == 41:
                changes["cluster"] = RAY_CLUSTER
            if i in (5, 40, 59):
                changes["remote"] = summarise_rows(
                    [call(True), call(False, model='odd, "model"', status="error")]
                )
            if i == 7:
                changes["remote"] = summarise_rows([call(False)])
            if i % 11 == 0:
                changes["name"] = ODD_TEXTS[i % len(ODD_TEXTS)]
            if i == 13:  # an integer beyond 64 bits: json keeps it, orjson would not
                changes["devices"] = {"gpu0": 2**70, "gpu1": 1e-300}
            budget = "5g" if i % 8 == 0 else None
            ledger.record_cell(f"s{i % 3}", cell(i, **changes), via="auto", budget=budget)
        assert ledger.flush()
    return path


def old_ledger(path: Path, cells: int = 700) -> Path:
    spec = importlib.util.spec_from_file_location("make_old_ledger", GENERATOR)
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    generator.build_old_ledger(path, cells, kernels=3)
    # What only Python can spell, in some batches: a REAL in an INTEGER column, a text
    # in a REAL one, an infinity, devices that are not an object, a time before 1970.
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE cells SET execution_count = 2.5 WHERE id = 11")
        conn.execute("UPDATE cells SET emissions_low_g = 'n/a' WHERE id = 120")
        conn.execute("UPDATE cells SET gpu_j = 1e999 WHERE id = 121")
        conn.execute("UPDATE cells SET devices_json = '[1, 2]' WHERE id = 300")
        conn.execute("UPDATE cells SET started_at = -12.5 WHERE id = 450")
        conn.execute("UPDATE cells SET name = ? WHERE id = 451", ("x\x1fy",))
        conn.execute("UPDATE cells SET via = ? WHERE id = 452", ("a,b",))
        conn.execute("UPDATE sessions SET notebook_path = ? WHERE id = 2", ('p "q", r',))
    conn.close()
    return path


def reference_csv(path: Path) -> str:
    """The flat CSV as a plain writer gives it: csv.writer over read_cells' rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FLAT_COLUMNS)
    for row in read_cells(path):
        writer.writerow(flat_record(row).values())
    return out.getvalue()


def exported(path: Path, tmp_path: Path, fmt: str, batch_rows: int) -> tuple[str, int]:
    """The export of the ledger at ``path`` as the CLI writes it (the ledger's cells)."""
    target = tmp_path / f"fast.{fmt}"
    connection = connect_readonly(path)
    try:
        cells = iter_cells(connection, batch_rows=batch_rows)
        _, count = write_export(cells, target, fmt=fmt, force=True)
    finally:
        connection.close()
    return target.read_text(encoding="utf-8"), count


@pytest.fixture(scope="module")
def ledgers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fast")
    return {
        "new": new_ledger(folder / "new.sqlite3"),
        "old": old_ledger(folder / "old.sqlite3"),
    }


@pytest.mark.parametrize("kind", ["new", "old"])
@pytest.mark.parametrize("batch_rows", [1, 7, 500])
def test_flat_csv_of_the_ledgers_cells_is_the_plain_writers(ledgers, tmp_path, kind, batch_rows):
    path = ledgers[kind]
    text, count = exported(path, tmp_path, "csv", batch_rows)
    expected = reference_csv(path)
    assert count == len(read_cells(path))
    assert text == expected
    # It says what it is meant to: the cluster, remote and odd columns came through.
    rows = list(csv.DictReader(io.StringIO(text)))
    assert any(row["cluster_hosts"] for row in rows)
    if kind == "new":
        assert any(row["remote_calls"] == "2" for row in rows)
        assert any(row["notebook_path"] == 'odd, "name"\n.ipynb' for row in rows)
        assert any(row["source"].startswith('a "quoted", comma') for row in rows)


@pytest.mark.parametrize("kind", ["new", "old"])
@pytest.mark.parametrize("fmt", ["csv", "json", "codecarbon"])
def test_the_same_bytes_without_orjson(ledgers, tmp_path, kind, fmt, monkeypatch):
    from carbon_magic.reports import export_json

    with_orjson, _ = exported(ledgers[kind], tmp_path, fmt, 500)
    monkeypatch.setattr(export_text, "orjson", None)
    monkeypatch.setattr(export_json, "orjson", None)
    without, _ = exported(ledgers[kind], tmp_path, fmt, 500)
    if fmt == "json":
        with_orjson, without = drop_exported_at(with_orjson), drop_exported_at(without)
    assert without == with_orjson
    if fmt == "csv":
        assert without == reference_csv(ledgers[kind])


@pytest.mark.parametrize("kind", ["new", "old"])
@pytest.mark.parametrize("batch_rows", [1, 7, 500])
@pytest.mark.parametrize("fmt", ["csv", "json", "codecarbon"])
def test_every_format_of_the_ledgers_cells_is_that_of_its_rows(
    ledgers, tmp_path, fmt, kind, batch_rows
):
    path = ledgers[kind]
    text, _ = exported(path, tmp_path, fmt, batch_rows)
    plain = export_records(read_cells_with_sessions(path), tmp_path / f"plain.{fmt}", fmt=fmt)
    if fmt == "json":  # written at a different time
        text, expected = (drop_exported_at(t) for t in (text, plain.read_text("utf-8")))
    else:
        expected = plain.read_text("utf-8")
    assert text == expected


def read_cells_with_sessions(path: Path) -> list[dict]:
    """The rows iter_cells gives, through the dict reader, as a plain list."""
    connection = connect_readonly(path)
    try:
        return [dict(row) for row in iter_cells(connection)]
    finally:
        connection.close()


def drop_exported_at(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if '"exported_at"' not in line)


def test_an_empty_ledger_exports_only_the_header(tmp_path):
    path = tmp_path / "empty.sqlite3"
    with Ledger(path):
        pass
    text, count = exported(path, tmp_path, "csv", 500)
    assert count == 0 and text == ",".join(FLAT_COLUMNS) + "\n"


# ---------------------------------------------------------------- bulk spellings


def random_doubles(count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    values = [
        struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(count)
    ]
    values = [v for v in values if math.isfinite(v)]
    values += [rng.uniform(-1, 1) * 10.0 ** rng.randint(-30, 30) for _ in range(count)]
    values += [float(f"{rng.randint(1, 99999)}e{rng.randint(-12, 20)}") for _ in range(count)]
    values += [0.0, -0.0, 5e-324, 1e-4, 1e-5, 9.999999999999999e-05, 1e16, 1e15, -1e-5]
    values += [-1.5e-5, 10.00001, 100.00002, 1.2e-5, 0.00012, 123456.0, 1e-7, 1e22]
    return values


def test_float_texts_are_repr_character_for_character():
    values = random_doubles(40_000, seed=1)
    for start in range(0, len(values), 997):
        chunk = tuple(values[start : start + 997])
        assert float_texts(chunk) == [repr(v) for v in chunk]
    assert float_texts((3, 2**62, 1.5)) == ["3", str(2**62), "1.5"]
    for odd in ((1.0, None), (1.0, "1.0"), (math.nan,), (math.inf, 1.0), (b"x",), (2**70,)):
        assert float_texts(odd) is None
    assert float_texts(()) == []


def test_times_are_datetimes_isoformat():
    rng = random.Random(2)
    values = [rng.uniform(0, 2.5e11) for _ in range(20_000)]
    values += [k / 1e6 + 0.5e-6 for k in range(5_000)]  # halves of a microsecond
    values += [0.0, 1.0, 1796452903.9999996, 1796452903.0000004, 1.7e9 + 0.5]
    for start in range(0, len(values), 1000):
        chunk = tuple(values[start : start + 1000])
        expected = [datetime.fromtimestamp(v, tz=timezone.utc).isoformat() for v in chunk]
        assert utc_isos(chunk) == expected == [utc_iso(v) for v in chunk]
    assert utc_isos((None, -12.5, 3)) == ["", utc_iso(-12.5), utc_iso(3)]
    with pytest.raises(ValueError):  # year 10000, as datetime says
        utc_isos((253402300799.9999995,))


def test_csv_texts_are_csv_writers_fields():
    values = (*ODD_TEXTS, None, 3, 2.5, "plain")
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    assert ",".join(map(csv_field, values)) + "\n" == out.getvalue()
    assert ",".join(csv_texts(values)) + "\n" == out.getvalue()
    clean = ("a", "b c", "")
    assert csv_texts(clean) is clean


def test_only_what_sqlite_cannot_join_is_written_one_dict_at_a_time(ledgers, tmp_path, monkeypatch):
    from carbon_magic.reports import export_flat

    expected = reference_csv(ledgers["new"])
    one_at_a_time = []
    flat_values = export_flat._flat_values

    def counted(row):
        one_at_a_time.append(row["id"])
        return flat_values(row)

    monkeypatch.setattr(export_flat, "_flat_values", counted)
    assert exported(ledgers["new"], tmp_path, "csv", 1)[0] == expected
    # Only the cell whose name holds the separator of joined texts (cell 22, id 23).
    assert one_at_a_time == [23]


@pytest.mark.parametrize(
    ("fmt", "module", "writer"),
    [
        ("json", "export_json", "_json_record_text"),
        ("codecarbon", "export_codecarbon", "_write_rows"),
    ],
)
def test_json_and_codecarbon_write_no_cell_of_a_plain_ledger_one_dict_at_a_time(
    ledgers, tmp_path, monkeypatch, fmt, module, writer
):
    import importlib

    target = importlib.import_module(f"carbon_magic.reports.{module}")
    expected = export_records(
        read_cells_with_sessions(ledgers["new"]), tmp_path / f"plain.{fmt}", fmt=fmt
    ).read_text("utf-8")

    def refuse(*args):
        raise AssertionError("a cell written one dict at a time")

    monkeypatch.setattr(target, writer, refuse)
    text, count = exported(ledgers["new"], tmp_path, fmt, 7)
    assert count == 60
    if fmt == "json":
        text, expected = drop_exported_at(text), drop_exported_at(expected)
    assert text == expected
