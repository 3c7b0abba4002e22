"""Load curves by family against hand-computed points; ranges; fitting and its rebuild;
fallbacks for CPUs without a TDP; the model's watts."""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from carbon_magic.cpu_model import curves, estimate, fit, identify
from carbon_magic.cpu_model import power as cpu_power
from carbon_magic.cpu_model.curves import LINEAR, LoadCurve, families
from carbon_magic.cpu_model.identify import (
    base_ghz_from_name,
    cloud_spec,
    cores_from_name,
    cpu_family,
    find_tdp,
    tdp_per_core,
)

AMD_ZEN = families()["amd-zen"]
INTEL_XEON = families()["intel-xeon"]
GENERIC = families()["generic"]
ROOT = Path(__file__).parents[1]

SPECPOWER = ROOT / "benchmarks" / "data" / "specpower_load_curves.csv"
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


# A curve with figures of its own, so the points below are worked by hand whatever the
# packaged fit says: idle 0.1, full 0.9 at 16 cores, +0.1 per doubling of cores, k = 4.
HAND = LoadCurve(
    name="hand",
    label="hand",
    idle=0.1,
    full=0.9,
    k=4.0,
    band=((0.5, 2.0), (0.6, 1.5), (0.8, 1.25)),
    basis="worked by hand",
    cores_slope=0.1,
    reference_cores=16,
)


@pytest.mark.parametrize(
    ("u", "cores", "fraction"),
    [
        (0.0, None, 0.1),
        (0.5, None, 0.1 + 0.8 * 0.880797),  # 0.804638: most of full load by half load
        (1.0, None, 0.9),
        (1.0, 64, 1.1),  # 0.9 + 0.1 · log2(64 / 16)
        (1.0, 4, 0.7),  # 0.9 − 0.1 · 2
        (0.2, 32, 0.1 + 0.9 * 0.560945),  # full 1.0 at 32 cores
        (1.0, 100_000, 1.3),  # kept within what measured CPUs span
        (1.0, 1, 0.5),
    ],
)
def test_curve_against_hand_computed_points(u, cores, fraction):
    assert HAND.fraction(u, cores) == pytest.approx(fraction, abs=1e-6)


def test_band_is_interpolated_between_its_levels():
    assert HAND.band_at(0.0) == (0.5, 2.0)
    assert HAND.band_at(0.25) == pytest.approx((0.55, 1.75))
    assert HAND.band_at(1.0) == (0.8, 1.25)
    assert HAND.band_at(7.0) == (0.8, 1.25)  # clamped
    wider = HAND.widened(0.5, 2.0, "a guess")
    assert wider.band_at(1.0) == pytest.approx((0.4, 2.5))
    assert "a guess" in wider.basis
    assert LINEAR.band_at(0.5) == (0.6, 1.4)


def test_packaged_families_are_concave_with_idle_and_full_in_the_measured_bands():
    for curve in (AMD_ZEN, INTEL_XEON, GENERIC):
        assert curve.k > 0  # package power rises fastest at low load
        assert 0.05 <= curve.idle <= 0.3
        assert 0.6 <= curve.full_for(24) <= 1.3
        for u in LOADS:
            low, high = curve.band_at(u)
            assert 0 < low <= 1.0 <= high  # the low end is never 0
    assert AMD_ZEN.idle > INTEL_XEON.idle  # the I/O die stays awake
    # An EPYC holds its package to the TDP; an Intel host may run above it.
    assert AMD_ZEN.full_for(128) == 1.0
    assert INTEL_XEON.full_for(64) == pytest.approx(INTEL_XEON.full + 2 * INTEL_XEON.cores_slope)
    assert INTEL_XEON.full_for(64) > 1.0
    assert curves.mean_shape(0.0) == 0.5
    assert curves.mean_shape(4.0) == pytest.approx(0.768657, abs=1e-6)


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


def _sweep(cpu: str, k: float, idle: float = 20.0, full: float = 100.0, **kw) -> fit.Sweep:
    points = tuple((u, idle + (full - idle) * curves.shape(u, k)) for u in LOADS)
    return fit.Sweep(cpu, "test", "duty", kw.get("sockets", 1), kw.get("tdp", 100.0),
                     kw.get("cores"), points)  # fmt: skip


