"""End-to-end latency: from a sale's send to its totals being visible in Redis, at fixed loads.

Usage::

    .venv/bin/python -m bench.latency [--loads 1000,5000] [--seconds 12] [--runs 1]
                                      [--ikm 30] [--partitions 6]

Per run: fresh topics, group and Redis prefix (as :mod:`bench.throughput`), one
``rekap worker`` child started and caught up (a warm-up of
:data:`WARMUP_RECORDS` records applied), then for each offered load in turn
(order reversed every other run) ``load × seconds`` records of the generated
stream (:mod:`bench.scale`) are sent at that fixed pace by an aiokafka producer
(``acks=all``). Each record's send time is taken just before it is handed to
the producer; its partition and offset come from the send's result.

Visible means the worker's script has applied it: the script writes
``HSET P:{R}:fence:<topic> <partition> <last applied offset>`` atomically with
the totals of tree ``R`` (:class:`rekap.names.Keys`), so the fence of the
records' tree (the generated registry has one) passing an offset means that
record's totals can be read. A poller in its own process (so
the producer's event loop and GIL do not delay it) reads that hash every
:data:`POLL_S` and notes when each partition's fence changes, stamped with the
time the reply arrived. A record is visible at the first change whose fence
reaches its offset; latency = that time - send time. The poll interval bounds
the error (a reading is late by at most one interval plus a round trip).

Reported per load and run: records, achieved send rate, p50/p95/p99/max in ms,
records never seen (should be 0) and the 99 percentile cut points; the summary
is the median over runs of each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import multiprocessing
import shutil
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import scale
from bench.throughput import (
    BenchError,
    Scale,
    child,
    cleanup,
    encode_stream,
    fresh_settings,
    prepare_scale,
    produce,
    read_stats,
    run_cli,
    settled,
    wait_for,
    workspace,
)
from rekap.names import Keys
from rekap.redisconn import SyncClient, connect_sync
from rekap.settings import Settings
from rekap.topics import ensure_topics

#: Seconds between two reads of the fence hash by the poller (the measurement's resolution).
POLL_S = 0.001
#: Records sent and applied before the measured loads: the worker has its partitions and its
#: Redis script loaded, and has caught up.
WARMUP_RECORDS = 200
#: Seconds the last record of a load may take to become visible before the run fails.
VISIBLE_TIMEOUT_S = 60.0
#: Seconds the poller may take to start (a spawned interpreter importing redis).
POLLER_START_TIMEOUT_S = 30.0


@dataclass
class LatencySample:
    load_rps: int
    run: int
    records: int
    #: Records per second the producer actually offered (sends / time from first to last send).
    achieved_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    #: Records whose offset no fence reached before the poller stopped (a bug if not 0).
    missing: int
    #: Mean seconds between two polls of the fence hash in this run (the resolution).
    poll_interval_ms: float
    #: The 99 cut points of the latency distribution (1st..99th percentile), ms.
    percentiles_ms: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------- the poller


def poll_fences(redis_url: str, key: str, stop: Any, conn: Connection) -> None:
    """Child process: read ``key`` every :data:`POLL_S` until ``stop`` is set, then send
    ``(changes, polls, seconds)`` where changes are ``(reply time, partition, fence)``."""
    client = connect_sync(Settings(redis_url=redis_url))
    last: dict[int, int] = {}
    changes: list[tuple[float, int, int]] = []
    polls, started = 0, time.time()
    conn.send("ready")
    tick = started
    while not stop.is_set():
        fences = client.hgetall(key)
        now = time.time()
        polls += 1
        for raw_p, raw_o in fences.items():
            p, o = int(raw_p), int(raw_o)
            if last.get(p) != o:
                last[p] = o
                changes.append((now, p, o))
        tick += POLL_S
        wait = tick - time.time()
        if wait > 0:
            time.sleep(wait)
        else:  # fell behind (a busy machine): poll again at once, do not burst to catch up
            tick = time.time()
    conn.send((changes, polls, time.time() - started))
    conn.close()
    client.close()


@contextmanager
def poller(redis_url: str, key: str) -> Iterator[Any]:
    """Run :func:`poll_fences` in a spawned process; yields a function that stops it and returns
    its ``(changes, polls, seconds)``. The process is killed on the way out whatever happens."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    mine, theirs = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=poll_fences, args=(redis_url, key, stop, theirs), daemon=True,
                       name="bench-fence-poller")
    proc.start()
    theirs.close()

    def finish() -> tuple[list[tuple[float, int, int]], int, float]:
        stop.set()
        if not mine.poll(VISIBLE_TIMEOUT_S):
            raise BenchError("the fence poller did not report back")
        changes, polls, seconds = mine.recv()
        return changes, polls, seconds

    try:
        if not mine.poll(POLLER_START_TIMEOUT_S) or mine.recv() != "ready":
            raise BenchError("the fence poller did not start")
        yield finish
    finally:
        stop.set()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        mine.close()


