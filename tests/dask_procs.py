"""Real Dask schedulers and workers as separate processes (the ``dask`` CLI), on 127.0.0.1,
and helpers that make a worker look like another machine or like one without
carbon_magic installed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .test_rapl import FakePowercap


def blocking(package: str) -> str:
    """A ``sitecustomize.py`` that makes ``package`` (and its submodules) unimportable in
    a process whose PYTHONPATH starts with its folder."""
    return f"""
import sys

class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name == {package!r} or name.startswith({package + "."!r}):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _Blocked())
"""


# Put first on a worker's PYTHONPATH: carbon_magic then cannot be imported there, as on a
# worker whose environment lacks it (the editable install would otherwise be found).
BLOCK_IMPORT = blocking("carbon_magic")


def base_env(**extra: str) -> dict[str, str]:
    """The test's environment (PYTHONPATH included) without carbon_magic settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_MAGIC_")}
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


class DaskProcesses:
    """A scheduler and workers started with ``python -m dask scheduler|worker``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.scheduler_file = tmp / "scheduler.json"
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def _spawn(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        self.logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "dask", *args],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def start_scheduler(self, env: dict[str, str] | None = None) -> str:
        self._spawn(
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.scheduler_file),
            ],
            env or base_env(),
            "scheduler",
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                return json.loads(self.scheduler_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        raise TimeoutError("the scheduler did not start:\n" + self.logs[0].read_text())

    def start_worker(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """A worker without a nanny, so its pid is the worker process itself."""
        return self._spawn(
            [
                "worker",
                "--scheduler-file",
                str(self.scheduler_file),
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--name",
                name,
                "--memory-limit",
                "0",
            ],
            env or base_env(),
            name,
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def logs_text(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in self.logs)


class PoweredTree:
    """A fake powercap tree whose package counter rises at ``watts`` (a writer thread)."""

    def __init__(self, base: Path, watts: float) -> None:
        self.fake = FakePowercap(base)
        self.fake.add("intel-rapl:0", "package-0", energy_uj=0)
        self.watts = watts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()
        self._thread.start()

    @property
    def root(self) -> str:
        return str(self.fake.root)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.fake.set(
                "intel-rapl:0", int((time.monotonic() - self._started) * self.watts * 1e6)
            )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
