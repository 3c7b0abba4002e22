"""The ``%carbon`` subcommands, in one registry: name, arguments, handler.

Each handler takes the kernel's session (``KernelSession``) and its parsed options (an
``argparse.Namespace``). ``%carbon``'s parser, its subparsers, ``%carbon?`` and ``%carbon <sub> --help`` are all
built from :data:`SUBCOMMANDS` (IPython's ``magic_arguments``), so a subcommand is
described once, here.
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import ArgDecorator, argument

from carbon_magic.command_options import (
    EXPORT_FORMAT,
    EXPORT_PATH,
    FORCE,
    SAVE,
    SINCE,
    TOP,
    Option,
)
from carbon_magic.formatting import (
    config_changed_line,
    format_duration,
    format_grams,
    format_grams_range,
    format_kwh,
    format_watts,
)
from carbon_magic.kernel.argparsing import CarbonArgumentParser
from carbon_magic.kernel.beat_hint import tracker_hint
from carbon_magic.kernel.scope_budgets import budget_lines
from carbon_magic.reports.export import DEFAULT_FORMAT, describe_formats
from carbon_magic.setting_specs import SPECS

if TYPE_CHECKING:
    from carbon_magic.kernel.kernel_session import KernelSession


Handler = Callable[["KernelSession", argparse.Namespace], Any]


@dataclass(frozen=True)
class Subcommand:
    """One ``%carbon`` subcommand: its name, a one-line summary (the help texts), its
    arguments (IPython ``argument`` objects) and the handler that runs it."""

    name: str
    summary: str
    handler: Handler
    arguments: tuple[argument, ...] = ()


SUBCOMMANDS: dict[str, Subcommand] = {}  # in the order %carbon? lists them


def subcommand(name: str, summary: str, *arguments: argument) -> Callable[[Handler], Handler]:
    """Register the decorated handler as ``%carbon <name>``."""

    def register(handler: Handler) -> Handler:
        SUBCOMMANDS[name] = Subcommand(name, summary, handler, arguments)
        return handler

    return register


def shared(option: Option) -> argument:
    """An option ``carbon-magic`` has too, as an IPython ``argument``."""
    return argument(*option.flags, **option.settings)


ALL_SESSIONS = argument("--all-sessions", action="store_true", help="every session in the ledger")


class subcommands(ArgDecorator):  # noqa: N801 - named like IPython's decorators
    """A ``magic_arguments`` decorator adding one subparser per registered subcommand
    (``%carbon <sub> --help`` shows its own help)."""

    def add_to_parser(self, parser: argparse.ArgumentParser, group: Any) -> None:
        choices = parser.add_subparsers(
            dest="subcommand",
            metavar="SUBCOMMAND",
            parser_class=CarbonArgumentParser,
            required=True,
        )
        for spec in SUBCOMMANDS.values():
            sub = choices.add_parser(
                spec.name,
                help=spec.summary.replace("%", "%%"),  # help texts are %-formatted
                description=textwrap.fill(spec.summary, 80),
                prog=f"{parser.prog} {spec.name}",
                add_help=True,
            )
            for option in spec.arguments:
                option.add_to_parser(sub, None)
            sub.set_defaults(handler=spec.handler)


class StatusText(str):
    """A multi-line text that shows as itself (not as a quoted string) in IPython."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def status_lines(session: KernelSession) -> list[str]:
    """The lines of ``%carbon status``."""
    tracker = session.tracker
    settings = tracker.settings
    totals = tracker.session()
    intensity = tracker.intensity()
    pue, pue_source = tracker.pue()
    lines = [
        f"tracker: {'running' if tracker.running else 'stopped'}, every {settings.interval:g} s, "
        f"{settings.mode} mode "
        + (
            "(the kernel's share: CPU by busy time, RAM by resident memory, GPUs it uses)"
            if settings.mode == "process"
            else "(the whole machine)"
        ),
        f"recording: {'every cell' if session.auto else 'only %%carbon cells'}",
        "sensors:",
    ]
    for sensor in tracker.sensor_statuses():
        state = sensor.method if sensor.available else "unavailable"
        lines.append(f"  {sensor.component:<4} {sensor.name:<10} {state:<11} {sensor.detail}")
    cpu_time = getattr(tracker.sensors.system_cpu, "source", "?")
    lines.append(f"  CPU time from {cpu_time} (the kernel's share in process mode)")
    lines.append(f"grid: {intensity.g_per_kwh:.0f} g/kWh · {intensity.source}")
    provider = getattr(tracker, "intensity_provider", None)
    if provider is not None:
        lines.append(f"  provider: {provider.status()}")
    hint = tracker_hint(tracker)
    if hint:
        lines.append(f"  {hint}")
    lines.append(f"PUE: {pue:g} ({pue_source})")
    lines.append(
        f"session: {format_duration(totals.duration_s)}, {format_kwh(totals.energy_kwh)}, "
        f"{format_grams_range(totals.emissions_g, *totals.emissions_range_g)} CO2e, "
        f"embodied {format_grams(totals.embodied_g)}, {session.n_recorded} cells recorded"
    )
    watts = tracker.live_watts()
    lines.append(
        "power now: " + ", ".join(f"{name} {format_watts(w)}" for name, w in watts.items())
    )
    lines.append(f"ledger: {session.recorder.status()}")
    lines.extend(budget_lines([s.describe() for s in session.scope_budgets.states(refresh=True)]))
    lines.extend(session.remote_reader.doctor_lines())
    for notice in tracker.notices:
        lines.append(f"note: {notice}")
    return lines


