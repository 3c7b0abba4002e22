"""Prometheus exposition of the ledger's figures, through prometheus_client.

Per kernel (labels ``kernel_id``, ``notebook``; power also ``component``):

- ``carbon_magic_power_watts`` gauge: watts now, only for live kernels (running tracker,
  fresh heartbeat); a kernel whose figures are stale has no power sample.
- ``carbon_magic_energy_kwh_total``, ``carbon_magic_emissions_grams_total``,
  ``carbon_magic_embodied_grams_total`` counters: the recorded cells of all sessions of
  the kernel id, less their Dask cluster part.
- ``carbon_magic_cluster_energy_kwh_total``, ``carbon_magic_cluster_emissions_grams_total``
  counters: the part of the kernel's recorded cells that ran on Dask workers (already
  inside the cells' figures; the kernel's own counters above do not include it).

Every ``*_total`` counter is a sum of recorded cells, which the ledger only appends: a
mode switch or ``%carbon reset`` rewrites the tracker's running totals (the REST API's
``all_time``), never the cells, so the counters never go down. Only the retention
setting (``ledger_keep_days``), removing old cells, lowers them, which Prometheus reads
as a counter reset.
- ``carbon_magic_grid_intensity_grams_per_kwh`` gauge (label ``source``),
  ``carbon_magic_heartbeat_age_seconds`` gauge, ``carbon_magic_tracker_live`` gauge (1/0).

Server (no kernel labels): ``carbon_magic_server_power_watts{component}`` (sum over the
live kernels listed), ``carbon_magic_ledger_energy_kwh_total``,
``carbon_magic_ledger_emissions_grams_total``, ``carbon_magic_ledger_embodied_grams_total``
(every cell the ledger recorded, Dask cluster parts included), ``carbon_magic_ledger_energy_day_kwh{day}`` and
``carbon_magic_ledger_emissions_day_grams{day}`` (what the ledger recorded since midnight
UTC of ``day``, an ISO date; the label moves on at midnight, so each day's last scrape
keeps that day's figure), ``carbon_magic_kernels`` (kernels listed) and
``carbon_magic_ledger_up`` (1 when the ledger could be read).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from carbon_magic.records import Totals
from carbon_magic.server.ledger_records import LedgerSnapshot
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
from carbon_magic.vocabulary import COMPONENTS

CONTENT_TYPE = CONTENT_TYPE_LATEST

KERNEL_LABELS = ["kernel_id", "notebook"]


def utc_date(epoch_s: float) -> str:
    """The UTC calendar date of ``epoch_s`` (seconds since the epoch), ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).date().isoformat()


