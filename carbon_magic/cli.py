"""The ``carbon-magic`` command: machine status, fixes, and reports over the ledger.

Exit status: 0 on success; 1 on a runtime error (missing ledger, file exists, bad
setting), with a one-line message on stderr, and for ``doctor`` when something needs
fixing; 2 on a usage error (unknown option, bad value), from argparse.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from carbon_magic._version import __version__
from carbon_magic.doctor import (
    LEDGER_ENV,
    Finding,
    doctor_findings,
    doctor_text,
    machine_status,
    status_text,
)

__all__ = ["build_parser", "main"]

PROG = "carbon-magic"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A runtime problem to report in one line (exit status 1)."""


# ---------------------------------------------------------------- ledger access


def ledger_path_from_option(option: str | None) -> Path:
    """``--ledger`` (relative to the current folder, as paths on a command line are;
    ``auto``: the default), else the kernels' ledger (``$CARBON_MAGIC_LEDGER``, read as
    the kernels read it, else the Jupyter data dir). A folder is refused."""
    from carbon_magic.ledger.paths import AUTO_WORDS, default_ledger_path

    if option is None or option.strip().lower() in AUTO_WORDS:
        return default_ledger_path()
    path = Path(option).expanduser().absolute()
    if path.is_dir():
        raise CliError(f"--ledger must be a ledger file, not the folder {path}")
    return path


def _existing_ledger(args: argparse.Namespace) -> Path:
    """The ledger file of ``--ledger`` (or the default); CliError when there is none."""
    path = ledger_path_from_option(args.ledger)
    if not path.is_file():
        raise CliError(
            f"no ledger at {path} (cells are recorded after `%load_ext carbon_magic`; "
            f"or pass --ledger PATH or set {LEDGER_ENV})"
        )
    _import_journals(path)
    return path


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    """The cell filters of the command line, as the ledger readers take them."""
    return {
        "kernel_id": args.kernel,
        "session_uuid": args.session,
        "notebook_path": args.notebook,
        "since": args.since,
        "until": args.until,
    }


def _read_rows(args: argparse.Namespace) -> tuple[Path, list[dict[str, Any]]]:
    """Cell rows matching the filters, each with its session's hardware and settings."""
    from carbon_magic.ledger import connect_readonly, iter_cells

    path = _existing_ledger(args)
    connection = connect_readonly(path)
    try:
        return path, list(iter_cells(connection, **_filters(args)))
    finally:
        connection.close()


def _import_journals(path: Path) -> None:
    """Write what closing kernels left in journals beside the ledger into it first, so
    reports count those cells and the sessions they ended read ended."""
    from carbon_magic.ledger.journal import import_waiting_journals

    def note(kind: str, message: str) -> None:
        print(f"{PROG}: note: {message}", file=sys.stderr)

    import_waiting_journals(path, note)


# ---------------------------------------------------------------- commands


