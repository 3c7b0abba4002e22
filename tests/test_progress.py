"""Following progress: the outermost tqdm bar read in place, and ``progress(fraction)``."""

import io
import sys
import time

import pytest

import carbon_magic
from carbon_magic.kernel import cell_progress as progress_module
from carbon_magic.kernel.cell_progress import clear_progress, read_progress

tqdm = pytest.importorskip("tqdm")
from tqdm import tqdm as bar_class  # noqa: E402


@pytest.fixture(autouse=True)
def no_manual_progress():
    clear_progress()
    yield
    clear_progress()


def quiet_bar(*args, **kwargs):
    return bar_class(*args, file=io.StringIO(), mininterval=0, miniters=1, **kwargs)


def test_outermost_bar_fraction():
    since = time.time()
    with quiet_bar(total=200) as bar:
        bar.update(50)
        reading = read_progress(since)
        assert reading.source == "tqdm" and reading.fraction == pytest.approx(0.25)
        assert since <= reading.at <= time.time()
    assert read_progress(since) is None  # closed


def test_iterating_bar_is_followed():
    since = time.time()
    seen = []
    for _ in quiet_bar(range(10)):
        seen.append(read_progress(since).fraction)
    assert seen[0] == 0.0 and seen[-1] == pytest.approx(0.9)
    assert seen == sorted(seen)


def test_bar_without_total_gives_nothing():
    since = time.time()
    with quiet_bar(iter(range(10))) as bar:
        bar.update(3)
        assert read_progress(since) is None
        # A bar with a total inside it is an inner loop: its fraction restarts each
        # outer step, so it is not followed either.
        with quiet_bar(total=10) as inner:
            inner.update(5)
            assert read_progress(since) is None


def test_nested_bars_follow_the_outer_refined_by_the_inner():
    since = time.time()
    with quiet_bar(total=4) as outer:
        outer.update(1)
        with quiet_bar(total=100, leave=False) as inner:
            inner.update(50)
            assert read_progress(since).fraction == pytest.approx(1.5 / 4)
        outer.update(1)
        assert read_progress(since).fraction == pytest.approx(2 / 4)
        # Two bars side by side inside: ambiguous, so the outer step alone.
        with quiet_bar(total=10, position=1) as a, quiet_bar(total=10, position=1) as b:
            a.update(5)
            b.update(1)
            assert read_progress(since).fraction == pytest.approx(2 / 4)


def test_bars_from_before_the_cell_are_ignored():
    stale = quiet_bar(total=10)  # left open by an earlier cell
    stale.update(9)
    try:
        since = time.time() + 1.0
        assert read_progress(since) is None
    finally:
        stale.close()


def test_disabled_and_zero_total_bars_are_ignored():
    since = time.time()
    with quiet_bar(total=10, disable=True) as off:
        off.update(5)
        assert read_progress(since) is None
    with quiet_bar(total=0) as empty:
        assert read_progress(since) is None
        empty.update(0)


def test_reading_never_changes_what_tqdm_prints():
    def run(follow):
        out = io.StringIO()
        since = time.time()
        with bar_class(
            total=5,
            file=out,
            mininterval=0,
            miniters=1,
            ncols=60,
            bar_format="{l_bar}{bar}|{n_fmt}/{total_fmt}",
        ) as bar:
            for _ in range(5):
                bar.update(1)
                if follow:
                    read_progress(since)
        return out.getvalue()

    assert run(True) == run(False)


def test_manual_progress_wins_and_is_validated():
    since = time.time()
    with quiet_bar(total=10) as bar:
        bar.update(2)
        carbon_magic.progress(0.75)
        assert read_progress(since).fraction == 0.75
        assert read_progress(since).source == "progress()"
        for bad in (1.7, -0.1, float("nan"), True, "0.5", None):
            with pytest.raises(ValueError, match="a number from 0 to 1"):
                carbon_magic.progress(bad)
        assert read_progress(since).fraction == 0.75  # nothing changed
    carbon_magic.progress(1)
    assert read_progress(since).fraction == 1.0
    assert read_progress(time.time() + 1) is None  # a later cell does not see it


def test_no_tqdm_imported_means_no_progress(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.std", None)
    assert read_progress(0.0) is None


def test_a_broken_bar_is_not_followed(monkeypatch):
    since = time.time()
    with quiet_bar(total=10) as bar:
        bar.update(1)
        monkeypatch.setattr(progress_module, "_fraction", lambda bar: 1 / 0)
        assert read_progress(since) is None
