"""The server extension: REST and Prometheus endpoints over a ledger written by ``Ledger``."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import HTTPClientError

from carbon_magic.engine.measurement import Measurement
from carbon_magic.ledger import Ledger
from carbon_magic.server import cell_sums as cell_sums_module
from carbon_magic.server import reader as reader_module
from carbon_magic.server.heartbeat_columns import decode_next_beat
from carbon_magic.server.reader import LedgerReader
from carbon_magic.server.views import utc_day_start

API = ("carbon-magic", "api", "v1")
METHODS = {"cpu": "modelled", "gpu": "measured", "ram": "assumed"}


# --- a ledger written through the package's writer -------------------------------------


class LedgerBuilder:
    """Records sessions, cells and heartbeats the way a kernel's tracker does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ledger = Ledger(path)
        self.kernel_ids: list[str] = []

    def session(
        self,
        kernel_id: str | None,
        *,
        started_at: float,
        notebook: str | None = "analysis.ipynb",
        interval_s: float = 1.0,
        intensity: float = 56.0,
        source: str = "static: FR (2023)",
        gpus: dict[str, str] | None = None,
        settings: dict[str, object] | None = None,
    ) -> str:
        session_uuid = uuid.uuid4().hex
        if kernel_id:
            self.kernel_ids.append(kernel_id)
        self.ledger.open_session(
            session_uuid=session_uuid,
            kernel_id=kernel_id,
            notebook_path=notebook,
            host="testhost",
            pid=4242,
            started_at=started_at,
            interval_s=interval_s,
            mode="process",
            hardware={"cpu_model": "Test CPU", "n_cpus": 8, "ram_gb": 16, "gpus": gpus or {}},
            methods=METHODS,
            settings={"country": "FR", **(settings or {})},
            intensity_source=source,
            intensity_g_per_kwh=intensity,
        )
        return session_uuid

    def beat(
        self,
        session_uuid: str,
        *,
        at: float,
        watts: dict[str, float],
        energy_kwh: float,
        emissions_g: float,
        embodied_g: float = 0.0,
        tracker_state: str = "running",
        intensity: float = 56.0,
        source: str = "static: FR (2023)",
        running_cell: str | None = None,
        prediction: dict | None = None,
        next_beat_s: float | None = None,
    ) -> None:
        self.ledger.heartbeat(
            session_uuid,
            at=at,
            watts=watts,
            energy_kwh=energy_kwh,
            emissions_g=emissions_g,
            emissions_range_g=(emissions_g * 0.7, emissions_g * 1.4),
            embodied_g=embodied_g,
            intensity_g_per_kwh=intensity,
            intensity_source=source,
            tracker_state=tracker_state,
            running_cell=running_cell,
            running_cell_started_at=at - 3 if running_cell else None,
            prediction=prediction,
            next_beat_s=next_beat_s,
        )

    def cell(
        self, session_uuid: str, *, started_at: float, energy_kwh: float, emissions_g: float
    ) -> None:
        measurement = Measurement(
            name="",
            duration_s=2.0,
            energy_j={"cpu": energy_kwh * 3.6e6, "gpu": 0.0, "ram": 0.0},
            energy_kwh=energy_kwh,
            energy_range_kwh=(energy_kwh * 0.8, energy_kwh * 1.2),
            emissions_g=emissions_g,
            emissions_range_g=(emissions_g * 0.7, emissions_g * 1.4),
            embodied_g=emissions_g / 10,
            intensity_g_per_kwh=56.0,
            intensity_source="static: FR (2023)",
            methods=METHODS,
            started_at=datetime.fromtimestamp(started_at, tz=timezone.utc),
            ended_at=datetime.fromtimestamp(started_at + 2.0, tz=timezone.utc),
            execution_count=1,
            source="x = 1",
        )
        self.ledger.record_cell(session_uuid, measurement, via="auto")

    def end(self, session_uuid: str, at: float) -> None:
        self.ledger.update_session(session_uuid, tracker_state="stopped", ended_at=at)


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "carbon" / "ledger.sqlite3"


@pytest.fixture
def builder(ledger_path: Path):
    built = LedgerBuilder(ledger_path)
    yield built
    built.ledger.close()


