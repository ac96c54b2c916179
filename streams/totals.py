"""Totals messages: absolute, versioned, one per changed key per batch.

After a batch is applied, every event and IKM totals hash its scripts touched
comes back with its absolute contents and ``version`` (:class:`TotalsSnapshot`).
This module turns them into ``rekap.totals.v1`` messages, coalesced to one per
Kafka key (the highest version wins), and keeps the highest version this worker
has published per key so a replay never publishes a lower version after a
higher one.

Message (value, JSON)::

    {"schema": "rekap.totals.v1", "scope": "event" | "ikm", "event_id": ..., "ikm_id": ...,
     "version": 12, "as_of": "2026-...Z", "amount_idr": ..., "gross_idr": ..., "refunds_idr": ...,
     "count": ..., "refund_count": ..., "quantity": ...,
     "channels": {"offline": {"amount_idr": ..., "count": ..., "refunds_idr": ...}, ...}}

Key: ``event_id`` on ``REKAP_TOPIC_TOTALS_EVENT``, ``event_id/ikm_id`` on
``REKAP_TOPIC_TOTALS_IKM`` (:func:`rekap.names.totals_key`).

Settling: the compacted tail converges to the newest version
------------------------------------------------------------
Compaction keeps the *last appended* message per key, and a "last message
wins" reader sees exactly that. With several workers the last appended message
need not carry the newest version: an event-level key is written by every
worker (each rolls its IKM partitions up into the same event). Worker A's
script returns version 41, B's returns 42, B's message reaches the broker
first, then A's 41 lands: the tail is stale, and stays stale if nothing
changes afterwards (the end of a programme). The highest-version subscriber
(:mod:`consumers.totals`) copes; compaction does not.

:class:`Settler` closes that gap, per worker, with one rule::

    Every message a worker appends for a key obliges it, after the broker's
    ack, to read the key's hash from Redis again. If the version read is the
    one it last appended, the obligation is discharged (the key is clean).
    If it is higher, it sends the value read, which is a new append and so a
    new obligation.

The worker keeps the keys it still owes a read (*dirty*, set before the first
send attempt, so a failed or partial send is covered too) and a settle pass
(a timer, every ``REKAP_TOTALS_SETTLE_S``, plus once at shutdown) reads their
``version`` fields in one Redis pipeline, then the whole hash of the few whose
version moved on (:meth:`Settler.sift`), in a second. Batch publishes and settle passes of one worker are
serialised by one lock, so "the last message this worker appended for a key"
is well defined and every read of a settle pass comes after the acks of
everything the worker sent before it.

Why it converges (any number of workers). Take a key, let ``V`` be its final
version in Redis, written at time ``t_V``, and let ``L`` be the last message
appended for the key, by worker ``W``. Once every obligation is discharged,
``W`` read the hash after ``L``'s ack and found ``L.version``: had it found
more, ``W`` would have appended again, after ``L``. Any change to the hash
after that read would have been published by the worker that made it (the
script returns the snapshot it wrote, and a crashed worker's batch is replayed
and re-published by the next owner), and that message would have been sent
after ``L`` was appended, so it would be later than ``L``. So nothing changed
after the read: the hash, with version ``L.version``, is the final one, i.e.
``L.version == V`` and ``L``'s values are Redis's values (a version identifies
the hash's contents: every change bumps it). Settle messages carry the hash
exactly as stored (``as_of`` included), so a re-sent version is byte-for-byte
the message the batch would have sent.

Costs and guarantees kept:

* coalesced: a settle pass sends at most one message per key, and only for a
  key that moved under the worker since its last send (on a single worker it
  sends nothing: the read finds the version the worker just published);
* one worker never sends a lower version after a higher one: a settle message
  goes through the same :class:`VersionGate` (Redis versions only grow, so
  the version read is at least anything the worker sent before);
* not tied to offsets: it republishes state already in Redis, so it needs no
  ack ordering with the batch; a failure leaves the keys dirty for the next pass.

Crashes: a worker SIGKILLed after appending a message but before its settle
read cannot discharge its obligation. Only event-level keys are shared
between workers (an IKM key is written by the owner of that IKM's partition
alone), and the rebalance that follows the crash makes every surviving worker
:meth:`Settler.force` the event-level keys of the registry: it re-sends their
current value (even at a version it already sent), which lands after the dead
worker's messages and is then confirmed like any other send.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from rekap.names import CHANNEL_FIELDS, CHANNELS, TOTAL_FIELDS, Keys, channel_field, totals_key
from rekap.redisconn import REDIS_ERRORS, AsyncClient, unavailable
from rekap.settings import Settings

log = logging.getLogger(__name__)

SCHEMA: Final = "rekap.totals.v1"

#: A totals message's place: (topic, Kafka key).
Slot = tuple[str, str]


@dataclass(frozen=True)
class TotalsSnapshot:
    """Absolute contents of one totals hash after a script call."""

    scope: Literal["event", "ikm"]
    root: str
    event_id: str
    ikm_id: str | None
    values: dict[str, str]

    @property
    def version(self) -> int:
        return int(self.values.get("version", 0))


@dataclass(frozen=True)
class TotalsRef:
    """Where a totals message's state lives: the Redis hash behind one Kafka key."""

    scope: Literal["event", "ikm"]
    root: str
    event_id: str
    ikm_id: str | None = None

    def redis_key(self, keys: Keys) -> str:
        if self.ikm_id is None:
            return keys.event_totals(self.root, self.event_id)
        return keys.ikm_totals(self.root, self.event_id, self.ikm_id)

    def slot(self, settings: Settings) -> Slot:
        topic = settings.topic_totals_event if self.scope == "event" else settings.topic_totals_ikm
        return topic, totals_key(self.event_id, self.ikm_id)

    def snapshot(self, values: dict[str, str]) -> TotalsSnapshot:
        return TotalsSnapshot(self.scope, self.root, self.event_id, self.ikm_id, values)


