"""Tornado handlers of the server extension: REST (JSON) and Prometheus endpoints.

Routes, under the server's ``base_url``:

- ``carbon-magic/api/v1/kernels/{kernel_id}``: one kernel's live power and totals.
- ``carbon-magic/api/v1/summary[?day_start=EPOCH_S]``: every kernel, today and all time.
- ``carbon-magic/api/v1/kernels/{kernel_id}/cells[?since=EPOCH_S&after=ID&limit=N]``:
  the kernel's recorded cells, a page at a time; ``carbon-magic/api/v1/cells?path=NOTEBOOK``
  (same parameters): the cells of a notebook, whichever kernels ran it.
- ``carbon-magic/metrics``: Prometheus text exposition.

Every endpoint requires an authenticated user allowed to read kernels (403 otherwise),
except ``/metrics`` when ``CarbonMagicServer.metrics_allow_unauthenticated`` is set.
Ledger reads run on one worker thread so the event loop never waits on SQLite. A busy
or corrupt ledger answers 503 with a JSON message; ``/metrics`` then answers 200 with
``carbon_magic_ledger_up 0``. ``kernels/{kernel_id}`` and ``kernels/{kernel_id}/cells``
answer only for this server's kernels (404 for others), unless
``CarbonMagicServer.kernels = "ledger"``; kernel ids match whatever their case, as UUIDs do.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import ensure_async, url_path_join
from tornado import web
from tornado.ioloop import IOLoop

from carbon_magic import records
from carbon_magic.record_json import from_json, to_json
from carbon_magic.server import metrics, views
from carbon_magic.server.budgets import KernelBudgets
from carbon_magic.server.cell_pages import CELL_PAGE_DEFAULT, CELL_PAGE_MAX, CellPage
from carbon_magic.server.config import CarbonMagicServer
from carbon_magic.server.ledger_records import LedgerSnapshot
from carbon_magic.server.reader import LedgerReader, LedgerUnavailable
from carbon_magic.server.views import KernelSummary

try:
    from jupyter_server.auth.decorator import allow_unauthenticated
except ImportError:  # jupyter_server < 2.13 has no such check to opt out of
    FuncT = TypeVar("FuncT", bound=Callable[..., Any])

    def allow_unauthenticated(method: FuncT) -> FuncT:
        return method


STATE_KEY = "carbon_magic"
# A Jupyter kernel id: a UUID, as the kernel manager makes them.
KERNEL_ID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
DAY_S = 86400.0
MAX_ROW_ID = 2**62  # a cursor beyond any SQLite row id (and still an SQLite integer)

T = TypeVar("T")


class LedgerUnreadable(web.HTTPError):
    """503: the ledger is busy, corrupt or otherwise unreadable."""

    def __init__(self, error: sqlite3.Error) -> None:
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            message = f"the ledger is busy: {error}"
        else:
            message = f"the ledger cannot be read: {error}"
        super().__init__(503, message)


@dataclass
class ExtensionState:
    """What the handlers share: settings, the ledger reader and its worker thread."""

    config: CarbonMagicServer
    reader: LedgerReader
    executor: ThreadPoolExecutor
    budgets: KernelBudgets | None = None

    def stale_after(self, interval_s: float, next_beat_s: float | None) -> float:
        return self.config.stale_after_s(interval_s, next_beat_s)


class CarbonMagicHandler(APIHandler):
    """Base: authenticated JSON handler reading the ledger off the event loop."""

    auth_resource = "kernels"

    @property
    def state(self) -> ExtensionState:
        return self.settings[STATE_KEY]

    def finish_record(self, document: Any) -> None:
        """Send ``document`` (a record of :mod:`carbon_magic.records`) as JSON."""
        self.finish(json.dumps(to_json(document)))

    async def read_ledger(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` on the ledger thread. A busy or unreadable (corrupt)
        ledger answers 503 with a JSON message (an HTTPError: one log line, no traceback)."""
        try:
            return await IOLoop.current().run_in_executor(self.state.executor, function, *args)
        except sqlite3.Error as error:
            raise LedgerUnreadable(error) from None

    def served_kernel_id(self, kernel_id: str) -> str:
        """``kernel_id`` as this server and its kernels spell it, when this server
        answers for it: one of its own kernels (matched as UUIDs match, whatever the
        case), or any kernel of the ledger with ``CarbonMagicServer.kernels = "ledger"``.
        Raises a 404 HTTPError otherwise, on every kernel endpoint alike."""
        wanted = kernel_id.lower()
        if self.state.config.kernels == "ledger":
            return wanted  # kernels write their ids as the kernel manager makes them
        for own in self.kernel_manager.list_kernel_ids():
            if own.lower() == wanted:
                return own
        raise web.HTTPError(
            404,
            f"kernel {kernel_id} is not running on this server (CarbonMagicServer.kernels "
            '= "ledger" answers for every kernel in the ledger)',
        )

    async def notebook_paths(self) -> dict[str, str]:
        """The notebook path now of each kernel this server runs (follows renames)."""
        try:
            sessions = cast(
                "list[dict[str, Any]]", await ensure_async(self.session_manager.list_sessions())
            )
        except Exception as error:  # the figures matter more than the names
            self.log.debug("carbon_magic: no session list: %s", error)
            return {}
        return {
            model["kernel"]["id"]: model["path"]
            for model in sessions
            if (model.get("kernel") or {}).get("id") and model.get("path")
        }

    def scope(self) -> records.Scope:
        """Which kernels are listed one by one: ``server`` or ``ledger``."""
        return "ledger" if self.state.config.kernels == "ledger" else "server"

    def server_kernel_ids(self) -> list[str] | None:
        """Kernels to list: the server's own, or ``None`` for every live ledger kernel."""
        if self.state.config.kernels == "ledger":
            return None
        return list(self.kernel_manager.list_kernel_ids())