@pytest.fixture
def carbon_config() -> dict:
    """Extra ``CarbonMagicServer`` settings for a test (overridden by parametrisation)."""
    return {}


@pytest.fixture
def jp_server_config(ledger_path: Path, carbon_config: dict) -> dict:
    return {
        "ServerApp": {"jpserver_extensions": {"carbon_magic": True}},
        "CarbonMagicServer": {"ledger": str(ledger_path), **carbon_config},
    }


@pytest.fixture
def served(jp_serverapp, builder, monkeypatch):
    """The server runs every kernel the builder records sessions for."""
    monkeypatch.setattr(
        jp_serverapp.kernel_manager, "list_kernel_ids", lambda: list(builder.kernel_ids)
    )


def new_kernel_id() -> str:
    return str(uuid.uuid4())


async def get_json(jp_fetch, *parts: str, **kwargs) -> dict:
    response = await jp_fetch(*parts, **kwargs)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


async def status_of(jp_fetch, *parts: str, **kwargs) -> tuple[int, dict | str]:
    """The status code and (JSON when possible) body of a request expected to fail."""
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch(*parts, **kwargs)
    body = caught.value.response.body.decode() if caught.value.response else ""
    try:
        return caught.value.code, json.loads(body)
    except ValueError:
        return caught.value.code, body


# --- kernel endpoint -------------------------------------------------------------------


async def test_kernel_reports_live_power_and_heartbeat_totals(jp_fetch, builder, served):
    now = time.time()
    kernel_id = new_kernel_id()
    session = builder.session(kernel_id, started_at=now - 120)
    builder.cell(session, started_at=now - 100, energy_kwh=0.001, emissions_g=0.05)
    builder.beat(
        session,
        at=now - 20,
        watts={"cpu": 10.0, "gpu": 0.0, "ram": 1.0},
        energy_kwh=0.0015,
        emissions_g=0.08,
    )
    builder.beat(
        session,
        at=now - 1,
        watts={"cpu": 30.5, "gpu": 5.0, "ram": 2.5},
        energy_kwh=0.002,
        emissions_g=0.112,
        embodied_g=0.03,
        running_cell="for i in range(10**9):",
    )

    data = await get_json(jp_fetch, *API, "kernels", kernel_id)

    assert data["kernel_id"] == kernel_id
    assert data["notebook_path"] == "analysis.ipynb"
    assert data["tracker_state"] == "running"
    assert data["live"] is True and data["stale"] is False
    assert 0 <= data["age_s"] < 30
    assert data["power_w"] == {"cpu": 30.5, "gpu": 5.0, "ram": 2.5, "total": 38.0}
    totals = data["totals"]
    assert totals["source"] == "heartbeat"
    assert totals["energy_kwh"] == pytest.approx(0.002)
    assert totals["emissions_g"] == pytest.approx(0.112)
    assert totals["emissions_low_g"] == pytest.approx(0.112 * 0.7)
    assert totals["emissions_high_g"] == pytest.approx(0.112 * 1.4)
    assert totals["embodied_g"] == pytest.approx(0.03)
    assert totals["n_cells"] == 1
    assert data["intensity"] == {"g_per_kwh": 56.0, "source": "static: FR (2023)"}
    assert data["heartbeat"]["running_cell"] == "for i in range(10**9):"
    assert data["session"]["methods"] == METHODS
    assert data["session"]["interval_s"] == 1.0


async def test_kernel_without_heartbeats_sums_its_cells(jp_fetch, builder, served):
    now = time.time()
    kernel_id = new_kernel_id()
    session = builder.session(kernel_id, started_at=now - 2)
    for offset in (30, 20, 10):
        builder.cell(session, started_at=now - offset, energy_kwh=0.001, emissions_g=0.25)

    data = await get_json(jp_fetch, *API, "kernels", kernel_id)

    assert data["totals"]["source"] == "cells"
    assert data["totals"]["n_cells"] == 3
    assert data["totals"]["energy_kwh"] == pytest.approx(0.003)
    assert data["totals"]["emissions_g"] == pytest.approx(0.75)
    assert data["totals"]["embodied_g"] == pytest.approx(0.075)
    assert data["power_w"]["total"] == 0.0
    assert data["heartbeat"] is None


