"""A real Ray cluster on 127.0.0.1: a head and worker nodes, each started as its own
``ray start --block`` process (so several "nodes" share this machine), kept small: one
CPU slot each, a 100 MB object store, no dashboard, its own temporary folder and ports.
Stopping kills what was started, by process id, never every Ray process of the machine
(``ray stop`` would take other people's clusters down too)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from .dask_procs import base_env, blocking

# Put first on the PYTHONPATH of every Ray process and of kernels that import ray:
# ``import ray`` asks amdsmi for AMD GPUs, and amdsmi installed without its ROCm library
# raises KeyError (not ImportError) on import, which breaks ``import ray`` outright.
NO_AMDSMI = blocking("amdsmi")
SMALL = [
    "--num-cpus",
    "1",
    "--num-gpus",
    "0",
    "--object-store-memory",
    "100000000",
    "--disable-usage-stats",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_env(tmp: Path, **extra: str) -> dict[str, str]:
    """``base_env`` with the amdsmi blocker first on the PYTHONPATH."""
    blocker = tmp / "no_amdsmi"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(NO_AMDSMI)
    env = base_env(**extra)
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), env["PYTHONPATH"]])
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # No worker started ahead of a job: such a worker carries no job id, and process
    # mode cannot tell whose work it later runs (charged to the one driver reading).
    env["RAY_prestart_worker_first_driver"] = "0"
    env["RAY_enable_worker_prestart"] = "0"
    return env


class RayProcesses:
    """A head and worker nodes, each a ``ray start --block`` process group."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.temp_dir = tmp / "ray"  # Ray's sockets and logs (kept short: socket paths)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, subprocess.Popen] = {}
        self.node_ports: dict[str, int] = {}  # node manager port: tells the nodes apart
        self.logs: list[Path] = []

    def _ports(self, name: str) -> list[str]:
        low = 20000 + (free_port() % 400) * 100  # a worker port range of its own per node
        self.node_ports[name] = free_port()
        return [
            "--node-manager-port",
            str(self.node_ports[name]),
            "--object-manager-port",
            str(free_port()),
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--dashboard-agent-grpc-port",
            str(free_port()),
            "--metrics-export-port",
            str(free_port()),
            "--runtime-env-agent-port",
            str(free_port()),
            "--min-worker-port",
            str(low),
            "--max-worker-port",
            str(low + 60),
        ]

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        self.logs.append(log)
        command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", *args]
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.nodes[name] = proc
        return proc

    def start_head(self, env: dict[str, str]) -> None:
        self._spawn(
            "head",
            [
                "--head",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--include-dashboard=false",
                "--temp-dir",
                str(self.temp_dir),
                *SMALL,
                *self._ports("head"),
            ],
            env,
        )

    def start_node(self, name: str, env: dict[str, str]) -> None:
        self._spawn(
            name,
            [
                "--address",
                self.address,
                "--node-ip-address",
                "127.0.0.1",
                *SMALL,
                *self._ports(name),
            ],
            env,
        )

    def wait_nodes(self, count: int, env: dict[str, str], timeout_s: float = 240) -> None:
        """Wait until ``count`` nodes are alive (asked from a short-lived driver, again
        where it could not connect: a loaded machine makes Ray's start-up RPCs time out)."""
        probe = (
            "import ray, sys, time\n"
            f"ray.init(address={self.address!r}, logging_level='ERROR')\n"
            f"end = time.monotonic() + {timeout_s}\n"
            f"while sum(n['Alive'] for n in ray.nodes()) < {count} and time.monotonic() < end:\n"
            "    time.sleep(0.5)\n"
            f"sys.exit(0 if sum(n['Alive'] for n in ray.nodes()) >= {count} else 1)\n"
        )
        deadline = time.monotonic() + timeout_s
        while True:
            done = subprocess.run(
                [sys.executable, "-c", probe], env=env, capture_output=True, timeout=timeout_s + 60
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{count} Ray nodes did not start:\n{done.stderr.decode()[-3000:]}\n"
                    + self.logs_text()
                )
            time.sleep(1)

    def raylet_pid(self, name: str) -> int:
        """The raylet of a node (a child of its ``ray start`` process)."""
        for child in psutil.Process(self.nodes[name].pid).children(recursive=True):
            try:
                if "raylet" in child.name():
                    return child.pid
            except psutil.Error:
                pass
        raise LookupError(f"no raylet under {name}")

    def kill_node(self, name: str) -> None:
        """SIGKILL a node's processes at once, as a machine that dies."""
        self._kill(self.nodes.pop(name))

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            family = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            family = []
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for child in family:  # workers move to process groups of their own
            try:
                child.kill()
            except psutil.Error:
                pass
        proc.wait(timeout=30)

    def stop(self) -> None:
        # Worker nodes first, the head (GCS) last; each with everything it started.
        for name in sorted(self.nodes, key=lambda n: n == "head"):
            self._kill(self.nodes[name])
        self.nodes.clear()
        time.sleep(0.2)

    def logs_text(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in self.logs)
