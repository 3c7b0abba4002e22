"""The kernel side: find the notebook's cluster, put trackers on it, read them at each
recorded cell's edges (and while a ``%%carbon`` cell runs), and add their part to the cell.

Which cluster is the engines' business (``engine``: Dask, Ray); everything here is the
same for all of them. Cheap when there is no cluster: an edge asks each allowed engine,
which looks at ``sys.modules`` first. Putting the trackers on runs in a background
thread; reading them is one round (every tracker asked at once, each with its own
timeout). The start's request is only sent when the cell starts; its answer is collected
when the cell ends, together with the end's (asked before waiting), so a cell waits for
about one round, and never more than ``EDGE_TIMEOUT_S``: a slow or dead tracker (or
scheduler, or head node) never holds a cell up longer, and counts as missing. Nothing
here raises into a cell.

While a cell runs, ``add_live`` adds the cluster's part so far to the live figures (the
panel, the budget): at most one read in flight, at most one per tracker interval, never
waited for. Each read carries the kernel's mode and settings, so kernels sharing a
cluster each get figures for their own.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from carbon_magic.cluster.agent import FOLLOWED_SETTINGS
from carbon_magic.cluster.combine import add_cluster, cluster_figures, unmeasurable
from carbon_magic.cluster.engine import find_connection
from carbon_magic.cluster.identity import ProcessIdentity, covered_by, this_process
from carbon_magic.engine.measurement import Measurement

log = logging.getLogger("carbon_magic")

EDGE_TIMEOUT_S = 1.0  # the longest a cell edge waits for the cluster
BACKOFF_S = 30.0  # after a round that timed out as a whole (scheduler unreachable)
LEAVE_TIMEOUT_S = 10.0  # telling the cluster this kernel no longer uses its trackers
EXIT_LEAVE_TIMEOUT_S = 1.0  # the same at interpreter exit, which it must not hold up
TIMEOUTS = (concurrent.futures.TimeoutError, TimeoutError)


@dataclass
class CellEdge:
    """A cell's start: the request sent to the trackers, its answer still to collect,
    and the live reads made while the cell runs."""

    connection: Any
    mode: str
    settings: dict[str, Any]  # the kernel's FOLLOWED_SETTINGS at the start, for both edges
    pending: Any  # an engine.Pending of the start's replies, or None
    sent_at: float  # time.monotonic() of the request, seconds
    start: dict[str, Any] | None = None  # the start's replies, once collected
    live: Any = None  # the live read in flight
    live_sent_at: float = 0.0
    latest: dict[str, Any] | None = None  # the last live read's replies
    failed: str | None = None  # why the cluster cannot be read at all (nothing was sent)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ClusterCollector:
    """One per kernel: the cluster side of recorded cells.

    ``tracker``: the kernel's tracker (for settings, mode and the grid intensity);
    ``say``: how a message reaches the running cell's output (once per tracker that
    cannot be measured).
    """

    def __init__(self, tracker: Any, say: Callable[[str], None] | None = None) -> None:
        self.tracker = tracker
        self.say = say or (lambda text: print(text, file=sys.stderr))
        self.notices: list[str] = []
        self._kernel: ProcessIdentity | None = None
        self._connection: Any = None
        self._state = "none"  # none | registering | ready | failed
        self._failure: str | None = None  # why, when failed
        self._thread: threading.Thread | None = None
        self._known: dict[str, ProcessIdentity] = {}
        self._told: set[str] = set()
        self._skip_until = 0.0
        self._at_exit = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------- discovery

    @property
    def state(self) -> str:
        """``none``, ``registering``, ``ready`` or ``failed``."""
        return self._state

    @property
    def connection(self) -> Any:
        """The cluster connection in use (an ``engine.Connection``), or None."""
        return self._connection

    def setting(self) -> str:
        """The ``cluster`` setting: ``auto``, an engine's name, or ``none``."""
        return str(self.tracker.settings.get("cluster"))

    def enabled(self) -> bool:
        """False when the ``cluster`` setting is ``none``."""
        return self.setting() != "none"

    def kernel_identity(self) -> ProcessIdentity:
        """This kernel's process identity (computed once)."""
        if self._kernel is None:
            self._kernel = this_process()
        return self._kernel

    def poll(self) -> None:
        """Notice a cluster connected since the last look and put the trackers on it in
        the background. Cheap when nothing changed. Never raises."""
        try:
            self._poll()
        except ValueError as error:  # a connection that cannot be measured, said once
            self._notice(str(error))
        except Exception as error:
            self._notice(f"cannot look for a cluster: {error!r}")

    def _poll(self) -> None:
        if not self.enabled():
            return
        current = self._connection
        found = find_connection(self.setting(), current)
        if found is None or found is current:
            return
        with self._lock:
            if current is not None:
                self._leave_in_background(current)  # a client replaced
            self._connection = found
            self._state = "registering"
            self._known.clear()
            self._skip_until = 0.0
            self._thread = threading.Thread(
                target=self._register, args=(found,), name="carbon_magic-cluster", daemon=True
            )
            self._thread.start()

    def _register(self, connection: Any) -> None:
        try:
            notice = connection.join(self.kernel_identity().to_dict(), self._settings())
            if notice:
                self._notice(notice)
            state = "ready"
        except Exception as error:
            self._failure = f"cannot put the trackers on the {connection.engine} cluster: {error}"
            self._notice(f"{connection.engine} cluster not measured: {self._failure}")
            state = "failed"
        with self._lock:
            if self._connection is connection:
                self._state = state
                if state == "ready" and not self._at_exit:
                    atexit.register(self._leave_at_exit)
                    self._at_exit = True
                return
        if state == "ready":  # closed or replaced meanwhile
            self._leave_in_background(connection)

    def _settings(self) -> dict[str, Any]:
        """The kernel's settings a tracker follows (``agent.FOLLOWED_SETTINGS``)."""
        return {name: self.tracker.settings.get(name) for name in FOLLOWED_SETTINGS}

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for the trackers to be on the cluster."""
        thread = self._thread
        if self._state == "registering" and thread is not None:
            thread.join(timeout_s)
        return self._state == "ready"

    # --------------------------------------------------------------- reading

    def _live_connection(self) -> Any:
        connection = self._connection
        if connection is None or not connection.alive():
            return None
        return connection

    def send(self, mode: str, settings: dict[str, Any] | None = None) -> Any:
        """Ask every tracker for its counters now, in ``mode`` and for ``settings`` (the
        kernel's ``FOLLOWED_SETTINGS``; default: as they are now), without waiting: a
        pending round, or None when there is no cluster to ask (or reading is paused)."""
        connection = self._live_connection()
        if connection is None or time.monotonic() < self._skip_until:
            return None
        kernel_identity = self.kernel_identity()
        settings = self._settings() if settings is None else settings
        # Trackers the kernel already counts need not be asked again: the cluster only
        # confirms they are still there.
        skip = [
            address
            for address, identity in self._known.items()
            if covered_by(identity, kernel_identity, mode)
        ]
        try:
            return connection.send(mode, kernel_identity.to_dict(), settings, skip)
        except Exception as error:
            self._notice(f"cannot reach the {connection.engine} cluster: {error!r}")
            return None

    def collect(self, pending: Any, timeout_s: float = EDGE_TIMEOUT_S) -> dict[str, Any]:
        """The replies of ``send`` (``{address: reply}``), waiting at most ``timeout_s``.

        A round that fails as a whole marks every known tracker as missing; one that
        times out also pauses reading for ``BACKOFF_S`` (a dead scheduler then costs one
        second, not one per cell edge)."""
        engine = getattr(self._connection, "engine", "the")
        if pending is None:
            return {address: {"error": "not read"} for address in self._known}
        try:
            replies = pending.result(max(timeout_s, 0.0))
        except TIMEOUTS:
            pending.cancel()
            self._skip_until = time.monotonic() + BACKOFF_S
            self._notice(f"the {engine} cluster did not answer within {EDGE_TIMEOUT_S:g} s")
            return {address: {"error": "timeout"} for address in self._known}
        except Exception as error:
            self._notice(f"reading the {engine} cluster failed: {error!r}")
            return {address: {"error": f"failed: {error}"} for address in self._known}
        if not isinstance(replies, dict):
            return {}
        known: dict[str, ProcessIdentity] = {}  # the trackers there now; gone ones drop out
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
        """Every tracker's reply now, within ``EDGE_TIMEOUT_S`` (``send`` + ``collect``)."""
        return self.collect(self.send(mode))

    # ------------------------------------------------------------ cell edges

    def start(self) -> CellEdge | None:
        """At a recorded cell's start: ask the trackers (the answer is collected at the
        cell's end, so the cell does not wait for it); None without a cluster. Never
        raises."""
        try:
            if not self.enabled():
                return None
            self.poll()
            if self._state == "registering":
                self.wait_ready(EDGE_TIMEOUT_S)
            connection = self._live_connection()
            if connection is None or self._state not in ("ready", "failed"):
                return None
            mode, settings = self.tracker.settings.get("mode"), self._settings()
            now = time.monotonic()
            if self._state == "failed":  # the cell gets a cluster part that says why
                return CellEdge(connection, mode, settings, None, now, failed=self._failure)
            return CellEdge(connection, mode, settings, self.send(mode, settings), now)
        except Exception as error:
            self._notice(f"cluster reading failed: {error!r}")
            return None

    def _start_replies(self, edge: CellEdge, timeout_s: float) -> dict[str, Any]:
        """The start's replies, collected once (by the end, or by a live read)."""
        with edge.lock:
            if edge.start is None:
                edge.start = self.collect(edge.pending, timeout_s)
            return edge.start

    def end(self, edge: CellEdge | None, m: Measurement) -> None:
        """At the cell's end: read the trackers again and add their part to ``m`` (in
        place). A connection closed during the cell leaves the kernel's part as it is
        and marks the cluster's partial. Also notices a cluster the cell connected.
        Never raises."""
        try:
            if edge is not None:
                self._end(edge, m)
            self.poll()
        except Exception as error:
            self._notice(f"cluster reading failed: {error!r}")

    def _end(self, edge: CellEdge, m: Measurement) -> None:
        connection = edge.connection
        if edge.failed is not None:
            failed = {"hosts": {}, "missing_workers": 0, "engine": connection.engine}
            add_cluster(m, {**failed, "partial": edge.failed}, self.tracker.intensity())
            return
        gone = None
        if connection is not self._connection or not connection.alive():
            gone = f"the {connection.engine} connection was closed during the cell"
            ending = None
        else:
            # Asked before waiting for the start's answer; with the start's settings, so
            # both edges read the same tracker.
            ending = self.send(edge.mode, edge.settings)
        now = time.monotonic()
        start = self._start_replies(edge, edge.sent_at + EDGE_TIMEOUT_S - now)
        if gone is not None:
            end = {address: {"error": gone} for address in start}
        else:
            end = self.collect(ending, now + EDGE_TIMEOUT_S - time.monotonic())
        cluster = cluster_figures(start, end, self.kernel_identity(), edge.mode, self._known)
        cluster["engine"] = connection.engine
        partial = gone
        if partial is None and cluster["missing_workers"]:
            partial = partial_reason(start, end, connection.unit)
        if partial:
            cluster["partial"] = partial
        self._tell_unmeasurable({**start, **end}, connection.unit)
        add_cluster(m, cluster, self.tracker.intensity())

    # ------------------------------------------------------- while a cell runs

    def add_live(self, edge: CellEdge | None, m: Measurement) -> None:
        """Add the cluster's part so far to the live figures ``m`` of a running cell (in
        place), from the last read that came back; send the next read when none is in
        flight and a tracker interval has passed. Never waits, never raises: called from
        the tracker thread at every tick."""
        if edge is None:
            return
        try:
            self._add_live(edge, m)
        except Exception as error:
            self._notice(f"live cluster reading failed: {error!r}")

    def _add_live(self, edge: CellEdge, m: Measurement) -> None:
        if edge.failed is not None:
            return
        if edge.start is None:
            if edge.pending is not None and not edge.pending.done():
                return
            self._start_replies(edge, 0.0)
        if edge.live is not None and edge.live.done():
            try:
                edge.latest = edge.live.result(0.0)
            except Exception:
                pass  # the cell's end says what is missing; the live view keeps the last
            edge.live = None
        now = time.monotonic()
        interval = float(self.tracker.settings.get("interval"))
        if edge.live is None and now - edge.live_sent_at >= interval:
            if edge.connection is self._connection and edge.connection.alive():
                edge.live = self.send(edge.mode, edge.settings)
                edge.live_sent_at = now
        if edge.start is not None and edge.latest is not None:
            cluster = cluster_figures(
                edge.start, edge.latest, self.kernel_identity(), edge.mode, self._known
            )
            cluster["engine"] = edge.connection.engine
            add_cluster(m, cluster, self.tracker.intensity())

    # --------------------------------------------------------------- notices

    def _tell_unmeasurable(self, replies: dict[str, Any], unit: str) -> None:
        new = {a: why for a, why in unmeasurable(replies).items() if a not in self._told}
        if not new:
            return
        self._told.update(new)
        lines = "\n".join(f"  {address}: {why}" for address, why in sorted(new.items()))
        count = len(new)
        engine = getattr(self._connection, "engine", "cluster").capitalize()
        self.say(
            f"carbon_magic: {count} {engine} {unit}{'s' if count != 1 else ''} could not be "
            f"measured (install carbon_magic there):\n{lines}"
        )

    def _notice(self, message: str) -> None:
        if message not in self.notices:
            self.notices.append(message)
            log.warning("carbon_magic: %s", message)

    # --------------------------------------------------------------- leaving

    def close(self) -> None:
        """Leave the cluster's trackers, in the background (best effort): the last
        kernel to leave takes them off where the engine does so."""
        connection = self._connection
        self._connection, self._state = None, "none"
        if self._at_exit:
            atexit.unregister(self._leave_at_exit)
            self._at_exit = False
        # Still joining: ``_register`` leaves once it has joined.
        if connection is not None:
            self._leave_in_background(connection)

    def _leave_at_exit(self) -> None:
        """Interpreter exit (a kernel shut down normally): leave, briefly."""
        connection = self._connection
        if connection is not None:
            connection.leave(EXIT_LEAVE_TIMEOUT_S)

    @staticmethod
    def _leave_in_background(connection: Any) -> None:
        threading.Thread(
            target=connection.leave,
            args=(LEAVE_TIMEOUT_S,),
            name="carbon_magic-cluster-close",
            daemon=True,
        ).start()


def partial_reason(start: dict[str, Any], end: dict[str, Any], unit: str) -> str | None:
    """Why some trackers are missing from a cell's cluster part (one line naming them
    and why), or None when every one answered at both edges."""
    reasons: dict[str, str] = {}
    for edge_name, replies in (("start", start), ("end", end)):
        for address, reply in replies.items():
            if isinstance(reply, dict) and "error" in reply and address not in reasons:
                reasons[address] = f"{address} at the {edge_name}: {reply['error']}"
    missing = [address for address in start if address not in end] + [
        address for address in end if address not in start
    ]
    for address in missing:
        reasons.setdefault(address, f"{address}: seen at one edge only")
    if not reasons:
        return None
    count = len(reasons)
    return f"{count} {unit}{'s' if count != 1 else ''} missing: " + "; ".join(
        reasons[a] for a in sorted(reasons)
    )
