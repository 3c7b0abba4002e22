"""The kernel endpoint's whole document, the GPUs of its session, and the fixture the
frontend's unit tests check its TypeScript interface against."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from carbon_magic.server.gpus import key_vendor, session_gpus
from tests import test_server as server_tests
from tests.test_server import API, METHODS, get_json, new_kernel_id
from tests.test_server_cells import FIXTURES, REMOTE_PART, record

# The server fixtures of test_server: a ledger written by the package, served by a real
# Jupyter Server with the extension.
ledger_path = server_tests.ledger_path
builder = server_tests.builder
carbon_config = server_tests.carbon_config
jp_server_config = server_tests.jp_server_config
served = server_tests.served

GPUS = {"nvidia:1": "NVIDIA H200", "nvidia:0": "NVIDIA H200", "amd:0": "AMD Instinct MI300X"}
PREDICTION = {"fraction": 0.25, "emissions_g": 0.4, "emissions_range_g": [0.3, 0.6], "eta_s": 90.0}


async def test_kernel_document_carries_gpus_heartbeat_and_prediction(jp_fetch, builder, served):
    now = time.time()
    kernel_id = new_kernel_id()
    session = builder.session(kernel_id, started_at=now - 120, gpus=GPUS)
    builder.cell(session, started_at=now - 100, energy_kwh=0.001, emissions_g=0.05)
    record(builder, session, cell_id="llm", started_at=now - 90, remote=REMOTE_PART)
    builder.beat(
        session,
        at=now - 1,
        watts={"cpu": 30.5, "gpu": 212.0, "ram": 2.5},
        energy_kwh=0.002,
        emissions_g=0.112,
        running_cell="model.fit(x, y)",
        prediction=PREDICTION,
    )

    data = await get_json(jp_fetch, *API, "kernels", kernel_id)

    assert data["session"]["gpus"] == {
        "amd:0": {"vendor": "amd", "model": "AMD Instinct MI300X"},
        "nvidia:0": {"vendor": "nvidia", "model": "NVIDIA H200"},
        "nvidia:1": {"vendor": "nvidia", "model": "NVIDIA H200"},
    }
    assert list(data["session"]["gpus"]) == ["amd:0", "nvidia:0", "nvidia:1"]
    assert data["session"]["host"] == "testhost" and data["session"]["pid"] == 4242
    assert data["session"]["methods"] == METHODS
    assert data["prediction"] == PREDICTION
    assert data["heartbeat"]["running_cell"] == "model.fit(x, y)"
    assert data["heartbeat"]["running_cell_started_at"] == pytest.approx(now - 4)
    assert data["power_w"]["gpu"] == 212.0
    assert data["tracker_state"] == "running"
    # The session's LLM calls, apart: 2 calls, one without an estimate.
    assert data["totals_include_remote"] is False
    assert data["remote"]["count"] == 2 and data["remote"]["unestimated"] == 1
    assert data["remote"]["emissions_range_g"] == pytest.approx([0.2, 0.3])
    assert data["remote"]["water_l"] == pytest.approx(0.01)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / "kernel.json").write_text(json.dumps(data, indent=1))


async def test_a_session_without_gpus_or_heartbeat_sends_empty_and_null(jp_fetch, builder, served):
    kernel_id = new_kernel_id()
    builder.session(kernel_id, started_at=time.time() - 5)

    data = await get_json(jp_fetch, *API, "kernels", kernel_id)

    assert data["session"]["gpus"] == {}
    assert data["heartbeat"] is None and data["prediction"] is None
    assert data["totals"]["source"] == "cells" and data["totals"]["n_cells"] == 0


async def test_malformed_hardware_json_reads_as_no_gpus(jp_fetch, builder, served):
    kernel_id = new_kernel_id()
    session = builder.session(kernel_id, started_at=time.time() - 5, gpus=GPUS)
    assert builder.ledger.flush()
    connection = sqlite3.connect(builder.path)
    try:
        with connection:
            connection.execute(
                "UPDATE sessions SET hardware_json = ? WHERE session_uuid = ?",
                ('{"gpus": ', session),
            )
    finally:
        connection.close()

    data = await get_json(jp_fetch, *API, "kernels", kernel_id)

    assert data["session"]["gpus"] == {}
    assert data["session"]["session_uuid"] == session


@pytest.mark.parametrize(
    ("hardware", "expected"),
    [
        (None, {}),
        ("", {}),
        ("not json", {}),
        ("[]", {}),
        ('{"cpu_model": "x"}', {}),
        ('{"gpus": []}', {}),
        ('{"gpus": ["NVIDIA H200"]}', {}),
        ('{"gpus": {}}', {}),
        ('{"gpus": {"gpu0": "Tesla T4"}}', {"gpu0": {"vendor": "nvidia", "model": "Tesla T4"}}),
        (
            '{"gpus": {"apple:gpu": "Apple M3 Max", "intel:0": " Arc A770 "}}',
            {
                "apple:gpu": {"vendor": "apple", "model": "Apple M3 Max"},
                "intel:0": {"vendor": "intel", "model": "Arc A770"},
            },
        ),
        (
            '{"gpus": {"nvidia:0": 7, "amd:0": "", "mystery": "X", "nvidia:1": "A"}}',
            {"nvidia:1": {"vendor": "nvidia", "model": "A"}},
        ),
    ],
)
def test_session_gpus_from_hardware_json(hardware, expected):
    assert session_gpus(hardware) == expected


def test_key_vendor():
    assert [
        key_vendor(key) for key in ("nvidia:3", "gpu12", "AMD:0", "package-0", "x:", "gpux")
    ] == [
        "nvidia",
        "nvidia",
        "amd",
        None,
        None,
        None,
    ]