class KernelHandler(CarbonMagicHandler):
    """``GET carbon-magic/api/v1/kernels/{kernel_id}``."""

    @web.authenticated
    @authorized
    async def get(self, kernel_id: str) -> None:
        kernel_id = self.served_kernel_id(kernel_id)
        try:
            figures = await self.read_ledger(self.state.reader.kernel, kernel_id)
        except LedgerUnavailable:
            figures = None
        if figures is None:
            raise web.HTTPError(
                404,
                f"kernel {kernel_id} has no carbon_magic tracker; run %load_ext carbon_magic in it",
            )
        paths = await self.notebook_paths()
        budgets = await self._budgets(figures.session.session_uuid, figures.session.notebook_path)
        self.finish_record(
            views.kernel_json(
                kernel_id, figures, time.time(), self.state.stale_after, paths, budgets
            )
        )

    async def _budgets(
        self, session_uuid: str, notebook_path: str | None
    ) -> list[records.ScopeBudget]:
        """The kernel's notebook and day caps (the notebook as the kernel's session row
        names it, as its cells are counted); a fault reading them loses only them."""
        state = self.state
        if state.budgets is None:
            state.budgets = KernelBudgets(state.reader.path)
        try:
            states = await self.read_ledger(state.budgets.states_json, session_uuid, notebook_path)
            return [from_json(records.ScopeBudget, budget) for budget in states]
        except Exception as error:
            self.log.debug("carbon_magic: no budgets: %s", error)
            return []


class InvalidKernelHandler(CarbonMagicHandler):
    """Anything under ``kernels/`` that is not a kernel id: 400."""

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        raise web.HTTPError(400, "invalid kernel id: expected a UUID")


class SummaryHandler(CarbonMagicHandler):
    """``GET carbon-magic/api/v1/summary[?day_start=EPOCH_S]``.

    ``day_start`` (seconds since the epoch) is where "today" begins: the client's local
    midnight; without it, midnight UTC.
    """

    @web.authenticated
    @authorized
    async def get(self) -> None:
        now = time.time()
        day_start = self._day_start(now)
        config = self.state.config
        server_ids = self.server_kernel_ids()
        snapshot: LedgerSnapshot | None
        kernels: list[KernelSummary]
        try:
            snapshot = await self.read_ledger(self.state.reader.snapshot, now, day_start)
        except LedgerUnavailable:
            document = views.empty_summary_json(
                now, day_start, config.ledger, self.scope(), sorted(server_ids or [])
            )
        else:
            kernels, untracked = views.select_kernels(snapshot, server_ids, self.state.stale_after)
            document = views.summary_json(
                snapshot,
                kernels,
                untracked,
                self.state.stale_after,
                config.ledger,
                self.scope(),
                await self.notebook_paths(),
            )
        self.finish_record(document)

    def _day_start(self, now: float) -> float:
        raw = self.get_query_argument("day_start", None)
        if raw is None or raw == "":
            return views.utc_day_start(now)
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or value > now + DAY_S:
            raise web.HTTPError(
                400, "day_start must be seconds since the epoch, not after tomorrow"
            )
        return value