class LedgerCollector(Collector):
    """The metric families of one read-only ledger snapshot (built per request)."""

    def __init__(
        self,
        snapshot: LedgerSnapshot | None,
        kernels: list[KernelSummary],
        stale_after: StaleAfter,
        paths: Paths | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.kernels = kernels
        self.stale_after = stale_after
        self.paths = paths

    def collect(self) -> Iterator[Metric]:
        """Every family, kernel families first, then the server and ledger totals."""
        yield from self._kernel_families()
        yield from self._ledger_families()

    def _kernel_families(self) -> Iterator[Metric]:
        power = GaugeMetricFamily(
            "carbon_magic_power_watts",
            "Power drawn now by the kernel, watts.",
            labels=[*KERNEL_LABELS, "component"],
        )
        energy = CounterMetricFamily(
            "carbon_magic_energy_kwh",
            "Facility energy of the kernel's recorded cells (all its sessions), kWh.",
            labels=KERNEL_LABELS,
        )
        emissions = CounterMetricFamily(
            "carbon_magic_emissions_grams",
            "Operational emissions of the kernel's recorded cells, grams CO2e.",
            labels=KERNEL_LABELS,
        )
        embodied = CounterMetricFamily(
            "carbon_magic_embodied_grams",
            "Amortised embodied emissions of the kernel's recorded cells, grams CO2e.",
            labels=KERNEL_LABELS,
        )
        cluster_energy = CounterMetricFamily(
            "carbon_magic_cluster_energy_kwh",
            "Facility energy of the kernel's cells spent on cluster workers (Dask, Ray), kWh.",
            labels=KERNEL_LABELS,
        )
        cluster_emissions = CounterMetricFamily(
            "carbon_magic_cluster_emissions_grams",
            "Operational emissions of the kernel's cells on cluster workers (Dask, Ray), g CO2e.",
            labels=KERNEL_LABELS,
        )
        cluster = self.snapshot.cluster if self.snapshot is not None else {}
        intensity = GaugeMetricFamily(
            "carbon_magic_grid_intensity_grams_per_kwh",
            "Grid carbon intensity the kernel uses, gCO2e/kWh.",
            labels=[*KERNEL_LABELS, "source"],
        )
        age = GaugeMetricFamily(
            "carbon_magic_heartbeat_age_seconds",
            "Seconds since the kernel's tracker last wrote a heartbeat.",
            labels=KERNEL_LABELS,
        )
        live = GaugeMetricFamily(
            "carbon_magic_tracker_live",
            "1 when the kernel's tracker runs and its heartbeat is fresh, else 0.",
            labels=KERNEL_LABELS,
        )
        server_power = dict.fromkeys(COMPONENTS, 0.0)
        now = self.snapshot.now if self.snapshot is not None else 0.0
        for summary in self.kernels:
            latest = summary.latest
            labels = [summary.kernel_id, notebook_path(latest, self.paths) or ""]
            state = liveness(latest, now, self.stale_after)
            if state.live:
                watts = power_json(latest)
                for name in COMPONENTS:
                    power.add_metric([*labels, name], getattr(watts, name))
                    server_power[name] += getattr(watts, name)
            cluster_part = cluster.get(summary.kernel_id)
            own = summary.cells.since(cluster_part or Totals())
            energy.add_metric(labels, own.energy_kwh)
            emissions.add_metric(labels, own.emissions_g)
            embodied.add_metric(labels, own.embodied_g)
            if cluster_part is not None:
                cluster_energy.add_metric(labels, cluster_part.energy_kwh)
                cluster_emissions.add_metric(labels, cluster_part.emissions_g)
            grid = intensity_json(latest)
            intensity.add_metric([*labels, grid.source], grid.g_per_kwh)
            age.add_metric(labels, state.age_s)
            live.add_metric(labels, 1.0 if state.live else 0.0)
        yield from (power, energy, emissions, embodied, cluster_energy, cluster_emissions)
        yield from (intensity, age, live)
        by_component = GaugeMetricFamily(
            "carbon_magic_server_power_watts",
            "Power drawn now by the live kernels listed, watts.",
            labels=["component"],
        )
        for name, total_w in server_power.items():
            by_component.add_metric([name], total_w)
        yield by_component

    def _ledger_families(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        today, totals = Totals(), Totals()
        if snapshot is not None:
            today = ledger_totals(snapshot)[0]
            totals = sum((figures.cells for figures in snapshot.sessions), Totals())
        yield CounterMetricFamily(
            "carbon_magic_ledger_energy_kwh",
            "Facility energy of every cell the ledger recorded, kWh.",
            value=totals.energy_kwh,
        )
        yield CounterMetricFamily(
            "carbon_magic_ledger_emissions_grams",
            "Operational emissions of every cell the ledger recorded, grams CO2e.",
            value=totals.emissions_g,
        )
        yield CounterMetricFamily(
            "carbon_magic_ledger_embodied_grams",
            "Amortised embodied emissions of every cell the ledger recorded, grams CO2e.",
            value=totals.embodied_g,
        )
        day_energy = GaugeMetricFamily(
            "carbon_magic_ledger_energy_day_kwh",
            "Facility energy the ledger recorded since midnight UTC of the day, kWh.",
            labels=["day"],
        )
        day_emissions = GaugeMetricFamily(
            "carbon_magic_ledger_emissions_day_grams",
            "Operational emissions the ledger recorded since midnight UTC of the day, grams CO2e.",
            labels=["day"],
        )
        # Without a ledger there is no day to speak of: the families stay empty.
        if snapshot is not None:
            day = utc_date(snapshot.day_start)
            day_energy.add_metric([day], today.energy_kwh)
            day_emissions.add_metric([day], today.emissions_g)
        yield day_energy
        yield day_emissions
        yield GaugeMetricFamily(
            "carbon_magic_kernels", "Kernels listed with a tracker.", value=len(self.kernels)
        )
        yield GaugeMetricFamily(
            "carbon_magic_ledger_up",
            "1 when the ledger could be read, 0 when it does not exist yet or cannot be read.",
            value=0.0 if snapshot is None else 1.0,
        )


def exposition(
    snapshot: LedgerSnapshot | None,
    kernels: list[KernelSummary],
    stale_after: StaleAfter,
    paths: Paths | None = None,
) -> str:
    """The text of ``GET carbon-magic/metrics``; ``snapshot`` is None without a ledger.

    A registry per request: the figures are a snapshot of the ledger, not process state.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(snapshot, kernels, stale_after, paths))
    return generate_latest(registry).decode("utf-8")
