"""reconcile proves Redis against the topic (rebuild: test_rebuild.py)."""

from __future__ import annotations

import asyncio

import pytest
import redis

from consumers.rebuild import apply_all
from consumers.reconcile import format_report, read_topic, run
from producers.simulator.synthetic import generate
from rekap.names import Keys
from rekap.registry import load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from tests.support.kafka import produce, produce_json

pytestmark = pytest.mark.integration
ROOT = "lagawi-2022"
REGISTRY = load_registry(DEFAULT_REGISTRY)


def load(settings: Settings) -> int:
    values = generate(REGISTRY, 250, seed=3)
    produce_json(settings, values)
    produce(settings, settings.topic_sales, [(b"x", b"not json"), (b"askha-jaya", b"{}")])
    records, _ = read_topic(settings)
    return asyncio.run(apply_all(settings, records))


def test_reconcile_ok_then_detects_tampering(settings: Settings, redis_client: redis.Redis) -> None:
    n = load(settings)
    report = run(settings, timeout_s=5)
    assert report.ok, format_report(report)
    assert report.records == n
    assert format_report(report).startswith(f"reconcile OK: {n} records, Rp")
    keys = Keys(settings.redis_prefix)
    day_key = keys.event_days(ROOT, "lagawi-2022-kokas")
    day_field = next(f.decode() for f in redis_client.hkeys(day_key) if f.endswith(b":amount_idr"))
    redis_client.hincrby(day_key, day_field, 1000)
    report = run(settings, timeout_s=1)
    assert not report.ok
    assert any(day_field in d for d in report.differences), report.differences
    assert "reconcile FAILED" in format_report(report)

