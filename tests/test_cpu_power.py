"""CPU power model: visible CPUs, cpuinfo parsing, microarchitecture and TDP lookups."""

from __future__ import annotations

from math import log2
from pathlib import Path
from statistics import fmean

import pytest

from carbon_magic.cpu_model import estimate, identify
from carbon_magic.cpu_model import power as cpu_power
from carbon_magic.cpu_model.curves import families
from carbon_magic.cpu_model.identify import tdp_per_core
from carbon_magic.cpu_model.power import CpuPowerModel

AMD_ZEN = families()["amd-zen"]
GENERIC = families()["generic"]
INTEL_XEON = families()["intel-xeon"]

EIGHT = range(8)
# CCF's full-load watts per vCPU over the TDP per thread of the cloud CPU table's hosts.
CLOUD_RATIO = identify.ccf_per_tdp_per_thread()[0]


def _coefficients(provider: str, architecture: str) -> tuple[float, float]:
    return identify.coefficient_tables()[provider][architecture]


@pytest.fixture
def cgroup(tmp_path: Path) -> Path:
    """A fake cgroup root, and a /proc/self/cgroup that puts us at its top."""
    root = tmp_path / "cgroup"
    root.mkdir()
    (tmp_path / "self_cgroup").write_text("0::/\n")
    return root


def _count(root: Path, affinity=EIGHT) -> float:
    return cpu_power.visible_cpu_count(root, affinity, proc_cgroup=root.parent / "self_cgroup")


# ------------------------------------------------------------------- cgroups


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000\n", 8.0),
        ("200000 100000\n", 2.0),
        ("50000 100000", 0.5),
        ("150000", 1.5),  # period defaults to 100 ms
        ("1600000 100000", 8.0),  # a quota above the affinity mask changes nothing
        ("garbage here", 8.0),
        ("", 8.0),
        ("-5 100000", 8.0),
    ],
)
def test_cgroup_v2_cpu_max(cgroup, cpu_max, expected):
    (cgroup / "cpu.max").write_text(cpu_max)
    assert _count(cgroup) == expected


def test_no_cgroup_files_means_affinity(cgroup):
    assert _count(cgroup) == 8.0
    assert _count(cgroup, affinity={0, 3}) == 2.0


def test_unreadable_cpu_max_is_ignored(cgroup):
    (cgroup / "cpu.max").mkdir()  # reading a folder fails
    assert _count(cgroup) == 8.0


def test_nested_cgroup_tightest_quota_wins(cgroup):
    (cgroup.parent / "self_cgroup").write_text("0::/user.slice/jupyter.scope\n")
    (cgroup / "user.slice" / "jupyter.scope").mkdir(parents=True)
    (cgroup / "user.slice" / "cpu.max").write_text("300000 100000")
    (cgroup / "user.slice" / "jupyter.scope" / "cpu.max").write_text("max 100000")
    assert _count(cgroup) == 3.0


@pytest.mark.parametrize("folder", ["cpu", "cpu,cpuacct", ""])
def test_cgroup_v1_cfs_quota(cgroup, folder):
    base = cgroup / folder if folder else cgroup
    base.mkdir(exist_ok=True)
    (base / "cpu.cfs_quota_us").write_text("250000\n")
    (base / "cpu.cfs_period_us").write_text("100000\n")
    assert _count(cgroup) == 2.5


