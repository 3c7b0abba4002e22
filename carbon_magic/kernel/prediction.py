"""A running cell's predicted total at completion, from its progress and its cost so far.

The model is deliberately simple and says what it is. Over the span the progress has
been followed (from the first reading of the bar to now):

- the progress rate ``r`` (fraction per second) is the fraction gained over the time it
  took, so the time left is ``ETA = (1 − f) / r``, less the time since the bar last
  reported;
- the emission rate (grams per second, and kWh per second) is the window's growth over
  the same span, so the rest will cost ``rate × ETA`` and the total is what the window
  has cost so far plus that.

The prediction's own range comes from how much the rates vary between ticks (twice the
relative, time-weighted standard deviation of the per-interval progress rate and of the
per-tick emission rate, combined, so that even a rest as short as one tick falls inside;
``DEFAULT_SPREAD`` before there are enough intervals to tell), around the central
figures. The measurement's own range (CPU model, grid intensity: an uncertainty the work
so far and the rest share) is kept apart, as the relative low and high ends of the
figures so far, and shown separately: a budget compares central figures, spent or
predicted, so it acts on the prediction's own range only. It is a prediction: it assumes
the rest of the work goes as the work so far went.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from carbon_magic import records
from carbon_magic.engine.measurement import Measurement
from carbon_magic.formatting import format_duration, format_grams, format_kwh
from carbon_magic.kernel.cell_progress import ProgressReading, read_progress
from carbon_magic.record_json import to_json

__all__ = ["Prediction", "Predictor", "CellForecast", "DEFAULT_SPREAD", "MIN_SPREAD"]

DEFAULT_SPREAD = 0.5  # relative spread assumed until MIN_INTERVALS rate intervals are seen
SPREAD_SIGMAS = 2.0  # the range spans this many standard deviations of the rates each way
MIN_SPREAD = 0.05  # the clocks' and the counters' granularity: never narrower than ±5 %
MAX_SPREAD = 0.9  # the low end of the rest never drops below a tenth of it
MIN_INTERVALS = 3  # progress-rate intervals needed before their spread is used
_BACKWARDS = 1e-9  # a fraction that drops by more than this is a new bar: start again


@dataclass(frozen=True)
class Prediction:
    """What a running cell will have cost when its progress reaches 1.

    Units: ``fraction`` 0..1 done; seconds (``elapsed_s`` of the cell so far, ``eta_s``
    left); grams CO2e (operational, as ``Measurement.emissions_g``); facility kWh.
    ``emissions_range_g`` and ``energy_range_kwh`` are the prediction's own range: the
    central figures with the rest varying as the rates did (``spread``, relative).
    ``measured_ratio_g`` and ``measured_ratio_kwh`` are the measurement's own range, as
    (low, high) over central (1.0, 1.0 without one), which applies to the whole total.
    """

    fraction: float
    elapsed_s: float
    eta_s: float
    eta_range_s: tuple[float, float]
    emissions_g: float
    emissions_range_g: tuple[float, float]
    energy_kwh: float
    energy_range_kwh: tuple[float, float]
    spread: float
    source: str
    measured_ratio_g: tuple[float, float] = (1.0, 1.0)
    measured_ratio_kwh: tuple[float, float] = (1.0, 1.0)

    def describe(self) -> str:
        """``≈ 12 g at completion (11 g–13 g at this pace; measured 7.2 g–18 g) · ETA
        14 min`` (grams CO2e): the prediction's own range, then the measurement's."""
        return _describe(
            format_grams,
            self.emissions_g,
            self.emissions_range_g,
            self.measured_ratio_g,
            self.eta_s,
        )

    def describe_energy(self) -> str:
        """``≈ 1.2 Wh at completion (1.1 Wh–1.3 Wh at this pace; measured 0.8 Wh–1.6 Wh)
        · ETA 14 min`` (facility energy)."""
        return _describe(
            format_kwh, self.energy_kwh, self.energy_range_kwh, self.measured_ratio_kwh, self.eta_s
        )

    def panel_line(self) -> str:
        """The panel's line, which says it is a prediction: ``predicted ≈ 12 g at
        completion (11 g–13 g at this pace; measured 7.2 g–18 g) · ETA 14 min · 23 %
        done (tqdm)``."""
        return f"predicted {self.describe()} · {self.fraction:.0%} done ({self.source})"

    def outer_range_g(self) -> tuple[float, float]:
        """Both ranges at once, grams CO2e: the prediction's low end at the measurement's
        low end, its high end at the measurement's high end."""
        low, high = self.emissions_range_g
        return low * self.measured_ratio_g[0], high * self.measured_ratio_g[1]

    def to_json(self) -> dict[str, Any]:
        """The shape the ledger's heartbeats and the server's kernel document carry
        (``records.Prediction``), the range holding both uncertainties
        (``outer_range_g``)."""
        shown = records.Prediction(
            fraction=self.fraction,
            emissions_g=self.emissions_g,
            emissions_range_g=self.outer_range_g(),
            eta_s=self.eta_s,
        )
        return cast("dict[str, Any]", to_json(shown))


