"""Stopping a cell from the tracker thread when its budget is exceeded.

A flag set with ``_thread.interrupt_main()`` is only looked at between bytecodes, so a
cell in ``time.sleep`` or blocked on a socket would run to its end. Like a kernel
interrupt, a real SIGINT is sent to the main thread instead (``signal.pthread_kill``):
the blocking system call returns with EINTR and Python runs the handler, which raises
``BudgetExceeded``. Native code that does not return to Python (a long BLAS call) is
stopped only when it returns; the cell's record says how far over the budget it ran.

Where signals cannot be sent to a thread (Windows, or a cell not on the main thread)
``_thread.interrupt_main()`` is the fallback: pure-Python code stops, blocking calls
finish first. A coroutine cell (top-level ``await``) is cancelled in its event loop.
"""

from __future__ import annotations

import _thread
import asyncio
import signal
import threading
import time
from typing import Any

SIGNAL_WAIT_S = 1.0  # at most this long for a sent signal to reach its handler
STOPPED = "stopped by budget"  # the status of a cell its budget stopped


class BudgetExceeded(KeyboardInterrupt):
    """Raised in the main thread when ``--on-exceed stop`` interrupts a cell."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows what this returns instead of a traceback: a budget stop is an
        # outcome the user asked for, one line, not a fault in the library.
        return [f"{type(self).__name__}: {self}"]


def status_of(error: BaseException | None) -> str:
    """A cell's status from the error it ended with (None: it ran to its end). An
    interrupted coroutine cell ends with the kernel's cancel: interrupted too."""
    if error is None:
        return "ok"
    if isinstance(error, BudgetExceeded):
        return STOPPED
    if isinstance(error, (KeyboardInterrupt, asyncio.CancelledError)):
        return "interrupted"
    return "error"


def signals_reach_main_thread() -> bool:
    """True when a real SIGINT can be sent to the main thread from here (POSIX, and
    this code runs on the main thread, where Python runs signal handlers)."""
    return (
        hasattr(signal, "pthread_kill")
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is not None
    )


class BudgetStop:
    """Stops one cell, once: ``arm()`` before its code (main thread), ``fire()`` from any
    thread when the budget is exceeded, ``disarm()`` after its code (main thread).

    A stop that arrives after ``disarm`` began is absorbed, never raised into what
    follows the cell. A SIGINT that is not the budget's (Ctrl-C, a kernel interrupt)
    goes to the handler that was there before.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = False
        self._fired = False
        self._taken = threading.Event()
        self._installed = False
        self._previous: Any = None
        self._main_ident: int | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.fired_at: float | None = None  # time.monotonic() when the stop was sent
        self.message = "carbon budget exceeded; cell stopped"  # what BudgetExceeded says
        self.method = "none"  # how the stop is delivered: signal | flag | cancel

    @property
    def fired(self) -> bool:
        """True once the stop was sent."""
        return self._fired

    def arm(self, task: asyncio.Task | None = None) -> None:
        """Get ready to stop the code that runs next in this thread (or ``task``)."""
        if task is not None:
            self._task, self._loop, self.method = task, task.get_loop(), "cancel"
        elif signals_reach_main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
            self._main_ident = threading.main_thread().ident
            self.method = "signal"
        else:
            self.method = "flag"
        self._active = True

    def fire(self, message: str | None = None) -> bool:
        """Stop the cell now (any thread), saying ``message``. False when it is already
        done or stopped."""
        with self._lock:
            if not self._active or self._fired:
                return False
            if message:
                self.message = message
            self._fired = True
            self.fired_at = time.monotonic()
        if self.method == "cancel":
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._cancel_if_active)
        elif self.method == "signal":
            assert self._main_ident is not None
            signal.pthread_kill(self._main_ident, signal.SIGINT)
        else:
            _thread.interrupt_main()
        return True

    def _cancel_if_active(self) -> None:
        """In the task's event loop: cancel the cell's task unless its code is done (a
        cancel landing after it would hit the kernel's own code instead)."""
        self._taken.set()
        if self._active and self._task is not None:
            self._task.cancel()

    def _handle(self, signum: int, frame: Any) -> None:
        if self._fired and not self._taken.is_set():
            self._taken.set()
            if self._active:
                raise BudgetExceeded(self.message)
            return  # the cell was done: absorbed
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    def disarm(self) -> None:
        """The cell's code is done (main thread): no stop from now on; one on its way
        is taken here rather than in what follows. Idempotent."""
        self._active = False
        with self._lock:
            pass  # a fire() deciding now has finished deciding
        if self._fired and self.method == "signal":
            deadline = time.monotonic() + SIGNAL_WAIT_S
            while not self._taken.is_set() and time.monotonic() < deadline:
                time.sleep(0.001)  # the pending signal interrupts this and is absorbed
        elif self._fired and self.method == "flag":
            try:
                time.sleep(0)  # a pending interrupt_main() is delivered here
            except KeyboardInterrupt:
                pass
        if self._installed:
            self._installed = False
            signal.signal(signal.SIGINT, self._previous)
