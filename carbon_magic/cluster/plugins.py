"""The Dask plugins, shipped to the scheduler and workers *by value*.

A worker unpickles registered plugins while it connects to the scheduler, and an
unpickling error there stops the worker from starting. So these classes are sent by
value (cloudpickle) and this module imports nothing from carbon_magic at module level:
a worker (or scheduler) without carbon_magic installed still unpickles them, keeps
running, and answers "cannot be measured: <why>". Everything that needs carbon_magic is
imported inside ``setup``, on the worker.

The worker plugin adds a handler ``carbon_magic_read`` to the worker; the scheduler
plugin adds ``carbon_magic_read`` to the scheduler, which asks every worker at once with
a per-worker timeout and returns what came back in time (one round trip for the kernel,
also where the kernel cannot reach workers directly).
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

PLUGIN_NAME = "carbon_magic"
READ_OP = "carbon_magic_read"


class CarbonWorkerPlugin(WorkerPlugin):
    """Starts a tracker in the worker (through ``carbon_magic.cluster.agent``).

    ``kernel``: the installing kernel's process identity (a dict); ``settings``: the
    kernel's settings the worker follows. ``setup`` never raises: a worker that cannot
    import carbon_magic reports why on every read.
    """

    name = PLUGIN_NAME

    def __init__(self, kernel: dict[str, Any], settings: dict[str, Any]) -> None:
        self.kernel = kernel
        self.settings = settings
        self.agent: Any = None
        self.error: str | None = None

    def setup(self, worker: Any) -> None:
        worker.handlers[READ_OP] = self.read
        try:
            agent_module = importlib.import_module("carbon_magic.cluster.agent")
            self.agent = agent_module.WorkerAgent(self.kernel, self.settings)
        except Exception as error:  # a missing or broken install must not stop the worker
            self.error = f"{type(error).__name__}: {error}"

    def teardown(self, worker: Any) -> None:
        if worker.handlers.get(READ_OP) == self.read:
            del worker.handlers[READ_OP]
        if self.agent is not None:
            self.agent.close()
            self.agent = None

    def read(
        self, mode: str = "process", kernel: Any = None, settings: Any = None
    ) -> dict[str, Any]:
        """The worker handler: the agent's cumulative figures for the asking kernel's
        ``mode`` and ``settings``, or ``{"error": why}``."""
        if self.agent is None:
            if self.error is not None:  # carbon_magic missing or broken on this worker
                return {"error": self.error, "unmeasurable": True}
            return {"error": "not set up"}
        try:
            return self.agent.read(mode, kernel, settings)
        except Exception as error:
            return {"error": f"{type(error).__name__}: {error}"}


class CarbonSchedulerPlugin(SchedulerPlugin):
    """Fans one kernel request out to every worker, each with its own timeout."""

    name = PLUGIN_NAME

    def __init__(self) -> None:
        self.scheduler: Any = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        scheduler.handlers[READ_OP] = self.read

    async def close(self) -> None:
        if self.scheduler is not None and self.scheduler.handlers.get(READ_OP) == self.read:
            del self.scheduler.handlers[READ_OP]

    async def read(
        self,
        mode: str = "process",
        kernel: Any = None,
        timeout: float = 0.8,
        skip: Any = (),
        settings: Any = None,
    ) -> dict[str, dict[str, Any]]:
        """``{worker address: reply}`` for every worker; a worker that does not answer
        within ``timeout`` seconds, or fails, gets ``{"error": why}``. Workers in ``skip``
        (those the kernel already counts itself) are not asked: ``{"skipped": True}``.
        ``mode`` and ``settings`` are the asking kernel's, passed on to each worker."""
        skipped = set(skip or ())
        addresses = [a for a in self.scheduler.workers if a not in skipped]
        present = {a: {"skipped": True} for a in self.scheduler.workers if a in skipped}

        async def ask(address: str) -> dict[str, Any]:
            try:
                call = self.scheduler.rpc(address)
                reply = await asyncio.wait_for(
                    getattr(call, READ_OP)(mode=mode, kernel=kernel, settings=settings),
                    timeout,
                )
            except asyncio.TimeoutError:
                return {"error": f"no answer within {timeout:g} s"}
            except Exception as error:
                return {"error": f"{type(error).__name__}: {error}"}
            if isinstance(reply, dict) and reply.get("status") == "error":
                return {"error": str(reply.get("exception") or reply.get("text") or reply)}
            return reply

        replies = await asyncio.gather(*(ask(address) for address in addresses))
        return {**present, **dict(zip(addresses, replies, strict=True))}
