"""The one place producers talk to Kafka: a kafka-python producer, errors translated.

Every sale is produced with ``acks=all`` and the idempotent producer
(``enable_idempotence=True``; kafka-python 3 supports it and raises at start-up
if another setting conflicts), key = ``ikm_id``. A send is only "done" when the
broker acknowledged it; anything else becomes :class:`rekap.errors.KafkaUnavailable`
or a per-record failure the caller reports as "not acknowledged".

Two ways in:

* :meth:`SaleProducer.send_all` blocks until every record is acknowledged or has
  failed (CLI commands, the simulator).
* :meth:`SaleProducer.send_async` awaits the acknowledgements from an event loop
  (the ingest service): the records are handed over on the loop once the topic's
  metadata is known, and the acknowledgements come back from the producer's I/O
  thread in bulk (:class:`_Inbox`).

The producer is created lazily and re-created after a failed bootstrap, so a
service started while Kafka is down comes up (``/readyz`` says not ready) and
begins to produce once the broker is back.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rekap.errors import KafkaUnavailable
from rekap.kafkaconn import unavailable
from rekap.settings import Settings

log = logging.getLogger(__name__)

#: How long a record may wait for its acknowledgement. Past it kafka-python
#: expires the record and the caller answers "unavailable"; a client retries.
DEFAULT_ACK_TIMEOUT_S = 10.0
#: How long send() may block waiting for topic metadata before giving up. Kept
#: short so an outage answers 503 quickly instead of holding HTTP requests.
DEFAULT_MAX_BLOCK_S = 3.0
#: kafka-python settings of the sales producer beyond acks and idempotence, measured with
#: ``make bench-ingest`` (docs/PERFORMANCE.md, "Ingest"). linger 1 ms: a lone sale waits
#: ~1 ms, not the ~8 ms of 5 ms (the I/O thread's poll rounds it up); under load records
#: still share produce requests, which 0 ms mostly does not: at 16 clients 0 ms cost 30 %
#: more CPU per sale, and an idle I/O thread that wakes per record competes for the GIL
#: with the event loop. Metrics off: nothing reads kafka-python's own sensors, and they
#: cost CPU per batch.
TUNING: dict[str, Any] = {
    "linger_ms": 1,
    "metrics_enabled": False,
}


@dataclass(frozen=True)
class Ack:
    """Where the broker stored a record."""

    partition: int
    offset: int


@dataclass(frozen=True)
class Failed:
    """A record the broker did not acknowledge; ``detail`` says why."""

    detail: str


def tcp_reachable(bootstrap: str, timeout_s: float = 0.5) -> bool:
    """Can a TCP connection be opened to any bootstrap server? A cheap outage probe."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