async def test_kernel_reports_its_latest_session_after_a_restart(jp_fetch, builder, served):
    now = time.time()
    kernel_id = new_kernel_id()
    old = builder.session(kernel_id, started_at=now - 600, notebook="old.ipynb")
    builder.beat(old, at=now - 500, watts={"cpu": 99.0}, energy_kwh=1.0, emissions_g=50.0)
    builder.end(old, now - 400)
    new = builder.session(kernel_id, started_at=now - 10, notebook="new.ipynb")
    builder.beat(new, at=now - 1, watts={"cpu": 3.0}, energy_kwh=0.01, emissions_g=0.5)

    data = await get_json(jp_fetch, *API, "kernels", kernel_id)

    assert data["notebook_path"] == "new.ipynb"
    assert data["totals"]["emissions_g"] == pytest.approx(0.5)
    assert data["power_w"]["cpu"] == 3.0


async def test_stale_heartbeat_is_flagged(jp_fetch, builder, served):
    now = time.time()
    kernel_id = new_kernel_id()
    session = builder.session(kernel_id, started_at=now - 300, interval_s=1.0)
    builder.beat(session, at=now - 60, watts={"cpu": 20.0}, energy_kwh=0.01, emissions_g=0.5)

    data = await get_json(jp_fetch, *API, "kernels", kernel_id)

    assert data["stale"] is True
    assert data["live"] is False
    assert data["tracker_state"] == "running"
    assert data["stale_after_s"] == pytest.approx(15.0)  # 3 × max(1 s, 5 s heartbeat period)
    assert data["age_s"] == pytest.approx(60, abs=5)


async def test_stale_threshold_follows_a_long_interval(jp_fetch, builder, served):
    now = time.time()
    kernel_id = new_kernel_id()
    session = builder.session(kernel_id, started_at=now - 300, interval_s=30.0)
    builder.beat(session, at=now - 60, watts={"cpu": 20.0}, energy_kwh=0.01, emissions_g=0.5)

    data = await get_json(jp_fetch, *API, "kernels", kernel_id)

    assert data["stale_after_s"] == pytest.approx(90.0)
    assert data["stale"] is False and data["live"] is True


async def test_stale_threshold_follows_the_wait_the_heartbeat_declared(jp_fetch, builder, served):
    """An idle tracker beats every 30 s and says so: 40 s of silence is not stale, while
    a tracker that promised its next beat in 2 s (a cell running) is stale after 15 s."""
    now = time.time()
    idle, busy = new_kernel_id(), new_kernel_id()
    for kernel_id, age_s, next_beat_s, cell in ((idle, 40, 30.0, None), (busy, 20, 2.0, "fit()")):
        session = builder.session(kernel_id, started_at=now - 300, interval_s=1.0)
        builder.beat(
            session,
            at=now - age_s,
            watts={"cpu": 5.0},
            energy_kwh=0.01,
            emissions_g=0.5,
            next_beat_s=next_beat_s,
            running_cell=cell,
        )

    idle_data = await get_json(jp_fetch, *API, "kernels", idle)
    busy_data = await get_json(jp_fetch, *API, "kernels", busy)

    assert idle_data["stale_after_s"] == pytest.approx(90.0)  # 3 × the declared 30 s
    assert idle_data["stale"] is False and idle_data["live"] is True
    assert busy_data["stale_after_s"] == pytest.approx(15.0)  # 3 × max(2 s, 5 s)
    assert busy_data["stale"] is True and busy_data["live"] is False


@pytest.mark.parametrize(
    ("stored", "read"),
    [(30.0, 30.0), (2, 2.0), (None, None), (0.0, None), (-5.0, None), ("30", None), (True, None)],
)
def test_a_declared_next_beat_is_read_only_when_plausible(stored, read):
    assert decode_next_beat(stored) == read


def make_older_ledger(path: Path, heartbeat_column: str, version: int) -> None:
    """Turn a ledger file into one of schema ``version``, before ``heartbeat_column``."""
    with sqlite3.connect(path) as conn:
        conn.execute(f"ALTER TABLE heartbeats DROP COLUMN {heartbeat_column}")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    conn.close()


