"""The cluster part of a cell in the ledger: per-host rows, and the share in read_cells."""

from __future__ import annotations

import sqlite3

import pytest

from carbon_magic.engine.measurement import Measurement
from carbon_magic.ledger import CLUSTER_SHARE_COLUMNS, Ledger, read_cell_clusters, read_cells
from carbon_magic.ledger import schema as ledger_schema

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
    "engine": "dask",
    "partial": "1 worker missing: tcp://10.0.0.9:4000 at the end: timeout",
}
# A Ray cell's part: one node on another host, complete.
RAY_CLUSTER = {
    "hosts": {
        "h2": {
            "name": "gpu-box",
            "workers": 2,
            "in_kernel": 0,
            "energy_j": {"cpu": 36.0, "gpu": 0.0, "ram": 0.0},
            "embodied_g": 0.0,
            "methods": {"cpu": "modelled"},
        }
    },
    "missing_workers": 0,
    "energy_kwh": 36.0 / 3.6e6,
    "emissions_g": 0.001,
    "embodied_g": 0.0,
    "engine": "ray",
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
        # A cell's figures include its cluster part: one Dask cell, one Ray cell.
        for name, part in (("a", CLUSTER), ("b", RAY_CLUSTER)):
            fanned = Measurement(
                name=name,
                energy_kwh=part["energy_kwh"] + 1e-5,
                emissions_g=part["emissions_g"] + 0.001,
                embodied_g=part["embodied_g"] + 0.125,
                cluster=part,
            )
            ledger.record_cell("s1", fanned, via="auto")
        alone = Measurement(name="c", energy_kwh=2e-5, emissions_g=0.003, embodied_g=0.5)
        ledger.record_cell("s1", alone, via="auto")
    reader = LedgerReader(path)
    snapshot = reader.snapshot(now=1.7e9 + 10, day_start=1.7e9)
    reader.close()
    both_kwh = CLUSTER["energy_kwh"] + RAY_CLUSTER["energy_kwh"]
    (part,) = snapshot.cluster.values()
    assert list(snapshot.cluster) == ["k1"]
    assert (part.energy_kwh, part.emissions_g, part.embodied_g) == pytest.approx(
        (both_kwh, 0.003, 0.25)
    )
    kernels, _ = views.select_kernels(snapshot, ["k1"], lambda interval_s, next_beat_s: 3600.0)
    text = metrics.exposition(snapshot, kernels, lambda interval_s, next_beat_s: 3600.0)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (energy,) = families["carbon_magic_cluster_energy_kwh"].samples
    assert energy.labels["kernel_id"] == "k1"
    assert energy.value == pytest.approx(both_kwh)  # the Dask and the Ray cell
    (grams,) = families["carbon_magic_cluster_emissions_grams"].samples
    assert grams.value == pytest.approx(0.003)
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
    assert ledger_grams == pytest.approx(0.008)


def test_report_export_and_panel_show_the_cluster_apart(tmp_path):
    from carbon_magic.kernel.panel import panel_html, text_summary
    from carbon_magic.reports.export_flat import flat_record
    from carbon_magic.reports.report import build_report

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
    assert "Dask cluster (in 1 cell)" in text and "25% of operational emissions" in text
    records = {r["name"]: flat_record(r) for r in rows}
    assert records["fan-out"]["cluster_hosts"] == 2
    assert records["fan-out"]["cluster_missing_workers"] == 1
    assert records["alone"]["cluster_hosts"] is None
    line = "kernel 43 mWh · cluster 43 mWh, 5 workers on 2 hosts (2 counted with the kernel)"
    assert line in panel_html(fanned, {"cpu": 1.0}, "ok")
    assert line in text_summary(fanned)
    assert "cluster" not in text_summary(Measurement(name="alone"))


@pytest.mark.parametrize("with_part", [(0,), (2,), (0, 2)])
def test_iter_cells_adds_the_cluster_part_in_every_batch_that_has_one(tmp_path, with_part):
    from carbon_magic.ledger import connect_readonly, iter_cells

    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger)
        for number in range(3):
            cluster = CLUSTER if number in with_part else None
            ledger.record_cell("s1", Measurement(name=f"c{number}", cluster=cluster), via="auto")
    connection = connect_readonly(path)
    try:
        # One cell a batch: batches without a part before and after one with it.
        rows = list(iter_cells(connection, batch_rows=1))
    finally:
        connection.close()
    assert [row["cluster_hosts"] for row in rows] == [
        2 if number in with_part else None for number in range(3)
    ]
    shares = [{name: row.get(name) for name in CLUSTER_SHARE_COLUMNS} for row in read_cells(path)]
    assert [{name: row[name] for name in CLUSTER_SHARE_COLUMNS} for row in rows] == shares


def test_a_ray_part_is_carried_like_a_dask_part(tmp_path):
    """The engine and why a part is partial reach the ledger, the report, the export and
    the panel line (Ray counts nodes); a file of version 5 gains the columns."""
    from carbon_magic.kernel.panel import text_summary
    from carbon_magic.reports.export_flat import flat_record
    from carbon_magic.reports.report import build_report

    path = tmp_path / "ledger.sqlite3"
    ray_cell = Measurement(
        name="ray", energy_kwh=2 * RAY_CLUSTER["energy_kwh"], cluster=RAY_CLUSTER
    )
    dask_cell = Measurement(name="dask", energy_kwh=2 * CLUSTER["energy_kwh"], cluster=CLUSTER)
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", ray_cell, via="auto")
        ledger.record_cell("s1", dask_cell, via="auto")
    rows = {row["name"]: row for row in read_cells(path)}
    stored = read_cell_clusters(path, [rows["ray"]["id"], rows["dask"]["id"]])
    assert stored[rows["ray"]["id"]] == RAY_CLUSTER
    assert stored[rows["dask"]["id"]]["partial"] == CLUSTER["partial"]
    ray_record, dask_record = flat_record(rows["ray"]), flat_record(rows["dask"])
    assert (ray_record["cluster_engine"], ray_record["cluster_partial"]) == ("ray", None)
    assert (dask_record["cluster_engine"], dask_record["cluster_partial"]) == (
        "dask",
        CLUSTER["partial"],
    )
    assert "Dask and Ray cluster (in 2 cells)" in str(build_report(list(rows.values())))
    assert "cluster 10 mWh, 2 nodes on 1 host" in text_summary(ray_cell)
    assert "1 worker not measured" in text_summary(dask_cell)


def test_a_version_5_file_gains_the_engine_columns(tmp_path, monkeypatch):
    """A cluster row written before engines were named reads as Dask's."""
    path = tmp_path / "v5.sqlite3"
    monkeypatch.setattr(ledger_schema, "MIGRATIONS", ledger_schema.MIGRATIONS[:5])
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", Measurement(name="old"), via="auto")
    with sqlite3.connect(path) as conn:  # as version 5 wrote it: no engine, no partial
        conn.execute(
            "INSERT INTO cell_clusters (cell_ref, missing_workers, energy_kwh, emissions_g,"
            " embodied_g) SELECT id, 0, 0.001, 0.5, 0.0 FROM cells"
        )
    monkeypatch.undo()
    # Read as it is (the server reads without migrating), then written to by this version.
    assert [r.get("cluster_engine") for r in read_cells(path)] == ["dask"]
    with Ledger(path) as ledger:
        ledger.record_cell("s1", Measurement(name="new", cluster=RAY_CLUSTER), via="auto")
    engines = {r["name"]: r.get("cluster_engine") for r in read_cells(path)}
    assert engines == {"old": "dask", "new": "ray"}
