"""What following a tqdm bar adds to each tqdm update. Target: ≤ 2 µs median per update.

The follower does no work per update: the tracker thread reads the outermost bar's
``n`` and ``total`` when it ticks. This measures a tight tqdm loop (``bar.update(1)``,
and ``for _ in tqdm(range(N))``) in three states, alternated run by run so drift cancels:
no tracker; the tracker ticking with no prediction; the tracker ticking and predicting
from the bar at every tick (as for a recorded cell), at the shortest interval (0.1 s).
Each state runs first, second and third in turn. Prints medians over the runs,
nanoseconds per update.

    python benchmarks/bench_progress.py [--updates N] [--runs R]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tqdm import tqdm  # noqa: E402

from carbon_magic.engine.tracker import Tracker  # noqa: E402
from carbon_magic.kernel.prediction import CellForecast  # noqa: E402
from carbon_magic.settings import Settings  # noqa: E402


def update_loop(n: int) -> float:
    """ns per ``bar.update(1)``."""
    with tqdm(total=n, file=io.StringIO()) as bar:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            bar.update(1)
        return (time.perf_counter_ns() - t0) / n


def iterate_loop(n: int) -> float:
    """ns per iteration of ``for _ in tqdm(range(n))``."""
    t0 = time.perf_counter_ns()
    for _ in tqdm(range(n), file=io.StringIO()):
        pass
    return (time.perf_counter_ns() - t0) / n


class Follower:
    """What the magics do for a recorded cell: predict from the bar at every tick."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.window = tracker.begin("bench")
        self.forecast = CellForecast(self.window.started_at.timestamp())
        self.ticks = 0
        self.predictions = 0

    def __call__(self, reading: object) -> None:
        self.ticks += 1
        if self.forecast.update(lambda: self.tracker.peek(self.window)) is not None:
            self.predictions += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=3_000_000)
    parser.add_argument("--runs", type=int, default=9)
    options = parser.parse_args()
    n = options.updates
    with tempfile.TemporaryDirectory() as home:
        settings = Settings()
        settings.update(interval=0.1, country="FR", ledger=os.path.join(home, "l.sqlite3"))
        tracker = Tracker(settings)
        follower: Follower | None = None
        last_follower: Follower | None = None
        results: dict[tuple[str, str], list[float]] = {}
        states = ("no tracker", "tracker, no prediction", "tracker + prediction")
        for run in range(options.runs):
            for state in states[run % 3 :] + states[: run % 3]:  # each order in turn
                if state == "no tracker":
                    tracker.stop()
                else:
                    tracker.start()
                if state == "tracker + prediction":
                    follower = Follower(tracker)
                    tracker.add_listener(follower)
                for name, loop in (("bar.update(1)", update_loop), ("for _ in tqdm", iterate_loop)):
                    results.setdefault((name, state), []).append(loop(n))
                if follower is not None:
                    tracker.remove_listener(follower)
                    tracker.end(follower.window)
                    last_follower, follower = follower, None
        tracker.stop()
    print(f"tqdm {sys.modules['tqdm'].__version__}, {n} updates per run, {options.runs} runs")
    print("median ns per update:")
    for name in ("bar.update(1)", "for _ in tqdm"):
        medians = {state: statistics.median(results[(name, state)]) for state in states}
        for state, value in medians.items():
            print(f"  {name:14s} {state:24s} {value:8.1f} ns")
        added = medians["tracker + prediction"] - medians["tracker, no prediction"]
        print(f"  {name:14s} added by the prediction: {added:+.1f} ns (target ≤ 2000 ns)")
    print(
        f"last run with prediction: {last_follower.ticks} tracker ticks, "
        f"{last_follower.predictions} of them predicting from the bar"
    )


if __name__ == "__main__":
    main()