def test_fit_recovers_a_known_curvature():
    assert fit.fit_k(_sweep("Intel Xeon X", 2.5)) == pytest.approx(2.5, abs=0.051)
    assert fit.fit_k(_sweep("Intel Xeon X", 0.0)) == pytest.approx(0.0, abs=0.051)


def test_fit_takes_medians_and_the_cores_slope():
    sweeps = [
        _sweep("Intel Xeon A", 1.0, 10, 60, cores=4),  # full 0.6 at 4 cores
        _sweep("Intel Xeon B", 2.0, 10, 80, cores=16),  # 0.8 at 16
        _sweep("AMD EPYC C", 3.0, 20, 100, cores=64),  # 1.0 at 64
    ]
    fitted = fit.fit(sweeps, use_cores=True)
    # full = 0.8 + 0.1 · log2(cores / 16) fits all three exactly.
    assert fitted["intel-xeon"].cores_slope == pytest.approx(0.1)
    assert fitted["intel-xeon"].full == pytest.approx(0.8)
    assert fitted["intel-xeon"].k == pytest.approx(2.0, abs=0.051)  # pooled median
    assert fitted["intel-xeon"].idle == pytest.approx(0.1)
    assert fitted["amd-zen"].idle == pytest.approx(0.2)
    plain = fit.fit(sweeps, use_cores=False, family_shape=True)
    assert plain["intel-xeon"].full == pytest.approx(0.7)  # median of 0.6 and 0.8
    assert plain["intel-xeon"].cores_slope == 0.0


def test_a_negative_cores_slope_is_not_believed():
    sweeps = [
        _sweep("Intel Xeon A", 1.0, 10, 90, cores=4),
        _sweep("Intel Xeon B", 1.0, 10, 70, cores=16),
        _sweep("Intel Xeon C", 1.0, 10, 50, cores=64),
    ]
    assert fit.fit(sweeps, use_cores=True)["intel-xeon"].cores_slope == 0.0


def test_leave_one_out_judges_each_cpu_by_the_others():
    sweeps = [
        _sweep("Intel Xeon A", 2.0, 10, 60),
        _sweep("Intel Xeon B", 2.0, 10, 80),
        _sweep("Intel Xeon C", 2.0, 10, 100),
    ]
    results = {r.sweep.cpu: r for r in fit.leave_one_cpu_out(sweeps, use_cores=False)}
    # Without B: full = median(0.6, 1.0) = 0.8, exactly B's curve.
    assert results["Intel Xeon B"].energy_error == pytest.approx(0.0, abs=0.005)
    # Without A: full 0.9 against A's 0.6, same idle and shape.
    mean = curves.mean_shape(2.0)
    expected = (0.1 + 0.8 * mean) / (0.1 + 0.5 * mean) - 1
    assert results["Intel Xeon A"].energy_error == pytest.approx(expected, abs=0.01)
    band = fit.band_from(list(results.values()), 0.0)
    assert all(low <= 1.0 <= high for low, high in band)
    assert all(fit.inside(r, band) for r in results.values())


def test_the_range_margin_widens_every_load_level_alike():
    sweeps = [
        _sweep("Intel Xeon A", 2.0, 10, 60),
        _sweep("Intel Xeon B", 2.0, 10, 80),
        _sweep("Intel Xeon C", 2.0, 10, 100),
    ]
    results = fit.leave_one_cpu_out(sweeps, use_cores=False)
    plain = fit.band_from(results, 0.0)
    wide = fit.band_from(results, 0.0, 0.3)
    # e^-0.3 = 0.740818, e^0.3 = 1.349859: each end moves by the same factor in log
    # space, whatever its own width (a power of the ends would leave a 1.0 end at 1.0).
    for (low, high), (wide_low, wide_high) in zip(plain, wide, strict=True):
        assert wide_low == pytest.approx(low * 0.740818, abs=0.002)
        assert wide_high == pytest.approx(high * 1.349859, abs=0.002)
    assert fit.band_width(wide) == pytest.approx(fit.band_width(plain) + 0.6, abs=0.01)
    q, margin, coverage = fit.choose_band(results)
    assert coverage >= fit.COVERAGE_GOAL
    # The narrowest band that covers: none of the tried bands narrower than it covers.
    chosen_width = fit.band_width(fit.band_from(results, q, margin))
    for other_q in fit.BAND_QUANTILES:
        for other_margin in fit.BAND_MARGINS:
            if fit.band_width(fit.band_from(results, other_q, other_margin)) < chosen_width:
                assert fit.held_out_coverage(results, other_q, other_margin) < fit.COVERAGE_GOAL


