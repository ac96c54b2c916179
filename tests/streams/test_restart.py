"""A restarted worker is consuming again within seconds; a stopped one leaves its group at once.

Kafka hands a dead worker's partitions on only after its session times out
(``REKAP_SESSION_TIMEOUT_S``). Faust's default, 60 s, froze the venue screen for a
minute after every SIGKILL and restart. The end-to-end tests measure the real
thing: seconds from the restarted process's start to the first new record
counted in Redis. They print the figure (``pytest -s``); the only timed assertion
is a generous bound that the old 60 s default cannot meet.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import redis

from consumers.rebuild import active_members
from producers.simulator.synthetic import generate
from rekap.errors import ConfigError
from rekap.names import Keys
from rekap.registry import load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from streams.app import faust_options
from tests.streams.test_worker import counted
from tests.support.kafka import produce_json
from tests.support.procs import free_port, wait_until
from tests.support.worker import start_worker

REGISTRY = load_registry(DEFAULT_REGISTRY)
#: Generous on a shared, noisy 2-core machine, and still far below the 60 s that Faust's
#: default session timeout costs (the dead member is only dropped when it expires).
RESTART_BOUND_S = 25.0


# ----------------------------------------------------------------- settings --

def test_session_settings_reach_the_kafka_consumer() -> None:
    opts = faust_options(Settings.from_env({"REKAP_SESSION_TIMEOUT_S": "9"}))
    assert opts["broker_session_timeout"] == 9.0
    assert opts["broker_heartbeat_interval"] == 3.0
    # Faust refuses a session longer than its request timeout; the default one is kept.
    assert opts.get("broker_request_timeout", 90.0) >= opts["broker_session_timeout"]
    # Empty means off, and must reach aiokafka as None: with any id, no LeaveGroup.
    assert opts["consumer_group_instance_id"] is None
    static = faust_options(Settings.from_env({"REKAP_GROUP_INSTANCE_ID": "worker-a"}))
    assert static["consumer_group_instance_id"] == "worker-a"


def test_default_session_beats_fausts_minute_and_heartbeats_three_times() -> None:
    s = Settings.from_env({})
    assert 6.0 <= s.session_timeout_s < 10.0  # broker floor <= session < the 10 s requirement
    assert s.heartbeat_interval_s <= s.session_timeout_s / 3
    assert Settings.from_env({"REKAP_SESSION_TIMEOUT_S": "60"}).heartbeat_interval_s == 3.0


@pytest.mark.parametrize(("name", "value"), [
    ("REKAP_SESSION_TIMEOUT_S", "5.9"), ("REKAP_SESSION_TIMEOUT_S", "91"),
    ("REKAP_SESSION_TIMEOUT_S", "soon"), ("REKAP_GROUP_INSTANCE_ID", "worker a"),
    ("REKAP_GROUP_INSTANCE_ID", ".."), ("REKAP_GROUP_INSTANCE_ID", "x" * 250),
])
def test_bad_group_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


# ------------------------------------------------------------- end to end --

def _kill_then_time_restart(settings: Settings, client: redis.Redis, seed: int) -> float:
    """SIGKILL a worker that has counted a first half; seconds from restart to the second half."""
    keys = Keys(settings.redis_prefix)
    values = generate(REGISTRY, 300, seed=seed)
    first = values[:150]
    produce_json(settings, first)
    worker = start_worker(settings)
    try:
        wait_until(lambda: counted(client, keys) == len(first), timeout=60,
                   message="first half counted")
    finally:
        worker.kill()
    # Waiting in the topic before the restart, so the first of them counted marks the
    # moment the new worker consumes (replays of the first half are not counted).
    produce_json(settings, values[150:])
    started = time.monotonic()
    worker = start_worker(settings, wait=False)
    try:
        while counted(client, keys) <= len(first):
            # Not wait_until: a worker that died at start must fail here, with its log.
            if worker.proc.poll() is not None:
                pytest.fail(f"restarted worker exited with {worker.proc.returncode}:\n"
                            f"{worker.log_tail()}")
            if time.monotonic() - started > 90:
                pytest.fail(f"restarted worker counted nothing in 90 s:\n{worker.log_tail()}")
            time.sleep(0.05)
        seconds = time.monotonic() - started
        wait_until(lambda: counted(client, keys) == len(values), timeout=60,
                   message="second half counted")
    finally:
        worker.stop()
    return seconds


@pytest.mark.integration
@pytest.mark.reliability
def test_restart_after_sigkill_consumes_within_seconds(settings: Settings,
                                                       redis_client: redis.Redis) -> None:
    seconds = _kill_then_time_restart(settings, redis_client, seed=61)
    print(f"\nrestart after SIGKILL -> first new record counted: {seconds:.1f} s "
          f"(session timeout {settings.session_timeout_s:g} s)")
    assert seconds < RESTART_BOUND_S, (
        f"restarted worker took {seconds:.1f} s to consume (session timeout "
        f"{settings.session_timeout_s:g} s)")


@pytest.mark.integration
@pytest.mark.reliability
def test_static_member_reclaims_its_partitions_after_sigkill(settings: Settings,
                                                            redis_client: redis.Redis) -> None:
    """Same instance id: the broker swaps the new process in for the dead one, no expiry wait.

    With a minute's session, consuming within the bound proves the reclaim did not wait it out.
    """
    settings = replace(settings, group_instance_id=f"{settings.app_id}-w1", session_timeout_s=60.0)
    seconds = _kill_then_time_restart(settings, redis_client, seed=62)
    print(f"\nstatic member, restart after SIGKILL -> first new record counted: {seconds:.1f} s")
    assert seconds < RESTART_BOUND_S


@pytest.mark.integration
@pytest.mark.reliability
def test_sigterm_leaves_the_group_and_the_other_worker_takes_over(settings: Settings) -> None:
    """A clean stop sends LeaveGroup: its membership ends as it exits, not at session expiry.

    The session is a minute here, so a takeover well inside it can only come from the
    LeaveGroup, and the bound below is not a race on a noisy machine.
    """
    settings = replace(settings, session_timeout_s=60.0)
    a = start_worker(settings)
    b = start_worker(settings, extra_env={"REKAP_WORKER_PORT": str(free_port())})
    try:
        wait_until(lambda: sorted(a.assigned() + b.assigned()) == [0, 1, 2]
                   and a.assigned() and b.assigned(), timeout=60,
                   message="both workers hold partitions")
        assert active_members(settings) == 2
        assert b.stop() == 0
        stopped = time.monotonic()
        assert active_members(settings) == 1, "the stopped worker is still a group member"
        wait_until(lambda: a.assigned() == [0, 1, 2], timeout=30,
                   message="the remaining worker holds every partition")
        seconds = time.monotonic() - stopped
        print(f"\nSIGTERM of one of two workers -> the other holds all partitions: "
              f"{seconds:.1f} s after the exit (session timeout 60 s)")
    finally:
        b.stop()
        a.stop()


@pytest.mark.integration
@pytest.mark.reliability
def test_static_member_stays_in_the_group_after_sigterm(settings: Settings) -> None:
    """The documented trade-off of REKAP_GROUP_INSTANCE_ID: no LeaveGroup on a clean stop."""
    # A minute's session, so the member is still there when asked, however slow the exit.
    settings = replace(settings, group_instance_id=f"{settings.app_id}-w1", session_timeout_s=60.0)
    worker = start_worker(settings)
    try:
        assert active_members(settings) == 1
    finally:
        assert worker.stop() == 0
    assert active_members(settings) == 1, "a static member left the group on SIGTERM"
