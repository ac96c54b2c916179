"""Throughput of the rekap worker against three baselines, on the same generated stream.

Usage::

    .venv/bin/python -m bench.throughput [--records 100000] [--partitions 6] [--runs 3]
                                         [--ikm 30] [--workers 1]
                                         [--only raw,naive,faust,rekap] [--out FILE]

(``python -m bench`` runs this table, rekap at more IKM and with two workers, the
latency and the memory figures in one go: :mod:`bench.__main__`.)

Needs the local stack (Kafka and Redis of ``REKAP_KAFKA_BOOTSTRAP`` /
``REKAP_REDIS_URL``, default ``deploy/local/stack up``). One seeded stream of
valid sales, refunds and resends over a registry of ``--ikm`` IKM in one event
(:mod:`bench.scale`) is generated once per scale; then, per run, each contestant
gets its own fresh topics, consumer group and Redis prefix (created and deleted
here), the stream is produced into its sales topic *before* it starts, and it
drains that backlog:

``raw``
    aiokafka consumer, all partitions assigned, beginning to end offsets,
    ``json.loads`` of every value: what the machine can do at all (the ceiling).
``naive``
    a stock Faust agent iterating ``async for value in stream`` and awaiting two
    Redis increments per event, the tutorial way (:mod:`bench.naive_faust`):
    the design rekap replaces.
``faust``
    a stock Faust agent doing ``take_events`` batches and nothing else, with
    the worker's own Faust settings (:mod:`bench.faust_baseline`): the cost of
    Faust itself.
``rekap``
    the real ``rekap worker`` (a child process, settings via ``REKAP_*``; with
    ``workers`` > 1, that many in one consumer group) applying to real Redis,
    dead letters and totals topics included. Progress is read from the
    ``P:{R}:stats`` hashes.

Two rates per contestant: **steady** = records after the first batch / time
from the first to the last batch (first applied to last applied for rekap, first
to last event for naive;
for ``raw``, whose first fetch can return the whole backlog: all records / time
from "positioned at the beginning" to the last record),
and **wall** = records / time from start (process spawn or consumer creation)
to the last record, start-up and group join included (several rekap workers
start on an empty topic and are frozen while the backlog is produced, see
:func:`run_rekap`: their wall time starts at the resume). The order of the
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
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.request import urlopen

from bench import scale
from consumers.reconcile import compare, snapshot
from rekap.ledger import fold_sent
from rekap.names import Keys
from rekap.redisconn import SyncClient, connect_sync
from rekap.registry import Registry
from rekap.settings import Settings
from rekap.tls import client_context, local_url
from rekap.topics import delete_topics, ensure_topics

#: The kinds of contestant, in table order: (a) ceiling, (b) naive, (c) Faust alone, (d) rekap.
CONTESTANTS = ("raw", "naive", "faust", "rekap")
#: Child-process baselines: kind -> module run with ``python -m``.
BASELINE_MODULES = {"naive": "bench.naive_faust", "faust": "bench.faust_baseline"}
#: Seconds a contestant may take to drain the stream, start-up included.
DRAIN_TIMEOUT_S = 300.0
#: Seconds between two reads of the progress (stats hashes, result file).
POLL_S = 0.01
REPO = Path(__file__).resolve().parent.parent


def run_cli(main: Callable[[], int]) -> None:
    """Exit with ``main()``'s status; a :class:`BenchError` is one line on stderr and status 1."""
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        sys.exit(1)


class BenchError(RuntimeError):
    """A contestant failed, timed out, or rekap's totals were wrong."""


def fill_sizes(args: argparse.Namespace, full: dict[str, Any], quick: dict[str, Any]) -> None:
    """Give every size option left unset its ``--quick`` or its full value."""
    for name, value in full.items():
        if getattr(args, name) is None:
            setattr(args, name, quick[name] if args.quick else value)


def bound(name: str, seconds: float) -> None:
    """Stop the whole run ``seconds`` from now (a :class:`BenchError` naming ``name``), and
    turn SIGTERM, and a SIGINT even when started with it ignored (a background job of a
    script), into KeyboardInterrupt, so every ``finally`` cleans up."""
    def out_of_time(signum: int, frame: FrameType | None) -> None:
        raise BenchError(f"{name} ran past its budget and was cut short")

    def terminated(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.signal(signal.SIGTERM, terminated)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.alarm(int(seconds))


@dataclass(frozen=True)
class Contestant:
    """One row of the table: a kind of consumer at an IKM scale, with one or more workers."""

    kind: str
    ikm: int
    workers: int = 1
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.kind)


