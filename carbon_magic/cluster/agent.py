"""The worker side: one tracker per Dask worker process, read at the kernel's cell edges.

A ``WorkerAgent`` lives inside a worker (created by the worker plugin). It answers one
question, cheaply, from the worker's event loop: "your cumulative attributed energy now,
in this mode". The kernel takes the difference of two answers (cell start and end).
Nothing here talks to the network; the answer is a small dict of plain types.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from carbon_magic.cluster.identity import ProcessIdentity, covered_by, this_process
from carbon_magic.measurement import COMPONENTS
from carbon_magic.settings import Settings

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


class WorkerAgent:
    """Runs a tracker in this process and reports its cumulative counters.

    ``kernel`` is the identity of the kernel that installed the plugin: when the kernel
    already counts this process in both modes (a worker of a ``LocalCluster`` started by
    the kernel), no tracker is started until some other kernel asks for counters.
    """

    def __init__(self, kernel: dict[str, Any], kernel_settings: dict[str, Any]) -> None:
        self.identity = this_process()
        self.token = uuid.uuid4().hex  # a new tracker means new cumulative counters
        self._settings = worker_settings(kernel_settings)
        self._tracker: Any = None
        self._lock = threading.Lock()
        if not self._covered_in_both_modes(ProcessIdentity.from_dict(kernel)):
            self._start()

    def _covered_in_both_modes(self, kernel: ProcessIdentity) -> bool:
        return covered_by(self.identity, kernel, "process") and covered_by(
            self.identity, kernel, "machine"
        )

    def _start(self) -> None:
        from carbon_magic.tracker import Tracker

        self._tracker = Tracker(self._settings).start()

    def read(self, mode: str, kernel: dict[str, Any] | None = None) -> dict[str, Any]:
        """Cumulative figures since this worker's tracker started, in ``mode``.

        Returns ``{"token", "identity", "counted": bool, "energy_j": {cpu, gpu, ram}
        (joules, IT), "embodied_g" (grams), "methods"}``; ``counted`` is False (and no
        figures) while no tracker runs because the kernel counts this process itself.
        """
        reply: dict[str, Any] = {"token": self.token, "identity": self.identity.to_dict()}
        with self._lock:
            if self._tracker is None:
                asker = ProcessIdentity.from_dict(kernel) if kernel else None
                if asker is not None and self._covered_in_both_modes(asker):
                    reply["counted"] = False
                    return reply
                self._start()
            tracker = self._tracker
            if tracker.settings.mode != mode:
                tracker.settings.update(mode=mode)
            tracker.begin("cluster edge")  # reads the counters now; the window is dropped
            session = tracker.session()
        reply.update(
            counted=True,
            energy_j={name: float(session.energy_j.get(name, 0.0)) for name in COMPONENTS},
            embodied_g=float(session.embodied_g),
            methods=dict(session.methods),
        )
        return reply

    def close(self) -> None:
        """Stop the tracker (idempotent)."""
        with self._lock:
            tracker, self._tracker = self._tracker, None
        if tracker is not None:
            tracker.close()
