"""The %%carbon panel: the power sparkline and the budget bar, as HTML and in a real kernel."""

from __future__ import annotations

import re

import pytest

from carbon_magic.engine.measurement import Measurement
from carbon_magic.engine.timeline import Timeline
from carbon_magic.kernel.budget import parse_budget
from carbon_magic.kernel.panel import (
    budget_bar_html,
    cap_level,
    caps_html,
    panel_html,
    sparkline_svg,
    window_power,
)
from carbon_magic.kernel.scope_budgets import ScopeState


def points_of(svg: str) -> list[tuple[float, float]]:
    match = re.search(r"points='([^']*)'", svg)
    assert match, svg
    return [tuple(map(float, pair.split(","))) for pair in match.group(1).split()]


def test_the_sparkline_scales_from_zero_to_the_peak():
    svg = sparkline_svg([(100.0, 10.0), (101.0, 40.0), (103.0, 20.0)], width=102, height=24)

    (x0, y0), (x1, y1), (x2, y2) = points_of(svg)
    assert (x0, x1, x2) == (1.0, 34.3, 101.0)  # time across the width
    assert y1 == 3.0  # the peak at the top (4 px margin), 0 W at the bottom
    assert y0 == 24 - 1 - 10 / 40 * 20 and y2 == 24 - 1 - 20 / 40 * 20
    assert "peak 40 W" in svg and "mean 23 W" in svg and "over 3.0 s" in svg


def test_the_sparkline_needs_two_samples():
    assert "<polyline" not in sparkline_svg([])
    assert "no samples yet" in sparkline_svg([(1.0, 5.0), (2.0, float("nan"))])


def test_window_power_sums_components_since_the_window_start():
    timeline = Timeline()
    timeline.add(10.0, 1.0, {"cpu": 5.0, "ram": 1.0})
    timeline.add(11.0, 1.0, {"cpu": 7.0, "gpu": 2.0, "ram": 1.0})

    assert window_power(timeline, 10.5) == [(11.0, 10.0)]
    assert window_power(timeline, 0.0) == [(10.0, 6.0), (11.0, 10.0)]


def test_the_budget_bar_turns_to_the_warning_colour_when_exceeded():
    under = budget_bar_html(0.4)
    over = budget_bar_html(1.7)

    assert "data-exceeded='false'" in under and "width: 40.0%" in under
    assert "--jp-brand-color1" in under and "--jp-warn-color1" not in under
    assert "data-exceeded='true'" in over and "width: 100.0%" in over
    assert "--jp-warn-color1" in over and "aria-valuenow='170'" in over


def test_the_panel_carries_the_sparkline_and_the_bar_and_escapes_names():
    m = Measurement(name="<b>x</b>", duration_s=2.0, emissions_g=1.0, intensity_source="s")

    html_text = panel_html(
        m,
        {"cpu": 3.0},
        "running",
        budget_text="budget 1 g CO2e: 50% used",
        power=[(0.0, 1.0), (1.0, 3.0)],
        budget_fraction=0.5,
    )

    assert "class='cm-sparkline'" in html_text and "<polyline" in html_text
    assert "role='progressbar'" in html_text and "budget 1 g CO2e: 50% used" in html_text
    assert "&lt;b&gt;x&lt;/b&gt;" in html_text and "<b>x</b>" not in html_text
    # Without power samples or a budget, neither is drawn.
    plain = panel_html(m, {"cpu": 3.0}, "ok")
    assert "cm-sparkline" not in plain and "progressbar" not in plain


