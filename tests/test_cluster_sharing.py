"""Kernels sharing one cluster's plugins, piece by piece: the scheduler plugin's users on a
real (in-process) Dask scheduler, and a worker agent's trackers per kernel settings."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from distributed import Scheduler
from distributed.protocol.pickle import dumps

from carbon_magic.cluster import dask_plugins as plugins
from carbon_magic.cluster.agent import MAX_TRACKERS, CounterAgent
from carbon_magic.cluster.identity import ProcessIdentity, this_process
from carbon_magic.engine.wake import IDLE_TICK_S

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


def worker_plugin_bytes() -> bytes:
    return dumps(plugins.CarbonWorkerPlugin(ELSEWHERE, SETTINGS))


def on_scheduler(test):
    """Run ``await test(scheduler)`` against a fresh scheduler without workers."""

    async def main() -> None:
        async with Scheduler(dashboard_address=":0", port=0, host="127.0.0.1") as scheduler:
            await test(scheduler)

    asyncio.run(main())


async def join(scheduler, *users: str):
    """Join each user (its client named ``client-<user>``) in turn; the plugin."""
    payload = worker_plugin_bytes()
    for user in users:
        await plugins.join_cluster(scheduler, user, f"client-{user}", payload)
    return scheduler.plugins[plugins.PLUGIN_NAME]


def test_kernels_joining_at_once_share_one_install():
    async def test(scheduler):
        payload = worker_plugin_bytes()
        replies = await asyncio.gather(
            *(plugins.join_cluster(scheduler, f"k{n}", f"c{n}", payload) for n in range(3))
        )
        plugin = scheduler.plugins[plugins.PLUGIN_NAME]
        assert [r["reused"] for r in replies] == [False, True, True]
        assert all(r["replaced"] is None for r in replies)
        assert plugin.active_users() == ["k0", "k1", "k2"]
        assert plugins.PLUGIN_NAME in scheduler.worker_plugins
        # A later join reuses the same plugins: nothing is registered again.
        registered = scheduler.worker_plugins[plugins.PLUGIN_NAME]
        again = await plugins.join_cluster(scheduler, "k3", "c3", worker_plugin_bytes())
        assert again["reused"] and scheduler.plugins[plugins.PLUGIN_NAME] is plugin
        assert scheduler.worker_plugins[plugins.PLUGIN_NAME] is registered

    on_scheduler(test)


def test_the_last_kernel_to_leave_removes_the_plugins():
    async def test(scheduler):
        await join(scheduler, "a", "b")
        leave = scheduler.handlers[plugins.LEAVE_OP]
        assert await leave(user="b") == {"users": 1, "removed": False}
        assert plugins.PLUGIN_NAME in scheduler.plugins
        assert plugins.PLUGIN_NAME in scheduler.worker_plugins
        assert await leave(user="a") == {"users": 0, "removed": True}
        assert plugins.PLUGIN_NAME not in scheduler.plugins
        assert plugins.PLUGIN_NAME not in scheduler.worker_plugins
        assert plugins.READ_OP not in scheduler.handlers
        assert plugins.LEAVE_OP not in scheduler.handlers

    on_scheduler(test)


def test_a_kernel_whose_client_is_gone_no_longer_counts():
    async def test(scheduler):
        plugin = await join(scheduler, "a", "b")
        plugin.remove_client(scheduler, "client-b")  # kernel b died
        assert plugin.active_users() == ["a"]
        plugin.remove_client(scheduler, "client-a")  # a reconnects: it counts again
        plugin.add_client(scheduler, "client-a")
        plugin.remove_client(scheduler, "someone-else")
        assert plugin.active_users() == ["a"]
        assert (await plugin.leave(user="a"))["removed"]

    on_scheduler(test)


def test_a_join_during_the_last_leave_installs_anew_after_it():
    async def test(scheduler):
        old = await join(scheduler, "a")
        removal_done = asyncio.Event()
        removing = scheduler.unregister_worker_plugin

        async def slow_removal(comm, name):
            await asyncio.sleep(0.2)  # the broadcast to the workers takes a while
            try:
                return await removing(comm, name)
            finally:
                removal_done.set()

        scheduler.unregister_worker_plugin = slow_removal
        leaving = asyncio.create_task(old.leave(user="a"))
        await asyncio.sleep(0.05)
        assert old.retiring
        joined = await plugins.join_cluster(scheduler, "b", "client-b", worker_plugin_bytes())
        assert removal_done.is_set()  # the join waited for the removal
        assert (await leaving)["removed"]
        assert joined["reused"] is False and joined["replaced"] is None
        new = scheduler.plugins[plugins.PLUGIN_NAME]
        assert new is not old and new.active_users() == ["b"]
        assert plugins.PLUGIN_NAME in scheduler.worker_plugins
        assert scheduler.handlers[plugins.READ_OP] == new.read

    on_scheduler(test)


@pytest.mark.parametrize("protocol", [None, 3])
def test_plugins_of_another_protocol_are_replaced(protocol):
    class Other(plugins.SchedulerPlugin):
        name = plugins.PLUGIN_NAME

        async def start(self, scheduler):
            scheduler.handlers[plugins.READ_OP] = self.read

        async def read(self, **kwargs):
            return {}

    if protocol is not None:
        Other.protocol = protocol

    async def test(scheduler):
        other = Other()
        await scheduler.register_scheduler_plugin(other, plugins.PLUGIN_NAME, idempotent=False)
        scheduler.worker_plugins[plugins.PLUGIN_NAME] = b"another version's worker plugin"
        joined = await plugins.join_cluster(scheduler, "a", "client-a", worker_plugin_bytes())
        assert joined["reused"] is False and joined["replaced"] == (protocol or 1)
        plugin = scheduler.plugins[plugins.PLUGIN_NAME]
        assert plugin.protocol == plugins.PROTOCOL
        assert scheduler.worker_plugins[plugins.PLUGIN_NAME] != b"another version's worker plugin"
        assert scheduler.handlers[plugins.READ_OP] == plugin.read

    on_scheduler(test)


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
    agent = CounterAgent(ELSEWHERE, SETTINGS)
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
    agent = CounterAgent(ELSEWHERE, SETTINGS)
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


def test_reads_leave_the_workers_tracker_idle(isolated_env):
    """Reads at cell edges open no window: between cells a worker's tracker sleeps its
    idle tick, as a kernel's does."""
    agent = CounterAgent(ELSEWHERE, SETTINGS)
    try:
        for _ in range(3):
            agent.read("machine", ELSEWHERE, SETTINGS)
        [tracker] = agent.trackers()
        time.sleep(0.1)
        assert tracker.next_sleep_s() == tracker.longest_sleep_s() == IDLE_TICK_S
    finally:
        agent.close()


def test_trackers_are_bounded_and_a_kernel_that_counts_the_worker_starts_none(isolated_env):
    here = this_process().to_dict()
    agent = CounterAgent(here, SETTINGS)  # installed by the kernel this process is
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
