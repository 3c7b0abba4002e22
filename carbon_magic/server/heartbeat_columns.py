"""The heartbeat columns the server reads, for ledgers of every schema version, and the
decoding of the carbon-aware hint and the next beat's due time they carry.

Columns added after version 1 (``HEARTBEAT_LATER_COLUMNS``: the prediction in version 2,
the hint in version 4, the next heartbeat's due time in version 5, and any nullable
column ``tables.HeartbeatRow`` declares since) are missing from
older files until a kernel migrates them; the queries then read NULL in their place, so
an old ledger reads as one without them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from carbon_magic.ledger import HEARTBEAT_COLUMNS
from carbon_magic.ledger.tables import HEARTBEAT_LATER_COLUMNS

__all__ = [
    "MAX_HINT_CHARS",
    "decode_hint",
    "decode_next_beat",
    "heartbeat_select",
    "missing_later_columns",
]

MAX_HINT_CHARS = 500  # a longer hint text is not one carbon_magic wrote


def heartbeat_select(missing: Collection[str] = ()) -> str:
    """``h.<name> AS h_<name>`` for each heartbeat column, ``NULL AS h_<name>`` for the
    ``missing`` ones."""
    return ", ".join(
        f"NULL AS h_{name}" if name in missing else f"h.{name} AS h_{name}"
        for name in HEARTBEAT_COLUMNS
    )


def missing_later_columns(present: Iterable[str]) -> frozenset[str]:
    """The later heartbeat columns absent from a file whose heartbeats table has the
    columns ``present`` (``PRAGMA table_info`` names)."""
    return frozenset(HEARTBEAT_LATER_COLUMNS) - set(present)


def decode_hint(text: object) -> str | None:
    """A heartbeat's ``hint`` column as the text to show, or None when absent, blank or
    not a plausible hint (not text, or longer than ``MAX_HINT_CHARS``)."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not text or len(text) > MAX_HINT_CHARS:
        return None
    return text


def decode_next_beat(value: object) -> float | None:
    """A heartbeat's ``next_beat_s`` column (seconds) as a float; None when absent (a
    heartbeat from before ledger schema 5), not a number or not positive."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value)