@dataclass
class Scale:
    """The registry and the encoded stream every contestant at one IKM scale drains."""

    ikm: int
    registry: Registry
    registry_path: Path
    records: list[dict[str, Any]]
    pairs: list[tuple[bytes, bytes]]


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
    kind: str = ""
    ikm: int = 0
    workers: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- stream


def generate_stream(registry: Registry, n: int, seed: int) -> list[dict[str, Any]]:
    return scale.stream(registry, n, seed=seed, prefix=f"b{seed}")


def prepare_scale(workdir: Path, ikm: int, n: int, seed: int) -> Scale:
    """Write the registry of ``ikm`` IKM under ``workdir`` and generate its stream of ``n``."""
    path = workdir / f"registry-{ikm}.toml"
    registry = scale.load(path, ikm)
    records = generate_stream(registry, n, seed)
    return Scale(ikm, registry, path, records, encode_stream(records))


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


def verify(client: SyncClient, records: list[dict[str, Any]], registry: Registry,
           keys: Keys, roots: list[str]) -> dict[str, int]:
    """Raise :class:`BenchError` unless Redis holds exactly what the ledger model folds from
    the stream: every total, day bucket, leaderboard score and outcome count."""
    stats = read_stats(client, keys, roots)
    ledger = fold_sent(encode_stream(records), registry, keys)
    diffs = compare(ledger, snapshot(client, keys, ""))
    if diffs:
        raise BenchError(f"Redis differs from the ledger in {len(diffs)} places: {diffs[:5]}")
    return {k: v for k, v in stats.items() if v}


def read_stats(client: SyncClient, keys: Keys, roots: list[str]) -> dict[str, int]:
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


def wait_for(predicate: Callable[[], Any],
             procs: subprocess.Popen[bytes] | list[subprocess.Popen[bytes]] | None, what: str,
             settings: Settings, name: str, timeout_s: float = DRAIN_TIMEOUT_S) -> Any:
    """Poll ``predicate`` until it is true; fail if a child exits or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    watched = procs if isinstance(procs, list) else [procs] if procs is not None else []
    while True:
        value = predicate()
        if value:
            return value
        for proc in watched:
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with {proc.returncode} before {what}:\n"
                                 f"{log_tail(settings, name)}")
        if time.monotonic() > deadline:
            raise BenchError(f"{name}: {what} not reached in {timeout_s:g}s:\n"
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


def run_baseline(settings: Settings, kind: str, n: int, run: int) -> Sample:
    """A Faust baseline child (``naive`` or ``faust``, worker settings) until it saw ``n``."""
    result = settings.runtime_dir / f"{kind}-result.json"
    started = time.time()
    with child(settings, ["-m", BASELINE_MODULES[kind], "--expect", str(n), "--result",
                          str(result)], kind) as proc:
        wait_for(result.exists, proc, f"{n} records", settings, kind)
        time.sleep(0.05)  # the file is written in one call; let it land
        doc = json.loads(result.read_text())
    if doc["count"] != n:
        raise BenchError(f"{kind} baseline saw {doc['count']} records, expected {n}")
    return Sample(kind, run, n, rate(n - doc["first_count"], doc["last"] - doc["first"]),
                  n / (doc["last"] - started), doc["last"] - doc["first"], doc["last"] - started)


def worker_settings(settings: Settings, workers: int) -> list[Settings]:
    """One settings per worker of a group: same app id and topics, own web port and runtime dir."""
    out = [settings]
    for i in range(2, workers + 1):
        runtime = settings.runtime_dir / f"w{i}"
        runtime.mkdir(parents=True, exist_ok=True)
        out.append(replace(settings, worker_port=free_port(), runtime_dir=runtime))
    return out


def assignment(group: list[Settings]) -> list[list[int]] | None:
    """Each worker's sales partitions from its ``/healthz``, or None unless every worker is
    ready (holding partitions, no rebalance running)."""
    out = []
    for s in group:
        try:
            url = f"{local_url(s, s.worker_port)}/healthz"  # http or https, nothing else
            with urlopen(url, timeout=2, context=client_context(s)) as reply:  # noqa: S310
                doc = json.load(reply)
        except (OSError, ValueError):  # not up yet, or 503: not ready
            return None
        if not doc.get("ready"):
            return None
        out.append(sorted(doc["partitions"]))
    return out


def group_stable(group: list[Settings], partitions: int) -> list[list[int]] | None:
    """The assignment once every partition has exactly one ready worker, else None."""
    held = assignment(group)
    if held is None or sorted(p for ps in held for p in ps) != list(range(partitions)):
        return None
    return held


def freeze(procs: list[subprocess.Popen[bytes]], sig: signal.Signals) -> None:
    """SIGSTOP or SIGCONT each child's process group (each child has its own session)."""
    for proc in procs:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)


