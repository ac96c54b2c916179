"""The compacted totals topics end on the newest version of every key, with several workers.

Compaction keeps the last message per key, so "last message wins" must agree
with Redis once the workers have settled (:class:`streams.totals.Settler`).

* a deterministic model of N workers whose sends reach the broker out of order
  (pure: :class:`Settler` and :class:`VersionGate` with a fake Redis and log);
* the settle pass of :class:`streams.agents.Pipeline` against real Redis with a
  fake producer that fails once (counted, retried, never raised);
* two real workers in one group over real Kafka and Redis, checked after every
  wave of sales.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import redis

from consumers.subscriber import Skipped, TotalsView, parse_totals
from producers.simulator.synthetic import generate
from rekap.names import Keys
from rekap.registry import load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from streams import metrics
from streams.totals import (
    Settler,
    TotalsMessage,
    TotalsRef,
    TotalsSnapshot,
    VersionGate,
    coalesce,
    message_value,
)
from tests.streams.test_worker import counted
from tests.support.kafka import produce_json
from tests.support.procs import free_port, wait_until
from tests.support.worker import start_worker

REGISTRY = load_registry(DEFAULT_REGISTRY)
EVENT = TotalsRef("event", "lagawi-2022", "lagawi-2022")
#: Settings for the pure tests: only the topic names matter.
UNIT = Settings()


# --- a pure model: workers, one Redis hash, one log ------------------------------------------

@dataclass
class ModelWorker:
    """One worker: a gate, a settler, and sends that reach the log later (in its own order)."""

    settings: Settings
    settle: bool
    gate: VersionGate = field(default_factory=VersionGate)
    in_flight: list[TotalsMessage] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    settler: Settler = field(init=False)

    def __post_init__(self) -> None:
        self.settler = Settler(self.gate, self.settings)

    def send(self, messages: list[TotalsMessage]) -> None:
        if self.settle:
            self.settler.watch(messages)
        self.in_flight.extend(messages)
        self.sent.extend(m.version for m in messages)


class Model:
    """Redis holds one event hash; the broker log is append order across workers."""

    def __init__(self, settings: Settings, workers: int, settle: bool) -> None:
        self.settings = settings
        self.hash: dict[str, str] = {}
        self.log: list[TotalsMessage] = []
        self.workers = [ModelWorker(settings, settle) for _ in range(workers)]

    def apply(self, w: ModelWorker, amount: int) -> None:
        """The script: change the hash atomically and return its snapshot; the batch publishes it."""
        version = int(self.hash.get("version", 0)) + 1
        self.hash = {"version": str(version), "amount_idr":
                     str(int(self.hash.get("amount_idr", 0)) + amount), "count":
                     str(int(self.hash.get("count", 0)) + 1), "as_of": f"t{version}"}
        snap = TotalsSnapshot("event", EVENT.root, EVENT.event_id, None, dict(self.hash))
        w.send(w.gate.fresh(coalesce([snap], self.settings)))

    def deliver(self, w: ModelWorker) -> None:
        """The broker appends everything ``w`` has in flight and acks it."""
        self.log.extend(w.in_flight)
        w.gate.published(w.in_flight)
        w.in_flight = []

    def settle(self, w: ModelWorker) -> None:
        """A settle pass: only after w's earlier sends were acked (the publish lock's premise)."""
        assert not w.in_flight
        refs = w.settler.pending()  # the Pipeline's two reads: versions, then moved hashes
        moved = w.settler.sift([(r, int(self.hash.get("version", 0))) for r in refs])
        w.send(w.settler.plan([(r, dict(self.hash)) for r in moved]))

    def tail(self) -> int:
        return self.log[-1].version


def test_model_stale_tail_without_settle_and_converges_with_it() -> None:
    """A reads 41, B reads 42, B's message lands first: the tail is 41 until A settles."""
    for settle in (False, True):
        m = Model(UNIT, 2, settle)
        a, b = m.workers
        for _ in range(40):
            m.apply(a, 1000)
            m.deliver(a)
        m.apply(a, 5)          # version 41, A's message is slow
        m.apply(b, 7)          # version 42
        m.deliver(b)
        m.deliver(a)           # ... and lands last
        assert m.tail() == 41
        for w in (b, a, b, a):
            m.settle(w)
            m.deliver(w)
        if settle:
            assert m.tail() == 42
            assert m.log[-1].value == message_value(
                TotalsSnapshot("event", EVENT.root, EVENT.event_id, None, m.hash))
            assert not a.settler.pending() and not b.settler.pending()
            # Bounded: A re-sent 42 once, B nothing.
            assert [x.version for x in m.log[-2:]] == [41, 42]
        else:
            assert m.tail() == 41


