"""Budgets beyond one cell: a cap per notebook and a cap per local calendar day.

Both caps are spent by every recorded cell (automatic and ``%%carbon`` ones) of every
session on the same ledger: the kernels and scripts of this user. What other sessions
spent is read from the ledger (at most every ``REFRESH_S`` seconds, on the tracker's
thread, never on the cell's path); what this session recorded is kept in memory, so a
cell just recorded counts before its row is committed. A restart keeps the spent amount:
it is in the ledger.

Units: grams CO2e (operational, as a cell budget counts) and facility kWh; times are UTC
epoch seconds; the day is the local calendar day of the process (the ledger's user).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from carbon_magic.engine.measurement import Measurement
from carbon_magic.kernel.budget import (
    PREDICT_MIN_ELAPSED_S,
    PREDICT_MIN_FRACTION,
    Budget,
    parse_budget,
)
from carbon_magic.kernel.interrupt import BudgetStop
from carbon_magic.kernel.prediction import Prediction
from carbon_magic.ledger.sql import query
from carbon_magic.settings import SettingLookup

SCOPES = ("day", "notebook")
ON_EXCEED = ("warn", "stop")
REFRESH_S = 10.0  # how stale the other sessions' spending may get while a cell runs
# A cap that is already spent stops a new cell once it has run this long, so a notebook
# stays usable for quick cells (printing a variable, a plot of results already there).
STOP_GRACE_S = 0.5


def local_day(now_s: float) -> tuple[float, float, str]:
    """The local calendar day around ``now_s``: (start, end) as UTC epoch seconds and
    its ISO date, e.g. ``2026-12-07``. Follows the process's time zone (``TZ``), DST
    days included (23 or 25 hours)."""
    local = time.localtime(now_s)
    start = time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))
    following = time.localtime(start + 36 * 3600)
    end = time.mktime((following.tm_year, following.tm_mon, following.tm_mday, 0, 0, 0, 0, 0, -1))
    return start, end, time.strftime("%Y-%m-%d", local)


@dataclass
class Spent:
    """Spent amount: grams CO2e (operational) and facility kWh."""

    grams: float = 0.0
    kwh: float = 0.0

    def plus(self, grams: float, kwh: float) -> Spent:
        """A new amount with ``grams`` and ``kwh`` added."""
        return Spent(self.grams + grams, self.kwh + kwh)

    def of(self, budget: Budget) -> float:
        """The amount in the budget's own quantity (grams or kWh)."""
        return self.grams if budget.grams is not None else self.kwh


@dataclass(frozen=True)
class ScopeState:
    """One cap now: what it allows, what is spent, what is left (same quantity)."""

    scope: str  # day | notebook
    budget: Budget
    spent: float  # grams CO2e or facility kWh, as the budget
    on_exceed: str  # warn | stop

    @property
    def limit(self) -> float:
        """The cap in grams CO2e or kWh."""
        return self.budget.grams if self.budget.grams is not None else self.budget.kwh or 0.0

    @property
    def fraction(self) -> float:
        """Share of the cap spent (1.0 = all of it)."""
        return self.spent / self.limit if self.limit > 0 else float("inf")

    @property
    def remaining(self) -> float:
        """What is left before the cap, never below 0."""
        return max(0.0, self.limit - self.spent)

    def as_json(self) -> dict[str, Any]:
        """The state for ``%carbon status --json`` and the server."""
        unit = "g" if self.budget.grams is not None else "kWh"
        return {
            "scope": self.scope,
            "budget": self.budget.text,
            "limit": self.limit,
            "spent": self.spent,
            "remaining": self.remaining,
            "fraction": self.fraction,
            "unit": unit,
            "on_exceed": self.on_exceed,
        }

    def spent_text(self) -> str:
        """E.g. ``day budget 50g: 12 g CO2e spent (25%)``."""
        spent = (
            Budget("", grams=self.spent)
            if self.budget.grams is not None
            else Budget("", kwh=self.spent)
        ).describe()
        return f"{self.scope} budget {self.budget.text}: {spent} spent ({self.fraction:.0%})"

    def describe(self) -> str:
        """One line, e.g. ``day budget 50g: 12 g CO2e spent (25%), on exceed: warn``."""
        return f"{self.spent_text()}, on exceed: {self.on_exceed}"


