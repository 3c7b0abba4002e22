"""A Jupyter server answers only for the kernels it runs, on every kernel endpoint, and
matches kernel ids as UUIDs match (whatever the case): two real servers sharing a ledger."""

from __future__ import annotations

import json
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbon_magic.ledger import read_cells

from .jupyter_servers import JupyterServer

pytestmark = pytest.mark.kernel

API = "carbon-magic/api/v1/kernels/"


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[JupyterServer, JupyterServer]]:
    shared = tmp_path / "shared" / "ledger.sqlite3"
    shared.parent.mkdir(mode=0o700)
    started = (
        JupyterServer("alice", tmp_path / "a", {}, ledger=shared),
        JupyterServer("alice", tmp_path / "b", {}, server_name="second", ledger=shared),
    )
    try:
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()


def status(server: JupyterServer, path: str) -> tuple[int, dict]:
    try:
        code, body = server.request("GET", path)
    except urllib.error.HTTPError as error:
        code, body = error.code, error.read()
    return code, json.loads(body)


def test_a_server_never_answers_for_another_servers_kernel(two_servers):
    a, b = two_servers
    kernel_id = a.open_notebook("secret.ipynb")
    assert a.execute(kernel_id, "%load_ext carbon_magic").status == "ok"
    assert a.execute(kernel_id, "password = 'hunter2'  # first line").status == "ok"
    deadline = time.monotonic() + 30
    while not any("hunter2" in (row["source"] or "") for row in read_cells(a.ledger)):
        assert time.monotonic() < deadline, "the cell never reached the ledger"
        time.sleep(0.2)

    for path in (API + kernel_id, API + kernel_id + "/cells"):
        code, body = status(b, path)
        assert code == 404, (path, body)
        assert "not running on this server" in body["message"]
        assert "hunter2" not in json.dumps(body)
    for spelling in (kernel_id, kernel_id.upper()):
        code, kernel = status(a, API + spelling)
        assert code == 200 and kernel["kernel_id"] == kernel_id, (spelling, kernel)
        code, page = status(a, API + spelling + "/cells")
        assert code == 200, (spelling, page)
        assert page["kernel_id"] == kernel_id
        assert any("hunter2" in (cell["source"] or "") for cell in page["cells"])
        code, _ = status(b, API + spelling + "/cells")
        assert code == 404
