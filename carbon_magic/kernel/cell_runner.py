"""The ``%%carbon`` cell: running the body, the live panel, budgets.

A ``%%carbon`` cell's body takes the cell's place (``cell_code``): it is parsed, run,
displayed and its errors shown as a plain cell's, and a body with top-level ``await``
runs in the kernel's event loop (``async_cells`` has IPython run the cell there). A
``%%carbon`` called from other code (``%%time`` around it, a nested one) compiles the body
as ``%%time`` does and re-raises its error. A cell is recorded once: nested ``%%carbon``
cells show their panel but only the outermost is recorded, and a ``%%carbon`` inside an
automatically recorded cell (``%%time`` or ``%%timeit`` around it) names that cell's
record instead of writing its own.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError

from carbon_magic.kernel.cell_code import (
    TOP_LEVEL_AWAIT,
    cell_source,
    ends_quietly,
    is_stop,
    prepare,
    run_nodes,
    run_to_end,
    stops_shown,
)
from carbon_magic.kernel.cell_options import CellOptions, parse_options
from carbon_magic.kernel.interrupt import STOPPED, BudgetExceeded, BudgetStop, status_of
from carbon_magic.kernel.kernel_session import NAMES_OUTER, RECORDS, KernelSession
from carbon_magic.kernel.live_run import PREDICTED_STOP, LiveRun
from carbon_magic.kernel.panel import (
    Panel,
    prepare_spare_widget,
    widgets_available,
)
from carbon_magic.redact import redact_secrets

CARBON_CELL = re.compile(r"^\s*%%carbon\b")


def first_line(source: str, limit: int = 120) -> str:
    """The first non-blank source line, shortened to ``limit`` characters, with the
    values of secret settings redacted."""
    for line in source.splitlines():
        if line.strip():
            return redact_secrets(line.strip())[:limit]
    return ""


# ------------------------------------------------------------------- compiling


@dataclass
class CompiledCell:
    """A ``%%carbon`` body compiled like a plain cell."""

    body: Any  # code object of all but a final expression
    last_expr: Any  # code object of the final expression, or None
    is_async: bool  # top-level await: the code objects make coroutines
    quiet: bool  # a trailing ``;``: the value is not shown


def compile_cell(shell: Any, cell: str, number: int) -> CompiledCell:
    """Transform and compile ``cell`` as IPython compiles a plain cell, cached as the
    source of cell ``number`` so tracebacks show its lines; a ``SyntaxError`` is raised
    as it is."""
    source = cell_source(shell, cell)
    filename = shell.compile.cache(source, number, raw_code=cell)
    __tracebackhide__ = True  # noqa: F841
    with shell.compile.extra_flags(TOP_LEVEL_AWAIT):
        try:
            tree = shell.compile.ast_parse(source, filename=filename)
        except SyntaxError as error:  # shown like a plain cell's, not as this call's
            raise error.with_traceback(None) from None
        tree = shell.transform_ast(tree)
        last_expr = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last_expr = shell.compile(ast.Expression(tree.body.pop().value), filename, "eval")
        body = shell.compile(tree, filename, "exec")
    is_async = any(
        code is not None and bool(code.co_flags & inspect.CO_COROUTINE)
        for code in (body, last_expr)
    )
    return CompiledCell(body, last_expr, is_async, ends_quietly(shell, source))


# --------------------------------------------------------------------- running


def _shell(session: KernelSession) -> Any:
    """The shell the session runs in (a ``%%carbon`` cell only runs inside one)."""
    if session.shell is None:
        raise UsageError("%%carbon runs in IPython only")
    return session.shell


def run_cell(session: KernelSession, line: str, cell: str) -> Any:
    """Run a ``%%carbon`` cell: measure, show, record. As its cell's only statement the
    body runs as the cell itself (a coroutine to await when IPython has the cell await
    it); called from other code, the cell's error is re-raised to it."""
    __tracebackhide__ = True  # noqa: F841 - IPython hides this frame in tracebacks
    options = parse_options(line)
    shell = _shell(session)
    running = session.claim_cell()
    if running is not None:
        if running.awaited:
            return _run_in_place_async(session, options, cell, running.result)
        _run_in_place(session, options, cell, running.result)
        return None
    compiled = compile_cell(shell, cell, current_execution_count(shell) or 0)
    if compiled.is_async:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return shell.loop_runner(_run(session, options, compiled, cell))
        raise UsageError("%%carbon: top-level await runs when %%carbon is the cell's first line")
    return _finish(*_run_sync(session, options, compiled, cell))


