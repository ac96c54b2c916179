"""``rekap reconcile``: prove that Redis matches the sales topic (the ledger).

Reads the sales topic from the beginning to its current end (kafka-python),
folds it with :func:`rekap.ledger.fold` — an implementation independent of
the Lua script — and compares, key by key, every event, IKM, channel and day
integer and every leaderboard score with Redis. It also checks each tree's
``stats``: records = applied + duplicate:sale_id + rejected.

Redis is read one tree at a time in a MULTI/EXEC (one hash tag, one slot), so
each tree is a consistent snapshot together with its fences; the fold counts
exactly the records at or below those fences, so a worker that is still
applying does not cause false alarms. Before comparing, reconcile waits (up to
``--timeout`` seconds) until the fences cover every record read.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rekap.errors import KafkaUnavailable
from rekap.generations import current_keys_sync
from rekap.kafkaconn import reader, unavailable
from rekap.ledger import BOOKKEEPING_FIELDS, Ledger, fold
from rekap.money import format_idr
from rekap.names import Keys
from rekap.records import ConsumedRecord, classify
from rekap.registry import Registry
from rekap.settings import Settings


@dataclass
class TreeSnapshot:
    root: str
    fences: dict[int, int] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    hashes: dict[str, dict[str, int]] = field(default_factory=dict)
    boards: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class Report:
    records: int
    amount_idr: int
    differences: list[str]
    pending: int = 0
    #: The Redis snapshot that was compared and the sales topic's end offsets that were read:
    #: what was checked, for a caller that quotes it (consumers.report builds its figures
    #: from these, so every figure it prints is one this check covered).
    trees: dict[str, TreeSnapshot] = field(default_factory=dict, repr=False)
    ends: dict[int, int] = field(default_factory=dict)
    #: The keys (generation) the snapshot was read under.
    keys: Keys = field(default_factory=Keys)

    @property
    def ok(self) -> bool:
        return not self.differences


def read_topic(settings: Settings, topic: str | None = None,
               timeout_s: float = 60.0) -> tuple[list[ConsumedRecord], dict[int, int]]:
    """Every record of a topic (default: the sales topic) up to the end offsets seen at the start,
    sorted by partition and offset, and those end offsets."""
    from kafka import TopicPartition

    topic = topic or settings.topic_sales
    with (unavailable(f"reading {topic}", settings),
          reader(settings, "reconcile", max_poll_records=5000) as consumer):
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not parts:
            raise KafkaUnavailable(f"topic {topic} does not exist (run `rekap topics`)")
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out: list[ConsumedRecord] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"reading {topic} did not reach its end in {timeout_s}s")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                for m in batch:
                    if m.offset < ends[tp]:
                        out.append(ConsumedRecord(m.topic, m.partition, m.offset, m.key, m.value,
                                                  m.timestamp))
        out.sort(key=lambda r: (r.partition, r.offset))
        return out, {tp.partition: ends[tp] for tp in parts}


def parse_key(key: str, keys: Keys) -> tuple[str, str] | None:
    """(root, rest) of a tree key of ``keys``' generation, e.g. ``("lagawi-2022", "ev:x:days")``."""
    return keys.parse(key)