def test_the_rebuild_reproduces_the_packaged_curves():
    script = ROOT / "scripts" / "build_cpu_curves.py"
    done = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "match" in done.stdout


def test_the_rebuild_notices_a_changed_sweep(tmp_path):
    rows = (ROOT / "benchmarks" / "data" / "package_power_sweeps.csv").read_text().splitlines()
    changed = [rows[0]] + [line.replace(",15.91", ",25.91") for line in rows[1:]]
    sweeps = tmp_path / "sweeps.csv"
    sweeps.write_text("\n".join(changed) + "\n")
    script = ROOT / "scripts" / "build_cpu_curves.py"
    done = subprocess.run(
        [sys.executable, str(script), "--check", "--sweeps", str(sweeps)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "out of date" in done.stdout


def test_names_give_cores_frequency_and_cloud_figures():
    assert cores_from_name("AMD EPYC 7763 64-Core Processor") == 64
    assert cores_from_name("Intel(R) Xeon(R) Gold 6122 CPU @ 1.80GHz") is None
    assert base_ghz_from_name("Intel(R) Xeon(R) Gold 6122 CPU @ 1.80GHz") == 1.8
    assert base_ghz_from_name("AMD EPYC 7R13 Processor") is None
    spec = cloud_spec("Intel(R) Xeon(R) Platinum 8252C CPU @ 3.80GHz")
    assert spec is not None and (spec["tdp_w"], spec["cores"]) == ("150", "12")
    assert cloud_spec("AMD EPYC 9R14 Processor")["name"] == "AMD EPYC 9R14"
    assert cloud_spec("Intel(R) Xeon(R) Gold 6122") is None
    median, lowest, highest = tdp_per_core("amd-zen")
    assert lowest <= median <= highest
    assert median == pytest.approx(statistics.median([225 / 48, 280 / 48, 360 / 96]))


def test_model_watts_for_a_bare_metal_epyc():
    model = cpu_power.cpu_power_model("AMD EPYC 7742 64-Core Processor", 128, is_vm=False)
    # TDP 225 W, 64 cores from the name: full = full₁₆ + slope · log2(64 / 16).
    full = AMD_ZEN.full + 2 * AMD_ZEN.cores_slope
    assert model.idle_w == pytest.approx(AMD_ZEN.idle * 225)
    assert model.max_w == pytest.approx(min(1.0, full) * 225)  # PPT: at most the TDP
    rise = model.max_w - model.idle_w
    assert model.power_w(0.5) == pytest.approx(
        model.idle_w + rise * curves.shape(0.5, AMD_ZEN.k), abs=1e-6
    )
    low, high = model.power_range_w(1.0)
    band_low, band_high = AMD_ZEN.band_at(1.0)
    assert (low, high) == pytest.approx((band_low * model.max_w, band_high * model.max_w))
    features = dict((name, value) for name, value, _ in model.features)
    assert features["cores per package"] == "64"
    assert features["TDP"] == "225 W"


def test_sockets_and_given_tdp():
    two = cpu_power.cpu_power_model("Intel Xeon Mystery", 1, False, sockets=2, tdp_w=100.0)
    full = INTEL_XEON.full  # the cores of this name are unknown
    assert (two.idle_w, two.max_w) == pytest.approx((200 * INTEL_XEON.idle, 200 * full))
    assert "TDP 100 W given × 2 packages" in two.source
    assert two.method == estimate.METHOD_TDP
    # A given TDP is used on a virtual machine too.
    vm = cpu_power.cpu_power_model("AMD EPYC", 8, True, tdp_w=240.0, threads_per_package=96)
    assert vm.max_w == pytest.approx(240.0 * 8 / 96 * AMD_ZEN.full)


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
            found = find_tdp(row["cpu"])
            if found:
                ratios.append(float(row["w_100"]) / (found[1] * int(row["chips"])))
    assert len(ratios) >= 30
    assert estimate.WALL_PER_TDP == pytest.approx(statistics.median(ratios), abs=0.005)


def test_ccf_watts_per_vcpu_over_the_cloud_hosts_tdp_per_thread():
    # CCF AWS full-load W per vCPU / (TDP / threads) for the 12 rows of the cloud CPU
    # table, by hand: 8151 4.1934/10 = 0.419, 9R14 1.9456/3.75 = 0.519, 7R32
    # 1.6930/2.917 = 0.580, 8124M 4.1934/6.667 = 0.629, 8252C 3.9673/6.25 = 0.635,
    # 8275CL 3.9673/5 = 0.793, 7R13 1.9456/2.344 = 0.830, 8175M 4.1934/5 = 0.839,
    # 8375C 3.9673/4.6875 = 0.846, 8259CL 3.9673/4.375 = 0.907, E5-2686 v4
    # 3.6853/4.028 = 0.915, 8488C 3.9673/3.646 = 1.088. Median (0.793 + 0.830) / 2.
    median, lowest, highest = identify.ccf_per_tdp_per_thread()
    assert median == pytest.approx(0.8118, abs=0.001)
    assert (lowest, highest) == pytest.approx((0.4193, 1.0882), abs=0.001)
    # The per-vCPU path divides CCF's figure by it and widens the range by its spread.
    model = cpu_power.cpu_power_model("Intel(R) Xeon(R) Platinum 8180 CPU @ 2.50GHz", 4, True)
    skylake_w = identify.coefficient_tables()["aws"]["Skylake"][1]
    assert model.max_w == pytest.approx(4 * skylake_w / median * INTEL_XEON.full)
    low, high = model.curve.band_at(1.0)
    packaged_low, packaged_high = INTEL_XEON.band_at(1.0)
    assert low == pytest.approx(packaged_low * median / highest)
    assert high == pytest.approx(packaged_high * median / lowest)


def test_vm_with_a_known_host_package_shares_its_tdp():
    # Azure names the cores: 64-Core → 128 threads per package; TDP 280 W.
    model = cpu_power.cpu_power_model("AMD EPYC 7763 64-Core Processor", 8, True)
    assert model.method == estimate.METHOD_VM_TDP
    assert model.max_w == pytest.approx(280.0 * 8 / 128 * AMD_ZEN.full_for(64))
    assert "8 of 128 threads" in model.source
    # Intel names do not give the cores: CCF's watts per vCPU unless the size is given.
    name = "Intel(R) Xeon(R) Platinum 8180 CPU @ 2.50GHz"
    assert cpu_power.cpu_power_model(name, 4, True).method == estimate.METHOD_VCPU
    given = cpu_power.cpu_power_model(name, 4, True, vm_threads_per_package=56)
    assert given.max_w == pytest.approx(205.0 * 4 / 56 * INTEL_XEON.full_for(28))
    # The guest's own package size (threads_per_package from its cpuinfo) is not used.
    guest = cpu_power.cpu_power_model(name, 4, True, threads_per_package=4)
    assert guest.method == estimate.METHOD_VCPU


def test_the_quick_tdp_lookup_finds_what_the_whole_table_would():
    """find_tdp reduces only the rows that can match; on every listed name (and the ways
    /proc/cpuinfo writes them) it must agree with matching against the whole table."""
    import re

    from carbon_magic.cpu_model import identify

    table = identify.tdp_table()

    def whole_table(name: str):
        key = identify.tdp_key(name)
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

    names = [name for _, name, _ in identify.tdp_rows()]
    variants = [f"Intel(R) {name}(R) CPU @ 2.30GHz" for name in names[::7]]
    variants += [f"{name} 64-Core Processor" for name in names[::11]]
    variants += ["AMD EPYC", "ARM Neoverse-N1", "QEMU Virtual CPU version 2.5+", ""]
    for name in names + variants:
        assert find_tdp(name) == whole_table(name), name