def test_the_panel_leads_with_the_emissions_and_folds_the_provenance():
    m = Measurement(
        name="fit",
        duration_s=2.0,
        emissions_g=0.0035,
        emissions_range_g=(0.00027, 0.0093),
        intensity_source="static: DE (2023)",
        methods={"cpu": "modelled"},
    )
    page = panel_html(
        m,
        {"cpu": 2.0},
        "running",
        prediction="≈ 40% · ≈ 9 mg at the end",
        budget_text="budget 5 mg CO2e: 70% used",
        budget_fraction=0.7,
        power=[(0.0, 1.0), (1.0, 2.0)],
    )
    # Headline, prediction, budget, power now and over time; then the details.
    order = ["cm-emissions", "cm-prediction", "cm-budget", "cm-watts", "cm-sparkline"]
    assert [page.index(f"class='{name}'") for name in order] == sorted(
        page.index(f"class='{name}'") for name in order
    )
    details = page[page.index("<details class='cm-details'") :]
    for name in ("cm-energy", "cm-embodied", "cm-intensity", "cm-methods"):
        assert f"class='{name}'" in details and f"class='{name}'" not in page[: -len(details)]
    assert "<details class='cm-details'" in page and " open" not in details.split(">")[0]
    # Theme variables, not a fixed size or colour.
    assert "12px" not in page and "#2e7d32" not in page
    assert "var(--jp-ui-font-size1" in page and "var(--jp-brand-color1" in page
    assert "≈ 3.5 mg (0.27 mg–9.3 mg)" in page  # no µg
    assert "aria-label='carbon budget used'" in page


def test_the_caps_line_has_a_bar_per_cap_coloured_by_how_much_is_spent():
    day = ScopeState("day", parse_budget("50g"), 38.0, "warn")
    near = ScopeState("notebook", parse_budget("5g"), 4.2, "stop")
    over = ScopeState("day", parse_budget("0.2kWh"), 0.25, "warn")

    line = caps_html([day, near, over])

    spans = re.findall(r"<span class='cm-cap' [^>]*>.*?</span></span>[^<]*</span>", line)
    assert len(spans) == 3, line
    assert "data-scope='day' data-level='ok'" in spans[0]
    assert "day 38 g of 50 g CO₂e · 12 g left" in spans[0]
    assert "--jp-brand-color1" in spans[0] and "width: 76.0%" in spans[0]
    assert "data-scope='notebook' data-level='warn'" in spans[1] and "--jp-warn-color1" in spans[1]
    assert "notebook 4.2 g of 5 g CO₂e · 800 mg left" in spans[1]
    # An energy cap reads in energy; overspent, the bar is full, in the error colour.
    assert "data-level='spent'" in spans[2] and "--jp-error-color1" in spans[2]
    assert "day 250 Wh of 200 Wh · 50 Wh over" in spans[2] and "CO₂e" not in spans[2]
    assert "width: 100.0%" in spans[2] and "aria-valuenow='100'" in spans[2]
    assert "role='progressbar' aria-label='day budget spent'" in spans[2]
    assert [cap_level(f) for f in (0.0, 0.79, 0.8, 0.99, 1.0, float("inf"), float("nan"))] == [
        "ok",
        "ok",
        "warn",
        "warn",
        "spent",
        "spent",
        "spent",
    ]


def test_the_caps_sit_under_the_cell_budget_and_only_when_set():
    m = Measurement(name="fit", duration_s=2.0, emissions_g=1.0, intensity_source="s")
    day = ScopeState("day", parse_budget("50g"), 38.0, "warn")

    page = panel_html(m, {"cpu": 3.0}, "running", "budget 5 g CO2e: 20% used", caps=[day])

    assert page.index("class='cm-budget'") < page.index("class='cm-caps'")
    assert page.index("class='cm-caps'") < page.index("class='cm-watts'")
    assert "cm-caps" not in panel_html(m, {"cpu": 3.0}, "running")


def test_a_panel_without_a_reading_yet_says_measuring_not_zero():
    m = Measurement(name="fit", duration_s=0.001, intensity_source="s")
    page = panel_html(m, {"cpu": 0.0, "ram": 0.0}, "running", power=[])
    assert "power now <b>measuring…</b>" in page and "0 mW " not in page
    assert "≈ 0" not in page  # the emissions read 0 mg, not a range of zeros
    later = panel_html(m, {"cpu": 2.0}, "running", power=[(0.0, 2.0)])
    assert "power now <b style='white-space: nowrap'>2 W</b>" in later


def test_python_figures_follow_the_floor_and_have_no_micro_units():
    from carbon_magic.formatting import format_grams, format_grams_range, format_kwh

    assert format_grams(6.2e-9) == "< 0.01 mg"
    assert format_grams(0.000042) == "0.04 mg"
    assert format_grams(0.0042) == "4.2 mg"
    assert format_kwh(1.6e-11) == "< 0.01 mWh"
    assert format_grams_range(0.0, 0.0, 0.0) == "0 mg"  # not "0 µg (0 µg–0 µg)"
    for value in (1e-12, 1e-9, 1e-6):
        assert "µ" not in format_grams(value) + format_kwh(value)


