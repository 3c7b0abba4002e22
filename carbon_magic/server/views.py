"""JSON documents of the REST endpoints, built from ledger figures (pure functions).

Times are seconds since the epoch (UTC), ages seconds, power watts, energy kWh
(facility, after PUE), emissions grams CO2e, grid intensity gCO2e/kWh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from carbon_magic.ledger import LOST_AFTER_S, session_state
from carbon_magic.server.cell_pages import CellPage, CellRecord
from carbon_magic.server.cell_sums import Totals
from carbon_magic.server.ledger_records import LedgerSnapshot, SessionFigures
from carbon_magic.vocabulary import COMPONENTS

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

    tracker_state: str  # running | stopped | lost (silent for longer than LOST_AFTER_S)
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
    return Liveness(state, age, limit, stale, state == "running" and not stale)


def power_json(figures: SessionFigures) -> dict[str, float]:
    """Watts per component at the latest heartbeat, and their sum (zeros without one)."""
    power = dict(figures.heartbeat.power_w) if figures.heartbeat else dict.fromkeys(COMPONENTS, 0.0)
    power["total"] = sum(power[name] for name in COMPONENTS)
    return power


def intensity_json(figures: SessionFigures) -> dict[str, Any]:
    """The grid intensity in use (the heartbeat's, else the session's at its start)."""
    source = figures.heartbeat or figures.session
    return {"g_per_kwh": source.intensity_g_per_kwh, "source": source.intensity_source}


def prediction_json(figures: SessionFigures) -> dict[str, Any] | None:
    """The running cell's predicted total at completion, from the latest heartbeat:
    ``{"fraction": 0..1, "emissions_g": g, "emissions_range_g": [low, high], "eta_s": s}``
    (grams CO2e, seconds); None when no cell is running or it has no progress to follow."""
    heartbeat = figures.heartbeat
    if heartbeat is None or heartbeat.running_cell is None or figures.tracker_state != "running":
        return None
    return heartbeat.prediction


def hint_json(figures: SessionFigures, live: bool) -> dict[str, str] | None:
    """The carbon-aware hint of the kernel's grid forecast at the latest heartbeat,
    ``{"text": ...}``; None without one, or when the session is not live (the grid and
    its forecast of a stopped or silent kernel are not those of now)."""
    heartbeat = figures.heartbeat
    if not live or heartbeat is None or heartbeat.hint is None:
        return None
    return {"text": heartbeat.hint}


def kernel_json(
    kernel_id: str,
    figures: SessionFigures,
    now: float,
    stale_after: StaleAfter,
    paths: Paths | None = None,
) -> dict[str, Any]:
    """The document of ``GET carbon-magic/api/v1/kernels/{kernel_id}`` (its TypeScript
    interface, ``IKernelFigures`` in labextension/src/schema.ts, declares every field).

    ``session.gpus`` maps the machine's GPU device keys to ``{"vendor", "model"}``."""
    session = figures.session
    state = liveness(figures, now, stale_after)
    heartbeat = figures.heartbeat
    return {
        "kernel_id": kernel_id,
        "notebook_path": notebook_path(figures, paths),
        "now": now,
        "tracker_state": state.tracker_state,
        "live": state.live,
        "stale": state.stale,
        "age_s": state.age_s,
        "stale_after_s": state.stale_after_s,
        "power_w": power_json(figures),
        "totals": {
            **figures.all_time.to_json(),
            "source": figures.totals_from,
            "n_cells": figures.n_cells,
        },
        "intensity": intensity_json(figures),
        "prediction": prediction_json(figures),
        "hint": hint_json(figures, state.live),
        # Hosted LLM calls of the session, estimated (EcoLogits), not in the totals.
        "remote": figures.remote,
        "totals_include_remote": False,
        "heartbeat": None
        if heartbeat is None
        else {
            "at": heartbeat.at,
            "running_cell": heartbeat.running_cell,
            "running_cell_started_at": heartbeat.running_cell_started_at,
        },
        "session": {
            "session_uuid": session.session_uuid,
            "host": session.host,
            "pid": session.pid,
            "started_at": session.started_at,
            "ended_at": session.ended_at,
            "interval_s": session.interval_s,
            "mode": session.mode,
            "methods": session.methods,
            "gpus": session.gpus,
        },
    }


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
    scope: str,
    paths: Paths | None = None,
) -> dict[str, Any]:
    """The document of ``GET carbon-magic/api/v1/summary``."""
    today, all_time = ledger_totals(snapshot)
    entries = []
    for summary in kernels:
        latest = summary.latest
        state = liveness(latest, snapshot.now, stale_after)
        entries.append(
            {
                "kernel_id": summary.kernel_id,
                "tracked": True,
                "notebook_path": notebook_path(latest, paths),
                "tracker_state": state.tracker_state,
                "live": state.live,
                "stale": state.stale,
                "age_s": state.age_s,
                "power_w": power_json(latest),
                "intensity": intensity_json(latest),
                "sessions": summary.n_sessions,
                "today": summary.today.to_json(),
                "all_time": summary.all_time.to_json(),
            }
        )
    entries.extend({"kernel_id": kernel_id, "tracked": False} for kernel_id in untracked)
    listed_today = sum((summary.today for summary in kernels), Totals())
    listed_all_time = sum((summary.all_time for summary in kernels), Totals())
    return {
        "now": snapshot.now,
        "day_start": snapshot.day_start,
        "ledger": {"path": ledger_path, "exists": True},
        "scope": scope,
        "kernels": entries,
        "kernels_total": {
            "power_w": _sum_power(kernels, snapshot.now, stale_after),
            "today": listed_today.to_json(),
            "all_time": listed_all_time.to_json(),
        },
        "totals": {"today": today.to_json(), "all_time": all_time.to_json()},
    }


