"""The fault-suite harness: a private stack, one scenario's processes, and what is measured.

A scenario (:class:`Scenario`) gets its own topics, consumer group and Redis prefix on
a private stack (:class:`PrivateStack`: ``deploy/local/stack`` with its own runtime dir
and ports, so killing its Kafka or Redis never touches the session's shared stack). It
starts real ``rekap worker`` processes (``tests.support.worker``), streams the seeded
simulator (``rekap simulate --via kafka --rate N``) into the sales topic, injects its
fault mid-stream with real signals, then checks Redis against the simulator's ground
truth. Nothing is mocked.

Measurements
------------
A :class:`Poller` thread reads Redis directly every :data:`POLL_S` seconds, in one
MULTI: the ``stats`` hashes of the programme tree and of ``_unrouted``, the programme's
and the exhibition's totals and day hashes, and both leaderboards. Each read is a
:class:`Sample` with

* ``counted`` = applied + duplicate:sale_id + rejected:* over both trees: the records the
  worker has taken in (``duplicate:offset``, a re-delivery, is not a new record);
* ``replays`` = duplicate:offset over both trees;
* ``gross`` = the programme's ``gross_idr``, which only sales raise (net ``amount_idr``
  legitimately falls on a refund, gross never does);
* ``converged`` = both events' totals hashes, their day hashes and both leaderboards are
  exactly the ground truth of the whole stream (a cheap proxy checked five times a
  second; the full per-IKM and IKM-day comparison runs once at the end).

From the samples, per scenario:

fault → converged
    From the instant of the (last) fault, i.e. the SIGKILL or the first poison record
    produced, to the first sample of the final run of ``converged`` samples that lasts
    to the end of observation. "never" when the last sample is not converged; 0 when
    that run began before the last fault (the fault never took the totals off the truth).
    It includes the rest of the stream after a mid-stream fault, hence also:

end → converged
    From the simulator's exit (its last record acknowledged by Kafka) to the same
    instant: how long the totals lag the end of the stream.

stale-read window
    A sample is *up to date* when Redis answered, the programme's ``gross`` is at least
    every value shown before, and either every record of the run is counted or
    ``counted`` is above every value shown before (the worker advanced since the last
    read). The stale-read window is the longest time between two consecutive up-to-date
    samples, counted over gaps that end after the fault; a gap still open when
    observation stops is reported as open (``>=``). During a healthy stream it is about
    one poll interval; a worker that does not consume, a Redis that is down or came
    back with less than it had shown, or a broker that takes no records all widen it.
    (Records not yet produced count as pending too: a reader during a Kafka outage is
    behind the sales that happen.)

replayed
    ``duplicate:offset`` at the end: records re-delivered and recognised by the fences.

dead letters
    Messages on the scenario's dead-letter topic (sum of its end offsets) and how many
    distinct keys (source coordinates) they carry.

Checks after the drain (every one must hold for the scenario to pass)
---------------------------------------------------------------------
* the sales topic holds exactly what the simulator (and the poison producer) sent;
* every totals hash (event, IKM; all integer fields, channels), every day hash (event
  and IKM-day) and every leaderboard equals the ground truth, and each leaderboard's
  order (``ZREVRANGE``) is the truth's order;
* records on the topic = applied + duplicate:sale_id + rejected (the ``stats`` hashes),
  and applied, duplicates and rejections equal the truth's (poison records count as
  rejected);
* the dead-letter topic carries as many distinct keys (source coordinates) as there are
  rejected records, every poison record's among them, and in the poison scenario (no
  re-delivery) no key twice;
* ``consumers.reconcile.run`` finds no difference.

The drain waits until the latest sample is converged and has counted every record. It
gives up when ``counted``, ``gross`` and ``converged`` did not change for ``Size.stall_s``
while every worker reported ready, or after ``Size.drain_cap_s``. A worker still joining
its group is not stalled; a growing ``replays`` is not progress (a batch retried forever
is re-fenced on every try). The checks above then run anyway, so the failure shows what
differs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import redis

from consumers.reconcile import format_report
from consumers.reconcile import run as reconcile
from producers.tokens import issue_demo_tokens
from rekap.names import TOTAL_FIELDS, Keys
from rekap.records import UNROUTED
from rekap.redisconn import connect_sync, is_cluster
from rekap.registry import Registry, load_registry
from rekap.settings import Settings
from rekap.topics import delete_topics, ensure_topics
from tests.conftest import REPO
from tests.streams.test_worker import counted, replays
from tests.streams.truth import IGNORED, redis_totals, stats
from tests.support.env import clean_env, settings_env
from tests.support.kafka import read_all
from tests.support.procs import Child, alive, free_port
from tests.support.worker import WorkerProcess, start_worker

STACK = REPO / "deploy" / "local" / "stack"
#: The simulator's programme: the root of the only event tree it writes.
ROOT = "lagawi-2022"
#: Seconds between two Redis reads of the poller.
POLL_S = 0.2
#: Lines of a worker log worth quoting in a failure.
LOG_MARKERS = ("ERROR", "CRITICAL", "WARNING", "Traceback", "Error:")
#: The simulator's noise, the same in both sizes: 5 % resends, refunds and bad records.
RESEND_RATE = 0.05
REFUND_RATE = 0.03
BAD_RATE = 0.005


@dataclass(frozen=True)
class Size:
    """How big a run is and how long each wait may take (seconds)."""

    name: str
    #: ``rekap simulate --scale``: 0.05 gives ~1,550 records, 3.6 gives ~112,000.
    scale: float
    #: ``rekap simulate --rate``, records per second: the fault lands mid-stream.
    rate: float
    #: The rate of a scenario that restarts a worker several times: slow enough that the
    #: stream outlasts the restarts, so every kill lands while records keep coming.
    restart_rate: float
    #: A (re)started worker must hold partitions within this (a SIGKILLed member's
    #: session has to expire first).
    ready_timeout_s: float
    #: To reach a progress point of the stream, restarts included.
    progress_timeout_s: float
    #: No change in Redis while every worker is ready: the drain gives up.
    stall_s: float
    #: After the stream ended, the longest the drain waits in any case.
    drain_cap_s: float
    #: pytest-timeout per scenario.
    test_timeout_s: float


SHORT = Size("short", scale=0.05, rate=300, restart_rate=150, ready_timeout_s=150, progress_timeout_s=200,
             stall_s=30, drain_cap_s=240, test_timeout_s=540)
LONG = Size("long", scale=3.6, rate=1500, restart_rate=1500, ready_timeout_s=150, progress_timeout_s=320,
            stall_s=45, drain_cap_s=420, test_timeout_s=900)


class FaultError(AssertionError):
    """A scenario could not go on (a process died, a wait ran out); the message says why."""


# ------------------------------------------------------------------------ private stack --

@dataclass
class PrivateStack:
    """``deploy/local/stack`` with its own runtime dir and ports: the scenarios' Kafka and Redis.

    ``redis_mode`` (``single``, ``cluster``, ``sentinel``) and ``kafka_brokers`` (1 or 3)
    choose the topology; the stack derives every node's port from the two base ports.
    """

    runtime: Path
    kafka_port: int
    controller_port: int
    redis_port: int
    redis_mode: str = "single"
    kafka_brokers: int = 1

    @property
    def kafka_ports(self) -> list[int]:
        return [self.kafka_port + 10 * k for k in range(self.kafka_brokers)]

    @property
    def redis_ports(self) -> list[int]:
        """The data nodes' ports: one, six cluster nodes, or a primary and two replicas."""
        n = {"single": 1, "cluster": 6, "sentinel": 3}[self.redis_mode]
        return [self.redis_port + i for i in range(n)]

    @property
    def sentinel_ports(self) -> list[int]:
        return [self.redis_port + 10 + i for i in range(3)] if self.redis_mode == "sentinel" else []

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.kafka_ports)

    @property
    def redis_url(self) -> str:
        if self.redis_mode == "cluster":
            return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.redis_ports) + "/0"
        if self.redis_mode == "sentinel":
            return ("redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
                    + "/rekap/0")
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def topology_args(self) -> list[str]:
        args = {"single": [], "cluster": ["--redis-cluster"],
                "sentinel": ["--redis-sentinel"]}[self.redis_mode]
        return [*args, "--kafka-brokers", str(self.kafka_brokers)] if self.kafka_brokers > 1 else args

    @property
    def env(self) -> dict[str, str]:
        return clean_env(REKAP_RUNTIME_DIR=str(self.runtime), REKAP_KAFKA_PORT=str(self.kafka_port),
                         REKAP_KAFKA_CONTROLLER_PORT=str(self.controller_port),
                         REKAP_REDIS_PORT=str(self.redis_port), REKAP_STACK_PROMETHEUS="0",
                         # The Kafka health check needs kafka-python: this interpreter has it.
                         REKAP_PYTHON=sys.executable)

    def run(self, *args: str, timeout_s: float = 240) -> str:
        done = subprocess.run([str(STACK), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise FaultError(f"stack {' '.join(args)} exited {done.returncode}\n"
                             f"{done.stdout}\n{done.stderr}")
        return done.stdout

    def up(self) -> None:
        """Start whatever of Kafka and Redis is not running, and wait until both are healthy."""
        self.run("up", *self.topology_args)

    def down(self) -> None:
        """Stop both and delete their data, configs and logs."""
        self.run("down", "--purge", timeout_s=120)

    def healthy(self) -> bool:
        return subprocess.run([str(STACK), "status"], env=self.env, capture_output=True,
                              timeout=60, check=False).returncode == 0

    def pid(self, service: str) -> int | None:
        """The live pid of this stack's service (``kafka``, ``redis``, ``kafka-2``, ``redis-<port>``,
        ``sentinel-<port>``), vouched for as the stack does.

        The pid file must name a running process whose command line carries this runtime
        dir's config path, so a stale pid file can never make us signal a stranger.
        """
        try:
            pid = int((self.runtime / "pids" / f"{service}.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            return None
        signature = str(self.runtime / "conf" / service)
        return pid if signature in cmdline and alive(pid) else None

    def sigkill(self, service: str) -> int:
        """SIGKILL the service (its process group: Redis may have a rewrite child); wait until gone."""
        pid = self.pid(service)
        if pid is None:
            raise FaultError(f"{service} of the private stack is not running, nothing to kill")
        try:
            if os.getpgid(pid) == pid:  # the stack makes each service a group leader
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 20
        while alive(pid):
            if time.monotonic() > deadline:
                raise FaultError(f"{service} (pid {pid}) still alive 20 s after SIGKILL")
            time.sleep(0.05)
        return pid

    def wipe_redis_data(self) -> None:
        """Delete Redis's data dir (its AOF): the next start comes back empty."""
        if self.pid("redis") is not None:
            raise FaultError("refusing to delete the data of a running Redis")
        shutil.rmtree(self.runtime / "data" / "redis", ignore_errors=True)


# -------------------------------------------------------------------- the ground truth --

Hashes = dict[str, dict[str, int]]


def expected_state(truth: dict[str, Any], registry: Registry, keys: Keys) -> tuple[Hashes, Hashes]:
    """The simulator's ground truth in the shape of :func:`tests.streams.truth.redis_totals`:
    (every totals and day hash, every leaderboard), zero fields left out as Redis reads do."""
    hashes: Hashes = {}
    boards: Hashes = {}
    for event_id, ev in truth["events"].items():
        root = registry.root(event_id)
        hashes[keys.event_totals(root, event_id)] = _flat_totals(ev)
        hashes[keys.event_days(root, event_id)] = _flat_days(ev["days"])
        boards[keys.board(root, event_id)] = {ikm: t["amount_idr"] for ikm, t in ev["ikm"].items()}
        for ikm, t in ev["ikm"].items():
            hashes[keys.ikm_totals(root, event_id, ikm)] = _flat_totals(t)
            hashes[keys.ikm_days(root, event_id, ikm)] = _flat_days(t["days"])
    return hashes, boards


def _flat_totals(t: dict[str, Any]) -> dict[str, int]:
    out = {f: t[f] for f in TOTAL_FIELDS}
    out.update({f"ch:{ch}:{f}": v for ch, fields in t["channels"].items() for f, v in fields.items()})
    return {f: v for f, v in out.items() if v}


def _flat_days(days: dict[str, dict[str, int]]) -> dict[str, int]:
    return {f"{day}:{f}": v for day, fields in days.items() for f, v in fields.items() if v}


def leaderboard_order(board: dict[str, int]) -> list[str]:
    """Members as ``ZREVRANGE`` lists them: score descending, ties in descending member order."""
    return [m for m, _ in sorted(board.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def differences(want: Hashes, have: Hashes, what: str) -> list[str]:
    """Readable lines for every key and field where ``have`` (Redis) differs from ``want``."""
    out = [f"{what} {k}: missing in Redis" for k in sorted(set(want) - set(have))]
    out += [f"{what} {k}: in Redis, not in the truth" for k in sorted(set(have) - set(want))]
    for k in sorted(set(want) & set(have)):
        for f in sorted(set(want[k]) | set(have[k])):
            if want[k].get(f, 0) != have[k].get(f, 0):
                out.append(f"{what} {k} {f}: redis {have[k].get(f, 0)}, truth {want[k].get(f, 0)}")
    return out


def _int_fields(raw: dict[bytes, bytes]) -> dict[str, int]:
    out = {}
    for f, v in raw.items():
        name = f.decode()
        if name not in IGNORED and int(v) != 0:
            out[name] = int(v)
    return out


# ---------------------------------------------------------------------------- polling --

@dataclass(frozen=True)
class Sample:
    """One read of Redis by the poller (see the module docstring)."""

    t: float
    ok: bool
    counted: int = 0
    replays: int = 0
    gross: int = 0
    converged: bool = False
    error: str = ""


class Poller:
    """Reads Redis every :data:`POLL_S` seconds in a thread and keeps every :class:`Sample`."""

    def __init__(self, settings: Settings, keys: Keys, want_hashes: Hashes, want_boards: Hashes,
                 programme_key: str) -> None:
        # Short timeouts: a killed Redis must show up as a failed read, not a hung poller.
        self._client = connect_sync(settings, socket_timeout=2, socket_connect_timeout=1)
        self._keys = keys
        self._want_hashes = want_hashes
        self._want_boards = want_boards
        self._programme_key = programme_key
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fault-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        self._client.close()

    def latest(self) -> Sample | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def _loop(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            sample = self._read()
            with self._lock:
                self._samples.append(sample)
            due += POLL_S
            wait = due - time.monotonic()
            if wait < 0:  # a slow read (Redis loading its AOF): keep the cadence from now
                due, wait = time.monotonic(), 0.0
            self._stop.wait(wait)

    def _read(self) -> Sample:
        t = time.monotonic()
        hash_keys = list(self._want_hashes)
        board_keys = list(self._want_boards)
        try:
            # One snapshot where Redis can give one; Redis Cluster cannot across trees (slots).
            pipe = self._client.pipeline(transaction=not is_cluster(self._client))
            pipe.hgetall(self._keys.stats(ROOT))
            pipe.hgetall(self._keys.stats(UNROUTED))
            for key in hash_keys:
                pipe.hgetall(key)
            for key in board_keys:
                pipe.zrange(key, 0, -1, withscores=True)
            replies = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            return Sample(t, ok=False, error=f"{type(exc).__name__}: {exc}")
        try:
            st: Counter[str] = Counter()
            for raw in replies[:2]:
                st.update({k.decode(): int(v) for k, v in raw.items()})
            hashes = {k: _int_fields(v) for k, v in zip(hash_keys, replies[2:2 + len(hash_keys)],
                                                         strict=True)}
            boards = {k: {m.decode(): int(s) for m, s in v}
                      for k, v in zip(board_keys, replies[2 + len(hash_keys):], strict=True)}
        except (ValueError, UnicodeDecodeError) as exc:  # a field that is not an integer
            return Sample(t, ok=False, error=f"unreadable reply: {exc!r}")
        return Sample(
            t, ok=True, counted=sum(v for k, v in st.items() if k != "duplicate:offset"),
            replays=st["duplicate:offset"],
            gross=hashes.get(self._programme_key, {}).get("gross_idr", 0),
            converged=hashes == self._want_hashes and boards == self._want_boards)


def stale_window(samples: list[Sample], since: float, total: int) -> tuple[float, bool]:
    """(seconds, still open): the longest gap between consecutive up-to-date samples among the
    gaps that end after ``since`` (or are still open at the last sample); see the module
    docstring for "up to date"."""
    best_counted = best_gross = -1
    last_fresh: float | None = None
    longest = 0.0
    for s in samples:
        fresh = s.ok and s.gross >= best_gross and (s.counted >= total or s.counted > best_counted)
        if s.ok:
            best_counted = max(best_counted, s.counted)
            best_gross = max(best_gross, s.gross)
        if fresh:
            if s.t >= since and last_fresh is not None:
                longest = max(longest, s.t - last_fresh)
            last_fresh = s.t
    if samples and samples[-1].t >= since and (last_fresh is None or last_fresh < samples[-1].t):
        gap = samples[-1].t - (last_fresh if last_fresh is not None else samples[0].t)
        if gap >= longest:
            return gap, True
    return longest, False


def convergence_start(samples: list[Sample]) -> float | None:
    """Time of the first sample of the final run of converged samples, None if the last is not."""
    start = None
    for s in reversed(samples):
        if not (s.ok and s.converged):
            break
        start = s.t
    return start


# ----------------------------------------------------------------------------- report --

@dataclass
class Row:
    """One scenario's line of the summary table (and of the JSON report)."""

    scenario: str
    size: str
    result: str
    events_sent: int | None = None
    #: The simulator's ``--rate``, records per second.
    rate: float = 0.0
    poison: int = 0
    on_topic: int | None = None
    fault_to_converged_s: float | None = None
    #: From the simulator's exit (the last record acknowledged) to convergence.
    end_to_converged_s: float | None = None
    stale_window_s: float | None = None
    stale_window_open: bool = False
    replayed: int | None = None
    dead_letters: int | None = None
    dead_letter_keys: int | None = None
    wall_s: float = 0.0
    #: (seconds since the scenario started, what) of every fault.
    faults: list[tuple[float, str]] = field(default_factory=list)
    note: str = ""


def format_table(rows: Iterable[Row]) -> str:
    head = ("scenario", "size", "result", "events", "poison", "fault→converged", "end→converged",
            "stale window", "replayed", "dead letters", "wall")
    lines = [head]
    for r in rows:
        conv = "never" if r.fault_to_converged_s is None else f"{r.fault_to_converged_s:.1f} s"
        after_end = "-" if r.end_to_converged_s is None else f"{r.end_to_converged_s:.1f} s"
        stale = "-" if r.stale_window_s is None else (
            f"{'>=' if r.stale_window_open else ''}{r.stale_window_s:.1f} s")
        dead = "-" if r.dead_letters is None else f"{r.dead_letters} ({r.dead_letter_keys} keys)"
        lines.append((r.scenario, r.size, r.result, _n(r.events_sent), str(r.poison), conv,
                      after_end, stale, _n(r.replayed), dead, f"{r.wall_s:.0f} s"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
           for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.scenario}: {r.note}" for r in rows if r.note]
    return "\n".join(out + (["notes:", *notes] if notes else []))


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def collect_rows(config: Any, factory: Any, size: Size, stash_key: Any, env_var: str,
                 filename: str) -> Iterator[list[Row]]:
    """The body of a session fixture that gathers every scenario's :class:`Row`, keeps them
    under ``stash_key`` for the terminal summary, and writes them as JSON at the end (to
    ``$env_var``, or ``filename`` in pytest's temporary dir)."""
    rows: list[Row] = []
    path = Path(os.environ.get(env_var) or factory.getbasetemp() / filename)
    config.stash[stash_key] = (rows, path)
    yield rows
    write_report(path, rows, size)


def running(stack: PrivateStack) -> Iterator[PrivateStack]:
    """The body of a session fixture: ``stack`` up for the session, purged at the end."""
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
        gc.collect()  # kafka-python's stray sockets to its brokers, while their filter applies


def print_summary(reporter: Any, config: Any, stash_key: Any, title: str, where: str) -> None:
    """The summary table of :func:`collect_rows`' rows at the end of the terminal output."""
    if stash_key not in config.stash:
        return
    rows, path = config.stash[stash_key]
    if rows:
        reporter.write_sep("=", f"{title} ({rows[0].size})")
        reporter.write_line(format_table(rows))
        reporter.write_line(f"(definitions: {where}; JSON: {path})")


def write_report(path: Path, rows: list[Row], size: Size) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"size": asdict(size), "poll_s": POLL_S, "rows": [asdict(r) for r in rows],
           "definitions": __doc__}
    path.write_text(json.dumps(doc, indent=1) + "\n")


# --------------------------------------------------------------------------- scenario --

@dataclass
class Poison:
    """A record produced straight onto the sales topic; the worker must reject it."""

    label: str
    key: bytes | None
    value: bytes | None


class Scenario:
    """One fault scenario: own topics, group and prefix; its workers, simulator and poller.

    Use as a context manager: leaving it stops every process it started, appends its
    :class:`Row` to ``rows`` (PASS only when :meth:`finish` found nothing wrong) and
    removes its keys and topics from the private stack.
    """

    def __init__(self, name: str, stack: PrivateStack, size: Size, seed: int, workdir: Path,
                 rows: list[Row], *, rate: float | None = None, via: str = "kafka") -> None:
        self.name, self.stack, self.size, self.seed = name, stack, size, seed
        #: ``kafka``: the simulator produces straight to the sales topic. ``ingest``: it posts
        #: to an ingest process and retries until each record is answered 202; a retry after
        #: an unanswered produce may put a record on the topic twice, which the worker must
        #: count once. Ingest refuses bad records itself, so the stream holds none.
        self.via = via
        #: Records per second the simulator sends.
        self.rate = rate or size.rate
        self.workdir, self.rows = workdir, rows
        sid = f"f{uuid.uuid4().hex[:8]}"
        self.settings = Settings.from_env(
            kafka_bootstrap=stack.bootstrap, redis_url=stack.redis_url, redis_prefix=sid,
            topic_sales=f"{sid}.sales", topic_dead_letter=f"{sid}.dead-letter",
            topic_totals_ikm=f"{sid}.totals.ikm", topic_totals_event=f"{sid}.totals.event",
            topic_milestones=f"{sid}.milestones",
            app_id=sid, worker_port=free_port(), ingest_port=free_port(),
            exporter_port=free_port(), runtime_dir=workdir / "runtime")
        self.keys = Keys(sid)
        self.registry = load_registry(self.settings.registry_path)
        self._secrets: Path | None = None
        if via == "ingest":
            hashes, self._secrets = issue_demo_tokens(self.registry, workdir / "tokens")
            self.settings = dataclasses.replace(self.settings, booth_tokens_path=hashes)
        self.ingest: Child | None = None
        #: Seeded: where the faults land and how long a service stays down.
        self.rng = random.Random(seed)
        self.workers: dict[str, WorkerProcess] = {}
        #: Every worker process ever started, by role, for the logs.
        self.history: list[tuple[str, WorkerProcess]] = []
        self.truth: dict[str, Any] = {}
        #: Poison records produced, with their ``topic/partition/offset``.
        self.poison: list[tuple[Poison, str]] = []
        #: (monotonic time, what) of every fault injected.
        self.faults: list[tuple[float, str]] = []
        self.poller: Poller | None = None
        self.sim: Child | None = None
        self._accepted_on_topic: int | None = None
        self.problems: list[str] = []
        self.passed = False
        self._ports = {"a": self.settings.worker_port}
        self._client = connect_sync(self.settings, socket_timeout=30)
        self._started = time.monotonic()
        self._truth_path = workdir / "truth.json"
        self._on_topic: int | None = None
        self._stream_end: float | None = None
        self._dead: tuple[int | None, int | None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Scenario:
        if not self.stack.healthy():  # an earlier scenario may have left it half up
            self.stack.up()
        ensure_topics(self.settings)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._stop_processes()
        finally:
            self.rows.append(self._row(exc))
            self._cleanup()

    def _stop_processes(self) -> None:
        if self.sim is not None:
            self.sim.stop(15)
        if self.ingest is not None:
            self.ingest.stop(15)
        for w in self.workers.values():
            w.stop()
        if self.poller is not None:
            self.poller.stop()

    def _cleanup(self) -> None:
        """Free the private stack for the next scenario (best effort: it is purged at the end)."""
        try:
            if self.stack.healthy():
                delete_topics(self.settings)
                keys = list(self._client.scan_iter(match=self.keys.pattern(), count=1000))
                for start in range(0, len(keys), 500):
                    self._client.unlink(*keys[start:start + 500])
        except Exception as exc:  # a broken stack is reported by the next scenario's set-up
            print(f"{self.name}: cleanup failed: {exc!r}", file=sys.stderr)
        finally:
            self._client.close()
            gc.collect()  # reap kafka-python's stray sockets while their warning filter applies

    # -- processes ------------------------------------------------------------------------

    def start_worker(self, role: str = "a") -> WorkerProcess:
        """Start (or restart) worker ``role``; each role keeps its own web port."""
        port = self._ports.setdefault(role, free_port())
        n = sum(1 for r, _ in self.history if r == role)
        log = self.workdir / "logs" / f"worker-{role}-{n}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        worker = start_worker(self.settings, extra_env={"REKAP_WORKER_PORT": str(port)},
                              log_path=log, timeout=self.size.ready_timeout_s)
        self.workers[role] = worker
        self.history.append((role, worker))
        return worker

    def kill_worker(self, role: str = "a") -> None:
        self.mark_fault(f"SIGKILL worker {role}")
        self.workers.pop(role).kill()

    def start_stream(self) -> None:
        """Start the paced simulator and, once its ground truth is written, the poller."""
        cmd = [sys.executable, "-m", "rekap.cli", "simulate", "--via", "kafka", "--no-progress",
               "--seed", str(self.seed), "--scale", str(self.size.scale),
               "--resend-rate", str(RESEND_RATE), "--refund-rate", str(REFUND_RATE),
               "--bad-rate", str(0 if self.via == "ingest" else BAD_RATE), "--rate", str(self.rate),
               "--truth", str(self._truth_path)]
        if self.via == "ingest":
            url = self.start_ingest()
            cmd[cmd.index("kafka")] = "ingest"
            cmd += ["--url", url, "--tokens", str(self._secrets)]
        self.sim = Child(cmd, log_path=self.workdir / "simulate.log", env=settings_env(self.settings),
                         name="simulator")
        try:  # the ground truth is written before the first record is sent
            self.sim.wait_ready(self._truth_path.exists, 120, "ground truth written", 0.1)
        except (RuntimeError, TimeoutError) as exc:
            raise FaultError(f"the simulator wrote no ground truth: {exc}") from exc
        self.truth = json.loads(self._truth_path.read_text())
        want_h, want_b = expected_state(self.truth, self.registry, self.keys)
        event_level = {k: v for k, v in want_h.items() if ":ikm:" not in k}
        self.poller = Poller(self.settings, self.keys, event_level, want_b,
                             self.keys.event_totals(ROOT, ROOT))
        self.poller.start()

    def start_ingest(self) -> str:
        """Start ``rekap ingest`` on this scenario's settings; return its URL once healthy."""
        url = f"http://{self.settings.host}:{self.settings.ingest_port}"
        self.ingest = Child([sys.executable, "-m", "rekap.cli", "ingest"],
                            log_path=self.workdir / "ingest.log", env=settings_env(self.settings),
                            name="ingest")

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            self.ingest.wait_ready(healthy, 60, "/healthz answered", 0.2)
        except (RuntimeError, TimeoutError) as exc:
            raise FaultError(f"ingest did not start: {exc}\n{self.ingest.log_tail(30)}") from exc
        return url

    @property
    def expected_records(self) -> int:
        """Every record the run puts on the sales topic: the simulator's and the poison.

        Through ingest, the topic's own count once the simulator is done: a record whose
        202 was lost to a broker fault is sent again and may be on the topic twice.
        """
        if self._accepted_on_topic is not None:
            return self._accepted_on_topic
        return int(self.truth["records"]["sent"]) + len(self.poison)

    def counted(self) -> int:
        """Records the worker(s) have taken in so far (applied, duplicates, rejected)."""
        return counted(self._client, self.keys)

    def pause_s(self) -> float:
        """The longest time, after the first fault, in which Redis showed no progress while
        records were pending (:func:`stale_window`): how long the pipeline stalled."""
        assert self.poller is not None and self.faults, "start_stream() and a fault first"
        return stale_window(self.poller.samples(), self.faults[0][0], self.expected_records)[0]

    def mark_fault(self, label: str) -> None:
        self.faults.append((time.monotonic(), label))

    def wait_progress(self, fraction: float) -> None:
        """Block until the worker(s) counted ``fraction`` of the stream (restarts included).

        Reads the counters itself every 20 ms rather than the poller's 0.2 s samples: a
        worker catching up a backlog applies a 1000-record batch in well under a second,
        and the fault must land while records are still pending, not after the catch-up.
        """
        target = int(fraction * int(self.truth["records"]["sent"]))
        deadline = time.monotonic() + self.size.progress_timeout_s
        n = -1
        while True:
            with contextlib.suppress(redis.RedisError, OSError):
                n = counted(self._client, self.keys)
            if n >= target:
                return
            self.check_processes()
            if time.monotonic() > deadline:
                self._fail(f"{target} records ({fraction:.0%}) not counted within "
                           f"{self.size.progress_timeout_s:.0f}s (counted: {n})")
            time.sleep(0.02)

    def check_processes(self) -> None:
        """Fail at once if a worker died on its own or the simulator gave up."""
        for role, w in self.workers.items():
            if w.proc.poll() is not None:
                self._fail(f"worker {role} exited with {w.proc.returncode} on its own")
        if self.sim is not None and self.sim.proc.poll() not in (None, 0):
            self._fail(f"the simulator failed (exit {self.sim.proc.returncode}):\n"
                       f"{self.sim.log_tail(30)}")

    def _fail(self, message: str) -> None:
        """Stop the scenario with ``message``, the problems found so far and the workers' logs."""
        self.problems.insert(0, message)
        raise FaultError(self._failure_message())

    def kill_service(self, service: str) -> None:
        self.mark_fault(f"SIGKILL {service}")
        self.stack.sigkill(service)

    def produce_poison(self, records: list[Poison], max_request_bytes: int) -> None:
        """Produce ``records`` onto the sales topic with a raw kafka-python producer, a few
        tenths of a second apart, so they interleave with the simulator's records."""
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all",
                                 linger_ms=0, max_request_size=max_request_bytes,
                                 request_timeout_ms=30_000)
        try:
            for i, p in enumerate(records):
                if i == 0:
                    self.mark_fault("first poison record")
                meta = producer.send(self.settings.topic_sales, key=p.key, value=p.value).get(60)
                self.poison.append((p, f"{self.settings.topic_sales}/{meta.partition}/{meta.offset}"))
                time.sleep(self.rng.uniform(0.05, 0.4))
        finally:
            producer.close(timeout=10)

    # -- the end: drain, measure, check ---------------------------------------------------

    def finish(self, *, exact_dead_letters: bool = False) -> None:
        """Wait for the stream to end and drain, then run every check; raise if any fails.

        ``exact_dead_letters``: every rejected record has exactly one dead-letter message
        (true when nothing was re-delivered, i.e. no worker or broker was killed).
        """
        assert self.sim is not None and self.poller is not None, "start_stream() first"
        sent = int(self.truth["records"]["sent"])
        deadline = time.monotonic() + sent / self.rate + 240
        while self.sim.proc.poll() is None:
            self.check_processes()
            if time.monotonic() > deadline:
                self._fail(f"the simulator did not finish:\n{self.sim.log_tail(30)}")
            time.sleep(POLL_S)
        self._stream_end = time.monotonic()
        self.check_processes()
        if self.via == "ingest":
            self._accepted_on_topic = topic_records(self.settings, self.settings.topic_sales)
        drained = self._drain()
        time.sleep(1.0)  # a few more samples: converged must hold, not flicker
        self.poller.stop()
        self._check(drained, exact_dead_letters)
        if self.problems:
            raise FaultError(self._failure_message())
        self.passed = True

    def _drain(self) -> bool:
        assert self.poller is not None
        started = time.monotonic()
        last_signature: tuple[Any, ...] | None = None
        last_change = started
        while True:
            s = self.poller.latest()
            if s is not None and s.ok and s.converged and s.counted == self.expected_records:
                return True
            self.check_processes()
            now = time.monotonic()
            # Replays are not progress: a batch retried forever is re-fenced on every try.
            signature = (s.ok, s.counted, s.gross, s.converged) if s else None
            if signature != last_signature:
                last_signature, last_change = signature, now
            elif now - last_change > self.size.stall_s and self._all_ready():
                self.problems.append(
                    f"stalled: nothing changed in Redis for {self.size.stall_s:.0f}s while every "
                    f"worker was ready; counted {s.counted if s else '?'} of "
                    f"{self.expected_records} records, event totals "
                    f"{'equal' if s and s.converged else 'differ from'} the truth")
                return False
            if now - started > self.size.drain_cap_s:
                self.problems.append(f"not converged {self.size.drain_cap_s:.0f}s after the stream "
                                     f"ended (latest read: {s})")
                return False
            time.sleep(0.5)

    def _all_ready(self) -> bool:
        docs = [w.health() for w in self.workers.values()]
        return bool(docs) and all(d is not None and d.get("ready") for d in docs)

    def _check(self, drained: bool, exact_dead_letters: bool) -> None:
        p = self.problems
        rec = self.truth["records"]
        try:
            on_topic = topic_records(self.settings, self.settings.topic_sales)
            self._on_topic = on_topic
        except Exception as exc:
            p.append(f"cannot read the sales topic's end offsets: {exc!r}")
            return
        if on_topic != self.expected_records and self.via == "kafka":
            p.append(f"the sales topic holds {on_topic} records, {self.expected_records} were sent")

        want_h, want_b = expected_state(self.truth, self.registry, self.keys)
        have_h, have_b = redis_totals(self._client, self.keys)
        diffs = differences(want_h, have_h, "totals") + differences(want_b, have_b, "board")
        for key, board in want_b.items():
            members: list[bytes] = self._client.zrevrange(key, 0, -1)  # type: ignore[assignment]
            order = [m.decode() for m in members]
            if order != leaderboard_order(board):
                diffs.append(f"board {key}: order {order[:5]}..., truth {leaderboard_order(board)[:5]}...")
        if diffs:
            p.append(f"{len(diffs)} differences from the ground truth:\n    "
                     + "\n    ".join(diffs[:12]) + ("\n    ..." if len(diffs) > 12 else ""))

        trees = {root: stats(self._client, self.keys, root) for root in (ROOT, UNROUTED)}
        applied = sum(t.get("applied", 0) for t in trees.values())
        dupes = sum(t.get("duplicate:sale_id", 0) for t in trees.values())
        rejected: Counter[str] = Counter()
        for t in trees.values():
            rejected.update({k.split(":", 1)[1]: v for k, v in t.items() if k.startswith("rejected:")})
        total_rejected = sum(rejected.values())
        if counted(self._client, self.keys) != on_topic:
            p.append(f"records {on_topic} != applied {applied} + duplicates {dupes} + "
                     f"rejected {total_rejected}")
        resent = on_topic - int(rec["sent"]) if self.via == "ingest" else 0
        if (applied, dupes) != (rec["applied"], rec["duplicates"] + resent):
            p.append(f"applied/duplicates {applied}/{dupes}, truth {rec['applied']}/{rec['duplicates']}")
        if total_rejected != rec["rejected_total"] + len(self.poison):
            p.append(f"rejected {total_rejected}, truth {rec['rejected_total']} + "
                     f"{len(self.poison)} poison ({dict(rejected)})")
        if not self.poison and dict(rejected) != rec["rejected"]:
            p.append(f"rejections by reason {dict(rejected)}, truth {rec['rejected']}")

        try:
            dead = read_all(self.settings, self.settings.topic_dead_letter, timeout_s=60)
        except Exception as exc:
            p.append(f"cannot read the dead-letter topic: {exc!r}")
        else:
            dead_keys = Counter(m.key.decode() if m.key else "" for m in dead)
            self._dead = (len(dead), len(dead_keys))
            if len(dead_keys) != total_rejected:
                p.append(f"{len(dead_keys)} records dead-lettered, {total_rejected} rejected")
            missing = [f"{pz.label}@{coords}" for pz, coords in self.poison if coords not in dead_keys]
            if missing:
                p.append(f"poison records without a dead letter: {missing}")
            if exact_dead_letters:
                repeated = {k: n for k, n in dead_keys.items() if n > 1}
                if repeated:
                    p.append(f"records dead-lettered more than once: {dict(list(repeated.items())[:5])}")

        try:
            report = reconcile(self.settings, timeout_s=60 if drained else 10)
        except Exception as exc:
            p.append(f"reconcile raised {exc!r}")
        else:
            if not report.ok:
                p.append(format_report(report, limit=10))

    # -- reporting ------------------------------------------------------------------------

    def _row(self, exc: BaseException | None) -> Row:
        row = Row(self.name, self.size.name, "PASS" if self.passed and exc is None else "FAIL",
                  wall_s=time.monotonic() - self._started, poison=len(self.poison), rate=self.rate)
        if self.truth:
            row.events_sent = int(self.truth["records"]["sent"])
        row.on_topic = self._on_topic
        row.faults = [(round(t - self._started, 1), what) for t, what in self.faults]
        if self.poller is not None:
            samples = self.poller.samples()
            if samples and self.faults:
                first, last = self.faults[0][0], self.faults[-1][0]
                start = convergence_start(samples)
                if start is not None:
                    row.fault_to_converged_s = round(max(0.0, start - last), 2)
                    if self._stream_end is not None:
                        row.end_to_converged_s = round(max(0.0, start - self._stream_end), 2)
                window, still_open = stale_window(samples, first, self.expected_records)
                row.stale_window_s, row.stale_window_open = round(window, 2), still_open
        with contextlib.suppress(redis.RedisError, OSError):
            row.replayed = replays(self._client, self.keys)
        dead = self._dead
        if dead is None:
            try:
                dead = (topic_records(self.settings, self.settings.topic_dead_letter), None)
            except Exception:
                dead = (None, None)
        row.dead_letters, row.dead_letter_keys = dead
        if row.result == "FAIL":
            reason = self.problems[0] if self.problems else (str(exc) if exc else "unknown")
            if exc is not None and not self.problems:
                reason = f"{type(exc).__name__}: {reason}"
            row.note = reason.splitlines()[0][:160]
        return row

    def _failure_message(self) -> str:
        parts = [f"{self.name} ({self.size.name}, seed {self.seed}): {len(self.problems)} problems",
                 *(f"- {x}" for x in self.problems),
                 f"faults: {[(round(t - self._started, 1), what) for t, what in self.faults]}",
                 f"logs: {self.workdir}",
                 self.log_summary()]
        return "\n".join(parts)

    def log_summary(self, lines: int = 25) -> str:
        """Warning and error lines of every worker log, and the tail of each role's latest log."""
        out = []
        latest = {role: w for role, w in self.history}
        for role, w in self.history:
            text = w.log_text()
            noted = [x for x in text.splitlines() if any(m in x for m in LOG_MARKERS)]
            out.append(f"--- {w.log_path.name}: {len(noted)} warning/error lines, the first ones:")
            out += noted[:8]
            if latest[role] is w:
                out.append(f"--- tail of {w.log_path.name}:")
                out += text.splitlines()[-lines:]
        return "\n".join(out)


def topic_records(settings: Settings, topic: str) -> int:
    """Records ever written to ``topic``: the sum of its partitions' end offsets."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                             enable_auto_commit=False, request_timeout_ms=30_000)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not parts:
            raise FaultError(f"topic {topic} has no partitions")
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def raise_max_message_bytes(settings: Settings, topic: str, limit: int) -> None:
    """Let ``topic`` take records up to ``limit`` bytes (kafka-python admin, incremental alter)."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=30_000)
    try:
        result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                     configs={"max.message.bytes": str(limit)})])
    finally:
        admin.close()
    text = repr(result)
    if "Error" in text and "NoError" not in text:
        raise FaultError(f"raising max.message.bytes of {topic} failed: {text}")
