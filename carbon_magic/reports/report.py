"""Reports over recorded cells: the per-cell table and ``--since`` parsing.

Reading rows is ``cell_rows``; the session plot is ``session_plot`` (both re-exported
here).

Everything here takes ledger rows: dicts with the ``cells`` columns of ``schema.sql``
(joules, kWh, grams, UTC epoch seconds), plus the session columns ``session_uuid``,
``notebook_path`` and ``host``, and optionally ``hardware_json``/``settings_json``.
Nothing here reads hardware or needs IPython; matplotlib is imported only to plot.
"""

from __future__ import annotations

import html
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from carbon_magic.formatting import (
    format_duration,
    format_grams,
    format_grams_range,
    format_kwh,
)
from carbon_magic.ledger.read import CELL_SUM_COLUMNS
from carbon_magic.remote.describe import add_remote_totals, describe_remote, remote_totals
from carbon_magic.reports.cell_rows import (
    Row,
    row_float,
    row_label,
)

__all__ = [
    "HEAVIEST_DEFAULT",
    "SINCE_FORMS",
    "Report",
    "ReportRow",
    "ReportTotals",
    "build_report",
    "heaviest_first",
    "heaviest_needed",
    "ledger_parts",
    "parse_since",
    "pending_note",
    "report_from_totals",
    "sum_cells",
]

