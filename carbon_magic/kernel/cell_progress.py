"""How far the running cell has got: its outermost tqdm bar, or ``progress(fraction)``.

Nothing here runs per tqdm update. The tracker thread reads the bars' own counters
(``n``, ``total``, ``last_print_t``) when it ticks, from the set of open bars that tqdm
keeps itself (``tqdm.std.tqdm._instances``, shared by ``tqdm``, ``tqdm.auto`` and
``tqdm.notebook``). A bar is only read, never changed, so what tqdm prints is exactly
what it would print without carbon_magic. tqdm is never imported here: a process that
has not imported it has no bar to follow.

Which bar: the outermost one opened since the cell started (lowest position, then the
oldest). If it has no total, nothing is followed: an inner bar's fraction would restart
at every outer step. When the outermost bar has a total and an open bar sits directly
inside it (position + 1) with a total, the inner bar's fraction refines the outer step
in progress: 3 epochs of 1000 batches each read 0.4 at batch 200 of epoch 2.
"""

from __future__ import annotations

import math
import numbers
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["ProgressReading", "progress", "read_progress", "clear_progress"]

# Bars opened a little before the window's start still belong to the cell (clocks of
# tqdm and of the window are both time.time(), read microseconds apart).
_START_SLACK_S = 0.05
_MAX_SCAN_RETRIES = 3


@dataclass(frozen=True)
class ProgressReading:
    """The fraction done (0..1) of the running work, as of ``at`` (UTC epoch seconds)."""

    fraction: float
    at: float
    source: str  # "tqdm" or "progress()"


_manual_lock = threading.Lock()
_manual: ProgressReading | None = None


def progress(fraction: float) -> None:
    """Report how far the running cell has got, for loops without a tqdm bar.

    ``fraction`` is the share done, a number from 0 to 1 (``0.25`` after a quarter).
    The running cell's prediction of its total (``≈ 12 g at completion``) and, with
    ``%%carbon --budget … --predict``, the budget's predicted stop follow it. It takes
    precedence over a tqdm bar in the same cell and is forgotten when the next cell
    starts. Raises ``ValueError`` naming the valid range for anything else (booleans,
    NaN, 1.7); nothing changes then. Costs well under a microsecond; call it freely.
    """
    global _manual
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise ValueError(
            f"progress(fraction): fraction must be a number from 0 to 1, got {fraction!r}"
        )
    value = float(fraction)
    if not (0.0 <= value <= 1.0):  # NaN fails both comparisons
        raise ValueError(
            f"progress(fraction): fraction must be a number from 0 to 1 "
            f"(0 = nothing done, 1 = all of it), got {fraction!r}"
        )
    reading = ProgressReading(value, time.time(), "progress()")
    with _manual_lock:
        _manual = reading


def clear_progress() -> None:
    """Forget the fraction given to ``progress()`` (a new cell starts)."""
    global _manual
    with _manual_lock:
        _manual = None


def read_progress(since: float) -> ProgressReading | None:
    """The progress of work started at or after ``since`` (UTC epoch seconds).

    ``progress()``'s latest fraction if it was given since then, else the outermost
    tqdm bar's, else None (no tqdm imported, no bar, a bar without a total). Never
    raises: a bar in an unexpected state is not followed.
    """
    manual = _manual
    if manual is not None and manual.at >= since:
        return manual
    try:
        return _read_tqdm(since)
    except Exception:
        return None


def _read_tqdm(since: float) -> ProgressReading | None:
    module = sys.modules.get("tqdm.std")
    bar_class = getattr(module, "tqdm", None) if module is not None else None
    if bar_class is None:
        return None
    bars = _open_bars(bar_class, since - _START_SLACK_S)
    if not bars:
        return None
    bars.sort(key=lambda item: (item[0], item[1]))
    position, _, outer = bars[0]
    outer_fraction = _fraction(outer)
    if outer_fraction is None:
        return None
    at = _float(getattr(outer, "last_print_t", None)) or time.time()
    total = float(outer.total)
    inner = [bar for pos, _, bar in bars[1:] if pos == position + 1]
    if len(inner) == 1 and outer.n < total:
        inner_fraction = _fraction(inner[0])
        if inner_fraction is not None and inner_fraction < 1.0:
            outer_fraction = min(1.0, (float(outer.n) + inner_fraction) / total)
            at = max(at, _float(getattr(inner[0], "last_print_t", None)) or at)
    return ProgressReading(outer_fraction, at, "tqdm")


def _open_bars(bar_class: Any, since: float) -> list[tuple[int, float, Any]]:
    """(position, start time, bar) of the open bars started since ``since``."""
    instances = getattr(bar_class, "_instances", None)
    if instances is None:
        return []
    for _ in range(_MAX_SCAN_RETRIES):
        try:
            snapshot = list(instances)  # the main thread may open or close a bar meanwhile
            break
        except RuntimeError:
            continue
    else:
        return []
    bars = []
    for bar in snapshot:
        start = _float(getattr(bar, "start_t", None))  # set last in tqdm's __init__
        if start is None or start < since or getattr(bar, "disable", False):
            continue
        try:
            position = abs(int(bar.pos))
        except (AttributeError, TypeError, ValueError):
            continue
        bars.append((position, start, bar))
    return bars


def _fraction(bar: Any) -> float | None:
    """n / total of a bar with a positive, finite total, clamped to 0..1."""
    total = _float(getattr(bar, "total", None))
    n = _float(getattr(bar, "n", None))
    if total is None or n is None or total <= 0 or math.isinf(total):
        return None
    return min(1.0, max(0.0, n / total))


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