def run_rekap(settings: Settings, n: int, run: int, stream: Scale, client: SyncClient,
              workers: int = 1, profile: Path | None = None) -> Sample:
    """The real worker(s), applying to Redis; verified against the stream's sums.

    One worker starts on the backlog, like the baselines. Several workers would not share
    it: the first to join takes every partition and drains thousands of records before
    the next one's join reaches it through a heartbeat. So they start on the empty topic;
    once every partition has a ready worker they are frozen (SIGSTOP), the backlog is
    produced (well inside the session timeout), and they are resumed (SIGCONT) on the
    same assignment, which is checked again at the end (``extra["rebalanced"]``). ``wall``
    then counts from the resume, not from the spawn.
    """
    keys = Keys(settings.redis_prefix)
    registry = stream.registry
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

    extra: dict[str, Any] = {}
    group = worker_settings(settings, workers)
    started = time.time()
    with ExitStack() as stack:
        procs = [stack.enter_context(child(s, ["-m", "rekap.cli", "worker"], f"rekap{i}",
                                           profile if i == 1 else None))
                 for i, s in enumerate(group, start=1)]
        if workers > 1:
            extra["assignment"] = wait_for(lambda: group_stable(group, settings.sales_partitions),
                                           procs, "every partition assigned", settings, "rekap1")
            stack.callback(freeze, procs, signal.SIGCONT)  # never leave a child stopped
            freeze(procs, signal.SIGSTOP)
            frozen = time.time()
            produce(settings, stream.pairs)
            started = time.time()
            freeze(procs, signal.SIGCONT)
            extra["frozen_s"] = started - frozen
        wait_for(progress, procs, f"{n} records applied", settings, "rekap1")
        if workers > 1:
            extra["assignment_after"] = assignment(group)
            extra["rebalanced"] = extra["assignment_after"] != extra["assignment"]
        extra["stats"] = verify(client, stream.records, registry, keys, roots)
    first, last = seen["first"], seen["last"]
    extra["drained_at"] = last  # wall clock: lets a caller line up its own samples (scaleout)
    return Sample("rekap", run, n, rate(n - int(seen["first_count"]), last - first),
                  n / (last - started), last - first, last - started, verified=True,
                  extra=extra)


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


# --------------------------------------------------------------------------- harness


def fresh_settings(base: Settings, contestant: str, workdir: Path) -> Settings:
    tag = f"bench{uuid.uuid4().hex[:8]}{contestant}"
    runtime = workdir / tag
    runtime.mkdir(parents=True)
    return replace(base, redis_prefix=tag, app_id=tag, topic_sales=f"{tag}.sales",
                   topic_dead_letter=f"{tag}.dead-letter", topic_totals_ikm=f"{tag}.totals.ikm",
                   topic_totals_event=f"{tag}.totals.event", topic_milestones=f"{tag}.milestones",
                   worker_port=free_port(),
                   runtime_dir=runtime)


