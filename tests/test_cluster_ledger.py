"""The cluster part of a cell in the ledger: per-host rows, and the share in read_cells."""

from __future__ import annotations

from carbon_magic import ledger as ledger_module
from carbon_magic.ledger import Ledger, read_cell_clusters, read_cells
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
    monkeypatch.setattr(ledger_module, "MIGRATIONS", ledger_module.MIGRATIONS[:1])
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", Measurement(name="old"), via="auto")
    assert [r["name"] for r in read_cells(path)] == ["old"]  # no cluster tables: still read
    monkeypatch.undo()
    with Ledger(path) as ledger:
        ledger.record_cell("s1", Measurement(name="new", cluster=CLUSTER), via="auto")
    hosts = {r["name"]: r.get("cluster_hosts") for r in read_cells(path)}
    assert hosts == {"old": None, "new": 2}
