"""The session plot: power over time from the ledger's heartbeats, and each cell's
emissions with its range.

Reads the heartbeat rows of a ledger (``read_heartbeats``), turns them into timeline
points (``timeline_from_heartbeats``) and draws both panels (``plot_session``).
matplotlib is imported only to plot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carbon_magic.engine.timeline import TimelinePoint
from carbon_magic.formatting import format_grams_range, format_kwh
from carbon_magic.reports.cell_rows import Row, row_float, row_label, row_tag
from carbon_magic.vocabulary import COMPONENTS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COMPONENT_COLOURS = {"cpu": "#4c72b0", "gpu": "#55a868", "ram": "#c44e52"}


def read_heartbeats(
    path: str | Path,
    kernel_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    notebook_path: str | None = None,
) -> list[dict[str, Any]]:
    """Heartbeat rows of the ledger at ``path``, oldest first, with ``session_uuid``.

    ``since``/``until`` are UTC epoch seconds. Raises ``FileNotFoundError`` when the
    ledger does not exist, ``sqlite3.Error`` when it cannot be read.
    """
    from carbon_magic.ledger import connect_readonly

    if not Path(path).exists():
        raise FileNotFoundError(f"no ledger at {path}")
    where, params = [], []
    for clause, value in (
        ("h.kernel_id = ?", kernel_id),
        ("h.at >= ?", since),
        ("h.at <= ?", until),
        ("s.notebook_path = ?", notebook_path),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    sql = (
        "SELECT h.*, s.session_uuid, s.notebook_path, s.interval_s FROM heartbeats h "
        "JOIN sessions s ON s.id = h.session_id"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY h.at, h.id"
    )
    connection = connect_readonly(path)
    try:
        cursor = connection.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    finally:
        connection.close()


def timeline_from_heartbeats(
    rows: Iterable[Row], default_interval_s: float = 1.0, max_gap_s: float = 60.0
) -> list[TimelinePoint]:
    """A power timeline from heartbeat rows (``at``, ``cpu_w``, ``gpu_w``, ``ram_w``).

    Each heartbeat's power is taken as the mean since the session's previous heartbeat;
    the first of a session, and any gap longer than ``max_gap_s`` seconds (a stopped
    tracker, a sleeping laptop), count one sampling interval only (the row's
    ``interval_s``, else ``default_interval_s``), so that a gap is drawn as a gap rather
    than as hours of power. Points are sorted by time.
    """
    points: list[TimelinePoint] = []
    last_at: dict[Any, float] = {}
    for row in sorted(rows, key=lambda r: float(r["at"])):
        at = float(row["at"])
        session = row.get("session_id", row.get("session_uuid"))
        previous = last_at.get(session)
        gap = at - previous if previous is not None else None
        interval = row_float(row, "interval_s") or default_interval_s
        duration = gap if gap is not None and 0 < gap <= max_gap_s else interval
        last_at[session] = at
        watts = tuple((name, row_float(row, f"{name}_w")) for name in COMPONENTS)
        points.append(TimelinePoint(end_s=at, duration_s=duration, watts=watts))
    return points


# ---------------------------------------------------------------- the plot


def _grams_unit(grams: float) -> tuple[float, str]:
    """(divisor, unit) making ``grams`` read as a number between 1 and 1000."""
    for factor, unit in ((1e3, "kg"), (1.0, "g"), (1e-3, "mg")):
        if grams >= factor:
            return factor, unit
    return 1e-6, "µg"


def _step_series(
    points: Sequence[TimelinePoint], names: list[str]
) -> tuple[list[float], list[list[float]]]:
    """x (epoch seconds) and one y list per component drawing each point as a flat step.

    Where points do not touch (no data), the series drops to zero, so a gap shows as a
    gap and not as a ramp.
    """
    xs: list[float] = []
    ys: list[list[float]] = [[] for _ in names]
    previous_end: float | None = None
    for point in sorted(points, key=lambda p: p.end_s):
        watts = point.watts_dict()
        if previous_end is not None and point.start_s - previous_end > 1e-3:
            xs += [previous_end, point.start_s]
            for series in ys:
                series += [0.0, 0.0]
        xs += [point.start_s, point.end_s]
        for series, name in zip(ys, names, strict=True):
            value = max(watts.get(name, 0.0), 0.0)
            series += [value, value]
        previous_end = point.end_s
    return xs, ys


def plot_session(
    timeline: Sequence[TimelinePoint], rows: Sequence[Row], save: str | Path | None = None
) -> Figure:
    """A figure of the session: power stacked by component, cells, per-cell emissions.

    Top axes: power (W) per component over wall-clock time (local), stacked, with each
    cell's span shaded and labelled by its execution count. Bottom axes: one bar per
    cell (in execution order) of operational emissions, error bars from the range.
    Built with ``matplotlib.figure.Figure`` (no pyplot state), so it is safe headless
    and from threads. ``save`` writes the figure (format from the extension).
    """
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    figure = Figure(figsize=(10, 6.5), layout="constrained")
    power_ax, bars_ax = figure.subplots(2, 1, height_ratios=[3, 2])

    names = [
        name
        for name in COMPONENTS
        if any(name in p.watts_dict() for p in timeline)
        and (name != "gpu" or any(p.watts_dict().get(name, 0.0) > 0 for p in timeline))
    ]
    if timeline and names:
        xs, ys = _step_series(timeline, names)
        x_dates = [datetime.fromtimestamp(x) for x in xs]
        power_ax.stackplot(
            x_dates,
            ys,
            labels=[name.upper() for name in names],
            colors=[COMPONENT_COLOURS[name] for name in names],
            alpha=0.85,
        )
        power_ax.legend(loc="upper left", fontsize="small")
        locator = AutoDateLocator()
        power_ax.xaxis.set_major_locator(locator)
        power_ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    else:
        power_ax.text(
            0.5, 0.5, "no power timeline", ha="center", va="center", transform=power_ax.transAxes
        )
    power_ax.set_ylim(bottom=0)
    power_ax.set_ylabel("power (W)")
    power_ax.set_xlabel("time (local)")
    power_ax.set_title("Power by component, cells shaded")

    ordered = sorted(
        rows, key=lambda r: (row_float(r, "started_at"), r.get("execution_count") or 0)
    )
    top_edge = blended_transform_factory(power_ax.transData, power_ax.transAxes)
    # Label every cell when few, else only the heaviest, to keep the labels readable.
    heaviest = {id(r) for r in sorted(ordered, key=lambda r: -row_float(r, "emissions_g"))[:10]}
    for n, row in enumerate(ordered):
        start, end = row.get("started_at"), row.get("ended_at")
        if start is None or end is None:
            continue
        start_d, end_d = datetime.fromtimestamp(float(start)), datetime.fromtimestamp(float(end))
        power_ax.axvspan(start_d, end_d, color="0.5", alpha=0.12 if n % 2 else 0.22, lw=0)
        if len(ordered) <= 20 or id(row) in heaviest:
            middle = start_d + (end_d - start_d) / 2
            power_ax.text(
                middle, 0.98, row_tag(row), transform=top_edge, ha="center", va="top", fontsize=8
            )

    if ordered:
        peak = max(
            max(row_float(r, "emissions_high_g"), row_float(r, "emissions_g")) for r in ordered
        )
        factor, unit = _grams_unit(peak)
        values = [row_float(r, "emissions_g") / factor for r in ordered]
        low = [
            max(v - row_float(r, "emissions_low_g") / factor, 0.0)
            for v, r in zip(values, ordered, strict=True)
        ]
        high = [
            max(row_float(r, "emissions_high_g") / factor - v, 0.0)
            for v, r in zip(values, ordered, strict=True)
        ]
        positions = list(range(len(ordered)))
        bars_ax.bar(
            positions,
            values,
            yerr=[low, high],
            capsize=3,
            color="#8172b3",
            error_kw={"elinewidth": 1, "ecolor": "0.25"},
        )
        bars_ax.set_xticks(positions)
        # Past a few dozen bars only the heaviest are named, so the names stay readable.
        name_all = len(ordered) <= 30
        bars_ax.set_xticklabels(
            [
                f"{row_tag(r)} {row_label(r, 18)}" if name_all or id(r) in heaviest else ""
                for r in ordered
            ],
            rotation=45 if len(ordered) > 4 else 0,
            ha="right" if len(ordered) > 4 else "center",
            fontsize=8,
        )
        bars_ax.set_ylabel(f"CO2e ({unit})")
        total = sum(row_float(r, "emissions_g") for r in ordered)
        low_t = sum(row_float(r, "emissions_low_g") for r in ordered)
        high_t = sum(row_float(r, "emissions_high_g") for r in ordered)
        energy = sum(row_float(r, "energy_kwh") for r in ordered)
        bars_ax.set_title(
            f"Operational emissions per cell (error bars: range) — total {format_kwh(energy)}, "
            f"{format_grams_range(total, low_t, high_t)} CO2e"
        )
    else:
        bars_ax.text(
            0.5, 0.5, "no recorded cells", ha="center", va="center", transform=bars_ax.transAxes
        )
        bars_ax.set_title("Operational emissions per cell")
        bars_ax.set_ylabel("CO2e")
    if save is not None:
        figure.savefig(save, dpi=120)
    return figure
