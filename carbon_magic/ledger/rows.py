"""Rows of the ledger: the conversions between a
:class:`~carbon_magic.engine.measurement.Measurement` (or the tracker's state) and the row
dataclasses of :mod:`carbon_magic.ledger.tables`, and the session row's upkeep.

Units: times are UTC seconds since the epoch, energy in joules per component and kWh
(facility, after PUE) in total, emissions in grams CO2e, intensity in gCO2e/kWh.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from carbon_magic.engine.measurement import Measurement
from carbon_magic.ledger.tables import (
    INSERT_SESSION,
    SESSION_COLUMNS,
    CellRow,
    HeartbeatRow,
    SessionRow,
)
from carbon_magic.redact import redact_secrets

__all__ = [
    "SOURCE_MAX_CHARS",
    "SessionState",
    "cell_row",
    "compact_json",
    "epoch_s",
    "first_line",
    "heartbeat_row",
    "measurement_from_row",
    "placeholder_session",
    "session_fields",
    "session_row",
    "utc_datetime",
    "without_secrets",
    "write_session",
]

SOURCE_MAX_CHARS = 200
_SECRET_MARKERS = ("token", "secret", "password", "api_key")


def compact_json(value: Any) -> str:
    """Compact, stable JSON; numbers from numpy and the like become floats."""

    def fallback(obj: Any) -> Any:
        try:
            return float(obj)
        except (TypeError, ValueError):
            return str(obj)

    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=fallback)


def epoch_s(value: datetime | float | None) -> float | None:
    """UTC seconds since the epoch; a naive datetime is taken to be UTC."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else float(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def utc_datetime(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


def first_line(source: str | None) -> str | None:
    """The first non-blank line of ``source``, clipped to SOURCE_MAX_CHARS."""
    if source is None:
        return None
    for line in source.splitlines():
        if line.strip():
            line = line.rstrip()
            if len(line) > SOURCE_MAX_CHARS:
                line = line[: SOURCE_MAX_CHARS - 1] + "…"
            return line
    return ""


def cell_row(m: Measurement, *, via: str, budget: str | None) -> dict[str, Any]:
    """The ``cells`` columns (except ``id``, ``session_id``, ``kernel_id``) for ``m``.

    ``via`` is how the cell was measured (auto | magic | api); ``budget`` the budget text
    (e.g. ``"5g"``) or None. Datetimes become UTC epoch seconds (a naive one is taken as
    UTC; a missing start is ``ended_at - duration_s``, a missing end is now). ``name`` is
    NULL when empty and ``source`` keeps only its first non-blank line, with the values of
    secret settings redacted (:func:`carbon_magic.redact.redact_secrets`).
    Raises TypeError/ValueError for values that are not numbers where numbers belong.
    """
    ended = epoch_s(m.ended_at)
    started = epoch_s(m.started_at)
    if ended is None:
        ended = time.time() if started is None else started + float(m.duration_s)
    if started is None:
        started = ended - float(m.duration_s)
    energy_low, energy_high = m.energy_range_kwh
    emissions_low, emissions_high = m.emissions_range_g
    return CellRow(
        cell_id=m.cell_id,
        execution_count=None if m.execution_count is None else int(m.execution_count),
        name=m.name or None,
        source=first_line(redact_secrets(m.source) if m.source else m.source),
        via=str(via),
        status=str(m.status or "ok"),
        started_at=started,
        ended_at=ended,
        duration_s=float(m.duration_s),
        cpu_j=float(m.energy_j.get("cpu", 0.0)),
        gpu_j=float(m.energy_j.get("gpu", 0.0)),
        ram_j=float(m.energy_j.get("ram", 0.0)),
        energy_kwh=float(m.energy_kwh),
        energy_low_kwh=float(energy_low),
        energy_high_kwh=float(energy_high),
        emissions_g=float(m.emissions_g),
        emissions_low_g=float(emissions_low),
        emissions_high_g=float(emissions_high),
        embodied_g=float(m.embodied_g),
        intensity_g_per_kwh=float(m.intensity_g_per_kwh),
        intensity_source=str(m.intensity_source or ""),
        pue=float(m.pue),
        mode=str(m.mode),
        methods_json=compact_json(m.methods),
        devices_json=compact_json(m.devices),
        budget=budget,
    ).params()


