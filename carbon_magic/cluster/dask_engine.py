"""Dask: the notebook's ``distributed`` client, trackers in the workers through plugins.

The worker and scheduler plugins (``dask_plugins``, sent by value) run a tracker in each
worker; reading the workers is one round trip through the scheduler, which asks every
worker at once with a per-worker timeout. Kernels share a cluster's plugins: a kernel
joins those it finds installed and on leaving only leaves them; the last kernel to
leave takes them off. Never imports ``distributed`` unless the notebook has.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
import weakref
from typing import Any

NAME = "dask"
UNIT = "worker"
WORKER_TIMEOUT_S = 0.8  # the scheduler's wait for each worker, inside the edge's second


def default_client() -> Any:
    """The notebook's current Dask client, or None (never imports distributed)."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed.client import default_client as current

        return current()
    except Exception:  # ValueError: no client
        return None


def find(current: DaskConnection | None) -> DaskConnection | None:
    """The notebook's Dask connection: ``current`` while its client is the default one,
    a new connection for another client, None without one (or an asynchronous client,
    which cannot be read from the kernel's thread: ``ValueError`` says so)."""
    client = default_client()
    if client is None:
        return None
    if current is not None and current.client() is client:
        return current
    if getattr(client, "asynchronous", False):
        raise ValueError("an asynchronous Dask client is not measured")
    return DaskConnection(client)


class DaskConnection:
    """One Dask client (held weakly: the notebook owns it)."""

    engine = NAME
    unit = UNIT

    def __init__(self, client: Any) -> None:
        self._client_ref = weakref.ref(client)
        self.user: str | None = None  # this kernel's id among the plugins' users, once joined

    def client(self) -> Any:
        """The client, or None once the notebook dropped it."""
        return self._client_ref()

    def alive(self) -> bool:
        """The client still exists and runs."""
        client = self.client()
        return client is not None and getattr(client, "status", "running") == "running"

    def join(self, kernel: dict[str, Any], settings: dict[str, Any]) -> str | None:
        """Join (or install) the cluster's plugins; a notice when plugins of another
        carbon_magic version were replaced."""
        import cloudpickle
        from distributed.protocol.pickle import dumps

        from carbon_magic.cluster import dask_plugins as plugins

        client = self.client()
        if client is None:
            raise RuntimeError("the Dask client is gone")
        cloudpickle.register_pickle_by_value(plugins)  # see dask_plugins: why by value
        worker_plugin = plugins.CarbonWorkerPlugin(kernel, settings)
        # One id per join, so leaving one client never takes out a later join's.
        user = f"{kernel.get('host_name')}:{kernel.get('pid')}:{uuid.uuid4().hex[:12]}"
        joined = client.run_on_scheduler(
            plugins.join_cluster, user=user, client=client.id, worker_plugin=dumps(worker_plugin)
        )
        self.user = user
        replaced = joined.get("replaced") if isinstance(joined, dict) else None
        if replaced is None:
            return None
        return (
            f"replaced the Dask cluster's carbon_magic plugins of protocol {replaced} "
            f"(another carbon_magic version) with protocol {plugins.PROTOCOL}: "
            "kernels that use those are no longer measured on the cluster"
        )

    def send(
        self, mode: str, kernel: dict[str, Any], settings: dict[str, Any], skip: list[str]
    ) -> Any:
        """Ask the scheduler to read every worker: a ``concurrent.futures.Future`` of
        ``{worker address: reply}``, or None once the client is closed."""
        from carbon_magic.cluster.dask_plugins import READ_OP

        client = self.client()
        if client is None or not self.alive():
            return None

        async def ask() -> Any:
            call = getattr(client.scheduler, READ_OP)
            return await call(
                mode=mode, kernel=kernel, timeout=WORKER_TIMEOUT_S, skip=skip, settings=settings
            )

        return asyncio.run_coroutine_threadsafe(ask(), client.loop.asyncio_loop)

    def leave(self, timeout_s: float) -> None:
        """Tell the scheduler this kernel no longer uses the plugins, waiting at most
        ``timeout_s`` seconds. Plugins of another protocol have no such handler: they
        are not this kernel's to remove, so any failure is ignored."""
        from carbon_magic.cluster.dask_plugins import LEAVE_OP

        client, user = self.client(), self.user
        self.user = None
        if client is None or user is None or not self.alive():
            return
        try:
            call = getattr(client.scheduler, LEAVE_OP)
            future = asyncio.run_coroutine_threadsafe(call(user=user), client.loop.asyncio_loop)
            future.result(timeout=timeout_s)
        except Exception:
            pass
