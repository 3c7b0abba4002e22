"""A ledger on read-only storage (an archived file, a read-only mount: no ``-shm`` can be
made beside it) reads in the CLI and the server, and a kernel says why it cannot write.

Tests run as root, whom permissions do not stop: the reader then runs in a forked child
that has dropped to ``nobody``, as another user reading an archive would."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from carbon_magic.ledger import Ledger

from .test_ledger import measurement, open_session

NOBODY = 65534
KERNEL_ID = "00000000-0000-4000-8000-00000000000a"


def as_reader() -> None:
    """Become ``nobody`` when running as root, so permissions apply."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)


def run_as_reader(function: Callable[..., Any], path: Path, *args: Any) -> Any:
    """``function(str(path), *args)`` in a forked child that has become the reader (its
    result, or the exception it raised as text); the code is this process's, the rights
    nobody's. It runs first here on a writable copy of ``path``, so every module it
    imports is loaded before the child, which may not read the interpreter's folders."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / path.name
        shutil.copyfile(path, copy)
        function(str(copy), *args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 0
        try:
            os.close(read_end)
            as_reader()
            payload = {"result": function(str(path), *args)}
        except BaseException as error:
            payload = {"error": repr(error)}
        try:
            with os.fdopen(write_end, "w") as stream:
                json.dump(payload, stream)
        except BaseException:
            status = 1
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        text = stream.read()
    os.waitpid(pid, 0)
    payload = json.loads(text)
    assert "error" not in payload, payload["error"]
    return payload["result"]


@pytest.fixture
def archive() -> Iterator[Path]:
    """A ledger with two cells in a folder no reader may write (0555, file 0444)."""
    top = Path(tempfile.mkdtemp(prefix="carbon-magic-ro-"))
    top.chmod(0o755)  # the reader (nobody) may look inside
    folder = top / "archive"
    folder.mkdir()
    path = folder / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger, "s1", kernel_id=KERNEL_ID)
        for i in range(2):
            ledger.record_cell("s1", measurement(i), via="auto")
    assert sorted(os.listdir(folder)) == ["ledger.sqlite3"]  # no -wal, no -shm left
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        yield path
    finally:
        folder.chmod(0o755)
        shutil.rmtree(top)


def cli_report(path: str) -> tuple[int, str, str]:
    from carbon_magic import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["report", "--ledger", path])
    return code, out.getvalue(), err.getvalue()


def test_the_cli_reports_a_ledger_on_read_only_storage(archive):
    code, out, err = run_as_reader(cli_report, archive)
    assert code == 0, err
    assert "train-1" in out and "2 heaviest cells" in out
    assert sorted(os.listdir(archive.parent)) == ["ledger.sqlite3"]


def server_reads(path: str, kernel_id: str) -> dict[str, Any]:
    from carbon_magic.server.reader import LedgerReader

    reader = LedgerReader(path)
    snapshot = reader.snapshot(time.time(), 0.0)
    kernel = reader.kernel(kernel_id)
    page = reader.cells(kernel_id=kernel_id)
    return {
        "sessions": len(snapshot.sessions),
        "n_cells": kernel.n_cells if kernel else None,
        "sources": [record.source for record in page.cells],
    }


def test_the_server_reads_a_ledger_on_read_only_storage(archive):
    assert run_as_reader(server_reads, archive, KERNEL_ID) == {
        "sessions": 1,
        "n_cells": 2,
        "sources": ["model.fit(x, y, epochs=0)", "model.fit(x, y, epochs=1)"],
    }


def kernel_opens(path: str) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ledger = Ledger(path)
        status = ledger.status()
    return [status, *(str(warning.message) for warning in caught)]


def test_a_kernel_names_the_folder_it_cannot_write(archive):
    said = "\n".join(run_as_reader(kernel_opens, archive))
    assert f"cannot write its folder {archive.parent}" in said, said
    assert "ledger.sqlite3-shm" in said
    assert sorted(os.listdir(archive.parent)) == ["ledger.sqlite3"]


def test_a_ledger_still_written_reads_as_before(tmp_path):
    """A writer at work keeps its -wal and -shm: readers use them, never immutable."""
    from carbon_magic.ledger import connect_readonly

    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger)
        ledger.record_cell("s1", measurement(0), via="auto")
        conn = connect_readonly(path)
        try:
            assert conn.execute("SELECT count(*) FROM cells").fetchone()[0] == 1
            ledger.record_cell("s1", measurement(1), via="auto")
            time.sleep(0.01)
            assert conn.execute("SELECT count(*) FROM cells").fetchone()[0] == 2
        finally:
            conn.close()
