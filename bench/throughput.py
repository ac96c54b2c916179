"""Throughput of the rekap worker against two baselines, on the same generated stream.

Usage::

    .venv/bin/python -m bench.throughput [--records 20000] [--partitions 3] [--runs 3]
                                         [--only raw,faust,rekap] [--out FILE]

Needs the local stack (Kafka and Redis of ``REKAP_KAFKA_BOOTSTRAP`` /
``REKAP_REDIS_URL``, default ``deploy/local/stack up``). One seeded stream of
valid sales, refunds and resends (:mod:`producers.simulator.synthetic`) is
generated once; then, per run, each contestant gets its own fresh topics, consumer group
and Redis prefix (created and deleted here), the stream is produced into its
sales topic *before* it starts, and it drains that backlog:

``raw``
    aiokafka consumer, all partitions assigned, beginning to end offsets,
    ``json.loads`` of every value: what the machine can do at all.
``faust``
    a stock Faust agent doing ``take_events`` batches and nothing else, with
    the worker's own Faust settings (:mod:`bench.faust_baseline`): the cost of
    Faust itself.
``rekap``
    the real ``rekap worker`` (a child process, settings via ``REKAP_*``)
    applying to real Redis, dead letters and totals topics included. Progress
    is read from the ``P:{R}:stats`` hashes.

Two rates per contestant: **steady** = records after the first batch / time
from the first to the last batch (first applied to last applied for rekap;
for ``raw``, whose first fetch can return the whole backlog: all records / time
from "positioned at the beginning" to the last record),
and **wall** = records / time from start (process spawn or consumer creation)
to the last record, start-up and group join included. The order of the
contestants is reversed on every other run so slow drift of the shared machine
cancels out.

Every rekap run is verified before its numbers count: the ledger identity
(applied + duplicate:sale_id = records, nothing rejected) and every totals,
day-bucket hash and leaderboard in Redis equal to sums computed here from the
generated stream. A fast but wrong worker fails the benchmark.

Results are printed as a table and written as JSON (default
``.rekap/bench/throughput-<UTC timestamp>.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from consumers.reconcile import compare, snapshot
from producers.simulator.synthetic import generate
from rekap.ledger import fold_sent
from rekap.names import Keys
from rekap.registry import Registry, load_registry
from rekap.settings import Settings
from rekap.topics import delete_topics, ensure_topics

CONTESTANTS = ("raw", "faust", "rekap")
#: Seconds a contestant may take to drain the stream, start-up included.
DRAIN_TIMEOUT_S = 300.0
#: Seconds between two reads of the progress (stats hashes, result file).
POLL_S = 0.01
REPO = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """A contestant failed, timed out, or rekap's totals were wrong."""


@dataclass
class Sample:
    contestant: str
    run: int
    records: int
    steady_rps: float
    wall_rps: float
    steady_s: float
    wall_s: float
    verified: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- stream


def generate_stream(registry: Registry, n: int, seed: int) -> list[dict[str, Any]]:
    return generate(registry, n, seed=seed, prefix=f"b{seed}")


