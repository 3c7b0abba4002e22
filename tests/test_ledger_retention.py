"""The ledger's tables as dataclasses, and the retention of cells (``ledger_keep_days``),
on real SQLite files."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import FrozenInstanceError
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from carbon_magic.engine.measurement import Measurement
from carbon_magic.ledger import (
    CELL_CLUSTER_COLUMNS,
    CELL_COLUMNS,
    CELL_HOST_COLUMNS,
    HEARTBEAT_COLUMNS,
    SESSION_COLUMNS,
    CellRow,
    Ledger,
    cell_row,
    read_cell_clusters,
    read_cells,
    read_sessions,
)
from carbon_magic.ledger import retention as ledger_retention
from carbon_magic.settings import Settings, parse_setting

DAY_S = 86400.0
CLUSTER = {
    "hosts": {
        "h1": {
            "name": "node-1",
            "workers": 2,
            "in_kernel": 0,
            "energy_j": {"cpu": 10.0, "gpu": 0.0, "ram": 1.0},
            "embodied_g": 0.1,
            "methods": {"cpu": "measured"},
        }
    },
    "missing_workers": 0,
    "energy_kwh": 11.0 / 3.6e6,
    "emissions_g": 0.001,
    "embodied_g": 0.1,
}


def open_session(ledger: Ledger, uuid: str = "s1") -> None:
    ledger.open_session(
        session_uuid=uuid,
        kernel_id="k1",
        notebook_path="nb.ipynb",
        host="h",
        pid=1,
        started_at=time.time() - 10 * DAY_S,
        interval_s=1.0,
        mode="process",
        hardware={},
        methods={},
        settings={},
        intensity_source="static",
        intensity_g_per_kwh=50.0,
    )


def cell(name: str, days_ago: float, **changes) -> Measurement:
    """A cell that started ``days_ago`` days before now and lasted a second."""
    started = datetime.now(timezone.utc) - timedelta(days=days_ago)
    return Measurement(
        name=name,
        duration_s=1.0,
        started_at=started,
        ended_at=started + timedelta(seconds=1),
        **changes,
    )


def count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --- the tables ------------------------------------------------------------------------


def test_the_dataclasses_are_the_schema(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path):
        pass
    links = ["id", "session_id", "kernel_id"]
    expected = {
        "sessions": ["id", *SESSION_COLUMNS],
        "cells": [*links, *CELL_COLUMNS],
        "heartbeats": [*links, *HEARTBEAT_COLUMNS],
        "cell_clusters": list(CELL_CLUSTER_COLUMNS),
        "cell_hosts": list(CELL_HOST_COLUMNS),
    }
    with sqlite3.connect(path) as conn:
        for table, columns in expected.items():
            found = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            assert found == columns, table


def test_a_cell_row_is_a_frozen_dataclass_with_the_columns(tmp_path):
    row = cell_row(cell("a", 0), via="auto", budget="5g")
    assert tuple(row) == CELL_COLUMNS
    frozen = CellRow(**row)
    with pytest.raises(FrozenInstanceError):
        frozen.name = "b"  # type: ignore[misc]
    assert frozen.params() == row


# --- retention -------------------------------------------------------------------------


def test_old_cells_and_their_cluster_rows_are_removed(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", cell("old", 9, cluster=CLUSTER), via="auto")
        ledger.record_cell("s1", cell("older", 20), via="auto")
        ledger.record_cell("s1", cell("recent", 2, cluster=CLUSTER), via="auto")
        ledger.record_cell("s1", cell("now", 0), via="auto")
    assert count(path, "cells") == 4 and count(path, "cell_hosts") == 2

    with Ledger(path, keep_days=7) as ledger:
        wait_until(lambda: count(path, "cells") == 2)
        ledger.record_cell("s1", cell("after", 0), via="auto")
    rows = read_cells(path)
    assert [r["name"] for r in rows] == ["recent", "now", "after"]
    assert count(path, "cell_clusters") == 1 and count(path, "cell_hosts") == 1
    assert list(read_cell_clusters(path, [r["id"] for r in rows])) == [rows[0]["id"]]
    assert [s["session_uuid"] for s in read_sessions(path)] == ["s1"]  # sessions stay


def test_without_a_retention_time_every_cell_stays(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", cell("ancient", 3000), via="auto")
        ledger.flush()
        time.sleep(0.3)  # time for a background pass, were there one
    assert [r["name"] for r in read_cells(path)] == ["ancient"]


def test_many_old_cells_go_in_batches_while_cells_are_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_retention, "PRUNE_BATCH_CELLS", 5)
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger)
        for i in range(23):
            ledger.record_cell("s1", cell(f"old-{i}", 30 + i), via="auto")
    with Ledger(path) as ledger:
        ledger.set_keep_days(1)
        for i in range(5):
            ledger.record_cell("s1", cell(f"new-{i}", 0), via="auto")
        wait_until(lambda: count(path, "cells") == 5)
    assert sorted(r["name"] for r in read_cells(path)) == [f"new-{i}" for i in range(5)]


def test_pruning_never_holds_a_cell_up_nor_loses_it(tmp_path, monkeypatch):
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", cell("old", 10), via="auto")
    pruning, release, threads = threading.Event(), threading.Event(), []
    real_prune = ledger_retention.prune_cells

    def slow_prune(conn, before, limit):
        threads.append(threading.current_thread().name)
        pruning.set()
        release.wait(5)  # a long delete, holding the writer's lock
        return real_prune(conn, before, limit)

    monkeypatch.setattr(ledger_retention, "prune_cells", slow_prune)
    with Ledger(path, keep_days=1) as ledger:
        assert pruning.wait(5)
        started = time.monotonic()
        ledger.record_cell("s1", cell("during", 0), via="auto")
        waited = time.monotonic() - started
        release.set()
        assert ledger.flush(5)
    assert waited < 0.5  # CELL_WAIT_S, not the length of the delete
    assert set(threads) == {"carbon-magic-ledger-writer"}
    assert [r["name"] for r in read_cells(path)] == ["during"]


def test_retention_stops_when_unset(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path, keep_days=30) as ledger:
        open_session(ledger)
        ledger.set_keep_days(None)
        ledger.record_cell("s1", cell("old", 40), via="auto")
        ledger.flush()
        time.sleep(0.3)
    assert [r["name"] for r in read_cells(path)] == ["old"]


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), 40000, "7", True])
def test_bad_retention_times_are_refused_and_change_nothing(tmp_path, bad):
    path = tmp_path / "ledger.sqlite3"
    with pytest.raises(ValueError, match=r"above 0 and up to 36500"):
        Ledger(path, keep_days=bad)
    assert not path.exists()
    with Ledger(path, keep_days=1000) as ledger:
        with pytest.raises(ValueError, match=r"above 0 and up to 36500"):
            ledger.set_keep_days(bad)
        assert ledger.keep_s == 1000 * DAY_S


def test_the_server_counts_follow_removed_cells(tmp_path):
    from carbon_magic.server.reader import LedgerReader

    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", cell("old", 10), via="auto")
        ledger.record_cell("s1", cell("now", 0), via="auto")
    reader = LedgerReader(path)
    try:
        assert reader.kernel("k1").n_cells == 2
        with Ledger(path, keep_days=5):
            wait_until(lambda: count(path, "cells") == 1)
        assert reader.kernel("k1").n_cells == 1
    finally:
        reader.close()


# --- the setting -----------------------------------------------------------------------


def test_the_setting_keeps_everything_by_default_and_reads_the_environment():
    assert Settings({}).ledger_keep_days is None
    assert Settings({"CARBON_MAGIC_LEDGER_KEEP_DAYS": "30"}).ledger_keep_days == 30.0
    assert parse_setting("ledger_keep_days", "auto") is None
    assert parse_setting("ledger_keep_days", 0.5) == 0.5


@pytest.mark.parametrize("bad", ["0", "-3", "nan", "inf", "forever", "40000"])
def test_bad_setting_values_name_the_range_and_change_nothing(bad):
    with pytest.raises(ValueError, match=r"ledger_keep_days must be a number above 0 and up to"):
        parse_setting("ledger_keep_days", bad)
    with pytest.raises(ValueError, match="CARBON_MAGIC_LEDGER_KEEP_DAYS"):
        Settings({"CARBON_MAGIC_LEDGER_KEEP_DAYS": bad})
    settings = Settings({"CARBON_MAGIC_LEDGER_KEEP_DAYS": "10"})
    with pytest.raises(ValueError, match="above 0"):
        settings.update(ledger_keep_days=bad)
    assert settings.ledger_keep_days == 10.0


@pytest.mark.kernel
def test_a_kernel_applies_the_retention_setting_to_its_ledger(tmp_path):
    from .kernels import Kernel

    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", cell("last month", 30), via="auto")
        ledger.record_cell("s1", cell("last week", 6), via="auto")
    kernel = Kernel(str(path), {"CARBON_MAGIC_LEDGER_KEEP_DAYS": "10"})
    try:
        kernel.execute("%load_ext carbon_magic")
        wait_until(lambda: "last month" not in [r["name"] for r in read_cells(path)])
        kernel.execute("%carbon config ledger_keep_days=3")
        wait_until(lambda: "last week" not in [r["name"] for r in read_cells(path)])
    finally:
        kernel.shutdown()
