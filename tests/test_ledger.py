"""The SQLite ledger, on real files: round trips, WAL, migrations, faults, concurrency."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from carbon_magic import ledger as ledger_module
from carbon_magic.engine.measurement import Measurement
from carbon_magic.ledger import (
    SCHEMA_VERSION,
    Ledger,
    LedgerWarning,
    cell_row,
    connect_readonly,
    default_ledger_path,
    latest_heartbeat,
    measurement_from_row,
    read_cells,
    read_sessions,
)
from carbon_magic.ledger import schema as ledger_schema
from carbon_magic.ledger import store as ledger_store

T0 = datetime(2024, 5, 17, 9, 30, 12, 345678, tzinfo=timezone.utc)


def measurement(i: int = 0, **changes) -> Measurement:
    """A cell measurement with distinct, non-default values everywhere."""
    started = T0 + timedelta(seconds=10 * i)
    values = dict(
        name=f"train-{i}",
        duration_s=2.5,
        energy_j={"cpu": 120.0 + i, "gpu": 900.5, "ram": 7.25},
        energy_kwh=0.000345,
        energy_range_kwh=(0.0003, 0.0004),
        emissions_g=0.138,
        emissions_range_g=(0.1, 0.19),
        embodied_g=0.011,
        intensity_g_per_kwh=400.0,
        intensity_source="static table (DE, 2023)",
        pue=1.2,
        methods={"cpu": "measured", "gpu": "measured", "ram": "assumed"},
        devices={"gpu0": 0.75},
        mode="process",
        started_at=started,
        ended_at=started + timedelta(seconds=2.5),
        execution_count=i + 1,
        cell_id=f"cell-{i}",
        status="ok",
        source=f"model.fit(x, y, epochs={i})",
    )
    values.update(changes)
    return Measurement(**values)


def session_values(uuid: str = "s1", kernel_id: str | None = "k1", **changes) -> dict:
    """What :func:`open_session` records, as keywords of ``Ledger.open_session``."""
    values = dict(
        session_uuid=uuid,
        kernel_id=kernel_id,
        notebook_path="work/analysis.ipynb",
        host="box",
        pid=4321,
        started_at=T0.timestamp(),
        interval_s=1.0,
        mode="process",
        hardware={"cpu_model": "Xeon", "n_cpus": 8, "ram_gb": 32.0, "gpus": ["H100"]},
        methods={"cpu": "measured"},
        settings={"pue": 1.2, "electricitymaps_token": "s3cret"},
        intensity_source="static table (DE, 2023)",
        intensity_g_per_kwh=400.0,
    )
    values.update(changes)
    return values


def open_session(ledger: Ledger, uuid: str = "s1", kernel_id: str | None = "k1", **changes):
    return ledger.open_session(**session_values(uuid, kernel_id, **changes))


def beat_values(at: float, **changes) -> dict:
    """What :func:`beat` records, as keywords of ``Ledger.heartbeat``."""
    values = dict(
        at=at,
        watts={"cpu": 30.0, "gpu": 250.0, "ram": 3.0},
        energy_kwh=0.01,
        emissions_g=4.0,
        emissions_range_g=(3.0, 5.0),
        embodied_g=0.5,
        intensity_g_per_kwh=400.0,
        intensity_source="static",
        tracker_state="running",
        running_cell="model.fit(x, y)",
        running_cell_started_at=at - 5,
    )
    values.update(changes)
    return values


def beat(ledger: Ledger, uuid: str, at: float, **changes) -> None:
    ledger.heartbeat(uuid, **beat_values(at, **changes))


def count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def schema_version_of(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0])
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def quick(monkeypatch):
    """A Ledger factory with short waits, so fault tests run in well under a second."""
    made: list[Ledger] = []

    def make(where: Path, **kwargs) -> Ledger:
        kwargs.setdefault("busy_timeout_s", 0.2)
        kwargs.setdefault("retry_after_s", 0.1)
        ledger = Ledger(where, **kwargs)
        made.append(ledger)
        return ledger

    yield make
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LedgerWarning)
        for ledger in made:
            ledger.close()


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# --- basics ----------------------------------------------------------------------------


def test_default_path_is_in_the_jupyter_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("CARBON_MAGIC_LEDGER", raising=False)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    assert default_ledger_path() == tmp_path / "data" / "carbon_magic" / "ledger.sqlite3"


def test_the_environment_names_the_ledger_for_kernel_server_and_cli(monkeypatch, tmp_path):
    from carbon_magic import cli
    from carbon_magic.server.config import CarbonMagicServer

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CARBON_MAGIC_LEDGER", " ~/elsewhere/ledger.sqlite3 ")
    expected = Path("~/elsewhere/ledger.sqlite3").expanduser()
    assert default_ledger_path() == expected
    assert Ledger(tmp_path / "other.sqlite3").path == tmp_path / "other.sqlite3"
    monkeypatch.setenv("CARBON_MAGIC_LEDGER", str(tmp_path / "env.sqlite3"))
    with Ledger() as ledger:  # the kernel's writer, with no ledger setting
        assert ledger.path == tmp_path / "env.sqlite3"
    assert CarbonMagicServer().ledger == str(tmp_path / "env.sqlite3")
    assert cli.ledger_path_from_option(None) == tmp_path / "env.sqlite3"


def test_measurement_round_trip(path):
    m = measurement(3, status="error", name="")
    with Ledger(path) as ledger:
        session_id = open_session(ledger)
        ledger.record_cell("s1", m, via="magic", budget="5g")
        assert ledger.status() == f"ok: {path}"

    [row] = read_cells(path)
    assert row["session_id"] == session_id
    assert (row["via"], row["budget"], row["kernel_id"]) == ("magic", "5g", "k1")
    assert (row["session_uuid"], row["notebook_path"], row["host"]) == (
        "s1",
        "work/analysis.ipynb",
        "box",
    )
    assert row["name"] is None  # unnamed cell → NULL
    assert row["started_at"] == pytest.approx(m.started_at.timestamp(), abs=1e-6)
    back = measurement_from_row(row)
    assert back == m
    assert back.started_at.tzinfo is not None
    with connect_readonly(path) as conn:  # sqlite3.Row works as well as a dict
        assert measurement_from_row(conn.execute("SELECT * FROM cells").fetchone()) == m
    conn.close()


def test_cell_row_columns_and_first_source_line():
    row = cell_row(measurement(0, source="\n\n# load\nx = 1\n"), via="auto", budget=None)
    assert row["source"] == "# load"
    assert (row["cpu_j"], row["gpu_j"], row["ram_j"]) == (120.0, 900.5, 7.25)
    assert (row["energy_low_kwh"], row["energy_high_kwh"]) == (0.0003, 0.0004)
    assert row["methods_json"] == '{"cpu":"measured","gpu":"measured","ram":"assumed"}'
    naive = cell_row(
        measurement(0, started_at=T0.replace(tzinfo=None), ended_at=None), via="api", budget=None
    )
    assert naive["started_at"] == T0.timestamp()  # naive datetimes are UTC
    assert naive["ended_at"] == pytest.approx(T0.timestamp() + 2.5)
    with sqlite3.connect(":memory:") as conn:  # cell_row covers every cells column
        conn.executescript(
            (Path(ledger_module.__file__).parent / "schema.sql").read_text(encoding="utf-8")
        )
        columns = {r[1] for r in conn.execute("PRAGMA table_info(cells)")}
    assert set(row) == columns - {"id", "session_id", "kernel_id"}


def test_wal_mode_synchronous_normal_and_busy_timeout(path):
    with Ledger(path) as ledger:
        assert ledger.connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert ledger.connection.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        other = sqlite3.connect(path)
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        other.close()


def test_missing_parent_directory_is_created(tmp_path):
    where = tmp_path / "a" / "b" / "ledger.sqlite3"
    with Ledger(where) as ledger:
        open_session(ledger)
    assert where.is_file()
    assert count(where, "sessions") == 1


def test_relative_path_is_fixed_at_open(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Ledger("rel.sqlite3") as ledger:
        monkeypatch.chdir("/")  # as %cd in a notebook would
        open_session(ledger)
        ledger.record_cell("s1", measurement(), via="auto")
    assert len(read_cells(tmp_path / "rel.sqlite3")) == 1


def test_settings_secrets_are_not_stored(path):
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.update_session("s1", settings={"pue": 1.5, "electricitymaps_token": "again"})
    [session] = read_sessions(path)
    assert "token" not in session["settings_json"]
    assert session["settings_json"] == '{"pue":1.5}'


def test_update_session_and_unknown_field(path):
    with Ledger(path) as ledger:
        open_session(ledger)
        ended = T0 + timedelta(hours=1)
        ledger.update_session(
            "s1", tracker_state="stopped", ended_at=ended, mode="machine", intensity=250
        )
        with pytest.raises(ValueError, match="tracker_state"):
            ledger.update_session("s1", colour="green")
    [session] = read_sessions(path, kernel_id="k1")
    assert session["tracker_state"] == "stopped"
    assert session["ended_at"] == ended.timestamp()
    assert session["mode"] == "machine"
    assert session["intensity_g_per_kwh"] == 250.0
    assert read_sessions(path, kernel_id="other") == []


def test_cell_without_open_session_is_still_linked(path):
    with Ledger(path) as ledger:
        ledger.record_cell("orphan", measurement(), via="api")
    [row] = read_cells(path)
    assert row["session_uuid"] == "orphan"


def test_read_filters(path):
    with Ledger(path) as ledger:
        open_session(ledger, "s1", "k1")
        open_session(ledger, "s2", "k2", notebook_path="other.ipynb")
        for i in range(6):
            ledger.record_cell("s1" if i % 2 == 0 else "s2", measurement(i), via="auto")
    assert [r["execution_count"] for r in read_cells(path)] == [1, 2, 3, 4, 5, 6]
    assert [r["execution_count"] for r in read_cells(path, kernel_id="k1")] == [1, 3, 5]
    assert [r["execution_count"] for r in read_cells(path, session_uuid="s2")] == [2, 4, 6]
    assert len(read_cells(path, notebook_path="other.ipynb")) == 3
    since, until = (
        (T0 + timedelta(seconds=20)).timestamp(),
        (T0 + timedelta(seconds=40)).timestamp(),
    )
    assert [r["execution_count"] for r in read_cells(path, since=since, until=until)] == [3, 4]
    assert [r["execution_count"] for r in read_cells(path, limit=2)] == [5, 6]
    with connect_readonly(path) as conn:  # a connection works as well as a path
        assert [r["execution_count"] for r in read_cells(conn, kernel_id="k2", limit=1)] == [6]


def test_connect_readonly(path, tmp_path):
    with pytest.raises(FileNotFoundError):
        connect_readonly(tmp_path / "missing.sqlite3")
    assert not (tmp_path / "missing.sqlite3").exists()
    with Ledger(path) as ledger:
        open_session(ledger)
    conn = connect_readonly(path)
    assert conn.execute("SELECT session_uuid FROM sessions").fetchone()["session_uuid"] == "s1"
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM sessions")
    conn.close()


def test_empty_file_reads_as_empty(path):
    path.touch()
    assert read_cells(path) == [] and read_sessions(path) == []
    assert latest_heartbeat(path, "k1") is None


def test_main_and_tracker_threads_share_the_writer(path):
    with Ledger(path) as ledger:
        open_session(ledger)
        errors: list[BaseException] = []

        def tracker() -> None:
            try:
                for i in range(300):
                    beat(ledger, "s1", at=T0.timestamp() + i)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=tracker)
        thread.start()
        for i in range(300):
            ledger.record_cell("s1", measurement(i), via="auto")
        thread.join()
        assert errors == []
        assert ledger.status().startswith("ok")
    assert count(path, "cells") == 300
    assert count(path, "heartbeats") == 300


# --- heartbeats -------------------------------------------------------------------------


def test_heartbeats_are_pruned_keeping_the_latest(path):
    day = 86400.0
    now = T0.timestamp()
    with Ledger(path) as ledger:
        open_session(ledger, "s1", "k1")
        open_session(ledger, "s2", "k2")
        beat(ledger, "s2", at=now - 3 * day)  # another session's history is not touched
        beat(ledger, "s1", at=now - 3 * day)
        beat(ledger, "s1", at=now - 2 * day)
        assert count(path, "heartbeats") == 3
        beat(ledger, "s1", at=now - 3600)  # both of s1's older than a day go
        beat(ledger, "s1", at=now - 60)
        beat(ledger, "s1", at=now, watts={"cpu": 11.0, "gpu": 0.0, "ram": 1.0})
    with sqlite3.connect(path) as conn:
        left = [r[0] for r in conn.execute("SELECT at FROM heartbeats ORDER BY at")]
    assert left == [now - 3 * day, now - 3600, now - 60, now]
    latest = latest_heartbeat(path, "k1")
    assert (latest["at"], latest["cpu_w"], latest["ram_w"]) == (now, 11.0, 1.0)
    assert latest["session_uuid"] == "s1" and latest["notebook_path"] == "work/analysis.ipynb"
    assert latest_heartbeat(path, "nobody") is None


def test_old_heartbeats_of_dead_sessions_are_pruned_at_next_start(path):
    old = time.time() - 3 * 86400
    with Ledger(path) as ledger:
        open_session(ledger, "dead")
        for i in range(5):
            beat(ledger, "dead", at=old + i * 10)  # prunes only every minute of beats
    assert count(path, "heartbeats") == 5
    with Ledger(path) as ledger:
        open_session(ledger, "next")
    with sqlite3.connect(path) as conn:
        left = [r[0] for r in conn.execute("SELECT at FROM heartbeats")]
    assert left == [old + 40]  # the latest of the dead session stays


# --- schema versions and migrations ----------------------------------------------------


def test_schema_version_is_recorded(path):
    Ledger(path).close()
    assert SCHEMA_VERSION == len(ledger_module.MIGRATIONS)
    assert schema_version_of(path) == SCHEMA_VERSION


def test_pre_versioning_file_is_migrated_and_keeps_its_data(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.close()
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", measurement(), via="auto")
    assert schema_version_of(path) == SCHEMA_VERSION
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT text FROM notes").fetchall() == [("keep me",)]
    conn.close()
    assert len(read_cells(path)) == 1


def test_a_new_migration_is_applied_once_to_an_older_file(path, monkeypatch):
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", measurement(), via="auto")
    calls = []

    def add_carbon_note(conn: sqlite3.Connection) -> None:
        calls.append(1)
        conn.execute("ALTER TABLE cells ADD COLUMN note TEXT")

    monkeypatch.setattr(ledger_schema, "MIGRATIONS", [*ledger_schema.MIGRATIONS, add_carbon_note])
    with Ledger(path) as ledger:
        ledger.record_cell("s1", measurement(1), via="auto")
    with Ledger(path) as ledger:  # already at the new version: nothing to do
        assert ledger.status() == f"ok: {path}"
    assert calls == [1]
    assert schema_version_of(path) == SCHEMA_VERSION + 1
    rows = read_cells(path)
    assert len(rows) == 2 and all(r["note"] is None for r in rows)


def test_a_failing_migration_changes_nothing(path, monkeypatch, quick):
    Ledger(path).close()
    before = digest(path)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(ledger_schema, "MIGRATIONS", [*ledger_schema.MIGRATIONS, broken])
    with pytest.warns(LedgerWarning, match="disk I/O error"):
        ledger = quick(path)
    ledger.record_cell("s1", measurement(), via="auto")  # no exception
    assert ledger.status() == "in memory (1 pending): disk I/O error"
    with pytest.warns(LedgerWarning, match=r"1 pending record\(s\) could not be written"):
        ledger.close()
    assert schema_version_of(path) == SCHEMA_VERSION
    with sqlite3.connect(path) as conn:
        assert (
            conn.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchall() == []
        )
    conn.close()
    assert digest(path) == before


def test_newer_schema_file_is_left_untouched(path, quick):
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", measurement(), via="auto")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    before = digest(path)

    with pytest.warns(LedgerWarning, match="schema version 99 is newer"):
        ledger = quick(path)
    assert open_session(ledger, "s2") is None
    ledger.record_cell("s2", measurement(1), via="auto")
    beat(ledger, "s2", at=T0.timestamp())
    assert ledger.status().startswith("in memory (1 pending): schema version 99 is newer")
    assert ledger.flush() is False
    with pytest.warns(LedgerWarning, match="could not be written"):
        ledger.close()
    assert digest(path) == before
    assert schema_version_of(path) == 99
    assert len(read_cells(path)) == 1  # readers still work


# --- faults -----------------------------------------------------------------------------


def test_locked_file_never_holds_a_cell_up_and_is_written_in_the_background(path, quick):
    ledger = quick(path, busy_timeout_s=0.3)
    open_session(ledger)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(3):
            started = time.monotonic()
            ledger.record_cell("s1", measurement(i), via="auto")
            assert time.monotonic() - started < 0.2  # CELL_WAIT_S and a margin
        assert read_cells(path) == []  # readers are not blocked in WAL mode
        # Held for longer than the busy timeout: now it counts as locked, and says so once.
        wait_until(lambda: ledger.status().startswith("in memory"))
    assert ledger.status() == "in memory (3 pending): database is locked"
    [warning] = [w for w in caught if issubclass(w.category, LedgerWarning)]
    assert "database is locked; keeping records in memory" in str(warning.message)
    holder.execute("COMMIT")
    holder.close()

    # Written by the background writer after the back-off, without any further call.
    wait_until(lambda: ledger.status() == f"ok: {path}")
    assert [r["execution_count"] for r in read_cells(path)] == [1, 2, 3]


def test_session_opened_while_locked_is_linked_later(path, quick):
    Ledger(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ledger = quick(path)
        assert open_session(ledger) is None
        ledger.record_cell("s1", measurement(), via="auto")
        ledger.flush()  # a forced retry, still locked
    assert len([w for w in caught if issubclass(w.category, LedgerWarning)]) == 1
    holder.execute("COMMIT")
    holder.close()
    assert ledger.flush() is True
    [row] = read_cells(path)
    assert row["session_uuid"] == "s1" and row["notebook_path"] == "work/analysis.ipynb"


class ReadOnly:
    """Makes a file unwritable in the most honest way available here.

    Not root: chmod. Root ignores permissions but not the immutable attribute (chattr +i,
    ext4 and friends). Root elsewhere: SQLite itself opens the file read-only (mode=ro),
    so the same SQLITE_READONLY error path is exercised.
    """

    def __init__(self, monkeypatch) -> None:
        self.monkeypatch = monkeypatch
        self.undo = None

    def on(self, target: Path) -> str:
        if os.geteuid() != 0:
            target.chmod(0o444)
            self.undo = lambda: target.chmod(0o644)
            return "chmod"
        chattr = shutil.which("chattr")
        if (
            chattr
            and subprocess.run([chattr, "+i", str(target)], capture_output=True).returncode == 0
        ):
            self.undo = lambda: subprocess.run([chattr, "-i", str(target)], check=True)
            return "immutable"
        real_connect = sqlite3.connect

        def connect_read_only(database, *args, **kwargs):
            if Path(database) == target:
                return real_connect(f"{target.as_uri()}?mode=ro", *args, uri=True, **kwargs)
            return real_connect(database, *args, **kwargs)

        self.monkeypatch.setattr(sqlite3, "connect", connect_read_only)
        self.undo = lambda: self.monkeypatch.setattr(sqlite3, "connect", real_connect)
        return "mode=ro"

    def off(self) -> None:
        if self.undo:
            self.undo()
            self.undo = None


@pytest.fixture
def read_only(monkeypatch):
    guard = ReadOnly(monkeypatch)
    yield guard
    guard.off()


def test_read_only_file_keeps_records_in_memory(path, quick, read_only):
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", measurement(0), via="auto")
    read_only.on(path)
    with pytest.warns(LedgerWarning, match="readonly"):
        ledger = quick(path)
        ledger.record_cell("s1", measurement(1), via="auto")
        ledger.update_session("s1", tracker_state="stopped")
    assert ledger.status().startswith("in memory (1 pending): attempt to write a readonly")
    assert len(read_cells(path)) == 1

    read_only.off()
    beat(ledger, "s1", at=T0.timestamp())
    wait_until(lambda: ledger.status() == f"ok: {path}")  # retried after the back-off
    assert len(read_cells(path)) == 2
    assert read_sessions(path)[0]["tracker_state"] == "stopped"


def test_unwritable_location_then_fixed(tmp_path, quick):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the directory should be")
    where = blocker / "carbon_magic" / "ledger.sqlite3"
    with pytest.warns(LedgerWarning, match="cannot create the directory"):
        ledger = quick(where)
    assert open_session(ledger) is None  # no row id while in memory
    ledger.record_cell("s1", measurement(0), via="auto")
    assert ledger.status().startswith("in memory (1 pending): cannot create the directory")

    blocker.unlink()
    ledger.record_cell("s1", measurement(1), via="auto")
    wait_until(lambda: ledger.status() == f"ok: {where}")  # retried after the back-off
    rows = read_cells(where)
    assert [r["session_uuid"] for r in rows] == ["s1", "s1"]  # linked after the flush
    assert rows[0]["notebook_path"] == "work/analysis.ipynb"


def test_corrupt_file_is_moved_aside_and_a_fresh_ledger_started(path):
    garbage = b"this is not an SQLite file " * 200
    path.write_bytes(garbage)
    with pytest.warns(
        LedgerWarning, match=r"file is not a database; moved it to ledger\.sqlite3\.corrupt-"
    ):
        ledger = Ledger(path)
    [aside] = path.parent.glob("ledger.sqlite3.corrupt-*")
    assert aside.read_bytes() == garbage
    open_session(ledger)
    ledger.record_cell("s1", measurement(), via="auto")
    assert ledger.status() == f"ok: {path}"
    ledger.close()
    assert len(read_cells(path)) == 1


def test_corruption_found_while_running_is_recovered(path):
    with Ledger(path) as ledger:
        open_session(ledger)
        for i in range(300):
            ledger.record_cell("s1", measurement(i, source="x" * 150), via="auto")
    size = path.stat().st_size
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        ledger.connection.execute("PRAGMA cache_size = 0")
        with open(path, "r+b") as handle:  # clobber the second half: the cells b-tree
            handle.seek(size // 2)
            handle.write(b"\xff" * (size - size // 2))
        with pytest.warns(LedgerWarning, match="malformed; moved it to"):
            ledger.record_cell("s1", measurement(999), via="auto")
        assert ledger.status() == f"ok: {path}"
    assert len(list(path.parent.glob("ledger.sqlite3.corrupt-*"))) == 1
    [row] = read_cells(path)  # the fresh ledger has the session again, and the new cell
    assert row["execution_count"] == 1000 and row["notebook_path"] == "work/analysis.ipynb"


def test_ledger_deleted_under_a_running_kernel_is_recreated(path):
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", measurement(0), via="auto")
        for name in ("ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm"):
            (path.parent / name).unlink(missing_ok=True)
        ledger.record_cell("s1", measurement(1), via="auto")
    [row] = read_cells(path)
    assert row["execution_count"] == 2 and row["session_uuid"] == "s1"


def test_pending_cells_are_bounded(path, quick, monkeypatch):
    monkeypatch.setattr(ledger_store, "MAX_PENDING_CELLS", 3)
    blocker = path.parent / "blocked"
    blocker.write_text("")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LedgerWarning)
        ledger = quick(blocker / "ledger.sqlite3")
        for i in range(5):
            ledger.record_cell("s1", measurement(i), via="auto")
        assert ledger.status().startswith("in memory (3 pending)")
    rows, pending = ledger.cells_with_pending()
    assert pending == 3 and [row["execution_count"] for row in rows] == [3, 4, 5]


# --- several processes ------------------------------------------------------------------

WORKER = r"""
import os, signal, sys, time, warnings
from datetime import datetime, timedelta, timezone
from carbon_magic.ledger import Ledger
from carbon_magic.engine.measurement import Measurement