def test_a_ledger_from_before_declared_beats_reads_none_and_then_migrates(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    kernel_id = new_kernel_id()
    now = time.time()
    old = LedgerBuilder(path)
    session = old.session(kernel_id, started_at=now - 60)
    old.beat(session, at=now - 2, watts={"cpu": 1.0}, energy_kwh=0.0, emissions_g=0.0)
    old.ledger.close()
    make_older_ledger(path, "next_beat_s", version=4)  # as carbon_magic before it wrote it
    reader = LedgerReader(path)
    try:
        figures = reader.kernel(kernel_id)
        assert figures is not None and figures.heartbeat is not None
        assert figures.heartbeat.next_beat_s is None
        (listed,) = reader.snapshot(now, now - 3600).sessions
        assert listed.heartbeat is not None and listed.heartbeat.next_beat_s is None
        new = LedgerBuilder(path)  # a kernel of this version migrates the file
        new.beat(
            session,
            at=now - 1,
            watts={"cpu": 1.0},
            energy_kwh=0.0,
            emissions_g=0.0,
            next_beat_s=30.0,
        )
        new.ledger.close()
        figures = reader.kernel(kernel_id)
        assert figures is not None and figures.heartbeat is not None
        assert figures.heartbeat.next_beat_s == 30.0
    finally:
        reader.close()


async def test_stopped_tracker_is_not_live(jp_fetch, builder, served):
    now = time.time()
    kernel_id = new_kernel_id()
    session = builder.session(kernel_id, started_at=now - 30)
    builder.beat(session, at=now - 1, watts={"cpu": 20.0}, energy_kwh=0.01, emissions_g=0.5)
    builder.end(session, now)

    data = await get_json(jp_fetch, *API, "kernels", kernel_id)

    assert data["tracker_state"] == "stopped"
    assert data["live"] is False
    assert data["totals"]["emissions_g"] == pytest.approx(0.5)


async def test_unknown_kernel_is_404_with_a_json_message(jp_fetch, builder, served):
    builder.session(new_kernel_id(), started_at=time.time())
    untracked = new_kernel_id()
    builder.kernel_ids.append(untracked)  # runs on this server, without a tracker

    code, body = await status_of(jp_fetch, *API, "kernels", untracked)

    assert code == 404
    assert "%load_ext carbon_magic" in body["message"]


async def test_other_servers_kernels_are_not_answered(jp_fetch, builder, served):
    mine, theirs = new_kernel_id(), new_kernel_id()
    now = time.time()
    for kernel_id in (mine, theirs):
        session = builder.session(kernel_id, started_at=now - 30)
        builder.beat(session, at=now, watts={"cpu": 5.0}, energy_kwh=0.001, emissions_g=0.1)
    builder.kernel_ids.remove(theirs)  # a kernel of another server sharing the ledger

    assert (await get_json(jp_fetch, *API, "kernels", mine))["kernel_id"] == mine
    code, body = await status_of(jp_fetch, *API, "kernels", theirs)
    assert code == 404
    assert "not running on this server" in body["message"]
    assert "power_w" not in body


@pytest.mark.parametrize("carbon_config", [{"kernels": "ledger"}])
async def test_every_ledger_kernel_is_answered_when_configured(jp_fetch, builder):
    theirs = new_kernel_id()
    session = builder.session(theirs, started_at=time.time() - 30)
    builder.beat(session, at=time.time(), watts={"cpu": 5.0}, energy_kwh=0.001, emissions_g=0.1)

    assert (await get_json(jp_fetch, *API, "kernels", theirs))["kernel_id"] == theirs


async def test_a_corrupt_ledger_answers_503_and_metrics_say_it_is_down(
    jp_fetch, builder, served, ledger_path
):
    kernel_id = new_kernel_id()
    session = builder.session(kernel_id, started_at=time.time() - 30)
    builder.beat(session, at=time.time(), watts={"cpu": 5.0}, energy_kwh=0.001, emissions_g=0.1)
    response = await jp_fetch("carbon-magic", "metrics")
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    assert families["carbon_magic_ledger_up"].samples[0].value == 1.0
    builder.ledger.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{ledger_path}{suffix}").unlink(missing_ok=True)
    garbage = ledger_path.with_name("garbage")
    garbage.write_bytes(b"this is not an SQLite file " * 200)
    garbage.replace(ledger_path)

    for parts in (("kernels", kernel_id), ("summary",)):
        code, body = await status_of(jp_fetch, *API, *parts)
        assert code == 503
        assert body["message"].startswith("the ledger cannot be read: file is not a database")
        assert "Traceback" not in json.dumps(body)
    response = await jp_fetch("carbon-magic", "metrics")
    assert response.code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    assert families["carbon_magic_ledger_up"].samples[0].value == 0.0


async def test_missing_ledger_is_404_for_kernels_and_empty_summary(jp_fetch, ledger_path):
    assert not ledger_path.exists()

    code, body = await status_of(jp_fetch, *API, "kernels", new_kernel_id())
    assert code == 404
    assert "message" in body

    summary = await get_json(jp_fetch, *API, "summary")
    assert summary["ledger"]["exists"] is False
    assert summary["totals"]["all_time"]["emissions_g"] == 0.0

    response = await jp_fetch("carbon-magic", "metrics")
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    assert families["carbon_magic_ledger_up"].samples[0].value == 0.0


async def test_ledger_without_tables_is_404(jp_fetch, ledger_path):
    ledger_path.parent.mkdir(parents=True)
    ledger_path.touch()

    code, _ = await status_of(jp_fetch, *API, "kernels", new_kernel_id())

    assert code == 404


@pytest.mark.parametrize(
    "bad_id",
    [
        "not-a-kernel",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2E%2E",
        "x' OR '1'='1",
        "00000000-0000-0000-0000-000000000000%27%20OR%201%3D1--",
        "00000000-0000-0000-0000-00000000000",  # one digit short
    ],
)
async def test_invalid_kernel_ids_are_rejected(jp_fetch, builder, bad_id):
    builder.session(new_kernel_id(), started_at=time.time())

    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("carbon-magic/api/v1/kernels/" + bad_id)

    assert caught.value.code in (400, 404)
    body = json.loads(caught.value.response.body)
    assert "message" in body
    assert "kernel_id" not in body


async def test_sql_in_a_kernel_id_matches_nothing(builder):
    """The reader binds the id as a parameter: an injection attempt finds no rows."""
    now = time.time()
    session = builder.session(new_kernel_id(), started_at=now)
    builder.beat(session, at=now, watts={"cpu": 1.0}, energy_kwh=0.0, emissions_g=0.0)

    reader = LedgerReader(builder.path)
    try:
        assert reader.kernel("x' OR '1'='1") is None
        assert reader.kernel("%") is None
    finally:
        reader.close()


# --- authentication --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "carbon-magic/api/v1/kernels/00000000-0000-4000-8000-000000000000",
        "carbon-magic/api/v1/kernels/not-a-kernel",
        "carbon-magic/api/v1/summary",
        "carbon-magic/metrics",
    ],
)
async def test_requests_without_a_token_are_forbidden(
    http_server_client, jp_base_url, builder, path
):
    builder.session(new_kernel_id(), started_at=time.time())

    response = await http_server_client.fetch(jp_base_url + path, raise_error=False)

    assert response.code == 403


