"""How fast ``%%carbon --budget … --on-exceed stop`` stops a cell, in a real kernel.

For each kind of work the time from the budget being exceeded (the first tick that
finds it over) to the cell having stopped (``run_cell`` returning), median of a few
runs. The budget is tiny, so it is exceeded on the tracker's first tick; each cell
would otherwise run for ``--work-s`` seconds. Kinds of work:

- a pure-Python loop (stops between bytecodes);
- ``time.sleep`` (needs a real signal: the sleep is a system call);
- socket I/O: ``recv`` on a 127.0.0.1 connection that never answers;
- a NumPy call (BLAS ignores signals: the cell stops when the running call returns,
  so the figure is about one call's duration).

Target: well under a second for the first three; the NumPy figure is bounded by one call.

    python benchmarks/bench_budget_stop.py [--runs N] [--work-s S]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.kernels import Kernel  # noqa: E402

SETUP = r"""
import json, socket, statistics, time
import carbon_magic.kernel.budget as _budget
_first_over = []
_exceeded = _budget.Budget.exceeded
def _recording_exceeded(self, m):
    over = _exceeded(self, m)
    if over and not _first_over:
        _first_over.append(time.monotonic())
    return over
_budget.Budget.exceeded = _recording_exceeded
_server = socket.socket()
_server.bind(("127.0.0.1", 0))
_server.listen(8)
import numpy as _np
_a = _np.random.default_rng(0).random((4000, 4000))
def _one_call_s(runs):
    samples = []
    for _ in range(runs):
        started = time.monotonic()
        _a @ _a
        samples.append(time.monotonic() - started)
    return statistics.median(samples)
def _stop_latency_s(body, runs):
    samples = []
    for _ in range(runs):
        _first_over.clear()
        get_ipython().run_cell(
            "%%carbon --quiet --budget 0.000001J --on-exceed stop\n" + body, silent=True
        )
        done = time.monotonic()
        samples.append(done - _first_over[0] if _first_over else float("nan"))
    return statistics.median(samples)
"""

WORK = {
    "Python loop": "_end = time.time() + {s}\nwhile time.time() < _end:\n    pass",
    "time.sleep": "time.sleep({s})",
    "socket recv (127.0.0.1, never answers)": (
        "_c = socket.create_connection(_server.getsockname())\n"
        "_c.settimeout({s})\n"
        "try:\n    _c.recv(1)\nfinally:\n    _c.close()"
    ),
    "NumPy matmul 4000² (BLAS ignores signals)": (
        "_end = time.time() + {s}\nwhile time.time() < _end:\n    _a @ _a"
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work-s", type=float, default=8.0)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        kernel = Kernel(os.path.join(home, "ledger.sqlite3"), {"CARBON_MAGIC_INTERVAL": "0.1"})
        try:
            kernel.execute("%load_ext carbon_magic")
            kernel.execute(SETUP)
            print(
                f"time from budget exceeded to cell stopped (median of {options.runs}; "
                f"each cell would run {options.work_s:g} s)"
            )
            for label, body in WORK.items():
                code = body.format(s=options.work_s)
                call = f"print(json.dumps(_stop_latency_s({code!r}, {options.runs})))"
                run = kernel.execute(call, timeout=600)
                text = "".join(m["content"]["text"] for m in run.of_type("stream"))
                seconds = json.loads(text.strip().splitlines()[-1])
                print(f"  {label:<42} {seconds * 1000:8.0f} ms")
            run = kernel.execute(f"print(json.dumps(_one_call_s({options.runs})))", timeout=600)
            text = "".join(m["content"]["text"] for m in run.of_type("stream"))
            one_call = json.loads(text.strip().splitlines()[-1])
            print(f"  (one NumPy matmul call alone takes {one_call * 1000:.0f} ms here: the bound)")
        finally:
            kernel.shutdown()


if __name__ == "__main__":
    main()
