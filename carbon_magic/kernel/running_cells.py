"""The cells IPython is running now, outermost first.

A cell can run cells: ``%%capture`` runs its body as a cell, and code may call
``get_ipython().run_cell(...)``. IPython announces each with ``pre_run_cell`` and
``post_run_cell``; only the outermost is the user's cell, recorded once, as itself.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from carbon_magic.engine.measurement import Measurement
from carbon_magic.engine.windows import Window
from carbon_magic.kernel.prediction import CellForecast


@dataclass
class AutoRecord:
    """The automatic record of an outermost cell: its window, and what a ``%%carbon``
    run inside it (``%%time`` or ``%%timeit`` around one) says about it."""

    window: Window
    cell_id: str | None
    source: str
    forecast: CellForecast
    cluster_edge: Any = None
    remote_edge: int | None = None  # its place in the log of hosted-model API calls
    magic: Measurement | None = None  # the first %%carbon inside: its name, source, status
    magic_budget: str | None = None  # and its budget, as the ledger's budget column holds


@dataclass
class RunningCell:
    """One cell IPython is running (its ``ExecutionInfo``)."""

    info: Any
    carbon: bool  # a %%carbon cell: its magic records it
    auto: AutoRecord | None = None  # recorded automatically (outermost cells only)
    claimed: bool = False  # its %%carbon has started as the cell itself
    awaited: bool = False  # IPython awaits its %%carbon (a body with top-level await)
    result: Any = None  # its ExecutionResult, once its %%carbon claims it
    recorded: bool = False  # a %%carbon has recorded it


def cell_run_depth() -> int:
    """How many cells IPython is running on this thread's stack now (its
    ``run_cell_async`` frames); 0 when none is (a call from outside a cell)."""
    try:
        from IPython.core.interactiveshell import InteractiveShell

        code = InteractiveShell.run_cell_async.__code__
    except Exception:
        return 0
    depth = 0
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is code:
            depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    return depth


class RunningCells:
    """The stack of running cells, kept by the shell's cell events."""

    def __init__(self) -> None:
        self.cells: list[RunningCell] = []

    @property
    def outermost(self) -> RunningCell | None:
        """The user's cell (None between cells)."""
        return self.cells[0] if self.cells else None

    @property
    def innermost(self) -> RunningCell | None:
        """The cell whose code runs now (None between cells)."""
        return self.cells[-1] if self.cells else None

    def started(self, info: Any, carbon: bool) -> tuple[RunningCell, list[RunningCell]]:
        """A cell starts (``pre_run_cell``): the new entry, and the entries left from
        cells that never announced their end (to be closed), found from the stack of
        cells IPython is running."""
        depth = cell_run_depth()
        stale: list[RunningCell] = []
        if depth > 0 and len(self.cells) >= depth:
            stale, self.cells = self.cells[depth - 1 :], self.cells[: depth - 1]
        cell = RunningCell(info, carbon)
        self.cells.append(cell)
        return cell, stale

    def ended(self, info: Any) -> list[RunningCell]:
        """A cell ends (``post_run_cell`` with its ``ExecutionInfo``; None when IPython
        gave no result): its entry and those above it, innermost first. Nothing for a
        cell that never started (IPython skips ``pre_run_cell`` for a blank cell)."""
        for index in range(len(self.cells) - 1, -1, -1):
            if info is None or self.cells[index].info is info:
                ended, self.cells = self.cells[index:], self.cells[:index]
                return ended[::-1]
        return []
