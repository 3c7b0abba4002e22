"""The one writer of the ledger: the session row, heartbeats, cell records, API windows.

A :class:`Recorder` owns the ledger connection of one tracker session. The magics use
one per kernel (cells ``via="auto"`` and ``"magic"``); :func:`record_window` gives a
plain script (or a kernel without the extension) one of its own, so a window of
``carbon_magic.measure()`` reaches the ledger ``via="api"``.

Nothing here raises into a notebook: a ledger that cannot be opened or written is
reported once through the tracker's ``notice()`` and the records stay in memory
(the ledger itself retries and journals what it cannot write).
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from carbon_magic.engine.measurement import Measurement
from carbon_magic.kernel.beat_hint import HintCache
from carbon_magic.vocabulary import TrackerState, Via

if TYPE_CHECKING:
    from carbon_magic.engine.tracker import Tracker
    from carbon_magic.engine.windows import LiveReading
    from carbon_magic.kernel.prediction import CellForecast
    from carbon_magic.ledger import Ledger

T = TypeVar("T")

# Heartbeat period while a cell runs: max(1 s, interval), so the status bar, the popup
# and the running cell's footer are at most about one interval behind the live panel.
HEARTBEAT_MIN_S = 1.0


class Recorder:
    """Writes one tracker session to the ledger at ``tracker.settings.ledger``.

    ``kernel_id`` and ``notebook_path`` identify the session in reports (both None for a
    script); ``session_uuid`` is new unless given. Every method is safe to call from
    several threads and never raises: faults go to ``notice`` (default: the tracker's).
    """

    def __init__(
        self,
        tracker: Tracker,
        *,
        kernel_id: str | None = None,
        notebook_path: str | None = None,
        session_uuid: str | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.tracker = tracker
        self.kernel_id = kernel_id
        self.notebook_path = notebook_path
        self.session_uuid = session_uuid or uuid.uuid4().hex
        self._notice = notice or tracker.notice
        self._lock = threading.Lock()
        self._beat_lock = threading.Lock()  # the running cell; never held while writing
        self._running_cell: tuple[str, float] | None = None  # first line, UTC start
        self._forecast: CellForecast | None = None
        self._last_heartbeat = 0.0  # time.monotonic() of the last heartbeat
        self._beat_cell: tuple[str, float] | None = None  # the running cell last beaten
        self._hint = HintCache(tracker)  # the grid's carbon-aware hint, computed seldom
        self._ledger: Ledger | None = self._open()

    # ----------------------------------------------------------------- state

    @property
    def ledger(self) -> Ledger | None:
        """The open ledger, or None when it could not be opened (records in memory)."""
        return self._ledger

    def ledger_path(self) -> str | None:
        """The open ledger's file, or None when there is none (records in memory)."""
        ledger = self._ledger
        return str(ledger.path) if ledger is not None else None

    def status(self) -> str:
        """The ledger's status line (``ok: <path>``, ``in memory ...``), or
        ``unavailable``."""
        ledger = self._ledger
        return ledger.status() if ledger is not None else "unavailable"

    # --------------------------------------------------------------- writing

    def record_cell(self, m: Measurement, *, via: Via, budget: str | None = None) -> None:
        """Record a completed cell or window ``m``; ``budget`` as given (e.g. ``"5g"``)."""
        self._call(
            "record_cell",
            lambda ledger: ledger.record_cell(self.session_uuid, m, via=via, budget=budget),
        )

    def set_running_cell(self, name: str | None, forecast: CellForecast | None = None) -> None:
        """What the heartbeats report as running (None: nothing), from now, and the
        forecast that predicts its total."""
        with self._beat_lock:
            self._running_cell = (name, time.time()) if name is not None else None
            self._forecast = forecast if name is not None else None

    def on_tick(self, reading: LiveReading) -> None:
        """Tracker tick: heartbeat every ``max(HEARTBEAT_MIN_S, interval)`` seconds, and at
        once when a cell started or ended since the last one."""
        now = time.monotonic()
        period = self._beat_period_s()
        # While no cell runs the tracker ticks only every IDLE_TICK_S, and each tick beats.
        with self._beat_lock:
            changed = self._running_cell != self._beat_cell
            # A tenth of slack: ticks an interval apart beat each time, not every other.
            if now - self._last_heartbeat < period * 0.9 and not changed:
                return
            self._last_heartbeat = now
            self._beat_cell = self._running_cell
        self.write_heartbeat(reading)

    def _beat_period_s(self) -> float:
        """Seconds between heartbeats while the tracker ticks at its interval."""
        return max(HEARTBEAT_MIN_S, self.tracker.settings.interval)

    def next_beat_s(self, cell_running: bool) -> float:
        """The longest the next heartbeat may take (seconds), which each heartbeat
        declares: the beat period while a cell runs, the tracker's idle tick otherwise
        (a cell starting beats within one interval)."""
        period = self._beat_period_s()
        return period if cell_running else max(period, self.tracker.longest_sleep_s())

    def write_heartbeat(self, reading: LiveReading | None = None) -> None:
        """Record the session's running totals, the power now (W per component), the
        running cell's first line and start (UTC epoch seconds), its predicted total and
        the grid's carbon-aware hint (None without a forecast), now; ``reading`` (a tick's) saves reading the counters again."""
        if self._ledger is None:
            return
        tracker = self.tracker
        session = reading.session if reading else tracker.session()
        watts = reading.watts if reading else tracker.live_watts()
        state: TrackerState = "running" if tracker.running else "stopped"
        with self._beat_lock:
            running, forecast = self._running_cell, self._forecast
        prediction = forecast.latest if forecast is not None and running else None
        hint = self._hint.text()
        self._call(
            "heartbeat",
            lambda ledger: ledger.heartbeat(
                self.session_uuid,
                at=time.time(),
                watts=watts,
                energy_kwh=session.energy_kwh,
                emissions_g=session.emissions_g,
                emissions_range_g=session.emissions_range_g,
                embodied_g=session.embodied_g,
                intensity_g_per_kwh=session.intensity_g_per_kwh,
                intensity_source=session.intensity_source,
                tracker_state=state,
                running_cell=running[0] if running else None,
                running_cell_started_at=running[1] if running else None,
                prediction=prediction.to_json() if prediction is not None else None,
                hint=hint,
                next_beat_s=self.next_beat_s(running is not None),
                ledger_bytes=file_bytes(ledger.path),
            ),
        )

    def set_tracker_state(self, state: TrackerState) -> None:
        """The tracker started or stopped (``%carbon start``/``stop``)."""
        self._call(
            "update_session",
            lambda ledger: ledger.update_session(self.session_uuid, tracker_state=state),
        )

    def settings_changed(self, changed: dict[str, Any]) -> None:
        """Settings changed (names in ``changed``): a new ``ledger`` path moves the session
        and whatever is pending there; the session row takes the new mode and settings."""
        if "ledger" in changed:
            self._switch_ledger()
        settings = self.tracker.settings
        if "ledger_keep_days" in changed:
            self._call(
                "retention change",
                lambda ledger: ledger.set_keep_days(settings.ledger_keep_days),
            )
        self._call(
            "update_session",
            lambda ledger: ledger.update_session(
                self.session_uuid, mode=settings.mode, settings=settings.as_dict()
            ),
        )

    def end_session(self, timeout_s: float | None = None) -> None:
        """Mark the session ended and close the ledger, writing what is pending within
        ``timeout_s`` seconds (default: the ledger's busy timeout); what still cannot be
        written is journalled beside the ledger. Later records are kept in memory only."""
        self._call(
            "update_session",
            lambda ledger: ledger.update_session(
                self.session_uuid, tracker_state="stopped", ended_at=time.time()
            ),
        )
        with self._lock:
            ledger, self._ledger = self._ledger, None
        if ledger is not None:
            try:
                ledger.close(timeout_s)
            except Exception as error:
                self._notice(f"ledger close failed: {error}")

    # --------------------------------------------------------------- reading

    def cells(
        self, *, all_sessions: bool = False, since: float | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """Cell rows of this session (or of all, ``all_sessions``) started at or after
        ``since`` (UTC epoch seconds), those not yet written included, and how many those
        are. ``([], 0)`` without a ledger or when it cannot be read."""
        ledger = self._ledger
        if ledger is None:
            return [], 0
        try:
            return ledger.cells_with_pending(
                session_uuid=None if all_sessions else self.session_uuid, since=since
            )
        except Exception:
            return [], 0

    def read_ledger(
        self,
        read: Callable[[Path], T],
        *,
        all_sessions: bool = False,
        since: float | None = None,
    ) -> tuple[T | None, list[dict[str, Any]]]:
        """``read(path)`` of the ledger file and the cells of this session (or of all)
        started at or after ``since`` not yet written to it, each cell in exactly one of
        the two. ``(None, [])`` without a ledger; ``None`` when the file cannot be read."""
        ledger = self._ledger
        if ledger is None:
            return None, []
        try:
            return ledger.read_with_pending(
                read, session_uuid=None if all_sessions else self.session_uuid, since=since
            )
        except Exception:
            return None, []

    # --------------------------------------------------------------- private

    def _open(self) -> Ledger | None:
        from carbon_magic.ledger import Ledger

        tracker = self.tracker
        settings = tracker.settings
        try:
            ledger = Ledger(settings.ledger, keep_days=settings.ledger_keep_days)
            intensity = tracker.intensity()
            ledger.open_session(
                session_uuid=self.session_uuid,
                kernel_id=self.kernel_id,
                notebook_path=self.notebook_path,
                host=socket.gethostname(),
                pid=os.getpid(),
                started_at=time.time(),
                interval_s=settings.interval,
                mode=settings.mode,
                hardware=tracker.hardware(),
                methods=tracker.methods(),
                settings=settings.as_dict(),
                intensity_source=intensity.source,
                intensity_g_per_kwh=intensity.g_per_kwh,
            )
            return ledger
        except Exception as error:  # the ledger never stops the notebook
            self._notice(f"ledger unavailable, records kept in memory: {error}")
            return None

    def _switch_ledger(self) -> None:
        with self._lock:
            old, self._ledger = self._ledger, self._open()
            if old is None:
                return
            try:
                if self._ledger is not None:
                    old.hand_over_pending(self._ledger)  # nothing recorded is left behind
                # The session goes on in the new ledger: in the old one it ends here.
                old.update_session(self.session_uuid, tracker_state="stopped", ended_at=time.time())
                old.close()
            except Exception as error:
                self._notice(f"ledger switch failed: {error}")

    def _call(self, what: str, write: Callable[[Ledger], None]) -> None:
        with self._lock:
            ledger = self._ledger
            if ledger is None:
                return
            try:
                write(ledger)
            except Exception as error:
                self._notice(f"ledger {what} failed: {error}")


def file_bytes(path: Path) -> int | None:
    """The size of the file at ``path`` in bytes; None when it cannot be read."""
    try:
        return os.stat(path).st_size
    except OSError:
        return None


# ------------------------------------------------------------ API windows

# The recorder of the kernel's magics while the extension is loaded: its cells are
# recorded already, so windows inside them are not recorded a second time.
_kernel_recorder: Recorder | None = None
_script_recorder: Recorder | None = None
_script_lock = threading.Lock()


def set_kernel_recorder(recorder: Recorder | None) -> None:
    """The magics' recorder while the extension is loaded (None when unloaded)."""
    global _kernel_recorder
    _kernel_recorder = recorder


def record_window(m: Measurement) -> bool:
    """Record a finished ``measure()`` window ``via="api"``, in a session of this
    process opened on first use and ended at exit. Inside a kernel with the extension
    loaded nothing is written (its cells are recorded, the window with them); returns
    whether it was recorded. Never raises."""
    global _script_recorder
    if _kernel_recorder is not None:
        return False
    try:
        with _script_lock:
            if _script_recorder is None:
                from carbon_magic.engine.tracker import get_tracker

                tracker = get_tracker()
                _script_recorder = Recorder(tracker, notebook_path=_script_name())
                tracker.settings.on_change(_script_recorder.settings_changed)
                atexit.register(_end_script_session, _script_recorder)
            recorder = _script_recorder
        recorder.record_cell(m, via="api")
        return True
    except Exception as error:
        from carbon_magic.engine.tracker import get_tracker

        get_tracker().notice(f"measure() window not recorded: {error!r}")
        return False


def _script_name() -> str | None:
    """What a script's session shows as its notebook: the script's path (papermill and
    nbclient set ``JPY_SESSION_NAME``), or None for an interactive interpreter."""
    named = os.environ.get("JPY_SESSION_NAME")
    if named:
        return named
    if "ipykernel" in sys.modules:
        return None  # a kernel's argv[0] is ipykernel's launcher, not the user's work
    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-") else None
    return os.path.abspath(script) if script else None


def _end_script_session(recorder: Recorder) -> None:
    from carbon_magic.ledger import EXIT_WAIT_S

    recorder.end_session(EXIT_WAIT_S)
