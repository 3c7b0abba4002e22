"""The ledger trusts only what its owner wrote, and stays private: journals planted by
another user or shaped to reach SQL are never imported, a ledger reached through a link
is created 0600, and ``status``/``doctor`` speak up about loose permissions."""

from __future__ import annotations

import json
import os
import sqlite3
import warnings
from pathlib import Path

import pytest

from carbon_magic.doctor import doctor_findings, status_text
from carbon_magic.ledger import Ledger, LedgerWarning, read_cells, read_sessions
from carbon_magic.ledger.journal import write_journal

from .test_ledger import measurement, open_session

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")


def journal_left_by_a_closing_writer(path: Path, n_cells: int = 2) -> Path:
    """A real journal: a writer closing while another connection holds the lock."""
    with Ledger(path) as first:
        open_session(first, "victim", kernel_id="k-victim")
        first.record_cell("victim", measurement(0), via="auto")
    ledger = Ledger(path, busy_timeout_s=0.2, retry_after_s=0.1)
    open_session(ledger, "s-journal", kernel_id="k-journal")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(1, n_cells + 1):
            ledger.record_cell("s-journal", measurement(i), via="auto")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LedgerWarning)
            ledger.close(0.1)
    finally:
        holder.execute("COMMIT")
        holder.close()
    [journal] = path.parent.glob(f"{path.name}.pending-*.json")
    return journal


def import_now(path: Path) -> list[str]:
    """Open the ledger as the next kernel does; the LedgerWarnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LedgerWarning)
        with Ledger(path) as later:
            open_session(later, "next", kernel_id="k-next")
    return [str(w.message) for w in caught if issubclass(w.category, LedgerWarning)]


def sources(path: Path) -> list[str]:
    return [row["source"] for row in read_cells(path)]


@needs_root
def test_a_journal_owned_by_another_user_is_never_imported(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    journal = journal_left_by_a_closing_writer(path)
    document = json.loads(journal.read_text())
    document["cells"][0][1]["emissions_g"] = 5e6  # 5 t CO2e in the victim's report
    journal.write_text(json.dumps(document))
    os.chown(journal, NOBODY, NOBODY)
    messages = import_now(path)
    assert journal.exists()  # not ours to delete
    assert any("belongs to user 65534" in m and journal.name in m for m in messages), messages
    assert max(row["emissions_g"] for row in read_cells(path)) < 1.0
    assert sources(path) == ["model.fit(x, y, epochs=0)"]


def test_a_journal_others_may_read_or_write_is_never_imported(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    journal = journal_left_by_a_closing_writer(path)
    journal.chmod(0o664)
    messages = import_now(path)
    assert journal.exists()
    assert any("mode 664" in m for m in messages), messages
    assert sources(path) == ["model.fit(x, y, epochs=0)"]
    journal.chmod(0o600)  # made private again by its owner: imported then
    import_now(path)
    assert not journal.exists()
    assert sources(path) == [f"model.fit(x, y, epochs={i})" for i in range(3)]


def test_a_link_is_not_read_as_a_journal(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    journal = journal_left_by_a_closing_writer(path)
    elsewhere = tmp_path / "elsewhere.json"
    journal.rename(elsewhere)
    journal.symlink_to(elsewhere)
    import_now(path)
    assert journal.is_symlink() and elsewhere.exists()
    assert sources(path) == ["model.fit(x, y, epochs=0)"]


@pytest.mark.parametrize(
    "where",
    ["session", "change", "cell", "heartbeat"],
)
def test_journal_keys_that_are_not_columns_never_reach_sql(tmp_path, where):
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger, "victim", kernel_id="k-victim")
        ledger.record_cell("victim", measurement(0), via="auto")
    injected = "kernel_id = 'owned', host"
    with sqlite3.connect(path) as conn:
        session_row = dict(
            zip(
                [c[0] for c in conn.execute("SELECT * FROM sessions").description],
                conn.execute("SELECT * FROM sessions").fetchone(),
                strict=True,
            )
        )
    session_row.pop("id")
    session = {"row": session_row, "opened": False, "changes": {"ended_at": 1.0}}
    cells: list = []
    beats: list = []
    if where == "session":
        session["row"] = {**session_row, injected: "x"}
    elif where == "change":
        session["changes"] = {injected: "x"}
    elif where == "cell":
        cells = [["victim", {**read_cells(path)[0], injected: "x"}]]
    else:
        beats = [["victim", {"at": 1.0, injected: "x"}]]
    journal = write_journal(path, [session], cells, beats)
    messages = import_now(path)
    assert journal.exists()
    assert any("unknown field" in m for m in messages), messages
    [victim] = [s for s in read_sessions(path) if s["session_uuid"] == "victim"]
    assert victim["kernel_id"] == "k-victim" and victim["ended_at"] is None


def test_a_ledger_in_a_folder_others_can_write_is_reported(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.warns(LedgerWarning, match="writable by other users"):
        with Ledger(folder / "ledger.sqlite3") as ledger:
            open_session(ledger)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LedgerWarning)
        with Ledger(private / "ledger.sqlite3") as ledger:
            open_session(ledger)


def test_a_ledger_reached_through_a_link_to_nothing_yet_is_created_private(tmp_path):
    target = tmp_path / "real" / "ledger.sqlite3"
    target.parent.mkdir()
    link = tmp_path / "ledger.sqlite3"
    link.symlink_to(target)
    old_umask = os.umask(0o022)
    try:
        with Ledger(link) as ledger:
            open_session(ledger)
            ledger.record_cell("s1", measurement(0), via="auto")
    finally:
        os.umask(old_umask)
    assert target.stat().st_mode & 0o777 == 0o600
    assert link.is_symlink() and len(read_cells(link)) == 1


def ledger_info(path: Path) -> dict:
    """The parts of ``machine_status()`` that ``status`` and ``doctor`` print."""
    from carbon_magic.doctor import ledger_status

    return {
        "version": "test",
        "mode": "process",
        "sensors": [],
        "methods": {},
        "location": {"country": "FR"},
        "intensity": {"g_per_kwh": 50.0, "source": "static"},
        "pue": {"value": 1.0, "source": "default"},
        "notices": [],
        "ledger": ledger_status(path),
    }


def test_status_and_doctor_warn_about_a_ledger_others_can_read(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        open_session(ledger)
    info = ledger_info(path)
    assert not [f for f in doctor_findings(info) if f.topic == "ledger" and f.fix]
    assert "readable by" not in status_text(info)
    path.chmod(0o644)
    info = ledger_info(path)
    [finding] = [f for f in doctor_findings(info) if f.topic == "ledger"]
    assert "readable by other users" in finding.message and f"chmod 600 {path}" in finding.fix
    assert "readable by other users" in status_text(info)
    path.chmod(0o600)
    tmp_path.chmod(0o777)
    try:
        info = ledger_info(path)
        [finding] = [f for f in doctor_findings(info) if f.topic == "ledger"]
        assert "writable by other users" in finding.message and "chmod go-w" in finding.fix
    finally:
        tmp_path.chmod(0o700)
