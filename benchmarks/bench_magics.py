"""Notebook-experience benchmarks in a real kernel: the latency each auto-recorded cell
gains once the extension is loaded, and what ``%%carbon`` (panel included) adds to an
empty cell. Timed inside the kernel around ``run_cell`` so that messaging noise between
processes stays out of the figures. Prints medians; targets are in the text.

    python benchmarks/bench_magics.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.kernels import Kernel  # noqa: E402

# The cells are timed after the cell that asks for them has ended, from the kernel's
# event loop, so each is a cell of its own as the user's cells are (a cell run by a
# running cell is part of that cell, and not recorded on its own).
TIME_CELLS = r"""
import asyncio, json, statistics, time
_medians_ms = {}
def _time_cells(key, code, runs, history=True, pause_s=0.0):
    shell = get_ipython()
    samples = []
    for _ in range(runs):
        time.sleep(pause_s)
        t0 = time.perf_counter_ns()
        shell.run_cell(code, store_history=history)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    _medians_ms[key] = statistics.median(samples)
"""


def measure(
    kernel: Kernel, code: str, runs: int, history: bool = True, pause_s: float = 0.0
) -> float:
    """Median wall time of ``code`` run as a cell inside the kernel, milliseconds."""
    key = f"{code!r} {runs} {history} {pause_s}"
    call = f"_time_cells({key!r}, {code!r}, {runs}, {history}, {pause_s})"
    kernel.execute(f"asyncio.get_running_loop().call_soon(lambda: {call})", timeout=600)
    run = kernel.execute(f"print(json.dumps(_medians_ms.pop({key!r})))", timeout=600)
    text = "".join(m["content"]["text"] for m in run.of_type("stream"))
    return json.loads(text.strip().splitlines()[-1])


MODES = (
    # (label, IPython history on, pause between cells in seconds)
    ("back to back, IPython history on", True, 0.0),
    ("back to back, IPython history off", False, 0.0),
    ("5 ms between cells, history on", True, 0.005),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    options = parser.parse_args()
    runs, magic_runs = options.runs, max(50, options.runs // 4)
    with tempfile.TemporaryDirectory() as home:
        kernel = Kernel(os.path.join(home, "ledger.sqlite3"))
        try:
            kernel.execute(TIME_CELLS)
            measure(kernel, "pass", 50)  # warm-up
            bare = {label: measure(kernel, "pass", runs, h, p) for label, h, p in MODES}
            kernel.execute("%load_ext carbon_magic")
            measure(kernel, "pass", 50)
            recorded = {label: measure(kernel, "pass", runs, h, p) for label, h, p in MODES}
            magic = {
                label: measure(kernel, "%%carbon\npass", magic_runs, h, p) for label, h, p in MODES
            }
            quiet = {
                label: measure(kernel, "%%carbon --quiet\npass", magic_runs, h, p)
                for label, h, p in MODES
            }
        finally:
            kernel.shutdown()
    # IPython commits its history (with fsync) on every cell; back to back, an empty
    # cell's ledger commit lands on top of it, which is what the first mode shows.
    print("medians in ms, timed inside the kernel around run_cell (a cell of its own):")
    for label, _, _ in MODES:
        print(
            f"  {label}: bare {bare[label]:.3f}; auto-recorded +{recorded[label] - bare[label]:.3f} "
            f"(target ≤ 1); %%carbon with live panel +{magic[label] - bare[label]:.3f} "
            f"(target ≤ 5); %%carbon --quiet +{quiet[label] - bare[label]:.3f}"
        )


if __name__ == "__main__":
    main()