def cmd_status(args: argparse.Namespace) -> int:
    path = ledger_path_from_option(None)
    _import_journals(path)
    info = machine_status(path, notebook_path=args.notebook)
    print(json.dumps(info, indent=2, default=str) if args.json else status_text(info))
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    try:
        info = machine_status(ledger_path_from_option(None))
    except ValueError as error:  # a bad CARBON_MAGIC_* variable is itself a thing to fix
        print(doctor_text([Finding("settings", str(error), "correct or unset that variable")]))
        return EXIT_ERROR
    findings = doctor_findings(info)
    print(doctor_text(findings))
    return EXIT_ERROR if any(f.fix for f in findings) else EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from carbon_magic.ledger import connect_readonly
    from carbon_magic.reports.report import ledger_parts, report_from_totals

    connection = connect_readonly(_existing_ledger(args))
    try:
        # In one read transaction, so the totals and the rows describe the same cells.
        connection.execute("BEGIN")
        totals, heaviest = ledger_parts(connection, args.top, **_filters(args))
    finally:
        connection.close()
    report = report_from_totals(totals, heaviest, top=args.top)
    print(report._repr_html_() if args.html else str(report))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from carbon_magic.ledger import connect_readonly, iter_cells
    from carbon_magic.reports.export import write_export

    connection = connect_readonly(_existing_ledger(args))
    try:
        connection.execute("BEGIN")  # one consistent state, however long the export takes
        rows = iter_cells(connection, **_filters(args))
        written, count = write_export(rows, args.path, fmt=args.format, force=args.force)
    finally:
        connection.close()
    # Written to standard output, the export is followed by nothing else there.
    where = sys.stderr if str(written) == "-" else sys.stdout
    print(f"wrote {count} cell{'s' if count != 1 else ''} to {written} ({args.format})", file=where)
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    from carbon_magic.reports.session_plot import (
        plot_session,
        read_heartbeats,
        timeline_from_heartbeats,
    )

    path, rows = _read_rows(args)
    beats = read_heartbeats(
        path, kernel_id=args.kernel, since=args.since, until=args.until, notebook_path=args.notebook
    )
    if args.session:
        beats = [b for b in beats if b.get("session_uuid") == args.session]
    if not rows and not beats:
        raise CliError("nothing to plot: no recorded cells or power readings match")
    plot_session(timeline_from_heartbeats(beats), rows, save=args.save)
    print(f"saved {args.save} ({len(rows)} cells, {len(beats)} power readings)")
    return EXIT_OK


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``carbon-magic`` (subcommands with their own ``--help``)."""
    from carbon_magic import command_options as shared
    from carbon_magic.reports import export as export_formats

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Energy and carbon of notebook cells: machine status, fixes, and "
        "reports over the ledger that %load_ext carbon_magic writes.",
        epilog="Exit status: 0 ok, 1 runtime error (or doctor found something to fix), "
        "2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    status = commands.add_parser(
        "status",
        help="what would be measured here and how",
        description="Sensors, methods, location, grid intensity and its source, PUE, ledger, "
        "and the day and notebook caps (CARBON_MAGIC_BUDGET_DAY, CARBON_MAGIC_BUDGET_NOTEBOOK) "
        "with what every session on the ledger spent on them.",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.add_argument(
        "--notebook",
        metavar="PATH",
        help="the notebook path (as Jupyter names it) whose cap to show",
    )
    status.set_defaults(run=cmd_status)

    doctor = commands.add_parser(
        "doctor",
        help="concrete fixes for what is missing",
        description="Check sensors (RAPL permissions, NVIDIA driver), location and ledger, "
        "and print a fix for each problem.",
        epilog="Exit status: 0 when nothing needs fixing, 1 otherwise.",
    )
    doctor.set_defaults(run=cmd_doctor)

    filters = argparse.ArgumentParser(add_help=False)
    group = filters.add_argument_group("ledger and filters")
    group.add_argument(
        "--ledger",
        metavar="PATH",
        help=f"ledger file (default: ${LEDGER_ENV}, else jupyter_data_dir()/carbon_magic/"
        "ledger.sqlite3)",
    )
    group.add_argument("--notebook", metavar="PATH", help="only cells of this notebook path")
    group.add_argument("--kernel", metavar="ID", help="only cells of this kernel id")
    group.add_argument("--session", metavar="UUID", help="only cells of this tracker session")
    shared.SINCE.add_to(group)
    shared.UNTIL.add_to(group)

    report = commands.add_parser(
        "report",
        parents=[filters],
        help="table of cells by emissions",
        description="Recorded cells sorted by emissions, with totals.",
    )
    shared.TOP.add_to(report)
    report.add_argument("--html", action="store_true", help="print an HTML table")
    report.set_defaults(run=cmd_report)

    export = commands.add_parser(
        "export",
        parents=[filters],
        help="write cells to CodeCarbon CSV, CSV or JSON",
        description=f"Write recorded cells to a file. {export_formats.describe_formats()}.",
    )
    for option in (shared.EXPORT_PATH, shared.EXPORT_FORMAT, shared.FORCE):
        option.add_to(export)
    export.set_defaults(run=cmd_export)

    plot = commands.add_parser(
        "plot",
        parents=[filters],
        help="save a figure of power and per-cell emissions",
        description="Power by component from the ledger's heartbeats (kept for a day), cells "
        "shaded, and per-cell emissions with ranges.",
    )
    shared.SAVE.but(required=True).add_to(plot)
    plot.set_defaults(run=cmd_plot)

    from carbon_magic.cpu_model import command as model_command

    model_command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``carbon-magic`` with ``argv`` (default: the command line); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors, 0 for --help/--version
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `carbon-magic report | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (CliError, OSError, ValueError, ImportError, sqlite3.Error) as error:
        message = str(error) or type(error).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