def cleanup(settings: Settings, client: SyncClient, ok: bool) -> None:
    """Delete a run's topics and keys; its runtime directory too, unless it failed (its logs
    are there)."""
    if ok:
        shutil.rmtree(settings.runtime_dir, ignore_errors=True)
    else:
        print(f"  logs kept in {settings.runtime_dir}/logs", file=sys.stderr)
    try:
        delete_topics(settings)
    except Exception as exc:  # a leftover topic must not hide the result
        print(f"  (could not delete topics of {settings.app_id}: {exc})", file=sys.stderr)
    keys = list(client.scan_iter(match=f"{settings.redis_prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])


def one(contestant: Contestant, base: Settings, workdir: Path, run: int, stream: Scale,
        client: SyncClient, profile: Path | None = None) -> Sample:
    """One run of one contestant on fresh topics, group and prefix, all removed afterwards."""
    settings = fresh_settings(replace(base, registry_path=stream.registry_path.resolve()),
                              contestant.kind, workdir)
    ok = False
    try:
        ensure_topics(settings)
        if contestant.workers == 1:  # a group of several produces once it is formed
            produce(settings, stream.pairs)
        n = len(stream.pairs)
        if contestant.kind == "raw":
            sample = run_raw(settings, n, run)
        elif contestant.kind in BASELINE_MODULES:
            sample = run_baseline(settings, contestant.kind, n, run)
        else:
            sample = run_rekap(settings, n, run, stream, client, contestant.workers,
                               profile.with_name(f"{profile.stem}-run{run + 1}{profile.suffix}")
                               if profile else None)
        ok = True
        return replace(sample, contestant=contestant.label, kind=contestant.kind,
                       ikm=contestant.ikm, workers=contestant.workers)
    finally:
        cleanup(settings, client, ok)


def lineup(kinds: list[str], ikm: int, workers: int = 1, scale_ikm: tuple[int, ...] = (),
           scale_workers: tuple[int, ...] = ()) -> list[Contestant]:
    """The table's contestants at ``ikm`` IKM, then (if rekap is one of them) rekap alone at
    each other scale and worker count (labelled ``rekap <n> IKM`` and ``rekap <w> workers``)."""
    out = [Contestant(k, ikm, workers if k == "rekap" else 1,
                      f"rekap {workers} workers" if k == "rekap" and workers > 1 else k)
           for k in CONTESTANTS if k in kinds]
    if "rekap" not in kinds:
        return out
    out += [Contestant("rekap", n, 1, f"rekap {n} IKM") for n in scale_ikm if n != ikm]
    out += [Contestant("rekap", ikm, w, f"rekap {w} workers") for w in scale_workers if w != workers]
    return out


def run_all(contestants: list[Contestant], base: Settings, scales: dict[int, Scale],
            runs: int, workdir: Path, client: SyncClient, profile: Path | None = None,
            deadline: float | None = None) -> list[Sample]:
    """``runs`` rounds over ``contestants``, in reverse order every other round; prints each.
    Past ``deadline`` (monotonic) no new run starts: the samples so far are returned."""
    samples: list[Sample] = []
    for run in range(runs):
        order = contestants if run % 2 == 0 else list(reversed(contestants))
        for c in order:
            if deadline is not None and time.monotonic() > deadline:
                print(f"  time budget spent: no run {run + 1} of {c.label} or later", flush=True)
                return samples
            s = one(c, base, workdir, run, scales[c.ikm], client, profile)
            samples.append(s)
            check = " (verified)" if s.verified else ""
            if s.extra.get("rebalanced"):
                check += " (REBALANCED during the drain: not a clean sample)"
            print(f"  run {run + 1} {c.label:<16} steady {s.steady_rps:>9,.0f} rec/s over "
                  f"{s.steady_s:6.2f}s   wall {s.wall_rps:>9,.0f} rec/s over "
                  f"{s.wall_s:6.2f}s{check}", flush=True)
    return samples


def summarise(samples: list[Sample]) -> dict[str, dict[str, Any]]:
    """Per contestant label (in first-run order): medians, minima and maxima of both rates, and
    the ratio of the first ``rekap`` row to this row (steady and wall)."""
    out: dict[str, dict[str, Any]] = {}
    for label in dict.fromkeys(s.contestant for s in samples):
        mine = [s for s in samples if s.contestant == label]
        steady, wall = [s.steady_rps for s in mine], [s.wall_rps for s in mine]
        out[label] = {"kind": mine[0].kind, "ikm": mine[0].ikm, "workers": mine[0].workers,
                      "steady_median": statistics.median(steady), "steady_min": min(steady),
                      "steady_max": max(steady), "wall_median": statistics.median(wall),
                      "wall_min": min(wall), "wall_max": max(wall), "runs": len(mine),
                      "verified": all(s.verified for s in mine) if mine[0].kind == "rekap"
                      else None}
    rekap = next((row for row in out.values() if row["kind"] == "rekap"), None)
    if rekap is not None:
        for row in out.values():
            row["rekap_ratio_steady"] = rekap["steady_median"] / row["steady_median"]
            row["rekap_ratio_wall"] = rekap["wall_median"] / row["wall_median"]
    return out


def table(summary: dict[str, dict[str, Any]]) -> str:
    head = (f"{'contestant':<16} {'steady rec/s: median [min-max]':>34} "
            f"{'wall rec/s: median [min-max]':>32} {'rekap/this':>11}")
    lines = [head, "-" * len(head)]
    for c, row in summary.items():
        steady = (f"{row['steady_median']:>9,.0f} [{row['steady_min']:,.0f}-"
                  f"{row['steady_max']:,.0f}]")
        wall = f"{row['wall_median']:>9,.0f} [{row['wall_min']:,.0f}-{row['wall_max']:,.0f}]"
        ratio = f"{row['rekap_ratio_steady']:.3f}" if "rekap_ratio_steady" in row else "-"
        lines.append(f"{c:<16} {steady:>34} {wall:>32} {ratio:>11}")
    return "\n".join(lines)


def git_describe() -> str:
    """``git describe --always --dirty`` of the repo (tracked files only), or ``unknown``."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def batching(settings: Settings) -> dict[str, str]:
    """The worker's ``batch_*`` settings (whatever they are named today), as strings."""
    return {k: v for k, v in settings.describe().items() if k.startswith("batch_")}


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options this module and :mod:`bench.__main__` share."""
    parser.add_argument("--records", type=int, default=100_000, help="records per run (100000)")
    parser.add_argument("--partitions", type=int, default=6,
                        help="sales-topic partitions (6, the worker's default; even for 2 workers)")
    parser.add_argument("--runs", type=int, default=3, help="runs; order alternates per run (3)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated stream (7)")
    parser.add_argument("--ikm", type=int, default=30,
                        help="IKM in the one event of the generated registry (30)")
    parser.add_argument("--only", default=",".join(CONTESTANTS),
                        help="comma-separated subset of " + ",".join(CONTESTANTS))


def kinds(parser: argparse.ArgumentParser, only: str) -> list[str]:
    chosen = [c for c in CONTESTANTS if c in only.split(",")]
    if not chosen:
        parser.error("--only names no contestant")
    return chosen


def workspace() -> tuple[Path, str]:
    """A fresh scratch directory under ``.rekap/bench`` and the UTC stamp of this run."""
    benchdir = REPO / ".rekap" / "bench"
    benchdir.mkdir(parents=True, exist_ok=True)
    return (Path(tempfile.mkdtemp(prefix="run-", dir=benchdir)),
            datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput",
                                     description=__doc__.split("\n\n")[0])
    arguments(parser)
    parser.add_argument("--workers", type=int, default=1, help="rekap workers in the group (1)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON result file (default .rekap/bench/throughput-<ts>.json)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record each rekap run with py-spy (-f raw) into FILE-run<N>.txt; "
                             "slows the worker, so its numbers are not comparable")
    args = parser.parse_args(argv)
    contestants = lineup(kinds(parser, args.only), args.ikm, args.workers)

    base = Settings.from_env(sales_partitions=args.partitions)
    workdir, stamp = workspace()
    out = args.out or REPO / ".rekap" / "bench" / f"throughput-{stamp}.json"
    client = connect_sync(base)
    try:
        scales = {args.ikm: prepare_scale(workdir, args.ikm, args.records, args.seed)}
        print(f"rekap throughput: {args.records} records, {args.ikm} IKM, {args.partitions} "
              f"partitions, {args.runs} runs, worker {batching(base)}, {os.cpu_count()} CPUs, "
              f"kafka {base.kafka_bootstrap}, redis {base.redis_url_masked}")
        samples = run_all(contestants, base, scales, args.runs, workdir, client, args.profile)
    finally:
        client.close()
    shutil.rmtree(workdir, ignore_errors=True)  # kept when a run failed: its logs are there
    summary = summarise(samples)
    print()
    print(table(summary))
    doc = {
        "schema": "rekap.bench.throughput.v2",
        "started": stamp,
        "command": " ".join([Path(sys.executable).name, "-m", "bench.throughput",
                             *(argv if argv is not None else sys.argv[1:])]),
        "git": git_describe(),
        "machine": machine(),
        "config": {"records": args.records, "partitions": args.partitions, "runs": args.runs,
                   "seed": args.seed, "ikm": args.ikm, "workers": args.workers,
                   "worker_settings": batching(base)},
        "summary": summary,
        "samples": [asdict(s) for s in samples],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
