"""The batch-native consume path (streams/consume.py): pinned Faust internals, whole fetches as
batches, offsets committed only behind applied records."""

from __future__ import annotations

import hashlib
import inspect
import re
import urllib.request
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import faust
import pytest
import redis
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from producers.simulator.synthetic import generate
from rekap.kafkaconn import admin_client
from rekap.names import Keys
from rekap.registry import load_registry
from rekap.settings import Settings
from streams.consume import FAUST_VERSIONS, BatchConsumer
from tests.streams.crafted import write_registry
from tests.streams.truth import assert_matches
from tests.support.kafka import produce_json
from tests.support.procs import wait_until
from tests.support.worker import start_worker

ROOT = "lagawi-2022"

#: sha256 (first 16 hex) of the source of every faust-streaming function that
#: streams/consume.py replaces or whose behaviour it relies on, as read for
#: faust-streaming 0.15.3. A mismatch means an upgrade changed one: re-read it against
#: BatchConsumer, then update the digest (and FAUST_VERSIONS).
PINNED = {
    "Consumer._drain_messages": "44a2500309e83c63",
    "Consumer.getmany": "4b168d84882a70d6",
    "Consumer._wait_next_records": "6218e1969a636b3f",
    "Consumer._new_offset": "1d2c7ea89a7ad4f1",
    "Consumer._filter_tps_with_pending_acks": "f6f9239774234e7e",
    "Consumer._filter_committable_offsets": "dc5e9baf5d994485",
    "Consumer._should_commit": "5ce941793947ad42",
    "Consumer._commit_offsets": "1a69799041188441",
    "Consumer.on_partitions_revoked": "d04b7ae72c6fc206",
    "Consumer.wait_empty": "e4662fe24f094819",
    "Consumer.perform_seek": "0e8c130ff4b0afd8",
    "App._new_transport": "42db531312dd776f",
}


def _digest(qualname: str) -> str:
    owner, name = qualname.split(".")
    cls = {"Consumer": faust_consumer.Consumer, "App": faust.App}[owner]
    source = inspect.getsource(inspect.unwrap(cls.__dict__[name]))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def test_faust_internals_are_the_ones_read() -> None:
    assert faust.__version__ in FAUST_VERSIONS, (
        f"faust-streaming {faust.__version__} is not one streams/consume.py was read against "
        f"({sorted(FAUST_VERSIONS)}); pin it in pyproject.toml or re-read the internals")
    changed = {name: _digest(name) for name in PINNED if _digest(name) != PINNED[name]}
    assert not changed, f"faust-streaming internals changed, re-read streams/consume.py: {changed}"
    assert faust_aiokafka.Transport.Consumer is faust_aiokafka.Consumer
    assert issubclass(BatchConsumer, faust_aiokafka.Consumer)


def _metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:  # noqa: S310
        text = resp.read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def _committed(settings: Settings) -> dict[int, int]:
    with admin_client(settings) as admin:
        offsets = admin.list_group_offsets(settings.app_id)[settings.app_id]
    return {tp.partition: meta.offset for tp, meta in offsets.items()
            if tp.topic == settings.topic_sales}


def _ends(settings: Settings) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        tps = [TopicPartition(settings.topic_sales, p) for p in range(settings.sales_partitions)]
        return {tp.partition: end for tp, end in consumer.end_offsets(tps).items() if end}
    finally:
        consumer.close()


@pytest.mark.integration
def test_fetches_are_batches_and_commits_follow_them(settings: Settings,
                                                      redis_client: redis.Redis,
                                                      tmp_path: Path) -> None:
    settings = replace(settings, registry_path=write_registry(tmp_path / "registry.toml"),
                       batch_max=500)
    registry = load_registry(settings.registry_path)
    backlog = generate(registry, 3000, seed=11)
    produce_json(settings, backlog)
    worker = start_worker(settings)
    try:
        def batched() -> float:  # counted once the batch's totals are published, after Redis
            return _metric(worker.url, "rekap_apply_batch_records_sum")

        wait_until(lambda: batched() == len(backlog), timeout=60, message="backlog applied")
        backlog_batches = _metric(worker.url, "rekap_apply_batch_records_count")
        # A backlog is taken a fetch at a time, never more than REKAP_BATCH_MAX per batch.
        assert backlog_batches <= len(backlog) / 10, backlog_batches

        # A trickle is not held back for a window: one record in, one batch of one applied.
        trickle = generate(registry, 5, seed=12)
        for i, value in enumerate(trickle, 1):
            produce_json(settings, [value])
            wait_until(lambda i=i: batched() == len(backlog) + i, timeout=20,
                       message=f"trickle record {i} applied")
        assert _metric(worker.url, "rekap_apply_batch_records_count") == backlog_batches + 5
        assert_matches(redis_client, backlog + trickle, registry, Keys(settings.redis_prefix))

        # Faust's commit timer commits exactly up to the applied records.
        ends = _ends(settings)
        wait_until(lambda: _committed(settings) == ends, timeout=30,
                   message=f"committed offsets reach the end offsets {ends}")
    finally:
        worker.stop()


class _Rec:
    def __init__(self, offset: int) -> None:
        self.offset = offset


async def test_a_rewind_never_moves_a_partition_forward() -> None:
    """After a failed batch rewound its partitions, dropping the prefetched one next to it
    must not move a shared partition past the failed records (pure: no broker)."""
    consumer = BatchConsumer.__new__(BatchConsumer)
    p0, p1 = TP("sales", 0), TP("sales", 1)
    seeks: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        seeks.append((tp, offset))
        consumer._read_offset[tp] = offset

    consumer._read_offset = defaultdict(lambda: None, {p0: 120, p1: 60})
    consumer.assignment = lambda: {p0, p1}  # type: ignore[method-assign]
    consumer.seek = seek  # type: ignore[method-assign]
    await consumer._rewind({p0: [_Rec(100), _Rec(109)]})       # the failed batch
    await consumer._rewind({p0: [_Rec(110), _Rec(119)], p1: [_Rec(50), _Rec(59)]})  # prefetched
    assert seeks == [(p0, 100), (p1, 50)]