def _run_in_place(session: KernelSession, options: CellOptions, cell: str, result: Any) -> None:
    """The body run as the cell of ``result``, here (no event loop needed)."""
    run = _begin(session, options, cell)
    stop = run.stop if run is not None else None
    status = "error"
    try:
        prepared = prepare(session.shell, cell, result)
        if prepared is not None:
            with stops_shown(session.shell, stop):
                _guarded(
                    session.shell,
                    run,
                    stop,
                    result,
                    lambda: run_to_end(session.shell, prepared, result),
                )
        status = _result_status(run, stop, result)
    finally:
        _end(session, run, cell, status, result.execution_count)


async def _run_in_place_async(
    session: KernelSession, options: CellOptions, cell: str, result: Any
) -> None:
    """The body run as the cell of ``result``, awaited in the kernel's event loop."""
    run = _begin(session, options, cell)
    stop = run.stop if run is not None else None
    task = asyncio.current_task()
    status = "error"
    try:
        prepared = prepare(session.shell, cell, result)
        if prepared is not None:
            with stops_shown(session.shell, stop):
                if stop is not None and task is not None:
                    stop.arm(task)
                try:
                    await run_nodes(session.shell, prepared, result)
                finally:
                    _disarm(run, stop)
            if stop is not None and stop.fired and task is not None and hasattr(task, "uncancel"):
                task.uncancel()  # the cancel was the budget's, taken by the cell
        status = _result_status(run, stop, result)
    finally:
        _end(session, run, cell, status, result.execution_count)


def _guarded(
    shell: Any,
    run: LiveRun | None,
    stop: BudgetStop | None,
    result: Any,
    body: Callable[[], None],
) -> None:
    """Run ``body`` with the budget's stop armed; a stop landing outside the cell's own
    code (IPython shows those that land in it) is shown and kept as the cell's error."""
    try:
        if stop is not None:
            stop.arm()
        body()
    except BudgetExceeded as error:
        result.error_in_exec = error
        shell.showtraceback((BudgetExceeded, error, None))
    finally:
        _disarm(run, stop)


def _disarm(run: LiveRun | None, stop: BudgetStop | None) -> None:
    if run is not None and stop is not None:
        run.stopped_at = time.monotonic()
        stop.disarm()


def _result_status(run: LiveRun | None, stop: BudgetStop | None, result: Any) -> str:
    """The cell's status from its result; a budget's stop is kept there as
    ``BudgetExceeded`` (what the kernel's reply names), whichever way it landed."""
    error = result.error_in_exec
    if error is None:
        error = result.error_before_exec
    if stop is not None and is_stop(stop, error):
        if not isinstance(error, BudgetExceeded):
            result.error_in_exec = BudgetExceeded(stop.message)
        return _stop_status(run, STOPPED)
    return status_of(error)


def _run_sync(
    session: KernelSession, options: CellOptions, compiled: CompiledCell, cell: str
) -> tuple[Any, str, BaseException | None, CellOptions, str | None]:
    __tracebackhide__ = True  # noqa: F841
    run = _begin(session, options, cell)
    status, result = "ok", None
    error: BaseException | None = None
    stop = run.stop if run is not None else None
    try:
        try:
            if stop is not None:
                stop.arm()
            try:
                namespace = _shell(session).user_ns
                exec(compiled.body, namespace)
                if compiled.last_expr is not None:
                    result = eval(compiled.last_expr, namespace)
            except BudgetExceeded:
                status = STOPPED
            except KeyboardInterrupt as interrupt:
                stopped = stop is not None and stop.fired
                status, error = (STOPPED if stopped else "interrupted"), interrupt
            except BaseException as failure:
                status, error = "error", failure
            if run is not None and stop is not None:
                run.stopped_at = time.monotonic()
                stop.disarm()
        except BudgetExceeded:  # the stop landed just before or after the code
            status, error, result = STOPPED, None, None
            if stop is not None:
                stop.disarm()
    finally:
        status = _stop_status(run, status)
        status = _end(session, run, cell, status)  # always: nesting, heartbeat, caps stay right
    stop_message = run.scope_stop_message if run is not None else None
    return result if not compiled.quiet else None, status, error, options, stop_message


async def _run(
    session: KernelSession, options: CellOptions, compiled: CompiledCell, cell: str
) -> Any:
    __tracebackhide__ = True  # noqa: F841
    run = _begin(session, options, cell)
    status, result = "ok", None
    error: BaseException | None = None
    stop = run.stop if run is not None else None
    task = asyncio.current_task()
    try:
        if stop is not None and task is not None:
            stop.arm(task)
        try:
            namespace = _shell(session).user_ns
            value = eval(compiled.body, namespace)
            if inspect.isawaitable(value):
                await value
            if compiled.last_expr is not None:
                result = eval(compiled.last_expr, namespace)
                if compiled.last_expr.co_flags & inspect.CO_COROUTINE:
                    result = await result
        except asyncio.CancelledError as cancelled:
            if stop is not None and stop.fired:
                if task is not None and hasattr(task, "uncancel"):
                    task.uncancel()
                status = STOPPED
            else:
                status, error = "interrupted", cancelled
        except BudgetExceeded:
            status = STOPPED
        except KeyboardInterrupt as interrupt:
            status, error = "interrupted", interrupt
        except BaseException as failure:
            status, error = "error", failure
        if run is not None and stop is not None:
            run.stopped_at = time.monotonic()
            stop.disarm()
    finally:
        status = _stop_status(run, status)
        status = _end(session, run, cell, status)
    stop_message = run.scope_stop_message if run is not None else None
    return _finish(result if not compiled.quiet else None, status, error, options, stop_message)


