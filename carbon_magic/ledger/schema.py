"""The ledger's schema, migrations, write transactions and SQLite error kinds.

Migration N (1-based) brings a file from version N-1 to N, inside the transaction that
also records the new version, so a failure leaves the file as it was. To change the
schema, append one function to MIGRATIONS; never edit an existing entry. A new nullable
heartbeat column needs none: declared in ``tables.HeartbeatRow`` with a default of None,
it is added to files that lack it by :func:`migrate`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

from carbon_magic.ledger.tables import HeartbeatRow, later_columns

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Migration",
    "NewerSchemaError",
    "Transaction",
    "describe_error",
    "error_kind",
    "migrate",
    "schema_version",
]


class NewerSchemaError(Exception):
    """The file was written by a newer carbon_magic; this code must not touch it."""


Migration = Callable[[sqlite3.Connection], None]


def _statements(script: str) -> Iterable[str]:
    """Split an SQL script into complete statements (comments and all)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    leftover = [
        line for line in pending.splitlines() if line.strip() and not line.strip().startswith("--")
    ]
    if leftover:
        raise ValueError(f"incomplete SQL statement: {leftover[0][:80]}")


def _migration_1_create(conn: sqlite3.Connection) -> None:
    """Version 1: the tables of ``schema.sql`` (which stays the v1 script forever)."""
    script = (
        resources.files("carbon_magic.ledger").joinpath("schema.sql").read_text(encoding="utf-8")
    )
    # One statement at a time: executescript() would commit the migration's transaction.
    for statement in _statements(script):
        conn.execute(statement)


def _migration_2_heartbeat_prediction(conn: sqlite3.Connection) -> None:
    """Version 2: heartbeats carry the running cell's predicted total at completion as
    JSON (``{"fraction", "emissions_g", "emissions_range_g", "eta_s"}``), NULL when none."""
    conn.execute("ALTER TABLE heartbeats ADD COLUMN prediction_json TEXT")


def _migration_3_cluster(conn: sqlite3.Connection) -> None:
    """Version 3: the Dask cluster part of a cell (already included in its ``cells``
    figures): one ``cell_clusters`` row per such cell and one ``cell_hosts`` row per host
    its workers ran on. Joules are IT energy before PUE; kWh facility; grams CO2e."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS cell_clusters (
            cell_ref        INTEGER PRIMARY KEY REFERENCES cells (id),
            missing_workers INTEGER NOT NULL,  -- workers whose energy this cell lacks
            energy_kwh      REAL NOT NULL,     -- the cluster's share of cells.energy_kwh
            emissions_g     REAL NOT NULL,     -- its share of cells.emissions_g
            embodied_g      REAL NOT NULL      -- its share of cells.embodied_g
        )"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS cell_hosts (
            cell_ref     INTEGER NOT NULL REFERENCES cells (id),
            host_id      TEXT NOT NULL,     -- machine identity (boot id or machine id hash)
            name         TEXT NOT NULL,     -- host name, for people
            workers      INTEGER NOT NULL,  -- workers seen at both cell edges
            in_kernel    INTEGER NOT NULL,  -- of them, those the kernel's figures include
            cpu_j        REAL NOT NULL,
            gpu_j        REAL NOT NULL,
            ram_j        REAL NOT NULL,
            embodied_g   REAL NOT NULL,
            methods_json TEXT NOT NULL,
            PRIMARY KEY (cell_ref, host_id)
        )"""
    )


def _migration_4_heartbeat_hint(conn: sqlite3.Connection) -> None:
    """Version 4: heartbeats carry the carbon-aware hint of the grid forecast in use
    (``Hint.text``, e.g. "grid now 320 g/kWh; lowest ... at 14:00 (-62 %)"), NULL when
    the intensity provider has no forecast. Older rows read NULL."""
    names = {row[1] for row in conn.execute("PRAGMA table_info(heartbeats)")}
    if "hint" not in names:  # a file rebuilt by hand may have it already
        conn.execute("ALTER TABLE heartbeats ADD COLUMN hint TEXT")


def _migration_5_heartbeat_next_beat(conn: sqlite3.Connection) -> None:
    """Version 5: each heartbeat says how long its tracker may take to write the next one
    (``next_beat_s``, seconds), so the server judges staleness by the tracker's own
    cadence: a few seconds while a cell runs, the idle tick while none does. Older rows
    read NULL (the server then assumes its ``heartbeat_period_s``)."""
    names = {row[1] for row in conn.execute("PRAGMA table_info(heartbeats)")}
    if "next_beat_s" not in names:
        conn.execute("ALTER TABLE heartbeats ADD COLUMN next_beat_s REAL")


