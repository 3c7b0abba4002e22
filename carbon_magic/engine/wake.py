"""When the tracker's background thread ticks, and who hears each tick.

The thread wakes only when someone looks: every ``interval`` while watched (a window is
open, a live listener is attached, a task waits, or a window closed less than one and a
half intervals ago), else every ``IDLE_TICK_S`` (heartbeats for the status bar), and always
before any counter could wrap (a source's ``poll_interval_s``).

The thread never runs while the process forks: a fork with another thread running may
leave the child deadlocked on a lock that thread held (CPython 3.12 and later warn of
it), so the thread is stopped and joined just before ``os.fork()`` and started again in
the parent just after; a child starts with no thread (``Tracker.running`` is False).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable

from carbon_magic.engine.windows import LiveReading
from carbon_magic.sensors.base import EnergySource

Listener = Callable[[LiveReading], None]

# How long the thread sleeps when no one watches (seconds): the idle heartbeat. A
# sensor that must be read sooner (a counter about to wrap) shortens it. A tick and its
# heartbeat cost about 1–1.5 ms of CPU after a long sleep (cold caches, one SQLite
# commit), so 30 s keeps the idle cost near 0.004 % of a core. Each heartbeat declares
# when the next one is due (``next_beat_s``), so the server does not call an idle kernel
# stale between them; a cell starting wakes the thread at once.
IDLE_TICK_S = 30.0
# The first tick after a window closes (seconds, at most one interval): its heartbeat
# shows the kernel idle, with the power since the window ended, this soon after a cell.
AFTER_WINDOW_TICK_S = 0.5
FORK_JOIN_S = 2.0  # the longest a fork waits for the thread to finish its tick
THREAD_NAME = "carbon_magic-tracker"


class WakeSchedule:
    """The thread's cadence, its wake-ups, its listeners and pending tasks.

    Thread-safe for listeners and tasks; the caller holds its own lock around
    ``window_opened``/``window_closed``."""

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self._wake_event = threading.Event()
        self._lock = threading.Lock()
        self._tick_now = False
        self._restart_cadence = False  # the next tick one full cadence from now
        # A window that just closed keeps the interval cadence until then (monotonic s).
        self._active_until = 0.0
        self.open_windows = 0
        self.listeners: list[Listener] = []  # called after every tick
        self.watchers: list[Listener] = []  # the listeners that keep the interval cadence
        self.tasks: list[Callable[[], None]] = []  # run in the thread before its next tick
        self.thread: threading.Thread | None = None
        self._target: Callable[[], None] | None = None
        self._paused_for_fork = False
        self.on_fork_child: Callable[[], None] | None = None  # a forked child has no thread

    # ------------------------------------------------------------------ thread

    def start_thread(self, target: Callable[[], None]) -> None:
        """Run ``target`` (which calls ``run``) in the background thread, now and again
        after each fork of this process."""
        self.stop_event.clear()
        self._target = target
        self.thread = threading.Thread(target=target, name=THREAD_NAME, daemon=True)
        self.thread.start()
        _with_threads.add(self)

    def join_thread(self, timeout_s: float) -> None:
        """End ``run`` and wait up to ``timeout_s`` seconds for the thread to exit."""
        self.stop()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout_s)
        _with_threads.discard(self)

    def _pause_for_fork(self) -> None:
        thread = self.thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            return
        self.stop()
        thread.join(timeout=FORK_JOIN_S)
        self._paused_for_fork = True

    def _resume_after_fork(self) -> None:
        if self._paused_for_fork and self._target is not None:
            self._paused_for_fork = False
            self.start_thread(self._target)

    def _forget_after_fork(self) -> None:
        if self._paused_for_fork:
            self._paused_for_fork = False
            self.thread = None
            _with_threads.discard(self)
            if self.on_fork_child is not None:
                self.on_fork_child()

    def add_listener(self, listener: Listener, watching: bool) -> None:
        """Call ``listener(reading)`` after every tick; a ``watching`` one keeps the
        interval cadence."""
        with self._lock:
            self.listeners.append(listener)
            if watching:
                self.watchers.append(listener)
        self.reschedule()

    def remove_listener(self, listener: Listener) -> None:
        """Undo ``add_listener`` (no error when absent)."""
        with self._lock:
            if listener in self.listeners:
                self.listeners.remove(listener)
            if listener in self.watchers:
                self.watchers.remove(listener)

    def call_soon(self, task: Callable[[], None]) -> None:
        """Run ``task()`` in the thread before its next tick."""
        with self._lock:
            self.tasks.append(task)
        self.reschedule()

    def watched(self) -> bool:
        """Whether someone looks: an open window, a live listener, a pending task, or a
        window closed less than one and a half intervals ago."""
        return bool(
            self.open_windows > 0
            or self.watchers
            or self.tasks
            or time.monotonic() < self._active_until
        )

    @staticmethod
    def idle_sleep_s(interval_s: float) -> float:
        """The longest the thread sleeps between ticks (seconds): the idle heartbeat, or
        the interval when that is longer."""
        return max(IDLE_TICK_S, interval_s)

    def sleep_s(self, interval_s: float, sources: Iterable[EnergySource]) -> float:
        """Seconds until the next tick: ``interval_s`` while watched, the idle heartbeat
        otherwise, and never longer than a source allows (counter wraps)."""
        interval = interval_s if self.watched() else self.idle_sleep_s(interval_s)
        for source in sources:
            limit = source.poll_interval_s()
            if limit is not None:
                interval = min(interval, limit)
        return interval

    def window_opened(self) -> bool:
        """Count a window opened; True when no one watched before (then ``reschedule``)."""
        was_idle = not self.watched()
        self.open_windows += 1
        return was_idle

    def window_closed(self, interval_s: float) -> None:
        """Count a window closed: the next tick comes ``AFTER_WINDOW_TICK_S`` (or one
        interval, when shorter) from now and the cadence starts over from it, so its
        reading covers only the time after the window and the heartbeat it writes shows
        the idle kernel soon after a cell; the interval cadence holds until then."""
        self.open_windows = max(0, self.open_windows - 1)
        self._active_until = time.monotonic() + interval_s * 1.5
        self._restart_cadence = True
        self._wake_event.set()

    def wake(self) -> None:
        """Make the thread tick now."""
        self._tick_now = True
        self._wake_event.set()

    def reschedule(self) -> None:
        """Let the thread recompute when to tick (a window opened or closed, a listener
        came): it ticks within the cadence from now, not at once, so a short cell costs
        no extra tick while it runs."""
        self._wake_event.set()

    def stop(self) -> None:
        """End ``run`` at once."""
        self.stop_event.set()
        self._wake_event.set()

    def run(
        self,
        sleep_s: Callable[[], float],
        tick: Callable[[bool], LiveReading | None],
        notice: Callable[[str], None],
    ) -> None:
        """The thread's loop until ``stop``: every ``sleep_s()`` seconds (asked again
        after each tick and each reschedule), run the pending tasks, ``tick(listening)``
        and hand its reading to the listeners. Every fault goes to ``notice`` once; a
        listener that raises is removed; nothing stops the loop but ``stop``."""
        deadline = time.monotonic() + sleep_s()
        while not self.stop_event.is_set():
            woken = self._wake_event.wait(max(0.0, deadline - time.monotonic()))
            self._wake_event.clear()
            if self.stop_event.is_set():
                break
            if woken and not self._tick_now:
                # Rescheduled: tick no later than the new cadence allows from now (or
                # exactly one cadence from now, after a window closed).
                restart, self._restart_cadence = self._restart_cadence, False
                cadence = sleep_s()
                if restart:
                    deadline = time.monotonic() + min(cadence, AFTER_WINDOW_TICK_S)
                else:
                    deadline = min(deadline, time.monotonic() + cadence)
                continue
            self._tick_now = False
            deadline = time.monotonic() + sleep_s()
            self._tick_once(tick, notice)

    def _tick_once(
        self, tick: Callable[[bool], LiveReading | None], notice: Callable[[str], None]
    ) -> None:
        with self._lock:
            tasks, self.tasks = self.tasks, []
        for task in tasks:
            try:
                task()
            except Exception as error:
                notice(f"background task failed: {error!r}")
        try:
            reading = tick(bool(self.listeners))
        except Exception as error:  # never let the thread die
            notice(f"tracker tick failed: {error!r}")
            return
        if reading is None:
            return
        for listener in list(self.listeners):
            try:
                listener(reading)
            except Exception as error:
                notice(f"live listener failed and was removed: {error!r}")
                self.remove_listener(listener)


# The schedules whose thread runs: paused around every fork of the process.
_with_threads: weakref.WeakSet[WakeSchedule] = weakref.WeakSet()


def _before_fork() -> None:
    for schedule in list(_with_threads):
        schedule._pause_for_fork()


def _after_fork_in_parent() -> None:
    for schedule in list(_with_threads):
        schedule._resume_after_fork()


def _after_fork_in_child() -> None:
    for schedule in list(_with_threads):
        schedule._forget_after_fork()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