def _describe(
    unit: Callable[[float], str],
    central: float,
    own_range: tuple[float, float],
    measured_ratio: tuple[float, float],
    eta_s: float,
) -> str:
    ranges = f"{unit(own_range[0])}–{unit(own_range[1])}"
    if measured_ratio != (1.0, 1.0):
        low, high = central * measured_ratio[0], central * measured_ratio[1]
        ranges += f" at this pace; measured {unit(low)}–{unit(high)}"
    return f"≈ {unit(central)} at completion ({ranges}) · ETA {format_eta(eta_s)}"


def format_eta(seconds: float) -> str:
    """``840`` → ``"14 min"``; ``42`` → ``"42 s"``; ``5400`` → ``"1 h 30 min"``."""
    if seconds < 1:
        return "< 1 s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    return format_duration(seconds)


class _WeightedSpread:
    """Running time-weighted mean and variance of a rate (O(1) memory)."""

    def __init__(self) -> None:
        self.count = 0
        self.weight = 0.0
        self.mean = 0.0
        self._m2 = 0.0

    def add(self, value: float, weight: float) -> None:
        if weight <= 0 or not math.isfinite(value):
            return
        self.count += 1
        self.weight += weight
        delta = value - self.mean
        self.mean += delta * weight / self.weight
        self._m2 += weight * delta * (value - self.mean)

    def relative(self) -> float | None:
        """Standard deviation over mean, or None when too few values or a zero mean."""
        if self.count < MIN_INTERVALS or self.mean <= 0:
            return None
        return math.sqrt(max(0.0, self._m2 / self.weight)) / self.mean


@dataclass(frozen=True)
class _Point:
    t_s: float  # when the bar reported ``fraction``, seconds since the window started
    fraction: float
    cost_t_s: float  # when the window had cost ``emissions_g`` and ``energy_kwh``
    emissions_g: float
    energy_kwh: float


