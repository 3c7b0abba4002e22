"""The cluster part of a cell in the ledger: per-host rows, and the share in read_cells."""

from __future__ import annotations

import sqlite3

import pytest

from carbon_magic.ledger import Ledger, read_cell_clusters, read_cells
from carbon_magic.ledger import schema as ledger_schema
from carbon_magic.measurement import Measurement

CLUSTER = {
    "hosts": {
        "h1": {
            "name": "node-1",
            "workers": 3,
            "in_kernel": 0,
            "energy_j": {"cpu": 100.0, "gpu": 50.0, "ram": 5.0},
            "embodied_g": 0.25,
            "methods": {"cpu": "measured", "gpu": "measured", "ram": "assumed"},
        },
        "h0": {
            "name": "kernel-host",
            "workers": 2,
            "in_kernel": 2,
            "energy_j": {"cpu": 0.0, "gpu": 0.0, "ram": 0.0},
            "embodied_g": 0.0,
            "methods": {},
        },
    },
    "missing_workers": 1,
    "energy_kwh": 155.0 / 3.6e6,
    "emissions_g": 0.002,
    "embodied_g": 0.25,
}


def open_session(ledger: Ledger, uuid: str = "s1") -> None:
    ledger.open_session(
        session_uuid=uuid,
        kernel_id="k1",
        notebook_path="nb.ipynb",
        host="h",
        pid=1,
        started_at=1.7e9,
        interval_s=1.0,
        mode="process",
        hardware={},
        methods={},
        settings={},
        intensity_source="static",
        intensity_g_per_kwh=50.0,
    )


def test_per_host_figures_round_trip(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", Measurement(name="plain", duration_s=1.0), via="auto")
        with_cluster = Measurement(name="fan-out", duration_s=2.0, cluster=CLUSTER)
        ledger.record_cell("s1", with_cluster, via="auto")
    by_name = {row["name"]: row for row in read_cells(path)}
    plain, fanned = by_name["plain"], by_name["fan-out"]
    assert "cluster_kwh" not in plain
    assert fanned["cluster_kwh"] == CLUSTER["energy_kwh"]
    assert fanned["cluster_emissions_g"] == 0.002
    assert (fanned["cluster_workers"], fanned["cluster_hosts"]) == (5, 2)
    assert fanned["cluster_missing_workers"] == 1
    stored = read_cell_clusters(path, [plain["id"], fanned["id"]])
    assert list(stored) == [fanned["id"]]
    assert stored[fanned["id"]] == CLUSTER


def test_a_version_1_file_gains_the_cluster_tables(tmp_path, monkeypatch):
    path = tmp_path / "old.sqlite3"
    monkeypatch.setattr(ledger_schema, "MIGRATIONS", ledger_schema.MIGRATIONS[:1])
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", Measurement(name="old"), via="auto")
    with sqlite3.connect(path) as conn:  # a version 1 file: no cluster tables
        assert (
            conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1"
        )
        assert not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'cell_clusters'"
        ).fetchall()
    assert [r["name"] for r in read_cells(path)] == ["old"]  # no cluster tables: still read
    monkeypatch.undo()
    with Ledger(path) as ledger:
        ledger.record_cell("s1", Measurement(name="new", cluster=CLUSTER), via="auto")
    hosts = {r["name"]: r.get("cluster_hosts") for r in read_cells(path)}
    assert hosts == {"old": None, "new": 2}


def test_metrics_show_the_cluster_share(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from carbon_magic.server import metrics, views
    from carbon_magic.server.reader import LedgerReader

    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger)
        # A cell's figures include its cluster part.
        for name in ("a", "b"):
            fanned = Measurement(
                name=name,
                energy_kwh=CLUSTER["energy_kwh"] + 1e-5,
                emissions_g=0.002 + 0.001,
                embodied_g=0.25 + 0.125,
                cluster=CLUSTER,
            )
            ledger.record_cell("s1", fanned, via="auto")
        alone = Measurement(name="c", energy_kwh=2e-5, emissions_g=0.003, embodied_g=0.5)
        ledger.record_cell("s1", alone, via="auto")
    reader = LedgerReader(path)
    snapshot = reader.snapshot(now=1.7e9 + 10, day_start=1.7e9)
    reader.close()
    (part,) = snapshot.cluster.values()
    assert list(snapshot.cluster) == ["k1"]
    assert (part.energy_kwh, part.emissions_g, part.embodied_g) == (
        2 * CLUSTER["energy_kwh"],
        2 * 0.002,
        2 * 0.25,
    )
    kernels, _ = views.select_kernels(snapshot, ["k1"], lambda interval_s, next_beat_s: 3600.0)
    text = metrics.exposition(snapshot, kernels, lambda interval_s, next_beat_s: 3600.0)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (energy,) = families["carbon_magic_cluster_energy_kwh"].samples
    assert energy.labels["kernel_id"] == "k1"
    assert energy.value == 2 * CLUSTER["energy_kwh"]
    (grams,) = families["carbon_magic_cluster_emissions_grams"].samples
    assert grams.value == 2 * 0.002
    # The kernel's own counters leave the cluster part out; the ledger's include it.
    own = {
        name: families[name].samples[0].value
        for name in families
        if name.startswith("carbon_magic_e")
    }
    assert own["carbon_magic_energy_kwh"] == pytest.approx(4e-5)
    assert own["carbon_magic_emissions_grams"] == pytest.approx(0.005)
    assert own["carbon_magic_embodied_grams"] == pytest.approx(0.75)
    ledger_grams = families["carbon_magic_ledger_emissions_grams"].samples[0].value
    assert ledger_grams == pytest.approx(0.009)


def test_report_export_and_panel_show_the_cluster_apart(tmp_path):
    from carbon_magic.export import flat_record
    from carbon_magic.panel import panel_html, text_summary
    from carbon_magic.report import build_report

    path = tmp_path / "ledger.sqlite3"
    fanned = Measurement(
        name="fan-out", energy_kwh=2 * CLUSTER["energy_kwh"], emissions_g=0.004, cluster=CLUSTER
    )
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", fanned, via="auto")
        ledger.record_cell("s1", Measurement(name="alone", emissions_g=0.004), via="auto")
    rows = read_cells(path)
    text = str(build_report(rows))
    assert "Dask workers (in 1 cell)" in text and "25% of operational emissions" in text
    records = {r["name"]: flat_record(r) for r in rows}
    assert records["fan-out"]["cluster_hosts"] == 2
    assert records["fan-out"]["cluster_missing_workers"] == 1
    assert records["alone"]["cluster_hosts"] is None
    line = "kernel 43 mWh · cluster 43 mWh, 5 workers on 2 hosts (2 counted with the kernel)"
    assert line in panel_html(fanned, {"cpu": 1.0}, "ok")
    assert line in text_summary(fanned)
    assert "cluster" not in text_summary(Measurement(name="alone"))
