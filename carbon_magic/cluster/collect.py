"""The kernel side: find the notebook's Dask client, install the plugins, read the
workers at each recorded cell's edges, and add their part to the cell.

Cheap when there is no cluster: a cell edge looks at ``sys.modules`` and, only where
``distributed`` is already imported, asks it for the default client. Installing the
plugins runs in a background thread; reading the workers is one round trip through the
scheduler, which asks every worker at once with a per-worker timeout. The start's
request is only sent when the cell starts; its answer is collected when the cell ends,
together with the end's (asked before waiting), so a cell waits for about one round, and
never more than ``EDGE_TIMEOUT_S``: a slow or dead worker (or scheduler) never holds a
cell up longer, and counts as missing. Nothing here raises into a cell.

Kernels share a cluster's plugins (see ``plugins``): a kernel joins those it finds
installed, and on closing (unloading the extension, or the interpreter's normal exit)
only leaves them; the last kernel to leave takes them off. Each read carries the
kernel's mode and settings, so every kernel's figures follow its own.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from carbon_magic.cluster.agent import FOLLOWED_SETTINGS
from carbon_magic.cluster.combine import add_cluster, cluster_figures, unmeasurable
from carbon_magic.cluster.identity import ProcessIdentity, covered_by, this_process
from carbon_magic.measurement import Measurement

log = logging.getLogger("carbon_magic")

EDGE_TIMEOUT_S = 1.0  # the longest a cell edge waits for the cluster
WORKER_TIMEOUT_S = 0.8  # the scheduler's wait for each worker, inside the edge's second
BACKOFF_S = 30.0  # after a round that timed out as a whole (scheduler unreachable)
LEAVE_TIMEOUT_S = 10.0  # telling the scheduler this kernel no longer uses the plugins
EXIT_LEAVE_TIMEOUT_S = 1.0  # the same at interpreter exit, which it must not hold up


@dataclass
class CellEdge:
    """A cell's start: the request sent to the workers, its answer still to collect."""

    client_ref: Any
    mode: str
    settings: dict[str, Any]  # the kernel's FOLLOWED_SETTINGS at the start, for both edges
    pending: Any  # a concurrent.futures.Future of the replies, or None
    sent_at: float  # time.monotonic() of the request, seconds


