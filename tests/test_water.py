"""Local water: on-site WUE (setting, cloud provider, none) plus the grid's water
intensity from EcoLogits' electricity mixes, with ranges; CodeCarbon's columns."""

from __future__ import annotations

import sys

import pytest

from carbon_magic.engine.water import (
    NO_DATA_CENTRE,
    ON_SITE_WUE,
    grid_water_intensity,
    water_factors,
)
from carbon_magic.reports.export_codecarbon import codecarbon_record
from carbon_magic.settings import parse_setting

ecologits_mixes = pytest.importorskip("ecologits.electricity_mix_repository")


def test_the_grid_water_comes_from_ecologits_for_the_country():
    litres, source = grid_water_intensity("FR")
    assert litres == ecologits_mixes.electricity_mixes.find_electricity_mix(zone="FRA").wue
    assert "FRA" in source and "EcoLogits" in source
    world, where = grid_water_intensity(None)
    assert world == ecologits_mixes.electricity_mixes.find_electricity_mix(zone="WOR").wue
    assert "world average" in where


def test_on_site_wue_from_the_setting_the_cloud_provider_or_none():
    assert water_factors({"wue": 1.1}).wue_l_per_kwh == 1.1
    aws = water_factors({"cloud_region": "aws:eu-west-3"})
    assert aws.wue_l_per_kwh == ON_SITE_WUE["aws"][0] and aws.wue_range == (0.12, 0.18)
    assert "AWS" in aws.wue_source
    gcp = water_factors({"cloud_region": "gcp:europe-west1"})
    assert gcp.wue_l_per_kwh == 0.0 and "gcp publishes no WUE" in gcp.wue_source
    home = water_factors({"country": "DE"})
    assert home.wue_l_per_kwh == 0.0 and home.wue_source == NO_DATA_CENTRE


def test_water_adds_the_on_site_and_grid_parts_with_a_range():
    factors = water_factors({"cloud_region": "azure:westeurope", "country": "NL"})
    grid = factors.grid_l_per_kwh
    assert factors.litres(2.0, 2.4) == pytest.approx(0.30 * 2.0 + grid * 2.4)
    low, high = factors.litres_range(2.0, (2.0, 3.0), 2.4)
    assert low == pytest.approx(0.30 * 2.0 * 2.0 / 2.4 + grid * 2.0)
    assert high == pytest.approx(0.49 * 2.0 * 3.0 / 2.4 + grid * 3.0)
    assert low < factors.litres(2.0, 2.4) < high


def test_without_ecologits_only_the_on_site_part_counts(monkeypatch):
    monkeypatch.setitem(sys.modules, "ecologits.electricity_mix_repository", None)
    factors = water_factors({"wue": 0.5})
    assert factors.grid_l_per_kwh is None and "not installed" in factors.grid_source
    assert factors.litres(2.0, 2.4) == pytest.approx(1.0)


def test_codecarbon_columns_carry_wue_and_water_consumed():
    row = {
        "cpu_j": 3.6e6,
        "gpu_j": 0.0,
        "ram_j": 0.0,
        "energy_kwh": 1.2,
        "duration_s": 10.0,
        "pue": 1.2,
        "settings_json": '{"cloud_region": "aws:us-east-1", "wue": null, "country": "US"}',
    }
    record = codecarbon_record(row)
    grid, _ = grid_water_intensity("US")
    assert record["wue"] == 0.12
    assert record["water_consumed"] == pytest.approx(0.12 * 1.0 + grid * 1.2)


def test_a_bad_wue_is_refused_with_the_range():
    with pytest.raises(ValueError, match="from 0 to 20"):
        parse_setting("wue", "-1")
    assert parse_setting("wue", "auto") is None
