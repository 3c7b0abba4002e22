"""The total-at-completion prediction: rates, ETA, and a range that widens honestly."""

import math
import random

import pytest

from carbon_magic.engine.measurement import Measurement
from carbon_magic.kernel.budget import parse_budget
from carbon_magic.kernel.cell_progress import ProgressReading
from carbon_magic.kernel.panel import panel_html
from carbon_magic.kernel.prediction import (
    DEFAULT_SPREAD,
    MIN_SPREAD,
    Prediction,
    Predictor,
    format_eta,
)

T0 = 1_700_000_000.0


def window(t_s: float, grams: float, rel: float = 0.2) -> Measurement:
    """A window at ``t_s`` seconds that has cost ``grams`` (range ±rel) and grams/1000 kWh."""
    return Measurement(
        name="w",
        duration_s=t_s,
        emissions_g=grams,
        emissions_range_g=(grams * (1 - rel), grams * (1 + rel)),
        energy_kwh=grams / 1000,
        energy_range_kwh=(grams / 1000 * (1 - rel), grams / 1000 * (1 + rel)),
    )


def feed(predictor, ticks, source="tqdm"):
    """ticks: (t_s, fraction, grams); returns the last prediction."""
    result = None
    for t_s, fraction, grams in ticks:
        result = predictor.observe(
            ProgressReading(fraction, T0 + t_s, source), window(t_s, grams), T0
        )
    return result


def test_steady_work_predicts_its_total_and_eta():
    # 100 s of work, 1 % per second, 0.5 g per second after 10 s of setup costing 2 g.
    ticks = [(10 + s, s / 100, 2 + 0.5 * s) for s in range(0, 21)]
    p = feed(Predictor(), ticks)
    assert p.fraction == pytest.approx(0.2)
    assert p.eta_s == pytest.approx(80, rel=1e-6)
    assert p.emissions_g == pytest.approx(2 + 0.5 * 100, rel=1e-6)
    assert p.energy_kwh == pytest.approx((2 + 50) / 1000, rel=1e-6)
    # Steady rates: the prediction's own range is the rest at the minimum spread, around
    # the central figures; the measurement's ±20 % is kept apart.
    assert p.spread == MIN_SPREAD
    low, high = p.emissions_range_g
    so_far = 2 + 0.5 * 20
    rest = 0.5 * 80
    assert low == pytest.approx(so_far + rest * (1 - MIN_SPREAD))
    assert high == pytest.approx(so_far + rest * (1 + MIN_SPREAD))
    assert low < p.emissions_g < high
    assert p.measured_ratio_g == pytest.approx((0.8, 1.2))
    assert p.measured_ratio_kwh == pytest.approx((0.8, 1.2))
    assert p.describe() == (
        "≈ 52 g at completion (50 g–54 g at this pace; measured 42 g–62 g) · ETA 1 min"
    )
    # The server and the sidebar get one range holding both.
    assert p.to_json() == {
        "fraction": p.fraction,
        "emissions_g": p.emissions_g,
        "emissions_range_g": [pytest.approx(low * 0.8), pytest.approx(high * 1.2)],
        "eta_s": p.eta_s,
    }


def test_no_prediction_until_progress_moves():
    predictor = Predictor()
    assert feed(predictor, [(1, 0.0, 0.1)]) is None
    assert feed(predictor, [(2, 0.0, 0.2), (3, 0.0, 0.3)]) is None
    assert feed(predictor, [(4, 0.1, 0.4)]) is not None


def test_too_few_intervals_use_the_wide_default_spread():
    p = feed(Predictor(), [(0, 0.0, 0.0), (1, 0.01, 0.5), (2, 0.02, 1.0)])
    assert p.spread == DEFAULT_SPREAD
    low, high = p.emissions_range_g
    assert low < 0.6 * p.emissions_g and high > 1.4 * p.emissions_g


