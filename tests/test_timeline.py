import pytest

from carbon_magic.engine.timeline import Timeline


def test_compaction_keeps_energy_and_bounds_length():
    timeline = Timeline(capacity=64)
    energy = 0.0
    for i in range(10_000):
        watts = 10.0 + (i % 7)
        timeline.add(end_s=float(i + 1), duration_s=1.0, watts={"cpu": watts, "ram": 1.0})
        energy += watts
    points = timeline.points()
    assert len(points) <= 64
    assert sum(p.watts_dict()["cpu"] * p.duration_s for p in points) == pytest.approx(energy)
    assert points[-1].end_s == 10_000.0
    assert points[0].start_s == pytest.approx(0.0)


def test_points_since_and_clear():
    timeline = Timeline(capacity=8)
    for i in range(5):
        timeline.add(float(i + 1), 1.0, {"cpu": 1.0})
    assert [p.end_s for p in timeline.points(since_s=3.0)] == [4.0, 5.0]
    timeline.clear()
    assert len(timeline) == 0


def test_capacity_validated():
    with pytest.raises(ValueError):
        Timeline(capacity=1)
