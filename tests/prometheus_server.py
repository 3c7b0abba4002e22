"""A real Prometheus server (Debian's ``prometheus`` binary) for tests, on 127.0.0.1.

The server gets a generated configuration file, a fresh TSDB directory and a free port;
it is queried through its HTTP API (``/api/v1/query``, ``/api/v1/targets``).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .service_process import ServiceProcess, free_port

STARTUP_TIMEOUT_S = 60.0

Sample = tuple[dict[str, str], float]


def find_binary(name: str) -> str | None:
    """``$PROMETHEUS_PATH`` (for ``prometheus``) or the program on PATH; None if absent."""
    if name == "prometheus" and os.environ.get("PROMETHEUS_PATH"):
        return shutil.which(os.environ["PROMETHEUS_PATH"])
    return shutil.which(name)


class Prometheus:
    """One ``prometheus`` process scraping what ``config`` (a parsed prometheus.yml) says."""

    def __init__(self, binary: str, config: dict[str, Any], workdir: Path) -> None:
        self.port = free_port()
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.service = ServiceProcess(
            "prometheus",
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            workdir / "prometheus.log",
            workdir,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Block until ``/-/ready`` answers 200 (urlopen raises on anything else); raise
        with the log if it never does."""

        def ready() -> None:
            with urllib.request.urlopen(self.url + "-/ready", timeout=5):
                pass

        self.service.wait_ready(ready, timeout_s)

    def api(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` of a successful answer, else raise."""
        query = urllib.parse.urlencode(params or {})
        url = f"{self.url}api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                document = json.load(response)
        except urllib.error.HTTPError as error:  # a bad query answers 400 with the reason
            document = json.loads(error.read() or b"{}")
        if document.get("status") != "success":
            raise AssertionError(f"Prometheus refused {path} {params}: {document}")
        return document["data"]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """An instant query: (labels, value) of each sample of the resulting vector."""
        params = {"query": expr}
        if at is not None:
            params["time"] = repr(at)
        data = self.api("query", params)
        if data["resultType"] != "vector":
            raise AssertionError(f"{expr!r} gave a {data['resultType']}, not a vector")
        return [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health and last scrape."""
        return self.api("targets", {"state": "active"})["activeTargets"]

    def label_values(self, label: str, match: str) -> list[str]:
        """The values of ``label`` among the series selected by ``match``."""
        return self.api(f"label/{label}/values", {"match[]": match})

    def stop(self) -> None:
        """Stop the server; kill it if it lingers."""
        self.service.stop()
