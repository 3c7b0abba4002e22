"""Carbon or energy budgets for ``%%carbon --budget``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from carbon_magic.engine.measurement import Measurement
from carbon_magic.formatting import format_grams, format_kwh

if TYPE_CHECKING:
    from carbon_magic.kernel.prediction import Prediction

# Units as the panel prints them; case carries meaning (mWh is a milliwatt-hour, MWh a
# megawatt-hour; mg a milligram, Mg a megagram), so a spelling in another case is taken
# only when it fits exactly one unit.
_GRAM_UNITS = {"µg": 1e-6, "ug": 1e-6, "mg": 1e-3, "g": 1.0, "kg": 1e3, "Mg": 1e6, "t": 1e6}
_KWH_UNITS = {
    "J": 1 / 3.6e6,
    "kJ": 1 / 3.6e3,
    "µWh": 1e-9,
    "uWh": 1e-9,
    "mWh": 1e-6,
    "Wh": 1e-3,
    "kWh": 1.0,
    "MWh": 1e3,
}
_UNIT_NAMES = {
    "mg": "milligrams",
    "Mg": "megagrams",
    "mWh": "milliwatt-hours",
    "MWh": "megawatt-hours",
}
_PATTERN = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(\S+?)\s*$")
# A prediction may stop or warn only once it has this much to go on: 10 % of the work
# done, or 30 s of the cell (whichever comes first).
PREDICT_MIN_FRACTION = 0.1
PREDICT_MIN_ELAPSED_S = 30.0
ACCEPTED = (
    "a number with a unit: µg, mg, g, kg, Mg, t (CO2e) or J, kJ, µWh, mWh, Wh, kWh, MWh "
    "(energy), e.g. 5g or 0.2kWh"
)


@dataclass(frozen=True)
class Budget:
    """A limit on a cell's operational emissions (grams) or facility energy (kWh);
    ``count_remote``: whether the estimated figures of the cell's calls to hosted models
    (``m.remote``) count too (the ``budget_remote`` setting)."""

    text: str
    grams: float | None = None
    kwh: float | None = None
    count_remote: bool = True

    def used_fraction(self, m: Measurement) -> float:
        """How much of the budget ``m`` has used (1.0 = all of it)."""
        remote = m.remote if self.count_remote and m.remote else None
        if self.grams is not None:
            grams = m.emissions_g + (remote["emissions_g"] if remote else 0.0)
            return grams / self.grams if self.grams > 0 else float("inf")
        assert self.kwh is not None
        kwh = m.energy_kwh + (remote["energy_kwh"] if remote else 0.0)
        return kwh / self.kwh if self.kwh > 0 else float("inf")

    def scope(self) -> str:
        """What the budget counts, for the panel: ``"local + remote (estimated)"``."""
        return "local + remote (estimated)" if self.count_remote else "local only"

    def exceeded(self, m: Measurement) -> bool:
        """True once ``m`` is over the budget."""
        return self.used_fraction(m) > 1.0

    def predicted_exceeded(self, prediction: Prediction) -> bool:
        """True when even the low end of ``prediction``'s own range (grams CO2e, or
        facility kWh for an energy budget) is over the budget, once the prediction has at
        least ``PREDICT_MIN_FRACTION`` of the work or ``PREDICT_MIN_ELAPSED_S`` seconds
        behind it. Like ``exceeded``, it compares central figures: the measurement's own
        range (CPU model, grid intensity) applies to the spent and the predicted alike."""
        if (
            prediction.fraction < PREDICT_MIN_FRACTION
            and prediction.elapsed_s < PREDICT_MIN_ELAPSED_S
        ):
            return False
        if self.grams is not None:
            return prediction.emissions_range_g[0] > self.grams
        assert self.kwh is not None
        return prediction.energy_range_kwh[0] > self.kwh

    def describe_prediction(self, prediction: Prediction) -> str:
        """The prediction in the budget's own quantity: grams CO2e or energy."""
        if self.grams is not None:
            return prediction.describe()
        return prediction.describe_energy()

    def describe(self) -> str:
        """The budget with a scaled unit, e.g. ``5 g CO2e`` or ``200 Wh``."""
        if self.grams is not None:
            return f"{format_grams(self.grams)} CO2e"
        return format_kwh(self.kwh or 0.0)


def parse_budget(text: str) -> Budget:
    """Parse ``5g``, ``0.5 kg``, ``0.2kWh``, ``150Wh``…; ``ValueError`` names the forms.

    The amount must be finite and above zero (``-5g``, ``0g`` and ``1e400kWh`` are not
    budgets).
    """
    match = _PATTERN.match(text or "")
    if not match:
        raise ValueError(f"bad budget {text!r}: expected {ACCEPTED}")
    value, unit = float(match.group(1)), _budget_unit(match.group(2))
    if unit in _GRAM_UNITS:
        grams = value * _GRAM_UNITS[unit]
        _check_amount(text, grams)
        return Budget(text.strip(), grams=grams)
    kwh = value * _KWH_UNITS[unit]
    _check_amount(text, kwh)
    return Budget(text.strip(), kwh=kwh)


def _budget_unit(spelling: str) -> str:
    """The unit ``spelling`` names: itself when it is one, else the one unit it names in
    another case (``kwh`` → ``kWh``); ``ValueError`` when it names none or several
    (``mwh``: mWh or MWh)."""
    if spelling in _GRAM_UNITS or spelling in _KWH_UNITS:
        return spelling
    matches = [unit for unit in (*_GRAM_UNITS, *_KWH_UNITS) if unit.lower() == spelling.lower()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        choices = " or ".join(f"{unit} ({_UNIT_NAMES.get(unit, unit)})" for unit in matches)
        raise ValueError(f"ambiguous budget unit {spelling!r}: write {choices}")
    raise ValueError(f"bad budget unit {spelling!r}: expected {ACCEPTED}")


def _check_amount(text: str, amount: float) -> None:
    if not math.isfinite(amount) or amount <= 0:
        raise ValueError(
            f"bad budget {text.strip()!r}: the amount must be finite and above 0; "
            f"expected {ACCEPTED}"
        )


def overshoot_note(budget: Budget, m: Measurement, stop_latency_s: float | None) -> str:
    """What a record keeps of an exceeded budget: the budget text, how much of it the
    cell used and, when it was stopped, how long after exceeding it the cell stopped
    (native calls that ignore signals, such as a BLAS call, run on until they return)."""
    note = f"{budget.text} (exceeded: {budget.used_fraction(m):.0%} used"
    if stop_latency_s is not None:
        note += f"; stopped {stop_latency_s:.2f} s after"
    return note + ")"
