"""Every cell recorded automatically: IPython's ``pre_run_cell`` and ``post_run_cell``
open and close a window for the user's cell, and the tracker's ticks follow its progress.

Faults here never break a user's cell: they are reported once and the cell runs on.
"""

from __future__ import annotations

from typing import Any

from carbon_magic.engine.windows import LiveReading, Window
from carbon_magic.kernel.cell_runner import CARBON_CELL, first_line
from carbon_magic.kernel.interrupt import STOPPED, status_of
from carbon_magic.kernel.kernel_session import KernelSession
from carbon_magic.kernel.prediction import CellForecast
from carbon_magic.kernel.running_cells import AutoRecord
from carbon_magic.vocabulary import Via


class CellEvents:
    """The cell events of one kernel session, registered with IPython and the tracker
    by ``magics.load``."""

    def __init__(self, session: KernelSession) -> None:
        self.session = session

    def pre_run_cell(self, info: Any) -> None:
        """IPython ``pre_run_cell``: open a window for the user's cell (never raises); a
        cell run by a running cell is part of it."""
        session = self.session
        try:
            raw = getattr(info, "raw_cell", "") or ""
            cell, stale = session.running_cells.started(info, bool(CARBON_CELL.match(raw)))
            for left in stale:
                self._close_auto(left.auto, None)
            if cell is not session.running_cells.outermost or cell.carbon:
                return
            if not session.auto or not session.tracker.running:
                return
            window = session.tracker.begin(first_line(raw))
            auto = AutoRecord(
                window,
                getattr(info, "cell_id", None),
                raw,
                CellForecast(window.started_at.timestamp()),
            )
            cell.auto = auto
            auto.cluster_edge = session.cluster_reader.start()
            session.recorder.set_running_cell(first_line(raw), auto.forecast)
            auto.remote_edge = session.remote_reader.start()
            session.scope_budgets.watch()
        except Exception as error:
            session.notice(f"cell recording failed: {error!r}")

    def post_run_cell(self, result: Any) -> None:
        """IPython ``post_run_cell``: close the window and record the cell (never raises)."""
        session = self.session
        try:
            ended = session.running_cells.ended(getattr(result, "info", None))
        except Exception as error:
            session.notice(f"cell recording failed: {error!r}")
            return
        for cell in ended:
            self._close_auto(cell.auto, result if cell is ended[-1] else None)
        if ended and ended[-1].claimed and result is not None and session.shell is not None:
            # The cell's only statement, the magic, returned: IPython counts that a success;
            # the cell's own error (in its result) says otherwise, as for a plain cell.
            session.shell.last_execution_succeeded = bool(getattr(result, "success", True))

    def _close_auto(self, auto: AutoRecord | None, result: Any) -> None:
        """Close an automatic record's window and record it (``result``: the cell's
        ``ExecutionResult``, None for a cell whose end IPython never announced)."""
        if auto is None:
            return
        session = self.session
        session.recorder.set_running_cell(None)
        caps = session.scope_budgets.unwatch()
        for line in caps.warnings:
            print(line)
        try:
            m = session.tracker.end(auto.window)
            session.cluster_reader.end(auto.cluster_edge, m)
            session.remote_reader.end(auto.remote_edge, m)
            m.name = ""  # auto-recorded cells have no name; reports show the first line
            m.execution_count = getattr(result, "execution_count", None)
            m.cell_id = auto.cell_id
            m.source = first_line(auto.source)
            m.status = _status_of(result)
            via: Via = "auto"
            budget = None
            if auto.magic is not None:  # a %%carbon inside names the record
                via, budget = "magic", auto.magic_budget
                m.name, m.source = auto.magic.name, auto.magic.source
                if auto.magic.status.startswith(STOPPED):
                    m.status = auto.magic.status
            if caps.stopped_by is not None and m.status.startswith(STOPPED):
                m.status = f"{STOPPED} ({caps.stopped_by})"
            session.record(m, via=via, budget=budget)
        except Exception as error:
            session.notice(f"cell recording failed: {error!r}")

    def on_tick(self, reading: LiveReading) -> None:
        """Tracker listener: follows the running cell's progress (``%%carbon`` cells
        follow their own) and heartbeats into the ledger every few seconds."""
        session = self.session
        outermost = session.running_cells.outermost
        cell = outermost.auto if outermost is not None else None
        if cell is not None:
            prediction = None
            try:
                current = session.tracker.peek(cell.window)
                prediction = cell.forecast.update(lambda: current)
            except Exception as error:  # only the prediction is lost, never the heartbeat
                session.tracker.notice(f"progress prediction failed: {error!r}")
            self._check_scope_budgets(cell.window, prediction)
        session.recorder.on_tick(reading)

    def _check_scope_budgets(self, window: Window, prediction: Any) -> None:
        """Tracker thread: the day and notebook caps against the running cell (with its
        prediction when ``budget_scope_predict`` is on); a fault is reported once."""
        tracker = self.session.tracker
        try:
            predicted = prediction if tracker.settings.get("budget_scope_predict") else None
            self.session.scope_budgets.on_tick(tracker.peek(window), predicted)
        except Exception as error:
            tracker.notice(f"notebook/day budget check failed: {error!r}")


def _status_of(result: Any) -> str:
    error = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
    return status_of(error)
