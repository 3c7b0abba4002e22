"""Kernels sharing one cluster's plugins, piece by piece: a worker agent's trackers per
kernel settings."""

from __future__ import annotations

import os
import time

import pytest

from carbon_magic.cluster.agent import MAX_TRACKERS, WorkerAgent
from carbon_magic.cluster.identity import ProcessIdentity, this_process

# A kernel on another machine: it never counts this process itself.
ELSEWHERE = ProcessIdentity("elsewhere", "far", 1, 1, ()).to_dict()
SETTINGS = {
    "mode": "machine",
    "interval": 0.5,
    "embodied": True,
    "embodied_server_kg": 1000.0,
    "embodied_gpu_kg": 0.0,
    "lifetime_years": 4.0,
}
SECONDS_PER_YEAR = 365.25 * 24 * 3600


@pytest.fixture
def isolated_env(monkeypatch):
    """No carbon_magic settings from the test's environment; no GPU, modelled CPU."""
    for name in list(os.environ):
        if name.startswith("CARBON_MAGIC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CARBON_MAGIC_GPUS", "none")
    monkeypatch.setenv("CARBON_MAGIC_POWERCAP_ROOT", "/nonexistent/powercap")


def embodied_rate(agent, settings, seconds=0.6):
    """Embodied grams per second between two machine-mode reads for ``settings``."""
    first = agent.read("machine", ELSEWHERE, settings)
    started = time.monotonic()
    time.sleep(seconds)
    second = agent.read("machine", ELSEWHERE, settings)
    elapsed = time.monotonic() - started
    assert first["token"] == second["token"]
    return (second["embodied_g"] - first["embodied_g"]) / elapsed, second["token"]


def test_each_kernel_gets_embodied_figures_for_its_own_settings(isolated_env):
    agent = WorkerAgent(ELSEWHERE, SETTINGS)
    try:
        rate_a, token_a = embodied_rate(agent, SETTINGS)
        heavier = {**SETTINGS, "embodied_server_kg": 3000.0, "lifetime_years": 2.0}
        rate_b, token_b = embodied_rate(agent, heavier)
        off_rate, token_off = embodied_rate(agent, {**SETTINGS, "embodied": False})
        # Another interval or mode does not need a tracker of its own.
        _, token_slow = embodied_rate(agent, {**SETTINGS, "interval": 5.0, "mode": "process"})
        rate_again, token_again = embodied_rate(agent, SETTINGS)
    finally:
        agent.close()
    # Machine mode, no GPU: the server's grams over its lifetime, per second.
    assert rate_a == pytest.approx(1000 * 1000 / (4 * SECONDS_PER_YEAR), rel=0.05)
    assert rate_b == pytest.approx(3000 * 1000 / (2 * SECONDS_PER_YEAR), rel=0.05)
    assert off_rate == 0.0
    assert rate_again == pytest.approx(rate_a, rel=0.05)
    assert token_a == agent.token == token_slow == token_again
    assert len({token_a, token_b, token_off}) == 3


def test_mode_is_chosen_per_read_on_one_tracker(isolated_env):
    agent = WorkerAgent(ELSEWHERE, SETTINGS)
    try:
        machine = agent.read("machine", ELSEWHERE, SETTINGS)
        process = agent.read("process", ELSEWHERE, {**SETTINGS, "mode": "process"})
        time.sleep(0.3)
        machine_2 = agent.read("machine", ELSEWHERE, SETTINGS)
        process_2 = agent.read("process", ELSEWHERE, {**SETTINGS, "mode": "process"})
    finally:
        agent.close()
    assert machine["token"] == process["token"] == machine_2["token"] == process_2["token"]
    machine_j = machine_2["energy_j"]["cpu"] - machine["energy_j"]["cpu"]
    process_j = process_2["energy_j"]["cpu"] - process["energy_j"]["cpu"]
    assert machine_j > 0 and 0 <= process_j < machine_j  # this process: part of the machine


def test_trackers_are_bounded_and_a_kernel_that_counts_the_worker_starts_none(isolated_env):
    here = this_process().to_dict()
    agent = WorkerAgent(here, SETTINGS)  # installed by the kernel this process is
    try:
        assert agent.read("machine", here, SETTINGS) == {
            "identity": agent.identity.to_dict(),
            "token": agent.token,
            "counted": False,
        }
        tokens = [
            agent.read("machine", ELSEWHERE, {**SETTINGS, "embodied_server_kg": 100.0 * n})["token"]
            for n in range(1, MAX_TRACKERS + 2)
        ]
        assert len(set(tokens)) == MAX_TRACKERS + 1
        first_again = agent.read("machine", ELSEWHERE, {**SETTINGS, "embodied_server_kg": 100.0})
        assert first_again["token"] != tokens[0]  # stopped as least recently read
        latest = agent.read(
            "machine", ELSEWHERE, {**SETTINGS, "embodied_server_kg": 100.0 * (MAX_TRACKERS + 1)}
        )
        assert latest["token"] == tokens[-1]
    finally:
        agent.close()
