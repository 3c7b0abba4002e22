"""What the ledger's callers hand to its writer: one small frozen value per kind of record.

:class:`~carbon_magic.ledger.writer.Ledger` queues these as they are recorded (from the
main thread and the tracker thread alike), and :class:`~carbon_magic.ledger.store.
PendingStore` applies them, in order, matched by their type. Rows are as
:mod:`carbon_magic.ledger.rows` builds them; units as in :mod:`carbon_magic.ledger.tables`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carbon_magic.engine.measurement import Measurement

__all__ = [
    "OPERATION_TYPES",
    "OpenSession",
    "Operation",
    "RecordCell",
    "RecordHeartbeat",
    "UpdateSession",
    "not_an_operation",
]


@dataclass(frozen=True)
class OpenSession:
    """A session opened in this process: its whole ``sessions`` row."""

    session_uuid: str
    row: dict[str, Any]


@dataclass(frozen=True)
class UpdateSession:
    """Changed columns of a session (checked by :func:`~carbon_magic.ledger.rows.
    session_fields`)."""

    session_uuid: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class RecordCell:
    """One completed cell: its ``cells`` row and the measurement it came from (which
    names the session's kernel when the session was never opened here)."""

    session_uuid: str
    row: dict[str, Any]
    measurement: Measurement


@dataclass(frozen=True)
class RecordHeartbeat:
    """The tracker's state at one moment: a ``heartbeats`` row."""

    session_uuid: str
    row: dict[str, Any]


Operation = OpenSession | UpdateSession | RecordCell | RecordHeartbeat
OPERATION_TYPES: tuple[type, ...] = (OpenSession, UpdateSession, RecordCell, RecordHeartbeat)


def not_an_operation(value: object) -> TypeError:
    """The error that refuses ``value``, which is none of :data:`OPERATION_TYPES`: it
    names them."""
    names = ", ".join(kind.__name__ for kind in OPERATION_TYPES)
    return TypeError(f"not a ledger operation: {type(value).__name__}; the ledger applies {names}")
