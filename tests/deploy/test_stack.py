"""deploy/local/stack: up, up again, down, up, down, against a private runtime dir.

These start real Kafka, Redis and Prometheus processes on their own ports
(29092/29093/26379/29090) and runtime dir, so they never touch the session's stack
on the default ports. Slow: marked ``stack``.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import kafka_socket_filters
from tests.support.procs import port_open, processes_mentioning

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "deploy" / "local" / "stack"
PORTS = {
    "REKAP_KAFKA_PORT": 29092,
    "REKAP_KAFKA_CONTROLLER_PORT": 29093,
    "REKAP_REDIS_PORT": 26379,
    "REKAP_PROMETHEUS_PORT": 29090,
}
BOOTSTRAP = f"127.0.0.1:{PORTS['REKAP_KAFKA_PORT']}"
REDIS_PASSWORD = "stack-test-pass"  # a throwaway password for a private Redis

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600),
              *(pytest.mark.filterwarnings(f) for f in kafka_socket_filters(BOOTSTRAP))]


def stack_processes(runtime: Path) -> dict[int, str]:
    # The stack's own short-lived shell (bash .../stack) never names the runtime dir.
    return processes_mentioning(str(runtime))


class Stack:
    def __init__(self, runtime: Path) -> None:
        self.runtime = runtime
        self.env = {**os.environ, **{k: str(v) for k, v in PORTS.items()},
                    "REKAP_RUNTIME_DIR": str(runtime),
                    "REKAP_REDIS_PASSWORD": REDIS_PASSWORD,
                    # The health check needs kafka-python: the interpreter running the tests has it.
                    "REKAP_PYTHON": sys.executable}
        self.env.pop("REKAP_STACK_PROMETHEUS", None)

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([str(STACK), *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout, check=False)
        if check and out.returncode != 0:
            pytest.fail(f"stack {' '.join(args)} exited {out.returncode}\n"
                        f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}", pytrace=False)
        return out

    def pids(self) -> dict[str, int]:
        return {f.stem: int(f.read_text()) for f in sorted((self.runtime / "pids").glob("*.pid"))}

    def assert_all_gone(self) -> None:
        left = stack_processes(self.runtime)
        assert not left, f"processes left after down: {left}"
        for port in PORTS.values():
            assert not port_open(port), f"port {port} still open after down"
        assert not list((self.runtime / "pids").glob("*.pid"))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    busy = [p for p in PORTS.values() if port_open(p)]
    if busy:
        pytest.fail(f"test ports already in use: {busy} (a leftover stack? "
                    f"REKAP_RUNTIME_DIR=... {STACK} down)", pytrace=False)
    s = Stack(tmp_path / "runtime")
    try:
        yield s
    finally:
        # Whatever happened above, leave no process behind.
        s.run("down", "--purge", check=False)
        for pid in stack_processes(s.runtime):
            os.kill(pid, signal.SIGKILL)
        # Reap what kafka-python may leave to this stack's broker while its filter applies
        # (tests/conftest.py, kafka_socket_filters), not in a later test.
        gc.collect()


def _redis(cmd: list[str]) -> str:
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(PORTS["REKAP_REDIS_PORT"]), *cmd],
                         env={**os.environ, "REDISCLI_AUTH": REDIS_PASSWORD},
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


def _produce_one(topic: str, value: bytes) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=15000)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    try:
        producer.send(topic, key=b"k", value=value).get(timeout=30)
    finally:
        producer.close()


def _read_all(topic: str) -> list[bytes]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in batch)
        return values
    finally:
        consumer.close()


def test_up_up_down_up_down(stack: Stack) -> None:
    # 1. up with Prometheus: three processes, each named by its pid file.
    out = stack.run("up", "--with-prometheus")
    assert f"127.0.0.1:{PORTS['REKAP_KAFKA_PORT']}" in out.stdout
    assert "KRaft" in out.stdout
    first = stack.pids()
    assert set(first) == {"kafka", "redis", "prometheus"}
    assert set(stack_processes(stack.runtime)) == set(first.values())
    assert stack.run("status").returncode == 0

    # The broker logs through log4j2 (not SLF4J's no-op logger) into the runtime dir.
    server_log = (stack.runtime / "logs" / "kafka" / "server.log").read_text()
    assert "Kafka Server started" in server_log
    assert "NOP" not in (stack.runtime / "logs" / "kafka" / "kafka.out").read_text()

    topic = f"stack-{uuid.uuid4().hex[:8]}"
    _produce_one(topic, b"kept across down/up")
    assert _redis(["SET", "rekap-stack-test", "kept"]) == "OK"
    # Set explicitly, not left to Redis's default: rekap worker refuses an evicting Redis.
    assert "maxmemory_policy:noeviction" in _redis(["INFO", "memory"]).splitlines()
    assert "maxmemory-policy noeviction" in \
        (stack.runtime / "conf" / "redis" / "redis.conf").read_text().splitlines()

    # 2. up again: harmless, same processes, no second broker.
    stack.run("up", "--with-prometheus")
    assert stack.pids() == first
    assert set(stack_processes(stack.runtime)) == set(first.values())

    # 3. down: nothing of this stack is left.
    stack.run("down")
    stack.assert_all_gone()
    assert stack.run("status", check=False).returncode == 3

    # 4. A stale pid file (a live pid that is not ours: this test process) is ignored by
    #    up and never signalled by down.
    (stack.runtime / "pids" / "kafka.pid").write_text(f"{os.getpid()}\n")
    out = stack.run("up", "--with-prometheus")
    assert "stale pid file" in out.stderr
    second = stack.pids()
    assert second["kafka"] != os.getpid()
    assert set(stack_processes(stack.runtime)) == set(second.values())

    # Plain down keeps data: the topic's record and the Redis key survived.
    assert _read_all(topic) == [b"kept across down/up"]
    assert _redis(["GET", "rekap-stack-test"]) == "kept"

    # 5. down again: nothing left; the data dirs are still there for the next up.
    stack.run("down")
    stack.assert_all_gone()
    assert (stack.runtime / "data" / "kafka" / "logs" / "meta.properties").is_file()

    # down --purge removes the data.
    stack.run("down", "--purge")
    assert not (stack.runtime / "data" / "kafka").exists()
    assert not (stack.runtime / "data" / "redis").exists()


def test_up_refuses_a_taken_port_and_starts_nothing(stack: Stack) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", PORTS["REKAP_REDIS_PORT"]))
        squatter.listen(1)
        out = stack.run("up", check=False)
    assert out.returncode != 0
    assert f"127.0.0.1:{PORTS['REKAP_REDIS_PORT']} is already taken" in out.stderr
    # Ports are checked before anything starts: no broker was left running.
    assert not stack_processes(stack.runtime)
    assert not port_open(PORTS["REKAP_KAFKA_PORT"])


def test_down_without_up_is_harmless(stack: Stack) -> None:
    out = stack.run("down")
    assert out.returncode == 0
    assert not stack_processes(stack.runtime)
