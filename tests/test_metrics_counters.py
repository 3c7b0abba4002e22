"""``/metrics`` counters only grow, whatever a kernel does to its running totals: scraped
from a real Jupyter server while its real kernel switches mode and resets its totals."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .jupyter_servers import JupyterServer

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(300)]

BUSY = "import time\n_end = time.time() + {s}\nwhile time.time() < _end:\n    pass"
# (counter family, the ledger's cells column it sums)
KERNEL_COUNTERS = {
    "carbon_magic_energy_kwh": "energy_kwh",
    "carbon_magic_emissions_grams": "emissions_g",
    "carbon_magic_embodied_grams": "embodied_g",
}
LEDGER_COUNTERS = {
    "carbon_magic_ledger_energy_kwh": "energy_kwh",
    "carbon_magic_ledger_emissions_grams": "emissions_g",
    "carbon_magic_ledger_embodied_grams": "embodied_g",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[JupyterServer]:
    started = JupyterServer("carol", tmp_path / "carol", {"heartbeat_period_s": 2.0})
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


def scrape(server: JupyterServer, kernel_id: str) -> dict[str, float]:
    """Every ``*_total`` counter of the kernel and of the ledger, from one scrape."""
    _, body = server.request("GET", "carbon-magic/metrics")
    counters = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.type != "counter":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("kernel_id", kernel_id) == (
                kernel_id
            ):
                counters[sample.name] = sample.value
    return counters


def cell_sums(ledger: Path, kernel_id: str | None) -> dict[str, float]:
    """The sums of the ledger's cells (of one kernel, or all), by column."""
    connection = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        where, params = ("WHERE kernel_id = ?", (kernel_id,)) if kernel_id else ("", ())
        row = connection.execute(
            f"SELECT TOTAL(energy_kwh), TOTAL(emissions_g), TOTAL(embodied_g) FROM cells {where}",
            params,
        ).fetchone()
    finally:
        connection.close()
    return dict(zip(("energy_kwh", "emissions_g", "embodied_g"), row, strict=True))


def test_counters_never_go_down_across_mode_switches_and_resets(server):
    kernel_id = server.open_notebook("counted.ipynb")
    steps = [
        "%load_ext carbon_magic\n" + BUSY.format(s=2),
        "%carbon config mode=machine",
        BUSY.format(s=2),
        "%carbon reset",
        BUSY.format(s=2),
        "%carbon config mode=process",
        BUSY.format(s=2),
    ]
    scrapes = []
    for code in steps:
        result = server.execute(kernel_id, code)
        assert result.status == "ok", (code, result.error)
        time.sleep(2.5)  # a heartbeat with the kernel's running totals after the step
        scrapes.append(scrape(server, kernel_id))
    names = [f"{name}_total" for name in (*KERNEL_COUNTERS, *LEDGER_COUNTERS)]
    for name in names:
        series = [counters[name] for counters in scrapes]
        assert series == sorted(series), (name, series)  # a drop reads as a counter reset
        assert series[-1] > series[0], (name, series)
    # They are the sums of the cells the ledger recorded (once the last one is written).
    deadline = time.monotonic() + 15
    while True:
        final = scrape(server, kernel_id)
        kernel_cells = cell_sums(server.ledger, kernel_id)
        ledger_cells = cell_sums(server.ledger, None)
        expected = {
            f"{name}_total": kernel_cells[column] for name, column in KERNEL_COUNTERS.items()
        }
        expected.update(
            {f"{name}_total": ledger_cells[column] for name, column in LEDGER_COUNTERS.items()}
        )
        if all(final[name] == pytest.approx(value, rel=1e-9) for name, value in expected.items()):
            break
        assert time.monotonic() < deadline, (final, expected)
        time.sleep(0.5)
    assert final["carbon_magic_energy_kwh_total"] > 0
