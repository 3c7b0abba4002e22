import json
import socket
import threading
import time
from datetime import datetime, timezone

import pytest

from carbon_magic.engine.timeline import TimelinePoint
from carbon_magic.reports.report import build_report, parse_since
from carbon_magic.reports.session_plot import (
    plot_session,
    read_heartbeats,
    timeline_from_heartbeats,
)

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def make_row(n=1, emissions_g=1.0, **overrides):
    """A ledger cell row (cells columns + session columns) with coherent figures."""
    duration = overrides.pop("duration_s", 2.0)
    started = overrides.pop("started_at", T0 + 10 * n)
    row = {
        "id": n,
        "session_id": 1,
        "kernel_id": "kernel-a",
        "cell_id": f"cell-{n}",
        "execution_count": n,
        "name": None,
        "source": f"train_{n}()",
        "via": "auto",
        "status": "ok",
        "started_at": started,
        "ended_at": started + duration,
        "duration_s": duration,
        "cpu_j": 100.0 * n,
        "gpu_j": 0.0,
        "ram_j": 10.0,
        "energy_kwh": emissions_g / 50.0,
        "energy_low_kwh": emissions_g / 50.0 * 0.7,
        "energy_high_kwh": emissions_g / 50.0 * 1.3,
        "emissions_g": emissions_g,
        "emissions_low_g": emissions_g * 0.6,
        "emissions_high_g": emissions_g * 1.5,
        "embodied_g": 0.01,
        "intensity_g_per_kwh": 50.0,
        "intensity_source": "static table: FR 2023 (Ember)",
        "pue": 1.0,
        "mode": "process",
        "methods_json": json.dumps({"cpu": "measured", "ram": "assumed"}),
        "devices_json": json.dumps({"package-0": 100.0 * n}),
        "budget": None,
        "session_uuid": "session-1",
        "notebook_path": "work/analysis.ipynb",
        "host": socket.gethostname(),
    }
    row.update(overrides)
    return row


# ---------------------------------------------------------------- the table


def test_report_sorts_by_emissions_and_sums_every_cell():
    rows = [make_row(1, 1.0), make_row(2, 5.0), make_row(3, 3.0), make_row(4, 0.5)]
    report = build_report(rows)
    assert [r.execution_count for r in report.rows] == [2, 3, 1, 4]
    totals = report.totals
    assert totals.n_cells == 4
    assert totals.emissions_g == pytest.approx(9.5)
    assert totals.emissions_low_g == pytest.approx(9.5 * 0.6)
    assert totals.emissions_high_g == pytest.approx(9.5 * 1.5)
    assert totals.energy_kwh == pytest.approx(9.5 / 50)
    assert totals.duration_s == pytest.approx(8.0)
    assert totals.embodied_g == pytest.approx(0.04)
    assert [r.share for r in report.rows] == pytest.approx([5 / 9.5, 3 / 9.5, 1 / 9.5, 0.5 / 9.5])
    assert totals.heaviest_n == 3
    assert totals.heaviest_share == pytest.approx(9 / 9.5)
    text = str(report)
    assert "The 3 heaviest cells account for 95% of operational emissions." in text
    assert "Total: 4 cells" in text


def test_top_limits_the_table_not_the_totals():
    rows = [make_row(n, float(n)) for n in range(1, 6)]  # 15 g in all
    report = build_report(rows, top=2)
    assert [r.execution_count for r in report.rows] == [5, 4]
    assert report.totals.n_cells == 5
    assert report.totals.emissions_g == pytest.approx(15.0)
    assert report.totals.heaviest_n == 2
    assert report.totals.heaviest_share == pytest.approx(9 / 15)
    text = str(report)
    assert "Showing the 2 heaviest of 5 cells." in text
    assert "train_3()" not in text


def test_ties_keep_execution_order_and_missing_count_shows_a_dash():
    rows = [make_row(2, 1.0), make_row(1, 1.0), make_row(3, 1.0, execution_count=None)]
    report = build_report(rows)
    assert [r.execution_count for r in report.rows] == [1, 2, None]
    first_column = [line.split()[0] for line in str(report).splitlines()[2:5]]
    assert first_column == ["1", "2", "—"]