# --------------------------------------------------------------------------- the paced load


async def paced_send(settings: Settings, pairs: list[tuple[bytes, bytes]], rate: float
                     ) -> tuple[list[tuple[int, int, float]], float]:
    """Send ``pairs`` at ``rate`` records/s; return ``(partition, offset, send time)`` per record
    and the achieved rate. Record ``i`` is due ``i / rate`` s after the start; the loop sleeps
    until the next one is due and sends every record already due (asyncio sleeps in ~1 ms steps,
    so at 5,000/s records leave in small bursts, each stamped with its own send time)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=0)
    await producer.start()
    try:
        sent: list[float] = []
        futures = []
        start = time.time()
        for i, (key, value) in enumerate(pairs):
            wait = start + i / rate - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            sent.append(time.time())
            futures.append(await producer.send(settings.topic_sales, value, key=key))
        await producer.flush()
        metas = await asyncio.wait_for(asyncio.gather(*futures), VISIBLE_TIMEOUT_S)
    finally:
        await producer.stop()
    span = sent[-1] - sent[0] if len(sent) > 1 else 0.0
    achieved = (len(sent) - 1) / span if span > 0 else float("nan")
    return [(m.partition, m.offset, t) for m, t in zip(metas, sent, strict=True)], achieved


def latencies_ms(sends: list[tuple[int, int, float]], changes: list[tuple[float, int, int]]
                 ) -> tuple[list[float], int]:
    """Each send's latency (ms) to the first fence change reaching its offset; and how many
    sends no change reached."""
    seen: dict[int, tuple[list[int], list[float]]] = {}
    for at, p, fence in changes:
        fences, times = seen.setdefault(p, ([], []))
        if not fences or fence > fences[-1]:  # fences only grow; ignore anything else
            fences.append(fence)
            times.append(at)
    out: list[float] = []
    missing = 0
    for p, offset, sent in sends:
        fences, times = seen.get(p, ([], []))
        i = bisect.bisect_left(fences, offset)
        if i == len(fences):
            missing += 1
        else:
            out.append(1000 * (times[i] - sent))
    return out, missing


def sample(load: int, run: int, sends: list[tuple[int, int, float]], achieved: float,
           changes: list[tuple[float, int, int]], poll_interval_ms: float) -> LatencySample:
    lat, missing = latencies_ms(sends, changes)
    if len(lat) < 2:
        raise BenchError(f"latency at {load}/s: only {len(lat)} of {len(sends)} records seen")
    cuts = statistics.quantiles(lat, n=100, method="inclusive")
    return LatencySample(load, run, len(sends), achieved, cuts[49], cuts[94], cuts[98], max(lat),
                         missing, poll_interval_ms, [round(c, 3) for c in cuts])


# --------------------------------------------------------------------------- one run


def fences_reach(client: SyncClient, key: str, sends: list[tuple[int, int, float]]) -> bool:
    want: dict[int, int] = {}
    for p, offset, _ in sends:
        want[p] = max(want.get(p, -1), offset)
    have = {int(p): int(o) for p, o in client.hgetall(key).items()}
    return all(have.get(p, -1) >= o for p, o in want.items())


def run_latency(base: Settings, workdir: Path, stream: Scale, loads: list[int], seconds: float,
                run: int, client: SyncClient, seed: int) -> list[LatencySample]:
    """One worker, caught up, then each load in turn (reversed on odd runs)."""
    settings = fresh_settings(replace(base, registry_path=stream.registry_path.resolve()),
                              "latency", workdir)
    registry = stream.registry
    keys = Keys(settings.redis_prefix)
    trees = sorted({registry.root(e) for e in registry.events})
    if len(trees) != 1:
        raise BenchError(f"the latency run needs a registry of one event tree, not {trees}")
    roots = [*trees, "_unrouted"]
    # The fence of the tree the records belong to: it is written in the same script call as
    # their totals. (Other trees' fences advance too, but in their own calls.)
    key = keys.fence(trees[0], settings.topic_sales)
    order = loads if run % 2 == 0 else list(reversed(loads))
    pending: list[tuple[int, list[tuple[int, int, float]], float]] = []
    ok = False
    try:
        ensure_topics(settings)
        with child(settings, ["-m", "rekap.cli", "worker"], "rekap") as proc:
            warm = stream.pairs[:WARMUP_RECORDS]
            produce(settings, warm)
            wait_for(lambda: settled(read_stats(client, keys, roots)) >= len(warm), proc,
                     "the warm-up applied", settings, "rekap")
            with poller(settings.redis_url, key) as finish:
                for load in order:
                    records = scale_records(stream, load, seconds, seed + 1000 * run + load)
                    sends, achieved = asyncio.run(paced_send(settings, records, load))
                    wait_for(partial(fences_reach, client, key, sends), proc,
                             f"every record of the {load}/s load visible", settings, "rekap",
                             VISIBLE_TIMEOUT_S)
                    pending.append((load, sends, achieved))
                changes, polls, spent = finish()
        ok = True
    finally:
        cleanup(settings, client, ok)
    interval_ms = 1000 * spent / max(1, polls)
    return [sample(load, run, sends, achieved, changes, interval_ms)
            for load, sends, achieved in sorted(pending, key=lambda p: p[0])]


def scale_records(stream: Scale, load: int, seconds: float, seed: int) -> list[tuple[bytes, bytes]]:
    """``load × seconds`` fresh records (own sale ids) over the stream's registry, encoded."""
    n = max(2, round(load * seconds))
    return encode_stream(scale.stream(stream.registry, n, seed=seed, prefix=f"l{seed}"))


