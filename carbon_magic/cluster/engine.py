"""The seam between the kernel's cluster reading and the distributed engines.

An engine is one module (``dask_engine``, ``ray_engine``) with ``NAME``, ``UNIT`` (what
one reply is about: a ``worker`` or a ``node``) and ``find(current)``, which returns the
notebook's connection to a cluster of that engine, or None. A connection knows how to
put trackers on the cluster (``join``), ask all of them for their counters at once
(``send``, returning a ``Pending`` round) and take this kernel off again (``leave``).
The shared code (``collect``, ``combine``) names no engine: a third engine is one more
module and one line in ``ENGINE_MODULES``.

A reply is a dict from one tracker: ``{"identity", "token", "counted", "energy_j",
"embodied_g", "methods"}`` (see ``agent.CounterAgent.read``), ``{"skipped": True}`` for
one the kernel already counts, or ``{"error": why}`` (with ``"unmeasurable": True`` where
carbon_magic cannot run there at all).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Protocol

# Setting value -> engine module; ``auto`` tries them in this order.
ENGINE_MODULES = {
    "dask": "carbon_magic.cluster.dask_engine",
    "ray": "carbon_magic.cluster.ray_engine",
}


class Pending(Protocol):
    """One round of reads in flight."""

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """``{address: reply}`` within ``timeout`` seconds; a tracker that did not answer
        in time gets an error reply. Raises ``TimeoutError`` (or another error) when the
        round failed as a whole."""

    def done(self) -> bool:
        """True once ``result`` would not wait."""

    def cancel(self) -> bool:
        """Give the round up (best effort)."""


class Connection(Protocol):
    """The notebook's connection to one cluster."""

    engine: str  # the engine module's NAME
    unit: str  # the engine module's UNIT

    def alive(self) -> bool:
        """Still connected (cheap, never raises)."""

    def join(self, kernel: dict[str, Any], settings: dict[str, Any]) -> str | None:
        """Put the trackers on the cluster (blocking: run in a background thread).
        ``kernel``: the kernel's process identity; ``settings``: the settings trackers
        follow. Returns a notice for the user, or None. Raises when it cannot."""

    def send(
        self, mode: str, kernel: dict[str, Any], settings: dict[str, Any], skip: list[str]
    ) -> Pending | None:
        """Ask every tracker for its counters now, without waiting; those in ``skip``
        (addresses the kernel counts itself) are only confirmed. None: nothing to ask."""

    def leave(self, timeout_s: float) -> None:
        """This kernel no longer uses the trackers (best effort, never raises)."""


def engines(setting: str) -> list[ModuleType]:
    """The engine modules the ``cluster`` setting allows, in the order ``auto`` tries
    them (``none``: no engine)."""
    if setting == "auto":
        names = list(ENGINE_MODULES)
    elif setting in ENGINE_MODULES:
        names = [setting]
    else:
        names = []
    return [importlib.import_module(ENGINE_MODULES[name]) for name in names]


def unit_of(engine: str | None) -> str:
    """What one of an engine's trackers is about (``worker``, ``node``); ``worker`` for
    an unknown engine or none (records from before engines were named are Dask's)."""
    if engine not in ENGINE_MODULES:
        return "worker"
    return str(importlib.import_module(ENGINE_MODULES[engine]).UNIT)


def find_connection(setting: str, current: Any) -> Any:
    """The notebook's cluster connection now (``current`` when unchanged), from the
    first allowed engine that has one; None without a cluster. Cheap: an engine whose
    library the notebook has not imported is not looked at further."""
    for module in engines(setting):
        found = module.find(current if getattr(current, "engine", None) == module.NAME else None)
        if found is not None:
            return found
    return None