def _migration_6_remote_calls(conn: sqlite3.Connection) -> None:
    """Version 6: the calls a cell made to hosted model APIs (LLM providers), one row each,
    with their EcoLogits estimate (NULL where there is none). Not part of the cell's own
    figures. kWh facility energy as EcoLogits counts it, grams CO2e, litres, seconds."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS cell_remote_calls (
            cell_ref         INTEGER NOT NULL REFERENCES cells (id),
            seq              INTEGER NOT NULL,  -- order of the call within the cell
            sdk              TEXT NOT NULL,     -- openai | anthropic | mistralai | ...
            api              TEXT NOT NULL,     -- e.g. chat.completions, messages
            provider         TEXT,              -- EcoLogits' provider; NULL if unmatched
            model            TEXT,
            streamed         INTEGER NOT NULL,
            status           TEXT NOT NULL,     -- ok | error | abandoned | running
            error            TEXT,              -- the exception's type, for errors
            output_tokens    INTEGER,
            latency_s        REAL,
            energy_low_kwh   REAL,
            energy_high_kwh  REAL,
            emissions_low_g  REAL,              -- usage phase, the provider's grid
            emissions_high_g REAL,
            embodied_low_g   REAL,
            embodied_high_g  REAL,
            water_low_l      REAL,
            water_high_l     REAL,
            method           TEXT,              -- e.g. estimated (EcoLogits 0.11)
            note             TEXT,              -- why there is no estimate
            PRIMARY KEY (cell_ref, seq)
        )"""
    )


def _migration_7_cluster_engine(conn: sqlite3.Connection) -> None:
    """Version 7: a cell's cluster part names its engine (``dask``, ``ray``) and, when
    some of it could not be measured, why (``partial``: trackers missing at an edge, a
    connection closed during the cell). Older rows read NULL: Dask, complete or not."""
    names = {row[1] for row in conn.execute("PRAGMA table_info(cell_clusters)")}
    for column in ("engine", "partial"):
        if column not in names:
            conn.execute(f"ALTER TABLE cell_clusters ADD COLUMN {column} TEXT")


# Migration N (1-based) brings a file from version N-1 to N, inside the transaction that
# also records the new version, so a failure leaves the file as it was. To change the
# schema, append one function here; never edit an existing entry.
MIGRATIONS: list[Migration] = [
    _migration_1_create,
    _migration_2_heartbeat_prediction,
    _migration_3_cluster,
    _migration_4_heartbeat_hint,
    _migration_5_heartbeat_next_beat,
    _migration_6_remote_calls,
    _migration_7_cluster_engine,
]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The file's schema version; 0 for an empty or pre-versioning file."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


# The later heartbeat columns numbered migrations add (versions 2, 4 and 5); any other
# that tables.HeartbeatRow declares is added by migrate() itself, after the migrations.
_MIGRATED_HEARTBEAT_COLUMNS = frozenset({"prediction_json", "hint", "next_beat_s"})


def _missing_later_columns(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """The later heartbeat columns ``tables.HeartbeatRow`` declares (nullable, default
    None), other than those numbered migrations add, that the file's heartbeats table
    lacks, as ``(name, SQL type)``."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(heartbeats)")}
    return [
        (name, sql_type)
        for name, sql_type in later_columns(HeartbeatRow)
        if name not in present and name not in _MIGRATED_HEARTBEAT_COLUMNS
    ]


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the missing migrations, and add the later heartbeat columns the file lacks
    (a new nullable column needs no migration of its own); raises NewerSchemaError for
    a newer file."""
    known = len(MIGRATIONS)
    version = schema_version(conn)
    if version > known:
        raise NewerSchemaError(version)
    if version == known and not _missing_later_columns(conn):
        return
    with Transaction(conn):
        version = schema_version(conn)  # again, under the write lock: another kernel may
        if version > known:  # have migrated meanwhile
            raise NewerSchemaError(version)
        for migration in MIGRATIONS[version:]:
            migration(conn)
        for name, sql_type in _missing_later_columns(conn):
            conn.execute(f"ALTER TABLE heartbeats ADD COLUMN {name} {sql_type}")
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(known),)
        )


class Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection.

    IMMEDIATE takes the write lock up front, so the busy timeout applies and a transaction
    never fails half-way on a lock. SQLite answers some contention (WAL recovery, a
    concurrent journal-mode switch) with an immediate SQLITE_BUSY that skips the busy
    handler, so a BEGIN that fails fast is retried a few times.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        for attempt in range(4):
            started = time.monotonic()
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return self.conn
            except sqlite3.OperationalError as exc:
                waited = time.monotonic() - started
                timeout_s = self.conn.execute("PRAGMA busy_timeout").fetchone()[0] / 1000
                # A BEGIN that used up the busy timeout met a real lock holder: give up.
                if error_kind(exc) != "locked" or attempt == 3 or waited >= timeout_s / 2:
                    raise
                time.sleep(0.02 * (attempt + 1))
        raise AssertionError("unreachable")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original error is the one worth reporting


_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_LOCKED_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_READONLY_CODES = {8}  # SQLITE_READONLY


def error_kind(exc: BaseException) -> str:
    """corrupt | locked | read-only | unavailable: what went wrong with the file."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    # An OSError's text names the file: a folder called "blocked" is not a lock.
    text = str(exc.strerror if isinstance(exc, OSError) else exc).lower()
    if primary in _CORRUPT_CODES or "not a database" in text or "malformed" in text:
        return "corrupt"
    if primary in _LOCKED_CODES or "locked" in text:
        return "locked"
    if primary in _READONLY_CODES or "readonly" in text or "read-only" in text:
        return "read-only"
    return "unavailable"


def describe_error(exc: BaseException) -> str:
    """A short text for ``exc``: an OSError's reason and file, else the message."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__
