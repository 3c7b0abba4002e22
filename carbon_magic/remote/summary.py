"""A cell's remote part: its captured calls with their estimates, and their totals.

``Measurement.remote`` holds :func:`summarise`'s dict; the ledger stores its ``calls``
(one ``cell_remote_calls`` row each) and rebuilds it with the same totals
(:func:`carbon_magic.ledger.remote_calls.summarise_rows`). Units: kWh, grams CO2e,
litres, seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from carbon_magic.engine.measurement import J_PER_KWH
from carbon_magic.ledger.remote_calls import summarise_rows
from carbon_magic.remote.calls import RemoteCall
from carbon_magic.remote.estimate import CallEstimate

__all__ = ["call_record", "summarise"]


def call_record(call: RemoteCall, estimate: CallEstimate) -> dict[str, Any]:
    """One call and its estimate as a flat record (a ``cell_remote_calls`` row less its
    links, ``carbon_magic.ledger.remote_calls.CALL_FIELDS``); the estimate
    fields are None when there is none."""
    energy = estimate.energy_j
    emissions, embodied, water = estimate.emissions_g, estimate.embodied_g, estimate.water_l
    return {
        "sdk": call.sdk,
        "api": call.api,
        "provider": estimate.provider,
        "model": estimate.model or call.model,
        "streamed": bool(call.streamed),
        "status": "abandoned" if call.status == "running" and call.streamed else call.status,
        "error": call.error,
        "output_tokens": call.output_tokens,
        "latency_s": call.latency_s,
        "energy_low_kwh": energy[0] / J_PER_KWH if energy else None,
        "energy_high_kwh": energy[1] / J_PER_KWH if energy else None,
        "emissions_low_g": emissions[0] if emissions else None,
        "emissions_high_g": emissions[1] if emissions else None,
        "embodied_low_g": embodied[0] if embodied else None,
        "embodied_high_g": embodied[1] if embodied else None,
        "water_low_l": water[0] if water else None,
        "water_high_l": water[1] if water else None,
        "method": estimate.method,
        "note": estimate.note,
    }


def summarise(pairs: Iterable[tuple[RemoteCall, CallEstimate]]) -> dict[str, Any] | None:
    """The remote part of a cell from its calls and their estimates."""
    return summarise_rows(call_record(call, estimate) for call, estimate in pairs)