class Predictor:
    """Turns successive (progress, measurement-so-far) pairs into predictions.

    Feed it from one thread (the tracker's), once per tick. Not thread-safe.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._first: _Point | None = None  # progress and cost when the bar was first read
        self._last_progress: tuple[float, float] | None = None  # (t_s, fraction)
        self._last_cost: tuple[float, float] | None = None  # (t_s, grams)
        self._progress_rates = _WeightedSpread()
        self._cost_rates = _WeightedSpread()
        self._source = ""

    def observe(
        self, reading: ProgressReading, m: Measurement, started_at: float
    ) -> Prediction | None:
        """Add one reading; the prediction, or None until progress has moved.

        ``reading`` is the fraction done as of ``reading.at`` (UTC epoch seconds), ``m``
        the window's figures now, ``started_at`` the window's start (UTC epoch seconds).
        """
        now_s = max(0.0, m.duration_s)
        t_s = min(now_s, max(0.0, reading.at - started_at))
        fraction = reading.fraction
        last = self._last_progress
        if reading.source != self._source or (last is not None and fraction < last[1] - _BACKWARDS):
            self._reset()  # another source, or a new bar: what went before says nothing
            last = None
        self._source = reading.source
        if self._first is None:
            self._first = _Point(t_s, fraction, now_s, m.emissions_g, m.energy_kwh)
            self._last_progress = (t_s, fraction)
            self._last_cost = (now_s, m.emissions_g)
            return None
        if last is not None and fraction > last[1] and t_s > last[0]:
            self._progress_rates.add((fraction - last[1]) / (t_s - last[0]), t_s - last[0])
            self._last_progress = (t_s, fraction)
        cost = self._last_cost
        if cost is not None and now_s > cost[0]:
            self._cost_rates.add((m.emissions_g - cost[1]) / (now_s - cost[0]), now_s - cost[0])
            self._last_cost = (now_s, m.emissions_g)
        return self._predict(m, now_s)

    def _predict(self, m: Measurement, now_s: float) -> Prediction | None:
        first, last = self._first, self._last_progress
        assert first is not None and last is not None
        t_last, fraction = last
        progress_span_s = t_last - first.t_s
        cost_span_s = now_s - first.cost_t_s
        if fraction <= first.fraction or progress_span_s <= 0 or cost_span_s <= 0:
            return None
        rate = (fraction - first.fraction) / progress_span_s  # fraction per second
        eta_s = max(0.0, (1.0 - fraction) / rate - (now_s - t_last))
        grams_per_s = max(0.0, (m.emissions_g - first.emissions_g) / cost_span_s)
        kwh_per_s = max(0.0, (m.energy_kwh - first.energy_kwh) / cost_span_s)
        spread = self.spread()
        # A rest shorter than a tick varies as much as a whole tick of work does.
        ticks = self._cost_rates
        tick_s = ticks.weight / ticks.count if ticks.count else cost_span_s
        margin_s = spread * max(eta_s, tick_s)
        rest_g, rest_kwh = grams_per_s * eta_s, kwh_per_s * eta_s
        low_g, high_g = _own_range(m.emissions_g, rest_g, grams_per_s * margin_s)
        low_kwh, high_kwh = _own_range(m.energy_kwh, rest_kwh, kwh_per_s * margin_s)
        return Prediction(
            fraction=fraction,
            elapsed_s=now_s,
            eta_s=eta_s,
            eta_range_s=(max(0.0, eta_s - margin_s), eta_s + margin_s),
            emissions_g=m.emissions_g + rest_g,
            emissions_range_g=(low_g, high_g),
            energy_kwh=m.energy_kwh + rest_kwh,
            energy_range_kwh=(low_kwh, high_kwh),
            spread=spread,
            source=self._source,
            measured_ratio_g=_ratios(m.emissions_g, m.emissions_range_g),
            measured_ratio_kwh=_ratios(m.energy_kwh, m.energy_range_kwh),
        )

    def spread(self) -> float:
        """How far (relative) the rest may differ from the rates so far: ``SPREAD_SIGMAS``
        times the rates' combined relative standard deviation (progress and emissions)."""
        parts = [self._progress_rates.relative(), self._cost_rates.relative()]
        if parts[0] is None:
            return DEFAULT_SPREAD
        combined = SPREAD_SIGMAS * math.sqrt(sum(p * p for p in parts if p is not None))
        return min(MAX_SPREAD, max(MIN_SPREAD, combined))


def _own_range(so_far: float, rest: float, margin: float) -> tuple[float, float]:
    """Low and high totals at the central figures: what was spent so far, plus the rest
    less or more its ``margin`` (from the rates' spread)."""
    return so_far + max(0.0, rest - margin), so_far + rest + margin


def _ratios(central: float, measured_range: tuple[float, float]) -> tuple[float, float]:
    """The measurement's relative range: (low, high) over ``central``; (1, 1) for 0."""
    if central <= 0:
        return 1.0, 1.0
    return measured_range[0] / central, measured_range[1] / central


class CellForecast:
    """The prediction of one running window, kept up to date from the tracker thread."""

    def __init__(self, started_at: float) -> None:
        """``started_at``: the window's start, UTC epoch seconds (bars opened before it
        belong to earlier work and are not followed)."""
        self.started_at = started_at
        self.predictor = Predictor()
        self.latest: Prediction | None = None

    def update(self, measure: Callable[[], Measurement]) -> Prediction | None:
        """Read the progress; when there is some, ``measure()`` the window and predict.

        Returns (and keeps as ``latest``) the prediction, or None: no progress to follow
        (no tqdm, no bar, a bar without a total, the bar closed) or too early to tell.
        """
        reading = read_progress(self.started_at)
        if reading is None:
            self.latest = None
            return None
        self.latest = self.predictor.observe(reading, measure(), self.started_at)
        return self.latest
