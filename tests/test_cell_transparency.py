"""A %%carbon cell runs as the plain cell would, in IPython's own test shell: output,
display, history, tracebacks, completeness; unloading leaves the shell as it was; a cell
is recorded once however cells nest."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

from carbon_magic import ledger as ledger_module

from .ipython_shell import run_cells, without_summary

FAILING = "def f():\n    a = 1\n    b = 2\n    return 1 / 0\n\nx = 5\nf()\n"


@pytest.fixture
def ledger(tmp_path):
    return str(tmp_path / "ledger.sqlite3")


def _frames(trace: str) -> list[str]:
    return re.findall(r"^Cell In\[\d+\], line \d+.*$", trace, flags=re.M)


def test_a_failing_cells_traceback_is_the_plain_cells(ledger):
    load, plain, magic, succeeded = run_cells(
        [
            "%load_ext carbon_magic",
            FAILING,
            "%%carbon --quiet\n" + FAILING,
            ("check", "ip.last_execution_succeeded"),
        ],
        ledger,
    )
    assert succeeded["check"] == "False"
    assert plain["error"] == magic["error"] == "ZeroDivisionError"
    shown = without_summary(magic["stdout"])
    # Its own number, its own lines (the %%carbon line is line 1), the same frames.
    assert _frames(plain["stdout"]) == ["Cell In[2], line 7", "Cell In[2], line 4, in f()"]
    assert _frames(shown) == ["Cell In[3], line 8", "Cell In[3], line 5, in f()"]
    assert "skipping hidden" not in shown and "run_cell_magic" not in shown
    # Context inside the function is the function's, as for the plain cell.
    function_part = shown.split("in f()")[1]
    assert "x = 5" not in function_part and "b = 2" in function_part
    assert shown.replace("In[3]", "In[2]").count("\n") == plain["stdout"].count("\n")


def test_values_follow_ast_node_interactivity(ledger):
    cells = ["%load_ext carbon_magic"]
    for setting, body in [("all", "1\n2"), ("last_expr_or_assign", "y = 6 * 7")]:
        cells += [
            f"%config InteractiveShell.ast_node_interactivity = '{setting}'",
            body,
            "%%carbon --quiet\n" + body,
        ]
    cells += [("check", "(_, Out)")]
    out = run_cells(cells, ledger)
    for plain, magic in [(out[2], out[3]), (out[5], out[6])]:
        count = magic["count"]
        expected = plain["stdout"].replace(f"Out[{plain['count']}]", f"Out[{count}]")
        assert without_summary(magic["stdout"]) == expected != ""
        assert magic["result"] == plain["result"]
    assert out[-1]["check"] == "(42, {3: 2, 4: 2, 6: 42, 7: 42})"


def test_history_holds_the_cell_magic_call(ledger):
    cells = [
        "%load_ext carbon_magic",
        "%%carbon --quiet\nimport asyncio\nawait asyncio.sleep(0.05)\n'awaited'",
        "%%carbon --quiet\nx = (1,\n",
        "%%time\nx = (1,\n",
        ("check", "ip.user_ns['In'][2:]"),
        ("check", "_"),
    ]
    out = run_cells(cells, ledger)
    assert out[1]["result"] == "'awaited'" and out[1]["error"] is None
    assert out[2]["error"] == "SyntaxError"
    history = eval(out[4]["check"])
    assert history[0] == (
        "get_ipython().run_cell_magic('carbon', '--quiet', "
        "\"import asyncio\\nawait asyncio.sleep(0.05)\\n'awaited'\\n\")"
    )
    assert history[1] == "get_ipython().run_cell_magic('carbon', '--quiet', 'x = (1,\\n')"
    assert history[2].startswith("get_ipython().run_cell_magic('time'")
    assert out[5]["check"] == "'awaited'"


@pytest.mark.parametrize(
    "body",
    [
        "import asyncio\nawait asyncio.sleep(0)\n",
        "x = (1,\n",
        "x = 1\nif x:\n",
        "x = 1\n",
        "x = 1\n\n",
    ],
)
def test_completeness_waits_for_a_blank_line_as_for_any_cell_magic(ledger, body):
    check = "ip.input_transformer_manager.check_complete({!r})"
    out = run_cells(
        [
            "%load_ext carbon_magic",
            ("check", check.format("%%carbon\n" + body)),
            ("check", check.format("%%time\n" + body)),
        ],
        ledger,
    )
    assert out[1]["check"] == out[2]["check"]


def test_unloading_leaves_the_shell_as_it_was(ledger):
    state = (
        "('carbon' in ip.magics_manager.magics['cell'], 'carbon' in ip.magics_manager.magics"
        "['line'], [k for k in ip.magics_manager.registry if 'Carbon' in k],"
        " len(ip.ast_transformers), len(ip.input_transformers_cleanup),"
        " 'should_run_async' in vars(ip), __import__('warnings').showwarning,"
        " [c for c in ip.configurables if 'Carbon' in type(c).__name__],"
        " len(ip.events.callbacks['pre_run_cell']), len(ip.events.callbacks['post_run_cell']),"
        " __import__('logging').getLogger('carbon_magic').handlers)"
    )
    tracker = "__import__('carbon_magic').get_tracker().running"
    out = run_cells(
        [
            ("check", state),
            "%load_ext carbon_magic",
            "%%carbon --quiet\nimport asyncio\nawait asyncio.sleep(0)",
            "%unload_ext carbon_magic",
            ("check", state),
            "%%carbon --quiet\n1",
            "%carbon status",
            ("check", tracker),
        ],
        ledger,
    )
    assert out[4]["check"] == out[0]["check"]
    assert out[5]["error"] == "UsageError" and out[6]["error"] == "UsageError"
    assert out[7]["check"] == "False"


def test_a_cell_that_runs_cells_is_recorded_once_as_itself(ledger):
    windows = "__import__('carbon_magic').get_tracker().open_windows"
    out = run_cells(
        [
            "%load_ext carbon_magic",
            "%%capture captured\nx = 1\nprint('inside')",
            "get_ipython().run_cell('y = 2')\nz = 3",
            "%%capture\n%%carbon --quiet --name captured-magic\nsum(range(10))",
            "%%carbon --quiet --name outer\nget_ipython().run_cell('w = 4')",
            ("check", windows),
        ],
        ledger,
    )
    assert all(o.get("error") is None for o in out)
    assert out[-1]["check"] == "0"
    rows = ledger_module.read_cells(ledger)
    assert [(r["source"], r["execution_count"]) for r in rows if r["via"] == "auto"] == [
        ("%%capture captured", 2),
        ("get_ipython().run_cell('y = 2')", 3),
    ]
    named = [(r["name"], r["execution_count"]) for r in rows if r["via"] == "magic"]
    assert named == [("captured-magic", 4), ("outer", 5)]
    assert not [r for r in rows if r["source"] in ("x = 1", "y = 2", "w = 4")]


def test_timeit_around_carbon_is_one_record(ledger):
    out = run_cells(
        [
            "%load_ext carbon_magic",
            "%%timeit -n 20 -r 3\n%%carbon --quiet --name looped\nsum(range(1000))",
        ],
        ledger,
    )
    assert out[1]["error"] is None
    rows = [r for r in ledger_module.read_cells(ledger) if r["name"] == "looped"]
    assert len(rows) == 1 and rows[0]["execution_count"] == 2 and rows[0]["via"] == "magic"


def test_the_tracker_thread_is_not_running_while_the_process_forks(tmp_path):
    script = textwrap.dedent(
        """
        import os, threading, warnings
        warnings.simplefilter("error", DeprecationWarning)  # Python >= 3.12 warns on fork
        seen = []
        os.register_at_fork(before=lambda: seen.append(sorted(t.name for t in threading.enumerate())))
        import carbon_magic
        tracker = carbon_magic.get_tracker().start()
        with carbon_magic.measure("forking", record=False) as m:
            pid = os.fork()
            if pid == 0:
                alone = not carbon_magic.get_tracker().running and threading.active_count() == 1
                os._exit(0 if alone else 3)
            _, status = os.waitpid(pid, 0)
        print(seen, os.waitstatus_to_exitcode(status), tracker.running,
              [t.name for t in threading.enumerate()], m.duration_s > 0)
        """
    )
    env = {**os.environ, "CARBON_MAGIC_LEDGER": str(tmp_path / "l.sqlite3")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == (
        "[['MainThread']] 0 True ['MainThread', 'carbon_magic-tracker'] True".split()
    )


def test_a_budget_stop_shows_as_one_line_naming_the_budget(ledger):
    stop = "%%carbon --quiet --budget 0.01J --on-exceed stop\n"
    out = run_cells(
        [
            "%load_ext carbon_magic",
            stop + "import time\ndef wait():\n    time.sleep(20)\n\nwait()",
            stop + "import asyncio\nawait asyncio.sleep(20)",
            "6 * 7",
        ],
        ledger,
        {"CARBON_MAGIC_INTERVAL": "0.2"},
    )
    # A stop the user asked for is one line saying why, not a traceback.
    assert _frames(without_summary(out[1]["stdout"])) == []
    for run in out[1:3]:
        shown = without_summary(run["stdout"])
        assert run["error"] == "BudgetExceeded", run
        assert "BudgetExceeded: carbon budget" in shown and "exceeded; cell stopped" in shown
        assert "skipping hidden" not in shown and "interrupt.py" not in shown
        assert "CancelledError" not in shown
    assert out[3]["result"] == "42"
    statuses = [r["status"] for r in ledger_module.read_cells(ledger) if r["via"] == "magic"]
    assert statuses == ["stopped by budget", "stopped by budget"]