def run_all(base: Settings, workdir: Path, stream: Scale, loads: list[int], seconds: float,
            runs: int, client: SyncClient, seed: int, deadline: float | None = None
            ) -> list[LatencySample]:
    """``runs`` latency runs (see :func:`run_latency`); none starts past ``deadline``."""
    samples: list[LatencySample] = []
    for run in range(runs):
        if deadline is not None and time.monotonic() > deadline:
            print(f"  time budget spent: no latency run {run + 1} or later", flush=True)
            break
        for s in run_latency(base, workdir, stream, loads, seconds, run, client, seed):
            samples.append(s)
            print(f"  run {run + 1} latency at {s.load_rps:>5,}/s: p50 {s.p50_ms:7.1f} ms  "
                  f"p95 {s.p95_ms:7.1f} ms  p99 {s.p99_ms:7.1f} ms  max {s.max_ms:7.1f} ms  "
                  f"({s.records} records, sent at {s.achieved_rps:,.0f}/s, missing {s.missing}, "
                  f"poll every {s.poll_interval_ms:.2f} ms)", flush=True)
    return samples


def summarise(samples: list[LatencySample]) -> dict[int, dict[str, float]]:
    """Per load: the median over runs of each figure."""
    out: dict[int, dict[str, float]] = {}
    for load in sorted({s.load_rps for s in samples}):
        mine = [s for s in samples if s.load_rps == load]
        out[load] = {name: statistics.median(getattr(s, name) for s in mine)
                     for name in ("records", "achieved_rps", "p50_ms", "p95_ms", "p99_ms",
                                  "max_ms", "missing", "poll_interval_ms")}
        out[load]["runs"] = len(mine)
    return out


def arguments(parser: argparse.ArgumentParser) -> None:
    """The latency options (shared with :mod:`bench.__main__`)."""
    parser.add_argument("--loads", default="1000,5000", help="offered loads, records/s (1000,5000)")
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds per load (12)")


def loads_of(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=6, help="sales-topic partitions (6)")
    parser.add_argument("--runs", type=int, default=1, help="runs; load order alternates (1)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated stream (7)")
    parser.add_argument("--ikm", type=int, default=30, help="IKM in the one event (30)")
    arguments(parser)
    args = parser.parse_args(argv)
    loads = loads_of(args.loads)
    base = Settings.from_env(sales_partitions=args.partitions)
    workdir, _ = workspace()
    client = connect_sync(base)
    try:
        stream = prepare_scale(workdir, args.ikm, WARMUP_RECORDS, args.seed)
        samples = run_all(base, workdir, stream, loads, args.seconds, args.runs, client, args.seed)
    finally:
        client.close()
    shutil.rmtree(workdir, ignore_errors=True)  # kept when a run failed: its logs are there
    for load, row in summarise(samples).items():
        print(f"{load:>6}/s  p50 {row['p50_ms']:.1f}  p95 {row['p95_ms']:.1f}  "
              f"p99 {row['p99_ms']:.1f} ms  (median of {row['runs']:.0f} runs)")
    return 0


if __name__ == "__main__":
    run_cli(main)
