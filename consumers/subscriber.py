"""Subscribe to the totals topics: typed updates, highest version wins, resume after restart.

The library a downstream service (awards scoring, dashboards, notifications,
``rekap milestones``) builds on. The worker publishes ``rekap.totals.v1``
messages (:mod:`streams.totals`; JSON Schema ``rekap/data/totals.v1.schema.json``)
to two compacted topics: ``REKAP_TOPIC_TOTALS_EVENT`` (key ``event_id``) and
``REKAP_TOPIC_TOTALS_IKM`` (key ``event_id/ikm_id``). Each carries *absolute*
totals, so a subscriber never adds anything up: it keeps the latest per key::

    async with Subscriber(settings, group_id="awards-scoring") as totals:
        async for update in totals:            # EventTotals | IkmTotals, newest only
            ...                                # or: await totals.run(callback)

Highest version wins
    Every message has a ``version`` that only grows per key. A message whose
    version is not above the last one seen for its key is dropped (counted in
    :attr:`SubscriberStats.stale`): a duplicate (the worker re-sends a key's
    current state after a crash or in a settle pass), an out-of-order one (two
    workers publish the same event key; the slower one's older view may land
    last) or a replay (the subscriber re-reads what it already had). The rule
    keeps no clock and trusts no arrival order, so it is the only rule needed.

Rebuilds keep versions increasing
    ``rekap rebuild`` re-derives every total from the ledger and lifts each
    rebuilt totals hash's ``version`` above the one it replaces (see
    :mod:`consumers.rebuild`), so a rebuilt total is published *above* every
    version before it and is taken, never mistaken for a stale replay.

Delivery: at least once, harmless by the version rule
    With a ``group_id`` the subscriber joins that Kafka consumer group and
    commits a message's offset only after the caller handled it: after
    ``run``'s callback returned, or once ``async for`` asked for the next update
    (offsets are committed after each fetched batch and on :meth:`Subscriber.stop`).
    A crash between handling and committing re-delivers at most the batch in
    flight after a restart; the caller sees the same versions again, which
    is what the version rule (or the caller's own idempotency, such as the
    milestone ids of :mod:`consumers.milestones`) makes harmless. The version
    memory lives in the process: a caller that keeps state across restarts
    keeps each key's version with it and passes them back in ``versions``.
    A new group starts at the beginning of the topics; ``from_beginning=True``
    re-reads them whole (a fresh view) in a group that has committed offsets.
    Without a ``group_id`` nothing is committed and every start is a fresh view.

Bad messages
    :func:`parse_totals` never raises, whatever the bytes (the style of
    :func:`rekap.contract.parse_sale`): a message that is not a valid totals
    message is skipped, logged with topic, partition and offset, and counted
    under a :class:`SkipReason` in :attr:`SubscriberStats.skipped`.

Kafka client: aiokafka (the worker's client, through Faust), not kafka-python.
A subscriber is a long-lived group member that waits on the network, and its
users (the notifier's webhook, an async web app) live in an event loop: an
async client heartbeats and fetches in that loop with no thread per consumer,
and gives both APIs (callback and ``async for``) without a thread hand-off.
The synchronous one-shot readers of ``rekap reconcile``/``rebuild`` stay on
kafka-python (:mod:`rekap.kafkaconn`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from rekap.contract import Rejection, decode_object
from rekap.errors import KafkaUnavailable
from rekap.settings import Settings

log = logging.getLogger(__name__)

SCHEMA: Final = "rekap.totals.v1"
#: Integer totals of every message, as in :data:`rekap.names.TOTAL_FIELDS`.
TOTAL_FIELDS: Final = ("amount_idr", "gross_idr", "refunds_idr", "count", "refund_count", "quantity")
CHANNEL_FIELDS: Final = ("amount_idr", "count", "refunds_idr")

Scope = Literal["event", "ikm"]
#: Where a key's latest update is held: (scope, Kafka key).
Slot = tuple[Scope, str]


class SkipReason(StrEnum):
    """Why a message on a totals topic was skipped. Closed set, counted per reason."""

    #: not JSON, empty, a tombstone, too large or hostile (rekap.contract.decode_object)
    UNDECODABLE = "undecodable"
    UNKNOWN_SCHEMA = "unknown_schema"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    #: the Kafka key is not ``event_id`` / ``event_id/ikm_id`` of the value
    KEY_MISMATCH = "key_mismatch"


@dataclass(frozen=True)
class Skipped:
    reason: SkipReason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True)
class ChannelTotals:
    amount_idr: int
    count: int
    refunds_idr: int


@dataclass(frozen=True)
class EventTotals:
    """Absolute totals of one event (its own IKM and its child events' rolled up)."""

    scope: ClassVar[Scope] = "event"
    event_id: str
    version: int
    as_of: str | None
    #: Net: gross_idr - refunds_idr.
    amount_idr: int
    gross_idr: int
    refunds_idr: int
    count: int
    refund_count: int
    quantity: int
    channels: Mapping[str, ChannelTotals] = field(hash=False)

    @property
    def key(self) -> str:
        return self.event_id

    @property
    def slot(self) -> Slot:
        return (self.scope, self.key)


@dataclass(frozen=True)
class IkmTotals:
    """Absolute totals of one IKM within one event."""

    scope: ClassVar[Scope] = "ikm"
    event_id: str
    ikm_id: str
    version: int
    as_of: str | None
    amount_idr: int
    gross_idr: int
    refunds_idr: int
    count: int
    refund_count: int
    quantity: int
    channels: Mapping[str, ChannelTotals] = field(hash=False)

    @property
    def key(self) -> str:
        return f"{self.event_id}/{self.ikm_id}"

    @property
    def slot(self) -> Slot:
        return (self.scope, self.key)


TotalsUpdate = EventTotals | IkmTotals


class _Bad(Exception):
    def __init__(self, reason: SkipReason, detail: str) -> None:
        self.skipped = Skipped(reason, detail)


def parse_totals(key: bytes | str | None, value: bytes | str | Mapping[str, Any] | None
                 ) -> TotalsUpdate | Skipped:
    """One totals message as a model, or why not. Never raises, whatever the bytes.

    ``key`` is the Kafka key (None: not checked). Unknown fields are ignored, so a
    later minor change of the message does not break a subscriber.
    """
    try:
        if isinstance(value, Mapping):
            doc: Mapping[str, Any] = value
        else:
            decoded = decode_object(value)
            if isinstance(decoded, Rejection):
                return Skipped(SkipReason.UNDECODABLE, str(decoded))
            doc = decoded
        return _model(doc, key)
    except _Bad as exc:
        return exc.skipped
    except Exception as exc:  # a bug here must cost one message, not the subscriber
        return Skipped(SkipReason.WRONG_TYPE, f"{type(exc).__name__}: {str(exc)[:120]}")


def _model(doc: Mapping[str, Any], key: bytes | str | None) -> TotalsUpdate:
    if doc.get("schema") != SCHEMA:
        raise _Bad(SkipReason.UNKNOWN_SCHEMA, f"schema {str(doc.get('schema'))[:40]!r}, want {SCHEMA}")
    scope = doc.get("scope")
    if scope not in ("event", "ikm"):
        raise _Bad(SkipReason.WRONG_TYPE, f"scope {str(scope)[:40]!r} is not 'event' or 'ikm'")
    event_id = _text(doc, "event_id")
    ikm_id = _text(doc, "ikm_id") if scope == "ikm" else None
    version = _int(doc, "version")
    if version < 1:
        raise _Bad(SkipReason.WRONG_TYPE, f"version {version} is not positive")
    as_of = doc.get("as_of")
    if as_of is not None and not isinstance(as_of, str):
        raise _Bad(SkipReason.WRONG_TYPE, "as_of is not a string or null")
    totals = {name: _int(doc, name) for name in TOTAL_FIELDS}
    channels = doc.get("channels")
    if not isinstance(channels, Mapping):
        raise _Bad(SkipReason.MISSING_FIELD if channels is None else SkipReason.WRONG_TYPE,
                   "channels is not an object")
    parsed: dict[str, ChannelTotals] = {}
    for name, ch in channels.items():
        if not isinstance(ch, Mapping):
            raise _Bad(SkipReason.WRONG_TYPE, f"channels.{str(name)[:40]} is not an object")
        parsed[str(name)] = ChannelTotals(*(_int(ch, f, f"channels.{name}.") for f in CHANNEL_FIELDS))
    frozen = MappingProxyType(parsed)
    update: TotalsUpdate
    if ikm_id is None:
        update = EventTotals(event_id, version, as_of, **totals, channels=frozen)
    else:
        update = IkmTotals(event_id, ikm_id, version, as_of, **totals, channels=frozen)
    if key is not None:
        text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        if text != update.key:
            raise _Bad(SkipReason.KEY_MISMATCH, f"key {text[:80]!r} but the value is {update.key[:80]!r}")
    return update


def _text(doc: Mapping[str, Any], name: str) -> str:
    value = doc.get(name)
    if value is None:
        raise _Bad(SkipReason.MISSING_FIELD, f"{name} is missing")
    if not isinstance(value, str) or not value:
        raise _Bad(SkipReason.WRONG_TYPE, f"{name} is not a non-empty string")
    return value


def _int(doc: Mapping[str, Any], name: str, where: str = "") -> int:
    value = doc.get(name)
    if value is None:
        raise _Bad(SkipReason.MISSING_FIELD, f"{where}{name} is missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(SkipReason.WRONG_TYPE, f"{where}{name} is not an integer")
    return value


class TotalsView:
    """The latest update per key, by version: the highest-version-wins rule, with no I/O."""

    def __init__(self, versions: Mapping[Slot, int] | None = None) -> None:
        self.latest: dict[Slot, TotalsUpdate] = {}
        self._versions: dict[Slot, int] = dict(versions or {})

    def offer(self, update: TotalsUpdate) -> bool:
        """Keep ``update`` if its version is above the one held for its key; say whether it was."""
        if update.version <= self._versions.get(update.slot, 0):
            return False
        self._versions[update.slot] = update.version
        self.latest[update.slot] = update
        return True

    def version(self, slot: Slot) -> int:
        return self._versions.get(slot, 0)

    def event(self, event_id: str) -> EventTotals | None:
        found = self.latest.get(("event", event_id))
        return found if isinstance(found, EventTotals) else None

    def ikm(self, event_id: str, ikm_id: str) -> IkmTotals | None:
        found = self.latest.get(("ikm", f"{event_id}/{ikm_id}"))
        return found if isinstance(found, IkmTotals) else None


@dataclass
class SubscriberStats:
    accepted: int = 0
    #: dropped by the version rule (duplicate, out of order, replay)
    stale: int = 0
    skipped: Counter[SkipReason] = field(default_factory=Counter)


Callback = Callable[[TotalsUpdate], Awaitable[None] | None]


class Subscriber:
    """A follower of the totals topics (see the module docstring).

    ``group_id``: the Kafka consumer group whose committed offsets it resumes
    from (None: no group, nothing committed, always from the beginning).
    ``from_beginning``: with a group, re-read the topics whole this time (a fresh
    view) instead of resuming. ``scopes``: which topics, ``("event", "ikm")`` by
    default. ``versions``: known versions per key, for a caller that persists its
    state. ``until_end``: stop once the end offsets seen at assignment are read
    (a catch-up run); ``idle_timeout_s``: stop after this long without a message.
    ``on_assigned``: awaited after each partition assignment, before any message
    of it is handed out (the notifier re-reads its announcements there).
    """

    def __init__(self, settings: Settings, group_id: str | None = None, *,
                 from_beginning: bool = False, scopes: Iterable[Scope] = ("event", "ikm"),
                 versions: Mapping[Slot, int] | None = None, until_end: bool = False,
                 idle_timeout_s: float | None = None,
                 on_assigned: Callable[[], Awaitable[None]] | None = None) -> None:
        self.settings = settings
        self.group_id = group_id
        self.from_beginning = from_beginning or group_id is None
        wanted = set(scopes)
        self.topics = [t for s, t in (("event", settings.topic_totals_event),
                                      ("ikm", settings.topic_totals_ikm)) if s in wanted]
        self.view = TotalsView(versions)
        self.stats = SubscriberStats()
        self.until_end = until_end
        self.idle_timeout_s = idle_timeout_s
        self.on_assigned = on_assigned
        self._consumer: Any = None
        #: Next offset to commit per partition: of messages the caller has handled.
        self._handled: dict[Any, int] = {}
        self._rewound: set[Any] = set()
        #: Bumped by every assignment (the rebalance listener); the assignment and generation
        #: the caller's ``on_assigned`` hook last ran for.
        self._generation = 0
        self._ready: tuple[int, frozenset[Any]] | None = None
        self._ends: dict[Any, int] = {}

    async def __aenter__(self) -> Subscriber:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect and subscribe; :class:`KafkaUnavailable` if Kafka or a topic is missing."""
        if self._consumer is not None:
            return
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap.split(","), group_id=self.group_id,
            client_id=f"{s.app_id}-totals-{self.group_id or 'reader'}",
            # Commits follow the caller's handling, never a timer (at least once).
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000))
        try:
            await consumer.start()
            parts = [TopicPartition(t, p) for t in self.topics
                     for p in await partitions_of(consumer, t, s)]
            if self.group_id is None:
                consumer.assign(parts)
                self._rewound.update(parts)
                await consumer.seek_to_beginning(*parts)
            else:
                consumer.subscribe(self.topics, listener=_Listener(self))
        except KafkaError as exc:
            await stop_quietly(consumer)
            raise KafkaUnavailable(f"Kafka at {s.kafka_bootstrap} failed while subscribing to "
                                   f"{', '.join(self.topics)}: {exc!r}") from exc
        except BaseException:
            await stop_quietly(consumer)
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        """Commit what was handled and leave the group."""
        if self._consumer is None:
            return
        consumer, self._consumer = self._consumer, None
        try:
            await self._commit(consumer)
        finally:
            await consumer.stop()

    def __aiter__(self) -> AsyncIterator[TotalsUpdate]:
        return self._updates()

    async def run(self, callback: Callback) -> SubscriberStats:
        """Call ``callback(update)`` (a function or a coroutine function) for each accepted
        update, committing after it returns; until ``until_end``/``idle_timeout_s`` (or forever).
        An exception from the callback stops the run with that message not committed."""
        async for update in self:
            result = callback(update)
            if inspect.isawaitable(result):
                await result
        return self.stats

    async def _updates(self) -> AsyncIterator[TotalsUpdate]:
        owned = self._consumer is None
        await self.start()
        consumer = self._consumer
        last_message = time.monotonic()
        try:
            while True:
                if self.until_end and await self._at_end(consumer):
                    return
                if self.idle_timeout_s is not None and \
                        time.monotonic() - last_message > self.idle_timeout_s:
                    return
                try:
                    batch = await consumer.getmany(timeout_ms=500)
                except KafkaError as exc:
                    raise KafkaUnavailable(f"reading the totals topics failed: {exc!r}") from exc
                if not await self._prepared(consumer, batch):
                    continue
                for tp, messages in batch.items():
                    for m in messages:
                        last_message = time.monotonic()
                        update = self._accept(m)
                        if update is not None:
                            yield update
                        self._handled[tp] = m.offset + 1
                await self._commit(consumer)
        finally:
            if owned:
                await self.stop()

    async def _prepared(self, consumer: Any, batch: Mapping[Any, list[Any]]) -> bool:
        """Whether ``batch`` may be handed out; if not, it is to be fetched again.

        Runs here, in the iterating task, rather than in the rebalance listener: aiokafka
        may return records of a new assignment before its listener has run, and it logs
        and swallows a listener's exceptions, where a failed ``on_assigned`` must stop the
        subscriber.
        """
        state = (self._generation, frozenset(consumer.assignment()))
        if state == self._ready:
            return True
        for tp, messages in batch.items():
            consumer.seek(tp, messages[0].offset)
        if self.from_beginning:
            fresh = [tp for tp in state[1] if tp not in self._rewound]
            if fresh:
                await consumer.seek_to_beginning(*fresh)
                self._rewound.update(fresh)
        if self.on_assigned is not None:
            await self.on_assigned()
        self._ready = state
        return not batch

    def _accept(self, m: Any) -> TotalsUpdate | None:
        parsed = parse_totals(m.key, m.value)
        if isinstance(parsed, Skipped):
            self.stats.skipped[parsed.reason] += 1
            log.warning("totals message skipped at %s/%d offset %d: %s", m.topic, m.partition,
                        m.offset, parsed)
            return None
        if not self.view.offer(parsed):
            self.stats.stale += 1
            return None
        self.stats.accepted += 1
        return parsed

    async def _commit(self, consumer: Any) -> None:
        if self.group_id is None or not self._handled:
            return
        owned = consumer.assignment()
        offsets = {tp: o for tp, o in self._handled.items() if tp in owned}
        self._handled.clear()
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # Lost the partitions in a rebalance: their next owner re-reads from the last
            # commit, which the version rule makes harmless.
            log.warning("totals offsets not committed (%r); they will be delivered again", exc)

    async def _at_end(self, consumer: Any) -> bool:
        parts = consumer.assignment()
        if not parts or self._ready != (self._generation, frozenset(parts)):
            return False  # not assigned, or not yet rewound and prepared
        missing = [tp for tp in parts if tp not in self._ends]
        if missing:
            self._ends.update(await consumer.end_offsets(missing))
        for tp in parts:
            if await consumer.position(tp) < self._ends[tp]:
                return False
        return True


async def partitions_of(consumer: Any, topic: str, settings: Settings) -> list[int]:
    """The partitions of ``topic``, from fresh cluster metadata; :class:`KafkaUnavailable`
    naming the remedy if the topic does not exist."""
    # A consumer's own metadata covers only the topics it already tracks.
    cluster = await consumer._client.fetch_all_metadata()
    found = cluster.partitions_for_topic(topic)
    if not found:
        raise KafkaUnavailable(f"topic {topic} does not exist at {settings.kafka_bootstrap}; "
                               "create the topics with `rekap topics`")
    return sorted(found)


async def stop_quietly(consumer: Any) -> None:
    """Stop a client on an error path: its own stop errors must not hide the error at hand.

    (aiokafka 0.14 raises CancelledError from ``stop()`` right after a ``start()``, from a
    coordinator task cancelled before it ran.)
    """
    with contextlib.suppress(asyncio.CancelledError, KafkaError):
        await consumer.stop()


class _Listener(ConsumerRebalanceListener):
    """Commits handled offsets before partitions move; marks each new assignment, which the
    iterating task prepares (rewind, ``on_assigned``) before handing out its records."""

    def __init__(self, subscriber: Subscriber) -> None:
        self._sub = subscriber

    async def on_partitions_revoked(self, revoked: Any) -> None:
        consumer = self._sub._consumer
        if consumer is not None:
            await self._sub._commit(consumer)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._sub._ends = {}
        self._sub._generation += 1


def read_view(settings: Settings, *, timeout_s: float = 60.0) -> TotalsView:
    """Both totals topics read from the beginning to their current end: the latest per key.

    Synchronous, for commands and tests; no group, nothing committed.
    """
    async def read() -> TotalsView:
        sub = Subscriber(settings, until_end=True)
        async with sub:
            async for _ in sub:
                pass
        return sub.view

    return asyncio.run(asyncio.wait_for(read(), timeout_s))