def _default_client() -> Any:
    """The notebook's current Dask client, or None (never imports distributed)."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed.client import default_client

        return default_client()
    except Exception:  # ValueError: no client
        return None


class ClusterCollector:
    """One per kernel: the cluster side of recorded cells.

    ``tracker``: the kernel's tracker (for settings, mode and the grid intensity);
    ``say``: how a message reaches the running cell's output (once per worker that
    cannot be measured).
    """

    def __init__(self, tracker: Any, say: Callable[[str], None] | None = None) -> None:
        self.tracker = tracker
        self.say = say or (lambda text: print(text, file=sys.stderr))
        self.notices: list[str] = []
        self._kernel: ProcessIdentity | None = None
        self._client_ref: Any = None
        self._state = "none"  # none | registering | ready | failed
        self._thread: threading.Thread | None = None
        self._known: dict[str, ProcessIdentity] = {}
        self._told: set[str] = set()
        self._skip_until = 0.0
        self._user: str | None = None  # this kernel's id among the plugins' users, once joined
        self._at_exit = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------- discovery

    @property
    def state(self) -> str:
        """``none``, ``registering``, ``ready`` or ``failed``."""
        return self._state

    def enabled(self) -> bool:
        """False when the ``cluster`` setting is ``off``."""
        return self.tracker.settings.get("cluster") != "off"

    def kernel_identity(self) -> ProcessIdentity:
        """This kernel's process identity (computed once)."""
        if self._kernel is None:
            self._kernel = this_process()
        return self._kernel

    def poll(self) -> None:
        """Notice a client created since the last look and install the plugins in the
        background. Cheap when nothing changed. Never raises."""
        try:
            self._poll()
        except Exception as error:
            self._notice(f"cannot look for a Dask client: {error!r}")

    def _poll(self) -> None:
        if not self.enabled():
            return
        client = _default_client()
        if client is None:
            return
        current = self._client_ref() if self._client_ref is not None else None
        if current is client:
            return
        if getattr(client, "asynchronous", False):
            self._notice("an asynchronous Dask client is not measured")
            return
        with self._lock:
            if current is not None and self._user is not None:
                self._leave_in_background(current, self._user)  # a client replaced
            self._client_ref = weakref.ref(client)
            self._user = None
            self._state = "registering"
            self._known.clear()
            self._skip_until = 0.0
            self._thread = threading.Thread(
                target=self._register, args=(client,), name="carbon_magic-cluster", daemon=True
            )
            self._thread.start()

    def _register(self, client: Any) -> None:
        user = None
        try:
            import cloudpickle
            from distributed.protocol.pickle import dumps

            from carbon_magic.cluster import plugins

            cloudpickle.register_pickle_by_value(plugins)  # see plugins.py: why by value
            identity = self.kernel_identity()
            worker_plugin = plugins.CarbonWorkerPlugin(identity.to_dict(), self._settings())
            # One id per join, so leaving one client never takes out a later join's.
            user = f"{identity.host_name}:{identity.pid}:{uuid.uuid4().hex[:12]}"
            joined = client.run_on_scheduler(
                plugins.join_cluster,
                user=user,
                client=client.id,
                worker_plugin=dumps(worker_plugin),
            )
            replaced = joined.get("replaced") if isinstance(joined, dict) else None
            if replaced is not None:
                self._notice(
                    f"replaced the Dask cluster's carbon_magic plugins of protocol {replaced} "
                    f"(another carbon_magic version) with protocol {plugins.PROTOCOL}: "
                    "kernels that use those are no longer measured on the cluster"
                )
            state = "ready"
        except Exception as error:
            self._notice(f"Dask cluster not measured: cannot install the plugins ({error!r})")
            state = "failed"
        with self._lock:
            if self._client_ref is not None and self._client_ref() is client:
                self._state = state
                if state == "ready":
                    self._user = user
                    if not self._at_exit:
                        atexit.register(self._leave_at_exit)
                        self._at_exit = True
                return
        if state == "ready" and user is not None:  # closed or replaced meanwhile
            self._leave_in_background(client, user)

    def _settings(self) -> dict[str, Any]:
        """The kernel's settings a worker follows (``agent.FOLLOWED_SETTINGS``)."""
        return {name: self.tracker.settings.get(name) for name in FOLLOWED_SETTINGS}

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for the plugins to be installed."""
        thread = self._thread
        if self._state == "registering" and thread is not None:
            thread.join(timeout_s)
        return self._state == "ready"

    # --------------------------------------------------------------- reading

    def _client(self) -> Any:
        client = self._client_ref() if self._client_ref is not None else None
        if client is None or getattr(client, "status", "running") != "running":
            return None
        return client

    def send(self, mode: str, settings: dict[str, Any] | None = None) -> Any:
        """Ask every worker for its counters now, in ``mode`` and for ``settings`` (the
        kernel's ``FOLLOWED_SETTINGS``; default: as they are now), without waiting: a
        future of the replies, or None when there is no cluster to ask (or reading is
        paused)."""
        client = self._client()
        if client is None or time.monotonic() < self._skip_until:
            return None
        from carbon_magic.cluster.plugins import READ_OP

        kernel_identity = self.kernel_identity()
        kernel = kernel_identity.to_dict()
        settings = self._settings() if settings is None else settings
        # Workers the kernel already counts need not be asked again: the scheduler only
        # confirms they are still there.
        skip = [
            address
            for address, identity in self._known.items()
            if covered_by(identity, kernel_identity, mode)
        ]

        async def ask() -> Any:
            call = getattr(client.scheduler, READ_OP)
            return await call(
                mode=mode, kernel=kernel, timeout=WORKER_TIMEOUT_S, skip=skip, settings=settings
            )

        try:
            return asyncio.run_coroutine_threadsafe(ask(), client.loop.asyncio_loop)
        except Exception as error:
            self._notice(f"cannot reach the Dask scheduler: {error!r}")
            return None

    def collect(self, future: Any, timeout_s: float = EDGE_TIMEOUT_S) -> dict[str, Any]:
        """The replies of ``send`` (``{address: reply}``), waiting at most ``timeout_s``.

        A round that fails as a whole marks every known worker as missing; one that
        times out also pauses reading for ``BACKOFF_S`` (a dead scheduler then costs one
        second, not one per cell edge)."""
        if future is None:
            return {address: {"error": "not read"} for address in self._known}
        try:
            replies = future.result(timeout=max(timeout_s, 0.0))
        except concurrent.futures.TimeoutError:
            future.cancel()
            self._skip_until = time.monotonic() + BACKOFF_S
            self._notice(f"the Dask scheduler did not answer within {EDGE_TIMEOUT_S:g} s")
            return {address: {"error": "timeout"} for address in self._known}
        except Exception as error:
            self._notice(f"reading the Dask workers failed: {error!r}")
            return {address: {"error": "failed"} for address in self._known}
        if not isinstance(replies, dict):
            return {}
        known: dict[str, ProcessIdentity] = {}  # the workers there now; gone ones drop out
        for address, reply in replies.items():
            identity = reply.get("identity") if isinstance(reply, dict) else None
            try:
                if identity:
                    known[address] = ProcessIdentity.from_dict(identity)
                elif address in self._known:
                    known[address] = self._known[address]
            except (KeyError, TypeError, ValueError):
                pass
        self._known = known
        return replies

    def read(self, mode: str) -> dict[str, Any]:
        """Every worker's reply now, within ``EDGE_TIMEOUT_S`` (``send`` + ``collect``)."""
        return self.collect(self.send(mode))

    # ------------------------------------------------------------ cell edges

    def start(self) -> CellEdge | None:
        """At a recorded cell's start: ask the workers (the answer is collected at the
        cell's end, so the cell does not wait for it); None without a cluster. Never
        raises."""
        try:
            if not self.enabled():
                return None
            self.poll()
            if self._state == "registering":
                self.wait_ready(EDGE_TIMEOUT_S)
            if self._state != "ready":
                return None
            if self._client() is None:  # closed (or reconnecting): no cluster this cell
                return None
            mode, settings = self.tracker.settings.get("mode"), self._settings()
            return CellEdge(
                self._client_ref, mode, settings, self.send(mode, settings), time.monotonic()
            )
        except Exception as error:
            self._notice(f"cluster reading failed: {error!r}")
            return None

    def end(self, edge: CellEdge | None, m: Measurement) -> None:
        """At the cell's end: read the workers again and add their part to ``m`` (in
        place). Also notices a client the cell created. Never raises."""
        try:
            if edge is not None and self._client_ref is edge.client_ref:
                # Asked before waiting for the start's answer; with the start's settings, so
                # both edges read the same worker tracker.
                ending = self.send(edge.mode, edge.settings)
                now = time.monotonic()
                start = self.collect(edge.pending, edge.sent_at + EDGE_TIMEOUT_S - now)
                end = self.collect(ending, now + EDGE_TIMEOUT_S - time.monotonic())
                cluster = cluster_figures(
                    start, end, self.kernel_identity(), edge.mode, self._known
                )
                self._tell_unmeasurable({**start, **end})
                add_cluster(m, cluster, self.tracker.intensity())
            self.poll()
        except Exception as error:
            self._notice(f"cluster reading failed: {error!r}")

    def _tell_unmeasurable(self, replies: dict[str, Any]) -> None:
        new = {a: why for a, why in unmeasurable(replies).items() if a not in self._told}
        if not new:
            return
        self._told.update(new)
        lines = "\n".join(f"  {address}: {why}" for address, why in sorted(new.items()))
        count = len(new)
        self.say(
            f"carbon_magic: {count} Dask worker{'s' if count != 1 else ''} could not be "
            f"measured (install carbon_magic there):\n{lines}"
        )

    def _notice(self, message: str) -> None:
        if message not in self.notices:
            self.notices.append(message)
            log.warning("carbon_magic: %s", message)

    def close(self) -> None:
        """Leave the cluster's plugins, in the background (best effort): the last
        kernel to leave takes them off the cluster."""
        client, user = self._client(), self._user
        self._client_ref, self._state, self._user = None, "none", None
        if self._at_exit:
            atexit.unregister(self._leave_at_exit)
            self._at_exit = False
        # Still joining (no user yet): ``_register`` leaves once it has joined.
        if client is not None and user is not None:
            self._leave_in_background(client, user)

    def _leave_at_exit(self) -> None:
        """Interpreter exit (a kernel shut down normally): leave, briefly."""
        client, user = self._client(), self._user
        if client is not None and user is not None:
            self._user = None
            _leave(client, user, EXIT_LEAVE_TIMEOUT_S)

    def _leave_in_background(self, client: Any, user: str) -> None:
        threading.Thread(
            target=_leave,
            args=(client, user, LEAVE_TIMEOUT_S),
            name="carbon_magic-cluster-close",
            daemon=True,
        ).start()


def _leave(client: Any, user: str, timeout_s: float) -> None:
    """Tell the scheduler that ``user`` no longer uses the plugins, waiting at most
    ``timeout_s`` seconds. Plugins of another protocol have no such handler: they are
    not this kernel's to remove, so any failure is ignored."""
    from carbon_magic.cluster.plugins import LEAVE_OP

    if getattr(client, "status", "running") != "running":
        return
    try:
        call = getattr(client.scheduler, LEAVE_OP)
        future = asyncio.run_coroutine_threadsafe(call(user=user), client.loop.asyncio_loop)
        future.result(timeout=timeout_s)
    except Exception:
        pass
