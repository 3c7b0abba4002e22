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

Kernels share the plugins of a cluster. A kernel joins with ``join_cluster`` (run on the
scheduler, one round trip): where plugins of this ``PROTOCOL`` are installed it is added
to their users and nothing is re-registered, so no worker's tracker restarts under
another kernel's cell; otherwise it installs them, replacing plugins of another protocol.
A kernel leaves through the scheduler handler ``carbon_magic_leave``; the last user
leaving takes the plugins off the cluster. A user whose Dask client disconnects (a
kernel that died, a client closed) no longer counts, unless that client reconnects.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

PLUGIN_NAME = "carbon_magic"
READ_OP = "carbon_magic_read"
LEAVE_OP = "carbon_magic_leave"
# What a kernel and the plugins it finds installed must agree on: the handlers, their
# arguments and replies, and the scheduler plugin's attributes ``join_cluster`` uses.
# Plugins from before kernels shared a cluster have no ``protocol`` attribute: 1.
PROTOCOL = 2


class CarbonWorkerPlugin(WorkerPlugin):
    """Starts a tracker in the worker (through ``carbon_magic.cluster.agent``).

    ``kernel``: the installing kernel's process identity (a dict); ``settings``: the
    kernel's settings the worker follows. ``setup`` never raises: a worker that cannot
    import carbon_magic reports why on every read.
    """

    name = PLUGIN_NAME
    protocol = PROTOCOL

    def __init__(self, kernel: dict[str, Any], settings: dict[str, Any]) -> None:
        self.kernel = kernel
        self.settings = settings
        self.agent: Any = None
        self.error: str | None = None

    def setup(self, worker: Any) -> None:
        worker.handlers[READ_OP] = self.read
        try:
            agent_module = importlib.import_module("carbon_magic.cluster.agent")
            self.agent = agent_module.CounterAgent(self.kernel, self.settings)
        except Exception as error:  # a missing or broken install must not stop the worker
            self.error = f"{type(error).__name__}: {error}"

    def teardown(self, worker: Any) -> None:
        if worker.handlers.get(READ_OP) == self.read:
            del worker.handlers[READ_OP]
        if self.agent is not None:
            self.agent.close()
            self.agent = None

    def read(
        self,
        mode: str = "process",
        kernel: Any = None,
        settings: Mapping[str, Any] | None = None,
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
    """Fans one kernel request out to every worker, each with its own timeout, and
    keeps the kernels that use the plugins (``users``: user id → Dask client id)."""

    name = PLUGIN_NAME
    protocol = PROTOCOL

    def __init__(self) -> None:
        self.scheduler: Any = None
        self.users: dict[str, str] = {}
        self.gone_clients: set[str] = set()  # disconnected; back if they reconnect
        self.retiring = False  # the last user left: the plugins are being taken off
        self.retired = asyncio.Event()
        self.installing = asyncio.Lock()  # one worker plugin broadcast at a time

    async def start(self, scheduler: Any) -> None:
        # No await in here: ``join_cluster`` relies on registration not yielding.
        self.scheduler = scheduler
        scheduler.handlers[READ_OP] = self.read
        scheduler.handlers[LEAVE_OP] = self.leave

    async def close(self) -> None:
        if self.scheduler is None:
            return
        for op, handler in ((READ_OP, self.read), (LEAVE_OP, self.leave)):
            if self.scheduler.handlers.get(op) == handler:
                del self.scheduler.handlers[op]

    # A Dask client that disconnects takes its kernel out of the count (a kernel that
    # died never says it leaves); one that reconnects, with the same id, is back.
    def add_client(self, scheduler: Any, client: str) -> None:
        self.gone_clients.discard(client)

    def remove_client(self, scheduler: Any, client: str) -> None:
        if client in self.users.values():
            self.gone_clients.add(client)

    def active_users(self) -> list[str]:
        """The users whose Dask client is connected, sorted."""
        return sorted(u for u, c in self.users.items() if c not in self.gone_clients)

    async def install_workers(self, worker_plugin: bytes) -> None:
        """Register the (pickled) worker plugin unless it is there; waits for another
        join's registration in progress, so a join returns once workers have it."""
        async with self.installing:
            if PLUGIN_NAME not in self.scheduler.worker_plugins:
                await self.scheduler.register_worker_plugin(
                    None, worker_plugin, PLUGIN_NAME, idempotent=True
                )

    async def leave(self, user: str = "") -> dict[str, Any]:
        """The scheduler handler a kernel calls when it closes: ``user`` no longer
        counts; the last one's leaving removes the worker and scheduler plugins.
        Returns ``{"users": active users left, "removed": bool}``."""
        self.users.pop(user, None)
        users = len(self.active_users())
        if users or self.retiring:
            return {"users": users, "removed": False}
        self.retiring = True  # joins from now wait for ``retired``, then install anew
        try:
            async with self.installing:
                if PLUGIN_NAME in self.scheduler.worker_plugins:
                    await self.scheduler.unregister_worker_plugin(None, PLUGIN_NAME)
        finally:
            if self.scheduler.plugins.get(PLUGIN_NAME) is self:
                self.scheduler.remove_plugin(PLUGIN_NAME)
            await self.close()
            self.retired.set()
        return {"users": 0, "removed": True}

    async def read(
        self,
        mode: str = "process",
        kernel: Any = None,
        timeout: float = 0.8,
        skip: Any = (),
        settings: Mapping[str, Any] | None = None,
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


async def join_cluster(
    dask_scheduler: Any, user: str, client: str, worker_plugin: bytes
) -> dict[str, Any]:
    """Run on the scheduler (``Client.run_on_scheduler``): add ``user`` (of the Dask
    client ``client``) to the plugins' users, installing the plugins first where none
    of this ``PROTOCOL`` are there. ``worker_plugin``: the pickled worker plugin, used
    only when installing. Returns ``{"protocol", "reused": bool, "replaced": the protocol
    of plugins replaced or None, "users": active users}``, once every worker has the
    worker plugin."""
    scheduler = dask_scheduler
    current = scheduler.plugins.get(PLUGIN_NAME)
    # The last user's leave is taking the plugins off: let it finish, or its removal
    # could reach the workers after this install.
    while current is not None and getattr(current, "retiring", False):
        await current.retired.wait()
        current = scheduler.plugins.get(PLUGIN_NAME)
    found = None if current is None else getattr(current, "protocol", 1)
    if current is not None and found == PROTOCOL:
        current.users[user] = client
        await current.install_workers(worker_plugin)  # normally there: returns at once
        return {
            "protocol": PROTOCOL,
            "reused": True,
            "replaced": None,
            "users": len(current.active_users()),
        }
    plugin = CarbonSchedulerPlugin()
    plugin.users[user] = client
    # Whatever worker plugin has this name belongs to the plugins being replaced (or to
    # a removal that did not finish): ours goes in its place.
    scheduler.worker_plugins.pop(PLUGIN_NAME, None)
    if current is not None:
        scheduler.remove_plugin(PLUGIN_NAME)
    # From the check above to here nothing yields (``start`` does not await), so two
    # kernels joining at once cannot both install.
    await scheduler.register_scheduler_plugin(plugin, PLUGIN_NAME, idempotent=False)
    if current is not None:  # after ours is in, so its handlers stay ours
        try:
            closing = current.close()
            if inspect.isawaitable(closing):
                await closing
        except Exception:
            pass
    await plugin.install_workers(worker_plugin)
    return {
        "protocol": PROTOCOL,
        "reused": False,
        "replaced": found,
        "users": len(plugin.active_users()),
    }
