"""The cells endpoints: a kernel's or a notebook's recorded cells, page by page."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from carbon_magic.engine.measurement import Measurement
from carbon_magic.ledger.remote_calls import summarise_rows
from carbon_magic.server import cell_pages
from tests import test_server as server_tests
from tests.test_server import API, METHODS, LedgerBuilder, get_json, new_kernel_id, status_of

# The server fixtures of test_server: a ledger written by the package, served by a real
# Jupyter Server with the extension.
ledger_path = server_tests.ledger_path
builder = server_tests.builder
carbon_config = server_tests.carbon_config
jp_server_config = server_tests.jp_server_config
served = server_tests.served

# Where the frontend's unit tests find a real answer of the server (see labextension/test).
FIXTURES = Path(__file__).resolve().parent.parent / "build" / "api-fixtures"


def _remote_call(model: str, estimated: bool) -> dict:
    figures = {
        "energy_low_kwh": 0.001,
        "energy_high_kwh": 0.002,
        "emissions_low_g": 0.2,
        "emissions_high_g": 0.3,
        "embodied_low_g": 0.01,
        "embodied_high_g": 0.02,
        "water_low_l": 0.005,
        "water_high_l": 0.015,
    }
    return {
        "sdk": "openai",
        "api": "chat.completions",
        "provider": "openai",
        "model": model,
        "streamed": False,
        "status": "ok",
        "error": None,
        "output_tokens": 40,
        "latency_s": 1.2,
        **{k: (v if estimated else None) for k, v in figures.items()},
        "method": "estimated (EcoLogits 0.11)" if estimated else None,
        "note": None if estimated else "model unknown to EcoLogits",
    }


# A cell's calls to hosted models, as carbon_magic.remote.summary makes them.
REMOTE_PART = summarise_rows([_remote_call("gpt-4o-mini", True), _remote_call("mine", False)])


def record(
    builder: LedgerBuilder,
    session_uuid: str,
    *,
    cell_id: str | None,
    started_at: float,
    duration_s: float = 2.0,
    cpu_j: float = 36.0,
    emissions_g: float = 0.5,
    source: str = "x = 1",
    status: str = "ok",
    remote: dict | None = None,
) -> None:
    """A cell recorded as the magics record an auto-measured cell."""
    energy_kwh = cpu_j * 1.1 / 3.6e6  # PUE 1.1
    measurement = Measurement(
        name="",
        duration_s=duration_s,
        energy_j={"cpu": cpu_j, "gpu": 0.0, "ram": 4.0},
        energy_kwh=energy_kwh,
        energy_range_kwh=(energy_kwh * 0.8, energy_kwh * 1.3),
        emissions_g=emissions_g,
        emissions_range_g=(emissions_g * 0.7, emissions_g * 1.4),
        embodied_g=emissions_g / 10,
        intensity_g_per_kwh=56.0,
        intensity_source="static: FR (2023)",
        pue=1.1,
        methods=METHODS,
        started_at=datetime.fromtimestamp(started_at, tz=timezone.utc),
        ended_at=datetime.fromtimestamp(started_at + duration_s, tz=timezone.utc),
        execution_count=3,
        cell_id=cell_id,
        status=status,
        source=source,
        remote=remote,
    )
    builder.ledger.record_cell(session_uuid, measurement, via="auto")


async def test_kernel_cells_carry_the_ledgers_figures(jp_fetch, builder, served):
    now = time.time()
    kernel_id = new_kernel_id()
    session = builder.session(kernel_id, started_at=now - 100)
    record(builder, session, cell_id="cell-a", started_at=now - 50, cpu_j=36.0, emissions_g=0.5)
    record(
        builder,
        session,
        cell_id="cell-b",
        started_at=now - 40,
        cpu_j=72.0,
        emissions_g=2.0,
        source="<img src=x onerror=alert(1)>",
        status="error",
        remote=REMOTE_PART,
    )
    other = builder.session(new_kernel_id(), started_at=now - 100)
    record(builder, other, cell_id="elsewhere", started_at=now - 45)

    data = await get_json(jp_fetch, *API, "kernels", kernel_id, "cells")

    assert data["kernel_id"] == kernel_id
    assert data["more"] is False and data["limit"] == 100  # the default page
    assert [cell["cell_id"] for cell in data["cells"]] == ["cell-a", "cell-b"]
    first, second = data["cells"]
    assert data["last_id"] == second["id"] > first["id"]
    assert first["session_uuid"] == session
    assert first["kernel_id"] == kernel_id
    assert first["started_at"] == pytest.approx(now - 50)
    assert first["ended_at"] == pytest.approx(now - 48)
    assert first["duration_s"] == pytest.approx(2.0)
    assert first["energy_j"] == {"cpu": 36.0, "gpu": 0.0, "ram": 4.0}
    assert first["power_w"] == {"cpu": 18.0, "gpu": 0.0, "ram": 2.0, "total": 20.0}
    assert first["energy_kwh"] == pytest.approx(36.0 * 1.1 / 3.6e6)
    assert first["energy_range_kwh"] == pytest.approx(
        [36.0 * 1.1 / 3.6e6 * 0.8, 36 * 1.1 / 3.6e6 * 1.3]
    )
    assert first["emissions_g"] == pytest.approx(0.5)
    assert first["emissions_range_g"] == pytest.approx([0.35, 0.7])
    assert first["embodied_g"] == pytest.approx(0.05)
    assert first["intensity"] == {"g_per_kwh": 56.0, "source": "static: FR (2023)"}
    assert first["methods"] == METHODS
    assert first["pue"] == 1.1
    assert first["via"] == "auto" and first["status"] == "ok"
    assert first["execution_count"] == 3
    assert second["source"] == "<img src=x onerror=alert(1)>"  # text; the client escapes
    assert second["status"] == "error"
    assert first["remote"] is None and first["totals_include_remote"] is False
    remote = second["remote"]
    assert remote["count"] == 2 and remote["unestimated"] == 1
    assert remote["emissions_range_g"] == pytest.approx([0.2, 0.3])
    assert remote["energy_kwh"] == pytest.approx(0.0015) and remote["water_l"] == pytest.approx(
        0.01
    )
    assert remote["method"] == "estimated (EcoLogits 0.11)" and "calls" not in remote
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / "cells.json").write_text(json.dumps(data, indent=1))


async def test_kernel_cells_span_restarts_and_pages(jp_fetch, builder, served):
    now = time.time()
    kernel_id = new_kernel_id()
    old = builder.session(kernel_id, started_at=now - 500)
    for index in range(3):
        record(builder, old, cell_id=f"old-{index}", started_at=now - 400 + index * 10)
    builder.end(old, now - 300)
    new = builder.session(kernel_id, started_at=now - 100)
    for index in range(2):
        record(builder, new, cell_id=f"new-{index}", started_at=now - 50 + index * 10)

    page = await get_json(jp_fetch, *API, "kernels", kernel_id, "cells", params={"limit": "2"})
    assert [cell["cell_id"] for cell in page["cells"]] == ["old-0", "old-1"]
    assert page["more"] is True and page["limit"] == 2
    seen = [cell["cell_id"] for cell in page["cells"]]
    while page["more"]:
        page = await get_json(
            jp_fetch,
            *API,
            "kernels",
            kernel_id,
            "cells",
            params={"limit": "2", "after": str(page["last_id"])},
        )
        seen += [cell["cell_id"] for cell in page["cells"]]
    assert seen == ["old-0", "old-1", "old-2", "new-0", "new-1"]

    # Nothing new: an empty page that keeps the cursor.
    empty = await get_json(
        jp_fetch, *API, "kernels", kernel_id, "cells", params={"after": str(page["last_id"])}
    )
    assert empty["cells"] == [] and empty["last_id"] == page["last_id"]

    recent = await get_json(
        jp_fetch, *API, "kernels", kernel_id, "cells", params={"since": str(now - 45)}
    )
    # Cells that ended at or after `since`: new-0 ended at now - 48, new-1 at now - 38.
    assert [cell["cell_id"] for cell in recent["cells"]] == ["new-1"]


async def test_notebook_cells_by_path_include_absolute_and_current_names(
    jp_fetch, jp_serverapp, builder, monkeypatch
):
    now = time.time()
    root = jp_serverapp.contents_manager.root_dir
    started_relative = builder.session(new_kernel_id(), started_at=now - 300, notebook="a/nb.ipynb")
    record(builder, started_relative, cell_id="one", started_at=now - 290)
    started_absolute = builder.session(
        new_kernel_id(), started_at=now - 200, notebook=os.path.join(root, "a", "nb.ipynb")
    )
    record(builder, started_absolute, cell_id="two", started_at=now - 190)
    renamed_kernel = new_kernel_id()
    renamed = builder.session(renamed_kernel, started_at=now - 100, notebook="Untitled.ipynb")
    record(builder, renamed, cell_id="three", started_at=now - 90)
    unrelated = builder.session(new_kernel_id(), started_at=now - 100, notebook="b.ipynb")
    record(builder, unrelated, cell_id="no", started_at=now - 80)

    async def sessions():
        return [{"kernel": {"id": renamed_kernel}, "path": "a/nb.ipynb"}]

    monkeypatch.setattr(jp_serverapp.session_manager, "list_sessions", sessions)

    data = await get_json(jp_fetch, *API, "cells", params={"path": "a/nb.ipynb"})

    assert data["notebook_path"] == "a/nb.ipynb" and data["kernel_id"] is None
    assert [cell["cell_id"] for cell in data["cells"]] == ["one", "two", "three"]


async def test_nothing_recorded_is_an_empty_page(jp_fetch, jp_serverapp, ledger_path, monkeypatch):
    assert not ledger_path.exists()
    kernel_id = new_kernel_id()  # runs on this server, nothing recorded
    monkeypatch.setattr(jp_serverapp.kernel_manager, "list_kernel_ids", lambda: [kernel_id])

    by_kernel = await get_json(jp_fetch, *API, "kernels", kernel_id, "cells")
    by_path = await get_json(jp_fetch, *API, "cells", params={"path": "nb.ipynb"})

    assert by_kernel["cells"] == [] and by_kernel["more"] is False
    assert by_path["cells"] == [] and by_path["last_id"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "many"},
        {"since": "-1"},
        {"since": "nan"},
        {"after": "-3"},
        {"after": "1e300"},
    ],
)
async def test_bad_parameters_are_400(jp_fetch, builder, params):
    builder.session(new_kernel_id(), started_at=time.time())

    code, body = await status_of(jp_fetch, *API, "kernels", new_kernel_id(), "cells", params=params)

    assert code == 400
    assert next(iter(params)) in body["message"]


async def test_a_path_is_required(jp_fetch, builder):
    code, body = await status_of(jp_fetch, *API, "cells")

    assert code == 400 and "path" in body["message"]


@pytest.mark.parametrize(
    "path",
    [
        "carbon-magic/api/v1/kernels/00000000-0000-4000-8000-000000000000/cells",
        "carbon-magic/api/v1/cells?path=nb.ipynb",
    ],
)
async def test_cells_need_a_token(http_server_client, jp_base_url, builder, path):
    builder.session(new_kernel_id(), started_at=time.time())

    response = await http_server_client.fetch(jp_base_url + path, raise_error=False)

    assert response.code == 403


@pytest.mark.parametrize("sql", [cell_pages.KERNEL_CELLS_SQL, cell_pages.NOTEBOOK_CELLS_SQL])
def test_cell_queries_go_through_an_index(builder, sql):
    builder.session(new_kernel_id(), started_at=time.time())
    builder.ledger.close()
    connection = sqlite3.connect(builder.path)
    try:
        connection.execute("ANALYZE")
        plan = [
            row[3]
            for row in connection.execute("EXPLAIN QUERY PLAN " + sql, [None] * sql.count("?"))
        ]
    finally:
        connection.close()
    assert any("cells_kernel" in step or "cells_session" in step for step in plan), plan
    for step in plan:
        assert not step.startswith(("SCAN cells", "SCAN c ", "SCAN c\n")), plan
        assert step != "SCAN c", plan