def empty_summary_json(
    now: float, day_start: float, ledger_path: str, scope: str, untracked: list[str]
) -> dict[str, Any]:
    """The summary when there is no ledger yet: every figure zero."""
    zero = Totals().to_json()
    return {
        "now": now,
        "day_start": day_start,
        "ledger": {"path": ledger_path, "exists": False},
        "scope": scope,
        "kernels": [{"kernel_id": kernel_id, "tracked": False} for kernel_id in untracked],
        "kernels_total": {
            "power_w": {**dict.fromkeys(COMPONENTS, 0.0), "total": 0.0},
            "today": zero,
            "all_time": zero,
        },
        "totals": {"today": zero, "all_time": zero},
    }


def _sum_power(
    kernels: list[KernelSummary], now: float, stale_after: StaleAfter
) -> dict[str, float]:
    """Watts per component summed over the live kernels."""
    power = dict.fromkeys(COMPONENTS, 0.0)
    for summary in kernels:
        if liveness(summary.latest, now, stale_after).live:
            for name in COMPONENTS:
                power[name] += power_json(summary.latest)[name]
    power["total"] = sum(power.values())
    return power


def cell_json(record: CellRecord) -> dict[str, Any]:
    """One recorded cell: its figures, their ranges and how they were obtained.

    ``power_w`` is the mean power over the cell (IT energy per component over its
    duration, before PUE); ``energy_kwh`` is the facility energy (after PUE).
    """
    duration = record.duration_s
    mean = {
        name: (joules / duration if duration > 0 else 0.0)
        for name, joules in record.energy_j.items()
    }
    mean["total"] = sum(mean[name] for name in COMPONENTS)
    return {
        "id": record.id,
        "cell_id": record.cell_id,
        "kernel_id": record.kernel_id,
        "session_uuid": record.session_uuid,
        "execution_count": record.execution_count,
        "name": record.name,
        "source": record.source,
        "via": record.via,
        "status": record.status,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "duration_s": duration,
        "energy_j": dict(record.energy_j),
        "power_w": mean,
        "energy_kwh": record.energy_kwh,
        "energy_range_kwh": list(record.energy_range_kwh),
        "emissions_g": record.emissions_g,
        "emissions_range_g": list(record.emissions_range_g),
        "embodied_g": record.embodied_g,
        "intensity": {
            "g_per_kwh": record.intensity_g_per_kwh,
            "source": record.intensity_source,
        },
        "pue": record.pue,
        "mode": record.mode,
        "methods": dict(record.methods),
        "budget": record.budget,
        # Hosted LLM calls, estimated (EcoLogits), never added to the figures above.
        "remote": record.remote,
        "totals_include_remote": False,
    }


def cells_json(
    page: CellPage,
    now: float,
    *,
    after: int,
    limit: int,
    kernel_id: str | None = None,
    notebook_path: str | None = None,
) -> dict[str, Any]:
    """The document of ``GET …/kernels/{kernel_id}/cells`` and ``GET …/cells?path=``.

    ``last_id`` is the cursor of the next page (``after=last_id``): the last cell's row
    id, or ``after`` itself when the page is empty; ``more`` says whether to ask again.
    """
    cells = [cell_json(record) for record in page.cells]
    return {
        "kernel_id": kernel_id,
        "notebook_path": notebook_path,
        "now": now,
        "after": after,
        "limit": limit,
        "last_id": page.cells[-1].id if page.cells else after,
        "more": page.more,
        "cells": cells,
    }
