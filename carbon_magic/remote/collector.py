"""The magics' side of remote calls: capture on load, each cell's calls at its edges.

Like the Dask cluster reader, :meth:`RemoteCollector.start` at a cell's start gives an
edge and :meth:`RemoteCollector.end` at its end puts the cell's calls, estimated, on the
Measurement (``m.remote``, see :mod:`carbon_magic.remote.summary`). Neither raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from carbon_magic.engine.measurement import Measurement
from carbon_magic.remote.calls import CALL_LOG, RemoteCall
from carbon_magic.remote.estimate import CallEstimate, Estimator
from carbon_magic.remote.patching import Patcher
from carbon_magic.remote.summary import summarise

__all__ = ["RemoteCollector"]


class RemoteCollector:
    """Captures calls to hosted models while cells run. ``notice(text)`` reports a
    fault once (EcoLogits missing, too old or raising)."""

    def __init__(self, notice: Callable[[str], None]) -> None:
        self.patcher = Patcher()
        self.estimator = Estimator(notice)
        self.installed = False
        self._estimates: dict[int, tuple[RemoteCall, CallEstimate]] = {}

    def install(self) -> None:
        """Wrap the SDKs (those imported now, and the others when imported)."""
        self.patcher.install()
        self.installed = True

    def close(self) -> None:
        """Put the SDKs back exactly as they were."""
        self.patcher.remove()
        self.installed = False

    def start(self) -> int | None:
        """A cell starts: its edge (None when the capture is off)."""
        return CALL_LOG.mark() if self.installed else None

    def end(self, edge: int | None, m: Measurement) -> None:
        """A cell ended: estimate its calls and put them on ``m.remote`` (None when it
        made none). A stream still open is recorded with the tokens seen so far."""
        if edge is None:
            return
        calls = CALL_LOG.since(edge)
        if not calls:
            return
        m.remote = summarise((call, self._estimate(call, final=True)) for call in calls)
        self._estimates.clear()

    def release(self, edge: int | None) -> None:
        """A cell's record was dropped (replaced by a ``%%carbon`` record): close its edge."""
        if edge is not None:
            CALL_LOG.since(edge)

    def peek(self, edge: int | None) -> dict[str, Any] | None:
        """The running cell's remote part so far (its finished calls), for budgets."""
        if edge is None:
            return None
        done = [call for call in CALL_LOG.peek(edge) if call.status != "running"]
        if not done:
            return None
        return summarise((call, self._estimate(call, final=False)) for call in done)

    def _estimate(self, call: RemoteCall, final: bool) -> CallEstimate:
        key = id(call)
        kept = self._estimates.get(key)
        if kept is not None and kept[0] is call and not (final and call.status == "running"):
            return kept[1]
        estimate = self.estimator.estimate(call)
        self._estimates[key] = (call, estimate)
        return estimate

    def doctor_lines(self) -> list[str]:
        """What ``doctor`` says of the capture: what is wrapped and what is not."""
        if not self.installed:
            return ["remote calls: not captured (carbon_magic is not loaded here)"]
        lines = list(self.patcher.problems.values())
        captured = sorted({label.split(":")[0].split(".")[0] for label in self.patcher.captured()})
        lines.insert(
            0, f"remote calls: captured for {', '.join(captured) or 'no SDK imported yet'}"
        )
        return lines
