"""The %%carbon panel: the power sparkline and the budget bar, as HTML and in a real kernel."""

from __future__ import annotations

import re

import pytest

from carbon_magic.measurement import Measurement
from carbon_magic.panel import budget_bar_html, panel_html, sparkline_svg, window_power
from carbon_magic.timeline import Timeline


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
