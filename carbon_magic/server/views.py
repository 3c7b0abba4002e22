"""The documents of the REST endpoints (:mod:`carbon_magic.records`), built from ledger
figures (pure functions); the handlers send them with ``record_json.to_json``.

Times are seconds since the epoch (UTC), ages seconds, power watts, energy kWh
(facility, after PUE), emissions grams CO2e, grid intensity gCO2e/kWh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import cast

from carbon_magic import records
from carbon_magic.ledger import LOST_AFTER_S, session_state
from carbon_magic.record_json import project
from carbon_magic.records import Totals
from carbon_magic.server.cell_pages import CellPage
from carbon_magic.server.ledger_records import LedgerSnapshot, SessionFigures

StaleAfter = Callable[[float, "float | None"], float]  # interval_s, next_beat_s -> seconds
Paths = Mapping[str, str]  # kernel id -> notebook path now, from the server's sessions


def notebook_path(figures: SessionFigures, paths: Paths | None = None) -> str | None:
    """The kernel's notebook: its path now on this server (it follows renames), else
    the path the kernel was started with, as the ledger recorded it."""
    kernel_id = figures.session.kernel_id
    if paths and kernel_id is not None and kernel_id in paths:
        return paths[kernel_id]
    return figures.session.notebook_path


def utc_day_start(now: float) -> float:
    """Midnight UTC of the day containing ``now`` (seconds since the epoch)."""
    day = datetime.fromtimestamp(now, tz=timezone.utc).date()
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()


@dataclass(frozen=True)
class Liveness:
    """How current a session's live figures are."""

    tracker_state: records.LiveState  # lost: silent for longer than LOST_AFTER_S
    age_s: float  # seconds since the latest heartbeat (or the session start, before one)
    stale_after_s: float
    stale: bool
    live: bool  # running and not stale: the power figures describe now


def liveness(figures: SessionFigures, now: float, stale_after: StaleAfter) -> Liveness:
    """Judge a session's heartbeat: stale when older than ``stale_after(interval_s,
    next_beat_s)`` (the wait for the next heartbeat that the latest one declared); a
    running session silent for longer than LOST_AFTER_S (or the stale limit, if longer)
    reads ``lost``: ended, as a killed kernel leaves it."""
    heartbeat = figures.heartbeat
    next_beat_s = heartbeat.next_beat_s if heartbeat is not None else None
    limit = stale_after(figures.session.interval_s, next_beat_s)
    age = max(0.0, now - figures.last_seen)
    stale = age > limit
    state = session_state(
        figures.session.ended_at,
        figures.tracker_state,
        figures.last_seen,
        now,
        max(limit, LOST_AFTER_S),
    )
    live_state = cast(records.LiveState, state)
    return Liveness(live_state, age, limit, stale, state == "running" and not stale)


ZERO_POWER = records.Power(cpu=0.0, gpu=0.0, ram=0.0, total=0.0)


def power_json(figures: SessionFigures) -> records.Power:
    """Watts per component at the latest heartbeat, and their sum (zeros without one)."""
    if figures.heartbeat is None:
        return ZERO_POWER
    watts = figures.heartbeat.power_w
    cpu, gpu, ram = watts["cpu"], watts["gpu"], watts["ram"]
    return records.Power(cpu=cpu, gpu=gpu, ram=ram, total=cpu + gpu + ram)


def intensity_json(figures: SessionFigures) -> records.Intensity:
    """The grid intensity in use (the heartbeat's, else the session's at its start)."""
    source = figures.heartbeat or figures.session
    return records.Intensity(source.intensity_g_per_kwh, source.intensity_source)


def prediction_json(figures: SessionFigures) -> records.Prediction | None:
    """The running cell's predicted total at completion, from the latest heartbeat; None
    when no cell is running or it has no progress to follow."""
    heartbeat = figures.heartbeat
    if heartbeat is None or heartbeat.running_cell is None or figures.tracker_state != "running":
        return None
    return heartbeat.prediction


