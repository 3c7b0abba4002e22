"""On a Ray node: the tracker actor, one per node, and the processes of one Ray job.

The actor class is shipped *by value* (as the Dask plugins are, see ``dask_plugins``):
this module imports nothing from carbon_magic at module level, so a node without
carbon_magic still creates the actor, and every read answers "cannot be measured: why"
instead of the actor failing to start.

Process mode charges a driver for the Ray worker processes of its job on the node. Ray
starts worker processes per job, with ``RAY_JOB_ID`` in their environment, and never
lends one to another job; a worker pre-started before any job ran (its ``RAY_JOB_ID``
is the nil id) is charged to the one job reading this node, and to none while several
do (they share a cluster: better to miss that worker than to charge another driver's
work). Finding them reads ``/proc`` on the node (the raylet's children and their
environment) and needs neither the dashboard nor Ray's state API.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

NAMESPACE = "carbon_magic"
# What a kernel and the node actors it finds must agree on: the actor's methods, their
# arguments and replies. In the actor's name, so kernels of other versions use their own.
PROTOCOL = 1
NIL_JOB = "ffffffff"
LIST_EVERY_S = 1.0  # how often a job's worker processes are listed again
ACTIVE_S = 120.0  # a job read within this long counts as reading this node
MAX_TRACKERS = 8  # per node: a tracker per (job, embodied settings) read recently


def actor_name(node_id: str) -> str:
    """The name of the tracker actor of the node ``node_id`` (hex)."""
    return f"carbon_magic-v{PROTOCOL}-{node_id}"


def environment_job(pid: int, proc_root: str = "/proc") -> str | None:
    """The ``RAY_JOB_ID`` in a process's environment, or None (absent, or unreadable)."""
    try:
        with open(f"{proc_root}/{pid}/environ", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    for entry in data.split(b"\0"):
        if entry.startswith(b"RAY_JOB_ID="):
            return entry[len(b"RAY_JOB_ID=") :].decode("ascii", "replace")
    return None


class JobWorkers:
    """The Ray worker processes of one job on this node, as a ``ProcessTree``: their
    cumulative CPU seconds (monotonic: a process that exits keeps its last reading) and
    resident memory.

    ``raylet_pid``: the node's raylet, whose descendants are the node's workers;
    ``exclude``: pids never charged (the tracker actor itself); ``takes_unassigned()``:
    whether workers pre-started without a job count as this job's.
    """

    def __init__(
        self,
        job: str,
        raylet_pid: int,
        exclude: set[int],
        takes_unassigned: Callable[[], bool],
        proc_root: str = "/proc",
    ) -> None:
        self.job = job
        self.raylet_pid = raylet_pid
        self.exclude = exclude
        self.takes_unassigned = takes_unassigned
        self.proc_root = proc_root
        self._jobs: dict[int, str | None] = {}  # pid -> its RAY_JOB_ID (read once)
        self._cpu_s: dict[int, float] = {}  # live pids' last CPU seconds
        self._rss_b: dict[int, int] = {}
        self._gone_s = 0.0  # CPU seconds of this job's processes that exited
        self._listed_at = float("-inf")
        self._pids: set[int] = set()
        self._lock = threading.Lock()

    def _list(self) -> set[int]:
        from carbon_magic.sensors.cputime import list_descendants

        found = set(list_descendants(self.raylet_pid, self.proc_root)) - self.exclude
        for pid in list(self._jobs):
            if pid not in found:
                del self._jobs[pid]
        unassigned = self.takes_unassigned()
        mine = set()
        for pid in found:
            if pid not in self._jobs:
                self._jobs[pid] = environment_job(pid, self.proc_root)
            job = self._jobs[pid]
            if job == self.job or (job == NIL_JOB and unassigned):
                mine.add(pid)
        return mine

    def refresh_children(self) -> None:
        """List the job's worker processes again."""
        pids = self._list()
        with self._lock:
            self._pids = pids
            self._listed_at = time.monotonic()

    def pids(self) -> set[int]:
        """The job's worker processes as of the last listing."""
        with self._lock:
            return set(self._pids)

    def cpu_s(self, include_children: bool = True) -> float:
        """Cumulative CPU seconds of the job's worker processes on this node (their own
        children included), listing them again every ``LIST_EVERY_S``."""
        from carbon_magic.sensors.cputime import read_pid_stat

        if time.monotonic() - self._listed_at >= LIST_EVERY_S:
            self.refresh_children()
        readings = {}
        for pid in self.pids():
            try:
                readings[pid] = read_pid_stat(pid, self.proc_root)
            except (OSError, ValueError, IndexError):
                pass  # exited since the listing: its last reading stays counted
        with self._lock:
            for pid in list(self._cpu_s):
                if pid not in readings:
                    self._gone_s += self._cpu_s.pop(pid)
                    self._rss_b.pop(pid, None)
            for pid, (cpu_s, rss_b) in readings.items():
                self._cpu_s[pid] = max(cpu_s, self._cpu_s.get(pid, 0.0))
                self._rss_b[pid] = rss_b
            return self._gone_s + sum(self._cpu_s.values())

    def rss_bytes(self) -> int:
        """Resident memory of the job's workers at their last reading, bytes."""
        with self._lock:
            return sum(self._rss_b.values())


class NodeTracker:
    """The tracker actor of one Ray node (detached, named ``actor_name(node id)``).

    ``kernel``/``settings``: the identity and ``FOLLOWED_SETTINGS`` of the kernel that
    created it. Never raises from a method: a node where carbon_magic cannot run answers
    ``{"error": why, "unmeasurable": True}``.
    """

    def __init__(self, kernel: dict[str, Any], settings: dict[str, Any]) -> None:
        self.agent: Any = None
        self.error: str | None = None
        self.reading: dict[str, float] = {}  # job id -> when it last read (monotonic)
        self.raylet_pid = int(os.environ.get("RAY_RAYLET_PID") or os.getppid())
        try:
            from carbon_magic.cluster.agent import CounterAgent

            self.agent = CounterAgent(
                kernel, settings, processes=self._job_workers, max_trackers=MAX_TRACKERS
            )
        except Exception as error:  # a missing or broken install must not kill the actor
            self.error = f"{type(error).__name__}: {error}"

    def _job_workers(self, job: str) -> JobWorkers:
        return JobWorkers(job, self.raylet_pid, {os.getpid()}, lambda: self._only_reader() == job)

    def _only_reader(self) -> str | None:
        now = time.monotonic()
        active = [job for job, at in list(self.reading.items()) if now - at < ACTIVE_S]
        return active[0] if len(active) == 1 else None

    def read(
        self, mode: str, kernel: dict[str, Any], settings: dict[str, Any], job: str
    ) -> dict[str, Any]:
        """The node's cumulative figures for the driver of ``job`` (see
        ``agent.CounterAgent.read``), or ``{"error": why}``."""
        if self.agent is None:
            return {"error": self.error or "not set up", "unmeasurable": True}
        self.reading[job] = time.monotonic()
        try:
            return self.agent.read(mode, kernel, settings, scope=job)
        except Exception as error:
            return {"error": f"{type(error).__name__}: {error}"}

    def pid(self) -> int:
        """The actor's process id (it outlives the drivers that use it)."""
        return os.getpid()
