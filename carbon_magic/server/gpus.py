"""The GPUs of a session, by device key, from its ledger row's ``hardware_json``.

The tracker's ``hardware()`` maps device keys (``nvidia:0``, ``amd:0``, ``apple:gpu``;
``gpu0`` in ledgers written before vendors were told apart) to product names. The
server sends them as ``{key: {"vendor": ..., "model": ...}}``.
"""

from __future__ import annotations

import json
from typing import Any

from carbon_magic.engine.measurement import device_vendor


def key_vendor(key: str) -> str | None:
    """The vendor a GPU device key names: a known one (``device_vendor``, which reads
    ``gpu0`` as NVIDIA), else the key's ``vendor:`` prefix; None without either."""
    known = device_vendor(key)
    if known is not None:
        return known
    vendor, sep, rest = key.partition(":")
    return vendor.lower() if sep and vendor and rest else None


def session_gpus(hardware_json: str | None) -> dict[str, dict[str, str]]:
    """``{device_key: {"vendor": "nvidia", "model": "NVIDIA H200"}}`` from a session's
    hardware JSON, sorted by key; ``{}`` when it is missing or malformed. Entries whose
    key names no vendor, or whose model is not a non-empty string, are left out."""
    try:
        hardware: Any = json.loads(hardware_json) if hardware_json else {}
    except ValueError:
        return {}
    gpus = hardware.get("gpus") if isinstance(hardware, dict) else None
    if not isinstance(gpus, dict):
        return {}
    result: dict[str, dict[str, str]] = {}
    for key in sorted(gpus):
        model = gpus[key]
        vendor = key_vendor(key)
        if vendor is None or not isinstance(model, str) or not model.strip():
            continue
        result[key] = {"vendor": vendor, "model": model.strip()}
    return result