HEAVIEST_DEFAULT = 3  # cells counted in "the N heaviest cells" when --top is not given

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
    # The part of the figures above that cluster workers or nodes used (cells that
    # fanned out), and the engines those cells used (``dask``, ``ray``).
    cluster_kwh: float = 0.0
    cluster_emissions_g: float = 0.0
    cluster_cells: int = 0
    # Calls to hosted LLM APIs, estimated, not in the figures above (remote_totals()).
    remote: dict[str, Any] | None = None
    cluster_engines: tuple[str, ...] = ()


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
            remote_line = describe_remote(t.remote)
            if remote_line:
                lines[0] += " (local; remote LLM calls not included)"
                lines.append(remote_line + ".")
            if t.cluster_cells:
                share = t.cluster_emissions_g / t.emissions_g if t.emissions_g > 0 else 0.0
                engines = " and ".join(e.capitalize() for e in t.cluster_engines) or "Cluster"
                lines.append(
                    f"{engines} cluster (in {t.cluster_cells} "
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


def _check_top(top: int | None) -> None:
    if top is not None and (isinstance(top, bool) or int(top) != top or top < 1):
        raise ValueError(f"top must be a positive integer (got {top!r})")


def heaviest_needed(top: int | None) -> int:
    """How many of the heaviest cells a report with ``top`` needs (its table and the
    heaviest cells' share)."""
    return max(top or 0, HEAVIEST_DEFAULT)


def sum_cells(rows: Iterable[Row]) -> dict[str, Any]:
    """The sums of :func:`carbon_magic.ledger.cell_totals`, over ``rows`` in memory."""
    rows = list(rows)
    totals: dict[str, Any] = dict.fromkeys(
        ("n_cells", *CELL_SUM_COLUMNS, "cluster_cells", "cluster_kwh", "cluster_emissions_g"),
        0.0,
    )
    for row in rows:
        totals["n_cells"] += 1
        for name in (*CELL_SUM_COLUMNS, "cluster_kwh", "cluster_emissions_g"):
            totals[name] += row_float(row, name)
        totals["cluster_cells"] += row.get("cluster_hosts") is not None
    totals["remote"] = remote_totals(rows)
    totals["cluster_engines"] = tuple(
        sorted({r["cluster_engine"] for r in rows if r.get("cluster_engine")})
    )
    return totals


def add_totals(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Two :func:`sum_cells` results (of different cells) added up."""
    total: dict[str, Any] = {}
    for name, value in first.items():
        if name == "remote":
            total[name] = add_remote_totals(value, second.get(name))
        elif name == "cluster_engines":
            total[name] = tuple(sorted({*value, *second.get(name, ())}))
        else:
            total[name] = value + second.get(name, 0)
    return total


def heaviest_first(rows: Iterable[Row]) -> list[Row]:
    """``rows`` sorted by emissions, heaviest first; ties keep their order."""
    return sorted(rows, key=lambda r: (-row_float(r, "emissions_g"), row_float(r, "started_at")))


def ledger_parts(
    connection: sqlite3.Connection, top: int | None, **filters: Any
) -> tuple[dict[str, float], Sequence[Row]]:
    """What :func:`report_from_totals` needs, read from a ledger connection: the sums over
    the cells ``filters`` select (``carbon_magic.ledger.cell_filters``), computed by
    SQLite, and the heaviest of them, heaviest first (every one when ``top`` is None).
    Run it inside one read transaction for both to describe the same cells."""
    from carbon_magic.ledger import cell_totals, heaviest_cells, read_cells

    totals = cell_totals(connection, **filters)
    if top is None:  # every cell is listed
        return totals, heaviest_first(read_cells(connection, **filters))
    return totals, heaviest_cells(connection, heaviest_needed(top), **filters)


def build_report(
    rows: Iterable[Row], top: int | None = None, hint: str | None = None, pending: int = 0
) -> Report:
    """A report of ``rows`` (ledger cell rows), heaviest first.

    ``top`` keeps the ``top`` heaviest cells in the table (totals still cover every
    row); ``hint`` is an optional line shown under the table; ``pending`` says how many
    of ``rows`` are not yet written to the ledger file (a line says so). Raises
    ``ValueError`` when ``top`` is not a positive integer.
    """
    _check_top(top)
    rows = list(rows)
    return report_from_totals(sum_cells(rows), heaviest_first(rows), top, hint, pending)


def report_from_totals(
    totals: Mapping[str, Any],
    heaviest: Sequence[Row],
    top: int | None = None,
    hint: str | None = None,
    pending: int = 0,
) -> Report:
    """A report from sums over the cells (``n_cells`` and the other keys of
    :func:`sum_cells`, as :func:`carbon_magic.ledger.cell_totals` computes them in SQL)
    and the heaviest cells, heaviest first: at least :func:`heaviest_needed` of them, or
    every cell when ``top`` is None. Nothing here looks at the other cells, so a ledger
    of millions of cells costs what its ``top`` rows cost. Raises ``ValueError`` when
    ``top`` is not a positive integer."""
    _check_top(top)
    total_g = float(totals["emissions_g"])

    def share(grams: float) -> float:
        return grams / total_g if total_g > 0 else 0.0

    shown = heaviest[:top] if top is not None else heaviest
    n_cells = int(totals["n_cells"])
    heaviest_n = min(top if top is not None else HEAVIEST_DEFAULT, n_cells)
    report_rows = [
        ReportRow(
            execution_count=r.get("execution_count"),
            label=row_label(r),
            duration_s=row_float(r, "duration_s"),
            energy_kwh=row_float(r, "energy_kwh"),
            emissions_g=row_float(r, "emissions_g"),
            emissions_low_g=row_float(r, "emissions_low_g"),
            emissions_high_g=row_float(r, "emissions_high_g"),
            embodied_g=row_float(r, "embodied_g"),
            status=str(r.get("status") or "ok"),
            share=share(row_float(r, "emissions_g")),
            session_uuid=r.get("session_uuid"),
            started_at=r.get("started_at"),
            text=row_label(r, width=10_000),
        )
        for r in shown
    ]
    report_totals = ReportTotals(
        n_cells=n_cells,
        duration_s=float(totals["duration_s"]),
        energy_kwh=float(totals["energy_kwh"]),
        energy_low_kwh=float(totals["energy_low_kwh"]),
        energy_high_kwh=float(totals["energy_high_kwh"]),
        emissions_g=total_g,
        emissions_low_g=float(totals["emissions_low_g"]),
        emissions_high_g=float(totals["emissions_high_g"]),
        embodied_g=float(totals["embodied_g"]),
        heaviest_n=heaviest_n,
        heaviest_share=sum(share(row_float(r, "emissions_g")) for r in heaviest[:heaviest_n]),
        cluster_kwh=float(totals["cluster_kwh"]),
        cluster_emissions_g=float(totals["cluster_emissions_g"]),
        cluster_cells=int(totals["cluster_cells"]),
        remote=totals.get("remote"),
        cluster_engines=tuple(totals.get("cluster_engines") or ()),
    )
    return Report(rows=report_rows, totals=report_totals, hint=hint, pending=max(0, int(pending)))


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
