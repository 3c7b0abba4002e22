"""Journal files: records a closing writer could not commit, kept beside the ledger.

When a kernel exits while its ledger is locked or unwritable, the records still pending
are written to ``<ledger name>.pending-<uuid>.json`` in the ledger's folder (0600,
written to a temporary name and renamed, so a reader never sees half a file). The next
writer of that ledger imports every journal inside one of its own transactions and
records the journal's id in the ``meta`` table in the same transaction, so a journal is
imported exactly once even when several kernels start together; the file is deleted
after the commit.

Only a journal this user could have written is imported: a regular file (not a link)
owned by the ledger file's owner, readable by nobody else (0600), whose every key is a
column of the ledger. Anything else is reported and left where it is (it is not ours to
delete): in a folder others can write, someone else's file must never reach the reports.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any

from carbon_magic.ledger.cluster import CLUSTER_KEY, insert_cell
from carbon_magic.ledger.remote_calls import REMOTE_KEY
from carbon_magic.ledger.rows import SessionState, write_session
from carbon_magic.ledger.schema import SCHEMA_VERSION, Transaction, schema_version
from carbon_magic.ledger.tables import (
    CELL_COLUMNS,
    HEARTBEAT_COLUMNS,
    HEARTBEAT_LATER_COLUMNS,
    INSERT_HEARTBEAT,
    SESSION_COLUMNS,
)

__all__ = [
    "FORMAT",
    "Journal",
    "import_journals",
    "import_waiting_journals",
    "journal_key",
    "journal_paths",
    "read_journal",
    "write_journal",
]

FORMAT = 1  # version of the journal document
_INFIX = ".pending-"


@dataclass
class Journal:
    """What a writer could not commit: sessions (``{"row", "opened", "changes"}``), then
    cells and heartbeats as ``[session_uuid, row]`` pairs, in the order recorded."""

    id: str
    written_at: float
    sessions: list[dict[str, Any]] = field(default_factory=list)
    cells: list[list[Any]] = field(default_factory=list)
    heartbeats: list[list[Any]] = field(default_factory=list)


def journal_key(journal_id: str) -> str:
    """The ``meta`` key that marks a journal as imported."""
    return f"journal:{journal_id}"


def journal_paths(ledger_path: Path) -> list[Path]:
    """The journals waiting beside ``ledger_path``, oldest first (by name and time)."""
    try:
        found = list(ledger_path.parent.glob(f"{ledger_path.name}{_INFIX}*.json"))
    except OSError:
        return []

    def written(path: Path) -> tuple[float, str]:
        try:
            return (path.stat().st_mtime, path.name)
        except OSError:
            return (0.0, path.name)

    return sorted(found, key=written)


def write_journal(
    ledger_path: Path,
    sessions: Iterable[Mapping[str, Any]],
    cells: Iterable[tuple[str, Mapping[str, Any]]],
    heartbeats: Iterable[tuple[str, Mapping[str, Any]]],
) -> Path:
    """Write a journal beside ``ledger_path`` and return its path.

    Raises OSError when the folder cannot be written (the caller reports the records
    as lost then)."""
    journal = Journal(
        id=uuid.uuid4().hex,
        written_at=time.time(),
        sessions=[dict(s) for s in sessions],
        cells=[[u, dict(row)] for u, row in cells],
        heartbeats=[[u, dict(row)] for u, row in heartbeats],
    )
    document = {
        "format": FORMAT,
        "id": journal.id,
        "ledger": str(ledger_path),
        "written_at": journal.written_at,
        "sessions": journal.sessions,
        "cells": journal.cells,
        "heartbeats": journal.heartbeats,
    }
    target = ledger_path.with_name(f"{ledger_path.name}{_INFIX}{journal.id}.json")
    temporary = target.with_name(f".{target.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(document, stream, separators=(",", ":"))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return target


def read_journal(path: Path, owner_uid: int | None = None) -> Journal:
    """The journal in ``path``. Raises OSError when it cannot be read (or is gone) and
    ValueError when it is not a journal this code understands, or (with ``owner_uid``)
    not a private regular file of that user: a link, another owner, or a mode that lets
    others read or write it."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, encoding="utf-8") as stream:
        if owner_uid is not None:
            _check_private(path, os.fstat(fd), owner_uid)
        try:
            document = json.load(stream)
        except ValueError as error:
            raise ValueError(f"{path.name} is not a journal: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{path.name} is not a journal of format {FORMAT}")
    try:
        return Journal(
            id=str(document["id"]),
            written_at=float(document["written_at"]),
            sessions=list(document["sessions"]),
            cells=[list(pair) for pair in document["cells"]],
            heartbeats=[list(pair) for pair in document["heartbeats"]],
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path.name} is not a complete journal: {error!r}") from None


def _check_private(path: Path, stat: os.stat_result, owner_uid: int) -> None:
    """ValueError unless ``stat`` is of a regular file of ``owner_uid``, mode 0600 or less."""
    if not S_ISREG(stat.st_mode):
        raise ValueError(f"{path.name} is not a regular file")
    if stat.st_uid != owner_uid:
        raise ValueError(
            f"{path.name} belongs to user {stat.st_uid}, not to the ledger's owner {owner_uid}"
        )
    if stat.st_mode & 0o077:
        raise ValueError(f"{path.name} has mode {stat.st_mode & 0o777:o}; only 600 is imported")