class CellsHandler(CarbonMagicHandler):
    """``GET carbon-magic/api/v1/kernels/{kernel_id}/cells`` and
    ``GET carbon-magic/api/v1/cells?path=NOTEBOOK``: recorded cells, oldest first.

    Query: ``since`` (seconds since the epoch: cells that ended then or later), ``after``
    (a row id: the previous page's ``last_id``), ``limit`` (1 to 1000, default 100).
    A kernel or notebook with nothing recorded, or no ledger yet, answers an empty page.
    """

    @web.authenticated
    @authorized
    async def get(self, kernel_id: str | None = None) -> None:
        since = self._number("since", None, minimum=0.0)
        after = int(self._number("after", 0, minimum=0, maximum=MAX_ROW_ID) or 0)
        limit = int(
            self._number("limit", CELL_PAGE_DEFAULT, minimum=1, maximum=CELL_PAGE_MAX)
            or CELL_PAGE_DEFAULT
        )
        path = None
        query: dict[str, Any] = {"since": since, "after": after, "limit": limit}
        if kernel_id is None:
            path = self.get_query_argument("path", "").strip().lstrip("/")
            if not path:
                raise web.HTTPError(400, "path: the notebook's path is required")
            paths = await self.notebook_paths()
            ids = [kernel for kernel, where in paths.items() if where == path]
            query.update(notebook_paths=self._path_spellings(path), kernel_ids=ids)
        else:
            kernel_id = self.served_kernel_id(kernel_id)
            query["kernel_id"] = kernel_id
        try:
            page = await self.read_ledger(lambda: self.state.reader.cells(**query))
        except LedgerUnavailable:
            page = CellPage([], more=False)
        self.finish_record(
            views.cells_json(
                page, time.time(), after=after, limit=limit, kernel_id=kernel_id, notebook_path=path
            )
        )

    def _path_spellings(self, path: str) -> list[str]:
        """The ways a kernel may have recorded the notebook ``path`` (an API path): as
        it is, and as Jupyter Server sets ``JPY_SESSION_NAME`` (under the root dir)."""
        spellings = [path]
        root = getattr(self.contents_manager, "root_dir", None)
        if root:
            spellings.append(os.path.join(root, *path.split("/")))
        return spellings

    def _number(
        self, name: str, default: float | None, minimum: float, maximum: float = math.inf
    ) -> float | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not minimum <= value <= maximum:
            bound = "" if math.isinf(maximum) else f" and at most {maximum:g}"
            raise web.HTTPError(400, f"{name} must be a number of at least {minimum:g}{bound}")
        return value


class MetricsHandler(CarbonMagicHandler):
    """``GET carbon-magic/metrics``: Prometheus text exposition."""

    @allow_unauthenticated
    async def get(self) -> None:
        if not self.state.config.metrics_allow_unauthenticated:
            await self._require_reader()
        now = time.time()
        server_ids = self.server_kernel_ids()
        snapshot: LedgerSnapshot | None
        kernels: list[KernelSummary]
        try:
            snapshot = await self.read_ledger(
                self.state.reader.snapshot, now, views.utc_day_start(now)
            )
        except LedgerUnavailable:
            snapshot, kernels = None, []
        except LedgerUnreadable as error:  # scrapers get ledger_up 0, not an error
            self.log.warning("carbon_magic: %s", error.log_message)
            snapshot, kernels = None, []
        else:
            kernels, _ = views.select_kernels(snapshot, server_ids, self.state.stale_after)
        paths = await self.notebook_paths() if kernels else {}
        text = metrics.exposition(snapshot, kernels, self.state.stale_after, paths)
        self.finish(text, set_content_type=metrics.CONTENT_TYPE)

    async def _require_reader(self) -> None:
        user = self.current_user
        if not user:
            raise web.HTTPError(403, "authentication required for metrics")
        allowed = self.authorizer.is_authorized(self, user, "read", self.auth_resource)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        if not allowed:
            raise web.HTTPError(403, f"not authorized to read {self.auth_resource}")


def routes(base_url: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The URL patterns of the extension under ``base_url``."""
    prefix = url_path_join(base_url, "carbon-magic")
    return [
        (
            url_path_join(prefix, rf"api/v1/kernels/(?P<kernel_id>{KERNEL_ID_PATTERN})"),
            KernelHandler,
        ),
        (
            url_path_join(prefix, rf"api/v1/kernels/(?P<kernel_id>{KERNEL_ID_PATTERN})/cells"),
            CellsHandler,
        ),
        (url_path_join(prefix, r"api/v1/kernels/(?P<path>.*)"), InvalidKernelHandler),
        (url_path_join(prefix, "api/v1/cells"), CellsHandler),
        (url_path_join(prefix, "api/v1/summary"), SummaryHandler),
        (url_path_join(prefix, "metrics"), MetricsHandler),
    ]
