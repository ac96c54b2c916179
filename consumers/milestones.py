"""``rekap milestones``: announce each event and IKM crossing a sales milestone, exactly once.

A milestone is a net sales amount (``amount_idr`` of the totals, so refunds
count against it): by default Rp10 juta, Rp100 juta and Rp1 miliar, or the
event's ``milestones_idr`` in the registry. When the totals of an event, or of
an IKM in it, reach one, the notifier announces it in Bahasa Indonesia
("Askha Jaya menembus Rp100 juta di Pameran Lagawi Fest, Mall Kota Kasablanka")
to the compacted ``REKAP_TOPIC_MILESTONES`` topic, the log, and optionally a
webhook.

Exactly once, as data
    A milestone's identity is ``<event>/<ikm or *>/<threshold>`` (:func:`milestone_id`),
    the Kafka key of its record. The record *is* the announcement: the notifier
    reads the milestones topic back before it announces anything (at start and
    after every partition assignment), writes a new record with an idempotent
    producer and ``acks=all``, and only then lets the subscriber commit the
    totals offsets. A crash between the write and the commit re-delivers the
    totals message after the restart; its milestone is found in the topic and
    not repeated. A full replay of the totals topics (a reset group,
    ``--from-beginning``) and a rebuild (the same totals at higher versions)
    find every milestone already there in the same way. Run one notifier per
    group: a second one is safe as a stand-by (it reads the topic back when it
    takes partitions over), not for two at once on the same partitions.

Once ever, refunds included
    A total that falls below a milestone (refunds) and rises past it again is
    not announced again: the milestone was reached, and a notice that repeats
    would read as a second achievement. Deleting the record (a tombstone on its
    key) lets it be announced again.

    The notifier sees totals as the worker publishes them (one message per key
    per batch), so a total that rises past a milestone and falls back within one
    batch may go unannounced; once it stays past it, it is announced.

Webhook (``REKAP_MILESTONES_WEBHOOK_URL``)
    Each record of the milestones topic is POSTed as it is (its raw bytes), with
    ``X-Rekap-Signature: sha256=<hex HMAC-SHA256 of the body>`` under
    ``REKAP_MILESTONES_WEBHOOK_SECRET`` and ``Idempotency-Key: <milestone id>``.
    The sender is its own consumer group (``<group>-webhook``) on the milestones
    topic, committing after each delivery, so a delivery interrupted by a crash
    is made again after the restart: a receiver sees each milestone at least
    once, and a repeat carries the same ``Idempotency-Key``. Network errors,
    timeouts, 408, 429 and 5xx are retried with exponential backoff and jitter
    for up to ``webhook_give_up_s``; then (or at once for another 4xx) the
    failure is logged and counted and the sender moves on. The milestone stays
    in the topic whatever the webhook does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from consumers.subscriber import IkmTotals, Subscriber, TotalsUpdate, partitions_of, stop_quietly
from rekap.backoff import Backoff
from rekap.errors import ConfigError, KafkaUnavailable
from rekap.money import format_idr_short
from rekap.registry import Registry, RegistrySource
from rekap.settings import Settings

log = logging.getLogger(__name__)

SCHEMA: Final = "rekap.milestone.v1"
#: Rp10 juta, Rp100 juta, Rp1 miliar: a small IKM's first real month, a strong IKM's
#: programme, the whole programme's order of magnitude (Lagawi Fest: Rp5,23 miliar).
DEFAULT_THRESHOLDS_IDR: Final = (10_000_000, 100_000_000, 1_000_000_000)
#: Retries of one webhook delivery: 1 s, 2 s, 4 s ... up to 60 s between tries, each
#: drawn from [half, all] of that (jitter, so many notifiers do not retry in step).
WEBHOOK_BACKOFF: Final = Backoff(base_s=0.5, cap_s=60.0, floor=0.5)
#: How long one delivery is retried before it is given up (logged and counted).
WEBHOOK_GIVE_UP_S: Final = 300.0
WEBHOOK_TIMEOUT_S: Final = 10.0
SIGNATURE_HEADER: Final = "X-Rekap-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"


def milestone_id(event_id: str, ikm_id: str | None, threshold_idr: int) -> str:
    """The milestone's identity and Kafka key: ``<event>/<ikm or *>/<threshold>``."""
    return f"{event_id}/{ikm_id or '*'}/{threshold_idr}"


def thresholds_for(registry: Registry, event_id: str) -> tuple[int, ...]:
    event = registry.events.get(event_id)
    if event is None or event.milestones_idr is None:
        return DEFAULT_THRESHOLDS_IDR
    return event.milestones_idr


def announcement(registry: Registry, event_id: str, ikm_id: str | None, threshold_idr: int) -> str:
    """The notice in Bahasa Indonesia, names from the registry (ids if unknown)."""
    event = registry.events.get(event_id)
    event_name = event.name if event is not None else event_id
    amount = format_idr_short(threshold_idr)
    if ikm_id is None:
        return f"Penjualan {event_name} menembus {amount}"
    ikm = registry.ikm.get(ikm_id)
    return f"{ikm.name if ikm is not None else ikm_id} menembus {amount} di {event_name}"


