"""Live grid intensity as the tracker and the magics use it (fake APIs on 127.0.0.1)."""

import time

import pytest

from carbon_magic import ledger as ledger_module
from carbon_magic.engine.tracker import Tracker
from carbon_magic.settings import Settings

from .fake_grid_apis import FakeUKGrid
from .kernels import WAIT_FOR_REPORTS, Kernel


def test_cell_spanning_an_intensity_change_integrates_it():
    with FakeUKGrid(intensity=100.0, forecast=[100.0, 60.0]) as api:
        tracker = Tracker(Settings(environ={}))
        tracker.settings.update(
            intensity="ukgrid",
            ukgrid_url=api.url,
            mode="machine",
            cpu_idle_w=100,
            cpu_max_w=100,
            ram_w_per_gb=0,
            embodied=False,
            interval=60,
        )
        tracker.start()
        try:
            provider = tracker.intensity_provider
            assert provider.wait_ready(5)
            tracker.tick_now(slow=True)
            assert tracker.intensity().g_per_kwh == 100.0
            window = tracker.begin("cell")
            time.sleep(0.4)
            tracker.tick_now(slow=True)  # the first part of the cell at 100 g/kWh
            api.intensity = 300.0
            assert provider.refresh(wait_s=5)
            tracker.tick_now(slow=True)  # picks up 300 g/kWh for what follows
            time.sleep(0.4)
            m = tracker.end(window)
        finally:
            tracker.close()
    assert "UK Carbon Intensity" in m.intensity_source or "ukgrid" in m.intensity_source.lower()
    assert "varied 100–300 g/kWh" in m.intensity_source
    # Energy-weighted: about half the energy at 100, half at 300.
    assert 140 < m.intensity_g_per_kwh < 260
    expected = sum(m.energy_j.values()) / 3.6e6 * m.intensity_g_per_kwh
    assert m.emissions_g == pytest.approx(expected)


def test_switching_provider_by_setting_never_blocks():
    with FakeUKGrid(intensity=50.0) as api:
        api.delay_s = 3.0  # a slow API must not slow the setting change or a window
        tracker = Tracker(Settings(environ={}))
        tracker.settings.update(country="GB", interval=60)
        tracker.start()
        try:
            started = time.monotonic()
            tracker.settings.update(intensity="ukgrid", ukgrid_url=api.url)
            with tracker.measure("quick") as m:
                pass
            assert time.monotonic() - started < 1.0
            assert m.intensity_source.startswith("static")  # fallback meanwhile
        finally:
            tracker.close()


def test_a_live_value_is_taken_as_soon_as_it_arrives():
    # Ticks are a minute apart: only the arrival itself can bring the live value in.
    with FakeUKGrid(intensity=320.0) as api:
        api.delay_s = 1.0  # the first fetch ends after the tracker's first tick
        tracker = Tracker(Settings(environ={}))
        tracker.settings.update(
            country="FR", intensity="ukgrid", ukgrid_url=api.url, interval=60, embodied=False
        )
        tracker.start()
        try:
            waiting = tracker.begin("open while the first fetch runs")
            assert tracker.intensity_provider.wait_ready(10)
            time.sleep(0.3)
            spanning = tracker.end(waiting)
            with tracker.measure("after") as after:
                pass
        finally:
            tracker.close()
    # The window open across the arrival switched to it mid-way, not at a slow tick.
    assert "varied" in spanning.intensity_source and "320" in spanning.intensity_source
    # A window opened after the arrival starts at the live value.
    assert after.intensity_g_per_kwh == pytest.approx(320.0)
    assert "UK Carbon Intensity" in after.intensity_source


@pytest.mark.kernel
def test_first_cells_use_the_live_value_once_it_has_arrived(tmp_path):
    with FakeUKGrid(intensity=320.0) as api:
        api.delay_s = 1.0  # the first fetch ends after the tracker's first (slow) tick
        ledger = str(tmp_path / "ledger.sqlite3")
        kernel = Kernel(
            ledger, {"CARBON_MAGIC_INTENSITY": "ukgrid", "CARBON_MAGIC_UKGRID_URL": api.url}
        )
        try:
            kernel.execute("%load_ext carbon_magic")
            ready = kernel.execute(
                "import carbon_magic; carbon_magic.get_tracker().intensity_provider.wait_ready(10)"
            )
            assert ready.result == "True"
            kernel.execute("%%carbon --quiet --name first\nx = sum(range(10**6))")
            kernel.execute("y = sum(range(10**6))")
        finally:
            kernel.shutdown()
    rows = {row["source"]: row for row in ledger_module.read_cells(ledger)}
    for source in ("x = sum(range(10**6))", "y = sum(range(10**6))"):
        row = rows[source]
        assert row["intensity_g_per_kwh"] == pytest.approx(320.0), row["intensity_source"]
        assert "UK Carbon Intensity" in row["intensity_source"]


@pytest.mark.kernel
def test_status_and_report_show_live_source_and_hint(tmp_path):
    with FakeUKGrid(intensity=320.0, forecast=[320.0, 250.0, 120.0, 200.0]) as api:
        kernel = Kernel(
            str(tmp_path / "ledger.sqlite3"),
            {"CARBON_MAGIC_INTENSITY": "ukgrid", "CARBON_MAGIC_UKGRID_URL": api.url},
        )
        try:
            kernel.execute("%load_ext carbon_magic")
            kernel.execute(
                "import carbon_magic; carbon_magic.get_tracker().intensity_provider.refresh(wait_s=5)"
            )
            kernel.execute("x = sum(range(10**6))")
            status = kernel.execute("%carbon status").text
            report = kernel.execute(WAIT_FOR_REPORTS + "%carbon report").text
            kernel.execute("%carbon config intensity=electricitymaps")
            no_token = kernel.execute("%carbon status").text
        finally:
            kernel.shutdown()
    assert "ukgrid" in status.lower() or "UK Carbon Intensity" in status
    assert "grid now 320 g/kWh" in status and "120 g/kWh" in status
    assert "grid now 320 g/kWh" in report and "would have emitted" in report
    assert "token" in no_token.lower()
