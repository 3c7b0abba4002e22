"""The notebooks run headless in real kernels (nbclient), end to end, and so does the demo.

Each notebook is executed once per module with a temporary ledger, the country set to
FR and the static intensity table (no network). nbclient stops at any error except in
cells tagged ``raises-exception``, so a completed run means no unexpected error.

The quickstart's ``%carbon plot`` figure is saved as ``build/images/plot.png``;
``make screenshots`` copies it to ``docs/images/`` for the README.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from carbon_magic import ledger as ledger_module

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
DEMO = ROOT / "scripts" / "demo.py"
PLOT_IMAGE = ROOT / "build" / "images" / "plot.png"
CELL_TIMEOUT_S = 120
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def kernel_env(ledger: Path) -> dict[str, str]:
    """This process's environment without carbon_magic settings, plus the test's own."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CARBON_MAGIC_") and key != "ELECTRICITYMAPS_API_TOKEN"
    }
    env.update(
        CARBON_MAGIC_LEDGER=str(ledger),
        CARBON_MAGIC_COUNTRY="FR",
        CARBON_MAGIC_INTENSITY="static",
    )
    return env


@dataclass
class Executed:
    """An executed notebook and the ledger its kernel wrote."""

    nb: Any
    ledger: Path

    def cell(self, cell_id: str) -> Any:
        """The cell with id ``cell_id``."""
        for cell in self.nb.cells:
            if cell.get("id") == cell_id:
                return cell
        raise KeyError(f"no cell {cell_id!r}")

    def text(self, cell_id: str) -> str:
        """Streams and text/plain (or text/markdown) outputs of a cell, joined."""
        parts = []
        for output in self.cell(cell_id).outputs:
            if output.output_type == "stream":
                parts.append(output.text)
            elif output.output_type in ("execute_result", "display_data"):
                data = output.data
                parts.append(data.get("text/markdown") or data.get("text/plain", ""))
            elif output.output_type == "error":
                parts.append(f"{output.ename}: {output.evalue}")
        return "\n".join(parts)

    def rows(self) -> dict[str, dict[str, Any]]:
        """Ledger rows of ``%%carbon`` cells, by name."""
        return {r["name"]: r for r in ledger_module.read_cells(self.ledger) if r["via"] == "magic"}


