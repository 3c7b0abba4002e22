"""Reports, exports and the server over a long ledger written by an older version.

The ledger (schema 3, 20,000 cells) is built by ``benchmarks/make_old_ledger.py``, the
benchmark's own generator; the million-cell timings live in ``benchmarks/bench_scale.py``.
What is checked here does not depend on the machine's speed: the same report and files as
reading every row, memory that does not grow with the cells, SQLite work per server
request that does not grow with the cells, and a report that leaves the cell at once.
"""

import csv
import importlib.util
import json
import queue
import sqlite3
import time
import tracemalloc
from pathlib import Path

import pytest

from carbon_magic import cli
from carbon_magic import ledger as ledger_module
from carbon_magic.ledger import measurement_from_row, read_cells
from carbon_magic.reports.export_json import read_json_records
from carbon_magic.reports.report import build_report
from carbon_magic.server.reader import LedgerReader
from tests.kernels import Kernel

N_CELLS = 20_000
GENERATOR = Path(__file__).parents[1] / "benchmarks" / "make_old_ledger.py"


def load_generator():
    spec = importlib.util.spec_from_file_location("make_old_ledger", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def old_ledger(tmp_path_factory):
    path = tmp_path_factory.mktemp("scale") / "ledger.sqlite3"
    counts = load_generator().build_old_ledger(path, N_CELLS, kernels=10)
    assert counts["cells"] == N_CELLS and counts["cell_clusters"] == N_CELLS // 100
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT value FROM meta").fetchone()[0] == "3"
    check.close()
    return path


def peak_bytes(action):
    """Peak Python memory allocated while ``action()`` runs, bytes."""
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def cli_output(capsys, *args):
    assert cli.main([str(arg) for arg in args]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "filters",
    [[], ["--kernel", "kernel-3"], ["--session", "session-0007"], ["--since", "90m"]],
)
def test_report_top_is_the_report_of_every_row(old_ledger, capsys, filters):
    text = cli_output(capsys, "report", "--top", "5", "--ledger", old_ledger, *filters)
    args = cli.build_parser().parse_args(["report", *filters])
    rows = read_cells(
        old_ledger,
        kernel_id=args.kernel,
        session_uuid=args.session,
        since=args.since,
    )
    assert rows, "the filter selects some cells"
    assert text == str(build_report(rows, top=5)) + "\n"
    assert "Dask cluster" in text or filters  # the cluster part of an old ledger


def test_report_top_memory_does_not_grow_with_the_cells(old_ledger, capsys):
    peak = peak_bytes(lambda: cli.main(["report", "--top", "5", "--ledger", str(old_ledger)]))
    assert "Showing the 5 heaviest of 20000 cells." in capsys.readouterr().out
    # Every row held at once would take tens of MB (about 3 kB a row).
    assert peak < 3_000_000, f"report --top 5 over {N_CELLS} cells peaked at {peak:,} bytes"


@pytest.mark.parametrize("fmt", ["codecarbon", "csv", "json"])
def test_exports_stream_in_constant_memory(old_ledger, tmp_path, capsys, fmt):
    target = tmp_path / f"cells.{fmt}"
    args = ["export", str(target), "--format", fmt, "--ledger", str(old_ledger)]
    # Once first, so what is loaded once (modules, the grid's water table) is not counted.
    cli.main([*args[:1], str(tmp_path / f"warm.{fmt}"), *args[2:]])
    capsys.readouterr()
    peak = peak_bytes(lambda: cli.main(args))
    assert capsys.readouterr().out.startswith(f"wrote {N_CELLS} cells to {target}")
    assert peak < 5_000_000, f"{fmt} export of {N_CELLS} cells peaked at {peak:,} bytes"
    rows = read_cells(old_ledger)
    if fmt == "json":
        back = read_json_records(target)
        assert [measurement_from_row(r) for r in back] == [measurement_from_row(r) for r in rows]
        json.loads(target.read_text())  # one valid document
    else:
        with open(target, newline="", encoding="utf-8") as stream:
            records = list(csv.DictReader(stream))
        assert len(records) == len(rows)
        if fmt == "csv":
            assert [r["cell_id"] for r in records] == [row["cell_id"] for row in rows]
            assert [float(r["emissions_g"]) for r in records] == [
                row["emissions_g"] for row in rows
            ]
            clustered = [r for r in records if r["cluster_kwh"]]
            assert len(clustered) == N_CELLS // 100
        else:
            assert {r["cpu_model"] for r in records} == {"bench CPU"}
            assert {r["gpu_model"] for r in records} == {"1 x NVIDIA H100"}


def count_vm_steps(monkeypatch):
    """A counter of the SQLite virtual-machine steps (in thousands) that connections the
    server's reader opens from now on run: the work per request, whatever the machine's
    speed."""
    steps = {"n": 0}
    opened = ledger_module.connect_readonly

    def counting(path):
        connection = opened(path)

        def tick():
            steps["n"] += 1
            return 0

        connection.set_progress_handler(tick, 1000)
        return connection

    monkeypatch.setattr(ledger_module, "connect_readonly", counting)
    return steps


def test_server_reads_do_not_grow_with_the_cells(old_ledger, tmp_path, monkeypatch):
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(old_ledger.read_bytes())
    with sqlite3.connect(path) as check:
        expected = {
            kernel_id: pytest.approx((kwh, grams))
            for kernel_id, kwh, grams in check.execute(
                "SELECT c.kernel_id, SUM(cc.energy_kwh), SUM(cc.emissions_g) FROM cell_clusters "
                "cc JOIN cells c ON c.id = cc.cell_ref GROUP BY c.kernel_id"
            )
        }
    check.close()
    steps = count_vm_steps(monkeypatch)
    reader = LedgerReader(path)
    now = time.time()
    day_start = now - 3600
    first = reader.snapshot(now, day_start)
    assert {k: (t.energy_kwh, t.emissions_g) for k, t in first.cluster.items()} == expected
    # A tracker writes a heartbeat, another a cell with a Dask cluster part: later
    # requests read what changed, not the cells again.
    with sqlite3.connect(path) as writer:
        writer.execute(
            "INSERT INTO heartbeats (session_id, kernel_id, at, cpu_w, gpu_w, ram_w, energy_kwh, "
            "emissions_g, emissions_low_g, emissions_high_g, embodied_g, intensity_g_per_kwh, "
            "intensity_source, tracker_state) SELECT session_id, kernel_id, ?, cpu_w, gpu_w, "
            "ram_w, energy_kwh, emissions_g, emissions_low_g, emissions_high_g, embodied_g, "
            "intensity_g_per_kwh, intensity_source, tracker_state FROM heartbeats "
            "WHERE id = (SELECT MAX(id) FROM heartbeats)",
            (now,),
        )
        writer.execute(
            "INSERT INTO cells SELECT NULL, session_id, 'kernel-0', cell_id, execution_count, "
            "name, source, via, status, started_at, ended_at, duration_s, cpu_j, gpu_j, ram_j, "
            "energy_kwh, energy_low_kwh, energy_high_kwh, emissions_g, emissions_low_g, "
            "emissions_high_g, embodied_g, intensity_g_per_kwh, intensity_source, pue, mode, "
            "methods_json, devices_json, budget FROM cells WHERE id = 1"
        )
        writer.execute(
            "INSERT INTO cell_clusters VALUES ((SELECT MAX(id) FROM cells), 0, 0.5, 2.0, 0.1)"
        )
    writer.close()
    before = steps["n"]
    second = reader.snapshot(now + 1, day_start)
    per_request = steps["n"] - before
    kernel_0 = second.cluster["kernel-0"]
    assert (kernel_0.energy_kwh, kernel_0.emissions_g) == pytest.approx((0.5, 2.0))
    assert {
        k: (t.energy_kwh, t.emissions_g) for k, t in second.cluster.items() if k != "kernel-0"
    } == expected
    # Summing the 20,000 cells once took this many thousand steps; a request must not.
    assert before > 50, before
    assert per_request < 20, f"{per_request}k SQLite steps for one request over {N_CELLS} cells"
    # Nothing committed since: the same figures, read again from memory, at a new time.
    before = steps["n"]
    third = reader.snapshot(now + 2, day_start)
    assert steps["n"] - before < 1
    assert third.now == now + 2 and third.sessions == second.sessions
    assert third.cluster == second.cluster


def iopub_until(kernel, predicate, timeout_s):
    """IOPub messages until one satisfies ``predicate``; the messages read."""
    messages = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            message = kernel.client.get_iopub_msg(timeout=0.1)
        except queue.Empty:
            continue
        messages.append(message)
        if predicate(message):
            return messages
    raise TimeoutError(f"nothing matched in {timeout_s} s: {[m['msg_type'] for m in messages]}")


@pytest.mark.kernel
def test_kernel_reports_off_the_cell_and_exports_in_constant_memory(old_ledger, tmp_path):
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(old_ledger.read_bytes())
    kernel = Kernel(str(path))
    try:
        kernel.execute("%load_ext carbon_magic")
        # Every report now counts as slow: the cell must not wait for it.
        kernel.execute("import carbon_magic.kernel.report_run as _run; _run.REPORT_WAIT_S = 0.0")
        cell = kernel.execute("%carbon report --all-sessions --top 3", timeout=60)
        shown = cell.of_type("display_data", "execute_result")
        assert cell.reply["content"]["status"] == "ok"
        assert [m["msg_type"] for m in shown] == ["display_data"], cell.text
        assert "Reading the ledger for the report" in cell.text
        display_id = shown[0]["content"]["transient"]["display_id"]
        updates = cell.of_type("update_display_data") or iopub_until(
            kernel, lambda m: m["msg_type"] == "update_display_data", timeout_s=60
        )
        # An export from the kernel streams the ledger's rows too.
        target = tmp_path / "all.csv"
        kernel.execute("import tracemalloc; tracemalloc.start()")
        export = kernel.execute(f"%carbon export {target} --format csv --all-sessions").text
        peak = kernel.execute("print(tracemalloc.get_traced_memory()[1])").text
    finally:
        kernel.shutdown()
    update = updates[-1]["content"]
    assert update["transient"]["display_id"] == display_id
    assert "Showing the 3 heaviest of 200" in update["data"]["text/plain"]
    assert export.startswith("wrote 200") and "records to" in export, export
    with open(target, newline="", encoding="utf-8") as stream:
        assert sum(1 for _ in csv.reader(stream)) > N_CELLS
    assert int(peak) < 5_000_000, f"%carbon export of {N_CELLS} cells peaked at {peak} bytes"
