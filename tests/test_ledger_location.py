"""Which file is the ledger: ``auto``, ``none`` and relative paths read alike by the
kernel, the CLI and the server; a folder refused; a ledger switch ends the old session."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from traitlets import TraitError

from carbon_magic import cli
from carbon_magic.ledger import Ledger, default_ledger_path, read_cells, read_sessions
from carbon_magic.server.config import CarbonMagicServer
from carbon_magic.settings import Settings

from .kernels import Kernel


@pytest.mark.parametrize("word", ["auto", "none", "AUTO", " Auto "])
def test_auto_and_none_mean_the_default_ledger_everywhere(monkeypatch, tmp_path, word):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CARBON_MAGIC_LEDGER", word)
    monkeypatch.chdir(tmp_path)
    expected = tmp_path / "data" / "carbon_magic" / "ledger.sqlite3"
    assert default_ledger_path() == expected
    assert Settings().ledger is None  # the kernel's setting: the default
    with Ledger() as ledger:
        assert ledger.path == expected
    assert CarbonMagicServer().ledger == str(expected)
    assert CarbonMagicServer(ledger=word).ledger == str(expected)
    assert cli.ledger_path_from_option(None) == expected
    assert cli.ledger_path_from_option(word) == expected
    assert not (tmp_path / word.strip()).exists()


def test_a_relative_ledger_path_is_taken_in_the_default_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CARBON_MAGIC_LEDGER", "team/ledger.sqlite3")
    monkeypatch.chdir(tmp_path)
    expected = tmp_path / "data" / "carbon_magic" / "team" / "ledger.sqlite3"
    assert default_ledger_path() == expected
    assert Settings().ledger == str(expected)
    assert Settings(environ={}).update(ledger="mine.sqlite3")["ledger"] == str(
        tmp_path / "data" / "carbon_magic" / "mine.sqlite3"
    )
    assert CarbonMagicServer().ledger == str(expected)
    assert cli.ledger_path_from_option(None) == expected


def test_a_folder_is_refused_as_the_ledger_and_nothing_changes(monkeypatch, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    settings = Settings(environ={})
    with pytest.raises(ValueError, match="not the folder"):
        settings.update(ledger=str(folder))
    assert settings.ledger is None
    with pytest.raises(ValueError, match="not the folder"):
        Ledger(folder)
    with pytest.raises(TraitError, match="not the folder"):
        CarbonMagicServer(ledger=str(folder))
    monkeypatch.setenv("CARBON_MAGIC_LEDGER", str(folder))
    with pytest.raises(ValueError, match="CARBON_MAGIC_LEDGER.*not the folder"):
        default_ledger_path()
    result = subprocess.run(
        [sys.executable, "-m", "carbon_magic.cli", "report", "--ledger", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "not the folder" in result.stderr, result
    assert os.listdir(tmp_path) == ["notes"] and os.listdir(folder) == []


@pytest.mark.kernel
def test_kernel_cli_and_server_agree_on_auto_and_relative_paths(tmp_path):
    data, notebooks = tmp_path / "data", tmp_path / "notebooks"
    notebooks.mkdir()
    env = {"JUPYTER_DATA_DIR": str(data)}
    for value, expected in (
        ("auto", data / "carbon_magic" / "ledger.sqlite3"),
        ("team.sqlite3", data / "carbon_magic" / "team.sqlite3"),
    ):
        kernel = Kernel(value, env, cwd=notebooks)
        try:
            assert kernel.execute("%load_ext carbon_magic").reply["content"]["status"] == "ok"
            kernel.execute(f"marker = {value!r}")
            status = kernel.execute("%carbon status").text
        finally:
            kernel.shutdown()
        assert f"ledger: ok: {expected}" in status, status
        assert os.listdir(notebooks) == []  # nothing written where the notebook runs
        assert f"marker = {value!r}" in [row["source"] for row in read_cells(expected)]
        report = subprocess.run(
            [sys.executable, "-m", "carbon_magic.cli", "report"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, **env, "CARBON_MAGIC_LEDGER": value},
            timeout=120,
        )
        assert report.returncode == 0 and "marker" in report.stdout, report


@pytest.mark.kernel
def test_a_folder_ledger_is_refused_in_the_kernel_and_nothing_changes(tmp_path):
    path, folder = tmp_path / "ledger.sqlite3", tmp_path / "dir"
    folder.mkdir()
    kernel = Kernel(str(path), {"CARBON_MAGIC_INTERVAL": "0.5"})
    try:
        kernel.execute("%load_ext carbon_magic")
        refused = kernel.execute(f"%carbon config ledger={folder}")
        assert "not the folder" in refused.text, refused.text
        kernel.execute("after = 1")
        status = kernel.execute("%carbon status").text
        assert f"ledger: ok: {path}" in status, status
    finally:
        kernel.shutdown()
    assert os.listdir(folder) == []
    assert not any(name.startswith("dir.") for name in os.listdir(tmp_path))
    assert "after = 1" in [row["source"] for row in read_cells(path)]


@pytest.mark.kernel
def test_switching_ledgers_ends_the_session_in_the_old_one(tmp_path):
    old_path, new_path = tmp_path / "old.sqlite3", tmp_path / "new.sqlite3"
    kernel = Kernel(str(old_path), {"CARBON_MAGIC_INTERVAL": "0.5"})
    try:
        kernel.execute("%load_ext carbon_magic")
        kernel.execute("before = 1")
        switch = kernel.execute(f"%carbon config ledger={new_path}")
        assert switch.reply["content"]["status"] == "ok", switch.text
        kernel.execute("after = 1")
        alias = tmp_path / "alias.sqlite3"  # the same file by another name
        alias.symlink_to(new_path)
        assert kernel.execute(f"%carbon config ledger={alias}").reply["content"]["status"] == "ok"
        kernel.execute("via_alias = 1")
    finally:
        kernel.shutdown()
    [old] = read_sessions(old_path, kernel_id=kernel.kernel_id)
    assert old["ended_at"] is not None and old["state"] == "stopped"
    [new] = read_sessions(new_path, kernel_id=kernel.kernel_id)
    assert new["session_uuid"] == old["session_uuid"]
    assert new["ended_at"] is None  # killed at the end of the test; an alias ends nothing
    assert {"after = 1", "via_alias = 1"} <= {row["source"] for row in read_cells(new_path)}