class SaleProducer:
    """A lazily created idempotent kafka-python producer for the sales topic.

    ``linger_ms`` None takes :data:`TUNING`'s (ingest); a bulk sender (the simulator) gives
    a longer one.
    """

    def __init__(self, settings: Settings, *, ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
                 max_block_s: float = DEFAULT_MAX_BLOCK_S, client_id: str = "rekap-producer",
                 linger_ms: int | None = None) -> None:
        self.settings = settings
        self.topic = settings.topic_sales
        self.ack_timeout_s = ack_timeout_s
        self.max_block_s = max_block_s
        self.client_id = client_id
        self.linger_ms = linger_ms
        self._producer: Any = None
        self._lock = threading.Lock()
        self._inbox: _Inbox | None = None
        #: monotonic time of the last failed acknowledgement, cleared by a success.
        self.failing_since: float | None = None

    # -- lifecycle ---------------------------------------------------------

    def _get(self) -> Any:
        with self._lock:
            if self._producer is None:
                self._producer = self._create()
            return self._producer

    def _create(self) -> Any:
        from kafka import KafkaProducer

        # delivery_timeout_ms bounds retries inside kafka-python: a record not
        # acknowledged by then fails, which is the moment ingest answers 503.
        request_timeout_ms = max(1000, int(self.ack_timeout_s * 1000 / 2))
        with unavailable("starting the sales producer", self.settings):
            return KafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap.split(","),
                client_id=self.client_id,
                acks="all",
                enable_idempotence=True,
                **(TUNING | ({} if self.linger_ms is None else {"linger_ms": self.linger_ms})),
                request_timeout_ms=request_timeout_ms,
                delivery_timeout_ms=int(self.ack_timeout_s * 1000),
                max_block_ms=int(self.max_block_s * 1000),
                bootstrap_timeout_ms=int(self.max_block_s * 1000),
                reconnect_backoff_max_ms=1000,
            )

    def close(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=timeout_s)
            except Exception as exc:  # closing a producer of a dead broker may raise anything
                log.warning("closing the Kafka producer: %s", exc)

    def __enter__(self) -> SaleProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- health ------------------------------------------------------------

    def ready(self) -> bool:
        """Kafka answers: a TCP probe succeeds and the sales topic's metadata is known."""
        if not tcp_reachable(self.settings.kafka_bootstrap):
            return False
        try:
            producer = self._get()
            return bool(producer.partitions_for(self.topic))
        except Exception:  # any kafka-python error means "not ready"
            return False

    def degraded(self) -> bool:
        """True while the last acknowledgement failed and the broker does not accept TCP.

        Ingest checks this before producing a batch: during an outage the whole
        request is answered 503 at once and nothing is handed to the producer.
        """
        return self.failing_since is not None and not tcp_reachable(self.settings.kafka_bootstrap)

    # -- sending -----------------------------------------------------------

    def _send_one(self, producer: Any, key: bytes, value: bytes) -> Any:
        try:
            with unavailable(f"accepting a record for {self.topic}", self.settings):
                return producer.send(self.topic, key=key, value=value)
        except KafkaUnavailable:
            self.failing_since = self.failing_since or time.monotonic()
            raise

    def send_all(self, records: Sequence[tuple[bytes, bytes]]) -> list[Ack | Failed]:
        """Produce ``(key, value)`` pairs and wait for each acknowledgement."""
        producer = self._get()
        futures: list[Any] = []
        for key, value in records:
            try:
                futures.append(self._send_one(producer, key, value))
            except KafkaUnavailable as exc:
                futures.append(Failed(str(exc)))
        deadline = time.monotonic() + self.ack_timeout_s + 2
        out: list[Ack | Failed] = []
        for fut in futures:
            if isinstance(fut, Failed):
                out.append(fut)
                continue
            try:
                meta = fut.get(timeout=max(0.1, deadline - time.monotonic()))
                out.append(Ack(meta.partition, meta.offset))
            except Exception as exc:  # KafkaError or timeout: not acknowledged
                out.append(Failed(f"not acknowledged by Kafka: {exc}"))
        self._note(out)
        return out

    def flush(self, timeout_s: float | None = None) -> None:
        if self._producer is not None:
            with unavailable(f"flushing records for {self.topic}", self.settings):
                self._producer.flush(timeout=timeout_s)

    async def send_async(self, records: Iterable[tuple[bytes, bytes]]) -> list[Ack | Failed]:
        """Produce from asyncio and wait for the acknowledgements, never blocking the loop.

        ``send()`` only blocks while the topic's metadata is unknown (the first send, or a
        producer still to be created), so only then does it run in a thread; once the
        metadata is cached it runs on the loop: a thread hop per request cost more CPU
        than the send itself. Acknowledgements arrive in the producer's I/O thread and come
        back through an :class:`_Inbox`, one loop wake-up per batch of them, not one per
        record. A record with no answer after ``ack_timeout_s`` (+2 s) counts as failed.
        """
        loop = asyncio.get_running_loop()
        records = list(records)
        if not records:
            return []
        inbox = self._inbox
        if inbox is None or inbox.loop is not loop:
            inbox = self._inbox = _Inbox(loop)
        producer = self._producer
        if producer is not None and self._metadata_cached(producer):
            waiters = self._submit(producer, records, inbox)
        else:
            waiters = await asyncio.to_thread(lambda: self._submit(self._get(), records, inbox))
        expiry = loop.call_later(self.ack_timeout_s + 2, _expire, waiters)
        try:
            out = [await w for w in waiters]
        finally:
            expiry.cancel()
        self._note(out)
        return out

    def _metadata_cached(self, producer: Any) -> bool:
        """Does ``producer`` know the topic's partitions, so ``send()`` will not block?"""
        try:
            return producer._metadata.partitions_for_topic(self.topic) is not None
        except AttributeError:  # another kafka-python layout: take the thread every time
            return False

    def _submit(self, producer: Any, records: list[tuple[bytes, bytes]],
                inbox: _Inbox) -> list[asyncio.Future[Ack | Failed]]:
        """Hand ``records`` to ``producer``; a future per record, resolved through ``inbox``."""
        waiters: list[asyncio.Future[Ack | Failed]] = []
        for key, value in records:
            waiter: asyncio.Future[Ack | Failed] = inbox.loop.create_future()
            waiters.append(waiter)
            try:
                fut = self._send_one(producer, key, value)
            except KafkaUnavailable as exc:
                inbox.put(waiter, Failed(str(exc)))
                continue
            fut.add_callback(_acked, inbox, waiter)
            fut.add_errback(_not_acked, inbox, waiter)
        return waiters

    def _note(self, results: Sequence[Ack | Failed]) -> None:
        if any(isinstance(r, Failed) for r in results):
            self.failing_since = self.failing_since or time.monotonic()
        elif results:
            self.failing_since = None


class _Inbox:
    """Results for one event loop's waiters, put by any thread, set on the loop in bulk.

    The I/O thread completes a whole produce response at once, one callback per record;
    each ``call_soon_threadsafe`` writes the loop's wake-up pipe and takes the GIL back and
    forth, so only the first result of a burst schedules a :meth:`drain` and the rest
    join the queue it empties. ``scheduled`` is cleared before draining, so a result put
    while a drain runs is either taken by it or schedules the next one.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: deque[tuple[asyncio.Future[Ack | Failed], Ack | Failed]] = deque()
        self.scheduled = False

    def put(self, waiter: asyncio.Future[Ack | Failed], value: Ack | Failed) -> None:
        self.items.append((waiter, value))
        if not self.scheduled:
            self.scheduled = True
            try:
                self.loop.call_soon_threadsafe(self.drain)
            except RuntimeError:  # the loop is closed: nobody waits for these any more
                self.items.clear()

    def drain(self) -> None:
        self.scheduled = False
        items = self.items
        while items:
            waiter, value = items.popleft()
            if not waiter.done():
                waiter.set_result(value)


def _acked(inbox: _Inbox, waiter: asyncio.Future[Ack | Failed], meta: Any) -> None:
    inbox.put(waiter, Ack(meta.partition, meta.offset))


def _not_acked(inbox: _Inbox, waiter: asyncio.Future[Ack | Failed], exc: Exception) -> None:
    inbox.put(waiter, Failed(f"not acknowledged by Kafka: {exc}"))


def _expire(waiters: list[asyncio.Future[Ack | Failed]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(Failed("no acknowledgement from Kafka in time"))
