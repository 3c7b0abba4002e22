"""Reports over recorded cells: the per-cell table, the session plot, ``--since`` parsing.

Everything here takes ledger rows: dicts with the ``cells`` columns of ``schema.sql``
(joules, kWh, grams, UTC epoch seconds), plus the session columns ``session_uuid``,
``notebook_path`` and ``host``, and optionally ``hardware_json``/``settings_json``.
Nothing here reads hardware or needs IPython; matplotlib is imported only to plot.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carbon_magic.formatting import (
    format_duration,
    format_grams,
    format_grams_range,
    format_kwh,
)
from carbon_magic.measurement import COMPONENTS
from carbon_magic.timeline import TimelinePoint

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Row = Mapping[str, Any]

LABEL_WIDTH = 40  # characters of a cell's name or first line shown in tables
HEAVIEST_DEFAULT = 3  # cells counted in "the N heaviest cells" when --top is not given
COMPONENT_COLOURS = {"cpu": "#4c72b0", "gpu": "#55a868", "ram": "#c44e52"}

# ---------------------------------------------------------------- row helpers


def _json_field(row: Row, name: str) -> dict[str, Any]:
    """A JSON column (``<name>_json``) as a dict, or an already decoded ``<name>``."""
    value = row.get(name)
    if isinstance(value, Mapping):
        return dict(value)
    text = row.get(f"{name}_json")
    if isinstance(text, Mapping):
        return dict(text)
    if not text:
        return {}
    try:
        decoded = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def row_methods(row: Row) -> dict[str, str]:
    """How each component's energy was obtained for this row: ``{"cpu": "measured", ...}``."""
    return {str(k): str(v) for k, v in _json_field(row, "methods").items()}


def row_devices(row: Row) -> dict[str, float]:
    """IT energy per device for this row, joules."""
    return {str(k): float(v) for k, v in _json_field(row, "devices").items()}


def row_hardware(row: Row) -> dict[str, Any]:
    """The session's hardware summary when the row carries it (else ``{}``)."""
    return _json_field(row, "hardware")


def row_settings(row: Row) -> dict[str, Any]:
    """The session's settings when the row carries them (else ``{}``)."""
    return _json_field(row, "settings")


def row_label(row: Row, width: int = LABEL_WIDTH) -> str:
    """The cell's ``--name``, else its first source line, shortened to ``width`` characters."""
    text = (row.get("name") or "").strip() or (row.get("source") or "").strip()
    text = text.splitlines()[0] if text else "(no source)"
    return text if len(text) <= width else text[: width - 1] + "…"


def row_tag(row: Row) -> str:
    """``[5]`` for a cell with execution count 5, ``[—]`` for windows without one."""
    count = row.get("execution_count")
    return f"[{count}]" if count is not None else "[—]"


def _f(row: Row, key: str) -> float:
    value = row.get(key)
    return float(value) if value is not None else 0.0


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class ReportRow:
    """One line of the report. Units: seconds, kWh, grams CO2e; ``share`` in [0, 1]."""

    execution_count: int | None
    label: str
    duration_s: float
    energy_kwh: float
    emissions_g: float
    emissions_low_g: float
    emissions_high_g: float
    embodied_g: float
    status: str
    share: float
    session_uuid: str | None = None
    started_at: float | None = None
    text: str = ""  # the name or first line in full (``label`` may be shortened)


@dataclass(frozen=True)
class ReportTotals:
    """Sums over every reported cell (not only those shown).

    Ranges are sums of the cells' lows and highs: a conservative interval. Units:
    seconds, kWh, grams CO2e. ``heaviest_share`` is the fraction of operational
    emissions due to the ``heaviest_n`` heaviest cells.
    """

    n_cells: int
    duration_s: float
    energy_kwh: float
    energy_low_kwh: float
    energy_high_kwh: float
    emissions_g: float
    emissions_low_g: float
    emissions_high_g: float
    embodied_g: float
    heaviest_n: int
    heaviest_share: float
    # The part of the figures above that Dask workers used (cells that fanned out).
    cluster_kwh: float = 0.0
    cluster_emissions_g: float = 0.0
    cluster_cells: int = 0


