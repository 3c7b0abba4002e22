"""CPU-time counters: the whole machine's busy time and the kernel's process tree.

These feed both the CPU power model (machines without RAPL) and process-mode
attribution (the kernel's share of busy CPU time). Reading them is cheap: one small
file for the machine, ``os.times()`` for the kernel, and one ``stat`` file per known
child; the child list itself is refreshed rarely (a ``/proc`` walk costs milliseconds).

Where ``/proc`` is absent (macOS, Windows) the same counters come from psutil
(:class:`PsutilSystemCpuCounter`, :class:`PsutilProcessTreeCounter`);
:func:`cpu_time_counters` picks one pair.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from .base import SystemCpu

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read_proc_stat_cpu_s(proc_root: str = "/proc") -> tuple[float, float]:
    """(busy, total) CPU seconds of all CPUs since boot, from ``/proc/stat``.

    Busy is user+nice+system+irq+softirq; idle and iowait are not busy; steal (time
    the hypervisor gave to others) is left out of both; guest time is already inside
    user. Raises ``OSError`` when the file is missing.
    """
    with open(os.path.join(proc_root, "stat"), "rb") as handle:
        return _parse_proc_stat_line(handle.readline())


def _parse_proc_stat_line(line: bytes) -> tuple[float, float]:
    fields = line.split()
    values = [int(value) for value in fields[1:]]
    values += [0] * (8 - len(values))
    user, nice, system, idle, iowait, irq, softirq = values[:7]
    busy = user + nice + system + irq + softirq
    return busy / _CLOCK_TICKS, (busy + idle + iowait) / _CLOCK_TICKS


def read_cgroup_usage_s(cgroup_root: str = "/sys/fs/cgroup") -> float | None:
    """CPU seconds used by this cgroup (v2 ``cpu.stat`` usage_usec), or None."""
    try:
        with open(os.path.join(cgroup_root, "cpu.stat"), "rb") as handle:
            for line in handle:
                if line.startswith(b"usage_usec "):
                    return int(line.split()[1]) / 1e6
    except (OSError, ValueError, IndexError):
        return None
    return None


class SystemCpuCounter:
    """Cumulative busy CPU seconds of the visible machine.

    In a container limited by cgroup ``cpu.max``, ``/proc/stat`` describes the host,
    so the cgroup's own usage counter is used instead.
    """

    def __init__(
        self, proc_root: str = "/proc", cgroup_root: str = "/sys/fs/cgroup", limited: bool = False
    ) -> None:
        self.proc_root = proc_root
        self.cgroup_root = cgroup_root
        self.source = "/proc/stat"
        if limited and read_cgroup_usage_s(cgroup_root) is not None:
            self.source = "cgroup cpu.stat"
        self._fd: int | None = None
        self._lock = threading.Lock()

    def busy_s(self) -> float:
        """Cumulative busy CPU seconds (all visible CPUs together)."""
        if self.source == "cgroup cpu.stat":
            usage = read_cgroup_usage_s(self.cgroup_root)
            if usage is not None:
                return usage
        # Read the first line of /proc/stat with pread on a file kept open: this runs
        # at every window edge, and open/close are most of its cost.
        with self._lock:
            if self._fd is None:
                self._fd = os.open(os.path.join(self.proc_root, "stat"), os.O_RDONLY)
            head = os.pread(self._fd, 256, 0)
        return _parse_proc_stat_line(head.split(b"\n", 1)[0])[0]

    def close(self) -> None:
        """Close the kept-open file. Idempotent."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_small_file(path: str) -> bytes:
    """The bytes of a small ``/proc`` file (at most 64 KiB), read without a buffered file
    object: the tracker reads these on its idle ticks, where each saved microsecond is
    idle cost. Raises OSError like ``open``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def read_pid_stat(pid: int, proc_root: str = "/proc") -> tuple[float, int]:
    """(CPU seconds incl. waited-for children, resident bytes) of one process.

    Reads ``/proc/<pid>/stat``: utime+stime+cutime+cstime and rss. Raises ``OSError``
    when the process is gone.
    """
    fields = read_small_file(f"{proc_root}/{pid}/stat").rsplit(b")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / _CLOCK_TICKS, int(fields[21]) * _PAGE_BYTES


def list_descendants(pid: int, proc_root: str = "/proc") -> list[int]:
    """All descendants of ``pid``, each after its parent.

    Uses ``/proc/<pid>/task/<tid>/children`` (a few small reads) and falls back to
    psutil's full ``/proc`` walk where the kernel does not offer that file.
    """
    if not _children_files_supported(proc_root):
        import psutil

        try:
            return [child.pid for child in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    found: dict[int, None] = {}  # insertion-ordered: a child is found after its parent
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"{proc_root}/{parent}/task")
        except OSError:
            continue  # exited meanwhile
        for tid in tids:
            try:
                data = read_small_file(f"{proc_root}/{parent}/task/{tid}/children")
                children = [int(child) for child in data.split()]
            except (OSError, ValueError):
                continue  # the thread exited meanwhile
            for child in children:
                if child not in found:
                    found[child] = None
                    todo.append(child)
    return list(found)


def _children_files_supported(proc_root: str) -> bool:
    pid = os.getpid()
    return os.path.exists(f"{proc_root}/{pid}/task/{pid}/children") or proc_root != "/proc"


class ProcessTreeCounter:
    """Cumulative CPU seconds and memory of a process and all its descendants.

    The tree's CPU time is the process's own time plus its reaped children's
    (``children_user/children_system``) plus each live descendant's own and reaped
    children's time. A child counts once: while it lives through its own ``stat``, and
    once waited for by a parent in the tree through that parent's reaped time. So each
    read takes the process's times first, then the descendants, parents before children;
    a child reaped in between is missed by that one read (the high-water mark keeps the
    total from going down) and never counted twice. A descendant that leaves the tree
    alive (re-parented outside it) keeps its time seen so far.
    """

    def __init__(self, pid: int | None = None, proc_root: str = "/proc") -> None:
        self.pid = os.getpid() if pid is None else pid
        self.proc_root = proc_root
        self._children: list[int] = []  # each after its parent
        self._children_cpu_s: dict[int, float] = {}
        self._children_rss_b: dict[int, int] = {}
        self._left_tree_s = 0.0  # time of descendants re-parented outside the tree
        self._high_water_s = 0.0
        self._lock = threading.Lock()
        # One read of the tree at a time: a read of a child started before it was reaped
        # must not land after another read has found it gone.
        self._read_lock = threading.Lock()

    # -- what differs between /proc and psutil ------------------------------------

    def _list_children(self) -> list[int]:
        return list_descendants(self.pid, self.proc_root)

    def _read_child(self, pid: int) -> tuple[float, int] | None:
        """(CPU seconds, resident bytes) of a child, or None when it is gone."""
        try:
            return read_pid_stat(pid, self.proc_root)
        except (OSError, ValueError, IndexError):
            return None

    def _own_cpu_s(self) -> float:
        if self.pid == os.getpid():
            times = os.times()
            return times.user + times.system + times.children_user + times.children_system
        reading = self._read_child(self.pid)
        return reading[0] if reading else 0.0

    def _own_rss_b(self) -> int:
        try:
            return (
                int(read_small_file(f"{self.proc_root}/{self.pid}/statm").split()[1]) * _PAGE_BYTES
            )
        except (OSError, ValueError, IndexError):
            return 0

    # -- the counter -------------------------------------------------------------

    def refresh_children(self) -> None:
        """Re-list descendants (call every few seconds, not on every read)."""
        found = self._list_children()
        with self._read_lock:
            with self._lock:
                listed = set(found)
                gone = [pid for pid in self._children_cpu_s if pid not in listed]
                self._children = found
            for pid in gone:
                # Alive outside the tree: no parent of ours will reap it, so its time so
                # far stays counted. Gone: a parent reaped it (its time is in that
                # parent's reaped time) or it was never ours to count again.
                left_alive = self._read_child(pid) is not None
                with self._lock:
                    last_s = self._children_cpu_s.pop(pid, 0.0)
                    self._children_rss_b.pop(pid, None)
                    if left_alive:
                        self._left_tree_s += last_s
            self._read_children()

    def _read_children(self) -> None:
        """Read each known descendant, parents first; forget those that are gone (their
        time is now in their reaper's reaped time). Called with ``_read_lock`` held."""
        with self._lock:
            children = list(self._children)
        readings = {pid: self._read_child(pid) for pid in children}
        with self._lock:
            for pid, reading in readings.items():
                if reading is None:
                    self._children_cpu_s.pop(pid, None)
                    self._children_rss_b.pop(pid, None)
                else:
                    self._children_cpu_s[pid], self._children_rss_b[pid] = reading
            self._children = [pid for pid in self._children if readings.get(pid) is not None]

    def pids(self) -> set[int]:
        """The kernel's pid and the descendants known at the last refresh."""
        with self._lock:
            return {self.pid, *self._children}

    def cpu_s(self, include_children: bool = True) -> float:
        """Cumulative CPU seconds of the tree (monotonic)."""
        with self._read_lock:
            own = self._own_cpu_s()  # first: see the class docstring
            if include_children and self._children:
                self._read_children()
            with self._lock:
                total = own + self._left_tree_s
                if include_children:
                    total += sum(self._children_cpu_s.values())
                self._high_water_s = max(self._high_water_s, total)
                return self._high_water_s

    def rss_bytes(self) -> int:
        """Resident memory of the kernel now plus its children at their last read, bytes."""
        own = self._own_rss_b()
        with self._lock:
            return own + sum(self._children_rss_b.values())


def total_memory_bytes() -> int:
    """Installed memory visible to this system, bytes (psutil where sysconf lacks it)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * _PAGE_BYTES
    except (AttributeError, ValueError, OSError):
        import psutil

        return int(psutil.virtual_memory().total)


def cgroup_memory_limit_bytes(cgroup_root: str = "/sys/fs/cgroup") -> int | None:
    """The cgroup v2 ``memory.max`` limit, bytes, or None when unlimited/unknown."""
    try:
        text = Path(cgroup_root, "memory.max").read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    return int(text)


class PsutilSystemCpuCounter:
    """Cumulative busy CPU seconds of the machine from ``psutil.cpu_times()``.

    Busy is every field but idle, iowait and steal (the same split as ``/proc/stat``);
    on macOS and Windows psutil reports user, system, idle (and interrupt/dpc on
    Windows, counted busy).
    """

    source = "psutil cpu_times"

    def __init__(self, psutil_module: Any | None = None) -> None:
        # psutil has no type information: its objects are used as they come.
        self._psutil: Any = psutil_module or importlib.import_module("psutil")

    def busy_s(self) -> float:
        """Cumulative busy CPU seconds (all CPUs together)."""
        times = self._psutil.cpu_times()
        fields = times._asdict()
        return sum(v for k, v in fields.items() if k not in ("idle", "iowait", "steal"))

    def close(self) -> None:
        """Nothing to release."""


class PsutilProcessTreeCounter(ProcessTreeCounter):
    """:class:`ProcessTreeCounter` through psutil, for platforms without ``/proc``.

    Children reaped by their parent count through its children times where the
    platform reports them (macOS does, Windows does not).
    """

    def __init__(self, pid: int | None = None, psutil_module: Any | None = None) -> None:
        super().__init__(pid)
        self._psutil: Any = psutil_module or importlib.import_module("psutil")
        self._process = self._psutil.Process(self.pid)

    def _list_children(self) -> list[int]:
        try:
            return [child.pid for child in self._process.children(recursive=True)]
        except self._psutil.Error:
            return []

    def _read_child(self, pid: int) -> tuple[float, int] | None:
        try:
            child = self._psutil.Process(pid)
            with child.oneshot():
                times = child.cpu_times()
                return times.user + times.system, int(child.memory_info().rss)
        except self._psutil.Error:
            return None

    def _own_cpu_s(self) -> float:
        try:
            times = self._process.cpu_times()
        except self._psutil.Error:
            return 0.0
        children = getattr(times, "children_user", 0.0) + getattr(times, "children_system", 0.0)
        return times.user + times.system + children

    def _own_rss_b(self) -> int:
        try:
            return int(self._process.memory_info().rss)
        except self._psutil.Error:
            return 0


class SharedSample:
    """A busy-time counter whose reads within ``max_age_s`` of each other share one sample.

    The CPU model and the tracker's CPU-share both need the machine's busy time at the
    same instant; ``/proc/stat`` costs tens of microseconds to generate, and this runs
    at every window edge.
    """

    def __init__(self, counter: SystemCpu, max_age_s: float = 0.001) -> None:
        self.counter = counter
        self.source = getattr(counter, "source", "?")
        self._max_age_ns = int(max_age_s * 1e9)
        self._lock = threading.Lock()
        self._sample: tuple[int, float] | None = None

    def busy_s(self) -> float:
        """Cumulative busy CPU seconds, from the last sample when it is fresh enough."""
        now = time.monotonic_ns()
        with self._lock:
            if self._sample is not None and now - self._sample[0] <= self._max_age_ns:
                return self._sample[1]
        value = self.counter.busy_s()
        with self._lock:
            self._sample = (now, value)
        return value

    def close(self) -> None:
        """Close the wrapped counter."""
        self.counter.close()


def cpu_time_counters(
    proc_root: str = "/proc", limited: bool = False
) -> tuple[SharedSample, ProcessTreeCounter]:
    """(machine busy-time counter, kernel process-tree counter) for this platform.

    ``/proc`` counters where ``<proc_root>/stat`` exists (Linux), psutil elsewhere
    (macOS, Windows). Passing a ``proc_root`` without ``stat`` forces the psutil path,
    which is how it is tested on Linux. ``limited``: a cgroup CPU quota applies.
    """
    if os.path.exists(os.path.join(proc_root, "stat")):
        system = SystemCpuCounter(proc_root=proc_root, limited=limited)
        return SharedSample(system), ProcessTreeCounter(proc_root=proc_root)
    return SharedSample(PsutilSystemCpuCounter()), PsutilProcessTreeCounter()
