"""Prometheus text exposition (format 0.0.4) of the ledger's figures.

Per kernel (labels ``kernel_id``, ``notebook``; power also ``component``):

- ``carbon_magic_power_watts`` gauge: watts now, only for live kernels (running tracker,
  fresh heartbeat); a kernel whose figures are stale has no power sample.
- ``carbon_magic_energy_kwh_total``, ``carbon_magic_emissions_grams_total``,
  ``carbon_magic_embodied_grams_total`` counters: all sessions of the kernel id.
- ``carbon_magic_cluster_energy_kwh_total``, ``carbon_magic_cluster_emissions_grams_total``
  counters: the part of the kernel's recorded cells that ran on Dask workers (already
  inside the cells' figures; the kernel's own counters above do not include it).
- ``carbon_magic_grid_intensity_grams_per_kwh`` gauge (label ``source``),
  ``carbon_magic_heartbeat_age_seconds`` gauge, ``carbon_magic_tracker_live`` gauge (1/0).

Server (no kernel labels): ``carbon_magic_server_power_watts{component}`` (sum over the
live kernels listed), ``carbon_magic_ledger_energy_kwh_total``,
``carbon_magic_ledger_emissions_grams_total``, ``carbon_magic_ledger_embodied_grams_total``
(everything the ledger recorded), ``carbon_magic_kernels`` (kernels listed) and
``carbon_magic_ledger_up`` (1 when the ledger could be read).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from carbon_magic.server.reader import COMPONENTS, LedgerSnapshot, Totals
from carbon_magic.server.views import (
    KernelSummary,
    Paths,
    StaleAfter,
    intensity_json,
    ledger_totals,
    liveness,
    notebook_path,
    power_json,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        if labels:
            label_text = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
            lines.append(f"{name}{{{label_text}}} {_number(value)}")
        else:
            lines.append(f"{name} {_number(value)}")
    return lines


def exposition(
    snapshot: LedgerSnapshot | None,
    kernels: list[KernelSummary],
    stale_after: StaleAfter,
    paths: Paths | None = None,
) -> str:
    """The text of ``GET carbon-magic/metrics``; ``snapshot`` is None without a ledger."""
    power: list[Sample] = []
    energy: list[Sample] = []
    emissions: list[Sample] = []
    embodied: list[Sample] = []
    intensity: list[Sample] = []
    age: list[Sample] = []
    live: list[Sample] = []
    cluster_energy: list[Sample] = []
    cluster_emissions: list[Sample] = []
    cluster = snapshot.cluster if snapshot is not None else {}
    server_power = dict.fromkeys(COMPONENTS, 0.0)
    now = snapshot.now if snapshot is not None else 0.0
    for summary in kernels:
        latest = summary.latest
        labels = {
            "kernel_id": summary.kernel_id,
            "notebook": notebook_path(latest, paths) or "",
        }
        state = liveness(latest, now, stale_after)
        if state.live:
            watts = power_json(latest)
            for name in COMPONENTS:
                power.append(({**labels, "component": name}, watts[name]))
                server_power[name] += watts[name]
        energy.append((labels, summary.all_time.energy_kwh))
        emissions.append((labels, summary.all_time.emissions_g))
        embodied.append((labels, summary.all_time.embodied_g))
        if summary.kernel_id in cluster:
            cluster_kwh, cluster_g = cluster[summary.kernel_id]
            cluster_energy.append((labels, cluster_kwh))
            cluster_emissions.append((labels, cluster_g))
        grid = intensity_json(latest)
        intensity.append(({**labels, "source": grid["source"]}, grid["g_per_kwh"]))
        age.append((labels, state.age_s))
        live.append((labels, 1.0 if state.live else 0.0))

    lines: list[str] = []
    lines += _family(
        "carbon_magic_power_watts", "gauge", "Power drawn now by the kernel, watts.", power
    )
    lines += _family(
        "carbon_magic_energy_kwh_total",
        "counter",
        "Facility energy of the kernel (all its tracker sessions), kWh.",
        energy,
    )
    lines += _family(
        "carbon_magic_emissions_grams_total",
        "counter",
        "Operational emissions of the kernel (all its tracker sessions), grams CO2e.",
        emissions,
    )
    lines += _family(
        "carbon_magic_embodied_grams_total",
        "counter",
        "Amortised embodied emissions of the kernel's hardware use, grams CO2e.",
        embodied,
    )
    lines += _family(
        "carbon_magic_cluster_energy_kwh_total",
        "counter",
        "Facility energy of the kernel's cells spent on Dask workers, kWh.",
        cluster_energy,
    )
    lines += _family(
        "carbon_magic_cluster_emissions_grams_total",
        "counter",
        "Operational emissions of the kernel's cells on Dask workers, grams CO2e.",
        cluster_emissions,
    )
    lines += _family(
        "carbon_magic_grid_intensity_grams_per_kwh",
        "gauge",
        "Grid carbon intensity the kernel uses, gCO2e/kWh.",
        intensity,
    )
    lines += _family(
        "carbon_magic_heartbeat_age_seconds",
        "gauge",
        "Seconds since the kernel's tracker last wrote a heartbeat.",
        age,
    )
    lines += _family(
        "carbon_magic_tracker_live",
        "gauge",
        "1 when the kernel's tracker runs and its heartbeat is fresh, else 0.",
        live,
    )
    lines += _family(
        "carbon_magic_server_power_watts",
        "gauge",
        "Power drawn now by the live kernels listed, watts.",
        [({"component": name}, watts) for name, watts in server_power.items()],
    )
    totals = ledger_totals(snapshot)[1] if snapshot is not None else Totals()
    lines += _family(
        "carbon_magic_ledger_energy_kwh_total",
        "counter",
        "Facility energy of everything the ledger recorded, kWh.",
        [({}, totals.energy_kwh)],
    )
    lines += _family(
        "carbon_magic_ledger_emissions_grams_total",
        "counter",
        "Operational emissions of everything the ledger recorded, grams CO2e.",
        [({}, totals.emissions_g)],
    )
    lines += _family(
        "carbon_magic_ledger_embodied_grams_total",
        "counter",
        "Amortised embodied emissions of everything the ledger recorded, grams CO2e.",
        [({}, totals.embodied_g)],
    )
    lines += _family(
        "carbon_magic_kernels", "gauge", "Kernels listed with a tracker.", [({}, len(kernels))]
    )
    lines += _family(
        "carbon_magic_ledger_up",
        "gauge",
        "1 when the ledger could be read, 0 when it does not exist yet.",
        [({}, 0.0 if snapshot is None else 1.0)],
    )
    return "\n".join(lines) + "\n"