@subcommand(
    "status",
    "tracker state, sensors and how each measures (or why not), attribution mode, "
    "location and intensity source, session totals",
)
def cmd_status(session: KernelSession, options: argparse.Namespace) -> StatusText:
    """``%carbon status``."""
    return StatusText("\n".join(status_lines(session)))


@subcommand(
    "config",
    "show settings, or change them (validated; nothing changes if any value is bad); "
    "also as traits: %config CarbonMagics.pue = 1.2",
    argument("changes", nargs="*", metavar="key=value", help="settings to change"),
)
def cmd_config(session: KernelSession, options: argparse.Namespace) -> StatusText | None:
    """``%carbon config [key=value ...]``: show, or validate-then-apply changes."""
    settings = session.tracker.settings
    args: list[str] = options.changes
    if not args:
        values = settings.as_dict()
        width = max(len(name) for name in SPECS)
        return StatusText(
            "\n".join(
                f"{name:<{width}}  {values[name]!s:<28} ({settings.origin(name)}) {spec.doc}"
                for name, spec in SPECS.items()
            )
        )
    changes: dict[str, str] = {}
    for word in args:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise UsageError(
                f"%carbon config expects key=value pairs (got {word!r}); "
                f"valid keys: {', '.join(SPECS)}"
            )
        changes[key.strip()] = value
    before = settings.as_dict()
    try:
        settings.update(**changes)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return StatusText(config_changed_line(before, settings.as_dict(), list(changes)))


@subcommand("start", "start the tracker")
def cmd_start(session: KernelSession, options: argparse.Namespace) -> None:
    """``%carbon start``."""
    session.tracker.start()
    session.recorder.set_tracker_state("running")
    session.recorder.write_heartbeat()


@subcommand("stop", "stop the tracker; cells are not recorded until start")
def cmd_stop(session: KernelSession, options: argparse.Namespace) -> None:
    """``%carbon stop``: the tracker stops; cells are no longer recorded until start."""
    session.tracker.stop()
    session.recorder.set_tracker_state("stopped")
    session.recorder.write_heartbeat()


@subcommand("reset", "zero the session totals and the timeline (the ledger keeps its records)")
def cmd_reset(session: KernelSession, options: argparse.Namespace) -> None:
    """``%carbon reset``: zero the session totals and timeline (the ledger keeps its records)."""
    session.tracker.reset()
    session.records.clear()
    session.n_recorded = 0


@subcommand(
    "auto",
    "record every cell automatically (on, the default) or only %%carbon cells (off)",
    argument("state", type=str.lower, choices=("on", "off"), metavar="on|off"),
)
def cmd_auto(session: KernelSession, options: argparse.Namespace) -> None:
    """``%carbon auto on|off``."""
    session.auto = options.state == "on"


@subcommand("last", "the last recorded cell's Measurement")
def cmd_last(session: KernelSession, options: argparse.Namespace) -> Any:
    """``%carbon last``: the last recorded cell's Measurement (None before any)."""
    return session.last


def _rows(session: KernelSession, all_sessions: bool = False, since: float | None = None) -> list:
    """Ledger rows of this session (or all), falling back to the in-memory records."""
    return _rows_and_pending(session, all_sessions, since)[0]


def _rows_and_pending(
    session: KernelSession, all_sessions: bool = False, since: float | None = None
) -> tuple[list, int]:
    """As :func:`_rows`, with the cells recorded but not yet written to the ledger file
    (included), and how many those are."""
    from carbon_magic.kernel.report_run import memory_rows

    rows, pending = session.recorder.cells(all_sessions=all_sessions, since=since)
    if not rows and not all_sessions:
        rows = memory_rows(session, since)
    return rows, pending


@subcommand(
    "report",
    "table of cells sorted by emissions, with totals",
    shared(TOP),
    ALL_SESSIONS,
    shared(SINCE),
)
def cmd_report(session: KernelSession, options: argparse.Namespace) -> Any:
    """``%carbon report [--top N] [--all-sessions] [--since WHEN]``.

    Computed off the cell's path: the cell waits at most ``REPORT_WAIT_S`` seconds, and
    a longer report replaces a placeholder when it is ready."""
    from carbon_magic.kernel import report_run

    return report_run.run_bounded(
        lambda: report_run.ledger_report(session, options.top, options.all_sessions, options.since)
    )


@subcommand(
    "plot",
    "power timeline and per-cell emissions (a Figure)",
    shared(SAVE.but(help="also write the figure to PATH (.png, .svg, .pdf)")),
)
def cmd_plot(session: KernelSession, options: argparse.Namespace) -> Any:
    """``%carbon plot [--save PATH]``: returns the matplotlib Figure."""
    from carbon_magic.reports.session_plot import plot_session

    rows = _rows(session)
    if options.save is not None:
        _check_save_path(options.save)
    try:
        figure = plot_session(session.tracker.timeline.points(), rows, save=options.save)
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise UsageError(f"%carbon plot: cannot save {options.save}: {reason}") from None
    _ensure_figure_display(session.shell)
    return figure


