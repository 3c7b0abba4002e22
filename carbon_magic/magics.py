"""IPython wiring: ``%load_ext carbon_magic``, ``%%carbon``, ``%carbon`` and cell events.

The magics connect the tracker to the panel and the ledger; the tracker itself knows
nothing of IPython. Faults here never break a user's cell: recording errors are
reported once and the cell runs on.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
from collections import deque
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import All, TraitError, TraitType, observe
from traitlets.config import Configurable

from carbon_magic import cell_runner
from carbon_magic.argparsing import HelpShown, parse_words, split_words
from carbon_magic.async_cells import AsyncCells
from carbon_magic.cell_runner import (
    CARBON_CELL,
    NAMES_OUTER,
    NESTED,
    ON_EXCEED,
    RECORDS,
    first_line,
)
from carbon_magic.cluster import ClusterCollector
from carbon_magic.commands import SUBCOMMANDS, subcommands
from carbon_magic.formatting import loaded_line
from carbon_magic.interrupt import STOPPED, BudgetExceeded, status_of
from carbon_magic.log_routing import route_log_messages, route_warnings, show_in_cell, unroute
from carbon_magic.measurement import Measurement
from carbon_magic.prediction import CellForecast
from carbon_magic.recorder import Recorder, Via, set_kernel_recorder
from carbon_magic.remote import RemoteCollector
from carbon_magic.running_cells import AutoRecord, RunningCell, RunningCells
from carbon_magic.scope_budgets import ScopeBudgets
from carbon_magic.settings import SPECS, parse_setting
from carbon_magic.tracker import LiveReading, Tracker, get_tracker
from carbon_magic.windows import Window

log = logging.getLogger("carbon_magic")

__all__ = [
    "BudgetExceeded",
    "CarbonMagics",
    "current_magics",
    "first_line",
    "load",
    "unload",
]

RECORDS_KEPT = 1000  # recent records kept in memory; the ledger has them all


class SettingTrait(TraitType):
    """A traitlet mirroring one engine setting, validated by the engine's parser."""

    default_value = None
    allow_none = True

    def validate(self, obj: Any, value: Any) -> Any:
        try:
            name = str(self.name)
            parsed = parse_setting(name, value)
            settings = getattr(getattr(obj, "tracker", None), "settings", None)
            if settings is not None and parsed is not None:
                settings.check(**{name: parsed})  # against the other settings too
            return parsed
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


# One SettingTrait per engine setting, so ``%config CarbonMagics.<name>`` and
# ``c.CarbonMagics.<name>`` in ipython_config.py reach the engine's validation.
if TYPE_CHECKING:  # the type checker sees a plain Configurable; the traits are dynamic
    _SettingTraits = Configurable
