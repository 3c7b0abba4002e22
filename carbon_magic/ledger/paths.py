"""Where the ledger is: one answer for the kernel, the server extension and the CLI.

The ``ledger`` setting (``$CARBON_MAGIC_LEDGER``, ``%carbon config ledger=...``, the
server's ``CarbonMagicServer.ledger``) is read the same way everywhere by
:func:`resolve_ledger_path`: empty, ``auto`` or ``none`` mean the default ledger,
``~`` is expanded, and a relative path is taken inside the default ledger's folder
(``jupyter_data_dir()/carbon_magic``), never inside whatever folder a kernel, a server or
a terminal happens to run in. A path naming an existing folder is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "AUTO_WORDS",
    "LEDGER_ENV",
    "default_ledger_folder",
    "default_ledger_path",
    "resolve_ledger_path",
]

LEDGER_ENV = "CARBON_MAGIC_LEDGER"
LEDGER_FILE_NAME = "ledger.sqlite3"
AUTO_WORDS = frozenset({"", "auto", "none"})  # the ledger setting's words for "the default"


def default_ledger_folder() -> Path:
    """``jupyter_data_dir()/carbon_magic``: where the default ledger lives, and what a
    relative ledger path is relative to. The folder need not exist."""
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "carbon_magic"


def resolve_ledger_path(value: str | os.PathLike[str] | None) -> Path:
    """The absolute ledger path a ``ledger`` setting names: None, empty, ``auto`` or
    ``none`` (any case) give ``default_ledger_folder()/ledger.sqlite3``; ``~`` is
    expanded; a relative path is taken inside :func:`default_ledger_folder`.

    Raises ValueError when the path is an existing folder (a ledger is a file)."""
    text = "" if value is None else os.fspath(value).strip()
    if text.lower() in AUTO_WORDS:
        return default_ledger_folder() / LEDGER_FILE_NAME
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = default_ledger_folder() / path
    if path.is_dir():
        raise ValueError(
            f"must be a file path, not the folder {path} (e.g. {path / LEDGER_FILE_NAME}), "
            "or auto for the default ledger"
        )
    return path


def default_ledger_path() -> Path:
    """The ledger ``$CARBON_MAGIC_LEDGER`` names (read as :func:`resolve_ledger_path`
    reads it), else ``jupyter_data_dir()/carbon_magic/ledger.sqlite3``. The file need not
    exist. Raises ValueError naming the variable when it names a folder."""
    try:
        return resolve_ledger_path(os.environ.get(LEDGER_ENV))
    except ValueError as error:
        raise ValueError(f"{LEDGER_ENV}: ledger {error}") from None
