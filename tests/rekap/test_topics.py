"""The replication rekap's topics get: what the cluster can hold, or what the settings ask."""

from __future__ import annotations

import pytest

from rekap.errors import ConfigError
from rekap.settings import Settings
from rekap.topics import replication, topic_specs


@pytest.mark.parametrize(("brokers", "want"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2))])
def test_auto_is_what_the_cluster_can_hold(brokers: int, want: tuple[int, int]) -> None:
    assert replication(Settings(), brokers) == want


def test_settings_win_and_impossible_ones_are_refused_with_the_remedy() -> None:
    assert replication(Settings(replication_factor=2, min_insync_replicas=2), 3) == (2, 2)
    with pytest.raises(ConfigError, match="has 1 broker"):
        replication(Settings(replication_factor=3), 1)
    with pytest.raises(ConfigError, match="no write could ever be acknowledged"):
        replication(Settings(min_insync_replicas=3), 2)
    with pytest.raises(ConfigError, match="cannot exceed"):
        Settings.from_env(replication_factor=2, min_insync_replicas=3)


def test_created_topics_carry_the_replication_the_broker_can_hold(settings: Settings) -> None:
    """The ``settings`` fixture created the topics on the test broker (one node here; the
    three-broker case is tests/scale): one replica, min.insync.replicas 1, set explicitly."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    try:
        names = [spec.name for spec in topic_specs(settings)]
        for topic in admin.describe_topics(names):
            assert {len(p["replica_nodes"]) for p in topic["partitions"]} == {1}, topic
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names])["topic"]
    finally:
        admin.close()
    for name in names:
        isr = configs[name]["min.insync.replicas"]
        assert (isr["value"], isr["config_source"]) == ("1", "DYNAMIC_TOPIC_CONFIG"), name
