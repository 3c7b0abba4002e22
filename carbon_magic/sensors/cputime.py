"""CPU-time counters: the whole machine's busy time and the kernel's process tree.

These feed both the linear power model (machines without RAPL) and process-mode
attribution (the kernel's share of busy CPU time). Reading them is cheap: one small
file for the machine, ``os.times()`` for the kernel, and one ``stat`` file per known
child; the child list itself is refreshed rarely (a ``/proc`` walk costs milliseconds).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from carbon_magic.cpu_power import CpuPowerModel
from carbon_magic.sensors.base import MODELLED, SensorStatus

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


def read_pid_stat(pid: int, proc_root: str = "/proc") -> tuple[float, int]:
    """(CPU seconds incl. waited-for children, resident bytes) of one process.

    Reads ``/proc/<pid>/stat``: utime+stime+cutime+cstime and rss. Raises ``OSError``
    when the process is gone.
    """
    with open(f"{proc_root}/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / _CLOCK_TICKS, int(fields[21]) * _PAGE_BYTES


def list_descendants(pid: int, proc_root: str = "/proc") -> set[int]:
    """All descendants of ``pid``.

    Uses ``/proc/<pid>/task/<tid>/children`` (a few small reads) and falls back to
    psutil's full ``/proc`` walk where the kernel does not offer that file.
    """
    if not _children_files_supported(proc_root):
        import psutil

        try:
            return {child.pid for child in psutil.Process(pid).children(recursive=True)}
        except psutil.Error:
            return set()
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"{proc_root}/{parent}/task")
        except OSError:
            continue  # exited meanwhile
        for tid in tids:
            try:
                with open(f"{proc_root}/{parent}/task/{tid}/children", "rb") as handle:
                    children = [int(child) for child in handle.read().split()]
            except (OSError, ValueError):
                continue  # the thread exited meanwhile
            for child in children:
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def _children_files_supported(proc_root: str) -> bool:
    pid = os.getpid()
    return os.path.exists(f"{proc_root}/{pid}/task/{pid}/children") or proc_root != "/proc"


class ProcessTreeCounter:
    """Cumulative CPU seconds and memory of a process and all its descendants.

    Children that exit and are waited for by their parent move into the parent's
    ``children_user/children_system`` times, so finished multiprocessing, subprocess
    and joblib workers keep counting. The total is kept monotonic: when a descendant
    disappears without being reaped inside the tree (re-parented to init), its last
    seen time stays counted instead of the total going down.
    """

    def __init__(self, pid: int | None = None, proc_root: str = "/proc") -> None:
        self.pid = os.getpid() if pid is None else pid
        self.proc_root = proc_root
        self._children: set[int] = set()
        self._children_cpu_s: dict[int, float] = {}
        self._children_rss_b: dict[int, int] = {}
        self._high_water_s = 0.0
        self._lock = threading.Lock()

    def refresh_children(self) -> None:
        """Re-list descendants (call every few seconds, not on every read)."""
        found = list_descendants(self.pid, self.proc_root)
        with self._lock:
            self._children = found
            for pid in list(self._children_cpu_s):
                if pid not in found:
                    del self._children_cpu_s[pid]
                    self._children_rss_b.pop(pid, None)
        self._read_children()

    def _read_children(self) -> None:
        with self._lock:
            children = list(self._children)
        readings = {}
        for pid in children:
            try:
                readings[pid] = read_pid_stat(pid, self.proc_root)
            except (OSError, ValueError, IndexError):
                continue  # exited since the last refresh
        with self._lock:
            for pid, (cpu_s, rss_b) in readings.items():
                self._children_cpu_s[pid] = cpu_s
                self._children_rss_b[pid] = rss_b

    def pids(self) -> set[int]:
        """The kernel's pid and the descendants known at the last refresh."""
        with self._lock:
            return {self.pid, *self._children}

    def cpu_s(self, include_children: bool = True) -> float:
        """Cumulative CPU seconds of the tree (monotonic)."""
        if self.pid == os.getpid():
            times = os.times()
            own = times.user + times.system + times.children_user + times.children_system
        else:
            try:
                own = read_pid_stat(self.pid, self.proc_root)[0]
            except (OSError, ValueError, IndexError):
                own = 0.0
        if include_children and self._children:
            self._read_children()
        with self._lock:
            total = own + sum(self._children_cpu_s.values())
            self._high_water_s = max(self._high_water_s, total)
            return self._high_water_s

    def rss_bytes(self) -> int:
        """Resident memory of the kernel now plus its children at their last read, bytes."""
        try:
            with open(f"{self.proc_root}/{self.pid}/statm", "rb") as handle:
                own = int(handle.read().split()[1]) * _PAGE_BYTES
        except (OSError, ValueError, IndexError):
            own = 0
        with self._lock:
            return own + sum(self._children_rss_b.values())


class CpuModel:
    """The CPU power model (a load curve over CPU time) as a pseudo-sensor, for status."""

    name = "cpu-model"
    component = "cpu"
    method = MODELLED
    available = True
    reason: str | None = None

    def __init__(self, power: CpuPowerModel, counter_source: str) -> None:
        self.power = power
        self.counter_source = counter_source

    def status(self) -> SensorStatus:
        """Status line: idle and full-load watts, how they were obtained, and their sources."""
        detail = (
            f"{self.power.idle_w:.1f}–{self.power.max_w:.1f} W for {self.power.n_cpus:g} CPUs, "
            f"{self.power.method} ({self.power.source}), utilisation from {self.counter_source}"
        )
        return SensorStatus(self.name, self.component, True, self.method, detail)


def total_memory_bytes() -> int:
    """Installed memory visible to this system, bytes."""
    return os.sysconf("SC_PHYS_PAGES") * _PAGE_BYTES


def cgroup_memory_limit_bytes(cgroup_root: str = "/sys/fs/cgroup") -> int | None:
    """The cgroup v2 ``memory.max`` limit, bytes, or None when unlimited/unknown."""
    try:
        text = Path(cgroup_root, "memory.max").read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    return int(text)
