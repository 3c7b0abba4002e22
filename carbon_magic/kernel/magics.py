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
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import magic_arguments
from traitlets import All, TraitError, TraitType, observe
from traitlets.config import Configurable

from carbon_magic.engine.tracker import Tracker, get_tracker
from carbon_magic.formatting import loaded_line
from carbon_magic.kernel import cell_runner
from carbon_magic.kernel.argparsing import HelpShown, parse_words, split_words
from carbon_magic.kernel.async_cells import AsyncCells
from carbon_magic.kernel.cell_events import CellEvents
from carbon_magic.kernel.cell_options import cell_arguments
from carbon_magic.kernel.commands import SUBCOMMANDS, subcommands
from carbon_magic.kernel.kernel_session import KernelSession
from carbon_magic.kernel.log_routing import route_log_messages, route_warnings, unroute
from carbon_magic.kernel.recorder import set_kernel_recorder
from carbon_magic.setting_specs import SPECS
from carbon_magic.settings import parse_setting

log = logging.getLogger("carbon_magic")

__all__ = ["CarbonMagics", "current_magics", "load", "unload"]


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
        self.session = KernelSession(shell, tracker, kernel_id_from_connection_file())
        self.events = CellEvents(self.session)
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
        self.session.recorder.settings_changed(changed)
        if "remote_calls" in changed and _state.get("magics") is self:  # loaded: on or off now
            if changed["remote_calls"] == "off":
                self.session.remote_reader.close()
            else:
                self.session.remote_reader.install()

    def _sync_traits_from_settings(self) -> None:
        self._syncing = True
        try:
            values = self.tracker.settings.as_dict()
            for name, spec in SPECS.items():
                # Secrets stay out of traits, so %config never shows them.
                setattr(self, name, None if spec.secret else values[name])
        finally:
            self._syncing = False

    # ------------------------------------------------------------ %%carbon

    @magic_arguments("%carbon")  # usage shows as %%carbon
    @cell_arguments()
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
        return cell_runner.run_cell(self.session, line, cell)

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
        return options.handler(self.session, options)


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
    session = magics.session
    ipython.register_magics(magics)
    async_cells = AsyncCells(ipython, session.running_cells)
    async_cells.install()
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    ipython.events.register("pre_run_cell", magics.events.pre_run_cell)
    ipython.events.register("post_run_cell", magics.events.post_run_cell)
    tracker.add_listener(magics.events.on_tick, watching=False)
    _state.update(shell=ipython, magics=magics, async_cells=async_cells)
    set_kernel_recorder(session.recorder)
    atexit.register(_end_at_exit, magics)
    session.cluster_reader.poll()  # a Dask client made before %load_ext: install the plugins now
    if tracker.settings.remote_calls != "off":
        session.remote_reader.install()  # wraps the LLM SDKs imported now and later
    session.recorder.write_heartbeat()
    totals = tracker.session()
    print(loaded_line(totals.methods, totals.intensity_g_per_kwh, totals.intensity_source))


def _end_at_exit(magics: CarbonMagics) -> None:
    """Interpreter exit (e.g. a kernel shut down normally): end the session and write
    what is pending, within EXIT_WAIT_S; the ledger journals what it cannot write."""
    from carbon_magic.ledger import EXIT_WAIT_S

    if _state.get("magics") is not magics:
        return
    magics.session.recorder.end_session(EXIT_WAIT_S)


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
        ("pre_run_cell", magics.events.pre_run_cell),
        ("post_run_cell", magics.events.post_run_cell),
    ):
        try:
            ipython.events.unregister(event, callback)
        except ValueError:
            pass
    tracker, session = magics.tracker, magics.session
    tracker.remove_listener(magics.events.on_tick)
    tracker.settings.remove_listener(magics._settings_changed)
    session.cluster_reader.close()
    session.remote_reader.close()  # the SDKs are exactly as before %load_ext
    tracker.stop()
    session.recorder.write_heartbeat()
    session.recorder.end_session()
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