def test_cgroup_v1_unlimited_quota(cgroup):
    (cgroup / "cpu").mkdir()
    (cgroup / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (cgroup / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _count(cgroup) == 8.0


def test_real_machine_count_is_positive():
    assert cpu_power.visible_cpu_count() > 0


# ------------------------------------------------------------------- cpuinfo

X86_VM = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
siblings\t: 2
flags\t\t: fpu vme de pse tsc msr hypervisor lahf_lm

processor\t: 1
model name\t: AMD EPYC
"""

X86_METAL = """processor\t: 0
model name\t: Intel(R) Xeon(R) Gold 6122 CPU @ 1.80GHz
siblings\t: 40
flags\t\t: fpu vme de pse tsc msr pae
"""

ARM = """processor\t: 0
BogoMIPS\t: 243.75
CPU implementer\t: 0x41
CPU part\t: 0xd0c
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


def test_cpuinfo_vm(tmp_path):
    path = _write(tmp_path, X86_VM)
    assert cpu_power.read_cpu_model_name(path) == "AMD EPYC"
    assert cpu_power.is_virtual_machine(path) is True
    assert cpu_power.read_threads_per_package(path) == 2


def test_cpuinfo_bare_metal(tmp_path):
    path = _write(tmp_path, X86_METAL)
    assert cpu_power.read_cpu_model_name(path) == "Intel(R) Xeon(R) Gold 6122 CPU @ 1.80GHz"
    assert cpu_power.is_virtual_machine(path) is False
    assert cpu_power.read_threads_per_package(path) == 40


def test_cpuinfo_arm_part_number(tmp_path):
    path = _write(tmp_path, ARM)
    assert cpu_power.read_cpu_model_name(path) == "ARM Neoverse-N1"
    assert cpu_power.read_threads_per_package(path) is None


def test_cpuinfo_missing(tmp_path):
    missing = tmp_path / "nope"
    assert cpu_power.read_cpu_model_name(missing) == ""
    assert cpu_power.is_virtual_machine(missing) is False
    assert cpu_power.read_threads_per_package(missing) is None


# ----------------------------------------------------------- microarchitecture


@pytest.mark.parametrize(
    ("name", "architecture"),
    [
        ("Intel(R) Xeon(R) Platinum 8175M CPU @ 2.50GHz", "Skylake"),
        ("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", "Cascade Lake"),
        ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "Ice Lake"),
        ("Intel(R) Xeon(R) Platinum 8380H CPU @ 2.90GHz", "Cooper Lake"),
        ("Intel(R) Xeon(R) Platinum 8488C", "Sapphire Rapids"),
        ("Intel(R) Xeon(R) Gold 6122 CPU @ 1.80GHz", "Skylake"),
        ("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz", "Broadwell"),
        ("Intel(R) Xeon(R) CPU E5-2666 v3 @ 2.90GHz", "Haswell"),
        ("Intel(R) Xeon(R) CPU E5-2670 v2 @ 2.50GHz", "Ivy Bridge"),
        ("Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", "Sandy Bridge"),
        ("Intel(R) Xeon(R) E-2176G CPU @ 3.70GHz", "Coffee Lake"),
        ("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", "Coffee Lake"),
        ("Intel(R) Core(TM) i5-4590 CPU @ 3.30GHz", "Haswell"),
        ("Intel Xeon Processor (Icelake)", "Ice Lake"),
        ("Intel Xeon Processor (Cascadelake)", "Cascade Lake"),
        ("Intel Core Processor (Skylake, IBRS)", "Skylake"),
        ("AMD EPYC 7571", "EPYC 1st Gen"),
        ("AMD EPYC 7R32", "EPYC 2nd Gen"),
        ("AMD EPYC 7B12", "EPYC 2nd Gen"),
        ("AMD EPYC 7R13 Processor", "EPYC 3rd Gen"),
        ("AMD EPYC 72F3 8-Core Processor", "EPYC 3rd Gen"),
        ("AMD EPYC 9654P 96-Core Processor", "EPYC 4th Gen"),
        ("AMD EPYC 9R14", "EPYC 4th Gen"),
        ("AMD EPYC-Rome Processor", "EPYC 2nd Gen"),
        ("AMD EPYC-Milan Processor", "EPYC 3rd Gen"),
        ("AMD EPYC", "EPYC"),
        ("AMD EPYC Processor (with IBPB)", "EPYC"),
        ("AWS Graviton2", "Graviton2"),
        ("ARM Neoverse-N1", "Graviton2"),
        ("ARM Neoverse-V1", "Graviton3"),
        # Not recognised: a hidden Xeon model, a Pentium "Gold", recent client chips.
        ("Intel(R) Xeon(R) CPU @ 2.20GHz", None),
        ("Intel(R) Pentium(R) Gold 6405U CPU @ 2.40GHz", None),
        ("11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz", None),
        ("Apple M2", None),
        ("", None),
    ],
)
def test_microarchitecture(name, architecture):
    assert identify.cpu_microarchitecture(name) == architecture


# ----------------------------------------------------------------- the model


def test_plain_amd_epyc_vm_averages_epyc_generations():
    # What this development machine reports: "AMD EPYC", hypervisor flag, 2 CPUs.
    model = cpu_power.cpu_power_model("AMD EPYC", 2, is_vm=True)
    first, second = _coefficients("aws", "EPYC 1st Gen"), _coefficients("aws", "EPYC 2nd Gen")
    # The Zen curve on CCF's full-load watts per vCPU, averaged over the generations.
    per_vcpu_w = fmean([first[1], second[1]]) / CLOUD_RATIO
    assert model.idle_w == pytest.approx(2 * per_vcpu_w * AMD_ZEN.idle)
    assert model.max_w == pytest.approx(2 * per_vcpu_w * AMD_ZEN.full)
    assert model.curve.name == AMD_ZEN.name
    assert model.method == estimate.METHOD_VCPU
    assert model.n_cpus == 2
    assert "AMD EPYC of unknown generation" in model.source
    assert model.source.startswith("AMD Zen load curve")
    assert "(CCF aws coefficients" in model.source


def test_provider_table_is_used():
    # The 8171M has a TDP but no known host package size: the per-vCPU figures apply.
    aws = cpu_power.cpu_power_model("Intel(R) Xeon(R) Platinum 8171M", 4, True)
    gcp = cpu_power.cpu_power_model("Intel(R) Xeon(R) Platinum 8171M", 4, True, "gcp")
    assert aws.max_w == pytest.approx(
        4 * _coefficients("aws", "Skylake")[1] / CLOUD_RATIO * INTEL_XEON.full
    )
    assert gcp.max_w == pytest.approx(
        4 * _coefficients("gcp", "Skylake")[1] / CLOUD_RATIO * INTEL_XEON.full
    )
    assert aws.max_w != gcp.max_w
    assert "CCF gcp coefficients for Skylake" in gcp.source


def test_architecture_missing_from_provider_table_uses_others():
    model = cpu_power.cpu_power_model("AMD EPYC 7713 Processor", 4, True, "aws")
    expected = fmean(
        [_coefficients("gcp", "EPYC 3rd Gen")[1], _coefficients("azure", "EPYC 3rd Gen")[1]]
    )
    assert model.max_w == pytest.approx(4 * expected / CLOUD_RATIO * AMD_ZEN.full)
    assert "gcp/azure coefficients for EPYC 3rd Gen" in model.source


def test_architecture_missing_everywhere_uses_previous_generation():
    model = cpu_power.cpu_power_model("Intel(R) Xeon(R) Platinum 8480C", 2, True, "azure")
    assert model.max_w == pytest.approx(
        2 * _coefficients("azure", "Cascade Lake")[1] / CLOUD_RATIO * INTEL_XEON.full
    )
    assert "Cascade Lake (Sapphire Rapids not in the tables)" in model.source


@pytest.mark.parametrize(("provider", "high"), [(None, 3.5), ("gcp", 4.26)])
def test_unrecognised_cpu_uses_ccf_average_and_generic_curve(provider, high):
    model = cpu_power.cpu_power_model("Mystery CPU 9000", 4, True, provider)
    assert model.idle_w == pytest.approx(4 * high / CLOUD_RATIO * GENERIC.idle)
    assert model.max_w == pytest.approx(4 * high / CLOUD_RATIO * GENERIC.full)
    assert model.curve.name == GENERIC.name
    assert "generic load curve ('Mystery CPU 9000' not recognised)" in model.source
    assert "average over all microarchitectures" in model.source


def test_tdp_on_bare_metal():
    name = "Intel(R) Xeon(R) Gold 6122 CPU @ 1.80GHz"
    whole = cpu_power.cpu_power_model(name, 40, is_vm=False)
    assert whole.max_w == pytest.approx(120.0 * INTEL_XEON.full)
    assert whole.idle_w == pytest.approx(120.0 * INTEL_XEON.idle)
    assert whole.method == estimate.METHOD_TDP
    assert "TDP table: Intel Xeon Gold 6122 120 W" in whole.source
    assert whole.source.startswith("Intel Xeon load curve")
    share = cpu_power.cpu_power_model(name, 10, is_vm=False, threads_per_package=40)
    # 40 threads per package, so 20 cores (two threads each) set the full-load share.
    assert share.max_w == pytest.approx(30.0 * INTEL_XEON.full_for(20))
    assert "10 of 40 threads" in share.source


def test_tdp_not_used_on_a_vm():
    model = cpu_power.cpu_power_model("Intel(R) Xeon(R) Gold 6122 CPU @ 1.80GHz", 4, is_vm=True)
    assert "CCF aws coefficients for Skylake" in model.source


def test_bare_metal_without_tdp_entry_uses_coefficients():
    model = cpu_power.cpu_power_model("AMD EPYC", 2, is_vm=False)
    assert "CCF aws coefficients" in model.source


def test_find_tdp():
    assert identify.find_tdp("AMD Ryzen 7 5800X 8-Core Processor") == ("AMD Ryzen 7 5800X", 105.0)
    assert identify.find_tdp("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz") == (
        "Intel Xeon E5-2686 v4",
        145.0,
    )
    assert identify.find_tdp("AMD EPYC") is None
    assert identify.find_tdp("") is None


def test_both_overrides_win():
    model = cpu_power.cpu_power_model("AMD EPYC", 2, True, None, 5.0, 40.0)
    assert model == CpuPowerModel(5.0, 40.0, 2, "set by you")


def test_one_override_keeps_the_other_from_the_model():
    base = cpu_power.cpu_power_model("AMD EPYC", 2, True)
    idle = cpu_power.cpu_power_model("AMD EPYC", 2, True, idle_override_w=1.0)
    assert (idle.idle_w, idle.max_w) == (1.0, base.max_w)
    assert idle.source.startswith("idle set by you; max from AMD Zen load curve")
    assert idle.curve.name == AMD_ZEN.name
    high = cpu_power.cpu_power_model("AMD EPYC", 2, True, max_override_w=20.0)
    assert (high.idle_w, high.max_w) == (base.idle_w, 20.0)
    assert high.source.startswith("max set by you")


@pytest.mark.parametrize(
    ("idle", "high"),
    [(50.0, 10.0), (100.0, None), (None, 0.1)],
)
def test_idle_above_max_is_an_error(idle, high):
    with pytest.raises(ValueError, match="idle power .* is above its maximum"):
        cpu_power.cpu_power_model("AMD EPYC", 2, True, None, idle, high)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_cpus": 0},
        {"cloud_provider": "ibm"},
        {"idle_override_w": -1.0},
        {"max_override_w": float("nan")},
    ],
)
def test_bad_arguments(kwargs):
    arguments = {"model_name": "AMD EPYC", "n_cpus": 2, "is_vm": True} | kwargs
    with pytest.raises(ValueError):
        cpu_power.cpu_power_model(**arguments)


