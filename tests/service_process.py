"""A server program in a subprocess for tests: its log file, readiness and stop."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServiceProcess:
    """``command`` running in ``cwd``, stdout and stderr into ``log_path``."""

    def __init__(
        self,
        name: str,
        command: list[str],
        log_path: Path,
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            env=env if env is not None else dict(os.environ),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, n_bytes: int = 4000) -> str:
        return self.log_path.read_bytes()[-n_bytes:].decode(errors="replace")

    def wait_ready(self, probe: Callable[[], object], timeout_s: float) -> None:
        """Call ``probe()`` until it returns without an OSError (URLError included); raise
        with the program's log when it exits or ``timeout_s`` passes first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                probe()
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        raise TimeoutError(f"{self.name} not ready after {timeout_s} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the program; kill it if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
