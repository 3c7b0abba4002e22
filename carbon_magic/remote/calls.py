"""Calls to hosted model APIs as the capture sees them, and the log they go to.

A :class:`RemoteCall` is appended to the :class:`CallLog` when the SDK call starts and
filled in as it answers (a streamed answer chunk by chunk), so a cell that ends while
one of its streams is still open (or abandoned half-way) records the tokens seen so far.
Estimates are made later, at the cell's edge, never on the SDK call's own path.

Units: seconds (``latency_s``, time from the call to its last answer byte seen), UTC
seconds since the epoch (``started_at``).
"""

from __future__ import annotations

import contextvars
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["CALL_LOG", "CallLog", "RemoteCall", "inside_capture"]

# Set while a captured call runs, so a call an SDK makes through another captured SDK
# (LiteLLM calling the OpenAI SDK) is counted once, by the outer one. A ContextVar:
# concurrent asyncio tasks and threads each have their own.
inside_capture: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "carbon_magic_inside_capture", default=False
)


@dataclass
class RemoteCall:
    """One call to a hosted model, filled in as the answer arrives.

    ``status``: ``running`` (no answer yet or a stream still open), ``ok``, ``error``
    (the SDK raised; ``error`` names the exception type) or ``abandoned`` (a stream
    closed before its end). ``output_tokens`` is None until known. ``impacts`` holds
    the EcoLogits result found on the SDK's answer when the user's own EcoLogits
    instrumentation made one (then it is used instead of a second estimate).
    """

    sdk: str  # openai | anthropic | mistralai | google_genai | litellm
    api: str  # e.g. chat.completions, responses, messages
    model: str | None
    streamed: bool
    started_at: float
    started_ns: int
    status: str = "running"
    output_tokens: int | None = None
    latency_s: float | None = None
    error: str | None = None
    impacts: Any = None
    # True while output_tokens counts stream items (no usage figure seen yet).
    tokens_counted: bool = False

    def touch(self) -> None:
        """Note that answer bytes arrived now (the latency runs to the last of them)."""
        self.latency_s = (time.monotonic_ns() - self.started_ns) / 1e9

    def finish(self, status: str, error: BaseException | None = None) -> None:
        """The call is over: ``ok``, ``error`` or ``abandoned``."""
        if self.latency_s is None or status != "abandoned":
            self.touch()
        self.status = status
        if error is not None:
            self.error = type(error).__name__


class CallLog:
    """Every captured call since the first cell edge that is still open.

    Cells take their calls by position: :meth:`mark` at a cell's start, :meth:`since`
    at its end. When no cell is open the log is emptied, so it never grows without one.
    Appends come from any thread (a list append is atomic under the GIL).
    """

    def __init__(self) -> None:
        self.calls: list[RemoteCall] = []
        self.offset = 0  # calls dropped from the front so far
        self.open_edges = 0
        self.lock = threading.Lock()

    def add(self, call: RemoteCall) -> None:
        """Keep ``call`` for the cells open now (dropped when none is)."""
        if self.open_edges:
            self.calls.append(call)

    def mark(self) -> int:
        """A cell starts: its position in the log (give it back to :meth:`since`)."""
        with self.lock:
            self.open_edges += 1
            return self.offset + len(self.calls)

    def since(self, mark: int) -> list[RemoteCall]:
        """A cell ends: the calls started since ``mark``; the log is emptied when no
        other cell is open."""
        with self.lock:
            calls = self.calls[max(0, mark - self.offset) :]
            self.open_edges = max(0, self.open_edges - 1)
            if not self.open_edges:
                self.offset += len(self.calls)
                self.calls = []
            return calls

    def peek(self, mark: int) -> list[RemoteCall]:
        """The calls started since ``mark`` so far, leaving the cell open."""
        return self.calls[max(0, mark - self.offset) :]


CALL_LOG = CallLog()  # one per process: the SDKs patched are process-wide too