@pytest.mark.parametrize("carbon_config", [{"metrics_allow_unauthenticated": True}])
async def test_metrics_can_be_opened_to_unauthenticated_scrapers(
    http_server_client, jp_base_url, builder
):
    builder.session(new_kernel_id(), started_at=time.time())

    metrics = await http_server_client.fetch(jp_base_url + "carbon-magic/metrics")
    summary = await http_server_client.fetch(
        jp_base_url + "carbon-magic/api/v1/summary", raise_error=False
    )

    assert metrics.code == 200
    assert summary.code == 403


# --- summary and metrics ---------------------------------------------------------------


@pytest.fixture
def day_ledger(builder):
    """Three kernels around a day boundary, and a session without a kernel id.

    Returns (day_start, kernel ids): A spans the day start (5 g before it, 7 g now; its
    cells 4 g), B started today (2 g, cells only), C ended yesterday (11 g, no cells).
    """
    now = time.time()
    day_start = now - 3600  # "today" began an hour ago
    a, b, c = (new_kernel_id() for _ in range(3))
    sa = builder.session(a, started_at=day_start - 7200, notebook="a.ipynb")
    builder.beat(sa, at=day_start - 10, watts={"cpu": 10.0}, energy_kwh=0.1, emissions_g=5.0)
    builder.beat(
        sa,
        at=now - 1,
        watts={"cpu": 30.0, "gpu": 0.0, "ram": 2.0},
        energy_kwh=0.14,
        emissions_g=7.0,
        embodied_g=1.0,
    )
    builder.cell(sa, started_at=day_start - 3000, energy_kwh=0.05, emissions_g=2.5)
    builder.cell(sa, started_at=now - 50, energy_kwh=0.03, emissions_g=1.5)
    sb = builder.session(b, started_at=day_start + 60, notebook="b.ipynb")
    builder.cell(sb, started_at=day_start + 100, energy_kwh=0.01, emissions_g=1.5)
    builder.cell(sb, started_at=day_start + 200, energy_kwh=0.01, emissions_g=0.5)
    sc = builder.session(c, started_at=day_start - 86400, notebook="c.ipynb")
    builder.beat(sc, at=day_start - 80000, watts={"cpu": 50.0}, energy_kwh=0.2, emissions_g=11.0)
    builder.end(sc, day_start - 80000)
    anonymous = builder.session(None, started_at=now - 100, notebook=None)
    builder.beat(anonymous, at=now - 1, watts={"cpu": 1.0}, energy_kwh=0.001, emissions_g=0.25)
    return day_start, (a, b, c)


