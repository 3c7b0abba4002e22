"""``carbon-magic model``: what the CPU power model assumes for a CPU, at chosen loads.

    carbon-magic model --cpu "AMD EPYC 7742" --threads 128 --load 0,10,50,100 [--json]

Without ``--cpu`` it describes this machine as the tracker sees it (model name,
visible CPUs, virtual machine or not, package size). Prints the method, the source of
the figures, the features used (family, cores per package, TDP, host package) and
where each came from, and per load the modelled power with its low and high. Bad numbers are
usage errors (exit status 2) naming the valid range.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from carbon_magic.cpu_model import power
from carbon_magic.cpu_model.identify import PROVIDERS

DEFAULT_LOADS = "0,10,25,50,75,100"
MAX_THREADS = 100_000
MAX_SOCKETS = 64
MAX_TDP_W = 2000.0


def _number_in(kind: type, low: float, high: float, what: str):
    """An argparse type: a number of ``kind`` in [low, high], else a message naming it."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} must be a {'whole ' if kind is int else ''}number from {low:g} "
                f"to {high:g} (got {text!r})"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{what} must be from {low:g} to {high:g} (got {text!r})"
            )
        return value

    return parse


def _above_zero(limit: float, what: str, unit: str = ""):
    """An argparse type: a number above 0 and at most ``limit``, else a message naming it."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 < value <= limit:
            raise argparse.ArgumentTypeError(
                f"{what} must be a number above 0 and at most {limit:g}{unit} (got {text!r})"
            )
        return value

    return parse


def _loads(text: str) -> list[float]:
    """``"0,10,50,100"`` → [0.0, 10.0, 50.0, 100.0]; each a percentage from 0 to 100."""
    parts = [part.strip() for part in text.split(",")]
    if not parts or any(not part for part in parts):
        raise argparse.ArgumentTypeError(
            f"--load must be percentages from 0 to 100 separated by commas (got {text!r})"
        )
    parse = _number_in(float, 0, 100, "each --load value")
    return [parse(part) for part in parts]


def add_parser(commands: Any) -> None:
    """Register ``model`` on the ``carbon-magic`` subcommand parsers."""
    parser = commands.add_parser(
        "model",
        help="what the CPU power model assumes, per load",
        description="The load→power curve the CPU model uses where no energy counter "
        "exists: method, source, and power with its range at each load. Without --cpu, "
        "this machine (the cpu_idle_w / cpu_max_w settings are not applied).",
    )
    parser.add_argument("--cpu", metavar="NAME", help='CPU model name, e.g. "AMD EPYC 7742"')
    parser.add_argument(
        "--threads",
        type=_above_zero(MAX_THREADS, "--threads"),
        metavar="N",
        help="visible hardware threads (default: 1 package's worth with --cpu; this "
        "machine's visible CPUs otherwise)",
    )
    parser.add_argument(
        "--sockets",
        type=_number_in(int, 1, MAX_SOCKETS, "--sockets"),
        metavar="S",
        help="packages, when the package size is not given (default 1)",
    )
    parser.add_argument(
        "--threads-per-package",
        type=_number_in(int, 1, MAX_THREADS, "--threads-per-package"),
        metavar="T",
        help="hardware threads in one package (the host's, with --vm), so N/T of it is charged",
    )
    parser.add_argument(
        "--vm", action="store_true", help="a virtual machine: watts per vCPU, not the TDP"
    )
    parser.add_argument("--cloud", choices=PROVIDERS, help="provider whose per-vCPU table to use")
    parser.add_argument(
        "--tdp",
        type=_above_zero(MAX_TDP_W, "--tdp", " W"),
        metavar="W",
        help="thermal design power of one package, watts",
    )
    parser.add_argument(
        "--load",
        type=_loads,
        default=_loads(DEFAULT_LOADS),
        metavar="PCT,…",
        help=f"loads in per cent, comma-separated (default {DEFAULT_LOADS})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run, parser=parser)


def build_model(args: argparse.Namespace) -> tuple[str, power.CpuPowerModel, bool, str]:
    """(CPU name, model, is_vm, what is covered) for the command's arguments; this
    machine without ``--cpu``. Raises ``ValueError`` when the figures are inconsistent.
    """
    per_package = args.threads_per_package
    cores = None
    if args.cpu is None:
        name = power.read_cpu_model_name()
        threads = args.threads or power.visible_cpu_count()
        is_vm = args.vm or power.is_virtual_machine()
        per_package = per_package or power.read_threads_per_package()
        cores = power.read_cores_per_package()
    else:
        name, is_vm = args.cpu, args.vm
        threads = args.threads
        if threads is None and per_package is not None:
            threads = float((args.sockets or 1) * per_package)
    if threads is None and is_vm:
        threads, scope = 1.0, "1 vCPU"
    elif threads is None:
        # --cpu alone: the whole of the package(s), whatever their size; utilisation is
        # a share, so one "CPU" stands for all of it.
        packages = args.sockets or 1
        scope = f"{packages} whole package{'s' if packages > 1 else ''}"
        threads = 1.0
    else:
        scope = f"{threads:g} threads"
    model = power.cpu_power_model(
        name,
        threads,
        is_vm,
        args.cloud,
        threads_per_package=per_package,
        sockets=args.sockets,
        tdp_w=args.tdp,
        vm_threads_per_package=args.threads_per_package if is_vm else None,
        cores_per_package=cores,
    )
    return name, model, is_vm, scope


def describe(
    name: str, model: power.CpuPowerModel, is_vm: bool, scope: str, loads: list[float]
) -> dict:
    """The command's JSON: CPU, method, source, curve and one point per load (watts)."""
    points = []
    for load_pct in loads:
        low_w, high_w = model.power_range_w(load_pct / 100)
        points.append(
            {
                "load_pct": int(load_pct) if load_pct.is_integer() else load_pct,
                "power_w": round(model.power_w(load_pct / 100), 3),
                "low_w": round(low_w, 3),
                "high_w": round(high_w, 3),
            }
        )
    curve = model.curve
    return {
        "cpu": name,
        "covers": scope,
        "vm": is_vm,
        "method": model.method,
        "source": model.source,
        "curve": {
            "family": curve.name,
            "idle_fraction": curve.idle,
            "full_fraction": curve.full,
            "k": curve.k,
            "basis": curve.describe(),
        },
        "features": [
            {"name": name, "value": value, "origin": origin}
            for name, value, origin in model.features
        ],
        "points": points,
    }


def _text(info: dict) -> str:
    where = "virtual machine" if info["vm"] else "bare metal"
    lines = [
        f"CPU:     {info['cpu'] or '(model name unknown)'} ({info['covers']}, {where})",
        f"method:  {info['method']}",
        f"source:  {info['source']}",
        f"curve:   {info['curve']['basis']}",
        "features:" if info["features"] else "features: none (the figures are yours)",
        *(f"  {f['name']} = {f['value']} ({f['origin']})" for f in info["features"]),
        "",
        f"{'load':>6}  {'power':>9}  {'low – high':>21}",
    ]
    for point in info["points"]:
        lines.append(
            f"{point['load_pct']:>4g} %  {point['power_w']:>7.1f} W  "
            f"{point['low_w']:>8.1f} – {point['high_w']:>8.1f} W"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the model for ``args``; 0 on success, 2 (via the parser) for bad figures."""
    try:
        name, model, is_vm, scope = build_model(args)
    except ValueError as error:
        args.parser.error(str(error))  # exits 2, like any other bad value
    info = describe(name, model, is_vm, scope, args.load)
    print(json.dumps(info, indent=2, ensure_ascii=False) if args.json else _text(info))
    return 0