def test_model_overtaken_settle_message_is_followed_up() -> None:
    """A's settle message (42) is itself overtaken by B's 43, then lands: A must follow up."""
    m = Model(UNIT, 2, settle=True)
    a, b = m.workers
    m.apply(a, 1)              # 1
    m.apply(b, 1)              # 2
    m.deliver(b)
    m.deliver(a)               # tail 1
    m.settle(a)                # A reads 2, sends 2 (slow)
    m.apply(b, 1)              # 3
    m.deliver(b)
    m.settle(b)                # B reads 3 == its last: clean
    m.deliver(b)
    m.deliver(a)               # A's 2 lands after B's 3
    assert m.tail() == 2
    m.settle(a)                # A reads 3 > 2: sends 3
    m.deliver(a)
    assert m.tail() == 3
    m.settle(a)
    assert not a.in_flight and not a.settler.pending()


@pytest.mark.parametrize("seed", range(40))
def test_model_random_interleavings_converge(seed: int) -> None:
    """Any number of workers, random applies, delivery order and settle timing."""
    rng = random.Random(seed)
    m = Model(UNIT, rng.randint(2, 5), settle=True)
    for _ in range(rng.randint(20, 200)):
        w = rng.choice(m.workers)
        step = rng.random()
        if step < 0.5:
            m.apply(w, rng.randint(1, 9))
        elif step < 0.8:
            m.deliver(w)
        elif not w.in_flight:
            m.settle(w)
    # Quiet: deliver what is in flight in a random order, then settle until nobody owes a read.
    for w in rng.sample(m.workers, len(m.workers)):
        m.deliver(w)
    for _ in range(10):
        for w in rng.sample(m.workers, len(m.workers)):
            m.settle(w)
        for w in rng.sample(m.workers, len(m.workers)):
            m.deliver(w)
        if not any(w.settler.pending() for w in m.workers):
            break
    assert not any(w.settler.pending() for w in m.workers)
    assert m.tail() == int(m.hash["version"])
    # Each worker's own sends never go down.
    for w in m.workers:
        assert w.sent == sorted(w.sent), w.sent


def test_settler_single_worker_sends_nothing_and_force_resends() -> None:
    settings = UNIT
    gate = VersionGate()
    s = Settler(gate, settings)
    snap = TotalsSnapshot("event", EVENT.root, EVENT.event_id, None,
                          {"version": "5", "amount_idr": "10", "as_of": "x"})
    msgs = coalesce([snap], settings)
    s.watch(msgs)
    gate.published(msgs)
    assert s.plan([(EVENT, dict(snap.values))]) == []      # unchanged: confirmed
    assert s.pending() == []
    s.force([EVENT])
    again = s.plan([(EVENT, dict(snap.values))])
    assert [x.version for x in again] == [5] and again[0].value == msgs[0].value
    gate.published(again)
    assert s.plan([(EVENT, dict(snap.values))]) == [] and s.pending() == []
    s.force([EVENT])
    assert s.plan([(EVENT, {})]) == [] and s.pending() == []   # no hash: nothing to send


def test_settler_sift_reads_whole_hashes_only_for_keys_that_moved() -> None:
    gate = VersionGate()
    s = Settler(gate, UNIT)
    snap = TotalsSnapshot("event", EVENT.root, EVENT.event_id, None,
                          {"version": "5", "amount_idr": "10", "as_of": "x"})
    msgs = coalesce([snap], UNIT)
    s.watch(msgs)
    gate.published(msgs)
    assert s.sift([(EVENT, 5)]) == [] and s.pending() == []   # unchanged: discharged on the version
    s.watch(msgs)
    assert s.sift([(EVENT, 7)]) == [EVENT] and s.pending() == [EVENT]   # moved on: read it all
    s.force([EVENT])
    assert s.sift([(EVENT, 5)]) == [EVENT]                    # forced: sent even at 5 ...
    again = s.plan([(EVENT, dict(snap.values))])
    assert [m.version for m in again] == [5]
    gate.published(again)
    assert s.sift([(EVENT, 5)]) == [] and s.pending() == []   # ... once
    s.watch(msgs)
    assert s.sift([(EVENT, 0)]) == [] and s.pending() == []   # gone: nothing to send


# --- the Pipeline's settle pass: real Redis, fake producer -----------------------------------

class FlakyProducer:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, key: bytes, value: bytes, *_: Any) -> Any:
        import asyncio

        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failures:
            self.failures -= 1
            fut.set_exception(RuntimeError("broker down"))
        else:
            self.sent.append((topic, key, value))
            fut.set_result(None)
        return fut


