"""The writer's connection to one ledger file, and what can go wrong with it.

:class:`LedgerFile` opens the file (creating its folder 0700 and the file 0600), checks
the schema version before touching it, switches on WAL and migrates; a corrupt file is
renamed aside (never deleted) and a fresh one started; a file that fails keeps the
writer in memory with a doubling back-off, and each kind of problem is told once, as a
:class:`LedgerWarning`. What one transaction writes is the caller's (:meth:`LedgerFile.
write` takes it); :class:`carbon_magic.ledger.writer.Ledger` hands it the pending store's.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

from carbon_magic.ledger import schema
from carbon_magic.ledger.paths import default_ledger_path
from carbon_magic.ledger.schema import NewerSchemaError, describe_error, error_kind

__all__ = [
    "MAX_BACKOFF_S",
    "RETRY_AFTER_S",
    "LedgerFile",
    "LedgerWarning",
    "create_private",
    "read_only_cause",
]

RETRY_AFTER_S = 5.0  # first back-off after a failed write; doubles up to MAX_BACKOFF_S
MAX_BACKOFF_S = 60.0
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

log = logging.getLogger("carbon_magic")


class LedgerWarning(UserWarning):
    """The ledger file cannot be written (records are kept in memory) or was replaced."""


class LedgerFile:
    """One writer connection to the ledger at ``path`` (None: :func:`default_ledger_path`),
    made absolute now so a notebook's ``%cd`` cannot move it under a running kernel.

    ``busy_timeout_s``: how long the file may stay locked before it counts as locked;
    ``retry_after_s``: the first back-off after a failure (seconds, doubling up to 60 s);
    ``on_connect()``: called whenever a connection opens (the file may be new or
    restored). Not thread-safe by itself: callers of :meth:`open`, :meth:`write` and
    :meth:`close` hold one lock of theirs.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        busy_timeout_s: float,
        retry_after_s: float = RETRY_AFTER_S,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self.path: Path = (default_ledger_path() if path is None else Path(path)).expanduser()
        self.path = self.path.absolute()
        if self.path.is_dir():  # refused before anything is written anywhere
            raise ValueError(f"the ledger must be a file, not the folder {self.path}")
        self._busy_timeout_s = float(busy_timeout_s)
        self._retry_after_s = float(retry_after_s)
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = 0
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._reason: str | None = None  # why we are in memory; None when ok
        self._permanent = False  # newer schema: never write this file
        self._retry_at = 0.0  # time.monotonic() of the next attempt
        self._backoff = self._retry_after_s
        self._locked_since: float | None = None  # first failed attempt on a held lock
        self._warned: set[str] = set()
        self._on_connect = on_connect

    # state --------------------------------------------------------------------------

    @property
    def busy_timeout_s(self) -> float:
        """How long the file may stay locked before it counts as locked, seconds."""
        return self._busy_timeout_s

    @property
    def reason(self) -> str | None:
        """Why records are kept in memory, in words; None while the file is written."""
        return self._reason

    @property
    def permanent(self) -> bool:
        """True when this file is never written (its schema is newer than this code's)."""
        return self._permanent

    @property
    def retry_at(self) -> float:
        """``time.monotonic()`` of the next attempt after a fault, seconds."""
        return self._retry_at

    @property
    def lock_held(self) -> bool:
        """True while another process's lock has kept the last attempts out."""
        return self._locked_since is not None

    @property
    def connection(self) -> sqlite3.Connection | None:
        """The open writer connection of this process (None while none is open)."""
        return self._conn if self._conn_pid == os.getpid() else None

    def usable_connection(self) -> sqlite3.Connection | None:
        """The writer's connection, unless the file is busy or failing (lock held)."""
        if self._reason is not None or not self._connection_current():
            return None
        return self._conn

    # opening and writing ------------------------------------------------------------

    def open(self, busy_timeout_s: float | None = None, *, defer_locked: bool = False) -> bool:
        """Connect and migrate (``busy_timeout_s``: default the busy timeout); a corrupt
        file is moved aside and a fresh one started. True when a usable connection is
        open; otherwise the fault is recorded (see :attr:`reason`). ``defer_locked``: as
        for :meth:`write`. Never raises for the file."""
        return self._open(busy_timeout_s, defer_locked=defer_locked)

    def close(self) -> None:
        """Let SQLite optimise and close the connection (one inherited through fork() is
        left to its parent). A later :meth:`write` reopens the file."""
        if self._conn is not None and self._conn_pid == os.getpid():
            try:
                self._conn.execute("PRAGMA optimize")
                self._conn.close()
            except sqlite3.Error:
                pass
        self._conn = None

    def _open(
        self,
        busy_timeout_s: float | None = None,
        *,
        recovering: bool = False,
        defer_locked: bool = False,
    ) -> bool:
        """Connect and migrate; a corrupt file is moved aside and a fresh one started.
        Returns True when a usable connection is open. Caller holds the lock."""
        try:
            self._connect(busy_timeout_s)
            return True
        except NewerSchemaError as exc:
            self._drop_connection()
            self._permanent = True
            self._fail(
                "newer",
                f"schema version {exc.args[0]} is newer than this carbon_magic understands "
                f"({len(schema.MIGRATIONS)}); the file is left untouched and records stay in memory",
            )
        except (sqlite3.Error, OSError) as exc:
            if error_kind(exc) == "corrupt" and not recovering:
                return self._recover_corrupt(exc, busy_timeout_s)
            if error_kind(exc) == "locked" and self._defer(defer_locked):
                self._drop_connection()
                return False
            self._fault(exc)
        return False

    def _connect(self, busy_timeout_s: float | None) -> None:
        """Open the writer connection: create the directory (0700) and the file (0600),
        check the version before touching the file, then WAL, synchronous=NORMAL, and
        migrations. Raises."""
        self._drop_connection()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot create the directory: {exc.strerror}", str(self.path.parent)
            ) from exc
        create_private(self.path)
        self._check_folder()
        timeout = self._busy_timeout_s if busy_timeout_s is None else busy_timeout_s
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE). The lock
        # makes the connection safe to share between the main and tracker threads.
        conn = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._conn, self._conn_pid = conn, os.getpid()
        stat = os.stat(self.path)
        self._identity = (stat.st_dev, stat.st_ino)
        if self._on_connect is not None:
            self._on_connect()
        version = schema.schema_version(conn)
        if version > len(schema.MIGRATIONS):  # checked before WAL, which writes the header
            raise NewerSchemaError(version)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        schema.migrate(conn)

    def _check_folder(self) -> None:
        """Warn (once) when others may write the ledger's folder: they could replace the
        file or plant journals there (journals not owned by us are never imported)."""
        try:
            mode = os.stat(self.path.parent).st_mode
        except OSError:
            return
        if mode & 0o022:
            self.warn(
                "folder",
                f"its folder {self.path.parent} is writable by other users (mode "
                f"{mode & 0o777:o}); keep the ledger in a private folder (chmod go-w)",
            )

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        # A connection inherited through fork() belongs to the parent: never close it here.
        if conn is not None and self._conn_pid == os.getpid():
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _connection_current(self) -> bool:
        """The open connection is ours and still points at the file at ``self.path``
        (not renamed aside or deleted by someone else meanwhile)."""
        if self._conn is None or self._conn_pid != os.getpid():
            return False
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        return (stat.st_dev, stat.st_ino) == self._identity

    def _recover_corrupt(self, exc: BaseException, busy_timeout_s: float | None) -> bool:
        """Rename the corrupt file (and its -wal/-shm) aside and open a fresh ledger."""
        self._drop_connection()
        try:
            stat = os.stat(self.path)
            # Another kernel may have moved it aside and started afresh already: the file
            # there now is not the one that failed, so leave it alone.
            replaced = (stat.st_dev, stat.st_ino) != self._identity
            if not replaced:
                aside = self._move_aside()
        except FileNotFoundError:
            replaced = True
        except OSError as move_exc:
            self._fault(exc, extra=f"; could not move it aside: {describe_error(move_exc)}")
            return False
        if not replaced:
            self.warn(
                "corrupt",
                f"{describe_error(exc)}; moved it to {aside.name} and started a fresh ledger",
            )
        return self._open(busy_timeout_s, recovering=True)

    def _move_aside(self) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        serial = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{serial}")
            serial += 1
        os.rename(self.path, aside)
        # A stale -wal beside a fresh file could be replayed into it; keep the pair together.
        for suffix in ("-wal", "-shm"):
            companion = Path(f"{self.path}{suffix}")
            if companion.exists():
                os.rename(companion, Path(f"{aside}{suffix}"))
        return aside

    def write(
        self,
        commit: Callable[[sqlite3.Connection], None],
        busy_timeout_s: float | None = None,
        *,
        force: bool = False,
        defer_locked: bool = False,
    ) -> None:
        """Run ``commit(conn)`` (one transaction; raises sqlite3.Error or OSError), or
        stay in memory. Never raises for the file.

        ``busy_timeout_s``: how long to wait for another process's lock this time.
        ``force``: try now whatever the back-off. ``defer_locked``: a held lock is not a
        fault until it has been held for the busy timeout (the background writer keeps
        trying meanwhile). Caller holds the lock."""
        retrying = self._reason is not None
        if retrying:
            if self._permanent or (not force and time.monotonic() < self._retry_at):
                return
        timeout = self._busy_timeout_s if busy_timeout_s is None else busy_timeout_s
        if not self._connection_current():
            if not self._open(timeout, defer_locked=defer_locked):
                return
        conn = self._conn
        assert conn is not None
        try:
            conn.execute(f"PRAGMA busy_timeout = {max(1, int(timeout * 1000))}")
            commit(conn)
        except (sqlite3.Error, OSError) as exc:
            kind = error_kind(exc)
            if kind == "locked" and self._defer(defer_locked):
                return
            if kind != "corrupt":
                self._fault(exc)
                return
            if not self._recover_corrupt(exc, timeout):
                return  # already faulted
            if self._conn is None:
                return  # recovery left no connection: already faulted
            try:
                commit(self._conn)
            except (sqlite3.Error, OSError) as again:
                self._fault(again)
                return
        self._locked_since = None
        self._reason = None
        self._backoff = self._retry_after_s

    def _defer(self, allowed: bool) -> bool:
        """True when a held lock should just be waited out: ``allowed`` and held for
        less than the busy timeout so far."""
        now = time.monotonic()
        if self._locked_since is None:
            self._locked_since = now
        if allowed and now - self._locked_since < self._busy_timeout_s:
            return True
        self._locked_since = None
        return False

    def _fault(self, exc: BaseException, extra: str = "") -> None:
        """Go (or stay) in memory after ``exc``; the next attempt waits for the back-off."""
        self._drop_connection()
        kind = error_kind(exc)
        cause = read_only_cause(self.path) if kind in ("read-only", "unavailable") else None
        self._fail(kind, f"{describe_error(exc)}{f' ({cause})' if cause else ''}{extra}")

    def _fail(self, kind: str, reason: str) -> None:
        self._reason = reason
        self._retry_at = time.monotonic() + self._backoff
        if self._permanent:
            self.warn(kind, reason)
        else:
            self.warn(kind, f"{reason}; keeping records in memory, retrying in {self._backoff:g} s")
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)

    def warn(self, kind: str, message: str) -> None:
        """One LedgerWarning per kind of problem for the life of this file. Never raises,
        even under ``warnings.simplefilter("error")`` (then it is logged instead)."""
        if kind in self._warned:
            return
        self._warned.add(kind)
        text = f"carbon_magic ledger {self.path}: {message}"
        try:
            warnings.warn(text, LedgerWarning, stacklevel=_stacklevel_outside_package())
        except Exception:  # a filter turned warnings into errors: the ledger goes on
            log.warning("%s", text)


