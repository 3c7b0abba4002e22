"""Read-only connections to the ledger and the one query helper every reader uses.

Readers never block the writers (WAL mode) and never write.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["BUSY_TIMEOUT_S", "connect_readonly", "open_snapshot", "query"]

BUSY_TIMEOUT_S = 5.0  # how long a write waits for another process's transaction


def connect_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A read-only connection (``mode=ro`` URI) with ``sqlite3.Row`` rows and the busy
    timeout. Raises FileNotFoundError when the file does not exist (SQLite would only say
    "unable to open database file").

    A ledger on read-only storage (a read-only mount, an archived file in a folder this
    user cannot write) has no ``-shm`` file and none can be made, so ``mode=ro`` cannot
    read it: it is then opened ``immutable=1``, which needs none. No writer can be at
    work on such a file; what a killed writer left in a ``-wal`` there is not seen."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise FileNotFoundError(f"no ledger at {path}")
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        conn.execute("PRAGMA schema_version").fetchone()  # opens the WAL index (-shm)
    except sqlite3.DatabaseError as error:
        # Other faults (a corrupt file, a lock) show in the caller's first query, as ever.
        if (getattr(error, "sqlite_errorcode", 0) & 0xFF) in _NO_SHM_CODES:
            conn.close()
            conn = sqlite3.connect(f"{path.as_uri()}?immutable=1", uri=True, timeout=BUSY_TIMEOUT_S)
    conn.row_factory = sqlite3.Row
    return conn


def open_snapshot(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A read-only connection (:func:`connect_readonly`) inside a read transaction whose
    snapshot is taken now (SQLite takes it at the transaction's first read): whatever it
    reads later, however long that takes, is the ledger as it is now. Raises as
    :func:`connect_readonly`."""
    connection = connect_readonly(path)
    try:
        connection.execute("BEGIN")
        connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except BaseException:
        connection.close()
        raise
    return connection


# SQLITE_READONLY (_DIRECTORY, _CANTINIT...) and SQLITE_CANTOPEN: the -shm cannot be made.
_NO_SHM_CODES = {8, 14}


def query(
    path_or_conn: str | os.PathLike[str] | sqlite3.Connection, sql: str, params: Iterable[Any]
) -> list[dict[str, Any]]:
    """Rows as dicts, from a connection (left open) or a path (opened read-only, closed).
    A file without the table yet (nothing written so far) gives no rows."""
    own = not isinstance(path_or_conn, sqlite3.Connection)
    conn = (
        path_or_conn
        if isinstance(path_or_conn, sqlite3.Connection)
        else connect_readonly(path_or_conn)
    )
    try:
        cursor = conn.execute(sql, tuple(params))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        if own:
            conn.close()
