"""Redis memory per sale and leaderboard read latency, against the real Redis.

Usage::

    .venv/bin/python -m bench.memory [--sales 100000] [--ikm 30,10000,100000] [--reads 1000]

For each IKM scale, a registry of one event with that many IKM and a seeded
stream of ``--sales`` records (sales, refunds, identical resends) come from
:mod:`bench.scale`; the stream is applied under a fresh Redis prefix through the
worker's own :func:`streams.batch.plan_batch` and :meth:`streams.apply.Applier.apply`
(:func:`bench.apply.run`), verified against the ledger model, and measured with
``MEMORY USAGE <key> SAMPLES 0`` summed per key group:

* de-dup: the tree's de-dup buckets, per booked record (sale or refund: one
  entry each), the fullest bucket, and how many hold more than the 128 entries
  the bucket count is sized for (past a server's ``hash-max-listpack-entries``
  a bucket leaves Redis' compact listpack encoding);
* pair: the totals and day hashes of one (event, IKM), per pair with sales;
* board: the leaderboard sorted set, per IKM on it.

``MEMORY USAGE`` counts a key's value, its name and its dict entry; not the
main dictionary's bucket array (about 8-16 bytes more per key). Then the top-10
leaderboard query the read API serves (:func:`streams.web.queries.leaderboard`)
is run ``--reads`` times, one after the other, and its p50/p99 reported. Every
key under the prefix is deleted at the end. Three scales of 100 000 records take
about a minute on the development machine.

:func:`measure` is one scale, for other reports to call.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from bench import scale
from bench.apply import place, run
from bench.throughput import encode_stream, verify
from consumers.reconcile import parse_key
from rekap.names import Keys
from rekap.redisconn import SyncClient, connect, connect_sync
from rekap.registry import Registry
from rekap.settings import Settings
from streams.web import queries

#: Key groups reported, by what follows ``P:{R}:`` in a key's name.
GROUPS = ("dedup", "pair", "board", "other")
#: The ``hash-max-listpack-entries`` that :data:`rekap.names.DEDUP_BUCKETS` is sized for: on a
#: server with this limit a bucket with more entries is a hashtable (Redis' own default is 512).
SIZED_FOR_ENTRIES = 128


def group_of(rest: str) -> str:
    parts = rest.split(":")
    if parts[0] == "dedup":
        return "dedup"
    if parts[0] == "ev" and len(parts) >= 4 and parts[2] == "ikm":
        return "pair"
    if parts[0] == "ev" and parts[-1] == "board":
        return "board"
    return "other"


def memory_by_group(client: SyncClient, keys: Keys) -> tuple[dict[str, int], dict[str, list[str]]]:
    """(bytes, key names) per group, for every key under the prefix."""
    names: dict[str, list[str]] = defaultdict(list)
    for raw in client.scan_iter(match=keys.pattern(), count=1000):
        key = raw.decode()
        parsed = parse_key(key, keys)
        names[group_of(parsed[1]) if parsed else "other"].append(key)
    sizes: dict[str, int] = {}
    for group in GROUPS:
        pipe = client.pipeline(transaction=False)
        for key in names[group]:
            pipe.memory_usage(key, samples=0)
        sizes[group] = sum(int(n or 0) for n in pipe.execute())
    return sizes, names


def per_key(client: SyncClient, keys: list[str], command: str) -> list[bytes | int]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command(*command.split(), key)
    return list(pipe.execute())


async def leaderboard_ms(settings: Settings, registry: Registry, reads: int) -> list[float]:
    """Milliseconds of each of ``reads`` top-10 leaderboard queries, run one after another."""
    reader = queries.Reader(Keys(settings.redis_prefix), registry)
    client = connect(settings)
    out = []
    try:
        for _ in range(reads):
            t0 = time.perf_counter()
            await queries.run(client, queries.leaderboard(reader, scale.EVENT, 10))
            out.append(1000 * (time.perf_counter() - t0))
    finally:
        await client.aclose()
    return out


def measure(ikm: int = 100_000, sales: int = 100_000, *, reads: int = 1000, batch: int = 1000,
            partitions: int = 6, seed: int = 7, settings: Settings | None = None) -> dict[str, float]:
    """Apply ``sales`` records over ``ikm`` IKM under a fresh prefix and measure; see the module
    docstring. Keys are deleted afterwards, also on failure."""
    base = settings or Settings.from_env()
    tag = f"benchmem{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="rekap-bench-memory-") as tmp:
        path = Path(tmp) / f"registry-{ikm}.toml"
        registry = scale.load(path, ikm)
        own = replace(base, redis_prefix=tag, topic_sales=f"{tag}.sales", registry_path=path)
        values = scale.stream(registry, sales, seed=seed, prefix=f"m{seed}")
        records = place(encode_stream(values), own.topic_sales, partitions)
        keys = Keys(tag)
        client = connect_sync(own)
        try:
            t0 = time.perf_counter()
            asyncio.run(run(own, records, batch))
            apply_s = time.perf_counter() - t0
            stats = verify(client, values, registry, keys, [scale.EVENT])
            sizes, names = memory_by_group(client, keys)
            dedup = names["dedup"]
            lengths = [int(n) for n in per_key(client, dedup, "HLEN")]
            hashtables = sum(e == b"hashtable" for e in per_key(client, dedup, "OBJECT ENCODING"))
            listpack_max = int(client.config_get("hash-max-listpack-entries")
                               .get("hash-max-listpack-entries") or SIZED_FOR_ENTRIES)
            on_boards = sum(int(n) for n in per_key(client, names["board"], "ZCARD"))
            pairs = sum(1 for k in names["pair"] if not k.endswith(":days"))
            reads_ms = asyncio.run(leaderboard_ms(own, registry, reads)) if reads else [0.0]
        finally:
            found = list(client.scan_iter(match=f"{tag}:*", count=1000))
            for i in range(0, len(found), 500):
                client.delete(*found[i:i + 500])
            client.close()
    return {
        "ikm": ikm, "records": len(records), "booked": stats.get("applied", 0),
        "apply_s": apply_s,
        "dedup_bytes": sizes["dedup"], "dedup_keys": len(dedup), "dedup_entries": sum(lengths),
        "dedup_fullest": max(lengths, default=0),
        # Buckets past the limit the bucket count is sized for, whatever this server's is.
        "dedup_over_128": sum(n > SIZED_FOR_ENTRIES for n in lengths),
        "dedup_hashtable_keys": hashtables, "server_listpack_entries": listpack_max,
        "dedup_bytes_per_sale": sizes["dedup"] / max(1, sum(lengths)),
        "pairs": pairs, "pair_bytes_per_pair": sizes["pair"] / max(1, pairs),
        "board_members": on_boards, "board_bytes_per_ikm": sizes["board"] / max(1, on_boards),
        "other_bytes": sizes["other"],
        "leaderboard_p50_ms": statistics.median(reads_ms),
        "leaderboard_p99_ms": percentile(reads_ms, 0.99),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(rows: list[dict[str, float]]) -> str:
    head = ("| IKM | records | de-dup B/sale | de-dup keys, fullest, > 128 | totals+days B/(event, IKM) "
            "| board B/IKM | top-10 read p50 / p99 ms |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        lines.append(
            f"| {r['ikm']:,.0f} | {r['records']:,.0f} | {r['dedup_bytes_per_sale']:.1f} "
            f"| {r['dedup_keys']:,.0f}, {r['dedup_fullest']:.0f}, {r['dedup_over_128']:.0f} "
            f"| {r['pair_bytes_per_pair']:.0f} | {r['board_bytes_per_ikm']:.1f} "
            f"| {r['leaderboard_p50_ms']:.2f} / {r['leaderboard_p99_ms']:.2f} |")
    odd = {r["server_listpack_entries"] for r in rows} - {SIZED_FOR_ENTRIES}
    if odd:
        lines.append(f"\nThis Redis keeps hashes of up to {odd.pop():.0f} entries as listpacks; "
                     f"on a server with hash-max-listpack-entries {SIZED_FOR_ENTRIES} (what the "
                     "bucket count is sized for) the buckets counted under '> 128' would be "
                     "hashtables, at about 80 bytes per entry.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sales", type=int, default=100_000, help="records per scale")
    parser.add_argument("--ikm", default="30,10000,100000", help="IKM scales, comma separated")
    parser.add_argument("--reads", type=int, default=1000, help="leaderboard reads per scale")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rows = [measure(int(n), args.sales, reads=args.reads, seed=args.seed)
            for n in args.ikm.split(",")]
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