@pytest.mark.parametrize("carbon_config", [{"kernels": "ledger"}])
async def test_summary_today_and_all_time(jp_fetch, day_ledger):
    day_start, (a, b, c) = day_ledger

    data = await get_json(jp_fetch, *API, "summary", params={"day_start": str(day_start)})

    assert data["day_start"] == pytest.approx(day_start)
    assert data["ledger"]["exists"] is True
    assert data["totals"]["all_time"]["emissions_g"] == pytest.approx(7.0 + 2.0 + 11.0 + 0.25)
    assert data["totals"]["today"]["emissions_g"] == pytest.approx(2.0 + 2.0 + 0.25)
    assert data["totals"]["all_time"]["embodied_g"] == pytest.approx(1.0 + 0.2)
    # ledger scope lists the live kernels: A (fresh heartbeat) and B (started a while ago,
    # no heartbeat: stale) -> only A; C has ended.
    kernels = {entry["kernel_id"]: entry for entry in data["kernels"]}
    assert set(kernels) == {a}
    assert kernels[a]["today"]["emissions_g"] == pytest.approx(2.0)
    assert kernels[a]["all_time"]["emissions_g"] == pytest.approx(7.0)
    assert kernels[a]["power_w"]["total"] == pytest.approx(32.0)
    assert kernels[a]["notebook_path"] == "a.ipynb"
    assert data["kernels_total"]["power_w"]["cpu"] == pytest.approx(30.0)


async def test_summary_lists_the_servers_kernels(jp_fetch, jp_serverapp, day_ledger, monkeypatch):
    day_start, (a, b, c) = day_ledger
    untracked = new_kernel_id()
    monkeypatch.setattr(jp_serverapp.kernel_manager, "list_kernel_ids", lambda: [b, a, untracked])

    data = await get_json(jp_fetch, *API, "summary", params={"day_start": str(day_start)})

    kernels = {entry["kernel_id"]: entry for entry in data["kernels"]}
    assert set(kernels) == {a, b, untracked}
    assert kernels[untracked] == {"kernel_id": untracked, "tracked": False}
    assert kernels[b]["tracked"] is True
    assert kernels[b]["today"]["emissions_g"] == pytest.approx(2.0)
    assert kernels[b]["stale"] is True
    assert data["kernels_total"]["today"]["emissions_g"] == pytest.approx(4.0)
    assert data["kernels_total"]["all_time"]["emissions_g"] == pytest.approx(9.0)
    # A real answer with tracked and untracked kernels, for the frontend's schema test.
    fixtures = Path(__file__).resolve().parent.parent / "build" / "api-fixtures"
    fixtures.mkdir(parents=True, exist_ok=True)
    (fixtures / "summary.json").write_text(json.dumps(data, indent=1))


async def test_summary_defaults_to_the_utc_day(jp_fetch, builder):
    data = await get_json(jp_fetch, *API, "summary")

    assert data["day_start"] == pytest.approx(utc_day_start(time.time()), abs=1)
    assert datetime.fromtimestamp(data["day_start"], tz=timezone.utc).hour == 0


