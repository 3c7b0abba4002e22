import pytest

from carbon_magic import accounting


def test_linear_model_matches_analytic_integral():
    # 2 CPUs, idle 10 W, max 50 W; 10 s with one CPU fully busy: u = 0.5 → 30 W → 300 J.
    assert accounting.model_cpu_energy_j(10, 50, 10.0, 10.0, 2) == pytest.approx(300.0)
    # Utilisation varying over time only matters through total busy seconds.
    parts = accounting.model_cpu_energy_j(10, 50, 4.0, 0.0, 2) + accounting.model_cpu_energy_j(
        10, 50, 6.0, 10.0, 2
    )
    assert parts == pytest.approx(accounting.model_cpu_energy_j(10, 50, 10.0, 10.0, 2))


def test_linear_model_clamps_overshoot_and_empty_windows():
    assert accounting.model_cpu_energy_j(10, 50, 1.0, 5.0, 2) == pytest.approx(50.0)
    assert accounting.model_cpu_energy_j(10, 50, 0.0, 1.0, 2) == 0.0
    assert accounting.model_cpu_energy_j(10, 50, 1.0, -1.0, 2) == pytest.approx(10.0)


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