else:
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
        self.records: deque[Measurement] = deque(maxlen=RECORDS_KEPT)  # the latest ones
        self.n_recorded = 0  # since load or %carbon reset (records keeps the latest)
        self.recorder = Recorder(
            tracker,
            kernel_id=kernel_id_from_connection_file(),
            notebook_path=os.environ.get("JPY_SESSION_NAME") or None,
        )
        self.session_uuid = self.recorder.session_uuid
        self.kernel_id = self.recorder.kernel_id
        self.notebook_path = self.recorder.notebook_path
        self.running_cells = RunningCells()
        self._magic_depth = 0
        self.cluster_reader = ClusterCollector(tracker)
        self.remote_reader = RemoteCollector(self.notice)
        self.scope_budgets = ScopeBudgets(
            tracker.settings,
            self.recorder.ledger_path,
            self.notebook_path,
            self.session_uuid,
        )
        self._sync_traits_from_settings()
        tracker.settings.on_change(self._settings_changed)

    # --------------------------------------------------------------- settings

    @observe(All)
    def _trait_changed(self, change: dict[str, Any]) -> None:
        name = change["name"]
        if name not in SPECS or self._syncing or change["new"] is None:
            return
        try:
            self.tracker.settings.update(**{name: change["new"]})
        except ValueError as error:  # refused (e.g. by the CPU model): the trait goes back
            self._sync_traits_from_settings()
            raise TraitError(str(error)) from None

    def _settings_changed(self, changed: dict[str, Any]) -> None:
        """Any change (``configure()``, ``%carbon config``, ``%config``) reaches the
        traits and the ledger's session row."""
        if self._syncing:
            return
        self._sync_traits_from_settings()
        self.recorder.settings_changed(changed)
        if "remote_calls" in changed and _state.get("magics") is self:  # loaded: on or off now
            if changed["remote_calls"] == "off":
                self.remote_reader.close()
            else:
                self.remote_reader.install()

    def _sync_traits_from_settings(self) -> None:
        self._syncing = True
        try:
            values = self.tracker.settings.as_dict()
            for name, spec in SPECS.items():
                # Secrets stay out of traits, so %config never shows them.
                setattr(self, name, None if spec.secret else values[name])
        finally:
            self._syncing = False

    # ----------------------------------------------------------- cell events

    def pre_run_cell(self, info: Any) -> None:
        """IPython ``pre_run_cell``: open a window for the user's cell (never raises); a
        cell run by a running cell is part of it."""
        try:
            raw = getattr(info, "raw_cell", "") or ""
            cell, stale = self.running_cells.started(info, bool(CARBON_CELL.match(raw)))
            for left in stale:
                self._close_auto(left.auto, None)
            if cell is not self.running_cells.outermost or cell.carbon:
                return
            if not self.auto or not self.tracker.running:
                return
            window = self.tracker.begin(first_line(raw))
            auto = AutoRecord(
                window,
                getattr(info, "cell_id", None),
                raw,
                CellForecast(window.started_at.timestamp()),
            )
            cell.auto = auto
            auto.cluster_edge = self.cluster_reader.start()
            self.recorder.set_running_cell(first_line(raw), auto.forecast)
            auto.remote_edge = self.remote_reader.start()
            self.scope_budgets.watch()
        except Exception as error:
            self.notice(f"cell recording failed: {error!r}")

    def post_run_cell(self, result: Any) -> None:
        """IPython ``post_run_cell``: close the window and record the cell (never raises)."""
        try:
            ended = self.running_cells.ended(getattr(result, "info", None))
        except Exception as error:
            self.notice(f"cell recording failed: {error!r}")
            return
        for cell in ended:
            self._close_auto(cell.auto, result if cell is ended[-1] else None)
        if ended and ended[-1].claimed and result is not None and self.shell is not None:
            # The cell's only statement, the magic, returned: IPython counts that a success;
            # the cell's own error (in its result) says otherwise, as for a plain cell.
            self.shell.last_execution_succeeded = bool(getattr(result, "success", True))

    def _close_auto(self, auto: AutoRecord | None, result: Any) -> None:
        """Close an automatic record's window and record it (``result``: the cell's
        ``ExecutionResult``, None for a cell whose end IPython never announced)."""
        if auto is None:
            return
        self.recorder.set_running_cell(None)
        caps = self.scope_budgets.unwatch()
        for line in caps.warnings:
            print(line)
        try:
            m = self.tracker.end(auto.window)
            self.cluster_reader.end(auto.cluster_edge, m)
            self.remote_reader.end(auto.remote_edge, m)
            m.name = ""  # auto-recorded cells have no name; reports show the first line
            m.execution_count = getattr(result, "execution_count", None)
            m.cell_id = auto.cell_id
            m.source = first_line(auto.source)
            m.status = _status_of(result)
            via: Via = "auto"
            budget = None
            if auto.magic is not None:  # a %%carbon inside names the record
                via, budget = "magic", auto.magic_budget
                m.name, m.source = auto.magic.name, auto.magic.source
                if auto.magic.status.startswith(STOPPED):
                    m.status = auto.magic.status
            if caps.stopped_by is not None and m.status.startswith(STOPPED):
                m.status = f"{STOPPED} ({caps.stopped_by})"
            self.record(m, via=via, budget=budget)
        except Exception as error:
            self.notice(f"cell recording failed: {error!r}")

    def record(self, m: Measurement, via: Via, budget: str | None = None) -> None:
        """Keep ``m`` as the last record and write it to the ledger."""
        self.last = m
        self.records.append(m)
        self.n_recorded += 1
        self.scope_budgets.recorded(m)
        self.recorder.record_cell(m, via=via, budget=budget)

    def _on_tick(self, reading: LiveReading) -> None:
        """Tracker listener: follows the running cell's progress (``%%carbon`` cells
        follow their own) and heartbeats into the ledger every few seconds."""
        outermost = self.running_cells.outermost
        cell = outermost.auto if outermost is not None else None
        if cell is not None:
            prediction = None
            try:
                current = self.tracker.peek(cell.window)
                prediction = cell.forecast.update(lambda: current)
            except Exception as error:  # only the prediction is lost, never the heartbeat
                self.tracker.notice(f"progress prediction failed: {error!r}")
            self._check_scope_budgets(cell.window, prediction)
        self.recorder.on_tick(reading)

    def _check_scope_budgets(self, window: Window, prediction: Any) -> None:
        """Tracker thread: the day and notebook caps against the running cell (with its
        prediction when ``budget_scope_predict`` is on); a fault is reported once."""
        try:
            predicted = prediction if self.tracker.settings.get("budget_scope_predict") else None
            self.scope_budgets.on_tick(self.tracker.peek(window), predicted)
        except Exception as error:
            self.tracker.notice(f"notebook/day budget check failed: {error!r}")

    # ------------------------------------------------------------ %%carbon

    @magic_arguments("%carbon")  # usage shows as %%carbon
    @argument("--name", "-n", help="a name for the cell in reports")
    @argument(
        "--budget",
        "-b",
        metavar="LIMIT",
        help="a limit: grams CO2e (µg, mg, g, kg, Mg, t) or energy (J, kJ, µWh, mWh, Wh, "
        "kWh, MWh), e.g. 5g; mWh and MWh, mg and Mg differ by case",
    )
    @argument(
        "--on-exceed",
        choices=ON_EXCEED,
        default=ON_EXCEED[0],
        help="warn (default): mark the panel and print once; stop: interrupt the cell (a "
        "SIGINT, as a kernel interrupt: sleeps and I/O end too; a native call ends first) "
        'and record "stopped by budget" and how far over it ran',
    )
    @argument(
        "--predict",
        "-p",
        action="store_true",
        help="act on the budget as soon as the low end of the predicted total is over it "
        '(after 10 %% of the work or 30 s); a stop is recorded as "stopped by budget '
        '(predicted)". Needs --budget.',
    )
    @argument("--quiet", "-q", action="store_true", help="no panel; one summary line at the end")
    @cell_magic
    def carbon(self, line: str, cell: str) -> Any:
        """Measure this cell with a live panel.

        While the cell runs a tqdm bar with a total (or calls carbon_magic.progress()),
        the panel predicts its total at completion, with a range and an ETA.

        The cell runs like a plain cell, in the notebook's namespace: its last
        expression's value is returned (a trailing ; hides it), top-level await works,
        a syntax error shows with the cell's own line numbers; errors are recorded,
        then re-raised. Nested %%carbon cells are recorded once, by the outermost.
        """
        __tracebackhide__ = True  # noqa: F841 - IPython hides this frame in tracebacks
        return cell_runner.run_cell(self, line, cell)

    def claim_cell(self) -> RunningCell | None:
        """The running cell, when the ``%%carbon`` starting now is that cell itself (its
        only statement, run by IPython); it then runs the body as the cell. None when
        the magic is called from other code."""
        cell = self.running_cells.innermost
        result = getattr(getattr(self.shell, "displayhook", None), "exec_result", None)
        if cell is None or not cell.carbon or cell.claimed:
            return None
        if result is None or getattr(result, "info", None) is not cell.info:
            return None
        cell.claimed, cell.result = True, result
        return cell

    def enter_magic_cell(self) -> str:
        """A ``%%carbon`` cell starts: what it does with its record (``cell_runner``'s
        RECORDS, NESTED or NAMES_OUTER). One cell has one record: a ``%%carbon`` nested
        in another is shown, not recorded; one in a cell recorded automatically (``%%time``
        or ``%%timeit`` around it) names that cell's record."""
        self._magic_depth += 1
        if self._magic_depth > 1:
            return NESTED
        outermost = self.running_cells.outermost
        if outermost is None:
            return RECORDS  # called outside any cell
        if outermost.auto is not None:
            return NAMES_OUTER
        if outermost.recorded:
            return NESTED
        outermost.recorded = True
        return RECORDS

    def name_outer_record(self, m: Measurement, budget: str | None) -> None:
        """A ``%%carbon`` inside an automatically recorded cell has ended: the first one
        names the cell's record and gives it its budget."""
        outermost = self.running_cells.outermost
        auto = outermost.auto if outermost is not None else None
        if auto is not None and auto.magic is None:
            auto.magic, auto.magic_budget = m, budget

    def leave_magic_cell(self) -> None:
        """A ``%%carbon`` cell has ended."""
        self._magic_depth = max(0, self._magic_depth - 1)

    def notice(self, message: str) -> None:
        """Report a fault met on the cell's own path: once in the server log and in
        ``%carbon status``, and one line in the cell where it first happened."""
        new = message not in self.tracker.notices
        self.tracker.notice(message)
        if new:
            show_in_cell(message)

    # ------------------------------------------------------------ %carbon

    @magic_arguments("carbon")
    @subcommands()
    # IPython types line_magic(name) as "a function or a decorator", which a checker
    # cannot apply; at run time it is the decorator.
    @line_magic("carbon")  # type: ignore[arg-type]
    def carbon_line(self, line: str) -> Any:
        """Configure, inspect and report carbon measurement.

        %carbon SUBCOMMAND --help shows a subcommand's options.
        """
        words = split_words(line, "%carbon")
        if not words:
            raise UsageError(f"%carbon needs a subcommand: {', '.join(SUBCOMMANDS)}")
        if words[0] not in SUBCOMMANDS:
            raise UsageError(
                f"unknown %carbon subcommand {words[0]!r}; valid: {', '.join(SUBCOMMANDS)}"
            )
        try:
            options = parse_words(CarbonMagics.carbon_line.parser, words, "%carbon")
        except HelpShown:
            return None
        return options.handler(self, options)