@dataclass(frozen=True)
class Milestone:
    event_id: str
    ikm_id: str | None
    threshold_idr: int
    #: The net total when the crossing was seen, its version and as_of.
    amount_idr: int
    version: int
    as_of: str | None
    text: str
    announced_at: str

    @property
    def id(self) -> str:
        return milestone_id(self.event_id, self.ikm_id, self.threshold_idr)

    def to_record(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "id": self.id, "scope": "event" if self.ikm_id is None else "ikm",
                "event_id": self.event_id, "ikm_id": self.ikm_id,
                "threshold_idr": self.threshold_idr,
                "threshold_text": format_idr_short(self.threshold_idr),
                "amount_idr": self.amount_idr, "version": self.version, "as_of": self.as_of,
                "announced_at": self.announced_at, "text": self.text}

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_record(), separators=(",", ":"), ensure_ascii=False).encode()


def crossed(update: TotalsUpdate, registry: Registry, announced: Mapping[str, Any] | set[str],
            now: datetime | None = None) -> list[Milestone]:
    """The milestones ``update`` reaches that are not in ``announced``, lowest first. Pure."""
    ikm_id = update.ikm_id if isinstance(update, IkmTotals) else None
    stamp = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    out = []
    for threshold in thresholds_for(registry, update.event_id):
        if update.amount_idr < threshold:
            break
        if milestone_id(update.event_id, ikm_id, threshold) in announced:
            continue
        out.append(Milestone(update.event_id, ikm_id, threshold, update.amount_idr, update.version,
                             update.as_of, announcement(registry, update.event_id, ikm_id, threshold),
                             stamp))
    return out


