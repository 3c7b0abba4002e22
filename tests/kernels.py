"""A small driver for real Jupyter kernels in tests (jupyter_client)."""

from __future__ import annotations

import os
import queue
import time
import uuid
from dataclasses import dataclass, field

from jupyter_client.manager import KernelManager
from jupyter_core.paths import jupyter_runtime_dir


@dataclass
class Execution:
    reply: dict
    messages: list[dict] = field(default_factory=list)

    def of_type(self, *types: str) -> list[dict]:
        return [m for m in self.messages if m["msg_type"] in types]

    @property
    def text(self) -> str:
        parts = []
        for m in self.of_type("stream"):
            parts.append(m["content"]["text"])
        for m in self.of_type("execute_result", "display_data", "update_display_data"):
            parts.append(m["content"]["data"].get("text/plain", ""))
        for m in self.of_type("error"):
            parts.append(m["content"]["ename"] + ": " + m["content"]["evalue"])
        return "\n".join(parts)

    @property
    def result(self) -> str | None:
        results = self.of_type("execute_result")
        return results[-1]["content"]["data"]["text/plain"] if results else None

    @property
    def error(self) -> dict | None:
        errors = self.of_type("error")
        return errors[-1]["content"] if errors else None


class Kernel:
    """A real IPython kernel with its own environment."""

    def __init__(
        self, ledger: str, extra_env: dict[str, str] | None = None, extra_args=None, cwd=None
    ):
        env = {**os.environ, "CARBON_MAGIC_LEDGER": ledger, "CARBON_MAGIC_COUNTRY": "FR"}
        env.pop("CARBON_MAGIC_MODE", None)
        env.update(extra_env or {})
        kwargs = {"env": env}
        if cwd is not None:
            kwargs["cwd"] = str(cwd)
        if extra_args:
            kwargs["extra_arguments"] = extra_args
        # Name the connection file as Jupyter Server does: kernel-<id>.json.
        self.kernel_id = str(uuid.uuid4())
        runtime = jupyter_runtime_dir()
        os.makedirs(runtime, exist_ok=True)
        self.manager = KernelManager(
            kernel_name="python3",
            connection_file=os.path.join(runtime, f"kernel-{self.kernel_id}.json"),
        )
        self.manager.start_kernel(**kwargs)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def execute(
        self, code: str, timeout: float = 60, interrupt_after: float | None = None
    ) -> Execution:
        msg_id = self.client.execute(code)
        execution = Execution(reply={})
        deadline = time.monotonic() + timeout
        interrupt_at = time.monotonic() + interrupt_after if interrupt_after else None
        got_idle = False
        while not (got_idle and execution.reply):
            if interrupt_at and time.monotonic() >= interrupt_at:
                self.manager.interrupt_kernel()
                interrupt_at = None
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply to {code!r}")
            try:
                msg = self.client.get_iopub_msg(timeout=0.05)
                if msg["parent_header"].get("msg_id") == msg_id:
                    msg["received"] = time.monotonic()
                    execution.messages.append(msg)
                    if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        got_idle = True
            except queue.Empty:
                pass
            if not execution.reply:
                try:
                    reply = self.client.get_shell_msg(timeout=0.01)
                    if reply["parent_header"].get("msg_id") == msg_id:
                        execution.reply = reply
                except queue.Empty:
                    pass
        return execution

    def shutdown(self) -> None:
        try:
            self.client.stop_channels()
            self.manager.shutdown_kernel(now=True)
        except Exception:
            pass


# Run in a kernel before a cell that reads ``%carbon report``'s text: the cell then waits
# for the whole report instead of showing a placeholder after REPORT_WAIT_S, which a
# loaded test machine can exceed even for a small ledger.
WAIT_FOR_REPORTS = "import carbon_magic.kernel.report_run as _rr\n_rr.REPORT_WAIT_S = 30\n"
