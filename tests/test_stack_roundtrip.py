"""The foundation's first integration test: the real broker and Redis answer."""

from __future__ import annotations

import json
import time

import pytest
import redis

from rekap.names import Keys
from rekap.settings import Settings
from rekap.topics import topic_specs
from tests.support.kafka import produce, read_all

pytestmark = pytest.mark.integration


def test_kafka_round_trip_on_private_topics(settings: Settings) -> None:
    sent = [(f"ikm-{i % 3}".encode(), json.dumps({"n": i}).encode()) for i in range(50)]
    assert produce(settings, settings.topic_sales, sent) == 50
    got = read_all(settings, settings.topic_sales)
    assert sorted(json.loads(r.value)["n"] for r in got) == list(range(50))
    # Keyed records keep their per-key order: the property per-IKM totals rely on.
    by_key: dict[bytes, list[int]] = {}
    for r in sorted(got, key=lambda r: (r.partition, r.offset)):
        by_key.setdefault(r.key, []).append(json.loads(r.value)["n"])
    for key, ns in by_key.items():
        assert ns == sorted(ns), key
        assert len({r.partition for r in got if r.key == key}) == 1


def test_topics_have_the_configs_rekap_asks_for(settings: Settings) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        for spec in topic_specs(settings):
            actual: dict[str, str] = {}
            deadline = time.monotonic() + 10
            # A topic's configs reach every broker listener a moment after it is created.
            while not set(spec.configs) <= actual.keys() and time.monotonic() < deadline:
                result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name)])
                actual = {k: v["value"] for k, v in result["topic"][spec.name].items()}
            for key, want in spec.configs.items():
                assert actual[key] == want, (spec.name, key)
            parts = admin.describe_topics([spec.name])[0]["partitions"]
            assert len(parts) == spec.partitions
    finally:
        admin.close()


def test_redis_round_trip_under_the_test_prefix(settings: Settings,
                                                redis_client: redis.Redis) -> None:
    keys = Keys(settings.redis_prefix)
    totals = keys.event_totals("lagawi-2022", "lagawi-2022-kokas")
    redis_client.hincrby(totals, "amount_idr", 210_900_000)
    assert int(redis_client.hget(totals, "amount_idr")) == 210_900_000
    assert totals.startswith(f"{settings.redis_prefix}:{{lagawi-2022}}:")
    assert list(redis_client.scan_iter(match=keys.pattern())) == [totals.encode()]