@dataclass(frozen=True)
class TotalsMessage:
    topic: str
    key: str
    version: int
    value: dict[str, Any]
    #: The hash it was read from, so a settle pass can read it again.
    ref: TotalsRef | None = field(default=None, compare=False)

    @property
    def slot(self) -> Slot:
        return self.topic, self.key

    def value_bytes(self) -> bytes:
        # Compact UTF-8 JSON, keys in insertion order: what json.dumps(separators=(",", ":"),
        # ensure_ascii=False) writes for these strings and integers, at a tenth of the cost.
        return orjson.dumps(self.value)


#: (channel, ((field, hash field name), ...)) of every channel: names built once, not per message.
_CHANNEL_NAMES: Final = tuple((c, tuple((f, channel_field(c, f)) for f in CHANNEL_FIELDS))
                              for c in CHANNELS)


def message_value(snapshot: TotalsSnapshot) -> dict[str, Any]:
    values = snapshot.values
    value: dict[str, Any] = {"schema": SCHEMA, "scope": snapshot.scope,
                             "event_id": snapshot.event_id}
    if snapshot.ikm_id is not None:
        value["ikm_id"] = snapshot.ikm_id
    value["version"] = snapshot.version
    value["as_of"] = values.get("as_of")
    for name in TOTAL_FIELDS:
        value[name] = int(values.get(name, 0))
    value["channels"] = {c: {f: int(values.get(name, 0)) for f, name in names}
                         for c, names in _CHANNEL_NAMES}
    return value


def to_message(snapshot: TotalsSnapshot, settings: Settings) -> TotalsMessage:
    topic = settings.topic_totals_event if snapshot.scope == "event" else settings.topic_totals_ikm
    ref = TotalsRef(snapshot.scope, snapshot.root, snapshot.event_id, snapshot.ikm_id)
    return TotalsMessage(topic, totals_key(snapshot.event_id, snapshot.ikm_id), snapshot.version,
                         message_value(snapshot), ref)


def coalesce(snapshots: Iterable[TotalsSnapshot], settings: Settings) -> list[TotalsMessage]:
    """One message per (topic, key): the snapshot with the highest version."""
    best: dict[tuple[str, str], TotalsMessage] = {}
    for snap in snapshots:
        msg = to_message(snap, settings)
        slot = (msg.topic, msg.key)
        if slot not in best or msg.version > best[slot].version:
            best[slot] = msg
    return list(best.values())


class VersionGate:
    """The highest version published per (topic, key) by this process.

    :meth:`fresh` drops messages whose version is not above what was already
    published; :meth:`published` records versions once the broker acknowledged them.
    """

    def __init__(self) -> None:
        self._published: dict[tuple[str, str], int] = {}
        self._refs: dict[tuple[str, str], TotalsRef] = {}

    def fresh(self, messages: Iterable[TotalsMessage]) -> list[TotalsMessage]:
        return [m for m in messages if m.version > self._published.get((m.topic, m.key), 0)]

    def published(self, messages: Iterable[TotalsMessage]) -> None:
        for m in messages:
            slot = (m.topic, m.key)
            if m.version > self._published.get(slot, 0):
                self._published[slot] = m.version
                if m.ref is not None:
                    self._refs[slot] = m.ref

    def floors(self) -> list[tuple[TotalsRef, int]]:
        """Each hash this process published and the highest version it sent from it."""
        return [(ref, self._published[slot]) for slot, ref in self._refs.items()]

    def last(self, topic: str, key: str) -> int:
        return self._published.get((topic, key), 0)