@pytest.mark.parametrize("value", ["yesterday", "nan", "-5", "1e20"])
async def test_summary_rejects_a_bad_day_start(jp_fetch, builder, value):
    code, body = await status_of(jp_fetch, *API, "summary", params={"day_start": value})

    assert code == 400
    assert "day_start" in body["message"]


@pytest.mark.parametrize("carbon_config", [{"kernels": "ledger"}])
async def test_metrics_exposition(jp_fetch, day_ledger):
    day_start, (a, b, c) = day_ledger

    response = await jp_fetch("carbon-magic", "metrics")

    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    power = {
        (s.labels["kernel_id"], s.labels["component"]): s.value
        for s in families["carbon_magic_power_watts"].samples
    }
    assert power == {(a, "cpu"): 30.0, (a, "gpu"): 0.0, (a, "ram"): 2.0}
    sample = families["carbon_magic_power_watts"].samples[0]
    assert sample.labels["notebook"] == "a.ipynb"
    # Counters sum the recorded cells (the heartbeats' running totals can be rewritten).
    energy = families["carbon_magic_energy_kwh"]
    assert energy.type == "counter"
    assert [(s.name, s.labels["kernel_id"], s.value) for s in energy.samples] == [
        ("carbon_magic_energy_kwh_total", a, pytest.approx(0.08))
    ]
    emissions = families["carbon_magic_emissions_grams"].samples
    assert emissions[0].value == pytest.approx(4.0)
    assert families["carbon_magic_embodied_grams"].samples[0].value == pytest.approx(0.4)
    intensity = families["carbon_magic_grid_intensity_grams_per_kwh"].samples[0]
    assert intensity.labels["source"] == "static: FR (2023)"
    assert intensity.value == 56.0
    assert families["carbon_magic_tracker_live"].samples[0].value == 1.0
    server_power = {
        s.labels["component"]: s.value for s in families["carbon_magic_server_power_watts"].samples
    }
    assert server_power == {"cpu": 30.0, "gpu": 0.0, "ram": 2.0}
    ledger_emissions = families["carbon_magic_ledger_emissions_grams"].samples[0]
    assert ledger_emissions.value == pytest.approx(4.0 + 2.0)
    assert families["carbon_magic_kernels"].samples[0].value == 1.0
    assert families["carbon_magic_ledger_up"].samples[0].value == 1.0


async def test_metrics_escape_label_values(jp_fetch, jp_serverapp, builder, monkeypatch):
    now = time.time()
    kernel_id = new_kernel_id()
    notebook = 'dir "quoted"\\back\nslash.ipynb'
    session = builder.session(kernel_id, started_at=now - 5, notebook=notebook)
    builder.beat(session, at=now, watts={"cpu": 1.5}, energy_kwh=0.001, emissions_g=0.01)
    monkeypatch.setattr(jp_serverapp.kernel_manager, "list_kernel_ids", lambda: [kernel_id])

    response = await jp_fetch("carbon-magic", "metrics")

    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    sample = families["carbon_magic_power_watts"].samples[0]
    assert sample.labels == {"kernel_id": kernel_id, "notebook": notebook, "component": "cpu"}


@pytest.mark.kernel
async def test_a_real_kernel_is_listed_under_its_current_notebook_path(jp_fetch, builder):
    """A session started through the REST API: its kernel is "on this server", and the
    notebook path follows the session (a rename) rather than the path at kernel start."""
    body = json.dumps(
        {"path": "work/renamed.ipynb", "type": "notebook", "kernel": {"name": "python3"}}
    )
    response = await jp_fetch("api", "sessions", method="POST", body=body)
    assert response.code == 201
    created = json.loads(response.body)
    kernel_id = created["kernel"]["id"]
    try:
        now = time.time()
        session = builder.session(kernel_id, started_at=now - 5, notebook="Untitled.ipynb")
        builder.beat(session, at=now, watts={"cpu": 4.0}, energy_kwh=0.001, emissions_g=0.2)

        kernel = await get_json(jp_fetch, *API, "kernels", kernel_id)
        summary = await get_json(jp_fetch, *API, "summary")
        response = await jp_fetch("carbon-magic", "metrics")
    finally:
        await jp_fetch("api", "sessions", created["id"], method="DELETE")

    assert kernel["notebook_path"] == "work/renamed.ipynb"
    entries = {entry["kernel_id"]: entry for entry in summary["kernels"]}
    assert entries[kernel_id]["tracked"] is True
    assert entries[kernel_id]["notebook_path"] == "work/renamed.ipynb"
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    labels = families["carbon_magic_power_watts"].samples[0].labels
    assert labels["kernel_id"] == kernel_id
    assert labels["notebook"] == "work/renamed.ipynb"


