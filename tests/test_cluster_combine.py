"""Cluster figures from worker replies: nothing counted twice, nothing lost silently."""

from __future__ import annotations

import pytest

from carbon_magic.cluster.combine import add_cluster, cluster_figures, describe, unmeasurable
from carbon_magic.cluster.identity import ProcessIdentity, covered_by, host_id
from carbon_magic.engine.measurement import Measurement
from carbon_magic.grid.base import Intensity

KERNEL = ProcessIdentity("hostA", "a", 100, 7, (1,))


def reply(pid, host="hostB", cpu=0.0, ancestors=(1,), token="t", counted=True, ns=7):
    identity = ProcessIdentity(host, host.lower(), pid, ns, ancestors).to_dict()
    out = {"token": f"{token}{pid}", "identity": identity, "counted": counted}
    if counted:
        out.update(
            energy_j={"cpu": cpu, "gpu": 0.0, "ram": cpu / 10},
            embodied_g=cpu / 100,
            methods={"cpu": "measured", "ram": "assumed"},
        )
    return out


def test_identity_from_boot_id_then_machine_id(tmp_path):
    boot, machine = tmp_path / "boot_id", tmp_path / "machine-id"
    boot.write_text("1111\n")
    machine.write_text("2222\n")
    first = host_id(str(boot), str(machine))
    assert first == host_id(str(boot), str(tmp_path / "other"))  # machine id unused here
    boot.write_text("3333\n")
    assert host_id(str(boot), str(machine)) != first  # another boot: another host
    missing = str(tmp_path / "none")
    assert host_id(missing, str(machine)) != host_id(missing, missing)
    assert len(first) == 16


def test_who_the_kernel_already_counts():
    child = ProcessIdentity("hostA", "a", 200, 7, (100, 1))
    sibling = ProcessIdentity("hostA", "a", 300, 7, (1,))
    other_ns = ProcessIdentity("hostA", "a", 200, 8, (100, 1))
    remote = ProcessIdentity("hostB", "b", 200, 7, (100, 1))
    assert covered_by(child, KERNEL, "process") and covered_by(child, KERNEL, "machine")
    assert covered_by(KERNEL, KERNEL, "process")  # a thread-based worker in the kernel
    assert not covered_by(sibling, KERNEL, "process") and covered_by(sibling, KERNEL, "machine")
    assert not covered_by(other_ns, KERNEL, "process")  # same pid number, other namespace
    assert not covered_by(remote, KERNEL, "process") and not covered_by(remote, KERNEL, "machine")


def test_process_mode_adds_every_outside_process_once():
    start = {"w1": reply(1, cpu=10), "w2": reply(2, cpu=20), "w3": reply(3, "hostA", 5, (100, 1))}
    end = {"w1": reply(1, cpu=15), "w2": reply(2, cpu=30), "w3": reply(3, "hostA", 99, (100, 1))}
    cluster = cluster_figures(start, end, KERNEL, "process")
    b = cluster["hosts"]["hostB"]
    assert b["workers"] == 2 and b["in_kernel"] == 0
    assert b["energy_j"]["cpu"] == pytest.approx(15.0)
    assert b["energy_j"]["ram"] == pytest.approx(1.5)
    assert b["embodied_g"] == pytest.approx(0.15)
    a = cluster["hosts"]["hostA"]  # the kernel's child: already in the kernel's figures
    assert a["workers"] == 1 and a["in_kernel"] == 1 and a["energy_j"]["cpu"] == 0
    assert cluster["missing_workers"] == 0


def test_machine_mode_counts_each_host_once_and_the_kernels_not_at_all():
    start = {"w1": reply(1, cpu=10), "w2": reply(2, cpu=40), "w3": reply(3, "hostA", 5)}
    end = {"w1": reply(1, cpu=30), "w2": reply(2, cpu=60), "w3": reply(3, "hostA", 50)}
    cluster = cluster_figures(start, end, KERNEL, "machine")
    assert cluster["hosts"]["hostB"]["energy_j"]["cpu"] == pytest.approx(20.0)  # not 40
    assert cluster["hosts"]["hostB"]["workers"] == 2
    assert cluster["hosts"]["hostA"]["in_kernel"] == 1
    assert cluster["hosts"]["hostA"]["energy_j"]["cpu"] == 0


