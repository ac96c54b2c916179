"""Small Kafka helpers for tests: produce records, read a topic to its end."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from kafka import KafkaProducer

from consumers.reconcile import read_topic
from rekap.records import ConsumedRecord
from rekap.settings import Settings


def produce(settings: Settings, topic: str, records: Iterable[tuple[bytes | None, bytes]],
            partition: int | None = None) -> int:
    """Send (key, value) pairs and wait until every one is acknowledged."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, key=k, value=v, partition=partition) for k, v in records]
        for f in futures:
            f.get(timeout=30)
        return len(futures)
    finally:
        producer.close()


def produce_json(settings: Settings, records: Iterable[dict[str, Any]]) -> int:
    """Send sale objects to the sales topic, keyed by ikm_id as the contract says."""
    return produce(settings, settings.topic_sales,
                   ((str(r.get("ikm_id")).encode(), json.dumps(r).encode()) for r in records))


def read_all(settings: Settings, topic: str, timeout_s: float = 20.0) -> list[ConsumedRecord]:
    """Every record of ``topic``, beginning to the end offsets seen at call time, by partition."""
    records, _ends = read_topic(settings, topic, timeout_s)
    return records