def hint_json(figures: SessionFigures, live: bool) -> records.KernelHint | None:
    """The carbon-aware hint of the kernel's grid forecast at the latest heartbeat; None
    without one, or when the session is not live (the grid and its forecast of a stopped
    or silent kernel are not those of now)."""
    heartbeat = figures.heartbeat
    if not live or heartbeat is None or heartbeat.hint is None:
        return None
    return records.KernelHint(heartbeat.hint)


def kernel_json(
    kernel_id: str,
    figures: SessionFigures,
    now: float,
    stale_after: StaleAfter,
    paths: Paths | None = None,
    budgets: list[records.ScopeBudget] | None = None,
) -> records.KernelFigures:
    """The document of ``GET carbon-magic/api/v1/kernels/{kernel_id}``, with the
    kernel's caps ``budgets``."""
    state = liveness(figures, now, stale_after)
    heartbeat = figures.heartbeat
    return records.KernelFigures(
        kernel_id=kernel_id,
        notebook_path=notebook_path(figures, paths),
        now=now,
        tracker_state=state.tracker_state,
        live=state.live,
        stale=state.stale,
        age_s=state.age_s,
        stale_after_s=state.stale_after_s,
        power_w=power_json(figures),
        totals=records.KernelTotals(
            **vars(figures.all_time), source=figures.totals_from, n_cells=figures.n_cells
        ),
        intensity=intensity_json(figures),
        prediction=prediction_json(figures),
        hint=hint_json(figures, state.live),
        # Hosted LLM calls of the session, estimated (EcoLogits), not in the totals.
        remote=figures.remote,
        totals_include_remote=False,
        heartbeat=None if heartbeat is None else project(records.Heartbeat, heartbeat),
        session=project(records.KernelSession, figures.session),
        budgets=list(budgets or ()),
    )


@dataclass
class KernelSummary:
    """All sessions of one kernel id: the latest one's live state, totals over all."""

    kernel_id: str
    latest: SessionFigures
    today: Totals
    all_time: Totals
    n_sessions: int
    cells: Totals = field(default_factory=Totals)  # sums of the recorded cells: only grow


def group_by_kernel(sessions: Iterable[SessionFigures]) -> dict[str, KernelSummary]:
    """Sessions grouped by kernel id (sessions without one are left out)."""
    kernels: dict[str, KernelSummary] = {}
    for figures in sessions:
        kernel_id = figures.session.kernel_id
        if not kernel_id:
            continue
        summary = kernels.get(kernel_id)
        if summary is None:
            kernels[kernel_id] = KernelSummary(
                kernel_id, figures, figures.today, figures.all_time, 1, figures.cells
            )
            continue
        summary.today += figures.today
        summary.all_time += figures.all_time
        summary.cells += figures.cells
        summary.n_sessions += 1
        key = (figures.session.started_at, figures.session.id)
        if key > (summary.latest.session.started_at, summary.latest.session.id):
            summary.latest = figures
    return kernels


def select_kernels(
    snapshot: LedgerSnapshot,
    server_kernel_ids: Iterable[str] | None,
    stale_after: StaleAfter,
) -> tuple[list[KernelSummary], list[str]]:
    """The kernels to list one by one, and the server's kernels that have no tracker.

    With ``server_kernel_ids`` (the server's running kernels), those that have ledger
    sessions; with ``None``, every kernel whose latest session is live in the ledger.
    """
    kernels = group_by_kernel(snapshot.sessions)
    if server_kernel_ids is None:
        chosen = [
            summary
            for summary in kernels.values()
            if liveness(summary.latest, snapshot.now, stale_after).live
        ]
        untracked: list[str] = []
    else:
        ids = list(server_kernel_ids)
        chosen = [kernels[kernel_id] for kernel_id in ids if kernel_id in kernels]
        untracked = [kernel_id for kernel_id in ids if kernel_id not in kernels]
    chosen.sort(key=lambda summary: summary.kernel_id)
    return chosen, sorted(untracked)


