"""The worker's own per-batch work, without Kafka or Faust: plan, apply, observe.

Usage::

    .venv/bin/python -m bench.apply [--records 20000] [--batch 1000] [--partitions 3]

Feeds the same generated stream as :mod:`bench.throughput` (records placed on
partitions with growing offsets, as Kafka would) through
:func:`streams.batch.plan_batch` and :meth:`streams.apply.Applier.apply` against
the real Redis, under a fresh key prefix that is deleted afterwards, and
prints per-batch milliseconds of each step plus the script's own time inside
Redis (``INFO commandstats``, ``cmdstat_evalsha``; the server is shared, so
that figure includes any other client's EVALSHA run meanwhile). The totals are
verified against the stream's sums, like the throughput benchmark does.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
import zlib
from dataclasses import replace
from typing import Any

from bench.throughput import encode_stream, generate_stream, verify
from rekap.names import Keys
from rekap.records import ConsumedRecord
from rekap.redisconn import SyncClient, connect, connect_sync
from rekap.registry import load_registry
from rekap.settings import Settings
from streams import metrics
from streams.apply import Applier
from streams.batch import plan_batch


def evalsha_usec(client: SyncClient) -> tuple[int, int]:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("usec", 0)), int(stats.get("calls", 0))


def place(pairs: list[tuple[bytes, bytes]], topic: str, partitions: int) -> list[ConsumedRecord]:
    offsets = [0] * partitions
    out = []
    for key, value in pairs:
        p = zlib.crc32(key) % partitions
        out.append(ConsumedRecord(topic, p, offsets[p], key, value, int(time.time() * 1000)))
        offsets[p] += 1
    return out


async def run(settings: Settings, records: list[ConsumedRecord], batch: int
              ) -> dict[str, list[float]]:
    registry = load_registry(settings.registry_path)
    keys = Keys(settings.redis_prefix)
    client = connect(settings)
    applier = Applier(client, settings)
    times: dict[str, list[float]] = {"plan": [], "apply": [], "observe": []}
    try:
        for i in range(0, len(records), batch):
            chunk = records[i:i + batch]
            t0 = time.perf_counter()
            plan = plan_batch(chunk, registry, keys)
            t1 = time.perf_counter()
            result = await applier.apply(plan)
            t2 = time.perf_counter()
            metrics.observe_batch(result, chunk)
            t3 = time.perf_counter()
            times["plan"].append(t1 - t0)
            times["apply"].append(t2 - t1)
            times["observe"].append(t3 - t2)
    finally:
        await client.aclose()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.apply", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    base = Settings.from_env()
    tag = f"benchapply{uuid.uuid4().hex[:8]}"
    settings = replace(base, redis_prefix=tag, topic_sales=f"{tag}.sales")
    registry = load_registry(settings.registry_path)
    values = generate_stream(registry, args.records, args.seed)
    records = place(encode_stream(values), settings.topic_sales, args.partitions)
    client = connect_sync(settings)
    try:
        usec0, calls0 = evalsha_usec(client)
        t0 = time.perf_counter()
        times = asyncio.run(run(settings, records, args.batch))
        wall = time.perf_counter() - t0
        usec1, calls1 = evalsha_usec(client)
        keys = Keys(settings.redis_prefix)
        roots = sorted({registry.root(e) for e in registry.events} | {"_unrouted"})
        verify(client, values, registry, keys, roots)
    finally:
        found = list(client.scan_iter(match=f"{tag}:*", count=1000))
        for i in range(0, len(found), 500):
            client.delete(*found[i:i + 500])
        client.close()
    batches = len(times["plan"])
    row: dict[str, Any] = {k: 1000 * statistics.median(v) for k, v in times.items()}
    redis_ms = (usec1 - usec0) / 1000 / max(1, calls1 - calls0)
    print(f"{len(records)} records in {batches} batches of {args.batch}: {len(records) / wall:,.0f} rec/s "
          f"(verified)")
    print("per batch, median ms: " + "  ".join(f"{k} {v:.1f}" for k, v in row.items())
          + f"  (script inside Redis, mean: {redis_ms:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
