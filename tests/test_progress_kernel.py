"""Predictions from tqdm bars and ``carbon_magic.progress()`` in real kernels."""

import json
import re
import sqlite3

import pytest

from carbon_magic import ledger as ledger_module

from .kernels import Kernel

pytest.importorskip("tqdm")
pytestmark = pytest.mark.kernel


def busy(seconds: float, indent: int = 0) -> str:
    """Lines that keep the CPU busy for ``seconds``, indented by ``indent`` spaces."""
    pad = " " * indent
    return f"{pad}_end = time.time() + {seconds}\n{pad}while time.time() < _end:\n{pad}    pass\n"


def loop(bar: str, steps: int, step_s: float = 0.1) -> str:
    """A cell that busy-waits ``step_s`` per step of ``bar`` (a tqdm expression)."""
    return f"import time\nfor _i in {bar.format(n=steps)}:\n" + busy(step_s, 4)


def panel_values(run) -> list[str]:
    """The live panel's HTML values, in order, received while the cell ran."""
    values = [
        m["content"]["data"]["state"]["value"]
        for m in run.of_type("comm_msg")
        if m["content"]["data"].get("method") == "update"
        and "value" in m["content"]["data"].get("state", {})
        and m["header"]["date"] <= run.reply["header"]["date"]
    ]
    # tqdm.notebook's own widgets send values too.
    return [v for v in values if isinstance(v, str) and "carbon-magic-panel" in v]


def predictions_in(values: list[str]) -> list[str]:
    return [
        re.search(r"<div class='cm-prediction'>(.*?)</div>", v).group(1)
        for v in values
        if "cm-prediction" in v
    ]


def stderr(run) -> str:
    return "".join(
        m["content"]["text"] for m in run.of_type("stream") if m["content"]["name"] == "stderr"
    )


def heartbeat_predictions(path: str, kernel_id: str) -> list[dict]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT prediction_json FROM heartbeats WHERE kernel_id = ? "
            "AND prediction_json IS NOT NULL ORDER BY at",
            (kernel_id,),
        ).fetchall()
    finally:
        conn.close()
    return [json.loads(row[0]) for row in rows]


@pytest.fixture(scope="module")
def ledger_path(tmp_path_factory):
    return str(tmp_path_factory.mktemp("progress") / "ledger.sqlite3")


@pytest.fixture(scope="module")
def kernel(ledger_path):
    k = Kernel(ledger_path, {"CARBON_MAGIC_INTERVAL": "0.5"})
    k.execute("%load_ext carbon_magic")
    k.execute("from tqdm import tqdm")
    yield k
    k.shutdown()


def test_prediction_is_shown_while_a_tqdm_cell_runs(kernel, ledger_path):
    run = kernel.execute("%%carbon --name fit\n" + loop("tqdm(range({n}))", 50), timeout=120)
    assert run.reply["content"]["status"] == "ok", run.text
    lines = predictions_in(panel_values(run))
    assert len(lines) >= 3, panel_values(run)
    assert all(
        re.match(r"predicted ≈ .+ at completion \(.+–.+\) · ETA .+ · \d+% done \(tqdm\)", t)
        for t in lines
    ), lines
    done = [int(re.search(r"(\d+)% done", t).group(1)) for t in lines]
    assert done == sorted(done) and 0 < done[-1] <= 100
    # tqdm still draws its own bar, to the end.
    assert "50/50" in stderr(run)
    # The heartbeats carried the prediction for the status bar, in the agreed shape.
    beats = heartbeat_predictions(ledger_path, kernel.kernel_id)
    assert beats, "no heartbeat carried a prediction"
    assert set(beats[-1]) == {"fraction", "emissions_g", "emissions_range_g", "eta_s"}
    low, high = beats[-1]["emissions_range_g"]
    assert 0 < beats[-1]["fraction"] <= 1 and low <= beats[-1]["emissions_g"] <= high
    row = [r for r in ledger_module.read_cells(ledger_path) if r["name"] == "fit"][0]
    assert row["status"] == "ok"


def test_automatically_recorded_cells_heartbeat_their_prediction(kernel, ledger_path):
    before = len(heartbeat_predictions(ledger_path, kernel.kernel_id))
    run = kernel.execute(loop("tqdm(range({n}))", 50), timeout=120)
    assert run.reply["content"]["status"] == "ok"
    beats = heartbeat_predictions(ledger_path, kernel.kernel_id)[before:]
    assert beats and all(0 < b["fraction"] <= 1 for b in beats)
    assert all(b["eta_s"] >= 0 for b in beats)


