"""``carbon-magic model``: text and JSON output, this machine, and errors (exit 2)."""

from __future__ import annotations

import json

import pytest

from carbon_magic.cli import main
from carbon_magic.cpu_model import estimate, identify
from carbon_magic.cpu_model import power as cpu_power
from carbon_magic.cpu_model.curves import families

AMD_ZEN = families()["amd-zen"]
INTEL_XEON = families()["intel-xeon"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        status = main(["model", *argv])
    except SystemExit as error:  # argparse exits on usage errors
        status = error.code
    out, err = capsys.readouterr()
    return status, out, err


def test_json_for_a_named_cpu(capsys):
    status, out, _ = run(
        capsys, "--cpu", "AMD EPYC 7742", "--threads", "128", "--load", "0,10,50,100", "--json"
    )
    assert status == 0
    info = json.loads(out)
    assert info["cpu"] == "AMD EPYC 7742"
    assert info["method"] == estimate.METHOD_TDP
    assert info["source"].startswith("AMD Zen load curve")
    assert "TDP table: AMD EPYC 7742 225 W" in info["source"]
    assert info["curve"]["family"] == "amd-zen"
    assert [p["load_pct"] for p in info["points"]] == [0, 10, 50, 100]
    assert '"load_pct": 0,' in out  # whole percentages print as integers
    by_load = {p["load_pct"]: p for p in info["points"]}
    full = AMD_ZEN.full  # the core count is not in this name: a mid-size package's
    assert by_load[0]["power_w"] == pytest.approx(AMD_ZEN.idle * 225, abs=1e-3)
    assert by_load[100]["power_w"] == pytest.approx(full * 225, abs=1e-3)
    low, high = AMD_ZEN.band_at(1.0)
    assert by_load[100]["low_w"] == pytest.approx(low * full * 225, abs=1e-3)
    assert by_load[100]["high_w"] == pytest.approx(high * full * 225, abs=1e-3)
    features = {f["name"]: f for f in info["features"]}
    assert features["cores per package"]["value"] == "?"
    assert features["TDP"]["origin"] == "TDP table: AMD EPYC 7742 225 W"
    for point in info["points"]:
        assert point["low_w"] <= point["power_w"] <= point["high_w"]


def test_text_lists_method_source_and_each_load(capsys):
    status, out, _ = run(
        capsys, "--cpu", "Intel Xeon E5-2620 v3", "--threads", "24",
        "--threads-per-package", "12", "--load", "0,100",
    )  # fmt: skip
    assert status == 0
    assert "method:  modelled: TDP × load curve" in out
    assert "85 W × 2 packages (24 threads, 12 each)" in out
    assert "Intel Xeon curve" in out
    lines = [line for line in out.splitlines() if line.strip().endswith(" W") and "%" in line]
    assert len(lines) == 2
    # Idle: 0.093 × 85 W × 2 = 15.8 W; full load for 6 cores (12 threads):
    # (0.9234 + 0.1575 · log2(6 / 16)) × 170 W = 119.1 W.
    idle = INTEL_XEON.idle * 170
    full = INTEL_XEON.full_for(6) * 170
    assert lines[0].split()[:3] == ["0", "%", f"{idle:.1f}"]
    assert lines[1].split()[:3] == ["100", "%", f"{full:.1f}"]
    assert "features:" in out
    assert "cores per package = 6 (12 threads per package / 2 (assumed SMT))" in out


def test_unknown_cpu_gets_the_generic_curve_labelled(capsys):
    status, out, _ = run(capsys, "--cpu", "Mystery 9000", "--tdp", "100", "--json")
    assert status == 0
    info = json.loads(out)
    assert info["curve"]["family"] == "generic"
    assert "generic load curve ('Mystery 9000' not recognised)" in info["source"]
    assert "TDP 100 W given" in info["source"]


def test_vm_and_cloud_use_watts_per_vcpu(capsys):
    # An EPYC 7713 without its core count: the host package is unknown.
    status, out, _ = run(
        capsys, "--cpu", "AMD EPYC 7713", "--vm", "--threads", "8", "--cloud", "gcp", "--json"
    )
    assert status == 0
    info = json.loads(out)
    assert info["method"] == estimate.METHOD_VCPU
    assert "CCF gcp coefficients for EPYC 3rd Gen" in info["source"]
    full = {p["load_pct"]: p for p in info["points"]}[100]["power_w"]
    per_vcpu_w = identify.coefficient_tables()["gcp"]["EPYC 3rd Gen"][1]
    ratio = identify.ccf_per_tdp_per_thread()[0]
    assert full == pytest.approx(8 * per_vcpu_w / ratio * AMD_ZEN.full, abs=1e-3)


def test_this_machine_without_cpu(capsys):
    status, out, _ = run(capsys, "--json", "--load", "50")
    assert status == 0
    info = json.loads(out)
    expected = cpu_power.detect_cpu_power_model()
    assert info["cpu"] == cpu_power.read_cpu_model_name()
    assert info["points"][0]["power_w"] == pytest.approx(expected.power_w(0.5), abs=1e-3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threads", "0"], "--threads must be a number above 0 and at most 100000"),
        (["--threads", "many"], "--threads must be a number above 0"),
        (["--load", "0,120"], "each --load value must be from 0 to 100"),
        (["--load", "0,,50"], "--load must be percentages from 0 to 100"),
        (["--tdp", "-3"], "--tdp must be a number above 0 and at most 2000 W"),
        (["--sockets", "0"], "--sockets must be from 1 to 64"),
        (["--threads-per-package", "1.5"], "--threads-per-package must be a whole number"),
        (["--cloud", "ibm"], "invalid choice: 'ibm'"),
    ],
)
def test_bad_numbers_exit_2_naming_the_valid_range(capsys, argv, message):
    status, out, err = run(capsys, "--cpu", "AMD EPYC 7742", *argv)
    assert status == 2
    assert message in err
    assert out == ""


def test_vm_with_the_host_package_size(capsys):
    status, out, _ = run(
        capsys, "--cpu", "AMD EPYC 7742", "--vm", "--threads", "8",
        "--threads-per-package", "128", "--load", "100", "--json",
    )  # fmt: skip
    assert status == 0
    info = json.loads(out)
    assert info["method"] == estimate.METHOD_VM_TDP
    # Cores from --threads-per-package 128 on a VM: 64 (two threads a core).
    full = AMD_ZEN.full_for(64)
    assert info["points"][0]["power_w"] == pytest.approx(225 * 8 / 128 * full, abs=1e-3)
    features = {f["name"]: f["value"] for f in info["features"]}
    assert features["host package"] == "128 threads"