def spent_in_ledger(
    path: str,
    *,
    day: tuple[float, float],
    notebook_path: str | None,
    exclude_session: str | None,
) -> dict[str, Spent]:
    """What the ledger's cells spent in the day ``[start, end)`` (by the time they ended)
    and in the notebook ``notebook_path`` (all time), leaving out one session (this one,
    counted in memory). A missing ledger has spent nothing."""
    if not os.path.isfile(path):
        return {"day": Spent(), "notebook": Spent()}
    rows = query(
        path,
        """SELECT
             COALESCE(SUM(CASE WHEN c.ended_at >= ? AND c.ended_at < ? THEN c.emissions_g END), 0)
               AS day_g,
             COALESCE(SUM(CASE WHEN c.ended_at >= ? AND c.ended_at < ? THEN c.energy_kwh END), 0)
               AS day_kwh,
             COALESCE(SUM(CASE WHEN s.notebook_path = ? THEN c.emissions_g END), 0) AS nb_g,
             COALESCE(SUM(CASE WHEN s.notebook_path = ? THEN c.energy_kwh END), 0) AS nb_kwh
           FROM cells c JOIN sessions s ON s.id = c.session_id
           WHERE s.session_uuid IS NOT ?
             AND ((c.ended_at >= ? AND c.ended_at < ?) OR s.notebook_path = ?)""",
        (*day, *day, notebook_path, notebook_path, exclude_session, *day, notebook_path),
    )
    row = rows[0] if rows else {}
    return {
        "day": Spent(float(row.get("day_g") or 0.0), float(row.get("day_kwh") or 0.0)),
        "notebook": Spent(float(row.get("nb_g") or 0.0), float(row.get("nb_kwh") or 0.0)),
    }


@dataclass
class _Watch:
    """The cell being watched: its window's spending so far and the stop armed for it."""

    started_at: float  # monotonic seconds
    stop: BudgetStop | None
    fired_scope: str | None = None
    crossed: dict[str, ScopeState] = field(default_factory=dict)  # latest state over a cap