def _stop_status(run: LiveRun | None, status: str) -> str:
    """A budget stop's status says whether the prediction or the spending stopped it."""
    return run.stop_status if status == STOPPED and run is not None else status


def _finish(
    result: Any,
    status: str,
    error: BaseException | None,
    options: CellOptions,
    stop_message: str | None = None,
) -> Any:
    __tracebackhide__ = True  # noqa: F841
    if status.startswith(STOPPED) and stop_message is not None:
        raise BudgetExceeded(stop_message) from None
    if status.startswith(STOPPED):
        budget = options.budget.describe() if options.budget else ""
        what = "predicted to be exceeded" if status == PREDICTED_STOP else "exceeded"
        raise BudgetExceeded(f"carbon budget {budget} {what}; cell stopped") from None
    if error is not None:
        raise error.with_traceback(error.__traceback__)
    return result


def _begin(session: KernelSession, options: CellOptions, cell: str) -> LiveRun | None:
    """Open the window and show the panel; on any fault, None (the cell still runs)."""
    tracker = session.tracker
    try:
        role = session.enter_magic_cell()
        nested = role != RECORDS
        if not tracker.running:
            tracker.start()
        name = options.name or first_line(cell) or "cell"
        window = tracker.begin(name)
        use_widgets = not options.quiet and widgets_available(session.shell)
        run = LiveRun(session, window, options, Panel(name, use_widgets), nested)
        run.names_outer = role == NAMES_OUTER
        run.cluster_edge = session.cluster_reader.start()
        run.remote_edge = session.remote_reader.start()
        if not nested:
            session.recorder.set_running_cell(name, run.forecast)
            session.scope_budgets.watch()
        run.show()
        tracker.add_listener(run.on_tick)
        return run
    except Exception as failure:
        session.notice(f"%%carbon could not start measuring: {failure!r}")
        return None


def _end(
    session: KernelSession,
    run: LiveRun | None,
    cell: str,
    status: str,
    count: int | None = None,
) -> str:
    """Close the window, record the cell (unless nested: inside an automatically recorded
    cell, name that cell's record), freeze the panel (never raises). ``count``: the cell's
    execution count, when known. Returns the cell's status, naming the notebook or day cap
    that stopped it."""
    session.leave_magic_cell()
    if run is None:
        return status
    tracker = session.tracker
    if not run.nested:
        session.recorder.set_running_cell(None)
        caps = session.scope_budgets.unwatch()
        for warning in caps.warnings:
            print(warning)
        if caps.stopped_by is not None and status.startswith(STOPPED):
            status = f"{STOPPED} ({caps.stopped_by})"
            run.scope_stop_message = caps.message
    try:
        tracker.remove_listener(run.on_tick)
        m = tracker.end(run.window)
        session.cluster_reader.end(run.cluster_edge, m)
        session.remote_reader.end(run.remote_edge, m)
        m.name = run.options.name or ""  # the ledger's name column holds explicit names
        m.execution_count = count if count is not None else current_execution_count(session.shell)
        m.cell_id = current_cell_id(session.shell)
        m.source = first_line(cell)
        m.status = status
        if not run.nested:
            session.record(m, via="magic", budget=run.budget_record(m))
        elif run.names_outer:
            session.name_outer_record(m, run.budget_record(m))
        run.finish(m, status)
    except Exception as failure:
        session.notice(f"%%carbon recording failed: {failure!r}")
    if run.panel.use_widgets:
        # The next panel's widget, prepared in the tracker thread once this cell is
        # done, so the next %%carbon cell does not wait for a widget to be created.
        tracker.call_soon(prepare_spare_widget)
        tracker.wake()
    return status


def current_execution_count(shell: Any) -> int | None:
    """The execution count of the cell running now (IPython 8 and 9 differ in when they
    increment ``shell.execution_count``; the running cell's result object knows)."""
    result = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    count = getattr(result, "execution_count", None)
    return count if count is not None else getattr(shell, "execution_count", None)


def current_cell_id(shell: Any) -> str | None:
    """The cell id the frontend sent with this execution, when it sent one."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return None
    try:
        header = kernel.get_parent().get("metadata", {})  # ipykernel ≥ 6
        cell_id = header.get("cellId")
    except Exception:
        return None
    return cell_id if isinstance(cell_id, str) else None
