"""What capturing hosted LLM calls costs: the time the capture adds to one SDK call
(target ≤ 50 µs median), to each item of a streamed answer, and to a cell that makes no
call (its two edges; target ≤ 5 µs median), and, apart, what estimating one call with
EcoLogits costs at the cell's end (not on the call's path). Prints medians.

The per-call figure times the real OpenAI SDK's ``Completions.create`` wrapper against
the same method unwrapped, both answering the SDK's own parsed ``ChatCompletion`` at
once (an in-process stand-in for the network), so only the capture's own work differs.

    python benchmarks/bench_remote.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from carbon_magic.engine.measurement import Measurement  # noqa: E402
from carbon_magic.remote import RemoteCollector  # noqa: E402
from carbon_magic.remote.calls import CALL_LOG, RemoteCall  # noqa: E402
from carbon_magic.remote.targets import TARGETS  # noqa: E402
from carbon_magic.remote.wrappers import Patch, make_wrapper  # noqa: E402

CALLS_PER_SAMPLE = 200


def _answer():
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    from tests.fake_llm_api import openai_chat_answer, openai_chat_events

    body = {"model": "gpt-4o-mini"}
    whole = ChatCompletion.model_validate(openai_chat_answer(body, 40))
    chunks = [
        ChatCompletionChunk.model_validate_json(event[len(b"data: ") :].strip())
        for event in openai_chat_events(body, 40)[:-1]
    ]
    return whole, chunks


def _median_us(run, runs: int, per_sample: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        run()
        samples.append((time.perf_counter_ns() - t0) / 1e3 / per_sample)
    return statistics.median(samples)


def per_call(runs: int) -> tuple[float, float, float]:
    """(unwrapped µs, wrapped µs, items: added µs per stream item), medians."""
    whole, chunks = _answer()
    target = next(t for t in TARGETS if t.owner == "Completions" and t.sdk == "openai")

    class Stream:  # the SDK's own shape: an object iterating over its _iterator
        def __init__(self) -> None:
            self._iterator = iter(chunks)

        def __iter__(self):
            yield from self._iterator

    def create(self, *, model, messages, stream=False, **kwargs):
        return Stream() if stream else whole

    wrapped = make_wrapper(Patch(target, object, create))
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

    def calls(function, **extra):
        def run():
            for _ in range(CALLS_PER_SAMPLE):
                function(None, **ask, **extra)

        return run

    def streams(function):
        def run():
            for _ in range(CALLS_PER_SAMPLE // 10):
                for _chunk in function(None, **ask, stream=True):
                    pass

        return run

    edge = CALL_LOG.mark()  # a cell is open: every call is captured
    try:
        bare = _median_us(calls(create), runs, CALLS_PER_SAMPLE)
        captured = _median_us(calls(wrapped), runs, CALLS_PER_SAMPLE)
        items = (CALLS_PER_SAMPLE // 10) * len(chunks)
        bare_stream = _median_us(streams(create), runs, items)
        captured_stream = _median_us(streams(wrapped), runs, items)
    finally:
        CALL_LOG.since(edge)
    return bare, captured, captured_stream - bare_stream


def per_cell(runs: int) -> float:
    """Median µs of a cell's two edges when it makes no call."""
    collector = RemoteCollector(lambda text: None)
    collector.installed = True  # the edges only: nothing is patched for this figure
    m = Measurement("cell")

    def run():
        for _ in range(CALLS_PER_SAMPLE):
            collector.end(collector.start(), m)

    return _median_us(run, runs, CALLS_PER_SAMPLE)


def estimate_cost(runs: int) -> float:
    """Median µs to estimate one call with EcoLogits (at the cell's end)."""
    from carbon_magic.remote.estimate import Estimator

    estimator = Estimator(lambda text: None)
    call = RemoteCall("openai", "chat.completions", "gpt-4o-mini", False, time.time(), 0)
    call.output_tokens, call.latency_s, call.status = 40, 1.2, "ok"
    estimator.estimate(call)  # imports EcoLogits once
    return _median_us(lambda: [estimator.estimate(call) for _ in range(20)], runs, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="samples per figure")
    runs = parser.parse_args().runs
    bare, captured, per_item = per_call(runs)
    print(f"SDK call, not captured:                {bare:8.2f} µs median")
    print(f"SDK call, captured:                    {captured:8.2f} µs median")
    print(
        f"added per SDK call:                    {captured - bare:8.2f} µs median (target ≤ 50 µs)"
    )
    print(f"added per streamed item:               {per_item:8.2f} µs median")
    print(f"per cell with no calls (two edges):    {per_cell(runs):8.2f} µs median (target ≤ 5 µs)")
    try:
        print(
            f"estimate per call at the cell's end:   {estimate_cost(runs):8.2f} µs median (EcoLogits)"
        )
    except ImportError:
        print("estimate per call at the cell's end:   EcoLogits not installed")


if __name__ == "__main__":
    main()
