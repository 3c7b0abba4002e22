"""Where an export may go: never replacing a device, FIFO or symlink.

Device nodes are made in the test's own folder (``os.mknod``, as root), so that no test
ever writes to the machine's ``/dev``; the nodes stand for ``/dev/full`` and
``/dev/null``.
"""

import csv
import io
import os
import socket
import stat
import threading

import pytest

from carbon_magic.reports.export import export_records, write_export
from tests.test_cli import assert_one_line_error, env, ledger_path, run  # noqa: F401
from tests.test_report import make_row

ROWS = [make_row(1, 2.5), make_row(2, 0.5)]


def char_device(folder, name, minor):
    """A character device node in ``folder`` for the kernel's memory device ``minor``
    (3: null, 7: full); the test is skipped where nodes cannot be made."""
    path = folder / name
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, minor))
        with open(path, "rb", buffering=0):
            pass  # a folder mounted nodev refuses to open it
    except (PermissionError, OSError) as error:
        pytest.skip(f"cannot make a device node here: {error}")
    return path


def read_fifo(path, into):
    """Read a FIFO to its end in a thread; the text lands in ``into``."""

    def reader():
        with open(path, encoding="utf-8") as stream:
            into.append(stream.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    return thread


def test_a_fifo_is_written_through_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = read_fifo(fifo, received)
    # The reader is opening the FIFO: wait until it is there to be written to.
    for _ in range(200):
        try:
            export_records(ROWS, fifo, fmt="csv", force=True)
            break
        except OSError as error:
            if "no process reads" not in str(error):
                raise
            threading.Event().wait(0.01)
    reader.join(timeout=10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert received and len(list(csv.reader(io.StringIO(received[0])))) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_fifo_nobody_reads_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="no process reads"):
        export_records(ROWS, fifo, force=True)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_character_device_is_written_through(tmp_path):
    null = char_device(tmp_path, "null", 3)
    assert write_export(ROWS, null, fmt="json", force=True) == (null, 2)
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_a_full_device_is_a_failed_write(tmp_path):
    full = char_device(tmp_path, "full", 7)
    with pytest.raises(OSError, match="No space left on device") as caught:
        export_records(ROWS * 200, full, fmt="csv", force=True)
    assert str(full) in str(caught.value)
    assert stat.S_ISCHR(os.lstat(full).st_mode)
    assert os.lstat(full).st_rdev == os.makedev(1, 7)


def test_a_device_still_needs_force(tmp_path):
    null = char_device(tmp_path, "null", 3)
    with pytest.raises(FileExistsError, match="--force"):
        export_records(ROWS, null)


def test_a_symlink_is_followed_and_kept(tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    export_records(ROWS, link, fmt="csv", force=True)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert len(list(csv.reader(io.StringIO(real.read_text())))) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "real.csv"]


def test_a_dangling_symlink_is_refused(tmp_path):
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError, match="symlink"):
        export_records(ROWS, link, force=True)
    assert link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv"]


def test_a_socket_is_refused_with_the_choices(tmp_path):
    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        with pytest.raises(OSError, match="a socket; give a regular file") as caught:
            export_records(ROWS, path, force=True)
        assert "FIFO" in str(caught.value) and "standard output" in str(caught.value)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        server.close()


def test_dash_is_standard_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert write_export(ROWS, "-", fmt="csv") == (tmp_path.joinpath("-").relative_to(tmp_path), 2)
    assert len(list(csv.reader(io.StringIO(capsys.readouterr().out)))) == 3
    assert list(tmp_path.iterdir()) == []


def test_cli_exports_to_standard_output(env, ledger_path):  # noqa: F811
    result = run(env, "export", "-", "--format", "csv", "--ledger", ledger_path)
    assert result.returncode == 0, result.stderr
    assert len(list(csv.reader(io.StringIO(result.stdout)))) == 7
    assert result.stderr.strip() == "wrote 6 cells to - (csv)"


def test_cli_reports_a_full_device_as_a_failure(env, ledger_path, tmp_path):  # noqa: F811
    full = char_device(tmp_path, "full", 7)
    result = run(env, "export", full, "--force", "--ledger", ledger_path)
    assert_one_line_error(result, str(full), "No space left on device")
    assert stat.S_ISCHR(os.lstat(full).st_mode)
