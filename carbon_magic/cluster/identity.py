"""Who is measuring: the host (the running operating-system kernel) and the process.

Hosts are told apart by machine identity, never by network address: two workers on one
machine may listen on different interfaces, and one address may be reused by another
machine later. The boot id (``/proc/sys/kernel/random/boot_id``) names one running Linux
kernel: the one whose ``/proc/stat`` and powercap counters every process on that machine
reads, containers included. ``/etc/machine-id`` names the installation and is the
fallback where there is no boot id; the host name and a MAC address are the last resort.
The paths can be set with ``CARBON_MAGIC_BOOT_ID_PATH`` and
``CARBON_MAGIC_MACHINE_ID_PATH`` (for containers that hide them, and for tests).
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from typing import Any

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
MACHINE_ID_PATH = "/etc/machine-id"
BOOT_ID_ENV = "CARBON_MAGIC_BOOT_ID_PATH"
MACHINE_ID_ENV = "CARBON_MAGIC_MACHINE_ID_PATH"


def _read_id(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read().strip()
    except OSError:
        return None
    return text or None


def host_id(boot_id_path: str | None = None, machine_id_path: str | None = None) -> str:
    """A stable identifier of this host while it runs (16 hex digits).

    From the boot id when readable, else the machine id, else host name + MAC address.
    Paths default to the environment variables above, then to the Linux locations.
    Never raises.
    """
    boot = _read_id(boot_id_path or os.environ.get(BOOT_ID_ENV) or BOOT_ID_PATH)
    if boot:
        basis = f"boot:{boot}"
    else:
        machine = _read_id(machine_id_path or os.environ.get(MACHINE_ID_ENV) or MACHINE_ID_PATH)
        basis = f"machine:{machine}" if machine else f"node:{socket.gethostname()}:{uuid.getnode()}"
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def _pid_namespace() -> int:
    """The inode of this process's PID namespace (0 where unknown): pids are comparable
    only inside one namespace."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _ancestors(pid: int) -> list[int]:
    try:
        import psutil

        return [parent.pid for parent in psutil.Process(pid).parents()]
    except Exception:
        return []


@dataclass(frozen=True)
class ProcessIdentity:
    """One measuring process: its host, pid, PID namespace and ancestors' pids."""

    host_id: str
    host_name: str
    pid: int
    pid_namespace: int
    ancestors: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain types, for messages between processes."""
        data = asdict(self)
        data["ancestors"] = list(self.ancestors)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessIdentity:
        """Inverse of ``to_dict``."""
        return cls(
            str(data["host_id"]),
            str(data.get("host_name", "")),
            int(data["pid"]),
            int(data.get("pid_namespace", 0)),
            tuple(int(pid) for pid in data.get("ancestors", ())),
        )

    def descends_from(self, other: ProcessIdentity) -> bool:
        """True when this process is ``other`` or one of its descendants."""
        if self.host_id != other.host_id or self.pid_namespace != other.pid_namespace:
            return False
        return self.pid == other.pid or other.pid in self.ancestors


def this_process() -> ProcessIdentity:
    """The identity of the calling process (reads a few small files)."""
    pid = os.getpid()
    return ProcessIdentity(
        host_id(), socket.gethostname(), pid, _pid_namespace(), tuple(_ancestors(pid))
    )


def covered_by(worker: ProcessIdentity, kernel: ProcessIdentity, mode: str) -> bool:
    """Whether the kernel's own figures already include the worker's energy.

    ``machine`` mode: the kernel charges its whole host, so every worker on that host is
    included. ``process`` mode: the kernel charges its process tree, so the kernel's own
    process (thread-based workers) and its descendants (a ``LocalCluster``) are included.
    """
    if mode == "machine":
        return worker.host_id == kernel.host_id
    return worker.descends_from(kernel)
