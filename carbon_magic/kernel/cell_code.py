"""A ``%%carbon`` body run as the cell itself: IPython parses, runs, displays and reports
errors exactly as for a plain cell.

The magic is the only statement of its cell, so the body can take the cell's place: it is
cached under the cell's own number (a blank first line where ``%%carbon`` stands, so the
line numbers are the cell's and the cached source is Python), parsed with the shell's
compiler and AST transformers, and run by the shell's own ``run_ast_nodes`` into the
cell's ``ExecutionResult``. Values are shown by the display hook as the cell's
(``ast_node_interactivity`` honoured, ``_``, ``Out``), and an error is shown by IPython's
``run_code`` with the frames of a plain cell, then kept in the result as a plain cell's.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import types
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from IPython.core.error import InputRejected, UsageError

from carbon_magic.kernel import interrupt
from carbon_magic.kernel.interrupt import BudgetExceeded, BudgetStop

TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
# What IPython itself treats as an error in parsing a cell (``run_cell_async``).
PARSE_ERRORS = (OverflowError, SyntaxError, ValueError, TypeError, MemoryError)


@dataclass
class PreparedCell:
    """A body parsed as its cell: the nodes to run and how their values show."""

    name: str  # the cell's name in the compiler's cache (``Cell In[n]`` in tracebacks)
    nodes: list[Any]
    interactivity: str
    awaits: bool  # top-level await: the nodes run as a coroutine in an event loop


def cell_source(shell: Any, cell: str) -> str:
    """The body transformed as IPython transforms a cell, after a blank line that stands
    for the ``%%carbon`` line: Python with the cell's own line numbers."""
    return "\n" + shell.transform_cell(cell)


def has_top_level_await(source: str) -> bool:
    """True when ``source`` (Python) awaits at top level; False for a syntax error."""
    try:
        code = compile(source, "<%%carbon>", "exec", flags=TOP_LEVEL_AWAIT, dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, OverflowError):
        return False
    return bool(code.co_flags & inspect.CO_COROUTINE)


def ends_quietly(shell: Any, source: str) -> bool:
    """A trailing ``;``: the cell shows no value (IPython's own test)."""
    check = getattr(getattr(shell, "displayhook", None), "semicolon_at_end_of_expression", None)
    if check is not None:
        try:
            return bool(check(source))
        except Exception:
            pass
    return source.rstrip().endswith(";")


def prepare(shell: Any, cell: str, result: Any) -> PreparedCell | None:
    """Parse ``cell`` as the cell of ``result`` (its ``ExecutionResult``). None when it
    cannot run: the error is shown as IPython shows a plain cell's and kept in
    ``result.error_before_exec``."""
    try:
        source = cell_source(shell, cell)
    except Exception as error:  # an input transformer failed: shown as IPython does
        shell.showtraceback()
        result.error_before_exec = error
        return None
    name = shell.compile.cache(source, result.execution_count, raw_code=cell)
    try:
        tree = shell.compile.ast_parse(source, filename=name)
    except IndentationError as error:
        shell.showindentationerror()
        result.error_before_exec = error
        return None
    except PARSE_ERRORS as error:
        shell.showsyntaxerror()
        result.error_before_exec = error
        return None
    try:
        tree = shell.transform_ast(tree)
    except InputRejected as error:
        shell.showtraceback()
        result.error_before_exec = error
        return None
    silent = getattr(getattr(result, "info", None), "silent", False)
    # IPython hides every value of a cell ending in ';', which it reads from the cell's
    # history entry: here that is the magic's call, so the body is asked instead.
    quiet = silent or ends_quietly(shell, source)
    interactivity = "none" if quiet else shell.ast_node_interactivity
    return PreparedCell(name, list(tree.body), interactivity, has_top_level_await(source))


def run_nodes(shell: Any, prepared: PreparedCell, result: Any) -> Coroutine[Any, Any, bool]:
    """The shell's own run of the cell's nodes (a coroutine, True when it raised)."""
    return shell.run_ast_nodes(
        prepared.nodes,
        prepared.name,
        interactivity=prepared.interactivity,
        compiler=shell.compile,
        result=result,
    )


def run_to_end(shell: Any, prepared: PreparedCell, result: Any) -> None:
    """Run the cell's nodes here, as IPython runs a cell that needs no event loop; a body
    that awaits runs in the shell's loop runner (IPython's terminal, no loop running)."""
    coroutine = run_nodes(shell, prepared, result)
    if prepared.awaits:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            shell.loop_runner(coroutine)
            return
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()  # IPython did not run the cell in the event loop that is running
    raise UsageError(
        "%%carbon: this cell awaits, but IPython runs it outside the running event loop "
        "(as it would the same cell without %%carbon)"
    )


def _own_frames_cut(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The traceback without its last frames in the budget's signal handler."""
    entries = []
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    while entries and entries[-1].tb_frame.f_code.co_filename == interrupt.__file__:
        entries.pop()
    rebuilt = None
    for entry in reversed(entries):
        rebuilt = types.TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return rebuilt


def is_stop(stop: BudgetStop | None, error: BaseException | None) -> bool:
    """Whether ``error`` is the budget's stop (its signal, or its cancel of a coroutine)."""
    return (
        stop is not None
        and stop.fired
        and isinstance(error, (KeyboardInterrupt, asyncio.CancelledError))
    )


@contextmanager
def stops_shown(shell: Any, stop: BudgetStop | None) -> Iterator[None]:
    """While the cell runs with a budget that stops it: the stop is shown as
    ``BudgetExceeded`` saying which budget (a coroutine cell is stopped by a cancel), and
    an interrupt without the signal handler's own frame; other errors as before."""
    if stop is None:
        yield
        return
    before = (shell.custom_exceptions, shell.CustomTB)

    def show(self: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> Any:
        if is_stop(stop, value):
            value = BudgetExceeded(stop.message)
            etype = BudgetExceeded
        elif before[0] and isinstance(value, before[0]):
            return before[1](etype, value, tb, tb_offset)
        self.showtraceback((etype, value, _own_frames_cut(tb)), tb_offset, True)
        return None

    shell.custom_exceptions = (*before[0], KeyboardInterrupt, asyncio.CancelledError)
    shell.CustomTB = types.MethodType(show, shell)
    try:
        yield
    finally:
        shell.custom_exceptions, shell.CustomTB = before