def test_missing_at_an_edge_or_restarted_counts_as_missing():
    start = {"w1": reply(1, cpu=10), "w2": reply(2, cpu=10), "w4": reply(4, cpu=1)}
    end = {
        "w1": reply(1, cpu=12),
        "w2": {"error": "no answer within 0.8 s"},
        "w3": reply(3, cpu=50),  # joined during the cell
        "w4": reply(4, cpu=9, token="restarted"),  # a new tracker: counters restarted
    }
    process = cluster_figures(start, end, KERNEL, "process")
    assert process["missing_workers"] == 3
    assert process["hosts"]["hostB"]["energy_j"]["cpu"] == pytest.approx(2.0)
    # In machine mode w1 measured host B for everyone: nothing of host B is lost.
    machine = cluster_figures(start, end, KERNEL, "machine")
    assert machine["missing_workers"] == 0
    # A silent worker known from earlier as the kernel's own child is not missing.
    known = {"w9": ProcessIdentity("hostA", "a", 9, 7, (100,))}
    silent = cluster_figures(
        {"w9": {"error": "x"}}, {"w9": {"error": "x"}}, KERNEL, "process", known
    )
    assert silent["missing_workers"] == 0


def test_unmeasurable_workers_are_named():
    replies = {
        "w1": {
            "error": "ModuleNotFoundError: No module named 'carbon_magic'",
            "unmeasurable": True,
        },
        "w2": reply(2),
    }
    assert unmeasurable(replies) == {"w1": "ModuleNotFoundError: No module named 'carbon_magic'"}
    cluster = cluster_figures(replies, replies, KERNEL, "process")
    assert cluster["missing_workers"] == 1


def test_the_cell_includes_the_cluster_part():
    m = Measurement(
        name="",
        energy_j={"cpu": 360.0, "gpu": 0.0, "ram": 0.0},
        energy_kwh=360 * 1.5 / 3.6e6,
        energy_range_kwh=(0.9 * 360 * 1.5 / 3.6e6, 1.1 * 360 * 1.5 / 3.6e6),
        emissions_g=360 * 1.5 / 3.6e6 * 100,
        emissions_range_g=(0.0, 1.0),
        intensity_g_per_kwh=100.0,
        pue=1.5,
        methods={"cpu": "measured", "ram": "assumed"},
    )
    before_kwh, before_g = m.energy_kwh, m.emissions_g
    start = {"w1": reply(1, cpu=0)}
    end = {"w1": reply(1, cpu=3600)}
    end["w1"]["energy_j"]["gpu"] = 720.0
    end["w1"]["methods"]["gpu"] = "measured"
    cluster = cluster_figures(start, end, KERNEL, "process")
    add_cluster(m, cluster, Intensity(100.0, "static", "FR", "test", 0.2))
    it_j = 3600 + 360 + 720  # cpu, ram, gpu of the worker
    assert m.energy_j["cpu"] == pytest.approx(3960.0)
    assert m.energy_j["gpu"] == pytest.approx(720.0) and m.methods["gpu"] == "measured"
    assert m.cluster["energy_kwh"] == pytest.approx(it_j * 1.5 / 3.6e6)
    assert m.energy_kwh == pytest.approx(before_kwh + it_j * 1.5 / 3.6e6)
    assert m.emissions_g == pytest.approx(before_g + it_j * 1.5 / 3.6e6 * 100)
    assert m.intensity_g_per_kwh == pytest.approx(100.0)
    low, high = m.emissions_range_g
    assert low < m.emissions_g < high
    assert m.embodied_g == pytest.approx(36.0)
    line = describe(m.cluster, m)
    assert line.startswith("kernel 150 mWh · cluster ")
    assert line.endswith(" Wh, 1 worker on 1 host")


def test_worker_settings_follow_the_kernel_unless_the_worker_sets_them():
    from carbon_magic.cluster.agent import worker_settings

    settings = worker_settings(
        {"mode": "machine", "interval": 0.5, "embodied": False, "powercap_root": "/kernel/only"},
        environ={"CARBON_MAGIC_INTERVAL": "2", "CARBON_MAGIC_POWERCAP_ROOT": "/worker/tree"},
    )
    assert settings.mode == "machine" and settings.embodied is False
    assert settings.interval == 2.0  # the worker's own environment wins
    assert settings.powercap_root == "/worker/tree"  # hardware is never the kernel's
    assert settings.intensity == "static"  # the kernel converts; workers call no grid API


def test_the_cluster_setting_picks_the_engines():
    import pytest

    from carbon_magic.cluster.engine import engines, unit_of
    from carbon_magic.settings import parse_setting

    assert [module.NAME for module in engines("auto")] == ["dask", "ray"]
    assert [module.NAME for module in engines(parse_setting("cluster", "Ray"))] == ["ray"]
    assert engines("none") == []
    assert (unit_of("dask"), unit_of("ray"), unit_of(None)) == ("worker", "node", "worker")
    with pytest.raises(ValueError, match="auto, dask, ray, none"):
        parse_setting("cluster", "off")