@dataclass(frozen=True)
class Report:
    """A table of cells sorted by emissions (heaviest first), with totals.

    Renders as an HTML table in Jupyter (``_repr_html_``, every value escaped) and as
    aligned text elsewhere (``str``, IPython's pretty printer).
    """

    rows: list[ReportRow]
    totals: ReportTotals
    hint: str | None = None
    pending: int = 0  # cells included that are not yet written to the ledger

    _HEADERS = ("#", "cell", "duration", "energy", "CO2e (range)", "share", "status")

    def _cells(self, row: ReportRow) -> tuple[str, ...]:
        count = "—" if row.execution_count is None else str(row.execution_count)
        return (
            count,
            row.label,
            format_duration(row.duration_s),
            format_kwh(row.energy_kwh),
            format_grams_range(row.emissions_g, row.emissions_low_g, row.emissions_high_g),
            f"{row.share:.0%}",
            row.status,
        )

    def summary_lines(self) -> list[str]:
        """The lines under the table: totals, embodied, the heaviest cells' share, hint."""
        t = self.totals
        if t.n_cells == 0:
            lines = ["No recorded cells."]
        else:
            shown = len(self.rows)
            cells = "cell" if t.n_cells == 1 else "cells"
            lines = [
                f"Total: {t.n_cells} {cells}, {format_duration(t.duration_s)}, "
                f"{format_kwh(t.energy_kwh)}, "
                f"{format_grams_range(t.emissions_g, t.emissions_low_g, t.emissions_high_g)} CO2e"
            ]
            if t.embodied_g:
                lines.append(
                    f"Embodied (hardware manufacturing, amortised): {format_grams(t.embodied_g)} "
                    "CO2e, not included above."
                )
            if t.cluster_cells:
                share = t.cluster_emissions_g / t.emissions_g if t.emissions_g > 0 else 0.0
                lines.append(
                    f"Dask workers (in {t.cluster_cells} "
                    f"{'cell' if t.cluster_cells == 1 else 'cells'}): "
                    f"{format_kwh(t.cluster_kwh)}, {format_grams(t.cluster_emissions_g)} CO2e, "
                    f"{share:.0%} of operational emissions (included above)."
                )
            if t.n_cells > 1 and t.emissions_g > 0:
                lines.append(
                    f"The {t.heaviest_n} heaviest {'cell' if t.heaviest_n == 1 else 'cells'} "
                    f"account for {t.heaviest_share:.0%} of operational emissions."
                )
            if shown < t.n_cells:
                lines.append(f"Showing the {shown} heaviest of {t.n_cells} cells.")
            if self.pending:
                lines.append(pending_note(self.pending))
        if self.hint:
            lines.append(self.hint)
        return lines

    def __str__(self) -> str:
        table = [self._HEADERS, *(self._cells(row) for row in self.rows)]
        widths = [max(len(line[i]) for line in table) for i in range(len(self._HEADERS))]
        # Numbers read best right-aligned; the label and status left-aligned.
        right = {0, 2, 3, 5}
        out = []
        for n, line in enumerate(table):
            out.append(
                "  ".join(
                    cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                    for i, cell in enumerate(line)
                ).rstrip()
            )
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
        if not self.rows:
            out = []
        return "\n".join(out + ([""] if out else []) + self.summary_lines())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        esc = html.escape
        parts = ['<div class="carbon-magic-report">']
        if self.rows:
            parts.append("<table>")
            parts.append(
                "<thead><tr>"
                + "".join(f"<th>{esc(h)}</th>" for h in self._HEADERS)
                + "</tr></thead>"
            )
            parts.append("<tbody>")
            for row in self.rows:
                cells = self._cells(row)
                tds = []
                for i, cell in enumerate(cells):
                    align = ' style="text-align:left"' if i in (1, 6) else ""
                    title = f' title="{esc(row.text)}"' if i == 1 and row.text != row.label else ""
                    tds.append(f"<td{align}{title}>{esc(cell)}</td>")
                parts.append("<tr>" + "".join(tds) + "</tr>")
            parts.append("</tbody></table>")
        for line in self.summary_lines():
            parts.append(f"<p>{esc(line)}</p>")
        parts.append("</div>")
        return "".join(parts)


def pending_note(pending: int) -> str:
    """The line saying that ``pending`` of the cells shown are not yet in the ledger file."""
    cells = "cell is" if pending == 1 else "cells are"
    return (
        f"{pending} {cells} included but not yet written to the ledger (it is busy; "
        "they are written in the background)."
    )


