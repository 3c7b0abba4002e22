"""The ``%%carbon`` cell: options, compiling and running the body, the live panel, budgets.

The body is transformed, compiled and run like a plain cell (as ``%%time`` does): a
syntax error shows as a plain cell's ``SyntaxError`` with the cell's own line numbers,
a trailing ``;`` hides the value, and a body with top-level ``await`` runs in the
kernel's event loop (an input transformer turns such a cell into an awaited call of
``run_cell_async``). A cell is recorded once: nested ``%%carbon`` cells show their panel
but only the outermost is recorded, and a ``%%carbon`` inside an automatically recorded
cell (``%%time`` around it) replaces that cell's automatic record.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from carbon_magic.argparsing import join_value_options, parse_words, split_words
from carbon_magic.budget import Budget, parse_budget
from carbon_magic.interrupt import BudgetExceeded
from carbon_magic.live_run import PREDICTED_STOP, STOPPED, LiveRun
from carbon_magic.panel import (
    Panel,
    prepare_spare_widget,
    widgets_available,
)
from carbon_magic.redact import redact_secrets

if TYPE_CHECKING:
    from carbon_magic.magics import CarbonMagics

CARBON_CELL = re.compile(r"^\s*%%carbon\b")


def first_line(source: str, limit: int = 120) -> str:
    """The first non-blank source line, shortened to ``limit`` characters, with the
    values of secret settings redacted."""
    for line in source.splitlines():
        if line.strip():
            return redact_secrets(line.strip())[:limit]
    return ""


ON_EXCEED = ("warn", "stop")  # what a budget does when exceeded; the first is the default


@dataclass
class CellOptions:
    """``%%carbon``'s parsed options."""

    name: str | None
    budget: Budget | None
    on_exceed: str
    quiet: bool
    predict: bool = False  # act on the predicted total (needs a budget)


def parse_options(line: str) -> CellOptions:
    """Parse ``%%carbon``'s line with the options declared on the magic
    (``magic_arguments``); every bad option is a one-line ``UsageError``."""
    from carbon_magic.magics import CarbonMagics

    words = join_value_options(split_words(line, "%%carbon"), ("--budget", "-b"))
    args = parse_words(CarbonMagics.carbon.parser, words, "%%carbon")
    budget = None
    if args.budget is not None:
        try:
            budget = parse_budget(args.budget)
        except ValueError as error:
            raise UsageError(f"%%carbon: {error}") from None
    if args.predict and budget is None:
        raise UsageError(
            "%%carbon: --predict acts on a budget: give --budget too, e.g. "
            "--budget 5g --predict (the prediction itself is shown without any option)"
        )
    return CellOptions(args.name, budget, args.on_exceed, args.quiet, args.predict)


# ------------------------------------------------------------------- compiling


@dataclass
class CompiledCell:
    """A ``%%carbon`` body compiled like a plain cell."""

    body: Any  # code object of all but a final expression
    last_expr: Any  # code object of the final expression, or None
    is_async: bool  # top-level await: the code objects make coroutines
    quiet: bool  # a trailing ``;``: the value is not shown


def compile_cell(shell: Any, line: str, cell: str) -> CompiledCell:
    """Transform and compile ``cell`` as IPython compiles a plain cell.

    The source is cached under the cell's own name with the ``%%carbon`` line first, so
    tracebacks and a ``SyntaxError`` (raised as it is) point at the cell's own lines.
    """
    transformed = shell.transform_cell(cell)
    shown = f"%%carbon {line}".rstrip() + "\n" + transformed
    filename = shell.compile.cache(shown, shell.execution_count)
    flags = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
    __tracebackhide__ = True  # noqa: F841
    with shell.compile.extra_flags(flags):
        try:
            tree = shell.compile.ast_parse("\n" + transformed, filename=filename)
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
    return CompiledCell(body, last_expr, is_async, _ends_with_semicolon(shell, transformed))


def _ends_with_semicolon(shell: Any, source: str) -> bool:
    hook = getattr(shell, "displayhook", None)
    check = getattr(hook, "semicolon_at_end_of_expression", None)
    if check is not None:
        try:
            return bool(check(source))
        except Exception:
            pass
    return source.rstrip().endswith(";")


def body_kind(shell: Any, cell: str) -> str:
    """``"sync"``, ``"async"`` (top-level ``await``) or ``"syntax-error"`` for a
    ``%%carbon`` body; compiled without caching it (this runs on every transform)."""
    try:
        source = "\n" + shell.transform_cell(cell)
        flags = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
        code = compile(source, "<%%carbon>", "exec", flags=flags, dont_inherit=True)
    except SyntaxError:
        return "syntax-error"
    except Exception:
        return "sync"  # the magic itself reports what is wrong
    return "async" if code.co_flags & inspect.CO_COROUTINE else "sync"


class CellTransformer:
    """An input transformer (``shell.input_transformers_cleanup``) for ``%%carbon`` cells
    whose body cannot run inside a synchronous magic call:

    - a body with top-level ``await`` becomes ``await run_cell_async(line, body)``, which
      IPython runs in the kernel's event loop like a plain async cell;
    - a body with a syntax error becomes the body itself after a blank first line, so
      IPython reports it exactly as for a plain cell, with the cell's own line numbers.
    """

    def __init__(self, shell: Any) -> None:
        self.shell = shell

    def __call__(self, lines: list[str]) -> list[str]:
        try:
            return self._transform(lines)
        except Exception:  # it sees every cell: a fault here must never break one
            return lines

    def _transform(self, lines: list[str]) -> list[str]:
        if not lines or not CARBON_CELL.match(lines[0]):
            return lines
        line = lines[0].strip()[len("%%carbon") :].strip()
        body = "".join(lines[1:])
        kind = body_kind(self.shell, body)
        if kind == "syntax-error":
            return ["\n", *lines[1:]]
        if kind == "async":
            module = __name__.rpartition(".")[2]
            call = f"{module}.run_cell_async({line!r}, {body!r})"
            return [f"await __import__({__name__!r}).{call}\n"]
        return lines