def test_power_at_utilisation():
    model = CpuPowerModel(2.0, 10.0, 2, "test")
    assert model.power_w(0) == 2.0
    assert model.power_w(0.5) == 6.0
    assert model.power_w(2) == 10.0


def test_detect_on_fake_machine(tmp_path, cgroup):
    (cgroup / "cpu.max").write_text("100000 100000")
    model = cpu_power.detect_cpu_power_model(
        cpuinfo_path=_write(tmp_path, X86_METAL),
        cgroup_root=cgroup,
        affinity=EIGHT,
        proc_cgroup=cgroup.parent / "self_cgroup",
    )
    assert model.n_cpus == 1.0
    assert model.max_w == pytest.approx(120.0 / 40 * INTEL_XEON.full_for(20))
    assert "TDP table: Intel Xeon Gold 6122 120 W × 0.025 of a package" in model.source


def test_cloud_custom_vm_uses_the_host_package_from_the_cloud_table():
    # 4 vCPUs of an m5 host: Xeon Platinum 8175M, 240 W, 24 cores / 48 threads a socket.
    model = cpu_power.cpu_power_model("Intel(R) Xeon(R) Platinum 8175M CPU @ 2.50GHz", 4, True)
    full = INTEL_XEON.full + INTEL_XEON.cores_slope * log2(24 / 16)
    assert model.method == estimate.METHOD_VM_TDP
    assert model.max_w == pytest.approx(240 * 4 / 48 * full)
    assert model.idle_w == pytest.approx(240 * 4 / 48 * INTEL_XEON.idle)
    features = {name: (value, origin) for name, value, origin in model.features}
    assert features["host package"][0] == "48 threads"
    assert features["cores per package"][0] == "24"
    assert "cloud CPU table" in features["TDP"][1]


def test_unknown_cpu_on_bare_metal_estimates_the_tdp_from_its_cores():
    model = cpu_power.cpu_power_model(
        "Mystery Server CPU", 8, False, threads_per_package=8, cores_per_package=4
    )
    per_core, lowest, highest = tdp_per_core("generic")
    assert model.method == estimate.METHOD_CORES
    assert model.max_w == pytest.approx(4 * per_core * GENERIC.full_for(4))
    low, high = model.power_range_w(1.0)
    base_low, base_high = GENERIC.band_at(1.0)
    central = model.power_w(1.0)
    assert low == pytest.approx(central * base_low * lowest / per_core)
    assert high == pytest.approx(central * base_high * highest / per_core)
    assert "TDP estimated as 4 cores" in model.source


def test_arm_threads_are_cores():
    model = cpu_power.cpu_power_model("ARM Neoverse-N1", 64, False, threads_per_package=64)
    features = {name: value for name, value, _ in model.features}
    assert features["cores per package"] == "64"
    assert model.method == estimate.METHOD_CORES
