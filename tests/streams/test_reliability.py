"""Totals stay exact with two workers in one group and across a SIGKILL."""

from __future__ import annotations

from dataclasses import replace

import pytest
import redis

from consumers.reconcile import format_report, run
from rekap.names import Keys
from rekap.registry import load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from tests.conftest import free_port
from tests.streams.test_worker import counted
from tests.streams.truth import assert_matches
from tests.support.kafka import produce_json
from tests.support.salesgen import generate
from tests.support.worker import start_worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
REGISTRY = load_registry(DEFAULT_REGISTRY)


def test_two_workers_split_partitions_and_stay_exact(settings: Settings,
                                                     redis_client: redis.Redis) -> None:
    keys = Keys(settings.redis_prefix)
    values = generate(REGISTRY, 600, seed=21)
    produce_json(settings, values[:300])
    a = start_worker(settings)
    b = start_worker(settings, extra_env={"REKAP_WORKER_PORT": str(free_port())})
    try:
        wait_until(lambda: (set(a.assigned()) | set(b.assigned()) == {0, 1, 2}
                            and a.assigned() and b.assigned()
                            and not set(a.assigned()) & set(b.assigned())),
                   timeout=60, message="both workers hold partitions")
        produce_json(settings, values[300:])
        wait_until(lambda: counted(redis_client, keys) == len(values), timeout=60,
                   message="all records counted")
        assert_matches(redis_client, values, REGISTRY, keys)
    finally:
        b.stop()
        a.stop()
    report = run(settings, timeout_s=5)
    assert report.ok, format_report(report)


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
    worker = start_worker(settings)
    try:
        wait_until(lambda: counted(redis_client, keys) == len(values), timeout=90,
                   message="all records counted after restart")
        assert_matches(redis_client, values, REGISTRY, keys)
    finally:
        worker.stop()
    report = run(settings, timeout_s=5)
    assert report.ok, format_report(report)
