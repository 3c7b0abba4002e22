"""Real Jupyter servers in subprocesses, shaped like JupyterHub single-user servers, for tests.

Each server listens on 127.0.0.1 with its own token, ``base_url`` ``/user/<name>/``,
config, runtime directories and carbon_magic ledger; its kernels inherit
``CARBON_MAGIC_LEDGER`` and write that ledger, which the server extension reads.
Kernels are started through the sessions REST API and driven over the kernel websocket,
as JupyterLab does.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

from .service_process import ServiceProcess, free_port

STARTUP_TIMEOUT_S = 90.0


@dataclass
class ExecuteResult:
    """What one ``execute_request`` produced: the reply's status and any error."""

    status: str
    error: str | None = None
    outputs: list[str] = field(default_factory=list)


# Test servers only: they run as root on a throwaway machine, bound to 127.0.0.1.
_CONFIG = """\
c = get_config()  # noqa: F821
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = {port}
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False
c.ServerApp.allow_root = True
c.ServerApp.base_url = {base_url!r}
c.ServerApp.root_dir = {root_dir!r}
c.IdentityProvider.token = {token!r}
c.ServerApp.jpserver_extensions = {{"carbon_magic": True}}
c.CarbonMagicServer.ledger = {ledger!r}
{extra}
"""


class JupyterServer:
    """One ``jupyter server`` process for the user ``user`` under ``workdir``: the user's
    default server, or the named server ``server_name`` (``/user/<name>/<server_name>/``).

    ``carbon_config`` holds extra ``CarbonMagicServer`` settings (name -> value);
    ``ledger``: the ledger file of the server and its kernels (default: its own).
    """

    def __init__(
        self,
        user: str,
        workdir: Path,
        carbon_config: dict[str, Any],
        server_name: str = "",
        ledger: Path | None = None,
    ) -> None:
        self.user = user
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.base_url = f"/user/{user}/" + (f"{server_name}/" if server_name else "")
        self.workdir = workdir
        self.ledger = ledger or workdir / "ledger.sqlite3"  # servers may share one
        self.root_dir = workdir / "notebooks"
        self.root_dir.mkdir(parents=True)
        extra = "\n".join(f"c.CarbonMagicServer.{k} = {v!r}" for k, v in carbon_config.items())
        config = workdir / "jupyter_server_config.py"
        config.write_text(
            _CONFIG.format(
                port=self.port,
                base_url=self.base_url,
                root_dir=str(self.root_dir),
                token=self.token,
                ledger=str(self.ledger),
                extra=extra,
            )
        )
        env = {
            **os.environ,
            "CARBON_MAGIC_LEDGER": str(self.ledger),
            "CARBON_MAGIC_COUNTRY": "FR",
            "JUPYTER_CONFIG_DIR": str(workdir / "config"),
            "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
            "JUPYTER_DATA_DIR": str(workdir / "data"),
        }
        env.pop("CARBON_MAGIC_MODE", None)
        self.service = ServiceProcess(
            f"jupyter server of {user}",
            [sys.executable, "-m", "jupyter_server", f"--config={config}"],
            workdir / "server.log",
            workdir,
            env,
        )

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:PORT/user/alice/``."""
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    @property
    def metrics_path(self) -> str:
        return f"{self.base_url}carbon-magic/metrics"

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Block until the REST API answers; raise with the server's log if it never does."""
        self.service.wait_ready(lambda: self.request("GET", "api/status"), timeout_s)

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = "", timeout: float = 30
    ) -> tuple[int, bytes]:
        """``method`` on ``path`` (relative to the base URL); the server's token by default,
        ``token=None`` for none. Returns (status, body) for 2xx, raises HTTPError else."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if token is not None:
            request.add_header("Authorization", f"token {token or self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()

    def open_notebook(self, path: str) -> str:
        """Start a kernel for the notebook ``path`` as JupyterLab does; its kernel id."""
        _, body = self.request(
            "POST",
            "api/sessions",
            {"path": path, "name": path, "type": "notebook", "kernel": {"name": "python3"}},
            timeout=90,
        )
        return json.loads(body)["kernel"]["id"]

    def execute(self, kernel_id: str, code: str, timeout_s: float = 120) -> ExecuteResult:
        """Run ``code`` in the kernel over its websocket; wait for the reply and idle."""
        connection, msg_id = self.submit(kernel_id, code, timeout_s)
        try:
            return _collect(connection, msg_id, time.monotonic() + timeout_s)
        finally:
            connection.close()

    def submit(
        self, kernel_id: str, code: str, timeout_s: float = 120
    ) -> tuple[websocket.WebSocket, str]:
        """Send ``code`` to the kernel without waiting: the open websocket and the msg_id."""
        ws_url = f"ws://127.0.0.1:{self.port}{self.base_url}api/kernels/{kernel_id}/channels"
        connection = websocket.create_connection(
            ws_url, header=[f"Authorization: token {self.token}"], timeout=timeout_s
        )
        msg_id = uuid.uuid4().hex
        connection.send(json.dumps(_execute_request(msg_id, code)))
        return connection, msg_id

    def stop(self) -> None:
        """Stop the server (it shuts its kernels down); kill it if it lingers."""
        self.service.stop()


def _execute_request(msg_id: str, code: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": uuid.uuid4().hex,
            "username": "test",
            "version": "5.3",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "channel": "shell",
        "buffers": [],
    }


def _collect(connection: websocket.WebSocket, msg_id: str, deadline: float) -> ExecuteResult:
    """Read messages until the execute_reply and the idle status of ``msg_id``."""
    result: ExecuteResult | None = None
    idle = False
    outputs: list[str] = []
    while not (result and idle):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no reply to execute request {msg_id}")
        message = json.loads(connection.recv())
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "execute_reply":
            error = f"{content.get('ename')}: {content.get('evalue')}"
            result = ExecuteResult(content["status"], None if content["status"] == "ok" else error)
        elif kind == "status" and content.get("execution_state") == "idle":
            idle = True
        elif kind == "stream":
            outputs.append(content["text"])
    result.outputs = outputs
    return result
