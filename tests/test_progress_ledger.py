"""The running cell's prediction through heartbeats, the ledger reader and the kernel JSON."""

import sqlite3
import time
import uuid

import pytest

from carbon_magic import ledger as ledger_module
from carbon_magic.ledger import Ledger
from carbon_magic.record_json import to_json
from carbon_magic.server import views
from carbon_magic.server.reader import LedgerReader

from .test_ledger import beat, open_session

PREDICTION = {
    "fraction": 0.25,
    "emissions_g": 12.0,
    "emissions_range_g": [9.0, 16.0],
    "eta_s": 840.0,
}


def start(ledger: Ledger, kernel_id: str, started_at: float) -> str:
    session_uuid = uuid.uuid4().hex
    open_session(ledger, session_uuid, kernel_id, started_at=started_at)
    return session_uuid


def running(ledger: Ledger, session_uuid: str, at: float, cell: str | None, prediction=None):
    extra = {} if prediction is None else {"prediction": prediction}
    beat(ledger, session_uuid, at, running_cell=cell, **extra)


def kernel_document(path, kernel_id):
    reader = LedgerReader(path)
    try:
        figures = reader.kernel(kernel_id)
        document = views.kernel_json(
            kernel_id, figures, time.time(), lambda interval, next_beat: 60.0
        )
        return to_json(document)
    finally:
        reader.close()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "ledger.sqlite3"


def test_running_cell_prediction_reaches_the_kernel_document(path):
    now = time.time()
    kernel_id = str(uuid.uuid4())
    with Ledger(path) as ledger:
        session = start(ledger, kernel_id, now - 60)
        running(ledger, session, now - 1, "for x in tqdm(data):", PREDICTION)
    document = kernel_document(path, kernel_id)
    assert document["prediction"] == PREDICTION
    assert document["heartbeat"]["running_cell"] == "for x in tqdm(data):"
    assert ledger_module.latest_heartbeat(path, kernel_id)["prediction_json"] is not None


def test_no_prediction_without_progress_or_running_cell(path):
    now = time.time()
    kernel_id = str(uuid.uuid4())
    with Ledger(path) as ledger:
        session = start(ledger, kernel_id, now - 60)
        running(ledger, session, now - 2, "while True: pass")
    assert kernel_document(path, kernel_id)["prediction"] is None
    with Ledger(path) as ledger:
        # A prediction without a running cell (should never be written) is not shown.
        running(ledger, session, now - 1, None, PREDICTION)
    assert kernel_document(path, kernel_id)["prediction"] is None


def test_summary_sessions_read_the_prediction(path):
    now = time.time()
    kernel_id = str(uuid.uuid4())
    with Ledger(path) as ledger:
        session = start(ledger, kernel_id, now - 60)
        running(ledger, session, now - 1, "fit()", PREDICTION)
    reader = LedgerReader(path)
    try:
        snapshot = reader.snapshot(now, now - 3600)
    finally:
        reader.close()
    (figures,) = snapshot.sessions
    assert to_json(figures.heartbeat.prediction) == PREDICTION


def test_a_ledger_from_before_predictions_is_read_and_then_migrated(path):
    now = time.time()
    kernel_id = str(uuid.uuid4())
    with Ledger(path) as ledger:
        session = start(ledger, kernel_id, now - 60)
        running(ledger, session, now - 2, "fit()")
    # Make it a version 1 file, as an older carbon_magic wrote it.
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE heartbeats DROP COLUMN prediction_json")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()
    reader = LedgerReader(path)
    try:
        figures = reader.kernel(kernel_id)
        assert figures.heartbeat.running_cell == "fit()" and figures.heartbeat.prediction is None
        # A kernel with this version opens the file: the column is added, the old rows kept.
        with Ledger(path) as ledger:
            running(ledger, session, now - 1, "fit()", PREDICTION)
        assert to_json(reader.kernel(kernel_id).heartbeat.prediction) == PREDICTION
    finally:
        reader.close()
    with sqlite3.connect(path) as conn:
        count = conn.execute("SELECT COUNT(*) FROM heartbeats").fetchone()[0]
    conn.close()
    assert count == 2


def test_a_malformed_prediction_is_left_out(path):
    now = time.time()
    kernel_id = str(uuid.uuid4())
    with Ledger(path) as ledger:
        session = start(ledger, kernel_id, now - 60)
        running(ledger, session, now - 1, "fit()", {"fraction": 0.5})
    assert kernel_document(path, kernel_id)["prediction"] is None