# --------------------------------------------------------------------- running


def _shell(magics: CarbonMagics) -> Any:
    """The shell the magics run in (a ``%%carbon`` cell only runs inside one)."""
    if magics.shell is None:
        raise UsageError("%%carbon runs in IPython only")
    return magics.shell


def run_cell(magics: CarbonMagics, line: str, cell: str) -> Any:
    """Run a ``%%carbon`` cell: measure, show, record, re-raise the cell's error."""
    __tracebackhide__ = True  # noqa: F841 - IPython hides this frame in tracebacks
    options = parse_options(line)
    compiled = compile_cell(magics.shell, line, cell)
    if compiled.is_async:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return _shell(magics).loop_runner(_run(magics, options, compiled, cell))
        raise UsageError("%%carbon: top-level await runs when %%carbon is the cell's first line")
    return _finish(*_run_sync(magics, options, compiled, cell))


async def run_cell_async(line: str, cell: str) -> Any:
    """Run a ``%%carbon`` cell whose body has top-level ``await``, in the running loop."""
    __tracebackhide__ = True  # noqa: F841
    from carbon_magic.magics import current_magics

    magics = current_magics()
    if magics is None:
        raise UsageError("%%carbon: load the extension first: %load_ext carbon_magic")
    options = parse_options(line)
    compiled = compile_cell(magics.shell, line, cell)
    return await _run(magics, options, compiled, cell)


def _run_sync(
    magics: CarbonMagics, options: CellOptions, compiled: CompiledCell, cell: str
) -> tuple[Any, str, BaseException | None, CellOptions, str | None]:
    __tracebackhide__ = True  # noqa: F841
    run = _begin(magics, options, cell)
    status, result = "ok", None
    error: BaseException | None = None
    stop = run.stop if run is not None else None
    try:
        try:
            if stop is not None:
                stop.arm()
            try:
                namespace = _shell(magics).user_ns
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
        status = _end(magics, run, cell, status)  # always: nesting, heartbeat, caps stay right
    stop_message = run.stop_message if run is not None else None
    return result if not compiled.quiet else None, status, error, options, stop_message


async def _run(
    magics: CarbonMagics, options: CellOptions, compiled: CompiledCell, cell: str
) -> Any:
    __tracebackhide__ = True  # noqa: F841
    run = _begin(magics, options, cell)
    status, result = "ok", None
    error: BaseException | None = None
    stop = run.stop if run is not None else None
    task = asyncio.current_task()
    try:
        if stop is not None and task is not None:
            stop.arm(task)
        try:
            namespace = _shell(magics).user_ns
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
        status = _end(magics, run, cell, status)
    stop_message = run.stop_message if run is not None else None
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


def _begin(magics: CarbonMagics, options: CellOptions, cell: str) -> LiveRun | None:
    """Open the window and show the panel; on any fault, None (the cell still runs)."""
    tracker = magics.tracker
    try:
        nested = magics.enter_magic_cell()
        if not tracker.running:
            tracker.start()
        name = options.name or first_line(cell) or "cell"
        window = tracker.begin(name)
        use_widgets = not options.quiet and widgets_available(magics.shell)
        run = LiveRun(magics, window, options, Panel(name, use_widgets), nested)
        run.cluster_edge = magics.cluster_reader.start()
        run.remote_edge = magics.remote_reader.start()
        if not nested:
            magics.recorder.set_running_cell(name, run.forecast)
            magics.scope_budgets.watch()
        run.show()
        tracker.add_listener(run.on_tick)
        return run
    except Exception as failure:
        magics.notice(f"%%carbon could not start measuring: {failure!r}")
        return None


def _end(magics: CarbonMagics, run: LiveRun | None, cell: str, status: str) -> str:
    """Close the window, record the cell (unless nested), freeze the panel (never raises).
    Returns the cell's status, naming the notebook or day cap that stopped it."""
    magics.leave_magic_cell()
    if run is None:
        return status
    tracker = magics.tracker
    if not run.nested:
        magics.recorder.set_running_cell(None)
        caps = magics.scope_budgets.unwatch()
        for warning in caps.warnings:
            print(warning)
        if caps.stopped_by is not None and status.startswith(STOPPED):
            status = f"{STOPPED} ({caps.stopped_by})"
            run.stop_message = caps.message
    try:
        tracker.remove_listener(run.on_tick)
        m = tracker.end(run.window)
        magics.cluster_reader.end(run.cluster_edge, m)
        magics.remote_reader.end(run.remote_edge, m)
        m.name = run.options.name or ""  # the ledger's name column holds explicit names
        m.execution_count = current_execution_count(magics.shell)
        m.cell_id = current_cell_id(magics.shell)
        m.source = first_line(cell)
        m.status = status
        if not run.nested:
            magics.record(m, via="magic", budget=run.budget_record(m))
        run.finish(m, status)
    except Exception as failure:
        magics.notice(f"%%carbon recording failed: {failure!r}")
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
