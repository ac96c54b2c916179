"""Progress lives with the data: where each partition resumes, and healing Redis that lost writes.

The offset fences in Redis, written by the same script as the totals, say how
far each tree has applied each partition of the sales topic. Kafka's committed
offsets are only a hint (for lag monitoring): they can run ahead of Redis
whenever Redis loses acknowledged writes — a restart without persistence, the
last second of an ``appendfsync everysec`` AOF, a failover to a lagging replica,
a flush. So the worker never trusts them for correctness:

* **Resume**: before it applies the first record of a partition it owns, the
  worker reads the partition's fence in every known tree (the registry's roots
  and the unrouted pseudo-tree). The *floor*, the lowest fence + 1 (0 when a
  fence is missing), is the first offset whose effect Redis may not hold. If the
  main consumer hands it records above the floor, the worker first replays the
  gap from the ledger with its own reader (:class:`LedgerReader`), then applies
  the batch. Because every batch advances every tree's fence to the batch's end
  (:mod:`streams.batch`), the floor is normally exactly where the worker stopped.
* **Notice**: the worker remembers the fence it last saw for every (tree,
  partition). Every script call checks them before writing and refuses when one
  fell back (:class:`rekap.errors.RedisLostWrites`); between batches a check
  every ``REKAP_PROGRESS_CHECK_S`` reads them, so a loss is noticed while no
  sale arrives too. Either way the partition's floor is read again and the gap
  replayed, at once, with nobody running a command.

Replays are exact for the same reasons a crash replay is: offset fences and
per-``(ikm_id, sale_id)`` de-duplication, in one atomic script per tree.

A rebuild switching a tree to a new generation (:mod:`consumers.rebuild`) looks
the same to the worker: the switch script sets every fence of the tree's old
generation to :data:`RETIRED_FENCE`, below anything the worker expects, so its
next call there writes nothing and raises :class:`rekap.errors.RedisLostWrites`
(and so does the next progress check). The worker then resolves the tree
pointers again (:func:`read_current_fences`), plans the batch in the new
generation and replays whatever the new generation lacks, as above.

While a replay runs, ``P:recovering`` (:meth:`rekap.names.Keys.recovering`)
holds one field per partition being replayed, so every reader (read API, venue
page, exporter) can say the figures are still catching up; the
``rekap_recovering_partitions`` gauge says it to Prometheus.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rekap.errors import KafkaUnavailable, LegacyLedger, RedisUnavailable
from rekap.generations import generation_of
from rekap.names import Keys
from rekap.records import UNROUTED, ConsumedRecord
from rekap.redisconn import REDIS_ERRORS, AsyncClient, unavailable
from rekap.registry import Registry
from rekap.settings import Settings

log = logging.getLogger(__name__)

#: Longest a replay read may wait for the broker without getting a record it expects.
READ_STALL_S = 30.0
#: What the rebuild's switch writes into every partition of a tree's old-generation fence:
#: below -1 (no fence), so it is lower than any fence the worker can expect there.
RETIRED_FENCE = -2
#: Tries to read fences that are not retired: the pointers are read first, so a switch
#: between the two reads shows a retired fence; it settles at the next read.
RESOLVE_ATTEMPTS = 20


def known_roots(registry: Registry) -> list[str]:
    """Every tree a record can be applied to: the registry's roots and :data:`UNROUTED`."""
    return sorted({registry.root(e) for e in registry.events} | {UNROUTED})


