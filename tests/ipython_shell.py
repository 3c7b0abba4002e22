"""IPython's own test shell in a fresh interpreter, for comparing how cells run.

``run_cells(cells, ledger)`` starts ``IPython.testing.globalipapp`` in a subprocess (so
the shell, the tracker and the ledger are this test's alone), runs each cell with
``run_cell(store_history=True)`` and returns, per cell, what the user saw and what the
shell kept. A cell given as ``("check", "expression")`` is evaluated in the test's own
code (not as a cell) with the shell as ``ip``, and its ``repr`` returned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

DRIVER = textwrap.dedent(
    """
    import json, sys
    from IPython.testing.globalipapp import start_ipython
    from IPython.utils.capture import capture_output

    ip = start_ipython()
    ip.colors = "nocolor"
    ip.run_cell("%colors nocolor")
    out = []
    for cell in json.loads(sys.stdin.read()):
        if isinstance(cell, list):
            out.append({"check": repr(eval(cell[1], {"ip": ip, **ip.user_ns}))})
            continue
        with capture_output() as io:
            result = ip.run_cell(cell, store_history=True)
        error = result.error_in_exec or result.error_before_exec
        out.append(
            {
                "stdout": io.stdout,
                "stderr": io.stderr,
                "error": type(error).__name__ if error is not None else None,
                "count": result.execution_count,
                "result": repr(result.result),
            }
        )
    print("\\n" + json.dumps(out))
    """
)


def run_cells(
    cells: list[Any], ledger: str, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Run ``cells`` in a fresh test shell with ``ledger`` as the ledger file."""
    environment = {
        **os.environ,
        "CARBON_MAGIC_LEDGER": ledger,
        "CARBON_MAGIC_COUNTRY": "FR",
        **(env or {}),
    }
    environment.pop("CARBON_MAGIC_MODE", None)
    done = subprocess.run(
        [sys.executable, "-c", DRIVER],
        input=json.dumps(cells),
        capture_output=True,
        text=True,
        env=environment,
        cwd=os.path.dirname(ledger),  # the test's own folder, never the checkout
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def without_summary(text: str) -> str:
    """``text`` without the one-line summary a ``--quiet`` ``%%carbon`` prints."""
    return "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith("carbon: ")
    )
