"""Where the package's warnings go: the kernel's log (the server's terminal), never the
output of whichever cell happens to be running.

In a kernel, ipykernel points file descriptor 2 at a pipe whose contents it forwards to
the running cell, so even ``sys.__stderr__`` ends up in a notebook. Its ``sys.stderr``
keeps a copy of the real descriptor (``sys.stderr.fileno()``, which ipykernel uses for
its own log); the handler writes there. Faults a cell's own code path meets are also
shown in that cell, once and on one line (``show_in_cell``). The package's own warning
categories (the ledger's) go the same way (``route_warnings``): to the log, and one line
in the cell when they are raised on the main thread, never into another cell.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from typing import IO, Any, TextIO

LOGGER_NAME = "carbon_magic"
_MARK = "_carbon_magic_route"


def real_stderr() -> IO[str]:
    """A text stream on the process's real standard error (the kernel's log)."""
    stream: Any = sys.stderr
    original = sys.__stderr__
    if stream is not None and stream is not original:
        try:
            fd = stream.fileno()
        except Exception:
            fd = None
        if isinstance(fd, int) and fd != 2:
            try:
                return open(fd, "w", buffering=1, closefd=False, errors="replace")  # noqa: SIM115
            except OSError:
                pass
    return original if original is not None else sys.stderr


def route_log_messages() -> logging.Handler:
    """Send the package's log records to the real standard error only (idempotent;
    returns the handler). The messages are also kept for ``%carbon status``."""
    log = logging.getLogger(LOGGER_NAME)
    for handler in log.handlers:
        if getattr(handler, _MARK, False):
            return handler
    handler = logging.StreamHandler(real_stderr())
    handler.setFormatter(logging.Formatter("[carbon_magic] %(levelname)s %(message)s"))
    setattr(handler, _MARK, True)
    log.addHandler(handler)
    log.propagate = False
    return handler


def show_in_cell(message: str) -> None:
    """One line in the running cell's output (its standard error); never raises."""
    try:
        first = message.strip().splitlines()[0] if message.strip() else ""
        print(f"carbon_magic: {first} (details: %carbon status)", file=sys.stderr)
    except Exception:
        pass


def route_warnings(category: type[Warning]) -> None:
    """Show warnings of ``category`` (and its subclasses) through the package's log
    instead of the running cell's output; on the main thread also as one line in the
    cell. Other warnings are shown as before. Idempotent per category."""
    previous = warnings.showwarning
    routed = getattr(previous, _MARK, ())
    if category in routed:
        return
    routed_category = category

    # The parameter names are those of ``warnings.showwarning``, which it replaces.
    def showwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if file is None and issubclass(category, routed_category):
            logging.getLogger(LOGGER_NAME).warning("%s", message)
            if threading.current_thread() is threading.main_thread():
                show_in_cell(str(message))
            return
        previous(message, category, filename, lineno, file, line)

    setattr(showwarning, _MARK, (*routed, category))
    showwarning._carbon_magic_previous = previous  # type: ignore[attr-defined]
    warnings.showwarning = showwarning


def unroute() -> None:
    """Undo ``route_warnings`` and ``route_log_messages``: ``warnings.showwarning`` is
    what it was before (unless something replaced it since, which is left alone), and
    the package's log records propagate again."""
    while getattr(warnings.showwarning, _MARK, ()):
        previous = getattr(warnings.showwarning, "_carbon_magic_previous", None)
        if previous is None:
            break
        warnings.showwarning = previous
    log = logging.getLogger(LOGGER_NAME)
    for handler in list(log.handlers):
        if getattr(handler, _MARK, False):
            log.removeHandler(handler)
            log.propagate = True
