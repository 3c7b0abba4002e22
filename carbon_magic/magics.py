"""IPython wiring: ``%load_ext carbon_magic``, ``%%carbon``, ``%carbon`` and cell events.

The magics connect the tracker to the panel and the ledger; the tracker itself knows
nothing of IPython. Faults here never break a user's cell: recording errors are
reported once and the cell runs on.
"""

from __future__ import annotations

import argparse
import ast
import functools
import logging
import os
import re
import shlex
import socket
import sys
import threading
import time
import uuid
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import All, TraitError, TraitType, observe
from traitlets.config import Configurable

from carbon_magic.budget import Budget, parse_budget
from carbon_magic.measurement import Measurement
from carbon_magic.panel import (
    Panel,
    panel_html,
    prepare_spare_widget,
    text_summary,
    widgets_available,
    window_power,
)
from carbon_magic.settings import SPECS, parse_setting
from carbon_magic.tracker import LiveReading, Tracker, Window, get_tracker

log = logging.getLogger("carbon_magic")

_CARBON_CELL = re.compile(r"^\s*%%carbon\b")
HEARTBEAT_MIN_S = 2.0  # heartbeat period is max(2 s, interval)


class BudgetExceeded(KeyboardInterrupt):
    """Raised in the main thread when ``--on-exceed stop`` interrupts a cell."""


class SettingTrait(TraitType):
    """A traitlet mirroring one engine setting, validated by the engine's parser."""

    default_value = None
    allow_none = True

    def validate(self, obj: Any, value: Any) -> Any:
        try:
            return parse_setting(self.name, value)
        except ValueError as error:
            raise TraitError(str(error)) from None


def kernel_id_from_connection_file() -> str | None:
    """The kernel id from ``kernel-<id>.json``, or None outside a Jupyter kernel."""
    try:
        from ipykernel.connect import get_connection_file

        name = os.path.basename(get_connection_file())
    except Exception:
        return None
    match = re.match(r"kernel-(.+)\.json$", name)
    return match.group(1) if match else None


