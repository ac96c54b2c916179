"""Scale-out on this machine: 1, 2 and 3 rekap workers, one Redis server against Redis Cluster.

Usage::

    .venv/bin/python -m bench.scaleout [--quick] [--records 50000] [--runs 3] [--trees 1,6]
                                       [--single-workers 1,2,3] [--cluster-workers 1,3]
                                       [--budget 640] [--single-redis URL] [--out-dir DIR]

What it does, bounded and self-stopping:

1. starts a private Redis Cluster (3 primaries + 3 replicas) with ``deploy/local/stack up
   --redis-cluster`` in a temporary runtime dir on free private ports (the stack starts a
   private Kafka broker with it, which every row then uses, so Kafka is the same for all
   rows); ``stack down --purge`` runs at the end whatever happens (failure, Ctrl-C,
   SIGTERM, the hard stop);
2. generates the streams once: ``--records`` seeded records over ``--ikm`` IKM in ONE event
   tree (the programme's case: every key of a tree shares the hash tag ``{root}``, so one
   slot, one primary) and, for each other ``--trees`` count, spread over that many
   independent trees (:func:`bench.scale.load_forest`; six trees fall 2/2/2 on the three
   primaries, the placement is read back from the cluster and reported);
3. runs, for every tree shape, the real ``rekap worker`` with ``--single-workers`` workers
   on one Redis server (``--single-redis``, default ``REKAP_REDIS_URL``: the local stack's)
   and ``--cluster-workers`` workers on the cluster, each run on fresh topics (6
   partitions), group and prefix, through :func:`bench.throughput.one` (so: the backlog is
   produced first; several workers start on the empty topic, are frozen while it is
   produced and resumed together; every run is verified exact against the ledger folded
   from the stream before its number counts); ``--runs`` rounds, the order reversed every
   other round, after one unrecorded warm-up run (1 worker, cluster) on the fresh broker;
4. samples the CPU time of every process involved every 0.1 s (the workers, each Redis
   node, the broker, this process, and the whole machine from ``/proc/stat``) and reports,
   for each run's steady window, the cores each kept busy (``rest`` = the machine minus
   these: the idle Redis and whatever else runs on the machine, the noise gauge) and its
   CPU µs per record (cores ÷ rec/s: what the shape is made of, whatever share of the
   machine a run got);
5. prints the table (steady rec/s median [min-max], wall rec/s median, ratios to the first
   row and to the 1-worker single-Redis row of the same tree shape, cores, µs per record)
   and writes ``scaleout-<UTC>.json`` (every sample) and ``.md`` into ``--out-dir``
   (``.rekap/bench``).

Steady and wall are :mod:`bench.throughput`'s: steady = records after the first applied
batch / time from the first to the last applied batch; wall counts from the worker's spawn
for one worker (start-up and group join included) but from the resume for several (they
were started and frozen before the backlog was produced), so compare steady across worker
counts, and wall only between rows with the same worker count.

It stops itself: no new run starts once ``--budget`` seconds are spent (the last run and
the teardown then take up to a minute more), and at the budget plus
:data:`HARD_STOP_GRACE_S` everything is unwound wherever it is. ``--quick`` is a smoke
run of every row (4,000 records, one round), to check the bench, not to quote.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import redis

from bench import scale, throughput
from bench.throughput import REPO, BenchError, Contestant, Sample, Scale, run_cli
from rekap.redisconn import SyncClient, connect_sync
from rekap.settings import Settings

STACK = REPO / "deploy" / "local" / "stack"
#: Seconds past ``--budget`` after which the run is cut wherever it is.
HARD_STOP_GRACE_S = 240
#: Seconds between two CPU samples.
CPU_PERIOD_S = 0.1
#: First base ports tried for the private stack: Redis nodes base+0..5, buses base+10..15.
REDIS_BASE, KAFKA_BASE = 15100, 15190
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: The parts whose CPU cost per record is reported (the machine's own load is not one).
COST_PARTS = ("workers", "redis", "redis_replicas", "kafka", "bench")

FULL = {"records": 50_000, "runs": 3, "budget": 640.0, "warmup": 10_000}
QUICK = {"records": 4_000, "runs": 1, "budget": 150.0, "warmup": 0}


@dataclass(frozen=True)
class Row:
    """One row of the table: a tree shape, a Redis deployment, a worker count."""

    trees: int
    redis: str  # "single" or "cluster"
    workers: int

    @property
    def label(self) -> str:
        return (f"{self.trees} tree{'s' if self.trees > 1 else ''}, "
                f"{'cluster' if self.redis == 'cluster' else 'single'}, "
                f"{self.workers} worker{'s' if self.workers > 1 else ''}")


def rows_of(trees: tuple[int, ...], single: tuple[int, ...], cluster: tuple[int, ...]) -> list[Row]:
    return ([Row(t, "single", w) for t in trees for w in single]
            + [Row(t, "cluster", w) for t in trees for w in cluster])


# --------------------------------------------------------------------------- the private cluster


def port_free(port: int) -> bool:
    """Bindable as Redis and Kafka bind (SO_REUSEADDR: a port in TIME_WAIT is free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(redis_base: int = REDIS_BASE, kafka_base: int = KAFKA_BASE) -> tuple[int, int]:
    """Base ports (Redis, Kafka) whose whole span is free: six nodes, six cluster buses,
    the broker and its controller."""
    for shift in range(0, 4000, 200):
        r, k = redis_base + shift, kafka_base + shift
        wanted = [r + i for i in range(6)] + [r + 10 + i for i in range(6)] + [k, k + 1]
        if all(port_free(p) for p in wanted):
            return r, k
    raise BenchError(f"no free port span found above {redis_base} / {kafka_base}")


@dataclass(frozen=True)
class PrivateCluster:
    runtime: Path
    redis_port: int
    kafka_port: int
    bootstrap: str = ""
    redis_url: str = ""

    @property
    def env(self) -> dict[str, str]:
        keep = {"REKAP_CACHE_DIR", "REKAP_KAFKA_JAVA_OPTS"}
        env = {k: v for k, v in os.environ.items() if not k.startswith("REKAP_") or k in keep}
        return env | {"REKAP_RUNTIME_DIR": str(self.runtime),
                      "REKAP_REDIS_PORT": str(self.redis_port),
                      "REKAP_KAFKA_PORT": str(self.kafka_port),
                      "REKAP_KAFKA_CONTROLLER_PORT": str(self.kafka_port + 1),
                      "REKAP_STACK_PROMETHEUS": "0", "REKAP_PYTHON": sys.executable}

    def stack(self, *args: str, timeout_s: float = 300) -> str:
        """``deploy/local/stack ARGS`` in its own session (a Ctrl-C meant for the bench must
        not cut a ``down`` short); its output goes to the runtime dir's ``stack.log``."""
        done = subprocess.run([str(STACK), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout_s, check=False, start_new_session=True)
        with (self.runtime / "stack.log").open("a") as log:
            log.write(f"$ stack {' '.join(args)}\n{done.stdout}{done.stderr}")
        if done.returncode != 0:
            raise BenchError(f"stack {' '.join(args)} exited {done.returncode}:\n"
                             f"{(done.stdout + done.stderr)[-2000:]}")
        return done.stdout

    def pid(self, service: str) -> int | None:
        try:
            return int((self.runtime / "pids" / f"{service}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @property
    def node_ports(self) -> list[int]:
        return [self.redis_port + i for i in range(6)]


@contextmanager
def private_cluster(redis_base: int, kafka_base: int) -> Iterator[PrivateCluster]:
    """``stack up --redis-cluster`` in a temporary runtime dir; ``down --purge`` and the dir
    removed on the way out, however it is left."""
    runtime = Path(tempfile.mkdtemp(prefix="rekap-scaleout-"))
    r, k = pick_ports(redis_base, kafka_base)
    cluster = PrivateCluster(runtime, r, k)
    try:
        print(f"private stack: Redis Cluster on 127.0.0.1:{r}..{r + 5}, Kafka 127.0.0.1:{k}, "
              f"runtime {runtime} ...", flush=True)
        started = time.monotonic()
        cluster.stack("up", "--redis-cluster")
        exports = dict(line.removeprefix("export ").split("=", 1)
                       for line in cluster.stack("env").splitlines() if line.startswith("export "))
        cluster = replace(cluster, bootstrap=shlex.split(exports["REKAP_KAFKA_BOOTSTRAP"])[0],
                          redis_url=shlex.split(exports["REKAP_REDIS_URL"])[0])
        print(f"private stack up in {time.monotonic() - started:.0f} s", flush=True)
        yield cluster
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the teardown finish
        try:
            cluster.stack("down", "--purge", timeout_s=180)
        except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
            print(f"private stack: down --purge failed ({exc}); runtime {runtime} left "
                  "for a manual 'stack down --purge'", file=sys.stderr)
        else:
            shutil.rmtree(runtime, ignore_errors=True)
            print("private stack: stopped and purged", flush=True)
        finally:
            signal.signal(signal.SIGINT, previous)


def placement(client: SyncClient, roots: list[str]) -> dict[str, int]:
    """The port of the primary serving each tree's hash slot."""
    assert isinstance(client, redis.RedisCluster)
    return {root: int(client.get_node_from_key(f"{{{root}}}").port) for root in roots}


# --------------------------------------------------------------------------- CPU


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine (every core) since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def children(pid: int) -> list[int]:
    out: list[int] = []
    with suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def is_worker(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"rekap.cli" in argv and b"worker" in argv


class CpuSampler:
    """Every :data:`CPU_PERIOD_S`: cumulative CPU seconds per component (``workers`` = this
    process's ``rekap worker`` children, whatever run they belong to; fixed pids such as
    ``kafka`` and ``redis:<port>``; ``bench`` = this process; ``machine`` = all cores)."""

    def __init__(self, fixed: dict[int, str]) -> None:
        self.component = dict(fixed)
        self.fixed = set(fixed)
        self.last: dict[int, float] = {}
        self.retired: dict[str, float] = defaultdict(float)
        self.times: list[float] = []
        self.values: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self.tick()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(CPU_PERIOD_S):
            self.tick()

    def tick(self) -> None:
        me = os.getpid()
        for pid in children(me):
            if pid not in self.component and is_worker(pid):
                self.component[pid] = "workers"
        for pid, name in list(self.component.items()):
            cpu = proc_cpu_s(pid)
            if cpu is not None:
                self.last[pid] = cpu
            elif pid not in self.fixed:  # exited: keep what it used, forget the pid
                self.retired[name] += self.last.pop(pid, 0.0)
                del self.component[pid]
        totals: dict[str, float] = defaultdict(float, self.retired)
        for pid, cpu in self.last.items():
            totals[self.component[pid]] += cpu
        totals["bench"] = proc_cpu_s(me) or 0.0
        totals["machine"] = machine_busy_s()
        self.values.append(dict(totals))
        self.times.append(time.time())

    def _at(self, t: float, name: str) -> float:
        i = bisect.bisect_left(self.times, t)
        if i <= 0:
            return self.values[0].get(name, 0.0)
        if i >= len(self.times):
            return self.values[-1].get(name, 0.0)
        t0, t1 = self.times[i - 1], self.times[i]
        v0, v1 = self.values[i - 1].get(name, 0.0), self.values[i].get(name, 0.0)
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1

    def cores(self, start: float, end: float) -> dict[str, float]:
        """Cores each component kept busy on average from ``start`` to ``end`` (epoch s)."""
        if end <= start or not self.times:
            return {}
        names = set().union(*self.values[-2:]) if len(self.values) > 1 else set(self.values[0])
        return {n: (self._at(end, n) - self._at(start, n)) / (end - start) for n in sorted(names)}


def redis_pids(ports: dict[str, SyncClient]) -> dict[int, str]:
    """``{pid: "redis:<port>"}`` of each Redis server, from its ``INFO server``."""
    out: dict[int, str] = {}
    for name, client in ports.items():
        with suppress(redis.RedisError, KeyError, ValueError):
            pid = int(client.info("server")["process_id"])
            if Path(f"/proc/{pid}").exists():  # same machine and pid namespace
                out[pid] = name
    return out


def cpu_of(cores: dict[str, float], row: Row, roles: dict[str, str]) -> dict[str, float]:
    """A run's cores by role: workers, the Redis it used (for the cluster: all primaries,
    the busiest one, the replicas), the broker, this process, and the rest of the machine
    (the idle Redis, other work on the machine)."""
    used = [n for n, role in roles.items() if role.startswith(row.redis)]
    redis_used = {n: cores.get(n, 0.0) for n in used}
    primaries = [v for n, v in redis_used.items() if roles[n] != "cluster-replica"]
    out = {"workers": cores.get("workers", 0.0), "redis": sum(primaries),
           "redis_busiest": max(primaries, default=0.0),
           "redis_replicas": sum(v for n, v in redis_used.items()
                                 if roles[n] == "cluster-replica"),
           "kafka": cores.get("kafka", 0.0), "bench": cores.get("bench", 0.0),
           "machine": cores.get("machine", 0.0)}
    out["rest"] = out["machine"] - sum(out[k] for k in ("workers", "redis", "redis_replicas",
                                                       "kafka", "bench"))
    return out


# --------------------------------------------------------------------------- runs


@dataclass
class Bed:
    """Everything a run needs: settings and client per Redis, stream per tree shape, CPU."""

    bases: dict[str, Settings]
    clients: dict[str, SyncClient]
    streams: dict[int, Scale]
    workdir: Path
    sampler: CpuSampler
    roles: dict[str, str]


def forest_scale(workdir: Path, ikm: int, trees: int, n: int, seed: int) -> Scale:
    """:func:`bench.throughput.prepare_scale` for a forest of ``trees`` independent trees."""
    path = workdir / f"forest-{trees}-{ikm}.toml"
    registry = scale.load_forest(path, ikm, trees)
    records = throughput.generate_stream(registry, n, seed)
    return Scale(ikm, registry, path, records, throughput.encode_stream(records))


def measure(row: Row, bed: Bed, run: int, stream: Scale | None = None) -> Sample:
    """One verified run of ``row`` with its CPU figures in ``extra["cpu"]``."""
    stream = stream or bed.streams[row.trees]
    contestant = Contestant("rekap", stream.ikm, row.workers, row.label)
    began = time.time()
    sample = throughput.one(contestant, bed.bases[row.redis], bed.workdir, run, stream,
                            bed.clients[row.redis])
    end = sample.extra.get("drained_at")
    if end:
        cores = bed.sampler.cores(end - sample.steady_s, end)
        sample.extra["cpu"] = cpu_of(cores, row, bed.roles)
        sample.extra["us_per_record"] = {k: sample.extra["cpu"][k] / sample.steady_rps * 1e6
                                         for k in COST_PARTS}
    sample.extra |= {"trees": row.trees, "redis": row.redis, "run_s": time.time() - began}
    return sample


def show(sample: Sample) -> str:
    cpu = sample.extra.get("cpu", {})
    note = " REBALANCED" if sample.extra.get("rebalanced") else ""
    cores = (f"  cores: workers {cpu['workers']:.2f} redis {cpu['redis']:.2f} "
             f"kafka {cpu['kafka']:.2f} machine {cpu['machine']:.2f}") if cpu else ""
    return (f"steady {sample.steady_rps:>8,.0f} rec/s over {sample.steady_s:5.2f}s  wall "
            f"{sample.wall_rps:>8,.0f}  (verified, run {sample.extra['run_s']:.0f} s){note}{cores}")


def rounds(rows: list[Row], bed: Bed, runs: int, deadline: float) -> list[Sample]:
    """``runs`` rounds over ``rows``, reversed every other round; none starts past ``deadline``."""
    samples: list[Sample] = []
    for run in range(runs):
        for row in rows if run % 2 == 0 else rows[::-1]:
            if time.monotonic() > deadline:
                print(f"  time budget spent: no run {run + 1} of {row.label} or later", flush=True)
                return samples
            sample = measure(row, bed, run)
            samples.append(sample)
            print(f"  run {run + 1} {row.label:<28} {show(sample)}", flush=True)
    return samples


# --------------------------------------------------------------------------- report


def summarise(rows: list[Row], samples: list[Sample]) -> dict[str, dict[str, Any]]:
    """Per row: medians and ranges of both rates, median cores, and the steady median's ratio
    to the first row (``vs_ref``) and to the single-Redis 1-worker row of its tree shape."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        mine = [s for s in samples if s.contestant == row.label]
        if not mine:
            continue
        steady, wall = [s.steady_rps for s in mine], [s.wall_rps for s in mine]
        cpus = [s.extra["cpu"] for s in mine if "cpu" in s.extra]
        costs = [s.extra["us_per_record"] for s in mine if "us_per_record" in s.extra]
        out[row.label] = {
            **asdict(row), "runs": len(mine), "verified": all(s.verified for s in mine),
            "rebalanced": sum(bool(s.extra.get("rebalanced")) for s in mine),
            "steady_median": statistics.median(steady), "steady_min": min(steady),
            "steady_max": max(steady), "wall_median": statistics.median(wall),
            "wall_min": min(wall), "wall_max": max(wall),
            "cpu": {k: statistics.median(c[k] for c in cpus) for k in cpus[0]} if cpus else {},
            "us_per_record": ({k: statistics.median(c[k] for c in costs) for k in costs[0]}
                              if costs else {}),
        }
    ref = out.get(rows[0].label)
    for r in out.values():
        shape = out.get(Row(r["trees"], "single", 1).label)
        r["vs_ref"] = r["steady_median"] / ref["steady_median"] if ref else None
        r["vs_shape"] = r["steady_median"] / shape["steady_median"] if shape else None
    return out


def _x(value: float | None) -> str:
    return f"{value:.2f}×" if value is not None else "–"


def table(summary: dict[str, dict[str, Any]]) -> list[str]:
    """The markdown table of rates (and, below it, the one of cores)."""
    ref = next(iter(summary), "")
    lines = [f"| row | trees | Redis | workers | steady rec/s, median [min–max] | wall rec/s, "
             f"median | ÷ {ref} | ÷ 1 worker, single, same trees | exact | runs |",
             "|---|---:|---|---:|---:|---:|---:|---:|:---:|---:|"]
    for label, r in summary.items():
        runs = f"{r['runs']}" + (f" ({r['rebalanced']} rebalanced)" if r["rebalanced"] else "")
        lines.append(
            f"| {label} | {r['trees']} | {r['redis']} | {r['workers']} | "
            f"{r['steady_median']:,.0f} [{r['steady_min']:,.0f}–{r['steady_max']:,.0f}] | "
            f"{r['wall_median']:,.0f} | {_x(r['vs_ref'])} | {_x(r['vs_shape'])} | "
            f"{'yes' if r['verified'] else 'NO'} | {runs} |")
    lines += ["", "Cores kept busy during the steady window (medians over runs; 2 = the whole "
              "machine):", "",
              "| row | workers | Redis primaries (busiest one) | Redis replicas | Kafka | "
              "bench process | rest of machine | machine |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, r in summary.items():
        c = r["cpu"]
        if not c:
            continue
        replicas = f"{c['redis_replicas']:.2f}" if r["redis"] == "cluster" else "–"
        lines.append(f"| {label} | {c['workers']:.2f} | {c['redis']:.2f} "
                     f"({c['redis_busiest']:.2f}) | {replicas} | {c['kafka']:.2f} | "
                     f"{c['bench']:.2f} | {c['rest']:.2f} | {c['machine']:.2f} |")
    lines += ["", "CPU per record in the steady window, µs (medians over runs; cores ÷ steady "
              "rec/s, so it does not depend on how much of the machine the run got):", "",
              "| row | workers | Redis primaries | Redis replicas | Kafka | bench process | "
              "all of these |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label, r in summary.items():
        u = r["us_per_record"]
        if not u:
            continue
        replicas = f"{u['redis_replicas']:.1f}" if r["redis"] == "cluster" else "–"
        lines.append(f"| {label} | {u['workers']:.1f} | {u['redis']:.1f} | {replicas} | "
                     f"{u['kafka']:.1f} | {u['bench']:.1f} | {sum(u.values()):.1f} |")
    return lines


def text_table(summary: dict[str, dict[str, Any]]) -> str:
    head = (f"{'row':<28} {'steady rec/s median [min-max]':>32} {'wall rec/s':>10} "
            f"{'/ref':>6} {'/shape':>7} {'cores: wrk':>10} {'redis':>6} {'kafka':>6} {'mach':>5}"
            f" {'us/rec: wrk':>11} {'redis':>6} {'all':>6}")
    lines = [head, "-" * len(head)]
    for label, r in summary.items():
        c = r["cpu"] or dict.fromkeys(("workers", "redis", "kafka", "machine"), float("nan"))
        u = r["us_per_record"] or dict.fromkeys(COST_PARTS, float("nan"))
        steady = f"{r['steady_median']:,.0f} [{r['steady_min']:,.0f}-{r['steady_max']:,.0f}]"
        lines.append(f"{label:<28} {steady:>32} {r['wall_median']:>10,.0f} "
                     f"{r['vs_ref'] or 0:>6.2f} {r['vs_shape'] or 0:>7.2f} {c['workers']:>10.2f} "
                     f"{c['redis']:>6.2f} {c['kafka']:>6.2f} {c['machine']:>5.2f} "
                     f"{u['workers']:>11.1f} {u['redis']:>6.1f} {sum(u.values()):>6.1f}")
    return "\n".join(lines)


def markdown(doc: dict[str, Any]) -> str:
    cfg = doc["config"]
    where = "; ".join(f"{t} tree(s): " + ", ".join(f"{root} on :{port}" for root, port in p.items())
                      for t, p in doc["placement"].items())
    lines = [f"# rekap scale-out, {doc['started']}", "",
             f"`{doc['command']}` on `{doc['git']}`, {doc['elapsed_s']:.0f} s, "
             f"{doc['machine']['cpus']} CPUs, status: {doc['status']}.", "",
             f"{cfg['records']:,} records per run, {cfg['ikm']} IKM, {cfg['partitions']} "
             f"partitions, {cfg['runs']} round(s) (order reversed every other round), every run "
             f"verified exact. Kafka: the private stack's broker ({cfg['kafka']}). Single: "
             f"{cfg['single_redis']}. Cluster: {cfg['cluster_redis']} (3 primaries + 3 replicas). "
             f"Tree placement on the cluster's primaries: {where}.", "",
             *table(doc["summary"]), "",
             "Steady = records after the first applied batch / first to last applied batch. "
             "Wall counts from the spawn for one worker (start-up included), from the resume "
             "of the frozen group for several: compare it only at equal worker counts.", ""]
    return "\n".join(lines)


def git_head() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, text=True, capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} + uncommitted changes" if dirty else head


# --------------------------------------------------------------------------- main


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 4000 records, one round, no warm-up (not for quoting)")
    parser.add_argument("--records", type=int, default=None, help="records per run (50000)")
    parser.add_argument("--runs", type=int, default=None, help="rounds over every row (3)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds after which no new run starts (640; --quick 150)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="records of the unrecorded warm-up run (10000; 0 = none)")
    parser.add_argument("--partitions", type=int, default=6, help="sales-topic partitions (6)")
    parser.add_argument("--ikm", type=int, default=30, help="IKM in every event tree (30)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated streams (7)")
    parser.add_argument("--trees", type=_ints, default=(1, 6),
                        help="tree shapes: 1 = one event tree, N = N independent trees (1,6)")
    parser.add_argument("--single-workers", type=_ints, default=(1, 2, 3),
                        help="worker counts on the single Redis (1,2,3)")
    parser.add_argument("--cluster-workers", type=_ints, default=(1, 3),
                        help="worker counts on the Redis Cluster (1,3)")
    parser.add_argument("--single-redis", default=None,
                        help="the single Redis server (default REKAP_REDIS_URL or the local stack's)")
    parser.add_argument("--redis-port", type=int, default=REDIS_BASE,
                        help=f"first base port tried for the cluster's nodes ({REDIS_BASE})")
    parser.add_argument("--kafka-port", type=int, default=KAFKA_BASE,
                        help=f"first port tried for the private broker ({KAFKA_BASE})")
    parser.add_argument("--out-dir", type=Path, default=REPO / ".rekap" / "bench",
                        help="where scaleout-<UTC>.json/.md go (.rekap/bench)")
    args = parser.parse_args(argv)
    throughput.fill_sizes(args, FULL, QUICK)
    if not args.trees or not (args.single_workers or args.cluster_workers):
        parser.error("nothing to run: give --trees and at least one worker count")
    return args


def prepare(args: argparse.Namespace, cluster: PrivateCluster, workdir: Path,
            stack: ExitStack) -> tuple[Bed, dict[int, dict[str, int]]]:
    base = Settings.from_env(sales_partitions=args.partitions)
    base = replace(base, kafka_bootstrap=cluster.bootstrap)
    bases = {"single": replace(base, redis_url=args.single_redis or base.redis_url),
             "cluster": replace(base, redis_url=cluster.redis_url)}
    clients = {k: connect_sync(s) for k, s in bases.items()}
    for name, client in clients.items():
        stack.callback(client.close)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise BenchError(f"the {name} Redis ({bases[name].redis_url_masked}) does not "
                             f"answer: {exc}; is the local stack up?") from exc
    streams = {t: (throughput.prepare_scale(workdir, args.ikm, args.records, args.seed) if t == 1
                   else forest_scale(workdir, args.ikm, t, args.records, args.seed))
               for t in args.trees}
    where = {t: placement(clients["cluster"], sorted({s.registry.root(e) for e in s.registry.events}))
             for t, s in streams.items()}
    nodes: dict[str, SyncClient] = {"redis:single": clients["single"]}
    roles: dict[str, str] = {"redis:single": "single"}
    for port in cluster.node_ports:
        node = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        stack.callback(node.close)
        nodes[f"redis:{port}"] = node
        role = node.info("replication").get("role")
        roles[f"redis:{port}"] = "cluster-primary" if role == "master" else "cluster-replica"
    fixed = redis_pids(nodes)
    kafka = cluster.pid("kafka")
    if kafka is not None:
        fixed[kafka] = "kafka"
    sampler = stack.enter_context(CpuSampler(fixed))
    return Bed(bases, clients, streams, workdir, sampler, roles), where


def run(args: argparse.Namespace, started: float, workdir: Path, doc: dict[str, Any]) -> None:
    """Every row, every round, on the private cluster; fills ``doc`` as it goes (so a failure
    still leaves the runs before it)."""
    rows = rows_of(args.trees, args.single_workers, args.cluster_workers)
    samples: list[Sample] = []
    doc |= {"status": "failed", "placement": {}}
    with ExitStack() as stack:
        cluster = stack.enter_context(private_cluster(args.redis_port, args.kafka_port))
        bed, doc["placement"] = prepare(args, cluster, workdir, stack)
        doc["config"] = {"kafka": cluster.bootstrap, "cluster_redis": cluster.redis_url,
                         "single_redis": bed.bases["single"].redis_url_masked,
                         "roles": bed.roles, "worker_settings": throughput.batching(bed.bases["single"])}
        for t, where in doc["placement"].items():
            print(f"  {t} tree(s) on the cluster: "
                  + ", ".join(f"{root} -> :{port}" for root, port in where.items()), flush=True)
        if args.warmup:
            warm = throughput.prepare_scale(workdir, args.ikm, args.warmup, args.seed + 1)
            sample = measure(Row(1, "cluster", 1), bed, -1, warm)
            print(f"  warm-up on the fresh broker and cluster ({args.warmup:,} records, not "
                  f"counted): {show(sample)}", flush=True)
        print(f"{len(rows)} rows x {args.runs} rounds, {args.records:,} records each", flush=True)
        try:
            samples = rounds(rows, bed, args.runs, started + args.budget)
            doc["status"] = "complete" if len(samples) == len(rows) * args.runs else "budget spent"
        finally:
            doc["summary"] = summarise(rows, samples)
            doc["samples"] = [asdict(s) for s in samples]


def finish(doc: dict[str, Any], args: argparse.Namespace, argv: list[str] | None,
           stamp: str, started: float) -> tuple[Path, Path]:
    doc |= {"schema": "rekap.bench.scaleout.v1", "started": stamp,
            "elapsed_s": time.monotonic() - started,
            "command": " ".join([Path(sys.executable).name, "-m", "bench.scaleout",
                                 *(argv if argv is not None else sys.argv[1:])]),
            "git": git_head(), "git_describe": throughput.git_describe(),
            "machine": throughput.machine()}
    doc["config"] = {**doc.get("config", {}), "records": args.records, "runs": args.runs,
                     "ikm": args.ikm, "partitions": args.partitions, "seed": args.seed,
                     "trees": list(args.trees), "single_workers": list(args.single_workers),
                     "cluster_workers": list(args.cluster_workers), "warmup": args.warmup,
                     "budget_s": args.budget, "quick": args.quick,
                     "kafka": doc.get("config", {}).get("kafka", "?"),
                     "cluster_redis": doc.get("config", {}).get("cluster_redis", "?"),
                     "single_redis": doc.get("config", {}).get("single_redis", "?")}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    js = args.out_dir / f"scaleout-{stamp}.json"
    md = js.with_suffix(".md")
    js.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    md.write_text(markdown(doc))
    return md, js


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.monotonic()
    throughput.bound("the scale-out bench", args.budget + HARD_STOP_GRACE_S)
    workdir, stamp = throughput.workspace()
    print(f"rekap scale-out{' (quick)' if args.quick else ''}: {os.cpu_count()} CPUs, "
          f"budget {args.budget:g} s", flush=True)
    doc: dict[str, Any] = {}
    try:
        run(args, started, workdir, doc)
    except BenchError as exc:
        doc |= {"status": f"failed: {exc}"}
        if doc.get("summary"):  # keep what was measured before the failure
            md, _ = finish(doc, args, argv, stamp, started)
            print(f"partial results: {md}", file=sys.stderr)
        raise
    finally:
        signal.alarm(0)
        if not any(workdir.glob("*/logs")):  # kept when a run failed or was cut: its logs
            shutil.rmtree(workdir, ignore_errors=True)
    md, js = finish(doc, args, argv, stamp, started)
    print()
    print(text_table(doc["summary"]))
    print(f"\nelapsed {doc['elapsed_s']:.0f} s, status {doc['status']}\nwritten: {md}\n"
          f"         {js}")
    return 0


def _main() -> None:
    try:
        run_cli(main)
    except KeyboardInterrupt as exc:
        print(f"scale-out bench stopped ({str(exc) or 'interrupted'}); workers stopped, topics "
              "deleted, private stack purged", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    _main()
