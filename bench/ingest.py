"""Ingest under load: single-sale POSTs from concurrent clients, and proof that none was lost.

Usage::

    .venv/bin/python -m bench.ingest [--clients 16,64] [--seconds 30] [--processes 1]
                                     [--single 500] [--rounds 1] [--against DIR]
                                     [--quick] [--out-dir .rekap/bench]

On the local stack's Kafka (``REKAP_KAFKA_BOOTSTRAP``): a fresh sales topic (created
and deleted here, as :mod:`bench.throughput` does), a token file with
:data:`BOOTHS` booth tokens of the bundled Lagawi Fest registry (issued with
:func:`producers.tokens.issue_token`), and a real ``rekap ingest`` child process
(``--processes`` of them sharing the port when asked). Then:

1. **single client**: ``--single`` sales one after another on one keep-alive
   connection (after :data:`WARMUP` unmeasured ones): the latency of one sale;
2. **concurrent clients**: for each ``--clients`` count, that many keep-alive
   connections each posting its next sale as soon as the last was answered
   (closed loop) for ``--seconds``: requests/s, p50/p95/p99/max latency, answers
   by status, and the CPU seconds of ingest (every process of its session,
   kafka-python's I/O thread included) and of this load generator;
3. **no loss**: the topic is read from the beginning to its end and every sale
   answered 202 must be there (lost = 202 but absent; duplicates = present more
   than once; unanswered = present without a 202, e.g. a request cut by the end
   of the run). Any loss fails the bench.

The load generator is one asyncio :class:`asyncio.Protocol` per connection, no HTTP
library: each request is pre-built bytes with the sale_id spliced in (every sale
distinct, dated 2 June 2022 in the Kokas exhibition, from the booth of its
connection), and an answer is parsed only as far as its status and length, so it
costs a few microseconds of the two cores ingest also runs on.

``--against DIR`` runs the same load, in the same run, against ingest started from
another source tree (e.g. ``git archive HEAD | tar -x -C DIR``): the two alternate
in every round (order reversed every other round), so a shared, noisy machine
affects both alike; the table gives each and their ratio.

The report goes to ``ingest-<UTC>.md`` and ``.json`` in ``--out-dir``. It stops
itself: each wait has a timeout and the whole run a hard stop (:data:`HARD_STOP_S`
plus the load time), after which every child is stopped and the topics deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.request import urlopen

from bench import report
from bench.memory import percentile
from bench.throughput import (
    REPO,
    BenchError,
    bound,
    child,
    cleanup,
    free_port,
    fresh_settings,
    git_describe,
    machine,
    run_cli,
    wait_for,
    workspace,
)
from consumers.reconcile import read_topic
from producers.tokens import issue_token
from rekap.redisconn import connect_sync
from rekap.registry import load_registry
from rekap.settings import Settings
from rekap.topics import ensure_topics

#: Booths of the bundled registry whose tokens the clients use, round robin (each
#: connection one booth, posting for that booth's one IKM).
BOOTHS = ("kokas-01", "kokas-02", "kokas-03", "kokas-04", "kokas-05", "kokas-06")
#: Unmeasured sales before the single-client run: the producer's first send waits for
#: the topic's metadata, and the first requests warm up the interpreter's caches.
WARMUP = 50
#: Seconds past the load time after which the whole run is cut (start-up, verification).
HARD_STOP_S = 300
#: Seconds a request may wait for its answer before the bench gives up on the run.
ANSWER_TIMEOUT_S = 30.0
QUICK = {"seconds": 3.0, "single": 100}
FULL = {"seconds": 30.0, "single": 500}
#: Settings fields raised out of the way for the bench, if this tree has them: six tokens
#: carry the load of many booths, so it measures the service, not its limits (their code
#: still runs on every request).
GENEROUS = {"ingest_rate_per_token": 1_000_000.0, "ingest_burst_per_token": 1_000_000,
            "ingest_max_in_flight": 100_000}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- requests


class Requests:
    """Pre-built request bytes: per booth, the head and tail around a fixed-width sale_id."""

    def __init__(self, settings: Settings, tokens: dict[str, str], tag: str) -> None:
        registry = load_registry(settings.registry_path)
        self.tag = tag
        self.parts: list[tuple[bytes, bytes]] = []
        width = len(self.sale_id(0, 0))
        for booth_id, token in tokens.items():
            booth = registry.booths[booth_id]
            (ikm,) = sorted(booth.ikm)
            body = json.dumps({
                "sale_id": "\0", "kind": "sale", "ikm_id": ikm, "event_id": booth.event,
                "channel": "offline", "booth_id": booth_id, "amount_idr": 125_000, "quantity": 1,
                "sku": "BENCH-01", "occurred_at": "2022-06-02T11:30:00+07:00",
            }, separators=(",", ":")).encode()
            before, after = body.split(b"\\u0000")
            head = (f"POST /v1/sales HTTP/1.1\r\nHost: {settings.host}:{settings.ingest_port}\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body) - 6 + width}\r\n\r\n").encode()
            self.parts.append((head + before, after))

    def sale_id(self, conn: int, seq: int) -> str:
        return f"{self.tag}-{conn:03d}-{seq:08d}"

    def build(self, conn: int, seq: int) -> tuple[str, bytes]:
        head, tail = self.parts[conn % len(self.parts)]
        sale_id = self.sale_id(conn, seq)
        return sale_id, head + sale_id.encode() + tail


# --------------------------------------------------------------------------- load generator


@dataclass
class Tally:
    """What the connections of one load step saw."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    accepted: list[str] = field(default_factory=list)
    sent: int = 0