_ALLOWED_KEYS = {
    "session": frozenset(SESSION_COLUMNS),
    "session change": frozenset(SESSION_COLUMNS) - {"session_uuid"},
    "cell": frozenset({*CELL_COLUMNS, CLUSTER_KEY, REMOTE_KEY}),
    "heartbeat": frozenset(HEARTBEAT_COLUMNS),
}


def _check_keys(what: str, row: Any) -> dict[str, Any]:
    """``row`` as a dict whose keys are all columns of ``what``'s table; ValueError
    naming the first that is not (a key never reaches SQL text unchecked)."""
    if not isinstance(row, dict):
        raise ValueError(f"a {what} is not an object")
    unknown = sorted(str(key) for key in row.keys() - _ALLOWED_KEYS[what])
    if unknown:
        raise ValueError(f"a {what} has unknown field {unknown[0]!r}")
    return row


def import_journals(
    conn: sqlite3.Connection, ledger_path: Path, warn: Callable[[str, str], None]
) -> list[Path]:
    """Insert the records of the journals beside ``ledger_path``, each once: its id goes
    into ``meta`` in the caller's transaction on ``conn``. Returns the files done with
    (to delete after the commit). A journal that cannot be read or inserted is left in
    place and reported through ``warn(kind, message)``. Raises sqlite3.OperationalError
    (locked, I/O) for the caller's transaction to roll back."""
    done: list[Path] = []
    try:
        owner = os.stat(ledger_path).st_uid
    except OSError:
        owner = os.geteuid()
    for path in journal_paths(ledger_path):
        try:
            journal = read_journal(path, owner)
        except FileNotFoundError:
            continue  # another writer imported and removed it meanwhile
        except (OSError, ValueError) as exc:
            warn("journal", f"cannot import {path.name}: {exc}; it is left there")
            continue
        key = journal_key(journal.id)
        if conn.execute("SELECT 1 FROM meta WHERE key = ?", (key,)).fetchone() is None:
            conn.execute("SAVEPOINT journal")
            try:
                _insert(conn, journal)
            except (KeyError, TypeError, ValueError, sqlite3.IntegrityError) as exc:
                conn.execute("ROLLBACK TO journal")
                conn.execute("RELEASE journal")
                warn("journal", f"cannot import {path.name}: {exc!r}; it is left there")
                continue
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, str(time.time())))
            conn.execute("RELEASE journal")
        done.append(path)
    return done


def import_waiting_journals(
    ledger_path: Path, warn: Callable[[str, str], None], busy_timeout_s: float = 1.0
) -> int:
    """Write the journals waiting beside the ledger at ``ledger_path`` into it now, as
    the next kernel would (so readers see those records, and the sessions they end
    read ended), in one transaction of a connection of its own; returns how many
    journals were done with. Nothing happens (0) without journals or ledger, when the
    ledger's schema is not this code's (a kernel migrates it first), or when it cannot
    be written now (read-only, or locked for ``busy_timeout_s`` seconds): the next
    writer imports them then. ``warn(kind, message)`` hears of journals left alone.
    Never raises."""
    if not journal_paths(ledger_path) or not ledger_path.is_file():
        return 0
    try:
        conn = sqlite3.connect(ledger_path, timeout=busy_timeout_s, isolation_level=None)
    except sqlite3.Error:
        return 0
    try:
        if schema_version(conn) != SCHEMA_VERSION:
            return 0
        with Transaction(conn):
            done = import_journals(conn, ledger_path, warn)
    except (sqlite3.Error, OSError):
        return 0
    finally:
        conn.close()
    for path in done:
        try:
            path.unlink()
        except OSError:
            pass  # its id is in meta: a later writer removes it
    return len(done)


def _insert(conn: sqlite3.Connection, journal: Journal) -> None:
    """The sessions, cells and heartbeats of ``journal``, in their order."""
    ids: dict[str, int] = {}
    kernels: dict[str, Any] = {}
    for entry in journal.sessions:
        session = SessionState(
            row=dict(_check_keys("session", entry["row"])),
            opened=bool(entry["opened"]),
            changes=dict(_check_keys("session change", entry["changes"])),
        )
        uuid_ = session.row["session_uuid"]
        ids[uuid_] = write_session(conn, session)
        kernels[uuid_] = session.row["kernel_id"]
    for uuid_, row in journal.cells:
        row = _check_keys("cell", row)
        insert_cell(conn, {**row, "session_id": ids[uuid_], "kernel_id": kernels[uuid_]})
    # A journal written before a later column was added has no value for it: NULL.
    later = dict.fromkeys(HEARTBEAT_LATER_COLUMNS)
    for uuid_, row in journal.heartbeats:
        row = _check_keys("heartbeat", row)
        conn.execute(
            INSERT_HEARTBEAT,
            {**later, **row, "session_id": ids[uuid_], "kernel_id": kernels[uuid_]},
        )