def sign(secret: str, body: bytes) -> str:
    """The ``X-Rekap-Signature`` value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver checks (constant-time)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


@dataclass
class NotifierStats:
    #: milestones found in the topic at the last read-back
    known: int = 0
    announced: int = 0
    webhook_delivered: int = 0
    webhook_retries: int = 0
    webhook_failed: int = 0


class Notifier:
    """The milestone notifier (see the module docstring).

    ``group_id``: consumer group of the totals subscription (default
    ``<REKAP_APP_ID>-milestones``; the webhook sender uses ``<group>-webhook``).
    ``from_beginning``: re-read the totals topics whole. ``until_end``: stop once
    caught up with the totals topics and the webhook with the milestones topic.
    """

    def __init__(self, settings: Settings, *, group_id: str | None = None,
                 from_beginning: bool = False, until_end: bool = False,
                 webhook_give_up_s: float = WEBHOOK_GIVE_UP_S) -> None:
        if settings.milestones_webhook_url and not settings.milestones_webhook_secret:
            raise ConfigError("REKAP_MILESTONES_WEBHOOK_URL is set but REKAP_MILESTONES_WEBHOOK_SECRET "
                              "is empty: set the secret the receiver checks signatures with")
        self.settings = settings
        self.group_id = group_id or f"{settings.app_id}-milestones"
        self.from_beginning = from_beginning
        self.until_end = until_end
        self.webhook_give_up_s = webhook_give_up_s
        self.registry = RegistrySource(settings.registry_path)
        self.announced: dict[str, dict[str, Any]] = {}
        self.stats = NotifierStats()
        self._producer: Any = None

    async def run(self, *, handle_signals: bool = False) -> NotifierStats:
        """Follow the totals until stopped (SIGTERM/SIGINT with ``handle_signals``) or, with
        ``until_end``, caught up; a stop commits what was handled."""
        stop = asyncio.Event()
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        s = self.settings
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap.split(","),
                                    client_id=f"{s.app_id}-milestones",
                                    enable_idempotence=True, acks="all")
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise KafkaUnavailable(f"Kafka at {s.kafka_bootstrap} failed while starting the "
                                   f"milestones producer: {exc!r}") from exc
        self._producer = producer
        totals_done = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            tasks.append(asyncio.create_task(self._follow(), name="milestones-totals"))
            if s.milestones_webhook_url:
                tasks.append(asyncio.create_task(self._webhooks(totals_done), name="milestones-webhook"))
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({tasks[0], stopper}, return_when=asyncio.FIRST_COMPLETED)
            if tasks[0] in done:
                tasks[0].result()
                totals_done.set()
                if tasks[1:]:  # the webhook sender catches up with the milestones topic
                    await asyncio.wait({*tasks[1:], stopper}, return_when=asyncio.FIRST_COMPLETED)
                for t in tasks[1:]:
                    if t.done():
                        t.result()
            stopper.cancel()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            self._producer = None
            await producer.stop()
        return self.stats

    async def _follow(self) -> None:
        subscriber = Subscriber(self.settings, self.group_id, from_beginning=self.from_beginning,
                                until_end=self.until_end, on_assigned=self.read_back)
        async with subscriber:
            await subscriber.run(self._handle)
        log.info("milestones: totals %d taken, %d stale dropped, %d skipped", subscriber.stats.accepted,
                 subscriber.stats.stale, sum(subscriber.stats.skipped.values()))

    async def read_back(self) -> None:
        """Read the milestones topic whole: what was announced, by anyone, ever."""
        records = await read_milestones(self.settings)
        self.announced = records
        self.stats.known = len(records)
        log.info("milestones: %d already announced in %s", len(records), self.settings.topic_milestones)

    async def _handle(self, update: TotalsUpdate) -> None:
        for milestone in crossed(update, self.registry.current(), self.announced):
            try:
                await self._producer.send_and_wait(self.settings.topic_milestones,
                                                   key=milestone.id.encode(), value=milestone.to_bytes())
            except KafkaError as exc:
                # Not announced, and the totals offset is not committed: after a restart the
                # same update comes again and the milestone is announced then.
                raise KafkaUnavailable(f"writing milestone {milestone.id} to "
                                       f"{self.settings.topic_milestones} failed: {exc!r}") from exc
            self.announced[milestone.id] = milestone.to_record()
            self.stats.announced += 1
            log.info("milestone %s (total %d, v%d): %s", milestone.id, milestone.amount_idr,
                     milestone.version, milestone.text)

    async def _webhooks(self, totals_done: asyncio.Event) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            s.topic_milestones, bootstrap_servers=s.kafka_bootstrap.split(","),
            group_id=f"{self.group_id}-webhook", client_id=f"{s.app_id}-milestones-webhook",
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000))
        ends: dict[TopicPartition, int] | None = None
        async with aiohttp.ClientSession() as session:
            await consumer.start()
            try:
                while True:
                    if totals_done.is_set() and consumer.assignment():
                        if ends is None:
                            ends = await consumer.end_offsets(list(consumer.assignment()))
                        if all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                            return
                    batch = await consumer.getmany(timeout_ms=500)
                    for tp, messages in batch.items():
                        for m in messages:
                            if m.value is not None and m.key is not None:
                                await self.deliver(session, m.key.decode(), m.value)
                            await consumer.commit({tp: m.offset + 1})
            finally:
                await consumer.stop()

    async def deliver(self, session: aiohttp.ClientSession, milestone: str, body: bytes) -> bool:
        """POST one milestone record; retried (see the module docstring). Whether it landed."""
        s = self.settings
        headers = {"Content-Type": "application/json",
                   SIGNATURE_HEADER: sign(s.milestones_webhook_secret, body),
                   IDEMPOTENCY_HEADER: milestone}
        deadline = time.monotonic() + self.webhook_give_up_s
        attempt = 0
        while True:
            attempt += 1
            try:
                async with session.post(s.milestones_webhook_url, data=body, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S)) as resp:
                    status = resp.status
                if 200 <= status < 300:
                    self.stats.webhook_delivered += 1
                    return True
                why, retriable = f"HTTP {status}", status >= 500 or status in (408, 429)
            except (aiohttp.ClientError, TimeoutError) as exc:
                why, retriable = f"{type(exc).__name__}: {exc}", True
            wait = WEBHOOK_BACKOFF.wait_s(attempt)
            if not retriable or time.monotonic() + wait > deadline:
                self.stats.webhook_failed += 1
                log.error("milestone %s: webhook gave up after %d attempt(s) (%s); the milestone "
                          "stays in %s", milestone, attempt, why, s.topic_milestones)
                return False
            self.stats.webhook_retries += 1
            log.warning("milestone %s: webhook attempt %d failed (%s); retrying in %.1fs",
                        milestone, attempt, why, wait)
            await asyncio.sleep(wait)


async def read_milestones(settings: Settings, timeout_s: float = 60.0) -> dict[str, dict[str, Any]]:
    """Every milestone record of the topic, by id (the last per key; a tombstone removes it)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap.split(","), group_id=None,
                                enable_auto_commit=False, client_id=f"{settings.app_id}-milestones-read")
    out: dict[str, dict[str, Any]] = {}
    try:
        await consumer.start()
        topic = settings.topic_milestones
        parts = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic, settings)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout_s
        while not all([await consumer.position(tp) >= ends[tp] for tp in parts]):
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"reading {topic} back did not reach its end in {timeout_s:.0f}s")
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    _read_record(out, m)
    except KafkaError as exc:
        raise KafkaUnavailable(f"Kafka at {settings.kafka_bootstrap} failed while reading "
                               f"{settings.topic_milestones} back: {exc!r}") from exc
    finally:
        await stop_quietly(consumer)
    return out


def _read_record(out: dict[str, dict[str, Any]], m: Any) -> None:
    if m.key is None:
        return
    key = m.key.decode("utf-8", "replace")
    if m.value is None:
        out.pop(key, None)
        return
    try:
        out[key] = json.loads(m.value)
    except ValueError:
        # The key alone says it was announced; an unreadable body must not re-announce it.
        log.warning("milestone record %s at offset %d is not JSON; counted as announced", key, m.offset)
        out[key] = {}


__all__ = ["DEFAULT_THRESHOLDS_IDR", "Milestone", "Notifier",
           "NotifierStats", "announcement", "crossed", "milestone_id", "read_milestones", "sign",
           "signature_ok", "thresholds_for"]
