"""The ``carbon-magic`` command, run as a user would, against a ledger of real measurements."""

import csv
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from carbon_magic.doctor import Finding, doctor_findings, doctor_text
from carbon_magic.sensors.rapl import permission_fix

NOTEBOOKS = {"kernel-a": "work/a.ipynb", "kernel-b": "work/b.ipynb"}


@pytest.fixture(scope="module")
def ledger_path(tmp_path_factory):
    """A ledger written by the real Ledger with cells measured by a real Tracker."""
    from carbon_magic.engine.tracker import Tracker
    from carbon_magic.ledger import Ledger
    from carbon_magic.settings import Settings

    folder = tmp_path_factory.mktemp("ledger")
    path = folder / "ledger.sqlite3"
    tracker = Tracker(Settings(environ={}))
    tracker.settings.update(country="FR", powercap_root=str(folder / "no-rapl"))
    tracker.start()
    try:
        intensity = tracker.intensity()
        with Ledger(path) as ledger:
            for kernel, notebook in NOTEBOOKS.items():
                session = str(uuid.uuid4())
                ledger.open_session(
                    session_uuid=session,
                    kernel_id=kernel,
                    notebook_path=notebook,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    started_at=time.time(),
                    interval_s=tracker.settings.interval,
                    mode=tracker.settings.mode,
                    hardware=tracker.hardware(),
                    methods=tracker.methods(),
                    settings=tracker.settings.as_dict(),
                    intensity_source=intensity.source,
                    intensity_g_per_kwh=intensity.g_per_kwh,
                )
                for n, size in enumerate((3, 1, 2), start=1):
                    with tracker.measure("") as m:
                        sum(range(size * 300_000))
                    m.execution_count, m.source = n, f"sum(range({size} * 300_000))"
                    ledger.record_cell(session, m, via="auto")
                    totals = tracker.session()
                    ledger.heartbeat(
                        session,
                        at=time.time(),
                        watts=m.power_w,
                        energy_kwh=totals.energy_kwh,
                        emissions_g=totals.emissions_g,
                        emissions_range_g=totals.emissions_range_g,
                        embodied_g=totals.embodied_g,
                        intensity_g_per_kwh=intensity.g_per_kwh,
                        intensity_source=intensity.source,
                        tracker_state="running",
                        running_cell=None,
                        running_cell_started_at=None,
                    )
    finally:
        tracker.close()
    return path