@pytest.mark.parametrize("top", [0, -1, 1.5, True])
def test_bad_top_is_refused(top):
    with pytest.raises(ValueError, match="positive integer"):
        build_report([make_row()], top=top)


def test_labels_prefer_the_name_and_are_shortened():
    long_source = "x = " + "a" * 100
    rows = [make_row(1, 1.0, name="fit model"), make_row(2, 2.0, source=long_source)]
    report = build_report(rows)
    labels = {r.execution_count: r.label for r in report.rows}
    assert labels[1] == "fit model"
    assert labels[2].endswith("…") and len(labels[2]) == 40


def test_html_is_escaped_and_carries_the_hint():
    evil = "<script>alert('x')</script> & co"
    report = build_report(
        [make_row(1, 1.0, name=evil, status="<b>error</b>")], hint="run at <3am> & save"
    )
    page = report._repr_html_()
    assert "<script>" not in page and "<b>error" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    assert "&lt;b&gt;error&lt;/b&gt;" in page
    assert "run at &lt;3am&gt; &amp; save" in page
    assert page.count("<tr>") == 2  # header + one cell
    long = build_report([make_row(1, 1.0, source="y = " + "<" * 60)])._repr_html_()
    assert f'title="y = {"&lt;" * 60}"' in long  # the full line as a tooltip
    assert "run at <3am> & save" in str(report)


def test_empty_report_says_so():
    report = build_report([])
    assert report.rows == [] and report.totals.n_cells == 0
    assert str(report) == "No recorded cells."
    assert "No recorded cells." in report._repr_html_()


def test_pretty_printer_uses_the_text_table():
    from IPython.lib.pretty import pretty

    report = build_report([make_row(1, 1.0)])
    assert pretty(report) == str(report)


# ---------------------------------------------------------------- --since


NOW = datetime(2024, 5, 10, 15, 30).timestamp()  # local time
LOCAL_MIDNIGHT = datetime(2024, 5, 10).timestamp()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1h", NOW - 3600),
        ("30m", NOW - 1800),
        ("7d", NOW - 7 * 86400),
        ("45s", NOW - 45),
        ("2w", NOW - 14 * 86400),
        ("now", NOW),
        ("today", LOCAL_MIDNIGHT),
        (" Yesterday ", datetime(2024, 5, 9).timestamp()),
        ("2024-05-01", datetime(2024, 5, 1).timestamp()),
        ("2024-05-01T14:30", datetime(2024, 5, 1, 14, 30).timestamp()),
        ("2024-05-01 14:30:15", datetime(2024, 5, 1, 14, 30, 15).timestamp()),
        ("2024-05-01T14:30Z", datetime(2024, 5, 1, 14, 30, tzinfo=timezone.utc).timestamp()),
        (
            "2024-05-01T14:30+02:00",
            datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc).timestamp(),
        ),
    ],
)
def test_parse_since_accepts_dates_words_and_durations(text, expected):
    assert parse_since(text, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "tomorrow", "5x", "h", "2024-13-01", "1 hour ago", "-1h"])
def test_parse_since_refuses_with_the_accepted_forms(text):
    with pytest.raises(ValueError) as error:
        parse_since(text, now=NOW)
    message = str(error.value)
    for form in ("2024-05-01", "today", "yesterday", "30m", "7d"):
        assert form in message


# ---------------------------------------------------------------- timeline


def beat(at, cpu, session=1, **extra):
    return {"session_id": session, "at": at, "cpu_w": cpu, "gpu_w": 0.0, "ram_w": 2.0, **extra}