@pytest.mark.parametrize("module", ["tqdm.notebook", "tqdm.auto"])
def test_notebook_and_auto_bars_are_followed(kernel, module):
    run = kernel.execute(
        f"%%carbon --name {module}\nfrom {module} import tqdm as _bar\n"
        + loop("_bar(range({n}))", 30),
        timeout=120,
    )
    assert run.reply["content"]["status"] == "ok", run.text
    assert predictions_in(panel_values(run))
    # tqdm.notebook draws its own widget, as it would without carbon_magic.
    widgets = [
        m
        for m in run.of_type("display_data")
        if "application/vnd.jupyter.widget-view+json" in m["content"]["data"]
    ]
    assert len(widgets) >= 2  # the panel and the bar


def test_a_bar_without_total_predicts_nothing(kernel):
    code = "def _gen():\n    yield from range(30)\n" + loop("tqdm(_gen())", 30)
    run = kernel.execute("%%carbon --name stream\n" + code, timeout=120)
    assert run.reply["content"]["status"] == "ok" and not run.error
    values = panel_values(run)
    assert len(values) >= 2 and not predictions_in(values)
    assert "30it" in stderr(run)


def test_nested_bars_follow_the_outer_bar(kernel):
    code = (
        "import time\n"
        "for _epoch in tqdm(range(3), desc='epochs'):\n"
        "    for _b in tqdm(range(15), desc='batches', leave=False):\n" + busy(0.1, 8)
    )
    run = kernel.execute("%%carbon --name nested\n" + code, timeout=120)
    assert run.reply["content"]["status"] == "ok", run.text
    lines = predictions_in(panel_values(run))
    assert len(lines) >= 3
    done = [int(re.search(r"(\d+)% done", t).group(1)) for t in lines]
    # Refined by the inner bar: steps between the outer's thirds, and never backwards
    # when the inner bar starts again.
    assert done == sorted(done), done
    assert any(d not in (0, 33, 67, 100) for d in done), done
    assert "3/3" in stderr(run)


def joules_per_second(kernel, seconds: float) -> float:
    """The kernel's facility energy per second of busy work, measured now (J/s)."""
    run = kernel.execute("%%carbon --quiet --name calibrate\nimport time\n" + busy(seconds))
    assert run.reply["content"]["status"] == "ok"
    return float(kernel.execute("_m = %carbon last\n_m.energy_kwh * 3.6e6 / _m.duration_s").result)


def test_predicted_stop_before_the_budget_is_spent(kernel, ledger_path):
    # The loop would run 60 s; the budget is what about 15 s of it uses. Even the low end
    # of the prediction (energy's range here is about -40 %) is over it from 10 % done.
    budget_j = joules_per_second(kernel, 3) * 15
    budget = f"{budget_j:.6g}J"
    run = kernel.execute(
        f"%%carbon --name capped --budget {budget} --on-exceed stop --predict\n"
        + loop("tqdm(range({n}))", 600),
        timeout=120,
    )
    assert run.error["ename"] == "BudgetExceeded", run.text
    assert "predicted to be exceeded" in run.error["evalue"]
    row = [r for r in ledger_module.read_cells(ledger_path) if r["name"] == "capped"][0]
    assert row["status"] == "stopped by budget (predicted)"
    assert row["budget"] == budget
    assert row["energy_kwh"] * 3.6e6 < budget_j  # stopped before the budget was spent
    assert row["duration_s"] < 15
    final = run.of_type("update_display_data")[-1]["content"]["data"]["text/html"]
    assert "stopped by budget (predicted)" in final and "cm-prediction" in final
    # The kernel is fine afterwards.
    assert kernel.execute("1 + 1").result == "2"


def test_gram_budget_stops_on_the_central_prediction(kernel, ledger_path):
    # The loop would cost twice its budget. The measured figures' own range (the grid
    # intensity's and the CPU model's) is wide, but the spent and the predicted share it:
    # the cell stops on the prediction, long before the budget is spent.
    run = kernel.execute("%%carbon --quiet --name calibrate\nimport time\n" + busy(3))
    assert run.reply["content"]["status"] == "ok"
    grams_per_s = float(kernel.execute("_m = %carbon last\n_m.emissions_g / _m.duration_s").result)
    budget_g = grams_per_s * 30
    budget = f"{budget_g:.6g}g"
    run = kernel.execute(
        f"%%carbon --name capped-g --budget {budget} --on-exceed stop --predict\n"
        + loop("tqdm(range({n}))", 600),
        timeout=120,
    )
    assert run.error and run.error["ename"] == "BudgetExceeded", run.text
    row = [r for r in ledger_module.read_cells(ledger_path) if r["name"] == "capped-g"][0]
    assert row["status"] == "stopped by budget (predicted)", row["budget"]
    assert row["emissions_g"] < 0.8 * budget_g
    assert row["duration_s"] < 24
    # The panel shows the prediction's own range and, apart, the measurement's.
    final = run.of_type("update_display_data")[-1]["content"]["data"]["text/html"]
    assert "at this pace; measured" in final