@pytest.fixture
def env(tmp_path):
    """The user's environment without carbon_magic settings, and no default ledger."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_MAGIC_")}
    clean["CARBON_MAGIC_LEDGER"] = str(tmp_path / "absent.sqlite3")
    clean["CARBON_MAGIC_POWERCAP_ROOT"] = str(tmp_path / "no-rapl")
    return clean


def run(env, *args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "carbon_magic.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def assert_one_line_error(result, *fragments):
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("carbon-magic: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# ---------------------------------------------------------------- basics


def test_version_and_help(env):
    result = run(env, "--version")
    assert result.returncode == 0 and result.stdout.strip() == "carbon-magic 0.1.0"
    for command in ([], ["status"], ["doctor"], ["report"], ["export"], ["plot"]):
        result = run(env, *command, "--help")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: carbon-magic")
    assert "--since WHEN" in run(env, "report", "--help").stdout
    assert "Exit status" in run(env, "doctor", "--help").stdout


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "required: COMMAND"),
        (["frobnicate"], "invalid choice"),
        (["report", "--top", "0"], "positive whole number"),
        (["report", "--since", "last tuesday"], "today, yesterday"),
        (["report", "--until", "2024-02-30"], "2024-05-01"),
        (["export", "out.csv", "--format", "xlsx"], "'codecarbon', 'csv', 'json'"),
        (["export"], "required: PATH"),
        (["plot"], "--save"),
        (["report", "--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2(env, args, message):
    result = run(env, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_ledger_is_a_one_line_error(env, tmp_path):
    result = run(env, "report")
    assert_one_line_error(result, "no ledger at", "absent.sqlite3", "--ledger")
    result = run(env, "export", tmp_path / "x.csv", "--ledger", tmp_path / "nope.sqlite3")
    assert_one_line_error(result, "nope.sqlite3")
    assert not (tmp_path / "x.csv").exists()


# ---------------------------------------------------------------- report


def cells(ledger_path, **filters):
    from carbon_magic.ledger import read_cells

    return read_cells(ledger_path, **filters)


def table_counts(text):
    """Execution counts in the order of the text table."""
    lines = text.splitlines()
    body = lines[2 : lines.index("")]
    return [int(line.split()[0]) for line in body]


def test_report_lists_every_cell_heaviest_first(env, ledger_path):
    env["CARBON_MAGIC_LEDGER"] = str(ledger_path)  # the default ledger, from the environment
    result = run(env, "report")
    assert result.returncode == 0, result.stderr
    rows = cells(ledger_path)
    expected = [r["execution_count"] for r in sorted(rows, key=lambda r: -r["emissions_g"])]
    assert table_counts(result.stdout) == expected
    assert "Total: 6 cells" in result.stdout
    assert "The 3 heaviest cells account for" in result.stdout
    assert "sum(range(3 * 300_000))" in result.stdout


def test_report_filters(env, ledger_path):
    result = run(env, "report", "--ledger", ledger_path, "--notebook", "work/b.ipynb", "--top", "1")
    assert result.returncode == 0, result.stderr
    assert "Total: 3 cells" in result.stdout
    assert "Showing the 1 heaviest of 3 cells." in result.stdout
    result = run(env, "report", "--ledger", ledger_path, "--kernel", "kernel-a", "--since", "1h")
    assert "Total: 3 cells" in result.stdout
    result = run(env, "report", "--ledger", ledger_path, "--since", "2999-01-01")
    assert result.returncode == 0 and result.stdout.strip() == "No recorded cells."
    result = run(env, "report", "--ledger", ledger_path, "--until", "2000-01-01T00:00Z")
    assert result.stdout.strip() == "No recorded cells."


def test_report_html(env, ledger_path):
    result = run(env, "report", "--ledger", ledger_path, "--html")
    assert result.returncode == 0
    assert result.stdout.startswith('<div class="carbon-magic-report"><table>')
    assert result.stdout.count("<tr>") == 7


# ---------------------------------------------------------------- export and plot


def test_export_codecarbon_then_refuse_then_force(env, ledger_path, tmp_path):
    target = tmp_path / "emissions.csv"
    result = run(env, "export", target, "--ledger", ledger_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote 6 cells to {target} (codecarbon)"
    with open(target, newline="") as stream:
        records = list(csv.DictReader(stream))
    rows = cells(ledger_path)
    assert [float(r["emissions"]) for r in records] == pytest.approx(
        [row["emissions_g"] / 1000 for row in rows]
    )
    assert [float(r["energy_consumed"]) for r in records] == pytest.approx(
        [row["energy_kwh"] for row in rows]
    )
    assert {r["project_name"] for r in records} == set(NOTEBOOKS.values())
    assert {r["country_iso_code"] for r in records} == {"FRA"}
    assert {r["tracking_mode"] for r in records} == {"process"}
    assert all(r["cpu_model"] for r in records)  # from the sessions' hardware

    before = target.read_bytes()
    result = run(env, "export", target, "--ledger", ledger_path, "--kernel", "kernel-a")
    assert_one_line_error(result, "already exists", "--force")
    assert target.read_bytes() == before
    result = run(env, "export", target, "--ledger", ledger_path, "--kernel", "kernel-a", "--force")
    assert result.returncode == 0
    with open(target, newline="") as stream:
        assert len(list(csv.DictReader(stream))) == 3


def test_export_json_round_trips(env, ledger_path, tmp_path):
    from carbon_magic.ledger import measurement_from_row
    from carbon_magic.reports.export_json import read_json_records

    result = run(env, "export", tmp_path, "--format", "json", "--ledger", ledger_path)
    assert result.returncode == 0, result.stderr
    back = read_json_records(tmp_path / "carbon_cells.json")
    assert [measurement_from_row(r) for r in back] == [
        measurement_from_row(r) for r in cells(ledger_path)
    ]


def test_plot_saves_an_image(env, ledger_path, tmp_path):
    target = tmp_path / "plot.png"
    result = run(env, "plot", "--ledger", ledger_path, "--save", target)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"saved {target} (6 cells, 6 power readings)"
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = run(env, "plot", "--ledger", ledger_path, "--since", "2999-01-01", "--save", target)
    assert_one_line_error(result, "nothing to plot")


# ---------------------------------------------------------------- status and doctor


def test_status_describes_this_machine(env):
    env["CARBON_MAGIC_COUNTRY"] = "FR"
    result = run(env, "status")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "sensors:" in text and "ram-model" in text
    assert "methods: cpu modelled" in text  # no RAPL under the empty powercap root
    assert "location: country=FR" in text
    assert "grid: " in text and "FR" in text
    info = json.loads(run(env, "status", "--json").stdout)
    assert info["location"]["country"] == "FR"
    assert info["methods"]["cpu"] == "modelled"
    assert info["ledger"] == {
        "path": env["CARBON_MAGIC_LEDGER"],
        "exists": False,
        "problem": None,
        "exposed": [],
    }
    assert {s["component"] for s in info["sensors"]} >= {"cpu", "ram"}


def test_bad_setting_in_the_environment(env):
    env["CARBON_MAGIC_MODE"] = "everything"
    assert_one_line_error(run(env, "status"), "CARBON_MAGIC_MODE", "process, machine")
    result = run(env, "doctor")
    assert result.returncode == 1
    assert "CARBON_MAGIC_MODE" in result.stdout and "fix:" in result.stdout


def test_doctor_exit_status(env):
    result = run(env, "doctor")
    assert result.returncode == 1
    assert "CARBON_MAGIC_COUNTRY=FR" in result.stdout
    assert "%carbon config country=FR" in result.stdout
    env["CARBON_MAGIC_COUNTRY"] = "FR"
    result = run(env, "doctor")
    if "[fix] GPU" in result.stdout:  # a GPU whose driver is broken on this machine
        pytest.skip("this machine has a GPU problem to fix")
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("nothing to fix")


def fake_info(**changes):
    info = {
        "sensors": [
            {
                "name": "rapl",
                "component": "cpu",
                "available": True,
                "method": "measured",
                "detail": "1 package",
            },
            {
                "name": "nvml",
                "component": "gpu",
                "available": False,
                "method": "measured",
                "detail": "no GPU",
            },
        ],
        "location": {"country": "FR", "cloud_region": None, "zone": None, "postcode": None},
        "intensity": {"source": "static table: FR"},
        "ledger": {"path": "/tmp/carbon-magic-test/ledger.sqlite3", "exists": False},
        "gpu_device": False,
        "notices": [],
    }
    info.update(changes)
    return info


def test_doctor_fixes_rapl_permissions_and_gpu_driver():
    sensors = [
        {
            "name": "rapl",
            "component": "cpu",
            "available": False,
            "method": "measured",
            "detail": permission_fix(),
        },
        {
            "name": "nvml",
            "component": "gpu",
            "available": False,
            "method": "measured",
            "detail": "nvidia-ml-py (module pynvml) is not installed",
        },
    ]
    findings = doctor_findings(fake_info(sensors=sensors, gpu_device=True))
    fixes = {f.topic: f.fix for f in findings if f.fix}
    assert set(fixes) == {"CPU", "GPU"}
    assert "chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj" in fixes["CPU"]
    assert 'SUBSYSTEM=="powercap"' in fixes["CPU"]
    assert fixes["GPU"].startswith("pip install nvidia-ml-py")
    sensors[1]["detail"] = "NVIDIA driver not loaded: no NVIDIA GPU"
    (gpu,) = [
        f for f in doctor_findings(fake_info(sensors=sensors, gpu_device=True)) if f.topic == "GPU"
    ]
    assert "nvidia-smi" in gpu.fix
    text = doctor_text(doctor_findings(fake_info(sensors=sensors, gpu_device=True)))
    assert text.startswith("2 things to fix\n[fix]")


def test_doctor_has_nothing_to_fix_without_gpu_or_rapl():
    sensors = [
        {
            "name": "rapl",
            "component": "cpu",
            "available": False,
            "method": "measured",
            "detail": "no RAPL zones",
        },
        {
            "name": "nvml",
            "component": "gpu",
            "available": False,
            "method": "measured",
            "detail": "no driver",
        },
    ]
    findings = doctor_findings(fake_info(sensors=sensors))
    assert not [f for f in findings if f.fix]
    assert doctor_text(findings).startswith("nothing to fix")
    assert doctor_text([Finding("x", "y", "z")]).startswith("1 thing to fix")


def test_doctor_flags_an_unwritable_ledger_folder(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    info = fake_info(ledger={"path": str(locked / "sub" / "ledger.sqlite3"), "exists": False})
    (ledger,) = [f for f in doctor_findings(info) if f.topic == "ledger"]
    assert ledger.fix and "CARBON_MAGIC_LEDGER" in ledger.fix


@pytest.mark.parametrize("damage", ["garbage", "clobbered", "foreign"])
def test_doctor_finds_a_damaged_ledger(env, damage):
    import sqlite3

    from carbon_magic.ledger import Ledger

    path = Path(env["CARBON_MAGIC_LEDGER"])
    env["CARBON_MAGIC_COUNTRY"] = "FR"
    if damage == "garbage":
        path.write_bytes(b"this is not an SQLite file " * 200)
    elif damage == "foreign":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE notes (text)")
        conn.close()
    else:
        with Ledger(path) as ledger:
            ledger.update_session("s1", tracker_state="running")
            conn = ledger.connection
            conn.execute("CREATE TABLE filler (x)")
            conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 200)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = path.stat().st_size
        with open(path, "r+b") as handle:  # clobber everything past the first pages
            handle.seek(4096 * 2)
            handle.write(b"\xff" * (size - 4096 * 2))
    result = run(env, "doctor")
    assert result.returncode == 1, result.stdout
    assert f"[fix] ledger: {path} cannot be read" in result.stdout, result.stdout
    assert "[ok] ledger" not in result.stdout


def test_status_counts_lost_sessions(env):
    from carbon_magic.ledger import Ledger

    path = Path(env["CARBON_MAGIC_LEDGER"])
    with Ledger(path) as ledger:
        for uuid, started in (("killed", time.time() - 7200), ("live", time.time())):
            ledger.open_session(
                session_uuid=uuid,
                kernel_id=None,
                notebook_path=None,
                host="h",
                pid=1,
                started_at=started,
                interval_s=1.0,
                mode="process",
                hardware={},
                methods={},
                settings={},
                intensity_source="static",
                intensity_g_per_kwh=50.0,
            )
    result = run(env, "status")
    assert result.returncode == 0, result.stderr
    assert "sessions: 1 lost, 1 running" in result.stdout
