"""The cluster side: trackers in a Dask worker or on a Ray node, read at the kernels' cell
edges.

A ``CounterAgent`` lives inside a worker (created by the Dask worker plugin) or a Ray
node's tracker actor. It answers one question, cheaply: "your cumulative attributed
energy now, in this mode, for these settings". A kernel takes the difference of two
answers (cell start and end). Nothing here talks to the network; the answer is a small
dict of plain types.

Kernels sharing a cluster share the agent. Every tracker keeps both modes' totals, so
the mode is chosen per read. Settings that change what the counters add up to
(``TRACKER_SETTINGS``: embodied emissions) get a tracker each, so every kernel gets
figures for its own values; the others (the interval) are those of the kernel whose read
started the tracker. Where the processes a kernel is charged for depend on the kernel
(a Ray node runs the tasks of several drivers), each read names its ``scope`` (the Ray
job id) and each scope gets trackers of its own over that scope's processes.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from carbon_magic.cluster.identity import ProcessIdentity, covered_by, this_process
from carbon_magic.settings import Settings
from carbon_magic.vocabulary import COMPONENTS

# Kernel settings a worker's tracker follows unless its own environment sets them.
# Hardware settings (powercap_root, CPU watts, ...) describe the kernel's machine and
# are never passed on; a worker takes them from its own environment.
FOLLOWED_SETTINGS = (
    "mode",
    "interval",
    "embodied",
    "embodied_server_kg",
    "embodied_gpu_kg",
    "lifetime_years",
)
# Of those, the ones a tracker's cumulative figures depend on: each combination of
# values gets its own tracker. Mode is per read; the interval only sets how often a
# tracker samples (an idle worker's cost), not what its counters add up to.
TRACKER_SETTINGS = ("embodied", "embodied_server_kg", "embodied_gpu_kg", "lifetime_years")
# At most this many trackers per worker: beyond, the one read least recently stops (a
# cell in flight on it then counts the worker as missing, never with other settings).
MAX_TRACKERS = 4


def worker_settings(
    kernel_settings: dict[str, Any], environ: dict[str, str] | None = None
) -> Settings:
    """Settings for a worker's tracker: its own environment (``CARBON_MAGIC_*``) first,
    then the kernel's values of ``FOLLOWED_SETTINGS``. The grid intensity is always the
    static table here (the kernel converts cluster energy at its own intensity), so a
    worker never calls a grid API. Raises ``ValueError`` for a bad environment value."""
    settings = Settings(environ)
    changes = {
        name: kernel_settings[name]
        for name in FOLLOWED_SETTINGS
        if name in kernel_settings and settings.origin(name) == "default"
    }
    changes["intensity"] = "static"
    settings.update(**changes)
    return settings


def tracker_key(settings: Settings) -> tuple[Any, ...]:
    """The values of ``TRACKER_SETTINGS`` that matter: with embodied emissions off, the
    embodied figures do not."""
    if not settings.embodied:
        return (False,)
    return tuple(settings.get(name) for name in TRACKER_SETTINGS)


# A scope's processes for process mode (a ``sensors.base.ProcessTree``), or None: the
# agent's own process tree.
ProcessTreeFactory = Callable[[str], Any]


@dataclass
class _Counting:
    """One tracker of the agent: a new one means new cumulative counters (``token``)."""

    token: str
    settings: Settings
    scope: str | None = None  # whose processes (None: the agent's own process tree)
    tracker: Any = None  # started on first use
    last_read: int = 0  # the agent's read count when last read


class CounterAgent:
    """Runs trackers in this process and reports their cumulative counters.

    ``kernel`` is the identity of the kernel that installed the agent and
    ``kernel_settings`` its ``FOLLOWED_SETTINGS``: they make the first tracker, started
    at once unless that kernel already counts this process in both modes (a worker of a
    ``LocalCluster`` started by the kernel). Kernels that count it never start one.
    ``processes(scope)``: the processes a scope's trackers charge in process mode (a
    ``ProcessTree``); without it reads have no scope and charge this process's tree.
    ``max_trackers``: beyond, the one read least recently stops.
    """

    def __init__(
        self,
        kernel: dict[str, Any],
        kernel_settings: dict[str, Any],
        processes: ProcessTreeFactory | None = None,
        max_trackers: int = MAX_TRACKERS,
    ) -> None:
        self.identity = this_process()
        self._processes = processes
        self._max_trackers = max_trackers
        self._default_settings = worker_settings(kernel_settings)
        first = self._counting(self._default_settings, None)
        self.token = first.token  # the installing kernel's tracker
        self._countings: dict[tuple[Any, ...], _Counting] = {
            (None, *tracker_key(self._default_settings)): first
        }
        self._resolved: dict[tuple[Any, ...], Settings] = {}  # a kernel's settings, resolved
        self._reads = 0
        self._lock = threading.Lock()
        if processes is None and not self._covered_in_both_modes(ProcessIdentity.from_dict(kernel)):
            self._start(first)

    def trackers(self) -> list[Any]:
        """The trackers counting for the kernels that read this agent (started ones)."""
        with self._lock:
            return [c.tracker for c in self._countings.values() if c.tracker is not None]

    @staticmethod
    def _counting(settings: Settings, scope: str | None) -> _Counting:
        return _Counting(uuid.uuid4().hex, settings, scope)

    def _covered_in_both_modes(self, kernel: ProcessIdentity) -> bool:
        return covered_by(self.identity, kernel, "process") and covered_by(
            self.identity, kernel, "machine"
        )

    def _start(self, counting: _Counting) -> None:
        from carbon_magic.engine.tracker import Tracker

        factory = None
        if counting.scope is not None and self._processes is not None:
            scope, processes = counting.scope, self._processes

            def factory(settings: Settings) -> Any:
                from carbon_magic.sensors import detect

                return replace(detect(settings), process_tree=processes(scope))

        counting.tracker = Tracker(counting.settings, sensors_factory=factory).start()

    def _for_settings(
        self, kernel_settings: dict[str, Any] | None, scope: str | None = None
    ) -> _Counting:
        """The tracker for a kernel's settings (None: the installing kernel's) and
        scope, made on first use; over ``max_trackers`` the least recently read one
        stops."""
        if kernel_settings is None:
            settings = self._default_settings
        else:
            frozen = tuple(sorted(kernel_settings.items()))
            found = self._resolved.get(frozen)  # Settings parse the environment: once
            if found is None:
                found = self._resolved[frozen] = worker_settings(kernel_settings)
            settings = found
        key = (scope, *tracker_key(settings))
        counting = self._countings.get(key)
        if counting is None:
            counting = self._countings[key] = self._counting(settings, scope)
        while len(self._countings) > self._max_trackers:
            oldest = min(
                (k for k in self._countings if k != key),
                key=lambda k: self._countings[k].last_read,
            )
            stopped = self._countings.pop(oldest)
            if stopped.tracker is not None:
                stopped.tracker.close()
        return counting

    def read(
        self,
        mode: str,
        kernel: dict[str, Any] | None = None,
        kernel_settings: dict[str, Any] | None = None,
        scope: str | None = None,
    ) -> dict[str, Any]:
        """Cumulative figures since the tracker for ``kernel_settings`` (and ``scope``)
        started, in ``mode``, as the kernel ``kernel`` (an identity dict) asks.

        Returns ``{"token", "identity", "counted": bool, "energy_j": {cpu, gpu, ram}
        (joules, IT), "embodied_g" (grams), "methods"}``; ``counted`` is False (and no
        figures, no tracker started) when the asking kernel counts this process itself
        in both modes.
        """
        reply: dict[str, Any] = {"identity": self.identity.to_dict()}
        asker = ProcessIdentity.from_dict(kernel) if kernel else None
        with self._lock:
            if asker is not None and self._covered_in_both_modes(asker):
                reply.update(token=self.token, counted=False)
                return reply
            counting = self._for_settings(kernel_settings, scope)
            self._reads += 1
            counting.last_read = self._reads
            if counting.tracker is None:
                self._start(counting)
            tracker = counting.tracker
            # Every tracker keeps both modes' totals: the mode only picks which is read.
            if tracker.settings.mode != mode:
                tracker.settings.update(mode=mode)
            # session() reads the counters now. No window is opened: one left open would
            # keep the worker's tracker at its interval cadence instead of idle ticks.
            session = tracker.session()
        reply.update(
            token=counting.token,
            counted=True,
            energy_j={name: float(session.energy_j.get(name, 0.0)) for name in COMPONENTS},
            embodied_g=float(session.embodied_g),
            methods=dict(session.methods),
        )
        return reply

    def close(self) -> None:
        """Stop the trackers (idempotent)."""
        with self._lock:
            countings, self._countings = list(self._countings.values()), {}
        for counting in countings:
            if counting.tracker is not None:
                counting.tracker.close()
