"""Measurement windows and the live reading, as the tracker hands them out.

A ``Window`` is opened by ``Tracker.begin`` and closed by ``Tracker.end``; its figures
are the difference of the tracker's cumulative totals at its two edges.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from carbon_magic.engine.measurement import Measurement
from carbon_magic.engine.totals import Totals

# What the caller of ``measure`` (or the recorder) sets on the measurement handed out,
# which the figures at the window's end must not overwrite.
CALLER_FIELDS = frozenset({"execution_count", "cell_id", "status", "source"})


@dataclass
class Window:
    """An open measurement window (see ``Tracker.begin``).

    ``started_ns`` is the monotonic clock at the edge (ns); ``measurement`` the object
    handed out at once and filled when the window ends."""

    name: str
    mode: str
    started_ns: int
    started_at: datetime
    totals_at_start: Totals
    measurement: Measurement
    intensity_at_start_g_per_kwh: float = 0.0
    closed: bool = False


@dataclass(frozen=True)
class LiveReading:
    """What the live view shows after a tick: when, watts per component, and the
    totals since the tracker started in the current mode."""

    at: datetime
    watts: dict[str, float]
    session: Measurement


def intensity_variation(window: Window, changes: Iterable[tuple[int, float]]) -> str | None:
    """The note for a window whose grid intensity changed while it was open
    (``changes``: (monotonic ns, g/kWh) whenever the intensity changed), else None."""
    seen = [window.intensity_at_start_g_per_kwh] + [
        value for t_ns, value in changes if t_ns > window.started_ns
    ]
    low, high = min(seen), max(seen)
    if low == high:
        return None
    return f"; varied {low:.0f}–{high:.0f} g/kWh during the window, integrated"


def fill(target: Measurement, result: Measurement) -> Measurement:
    """Copy ``result``'s figures onto ``target`` (the object ``measure`` handed out, so
    ``m`` is complete after the block), keeping what the caller set on it."""
    for key, value in vars(result).items():
        if key not in CALLER_FIELDS:
            setattr(target, key, value)
    return target
