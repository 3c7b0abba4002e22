"""The carbon-aware hint from the tracker's grid forecast, through heartbeats, the ledger
and a real Jupyter Server, to the kernel JSON the Carbon sidebar shows."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from carbon_magic import ledger as ledger_module
from carbon_magic.engine.tracker import SLOW_REFRESH_S, Tracker
from carbon_magic.grid.base import ForecastPoint, Intensity
from carbon_magic.kernel.beat_hint import HintCache, tracker_hint
from carbon_magic.kernel.recorder import Recorder
from carbon_magic.ledger import Ledger
from carbon_magic.server import reader as reader_module
from carbon_magic.server.reader import LedgerReader
from carbon_magic.settings import Settings
from tests import test_server as server_tests
from tests.test_server import API, LedgerBuilder, get_json, make_older_ledger, new_kernel_id

from .fake_grid_apis import FakeUKGrid

# The server fixtures of test_server: a ledger written by the package, served by a real
# Jupyter Server with the extension.
ledger_path = server_tests.ledger_path
builder = server_tests.builder
carbon_config = server_tests.carbon_config
jp_server_config = server_tests.jp_server_config

HINT = "grid now 320 g/kWh; lowest in the next 24 h ≈ 120 g/kWh at 14:00 (−62 %)"


def live_tracker(ledger: Path, url: str) -> Tracker:
    """A started tracker on the UK grid API at ``url`` with its forecast fetched."""
    tracker = Tracker(Settings(environ={}))
    tracker.settings.update(ledger=str(ledger), intensity="ukgrid", ukgrid_url=url, interval=60)
    tracker.start()
    provider = tracker.intensity_provider
    assert provider is not None and provider.wait_ready(5)
    assert provider.refresh(wait_s=5) and provider.forecast()
    tracker.tick_now(slow=True)  # the tracker takes the live value
    return tracker


def beat_with_hint(
    builder: LedgerBuilder, session_uuid: str, at: float, hint: str | None, state="running"
) -> None:
    builder.ledger.heartbeat(
        session_uuid,
        at=at,
        watts={"cpu": 10.0, "gpu": 0.0, "ram": 1.0},
        energy_kwh=0.001,
        emissions_g=0.3,
        emissions_range_g=(0.2, 0.4),
        embodied_g=0.0,
        intensity_g_per_kwh=320.0,
        intensity_source="UK Carbon Intensity API",
        tracker_state=state,
        running_cell=None,
        running_cell_started_at=None,
        hint=hint,
    )


# --- recorder → ledger → server ---------------------------------------------------------


async def test_a_forecast_hint_reaches_the_kernel_json(
    jp_fetch, jp_serverapp, builder, monkeypatch
):
    kernel_id = new_kernel_id()
    monkeypatch.setattr(jp_serverapp.kernel_manager, "list_kernel_ids", lambda: [kernel_id])
    with FakeUKGrid(intensity=320.0, forecast=[320.0, 250.0, 120.0, 200.0]) as api:
        tracker = live_tracker(builder.path, api.url)
        recorder = Recorder(tracker, kernel_id=kernel_id, notebook_path="grid.ipynb")
        try:
            expected = tracker_hint(tracker)
            assert expected is not None and "120 g/kWh" in expected
            recorder.write_heartbeat()
            assert recorder.ledger is not None and recorder.ledger.flush(5)
            row = ledger_module.latest_heartbeat(builder.path, kernel_id)
            assert row is not None and row["hint"] == expected

            data = await get_json(jp_fetch, *API, "kernels", kernel_id)
            assert data["live"] is True
            assert data["hint"] == {"text": expected}
        finally:
            recorder.end_session(5)
            tracker.close()
    # The session ended: its hint is not the grid of now.
    data = await get_json(jp_fetch, *API, "kernels", kernel_id)
    assert data["tracker_state"] == "stopped" and data["hint"] is None


async def test_no_hint_without_a_forecast(jp_fetch, jp_serverapp, builder, monkeypatch):
    kernel_id = new_kernel_id()
    monkeypatch.setattr(jp_serverapp.kernel_manager, "list_kernel_ids", lambda: [kernel_id])
    tracker = Tracker(Settings(environ={}))
    tracker.settings.update(ledger=str(builder.path), country="FR", interval=60)
    tracker.start()
    recorder = Recorder(tracker, kernel_id=kernel_id)
    try:
        recorder.write_heartbeat()  # a static table has no forecast
        assert recorder.ledger is not None and recorder.ledger.flush(5)
        data = await get_json(jp_fetch, *API, "kernels", kernel_id)
    finally:
        recorder.end_session(5)
        tracker.close()
    assert data["live"] is True and data["hint"] is None
    row = ledger_module.latest_heartbeat(builder.path, kernel_id)
    assert row is not None and row["hint"] is None


async def test_only_a_live_sessions_latest_hint_is_shown(
    jp_fetch, jp_serverapp, builder, monkeypatch
):
    monkeypatch.setattr(
        jp_serverapp.kernel_manager, "list_kernel_ids", lambda: list(builder.kernel_ids)
    )
    now = time.time()
    live, stopped = new_kernel_id(), new_kernel_id()
    session = builder.session(live, started_at=now - 60)
    beat_with_hint(builder, session, now - 20, "an older hint")
    beat_with_hint(builder, session, now - 1, f"  {HINT}\n")
    other = builder.session(stopped, started_at=now - 60)
    beat_with_hint(builder, other, now - 1, HINT, state="stopped")
    data = await get_json(jp_fetch, *API, "kernels", live)
    assert data["hint"] == {"text": HINT}
    assert (await get_json(jp_fetch, *API, "kernels", stopped))["hint"] is None


# --- old ledgers, cheap queries --------------------------------------------------------


def test_a_ledger_from_before_hints_reads_null_and_then_migrates(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    kernel_id = new_kernel_id()
    now = time.time()
    old = LedgerBuilder(path)
    session = old.session(kernel_id, started_at=now - 60)
    beat_with_hint(old, session, now - 2, None)
    old.ledger.close()
    # Make it a version 3 file, as the carbon_magic before hints wrote it.
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE heartbeats DROP COLUMN next_beat_s")  # version 5
    conn.close()
    make_older_ledger(path, "hint", version=3)
    reader = LedgerReader(path)
    try:
        figures = reader.kernel(kernel_id)
        assert figures is not None and figures.heartbeat is not None
        assert figures.heartbeat.hint is None and figures.heartbeat.at == pytest.approx(now - 2)
        (listed,) = reader.snapshot(now, now - 3600).sessions
        assert listed.heartbeat is not None and listed.heartbeat.hint is None
        # A kernel of this version opens the file: the column is added, old rows kept.
        new = LedgerBuilder(path)
        beat_with_hint(new, session, now - 1, HINT)
        new.ledger.close()
        figures = reader.kernel(kernel_id)
        assert figures is not None and figures.heartbeat is not None
        assert figures.heartbeat.hint == HINT
    finally:
        reader.close()
    with sqlite3.connect(path) as conn:
        hints = conn.execute("SELECT hint FROM heartbeats ORDER BY at").fetchall()
    conn.close()
    assert hints == [(None,), (HINT,)]


@pytest.mark.parametrize(
    "missing", [{"hint"}, {"next_beat_s"}, {"hint", "prediction_json", "next_beat_s"}]
)
def test_queries_of_older_ledgers_never_scan_heartbeats(builder, missing):
    builder.session(new_kernel_id(), started_at=time.time())
    builder.ledger.close()
    connection = sqlite3.connect(builder.path)
    try:
        connection.execute("ANALYZE")
        for sql in reader_module.queries_for_older_ledgers(frozenset(missing)):
            assert all(f"NULL AS h_{name}" in sql for name in missing)
            params = [None] * sql.count("?")
            plan = [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, params)]
            for step in plan:
                assert not step.startswith(("SCAN heartbeats", "SCAN h")), plan
    finally:
        connection.close()


# --- computed seldom, never raising ------------------------------------------------------


class CountingProvider:
    """An intensity provider whose forecast counts its readings (or raises)."""

    name = "counting"

    def __init__(self, forecast: list[ForecastPoint], error: Exception | None = None) -> None:
        self.points = forecast
        self.error = error
        self.reads = 0

    def forecast(self) -> list[ForecastPoint]:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return list(self.points)


class GridTracker:
    """The two things a hint needs from a tracker: its provider and the intensity now."""

    def __init__(self, provider: CountingProvider | None, g_per_kwh: float = 300.0) -> None:
        self.intensity_provider = provider
        self.g_per_kwh = g_per_kwh

    def intensity(self) -> Intensity:
        return Intensity(
            g_per_kwh=self.g_per_kwh,
            provider="counting",
            zone="GB",
            source="test grid",
            relative_uncertainty=0.1,
        )


def points(*values: float) -> list[ForecastPoint]:
    start = datetime.now(timezone.utc) + timedelta(minutes=30)
    return [ForecastPoint(start + timedelta(hours=i), v) for i, v in enumerate(values)]


def test_the_hint_is_computed_once_per_refresh_period():
    provider = CountingProvider(points(300.0, 100.0))
    clock = [1000.0]
    cache = HintCache(GridTracker(provider), clock=lambda: clock[0])  # type: ignore[arg-type]
    assert cache.refresh_s == SLOW_REFRESH_S
    first = cache.text()
    assert first is not None and "100 g/kWh" in first
    provider.points = points(300.0, 50.0)
    for _ in range(50):  # ticks within the period: the forecast is not read again
        clock[0] += SLOW_REFRESH_S / 100
        assert cache.text() == first
    assert provider.reads == 1
    clock[0] += SLOW_REFRESH_S / 2 + 0.01  # the period is over
    later = cache.text()
    assert provider.reads == 2 and later is not None and "50 g/kWh" in later


def test_a_new_provider_is_read_at_once():
    tracker = GridTracker(CountingProvider(points(300.0, 100.0)))
    cache = HintCache(tracker, clock=lambda: 0.0)  # type: ignore[arg-type]
    assert cache.text() is not None
    tracker.intensity_provider = CountingProvider([])  # e.g. a static table
    assert cache.text() is None
    tracker.intensity_provider = None  # not started
    assert cache.text() is None


def test_a_new_intensity_is_a_new_hint_at_once():
    provider = CountingProvider(points(300.0, 100.0))
    tracker = GridTracker(provider, g_per_kwh=300.0)
    cache = HintCache(tracker, clock=lambda: 0.0)  # type: ignore[arg-type]
    first = cache.text()
    assert first is not None and "grid now 300 g/kWh" in first
    assert cache.text() == first and provider.reads == 1
    tracker.g_per_kwh = 80.0  # the provider fetched anew
    later = cache.text()
    assert provider.reads == 2 and later is not None and "grid now 80 g/kWh" in later


def test_a_live_values_ageing_is_not_a_new_hint():
    with FakeUKGrid(intensity=320.0, forecast=[320.0, 120.0]) as api:
        tracker = Tracker(Settings(environ={}))
        tracker.settings.update(intensity="ukgrid", ukgrid_url=api.url, interval=60)
        tracker.start()
        try:
            provider = tracker.intensity_provider
            assert provider is not None and provider.refresh(wait_s=5)
            reads = []
            real_forecast = provider.forecast
            provider.forecast = lambda: reads.append(1) or real_forecast()  # type: ignore[method-assign]
            cache = HintCache(tracker, clock=lambda: 0.0)
            first = cache.text()
            assert first is not None and "120 g/kWh" in first
            before = tracker.intensity()
            time.sleep(0.05)  # the live value's age and uncertainty grow meanwhile
            assert tracker.intensity().relative_uncertainty >= before.relative_uncertainty
            assert cache.text() == first and cache.text() == first
            assert len(reads) == 1
            api.intensity = 150.0  # a new fetch, a new value: a new hint at once
            assert provider.refresh(wait_s=5)
            later = cache.text()
            assert len(reads) == 2 and later is not None and "grid now 150 g/kWh" in later
        finally:
            tracker.close()


def test_a_failing_forecast_is_no_hint_and_no_exception():
    failing = CountingProvider(points(300.0, 100.0), error=OSError("socket closed"))
    cache = HintCache(GridTracker(failing), refresh_s=0.0)  # type: ignore[arg-type]
    assert cache.text() is None
    failing.error = None
    assert cache.text() is not None  # recovered at the next period


def test_a_recorder_heartbeat_survives_a_broken_tracker_provider(tmp_path):
    tracker = Tracker(Settings(environ={}))
    tracker.settings.update(ledger=str(tmp_path / "l.sqlite3"), country="FR", interval=60)
    notices: list[str] = []
    recorder = Recorder(tracker, kernel_id="k1", notice=notices.append)
    tracker.start()
    try:
        tracker.intensity_provider.forecast = lambda: 1 / 0  # type: ignore[union-attr]
        recorder.write_heartbeat()
        assert recorder.ledger is not None and recorder.ledger.flush(5)
    finally:
        recorder.end_session(5)
        tracker.close()
    assert notices == []
    row = ledger_module.latest_heartbeat(tmp_path / "l.sqlite3", "k1")
    assert row is not None and row["hint"] is None


def test_a_journal_from_before_hints_is_imported_with_null(tmp_path):
    from carbon_magic.ledger.journal import write_journal
    from carbon_magic.ledger.rows import heartbeat_row, placeholder_session

    path = tmp_path / "ledger.sqlite3"
    session = placeholder_session("s-old")
    session["kernel_id"] = "k-old"
    beat = heartbeat_row(
        at=time.time(),
        watts={"cpu": 5.0},
        energy_kwh=0.001,
        emissions_g=0.2,
        emissions_range_g=(0.1, 0.3),
        embodied_g=0.0,
        intensity_g_per_kwh=56.0,
        intensity_source="static",
        tracker_state="running",
        running_cell=None,
        running_cell_started_at=None,
    )
    del beat["hint"], beat["prediction_json"]  # as a version 1 kernel journalled it
    write_journal(path, [{"row": session, "opened": True, "changes": {}}], [], [("s-old", beat)])
    with Ledger(path) as ledger:
        assert ledger.flush(5)
    assert not list(tmp_path.glob("*.pending-*.json"))
    row = ledger_module.latest_heartbeat(path, "k-old")
    assert row is not None and row["cpu_w"] == 5.0 and row["hint"] is None


def test_ledger_schema_has_the_hint_column(tmp_path):
    path = tmp_path / "fresh.sqlite3"
    with Ledger(path):
        pass
    with sqlite3.connect(path) as conn:
        names = {row[1] for row in conn.execute("PRAGMA table_info(heartbeats)")}
    conn.close()
    assert "hint" in names