def measurement_from_row(row: Mapping[str, Any]) -> Measurement:
    """The Measurement stored in a ``cells`` row (a dict from :func:`read_cells` or a
    ``sqlite3.Row``): energies, ranges, methods, devices, times (aware UTC datetimes),
    ``execution_count``, ``cell_id``, ``status``, ``source``. ``via`` and ``budget`` are
    ledger-only and stay in the row."""
    return Measurement(
        name=row["name"] or "",
        duration_s=row["duration_s"],
        energy_j={"cpu": row["cpu_j"], "gpu": row["gpu_j"], "ram": row["ram_j"]},
        energy_kwh=row["energy_kwh"],
        energy_range_kwh=(row["energy_low_kwh"], row["energy_high_kwh"]),
        emissions_g=row["emissions_g"],
        emissions_range_g=(row["emissions_low_g"], row["emissions_high_g"]),
        embodied_g=row["embodied_g"],
        intensity_g_per_kwh=row["intensity_g_per_kwh"],
        intensity_source=row["intensity_source"],
        pue=row["pue"],
        methods=json.loads(row["methods_json"] or "{}"),
        devices=json.loads(row["devices_json"] or "{}"),
        mode=row["mode"],
        started_at=utc_datetime(row["started_at"]),
        ended_at=utc_datetime(row["ended_at"]),
        execution_count=row["execution_count"],
        cell_id=row["cell_id"],
        status=row["status"],
        source=row["source"],
    )