def test_timeline_from_heartbeats_uses_gaps_and_caps_long_ones():
    rows = [beat(T0 + 2, 20.0), beat(T0, 10.0), beat(T0 + 500, 30.0), beat(T0 + 1, 5.0, session=2)]
    points = timeline_from_heartbeats(rows, default_interval_s=1.0, max_gap_s=60)
    assert [p.end_s for p in points] == [T0, T0 + 1, T0 + 2, T0 + 500]
    # First of each session and the 498 s gap count one interval; T0 → T0+2 is 2 s.
    assert [p.duration_s for p in points] == [1.0, 1.0, 2.0, 1.0]
    assert points[2].watts_dict() == {"cpu": 20.0, "gpu": 0.0, "ram": 2.0}


def test_timeline_uses_the_session_interval_for_a_first_heartbeat():
    points = timeline_from_heartbeats([beat(T0, 1.0, interval_s=5.0)])
    assert points[0].duration_s == 5.0


# ---------------------------------------------------------------- the plot


def make_timeline(rows):
    start = min(r["started_at"] for r in rows) - 5
    end = max(r["ended_at"] for r in rows) + 5
    points, t = [], start
    while t < end:
        t += 1.0
        points.append(TimelinePoint(t, 1.0, (("cpu", 12.0), ("gpu", 30.0), ("ram", 3.0))))
    # a hole in the data, drawn as zero power
    return [p for p in points if not (start + 8 < p.end_s < start + 11)]


def bar_container(ax):
    from matplotlib.container import BarContainer

    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    return bars


