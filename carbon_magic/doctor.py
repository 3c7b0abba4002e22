"""What this machine can measure, and what to fix: ``carbon-magic status`` and ``doctor``.

``machine_status`` starts a tracker briefly and describes sensors, intensity, PUE,
hardware and the ledger as a JSON-ready dict; ``status_text`` prints it;
``doctor_findings`` turns it into findings, each with a fix where one is needed.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from carbon_magic._version import __version__
from carbon_magic.kernel.scope_budgets import ScopeBudgets, budget_lines
from carbon_magic.ledger.paths import LEDGER_ENV

# The environment variable naming the ledger file (the CLI's default for --ledger).


def _gpu_device_present(dev_root: str = "/dev", proc_root: str = "/proc") -> bool:
    """True when the NVIDIA kernel driver shows a device (whether or not NVML loads)."""
    return Path(dev_root, "nvidia0").exists() or Path(proc_root, "driver", "nvidia").exists()


def machine_status(ledger_path: Path, notebook_path: str | None = None) -> dict[str, Any]:
    """What would be measured on this machine and how, as a JSON-ready dict, with the
    state of the ledger at ``ledger_path``.

    Starts a tracker briefly (sensors detected, no window measured) and stops it.
    Keys: ``mode``, ``sensors`` (list of name/component/available/method/detail),
    ``methods``, ``intensity`` (g_per_kwh, provider, zone, source), ``pue``,
    ``budgets`` (the day cap, and the notebook cap for ``notebook_path``, with what
    every session on the ledger spent on them), ``pue``
    (value, source), ``location`` (country, cloud_region, zone, postcode: as set, None
    when not), ``hardware``, ``ledger`` (path, exists), ``gpu_device``, ``notices``.
    Raises ``ValueError`` for a bad ``CARBON_MAGIC_*`` environment variable.
    """
    from carbon_magic.engine.tracker import Tracker
    from carbon_magic.settings import Settings

    settings = Settings()
    tracker = Tracker(settings)
    try:
        tracker.start()
        intensity = tracker.intensity()
        pue, pue_source = tracker.pue()
        info: dict[str, Any] = {
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
    info["ledger"] = ledger_status(ledger_path)
    from carbon_magic.remote.status import capture_status

    info["remote"] = capture_status()
    path = ledger_path
    caps = ScopeBudgets(
        settings, lambda: str(path) if path.is_file() else None, notebook_path, None
    )
    info["budgets"] = [state.as_json() | {"text": state.describe()} for state in caps.states()]
    return info


def ledger_status(path: Path) -> dict[str, Any]:
    """The ledger file at ``path`` as ``status`` shows it: ``path``, ``exists``,
    ``problem`` (None when it reads well), ``sessions`` (count per state), and
    ``exposed``: what others may do that they should not (read the file, write its
    folder), as phrases; empty when private. Never raises."""
    from carbon_magic.ledger import ledger_problem, read_sessions

    info: dict[str, Any] = {
        "path": str(path),
        "exists": path.is_file(),
        "problem": ledger_problem(path),
        "exposed": _exposure(path),
    }
    if info["exists"] and not info["problem"]:
        states: dict[str, int] = {}
        try:
            for session in read_sessions(path):
                states[session["state"]] = states.get(session["state"], 0) + 1
        except (OSError, sqlite3.Error):
            pass
        info["sessions"] = states  # running | stopped | lost (killed kernels)
    return info


def _exposure(path: Path) -> list[str]:
    """Phrases for a ledger others may read (group or world read bits) or whose folder
    others may write (they could plant journals or replace the file)."""
    exposed = []
    for where, bits, what in ((path, 0o044, "readable"), (path.parent, 0o022, "writable")):
        try:
            mode = os.stat(where).st_mode & 0o777
        except OSError:
            continue
        if mode & bits:
            exposed.append(f"{where} is {what} by other users (mode {mode:o})")
    return exposed


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
    for exposed in ledger.get("exposed", []):
        lines.append(f"warning: {exposed}: the ledger holds cell first lines and notebook paths")
    if ledger.get("sessions"):
        counts = ", ".join(f"{n} {state}" for state, n in sorted(ledger["sessions"].items()))
        lines.append(f"sessions: {counts}")
    lines.extend(budget_lines([cap["text"] for cap in info.get("budgets", [])]))
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
    elif not info["ledger"].get("exposed"):
        findings.append(Finding("ledger", str(ledger)))
    for exposed in info["ledger"].get("exposed", []):
        fix = f"chmod 600 {ledger}" if "readable" in exposed else f"chmod go-w {ledger.parent}"
        findings.append(Finding("ledger", exposed, fix))
    findings.extend(_remote_findings(info.get("remote")))
    for notice in info.get("notices", []):
        findings.append(Finding("note", notice))
    return findings


def _remote_findings(remote: dict[str, Any] | None) -> list[Finding]:
    """One line per LLM SDK version the capture does not know, and for EcoLogits."""
    if not remote or not remote["sdks"]:
        return []
    findings = [Finding("remote calls", p["message"], p["fix"]) for p in remote["problems"]]
    if not findings:
        sdks = ", ".join(f"{name} {version}" for name, version in remote["sdks"].items())
        findings.append(
            Finding(
                "remote calls", f"captured ({sdks}); estimated by EcoLogits {remote['ecologits']}"
            )
        )
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