def _check_save_path(path: str) -> None:
    """A one-line ``UsageError`` for a ``--save`` path that cannot be written: a missing
    folder, a folder itself, or a file type matplotlib cannot write."""
    from pathlib import Path

    from matplotlib.backend_bases import FigureCanvasBase

    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(
            f"%carbon plot: --save {path} is a folder; give a file name, e.g. plot.png"
        )
    if not target.parent.is_dir():
        raise UsageError(
            f"%carbon plot: cannot save {path}: the folder {target.parent} does not exist"
        )
    kinds = FigureCanvasBase.get_supported_filetypes()
    suffix = target.suffix.lstrip(".").lower()
    if suffix not in kinds:
        raise UsageError(
            f"%carbon plot: cannot save {path}: unknown file type {target.suffix or '(none)'}; "
            f"valid: {', '.join(sorted(kinds))}"
        )


def _ensure_figure_display(shell: Any) -> None:
    """Let IPython show a ``Figure`` as PNG even when pyplot was never imported (the
    figure is built without pyplot's global state, so no inline backend registered)."""
    from matplotlib.figure import Figure

    formatter = shell.display_formatter.formatters["image/png"]
    try:
        formatter.lookup_by_type(Figure)
    except KeyError:
        from IPython.core.pylabtools import print_figure

        formatter.for_type(Figure, lambda figure: print_figure(figure, "png"))


@subcommand(
    "export",
    f"write the records to a file ({DEFAULT_FORMAT} by default); refuses to overwrite "
    f"without --force. {describe_formats()}",
    shared(EXPORT_PATH),
    shared(EXPORT_FORMAT),
    shared(FORCE),
    ALL_SESSIONS,
)
def cmd_export(session: KernelSession, options: argparse.Namespace) -> Any:
    """``%carbon export PATH [--format FORMAT] [--force] [--all-sessions]``."""
    from carbon_magic import ledger as ledger_module
    from carbon_magic.reports import export

    # The ledger's rows are read one batch at a time from one snapshot, followed by the
    # cells not yet written to it: memory stays the same however long the ledger.
    session_uuid = None if options.all_sessions else session.recorder.session_uuid
    connection, pending_rows = session.recorder.read_ledger(
        ledger_module.open_snapshot, all_sessions=options.all_sessions
    )
    try:
        stored = 0
        if connection is not None:
            stored = int(
                ledger_module.cell_totals(connection, session_uuid=session_uuid)["n_cells"]
            )
        rows: Any = pending_rows
        if stored and connection is not None:
            rows = itertools.chain(
                ledger_module.iter_cells(connection, session_uuid=session_uuid), pending_rows
            )
        elif not pending_rows:
            rows = _rows(session, options.all_sessions)  # the kernel's memory, without a ledger
        path, count = export.write_export(
            rows,
            options.path,
            fmt=options.format,
            force=options.force,
            hardware=session.tracker.hardware(),
        )
    except sqlite3.Error as error:
        raise UsageError(f"%carbon export: cannot read the ledger: {error}") from None
    except (FileExistsError, ValueError) as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        reason = error.strerror or str(error)
        if options.path not in reason:
            reason = f"cannot write {options.path}: {reason}"
        raise UsageError(f"%carbon export: {reason}") from None
    finally:
        if connection is not None:
            connection.close()
    pending = len(pending_rows)
    note = f"; {pending} of them not yet written to the ledger (it is busy)" if pending else ""
    print(f"wrote {count} records to {path} ({options.format}){note}")
    return None


@subcommand(
    "df",
    "the records as a pandas DataFrame",
    ALL_SESSIONS,
)
def cmd_df(session: KernelSession, options: argparse.Namespace) -> Any:
    """``%carbon df``: a pandas DataFrame of this session's records."""
    from carbon_magic.reports import export

    try:
        return export.to_dataframe(_rows(session, options.all_sessions))
    except ImportError as error:
        raise UsageError(str(error)) from None


@subcommand(
    "card",
    "Hugging Face model-card co2_eq_emissions block and a plain-language emissions statement",
    argument("--training-type", metavar="TEXT", help='e.g. "fine-tuning"'),
    argument("--hardware", metavar="TEXT", help="hardware used (default: this machine's)"),
    argument("--cells", metavar="SPEC", help="execution counts, e.g. 3,5-8 (default: all)"),
)
def cmd_card(session: KernelSession, options: argparse.Namespace) -> Any:
    """``%carbon card [--training-type TEXT] [--hardware TEXT] [--cells SPEC]``."""
    from carbon_magic.reports import card

    intensity = session.tracker.intensity()
    try:
        return card.model_card(
            _rows(session),
            training_type=options.training_type,
            hardware=options.hardware or session.tracker.hardware(),
            cells=options.cells,
            location=None if intensity.provider == "world-average" else intensity.zone,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