def test_plot_session_draws_power_cells_and_bars(tmp_path):
    rows = [make_row(1, 2.0), make_row(2, 0.5, name="fit <m>"), make_row(3, 1.0)]
    target = tmp_path / "session.png"
    figure = plot_session(make_timeline(rows), rows, save=target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    power_ax, bars_ax = figure.axes
    assert power_ax.get_ylabel() == "power (W)"
    assert [t.get_text() for t in power_ax.get_legend().get_texts()] == ["CPU", "GPU", "RAM"]
    assert len(power_ax.collections) == 3  # one stacked area per component
    assert len(power_ax.patches) == 3  # one shaded span per cell
    assert {t.get_text() for t in power_ax.texts} == {"[1]", "[2]", "[3]"}
    bars = bar_container(bars_ax)
    assert [bar.get_height() for bar in bars] == pytest.approx([2.0, 0.5, 1.0])
    assert bars_ax.get_ylabel() == "CO2e (g)"
    assert [t.get_text() for t in bars_ax.get_xticklabels()] == [
        "[1] train_1()",
        "[2] fit <m>",
        "[3] train_3()",
    ]
    # error bars from the range: low = 0.6 g·x, high = 1.5 g·x
    caplines = bars.errorbar.lines[1]
    tops = sorted(line.get_ydata()[0] for line in caplines)
    assert max(tops) == pytest.approx(3.0)
    assert "total" in bars_ax.get_title()


def test_plot_scales_small_emissions_and_drops_an_empty_gpu(tmp_path):
    rows = [make_row(1, 0.004)]
    timeline = [TimelinePoint(T0 + 12, 2.0, (("cpu", 5.0), ("gpu", 0.0), ("ram", 1.0)))]
    figure = plot_session(timeline, rows)
    power_ax, bars_ax = figure.axes
    assert bars_ax.get_ylabel() == "CO2e (mg)"
    assert bar_container(bars_ax)[0].get_height() == pytest.approx(4.0)
    assert [t.get_text() for t in power_ax.get_legend().get_texts()] == ["CPU", "RAM"]


def test_plot_names_only_the_heaviest_of_many_cells():
    rows = [make_row(n, float(n % 7) + n / 100) for n in range(1, 51)]
    figure = plot_session([], rows)
    power_ax, bars_ax = figure.axes
    assert len(power_ax.patches) == 50
    assert len(power_ax.texts) == 11  # "no power timeline" + the 10 heaviest cells
    named = [t.get_text() for t in bars_ax.get_xticklabels() if t.get_text()]
    heaviest = sorted(rows, key=lambda r: -r["emissions_g"])[:10]
    assert sorted(named) == sorted(f"[{r['execution_count']}] {r['source']}" for r in heaviest)


def test_plot_with_nothing_says_so():
    figure = plot_session([], [])
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert "no power timeline" in texts and "no recorded cells" in texts


def test_plot_works_from_a_thread(tmp_path):
    rows = [make_row(1, 1.0)]
    errors = []

    def draw():
        try:
            plot_session(make_timeline(rows), rows, save=tmp_path / "thread.svg")
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    worker = threading.Thread(target=draw)
    worker.start()
    worker.join(60)
    assert not errors
    assert (tmp_path / "thread.svg").read_text().lstrip().startswith("<?xml")


# ---------------------------------------------------------------- heartbeats from a ledger


def test_read_heartbeats_filters_a_real_ledger(tmp_path):
    from carbon_magic.ledger import Ledger

    path = tmp_path / "ledger.sqlite3"
    now = time.time()
    with Ledger(path) as ledger:
        for uuid, kernel, notebook in (("s-a", "k-a", "a.ipynb"), ("s-b", "k-b", "b.ipynb")):
            ledger.open_session(
                session_uuid=uuid,
                kernel_id=kernel,
                notebook_path=notebook,
                host="h",
                pid=1,
                started_at=now - 100,
                interval_s=2.0,
                mode="process",
                hardware={},
                methods={},
                settings={},
                intensity_source="test",
                intensity_g_per_kwh=100.0,
            )
            for i in range(3):
                ledger.heartbeat(
                    uuid,
                    at=now - 30 + 10 * i,
                    watts={"cpu": 10.0 + i, "ram": 1.0},
                    energy_kwh=0.0,
                    emissions_g=0.0,
                    emissions_range_g=(0.0, 0.0),
                    embodied_g=0.0,
                    intensity_g_per_kwh=100.0,
                    intensity_source="test",
                    tracker_state="running",
                    running_cell=None,
                    running_cell_started_at=None,
                )
    assert len(read_heartbeats(path)) == 6
    only_a = read_heartbeats(path, kernel_id="k-a")
    assert [b["cpu_w"] for b in only_a] == [10.0, 11.0, 12.0]
    assert {b["session_uuid"] for b in only_a} == {"s-a"}
    assert len(read_heartbeats(path, notebook_path="b.ipynb", since=now - 25)) == 2
    assert len(read_heartbeats(path, until=now - 25)) == 2
    points = timeline_from_heartbeats(only_a)
    assert [p.duration_s for p in points] == [2.0, 10.0, 10.0]
    with pytest.raises(FileNotFoundError):
        read_heartbeats(tmp_path / "missing.sqlite3")


def test_totals_of_written_and_pending_cells_add_up_with_their_remote_and_cluster_parts():
    from carbon_magic.reports.report import add_totals, sum_cells

    written = sum_cells(
        [
            {"emissions_g": 2.0, "cluster_engine": "ray", "cluster_hosts": 1, "cluster_kwh": 0.1},
            {
                "emissions_g": 1.0,
                "remote_calls": 2,
                "remote_unestimated": 0,
                "remote_emissions_g": 4.0,
                "remote_emissions_low_g": 3.0,
                "remote_emissions_high_g": 5.0,
                "remote_method": "estimated (EcoLogits 0.11)",
            },
        ]
    )
    pending = sum_cells(
        [
            {
                "emissions_g": 0.5,
                "remote_calls": 1,
                "remote_unestimated": 1,
                "cluster_engine": "dask",
                "cluster_hosts": 2,
            }
        ]
    )
    total = add_totals(written, pending)
    assert total["n_cells"] == 3 and total["emissions_g"] == 3.5
    assert total["cluster_engines"] == ("dask", "ray") and total["cluster_cells"] == 2
    remote = total["remote"]
    assert remote["count"] == 3 and remote["unestimated"] == 1 and remote["cells"] == 2
    assert remote["emissions_range_g"] == [3.0, 5.0]
    assert remote["method"] == "estimated (EcoLogits 0.11)"
    assert add_totals(sum_cells([]), sum_cells([]))["remote"] is None