def execute(name: str, folder: Path) -> Executed:
    """Execute ``notebooks/<name>.ipynb`` in a fresh python3 kernel."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    ledger = folder / "ledger.sqlite3"
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute(env=kernel_env(ledger))
    return Executed(nb, ledger)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Executed:
    return execute("quickstart", tmp_path_factory.mktemp("quickstart"))


@pytest.fixture(scope="module")
def showcase(tmp_path_factory: pytest.TempPathFactory) -> Executed:
    return execute("showcase", tmp_path_factory.mktemp("showcase"))


def error_outputs(nb: Any) -> list[tuple[str, Any]]:
    """(cell id, error output) for every error in the executed notebook."""
    return [
        (cell.get("id"), output)
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]


def stderr_tracebacks(nb: Any) -> list[str]:
    """stderr streams that carry a traceback or a carbon_magic failure notice."""
    return [
        output.text
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
        and output.name == "stderr"
        and ("Traceback" in output.text or "failed" in output.text)
    ]


# ---------------------------------------------------------------- committed state


@pytest.mark.parametrize("name", ["quickstart", "showcase"])
def test_notebook_is_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert (nb.nbformat, nb.nbformat_minor) >= (4, 5)
    assert nb.metadata.kernelspec.name == "python3"
    ids = [cell.get("id") for cell in nb.cells]
    assert all(ids) and len(set(ids)) == len(ids)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.id


# ---------------------------------------------------------------- quickstart


@pytest.mark.kernel
def test_quickstart_runs_without_errors(quickstart: Executed) -> None:
    assert error_outputs(quickstart.nb) == []
    assert stderr_tracebacks(quickstart.nb) == []


@pytest.mark.kernel
def test_quickstart_carbon_cells_show_a_panel_and_return_their_value(quickstart: Executed) -> None:
    for cell_id, name in (("matmul", "matmul"), ("svd", "svd"), ("lstsq", "least-squares")):
        outputs = quickstart.cell(cell_id).outputs
        panels = [o for o in outputs if o.output_type == "display_data"]
        assert panels and panels[-1].data["text/plain"].startswith(f"carbon: {name}:")
        assert "text/html" in panels[-1].data
        assert [o for o in outputs if o.output_type == "execute_result"], cell_id
    last = quickstart.text("last")
    assert last.startswith("<Measurement ") and "CO2e" in last


@pytest.mark.kernel
def test_quickstart_status_and_report(quickstart: Executed) -> None:
    status = quickstart.text("status")
    assert "tracker: running" in status and "process mode" in status
    assert "FR" in status and "ledger: ok" in status
    report = quickstart.text("report")
    for name in ("matmul", "svd", "least-squares", "import numpy as np"):
        assert name in report
    assert "Total:" in report and "Embodied" in report


@pytest.mark.kernel
def test_quickstart_plot_is_a_png_image(quickstart: Executed) -> None:
    images = [
        o.data["image/png"]
        for o in quickstart.cell("plot").outputs
        if o.output_type in ("execute_result", "display_data") and "image/png" in o.data
    ]
    assert images, "%carbon plot showed no image/png output"
    png = base64.b64decode(images[-1])
    assert png.startswith(PNG_MAGIC)
    PLOT_IMAGE.parent.mkdir(parents=True, exist_ok=True)
    PLOT_IMAGE.write_bytes(png)


@pytest.mark.kernel
def test_quickstart_card(quickstart: Executed) -> None:
    card = quickstart.text("card")
    assert "co2_eq_emissions" in card
    assert '"fine-tuning"' in card and 'geographical_location: "FR"' in card


@pytest.mark.kernel
def test_quickstart_cells_are_in_the_ledger(quickstart: Executed) -> None:
    magic = quickstart.rows()
    assert set(magic) == {"matmul", "svd", "least-squares"}
    assert all(row["emissions_g"] > 0 and row["energy_kwh"] > 0 for row in magic.values())
    auto = [r for r in ledger_module.read_cells(quickstart.ledger) if r["via"] == "auto"]
    assert any(r["source"] == "import numpy as np" for r in auto)


# ---------------------------------------------------------------- showcase


@pytest.mark.kernel
def test_showcase_only_the_tagged_cell_raises_and_it_is_the_budget(showcase: Executed) -> None:
    errors = error_outputs(showcase.nb)
    assert [(cell_id, output.ename) for cell_id, output in errors] == [
        ("budget-stop", "BudgetExceeded")
    ]
    assert "raises-exception" in showcase.cell("budget-stop").metadata["tags"]
    assert stderr_tracebacks(showcase.nb) == []


@pytest.mark.kernel
def test_showcase_budgets(showcase: Executed) -> None:
    assert "exceeded" in showcase.text("budget-tight")
    assert "stopped by budget" in showcase.text("budget-stop-last")
    rows = showcase.rows()
    assert rows["svd-5mg-budget"]["budget"] == "5mg"
    assert rows["svd-5mg-budget"]["status"] == "ok"
    assert rows["over-1J"]["status"] == "ok"
    capped = rows["capped-2J"]
    assert capped["status"] == "stopped by budget"
    assert capped["duration_s"] < 15  # the cell would have run for 20 s


@pytest.mark.kernel
def test_showcase_embodied_beside_operational(showcase: Executed) -> None:
    lines = showcase.text("embodied-compare").splitlines()
    assert len(lines) == 2 and all("operational" in x and "embodied" in x for x in lines)
    rows = showcase.rows()
    for name in ("matmul-ccf-embodied", "matmul-bloom-embodied"):
        assert rows[name]["embodied_g"] > 0 and rows[name]["emissions_g"] > 0
    settings = json.loads(ledger_module.read_sessions(showcase.ledger)[-1]["settings_json"])
    assert settings["embodied_server_kg"] == 1000  # restored by the notebook


@pytest.mark.kernel
def test_showcase_machine_mode_charges_more_than_process_mode(showcase: Executed) -> None:
    rows = showcase.rows()
    process, machine = rows["wait-process-mode"], rows["wait-machine-mode"]
    assert (process["mode"], machine["mode"]) == ("process", "machine")
    assert machine["energy_kwh"] > process["energy_kwh"]
    assert rows["loop"]["mode"] == "process"  # the notebook switched back


@pytest.mark.kernel
def test_showcase_vectorised_is_cheaper(showcase: Executed) -> None:
    report = showcase.text("optimise-report")
    assert "loop" in report and "vectorised" in report
    rows = showcase.rows()
    assert rows["vectorised"]["emissions_g"] < rows["loop"]["emissions_g"]
    conclusion = showcase.text("conclusion")
    assert "The vectorised version emitted" in conclusion
    assert "less CO2e than the loop" in conclusion


# ---------------------------------------------------------------- scripts/demo.py


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEMO), *args],
        env=kernel_env(tmp_path / "ledger.sqlite3"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.kernel
def test_demo_prints_the_per_cell_table(tmp_path: Path) -> None:
    output = tmp_path / "quickstart.executed.ipynb"
    result = run_demo(tmp_path, "--output", str(output))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"Ledger: {tmp_path / 'ledger.sqlite3'}" in out
    assert "CO2e (range)" in out and "Total:" in out
    for name in ("matmul", "svd", "least-squares"):
        assert name in out
    assert "carbon-magic report --kernel" in out
    executed = nbformat.read(output, as_version=4)
    assert any(cell.get("outputs") for cell in executed.cells)


@pytest.mark.kernel
def test_demo_fails_clearly_when_the_notebook_fails(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ipynb"
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("%load_ext carbon_magic"),
            nbformat.v4.new_code_cell("1 / 0"),
        ]
    )
    nbformat.write(nb, broken)
    output = tmp_path / "broken.executed.ipynb"
    result = run_demo(tmp_path, "--notebook", str(broken), "--output", str(output))
    assert result.returncode == 1
    assert "the notebook failed" in result.stderr and "ZeroDivisionError" in result.stderr
    assert output.exists()  # the partial notebook is kept for inspection