class Settler:
    """The keys this worker still owes a read after its last send (see the module docstring).

    Pure bookkeeping; the caller does the I/O, holding one lock around both
    batch publishes and settle passes::

        settler.watch(messages)            # before sending a batch's messages
        refs = settler.pending()           # a settle pass: read these hashes ...
        out = settler.plan(list(zip(refs, hashes)))   # ... and send ``out``
        gate.published(out)                # after the acks (a failure: just retry later)
    """

    def __init__(self, gate: VersionGate, settings: Settings) -> None:
        self.gate = gate
        self.settings = settings
        self._dirty: dict[Slot, TotalsRef] = {}
        self._forced: set[Slot] = set()

    def watch(self, messages: Iterable[TotalsMessage]) -> None:
        """Messages about to be sent: each key owes a read after the acks."""
        for m in messages:
            if m.ref is not None:
                self._dirty[m.slot] = m.ref

    def force(self, refs: Iterable[TotalsRef]) -> None:
        """Re-send these keys' current values at the next pass, even at a version already sent.

        For keys another (possibly dead) worker may have left stale: after a rebalance.
        """
        for ref in refs:
            slot = ref.slot(self.settings)
            self._dirty[slot] = ref
            self._forced.add(slot)

    def pending(self) -> list[TotalsRef]:
        """The hashes to read in the next pass."""
        return list(self._dirty.values())

    def sift(self, versions: Iterable[tuple[TotalsRef, int]]) -> list[TotalsRef]:
        """First half of a pass, on the versions alone (0 for a hash that is gone): discharge
        every key :meth:`plan` would discharge, and return the keys to read in full and plan.

        Nearly every key of a pass is still at the version this worker sent, so a
        pass reads one field per key and whole hashes only for the few that moved.
        """
        full: list[TotalsRef] = []
        for ref, version in versions:
            slot = ref.slot(self.settings)
            if slot not in self._dirty:
                continue
            if self._resend(slot, version):
                full.append(ref)
            else:
                self._discharge(slot, version)
        return full

    def plan(self, current: Iterable[tuple[TotalsRef, dict[str, str]]]) -> list[TotalsMessage]:
        """Given the hashes just read (after every earlier send was acked): what to send.

        A key whose hash still holds the version this worker last sent is clean.
        A key that moved on is sent again (and stays dirty until a later pass
        finds it unchanged). Gone or behind (a rebuild under a running worker):
        dropped, nothing to fix by re-sending.
        """
        out: list[TotalsMessage] = []
        for ref, values in current:
            slot = ref.slot(self.settings)
            if slot not in self._dirty:
                continue
            snap = ref.snapshot(values)
            version = snap.version if values else 0
            if self._resend(slot, version):
                out.append(to_message(snap, self.settings))
                self._forced.discard(slot)  # forced once; dirty until found unchanged
            else:
                self._discharge(slot, version)
        return out

    def _resend(self, slot: Slot, version: int) -> bool:
        """Whether ``slot``, found at ``version`` (0: gone), is to be sent again."""
        last = self.gate.last(*slot)
        return version > 0 and (version > last or (slot in self._forced and version == last))

    def _discharge(self, slot: Slot, version: int) -> None:
        last = self.gate.last(*slot)
        if 0 < version < last:
            log.warning("totals %s: Redis holds version %d, below the %d already published "
                        "(rebuilt under a running worker?); not re-sent", slot, version, last)
        del self._dirty[slot]
        self._forced.discard(slot)


async def read_versions(client: AsyncClient, keys: Keys, refs: Sequence[TotalsRef],
                        settings: Settings) -> list[tuple[TotalsRef, int]]:
    """Each ref with its totals hash's ``version`` now (0 if the hash is gone), in one round
    trip."""
    try:
        async with client.pipeline(transaction=False) as pipe:
            for ref in refs:
                pipe.hget(ref.redis_key(keys), "version")
            versions = await pipe.execute()
    except REDIS_ERRORS as exc:
        raise unavailable(settings, exc, "re-reading totals versions to settle") from exc
    return [(ref, int(v) if v is not None else 0) for ref, v in zip(refs, versions, strict=True)]


async def read_totals(client: AsyncClient, keys: Keys, refs: Sequence[TotalsRef],
                      settings: Settings) -> list[tuple[TotalsRef, dict[str, str]]]:
    """Each ref with its totals hash as Redis holds it now (one pipeline round trip)."""
    try:
        async with client.pipeline(transaction=False) as pipe:
            for ref in refs:
                pipe.hgetall(ref.redis_key(keys))
            hashes = await pipe.execute()
    except REDIS_ERRORS as exc:
        raise unavailable(settings, exc, "re-reading totals to settle") from exc
    return [(ref, {k.decode(): v.decode() for k, v in h.items()})
            for ref, h in zip(refs, hashes, strict=True)]