path, uuid, n, action = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
warnings.simplefilter("error")  # a LedgerWarning (locked, ...) fails this worker
ledger = Ledger(path)
ledger.open_session(
    session_uuid=uuid, kernel_id="k-" + uuid, notebook_path=None, host="box",
    pid=os.getpid(), started_at=time.time(), interval_s=1.0, mode="process",
    hardware={}, methods={}, settings={}, intensity_source="static", intensity_g_per_kwh=300.0,
)
print("ready", flush=True)
while action == "race" and not os.path.exists(path + ".go"):
    time.sleep(0.001)
start = datetime.now(timezone.utc)
for i in range(n):
    m = Measurement(name=f"{uuid}-{i}", duration_s=0.1, execution_count=i,
                    started_at=start + timedelta(seconds=i), ended_at=start + timedelta(seconds=i))
    ledger.record_cell(uuid, m, via="auto")
ledger.flush()  # what the background writer still has (a lock held > 0.1 s), now
status = ledger.status()
print(status, flush=True)
if action == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
ledger.close()
"""


def spawn(path: Path, uuid: str, n: int, action: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(path), uuid, str(n), action],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=path.parent,
    )


def test_two_processes_write_one_ledger_concurrently(path):
    workers = [spawn(path, uuid, 300, "race") for uuid in ("p1", "p2")]
    for worker in workers:  # both connected before either starts writing
        assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
    (path.parent / "ledger.sqlite3.go").touch()
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        assert out.strip() == f"ok: {path}"
        assert "carbon_magic ledger" not in err  # no LedgerWarning (logged under "error")
    rows = read_cells(path)
    assert len(rows) == 600
    for uuid in ("p1", "p2"):
        names = {r["name"] for r in rows if r["session_uuid"] == uuid}
        assert names == {f"{uuid}-{i}" for i in range(300)}
    assert {s["kernel_id"] for s in read_sessions(path)} == {"k-p1", "k-p2"}


def test_killed_writer_loses_nothing_committed(path):
    worker = spawn(path, "victim", 50, "kill")
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == -signal.SIGKILL, err
    assert out.splitlines()[-1] == f"ok: {path}"
    assert Path(f"{path}-wal").exists()  # not checkpointed: recovery reads the WAL
    rows = read_cells(path)
    assert [r["execution_count"] for r in rows] == list(range(50))
    [session] = read_sessions(path)
    assert session["ended_at"] is None and session["tracker_state"] == "running"
    with Ledger(path) as ledger:  # and the next kernel carries on writing
        ledger.record_cell("victim", measurement(), via="auto")
    assert len(read_cells(path)) == 51


# --- nothing lost, nothing leaked ----------------------------------------------------


def test_a_warnings_filter_of_error_never_turns_the_ledger_off(tmp_path, quick):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the directory should be")
    where = blocker / "ledger.sqlite3"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pytest -W error, nbmake
        ledger = quick(where)  # would raise the LedgerWarning
        open_session(ledger)
        ledger.record_cell("s1", measurement(0), via="auto")
    assert ledger.status().startswith("in memory (1 pending): cannot create the directory")
    blocker.unlink()
    wait_until(lambda: ledger.status() == f"ok: {where}")
    assert len(read_cells(where)) == 1


@pytest.mark.filterwarnings("ignore::carbon_magic.ledger.LedgerWarning")
def test_close_while_locked_keeps_a_journal_imported_once_in_order(path, quick):
    ledger = quick(path, busy_timeout_s=0.2)
    open_session(ledger)
    ledger.record_cell("s1", measurement(0), via="auto")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    for i in range(1, 4):
        ledger.record_cell("s1", measurement(i), via="auto")
    beat(ledger, "s1", at=T0.timestamp() + 50)
    ledger.update_session("s1", tracker_state="stopped", ended_at=T0.timestamp() + 60)
    with pytest.warns(
        LedgerWarning, match=r"could not be written .*kept in ledger\.sqlite3\.pending-"
    ):
        ledger.close(0.3)
    [journal] = path.parent.glob("ledger.sqlite3.pending-*.json")
    assert journal.stat().st_mode & 0o777 == 0o600
    holder.execute("COMMIT")
    holder.close()
    assert len(read_cells(path)) == 1

    journal_copy = journal.read_bytes()
    with Ledger(path) as later:  # the next kernel
        open_session(later, "s2", kernel_id="k2")
    assert not journal.exists()
    journal.write_bytes(journal_copy)  # as if a second kernel had found it at the same time
    journal.chmod(0o600)  # as its writer left it
    with Ledger(path) as again:
        open_session(again, "s3", kernel_id="k3")
    assert not journal.exists()
    rows = read_cells(path)
    assert [r["execution_count"] for r in rows] == [1, 2, 3, 4]
    [s1] = [s for s in read_sessions(path) if s["session_uuid"] == "s1"]
    assert s1["tracker_state"] == "stopped" and s1["ended_at"] == T0.timestamp() + 60
    assert latest_heartbeat(path, "k1")["at"] == T0.timestamp() + 50


def test_an_unreadable_journal_is_left_in_place_and_said_once(path):
    bad = path.parent / "ledger.sqlite3.pending-broken.json"
    bad.write_text("{not json")
    with pytest.warns(LedgerWarning, match="cannot import ledger.sqlite3.pending-broken.json"):
        with Ledger(path) as ledger:
            open_session(ledger)
            ledger.record_cell("s1", measurement(), via="auto")
    assert bad.exists() and len(read_cells(path)) == 1


@pytest.mark.filterwarnings("ignore::carbon_magic.ledger.LedgerWarning")
def test_pending_records_move_to_a_new_ledger(tmp_path, quick):
    old_path, new_path = tmp_path / "old.sqlite3", tmp_path / "new.sqlite3"
    old = quick(old_path, busy_timeout_s=0.2)
    open_session(old)
    holder = sqlite3.connect(old_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    for i in range(3):
        old.record_cell("s1", measurement(i), via="auto")
    new = quick(new_path)
    open_session(new)
    assert old.hand_over_pending(new) == 3
    new.record_cell("s1", measurement(3), via="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is reported lost
        old.close(0.1)
    holder.execute("COMMIT")
    holder.close()
    assert new.flush() is True
    assert [r["execution_count"] for r in read_cells(new_path)] == [1, 2, 3, 4]
    assert read_cells(old_path) == []


@pytest.mark.filterwarnings("ignore::carbon_magic.ledger.LedgerWarning")
def test_cells_with_pending_include_what_is_not_written_yet(path, quick):
    ledger = quick(path, busy_timeout_s=0.2)
    open_session(ledger)
    ledger.record_cell("s1", measurement(0), via="auto")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        ledger.record_cell("s1", measurement(1), via="auto")
        ledger.record_cell("s1", measurement(2), via="auto")
        rows, pending = ledger.cells_with_pending(session_uuid="s1")
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert pending == 2
    assert [r["execution_count"] for r in rows] == [1, 2, 3]
    assert rows[-1]["notebook_path"] == "work/analysis.ipynb"
    assert ledger.flush() is True
    rows, pending = ledger.cells_with_pending(session_uuid="s1")
    assert pending == 0 and len(rows) == 3


def test_ledger_is_created_private(tmp_path):
    where = tmp_path / "fresh" / "ledger.sqlite3"
    with Ledger(where) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", measurement(), via="auto")
        assert Path(f"{where}-wal").stat().st_mode & 0o777 == 0o600
    assert where.stat().st_mode & 0o777 == 0o600
    assert where.parent.stat().st_mode & 0o777 == 0o700


def test_secret_settings_in_a_cell_source_are_redacted_not_every_letter():
    m = measurement(source="%carbon config electricitymaps_token=t country=FR  # total")
    assert cell_row(m, via="auto", budget=None)["source"] == (
        "%carbon config electricitymaps_token=*** country=FR  # total"
    )
    m = measurement(source='carbon_magic.configure(electricitymaps_token="abc123")\nx = 1')
    assert cell_row(m, via="auto", budget=None)["source"] == (
        'carbon_magic.configure(electricitymaps_token="***")'
    )


def test_a_silent_session_reads_lost(path):
    with Ledger(path) as ledger:
        open_session(ledger, "quiet", started_at=T0.timestamp())
        open_session(ledger, "beating", kernel_id="k2", started_at=T0.timestamp())
        beat(ledger, "beating", at=T0.timestamp() + 1000)
        open_session(ledger, "ended", kernel_id="k3", started_at=T0.timestamp())
        ledger.update_session("ended", ended_at=T0.timestamp() + 5, tracker_state="stopped")
    now = T0.timestamp() + 1200
    states = {s["session_uuid"]: s["state"] for s in read_sessions(path, now=now)}
    assert states == {"quiet": "lost", "beating": "running", "ended": "stopped"}
    [beating] = read_sessions(path, kernel_id="k2", now=now)
    assert beating["last_seen_at"] == T0.timestamp() + 1000


@pytest.mark.filterwarnings("ignore::carbon_magic.ledger.LedgerWarning")
def test_two_kernels_starting_together_import_a_journal_once(path, quick):
    ledger = quick(path, busy_timeout_s=0.2)
    open_session(ledger)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    for i in range(5):
        ledger.record_cell("s1", measurement(i), via="auto")
    ledger.close(0.2)
    holder.execute("COMMIT")
    holder.close()
    assert len(list(path.parent.glob("ledger.sqlite3.pending-*.json"))) == 1

    workers = [spawn(path, uuid, 1, "race") for uuid in ("p1", "p2")]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
    (path.parent / "ledger.sqlite3.go").touch()
    for worker in workers:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
    counts = [r["execution_count"] for r in read_cells(path) if r["session_uuid"] == "s1"]
    assert counts == [1, 2, 3, 4, 5]
    assert not list(path.parent.glob("ledger.sqlite3.pending-*"))
