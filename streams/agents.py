"""The worker's pipeline: sales topic → batches → Redis → dead letters and totals topics.

Per batch (one fetch of the sales topic, whatever had arrived up to
``REKAP_BATCH_MAX`` records, handed over by :mod:`streams.consume`):

1. plan it (pure: :func:`streams.batch.plan_batch`); a record that makes the
   planner itself fail is rejected as ``internal_error``, alone;
2. catch up: make sure Redis holds every earlier record of the batch's
   partitions, replaying from the ledger what it lost (:mod:`streams.progress`);
3. apply it, one Lua call per event tree (:class:`streams.apply.Applier`), each
   refusing to write if Redis lost writes since the worker last looked;
4. send every rejection to the dead-letter topic and wait for the broker's acks;
5. publish the touched totals (absolute, versioned) and wait for the acks;
6. count it in the metrics (:func:`streams.metrics.observe_batch`).

Besides the batches, two timers: a progress check (every
``REKAP_PROGRESS_CHECK_S``) notices a Redis that lost writes while no sale
arrives and heals it the same way; a settle pass (every
``REKAP_TOTALS_SETTLE_S``, and once at shutdown) re-reads the totals hashes
this worker published and re-sends those another worker moved on since, so
the compacted totals topics end on the newest version of every key
(:class:`streams.totals.Settler` explains why that converges). The settle pass
publishes state already in Redis and touches no offsets; a failure is logged,
counted (``operation="totals_settle"``) and retried at the next tick.

Where a partition resumes is decided by the offset fences in Redis, not by
Kafka's committed offsets (a hint for lag monitoring only). A crash anywhere in
2-5 replays the batch, which the fences turn into ``duplicate:offset`` while
the dead letters and totals are sent again (the same keys; compaction and the
versions make that harmless).

The agent never stops on input: parsing never raises, bad records are results,
and a record that makes rekap itself fail costs only itself. On a Redis or
Kafka outage the SAME batch is retried with backoff (never acked and dropped),
counting each failure. Offsets are committed only up to finished batches
(:mod:`streams.consume`), so the committed offsets never run past an
unapplied record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from rekap.errors import KafkaUnavailable, RedisLostWrites, RedisUnavailable
from rekap.names import Keys
from rekap.records import ConsumedRecord
from rekap.redisconn import REDIS_ERRORS, unavailable
from rekap.registry import Registry, RegistrySource
from rekap.settings import Settings
from streams import consume, metrics
from streams.apply import Applier, BatchResult
from streams.batch import BatchPlan, plan_batch
from streams.deadletter import dead_letter_messages
from streams.progress import (
    RETIRED_FENCE,
    LedgerReader,
    Progress,
    clear_recovering,
    known_roots,
    mark_recovering,
    read_current_fences,
    read_fences,
    resolve_trees,
)
from streams.retry import BATCH_BACKOFF, cause
from streams.totals import (
    Settler,
    TotalsMessage,
    TotalsRef,
    TotalsSnapshot,
    VersionGate,
    coalesce,
    read_totals,
    read_versions,
)

log = logging.getLogger(__name__)

#: Seconds to wait for the broker to acknowledge one batch of sends.
SEND_TIMEOUT_S = 30.0
#: Longest the final settle pass may hold up a graceful shutdown.
SHUTDOWN_SETTLE_TIMEOUT_S = 5.0


class Prepared(NamedTuple):
    """A fetch of the sales topic, planned."""

    records: list[ConsumedRecord]
    registry: Registry
    plan: BatchPlan


class Pipeline:
    """What the agent does with one batch. Owns the Redis applier, the progress and the gate."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.keys = Keys(settings.redis_prefix)
        self.registry = RegistrySource(settings.registry_path)
        self.gate = VersionGate()
        self.settler = Settler(self.gate, settings)
        self.progress = Progress()
        self.reader = LedgerReader(settings, settings.batch_max)
        #: One worker's totals sends, batch or settle, one at a time (the Settler's premise).
        self._publish_lock = asyncio.Lock()
        #: Batches, replays and progress checks, one at a time: each reads and moves the fences.
        self._progress_lock = asyncio.Lock()
        self._force_shared = False
        self._restore_versions = False
        self._applier: Applier | None = None

    @property
    def applier(self) -> Applier:
        if self._applier is None:  # created inside the running loop
            from rekap.redisconn import connect

            self._applier = Applier(connect(self.settings), self.settings)
        return self._applier

    def prepare(self, records: list[ConsumedRecord]) -> Prepared:
        """Plan one fetch of the sales topic (pure; :mod:`streams.consume` calls this)."""
        metrics.RECORDS_CONSUMED.inc(len(records))
        registry = self.registry.current()
        plan = plan_batch(records, registry, self.keys, fence_roots=known_roots(registry))
        return Prepared(records, registry, plan)

    async def process(self, prepared: Prepared) -> None:
        """Apply a planned batch until it is done, then count it."""
        records, registry, plan = prepared
        result = await self.run_until_done(plan, registry)
        try:
            metrics.observe_batch(result, records)
        except Exception:  # metrics must never cost the batch (it is applied already)
            metrics.INTERNAL_ERRORS.labels("observe").inc()
            log.exception("counting a batch in the metrics failed")

    async def run_until_done(self, plan: BatchPlan, registry: Registry) -> BatchResult:
        """:meth:`run` the same plan until it succeeds; never drop it (see the module doc)."""
        failures = 0
        while True:
            try:
                return await self.run(plan, registry)
            except RedisLostWrites as exc:
                self.lost(exc)
                continue  # no backoff: read the fences again and replay the gap now
            except Exception as exc:
                failures += 1
                wait_s = BATCH_BACKOFF.wait_s(failures)
                why = cause(exc)
                if why == "redis":
                    metrics.REDIS_ERRORS.labels("apply").inc()
                elif why == "internal":  # a bug, and not one record's fault
                    metrics.INTERNAL_ERRORS.labels("batch").inc()
                # Kafka failures are counted where they are raised (_send_all).
                log.warning("batch of %d not done (%s), retrying in %.1fs: %r", plan.size, why,
                            wait_s, exc, exc_info=why == "internal")
            await asyncio.sleep(wait_s)

    async def run(self, plan: BatchPlan, registry: Registry) -> BatchResult:
        async with self._progress_lock:
            await self.catch_up(plan.starts, registry)
            if plan.keys is not None and plan.keys != self.keys:
                # A rebuild switched trees since the plan was made: its KEYS name the old
                # generation, where every call now refuses to write.
                plan = plan_batch(plan.records, registry, self.keys,
                                  ticker_length=plan.ticker_length,
                                  fence_roots=known_roots(registry))
            started = time.perf_counter()
            result = await self.apply(plan)
            metrics.APPLY_BATCH_SECONDS.observe(time.perf_counter() - started)
        await self.send_dead_letters(result)
        await self.publish_totals(result.totals)
        return result

    async def apply(self, plan: BatchPlan) -> BatchResult:
        """Apply ``plan`` against the fences last seen, then remember the new ones."""
        result = await self.applier.apply(plan, expected=self.progress.expected)
        self.progress.applied(result.fences(), plan.partitions)
        return result

    # -- progress (streams.progress) -----------------------------------------
    def lost(self, exc: RedisLostWrites) -> None:
        """Redis lost writes, or a rebuild retired the generation this worker wrote in:
        forget what is known of those partitions; the next step reads the pointers and
        fences again and replays what is missing."""
        if all(f <= RETIRED_FENCE for f in exc.fences.values()):
            log.info("trees %s moved to a new generation (rekap rebuild); following them",
                     sorted({root for root, _ in exc.fences}))
        else:
            metrics.REDIS_LOSSES.inc()
            log.error("%s; re-applying the ledger from the fences", exc)
        self.progress.forget({partition for _, partition in exc.fences})
        self._restore_versions = True

    def use_keys(self, keys: Keys) -> None:
        """Write in the generations of ``keys`` from now on (after a rebuild's switch)."""
        if keys == self.keys:
            return
        log.info("writing in generation %d%s from now on", keys.generation,
                 f" (but trees {dict(keys.trees)})" if keys.trees else "")
        self.keys = keys
        if self._applier is not None:
            self._applier.keys = keys
        # Fences learned in the old generation say nothing of the new one.
        self.progress.forget(self.progress.owned())

    async def catch_up(self, stops: Mapping[int, int], registry: Registry) -> None:
        """Make Redis hold every record of each partition below ``stops[partition]``.

        Reads the fences of partitions not known yet (after an assignment or a
        loss) and replays, from the ledger, whatever lies between their floor
        and the stop. Call with the progress lock held.
        """
        unknown = [p for p in stops if p not in self.progress.floor]
        if unknown:
            roots = known_roots(registry)
            keys, current = await read_current_fences(self.applier.client, self.settings,
                                                      roots, unknown)
            while keys != self.keys:
                self.use_keys(keys)  # forgets every partition: learn all of this batch's
                keys, current = await read_current_fences(self.applier.client, self.settings,
                                                          roots, list(stops))
            for partition, fences in current.items():
                self.progress.learn(partition, fences)
        if self._restore_versions:
            await self.restore_versions()
        for partition, stop in sorted(stops.items()):
            floor = self.progress.floor[partition]
            if floor < stop:
                await self.replay(partition, floor, stop, registry)

    async def replay(self, partition: int, start: int, stop: int, registry: Registry) -> None:
        """Apply ``[start, stop)`` of ``partition`` from the ledger; totals published at the end."""
        log.warning("partition %d: Redis holds the ledger only below offset %d; replaying "
                    "%d..%d from %s", partition, start, start, stop - 1, self.settings.topic_sales)
        client = self.applier.client
        await mark_recovering(client, self.settings, partition, start, stop)
        metrics.RECOVERING_PARTITIONS.inc()
        snapshots: dict[str, TotalsSnapshot] = {}
        replayed = 0
        try:
            async for chunk in self.reader.read(partition, start, stop):
                plan = plan_batch(chunk, registry, self.keys, fence_roots=known_roots(registry))
                result = await self.apply(plan)
                await self.send_dead_letters(result)
                for snap in result.totals:  # the newest state of each hash, published once
                    snapshots[f"{snap.scope}/{snap.event_id}/{snap.ikm_id}"] = snap
                replayed += len(chunk)
                metrics.RECORDS_REPLAYED.inc(len(chunk))
        finally:
            metrics.RECOVERING_PARTITIONS.dec()
        if self.progress.floor.get(partition, stop) < stop:
            self.progress.floor[partition] = stop  # nothing left below stop (offset gaps)
        await self.publish_totals(list(snapshots.values()))
        await clear_recovering(client, self.settings, partition)
        log.warning("partition %d: replayed %d records; Redis holds the ledger again up to %d",
                    partition, replayed, stop - 1)

    async def restore_versions(self) -> None:
        """After Redis lost writes: no totals hash may restart below a version already published.

        Subscribers keep the highest version of a key (contract), so a hash
        that lost its version would be ignored downstream until it climbed back.
        """
        floors = self.gate.floors()
        if floors:
            try:
                await self.applier.raise_versions(
                    [(ref.redis_key(self.keys), version) for ref, version in floors])
            except REDIS_ERRORS as exc:
                raise unavailable(self.settings, exc, "restoring totals versions") from exc
        self._restore_versions = False

    async def check_progress(self) -> None:
        """Between batches: notice a Redis that lost writes, and heal it (see streams.progress)."""
        if self._progress_lock.locked():
            return  # a batch is running: its script checks the fences itself
        async with self._progress_lock:
            registry = self.registry.current()
            # Follow a rebuild that moved the pointers while no record of a switched tree
            # arrived (or that added a tree): the next batch learns the new fences.
            self.use_keys(await resolve_trees(self.applier.client, self.settings,
                                              known_roots(registry)))
            owned = self.progress.owned()
            if not owned:
                return
            current = await read_fences(self.applier.client, self.settings,
                                        known_roots(registry), owned, self.keys)
            lost = {(root, p): f for p, fences in current.items() for root, f in fences.items()
                    if f < self.progress.expected.get((root, p), -1)}
            if not lost:
                return
            stops = {p: self.progress.floor[p] for _, p in lost}
            self.lost(RedisLostWrites(lost))
            await self.catch_up(stops, registry)

    async def check_progress_safely(self) -> None:
        """A progress check that never raises (timer); failures retry at the next tick."""
        try:
            await self.check_progress()
        except asyncio.CancelledError:
            raise
        except RedisLostWrites as exc:  # lost again while replaying: the next tick goes on
            self.lost(exc)
        except (RedisUnavailable, KafkaUnavailable) as exc:
            log.warning("progress check failed, retrying in %.1fs: %s",
                        self.settings.progress_check_s, exc)
        except Exception:
            metrics.INTERNAL_ERRORS.labels("progress_check").inc()
            log.exception("progress check failed unexpectedly")

    def partitions_changed(self, tps: Iterable[Any]) -> None:
        """Assigned or revoked: what was known of these sales partitions is read again."""
        self.progress.forget(tp.partition for tp in tps if tp.topic == self.settings.topic_sales)

    # -- dead letters and totals -----------------------------------------------
    async def send_dead_letters(self, result: BatchResult) -> None:
        dead = result.dead_letters()
        if not dead:
            return
        topic = self.settings.topic_dead_letter
        sends = [(topic, key, value) for key, value in dead_letter_messages(dead)]
        await self._send_all(sends, "dead_letter")
        metrics.DEAD_LETTERS_PUBLISHED.inc(len(sends))

    async def publish_totals(self, snapshots: Sequence[TotalsSnapshot]) -> None:
        async with self._publish_lock:
            messages = self.gate.fresh(coalesce(snapshots, self.settings))
            if not messages:
                return
            self.settler.watch(messages)
            await self._send_totals(messages, "totals")

    async def _send_totals(self, messages: list[TotalsMessage], operation: str) -> None:
        await self._send_all([(m.topic, m.key.encode(), m.value_bytes()) for m in messages],
                             operation)
        self.gate.published(messages)
        for m in messages:
            metrics.TOTALS_PUBLISHED.labels(m.value["scope"]).inc()

    def shared_refs(self) -> list[TotalsRef]:
        """The totals keys several workers write: every event of the registry."""
        registry = self.registry.current()
        return [TotalsRef("event", registry.root(e), e) for e in sorted(registry.events)]

    def force_shared(self) -> None:
        """After a rebalance: the next pass re-sends every event-level total (see Settler.force)."""
        self._force_shared = True

    async def settle(self) -> int:
        """One settle pass; return how many messages it sent. Raises on failure."""
        async with self._publish_lock:
            if self._force_shared:
                self.settler.force(self.shared_refs())
                self._force_shared = False
            refs = self.settler.pending()
            if not refs:
                return 0
            client = self.applier.client
            try:
                versions = await read_versions(client, self.keys, refs, self.settings)
                moved = self.settler.sift(versions)
                current = await read_totals(client, self.keys, moved, self.settings) \
                    if moved else []
            except RedisUnavailable:
                metrics.REDIS_ERRORS.labels("totals_settle").inc()
                raise
            messages = self.settler.plan(current)
            if messages:
                await self._send_totals(messages, "totals_settle")
            return len(messages)

    async def settle_safely(self) -> None:
        """A settle pass that never raises (timer and shutdown); failures retry next time."""
        try:
            sent = await self.settle()
        except asyncio.CancelledError:
            raise
        except (RedisUnavailable, KafkaUnavailable) as exc:  # counted where they were raised
            log.warning("totals settle pass failed, retrying in %.1fs: %s",
                        self.settings.totals_settle_s, exc)
        except Exception:
            metrics.INTERNAL_ERRORS.labels("totals_settle").inc()
            log.exception("totals settle pass failed unexpectedly, retrying in %.1fs",
                          self.settings.totals_settle_s)
        else:
            if sent:
                log.debug("totals settle pass re-sent %d messages", sent)

    async def _send_all(self, sends: list[tuple[str, bytes, bytes]], operation: str) -> None:
        """Send and wait for every acknowledgement; any failure fails the whole lot."""
        producer = self.app.producer
        try:
            futures = [await producer.send(topic, key, value, None, None, None)
                       for topic, key, value in sends]
            await asyncio.wait_for(asyncio.gather(*futures), SEND_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.KAFKA_ERRORS.labels(operation).inc()
            raise KafkaUnavailable(
                f"sending {len(sends)} {operation} messages to {self.settings.kafka_bootstrap} "
                f"failed: {exc!r}") from exc


def install(app: Any, settings: Settings) -> Any:
    """Subscribe ``app`` to the sales topic with the pipeline as its batch handler; return the
    pipeline."""
    pipeline = Pipeline(app, settings)
    consume.install(app, settings.topic_sales, pipeline)

    @app.timer(settings.progress_check_s, name="rekap.check_progress")
    async def check_progress() -> None:
        await pipeline.check_progress_safely()

    async def on_revoked(sender: Any, revoked: Any, *args: Any, **kwargs: Any) -> None:
        pipeline.partitions_changed(revoked)

    async def on_assigned(sender: Any, assigned: Any, *args: Any, **kwargs: Any) -> None:
        pipeline.partitions_changed(assigned)
        pipeline.force_shared()

    async def on_shutdown(sender: Any, *args: Any, **kwargs: Any) -> None:
        if settings.totals_settle_s > 0:
            # Streams are drained, the producer still runs: discharge what is owed, briefly.
            try:
                await asyncio.wait_for(pipeline.settle_safely(), SHUTDOWN_SETTLE_TIMEOUT_S)
            except TimeoutError:
                metrics.KAFKA_ERRORS.labels("totals_settle").inc()
                log.warning("final totals settle pass did not finish within %.0fs",
                            SHUTDOWN_SETTLE_TIMEOUT_S)
        await pipeline.reader.close()

    if settings.totals_settle_s > 0:
        @app.timer(settings.totals_settle_s, name="rekap.settle_totals")
        async def settle_totals() -> None:
            await pipeline.settle_safely()

    app.on_partitions_revoked.connect(on_revoked)
    app.on_partitions_assigned.connect(on_assigned)
    app.on_before_shutdown.connect(on_shutdown)
    return pipeline
