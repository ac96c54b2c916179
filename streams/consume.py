"""Batch-native consumption: every fetch from Kafka reaches the pipeline as one batch.

Stock Faust hands a fetch to its streams one message at a time: per message an
``asyncio.wait`` of several futures in ``Consumer._drain_messages``, a lock and
a queue put in the conductor, then the stream iterator's bookkeeping and an ack
under a lock. That alone capped a worker doing nothing at about a tenth of what
the broker delivers (``docs/PERFORMANCE.md``). Here the fetcher's loop hands each
fetch (``_wait_next_records``: whatever has arrived, up to ``REKAP_BATCH_MAX``,
never waiting for more while records are there) to one handler, and Faust keeps
everything else: group membership, rebalances, the offset-commit timer, the web
server and the ``worker`` command.

One batch is processed at a time, in fetch order. The next fetch is taken and
prepared (parsed, validated, planned: CPU only) while the batch before it waits
on Redis and on the broker's acks, so the worker's core and Redis' work at once.

Offsets: after the handler returned, each partition of the batch is *done* up
to its last record + 1, and that is what Faust's commit timer commits (it asks
:meth:`BatchConsumer._new_offset`). A batch that did not finish marks nothing,
so a commit never passes an unapplied record; a batch fetched in an earlier
group generation, or finished after its partition was revoked, marks nothing
either. Kafka's committed offsets are where a restarted worker starts reading;
the offset fences in Redis (``streams.progress``) decide what is applied, so a
replay is harmless.

This overrides private methods of faust-streaming; :data:`FAUST_VERSIONS` are
the versions it was read against, and ``tests/streams/test_consume.py`` fails if
an upgrade changes the code it replaces or relies on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from rekap.records import ConsumedRecord
from streams import metrics

log = logging.getLogger(__name__)

#: faust-streaming releases whose consumer internals this module was written against.
FAUST_VERSIONS: Final = frozenset({"0.15.3"})
#: Longest a graceful shutdown waits for the batch in flight before cancelling it (it is
#: then replayed by whoever reads the partition next).
SHUTDOWN_WAIT_S: Final = 10.0
#: Pause after a handler failure before the same records are fetched again.
HANDLER_RETRY_S: Final = 1.0

Prepared = TypeVar("Prepared")


class BatchHandler(Protocol[Prepared]):
    """What the consumer hands each fetch to, in two steps."""

    def prepare(self, records: list[ConsumedRecord]) -> Prepared:
        """Pure CPU work on a batch (parse, validate, plan). Runs while the batch before it is
        still in flight, so it overlaps that batch's waiting on Redis and Kafka."""

    async def process(self, prepared: Prepared) -> None:
        """Apply a prepared batch; batches are processed one at a time, in fetch order."""


#: A batch whose preparation raised.
_FAILED: Final = object()


def _size(batch: Mapping[Any, Sequence[Any]]) -> int:
    return sum(len(records) for records in batch.values())