# --- queries use the indexes -----------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        reader_module._KERNEL_LATEST_SESSION,
        reader_module._SESSION_LATEST_HEARTBEAT,
        reader_module._CELL_ID_RANGE,
        reader_module._ALL_SESSIONS,
        reader_module._DAY_BASELINES,
        cell_sums_module._CELLS_AFTER,
        cell_sums_module._CELLS_SINCE,
        cell_sums_module._CELLS_AFTER_SINCE,
        cell_sums_module._CLUSTERS_AFTER,
    ],
)
def test_queries_never_scan_cells_or_heartbeats(builder, sql):
    import sqlite3

    builder.session(new_kernel_id(), started_at=time.time())
    builder.ledger.close()
    connection = sqlite3.connect(builder.path)
    try:
        connection.execute("ANALYZE")
        params = [None] * sql.count("?") if "?" in sql else {"day_start": 0.0}
        plan = [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, params)]
    finally:
        connection.close()
    for step in plan:
        assert not step.startswith(("SCAN cells", "SCAN heartbeats", "SCAN h", "SCAN c")), plan


def test_cell_sums_follow_new_cells_and_a_replaced_file(builder, ledger_path):
    now = time.time()
    kernel_id = new_kernel_id()
    session = builder.session(kernel_id, started_at=now - 50)
    builder.cell(session, started_at=now - 40, energy_kwh=0.001, emissions_g=1.0)
    reader = LedgerReader(ledger_path)
    try:
        first = reader.kernel(kernel_id)
        assert (first.n_cells, first.all_time.emissions_g) == (1, pytest.approx(1.0))

        builder.cell(session, started_at=now - 30, energy_kwh=0.001, emissions_g=2.0)
        second = reader.kernel(kernel_id)
        assert (second.n_cells, second.all_time.emissions_g) == (2, pytest.approx(3.0))
        day = reader.snapshot(now, now - 35)
        assert day.sessions[0].today.emissions_g == pytest.approx(2.0)
        assert day.sessions[0].all_time.emissions_g == pytest.approx(3.0)

        builder.ledger.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{ledger_path}{suffix}").unlink(missing_ok=True)
        fresh = LedgerBuilder(ledger_path)
        other = fresh.session(kernel_id, started_at=now - 5)
        fresh.cell(other, started_at=now - 4, energy_kwh=0.001, emissions_g=0.5)
        third = reader.kernel(kernel_id)
        assert (third.n_cells, third.all_time.emissions_g) == (1, pytest.approx(0.5))
        fresh.ledger.close()
    finally:
        reader.close()


async def test_a_killed_kernels_session_reads_lost(jp_fetch, builder, served):
    now = time.time()
    killed, busy = new_kernel_id(), new_kernel_id()
    session = builder.session(killed, started_at=now - 3600)
    builder.beat(session, at=now - 600, watts={"cpu": 20.0}, energy_kwh=0.01, emissions_g=0.5)
    session = builder.session(busy, started_at=now - 3600)
    builder.beat(session, at=now - 60, watts={"cpu": 20.0}, energy_kwh=0.01, emissions_g=0.5)

    lost = await get_json(jp_fetch, *API, "kernels", killed)
    assert lost["tracker_state"] == "lost"
    assert lost["live"] is False and lost["stale"] is True
    assert lost["totals"]["emissions_g"] == pytest.approx(0.5)
    stale = await get_json(jp_fetch, *API, "kernels", busy)  # silent for a minute: stale only
    assert stale["tracker_state"] == "running" and stale["stale"] is True
    summary = await get_json(jp_fetch, *API, "summary")
    states = {entry["kernel_id"]: entry["tracker_state"] for entry in summary["kernels"]}
    assert states == {killed: "lost", busy: "running"}
