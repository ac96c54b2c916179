"""The Kafka topics rekap owns, with explicit configs, and the command that creates them.

=================  ==========  ==========================================================
topic              cleanup     why
=================  ==========  ==========================================================
sales              delete, ∞   the ledger: Redis can always be rebuilt from it
dead-letter        compact     key = source topic/partition/offset, so a replayed batch
                               that dead-letters the same record again collapses into one
totals per IKM     compact     key = event_id/ikm_id, absolute values: the latest wins
totals per event   compact     key = event_id
milestones         compact     key = event/ikm-or-*/threshold: one announcement per
                               milestone, read back by ``rekap milestones`` at start
=================  ==========  ==========================================================

The broker's ``auto.create.topics.enable`` is off in the local stack, so a typo
in a topic name fails loudly instead of silently creating a one-partition topic.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass, field

from rekap.errors import ConfigError
from rekap.kafkaconn import admin_client, unavailable
from rekap.settings import Settings

log = logging.getLogger(__name__)

INFINITE = "-1"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    compacted = {
        "cleanup.policy": "compact",
        "retention.ms": INFINITE,
        # Compact soon enough that a consumer starting from the beginning reads
        # little more than one message per key.
        "min.cleanable.dirty.ratio": "0.1",
        "segment.ms": str(6 * 3600 * 1000),
    }
    return [
        TopicSpec(settings.topic_sales, settings.sales_partitions,
                  {"cleanup.policy": "delete", "retention.ms": INFINITE,
                   "retention.bytes": INFINITE}),
        TopicSpec(settings.topic_dead_letter, settings.sales_partitions, dict(compacted)),
        TopicSpec(settings.topic_totals_ikm, settings.sales_partitions, dict(compacted)),
        TopicSpec(settings.topic_totals_event, 1, dict(compacted)),
        # One partition: a few records per programme, read whole at every notifier start.
        TopicSpec(settings.topic_milestones, 1, dict(compacted)),
    ]


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create every rekap topic that does not exist yet; return the names created.

    ``timeout_s`` bounds reaching the broker and each admin request; past it the
    result is :class:`rekap.errors.KafkaUnavailable`.

    An existing sales topic with fewer partitions than configured is reported,
    not changed: adding partitions re-keys IKM onto other partitions, which the
    operator must decide (see README, "Running past one machine").
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    created: list[str] = []
    with (unavailable("creating topics", settings),
          admin_client(settings, timeout_s=timeout_s) as admin):
        existing = set(admin.list_topics())
        brokers = len(admin.describe_cluster()["brokers"])
        replicas, min_isr = replication(settings, brokers)
        for spec in topic_specs(settings):
            if spec.name in existing:
                continue
            try:
                admin.create_topics([NewTopic(
                    spec.name, spec.partitions, replicas,
                    topic_configs={**spec.configs, "min.insync.replicas": str(min_isr)})])
                created.append(spec.name)
                log.info("created topic %s (%d partitions, %d replicas, min.insync.replicas %d)",
                         spec.name, spec.partitions, replicas, min_isr)
            except TopicAlreadyExistsError:
                pass  # another process won the race; same specs, nothing to do
        _check_partitions(admin, settings)
    return created


def replication(settings: Settings, brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of the topics rekap creates on ``brokers``.

    Auto (the settings' 0) is what the cluster can hold: three replicas of which two must
    acknowledge a write, so any one broker may die without losing or refusing one; fewer
    on a cluster of one or two brokers. Asking for more replicas than brokers fails here,
    with the remedy, rather than as the broker's INVALID_REPLICATION_FACTOR.
    """
    replicas = settings.replication_factor or min(3, brokers)
    if replicas > brokers:
        raise ConfigError(
            f"REKAP_REPLICATION_FACTOR={replicas} but the Kafka cluster at "
            f"{settings.kafka_bootstrap} has {brokers} broker(s); set 0 (auto) or at most {brokers}")
    min_isr = settings.min_insync_replicas or (2 if replicas >= 3 else 1)
    if min_isr > replicas:
        raise ConfigError(f"REKAP_MIN_INSYNC_REPLICAS={min_isr} exceeds the replication factor "
                          f"{replicas}: no write could ever be acknowledged")
    return replicas, min_isr


def delete_topics(settings: Settings, timeout_s: float = 30.0) -> None:
    """Delete every rekap topic (tests and `rebuild --from-scratch` demos only)."""
    from kafka.errors import UnknownTopicOrPartitionError

    with (unavailable("deleting topics", settings),
          admin_client(settings, timeout_s=timeout_s) as admin):
        names = [s.name for s in topic_specs(settings)]
        present = [n for n in names if n in set(admin.list_topics())]
        if present:
            with suppress(UnknownTopicOrPartitionError):  # deleted meanwhile by another process
                admin.delete_topics(present)


def _check_partitions(admin: object, settings: Settings) -> None:
    described = admin.describe_topics([settings.topic_sales])  # type: ignore[attr-defined]
    for topic in described:
        have = len(topic.get("partitions", []))
        if have and have < settings.sales_partitions:
            raise ConfigError(
                f"topic {settings.topic_sales} has {have} partitions but "
                f"REKAP_SALES_PARTITIONS={settings.sales_partitions}; lower the setting or "
                "add partitions deliberately (kafka-topics --alter), see README")