def snapshot(client: Any, keys: Keys, topic: str) -> dict[str, TreeSnapshot]:
    """Every tree's fences (of ``topic``), stats, totals/day hashes and boards, one MULTI
    per tree. Hashes hold the ledger's integer fields only (no :data:`BOOKKEEPING_FIELDS`)."""
    by_root: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for raw in client.scan_iter(match=keys.data_pattern(), count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        parsed = parse_key(key, keys)
        if parsed is not None:
            by_root[parsed[0]].append((key, parsed[1]))
    out: dict[str, TreeSnapshot] = {}
    fence_key_tail = f"fence:{topic}"
    for root, entries in by_root.items():
        wanted = [(k, rest) for k, rest in entries
                  if rest in ("stats", fence_key_tail) or (rest.startswith("ev:")
                                                          and not rest.endswith(":ticker"))]
        pipe = client.pipeline(transaction=True)
        for key, rest in wanted:
            if rest.endswith(":board"):
                pipe.zrange(key, 0, -1, withscores=True)
            else:
                pipe.hgetall(key)
        values = pipe.execute()
        snap = TreeSnapshot(root)
        for (key, rest), value in zip(wanted, values, strict=True):
            if rest == fence_key_tail:
                snap.fences = {int(p): int(o) for p, o in value.items()}
            elif rest == "stats":
                snap.stats = {_s(k): int(v) for k, v in value.items()}
            elif rest.endswith(":board"):
                snap.boards[key] = {_s(m): int(score) for m, score in value}
            else:
                snap.hashes[key] = {_s(f): int(v) for f, v in value.items()
                                    if _s(f) not in BOOKKEEPING_FIELDS}
        out[root] = snap
    return out


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def pending_records(records: Iterable[ConsumedRecord], registry: Registry,
                    trees: dict[str, TreeSnapshot]) -> int:
    """Records read that no fence covers yet (the worker has not applied them)."""
    n = 0
    for r in records:
        root, _ = classify(r, registry)
        fence = trees[root].fences.get(r.partition, -1) if root in trees else -1
        if r.offset > fence:
            n += 1
    return n


def compare(ledger: Ledger, trees: dict[str, TreeSnapshot]) -> list[str]:
    """Every difference between the fold and Redis, as readable lines."""
    return compare_totals(ledger, trees) + compare_stats(ledger, trees)


def compare_totals(ledger: Ledger, trees: dict[str, TreeSnapshot]) -> list[str]:
    """Every totals, day and leaderboard integer where Redis differs from the fold (absent = 0)."""
    diffs: list[str] = []
    actual_hashes = {k: v for t in trees.values() for k, v in t.hashes.items()}
    actual_boards = {k: v for t in trees.values() for k, v in t.boards.items()}
    for key in sorted(set(ledger.hashes) | set(actual_hashes)):
        want, have = ledger.hashes.get(key, {}), actual_hashes.get(key, {})
        for f in sorted(set(want) | set(have)):
            if want.get(f, 0) != have.get(f, 0):
                diffs.append(f"{key} {f}: ledger {want.get(f, 0)}, redis {have.get(f, 0)}")
    for key in sorted(set(ledger.boards) | set(actual_boards)):
        want, have = ledger.boards.get(key, {}), actual_boards.get(key, {})
        for m in sorted(set(want) | set(have)):
            if want.get(m, 0) != have.get(m, 0):
                diffs.append(f"{key} {m}: ledger {want.get(m, 0)}, redis {have.get(m, 0)}")
    return diffs


def compare_stats(ledger: Ledger, trees: dict[str, TreeSnapshot]) -> list[str]:
    """Every tree whose outcome counts differ from the fold's, or break
    records = applied + duplicate:sale_id + rejected."""
    diffs: list[str] = []
    for root in sorted(set(ledger.stats) | {r for r, t in trees.items() if t.stats}):
        want = ledger.stats.get(root, {})
        have = {k: v for k, v in (trees[root].stats if root in trees else {}).items()
                if k != "duplicate:offset"}
        for f in sorted(set(want) | set(have)):
            if want.get(f, 0) != have.get(f, 0):
                diffs.append(f"stats {{{root}}} {f}: ledger {want.get(f, 0)}, redis {have.get(f, 0)}")
        counted = sum(have.values())
        if counted != ledger.records.get(root, 0):
            diffs.append(f"stats {{{root}}}: {ledger.records.get(root, 0)} records but applied + "
                         f"duplicates + rejected = {counted}")
    return diffs


def reconcile(settings: Settings, registry: Registry, client: Any,
              timeout_s: float = 30.0) -> Report:
    keys = current_keys_sync(client, Keys(settings.redis_prefix))  # follows `rekap rebuild`
    records, ends = read_topic(settings)
    deadline = time.monotonic() + timeout_s
    while True:
        trees = snapshot(client, keys, settings.topic_sales)
        pending = pending_records(records, registry, trees)
        if pending == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    limits = {(root, p): off for root, t in trees.items() for p, off in t.fences.items()}
    ledger = fold(records, registry, keys, limits)
    diffs = compare(ledger, trees)
    if pending:
        diffs.insert(0, f"{pending} records are not applied yet (is the worker running?)")
    return Report(records=len(records), amount_idr=ledger.total_amount, differences=diffs,
                  pending=pending, trees=trees, ends=ends, keys=keys)


def run(settings: Settings, timeout_s: float = 30.0) -> Report:
    """``rekap reconcile`` without the printing."""

    from rekap.redisconn import REDIS_ERRORS, connect_sync, unavailable
    from rekap.registry import load_registry

    registry = load_registry(settings.registry_path)
    client = connect_sync(settings)
    try:
        return reconcile(settings, registry, client, timeout_s)
    except REDIS_ERRORS as exc:
        raise unavailable(settings, exc, "reading totals to reconcile") from exc
    finally:
        client.close()


def format_report(report: Report, limit: int = 50) -> str:
    if report.ok:
        return f"reconcile OK: {report.records} records, {format_idr(report.amount_idr)}"
    lines = [f"reconcile FAILED: {len(report.differences)} differences "
             f"({report.records} records read)"]
    lines += [f"  {d}" for d in report.differences[:limit]]
    if len(report.differences) > limit:
        lines.append(f"  … and {len(report.differences) - limit} more")
    return "\n".join(lines)