def to_records(fetch: Mapping[Any, Sequence[Any]]) -> list[ConsumedRecord]:
    """An aiokafka fetch (``{tp: [ConsumerRecord]}``) as records, partition by partition."""
    return [ConsumedRecord(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
            for records in fetch.values() for r in records]


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering fetches to ``app.batch_handler``, not to streams."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: Per partition, the offset after the last record of the last finished batch.
        self._done: dict[TP, int] = {}
        self._inflight: asyncio.Task[bool] | None = None
        super().__init__(*args, **kwargs)

    async def _drain_messages(self, fetcher: Any) -> None:
        handler: BatchHandler[Any] | None = getattr(self.app, "batch_handler", None)
        if handler is None:
            raise RuntimeError("no batch handler installed (streams.consume.install)")
        try:
            while not (self.should_stop or fetcher.should_stop):
                fetch, active = await self._wait_next_records(1.0)
                generation = self.app.consumer_generation_id
                if not fetch or self.should_stop:
                    continue
                if not self.flow_active:
                    await self._seek_back()
                    continue
                batch = self._fresh(fetch, active)
                if batch:
                    await self._next(handler, batch, generation)
        except self.consumer_stopped_errors:
            if self.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.app.should_stop:
                return
            raise

    async def _next(self, handler: BatchHandler[Any], batch: Mapping[TP, Sequence[Any]],
                    generation: int) -> None:
        """Prepare ``batch``, wait for the one in flight, then start it."""
        try:
            prepared = handler.prepare(to_records(batch))
        except Exception:
            prepared = _FAILED
            log.exception("preparing a batch of %d records failed", _size(batch))
        previous = self._inflight
        # Shielded: stopping the fetcher must not cut a batch in half; wait_empty waits for
        # it (bounded on shutdown).
        if previous is not None and not await asyncio.shield(previous):
            await self._rewind(batch)  # it failed and rewound: read this fetch again after it
            return
        if prepared is _FAILED:
            await self._failed(batch)
        elif not self.flow_active or generation != self.app.consumer_generation_id:
            # Fetched before a rebalance stopped the flow: drop it and read again from the
            # committed offsets, as Faust's own getmany does.
            await self._seek_back()
        else:
            self._inflight = asyncio.ensure_future(
                self._handle(handler, prepared, batch, generation))

    def _fresh(self, fetch: Mapping[TP, Sequence[Any]],
               active: set[TP] | None) -> dict[TP, Sequence[Any]]:
        """The fetch without records already read (a re-fetch after a seek) or of partitions
        no longer active; notes each partition's end offset and inbound time for Faust's
        monitor, whose per-message sensors no longer fire."""
        monitor = self.app.monitor
        now = time.monotonic()
        batch: dict[TP, Sequence[Any]] = {}
        for tp, records in fetch.items():
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            start = self._read_offset[tp]
            if start is not None and records and records[0].offset < start:
                records = [r for r in records if r.offset >= start]
            if not records:
                continue
            batch[tp] = records
            self._read_offset[tp] = records[-1].offset + 1
            if monitor is not None:
                monitor.track_tp_end_offset(tp, self.highwater(tp))
                monitor.stream_inbound_time[tp] = now
        return batch

    async def _handle(self, handler: BatchHandler[Any], prepared: Any,
                      batch: Mapping[TP, Sequence[Any]], generation: int) -> bool:
        """Process one batch; mark its partitions done if it finished in this generation.
        False if it failed (its partitions are then rewound)."""
        started = time.perf_counter()
        try:
            await handler.process(prepared)
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("batch of %d records failed", _size(batch))
            await self._failed(batch)
            return False
        if generation != self.app.consumer_generation_id:
            return True  # a rebalance ran meanwhile: the new owner commits its own progress
        assignment = self.assignment()
        for tp, records in batch.items():
            if tp in assignment:
                self._done[tp] = records[-1].offset + 1
        return True

    async def _failed(self, batch: Mapping[TP, Sequence[Any]]) -> None:
        # The pipeline retries outages itself; reaching here is a bug. Never mark the batch
        # done: read it again after a pause.
        metrics.INTERNAL_ERRORS.labels("consume").inc()
        await asyncio.sleep(HANDLER_RETRY_S)
        await self._rewind(batch)

    async def _rewind(self, batch: Mapping[TP, Sequence[Any]]) -> None:
        """Read ``batch`` again: seek each of its partitions back to its first record, unless
        the partition is already positioned at or before it (an earlier batch's rewind)."""
        assignment = self.assignment()
        for tp, records in batch.items():
            position = self._read_offset[tp]
            if tp in assignment and (position is None or position > records[0].offset):
                await self.seek(tp, records[0].offset)

    async def _seek_back(self) -> None:
        try:
            await self.perform_seek()
        except Exception as exc:  # Faust's own getmany logs and goes on, too
            log.warning("seeking back to the committed offsets failed: %r", exc)

    # Faust's commit bookkeeping, fed from finished batches instead of per-message acks.

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Any:
        return (tp for tp in list(self._done)
                if topics is None or tp in topics or tp.topic in topics)

    def _new_offset(self, tp: TP) -> int | None:
        return self._done.get(tp)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._done.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def wait_empty(self) -> None:
        """Wait for the batch in flight (bounded when shutting down), then Faust's own wait
        and final commit."""
        task = self._inflight
        if task is not None and not task.done():
            # A rebalance waits as long as the batch takes (as for a stock stream); a
            # shutdown only so long.
            await asyncio.wait([task], timeout=SHUTDOWN_WAIT_S if self.app.should_stop else None)
            if not task.done():
                task.cancel()
                log.warning("batch in flight not finished within %.0fs of shutdown; "
                            "it is replayed on the next start", SHUTDOWN_WAIT_S)
        await super().wait_empty()


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


class BatchApp(faust.App):
    """A Faust app whose consumer delivers whole fetches (see the module doc)."""

    #: What receives every fetch; set by :func:`install` before the app starts.
    batch_handler: BatchHandler[Any] | None = None

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)


def install(app: BatchApp, topic: str, handler: BatchHandler[Any]) -> Any:
    """Subscribe ``app`` to ``topic`` with ``handler`` receiving every fetch of it.

    Every topic the app subscribes goes to this one handler; the worker reads only
    the sales topic.
    """
    app.batch_handler = handler
    channel = app.topic(topic, key_serializer="raw", value_serializer="raw")
    app.topics.add(channel)
    return channel
