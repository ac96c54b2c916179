"""``rekap rebuild``: wipe Redis and rebuild it from the sales topic (the ledger).

Steps:

1. refuse if the worker's consumer group (``REKAP_APP_ID``) has active members —
   the worker must be stopped first, or it would write into the wiped keys;
2. remember the ``version`` of every event and IKM totals hash, wipe every key
   under ``REKAP_REDIS_PREFIX`` (SCAN + UNLINK), and write the versions back, so
   a rebuilt total is published with a *higher* version than any before it and
   downstream subscribers never mistake it for a stale replay;
3. commit the group's offsets at the beginning of the sales topic;
4. then either tell the operator to start the worker (it replays the topic), or
   with ``--apply`` fold the whole topic through :mod:`streams.apply` here and
   commit the group's offsets at the end, so a worker started later continues
   from there.

``--apply`` does not re-send dead letters (the compacted dead-letter topic
already holds them, keyed by source coordinates) nor totals messages (the
worker publishes on the next change of each key).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from consumers.reconcile import parse_key, read_topic
from rekap.errors import ConfigError, KafkaUnavailable
from rekap.kafkaconn import admin_client, reader, unavailable
from rekap.names import Keys
from rekap.settings import Settings

UNLINK_CHUNK = 500
T = TypeVar("T")


@dataclass
class RebuildResult:
    keys_removed: int
    versions_kept: int
    applied_records: int | None = None


#: A group coordinator is not available for a few seconds after a broker starts
#: (the offsets topic is being created) or moves; such errors are retried this long.
COORDINATOR_WAIT_S = 15.0


def retrying(call: Callable[[], T], timeout_s: float = COORDINATOR_WAIT_S) -> T:
    """Run a Kafka admin ``call``, retrying errors Kafka marks retriable until ``timeout_s``."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def active_members(settings: Settings) -> int:
    """How many members the worker's consumer group has right now."""
    with (unavailable(f"describing group {settings.app_id}", settings),
          admin_client(settings, "rebuild") as admin):
        groups = retrying(lambda: admin.describe_groups([settings.app_id]))
        group = groups.get(settings.app_id) or {}
        return len(group.get("members") or [])


def wipe(client: Any, settings: Settings) -> tuple[int, int]:
    """Remove every key under the prefix, keeping totals versions; return (removed, versions kept)."""
    keys = Keys(settings.redis_prefix)
    all_keys = [k.decode() if isinstance(k, bytes) else k
                for k in client.scan_iter(match=keys.pattern(), count=1000)]
    versions: dict[str, int] = {}
    for key in all_keys:
        parsed = parse_key(key, keys)
        if parsed is None:
            continue
        parts = parsed[1].split(":")
        # ev:<E> and ev:<E>:ikm:<I> are the versioned totals hashes.
        if parts[0] == "ev" and len(parts) in (2, 4) and (len(parts) == 2 or parts[2] == "ikm"):
            version = client.hget(key, "version")
            if version is not None:
                versions[key] = int(version)
    for start in range(0, len(all_keys), UNLINK_CHUNK):
        client.unlink(*all_keys[start:start + UNLINK_CHUNK])
    if versions:
        pipe = client.pipeline(transaction=False)
        for key, version in versions.items():
            pipe.hset(key, "version", version)
        pipe.execute()
    return len(all_keys), len(versions)


def commit_offsets(settings: Settings, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` (partition → next offset to read) for the worker's group."""
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    with (unavailable(f"committing offsets for group {settings.app_id}", settings),
          admin_client(settings, "rebuild") as admin):
        result = retrying(lambda: admin.alter_group_offsets(settings.app_id, {
            TopicPartition(settings.topic_sales, p): OffsetAndMetadata(o, "rekap rebuild", -1)
            for p, o in offsets.items()}))
    failed = {tp: err for tp, err in result.items() if err.__name__ != "NoError"}
    if failed:
        raise KafkaUnavailable(f"committing offsets for group {settings.app_id} failed: {failed} "
                               "(is a worker still running?)")


def beginning_offsets(settings: Settings) -> dict[int, int]:
    from kafka import TopicPartition

    with (unavailable(f"looking up the beginning offsets of {settings.topic_sales}", settings),
          reader(settings, "rebuild") as consumer):
        parts = [TopicPartition(settings.topic_sales, p)
                 for p in sorted(consumer.partitions_for_topic(settings.topic_sales) or [])]
        return {tp.partition: o for tp, o in consumer.beginning_offsets(parts).items()}


async def apply_all(settings: Settings, records: list[Any]) -> int:
    """Apply every record through the same planner and script as the worker."""
    from rekap.redisconn import connect
    from rekap.registry import load_registry
    from streams.apply import Applier
    from streams.batch import plan_batch

    registry = load_registry(settings.registry_path)
    client = connect(settings)
    try:
        applier = Applier(client, settings)
        keys = Keys(settings.redis_prefix)
        for start in range(0, len(records), settings.batch_max):
            await applier.apply(plan_batch(records[start:start + settings.batch_max], registry, keys))
    finally:
        await client.aclose()
    return len(records)


def rebuild(settings: Settings, *, apply: bool = False) -> RebuildResult:

    from rekap.redisconn import REDIS_ERRORS, connect_sync, unavailable

    members = active_members(settings)
    if members:
        raise ConfigError(
            f"consumer group {settings.app_id} has {members} active member(s): stop every "
            "`rekap worker` first, then run `rekap rebuild` again")
    client = connect_sync(settings)
    try:
        removed, kept = wipe(client, settings)
    except REDIS_ERRORS as exc:
        raise unavailable(settings, exc, "wiping keys for a rebuild") from exc
    finally:
        client.close()
    commit_offsets(settings, beginning_offsets(settings))
    result = RebuildResult(keys_removed=removed, versions_kept=kept)
    if apply:
        records, ends = read_topic(settings)
        result.applied_records = asyncio.run(apply_all(settings, records))
        commit_offsets(settings, ends)
    return result
