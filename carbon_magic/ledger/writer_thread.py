"""The ledger's background writer thread, and its hand-shake with the recording threads.

:class:`WriterThread` runs one pass of the caller's work at a time under the caller's
lock (for :class:`~carbon_magic.ledger.writer.Ledger`: commit the backlog, then the
retention), sleeping between passes for as long as the last pass asked or until woken.
It knows nothing of files or records: any pass will do, so it can be exercised on its
own. Recording threads use it to hand records over (:meth:`WriterThread.begin_backlog`)
and to wait a little for them (:meth:`WriterThread.wait_idle`); a pass that leaves
nothing pending calls :meth:`WriterThread.end_backlog`. Times in seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["THREAD_NAME", "WriterThread"]

THREAD_NAME = "carbon-magic-ledger-writer"


class WriterThread:
    """One daemon thread (started on first need, again if it ended) that calls
    ``run_pass()`` holding ``lock``; ``run_pass`` returns the seconds until the next
    pass (0: at once), or None to wait until :meth:`wake`. The thread ends at its next
    pass after :meth:`stop`, and ``run_pass`` is not called then."""

    def __init__(self, run_pass: Callable[[], float | None], lock: threading.Lock) -> None:
        self._run_pass = run_pass
        self._lock = lock
        self._thread: threading.Thread | None = None
        self._stopped_thread: threading.Thread | None = None
        self._start_lock = threading.Lock()  # the main and tracker threads may both start it
        self._wake = threading.Event()
        self._idle = threading.Event()  # set when nothing waits for the thread
        self._idle.set()
        self._backlog = False
        self._stopping = False

    @property
    def backlog(self) -> bool:
        """True while records wait for the thread (recording threads leave them to it)."""
        return self._backlog

    @property
    def stopping(self) -> bool:
        """True from :meth:`stop` until :meth:`finish_stop`."""
        return self._stopping

    def is_running(self) -> bool:
        """True while the thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def ensure_running(self) -> None:
        """Start the thread unless it runs, and wake it."""
        with self._start_lock:
            if not self.is_running():
                self._thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)
                self._thread.start()
        self._wake.set()

    def wake(self) -> None:
        """Run the next pass now rather than after the delay the last one asked for."""
        self._wake.set()

    def begin_backlog(self) -> None:
        """Hand what is pending to the thread (started on first need)."""
        self._idle.clear()
        self._backlog = True
        self.ensure_running()

    def end_backlog(self) -> None:
        """Nothing is pending any more: recording threads write for themselves again."""
        self._backlog = False
        self._idle.set()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the backlog to end; True when it has."""
        return self._idle.wait(timeout_s)

    def stop(self) -> None:
        """Ask the thread to end at its next pass (it is woken for it). The caller may
        then take the lock, which the thread lets go of between passes."""
        self._stopped_thread = self._thread
        self._stopping = True
        self._wake.set()

    def finish_stop(self, timeout_s: float = 1.0) -> None:
        """Wait up to ``timeout_s`` for the thread stopped by :meth:`stop` to end (unless
        this is that thread); a later :meth:`ensure_running` starts a new one."""
        thread, self._stopped_thread = self._stopped_thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout_s)
        self._stopping = False

    def _loop(self) -> None:
        delay: float | None = 0.0
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            with self._lock:
                if self._stopping:
                    return
                delay = self._run_pass()
