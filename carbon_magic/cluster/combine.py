"""Pure functions: worker replies at a cell's two edges → the cell's cluster figures.

Nothing is counted twice. A worker whose energy the kernel already counts (its own host
in machine mode; its own process or a descendant in process mode) adds nothing. Other
workers add the difference of their cumulative counters between the edges: in process
mode every worker process; in machine mode one worker per host (any that answered at
both edges: they all read the same machine counters over the same window).

Units: joules (IT, before PUE), kWh (facility, after PUE), grams CO2e.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from carbon_magic.cluster.identity import ProcessIdentity, covered_by
from carbon_magic.engine import accounting
from carbon_magic.engine.measurement import Measurement
from carbon_magic.grid.base import Intensity
from carbon_magic.vocabulary import COMPONENTS

Replies = Mapping[str, Any]  # worker address -> reply dict (or None)


def _usable(reply: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(reply, dict) and "error" not in reply and "identity" in reply


def _counted_pair(before: Any, after: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Both replies usable and counted, from the same worker tracker (its token)."""
    if (
        _usable(before)
        and _usable(after)
        and before.get("counted")
        and after.get("counted")
        and before.get("token") == after.get("token")
    ):
        return before, after
    return None


def _present(reply: Any) -> bool:
    """Answered, or not asked because the kernel counts it (``skipped``)."""
    return _usable(reply) or (isinstance(reply, dict) and bool(reply.get("skipped")))


def _identity(reply: Any) -> ProcessIdentity | None:
    if isinstance(reply, dict) and "identity" in reply:
        try:
            return ProcessIdentity.from_dict(reply["identity"])
        except (KeyError, TypeError, ValueError):
            return None
    return None


def unmeasurable(replies: Replies) -> dict[str, str]:
    """Workers that cannot be measured at all (carbon_magic missing or broken there):
    ``{address: why}``."""
    return {
        address: str(reply.get("error"))
        for address, reply in replies.items()
        if isinstance(reply, dict) and reply.get("unmeasurable")
    }


def cluster_figures(
    start: Replies,
    end: Replies,
    kernel: ProcessIdentity,
    mode: str,
    known: Mapping[str, ProcessIdentity] | None = None,
) -> dict[str, Any]:
    """The cluster part of one cell, as ``Measurement.cluster`` holds it.

    ``start``/``end``: the replies read at the cell's edges; ``known``: identities of
    workers seen earlier (a worker silent now is still recognised as the kernel's own).
    Returns ``{"hosts": {host_id: {"name", "workers", "in_kernel", "energy_j": {cpu, gpu,
    ram}, "embodied_g", "methods"}}, "missing_workers": n}``: ``workers`` counts the
    host's workers seen at both edges, ``in_kernel`` those of them whose energy the
    kernel's own figures already include; ``missing_workers`` counts workers whose
    energy is lost to this cell (no answer at an edge, restarted, or unmeasurable).
    """
    known = known or {}
    hosts: dict[str, dict[str, Any]] = {}
    missing: list[tuple[str | None, str]] = []  # (host id or None, address)

    def host_entry(identity: ProcessIdentity) -> dict[str, Any]:
        return hosts.setdefault(
            identity.host_id,
            {
                "name": identity.host_name,
                "workers": 0,
                "in_kernel": 0,
                "energy_j": dict.fromkeys(COMPONENTS, 0.0),
                "embodied_g": 0.0,
                "methods": {},
                "_measured": False,
            },
        )

    for address in sorted(set(start) | set(end)):
        before, after = start.get(address), end.get(address)
        identity = _identity(after) or _identity(before) or known.get(address)
        if identity is not None and covered_by(identity, kernel, mode):
            if _present(before) and _present(after):
                entry = host_entry(identity)
                entry["workers"] += 1
                entry["in_kernel"] += 1
            continue
        pair = _counted_pair(before, after)
        if pair is None or identity is None:
            missing.append((identity.host_id if identity else None, address))
            continue
        before, after = pair
        entry = host_entry(identity)
        entry["workers"] += 1
        if mode == "machine" and entry["_measured"]:
            continue  # the host's counters are already in, from another of its workers
        entry["_measured"] = True
        for name in COMPONENTS:
            delta = float(after["energy_j"].get(name, 0.0)) - float(
                before["energy_j"].get(name, 0.0)
            )
            entry["energy_j"][name] += max(delta, 0.0)
        entry["embodied_g"] += max(
            float(after.get("embodied_g", 0.0)) - float(before.get("embodied_g", 0.0)), 0.0
        )
        entry["methods"].update(after.get("methods") or {})
    if mode == "machine":
        # A silent worker loses nothing where another worker measured its host.
        missing = [(h, a) for h, a in missing if not (h in hosts and hosts[h]["_measured"])]
    for entry in hosts.values():
        del entry["_measured"]
    return {"hosts": hosts, "missing_workers": len(missing)}