def first_line(source: str, limit: int = 120) -> str:
    """The first non-blank source line, shortened to ``limit`` characters."""
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` instead of exiting the kernel."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise UsageError(message or self.format_usage())


@functools.cache  # building an argparse parser costs more than a whole empty cell
def _cell_parser() -> _ArgumentParser:
    parser = _ArgumentParser(prog="%%carbon", add_help=False)
    parser.add_argument("--name", "-n")
    parser.add_argument("--budget", "-b")
    parser.add_argument("--on-exceed", choices=("warn", "stop"), default="warn")
    parser.add_argument("--quiet", "-q", action="store_true")
    return parser


SUBCOMMANDS = (
    "status",
    "config",
    "start",
    "stop",
    "reset",
    "auto",
    "last",
    "report",
    "plot",
    "export",
    "df",
    "card",
)


class _CellRun:
    """State of the cell being recorded automatically."""

    def __init__(self, window: Window, cell_id: str | None, source: str) -> None:
        self.window = window
        self.cell_id = cell_id
        self.source = source


# One SettingTrait per engine setting, so ``%config CarbonMagics.<name>`` and
# ``c.CarbonMagics.<name>`` in ipython_config.py reach the engine's validation.
_SettingTraits = type(
    "_SettingTraits",
    (Configurable,),
    {name: SettingTrait(help=spec.doc).tag(config=True) for name, spec in SPECS.items()},
)


@magics_class
class CarbonMagics(Magics, _SettingTraits):
    """Energy and carbon of notebook cells. Settings are traits too:
    ``%config CarbonMagics.pue = 1.2``."""

    def __init__(self, shell: Any, tracker: Tracker) -> None:
        self.tracker = tracker
        self._syncing = False
        super().__init__(shell=shell, parent=shell)
        self.auto = True
        self.last: Measurement | None = None
        self.records: list[Measurement] = []
        self.session_uuid = uuid.uuid4().hex
        self.kernel_id = kernel_id_from_connection_file()
        self.notebook_path = os.environ.get("JPY_SESSION_NAME") or None
        self._cell: _CellRun | None = None
        self._in_magic_cell = False
        self._running_cell: tuple[str, float] | None = None
        self._last_heartbeat = 0.0
        self._ledger_lock = threading.Lock()
        self.store = self._open_ledger()
        self._sync_traits_from_settings()
        tracker.settings.on_change(self._settings_changed)

    # --------------------------------------------------------------- settings

    @observe(All)
    def _trait_changed(self, change: dict[str, Any]) -> None:
        name = change["name"]
        if name not in SPECS or self._syncing or change["new"] is None:
            return
        self.tracker.settings.update(**{name: change["new"]})

    def _settings_changed(self, changed: dict[str, Any]) -> None:
        """Any change (``configure()``, ``%carbon config``, ``%config``) reaches the
        traits and the ledger's session row."""
        if self._syncing:
            return
        self._sync_traits_from_settings()
        if "ledger" in changed:
            self._reopen_ledger()
        settings = self.tracker.settings
        self._ledger_call(
            "update_session", self.session_uuid, mode=settings.mode, settings=settings.as_dict()
        )

    def _sync_traits_from_settings(self) -> None:
        self._syncing = True
        try:
            values = self.tracker.settings.as_dict()
            for name, spec in SPECS.items():
                # Secrets stay out of traits, so %config never shows them.
                setattr(self, name, None if spec.secret else values[name])
        finally:
            self._syncing = False

    # ------------------------------------------------------------------ ledger

    def _open_ledger(self) -> Any:
        from carbon_magic.ledger import Ledger

        try:
            ledger = Ledger(self.tracker.settings.ledger)
            intensity = self.tracker.intensity()
            ledger.open_session(
                session_uuid=self.session_uuid,
                kernel_id=self.kernel_id,
                notebook_path=self.notebook_path,
                host=socket.gethostname(),
                pid=os.getpid(),
                started_at=time.time(),
                interval_s=self.tracker.settings.interval,
                mode=self.tracker.settings.mode,
                hardware=self.tracker.hardware(),
                methods=self.tracker.methods(),
                settings=self.tracker.settings.as_dict(),
                intensity_source=intensity.source,
                intensity_g_per_kwh=intensity.g_per_kwh,
            )
            return ledger
        except Exception as error:  # the ledger never stops the notebook
            self.tracker._notice(f"ledger unavailable, records kept in memory: {error}")
            return None

    def _reopen_ledger(self) -> None:
        with self._ledger_lock:
            if self.store is not None:
                self.store.close()
            self.store = self._open_ledger()

    def _ledger_call(self, method: str, *args: Any, **kwargs: Any) -> None:
        with self._ledger_lock:
            ledger = self.store
            if ledger is None:
                return
            try:
                getattr(ledger, method)(*args, **kwargs)
            except Exception as error:
                self.tracker._notice(f"ledger {method} failed: {error}")

    # ----------------------------------------------------------- cell events

    def pre_run_cell(self, info: Any) -> None:
        """IPython ``pre_run_cell``: open a window for the cell (never raises)."""
        try:
            raw = getattr(info, "raw_cell", "") or ""
            if not self.auto or not self.tracker.running or _CARBON_CELL.match(raw):
                self._cell = None
                return
            window = self.tracker.begin(first_line(raw))
            self._cell = _CellRun(window, getattr(info, "cell_id", None), raw)
            self._running_cell = (first_line(raw), time.time())
        except Exception as error:
            self._cell = None
            self.tracker._notice(f"cell recording failed: {error!r}")

    def post_run_cell(self, result: Any) -> None:
        """IPython ``post_run_cell``: close the window and record the cell (never raises)."""
        cell, self._cell = self._cell, None
        self._running_cell = None
        if cell is None:
            return
        try:
            m = self.tracker.end(cell.window)
            m.name = ""  # auto-recorded cells have no name; reports show the first line
            m.execution_count = getattr(result, "execution_count", None)
            m.cell_id = cell.cell_id
            m.source = first_line(cell.source)
            m.status = _status_of(result)
            self._record(m, via="auto")
        except Exception as error:
            self.tracker._notice(f"cell recording failed: {error!r}")

    def _record(self, m: Measurement, via: str, budget: str | None = None) -> None:
        self.last = m
        self.records.append(m)
        self._ledger_call("record_cell", self.session_uuid, m, via=via, budget=budget)

    def _on_tick(self, reading: LiveReading) -> None:
        """Tracker listener: heartbeats into the ledger every few seconds."""
        now = time.monotonic()
        period = max(HEARTBEAT_MIN_S, self.tracker.settings.interval)
        if now - self._last_heartbeat < period:
            return
        self._last_heartbeat = now
        self.write_heartbeat(reading)

    def write_heartbeat(self, reading: LiveReading | None = None) -> None:
        """Write the running totals and the current power to the ledger now."""
        session = reading.session if reading else self.tracker.session()
        watts = reading.watts if reading else self.tracker.live_watts()
        running = self._running_cell
        self._ledger_call(
            "heartbeat",
            self.session_uuid,
            at=time.time(),
            watts=watts,
            energy_kwh=session.energy_kwh,
            emissions_g=session.emissions_g,
            emissions_range_g=session.emissions_range_g,
            embodied_g=session.embodied_g,
            intensity_g_per_kwh=session.intensity_g_per_kwh,
            intensity_source=session.intensity_source,
            tracker_state="running" if self.tracker.running else "stopped",
            running_cell=running[0] if running else None,
            running_cell_started_at=running[1] if running else None,
        )

    # ------------------------------------------------------------ %%carbon

    @cell_magic
    def carbon(self, line: str, cell: str) -> Any:  # noqa: D401 - the help text is the docstring
        """Measure this cell with a live panel.

        Usage: %%carbon [--name N] [--budget 5g|0.2kWh] [--on-exceed warn|stop] [--quiet]

          --name, -n       a name for the cell in reports
          --budget, -b     a limit: grams CO2e (mg, g, kg, t) or energy (J, kJ, Wh, kWh, MWh)
          --on-exceed      warn (default): mark the panel and print once;
                           stop: interrupt the cell and record "stopped by budget"
          --quiet, -q      no panel; print a one-line summary at the end

        The cell runs in the notebook's namespace; its last expression's value is
        returned; errors are recorded, then re-raised.
        """
        __tracebackhide__ = True  # noqa: F841 - IPython hides this frame in tracebacks
        args = _cell_parser().parse_args(shlex.split(line))
        budget = None
        if args.budget is not None:
            try:
                budget = parse_budget(args.budget)
            except ValueError as error:
                raise UsageError(str(error)) from None
        code, last_expr = self._compile_cell(cell)
        name = args.name or first_line(cell) or "cell"
        run = self._start_live_run(name, args.name or "", budget, args.on_exceed, args.quiet)
        status, error, result = "ok", None, None
        try:
            result = self._execute(code, last_expr)
        except BudgetExceeded:
            status = "stopped by budget"
        except KeyboardInterrupt as interrupt:
            stopped = run is not None and run.stopping
            status, error = ("stopped by budget" if stopped else "interrupted"), interrupt
        except BaseException as failure:
            status, error = "error", failure
        finally:
            if run is not None:
                run.deactivate()
            self._running_cell = None
        if run is not None:
            self._finish_live_run(run, cell, budget, status)
        if status == "stopped by budget":
            raise BudgetExceeded(
                f"carbon budget {budget.describe() if budget else ''} exceeded; cell stopped"
            ) from None
        if error is not None:
            raise error.with_traceback(error.__traceback__)
        return result

    def _start_live_run(
        self, name: str, explicit_name: str, budget: Budget | None, on_exceed: str, quiet: bool
    ) -> _LiveRun | None:
        """Open the window and show the panel; on any fault, None (the cell still runs)."""
        tracker = self.tracker
        try:
            if not tracker.running:
                tracker.start()
            window = tracker.begin(name)
            self._running_cell = (name, time.time())
            use_widgets = not quiet and widgets_available(self.shell)
            panel = Panel(name, use_widgets)
            run = _LiveRun(self, window, budget, on_exceed, panel, explicit_name)
            run.show()
            tracker.add_listener(run.on_tick)
            return run
        except Exception as failure:
            tracker._notice(f"%%carbon could not start measuring: {failure!r}")
            return None

    def _finish_live_run(
        self, run: _LiveRun, cell: str, budget: Budget | None, status: str
    ) -> None:
        """Close the window, record the cell, freeze the panel (never raises)."""
        tracker = self.tracker
        try:
            m = tracker.end(run.window)
            m.name = run.explicit_name  # the ledger's name column holds explicit names only
            m.execution_count = _current_execution_count(self.shell)
            m.cell_id = _current_cell_id(self.shell)
            m.source = first_line(cell)
            m.status = status
            self._record(m, via="magic", budget=budget.text if budget else None)
            run.finish(m, status)
        except Exception as failure:
            tracker._notice(f"%%carbon recording failed: {failure!r}")
        if run.panel.use_widgets:
            # The next panel's widget, prepared in the tracker thread once this cell is
            # done, so the next %%carbon cell does not wait for a widget to be created.
            tracker.call_soon(prepare_spare_widget)
            tracker.wake()

    def _compile_cell(self, cell: str) -> tuple[Any, Any]:
        """Transform and compile the cell like ``%%time``: body, plus the last expression."""
        transformed = self.shell.transform_cell(cell)
        try:
            tree = self.shell.compile.ast_parse(transformed)
        except SyntaxError as error:
            raise UsageError(f"%%carbon: the cell has a syntax error: {error}") from None
        tree = self.shell.transform_ast(tree)
        filename = self.shell.compile.cache(transformed, self.shell.execution_count)
        last_expr = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last_expr = self.shell.compile(ast.Expression(tree.body.pop().value), filename, "eval")
        return self.shell.compile(tree, filename, "exec"), last_expr

    def _execute(self, code: Any, last_expr: Any) -> Any:
        __tracebackhide__ = True  # noqa: F841
        namespace = self.shell.user_ns
        exec(code, namespace)
        if last_expr is not None:
            return eval(last_expr, namespace)
        return None

    # ------------------------------------------------------------ %carbon

    @line_magic("carbon")
    def carbon_line(self, line: str) -> Any:
        """Configure, inspect and report carbon measurement.

        Usage: %carbon SUBCOMMAND [options]

          status                      tracker state, sensors and how each measures (or why
                                      not), attribution mode, location and intensity source,
                                      session totals
          config [key=value ...]      show settings, or change them (validated; nothing
                                      changes if any value is bad). Also as traits:
                                      %config CarbonMagics.pue = 1.2
          start | stop                start or stop the tracker
          reset                       zero the session totals and the timeline
          auto on|off                 record every cell automatically (default on)
          last                        the last recorded cell's Measurement
          report [--top N] [--all-sessions] [--since DATE]
                                      table of cells sorted by emissions, with totals
          plot [--save PATH]          power timeline and per-cell emissions (a Figure)
          export PATH [--format codecarbon|csv|json] [--force]
                                      write the records (CodeCarbon's emissions.csv format
                                      by default); refuses to overwrite without --force
          df                          the records as a pandas DataFrame
          card [--training-type TEXT] [--hardware TEXT] [--cells SPEC]
                                      Hugging Face model-card co2_eq_emissions block and a
                                      plain-language emissions statement

        Settings:"""
        words = shlex.split(line)
        if not words:
            raise UsageError(f"%carbon needs a subcommand: {', '.join(SUBCOMMANDS)}")
        command, rest = words[0], words[1:]
        if command not in SUBCOMMANDS:
            raise UsageError(
                f"unknown %carbon subcommand {command!r}; valid: {', '.join(SUBCOMMANDS)}"
            )
        from carbon_magic import commands

        return getattr(commands, f"cmd_{command}")(self, rest)


def _status_of(result: Any) -> str:
    error = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
    if error is None:
        return "ok"
    if isinstance(error, BudgetExceeded):
        return "stopped by budget"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return "error"


def _current_execution_count(shell: Any) -> int | None:
    """The execution count of the cell running now (IPython 8 and 9 differ in when they
    increment ``shell.execution_count``; the running cell's result object knows)."""
    result = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    count = getattr(result, "execution_count", None)
    return count if count is not None else getattr(shell, "execution_count", None)


def _current_cell_id(shell: Any) -> str | None:
    """The cell id the frontend sent with this execution, when it sent one."""
    kernel = getattr(shell, "kernel", None)
    try:
        header = kernel.get_parent().get("metadata", {})  # ipykernel ≥ 6
        return header.get("cellId")
    except Exception:
        return None


class _LiveRun:
    """Drives one ``%%carbon`` cell's panel and budget from the tracker thread."""

    def __init__(
        self,
        magics: CarbonMagics,
        window: Window,
        budget: Budget | None,
        on_exceed: str,
        panel: Panel,
        explicit_name: str,
    ) -> None:
        self.magics = magics
        self.window = window
        self.budget = budget
        self.on_exceed = on_exceed
        self.panel = panel
        self.exceeded = False
        self.stopping = False
        self.explicit_name = explicit_name
        self._active = True
        self._active_lock = threading.Lock()
        self.hint = _hint(magics.tracker)

    def _render(self, m: Measurement, state: str) -> tuple[str, str]:
        note = None
        budget_text = None
        used = None
        if self.budget is not None:
            used = self.budget.used_fraction(m)
            budget_text = f"budget {self.budget.describe()}: {used:.0%} used"
            if self.exceeded:
                note = (
                    "budget exceeded: stopping the cell"
                    if self.on_exceed == "stop"
                    else "budget exceeded"
                )
        watts = self.magics.tracker.live_watts()
        return (
            panel_html(
                m,
                watts,
                state,
                budget_text,
                note,
                self.hint,
                title=self.window.name,
                power=window_power(
                    self.magics.tracker.timeline, self.window.started_at.timestamp()
                ),
                budget_fraction=used,
            ),
            text_summary(m, note, title=self.window.name),
        )

    def show(self) -> None:
        m = self.magics.tracker.peek(self.window)
        html_text, text = self._render(m, "running")
        self.panel.show(html_text)
        self.panel.last_text = text

    def on_tick(self, reading: LiveReading) -> None:
        m = self.magics.tracker.peek(self.window)
        if self.budget is not None and not self.exceeded and self.budget.exceeded(m):
            self.exceeded = True
            if self.on_exceed == "stop":
                with self._active_lock:
                    if self._active:  # never interrupt what follows the cell
                        self.stopping = True
                        import _thread

                        _thread.interrupt_main()
        self.panel.update(*self._render(m, "running"))

    def deactivate(self) -> None:
        """The cell's code is done (main thread): no budget interrupt from now on, and
        one already on its way is taken here rather than in the bookkeeping."""
        self.magics.tracker.remove_listener(self.on_tick)
        with self._active_lock:
            self._active = False
        if self.stopping:
            try:
                time.sleep(0)  # a pending interrupt is delivered at this point
            except KeyboardInterrupt:
                pass

    def finish(self, m: Measurement, status: str) -> None:
        if self.budget is not None and self.budget.exceeded(m):
            self.exceeded = True
        html_text, text = self._render(m, status)
        self.panel.finish(html_text, text)
        if self.exceeded and self.on_exceed == "warn" and self.panel.use_widgets:
            print(f"carbon budget {self.budget.describe()} exceeded: {text}", file=sys.stdout)


def _hint(tracker: Tracker) -> str | None:
    """The carbon-aware hint for the panel, when a forecast is available."""
    try:
        from carbon_magic.grid.hints import carbon_aware_hint

        provider = tracker.intensity_provider
        hint = carbon_aware_hint(tracker.intensity(), provider.forecast())
        return hint.text if hint else None
    except Exception:
        return None


CarbonMagics.carbon_line.__doc__ = (CarbonMagics.carbon_line.__doc__ or "") + ", ".join(SPECS)


_state: dict[str, Any] = {}


def _route_log_messages() -> None:
    """Send the package's warnings to the kernel's own stderr (the server log), never
    into whichever cell happens to be running: they are also kept for ``%carbon status``."""
    if any(getattr(h, "_carbon_magic", False) for h in log.handlers):
        return
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(logging.Formatter("[carbon_magic] %(levelname)s %(message)s"))
    handler._carbon_magic = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.propagate = False


def load(ipython: Any) -> None:
    """Start the tracker (once per kernel), register the magics and the cell events."""
    if ipython is None:
        return
    if _state.get("shell") is ipython:
        return  # loaded already: never a second tracker, never double events
    _route_log_messages()
    tracker = get_tracker()
    tracker.start()
    magics = CarbonMagics(ipython, tracker)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    ipython.events.register("pre_run_cell", magics.pre_run_cell)
    ipython.events.register("post_run_cell", magics.post_run_cell)
    tracker.add_listener(magics._on_tick)
    _state.update(shell=ipython, magics=magics)
    magics.write_heartbeat()


def unload(ipython: Any) -> None:
    """Stop recording and the tracker; mark the ledger session ended."""
    magics: CarbonMagics | None = _state.pop("magics", None)
    _state.pop("shell", None)
    if magics is None:
        return
    for event, callback in (
        ("pre_run_cell", magics.pre_run_cell),
        ("post_run_cell", magics.post_run_cell),
    ):
        try:
            ipython.events.unregister(event, callback)
        except ValueError:
            pass
    tracker = magics.tracker
    tracker.remove_listener(magics._on_tick)
    tracker.settings.remove_listener(magics._settings_changed)
    tracker.stop()
    magics.write_heartbeat()
    magics._ledger_call(
        "update_session", magics.session_uuid, tracker_state="stopped", ended_at=time.time()
    )
    with magics._ledger_lock:
        if magics.store is not None:
            magics.store.close()
            magics.store = None
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)


def current_magics() -> CarbonMagics | None:
    """The loaded magics instance, if the extension is loaded."""
    return _state.get("magics")
