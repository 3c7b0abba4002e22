"""Ray: the notebook's Ray connection (``ray.init()``), a tracker actor on each node.

Each node gets one tracker: a *detached, named* actor (``ray_node.NodeTracker``) pinned
to the node with ``NodeAffinitySchedulingStrategy(soft=False)`` and ``num_cpus=0``. Why
an actor: it is Ray's own way to run code on a chosen node from a plain ``ray``
install (the dashboard's agents need ``ray[default]`` and may be switched off), and a
detached actor outlives the driver that created it, so a driver that reconnects (or
another driver) finds the same tracker by name and its counters keep running. It holds
no CPU slot: the user's tasks schedule as if it were not there.

A cell edge sends one read to every node's actor at once and waits for all of them
together (``ray.wait``) at most the edge's timeout; a node that does not answer in time,
or whose actor died with its node, is missing at that edge. Never imports ``ray``
unless the notebook has.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

NAME = "ray"
UNIT = "node"
JOIN_TIMEOUT_S = 60.0  # the nodes' actors answering once after they were created
NODE_REFRESH_S = 10.0  # how often the node list is read again (nodes join and leave)


def find(current: RayConnection | None) -> RayConnection | None:
    """The notebook's Ray connection: ``current`` while the same driver (job) is
    connected, a new connection after ``ray.init`` made another, None without one."""
    ray = sys.modules.get("ray")
    if ray is None:
        return None
    try:
        if not ray.is_initialized():
            return None
        context = ray.get_runtime_context()
        key = (str(context.gcs_address), context.get_job_id())
    except Exception:
        return None
    if current is not None and current.key == key:
        return current
    return RayConnection(ray, key)


class RayRound:
    """One read of every node in flight (``engine.Pending``)."""

    def __init__(self, ray: Any, refs: dict[str, Any], errors: dict[str, Any]) -> None:
        self._ray = ray
        self._refs = refs
        self._errors = errors  # nodes that could not be asked at all

    def done(self) -> bool:
        """True once every node answered (or failed)."""
        if not self._refs:
            return True
        if not self._ray.is_initialized():
            return True
        ready, _ = self._ray.wait(list(self._refs.values()), num_returns=len(self._refs), timeout=0)
        return len(ready) == len(self._refs)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """``{node id: reply}``, waiting at most ``timeout`` seconds for all together.
        Raises ``RuntimeError`` when Ray was shut down meanwhile."""
        ray = self._ray
        if not ray.is_initialized():
            raise RuntimeError("Ray was shut down")
        replies = dict(self._errors)
        refs = list(self._refs.values())
        ready = set()
        if refs:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
            ready = {ref.hex() for ref in done}
        for node, ref in self._refs.items():
            if ref.hex() not in ready:
                replies[node] = {"error": f"no answer within {timeout or 0:g} s"}
                continue
            try:
                replies[node] = ray.get(ref, timeout=0)
            except Exception as error:  # the actor died (its node too), or the call failed
                replies[node] = {"error": f"{type(error).__name__}: {_first_line(error)}"}
        return replies

    def cancel(self) -> bool:
        """Nothing to cancel: a late answer is dropped."""
        return False


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


class RayConnection:
    """One driver's connection to a Ray cluster: ``key`` is (GCS address, job id)."""

    engine = NAME
    unit = UNIT

    def __init__(self, ray: Any, key: tuple[str, str]) -> None:
        self._ray = ray
        self.key = key
        self.job = key[1]
        self._actors: dict[str, Any] = {}  # node id -> its tracker actor
        self._actor_class: Any = None
        self._join_args: tuple[dict[str, Any], dict[str, Any]] | None = None
        self._refreshed_at = 0.0
        self._refreshing = threading.Lock()

    def alive(self) -> bool:
        """Ray is still connected, with this driver's job."""
        try:
            return bool(
                self._ray.is_initialized()
                and self._ray.get_runtime_context().get_job_id() == self.job
            )
        except Exception:
            return False

    def join(self, kernel: dict[str, Any], settings: dict[str, Any]) -> str | None:
        """Find or create the tracker actor of every live node and wait until each has
        answered once. Raises ``RuntimeError`` for a Ray without the needed API."""
        import ray.cloudpickle as cloudpickle

        from carbon_magic.cluster import ray_node

        try:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: F401
        except ImportError as error:
            raise RuntimeError(
                f"this Ray ({getattr(self._ray, '__version__', '?')}) has no "
                "NodeAffinitySchedulingStrategy: Ray 2.1 or later is needed"
            ) from error
        cloudpickle.register_pickle_by_value(ray_node)  # see ray_node: why by value
        self._actor_class = self._ray.remote(ray_node.NodeTracker)
        self._join_args = (kernel, settings)
        pids = [actor.pid.remote() for actor in self._refresh_nodes().values()]
        self._ray.get(pids, timeout=JOIN_TIMEOUT_S)
        return None

    def _refresh_nodes(self) -> dict[str, Any]:
        """Read the node list again: an actor for each new node (found by name where one
        is there already), none for nodes gone. Returns the actors."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from carbon_magic.cluster import ray_node

        assert self._join_args is not None
        with self._refreshing:
            alive = [node["NodeID"] for node in self._ray.nodes() if node.get("Alive")]
            actors = {node: actor for node, actor in self._actors.items() if node in alive}
            for node in alive:
                if node in actors:
                    continue
                actors[node] = self._actor_class.options(
                    name=ray_node.actor_name(node),
                    namespace=ray_node.NAMESPACE,
                    lifetime="detached",
                    get_if_exists=True,
                    num_cpus=0,
                    max_concurrency=4,  # a read never queues behind another kernel's
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
                ).remote(*self._join_args)
            self._actors = actors
            self._refreshed_at = time.monotonic()
            return actors

    def _refresh_in_background(self) -> None:
        def refresh() -> None:
            try:
                self._refresh_nodes()
            except Exception:
                pass  # tried again at a later edge; nodes already known are still read

        self._refreshed_at = time.monotonic()
        threading.Thread(target=refresh, name="carbon_magic-ray-nodes", daemon=True).start()

    def send(
        self, mode: str, kernel: dict[str, Any], settings: dict[str, Any], skip: list[str]
    ) -> RayRound | None:
        """Ask every node's actor for its counters now (nodes the kernel counts itself
        are asked too: the actor then only confirms it is there)."""
        if not self.alive():
            return None
        if self._join_args is not None and time.monotonic() - self._refreshed_at > NODE_REFRESH_S:
            self._refresh_in_background()
        refs, errors = {}, {}
        for node, actor in list(self._actors.items()):
            try:
                refs[node] = actor.read.remote(mode, kernel, settings, self.job)
            except Exception as error:
                errors[node] = {"error": f"{type(error).__name__}: {_first_line(error)}"}
        return RayRound(self._ray, refs, errors)

    def leave(self, timeout_s: float) -> None:
        """Nothing to take off: the node actors are detached, shared by every driver
        (and a reconnecting one), and idle between reads."""
