"""Run the quickstart notebook headless and print what each of its cells cost.

Called by ``make demo``. Executes ``notebooks/quickstart.ipynb`` in a fresh ``python3``
kernel (the one of the Python running this script), writes the executed notebook to
``build/quickstart.executed.ipynb`` and prints the per-cell table with totals, read
back from the ledger for the session the notebook created.

The records go to the ledger a notebook would use: ``$CARBON_MAGIC_LEDGER`` when set,
else ``jupyter_data_dir()/carbon_magic/ledger.sqlite3``. Exit status: 0 on success,
1 when the notebook fails or nothing was recorded, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
DEFAULT_OUTPUT = ROOT / "build" / "quickstart.executed.ipynb"
LEDGER_ENV = "CARBON_MAGIC_LEDGER"


def ledger_path() -> Path:
    """The ledger the kernel will write: ``$CARBON_MAGIC_LEDGER``, else the default."""
    from carbon_magic.ledger import default_ledger_path

    return default_ledger_path()


def execute_notebook(
    notebook: Path, output: Path, kernel_log: Path, kernel_id: str, timeout_s: float
) -> tuple[Any, Exception | None]:
    """Execute ``notebook`` in a new kernel whose connection file is ``kernel-<kernel_id>.json``.

    The kernel's working directory is the notebook's folder; ``JPY_SESSION_NAME`` is set
    to the notebook's path, as Jupyter Server does, so the ledger knows the notebook. The
    kernel process's own output (not the cells') goes to ``kernel_log``. The executed (or
    partly executed) notebook is written to ``output`` in every case. Returns the
    notebook and the error that stopped it, if any.
    """
    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    runtime = Path(jupyter_runtime_dir())
    runtime.mkdir(parents=True, exist_ok=True)
    # carbon_magic reads the kernel id from the connection file's name, as under Jupyter.
    manager = AsyncKernelManager(
        kernel_name="python3", connection_file=str(runtime / f"kernel-{kernel_id}.json")
    )
    client = NotebookClient(
        nb,
        km=manager,
        timeout=timeout_s,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    env = {**os.environ, "JPY_SESSION_NAME": str(notebook)}
    error: Exception | None = None
    output.parent.mkdir(parents=True, exist_ok=True)
    with kernel_log.open("w", encoding="utf-8") as log:
        try:
            client.execute(env=env, cleanup_kc=True, stdout=log, stderr=log)
        except Exception as failure:  # reported by the caller, with the partial notebook kept
            error = failure
    nbformat.write(nb, output)
    return nb, error


def session_rows(path: Path, kernel_id: str) -> list[dict[str, Any]]:
    """Ledger cell rows of the session(s) the kernel ``kernel_id`` opened, oldest first."""
    from carbon_magic.ledger import read_cells, read_sessions

    rows: list[dict[str, Any]] = []
    for session in read_sessions(path, kernel_id=kernel_id):
        rows += read_cells(path, session_uuid=session["session_uuid"])
    return rows


def error_summary(error: Exception) -> str:
    """One or a few lines saying why execution stopped (no ANSI colour codes)."""
    import re

    text = str(error).strip() or type(error).__name__
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-12:])


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="demo.py",
        description="Run a notebook headless with carbon_magic and print its per-cell table.",
    )
    parser.add_argument("--notebook", type=Path, default=DEFAULT_NOTEBOOK, help="notebook to run")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the executed notebook"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds allowed per cell (default 120)"
    )
    args = parser.parse_args(argv)
    notebook = args.notebook.resolve()
    if not notebook.is_file():
        print(f"demo: no notebook at {notebook}", file=sys.stderr)
        return 1

    try:
        ledger = ledger_path()
    except Exception as failure:
        print(f"demo: cannot tell where the ledger is: {failure}", file=sys.stderr)
        return 1
    if os.environ.get(LEDGER_ENV, "").strip():
        where = f"from ${LEDGER_ENV}"
    else:
        where = f"the default; set {LEDGER_ENV} to use another file"
    print(f"Running {notebook.relative_to(ROOT) if notebook.is_relative_to(ROOT) else notebook}")
    print(f"Ledger: {ledger} ({where})")

    kernel_id = str(uuid.uuid4())
    output = args.output.resolve()
    kernel_log = output.with_suffix(".kernel.log")
    started = time.monotonic()
    _, error = execute_notebook(notebook, output, kernel_log, kernel_id, args.timeout)
    elapsed = time.monotonic() - started
    print(f"Executed notebook: {output} ({elapsed:.0f} s)")
    if error is not None:
        print(
            f"\ndemo: the notebook failed ({type(error).__name__}):\n{error_summary(error)}\n"
            f"See the executed notebook above, and the kernel's log: {kernel_log}",
            file=sys.stderr,
        )
        return 1

    from carbon_magic.reports.report import build_report

    try:
        rows = session_rows(ledger, kernel_id)
    except Exception as failure:
        print(f"demo: cannot read the ledger {ledger}: {failure}", file=sys.stderr)
        return 1
    if not rows:
        print(
            f"demo: the notebook ran but no cell of its kernel is in {ledger}; "
            "`%carbon status` in a notebook says why (its `ledger:` line)",
            file=sys.stderr,
        )
        return 1
    print(f"\nCarbon per cell (kernel {kernel_id}), heaviest first:\n")
    print(build_report(rows))
    source = rows[-1].get("intensity_source")
    if source:
        print(f"Grid intensity: {rows[-1]['intensity_g_per_kwh']:.0f} g/kWh, {source}.")
    print(f"\nAgain from a terminal: carbon-magic report --kernel {kernel_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
