"""Load curves by family against hand-computed points; bands; fitting; the model's watts."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest

from carbon_magic import cpu_power
from carbon_magic.cpu_model import curves
from carbon_magic.cpu_model.curves import AMD_ZEN, GENERIC, INTEL_XEON, LINEAR
from carbon_magic.cpu_model.identify import cpu_family

SPECPOWER = Path(__file__).parents[1] / "benchmarks" / "data" / "specpower_load_curves.csv"
LOADS = [i / 10 for i in range(11)]
COLUMNS = ["w_idle"] + [f"w_{p}" for p in range(10, 101, 10)]


# s(u) = (1 - e^(-k·u)) / (1 - e^(-k)), worked by hand:
#   k=4,     u=0.5: (1 - e^-2) / (1 - e^-4)        = 0.864665 / 0.981684 = 0.880797
#   k=4,     u=0.2: (1 - e^-0.8) / (1 - e^-4)      = 0.550671 / 0.981684 = 0.560945
#   k=-0.35, u=0.5: (1 - e^0.175) / (1 - e^0.35)   = -0.191246 / -0.419068 = 0.456361
#   k=1,     u=0.5: (1 - e^-0.5) / (1 - e^-1)      = 0.393469 / 0.632121 = 0.622459
#   mean of s over 0–1 for k=4: (1 - 0.981684/4) / 0.981684 = 0.768657
@pytest.mark.parametrize(
    ("u", "k", "expected"),
    [
        (0.5, 0.0, 0.5),
        (0.3, 0.0, 0.3),
        (0.5, 4.0, 0.880797),
        (0.2, 4.0, 0.560945),
        (0.5, -0.35, 0.456361),
        (0.5, 1.0, 0.622459),
        (0.0, 4.0, 0.0),
        (1.0, -0.35, 1.0),
        (-1.0, 4.0, 0.0),  # clamped
        (2.0, 4.0, 1.0),
    ],
)
def test_shape_against_hand_computed_points(u, k, expected):
    assert curves.shape(u, k) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("curve", "u", "fraction"),
    [
        (AMD_ZEN, 0.0, 0.22),
        (AMD_ZEN, 0.5, 0.22 + 0.63 * 0.880797),  # 0.774902: most of full load by half load
        (AMD_ZEN, 1.0, 0.85),
        (INTEL_XEON, 0.0, 0.12),
        (INTEL_XEON, 0.5, 0.12 + 0.63 * 0.456361),  # 0.407508: a little below the line
        (INTEL_XEON, 1.0, 0.75),
        (GENERIC, 0.5, 0.15 + 0.65 * 0.622459),
    ],
)
def test_family_curves_against_hand_computed_points(curve, u, fraction):
    assert curve.fraction(u) == pytest.approx(fraction, abs=1e-6)


def test_zen_is_concave_and_xeon_near_linear():
    assert AMD_ZEN.shape(0.35) > 0.75  # most of the rise by a third of full load
    assert abs(INTEL_XEON.shape(0.5) - 0.5) < 0.05
    assert curves.mean_shape(0.0) == 0.5
    assert curves.mean_shape(4.0) == pytest.approx(0.768657, abs=1e-6)


def test_band_is_bounded_and_contains_the_central_value():
    for curve in (AMD_ZEN, INTEL_XEON, GENERIC, LINEAR):
        for u in LOADS:
            low, high = curve.band(u)
            assert 1 - curves.MAX_HALF_WIDTH - 1e-12 <= low <= 1.0 <= high
            assert high <= 1 + curves.MAX_HALF_WIDTH + 1e-12


def test_band_from_the_spans():
    # Intel Xeon at full load: 0.55/0.75 and 0.95/0.75, inside ±40 %.
    assert INTEL_XEON.band(1.0) == pytest.approx((0.55 / 0.75, 0.95 / 0.75))
    # At idle the spans (0.07–0.20 of 0.12) are wider than ±40 %: capped.
    assert INTEL_XEON.band(0.0) == pytest.approx((0.6, 1.4))
    assert LINEAR.band(0.5) == pytest.approx((0.6, 1.4))


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("AMD EPYC 7742 64-Core Processor", "amd-zen"),
        ("AMD EPYC", "amd-zen"),
        ("AMD EPYC-Rome Processor", "amd-zen"),
        ("AMD Ryzen 7 5800X 8-Core Processor", "amd-zen"),
        ("AMD Ryzen Threadripper 1950X 16-Core Processor", "amd-zen"),
        ("Intel(R) Xeon(R) CPU E5-2620 v3 @ 2.40GHz", "intel-xeon"),
        ("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", "intel-xeon"),
        ("Intel Xeon Processor (Icelake)", "intel-xeon"),
        ("AMD Opteron(tm) Processor 6278", "generic"),
        ("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", "generic"),
        ("ARM Neoverse-N1", "generic"),
        ("Apple M2", "generic"),
        ("", "generic"),
    ],
)
def test_cpu_family(name, family):
    assert cpu_family(name) == family


def test_fit_recovers_a_known_curvature():
    powers = [20 + 80 * curves.shape(u, 2.5) for u in LOADS]
    assert curves.fit_curvature(LOADS, powers) == pytest.approx(2.5, abs=0.011)
    linear = [10 + 5 * u for u in LOADS]
    assert curves.fit_curvature(LOADS, linear) == pytest.approx(0.0, abs=0.011)


def test_fit_rejects_a_curve_without_its_ends():
    with pytest.raises(ValueError, match="points at 0 and 1"):
        curves.fit_curvature([0.1, 0.5], [1.0, 2.0])
    with pytest.raises(ValueError):
        curves.fit_curvature([0.0, 1.0], [5.0, 5.0])


def _fitted(family: str) -> list[float]:
    with SPECPOWER.open(encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["family"] == family]
    return [curves.fit_curvature(LOADS, [float(row[c]) for c in COLUMNS]) for row in rows]


def test_intel_shape_is_the_median_of_the_specpower_results():
    fitted = _fitted("intel-xeon")
    assert len(fitted) >= 25
    assert INTEL_XEON.k == pytest.approx(statistics.median(fitted), abs=0.01)
    deciles = statistics.quantiles(fitted, n=10)
    assert INTEL_XEON.k_span == pytest.approx((deciles[0], deciles[-1]), abs=0.02)


def test_zen_shape_span_starts_at_the_least_concave_specpower_results():
    fitted = _fitted("amd-zen")
    assert len(fitted) >= 5
    assert AMD_ZEN.k_span[0] == pytest.approx(statistics.quantiles(fitted, n=10)[0], abs=0.02)
    assert AMD_ZEN.k > max(fitted)  # package power is more concave than the wall's


def test_model_watts_for_a_bare_metal_epyc():
    model = cpu_power.cpu_power_model("AMD EPYC 7742 64-Core Processor", 128, is_vm=False)
    # TDP 225 W: idle 0.22 × 225 = 49.5 W, full 0.85 × 225 = 191.25 W.
    assert model.idle_w == pytest.approx(49.5)
    assert model.max_w == pytest.approx(191.25)
    assert model.power_w(0.5) == pytest.approx(49.5 + 141.75 * 0.880797, abs=1e-3)
    low, high = model.power_range_w(1.0)
    assert (low, high) == pytest.approx((0.65 * 225, 1.0 * 225))


def test_sockets_and_given_tdp():
    two = cpu_power.cpu_power_model("Intel Xeon Mystery", 1, False, sockets=2, tdp_w=100.0)
    assert (two.idle_w, two.max_w) == pytest.approx((24.0, 150.0))
    assert "TDP 100 W given × 2 packages" in two.source
    assert two.method == cpu_power.METHOD_TDP
    # A given TDP is used on a virtual machine too.
    vm = cpu_power.cpu_power_model("AMD EPYC", 8, True, tdp_w=240.0, threads_per_package=96)
    assert vm.max_w == pytest.approx(240.0 * 8 / 96 * 0.85)


@pytest.mark.parametrize(
    "kwargs",
    [{"sockets": 0}, {"sockets": 1.5}, {"threads_per_package": 0}, {"tdp_w": -5.0}],
)
def test_bad_package_figures(kwargs):
    with pytest.raises(ValueError, match="must be"):
        cpu_power.cpu_power_model("AMD EPYC 7742", 4, False, **kwargs)


def test_energy_of_a_tick_is_the_curve_at_its_mean_load():
    model = cpu_power.cpu_power_model("AMD EPYC 7742", 4, is_vm=False, threads_per_package=128)
    energy = model.energy_j(2.0, busy_cpu_s=4.0)  # 4 CPU-seconds over 2 s on 4 CPUs: 50 %
    assert energy.central_j == pytest.approx(2.0 * model.power_w(0.5))
    low_w, high_w = model.power_range_w(0.5)
    assert (energy.low_j, energy.high_j) == pytest.approx((2 * low_w, 2 * high_w))
    assert model.energy_j(1.0, busy_cpu_s=100.0).central_j == pytest.approx(model.max_w)
    assert model.energy_j(0.0, 1.0).central_j == 0.0


def test_wall_per_tdp_is_the_median_of_the_specpower_results():
    ratios = []
    with SPECPOWER.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            found = cpu_power.find_tdp(row["cpu"])
            if found:
                ratios.append(float(row["w_100"]) / (found[1] * int(row["chips"])))
    assert len(ratios) >= 30
    assert cpu_power.WALL_PER_TDP == pytest.approx(statistics.median(ratios), abs=0.005)


def test_vm_with_a_known_host_package_shares_its_tdp():
    # Azure names the cores: 64-Core → 128 threads per package; TDP 280 W.
    model = cpu_power.cpu_power_model("AMD EPYC 7763 64-Core Processor", 8, True)
    assert model.method == cpu_power.METHOD_VM_TDP
    assert model.max_w == pytest.approx(280.0 * 8 / 128 * AMD_ZEN.full)
    assert "8 of 128 threads" in model.source
    # Intel names do not give the cores: CCF's watts per vCPU unless the size is given.
    name = "Intel(R) Xeon(R) Platinum 8180 CPU @ 2.50GHz"
    assert cpu_power.cpu_power_model(name, 4, True).method == cpu_power.METHOD_VCPU
    given = cpu_power.cpu_power_model(name, 4, True, vm_threads_per_package=56)
    assert given.max_w == pytest.approx(205.0 * 4 / 56 * INTEL_XEON.full)
    # The guest's own package size (threads_per_package from its cpuinfo) is not used.
    guest = cpu_power.cpu_power_model(name, 4, True, threads_per_package=4)
    assert guest.method == cpu_power.METHOD_VCPU


def test_the_quick_tdp_lookup_finds_what_the_whole_table_would():
    """find_tdp reduces only the rows that can match; on every listed name (and the ways
    /proc/cpuinfo writes them) it must agree with matching against the whole table."""
    import re

    from carbon_magic.cpu_model import identify

    table = identify.tdp_table()

    def whole_table(name: str):
        key = identify._tdp_key(name)
        if not key:
            return None
        if key in table:
            return table[key]
        padded = f" {key} "
        found = [
            listed
            for listed in table
            if " " in listed and re.search(r"\d", listed) and f" {listed} " in padded
        ]
        return table[max(found, key=len)] if found else None

    names = [name for _, name, _ in identify._tdp_rows()]
    variants = [f"Intel(R) {name}(R) CPU @ 2.30GHz" for name in names[::7]]
    variants += [f"{name} 64-Core Processor" for name in names[::11]]
    variants += ["AMD EPYC", "ARM Neoverse-N1", "QEMU Virtual CPU version 2.5+", ""]
    for name in names + variants:
        assert identify.find_tdp(name) == whole_table(name), name
