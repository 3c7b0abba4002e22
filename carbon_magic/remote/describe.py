"""A cell's remote part in words, for the panel, the one-line summary, the report and
the model card: always labelled "remote (estimated)" and said to be apart from (or, in
totals that add it, included in) the local figures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from carbon_magic.formatting import format_grams, format_grams_range, format_kwh, format_litres

__all__ = ["REMOTE_LABEL", "describe_remote", "remote_totals", "unestimated_reasons"]

REMOTE_LABEL = "remote (estimated)"


def unestimated_reasons(remote: Mapping[str, Any]) -> str:
    """``"2 without estimate: model unknown to EcoLogits"``, or ``""`` when all have one."""
    notes = sorted(
        {str(c.get("note")) for c in remote.get("calls", []) if c.get("energy_low_kwh") is None}
    )
    count = int(remote.get("unestimated", 0))
    if not count:
        return ""
    return f"{count} without estimate" + (f": {'; '.join(notes)}" if notes else "")


def describe_remote(remote: Mapping[str, Any] | None, apart: bool = True) -> str | None:
    """One line for a cell's (or several cells') remote part, None when there is none.
    ``apart``: say that the local figures do not include it."""
    if not remote or not remote.get("count"):
        return None
    count = int(remote["count"])
    parts = [f"{count} LLM {'call' if count == 1 else 'calls'}"]
    if remote.get("estimated"):
        low, high = remote["emissions_range_g"]
        parts.append(format_kwh(remote["energy_kwh"]))
        parts.append(
            f"{format_grams_range(remote['emissions_g'], low, high)} CO₂e (providers' grids)"
        )
        if remote.get("embodied_g"):
            parts.append(f"+ embodied {format_grams(remote['embodied_g'])}")
        if remote.get("water_l"):
            parts.append(f"water {format_litres(remote['water_l'])}")
    reasons = unestimated_reasons(remote)
    if reasons:
        parts.append(reasons)
    if remote.get("method") and remote.get("estimated"):
        parts.append(str(remote["method"]))
    where = ", not in the local figures" if apart else ""
    return f"{REMOTE_LABEL}{where}: " + " · ".join(parts)


def remote_totals(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The remote parts of several ledger cell rows (their ``remote_*`` columns) added
    up, in the shape :func:`describe_remote` reads, with ``cells``: how many cells made
    calls. None when no row has any."""
    parts = [r for r in rows if r.get("remote_calls")]
    if not parts:
        return None

    def total(name: str) -> float:
        return sum(float(r.get(name) or 0.0) for r in parts)

    count = int(total("remote_calls"))
    unestimated = int(total("remote_unestimated"))
    methods = sorted(
        {str(r["remote_method"]) for r in parts if r.get("remote_emissions_g") is not None}
    )
    return {
        "cells": len(parts),
        "count": count,
        "estimated": count - unestimated,
        "unestimated": unestimated,
        "energy_kwh": total("remote_energy_kwh"),
        "energy_range_kwh": [total("remote_energy_low_kwh"), total("remote_energy_high_kwh")],
        "emissions_g": total("remote_emissions_g"),
        "emissions_range_g": [total("remote_emissions_low_g"), total("remote_emissions_high_g")],
        "embodied_g": total("remote_embodied_g"),
        "water_l": total("remote_water_l"),
        "method": "; ".join(methods),
    }


def add_remote_totals(
    first: dict[str, Any] | None, second: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Two :func:`remote_totals` (of different cells) added up; None when both are."""
    if first is None or second is None:
        return first if second is None else second
    total: dict[str, Any] = {}
    for name, value in first.items():
        other = second.get(name)
        if name == "method":
            methods = {m for text in (value, other) for m in str(text or "").split("; ") if m}
            total[name] = "; ".join(sorted(methods))
        elif isinstance(value, list):
            total[name] = [a + b for a, b in zip(value, other or [0.0] * len(value), strict=True)]
        else:
            total[name] = value + (other or 0)
    return total