@dataclass
class Progress:
    """What this worker knows of the ledger's progress in Redis, per partition it owns. Pure.

    ``expected`` is the fence last seen per (root, partition); the apply script
    refuses to write below it. ``floor`` is the first offset of a partition that
    Redis may not hold (absent: not read yet, or a loss was noticed).
    """

    expected: dict[tuple[str, int], int] = field(default_factory=dict)
    floor: dict[int, int] = field(default_factory=dict)

    def learn(self, partition: int, fences: Mapping[str, int]) -> int:
        """Fences just read for ``partition`` (root -> fence, -1 when missing); returns the floor."""
        for root, fence in fences.items():
            self.expected[(root, partition)] = fence
        floor = min(fences.values(), default=-1) + 1
        self.floor[partition] = floor
        return floor

    def applied(self, fences: Mapping[tuple[str, int], int], ends: Mapping[int, int]) -> None:
        """A batch was applied: the fences its calls returned, and its last offset per partition."""
        for key, fence in fences.items():
            if fence > self.expected.get(key, -1):
                self.expected[key] = fence
        for partition, end in ends.items():
            if partition in self.floor and end + 1 > self.floor[partition]:
                self.floor[partition] = end + 1

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what is known of ``partitions`` (revoked, or Redis lost writes there)."""
        gone = set(partitions)
        for partition in gone:
            self.floor.pop(partition, None)
        for key in [k for k in self.expected if k[1] in gone]:
            del self.expected[key]

    def owned(self) -> list[int]:
        return sorted(self.floor)


async def resolve_trees(client: AsyncClient, settings: Settings, roots: Iterable[str]) -> Keys:
    """The keys the worker writes each tree in: its tree pointer, else the readers' pointer."""
    base = Keys(settings.redis_prefix)
    roots = list(roots)
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.get(base.pointer())
            for root in roots:
                pipe.get(base.tree_pointer(root))
            replies = await pipe.execute()
    except REDIS_ERRORS as exc:
        raise unavailable(settings, exc, "reading the generation pointers") from exc
    return base.at(generation_of(replies[0]),
                   {r: generation_of(v) for r, v in zip(roots, replies[1:], strict=True)
                    if v is not None})


async def read_current_fences(client: AsyncClient, settings: Settings, roots: Iterable[str],
                              partitions: Iterable[int]
                              ) -> tuple[Keys, dict[int, dict[str, int]]]:
    """The keys of each tree's current generation and the fences there (:func:`read_fences`)."""
    roots, parts = list(roots), list(partitions)
    for _ in range(RESOLVE_ATTEMPTS):
        keys = await resolve_trees(client, settings, roots)
        fences = await read_fences(client, settings, roots, parts, keys)
        if all(f > RETIRED_FENCE for by_root in fences.values() for f in by_root.values()):
            return keys, fences
        await asyncio.sleep(0.05)
    raise RedisUnavailable(
        f"the tree pointers under {settings.redis_prefix}:{{<root>}}:gen name a generation whose "
        "fences are retired; is a `rekap rebuild` switching, or were keys edited by hand?")


async def read_fences(client: AsyncClient, settings: Settings, roots: Iterable[str],
                      partitions: Iterable[int], keys: Keys | None = None
                      ) -> dict[int, dict[str, int]]:
    """partition -> root -> fence (-1 when missing), one pipeline for every tree, in the
    generation(s) of ``keys`` (default: generation 0).

    Raises :class:`LegacyLedger` if a tree still has the de-dup hash of an older
    layout: applying on top of it would count a resent old sale twice.
    """
    keys = keys or Keys(settings.redis_prefix)
    roots = list(roots)
    parts = list(partitions)
    if not parts:
        return {}
    try:
        async with client.pipeline(transaction=False) as pipe:
            for root in roots:
                pipe.hmget(keys.fence(root, settings.topic_sales), [str(p) for p in parts])
            # One EXISTS per tree: on Redis Cluster each tree is its own slot.
            for root in roots or [UNROUTED]:
                pipe.exists(keys.legacy_sales(root))
            replies = await pipe.execute()
        replies, legacy = replies[:len(roots)], any(replies[len(roots):])
    except REDIS_ERRORS as exc:
        raise unavailable(settings, exc, "reading the offset fences") from exc
    if legacy:
        raise LegacyLedger(
            f"Redis at {settings.redis_url_masked} holds a ledger written by an older rekap "
            f"(a {keys.legacy_sales('<root>')} hash): run "
            f"`rekap rebuild`, which re-applies the sales topic in the current layout")
    out: dict[int, dict[str, int]] = {p: {} for p in parts}
    for root, values in zip(roots, replies, strict=True):
        for p, value in zip(parts, values, strict=True):
            out[p][root] = int(value) if value is not None else -1
    return out