def read_only_cause(path: Path) -> str | None:
    """Why this process cannot write the ledger at ``path``, in words, when that is the
    storage's doing: a read-only file system, a folder it cannot write (SQLite creates
    the ``-wal`` and ``-shm`` files beside the ledger), or a read-only file. None when
    none of these holds."""
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"{folder} is on a read-only file system"
    except (OSError, AttributeError):  # no statvfs on Windows
        pass
    if folder.is_dir() and not os.access(folder, os.W_OK):
        return (
            f"this user cannot write its folder {folder}, where SQLite keeps "
            f"{path.name}-wal and {path.name}-shm"
        )
    if path.is_file() and not os.access(path, os.W_OK):
        return "this user cannot write the file"
    return None


def create_private(path: Path) -> None:
    """Create the ledger file 0600 when it does not exist, also when ``path`` is a
    symbolic link to a file not there yet (SQLite would create that with the umask's
    mode). An existing file is left as it is. SQLite gives its -wal and -shm files the
    database file's permissions. Raises OSError when the file cannot be created."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        os.close(os.open(path, flags, 0o600))
    except FileExistsError:
        if os.path.islink(path) and not os.path.exists(path):  # a link to nothing yet
            try:
                os.close(os.open(os.path.realpath(path), flags, 0o600))
            except FileExistsError:
                pass  # created meanwhile by another kernel


def _stacklevel_outside_package() -> int:
    """The warnings stacklevel of the first caller outside this package, so a warning
    points at the code that recorded (the magics, the tracker), not at ledger internals."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and _in_package(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


def _in_package(filename: str) -> bool:
    return os.path.dirname(os.path.abspath(filename)) == _PACKAGE_DIR