def ledger_totals(snapshot: LedgerSnapshot) -> tuple[Totals, Totals]:
    """Everything recorded in the ledger: (since the day start, all time)."""
    today, all_time = Totals(), Totals()
    for figures in snapshot.sessions:
        today += figures.today
        all_time += figures.all_time
    return today, all_time


def summary_json(
    snapshot: LedgerSnapshot,
    kernels: list[KernelSummary],
    untracked: list[str],
    stale_after: StaleAfter,
    ledger_path: str,
    scope: records.Scope,
    paths: Paths | None = None,
) -> records.Summary:
    """The document of ``GET carbon-magic/api/v1/summary``."""
    today, all_time = ledger_totals(snapshot)
    entries: list[records.TrackedKernel | records.UntrackedKernel] = []
    for summary in kernels:
        latest = summary.latest
        state = liveness(latest, snapshot.now, stale_after)
        entries.append(
            records.TrackedKernel(
                kernel_id=summary.kernel_id,
                tracked=True,
                notebook_path=notebook_path(latest, paths),
                tracker_state=state.tracker_state,
                live=state.live,
                stale=state.stale,
                age_s=state.age_s,
                power_w=power_json(latest),
                intensity=intensity_json(latest),
                sessions=summary.n_sessions,
                today=summary.today,
                all_time=summary.all_time,
            )
        )
    entries.extend(records.UntrackedKernel(kernel_id, tracked=False) for kernel_id in untracked)
    return records.Summary(
        now=snapshot.now,
        day_start=snapshot.day_start,
        ledger=records.LedgerFile(ledger_path, exists=True),
        scope=scope,
        kernels=entries,
        kernels_total=records.KernelsTotal(
            power_w=_sum_power(kernels, snapshot.now, stale_after),
            today=sum((summary.today for summary in kernels), Totals()),
            all_time=sum((summary.all_time for summary in kernels), Totals()),
        ),
        totals=records.LedgerTotals(today, all_time),
    )


def empty_summary_json(
    now: float, day_start: float, ledger_path: str, scope: records.Scope, untracked: list[str]
) -> records.Summary:
    """The summary when there is no ledger yet: every figure zero."""
    return records.Summary(
        now=now,
        day_start=day_start,
        ledger=records.LedgerFile(ledger_path, exists=False),
        scope=scope,
        kernels=[records.UntrackedKernel(kernel_id, tracked=False) for kernel_id in untracked],
        kernels_total=records.KernelsTotal(ZERO_POWER, Totals(), Totals()),
        totals=records.LedgerTotals(Totals(), Totals()),
    )


def _sum_power(kernels: list[KernelSummary], now: float, stale_after: StaleAfter) -> records.Power:
    """Watts per component summed over the live kernels."""
    cpu = gpu = ram = 0.0
    for summary in kernels:
        if liveness(summary.latest, now, stale_after).live:
            power = power_json(summary.latest)
            cpu, gpu, ram = cpu + power.cpu, gpu + power.gpu, ram + power.ram
    return records.Power(cpu=cpu, gpu=gpu, ram=ram, total=cpu + gpu + ram)


def cells_json(
    page: CellPage,
    now: float,
    *,
    after: int,
    limit: int,
    kernel_id: str | None = None,
    notebook_path: str | None = None,
) -> records.CellsPage:
    """The document of ``GET …/kernels/{kernel_id}/cells`` and ``GET …/cells?path=``.

    ``last_id`` is the cursor of the next page (``after=last_id``): the last cell's row
    id, or ``after`` itself when the page is empty; ``more`` says whether to ask again.
    """
    return records.CellsPage(
        kernel_id=kernel_id,
        notebook_path=notebook_path,
        now=now,
        after=after,
        limit=limit,
        last_id=page.cells[-1].id if page.cells else after,
        more=page.more,
        cells=page.cells,
    )