def test_a_rate_that_varies_between_ticks_widens_the_range():
    steady = feed(Predictor(), [(s, s / 100, 0.5 * s) for s in range(0, 21)])
    # Same average progress, but alternating fast and slow ticks.
    fraction, ticks = 0.0, [(0, 0.0, 0.0)]
    for s in range(1, 21):
        fraction += 0.012 if s % 2 else 0.008
        ticks.append((s, fraction, 0.5 * s))
    jumpy = feed(Predictor(), ticks)
    # Two standard deviations over the mean of 1.2 %/s and 0.8 %/s.
    assert jumpy.spread == pytest.approx(2 * 0.2, rel=0.05)
    assert jumpy.emissions_g == pytest.approx(steady.emissions_g, rel=1e-6)
    width = lambda p: p.emissions_range_g[1] - p.emissions_range_g[0]  # noqa: E731
    assert width(jumpy) > 2 * width(steady)


def test_a_stalled_bar_counts_down_its_eta():
    ticks = [(s, s / 100, 0.5 * s) for s in range(0, 11)]
    predictor = Predictor()
    moving = feed(predictor, ticks)
    # The bar has not reported for 5 s (a slow step); the time left shrinks meanwhile.
    stalled = predictor.observe(ProgressReading(0.1, T0 + 10, "tqdm"), window(15, 7.5), T0)
    assert stalled.fraction == moving.fraction
    assert stalled.eta_s == pytest.approx(moving.eta_s - 5)


def test_a_new_bar_starts_over():
    predictor = Predictor()
    feed(predictor, [(s, s / 10, s) for s in range(0, 9)])
    assert feed(predictor, [(9, 0.05, 9)]) is None  # went backwards: a new bar
    p = feed(predictor, [(10, 0.10, 10), (11, 0.15, 11)])
    assert p.fraction == pytest.approx(0.15)
    assert p.eta_s == pytest.approx(0.85 / 0.05, rel=1e-6)


def test_a_finished_bar_predicts_what_was_spent():
    p = feed(Predictor(), [(s, s / 10, s) for s in range(0, 11)])
    assert p.fraction == 1.0 and p.eta_s == 0.0
    assert p.emissions_g == pytest.approx(10)


@pytest.mark.parametrize(
    "seconds, text", [(0.2, "< 1 s"), (42, "42 s"), (840, "14 min"), (5400, "1 h 30 min")]
)
def test_eta_text(seconds, text):
    assert format_eta(seconds) == text


def test_zero_cost_so_far_keeps_ranges_finite():
    p = feed(Predictor(), [(s, s / 100, 0.0) for s in range(0, 6)])
    assert p.emissions_g == 0 and p.emissions_range_g == (0.0, 0.0)
    assert math.isfinite(p.eta_s)


def prediction(fraction=0.2, elapsed_s=10.0, low_g=6.0, low_kwh=0.006):
    return Prediction(
        fraction=fraction,
        elapsed_s=elapsed_s,
        eta_s=40.0,
        eta_range_s=(30.0, 50.0),
        emissions_g=8.0,
        emissions_range_g=(low_g, 11.0),
        energy_kwh=0.008,
        energy_range_kwh=(low_kwh, 0.011),
        spread=0.1,
        source="tqdm",
    )


def test_budget_acts_on_the_low_end_once_there_is_enough_to_go_on():
    grams = parse_budget("5g")
    assert grams.predicted_exceeded(prediction())
    assert not grams.predicted_exceeded(prediction(low_g=4.9))  # the central 8 g is over
    assert not grams.predicted_exceeded(prediction(fraction=0.09))  # too early
    assert grams.predicted_exceeded(prediction(fraction=0.01, elapsed_s=30.0))  # long enough
    energy = parse_budget("5Wh")
    assert energy.predicted_exceeded(prediction(low_g=0.0))
    assert not energy.predicted_exceeded(prediction(low_g=100.0, low_kwh=0.004))
    assert energy.describe_prediction(prediction()).startswith("≈ 8 Wh at completion (6 Wh")
    assert grams.describe_prediction(prediction()).startswith("≈ 8 g at completion (6 g")


def test_a_gram_budget_stops_on_the_central_prediction_whatever_the_measured_range():
    # The work would cost twice the budget; the grid intensity and the CPU model make the
    # measured figures uncertain by -60 %/+80 %, for the spent and the predicted alike.
    budget = parse_budget("50g")
    predictor = Predictor()
    for s in range(0, 21):  # 100 s of work at 1 %/s and 1 g/s: 100 g
        m = window(s, s)
        m.emissions_range_g = (0.4 * s, 1.8 * s)
        p = predictor.observe(ProgressReading(s / 100, T0 + s, "tqdm"), m, T0)
    assert p.emissions_g == pytest.approx(100) and p.fraction == pytest.approx(0.2)
    assert p.measured_ratio_g == pytest.approx((0.4, 1.8))
    assert p.emissions_range_g[0] > 90  # the rates were steady
    assert budget.predicted_exceeded(p)
    assert "measured 40 g–180 g" in budget.describe_prediction(p)


