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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from carbon_magic._version import __version__

PROG = "carbon-magic"
LEDGER_ENV = "CARBON_MAGIC_LEDGER"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A runtime problem to report in one line (exit status 1)."""


# ---------------------------------------------------------------- machine status


def _gpu_device_present(dev_root: str = "/dev", proc_root: str = "/proc") -> bool:
    """True when the NVIDIA kernel driver shows a device (whether or not NVML loads)."""
    return Path(dev_root, "nvidia0").exists() or Path(proc_root, "driver", "nvidia").exists()


def machine_status() -> dict[str, Any]:
    """What would be measured on this machine and how, as a JSON-ready dict.

    Starts a tracker briefly (sensors detected, no window measured) and stops it.
    Keys: ``mode``, ``sensors`` (list of name/component/available/method/detail),
    ``methods``, ``intensity`` (g_per_kwh, provider, zone, source), ``pue``
    (value, source), ``location`` (country, cloud_region, zone, postcode: as set, None
    when not), ``hardware``, ``ledger`` (path, exists), ``gpu_device``, ``notices``.
    Raises ``ValueError`` for a bad ``CARBON_MAGIC_*`` environment variable.
    """
    from carbon_magic.settings import Settings
    from carbon_magic.tracker import Tracker

    settings = Settings()
    tracker = Tracker(settings)
    try:
        tracker.start()
        intensity = tracker.intensity()
        pue, pue_source = tracker.pue()
        info = {
            "version": __version__,
            "mode": settings.mode,
            "sensors": [asdict(status) for status in tracker.sensor_statuses()],
            "methods": tracker.methods(),
            "intensity": {
                "g_per_kwh": intensity.g_per_kwh,
                "range_g_per_kwh": list(intensity.range_g_per_kwh),
                "provider": intensity.provider,
                "zone": intensity.zone,
                "source": intensity.source,
            },
            "pue": {"value": pue, "source": pue_source},
            "location": {
                name: settings.get(name) for name in ("country", "cloud_region", "zone", "postcode")
            },
            "powercap_root": settings.powercap_root,
            "hardware": tracker.hardware(),
            "platform": sys.platform,
            "gpu_device": _gpu_device_present(),
            "notices": list(tracker.notices),
        }
    finally:
        tracker.close()
    from carbon_magic.ledger_read import ledger_problem, read_sessions

    path = _ledger_path(None)
    info["ledger"] = {"path": str(path), "exists": path.is_file(), "problem": ledger_problem(path)}
    if info["ledger"]["exists"] and not info["ledger"]["problem"]:
        states: dict[str, int] = {}
        try:
            for session in read_sessions(path):
                states[session["state"]] = states.get(session["state"], 0) + 1
        except (OSError, sqlite3.Error):
            pass
        info["ledger"]["sessions"] = states  # running | stopped | lost (killed kernels)
    return info


def status_text(info: dict[str, Any]) -> str:
    """``machine_status()`` as lines for a terminal."""
    platform = info.get("platform", sys.platform)
    lines = [f"carbon_magic {info['version']} — {info['mode']} mode on {platform}", "sensors:"]
    for sensor in info["sensors"]:
        state = sensor["method"] if sensor["available"] else "unavailable"
        lines.append(
            f"  {sensor['component']:<4} {sensor['name']:<10} {state:<11} {sensor['detail']}"
        )
    methods = ", ".join(f"{k} {v}" for k, v in info["methods"].items())
    lines.append(f"methods: {methods}")
    location = {k: v for k, v in info["location"].items() if v}
    lines.append(
        "location: "
        + (", ".join(f"{k}={v}" for k, v in location.items()) if location else "not set")
    )
    intensity = info["intensity"]
    lines.append(f"grid: {intensity['g_per_kwh']:.0f} g/kWh · {intensity['source']}")
    lines.append(f"PUE: {info['pue']['value']:g} ({info['pue']['source']})")
    ledger = info["ledger"]
    lines.append(f"ledger: {ledger['path']}" + ("" if ledger["exists"] else " (not created yet)"))
    if ledger.get("sessions"):
        counts = ", ".join(f"{n} {state}" for state, n in sorted(ledger["sessions"].items()))
        lines.append(f"sessions: {counts}")
    for notice in info["notices"]:
        lines.append(f"note: {notice}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Finding:
    """One line of ``doctor``: ``fix`` is None when nothing needs doing."""

    topic: str
    message: str
    fix: str | None = None


_SENSOR_LABELS = {"rapl": "RAPL", "nvml": "NVML", "amdsmi": "amdsmi", "apple": "zeus-apple-silicon"}


def _label(sensor: dict[str, Any]) -> str:
    return _SENSOR_LABELS.get(sensor["name"], sensor["name"])


def _cpu_finding(sensors: list[dict[str, Any]], platform: str) -> Finding:
    cpu = [s for s in sensors if s["component"] == "cpu"]
    measured = next((s for s in cpu if s["available"] and s["method"] == "measured"), None)
    if measured is not None:
        return Finding("CPU", f"measured by {_label(measured)}: {measured['detail']}")
    rapl = next((s for s in cpu if s["name"] == "rapl"), None)
    if rapl is not None and ("chmod" in rapl["detail"] or "root only" in rapl["detail"]):
        return Finding(
            "CPU", "RAPL counters exist but cannot be read; CPU energy is modelled", rapl["detail"]
        )
    apple = next((s for s in cpu if s["name"] == "apple"), None)
    if apple is not None and "not installed" in apple["detail"]:
        return Finding(
            "CPU",
            "Apple Silicon energy counters are not read; CPU energy is modelled",
            "pip install 'carbon_magic[apple]'   (zeus-apple-silicon, in the kernel's environment)",
        )
    if platform.startswith("win"):
        why = "Windows offers no CPU energy counter without a driver"
    elif rapl is not None:
        why = f"RAPL: {rapl['detail']}"
    elif apple is not None:
        why = f"Apple: {apple['detail']}"
    else:
        why = "no CPU energy counter on this platform"
    return Finding("CPU", f"modelled from utilisation, nothing to fix; {why}")


def _ram_finding(sensors: list[dict[str, Any]]) -> Finding:
    ram = next((s for s in sensors if s["component"] == "ram" and s["available"]), None)
    if ram is None:
        return Finding("RAM", "assumed at a constant W/GB, nothing to fix")
    if ram["method"] == "measured":
        return Finding("RAM", f"measured by {_label(ram)}: {ram['detail']}")
    return Finding("RAM", f"{ram['method']}: {ram['detail']}; nothing to fix")


def _gpu_findings(sensors: list[dict[str, Any]], nvidia_device: bool) -> list[Finding]:
    gpus = [s for s in sensors if s["component"] == "gpu"]
    findings = [
        Finding("GPU", f"measured by {_label(s)}: {s['detail']}") for s in gpus if s["available"]
    ]
    for sensor in gpus:
        if sensor["available"]:
            continue
        detail = sensor["detail"]
        if sensor["name"] == "nvml" and nvidia_device:
            if "not installed" in detail:
                fix = "pip install nvidia-ml-py   (in the kernel's environment)"
            else:
                fix = (
                    "check the NVIDIA driver: `nvidia-smi` must list the GPU; install or reload "
                    "the driver matching the kernel module (libnvidia-ml.so must be loadable)"
                )
            findings.append(
                Finding("GPU", f"an NVIDIA GPU is present but not measured: {detail}", fix)
            )
        elif sensor["name"] == "amdsmi":
            fix = (
                "pip install 'carbon_magic[amd]', or use ROCm's own module: "
                "pip install /opt/rocm/share/amd_smi"
                if "not installed" in detail or "too old" in detail
                else "check the ROCm driver: `amd-smi list` must list the GPU"
            )
            findings.append(
                Finding("GPU", f"an AMD GPU is present but not measured: {detail}", fix)
            )
    if not findings:
        findings.append(Finding("GPU", "no GPU to measure on this machine; nothing to fix"))
    return findings


def doctor_findings(info: dict[str, Any]) -> list[Finding]:
    """What is missing on this machine and the concrete fix, from ``machine_status()``.

    Pure: tests pass a hand-made ``info``. A finding with a ``fix`` needs action.
    """
    findings: list[Finding] = []
    sensors = info["sensors"]
    findings.append(_cpu_finding(sensors, info.get("platform", sys.platform)))
    findings.append(_ram_finding(sensors))
    findings.extend(_gpu_findings(sensors, bool(info.get("gpu_device"))))

    if any(info["location"].values()):
        where = ", ".join(f"{k}={v}" for k, v in info["location"].items() if v)
        findings.append(Finding("location", f"set ({where}): {info['intensity']['source']}"))
    else:
        findings.append(
            Finding(
                "location",
                f"not set; using {info['intensity']['source']}",
                "export CARBON_MAGIC_COUNTRY=FR (before starting Jupyter), or "
                "`%carbon config country=FR` in a notebook; on a cloud machine "
                "CARBON_MAGIC_CLOUD_REGION=aws:eu-west-3 (your provider:region)",
            )
        )

    ledger = Path(info["ledger"]["path"])
    folder = next((p for p in (ledger, *ledger.parents) if p.exists()), None)
    problem = info["ledger"].get("problem")
    if info["ledger"]["exists"] and problem:
        findings.append(
            Finding(
                "ledger",
                f"{ledger} cannot be read: {problem}",
                f"move it aside (mv {ledger} {ledger}.bad) to start a fresh ledger; a kernel "
                "that finds it so moves it aside itself",
            )
        )
    elif info["ledger"]["exists"] and not os.access(ledger, os.W_OK):
        findings.append(
            Finding(
                "ledger", f"{ledger} is not writable", f"chmod u+w {ledger}, or set {LEDGER_ENV}"
            )
        )
    elif folder is not None and folder.is_dir() and not os.access(folder, os.W_OK):
        findings.append(
            Finding(
                "ledger",
                f"cannot create {ledger} ({folder} is not writable)",
                f"set {LEDGER_ENV}=/a/writable/path/ledger.sqlite3",
            )
        )
    else:
        findings.append(Finding("ledger", str(ledger)))
    for notice in info.get("notices", []):
        findings.append(Finding("note", notice))
    return findings


def doctor_text(findings: Sequence[Finding]) -> str:
    """Findings as terminal lines, problems first marked ``[fix]``."""
    problems = [f for f in findings if f.fix]
    lines = [
        f"{len(problems)} thing{'s' if len(problems) != 1 else ''} to fix"
        if problems
        else "nothing to fix"
    ]
    for finding in sorted(findings, key=lambda f: f.fix is None):
        mark = "[fix]" if finding.fix else "[ok] "
        lines.append(f"{mark} {finding.topic}: {finding.message}")
        if finding.fix:
            lines.append(f"      fix: {finding.fix}")
    return "\n".join(lines)


# ---------------------------------------------------------------- ledger access


def _ledger_path(option: str | None) -> Path:
    """``--ledger``, else ``$CARBON_MAGIC_LEDGER``, else the default ledger path."""
    if option:
        return Path(option).expanduser()
    env = os.environ.get(LEDGER_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    from carbon_magic.ledger import default_ledger_path

    return default_ledger_path()


def _read_rows(args: argparse.Namespace) -> tuple[Path, list[dict[str, Any]]]:
    """Cell rows matching the filters, each with its session's hardware and settings."""
    from carbon_magic.ledger import connect_readonly, read_cells, read_sessions

    path = _ledger_path(args.ledger)
    if not path.is_file():
        raise CliError(
            f"no ledger at {path} (cells are recorded after `%load_ext carbon_magic`; "
            f"or pass --ledger PATH or set {LEDGER_ENV})"
        )
    connection = connect_readonly(path)
    try:
        rows = read_cells(
            connection,
            kernel_id=args.kernel,
            session_uuid=args.session,
            notebook_path=args.notebook,
            since=args.since,
            until=args.until,
        )
        sessions = {s["session_uuid"]: s for s in read_sessions(connection)}
    finally:
        connection.close()
    for row in rows:
        session = sessions.get(row.get("session_uuid"), {})
        for key in ("hardware_json", "settings_json"):
            row.setdefault(key, session.get(key))
    return path, rows


