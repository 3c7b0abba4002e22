"""Reading recorded cell rows: JSON columns, labels, tags and numbers.

A row is a mapping with the ``cells`` columns of ``schema.sql`` (joules, kWh, grams,
UTC epoch seconds), plus the session columns and optionally ``hardware_json`` and
``settings_json``. Shared by the report table, the session plot and the exports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

Row = Mapping[str, Any]

LABEL_WIDTH = 40  # characters of a cell's name or first line shown in tables


def json_field(row: Row, name: str) -> dict[str, Any]:
    """A JSON column (``<name>_json``) as a dict, or an already decoded ``<name>``."""
    value = row.get(name)
    if isinstance(value, Mapping):
        return dict(value)
    text = row.get(f"{name}_json")
    if isinstance(text, Mapping):
        return dict(text)
    if not text:
        return {}
    try:
        decoded = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def row_methods(row: Row) -> dict[str, str]:
    """How each component's energy was obtained for this row: ``{"cpu": "measured", ...}``."""
    return {str(k): str(v) for k, v in json_field(row, "methods").items()}


def row_devices(row: Row) -> dict[str, float]:
    """IT energy per device for this row, joules."""
    return {str(k): float(v) for k, v in json_field(row, "devices").items()}


def row_hardware(row: Row) -> dict[str, Any]:
    """The session's hardware summary when the row carries it (else ``{}``)."""
    return json_field(row, "hardware")


def row_settings(row: Row) -> dict[str, Any]:
    """The session's settings when the row carries them (else ``{}``)."""
    return json_field(row, "settings")


def row_label(row: Row, width: int = LABEL_WIDTH) -> str:
    """The cell's ``--name``, else its first source line, shortened to ``width`` characters."""
    text = (row.get("name") or "").strip() or (row.get("source") or "").strip()
    text = text.splitlines()[0] if text else "(no source)"
    return text if len(text) <= width else text[: width - 1] + "…"


def row_tag(row: Row) -> str:
    """``[5]`` for a cell with execution count 5, ``[—]`` for windows without one."""
    count = row.get("execution_count")
    return f"[{count}]" if count is not None else "[—]"


def row_float(row: Row, key: str) -> float:
    """A numeric column as a float, 0.0 when it is NULL."""
    value = row.get(key)
    return float(value) if value is not None else 0.0
