"""deploy/local/stack's multi-node topologies: Redis Cluster, Redis Sentinel, 3 Kafka brokers.

Each test starts real processes (6 Redis nodes, or 3 data nodes + 3 sentinels, and 1 or 3
Kafka brokers) in a private runtime dir, on ports picked free at import time in
30000-31999, so they never touch the session's stack. A node is SIGKILLed and ``stack up``
must bring it back. Slow: about a minute and a half for the file on 2 cores; marked
``stack`` and ``scale``.

Port layout (the stack derives every node's port from the three base ports):
``BASE`` Kafka (brokers at +0/+10/+20), ``BASE+1`` controllers (+1/+11/+21),
``BASE+2`` Redis (cluster nodes +2..+7, buses +12..+17; Sentinel data nodes +2..+4,
sentinels +12..+14).
"""

from __future__ import annotations

import gc
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.conftest import kafka_socket_filters
from tests.support.procs import alive, free_range, port_open, processes_mentioning, wait_until

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "deploy" / "local" / "stack"
REDIS_PASSWORD = "topology-test-pass"  # a throwaway password for private Redis nodes
SPAN = 30  # every port of every topology lies in [BASE, BASE + SPAN)


def pick_base() -> int:
    """A base port whose whole span is free: random, so parallel runs rarely collide."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(30000, 32000 - SPAN, SPAN)
        if free_range(base, SPAN):
            return base
    raise RuntimeError("no free span of 30 ports in 30000-31999")


BASE = pick_base()
KAFKA_PORT, CONTROLLER_PORT, REDIS_PORT = BASE, BASE + 1, BASE + 2
KAFKA_PORTS = [KAFKA_PORT + 10 * k for k in range(3)]
CLUSTER_PORTS = [REDIS_PORT + i for i in range(6)]
SENTINEL_DATA_PORTS = [REDIS_PORT + i for i in range(3)]
SENTINEL_PORTS = [REDIS_PORT + 10 + i for i in range(3)]
BOOTSTRAP3 = ",".join(f"127.0.0.1:{p}" for p in KAFKA_PORTS)

pytestmark = [pytest.mark.stack, pytest.mark.scale, pytest.mark.timeout(300),
              *(pytest.mark.filterwarnings(f) for f in kafka_socket_filters(BOOTSTRAP3))]


class Stack:
    def __init__(self, runtime: Path) -> None:
        self.runtime = runtime
        self.env = {**os.environ,
                    "REKAP_RUNTIME_DIR": str(runtime),
                    "REKAP_KAFKA_PORT": str(KAFKA_PORT),
                    "REKAP_KAFKA_CONTROLLER_PORT": str(CONTROLLER_PORT),
                    "REKAP_REDIS_PORT": str(REDIS_PORT),
                    "REKAP_REDIS_PASSWORD": REDIS_PASSWORD,
                    # The health check needs kafka-python: the interpreter running the tests has it.
                    "REKAP_PYTHON": sys.executable}
        for var in ("REKAP_STACK_PROMETHEUS", "REKAP_REDIS_SENTINEL_SERVICE"):
            self.env.pop(var, None)

    def run(self, *args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        out = subprocess.run([str(STACK), *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout, check=False)
        # Shown with -rA / on failure: how long each step took on this machine.
        print(f"stack {' '.join(args)}: exit {out.returncode} in {time.monotonic() - started:.1f} s")
        if check and out.returncode != 0:
            pytest.fail(f"stack {' '.join(args)} exited {out.returncode}\n"
                        f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}", pytrace=False)
        return out

    def healthy(self) -> bool:
        return self.run("status", check=False, timeout=60).returncode == 0

    def pids(self) -> dict[str, int]:
        return {f.stem: int(f.read_text()) for f in sorted((self.runtime / "pids").glob("*.pid"))}

    def env_lines(self) -> list[str]:
        return self.run("env").stdout.splitlines()

    def sigkill(self, service: str) -> int:
        pid = self.pids()[service]
        os.killpg(pid, signal.SIGKILL)  # the stack makes each service a process-group leader
        wait_until(lambda: not alive(pid), 20, 0.05, message=f"{service} (pid {pid}) to die")
        return pid

    def assert_down(self, pids: dict[str, int]) -> None:
        left = {name: pid for name, pid in pids.items() if alive(pid)}
        assert not left, f"still alive after down: {left}"
        assert not processes_mentioning(str(self.runtime)), "processes of this runtime dir left"
        assert not list((self.runtime / "pids").glob("*.pid"))
        busy = [p for p in range(BASE, BASE + SPAN) if port_open(p)]
        assert not busy, f"ports still open after down: {busy}"

    def assert_purged(self) -> None:
        for sub in ("data", "conf", "logs"):
            left = list((self.runtime / sub).iterdir())
            assert not left, f"left in {sub}/ after down --purge: {left}"
        assert not (self.runtime / "topology").exists()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    busy = [p for p in range(BASE, BASE + SPAN) if port_open(p)]
    if busy:
        pytest.fail(f"test ports already in use: {busy}", pytrace=False)
    s = Stack(tmp_path / "runtime")
    try:
        yield s
    finally:
        # Whatever happened above, leave no process behind.
        s.run("down", "--purge", check=False)
        for pid in processes_mentioning(str(s.runtime)):
            os.kill(pid, signal.SIGKILL)
        # Reap what kafka-python may leave to this stack's brokers while its filter applies.
        gc.collect()


def redis_cli(port: int, *cmd: str, password: str | None = REDIS_PASSWORD) -> str:
    env = {**os.environ}
    env.pop("REDISCLI_AUTH", None)
    if password:
        env["REDISCLI_AUTH"] = password
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *cmd], env=env,
                         capture_output=True, text=True, timeout=10, check=True)
    return out.stdout.strip()


class Node(NamedTuple):
    """One line of CLUSTER NODES."""

    id: str
    port: int
    flags: frozenset[str]
    primary_id: str  # "-" for a primary
    slots: int

    @property
    def serving(self) -> bool:
        return "master" in self.flags and "fail" not in self.flags


def cluster_nodes(port: int) -> list[Node]:
    """CLUSTER NODES as seen by the node on ``port``."""
    nodes = []
    for line in redis_cli(port, "CLUSTER", "NODES").splitlines():
        fields = line.split()
        slots = 0
        for part in fields[8:]:
            if part.startswith("["):
                continue  # a slot being migrated
            lo, _, hi = part.partition("-")
            slots += int(hi or lo) - int(lo) + 1
        nodes.append(Node(fields[0], int(fields[1].split("@")[0].rsplit(":", 1)[1]),
                          frozenset(fields[2].split(",")), fields[3], slots))
    return nodes


def primaries(nodes: list[Node]) -> list[Node]:
    return [n for n in nodes if n.serving]


def assert_cluster_complete(port: int) -> list[Node]:
    nodes = cluster_nodes(port)
    assert len(nodes) == 6, nodes
    mains = primaries(nodes)
    assert len(mains) == 3, f"expected 3 primaries: {nodes}"
    for main in mains:
        assert any(n.primary_id == main.id and "slave" in n.flags for n in nodes), \
            f"primary 127.0.0.1:{main.port} has no replica: {nodes}"
    assert sum(n.slots for n in mains) == 16384
    return nodes


def unfenced_brokers(bootstrap: str) -> set[int]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        brokers = admin.describe_cluster()["brokers"]
    finally:
        admin.close()
    return {b.get("broker_id", b.get("node_id")) for b in brokers if not b.get("is_fenced", False)}


def assert_secret_stays_in_files(stack: Stack) -> None:
    for pid in processes_mentioning(str(stack.runtime)):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert REDIS_PASSWORD.encode() not in cmdline, f"password on the command line of pid {pid}"
    for conf in (stack.runtime / "conf").glob("*/*.conf"):
        if REDIS_PASSWORD in conf.read_text():
            assert conf.stat().st_mode & 0o077 == 0, f"{conf} holds the password but is readable by others"


def tls_env_lines(runtime: Path) -> list[str]:
    """What `stack env` adds once `up` made the local CA (HTTPS for ingest and the worker)."""
    tls = runtime / "tls"
    return [f"export REKAP_TLS_CERT={tls / 'server.pem'}", f"export REKAP_TLS_KEY={tls / 'server-key.pem'}",
            f"export REKAP_TLS_CA={tls / 'ca.pem'}"]


def test_redis_cluster_and_three_brokers(stack: Stack) -> None:
    # 1. Up: 6 Redis nodes + 3 brokers, healthy, with the pid file names of the topology.
    stack.run("up", "--redis-cluster", "--kafka-brokers", "3")
    assert stack.healthy()
    first = stack.pids()
    assert set(first) == {"kafka-1", "kafka-2", "kafka-3", *(f"redis-{p}" for p in CLUSTER_PORTS)}
    assert stack.env_lines() == [
        f"export REKAP_KAFKA_BOOTSTRAP={BOOTSTRAP3}",
        'export REKAP_REDIS_URL="redis+cluster://:${REKAP_REDIS_PASSWORD}@'
        + ",".join(f"127.0.0.1:{p}" for p in CLUSTER_PORTS) + '/0"',
        *tls_env_lines(stack.runtime),
    ]
    assert (stack.runtime / "topology").read_text().splitlines()[1:] == ["redis=cluster", "kafka-brokers=3"]
    assert_secret_stays_in_files(stack)

    # 3 primaries, each with a replica, all 16384 slots; every node agrees.
    nodes = assert_cluster_complete(CLUSTER_PORTS[0])
    for port in CLUSTER_PORTS[1:]:
        assert {n.id for n in primaries(cluster_nodes(port))} == {n.id for n in primaries(nodes)}
    assert unfenced_brokers(BOOTSTRAP3) == {1, 2, 3}

    # 2. SIGKILL a primary (and a broker): its replica takes over, status says unhealthy.
    victim = primaries(nodes)[0]
    heir = next(n for n in nodes if n.primary_id == victim.id)
    witness = next(p for p in CLUSTER_PORTS if p != victim.port)
    stack.sigkill(f"redis-{victim.port}")
    stack.sigkill("kafka-2")
    wait_until(lambda: heir.id in {n.id for n in primaries(cluster_nodes(witness))}, 20, 0.25,
               message=f"replica 127.0.0.1:{heir.port} promoted")
    status = stack.run("status", check=False)
    assert status.returncode == 3
    for name in (f"redis-{victim.port}", "kafka-2"):
        assert re.search(rf"^{name} +stopped\b", status.stdout, re.MULTILINE), status.stdout

    # 3. Up again restarts only the killed ones; the old primary rejoins as a replica.
    out = stack.run("up")
    assert f"redis-{victim.port}: started" in out.stdout
    assert "kafka-2: started" in out.stdout
    assert "kafka-1: already running" in out.stdout
    second = stack.pids()
    for name, pid in first.items():
        if name not in (f"redis-{victim.port}", "kafka-2"):
            assert second[name] == pid, f"{name} was restarted but had not died"
    assert stack.healthy()
    nodes = assert_cluster_complete(witness)
    rejoined = next(n for n in nodes if n.port == victim.port)
    assert "slave" in rejoined.flags
    assert rejoined.primary_id == heir.id
    assert unfenced_brokers(BOOTSTRAP3) == {1, 2, 3}

    # 4. Down stops every node; the data stays for the next up, --purge deletes it.
    stack.run("down")
    stack.assert_down(second)
    assert stack.run("status", check=False).returncode == 3
    assert (stack.runtime / "data" / "redis-cluster" / f"redis-{CLUSTER_PORTS[0]}" / "nodes.conf").is_file()
    assert (stack.runtime / "data" / "kafka-brokers" / "kafka-3" / "logs" / "meta.properties").is_file()
    stack.run("down", "--purge")
    stack.assert_purged()


def test_redis_sentinel_follows_a_failover(stack: Stack) -> None:
    # 1. Up: a primary, 2 replicas, 3 sentinels (+ the single broker), healthy.
    stack.run("up", "--redis-sentinel")
    assert stack.healthy()
    first = stack.pids()
    assert set(first) == {"kafka", *(f"redis-{p}" for p in SENTINEL_DATA_PORTS),
                          *(f"sentinel-{p}" for p in SENTINEL_PORTS)}
    assert stack.env_lines() == [
        f"export REKAP_KAFKA_BOOTSTRAP=127.0.0.1:{KAFKA_PORT}",
        'export REKAP_REDIS_URL="redis+sentinel://:${REKAP_REDIS_PASSWORD}@'
        + ",".join(f"127.0.0.1:{p}" for p in SENTINEL_PORTS) + '/rekap/0"',
        *tls_env_lines(stack.runtime),
    ]
    assert_secret_stays_in_files(stack)

    def primary_per_sentinel() -> set[str]:
        return {redis_cli(p, "SENTINEL", "get-master-addr-by-name", "rekap", password=None)
                .replace("\n", ":") for p in SENTINEL_PORTS}

    assert primary_per_sentinel() == {f"127.0.0.1:{REDIS_PORT}"}

    # 2. Another topology is refused while this one runs, and nothing is touched.
    refused = stack.run("up", "--redis-cluster", check=False)
    assert refused.returncode != 0
    assert "the stack runs Redis with Sentinel" in refused.stderr
    assert "run 'stack down' first" in refused.stderr
    assert stack.pids() == first
    assert not any(port_open(p) for p in CLUSTER_PORTS[3:])

    # 3. SIGKILL the primary: the sentinels promote a replica; status follows their view.
    stack.sigkill(f"redis-{REDIS_PORT}")

    def promoted() -> str | None:
        seen = primary_per_sentinel()
        return seen.pop() if len(seen) == 1 and seen != {f"127.0.0.1:{REDIS_PORT}"} else None

    new_primary = wait_until(promoted, 30, 0.25, message="the sentinels to agree on a new primary")
    assert not stack.healthy()

    # 4. Up restarts the old primary, as a replica of the new one.
    stack.run("up")
    assert stack.healthy()
    assert primary_per_sentinel() == {new_primary}
    info = redis_cli(REDIS_PORT, "INFO", "replication")
    assert "role:slave" in info
    assert re.search(rf"master_port:{new_primary.rsplit(':', 1)[1]}\b", info)

    # 5. Down stops sentinels and data nodes; --purge deletes the data.
    pids = stack.pids()
    stack.run("down")
    stack.assert_down(pids)
    stack.run("down", "--purge")
    stack.assert_purged()
