import csv
import json
import os
import platform
import socket
import sys
import uuid
from datetime import datetime, timezone

import pytest

from carbon_magic.engine.water import grid_water_intensity
from carbon_magic.reports.export import export_records, to_dataframe
from carbon_magic.reports.export_flat import FLAT_COLUMNS
from carbon_magic.reports.export_json import read_json_records
from tests.test_report import make_row

# CodeCarbon's emissions.csv header, written out here rather than imported, so that a
# change of the exporter's column list cannot pass unnoticed.
CODECARBON_HEADER = (
    "timestamp,project_name,run_id,experiment_id,duration,emissions,emissions_rate,"
    "cpu_power,gpu_power,ram_power,cpu_energy,gpu_energy,ram_energy,energy_consumed,"
    "water_consumed,country_name,country_iso_code,region,cloud_provider,cloud_region,os,"
    "python_version,codecarbon_version,cpu_count,cpu_model,gpu_count,gpu_model,longitude,"
    "latitude,ram_total_size,tracking_mode,cpu_utilization_percent,gpu_utilization_percent,"
    "ram_utilization_percent,ram_used_gb,on_cloud,pue,wue"
).split(",")

HARDWARE = {
    "cpu_model": "Intel Xeon Gold 6338",
    "n_cpus": 16,
    "ram_gb": 128.0,
    "gpus": {"gpu0": "NVIDIA H200", "gpu1": "NVIDIA H200"},
}


def cc_row(**overrides):
    """10 s, 3600 J CPU + 7200 J GPU + 360 J RAM at PUE 1.5, 2.5 g."""
    it_j = 3600.0 + 7200.0 + 360.0
    row = make_row(
        1,
        2.5,
        duration_s=10.0,
        cpu_j=3600.0,
        gpu_j=7200.0,
        ram_j=360.0,
        pue=1.5,
        energy_kwh=it_j * 1.5 / 3.6e6,
        hardware_json=json.dumps(HARDWARE),
        settings_json=json.dumps({"country": "FR", "cloud_region": None}),
    )
    row.update(overrides)
    return row


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.reader(stream))