def test_panel_shows_the_prediction_under_the_emissions():
    m = window(10, 2.0)
    m.methods = {"cpu": "modelled"}
    line = prediction().panel_line()
    assert line == "predicted ≈ 8 g at completion (6 g–11 g) · ETA 40 s · 20% done (tqdm)"
    measured = Prediction(**{**prediction().__dict__, "measured_ratio_g": (0.5, 2.0)})
    assert measured.panel_line() == (
        "predicted ≈ 8 g at completion (6 g–11 g at this pace; measured 4 g–16 g) · ETA 40 s"
        " · 20% done (tqdm)"
    )
    page = panel_html(m, {"cpu": 10.0}, "running", prediction=line)
    assert page.index("cm-emissions") < page.index("cm-prediction") < page.index("cm-embodied")
    assert "cm-prediction" not in panel_html(m, {"cpu": 10.0}, "running")


def noisy_work(seed: int) -> list[tuple[float, float, float]]:
    """Ticks of 1 s whose progress (1 %/s) and power (0.5 W-ish) vary ±30 % and ±20 % at
    random; the last tick ends when the work does."""
    rng = random.Random(seed)
    t, fraction, grams, ticks = 0.0, 0.0, 0.0, [(0.0, 0.0, 0.0)]
    while fraction < 1.0:
        step, watts = 0.01 * rng.uniform(0.7, 1.3), 0.5 * rng.uniform(0.8, 1.2)
        dt = min(1.0, (1.0 - fraction) / step)
        t, fraction, grams = t + dt, min(1.0, fraction + step * dt), grams + watts * dt
        ticks.append((t, fraction, grams))
    return ticks


def test_the_range_holds_the_true_total_of_noisy_work():
    checks, misses, worst, halfway = 0, 0, 0.0, []
    for seed in range(200):
        ticks = noisy_work(seed)
        truth_g, truth_s = ticks[-1][2], ticks[-1][0]
        predictor = Predictor()
        for t_s, f, g in ticks:
            reading = ProgressReading(f, T0 + t_s, "tqdm")
            p = predictor.observe(reading, window(t_s, g, rel=0.0), T0)
            if p is None or f < 0.1 or f >= 1.0:
                continue
            checks += 1
            low, high = p.emissions_range_g
            if 0.49 < f < 0.51:
                halfway.append((high - low) / 2 / p.emissions_g)
            if not low <= truth_g <= high:
                misses += 1
                worst = max(worst, min(abs(truth_g - low), abs(truth_g - high)) / truth_g)
            eta_low, eta_high = p.eta_range_s
            misses += not eta_low - 1.0 <= truth_s - t_s <= eta_high + 1.0
    # A range of two standard deviations of the tick-to-tick rates: the true total is
    # inside it nearly always, and never far outside (misses are in the last tick).
    assert checks > 10_000
    assert misses / checks < 0.001 and worst < 0.001, (misses, checks, worst)
    # And it is not wide for the sake of it: about ±20 % of the total half-way through.
    assert 0.1 < sorted(halfway)[len(halfway) // 2] < 0.3


def test_a_bar_first_read_after_it_reported_still_gets_the_emission_rate():
    # The bar reported 0 % at t = 0, but the first tick to read it came at t = 3 s, when
    # the window had cost 1.5 g (0.5 g/s); it reports 10 % at t = 10 s.
    predictor = Predictor()
    at_start = ProgressReading(0.0, T0, "tqdm")
    assert predictor.observe(at_start, window(3, 1.5), T0) is None
    p = predictor.observe(ProgressReading(0.1, T0 + 10, "tqdm"), window(10, 5.0), T0)
    assert p.eta_s == pytest.approx(90)
    assert p.emissions_g == pytest.approx(5.0 + 0.5 * 90)
