"""The Grafana dashboard's queries, run by a real Prometheus over two real Jupyter servers.

Two JupyterHub-shaped single-user servers (alice's default server ``/user/alice/`` with
token-authenticated metrics, bob's named server ``/user/bob/lab/`` with
``metrics_allow_unauthenticated``), each with its own ledger and real kernels that
recorded cells; bob's ledger also holds a session that ran across last midnight. A real Prometheus scrapes them with the
scrape configurations of ``deploy/prometheus/`` (only targets, credentials and the
interval changed). One of bob's kernels is frozen (SIGSTOP) until its heartbeat is
stale; then every kernel is frozen, so the ledgers stop changing, and every PromQL
query of ``deploy/grafana/carbon_magic.json`` must return the figures computed here
straight from the ledgers' tables.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
import urllib.error
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from carbon_magic.ledger import Ledger

from .jupyter_servers import JupyterServer
from .prometheus_server import Prometheus, Sample, find_binary

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana" / "carbon_magic.json"
SCRAPE_TOKEN = REPO / "deploy" / "prometheus" / "jupyterhub-token.yml"
SCRAPE_OPEN = REPO / "deploy" / "prometheus" / "jupyterhub-unauthenticated.yml"

# Heartbeats come every 2 s while a cell runs (the trackers' minimum with a 1 s
# interval), and each declares when the next is due (30 s while idle); a kernel is stale
# after 5 such periods: 10 s while busy, long enough for a loaded machine, short for a test.
CARBON_CONFIG = {"heartbeat_period_s": 2.0, "stale_after_beats": 5.0}
STALE_AFTER_S = 10.0  # a kernel frozen while a cell runs
SCRAPE_INTERVAL = "1s"
RANGE = "1h"  # $__range: the whole test is inside it
COMPONENTS = ("cpu", "gpu", "ram")

SPIN = "sum(i * i for i in range({n}))"
SVD = "import numpy as np\nfloat(np.linalg.svd(np.random.rand({n}, {n}))[1].sum())"
# user -> notebook -> cells run after %load_ext; different work, so different figures.
NOTEBOOKS: dict[str, dict[str, list[str]]] = {
    "alice": {
        "analysis.ipynb": [SVD.format(n=200), "x = 1", SVD.format(n=250)],
        "train.ipynb": [SPIN.format(n=2_000_000), SPIN.format(n=1_000_000)],
    },
    "bob": {
        "report.ipynb": ["y = 2", SPIN.format(n=300_000)],
        "stuck.ipynb": [SPIN.format(n=600_000)],
    },
}
BOB_SERVER_NAME = "lab"  # bob's is a named server: /user/bob/lab/
STUCK = ("bob", "stuck.ipynb")  # frozen first: the one stale kernel
BUSY = ("alice", "train.ipynb")  # busy when frozen: the fleet draws CPU power
# Bounded, so that nothing spins on if the test dies before stopping the kernel.
SPIN_FOR = "import time\nend = time.time() + {s}\nwhile time.time() < end:\n    pass"


# --- expected figures, straight from a ledger's tables ----------------------------------


@dataclass
class Figures:
    """Running totals: facility energy (kWh), operational and embodied emissions (g)."""

    energy_kwh: float = 0.0
    emissions_g: float = 0.0
    embodied_g: float = 0.0

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.energy_kwh + other.energy_kwh,
            self.emissions_g + other.emissions_g,
            self.embodied_g + other.embodied_g,
        )

    def __sub__(self, other: Figures) -> Figures:
        return Figures(
            self.energy_kwh - other.energy_kwh,
            self.emissions_g - other.emissions_g,
            self.embodied_g - other.embodied_g,
        )


@dataclass
class KernelRecord:
    """What a ledger holds for one kernel id: totals over its sessions, the latest beat."""

    kernel_id: str
    pid: int
    totals: Figures = field(default_factory=Figures)
    cells: Figures = field(default_factory=Figures)  # sums of its cells: the counters
    today: Figures = field(default_factory=Figures)
    heartbeat_at: float = 0.0
    power_w: dict[str, float] = field(default_factory=dict)
    running: bool = False
    n_cells: int = 0
    cell_running: bool = False  # the latest heartbeat names a running cell
    next_beat_s: float | None = None  # what the latest heartbeat declared

    def stale_after_s(self) -> float:
        """When the server calls this kernel stale (its rule, with this test's config)."""
        period = max(1.0, CARBON_CONFIG["heartbeat_period_s"], self.next_beat_s or 0.0)
        return CARBON_CONFIG["stale_after_beats"] * period


@dataclass
class LedgerRecord:
    totals: Figures
    today: Figures
    kernels: dict[str, KernelRecord]
    cells: Figures = field(default_factory=Figures)  # sums of every cell: the counters


def read_ledger(path: Path, day_start: float) -> LedgerRecord:
    """Every session's totals: its latest heartbeat's running totals (the sum of its cells
    when it never beat); today's: the growth since its last heartbeat before ``day_start``;
    and the sums of its cells (what the ``*_total`` counters count)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        sessions = connection.execute(
            "SELECT id, kernel_id, pid, started_at, ended_at FROM sessions ORDER BY started_at, id"
        ).fetchall()
        totals, today, all_cells, kernels = Figures(), Figures(), Figures(), {}
        for session_id, kernel_id, pid, _started, ended_at in sessions:
            beats = connection.execute(
                "SELECT at, cpu_w, gpu_w, ram_w, energy_kwh, emissions_g, embodied_g, "
                "tracker_state, running_cell, next_beat_s FROM heartbeats "
                "WHERE session_id = ? ORDER BY at",
                (session_id,),
            ).fetchall()
            cells = connection.execute(
                "SELECT COUNT(*), TOTAL(energy_kwh), TOTAL(emissions_g), TOTAL(embodied_g) "
                "FROM cells WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            if beats:
                last = beats[-1]
                session_total = Figures(*last[4:7])
                before = [beat for beat in beats if beat[0] < day_start]
                baseline = Figures(*before[-1][4:7]) if before else Figures()
                session_today = session_total - baseline if last[0] >= day_start else Figures()
            else:
                last = None
                session_total = Figures(*cells[1:])
                today_cells = connection.execute(
                    "SELECT TOTAL(energy_kwh), TOTAL(emissions_g), TOTAL(embodied_g) "
                    "FROM cells WHERE session_id = ? AND started_at >= ?",
                    (session_id, day_start),
                ).fetchone()
                session_today = Figures(*today_cells)
            totals += session_total
            today += session_today
            all_cells += Figures(*cells[1:])
            if not kernel_id:
                continue
            record = kernels.setdefault(kernel_id, KernelRecord(kernel_id, pid))
            record.totals += session_total
            record.cells += Figures(*cells[1:])
            record.today += session_today
            record.n_cells += cells[0]
            record.pid = pid  # sessions come oldest first: the latest one wins
            record.running = ended_at is None and last is not None and last[7] == "running"
            record.heartbeat_at = last[0] if last else 0.0
            record.power_w = dict(zip(COMPONENTS, last[1:4], strict=True)) if last else {}
            record.cell_running = last is not None and last[8] is not None
            record.next_beat_s = last[9] if last else None
        return LedgerRecord(totals, today, kernels, all_cells)
    finally:
        connection.close()


# --- the dashboard ------------------------------------------------------------------------


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_targets(dashboard: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(panel title, refId) -> PromQL of every query target, rows' panels included."""
    found: dict[tuple[str, str], str] = {}
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            key = (panel["title"], target["refId"])
            assert key not in found, f"two queries named {key}"
            found[key] = target["expr"]
    return found


def variable(dashboard: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [v for v in dashboard["templating"]["list"] if v["name"] == name]
    return found


def resolve(expr: str) -> str:
    """The query as Grafana sends it with "All" users and a range covering the test."""
    resolved = expr.replace("$__range", RANGE).replace("$user", ".*")
    assert "$" not in resolved, f"unknown dashboard variable in {expr!r}"
    return resolved


def as_map(samples: list[Sample]) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples keyed by their sorted label pairs (labels produced by the query only)."""
    result = {}
    for labels, value in samples:
        key = tuple(sorted(labels.items()))
        assert key not in result, f"two samples with labels {key}"
        result[key] = value
    return result


def keyed(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def prometheus_binary() -> str:
    binary = find_binary("prometheus")
    if binary is None:
        reason = (
            "Debian's prometheus is not installed: run scripts/ensure_prometheus.sh as root "
            "(make test does) or apt-get install prometheus"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, JupyterServer]]:
    """alice's default server (metrics need the token) and bob's named server (metrics
    open), both ready."""
    started = {
        "alice": JupyterServer("alice", tmp_path / "alice", CARBON_CONFIG),
        "bob": JupyterServer(
            "bob",
            tmp_path / "bob",
            {**CARBON_CONFIG, "metrics_allow_unauthenticated": True},
            server_name=BOB_SERVER_NAME,
        ),
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            # A kernel still stopped would hold up the server's shutdown.
            for record in _ledger_kernels(server):
                _signal(record.pid, signal.SIGCONT)
            server.stop()


def _ledger_kernels(server: JupyterServer) -> list[KernelRecord]:
    if not server.ledger.exists():
        return []
    return list(read_ledger(server.ledger, 0.0).kernels.values())


def _signal(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def freeze(pid: int) -> None:
    """Stop the process ``pid`` (as a hung kernel) and wait until it is stopped."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            return
        time.sleep(0.01)
    raise TimeoutError(f"process {pid} did not stop")


def wait_for(what: str, check, timeout_s: float = 60.0, every_s: float = 0.25) -> Any:
    """Poll ``check()`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")


def record_last_nights_session(path: Path) -> None:
    """A kernel (long gone from the server) that ran across last midnight UTC, written
    through the package's ledger writer: half of its figures belong to yesterday, so
    today's figures differ from all-time ones. Its heartbeats are under a day old, so
    the kernels' housekeeping keeps them."""
    now = time.time()
    midnight = now - now % 86400.0
    session_uuid = uuid.uuid4().hex
    ledger = Ledger(path)
    try:
        ledger.open_session(
            session_uuid=session_uuid,
            kernel_id=str(uuid.uuid4()),
            notebook_path="/home/bob/overnight.ipynb",
            host="127.0.0.1",
            pid=1,
            started_at=midnight - 120.0,
            interval_s=1.0,
            mode="process",
            hardware={"cpu_model": "unknown", "n_cpus": 1, "ram_gb": 1, "gpus": []},
            methods={"cpu": "modelled", "gpu": "measured", "ram": "assumed"},
            settings={"country": "FR"},
            intensity_source="static table: FR 2023",
            intensity_g_per_kwh=56.0,
        )
        for at, energy_kwh in ((midnight - 60.0, 2e-7), (max(midnight + 1.0, now - 30.0), 5e-7)):
            ledger.heartbeat(
                session_uuid,
                at=at,
                watts={"cpu": 3.0, "gpu": 0.0, "ram": 0.5},
                energy_kwh=energy_kwh,
                emissions_g=energy_kwh * 56.0,
                emissions_range_g=(energy_kwh * 40.0, energy_kwh * 80.0),
                embodied_g=energy_kwh * 10.0,
                intensity_g_per_kwh=56.0,
                intensity_source="static table: FR 2023",
                tracker_state="running",
                running_cell=None,
                running_cell_started_at=None,
            )
        ledger.update_session(session_uuid, tracker_state="stopped", ended_at=now - 30.0)
    finally:
        ledger.close()


def wait_past_midnight_if_close(margin_s: float = 300.0) -> None:
    """The per-day figures are checked for one UTC day: do not straddle midnight."""
    now = time.time()
    to_midnight = 86400.0 - now % 86400.0
    if to_midnight < margin_s:
        time.sleep(to_midnight + 1.0)


def scrape_config(servers: dict[str, JupyterServer], token_file: Path) -> dict[str, Any]:
    """deploy/prometheus's two jobs, pointed at the test servers, scraping every second:
    the token job at alice's server (whose metrics need it), the open one at bob's."""
    jobs = []
    for example, server, name in (
        (SCRAPE_TOKEN, servers["alice"], "carbon_magic_token"),
        (SCRAPE_OPEN, servers["bob"], "carbon_magic_open"),
    ):
        (job,) = yaml.safe_load(example.read_text())["scrape_configs"]
        job["job_name"] = name
        job["scheme"] = "http"
        job["static_configs"] = [
            {
                "targets": [f"127.0.0.1:{server.port}"],
                "labels": {"__metrics_path__": server.metrics_path},
            }
        ]
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token_file)
        jobs.append(job)
    assert "authorization" in jobs[0] and "authorization" not in jobs[1]
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL},
        "scrape_configs": jobs,
    }