# --- in a real kernel ----------------------------------------------------------------------


@pytest.fixture
def kernel(tmp_path):
    from tests.kernels import Kernel

    k = Kernel(str(tmp_path / "ledger.sqlite3"), {"CARBON_MAGIC_INTERVAL": "0.5"})
    yield k
    k.shutdown()


def sparkline_values(run) -> list[str]:
    """The sparkline's points in each panel update sent while the cell ran."""
    values = [
        m["content"]["data"]["state"]["value"]
        for m in run.of_type("comm_msg")
        if "value" in m["content"]["data"].get("state", {})
    ]
    return [
        re.search(r"<polyline points='([^']*)'", v).group(1) for v in values if "<polyline" in v
    ]


@pytest.mark.kernel
def test_the_live_panel_draws_power_and_budget_and_keeps_them_when_saved(kernel):
    kernel.execute("%load_ext carbon_magic")
    busy = "import time\n_end = time.time() + 3\nwhile time.time() < _end:\n    pass\n"

    run = kernel.execute("%%carbon --name spark --budget 0.1J\n" + busy)

    assert run.reply["content"]["status"] == "ok"
    lines = sparkline_values(run)
    assert len(set(lines)) >= 2, lines  # the sparkline moved while the cell ran
    final = run.of_type("update_display_data")[-1]["content"]["data"]
    html_text = final["text/html"]
    # The output the notebook saves is static HTML: the sparkline and the bar, in the
    # warning colour (0.1 J is long spent), and a text/plain line beside it.
    assert "<polyline" in html_text and "class='cm-sparkline'" in html_text
    assert "role='progressbar'" in html_text and "data-exceeded='true'" in html_text
    assert "--jp-warn-color1" in html_text
    assert final["text/plain"].startswith("carbon: ")


@pytest.mark.kernel
def test_the_live_panel_shows_the_day_and_notebook_caps_counting_the_cell_once(tmp_path):
    from carbon_magic.formatting import format_grams
    from carbon_magic.ledger.sql import query
    from tests.kernels import Kernel

    ledger = str(tmp_path / "ledger.sqlite3")
    caps = {
        "CARBON_MAGIC_INTERVAL": "0.25",
        "CARBON_MAGIC_MODE": "machine",
        "JPY_SESSION_NAME": str(tmp_path / "caps.ipynb"),
        "CARBON_MAGIC_BUDGET_DAY": "1kg",
        "CARBON_MAGIC_BUDGET_NOTEBOOK": "1ug",
    }
    kernel = Kernel(ledger, caps)
    try:
        kernel.execute("%load_ext carbon_magic")
        busy = "import time\n_end = time.time() + 1.5\nwhile time.time() < _end:\n    pass\n"
        run = kernel.execute("%%carbon --name capped\n" + busy)
    finally:
        kernel.shutdown()

    assert run.reply["content"]["status"] == "ok"
    live = [
        m["content"]["data"]["state"]["value"]
        for m in run.of_type("comm_msg")
        if "value" in m["content"]["data"].get("state", {})
    ]
    assert any("class='cm-caps'" in value for value in live), live
    final = run.of_type("update_display_data")[-1]["content"]["data"]["text/html"]
    day = re.search(
        r"<span class='cm-cap' data-scope='day' data-level='ok'.*?</span></span>(.*?)</span>", final
    )
    notebook = re.search(
        r"data-scope='notebook' data-level='spent'.*?</span></span>(.*?)</span>", final
    )
    assert day and notebook, final
    # The final panel counts the recorded cell once: what the ledger holds for it.
    spent = sum(row["emissions_g"] for row in query(ledger, "SELECT emissions_g FROM cells", ()))
    assert spent > 0
    assert day.group(1).startswith(f"day {format_grams(spent)} of 1 kg CO₂e · "), day.group(1)
    assert notebook.group(1).startswith(f"notebook {format_grams(spent)} of ")
    assert notebook.group(1).endswith(" over")
