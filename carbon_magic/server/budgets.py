"""The notebook and day caps of a kernel, as the server shows them.

The caps are the kernel's own settings (its session row's ``settings_json``: where
``%carbon config``, traitlets and ``CARBON_MAGIC_BUDGET_*`` put them); what is spent on
them is every session's cells in the ledger, as the kernel counts it. One
``ScopeBudgets`` per kernel keeps its reads of the ledger at most every few seconds.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from carbon_magic.kernel.scope_budgets import ScopeBudgets
from carbon_magic.ledger.sql import query

__all__ = ["KernelBudgets"]

CAP_SETTINGS = ("budget_day", "budget_notebook", "budget_scope_on_exceed")


class KernelBudgets:
    """Caps and spending per kernel, read from the ledger at ``path`` (any thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._by_session: dict[str, ScopeBudgets] = {}

    def states_json(self, session_uuid: str, notebook_path: str | None) -> list[dict[str, Any]]:
        """The kernel's caps (each a ``ScopeState.as_json()``), empty when none is set;
        ``notebook_path`` as the kernel's session row names it."""
        settings = self._cap_settings(session_uuid)
        if not any(settings.get(name) for name in CAP_SETTINGS[:2]):
            return []
        with self._lock:
            caps = self._by_session.get(session_uuid)
            if caps is None or caps.notebook_path != notebook_path:
                caps = ScopeBudgets(settings, lambda: str(self.path), notebook_path, None)
                self._by_session[session_uuid] = caps
            caps.settings = settings
        return [state.as_json() for state in caps.states()]

    def _cap_settings(self, session_uuid: str) -> dict[str, Any]:
        rows = query(
            self.path,
            "SELECT settings_json FROM sessions WHERE session_uuid = ?",
            (session_uuid,),
        )
        try:
            values = json.loads(rows[0]["settings_json"]) if rows else {}
        except (TypeError, ValueError):
            values = {}
        if not isinstance(values, dict):
            return {}
        settings = {name: values.get(name) for name in CAP_SETTINGS}
        if settings["budget_scope_on_exceed"] not in ("warn", "stop"):
            settings["budget_scope_on_exceed"] = "warn"
        return settings
