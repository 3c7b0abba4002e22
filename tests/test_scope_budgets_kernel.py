"""Notebook and day caps in real kernels sharing one ledger: two kernels of one notebook
share its cap, a new kernel keeps what was spent, warn once, stop plain and %%carbon
cells (and quick cells still run), the status lines."""

from __future__ import annotations

import sqlite3
import time

import pytest

from .kernels import Kernel

pytestmark = pytest.mark.kernel

BUSY = "import time\n_end = time.time() + {s}\nwhile time.time() < _end:\n    pass\n"
STOP_LINE = "BudgetExceeded: carbon notebook budget 2J spent; cell stopped"


def _kernel(ledger: str, notebook: str, **env: str) -> Kernel:
    kernel = Kernel(
        ledger,
        {
            "JPY_SESSION_NAME": notebook,
            "CARBON_MAGIC_INTERVAL": "0.25",
            "CARBON_MAGIC_MODE": "machine",
            **env,
        },
    )
    assert kernel.execute("%load_ext carbon_magic").reply["content"]["status"] == "ok"
    return kernel


def _statuses(ledger: str) -> list[tuple[str, str]]:
    deadline = time.monotonic() + 10
    while True:
        try:
            with sqlite3.connect(ledger) as conn:
                return conn.execute(
                    "SELECT COALESCE(NULLIF(c.name, ''), c.source), c.status FROM cells c ORDER BY c.id"
                ).fetchall()
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _wait_for(ledger: str, source: str) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = [status for src, status in _statuses(ledger) if src == source]
        if found:
            return found[-1]
        time.sleep(0.2)
    raise AssertionError(f"no record of {source!r}: {_statuses(ledger)}")


def test_a_notebook_cap_stops_cells_across_kernels_and_restarts(tmp_path):
    ledger = str(tmp_path / "ledger.sqlite3")
    # Machine mode: the whole CPU's modelled power, so a busy second is well over 2 J.
    first = _kernel(ledger, "work/nb.ipynb")
    try:
        config = first.execute("%carbon config budget_notebook=2J budget_scope_on_exceed=stop")
        assert config.reply["content"]["status"] == "ok", config.text
        started = time.monotonic()
        run = first.execute("# plain\n" + BUSY.format(s=30), timeout=60)
        assert time.monotonic() - started < 15  # stopped, not run to its end
        assert run.error["ename"] == "BudgetExceeded"
        assert run.error["traceback"] == [
            STOP_LINE + " (raise it with %carbon config budget_notebook=..., or set it to none)"
        ]
        assert _wait_for(ledger, "# plain") == "stopped by budget (notebook)"
        # A quick cell still runs: the notebook stays usable.
        quick = first.execute("21 * 2")
        assert quick.result == "42" and quick.error is None
        # A %%carbon cell that spends more is stopped at once too.
        magic = first.execute("%%carbon --quiet --name magic\n" + BUSY.format(s=30), timeout=60)
        assert magic.error["ename"] == "BudgetExceeded", magic.text
        assert STOP_LINE in magic.error["evalue"] or STOP_LINE in "".join(magic.error["traceback"])
        status = first.execute("%carbon status").text
        assert "notebook budget 2J:" in status and "on exceed: stop" in status
    finally:
        first.shutdown()
    assert _wait_for(ledger, "magic") == "stopped by budget (notebook)"

    # A new kernel of the same notebook (a restart, or a second kernel) starts over the cap
    # from the ledger; another notebook is not capped by it.
    again = _kernel(
        ledger,
        "work/nb.ipynb",
        CARBON_MAGIC_BUDGET_NOTEBOOK="2J",
        CARBON_MAGIC_BUDGET_ON_EXCEED="stop",
    )
    other = _kernel(
        ledger,
        "work/other.ipynb",
        CARBON_MAGIC_BUDGET_NOTEBOOK="2J",
        CARBON_MAGIC_BUDGET_ON_EXCEED="stop",
    )
    try:
        run = again.execute("# after restart\n" + BUSY.format(s=30), timeout=60)
        assert run.error is not None and run.error["ename"] == "BudgetExceeded"
        fine = other.execute("# other notebook\n" + BUSY.format(s=0.2))
        assert fine.error is None
    finally:
        again.shutdown()
        other.shutdown()
    assert _wait_for(ledger, "# after restart") == "stopped by budget (notebook)"
    assert _wait_for(ledger, "# other notebook") == "ok"


def test_a_day_cap_warns_once(tmp_path):
    ledger = str(tmp_path / "ledger.sqlite3")
    kernel = _kernel(ledger, "day.ipynb", CARBON_MAGIC_BUDGET_DAY="1J")
    try:
        first = kernel.execute("# one\n" + BUSY.format(s=1.5))
        assert first.error is None
        lines = [line for line in first.text.splitlines() if "day budget" in line]
        assert (
            len(lines) == 1
            and lines[0].startswith("carbon day budget 1J: ")
            and lines[0].endswith("; exceeded")
        ), first.text
        second = kernel.execute("# two\n" + BUSY.format(s=1.5))
        assert second.error is None and "day budget" not in second.text
        assert "day budget 1J:" in kernel.execute("%carbon status").text
    finally:
        kernel.shutdown()
    assert _wait_for(ledger, "# two") == "ok"