# ---------------------------------------------------------------- commands


def cmd_status(args: argparse.Namespace) -> int:
    info = machine_status()
    print(json.dumps(info, indent=2, default=str) if args.json else status_text(info))
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    try:
        info = machine_status()
    except ValueError as error:  # a bad CARBON_MAGIC_* variable is itself a thing to fix
        print(doctor_text([Finding("settings", str(error), "correct or unset that variable")]))
        return EXIT_ERROR
    findings = doctor_findings(info)
    print(doctor_text(findings))
    return EXIT_ERROR if any(f.fix for f in findings) else EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from carbon_magic.report import build_report

    _, rows = _read_rows(args)
    report = build_report(rows, top=args.top)
    print(report._repr_html_() if args.html else str(report))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from carbon_magic.export import export_records

    _, rows = _read_rows(args)
    written = export_records(rows, args.path, fmt=args.format, force=args.force)
    print(f"wrote {len(rows)} cell{'s' if len(rows) != 1 else ''} to {written} ({args.format})")
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    from carbon_magic.report import plot_session, read_heartbeats, timeline_from_heartbeats

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


def _time(text: str) -> float:
    from carbon_magic.report import parse_since

    try:
        return parse_since(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number (got {text!r})")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``carbon-magic`` (subcommands with their own ``--help``)."""
    from carbon_magic import export as export_formats

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
        description="Sensors, methods, location, grid intensity and its source, PUE, ledger.",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
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
    group.add_argument(
        "--since",
        type=_time,
        metavar="WHEN",
        help="only cells started at or after WHEN: 2024-05-01, 2024-05-01T14:30, today, "
        "yesterday, 30m, 1h, 7d",
    )
    group.add_argument(
        "--until", type=_time, metavar="WHEN", help="only cells started before WHEN (same forms)"
    )

    report = commands.add_parser(
        "report",
        parents=[filters],
        help="table of cells by emissions",
        description="Recorded cells sorted by emissions, with totals.",
    )
    report.add_argument("--top", type=_positive, metavar="N", help="show the N heaviest cells")
    report.add_argument("--html", action="store_true", help="print an HTML table")
    report.set_defaults(run=cmd_report)

    export = commands.add_parser(
        "export",
        parents=[filters],
        help="write cells to CodeCarbon CSV, CSV or JSON",
        description=f"Write recorded cells to a file. {export_formats.describe_formats()}.",
    )
    export.add_argument("path", metavar="PATH", help="file to write (a folder gets a default name)")
    export.add_argument(
        "--format",
        choices=export_formats.FORMATS,
        default=export_formats.DEFAULT_FORMAT,
        help="default: %(default)s",
    )
    export.add_argument("--force", action="store_true", help="overwrite an existing file")
    export.set_defaults(run=cmd_export)

    plot = commands.add_parser(
        "plot",
        parents=[filters],
        help="save a figure of power and per-cell emissions",
        description="Power by component from the ledger's heartbeats (kept for a day), cells "
        "shaded, and per-cell emissions with ranges.",
    )
    plot.add_argument("--save", required=True, metavar="PATH", help="image file (.png, .svg, .pdf)")
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