def build_report(
    rows: Iterable[Row], top: int | None = None, hint: str | None = None, pending: int = 0
) -> Report:
    """A report of ``rows`` (ledger cell rows), heaviest first.

    ``top`` keeps the ``top`` heaviest cells in the table (totals still cover every
    row); ``hint`` is an optional line shown under the table; ``pending`` says how many
    of ``rows`` are not yet written to the ledger file (a line says so). Raises
    ``ValueError`` when ``top`` is not a positive integer.
    """
    if top is not None and (isinstance(top, bool) or int(top) != top or top < 1):
        raise ValueError(f"top must be a positive integer (got {top!r})")
    rows = list(rows)
    total_g = sum(_f(r, "emissions_g") for r in rows)
    ordered = sorted(rows, key=lambda r: (-_f(r, "emissions_g"), _f(r, "started_at")))

    def share(grams: float) -> float:
        return grams / total_g if total_g > 0 else 0.0

    report_rows = [
        ReportRow(
            execution_count=r.get("execution_count"),
            label=row_label(r),
            duration_s=_f(r, "duration_s"),
            energy_kwh=_f(r, "energy_kwh"),
            emissions_g=_f(r, "emissions_g"),
            emissions_low_g=_f(r, "emissions_low_g"),
            emissions_high_g=_f(r, "emissions_high_g"),
            embodied_g=_f(r, "embodied_g"),
            status=str(r.get("status") or "ok"),
            share=share(_f(r, "emissions_g")),
            session_uuid=r.get("session_uuid"),
            started_at=r.get("started_at"),
            text=row_label(r, width=10_000),
        )
        for r in ordered
    ]
    heaviest_n = min(top if top is not None else HEAVIEST_DEFAULT, len(report_rows))
    totals = ReportTotals(
        n_cells=len(rows),
        duration_s=sum(_f(r, "duration_s") for r in rows),
        energy_kwh=sum(_f(r, "energy_kwh") for r in rows),
        energy_low_kwh=sum(_f(r, "energy_low_kwh") for r in rows),
        energy_high_kwh=sum(_f(r, "energy_high_kwh") for r in rows),
        emissions_g=total_g,
        emissions_low_g=sum(_f(r, "emissions_low_g") for r in rows),
        emissions_high_g=sum(_f(r, "emissions_high_g") for r in rows),
        embodied_g=sum(_f(r, "embodied_g") for r in rows),
        heaviest_n=heaviest_n,
        heaviest_share=sum(r.share for r in report_rows[:heaviest_n]),
        cluster_kwh=sum(_f(r, "cluster_kwh") for r in rows),
        cluster_emissions_g=sum(_f(r, "cluster_emissions_g") for r in rows),
        cluster_cells=sum(1 for r in rows if r.get("cluster_hosts") is not None),
    )
    shown = report_rows[:top] if top is not None else report_rows
    return Report(rows=shown, totals=totals, hint=hint, pending=max(0, int(pending)))


# ---------------------------------------------------------------- --since


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SINCE_FORMS = (
    "an ISO date (2024-05-01), an ISO date and time (2024-05-01T14:30, add +00:00 or Z "
    "for UTC), today, yesterday, or a time ago such as 30m, 1h, 7d (also s, w)"
)


def parse_since(text: str, now: float | None = None) -> float:
    """A point in time given by a user, as UTC epoch seconds.

    Accepts ISO dates and datetimes (local time unless they carry an offset),
    ``today`` and ``yesterday`` (local midnight), ``now``, and times ago like ``30m``,
    ``1h``, ``7d``. ``now`` (epoch seconds) replaces the clock in tests. Raises
    ``ValueError`` naming the accepted forms.
    """
    now = time.time() if now is None else now
    value = str(text).strip().lower()
    midnight = datetime.combine(datetime.fromtimestamp(now).date(), datetime.min.time())
    if value == "now":
        return now
    if value == "today":
        return midnight.timestamp()
    if value == "yesterday":
        return (midnight - timedelta(days=1)).timestamp()
    match = _RELATIVE.match(value)
    if match:
        return now - float(match.group(1)) * _UNIT_S[match.group(2)]
    raw = str(text).strip()
    try:
        if _DATE.match(raw):
            day = date.fromisoformat(raw)
            return datetime.combine(day, datetime.min.time()).timestamp()
        # Python 3.10's fromisoformat does not accept a trailing "Z".
        moment = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("z", "Z")) else raw)
    except (ValueError, IndexError):
        raise ValueError(f"cannot read the time {text!r}: use {SINCE_FORMS}") from None
    return moment.timestamp()  # naive datetimes are local time


# ---------------------------------------------------------------- timeline


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
        interval = _f(row, "interval_s") or default_interval_s
        duration = gap if gap is not None and 0 < gap <= max_gap_s else interval
        last_at[session] = at
        watts = tuple((name, _f(row, f"{name}_w")) for name in COMPONENTS)
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

    ordered = sorted(rows, key=lambda r: (_f(r, "started_at"), r.get("execution_count") or 0))
    top_edge = blended_transform_factory(power_ax.transData, power_ax.transAxes)
    # Label every cell when few, else only the heaviest, to keep the labels readable.
    heaviest = {id(r) for r in sorted(ordered, key=lambda r: -_f(r, "emissions_g"))[:10]}
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
        peak = max(max(_f(r, "emissions_high_g"), _f(r, "emissions_g")) for r in ordered)
        factor, unit = _grams_unit(peak)
        values = [_f(r, "emissions_g") / factor for r in ordered]
        low = [
            max(v - _f(r, "emissions_low_g") / factor, 0.0)
            for v, r in zip(values, ordered, strict=True)
        ]
        high = [
            max(_f(r, "emissions_high_g") / factor - v, 0.0)
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
        total = sum(_f(r, "emissions_g") for r in ordered)
        low_t = sum(_f(r, "emissions_low_g") for r in ordered)
        high_t = sum(_f(r, "emissions_high_g") for r in ordered)
        energy = sum(_f(r, "energy_kwh") for r in ordered)
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