def cluster_energy_j(cluster: Mapping[str, Any]) -> dict[str, float]:
    """IT energy the cluster adds to the cell, per component, joules."""
    total = dict.fromkeys(COMPONENTS, 0.0)
    for entry in cluster.get("hosts", {}).values():
        for name in COMPONENTS:
            total[name] += float(entry["energy_j"].get(name, 0.0))
    return total


def add_cluster(m: Measurement, cluster: dict[str, Any], intensity: Intensity) -> Measurement:
    """Add the cluster part to the cell's figures, in place, and set ``m.cluster``.

    The cluster's IT energy is converted as the kernel's is: the cell's PUE, and the
    cell's (effective) grid intensity with the provider's range. Per host, the energy
    range follows how that host measured (measured/modelled/assumed). Also sets
    ``cluster["energy_kwh"]`` and ``cluster["emissions_g"]``: the cluster's share.
    Returns ``m``.
    """
    central = m.intensity_g_per_kwh if m.energy_kwh > 0 else intensity.g_per_kwh
    low_i, high_i = intensity.range_g_per_kwh
    if central < low_i or central > high_i:  # the window's intensity moved: keep it inside
        low_i, high_i = min(low_i, central), max(high_i, central)
    energy_low_j = energy_high_j = facility_total_j = 0.0
    emissions = emissions_low = emissions_high = embodied = 0.0
    for entry in cluster["hosts"].values():
        facility = {
            name: accounting.facility_energy_j(joules, m.pue)
            for name, joules in entry["energy_j"].items()
        }
        methods = entry["methods"]
        low_j, high_j = accounting.energy_range_j(facility, methods)
        energy_low_j += low_j
        energy_high_j += high_j
        facility_total_j += sum(facility.values())
        emissions += sum(accounting.emissions_g(j, central) for j in facility.values())
        low_g, high_g = accounting.emissions_range_g(
            {
                name: (accounting.emissions_g(j, low_i), accounting.emissions_g(j, high_i))
                for name, j in facility.items()
            },
            methods,
        )
        emissions_low += low_g
        emissions_high += high_g
        embodied += float(entry.get("embodied_g", 0.0))
        for name, joules in entry["energy_j"].items():
            m.energy_j[name] = m.energy_j.get(name, 0.0) + joules
            if joules > 0 and name not in m.methods and name in methods:
                m.methods[name] = methods[name]
    cluster_kwh = accounting.joules_to_kwh(facility_total_j)
    m.energy_kwh += cluster_kwh
    m.energy_range_kwh = (
        m.energy_range_kwh[0] + accounting.joules_to_kwh(energy_low_j),
        m.energy_range_kwh[1] + accounting.joules_to_kwh(energy_high_j),
    )
    m.emissions_g += emissions
    m.emissions_range_g = (
        m.emissions_range_g[0] + emissions_low,
        m.emissions_range_g[1] + emissions_high,
    )
    m.embodied_g += embodied
    if m.energy_kwh > 0:
        m.intensity_g_per_kwh = m.emissions_g / m.energy_kwh
    cluster["energy_kwh"] = cluster_kwh
    cluster["emissions_g"] = emissions
    cluster["embodied_g"] = embodied
    m.cluster = cluster
    return m


def describe(cluster: Mapping[str, Any] | None, m: Measurement) -> str | None:
    """One line, kernel and cluster apart: ``kernel 0.3 Wh · cluster 4.1 Wh, 8 workers on
    2 hosts`` (facility energy; Ray clusters count ``nodes``); None without a cluster."""
    if not cluster:
        return None
    from carbon_magic.formatting import format_kwh

    cluster_kwh = float(cluster.get("energy_kwh", 0.0))
    kernel_kwh = max(m.energy_kwh - cluster_kwh, 0.0)
    from carbon_magic.cluster.engine import unit_of

    unit = unit_of(cluster.get("engine"))
    hosts = cluster.get("hosts", {})
    workers = sum(entry["workers"] for entry in hosts.values())
    in_kernel = sum(entry["in_kernel"] for entry in hosts.values())
    text = (
        f"kernel {format_kwh(kernel_kwh)} · cluster {format_kwh(cluster_kwh)}, "
        f"{workers} {unit}{'s' if workers != 1 else ''} on {len(hosts)} "
        f"host{'s' if len(hosts) != 1 else ''}"
    )
    if in_kernel:
        text += f" ({in_kernel} counted with the kernel)"
    missing = int(cluster.get("missing_workers", 0))
    if missing:
        text += f" · {missing} {unit}{'s' if missing != 1 else ''} not measured"
    elif cluster.get("partial"):
        text += " · partial"
    return text
