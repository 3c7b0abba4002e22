"""One ``%%carbon`` cell's live side: the panel, the prediction and the budget, driven
from the tracker thread by ``LiveRun.on_tick``."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from typing import Any

from carbon_magic.engine.measurement import Measurement
from carbon_magic.engine.windows import LiveReading, Window
from carbon_magic.kernel.beat_hint import tracker_hint
from carbon_magic.kernel.budget import overshoot_note
from carbon_magic.kernel.cell_options import CellOptions
from carbon_magic.kernel.interrupt import STOPPED, BudgetStop
from carbon_magic.kernel.kernel_session import KernelSession
from carbon_magic.kernel.panel import Panel, panel_html, text_summary, window_power
from carbon_magic.kernel.prediction import CellForecast, Prediction

PREDICTED_STOP = "stopped by budget (predicted)"


class LiveRun:
    """Drives one ``%%carbon`` cell's panel and budget from the tracker thread."""

    def __init__(
        self,
        session: KernelSession,
        window: Window,
        options: CellOptions,
        panel: Panel,
        nested: bool = False,
    ) -> None:
        self.session = session
        self.window = window
        self.options = options
        self.budget = options.budget
        if self.budget is not None:
            counts = bool(session.tracker.settings.budget_remote)
            self.budget = dataclasses.replace(self.budget, count_remote=counts)
        self.panel = panel
        self.nested = nested
        self.names_outer = False  # nested in a cell recorded automatically: names that record
        self.exceeded = False
        self.stopped_at: float | None = None  # monotonic time the cell stopped
        self.stop = (
            BudgetStop() if self.budget is not None and options.on_exceed == "stop" else None
        )
        self.forecast = CellForecast(window.started_at.timestamp())
        self.cluster_edge: Any = None  # the cluster's counters at the cell's start
        self.remote_edge: int | None = None  # the cell's place in the remote call log
        self.predicted_over = False  # the predicted total's low end is over the budget
        self.predicted_on: Prediction | None = None  # the prediction that went over
        self.predicted_text = ""
        self.scope_stop_message: str | None = None  # the line a notebook or day cap stopped it with
        self._lock = threading.Lock()
        self.hint = tracker_hint(session.tracker)

    @property
    def stop_status(self) -> str:
        """The status of a cell this run's budget stopped."""
        return PREDICTED_STOP if self.predicted_over and not self.exceeded else STOPPED

    def stop_message(self) -> str:
        """What ``BudgetExceeded`` says when this run's budget stops the cell."""
        budget = self.budget.describe() if self.budget is not None else ""
        what = "predicted to be exceeded" if self.stop_status == PREDICTED_STOP else "exceeded"
        return f"carbon budget {budget} {what}; cell stopped"

    def _render(
        self, m: Measurement, state: str, prediction: Prediction | None = None
    ) -> tuple[str, str]:
        note = None
        budget_text = None
        used = None
        if self.budget is not None:
            used = self.budget.used_fraction(m)
            budget_text = (
                f"budget {self.budget.describe()} ({self.budget.scope()}): {used:.0%} used"
            )
            stopping = ": stopping the cell" if self.stop else ""
            if self.exceeded:
                note = "budget exceeded" + stopping
            elif self.predicted_over:
                note = "budget predicted to be exceeded" + stopping
        watts = self.session.tracker.live_watts()
        title = self.window.name
        line = prediction.panel_line() if prediction is not None else None
        return (
            panel_html(
                m,
                watts,
                state,
                budget_text,
                note,
                self.hint,
                title=title,
                prediction=line,
                power=window_power(
                    self.session.tracker.timeline, self.window.started_at.timestamp()
                ),
                budget_fraction=used,
                caps=self._caps(m, state),
            ),
            text_summary(m, note, title=title),
        )

    def _caps(self, m: Measurement, state: str) -> list[Any]:
        """The notebook and day caps with this cell so far; once the cell is recorded
        (its final state, unless nested in a cell recorded later) it is in them already.
        A fault only loses the caps line (reported once)."""
        try:
            counted = m if state == "running" or self.nested else None
            return list(self.session.scope_budgets.states(counted))
        except Exception as error:
            self.session.tracker.notice(f"notebook/day budgets unavailable: {error!r}")
            return []

    def show(self) -> None:
        """Show the panel as the cell starts."""
        m = self.session.tracker.peek(self.window)
        html_text, text = self._render(m, "running")
        self.panel.show(html_text)
        self.panel.last_text = text

    def on_tick(self, reading: LiveReading) -> None:
        """Tracker listener: predict, check the budget, update the panel. The figures
        include the cluster's part so far, so a budget also stops cluster work."""
        m = self.session.tracker.peek(self.window)
        m.remote = self.session.remote_reader.peek(self.remote_edge)
        self.session.cluster_reader.add_live(self.cluster_edge, m)
        prediction = self._predict(m)
        if self.budget is not None and self._over_budget(m, prediction):
            if self.stop is not None and not self.stop.fired:
                self.stop.fire(self.stop_message())  # not yet armed: tried again next tick
        if not self.nested:
            self._check_scope_budgets(m, prediction)
        self.panel.update(*self._render(m, "running", prediction))

    def _check_scope_budgets(self, m: Measurement, prediction: Prediction | None) -> None:
        """The notebook and day caps against this cell, with its prediction when
        ``--predict`` or ``budget_scope_predict`` asks; a fault is reported once."""
        try:
            settings = self.session.tracker.settings
            use_prediction = self.options.predict or settings.get("budget_scope_predict")
            self.session.scope_budgets.on_tick(m, prediction if use_prediction else None)
        except Exception as error:
            self.session.tracker.notice(f"notebook/day budget check failed: {error!r}")

    def _predict(self, m: Measurement) -> Prediction | None:
        """The cell's predicted total from its progress; a fault here only loses the
        prediction (reported once), never the panel or the budget."""
        try:
            return self.forecast.update(lambda: m)
        except Exception as error:
            self.session.tracker.notice(f"progress prediction failed: {error!r}")
            return None

    def _over_budget(self, m: Measurement, prediction: Prediction | None) -> bool:
        """Mark and report whether the budget is spent, or (``--predict``) predicted to
        be: the predicted total's low end is over it."""
        assert self.budget is not None
        if self.budget.exceeded(m):
            self.exceeded = True
            return True
        if (
            self.options.predict
            and not self.predicted_over
            and prediction is not None
            and self.budget.predicted_exceeded(prediction)
        ):
            self.predicted_over = True
            self.predicted_on = prediction
            self.predicted_text = self.budget.describe_prediction(prediction)
        return self.predicted_over

    def budget_record(self, m: Measurement) -> str | None:
        """The ledger's budget column: the budget, and how far over it the cell ran."""
        if self.budget is None:
            return None
        if not (self.exceeded or self.budget.exceeded(m)):
            return self.budget.text
        latency = None
        if self.stop is not None and self.stop.fired_at is not None:
            stopped_at = self.stopped_at or time.monotonic()
            latency = max(0.0, stopped_at - self.stop.fired_at)
        return overshoot_note(self.budget, m, latency)

    def finish(self, m: Measurement, status: str) -> None:
        """Freeze the panel with the final figures and status."""
        if self.budget is not None and self.budget.exceeded(m):
            self.exceeded = True
        # A cell stopped on its prediction keeps the prediction it was stopped on.
        last = self.predicted_on if status == PREDICTED_STOP else None
        html_text, text = self._render(m, status, last)
        self.panel.finish(html_text, text)
        if self.budget is None or self.stop is not None or not self.panel.use_widgets:
            return
        if self.exceeded:
            print(
                f"carbon budget {self.budget.describe()} ({self.budget.scope()}) exceeded: {text}",
                file=sys.stdout,
            )
        elif self.predicted_over:
            print(
                f"carbon budget {self.budget.describe()} predicted to be exceeded "
                f"({self.predicted_text}): {text}",
                file=sys.stdout,
            )