def test_predicted_warning_is_given_once(kernel):
    # The cell says it starts at 10 % and reaches 20 % after 4 s, where it stops: the
    # predicted total, over 30 s of this work, is far over a budget of 10 s of it, which
    # the 4 s are well under (the measured rate varies with the machine's load).
    budget_j = joules_per_second(kernel, 2) * 10
    run = kernel.execute(
        f"%%carbon --name warned --budget {budget_j:.6g}J --predict\n"
        "import time, carbon_magic\nfor _i in range(40):\n"
        "    carbon_magic.progress(0.1 + (_i + 1) / 400)\n" + busy(0.1, 4),
        timeout=120,
    )
    assert run.reply["content"]["status"] == "ok"
    notes = [v for v in panel_values(run) if "budget predicted to be exceeded" in v]
    assert notes, "the panel never warned on the prediction"
    printed = [
        m["content"]["text"] for m in run.of_type("stream") if m["content"]["name"] == "stdout"
    ]
    warnings = [text for text in printed if "carbon budget" in text]
    assert len(warnings) == 1 and "predicted to be exceeded" in warnings[0], printed


def test_options_and_bad_progress_are_refused_clearly(kernel):
    run = kernel.execute("%%carbon --predict\n1")
    assert "--predict acts on a budget" in run.text
    bad = kernel.execute("import carbon_magic\ncarbon_magic.progress(1.7)")
    assert bad.error["ename"] == "ValueError"
    assert "a number from 0 to 1" in bad.error["evalue"] and "1.7" in bad.error["evalue"]


def test_faults_in_the_prediction_never_break_a_cell(kernel):
    kernel.execute(
        "import carbon_magic.kernel.prediction as _prediction\n"
        "_saved = _prediction.Predictor.observe\n"
        "def _boom(*args, **kwargs):\n"
        "    raise RuntimeError('prediction broke')\n"
        "_prediction.Predictor.observe = _boom"
    )
    try:
        run = kernel.execute("%%carbon --name fragile\n" + loop("tqdm(range({n}))", 20) + "'done'")
        assert run.result == "'done'" and not run.error
        auto = kernel.execute(loop("tqdm(range({n}))", 20) + "'auto done'")
        assert auto.result == "'auto done'" and not auto.error
        assert "prediction broke" in kernel.execute("%carbon status").text
        # The panel kept updating without the prediction.
        assert len(panel_values(run)) >= 2
    finally:
        kernel.execute("_prediction.Predictor.observe = _saved")


def test_without_tqdm_no_prediction_and_progress_still_works(ledger_path):
    k = Kernel(ledger_path, {"CARBON_MAGIC_INTERVAL": "0.5"})
    try:
        k.execute(
            "import sys\nfor _name in list(sys.modules):\n"
            "    if _name.startswith('tqdm'):\n        del sys.modules[_name]\n"
            "sys.modules['tqdm'] = None"
        )
        assert k.execute("import tqdm").error["ename"] in ("ImportError", "ModuleNotFoundError")
        k.execute("%load_ext carbon_magic")
        plain = k.execute(
            "%%carbon --name plain --budget 1kg --on-exceed stop --predict\n"
            "import time\nfor _i in range(30):\n" + busy(0.1, 4),
            timeout=120,
        )
        assert plain.reply["content"]["status"] == "ok" and not plain.error
        assert not predictions_in(panel_values(plain))
        manual = k.execute(
            "%%carbon --name manual\nimport time, carbon_magic\nfor _i in range(30):\n"
            "    carbon_magic.progress(_i / 30)\n" + busy(0.1, 4),
            timeout=120,
        )
        assert manual.reply["content"]["status"] == "ok"
        lines = predictions_in(panel_values(manual))
        assert lines and all("(progress())" in line for line in lines)
    finally:
        k.shutdown()
