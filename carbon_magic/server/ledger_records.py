"""What the ledger reader answers: sessions, their latest heartbeats and figures, and
the snapshot of them all the server's endpoints are made from.

Units: seconds since the epoch (UTC) for times, watts, kWh, grams CO2e, gCO2e/kWh.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from carbon_magic import records
from carbon_magic.records import Totals, TotalsSource

__all__ = ["Heartbeat", "LedgerSnapshot", "Session", "SessionFigures"]


@dataclass(frozen=True, kw_only=True)
class Heartbeat(records.Heartbeat):
    """A tracker's latest sign of life: what the kernel's document shows of it (the
    fields of :class:`carbon_magic.records.Heartbeat`, read from the columns of the same
    names), live power per component and running totals."""

    power_w: dict[str, float]
    totals: Totals
    intensity_g_per_kwh: float
    intensity_source: str
    tracker_state: str
    # The running cell's predicted total at completion, or None.
    prediction: records.Prediction | None = None
    hint: str | None = None  # the carbon-aware hint of the grid forecast, or None
    # The longest the tracker said it may take to write the next heartbeat (seconds);
    # None for heartbeats written before ledger schema 5.
    next_beat_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class Session(records.KernelSession):
    """One tracker lifetime in one kernel process (a kernel restart starts a new one):
    what the kernel's document shows of it, and the rest of its row."""

    id: int
    kernel_id: str | None
    notebook_path: str | None
    tracker_state: str
    intensity_g_per_kwh: float
    intensity_source: str


@dataclass
class SessionFigures:
    """A session with its latest heartbeat and its totals, all time and since a day start."""

    session: Session
    heartbeat: Heartbeat | None
    all_time: Totals
    today: Totals
    n_cells: int | None = None
    totals_from: TotalsSource = "heartbeat"
    # The sums of the session's recorded cells: unlike the tracker's running totals
    # (which a mode switch or ``%carbon reset`` rewrites), these only grow.
    cells: Totals = field(default_factory=Totals)
    # The session's calls to hosted LLM APIs, estimated, NOT in the totals above
    # (session_remote()); None without any. Read for one kernel only.
    remote: records.RemoteTotals | None = None

    @property
    def last_seen(self) -> float:
        """When this session last wrote anything we read (seconds since the epoch)."""
        if self.heartbeat is not None:
            return self.heartbeat.at
        return self.session.started_at

    @property
    def tracker_state(self) -> str:
        """``running`` or ``stopped``; a session with ``ended_at`` set is stopped."""
        if self.session.ended_at is not None:
            return "stopped"
        if self.heartbeat is not None:
            return self.heartbeat.tracker_state
        return self.session.tracker_state


@dataclass
class LedgerSnapshot:
    """Every session of the ledger with its figures, read in one read transaction."""

    now: float
    day_start: float
    sessions: list[SessionFigures] = field(default_factory=list)
    # Per kernel id: the cluster part (Dask, Ray) of its cells (no ranges).
    cluster: dict[str, Totals] = field(default_factory=dict)
