"""Totals stay exact with two workers in one group and across a SIGKILL."""

from __future__ import annotations

from dataclasses import replace

import pytest
import redis

from producers.simulator.synthetic import generate
from rekap.names import Keys
from rekap.registry import load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from tests.streams.test_worker import assert_reconciled, counted, wait_counted
from tests.streams.truth import assert_matches
from tests.support.kafka import produce_json
from tests.support.procs import free_port, wait_until
from tests.support.worker import start_worker

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
REGISTRY = load_registry(DEFAULT_REGISTRY)


def test_two_workers_split_partitions_and_stay_exact(settings: Settings,
                                                     redis_client: redis.Redis) -> None:
    keys = Keys(settings.redis_prefix)
    values = generate(REGISTRY, 600, seed=21)
    produce_json(settings, values[:300])
    with (start_worker(settings) as a,
          start_worker(settings, extra_env={"REKAP_WORKER_PORT": str(free_port())}) as b):
        wait_until(lambda: (set(a.assigned()) | set(b.assigned()) == {0, 1, 2}
                            and a.assigned() and b.assigned()
                            and not set(a.assigned()) & set(b.assigned())),
                   timeout=60, message="both workers hold partitions")
        produce_json(settings, values[300:])
        wait_counted(redis_client, keys, len(values), message="all records counted")
        assert_matches(redis_client, values, REGISTRY, keys)
    assert_reconciled(settings)


def test_sigkill_mid_stream_then_restart_stays_exact(settings: Settings,
                                                    redis_client: redis.Redis) -> None:
    settings = replace(settings, batch_max=40)
    keys = Keys(settings.redis_prefix)
    values = generate(REGISTRY, 1500, seed=33)
    worker = start_worker(settings)
    try:
        produce_json(settings, values[:600])
        wait_until(lambda: counted(redis_client, keys) >= 300, timeout=60, message="half-way")
    finally:
        worker.kill()
    # The rest arrives while no worker runs: the kill lands mid-stream whatever the speed.
    produce_json(settings, values[600:])
    assert counted(redis_client, keys) < len(values), "the kill should land mid-stream"
    with start_worker(settings):
        wait_counted(redis_client, keys, len(values), timeout=90,
                     message="all records counted after restart")
        assert_matches(redis_client, values, REGISTRY, keys)
    assert_reconciled(settings)