def encode_stream(records: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return [(str(r["ikm_id"]).encode(), json.dumps(r, separators=(",", ":")).encode())
            for r in records]


def produce(settings: Settings, pairs: list[tuple[bytes, bytes]]) -> None:
    """Write the stream into the sales topic (key = ikm_id) and wait for every ack."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                             linger_ms=20, batch_size=512 * 1024, max_request_size=8 << 20)
    try:
        futures = [producer.send(settings.topic_sales, key=k, value=v) for k, v in pairs]
        producer.flush(60)
        for f in futures:
            f.get(timeout=60)
    finally:
        producer.close()


# --------------------------------------------------------------------------- truth


def verify(client: redis.Redis, records: list[dict[str, Any]], registry: Registry,
           keys: Keys, roots: list[str]) -> dict[str, int]:
    """Raise :class:`BenchError` unless Redis holds exactly what the ledger model folds from
    the stream: every total, day bucket, leaderboard score and outcome count."""
    stats = read_stats(client, keys, roots)
    ledger = fold_sent(encode_stream(records), registry, keys)
    diffs = compare(ledger, snapshot(client, keys, ""))
    if diffs:
        raise BenchError(f"Redis differs from the ledger in {len(diffs)} places: {diffs[:5]}")
    return {k: v for k, v in stats.items() if v}


def read_stats(client: redis.Redis, keys: Keys, roots: list[str]) -> dict[str, int]:
    pipe = client.pipeline(transaction=False)
    for root in roots:
        pipe.hgetall(keys.stats(root))
    out: dict[str, int] = defaultdict(int)
    for h in pipe.execute():
        for f, v in h.items():
            out[f.decode()] += int(v)
    return dict(out)


def settled(stats: dict[str, int]) -> int:
    """Records accounted for once (re-deliveries, ``duplicate:offset``, excluded)."""
    return sum(v for k, v in stats.items() if k != "duplicate:offset")


# --------------------------------------------------------------------------- contestants


def free_port() -> int:
    """A TCP port the kernel just handed out as free (the bench's own: it imports nothing from
    ``tests``, whose :func:`tests.support.procs.free_port` is the same)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(settings: Settings) -> dict[str, str]:
    """This environment with its ``REKAP_*`` replaced by ``settings``, and the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REKAP_")} | settings.to_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


@contextmanager
def child(settings: Settings, argv: list[str], name: str, profile: Path | None = None
          ) -> Iterator[subprocess.Popen[bytes]]:
    """A Python child process; with ``profile``, run under ``py-spy record -f raw``."""
    logs = settings.runtime_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    command = [sys.executable, *argv]
    if profile is not None:
        py_spy = Path(sys.executable).with_name("py-spy")
        command = [str(py_spy), "record", "-f", "raw", "-r", "250", "-o", str(profile.resolve()),
                   "--", *command]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(command, env=child_env(settings), cwd=settings.runtime_dir,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            if profile is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                with suppress(subprocess.TimeoutExpired):
                    proc.wait(30)
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)  # the worker it started
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def log_tail(settings: Settings, name: str, lines: int = 30) -> str:
    try:
        text = (settings.runtime_dir / "logs" / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_for(predicate: Callable[[], Any], proc: subprocess.Popen[bytes] | None, what: str,
             settings: Settings, name: str) -> Any:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode} before {what}:\n"
                             f"{log_tail(settings, name)}")
        if time.monotonic() > deadline:
            raise BenchError(f"{name}: {what} not reached in {DRAIN_TIMEOUT_S}s:\n"
                             f"{log_tail(settings, name)}")
        time.sleep(POLL_S)


def run_raw(settings: Settings, n: int, run: int) -> Sample:
    """Baseline 1: aiokafka, assign every partition, beginning to end, json.loads."""

    async def consume() -> tuple[float, float, float, int]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        started = time.time()
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                    enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            parts = [TopicPartition(settings.topic_sales, p)
                     for p in range(settings.sales_partitions)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            end = await consumer.end_offsets(parts)
            ready = time.time()
            left = {tp for tp in parts if end[tp] > 0}
            count, last = 0, 0.0
            loads = json.loads
            while left:
                batches = await consumer.getmany(timeout_ms=1000)
                for tp, msgs in batches.items():
                    for m in msgs:
                        loads(m.value)
                    count += len(msgs)
                    if msgs and msgs[-1].offset + 1 >= end[tp]:
                        left.discard(tp)
                if batches:
                    last = time.time()
        finally:
            await consumer.stop()
        return started, ready, last, count

    # One getmany can return the whole backlog, so "steady" here starts when the
    # consumer is positioned (assigned, at the beginning, end offsets known).
    started, ready, last, count = asyncio.run(consume())
    if count != n:
        raise BenchError(f"raw consumer read {count} records, expected {n}")
    return Sample("raw", run, n, rate(n, last - ready), n / (last - started),
                  last - ready, last - started)


def run_faust(settings: Settings, n: int, run: int) -> Sample:
    """Baseline 2: a stock Faust agent (worker settings) doing take_events only."""
    result = settings.runtime_dir / "faust-result.json"
    started = time.time()
    with child(settings, ["-m", "bench.faust_baseline", "--expect", str(n), "--result",
                          str(result)], "faust") as proc:
        wait_for(result.exists, proc, f"{n} records", settings, "faust")
        time.sleep(0.05)  # the file is written in one call; let it land
        doc = json.loads(result.read_text())
    if doc["count"] != n:
        raise BenchError(f"faust baseline saw {doc['count']} records, expected {n}")
    return Sample("faust", run, n, rate(n - doc["first_count"], doc["last"] - doc["first"]),
                  n / (doc["last"] - started), doc["last"] - doc["first"], doc["last"] - started)


def run_rekap(settings: Settings, n: int, run: int, records: list[dict[str, Any]],
              registry: Registry, client: redis.Redis, profile: Path | None = None) -> Sample:
    """The real worker, applying to Redis; verified against the stream's sums."""
    keys = Keys(settings.redis_prefix)
    roots = sorted({registry.root(e) for e in registry.events} | {"_unrouted"})
    seen = {"first": 0.0, "first_count": 0, "last": 0.0}

    def progress() -> bool:
        count = settled(read_stats(client, keys, roots))
        now = time.time()
        if count and not seen["first"]:
            seen["first"], seen["first_count"] = now, count
        if count >= n:
            seen["last"] = now
            return True
        return False

    started = time.time()
    with child(settings, ["-m", "rekap.cli", "worker"], "rekap", profile) as proc:
        wait_for(progress, proc, f"{n} records applied", settings, "rekap")
        stats = verify(client, records, registry, keys, roots)
    first, last = seen["first"], seen["last"]
    return Sample("rekap", run, n, rate(n - int(seen["first_count"]), last - first),
                  n / (last - started), last - first, last - started, verified=True,
                  extra={"stats": stats})


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


# --------------------------------------------------------------------------- harness


def fresh_settings(base: Settings, contestant: str, workdir: Path) -> Settings:
    tag = f"bench{uuid.uuid4().hex[:8]}{contestant}"
    runtime = workdir / tag
    runtime.mkdir(parents=True)
    return replace(base, redis_prefix=tag, app_id=tag, topic_sales=f"{tag}.sales",
                   topic_dead_letter=f"{tag}.dead-letter", topic_totals_ikm=f"{tag}.totals.ikm",
                   topic_totals_event=f"{tag}.totals.event", worker_port=free_port(),
                   runtime_dir=runtime)


def cleanup(settings: Settings, client: redis.Redis) -> None:
    try:
        delete_topics(settings)
    except Exception as exc:  # a leftover topic must not hide the result
        print(f"  (could not delete topics of {settings.app_id}: {exc})", file=sys.stderr)
    keys = list(client.scan_iter(match=f"{settings.redis_prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])


def one(contestant: str, base: Settings, workdir: Path, run: int, records: list[dict[str, Any]],
        pairs: list[tuple[bytes, bytes]], registry: Registry, client: redis.Redis,
        profile: Path | None = None) -> Sample:
    settings = fresh_settings(base, contestant, workdir)
    ok = False
    try:
        ensure_topics(settings)
        produce(settings, pairs)
        n = len(pairs)
        if contestant == "raw":
            sample = run_raw(settings, n, run)
        elif contestant == "faust":
            sample = run_faust(settings, n, run)
        else:
            sample = run_rekap(settings, n, run, records, registry, client,
                               profile.with_name(f"{profile.stem}-run{run + 1}{profile.suffix}")
                               if profile else None)
        ok = True
        return sample
    finally:
        cleanup(settings, client)
        if ok:
            shutil.rmtree(settings.runtime_dir, ignore_errors=True)
        else:
            print(f"  logs kept in {settings.runtime_dir}/logs", file=sys.stderr)


def summarise(samples: list[Sample]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for c in CONTESTANTS:
        steady = [s.steady_rps for s in samples if s.contestant == c]
        wall = [s.wall_rps for s in samples if s.contestant == c]
        if steady:
            out[c] = {"steady_median": statistics.median(steady), "steady_min": min(steady),
                      "steady_max": max(steady), "wall_median": statistics.median(wall),
                      "wall_min": min(wall), "wall_max": max(wall), "runs": len(steady)}
    if "rekap" in out:
        for row in out.values():
            row["rekap_ratio_steady"] = out["rekap"]["steady_median"] / row["steady_median"]
            row["rekap_ratio_wall"] = out["rekap"]["wall_median"] / row["wall_median"]
    return out


def table(summary: dict[str, dict[str, float]]) -> str:
    head = (f"{'contestant':<10} {'steady rec/s: median [min-max]':>34} "
            f"{'wall rec/s: median [min-max]':>32} {'rekap/this':>11}")
    lines = [head, "-" * len(head)]
    for c, row in summary.items():
        steady = (f"{row['steady_median']:>9,.0f} [{row['steady_min']:,.0f}-"
                  f"{row['steady_max']:,.0f}]")
        wall = f"{row['wall_median']:>9,.0f} [{row['wall_min']:,.0f}-{row['wall_max']:,.0f}]"
        ratio = f"{row['rekap_ratio_steady']:.3f}" if "rekap_ratio_steady" in row else "-"
        lines.append(f"{c:<10} {steady:>34} {wall:>32} {ratio:>11}")
    return "\n".join(lines)


def git_describe() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="records per run (20000)")
    parser.add_argument("--partitions", type=int, default=3, help="sales-topic partitions (3)")
    parser.add_argument("--runs", type=int, default=3, help="runs; order alternates per run (3)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated stream (7)")
    parser.add_argument("--only", default=",".join(CONTESTANTS),
                        help="comma-separated subset of raw,faust,rekap")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON result file (default .rekap/bench/throughput-<ts>.json)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record each rekap run with py-spy (-f raw) into FILE-run<N>.txt; "
                             "slows the worker, so its numbers are not comparable")
    args = parser.parse_args(argv)
    chosen = [c for c in CONTESTANTS if c in args.only.split(",")]
    if not chosen:
        parser.error("--only names no contestant")

    base = Settings.from_env(sales_partitions=args.partitions)
    registry = load_registry(base.registry_path)
    records = generate_stream(registry, args.records, args.seed)
    pairs = encode_stream(records)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or REPO / ".rekap" / "bench" / f"throughput-{stamp}.json"
    benchdir = REPO / ".rekap" / "bench"
    benchdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=benchdir))
    client = redis.Redis.from_url(base.redis_url)
    print(f"rekap throughput: {len(records)} records, {args.partitions} partitions, "
          f"{args.runs} runs, batch_max={base.batch_max}, window={base.batch_window_s}s, "
          f"{os.cpu_count()} CPUs, kafka {base.kafka_bootstrap}, redis {base.redis_url_masked}")
    samples: list[Sample] = []
    try:
        for run in range(args.runs):
            order = chosen if run % 2 == 0 else list(reversed(chosen))
            for c in order:
                s = one(c, base, workdir, run, records, pairs, registry, client, args.profile)
                samples.append(s)
                check = " (verified)" if s.verified else ""
                print(f"  run {run + 1} {c:<6} steady {s.steady_rps:>9,.0f} rec/s over "
                      f"{s.steady_s:6.2f}s   wall {s.wall_rps:>9,.0f} rec/s over "
                      f"{s.wall_s:6.2f}s{check}", flush=True)
    finally:
        client.close()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarise(samples)
    print()
    print(table(summary))
    doc = {
        "schema": "rekap.bench.throughput.v1",
        "started": stamp,
        "command": " ".join([Path(sys.executable).name, "-m", "bench.throughput",
                             *(argv if argv is not None else sys.argv[1:])]),
        "git": git_describe(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "config": {"records": len(records), "partitions": args.partitions, "runs": args.runs,
                   "seed": args.seed, "batch_max": base.batch_max,
                   "batch_window_s": base.batch_window_s},
        "summary": summary,
        "samples": [asdict(s) for s in samples],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        sys.exit(1)