class ScopeBudgets:
    """The day and notebook caps of one session: spending, warnings and stops.

    ``settings`` gives ``budget_day``, ``budget_notebook`` and
    ``budget_scope_on_exceed``; ``ledger_path`` the ledger read for other sessions'
    spending (None: no ledger); ``clock`` the wall clock (UTC epoch seconds).
    """

    def __init__(
        self,
        settings: SettingLookup,
        ledger_path: Callable[[], str | None],
        notebook_path: str | None,
        session_uuid: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.ledger_path = ledger_path
        self.notebook_path = notebook_path
        self.session_uuid = session_uuid
        self.clock = clock
        self._lock = threading.Lock()
        self._others: dict[str, Spent] = {}
        self._others_key: tuple[str, str | None] | None = None  # (day, ledger) read for
        self._others_read_at = -float("inf")  # monotonic seconds
        self._own_day: dict[str, Spent] = {}  # this session's spending per local day
        self._own_notebook = Spent()
        self._warned: set[tuple[str, str]] = set()  # (scope, day) warned about
        self._watch: _Watch | None = None

    # ------------------------------------------------------------------ caps

    def caps(self) -> dict[str, Budget]:
        """The caps set now, by scope."""
        caps: dict[str, Budget] = {}
        for scope in SCOPES:
            text = self.settings.get(f"budget_{scope}")
            if scope == "notebook" and not self.notebook_path:
                continue  # no notebook path (a script, a console): nothing to cap
            if text is not None:
                caps[scope] = parse_budget(text)
        return caps

    @property
    def on_exceed(self) -> str:
        """``warn`` or ``stop``."""
        return str(self.settings.get("budget_scope_on_exceed"))

    def states(self, current: Measurement | None = None, refresh: bool = False) -> list[ScopeState]:
        """Every cap with what is spent on it, the running cell's ``current`` figures
        included. ``refresh`` reads the other sessions' spending from the ledger now."""
        caps = self.caps()
        if not caps:
            return []
        spent = self._spent(current, refresh)
        return [
            ScopeState(scope, budget, spent[scope].of(budget), self.on_exceed)
            for scope, budget in caps.items()
        ]

    def _spent(self, current: Measurement | None, refresh: bool) -> dict[str, Spent]:
        now = self.clock()
        start, end, day = local_day(now)
        others = self._others_for(day, (start, end), refresh)
        with self._lock:
            own_day = self._own_day.get(day, Spent())
            own_notebook = self._own_notebook
        extra = (current.emissions_g, current.energy_kwh) if current is not None else (0.0, 0.0)
        return {
            "day": others.get("day", Spent()).plus(own_day.grams, own_day.kwh).plus(*extra),
            "notebook": others.get("notebook", Spent())
            .plus(own_notebook.grams, own_notebook.kwh)
            .plus(*extra),
        }

    def _others_for(self, day: str, bounds: tuple[float, float], refresh: bool) -> dict[str, Spent]:
        path = self.ledger_path()
        key = (day, path)
        fresh = time.monotonic() - self._others_read_at < REFRESH_S
        if key == self._others_key and fresh and not refresh:
            return self._others
        others: dict[str, Spent] = {}
        if path is not None:
            try:
                others = spent_in_ledger(
                    path,
                    day=bounds,
                    notebook_path=self.notebook_path,
                    exclude_session=self.session_uuid,
                )
            except Exception:
                others = self._others if key == self._others_key else {}
        self._others, self._others_key = others, key
        self._others_read_at = time.monotonic()
        return others

    # ------------------------------------------------------------ recording

    def recorded(self, m: Measurement) -> None:
        """A cell of this session was recorded: it counts on the day it ended."""
        ended = m.ended_at.timestamp() if m.ended_at is not None else self.clock()
        day = local_day(ended)[2]
        with self._lock:
            self._own_day[day] = self._own_day.get(day, Spent()).plus(m.emissions_g, m.energy_kwh)
            self._own_notebook = self._own_notebook.plus(m.emissions_g, m.energy_kwh)

    # ------------------------------------------------------------- watching

    def watch(self) -> None:
        """A recorded cell starts (main thread, before its code): arm a stop when a cap
        stops cells. Reads the other sessions' spending when it is stale."""
        stop = None
        if self.on_exceed == "stop" and self.caps():
            stop = BudgetStop()
            stop.arm()
        self._watch = _Watch(time.monotonic(), stop)

    def on_tick(self, current: Measurement, prediction: Prediction | None = None) -> None:
        """Tracker thread, while the watched cell runs: mark the caps the cell crossed
        (or, given its ``prediction``, will cross: the central predicted total, once it
        has as much to go on as a cell budget's prediction) and stop it when caps stop
        cells."""
        watch = self._watch
        if watch is None:
            return
        over = [s for s in self.states(current) if s.fraction > 1.0]
        if (
            not over
            and prediction is not None
            and (
                prediction.fraction >= PREDICT_MIN_FRACTION
                or prediction.elapsed_s >= PREDICT_MIN_ELAPSED_S
            )
        ):
            total = Measurement(
                "prediction", emissions_g=prediction.emissions_g, energy_kwh=prediction.energy_kwh
            )
            over = [s for s in self.states(total) if s.fraction > 1.0]
        day = local_day(self.clock())[2]
        for state in over:
            if (state.scope, day) not in self._warned:
                watch.crossed[state.scope] = state
        if not over or watch.stop is None or watch.stop.fired:
            return
        if time.monotonic() - watch.started_at < STOP_GRACE_S:
            return
        watch.fired_scope = over[0].scope
        watch.stop.message = stop_message(over[0])
        watch.stop.fire()

    def unwatch(self) -> ScopeOutcome:
        """The watched cell's code is done (main thread): disarm, and say which cap
        stopped it, with the line it shows, and the warning lines to show in it (once per
        cap per day)."""
        watch, self._watch = self._watch, None
        if watch is None:
            return ScopeOutcome()
        if watch.stop is not None:
            watch.stop.disarm()
        day = local_day(self.clock())[2]
        warnings = []
        for scope, state in watch.crossed.items():
            if (scope, day) in self._warned:
                continue
            self._warned.add((scope, day))
            if scope != watch.fired_scope:
                warnings.append(f"carbon {state.spent_text()}; exceeded")
        if watch.stop is not None and watch.stop.fired and watch.fired_scope is not None:
            return ScopeOutcome(watch.fired_scope, watch.stop.message, warnings)
        return ScopeOutcome(None, None, warnings)


@dataclass(frozen=True)
class ScopeOutcome:
    """What the caps did to a cell: the scope that stopped it (None: none), the one
    line the stop shows, and warning lines for caps it crossed."""

    stopped_by: str | None = None
    message: str | None = None
    warnings: list[str] = field(default_factory=list)


def stop_message(state: ScopeState) -> str:
    """The one line a cell stopped by a cap shows."""
    return (
        f"carbon {state.scope} budget {state.budget.text} spent; cell stopped "
        f"(raise it with %carbon config budget_{state.scope}=..., or set it to none)"
    )


def budget_lines(described: list[str]) -> list[str]:
    """The notebook and day caps, one line each, or a line saying none is set."""
    if not described:
        return ["budgets: no notebook or day cap (settings budget_notebook, budget_day)"]
    return ["budgets:", *(f"  {line}" for line in described)]