async def mark_recovering(client: AsyncClient, settings: Settings, partition: int,
                          start: int, stop: int) -> None:
    """Tell readers that ``partition`` is being replayed from ``start`` up to ``stop``."""
    doc = {"from": start, "to": stop, "since": time.time()}
    try:
        await client.hset(Keys(settings.redis_prefix).recovering(), str(partition),
                          json.dumps(doc))
    except REDIS_ERRORS as exc:
        raise unavailable(settings, exc, "marking a partition as recovering") from exc


async def clear_recovering(client: AsyncClient, settings: Settings, partition: int) -> None:
    try:
        await client.hdel(Keys(settings.redis_prefix).recovering(), str(partition))
    except REDIS_ERRORS as exc:
        raise unavailable(settings, exc, "clearing the recovering mark") from exc


class LedgerReader:
    """Reads ranges of one sales partition from the broker, outside the consumer group.

    The worker's own consumer stays where it is; replays never move it, so Faust's
    offset bookkeeping is untouched.
    """

    def __init__(self, settings: Settings, max_records: int) -> None:
        self.settings = settings
        self.max_records = max_records
        self._consumer: Any = None

    async def _ensure(self) -> Any:
        if self._consumer is None:
            from aiokafka import AIOKafkaConsumer

            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
                enable_auto_commit=False, auto_offset_reset="earliest",
                client_id=f"{self.settings.app_id}-replay")
            try:
                await consumer.start()
            except Exception as exc:
                await consumer.stop()
                raise KafkaUnavailable(
                    f"cannot reach Kafka at {self.settings.kafka_bootstrap} to replay the "
                    f"ledger: {exc!r}") from exc
            self._consumer = consumer
        return self._consumer

    async def ends(self) -> dict[int, int]:
        """partition -> high watermark (the next offset to be written) of the sales topic."""
        from aiokafka import TopicPartition
        from aiokafka.errors import KafkaError

        consumer = await self._ensure()
        topic = self.settings.topic_sales
        try:
            # The consumer's partitions_for_topic only reads cached metadata; no public
            # aiokafka call fetches one topic's.
            known = await consumer._client._wait_on_metadata(topic)
            parts = [TopicPartition(topic, p) for p in sorted(known or [])]
            if not parts:
                raise KafkaUnavailable(f"topic {topic} has no partitions (does it exist?)")
            ends = await consumer.end_offsets(parts)
        except KafkaError as exc:
            raise KafkaUnavailable(f"reading the end offsets of {topic} failed: {exc!r}") from exc
        return {tp.partition: offset for tp, offset in ends.items()}

    async def read(self, partition: int, start: int, stop: int
                   ) -> AsyncIterator[list[ConsumedRecord]]:
        """Records of ``partition`` from ``start`` (or the log start, if later) up to ``stop``
        (exclusive), in chunks of at most ``max_records``."""
        from aiokafka import TopicPartition
        from aiokafka.errors import KafkaError

        consumer = await self._ensure()
        topic = self.settings.topic_sales
        tp = TopicPartition(topic, partition)
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            position = start
            last_progress = time.monotonic()
            while position < stop:
                fetched = await consumer.getmany(tp, timeout_ms=500, max_records=self.max_records)
                messages = [m for m in fetched.get(tp, []) if m.offset < stop]
                position = await consumer.position(tp)
                if messages:
                    last_progress = time.monotonic()
                    yield [ConsumedRecord(topic, partition, m.offset, m.key, m.value, m.timestamp)
                           for m in messages]
                elif time.monotonic() - last_progress > READ_STALL_S:
                    raise KafkaUnavailable(
                        f"replaying {topic}/{partition} stalled at offset {position} "
                        f"(wanted up to {stop}) for {READ_STALL_S:.0f}s")
        except KafkaError as exc:
            raise KafkaUnavailable(f"replaying {topic}/{partition} failed: {exc!r}") from exc

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
