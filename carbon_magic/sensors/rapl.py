"""CPU (and DRAM) energy from the Linux powercap RAPL counters, Intel and AMD.

The kernel exposes each RAPL domain as a powercap zone, ``intel-rapl:<pkg>`` for a
package (or ``psys``, the whole SoC on recent laptops) and ``intel-rapl:<pkg>:<n>`` for its
subzones (``core``, ``uncore``, ``dram``). AMD Zen processors use the same
``intel-rapl`` names but expose package zones (and sometimes ``core``) only.

Each zone has ``energy_uj``, a counter in microjoules that wraps at
``max_energy_range_uj``. Counted by default: every package plus every ``dram`` zone.
``core`` and ``uncore`` are parts of their package and are never added on top of it.
``psys`` already contains package and DRAM, so it replaces them when asked for
(``use_psys=True``) and is ignored otherwise. ``intel-rapl-mmio`` zones (recent Intel
client CPUs) are read too; one with the same name as an MSR zone (``package-0``) is the
same counter seen twice and is counted once, through the MSR zone.

``domain`` splits the counters between the tracker's components: ``"cpu"`` counts the
packages (or psys), ``"dram"`` the DRAM zones (none when psys is counted, since psys
already contains them), ``"all"`` both.

Frozen counters (some virtual machines expose RAPL files whose values never change) are
detected lazily so that the constructor stays a few file reads: either explicitly with
:meth:`RaplSensor.check_advancing`, or on the first :meth:`RaplSensor.read_j` that comes at
least 50 ms after construction, whichever comes first. The verdict is taken once.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from .base import MEASURED, SHARE_BY_CPU_TIME, SensorStatus

DEFAULT_ROOT = "/sys/class/powercap"

# Counters must move within this window, or they are considered frozen (seconds).
FREEZE_WINDOW_S = 0.05

FROZEN_REASON = "RAPL counters do not advance (virtual machine?)"

# "intel-rapl:0" (package or psys), "intel-rapl:0:1" (subzone), "intel-rapl-mmio:0".
_ZONE_RE = re.compile(r"^intel-rapl(-mmio)?:(\d+)(?::(\d+))?$")
# Directories that may hold zones; the control types "intel-rapl", "intel-rapl-mmio"
# and zones themselves.
_CONTAINER_RE = re.compile(r"^intel-rapl(?:-mmio)?(?::\d+)*$")

DOMAINS = ("all", "cpu", "dram")
# How deep zones are searched below root: root/intel-rapl/intel-rapl:0/intel-rapl:0:0.
_MAX_DEPTH = 3

Opener = Callable[[str], IO]


def _default_opener(path: str) -> IO:
    # Unbuffered binary: sysfs attributes are small and must be re-read every time.
    return open(path, "rb", buffering=0)


def permission_fix(root: str = DEFAULT_ROOT) -> str:
    """One line saying why ``energy_uj`` cannot be read and how to allow it."""
    return (
        "RAPL energy_uj is readable by root only (Linux >= 5.10); allow it with "
        f"`sudo chmod o+r {root}/intel-rapl:*/energy_uj` (until reboot) or the udev rule "
        '`SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod o+r /sys%p/energy_uj"`'
    )


@dataclass
class _Zone:
    """One deduplicated powercap zone."""

    zone_id: str  # "intel-rapl:0:0"
    path: str  # the zone's real directory
    name: str  # contents of its `name` file: "package-0", "dram", "core", "psys", ...
    package: int  # first index of the id
    sub: int | None  # second index of the id, None for a top-level zone
    mmio: bool = False  # an intel-rapl-mmio zone
    key: str = ""  # the device key in read_j(): "package-0", "dram-0", "psys"
    kind: str = ""  # "package", "dram", "psys", "other" or "duplicate" (an MMIO copy)
    max_energy_range_uj: int | None = None
    counted: bool = False
    first_uj: int = 0  # raw reading at construction
    last_uj: int = 0  # raw reading at the previous read
    total_uj: int = 0  # energy since construction, wraps unfolded


class RaplSensor:
    """Cumulative CPU package (+ DRAM, or psys) energy from Linux powercap RAPL.

    ``root`` is the powercap class directory (a fake tree in tests). ``opener`` opens a
    sysfs file for reading; it is injectable so that tests can simulate permission errors.
    ``use_psys`` counts the ``psys`` zone instead of packages + DRAM when it exists.
    ``peak_power_w`` is the most a counted zone is expected to draw (watts); it bounds
    :meth:`poll_interval_s`. ``domain`` is one of ``DOMAINS``: which counters to count.

    The constructor never raises: on any problem the sensor is ``available=False`` with a
    one-line ``reason``.
    """

    name = "rapl"
    component = "cpu"
    method = MEASURED
    itemised = True
    # Process mode charges package and DRAM energy by the kernel's CPU-time share.
    process_share = SHARE_BY_CPU_TIME

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        opener: Callable[[str], IO] | None = None,
        use_psys: bool = False,
        peak_power_w: float = 1000.0,
        domain: str = "all",
    ) -> None:
        if peak_power_w <= 0:
            raise ValueError(f"peak_power_w must be > 0 W, got {peak_power_w}")
        if domain not in DOMAINS:
            raise ValueError(f"domain must be one of {', '.join(DOMAINS)}, got {domain!r}")
        self.domain = domain
        self.component = "ram" if domain == "dram" else "cpu"
        self.root = root
        self.use_psys = use_psys
        self.peak_power_w = float(peak_power_w)
        self._opener: Opener = opener or _default_opener
        self._lock = threading.Lock()
        self._zones: list[_Zone] = []  # every zone found, counted or not
        self._counted: list[_Zone] = []
        self._t0_ns = time.monotonic_ns()
        self._advancing: bool | None = None  # freeze verdict, taken once
        self._detail = ""
        self.available = False
        self.reason: str | None = None
        try:
            self._setup()
        except PermissionError:
            self.reason = permission_fix(root)
        except (OSError, ValueError) as exc:
            self.reason = f"cannot read RAPL zones: {exc}"
        else:
            self.available = self.reason is None

    # -- construction ----------------------------------------------------------------

    def _setup(self) -> None:
        self._zones = self._discover()
        if not self._zones:
            self.reason = (
                f"no RAPL zones under {self.root} (not Linux, or no intel-rapl powercap support)"
            )
            return
        self._classify()
        self._counted = self._select()
        if not self._counted:
            names = ", ".join(sorted({z.name for z in self._zones}))
            if self.domain == "dram" and self._psys_counted():
                self.reason = "DRAM is inside the psys counter (rapl_psys on)"
            elif self.domain == "dram":
                self.reason = f"no DRAM RAPL zone (found: {names})"
            else:
                self.reason = f"no package or psys RAPL zone to count (found: {names})"
            return
        for zone in self._counted:
            zone.counted = True
            zone.max_energy_range_uj = self._read_int(
                os.path.join(zone.path, "max_energy_range_uj")
            )
            if zone.max_energy_range_uj <= 0:
                raise ValueError(f"{zone.zone_id}: max_energy_range_uj is 0")
        # The baseline: PermissionError here is the common Linux >= 5.10 case.
        self._t0_ns = time.monotonic_ns()
        for zone in self._counted:
            zone.first_uj = zone.last_uj = self._read_int(self._energy_path(zone))
        self._detail = self._describe_selection()

    def _discover(self) -> list[_Zone]:
        """Find zone directories below root, deduplicated by real path."""
        by_realpath: dict[str, _Zone] = {}
        stack: list[tuple[str, int]] = [(self.root, 0)]
        while stack:
            directory, depth = stack.pop()
            try:
                entries = os.listdir(directory)
            except OSError:
                continue
            for entry in entries:
                if not _CONTAINER_RE.match(entry):
                    continue
                path = os.path.join(directory, entry)
                if not os.path.isdir(path):
                    continue
                match = _ZONE_RE.match(entry)
                real = os.path.realpath(path)
                # The same zone appears as root/intel-rapl:0 and
                # root/intel-rapl/intel-rapl:0; both resolve to one directory.
                if match and real not in by_realpath:
                    sub = match.group(3)
                    by_realpath[real] = _Zone(
                        zone_id=entry,
                        path=real,
                        name=self._read_name(real),
                        package=int(match.group(2)),
                        sub=None if sub is None else int(sub),
                        mmio=match.group(1) is not None,
                    )
                if depth + 1 < _MAX_DEPTH:
                    stack.append((path, depth + 1))
        # MSR zones first, so that an MMIO zone is the one marked as the duplicate.
        return sorted(
            by_realpath.values(),
            key=lambda z: (z.mmio, z.package, -1 if z.sub is None else z.sub),
        )

    def _classify(self) -> None:
        """Give each zone a kind and a stable, unique device key."""
        parents = {(z.mmio, z.package): z for z in self._zones if z.sub is None}
        msr_names = {z.name for z in self._zones if not z.mmio}
        used: set[str] = set()
        for zone in self._zones:
            if zone.mmio and zone.name in msr_names:
                # The same package counter read through MMIO: never counted twice.
                zone.kind, zone.key = "duplicate", f"mmio:{zone.zone_id}"
                continue
            if zone.name.startswith("package"):
                zone.kind, key = "package", zone.name
            elif zone.name == "psys":
                zone.kind, key = "psys", "psys"
            elif zone.name == "dram":
                zone.kind = "dram"
                parent = parents.get((zone.mmio, zone.package)) if zone.sub is not None else None
                if parent is not None and parent.name.startswith("package"):
                    # "package-0" -> "dram-0", "package-0-die-1" -> "dram-0-die-1"
                    key = "dram" + parent.name[len("package") :]
                else:
                    key = f"dram-{zone.package}"
            else:  # core, uncore: parts of their package
                zone.kind, key = "other", zone.name
            unique, n = key, 1
            while unique in used:
                n += 1
                unique = f"{key}#{n}"
            used.add(unique)
            zone.key = unique

    def _psys_counted(self) -> bool:
        return self.use_psys and any(z.kind == "psys" for z in self._zones)

    def _select(self) -> list[_Zone]:
        if self._psys_counted():
            # psys covers package and DRAM: the DRAM domain has nothing of its own.
            return [] if self.domain == "dram" else [z for z in self._zones if z.kind == "psys"]
        kinds = {"all": ("package", "dram"), "cpu": ("package",), "dram": ("dram",)}
        return [z for z in self._zones if z.kind in kinds[self.domain]]

    def _describe_selection(self) -> str:
        kinds = [z.kind for z in self._counted]
        control = "intel-rapl-mmio" if all(z.mmio for z in self._counted) else "intel-rapl"
        if "psys" in kinds:
            return f"psys, the whole SoC including DRAM ({control})"
        n = kinds.count("package")
        parts = [f"{n} package{'s' if n != 1 else ''}"] if n else []
        n_dram = kinds.count("dram")
        if n_dram:
            parts.append(
                "dram" if self.domain == "all" else f"{n_dram} dram zone" + "s" * (n_dram != 1)
            )
        text = " + ".join(parts)
        if self.use_psys:
            text += ", psys not present"
        return text + f" ({control})"

    # -- file access ---------------------------------------------------------------

    def _read_text(self, path: str) -> str:
        with self._opener(path) as handle:
            data = handle.read()
        if isinstance(data, bytes):
            data = data.decode("ascii", "replace")
        return data.strip()

    def _read_name(self, zone_path: str) -> str:
        try:
            return self._read_text(os.path.join(zone_path, "name"))
        except OSError:
            return "?"  # an unnamed zone is listed but never counted

    def _read_int(self, path: str) -> int:
        with self._opener(path) as handle:
            return int(handle.read())  # int() takes str or bytes, ignores the newline

    @staticmethod
    def _energy_path(zone: _Zone) -> str:
        return os.path.join(zone.path, "energy_uj")

    # -- reading -------------------------------------------------------------------

    def _sample_locked(self, now_ns: int, freeze_window_s: float) -> None:
        """Read every counted zone, unfold wraps, and judge freezing once the window passed.

        Call with the lock held. Raises OSError/ValueError from the files.
        """
        raws = [self._read_int(self._energy_path(z)) for z in self._counted]
        for zone, raw in zip(self._counted, raws, strict=True):
            delta = raw - zone.last_uj
            if delta < 0:  # the counter wrapped since the previous read
                delta += zone.max_energy_range_uj or 0
            zone.total_uj += delta
            zone.last_uj = raw
        if self._advancing is None and (now_ns - self._t0_ns) / 1e9 >= freeze_window_s:
            self._advancing = any(z.last_uj != z.first_uj or z.total_uj for z in self._counted)
            if not self._advancing:
                self.available = False
                self.reason = FROZEN_REASON

    def read_j(self) -> dict[str, float]:
        """Cumulative joules per counted zone since construction, wraps unfolded.

        Keys: ``package-0``, ``package-1``, ``dram-0`` (DRAM of package 0), or ``psys``.
        Thread-safe. Raises ``RuntimeError`` when the sensor is unavailable (including when
        this read finds the counters frozen) and ``OSError`` when a file cannot be read.
        """
        with self._lock:
            if not self.available:
                raise RuntimeError(self.reason or "RAPL sensor unavailable")
            try:
                self._sample_locked(time.monotonic_ns(), FREEZE_WINDOW_S)
            except ValueError as exc:
                raise RuntimeError(f"unreadable RAPL counter: {exc}") from exc
            if not self.available:
                raise RuntimeError(self.reason)
            return {z.key: z.total_uj / 1e6 for z in self._counted}

    def check_advancing(self, min_wait_s: float = FREEZE_WINDOW_S) -> bool:
        """Whether the counters move; ``False`` marks the sensor unavailable.

        Waits (sleeps) until ``min_wait_s`` seconds have passed since construction, then
        reads once more and compares with the construction baseline. The verdict is taken
        once: later calls, and a verdict already reached by :meth:`read_j`, return at once.
        """
        with self._lock:
            if not self.available:
                return False
            if self._advancing is not None:
                return self._advancing
            wait_s = min_wait_s - (time.monotonic_ns() - self._t0_ns) / 1e9
        if wait_s > 0:
            time.sleep(wait_s)  # outside the lock: the tracker may read meanwhile
        with self._lock:
            if self._advancing is None and self.available:
                try:
                    self._sample_locked(time.monotonic_ns(), min_wait_s)
                except (OSError, ValueError) as exc:
                    self.available = False
                    self.reason = f"cannot read RAPL counters: {exc}"
                    return False
            return bool(self._advancing) and self.available

    def range_j(self) -> None:
        """Measured: the method's uncertainty applies."""
        return None

    def poll_interval_s(self) -> float | None:
        """Longest safe wait between reads (seconds), so that no wrap goes unseen.

        The fastest a counter can wrap is ``max_energy_range_uj`` at ``peak_power_w``;
        half of that leaves a margin for a late tick. ``None`` when unavailable.
        """
        ranges = [z.max_energy_range_uj for z in self._counted if z.max_energy_range_uj]
        if not self.available or not ranges:
            return None
        return min(ranges) / 1e6 / self.peak_power_w / 2

    def status(self) -> SensorStatus:
        """``detail`` is e.g. "2 packages + dram (intel-rapl)", or the reason."""
        return SensorStatus(
            name=self.name,
            component=self.component,
            available=self.available,
            method=self.method,
            detail=self._detail if self.available else (self.reason or "unavailable"),
        )

    def describe_zones(self) -> list[dict[str, object]]:
        """Every zone found, for diagnostics.

        Each entry: ``zone`` (id), ``name``, ``kind``, ``key``, ``path`` (real directory),
        ``max_energy_range_uj`` (µJ, ``None`` if unreadable) and ``counted``.
        """
        for zone in self._zones:
            if zone.max_energy_range_uj is None:
                try:
                    zone.max_energy_range_uj = self._read_int(
                        os.path.join(zone.path, "max_energy_range_uj")
                    )
                except (OSError, ValueError):
                    pass  # diagnostics only
        return [
            {
                "zone": z.zone_id,
                "name": z.name,
                "kind": z.kind,
                "key": z.key,
                "path": z.path,
                "max_energy_range_uj": z.max_energy_range_uj,
                "counted": z.counted,
            }
            for z in self._zones
        ]

    def close(self) -> None:
        """Nothing to release: files are opened per read."""
