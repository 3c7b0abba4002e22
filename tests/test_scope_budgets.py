"""Notebook and day caps: the local day, spending read from a real ledger file, warn
once, stop, the settings' validation, the CLI status and the server's kernel JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from carbon_magic.engine.measurement import Measurement
from carbon_magic.kernel.interrupt import BudgetExceeded
from carbon_magic.kernel.scope_budgets import ScopeBudgets, local_day, spent_in_ledger
from carbon_magic.ledger import Ledger
from carbon_magic.server.budgets import KernelBudgets
from carbon_magic.settings import Settings, parse_setting
from tests import test_server as server_tests
from tests.test_server import API, LedgerBuilder, get_json, new_kernel_id

ledger_path = server_tests.ledger_path
builder = server_tests.builder
carbon_config = server_tests.carbon_config
jp_server_config = server_tests.jp_server_config
served = server_tests.served

# 2026-03-29 is the day Paris moves to summer time: 23 local hours.
PARIS = "Europe/Paris"


@pytest.fixture
def paris(monkeypatch):
    monkeypatch.setenv("TZ", PARIS)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_local_day_follows_the_time_zone_and_dst(paris):
    noon = datetime(2026, 3, 29, 12, tzinfo=timezone.utc).timestamp()
    start, end, day = local_day(noon)
    assert day == "2026-03-29"
    assert start == datetime(2026, 3, 28, 23, tzinfo=timezone.utc).timestamp()  # 00:00 CET
    assert end - start == 23 * 3600
    # 23:30 UTC on the 29th is already the 30th in Paris (CEST, UTC+2).
    late = datetime(2026, 3, 29, 23, 30, tzinfo=timezone.utc).timestamp()
    assert local_day(late)[2] == "2026-03-30"


def _cell(ended_at: float, grams: float, kwh: float) -> Measurement:
    return Measurement(
        "",
        duration_s=1.0,
        energy_kwh=kwh,
        energy_range_kwh=(kwh, kwh),
        emissions_g=grams,
        emissions_range_g=(grams, grams),
        started_at=datetime.fromtimestamp(ended_at - 1, tz=timezone.utc),
        ended_at=datetime.fromtimestamp(ended_at, tz=timezone.utc),
    )


def _session(ledger: Ledger, notebook: str | None) -> str:
    builder = LedgerBuilder.__new__(LedgerBuilder)
    builder.ledger, builder.kernel_ids = ledger, []
    return builder.session(None, started_at=time.time() - 3 * 86400, notebook=notebook)


def test_spent_in_ledger_sums_the_day_and_the_notebook_across_sessions(tmp_path, paris):
    path = tmp_path / "ledger.sqlite3"
    now = datetime(2026, 3, 29, 12, tzinfo=timezone.utc).timestamp()
    yesterday = now - 86400
    with Ledger(path) as ledger:
        a1 = _session(ledger, "work/a.ipynb")
        a2 = _session(ledger, "work/a.ipynb")  # the same notebook after a restart
        b = _session(ledger, "work/b.ipynb")
        script = _session(ledger, None)
        ledger.record_cell(a1, _cell(yesterday, 5.0, 0.01), via="auto")
        ledger.record_cell(a1, _cell(now - 60, 1.0, 0.002), via="auto")
        ledger.record_cell(a2, _cell(now - 30, 2.0, 0.004), via="magic")
        ledger.record_cell(b, _cell(now - 10, 4.0, 0.008), via="auto")
        ledger.record_cell(script, _cell(now - 5, 8.0, 0.016), via="api")
        assert ledger.flush()
    start, end, _ = local_day(now)
    spent = spent_in_ledger(
        str(path), day=(start, end), notebook_path="work/a.ipynb", exclude_session=None
    )
    assert spent["day"].grams == pytest.approx(1 + 2 + 4 + 8)
    assert spent["day"].kwh == pytest.approx(0.002 + 0.004 + 0.008 + 0.016)
    assert spent["notebook"].grams == pytest.approx(5 + 1 + 2)
    # The session counted in memory is left out of what the ledger gives.
    without = spent_in_ledger(
        str(path), day=(start, end), notebook_path="work/a.ipynb", exclude_session=a2
    )
    assert without["notebook"].grams == pytest.approx(6.0)
    assert without["day"].grams == pytest.approx(13.0)


def test_a_missing_ledger_has_spent_nothing(tmp_path):
    spent = spent_in_ledger(
        str(tmp_path / "none.sqlite3"), day=(0, 1e12), notebook_path="x", exclude_session=None
    )
    assert spent["day"].grams == 0 and spent["notebook"].grams == 0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _caps(tmp_path, clock, **settings_values) -> ScopeBudgets:
    settings = Settings(environ={})
    settings.update(**settings_values)
    return ScopeBudgets(
        settings, lambda: str(tmp_path / "none.sqlite3"), "nb.ipynb", "me", clock=clock
    )


def test_warns_once_per_cap_per_day_and_again_the_next_day(tmp_path, paris):
    clock = FakeClock(datetime(2026, 5, 4, 21, 0, tzinfo=timezone.utc).timestamp())  # 23:00
    caps = _caps(tmp_path, clock, budget_day="1g")
    caps.watch()
    caps.on_tick(_cell(clock.now, 1.5, 0.0))
    outcome = caps.unwatch()
    assert outcome.stopped_by is None
    assert outcome.warnings == ["carbon day budget 1g: 1.5 g CO2e spent (150%); exceeded"]
    caps.recorded(_cell(clock.now, 1.5, 0.0))
    caps.watch()
    caps.on_tick(_cell(clock.now, 0.5, 0.0))
    assert caps.unwatch().warnings == []  # once per cap per day
    clock.now += 2 * 3600  # 01:00 the next local day: nothing spent yet
    assert caps.states()[0].spent == 0.0
    caps.watch()
    caps.on_tick(_cell(clock.now, 1.2, 0.0))
    assert len(caps.unwatch().warnings) == 1


def test_the_notebook_cap_needs_a_notebook(tmp_path):
    settings = Settings(environ={})
    settings.update(budget_notebook="1g", budget_day="2g")
    caps = ScopeBudgets(settings, lambda: None, None, "me")
    assert [s.scope for s in caps.states()] == ["day"]


def test_stop_fires_a_budget_exceeded_with_one_line(tmp_path):
    clock = FakeClock(time.time())
    caps = _caps(tmp_path, clock, budget_notebook="10J", budget_scope_on_exceed="stop")
    caps.recorded(_cell(clock.now, 0.0, 20 / 3.6e6))  # already over: 20 J of 10 J
    caps.watch()
    try:
        with pytest.raises(BudgetExceeded) as raised:
            time.sleep(0.6)  # past the grace a quick cell gets
            caps.on_tick(_cell(clock.now, 0.0, 1e-9))
            time.sleep(1)  # the SIGINT lands here
    finally:
        outcome = caps.unwatch()
    assert outcome.stopped_by == "notebook"
    assert raised.value._render_traceback_() == [
        "BudgetExceeded: carbon notebook budget 10J spent; cell stopped "
        "(raise it with %carbon config budget_notebook=..., or set it to none)"
    ]


def test_a_quick_cell_runs_even_when_a_cap_is_spent(tmp_path):
    clock = FakeClock(time.time())
    caps = _caps(tmp_path, clock, budget_day="1mg", budget_scope_on_exceed="stop")
    caps.recorded(_cell(clock.now, 1.0, 0.0))
    caps.watch()
    caps.on_tick(_cell(clock.now, 1e-9, 0.0))  # within the grace: no stop
    assert caps.unwatch().stopped_by is None


def test_predicted_total_over_a_cap_counts(tmp_path):
    from carbon_magic.kernel.prediction import Prediction

    clock = FakeClock(time.time())
    caps = _caps(tmp_path, clock, budget_day="1g")
    prediction = Prediction(0.5, 10.0, 10.0, (8.0, 12.0), 1.6, (1.2, 2.0), 0.0, (0, 0), 0.1, "tqdm")
    caps.watch()
    caps.on_tick(_cell(clock.now, 0.8, 0.0), prediction)
    assert len(caps.unwatch().warnings) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-5g", "above 0"),
        ("nan g", "expected a number with a unit"),
        ("5 apples", "expected a number with a unit"),
        ("5", "expected a number with a unit"),
    ],
)
def test_bad_caps_are_one_line_errors_and_change_nothing(value, expected):
    settings = Settings(environ={})
    settings.update(budget_day="5g")
    with pytest.raises(ValueError, match=expected) as raised:
        settings.update(budget_day=value)
    assert "\n" not in str(raised.value) and str(raised.value).startswith("budget_day")
    assert settings.get("budget_day") == "5g"
    with pytest.raises(ValueError, match="warn, stop"):
        parse_setting("budget_scope_on_exceed", "halt")


def test_environment_variables_set_the_caps():
    settings = Settings(
        environ={
            "CARBON_MAGIC_BUDGET_NOTEBOOK": "50g",
            "CARBON_MAGIC_BUDGET_DAY": "0.5kWh",
            "CARBON_MAGIC_BUDGET_ON_EXCEED": "stop",
        }
    )
    assert settings.get("budget_notebook") == "50g"
    assert settings.get("budget_day") == "0.5kWh"
    assert settings.get("budget_scope_on_exceed") == "stop"
    with pytest.raises(ValueError, match="CARBON_MAGIC_BUDGET_DAY"):
        Settings(environ={"CARBON_MAGIC_BUDGET_DAY": "-1g"})


def test_cli_status_lists_the_caps_with_the_ledger_spending(builder, ledger_path):
    now = time.time()
    session = builder.session(None, started_at=now - 60, notebook="nb.ipynb")
    builder.cell(session, started_at=now - 30, energy_kwh=0.001, emissions_g=3.0)
    assert builder.ledger.flush()
    env = {
        **os.environ,
        "CARBON_MAGIC_LEDGER": str(ledger_path),
        "CARBON_MAGIC_BUDGET_DAY": "12g",
        "CARBON_MAGIC_BUDGET_NOTEBOOK": "6g",
    }
    command = [sys.executable, "-m", "carbon_magic.cli", "status"]
    done = subprocess.run(
        [*command, "--notebook", "nb.ipynb"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "day budget 12g: 3 g CO2e spent (25%), on exceed: warn" in done.stdout
    assert "notebook budget 6g: 3 g CO2e spent (50%)" in done.stdout
    as_json = subprocess.run(
        [*command, "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    budgets = json.loads(as_json.stdout)["budgets"]
    assert [(b["scope"], b["remaining"]) for b in budgets] == [("day", pytest.approx(9.0))]


def test_kernel_budgets_read_the_kernels_own_caps(builder, ledger_path):
    now = time.time()
    capped = builder.session(
        None,
        started_at=now - 60,
        notebook="nb.ipynb",
        settings={"budget_day": "4g", "budget_notebook": "10g", "budget_scope_on_exceed": "stop"},
    )
    free = builder.session(None, started_at=now - 60, notebook="nb.ipynb")
    builder.cell(free, started_at=now - 30, energy_kwh=0.001, emissions_g=3.0)
    assert builder.ledger.flush()
    budgets = KernelBudgets(Path(ledger_path))
    states = {s["scope"]: s for s in budgets.states_json(capped, "nb.ipynb")}
    assert states["day"]["spent"] == pytest.approx(3.0) and states["day"][
        "remaining"
    ] == pytest.approx(1.0)
    assert states["notebook"]["fraction"] == pytest.approx(0.3)
    assert states["day"]["on_exceed"] == "stop" and states["day"]["unit"] == "g"
    assert budgets.states_json(free, "nb.ipynb") == []


async def test_the_kernel_document_carries_its_caps(jp_fetch, builder, served):
    now = time.time()
    kernel_id = new_kernel_id()
    session = builder.session(kernel_id, started_at=now - 60, settings={"budget_day": "2g"})
    builder.cell(session, started_at=now - 30, energy_kwh=0.001, emissions_g=0.5)

    data = await get_json(jp_fetch, *API, "kernels", kernel_id)

    assert data["budgets"] == [
        {
            "scope": "day",
            "budget": "2g",
            "limit": 2.0,
            "spent": pytest.approx(0.5),
            "remaining": pytest.approx(1.5),
            "fraction": pytest.approx(0.25),
            "unit": "g",
            "on_exceed": "warn",
        }
    ]
