"""``%carbon report`` over the ledger, off the cell's path.

The report is computed by SQLite (sums over the cells, and only the heaviest rows), from
one snapshot of the ledger taken together with the cells not yet written to it, so each
cell counts once. It runs on a worker thread; the cell waits for it at most
``REPORT_WAIT_S`` seconds. A report that takes longer (a ledger of millions of cells, a
slow disk) is shown in place of a placeholder when it is ready, and the notebook is free
meanwhile.

Units: grams CO2e; times in seconds.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from carbon_magic.formatting import format_grams

if TYPE_CHECKING:
    from carbon_magic.kernel.kernel_session import KernelSession
    from carbon_magic.reports.report import Report

__all__ = [
    "REPORT_WAIT_S",
    "PendingReport",
    "ledger_report",
    "memory_rows",
    "report_hint",
    "run_bounded",
]

REPORT_WAIT_S = 0.8  # the longest a cell waits for its report, seconds


class PendingReport:
    """What the cell shows while its report is being computed."""

    text = (
        "Reading the ledger for the report… it appears here when ready; "
        "the notebook is free meanwhile."
    )

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return f'<div class="carbon-magic-report"><p>{self.text}</p></div>'


def ledger_report(
    session: KernelSession, top: int | None, all_sessions: bool, since: float | None
) -> Report:
    """The report of this session's cells (or all sessions'), started since ``since``
    (UTC epoch seconds); the kernel's in-memory records when the ledger has none of
    this session's. Costs what the ``top`` heaviest rows cost, however long the ledger."""
    from carbon_magic import ledger as ledger_module
    from carbon_magic.reports import report

    recorder = session.recorder
    filters: dict[str, Any] = {
        "session_uuid": None if all_sessions else recorder.session_uuid,
        "since": since,
    }
    connection, pending = recorder.read_ledger(
        ledger_module.open_snapshot, all_sessions=all_sessions, since=since
    )
    totals = report.sum_cells(())
    heaviest: Sequence[Mapping[str, Any]] = []
    if connection is not None:
        try:
            totals, heaviest = report.ledger_parts(connection, top, **filters)
        except sqlite3.Error:
            pass  # unreadable: the cells not yet written, or the kernel's memory
        finally:
            connection.close()
    if pending:
        totals = report.add_totals(totals, report.sum_cells(pending))
    heaviest = report.heaviest_first([*heaviest, *pending])
    if not totals["n_cells"] and not all_sessions:
        rows = memory_rows(session, since)
        return report.build_report(rows, top=top, hint=report_hint(session, rows))
    hint = report_hint(session, heaviest)
    return report.report_from_totals(totals, heaviest, top=top, hint=hint, pending=len(pending))


def memory_rows(session: KernelSession, since: float | None = None) -> list[dict[str, Any]]:
    """The session's cells the kernel keeps in memory (its latest records), as ledger
    rows, started at or after ``since`` (UTC epoch seconds): what reports and exports
    show when the ledger cannot be used."""
    from carbon_magic import ledger as ledger_module

    return [
        ledger_module.cell_row(m, via="memory", budget=None)
        | {"session_uuid": session.session_uuid, "notebook_path": session.notebook_path}
        for m in session.records
        if since is None or (m.started_at and m.started_at.timestamp() >= since)
    ]


def report_hint(session: KernelSession, rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The carbon-aware line under a report: what the three heaviest of ``rows`` would
    have emitted at the forecast's best time. None without a forecast; never raises."""
    try:
        from carbon_magic.grid.hints import carbon_aware_hint, emissions_if_run_at

        tracker = session.tracker
        provider = tracker.intensity_provider
        if provider is None:  # the tracker has not started: no forecast yet
            return None
        hint = carbon_aware_hint(tracker.intensity(), provider.forecast())
        if hint is None:
            return None
        heaviest = sorted(rows, key=lambda row: row["emissions_g"], reverse=True)[:3]
        total = sum(row["emissions_g"] for row in heaviest)
        then = emissions_if_run_at(total, hint.now_g, hint.best_g)
        return (
            f"{hint.text}; the {len(heaviest)} heaviest cells ({format_grams(total)}) "
            f"would have emitted ≈ {format_grams(then)} then"
        )
    except Exception:
        return None


def run_bounded(compute: Callable[[], Any], wait_s: float | None = None) -> Any:
    """``compute()`` on a worker thread: its result (or its exception) when it ends within
    ``wait_s`` seconds (default ``REPORT_WAIT_S``); otherwise None, after displaying a
    :class:`PendingReport` that the result replaces when it comes."""
    from IPython.display import display

    wait = REPORT_WAIT_S if wait_s is None else wait_s
    lock = threading.Lock()
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        failure: Exception | None = None
        try:
            result: Any = compute()
        except Exception as error:  # shown in place of the report, or raised by the cell
            result, failure = None, error
        with lock:
            outcome["result"], outcome["error"] = result, failure
            done.set()
            handle = outcome.get("handle")
        if handle is not None:
            handle.update(result if failure is None else f"%carbon report failed: {failure}")

    threading.Thread(target=work, name="carbon-magic-report", daemon=True).start()
    done.wait(wait)
    with lock:
        if not done.is_set():
            outcome["handle"] = display(PendingReport(), display_id=True)
            return None
    if outcome["error"] is not None:
        raise outcome["error"]
    return outcome["result"]