def without_secrets(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings minus anything that looks like a credential (the ledger is plain text)."""
    return {
        key: value
        for key, value in settings.items()
        if not any(marker in key.lower() for marker in _SECRET_MARKERS)
    }


# Friendly names accepted by update_session(), beside the column names themselves.
_JSON_FIELDS = {"hardware": "hardware_json", "methods": "methods_json", "settings": "settings_json"}
_FIELD_ALIASES = {"intensity": "intensity_g_per_kwh"}


def session_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """update_session() keywords → column values; ValueError for an unknown name."""
    columns: dict[str, Any] = {}
    for name, value in fields.items():
        if name in _JSON_FIELDS:
            if name == "settings":
                value = without_secrets(value)
            columns[_JSON_FIELDS[name]] = compact_json(value)
        elif name in _FIELD_ALIASES:
            columns[_FIELD_ALIASES[name]] = float(value)
        elif name in SESSION_COLUMNS and name != "session_uuid":
            columns[name] = epoch_s(value) if name in ("started_at", "ended_at") else value
        else:
            valid = sorted({*_JSON_FIELDS, *_FIELD_ALIASES, *SESSION_COLUMNS} - {"session_uuid"})
            raise ValueError(f"unknown session field {name!r}; valid: {', '.join(valid)}")
    return columns


def session_row(
    *,
    session_uuid: str,
    kernel_id: str | None,
    notebook_path: str | None,
    host: str,
    pid: int,
    started_at: datetime | float,
    interval_s: float,
    mode: str,
    hardware: Mapping[str, Any],
    methods: Mapping[str, Any],
    settings: Mapping[str, Any],
    intensity_source: str,
    intensity_g_per_kwh: float,
) -> dict[str, Any]:
    """The ``sessions`` columns of a tracker session that starts now (``started_at`` UTC
    epoch seconds or a datetime, ``interval_s`` seconds, intensity gCO2e/kWh). Settings
    keys that look like credentials are left out."""
    return SessionRow(
        session_uuid=session_uuid,
        kernel_id=kernel_id,
        notebook_path=notebook_path,
        host=host,
        pid=int(pid),
        started_at=epoch_s(started_at) or 0.0,  # never None: started_at is given
        ended_at=None,
        tracker_state="running",
        interval_s=float(interval_s),
        mode=mode,
        hardware_json=compact_json(hardware),
        methods_json=compact_json(methods),
        settings_json=compact_json(without_secrets(settings)),
        intensity_source=intensity_source,
        intensity_g_per_kwh=float(intensity_g_per_kwh),
    ).params()


def heartbeat_row(
    *,
    at: float,
    watts: Mapping[str, float],
    energy_kwh: float,
    emissions_g: float,
    emissions_range_g: tuple[float, float],
    embodied_g: float,
    intensity_g_per_kwh: float,
    intensity_source: str,
    tracker_state: str,
    running_cell: str | None,
    running_cell_started_at: float | None,
    prediction: Mapping[str, Any] | None = None,
    hint: str | None = None,
    next_beat_s: float | None = None,
    **later: Any,
) -> dict[str, Any]:
    """The ``heartbeats`` columns (except the links) for the tracker's state at ``at``
    (UTC epoch seconds): ``watts`` per component, the session's running totals (kWh,
    gCO2e with its range, embodied g), the running cell's first line (secrets redacted)
    and start, its prediction (``Prediction.to_json()``) or None, and the carbon-aware
    hint of the grid forecast (``Hint.text``) or None, and the longest the tracker may
    take to write the next heartbeat (seconds) or None; ``later``: the values of other
    later columns of ``HeartbeatRow`` by name, as they are (absent ones are NULL)."""
    low, high = emissions_range_g
    return HeartbeatRow(
        at=float(at),
        cpu_w=float(watts.get("cpu", 0.0)),
        gpu_w=float(watts.get("gpu", 0.0)),
        ram_w=float(watts.get("ram", 0.0)),
        energy_kwh=float(energy_kwh),
        emissions_g=float(emissions_g),
        emissions_low_g=float(low),
        emissions_high_g=float(high),
        embodied_g=float(embodied_g),
        intensity_g_per_kwh=float(intensity_g_per_kwh),
        intensity_source=intensity_source,
        tracker_state=tracker_state,
        running_cell=first_line(redact_secrets(running_cell) if running_cell else None),
        running_cell_started_at=running_cell_started_at,
        prediction_json=compact_json(prediction) if prediction is not None else None,
        hint=hint or None,
        next_beat_s=float(next_beat_s) if next_beat_s is not None else None,
        **later,
    ).params()


def placeholder_session(session_uuid: str, m: Measurement | None = None) -> dict[str, Any]:
    """A minimal session row for records whose session was never opened in this process."""
    return SessionRow(
        session_uuid=session_uuid,
        kernel_id=None,
        notebook_path=None,
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=(epoch_s(m.started_at) if m else None) or time.time(),
        ended_at=None,
        tracker_state="running",
        interval_s=0.0,
        mode=m.mode if m else "process",
        hardware_json="{}",
        methods_json=compact_json(m.methods) if m else "{}",
        settings_json="{}",
        intensity_source=m.intensity_source if m else "",
        intensity_g_per_kwh=float(m.intensity_g_per_kwh) if m else 0.0,
    ).params()


@dataclass
class SessionState:
    """What this process knows of one session, so it can be (re)written at any time."""

    row: dict[str, Any]
    opened: bool  # True when open_session() gave the whole row (else a placeholder)
    changes: dict[str, Any] = field(default_factory=dict)  # update_session() since last write
    dirty: bool = True


def write_session(conn: sqlite3.Connection, session: SessionState) -> int:
    """Insert ``session``'s row if missing, else update it (a placeholder only with its
    explicit changes); returns its ``sessions.id``. Raises sqlite3.Error."""
    row = session.row
    cursor = conn.execute(INSERT_SESSION, row)
    if cursor.rowcount == 1 and cursor.lastrowid is not None:
        return int(cursor.lastrowid)
    # An existing row: a placeholder must only apply explicit changes, never overwrite
    # the real row another Ledger wrote with made-up values.
    fields = {k: v for k, v in row.items() if k != "session_uuid"}
    if not session.opened:
        fields = session.changes
    if fields:
        assignments = ", ".join(f"{name} = :{name}" for name in fields)
        conn.execute(
            f"UPDATE sessions SET {assignments} WHERE session_uuid = :session_uuid",
            {**fields, "session_uuid": row["session_uuid"]},
        )
    found = conn.execute(
        "SELECT id FROM sessions WHERE session_uuid = ?", (row["session_uuid"],)
    ).fetchone()
    return int(found[0])