def test_codecarbon_columns_order_and_units(tmp_path):
    row = cc_row()
    path = export_records([row], tmp_path / "emissions.csv")
    header, values = read_csv(path)
    assert header == CODECARBON_HEADER
    got = dict(zip(header, values, strict=True))
    assert got["timestamp"] == datetime.fromtimestamp(row["ended_at"], timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    assert got["project_name"] == "work/analysis.ipynb"
    assert got["run_id"] == "session-1"
    assert got["experiment_id"] == ""
    assert float(got["duration"]) == 10.0
    assert float(got["emissions"]) == pytest.approx(2.5 / 1000)  # kg
    assert float(got["emissions_rate"]) == pytest.approx(2.5 / 1000 / 10)  # kg/s
    # powers: IT mean over the cell, W
    assert float(got["cpu_power"]) == pytest.approx(360.0)
    assert float(got["gpu_power"]) == pytest.approx(720.0)
    assert float(got["ram_power"]) == pytest.approx(36.0)
    # energies: kWh including PUE, as CodeCarbon does; they add up to energy_consumed
    assert float(got["cpu_energy"]) == pytest.approx(3600 * 1.5 / 3.6e6)
    assert float(got["gpu_energy"]) == pytest.approx(7200 * 1.5 / 3.6e6)
    assert float(got["ram_energy"]) == pytest.approx(360 * 1.5 / 3.6e6)
    assert float(got["energy_consumed"]) == pytest.approx(11160 * 1.5 / 3.6e6)
    assert sum(float(got[f"{c}_energy"]) for c in ("cpu", "gpu", "ram")) == pytest.approx(
        float(got["energy_consumed"])
    )
    # Water: no cooling water off a data centre (wue 0), the French grid's water.
    grid_l_per_kwh, _ = grid_water_intensity("FR")
    assert float(got["wue"]) == 0.0
    assert float(got["water_consumed"]) == pytest.approx(
        (grid_l_per_kwh or 0.0) * float(got["energy_consumed"])
    )
    assert (got["country_name"], got["country_iso_code"]) == ("France", "FRA")
    assert (got["region"], got["cloud_provider"], got["cloud_region"]) == ("", "", "")
    assert got["os"] == platform.platform()  # same host as the row
    assert got["python_version"] == platform.python_version()
    assert got["codecarbon_version"] == "carbon_magic 0.1.0"
    assert float(got["cpu_count"]) == 16
    assert got["cpu_model"] == "Intel Xeon Gold 6338"
    assert int(got["gpu_count"]) == 2
    assert got["gpu_model"] == "2 x NVIDIA H200"
    assert (got["longitude"], got["latitude"]) == ("", "")
    assert float(got["ram_total_size"]) == 128.0
    assert got["tracking_mode"] == "process"
    for unknown in ("cpu_utilization_percent", "gpu_utilization_percent"):
        assert got[unknown] == ""
    assert (got["ram_utilization_percent"], got["ram_used_gb"]) == ("", "")
    assert got["on_cloud"] == "N"
    assert float(got["pue"]) == 1.5


def test_codecarbon_defaults_cloud_and_hardware_argument(tmp_path):
    row = make_row(
        1,
        1.0,
        notebook_path=None,
        host="another-host",
        settings_json=json.dumps({"cloud_region": "aws:eu-west-3"}),
        duration_s=0.0,
    )
    path = export_records([row, make_row(2, 2.0)], tmp_path / "e.csv", hardware=HARDWARE)
    header, first, second = read_csv(path)
    got = dict(zip(header, first, strict=True))
    assert got["project_name"] == "carbon_magic"
    assert (got["cloud_provider"], got["cloud_region"], got["on_cloud"]) == (
        "aws",
        "eu-west-3",
        "Y",
    )
    assert float(got["emissions_rate"]) == 0.0 and float(got["cpu_power"]) == 0.0
    assert got["os"] == ""  # another host: not this machine's platform
    assert got["cpu_model"] == "Intel Xeon Gold 6338"  # from the hardware argument
    assert dict(zip(header, second, strict=True))["gpu_model"] == "2 x NVIDIA H200"


def test_apple_neural_engine_is_not_counted_as_a_gpu(tmp_path):
    apple = {
        "cpu_model": "Apple M3 Max",
        "n_cpus": 16,
        "gpus": {"apple:gpu": "Apple M3 Max GPU", "apple:ane": "Apple M3 Max Neural Engine"},
    }
    path = export_records([cc_row(hardware_json=json.dumps(apple))], tmp_path / "e.csv")
    header, values = read_csv(path)
    got = dict(zip(header, values, strict=True))
    assert int(got["gpu_count"]) == 1
    assert got["gpu_model"] == "1 x Apple M3 Max GPU"
    # The Neural Engine's energy stays in the GPU figures.
    assert float(got["gpu_energy"]) == pytest.approx(7200 * 1.5 / 3.6e6)


def test_codecarbon_export_reads_back_with_pandas(tmp_path):
    pandas = pytest.importorskip("pandas")
    rows = [cc_row(), cc_row(id=2, execution_count=2, emissions_g=5.0)]
    frame = pandas.read_csv(export_records(rows, tmp_path / "emissions.csv"))
    assert list(frame.columns) == CODECARBON_HEADER
    assert frame["emissions"].tolist() == pytest.approx([0.0025, 0.005])
    assert frame["energy_consumed"].dtype.kind == "f"


def test_codecarbon_reader_accepts_the_file(tmp_path):
    pytest.importorskip("codecarbon")
    from dataclasses import fields

    from codecarbon.output_methods.emissions_data import EmissionsData
    from codecarbon.output_methods.file import FileOutput

    path = export_records([cc_row()], tmp_path / "emissions.csv")
    with open(path, newline="") as stream:
        (record,) = list(csv.DictReader(stream))
    data = EmissionsData(**{f.name: record.get(f.name, "") for f in fields(EmissionsData)})
    output = FileOutput("emissions.csv", str(tmp_path))
    assert output.has_valid_headers(data)


def test_flat_csv_keeps_ranges_and_methods(tmp_path):
    row = make_row(1, 2.0, gpu_j=5.0)
    header, values = read_csv(export_records([row], tmp_path / "cells.csv", fmt="csv"))
    assert header == list(FLAT_COLUMNS)
    got = dict(zip(header, values, strict=True))
    assert float(got["emissions_low_g"]) == pytest.approx(1.2)
    assert float(got["emissions_high_g"]) == pytest.approx(3.0)
    assert float(got["energy_low_kwh"]) == pytest.approx(row["energy_low_kwh"])
    assert (got["method_cpu"], got["method_gpu"], got["method_ram"]) == ("measured", "", "assumed")
    assert json.loads(got["devices"]) == {"package-0": 100.0}
    assert datetime.fromisoformat(got["started_at"]).timestamp() == pytest.approx(row["started_at"])
    assert got["budget"] == ""


# Times where rounding to the microsecond matters: a whole second, a fraction that rounds
# up into the next second, halves (rounded to even, as datetime does), a negative time.
EDGE_TIMES = [
    1.7e9,
    1.7e9 + 0.9999996,
    1.7e9 + 0.0000005,
    1.7e9 + 0.0000015,
    1796658165.4893057,
    1796658164.611508,
    0.0,
    -1.5,
    -0.0000004,
]


@pytest.mark.parametrize("moment", EDGE_TIMES)
def test_exported_times_are_those_of_datetime(moment):
    from carbon_magic.reports.export_codecarbon import codecarbon_record
    from carbon_magic.reports.export_flat import flat_record

    row = make_row(1, 2.0, started_at=moment, duration_s=0.0)
    expected = datetime.fromtimestamp(moment, tz=timezone.utc)
    record = flat_record(row)
    assert record["started_at"] == record["ended_at"] == expected.isoformat()
    assert codecarbon_record(row)["timestamp"] == expected.isoformat(timespec="seconds")[:19]


def test_refuses_to_overwrite_without_force(tmp_path):
    target = tmp_path / "emissions.csv"
    target.write_text("keep me")
    with pytest.raises(FileExistsError, match="--force"):
        export_records([make_row()], target)
    assert target.read_text() == "keep me"
    export_records([make_row()], target, force=True)
    assert read_csv(target)[0] == CODECARBON_HEADER


def test_the_file_gets_ordinary_permissions(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    written = export_records([make_row()], tmp_path / "e.csv")
    assert written.stat().st_mode == plain.stat().st_mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv", "plain.txt"]


def test_unknown_format_names_the_choices_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="codecarbon, csv, json"):
        export_records([make_row()], tmp_path / "x.parquet", fmt="parquet")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_gets_the_default_name(tmp_path):
    assert export_records([make_row()], tmp_path).name == "emissions.csv"
    assert export_records([make_row()], tmp_path, fmt="json").name == "carbon_cells.json"
    with pytest.raises(FileExistsError):
        export_records([make_row()], tmp_path)


def test_a_failed_write_leaves_no_file(tmp_path):
    bad_row = make_row()
    bad_row["duration_s"] = "not a number"
    with pytest.raises(ValueError):
        export_records([bad_row], tmp_path / "e.csv")
    assert list(tmp_path.iterdir()) == []


def measured_ledger_rows(tmp_path):
    """Cells measured by a real tracker, stored by the real Ledger, read back."""
    from carbon_magic.engine.tracker import Tracker
    from carbon_magic.ledger import Ledger, read_cells
    from carbon_magic.settings import Settings

    tracker = Tracker(Settings(environ={}))
    tracker.settings.update(country="FR", powercap_root=str(tmp_path / "no-rapl"))
    path = tmp_path / "ledger.sqlite3"
    session = str(uuid.uuid4())
    try:
        tracker.start()
        intensity = tracker.intensity()
        with Ledger(path) as ledger:
            ledger.open_session(
                session_uuid=session,
                kernel_id="kernel-1",
                notebook_path="nb.ipynb",
                host=socket.gethostname(),
                pid=os.getpid(),
                started_at=1.7e9,
                interval_s=1.0,
                mode="process",
                hardware=tracker.hardware(),
                methods=tracker.methods(),
                settings=tracker.settings.as_dict(),
                intensity_source=intensity.source,
                intensity_g_per_kwh=intensity.g_per_kwh,
            )
            for n in (1, 2):
                with tracker.measure(f"step {n}") as m:
                    sum(range(200_000 * n))
                m.execution_count, m.source = n, f"sum(range({n}))"
                ledger.record_cell(session, m, via="api", budget="5g" if n == 2 else None)
    finally:
        tracker.close()
    return read_cells(path)


def test_json_round_trips_into_measurements(tmp_path):
    from carbon_magic.ledger import measurement_from_row

    rows = measured_ledger_rows(tmp_path)
    assert len(rows) == 2 and rows[0]["emissions_g"] > 0
    path = export_records(rows, tmp_path / "cells.json", fmt="json")
    document = json.loads(path.read_text())
    assert document["format"] == "carbon_magic.cells"
    first = document["records"][0]
    assert first["methods"] == {"cpu": "modelled", "ram": "assumed"}
    assert "methods_json" not in first
    assert first["emissions_low_g"] <= first["emissions_g"] <= first["emissions_high_g"]
    back = read_json_records(path)
    assert [measurement_from_row(r) for r in back] == [measurement_from_row(r) for r in rows]
    for original, restored in zip(rows, back, strict=True):
        assert restored.keys() == original.keys()
        for key in ("methods_json", "devices_json"):
            assert json.loads(restored[key]) == json.loads(original[key])
    assert back[1]["budget"] == "5g"


def test_read_json_records_refuses_other_files(tmp_path):
    other = tmp_path / "other.json"
    other.write_text('{"records": []}')
    with pytest.raises(ValueError, match="not a carbon_magic JSON export"):
        read_json_records(other)


def test_to_dataframe_types_the_columns():
    pandas = pytest.importorskip("pandas")
    rows = [make_row(1, 1.0), make_row(2, 3.0)]
    frame = to_dataframe(rows)
    assert list(frame.columns) == list(FLAT_COLUMNS)
    assert len(frame) == 2
    assert isinstance(frame["started_at"].dtype, pandas.DatetimeTZDtype)
    assert str(frame["started_at"].dt.tz) == "UTC"
    assert frame["ended_at"][1].timestamp() == pytest.approx(rows[1]["ended_at"])
    assert frame["emissions_g"].sum() == pytest.approx(4.0)
    assert frame["method_cpu"].tolist() == ["measured", "measured"]


def test_to_dataframe_without_pandas_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` fail
    with pytest.raises(ImportError, match="pip install pandas"):
        to_dataframe([make_row()])


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_exports_redact_secret_settings_in_sources(tmp_path, fmt):
    # A row stored before sources were redacted on the way in.
    row = make_row(1, 2.0, source="%carbon config electricitymaps_token=s3cr3t-t0k3n")
    path = export_records([row], tmp_path / f"cells.{fmt}", fmt=fmt)
    text = path.read_text(encoding="utf-8")
    assert "s3cr3t-t0k3n" not in text
    assert "electricitymaps_token=***" in text