# --- the tests ----------------------------------------------------------------------------


def test_dashboard_is_one_grafana_model_over_a_chosen_prometheus():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"]
    assert variable(dashboard, "datasource")["type"] == "datasource"
    assert variable(dashboard, "datasource")["query"] == "prometheus"
    user = variable(dashboard, "user")
    assert user["includeAll"] and user["allValue"] == ".*"
    panels = list(all_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            # Every query can be narrowed to the chosen users.
            assert '{user=~"$user"}' in target["expr"], (panel["title"], target["expr"])


def test_example_scrape_configs_are_valid_for_prometheus(prometheus_binary):
    promtool = find_binary("promtool")
    assert promtool, "promtool comes with Debian's prometheus package"
    for example in (SCRAPE_TOKEN, SCRAPE_OPEN):
        # --syntax-only: the example's token file does not exist on this machine.
        checked = subprocess.run(
            [promtool, "check", "config", "--syntax-only", str(example)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_dashboard_query_returns_the_ledgers_figures(prometheus_binary, servers, tmp_path):
    wait_past_midnight_if_close()
    dashboard = json.loads(DASHBOARD.read_text())
    record_last_nights_session(servers["bob"].ledger)

    # Who may read the metrics: alice's need her token, bob's are open.
    with pytest.raises(urllib.error.HTTPError) as refused:
        servers["alice"].request("GET", "carbon-magic/metrics", token=None)
    assert refused.value.code == 403
    assert servers["bob"].request("GET", "carbon-magic/metrics", token=None)[0] == 200

    # Real kernels, started and driven through the servers as JupyterLab does.
    kernel_ids: dict[tuple[str, str], str] = {}
    for user, notebooks in NOTEBOOKS.items():
        for notebook in notebooks:
            kernel_ids[user, notebook] = servers[user].open_notebook(notebook)
    for (user, notebook), kernel_id in kernel_ids.items():
        for code in ["%load_ext carbon_magic", *NOTEBOOKS[user][notebook]]:
            result = servers[user].execute(kernel_id, code)
            assert result.status == "ok", (user, notebook, code, result.error)

    token_file = tmp_path / "jupyterhub-token"
    token_file.write_text(servers["alice"].token + "\n")
    token_file.chmod(0o600)
    prometheus = Prometheus(prometheus_binary, scrape_config(servers, token_file), tmp_path)
    try:
        prometheus.wait_ready()
        check_queries(prometheus, servers, kernel_ids, dashboard)
    finally:
        prometheus.stop()


def check_queries(
    prometheus: Prometheus,
    servers: dict[str, JupyterServer],
    kernel_ids: dict[tuple[str, str], str],
    dashboard: dict[str, Any],
) -> None:
    """Hang one kernel until stale, freeze the rest, then run the dashboard's queries."""

    def targets_up() -> bool:
        targets = prometheus.targets()
        return len(targets) == 2 and all(target["health"] == "up" for target in targets)

    try:
        wait_for("both servers scraped", targets_up)
    except AssertionError:
        raise AssertionError(f"scrape targets: {prometheus.targets()}") from None
    # The examples' relabelling names the user, and the server for a named server.
    labels = {
        target["labels"]["job"]: {k: v for k, v in target["labels"].items() if k != "instance"}
        for target in prometheus.targets()
    }
    assert labels == {
        "carbon_magic_token": {"job": "carbon_magic_token", "user": "alice"},
        "carbon_magic_open": {
            "job": "carbon_magic_open",
            "user": "bob",
            "server_name": BOB_SERVER_NAME,
        },
    }
    # The dashboard's user variable, as Grafana's label_values(metric, label) asks for it.
    definition = variable(dashboard, "user")["query"]["query"]
    metric, label = re.fullmatch(r"label_values\((\w+), *(\w+)\)", definition).groups()
    assert sorted(prometheus.label_values(label, metric)) == ["alice", "bob"]

    # A kernel hung in a cell: its tracker stops beating while the server still runs it.
    stuck_id = kernel_ids[STUCK]
    stuck_server = servers[STUCK[0]]
    connection, _ = stuck_server.submit(stuck_id, SPIN_FOR.format(s=120))
    try:
        stuck = wait_for(
            "a heartbeat of the stuck kernel's running cell",
            lambda: (
                (record := read_ledger(stuck_server.ledger, 0.0).kernels[stuck_id]).cell_running
                and record
            ),
            timeout_s=30,
        )
        freeze(stuck.pid)
    finally:
        connection.close()
    wait_for(
        "the frozen kernel to be reported stale",
        lambda: prometheus.query(f'carbon_magic_tracker_live{{kernel_id="{stuck_id}"}} == 0'),
        timeout_s=STALE_AFTER_S + 30,
    )

    # One kernel busy: wait for a heartbeat that shows its CPU power.
    busy_id = kernel_ids[BUSY]
    busy_server = servers[BUSY[0]]
    connection, _ = busy_server.submit(busy_id, SPIN_FOR.format(s=120))
    try:
        wait_for(
            "a heartbeat of the busy kernel with CPU power",
            lambda: read_ledger(busy_server.ledger, 0.0).kernels[busy_id].power_w["cpu"] > 0,
            timeout_s=30,
        )
        # Freeze the others: the ledgers stop changing, the last scrapes hold their figures.
        for (user, _), kernel_id in kernel_ids.items():
            if kernel_id != stuck_id:
                freeze(read_ledger(servers[user].ledger, 0.0).kernels[kernel_id].pid)
    finally:
        connection.close()
    frozen_at = time.time()

    def scraped_since_frozen() -> bool:
        stamps = prometheus.query("timestamp(carbon_magic_ledger_up)")
        return len(stamps) == 2 and all(value > frozen_at + 0.05 for _, value in stamps)

    wait_for("a scrape of both servers after the freeze", scraped_since_frozen, timeout_s=30)
    at = time.time()  # every query is evaluated at this instant

    day_start = at - at % 86400.0
    ledgers = {user: read_ledger(server.ledger, day_start) for user, server in servers.items()}
    kernels = {
        (user, notebook): ledgers[user].kernels[kernel_id]
        for (user, notebook), kernel_id in kernel_ids.items()
    }
    for key, record in kernels.items():
        assert record.n_cells >= len(NOTEBOOKS[key[0]][key[1]]), key
        assert record.totals.energy_kwh > 0 and record.totals.emissions_g > 0, key
    live = {
        key for key, record in kernels.items() if at - record.heartbeat_at < record.stale_after_s()
    }
    assert live == set(kernels) - {STUCK}, (
        "a kernel went stale before the check (machine too slow?): "
        f"{ {key: at - record.heartbeat_at for key, record in kernels.items()} }"
    )
    assert all(kernels[key].running for key in live)
    # Last night's session: part of bob's figures, but only its growth since midnight today.
    assert ledgers["bob"].today.energy_kwh < ledgers["bob"].totals.energy_kwh - 1e-7

    day = datetime.fromtimestamp(at, tz=timezone.utc).date().isoformat()
    expected = expected_results(ledgers, kernels, live, kernel_ids, day)
    stale_age = prometheus.query(
        f'timestamp(carbon_magic_heartbeat_age_seconds{{kernel_id="{stuck_id}"}})', at
    )
    expected["Stale kernels", "A"] = {
        keyed(user=STUCK[0], notebook=STUCK[1], kernel_id=stuck_id): stale_age[0][1]
        - kernels[STUCK].heartbeat_at
    }

    queries = dashboard_targets(dashboard)
    assert set(queries) == set(expected), "every dashboard query needs its expected figures"
    for key, expr in sorted(queries.items()):
        got = as_map(prometheus.query(resolve(expr), at))
        want = expected[key]
        assert set(got) == set(want), (key, expr, got, want)
        tolerance = 0.5 if key[0] == "Stale kernels" else 1e-12
        for labels, value in want.items():
            assert got[labels] == pytest.approx(value, rel=1e-9, abs=tolerance), (key, labels)


def expected_results(
    ledgers: dict[str, LedgerRecord],
    kernels: dict[tuple[str, str], KernelRecord],
    live: set[tuple[str, str]],
    kernel_ids: dict[tuple[str, str], str],
    day: str,
) -> dict[tuple[str, str], dict[tuple[tuple[str, str], ...], float]]:
    """What each dashboard query must return, from the ledgers' figures (``day``: the
    UTC date of the check, whose figures the per-day queries give)."""
    power = dict.fromkeys(COMPONENTS, 0.0)
    for key in live:
        for component in COMPONENTS:
            power[component] += kernels[key].power_w[component]
    assert power["cpu"] > 0
    per_day: dict[str, Figures] = defaultdict(Figures)
    for record in ledgers.values():
        per_day[day] += record.today
    assert per_day[day].energy_kwh > 0

    def per_notebook(attribute: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {
            keyed(user=user, notebook=notebook): getattr(kernels[user, notebook].cells, attribute)
            for user, notebook in kernel_ids
        }

    def per_user(attribute: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {keyed(user=user): getattr(r.cells, attribute) for user, r in ledgers.items()}

    return {
        ("Fleet power now", "A"): {(): sum(power.values())},
        ("Fleet power by component", "A"): {
            keyed(component=name): watts for name, watts in power.items()
        },
        ("Energy per user", "A"): per_user("energy_kwh"),
        ("Emissions per user", "A"): per_user("emissions_g"),
        ("Emissions per user", "B"): per_user("embodied_g"),
        ("Energy and emissions per notebook", "A"): per_notebook("energy_kwh"),
        ("Energy and emissions per notebook", "B"): per_notebook("emissions_g"),
        ("Heaviest notebooks", "A"): per_notebook("emissions_g"),
        ("Energy per day", "A"): {keyed(day=d): f.energy_kwh for d, f in per_day.items()},
        ("Emissions per day", "A"): {keyed(day=d): f.emissions_g for d, f in per_day.items()},
    }
