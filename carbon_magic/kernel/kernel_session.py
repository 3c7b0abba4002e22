"""The loaded extension's session in one kernel: what the ``%%carbon`` runner, its live
side and the ``%carbon`` subcommands use, without the IPython magics class.

``magics.py`` makes one :class:`KernelSession` at ``%load_ext`` and hands it to each of
them; none of them imports the magics.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

from carbon_magic.cluster import ClusterCollector
from carbon_magic.engine.measurement import Measurement
from carbon_magic.engine.tracker import Tracker
from carbon_magic.kernel.log_routing import show_in_cell
from carbon_magic.kernel.recorder import Recorder
from carbon_magic.kernel.running_cells import RunningCell, RunningCells
from carbon_magic.kernel.scope_budgets import ScopeBudgets
from carbon_magic.remote import RemoteCollector
from carbon_magic.vocabulary import Via

RECORDS_KEPT = 1000  # recent records kept in memory; the ledger has them all

# What a %%carbon does with its record (``KernelSession.enter_magic_cell``).
RECORDS = "records"  # its own record
NESTED = "nested"  # none: inside another %%carbon, or its cell has its record already
NAMES_OUTER = "names outer"  # names the record of the automatically recorded cell it is in


class KernelSession:
    """The tracker, the recorder, the cluster and remote-call readers, the notebook and
    day budgets, the shell and the kernel's recent records, with the few operations on
    them that the cell runner and the subcommands share."""

    def __init__(self, shell: Any, tracker: Tracker, kernel_id: str | None) -> None:
        self.shell = shell
        self.tracker = tracker
        self.auto = True  # record every cell, not only %%carbon cells
        self.last: Measurement | None = None
        self.records: deque[Measurement] = deque(maxlen=RECORDS_KEPT)  # the latest ones
        self.n_recorded = 0  # since load or %carbon reset (records keeps the latest)
        self.recorder = Recorder(
            tracker,
            kernel_id=kernel_id,
            notebook_path=os.environ.get("JPY_SESSION_NAME") or None,
        )
        self.running_cells = RunningCells()
        self.cluster_reader = ClusterCollector(tracker)
        self.remote_reader = RemoteCollector(self.notice)
        self.scope_budgets = ScopeBudgets(
            tracker.settings,
            self.recorder.ledger_path,
            self.notebook_path,
            self.session_uuid,
        )
        self._magic_depth = 0

    @property
    def session_uuid(self) -> str:
        """The ledger's id of this session."""
        return self.recorder.session_uuid

    @property
    def kernel_id(self) -> str | None:
        """The Jupyter kernel's id, None outside a Jupyter kernel."""
        return self.recorder.kernel_id

    @property
    def notebook_path(self) -> str | None:
        """The notebook's path as Jupyter names the session, when known."""
        return self.recorder.notebook_path

    def record(self, m: Measurement, via: Via, budget: str | None = None) -> None:
        """Keep ``m`` as the last record and write it to the ledger."""
        self.last = m
        self.records.append(m)
        self.n_recorded += 1
        self.scope_budgets.recorded(m)
        self.recorder.record_cell(m, via=via, budget=budget)

    def notice(self, message: str) -> None:
        """Report a fault met on the cell's own path: once in the server log and in
        ``%carbon status``, and one line in the cell where it first happened."""
        new = message not in self.tracker.notices
        self.tracker.notice(message)
        if new:
            show_in_cell(message)

    def claim_cell(self) -> RunningCell | None:
        """The running cell, when the ``%%carbon`` starting now is that cell itself (its
        only statement, run by IPython); it then runs the body as the cell. None when
        the magic is called from other code."""
        cell = self.running_cells.innermost
        result = getattr(getattr(self.shell, "displayhook", None), "exec_result", None)
        if cell is None or not cell.carbon or cell.claimed:
            return None
        if result is None or getattr(result, "info", None) is not cell.info:
            return None
        cell.claimed, cell.result = True, result
        return cell

    def enter_magic_cell(self) -> str:
        """A ``%%carbon`` cell starts: what it does with its record (RECORDS, NESTED or
        NAMES_OUTER). One cell has one record: a ``%%carbon`` nested in another is shown,
        not recorded; one in a cell recorded automatically (``%%time`` or ``%%timeit``
        around it) names that cell's record."""
        self._magic_depth += 1
        if self._magic_depth > 1:
            return NESTED
        outermost = self.running_cells.outermost
        if outermost is None:
            return RECORDS  # called outside any cell
        if outermost.auto is not None:
            return NAMES_OUTER
        if outermost.recorded:
            return NESTED
        outermost.recorded = True
        return RECORDS

    def name_outer_record(self, m: Measurement, budget: str | None) -> None:
        """A ``%%carbon`` inside an automatically recorded cell has ended: the first one
        names the cell's record and gives it its budget."""
        outermost = self.running_cells.outermost
        auto = outermost.auto if outermost is not None else None
        if auto is not None and auto.magic is None:
            auto.magic, auto.magic_budget = m, budget

    def leave_magic_cell(self) -> None:
        """A ``%%carbon`` cell has ended."""
        self._magic_depth = max(0, self._magic_depth - 1)
