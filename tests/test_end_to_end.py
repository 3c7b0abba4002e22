"""Real kernels writing the ledger, then the command line and secrets checked on it."""

import csv
import subprocess
import sys

import pytest

from .fake_grid_apis import FakeElectricityMaps
from .kernels import Kernel

pytestmark = pytest.mark.kernel

WORK = (
    "%%carbon --name {name}\nimport numpy as np\nnp.linalg.svd(np.random.rand(300, 300))[1].sum()"
)


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "carbon_magic.cli", *args], capture_output=True, text=True
    )


def test_cli_reads_a_ledger_written_by_a_real_kernel(tmp_path):
    ledger = str(tmp_path / "ledger.sqlite3")
    kernel = Kernel(ledger)
    try:
        kernel.execute("%load_ext carbon_magic")
        for name in ("svd-a", "svd-b"):
            assert kernel.execute(WORK.format(name=name)).reply["content"]["status"] == "ok"
        kernel.execute("%unload_ext carbon_magic")
    finally:
        kernel.shutdown()
    report = cli("report", "--ledger", ledger, "--kernel", kernel.kernel_id)
    assert report.returncode == 0, report.stderr
    assert "svd-a" in report.stdout and "svd-b" in report.stdout
    out = tmp_path / "emissions.csv"
    export = cli("export", str(out), "--ledger", ledger, "--kernel", kernel.kernel_id)
    assert export.returncode == 0, export.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) >= 2 and all(float(r["emissions"]) > 0 for r in rows)
    again = cli("export", str(out), "--ledger", ledger)
    assert again.returncode == 1 and "--force" in again.stderr
    image = tmp_path / "plot.png"
    plot = cli("plot", "--save", str(image), "--ledger", ledger)
    assert plot.returncode == 0, plot.stderr
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = cli("report", "--ledger", str(tmp_path / "nope.sqlite3"))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


def test_token_never_reaches_the_ledger_or_output(tmp_path):
    token = "sekrit-token-4242"
    ledger = tmp_path / "ledger.sqlite3"
    with FakeElectricityMaps(token=token, intensity=300) as api:
        kernel = Kernel(
            str(ledger),
            {
                "ELECTRICITYMAPS_API_TOKEN": token,
                "CARBON_MAGIC_ELECTRICITYMAPS_URL": api.url,
                "CARBON_MAGIC_ZONE": "DE",
            },
        )
        try:
            kernel.execute("%load_ext carbon_magic")
            kernel.execute(
                "import carbon_magic; carbon_magic.get_tracker().intensity_provider.refresh(wait_s=5)"
            )
            outputs = [
                kernel.execute(code).text
                for code in (
                    "x = 1",
                    "%carbon status",
                    "%carbon config",
                    "%config CarbonMagics",
                    "%carbon last",
                    "carbon_magic.current_settings()",
                )
            ]
            kernel.execute("%unload_ext carbon_magic")
        finally:
            kernel.shutdown()
        assert any(r.headers.get("auth-token") == token for r in api.requests)
    assert "Electricity Maps DE" in outputs[1]
    for text in outputs:
        assert token not in text
    for path in tmp_path.iterdir():
        assert token.encode() not in path.read_bytes(), path
