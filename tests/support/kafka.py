"""Small Kafka helpers for tests: produce records, read a topic to its end."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

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


def read_all(settings: Settings, topic: str, timeout_s: float = 20.0) -> list[Any]:
    """Every record of ``topic`` from the beginning to the end offsets seen at call time."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=1000)
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or [])]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in parts):
            if time.monotonic() > deadline:
                raise TimeoutError(f"read_all({topic}) did not reach the end offsets")
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()
