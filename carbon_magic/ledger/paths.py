"""Where the ledger is: one answer for the kernel, the server extension and the CLI."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["LEDGER_ENV", "default_ledger_path"]

LEDGER_ENV = "CARBON_MAGIC_LEDGER"


def default_ledger_path() -> Path:
    """``$CARBON_MAGIC_LEDGER`` when set (``~`` expanded), else
    ``jupyter_data_dir()/carbon_magic/ledger.sqlite3``. The file need not exist."""
    configured = os.environ.get(LEDGER_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "carbon_magic" / "ledger.sqlite3"
