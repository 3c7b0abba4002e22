"""A bounded power timeline for plots and the live view.

Memory stays bounded over days: when the timeline is full, neighbouring points are
merged pairwise (a duration-weighted mean), which halves the resolution of the whole
history and keeps its energy exact.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class TimelinePoint:
    """Mean power per component over ``[end_s - duration_s, end_s]`` (UTC epoch seconds)."""

    end_s: float
    duration_s: float
    watts: tuple[tuple[str, float], ...]

    @property
    def start_s(self) -> float:
        """Start of the span, UTC epoch seconds."""
        return self.end_s - self.duration_s

    def watts_dict(self) -> dict[str, float]:
        """Power per component, watts."""
        return dict(self.watts)


def _merge(first: TimelinePoint, second: TimelinePoint) -> TimelinePoint:
    duration = first.duration_s + second.duration_s
    if duration <= 0:
        return second
    names = dict.fromkeys([name for name, _ in first.watts] + [name for name, _ in second.watts])
    a, b = first.watts_dict(), second.watts_dict()
    merged = tuple(
        (
            name,
            (a.get(name, 0.0) * first.duration_s + b.get(name, 0.0) * second.duration_s) / duration,
        )
        for name in names
    )
    return TimelinePoint(second.end_s, duration, merged)


class Timeline:
    """Thread-safe bounded list of ``TimelinePoint``."""

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.capacity = capacity
        self._points: list[TimelinePoint] = []
        self._lock = threading.Lock()

    def add(self, end_s: float, duration_s: float, watts: dict[str, float]) -> None:
        """Append a span's mean power (watts) ending at ``end_s`` (UTC epoch seconds)."""
        point = TimelinePoint(end_s, duration_s, tuple(watts.items()))
        with self._lock:
            self._points.append(point)
            if len(self._points) > self.capacity:
                self._compact()

    def _compact(self) -> None:
        points = self._points
        merged = [_merge(points[i], points[i + 1]) for i in range(0, len(points) - 1, 2)]
        if len(points) % 2:
            merged.append(points[-1])
        self._points = merged

    def points(self, since_s: float | None = None) -> list[TimelinePoint]:
        """A copy of the points, optionally only those ending after ``since_s``."""
        with self._lock:
            points = list(self._points)
        if since_s is not None:
            points = [point for point in points if point.end_s > since_s]
        return points

    def clear(self) -> None:
        """Forget every point."""
        with self._lock:
            self._points = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._points)