@pytest.mark.integration
async def test_pipeline_settle_pass_retries_and_counts(settings: Settings,
                                                       redis_client: redis.Redis) -> None:
    from streams.agents import Pipeline

    app = type("App", (), {})()
    app.producer = FlakyProducer(failures=1)
    pipeline = Pipeline(app, settings)
    keys = Keys(settings.redis_prefix)
    redis_key = EVENT.redis_key(keys)
    redis_client.hset(redis_key, mapping={"version": 3, "amount_idr": 300, "count": 3,
                                          "as_of": "2022-06-01T00:00:00.000Z"})
    # This worker published version 2; another worker has moved the hash to 3 since.
    snap = TotalsSnapshot("event", EVENT.root, EVENT.event_id, None,
                          {"version": "2", "amount_idr": "200", "count": "2"})
    msgs = coalesce([snap], settings)
    pipeline.settler.watch(msgs)
    pipeline.gate.published(msgs)

    errors = metrics.KAFKA_ERRORS.labels("totals_settle")
    before = errors._value.get()
    await pipeline.settle_safely()                       # the producer fails: logged, counted
    assert errors._value.get() == before + 1
    assert pipeline.settler.pending() == [EVENT] and app.producer.sent == []
    await pipeline.settle_safely()                       # retried: version 3 goes out
    assert [json.loads(v)["version"] for _, _, v in app.producer.sent] == [3]
    assert json.loads(app.producer.sent[0][2])["amount_idr"] == 300
    assert pipeline.gate.last(settings.topic_totals_event, EVENT.event_id) == 3
    await pipeline.settle_safely()                       # confirmed: nothing more
    assert len(app.producer.sent) == 1 and pipeline.settler.pending() == []
    # After a rebalance every event-level key is re-sent once, at its current version.
    pipeline.force_shared()
    assert await pipeline.settle() == 1
    assert await pipeline.settle() == 0
    await pipeline.applier.client.aclose()


# --- two real workers --------------------------------------------------------------------------

def redis_totals(client: redis.Redis, keys: Keys) -> dict[str, dict[str, Any]]:
    """``topic-less key`` -> the message value Redis holds now, for every totals hash."""
    out = {}
    for raw in client.scan_iter(match=f"{keys.prefix}:*:ev:*", count=1000):
        tag, rest = raw.decode().split("}:", 1)
        root, parts = tag.rsplit("{", 1)[1], rest.split(":")
        if len(parts) == 2:
            ref = TotalsRef("event", root, parts[1])
        elif len(parts) == 4 and parts[2] == "ikm":
            ref = TotalsRef("ikm", root, parts[1], parts[3])
        else:
            continue
        raw_hash: dict[bytes, bytes] = client.hgetall(raw)  # type: ignore[assignment]
        values = {k.decode(): v.decode() for k, v in raw_hash.items()}
        out[f"{ref.scope}|{ref.event_id}" + (f"/{ref.ikm_id}" if ref.ikm_id else "")] = \
            message_value(ref.snapshot(values))
    return out


class TotalsTail:
    """One consumer over both totals topics, read from the beginning, incrementally.

    ``messages`` is every message in topic order as ``("<scope>|<key>", value)``;
    :meth:`last_wins` is what compaction keeps: the last message per key.
    """

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.scope = {settings.topic_totals_event: "event", settings.topic_totals_ikm: "ikm"}
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                      enable_auto_commit=False)
        self.parts = [TopicPartition(t, p) for t in self.scope
                      for p in sorted(self.consumer.partitions_for_topic(t) or [])]
        self.consumer.assign(self.parts)
        self.consumer.seek_to_beginning(*self.parts)
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def read_to_end(self) -> list[tuple[str, dict[str, Any]]]:
        ends = self.consumer.end_offsets(self.parts)
        while any(self.consumer.position(tp) < ends[tp] for tp in self.parts):
            for tp, batch in self.consumer.poll(timeout_ms=200).items():
                self.messages.extend((f"{self.scope[tp.topic]}|{m.key.decode()}",
                                      json.loads(m.value)) for m in batch)
        return self.messages

    def last_wins(self) -> dict[str, dict[str, Any]]:
        return dict(self.read_to_end())

    def close(self) -> None:
        self.consumer.close()


def partition_of(ikm_id: str, partitions: int = 3) -> int:
    """The sales partition of an IKM (the producers' default partitioner: murmur2 of the key)."""
    from kafka.partitioner.default import murmur2

    return (murmur2(ikm_id.encode()) & 0x7FFFFFFF) % partitions