def _status_of(result: Any) -> str:
    error = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
    return status_of(error)


CarbonMagics.carbon_line.__doc__ = (
    (CarbonMagics.carbon_line.__doc__ or "")
    + "\nSettings (%carbon config key=value): "
    + ", ".join(SPECS)
)


_state: dict[str, Any] = {}


def _origin_note(error: ValueError) -> str:
    """Which environment variables set the settings an error names."""
    try:
        settings = get_tracker().settings
    except ValueError:
        return ""  # the variables themselves are named in the error
    named = [
        spec.env_var
        for name, spec in SPECS.items()
        if name in str(error)
        and spec.env_var not in str(error)
        and settings.origin(name) == "environment"
    ]
    return f" (set by {', '.join(named)}; fix or unset it, then load again)" if named else ""


def load(ipython: Any) -> None:
    """Start the tracker (once per kernel), register the magics and the cell events."""
    if ipython is None:
        return
    if _state.get("shell") is ipython:
        return  # loaded already: never a second tracker, never double events
    route_log_messages()
    from carbon_magic.ledger import LedgerWarning

    route_warnings(LedgerWarning)
    try:
        tracker = get_tracker()
        if not tracker.running:
            tracker.settings.reload_environment()  # fixed variables count on a new load
        tracker.start()
    except ValueError as error:  # conflicting settings, e.g. from CARBON_MAGIC_* variables
        raise UsageError(f"carbon_magic not loaded: {error}{_origin_note(error)}") from None
    magics = CarbonMagics(ipython, tracker)
    ipython.register_magics(magics)
    async_cells = AsyncCells(ipython, magics.running_cells)
    async_cells.install()
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    ipython.events.register("pre_run_cell", magics.pre_run_cell)
    ipython.events.register("post_run_cell", magics.post_run_cell)
    tracker.add_listener(magics._on_tick, watching=False)
    _state.update(shell=ipython, magics=magics, async_cells=async_cells)
    set_kernel_recorder(magics.recorder)
    atexit.register(_end_at_exit, magics)
    magics.cluster_reader.poll()  # a Dask client made before %load_ext: install the plugins now
    if tracker.settings.remote_calls != "off":
        magics.remote_reader.install()  # wraps the LLM SDKs imported now and later
    magics.recorder.write_heartbeat()
    session = tracker.session()
    print(loaded_line(session.methods, session.intensity_g_per_kwh, session.intensity_source))


