"""The one write the server makes: journals closing kernels left beside the ledger go
into it, so their cells count and the sessions they ended read ended.

A kernel that exits while the ledger is locked keeps its last records in a journal
(:mod:`carbon_magic.ledger.journal`) that the next kernel writes into the ledger; a
server whose kernels have all closed would otherwise never show them.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

from carbon_magic import ledger

__all__ = ["JOURNAL_CHECK_S", "JournalCatchUp"]

JOURNAL_CHECK_S = 2.0  # how often the server looks for journals, seconds

log = logging.getLogger("carbon_magic")


class JournalCatchUp:
    """Writes the journals waiting beside the ledger at ``path`` into it, looking at most
    every ``every_s`` seconds. A read-only or busy ledger is left alone (tried again
    later). Never raises."""

    def __init__(self, path: str | os.PathLike[str], every_s: float = JOURNAL_CHECK_S) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self._checked_at = -math.inf  # time.monotonic() of the last look

    def run(self) -> int:
        """Look now unless the last look is under ``every_s`` old; journals written."""
        now = time.monotonic()
        if now - self._checked_at < self.every_s:
            return 0
        self._checked_at = now
        count = ledger.import_waiting_journals(self.path, _log_problem)
        if count:
            log.info(
                "carbon_magic: wrote %d journal(s) of closed kernels into %s", count, self.path
            )
        return count


def _log_problem(kind: str, message: str) -> None:
    log.warning("carbon_magic: %s", message)