def pair_waves(sales: list[dict[str, Any]], a: list[int], b: list[int],
               n: int) -> list[list[dict[str, Any]]]:
    """``n`` waves of two new sales at once, one for each worker, both in the shared event."""
    mine = [s for s in sales if s["kind"] == "sale" and partition_of(s["ikm_id"]) in a]
    yours = [s for s in sales if s["kind"] == "sale" and partition_of(s["ikm_id"]) in b]
    return [[{**mine[i % len(mine)], "sale_id": f"pair-{i}-a"},
             {**yours[i % len(yours)], "sale_id": f"pair-{i}-b"}] for i in range(n)]


@pytest.mark.integration
def test_two_workers_compacted_tail_equals_redis(settings: Settings,
                                                 redis_client: redis.Redis) -> None:
    """After every wave: the last message per key (what compaction keeps) is Redis's hash.

    Small batches and a short window make both workers publish the shared event
    keys often and close together; the pair waves end with both workers
    updating ``lagawi-2022`` at the same instant, the race that can leave an
    older version last.
    """
    settings = replace(settings, batch_max=4)
    keys = Keys(settings.redis_prefix)
    values = generate(REGISTRY, 240, seed=11)
    tail = TotalsTail(settings)
    a = start_worker(settings)
    b = start_worker(settings, extra_env={"REKAP_WORKER_PORT": str(free_port())})
    stale_waves: set[int] = set()
    try:
        wait_until(lambda: (set(a.assigned()) | set(b.assigned()) == {0, 1, 2}
                            and a.assigned() and b.assigned()
                            and not set(a.assigned()) & set(b.assigned())),
                   timeout=60, message="both workers hold partitions")
        waves = [values[i:i + 80] for i in range(0, len(values), 80)]
        waves += pair_waves(values, a.assigned(), b.assigned(), 24)
        sent = 0
        for n, wave in enumerate(waves):
            produce_json(settings, wave)
            sent += len(wave)
            wait_until(lambda: counted(redis_client, keys) == sent, timeout=30,  # noqa: B023
                       interval=0.02, message=f"wave {n} counted")
            truth = redis_totals(redis_client, keys)

            wrong: dict[str, tuple[int | None, int]] = {}

            def settled(truth: dict[str, dict[str, Any]] = truth, n: int = n,
                        wrong: dict[str, tuple[int | None, int]] = wrong) -> bool:
                last = tail.last_wins()
                wrong.clear()
                wrong.update({k: ((last.get(k) or {}).get("version"), v["version"])
                              for k, v in truth.items() if last.get(k) != v})
                if wrong:
                    stale_waves.add(n)
                return not wrong and set(last) == set(truth)

            try:
                wait_until(settled, timeout=8, interval=0.2)
            except TimeoutError:
                pytest.fail(f"wave {n}: the last message per key is not Redis's hash "
                            f"(key: (tail version, Redis version)): {wrong}")
        # Redis does not move any more; the final tail is exactly Redis, field for field.
        messages = tail.read_to_end()
        truth = redis_totals(redis_client, keys)
        assert tail.last_wins() == truth
    finally:
        b.stop()
        a.stop()
        tail.close()
    # Waves whose tail was wrong at first look (in flight, or the race that settling repaired).
    print(f"waves not settled at first look: {sorted(stale_waves)}")

    # The highest-version subscriber agrees, and never goes backwards.
    view = TotalsView()
    accepted: dict[str, list[int]] = defaultdict(list)
    per_key: dict[str, list[int]] = defaultdict(list)
    for key, doc in messages:
        per_key[key].append(doc["version"])
        update = parse_totals(key.split("|", 1)[1], doc)
        assert not isinstance(update, Skipped), (key, update)
        if view.offer(update):
            accepted[key].append(doc["version"])
    for key, seq in accepted.items():
        assert seq == sorted(set(seq)), (key, seq)
        assert seq[-1] == truth[key]["version"], key
    # An IKM key has one writer at a time (its partition's owner): its versions only grow.
    for key, seq in per_key.items():
        if key.startswith("ikm|"):
            assert seq == sorted(seq), (key, seq)


def test_a_totals_message_is_the_compact_json_of_its_value() -> None:
    """orjson writes it; subscribers got json.dumps' bytes before, and get the same now."""
    snap = TotalsSnapshot("ikm", EVENT.root, EVENT.event_id, "ikm-ñ",
                          {"version": "7", "as_of": "2026-12-06T18:00:00.000Z",
                           "amount_idr": "-125000", "count": "3", "ch:website:count": "2"})
    [msg] = coalesce([snap], UNIT)
    assert msg.value_bytes() == json.dumps(msg.value, separators=(",", ":"),
                                           ensure_ascii=False).encode()
    assert msg.value["amount_idr"] == -125000 and msg.value["channels"]["website"]["count"] == 2
    assert msg.value["channels"]["offline"] == {"amount_idr": 0, "count": 0, "refunds_idr": 0}
