import pytest

from carbon_magic.cpu_model import power as cpu_power
from carbon_magic.engine import accounting
from carbon_magic.vocabulary import COMPONENTS


def _user_linear_model():
    # 2 CPUs with idle and full-load watts set by the user: a straight line, 10 W → 50 W.
    return cpu_power.cpu_power_model("any", 2, True, idle_override_w=10, max_override_w=50)


def test_linear_model_matches_analytic_integral():
    model = _user_linear_model()
    # 10 s with one CPU fully busy: u = 0.5 → 30 W → 300 J.
    assert model.energy_j(10.0, 10.0).central_j == pytest.approx(300.0)
    # On a straight line, utilisation varying over time only matters through total busy seconds.
    parts = model.energy_j(4.0, 0.0).central_j + model.energy_j(6.0, 10.0).central_j
    assert parts == pytest.approx(model.energy_j(10.0, 10.0).central_j)


def test_linear_model_clamps_overshoot_and_empty_windows():
    model = _user_linear_model()
    assert model.energy_j(1.0, 5.0).central_j == pytest.approx(50.0)
    assert model.energy_j(0.0, 1.0).central_j == 0.0
    assert model.energy_j(1.0, -1.0).central_j == pytest.approx(10.0)


def test_cpu_share():
    assert accounting.cpu_share(1.0, 4.0) == 0.25
    assert accounting.cpu_share(5.0, 4.0) == 1.0
    assert accounting.cpu_share(1.0, 0.0) == 0.0


def test_emissions_pue_and_units():
    assert accounting.joules_to_kwh(3.6e6) == 1.0
    assert accounting.facility_energy_j(100.0, 1.5) == 150.0
    assert accounting.emissions_g(3.6e6, 56.0) == pytest.approx(56.0)


def test_embodied_rate():
    server, gpus = accounting.embodied_rate_g_per_s(1000, 150, 2, 4)
    seconds = 4 * 365.25 * 24 * 3600
    assert server == pytest.approx(1e6 / seconds)
    assert gpus == pytest.approx(2 * 150e3 / seconds)


def test_ranges_widen_with_method_uncertainty():
    energy = {"cpu": 100.0, "ram": 10.0}
    low, high = accounting.energy_range_j(energy, {"cpu": "measured", "ram": "assumed"})
    assert low == pytest.approx(90 + 5) and high == pytest.approx(110 + 15)
    low_m, high_m = accounting.energy_range_j(energy, {"cpu": "modelled", "ram": "assumed"})
    assert low_m < low and high_m > high
    low_g, high_g = accounting.emissions_range_g({"cpu": (7.0, 13.0)}, {"cpu": "modelled"})
    assert low_g == pytest.approx(7.0 * 0.6) and high_g == pytest.approx(13.0 * 1.4)


# -- attribution, with plain numbers ------------------------------------------------


def test_attribute_tick_charges_machine_everything_and_process_its_fractions():
    ticks = [
        accounting.DeviceTick("cpu", "package-0", accounting.method_range(30.0, "measured"), 0.25),
        accounting.DeviceTick("cpu", "package-1", accounting.method_range(20.0, "measured"), 0.25),
        accounting.DeviceTick("ram", "dram-0", accounting.method_range(5.0, "measured"), 0.25),
        accounting.DeviceTick("gpu", "nvidia:0", accounting.method_range(200.0, "measured"), 0.0),
        accounting.DeviceTick("ram", None, accounting.EnergyRange(2.0, 1.0, 3.0), 0.5),
    ]
    result = accounting.attribute_tick(ticks, {"machine": 1.0, "process": 0.1}, COMPONENTS)
    machine, process = result["machine"], result["process"]
    assert machine.energy["cpu"].central_j == pytest.approx(50.0)
    assert machine.energy["cpu"].low_j == pytest.approx(45.0)
    assert machine.energy["ram"].central_j == pytest.approx(7.0)
    assert machine.energy["gpu"].high_j == pytest.approx(220.0)
    assert process.energy["cpu"].central_j == pytest.approx(12.5)
    assert process.energy["ram"].central_j == pytest.approx(1.25 + 1.0)
    assert process.energy["ram"].low_j == pytest.approx(1.125 + 0.5)
    assert process.energy["gpu"].central_j == 0.0
    assert machine.devices_j == pytest.approx(
        {"package-0": 30.0, "package-1": 20.0, "dram-0": 5.0, "nvidia:0": 200.0}
    )
    assert process.devices_j["dram-0"] == pytest.approx(1.25)
    assert (machine.embodied_g, process.embodied_g) == (1.0, 0.1)


def test_shared_gpu_is_charged_its_sm_share_above_idle():
    # 10 s at 250 W with 50 W idle; the kernel has 30 % of the SM utilisation.
    fraction = accounting.gpu_process_fraction(2500.0, 10.0, True, 0.3, 50.0)
    assert fraction * 2500.0 == pytest.approx(0.3 * (2500.0 - 500.0))
    assert accounting.gpu_process_fraction(2500.0, 10.0, True, None, 50.0) == 1.0
    assert accounting.gpu_process_fraction(2500.0, 10.0, False, 0.3, 50.0) == 0.0
    # Power at or below the idle estimate: nothing above idle to share.
    assert accounting.gpu_process_fraction(400.0, 10.0, True, 0.9, 50.0) == 0.0


def test_memory_share_and_embodied_tick():
    assert accounting.memory_share(4e9, 16e9) == pytest.approx(0.25)
    assert accounting.memory_share(32e9, 16e9) == 1.0
    assert accounting.memory_share(1e9, 0) == 0.0
    grams = accounting.embodied_tick_g(10.0, 0.01, 0.002, 4, 1, 0.5)
    assert grams["machine"] == pytest.approx((0.01 + 0.008) * 10)
    assert grams["process"] == pytest.approx((0.005 + 0.002) * 10)


def test_method_range_uses_the_method_uncertainty():
    energy = accounting.method_range(100.0, "modelled")
    assert (energy.low_j, energy.high_j) == pytest.approx((60.0, 140.0))
    assert accounting.method_range(100.0, "unknown-method").high_j == pytest.approx(150.0)