class Client(asyncio.Protocol):
    """One keep-alive connection posting its next sale as soon as the last is answered."""

    def __init__(self, requests: Requests, conn: int, tally: Tally, stop_at: float,
                 limit: int | None, done: asyncio.Future[None]) -> None:
        self.requests, self.conn, self.tally = requests, conn, tally
        self.stop_at, self.limit, self.done = stop_at, limit, done
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.seq = 0
        self.sale_id = ""
        self.started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.sale_id, data = self.requests.build(self.conn, self.seq)
        self.seq += 1
        self.tally.sent += 1
        self.started = time.perf_counter()
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self.buf = buf
            return
        at = buf.find(b"\r\nContent-Length: ", 0, end)
        length = int(buf[at + 18:buf.index(b"\r\n", at + 2)]) if at >= 0 else 0
        if len(buf) < end + 4 + length:
            self.buf = buf
            return
        now = time.perf_counter()
        self.buf = buf[end + 4 + length:]
        status = int(buf[9:12])
        tally = self.tally
        tally.latencies.append(now - self.started)
        tally.statuses[status] += 1
        if status == 202:
            tally.accepted.append(self.sale_id)
        if now < self.stop_at and (self.limit is None or self.seq < self.limit):
            self.send()
        else:
            self.finish(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish(exc or ConnectionError("ingest closed the connection"))

    def finish(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            if exc is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(exc)


async def drive(requests: Requests, host: str, port: int, clients: int, seconds: float,
                limit: int | None = None) -> tuple[Tally, float]:
    """``clients`` connections for ``seconds`` (or ``limit`` requests each); the tally and
    the wall time from the first send to the last answer."""
    loop = asyncio.get_running_loop()
    tally = Tally()
    dones: list[asyncio.Future[None]] = []
    started = time.perf_counter()
    stop_at = started + seconds
    for conn in range(clients):
        done: asyncio.Future[None] = loop.create_future()
        dones.append(done)
        await loop.create_connection(
            partial(Client, requests, conn, tally, stop_at, limit, done), host, port)
    await asyncio.wait_for(asyncio.gather(*dones), seconds + ANSWER_TIMEOUT_S)
    return tally, time.perf_counter() - started


# --------------------------------------------------------------------------- measuring


def cpu_s(sid: int) -> tuple[float, float, float]:
    """CPU seconds (user + system) so far of: every live process in session ``sid`` (ingest
    and the processes it started, all their threads); the Kafka brokers on this machine;
    the whole machine, every core and process."""
    ingest = broker = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        ticks = int(rest[11]) + int(rest[12])  # fields 14, 15: utime, stime
        if int(rest[3]) == sid:  # field 6, session
            ingest += ticks
        elif stat[stat.index("(") + 1:stat.rindex(")")] == "java" and _is_broker(entry):
            broker += ticks
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, fh.readline().split()[1:9])
    machine = user + nice + system + irq + softirq + steal
    return ingest / CLK_TCK, broker / CLK_TCK, machine / CLK_TCK


def _is_broker(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"kafka.Kafka" in fh.read()
    except OSError:
        return False


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Step:
    """One measured load step against one ingest."""

    target: str
    clients: int
    round: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    statuses: dict[str, int]
    ingest_cpu_s: float
    generator_cpu_s: float
    broker_cpu_s: float
    machine_cpu_s: float
    tag: str
    accepted: int
    lost: int | None = None
    duplicates: int | None = None
    unanswered: int | None = None


def measure(target: str, requests: Requests, settings: Settings, sid: int, clients: int,
            seconds: float, rnd: int, limit: int | None = None) -> tuple[Step, list[str]]:
    (ingest0, broker0, machine0), own0 = cpu_s(sid), own_cpu_s()
    tally, wall = asyncio.run(drive(requests, settings.host, settings.ingest_port, clients,
                                    seconds, limit))
    (ingest1, broker1, machine1), own1 = cpu_s(sid), own_cpu_s()
    ms = [x * 1000 for x in tally.latencies]
    n = len(ms)
    step = Step(target=target, clients=clients, round=rnd, seconds=wall, requests=n,
                rps=n / wall, p50_ms=percentile(ms, 0.50), p95_ms=percentile(ms, 0.95),
                p99_ms=percentile(ms, 0.99), max_ms=max(ms), mean_ms=sum(ms) / n,
                statuses={str(k): v for k, v in sorted(tally.statuses.items())},
                ingest_cpu_s=ingest1 - ingest0, generator_cpu_s=own1 - own0,
                broker_cpu_s=broker1 - broker0, machine_cpu_s=machine1 - machine0,
                tag=requests.tag,
                accepted=len(tally.accepted))
    return step, tally.accepted


# --------------------------------------------------------------------------- ingest


@dataclass
class Target:
    """An ingest to measure: a name and the source tree it runs from (None: this one)."""

    name: str
    tree: Path | None = None


def ingest_argv(target: Target, processes: int) -> list[str]:
    extra = ["--processes", str(processes)] if processes > 1 else []
    if target.tree is None:
        return ["-m", "rekap.cli", "ingest", *extra]
    # Another tree: put it first on sys.path, then run its CLI as `-m rekap.cli` would.
    boot = (f"import runpy, sys; sys.path.insert(0, {str(target.tree)!r}); "
            "runpy.run_module('rekap.cli', run_name='__main__', alter_sys=True)")
    return ["-c", boot, "ingest", *extra]


def ready(settings: Settings) -> bool:
    try:
        with urlopen(f"http://{settings.host}:{settings.ingest_port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except (URLError, OSError):
        return False


def generous(settings: Settings) -> Settings:
    """``settings`` with the rate and in-flight limits of :data:`GENEROUS` (those it has)
    and without TLS: the bench measures the service, plain HTTP on loopback."""
    names = {f.name for f in fields(settings)}
    changes: dict[str, Any] = {k: v for k, v in GENEROUS.items() if k in names}
    changes |= {k: None for k in ("tls_cert", "tls_key") if k in names}
    return replace(settings, **changes)


@contextmanager
def serving(settings: Settings, target: Target, processes: int) -> Iterator[int]:
    """Run ingest until the block ends; yields its session id (its pid)."""
    name = f"ingest-{target.name}"
    with child(settings, ingest_argv(target, processes), name) as proc:
        wait_for(lambda: ready(settings), proc, "ready", settings, name, timeout_s=60)
        yield proc.pid


def verify(settings: Settings, steps: list[Step], accepted: dict[str, list[str]]) -> None:
    """Fill each step's lost/duplicates/unanswered from the topic, read to its end."""
    records, _ends = read_topic(settings, settings.topic_sales, timeout_s=120)
    seen: Counter[str] = Counter(json.loads(r.value or b"{}")["sale_id"] for r in records)
    by_tag: dict[str, Counter[str]] = {}
    for sale_id, count in seen.items():
        by_tag.setdefault(sale_id.rsplit("-", 2)[0], Counter())[sale_id] = count
    for step in steps:
        mine = by_tag.get(step.tag, Counter())
        ok = set(accepted[step.tag])
        step.lost = len(ok - mine.keys())
        step.duplicates = sum(c - 1 for c in mine.values() if c > 1)
        step.unanswered = len(mine.keys() - ok)


# --------------------------------------------------------------------------- report


def summarise(steps: list[Step]) -> list[dict[str, Any]]:
    """Per (target, clients): medians over rounds of rate and percentiles, sums of counts."""
    rows: list[dict[str, Any]] = []
    keys = list(dict.fromkeys((s.target, s.clients) for s in steps))
    for target, clients in keys:
        mine = [s for s in steps if (s.target, s.clients) == (target, clients)]

        def med(name: str, mine: list[Step] = mine) -> float:
            return statistics.median(float(getattr(s, name)) for s in mine)

        statuses: Counter[str] = Counter()
        for s in mine:
            statuses.update(s.statuses)
        cpu = sum(s.ingest_cpu_s for s in mine)
        gen = sum(s.generator_cpu_s for s in mine)
        broker = sum(s.broker_cpu_s for s in mine)
        busy = sum(s.machine_cpu_s for s in mine)
        wall = sum(s.seconds for s in mine)
        rows.append({
            "target": target, "clients": clients, "rounds": len(mine),
            "rps": med("rps"), "p50_ms": med("p50_ms"), "p95_ms": med("p95_ms"),
            "p99_ms": med("p99_ms"), "max_ms": med("max_ms"), "mean_ms": med("mean_ms"),
            "requests": sum(s.requests for s in mine), "statuses": dict(statuses),
            "ingest_cpu_per_s": cpu / wall, "generator_cpu_per_s": gen / wall,
            "broker_cpu_per_s": broker / wall, "machine_cpu_per_s": busy / wall,
            "ingest_cpu_ms_per_request": 1000 * cpu / max(1, sum(s.requests for s in mine)),
            "lost": sum(s.lost or 0 for s in mine),
            "duplicates": sum(s.duplicates or 0 for s in mine),
            "unanswered": sum(s.unanswered or 0 for s in mine),
        })
    return rows


def markdown(doc: dict[str, Any]) -> str:
    cfg = doc["config"]
    quick = " **Quick run (`--quick`): a smoke test, not a measurement.**" if cfg["quick"] else ""
    mach = doc["machine"]
    lines = [f"# rekap ingest bench, {doc['started']}", "",
             f"git `{doc['git']}`; {mach['cpus']} CPUs, Python {mach['python']}; Kafka "
             f"{cfg['kafka']}; {cfg['processes']} ingest process(es); the load generator on "
             f"the same machine. Closed loop, {cfg['seconds']:g} s per step, {cfg['rounds']} "
             f"round(s); medians over rounds. Took {doc['elapsed_s']:.0f} s.{quick}", "",
             "| ingest | clients | requests/s | p50 ms | p95 ms | p99 ms | max ms | answers "
             "| CPU s/s: ingest, generator, broker, machine | ingest CPU ms/req | lost | dup "
             "| unanswered |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in doc["summary"]:
        answers = ", ".join(f"{k}: {v:,}" for k, v in r["statuses"].items())
        lines.append(
            f"| {r['target']} | {r['clients']} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | "
            f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {answers} | "
            f"{r['ingest_cpu_per_s']:.2f}, {r['generator_cpu_per_s']:.2f}, "
            f"{r['broker_cpu_per_s']:.2f}, {r['machine_cpu_per_s']:.2f} | "
            f"{r['ingest_cpu_ms_per_request']:.2f} | {r['lost']} | {r['duplicates']} | "
            f"{r['unanswered']} |")
    ratios = doc.get("ratios", [])
    if ratios:
        lines += ["", "| clients | requests/s, this ÷ other | p99, this ÷ other |",
                  "|---:|---:|---:|"]
        lines += [f"| {r['clients']} | {r['rps_ratio']:.2f}× | {r['p99_ratio']:.2f}× |"
                  for r in ratios]
    lines += ["", "Lost: answered 202 but not in the topic (must be 0). Dup: in the topic more "
              "than once. Unanswered: in the topic without a 202 seen (a request still in "
              "flight at the end of a step, or answered otherwise). 1 client = sales one after "
              "another on one connection: the latency of a single sale."]
    return "\n".join(lines) + "\n"


def ratios(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    this = {r["clients"]: r for r in summary if r["target"] == "this"}
    other = {r["clients"]: r for r in summary if r["target"] == "other"}
    return [{"clients": c, "rps_ratio": this[c]["rps"] / other[c]["rps"],
             "p99_ratio": this[c]["p99_ms"] / other[c]["p99_ms"]}
            for c in this if c in other]


# --------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="16,64",
                        help="concurrent clients, one load step each (16,64)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per step (30)")
    parser.add_argument("--single", type=int, default=None,
                        help="sales one after another for the single-client latency (500)")
    parser.add_argument("--processes", type=int, default=1,
                        help="ingest processes sharing the port (rekap ingest --processes; 1)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of every step (1)")
    parser.add_argument("--against", type=Path, default=None,
                        help="also measure ingest from this source tree, alternating")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 s per step, 100 single sales (not for quoting)")
    parser.add_argument("--out-dir", type=Path, default=REPO / ".rekap" / "bench",
                        help="where ingest-<UTC>.md/.json go (.rekap/bench)")
    args = parser.parse_args(argv)
    for name, value in FULL.items():
        if getattr(args, name) is None:
            setattr(args, name, QUICK[name] if args.quick else value)
    args.clients = [int(c) for c in args.clients.split(",") if c.strip()]
    if args.against is not None and not (args.against / "rekap" / "cli.py").exists():
        parser.error(f"--against {args.against}: no rekap/cli.py there")
    return args


def run(args: argparse.Namespace, base: Settings, workdir: Path) -> list[Step]:
    targets = [Target("this")] + ([Target("other", args.against.resolve())]
                                  if args.against else [])
    settings = generous(replace(fresh_settings(base, "ingest", workdir),
                                ingest_port=free_port()))
    token_file = settings.runtime_dir / "tokens.toml"
    registry = load_registry(settings.registry_path)
    tokens = {b: issue_token(token_file, b, registry) for b in BOOTHS}
    settings = replace(settings, booth_tokens_path=token_file)
    client = connect_sync(settings)
    steps: list[Step] = []
    accepted: dict[str, list[str]] = {}
    ok = False
    try:
        ensure_topics(settings)
        for rnd in range(args.rounds):
            order = targets if rnd % 2 == 0 else targets[::-1]
            for target in order:
                with serving(settings, target, args.processes if target.tree is None else 1
                             ) as sid:
                    tag = f"b{rnd}{target.name[0]}"
                    measure(target.name, Requests(settings, tokens, f"{tag}w"), settings, sid,
                            1, 60.0, rnd, limit=WARMUP)
                    plan = [(1, args.single)] + [(c, None) for c in args.clients]
                    for i, (clients, limit) in enumerate(plan):
                        requests = Requests(settings, tokens, f"{tag}{i}")
                        step, ids = measure(target.name, requests, settings, sid, clients,
                                            args.seconds if limit is None else 600.0, rnd, limit)
                        steps.append(step)
                        accepted[requests.tag] = ids
                        print(f"  {target.name:>5} {clients:>3} clients: {step.rps:8,.0f} req/s "
                              f"p50 {step.p50_ms:6.1f}  p95 {step.p95_ms:6.1f}  p99 "
                              f"{step.p99_ms:6.1f} ms  {step.statuses}  CPU s: ingest "
                              f"{step.ingest_cpu_s:.1f}, generator {step.generator_cpu_s:.1f}, "
                              f"broker {step.broker_cpu_s:.1f}, machine {step.machine_cpu_s:.1f}",
                              flush=True)
        verify(settings, steps, accepted)
        ok = True
    finally:
        cleanup(settings, client, ok)
        client.close()
    return steps


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    base = Settings.from_env()
    started = time.monotonic()
    per_round = (len(args.clients) * args.seconds + 60) * (2 if args.against else 1)
    bound("the ingest bench", per_round * args.rounds + HARD_STOP_S)
    workdir, stamp = workspace()
    print(f"rekap ingest bench{' (quick)' if args.quick else ''}: kafka {base.kafka_bootstrap}, "
          f"clients {args.clients}, {args.seconds:g} s each, {args.processes} process(es)"
          + (f", against {args.against}" if args.against else ""), flush=True)
    steps = run(args, base, workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    summary = summarise(steps)
    doc: dict[str, Any] = {
        "schema": "rekap.bench.ingest.v1", "started": stamp,
        "elapsed_s": time.monotonic() - started,
        "command": " ".join([Path(sys.executable).name, "-m", "bench.ingest",
                             *(argv if argv is not None else sys.argv[1:])]),
        "git": git_describe(), "machine": machine(),
        "config": {"quick": args.quick, "clients": args.clients, "seconds": args.seconds,
                   "single": args.single, "processes": args.processes, "rounds": args.rounds,
                   "against": str(args.against) if args.against else None,
                   "kafka": base.kafka_bootstrap, "booths": list(BOOTHS)},
        "summary": summary, "ratios": ratios(summary), "steps": [asdict(s) for s in steps],
    }
    md, js = report.write(doc, args.out_dir, name="ingest", render=markdown)
    print()
    print(markdown(doc))
    print(f"written: {md}\n         {js}")
    lost = sum(r["lost"] for r in summary)
    if lost:
        raise BenchError(f"{lost} sales answered 202 are not in the topic")
    return 0


if __name__ == "__main__":
    try:
        run_cli(main)
    except KeyboardInterrupt as exc:
        print(f"ingest bench stopped ({exc or 'interrupted'}); children stopped, topics deleted",
              file=sys.stderr)
        sys.exit(130)
