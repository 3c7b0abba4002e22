"""Nullable heartbeat columns declared after version 1: derived from the row dataclass,
added to a file that lacks them when a kernel opens it, read as NULL before that."""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass

from carbon_magic import ledger as ledger_module
from carbon_magic.ledger import Ledger
from carbon_magic.ledger import schema as ledger_schema
from carbon_magic.ledger.schema import SCHEMA_VERSION
from carbon_magic.ledger.tables import HEARTBEAT_LATER_COLUMNS, later_columns
from carbon_magic.record_json import to_json
from carbon_magic.server import views
from carbon_magic.server.reader import LedgerReader

from .test_ledger import beat, open_session, schema_version_of


def columns(path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(heartbeats)")]


def test_later_columns_are_the_fields_that_default_to_none():
    @dataclass(frozen=True)
    class Row:
        at: float
        note: str | None = None
        count: int | None = None
        ratio: float | None = None

    assert later_columns(Row) == (("note", "TEXT"), ("count", "INTEGER"), ("ratio", "REAL"))
    assert HEARTBEAT_LATER_COLUMNS[:3] == ("prediction_json", "hint", "next_beat_s")


def test_a_file_lacking_a_declared_column_gets_it_when_a_kernel_opens_it(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    kernel_id = str(uuid.uuid4())
    now = time.time()
    with Ledger(path) as ledger:
        session = uuid.uuid4().hex
        open_session(ledger, session, kernel_id, started_at=now - 60)
        beat(ledger, session, now - 30, ledger_bytes=1000)
    # A file of this schema version written before the column was declared.
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE heartbeats DROP COLUMN ledger_bytes")
    assert "ledger_bytes" not in columns(path)

    reader = LedgerReader(path)
    try:
        assert reader.kernel(kernel_id).heartbeat.ledger_bytes is None  # read as NULL
        with Ledger(path) as ledger:
            beat(ledger, session, now - 1, ledger_bytes=2000)
        assert set(HEARTBEAT_LATER_COLUMNS) <= set(columns(path))
        assert schema_version_of(path) == SCHEMA_VERSION
        assert reader.kernel(kernel_id).heartbeat.ledger_bytes == 2000
    finally:
        reader.close()
    with sqlite3.connect(path) as conn:
        stored = conn.execute("SELECT ledger_bytes FROM heartbeats ORDER BY at").fetchall()
    assert stored == [(None,), (2000,)]  # the row from before the column reads NULL


def test_an_older_file_is_migrated_first_then_given_the_declared_columns(tmp_path, monkeypatch):
    path = tmp_path / "ledger.sqlite3"
    # A version 1 file, as a kernel that knew only the first migration wrote it.
    monkeypatch.setattr(ledger_schema, "MIGRATIONS", ledger_schema.MIGRATIONS[:1])
    with Ledger(path) as ledger:
        open_session(ledger, "s1", "k1", started_at=time.time() - 60)
    monkeypatch.undo()
    with Ledger(path) as ledger:
        beat(ledger, "s1", time.time(), next_beat_s=5.0, ledger_bytes=3000)
    assert set(HEARTBEAT_LATER_COLUMNS) <= set(columns(path))
    assert schema_version_of(path) == SCHEMA_VERSION
    with sqlite3.connect(path) as conn:
        stored = conn.execute("SELECT next_beat_s, ledger_bytes FROM heartbeats").fetchall()
    assert stored == [(5.0, 3000)]


def test_a_later_column_is_written_by_name_through_the_ledger(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        session = uuid.uuid4().hex
        open_session(ledger, session, "k1", started_at=time.time() - 60)
        beat(ledger, session, time.time(), hint="grid now 120 g/kWh")
    assert ledger_module.latest_heartbeat(path, "k1")["hint"] == "grid now 120 g/kWh"


def test_the_ledgers_size_reaches_the_kernels_heartbeat(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    kernel_id = str(uuid.uuid4())
    with Ledger(path) as ledger:
        session = uuid.uuid4().hex
        open_session(ledger, session, kernel_id, started_at=time.time() - 60)
        beat(ledger, session, time.time(), ledger_bytes=40960)
    reader = LedgerReader(path)
    try:
        figures = reader.kernel(kernel_id)
        document = to_json(views.kernel_json(kernel_id, figures, time.time(), lambda *_: 60.0))
        assert document["heartbeat"]["ledger_bytes"] == 40960
        # A file from before the column: the heartbeat says nothing of the size.
        with sqlite3.connect(path) as conn:
            conn.execute("ALTER TABLE heartbeats DROP COLUMN ledger_bytes")
        reader.close()
        assert reader.kernel(kernel_id).heartbeat.ledger_bytes is None
    finally:
        reader.close()
