import json
import re
import time

import pytest

from carbon_magic.reports.card import model_card, parse_cells
from tests.test_report import make_row

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML is optional
    yaml = None


def load_block(text):
    """The co2_eq_emissions mapping: with PyYAML when present, else a strict tiny reader."""
    if yaml is not None:
        return yaml.safe_load(text)["co2_eq_emissions"]
    lines = text.splitlines()
    assert lines[0] == "co2_eq_emissions:"
    block = {}
    for line in lines[1:]:
        match = re.fullmatch(r"  ([a-z_]+): (.*)", line)
        assert match, line
        key, value = match.groups()
        block[key] = json.loads(value)  # numbers and double-quoted strings
    return block


HARDWARE = {"cpu_model": "AMD EPYC 9654", "n_cpus": 96, "gpus": {"gpu0": "NVIDIA H200"}}


def rows():
    extra = {
        "hardware_json": json.dumps(HARDWARE),
        "settings_json": json.dumps({"country": "FR"}),
    }
    return [
        make_row(1, 1.0, **extra),
        make_row(2, 4.0, **extra),
        make_row(3, 2.0, **extra, methods_json=json.dumps({"cpu": "modelled", "ram": "assumed"})),
        make_row(5, 8.0, **extra),
    ]


@pytest.mark.parametrize(
    "spec, expected",
    [("3", {3}), ("3,5-8", {3, 5, 6, 7, 8}), (" 1 , 4 - 5 ", {1, 4, 5}), ("2-2,2", {2})],
)
def test_parse_cells(spec, expected):
    assert parse_cells(spec) == expected


@pytest.mark.parametrize("spec", ["", "a", "1,,2", "3-", "-3", "5-3", "1;2", "1.5"])
def test_parse_cells_refuses_with_an_example(spec):
    with pytest.raises(ValueError, match=r"3,5-8|backwards"):
        parse_cells(spec)


def test_card_block_has_the_hugging_face_fields():
    card = model_card(rows(), training_type="fine-tuning")
    block = load_block(card.yaml)
    assert block["emissions"] == pytest.approx(15.0)
    assert isinstance(block["emissions"], (int, float))
    assert block["source"].startswith("carbon_magic 0.1.0")
    assert "static table: FR 2023 (Ember)" in block["source"]
    assert block["training_type"] == "fine-tuning"
    assert block["geographical_location"] == "France"
    assert block["hardware_used"] == "1 x NVIDIA H200, AMD EPYC 9654 (96 CPUs)"
    assert card.n_cells == 4
    assert card.emissions_range_g == pytest.approx((15 * 0.6, 15 * 1.5))


def test_selected_cells_only():
    card = model_card(rows(), cells="2-3")
    assert card.n_cells == 2
    assert load_block(card.yaml)["emissions"] == pytest.approx(6.0)
    assert "(execution counts 2-3)" in card.statement
    assert model_card(rows(), cells=[1, 5]).emissions_g == pytest.approx(9.0)


def test_cells_matching_nothing_name_what_was_recorded():
    with pytest.raises(ValueError, match=r"recorded: 1-3, 5"):
        model_card(rows(), cells="4,9")
    with pytest.raises(ValueError):
        model_card(rows(), cells="four")
    with pytest.raises(ValueError, match="no recorded cells"):
        model_card([])


def test_free_text_survives_yaml_quoting():
    hardware = 'rig "A": 2 × GPU\\n # not a comment\nsecond line'
    card = model_card(
        rows(), hardware=hardware, location="Île-de-France: Paris", training_type="pre-training"
    )
    block = load_block(card.yaml)
    assert block["hardware_used"] == hardware
    assert block["geographical_location"] == "Île-de-France: Paris"
    assert block["training_type"] == "pre-training"


@pytest.mark.parametrize("grams, expected", [(0.0000423, 0.000042), (1234.5, 1200), (0.0, 0)])
def test_emissions_are_plain_numbers_with_two_significant_figures(grams, expected):
    card = model_card([make_row(1, grams)])
    line = next(
        line for line in card.yaml.splitlines() if "emissions:" in line and "co2" not in line
    )
    assert "e" not in line.split(":")[1]  # no exponent: YAML 1.1 would read 4e-05 as a string
    assert load_block(card.yaml)["emissions"] == pytest.approx(expected)


def test_hardware_from_a_tracker_summary():
    hardware = {"cpu_model": "AMD EPYC", "n_cpus": 2.0, "ram_gb": 25.3, "gpus": {}}
    block = load_block(model_card([make_row(1, 1.0)], hardware=hardware).yaml)
    assert block["hardware_used"] == "AMD EPYC (2 CPUs)"


def test_hardware_lists_apple_gpus_not_the_neural_engine():
    gpus = {"apple:gpu": "Apple M3 GPU", "apple:ane": "Apple M3 Neural Engine"}
    hardware = {"cpu_model": "Apple M3", "n_cpus": 8, "gpus": gpus}
    block = load_block(model_card([make_row(1, 1.0)], hardware=hardware).yaml)
    assert block["hardware_used"] == "1 x Apple M3 GPU, Apple M3 (8 CPUs)"
    only_ane = {"cpu_model": "Apple M3", "n_cpus": 8, "gpus": {"apple:ane": gpus["apple:ane"]}}
    block = load_block(model_card([make_row(1, 1.0)], hardware=only_ane).yaml)
    assert block["hardware_used"] == "Apple M3 (8 CPUs)"


def test_cloud_region_names_its_place():
    row = make_row(1, 1.0, settings_json=json.dumps({"cloud_region": "aws:eu-west-3"}))
    block = load_block(model_card([row]).yaml)
    assert block["geographical_location"].startswith("aws:eu-west-3 (")


def test_unknown_fields_are_left_out():
    block = load_block(model_card([make_row(1, 1.0)]).yaml)
    assert set(block) == {"emissions", "source"}


def test_statement_says_energy_location_source_method_range_and_embodied():
    card = model_card(rows(), location="France")
    text = card.statement
    assert "4 notebook cells" in text
    assert "Wh of electricity" in text and "(PUE 1)" in text
    assert "for France" in text
    assert "static table: FR 2023 (Ember)" in text
    assert "≈ 15 g (9 g–22 g) CO2e" in text
    assert (
        "CPU energy was measured with hardware energy counters or modelled from utilisation" in text
    )
    assert "memory energy was assumed" in text
    assert "embodied" in text and "not included above" in text
    assert "carbon_magic 0.1.0" in text


def test_reprs():
    card = model_card(rows())
    markdown = card._repr_markdown_()
    assert markdown.startswith("```yaml\nco2_eq_emissions:\n")
    assert card.statement in markdown
    assert str(card) == card.yaml + "\n" + card.statement


def test_huge_ranges_select_only_recorded_cells_without_expanding_them():
    started = time.monotonic()
    card = model_card(rows(), cells="2-999999999")
    assert card.n_cells == 3  # 2, 3, 5: intersected with what was recorded
    assert time.monotonic() - started < 1.0  # never a billion-element set
    with pytest.raises(ValueError, match="spans more than 100,000 cells"):
        parse_cells("1-999999999")
    assert parse_cells("1-999999999", recorded=[1, 7, 10**6]) == {1, 7, 10**6}


@pytest.mark.parametrize("spec", ["1-99999999999", "99999999999", "1-1000000001"])
def test_absurd_execution_counts_are_refused_with_the_valid_form(spec):
    with pytest.raises(ValueError, match=r"execution counts go up to 1,000,000,000; use .*3,5-8"):
        model_card(rows(), cells=spec)
