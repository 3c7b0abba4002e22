"""The live power at a cell's edges: the first reading inside a window shows the
window's power, and the first one after it, one interval later, the idle power."""

import threading
import time

import pytest

from tests.sources import CounterSource, FakeCpuTimes, make_sensors
from tests.test_tracker import injected_tracker


class SteadyPowerSource(CounterSource):
    """A measured CPU counter that integrates a power the test sets (watts) over time."""

    def __init__(self) -> None:
        super().__init__("steady", "cpu", ("package-0",))
        self.watts = 2.0
        self._since = time.monotonic()

    def set_watts(self, watts: float) -> None:
        with self._lock:
            now = time.monotonic()
            self.joules["package-0"] += self.watts * (now - self._since)
            self._since, self.watts = now, watts

    def read_j(self) -> dict[str, float]:
        with self._lock:
            now = time.monotonic()
            return {"package-0": self.joules["package-0"] + self.watts * (now - self._since)}


def readings_of(tracker):
    readings: list[tuple[float, float]] = []  # (monotonic s, cpu watts)
    arrived = threading.Condition()

    def listen(reading):
        with arrived:
            readings.append((time.monotonic(), reading.watts["cpu"]))
            arrived.notify_all()

    # Like the ledger heartbeat: not a live view, so the thread idles between windows.
    tracker.add_listener(listen, watching=False)
    return readings, arrived


def first_after(readings, arrived, since, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    with arrived:
        while True:
            later = [r for r in readings if r[0] > since]
            if later:
                return later[0]
            left = deadline - time.monotonic()
            assert left > 0, "no reading arrived"
            arrived.wait(left)


def test_readings_at_window_edges_do_not_average_across_them():
    source = SteadyPowerSource()
    interval = 0.4
    tracker = injected_tracker(make_sensors(FakeCpuTimes(), cpu=source), interval=interval)
    tracker.settings.update(mode="machine")
    readings, arrived = readings_of(tracker)
    tracker.start()
    try:
        time.sleep(1.0)  # idle at 2 W, no tick meanwhile (the idle tick is 30 s)
        source.set_watts(50.0)
        window = tracker.begin("busy cell")
        begun = time.monotonic()
        at, watts = first_after(readings, arrived, begun)
        # The cell's first reading is the cell's power, not an average with the idle second.
        assert watts == _approx(50.0)
        time.sleep(0.5)
        source.set_watts(2.0)
        tracker.end(window)
        ended = time.monotonic()
        at, watts = first_after(readings, arrived, ended)
        # One interval after the end (not a busy average, not 30 s later): the idle power.
        assert watts == _approx(2.0)
        assert interval * 0.8 <= at - ended <= interval + 0.6
    finally:
        tracker.close()


def _approx(watts: float):
    return pytest.approx(watts, rel=0.1)