def _end_at_exit(magics: CarbonMagics) -> None:
    """Interpreter exit (e.g. a kernel shut down normally): end the session and write
    what is pending, within EXIT_WAIT_S; the ledger journals what it cannot write."""
    from carbon_magic.ledger import EXIT_WAIT_S

    if _state.get("magics") is not magics:
        return
    magics.recorder.end_session(EXIT_WAIT_S)


def unload(ipython: Any) -> None:
    """Stop recording and the tracker; mark the ledger session ended."""
    magics: CarbonMagics | None = _state.pop("magics", None)
    _state.pop("shell", None)
    async_cells: AsyncCells | None = _state.pop("async_cells", None)
    if async_cells is not None:
        async_cells.uninstall()
    if magics is None:
        return
    _unregister_magics(ipython, magics)
    unroute()
    atexit.unregister(_end_at_exit)
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
    magics.cluster_reader.close()
    magics.remote_reader.close()  # the SDKs are exactly as before %load_ext
    tracker.stop()
    magics.recorder.write_heartbeat()
    magics.recorder.end_session()
    set_kernel_recorder(None)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)


def _unregister_magics(ipython: Any, magics: CarbonMagics) -> None:
    """Take ``%carbon`` and ``%%carbon`` out of the shell (IPython has no call for it)."""
    manager = ipython.magics_manager
    for table in manager.magics.values():
        for name, function in list(table.items()):
            if getattr(function, "__self__", None) is magics:
                del table[name]
    for key, value in list(manager.registry.items()):
        if value is magics:
            del manager.registry[key]


def current_magics() -> CarbonMagics | None:
    """The loaded magics instance, if the extension is loaded."""
    return _state.get("magics")
