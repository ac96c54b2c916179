"""Six faults under a streaming programme; after each, Redis equals the ground truth exactly.

Each test is one scenario on the private stack (``fault_stack``): the seeded simulator
streams Lagawi Fest 2022 at a fixed rate (5 % resends, refunds, bad records), the fault
lands mid-stream at a seeded point of the worker's progress, and ``Scenario.finish``
waits for the drain and checks every total, leaderboard, counter, dead letter and
``rekap reconcile`` (see ``tests/faults/harness.py`` for the checks and measurements).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rekap.contract import Sale, parse_sale
from tests.faults.harness import ROOT, PrivateStack, Row, Scenario, Size, raise_max_message_bytes
from tests.faults.poison import HUGE_TOPIC_LIMIT, poison_records

pytestmark = [pytest.mark.faults, pytest.mark.stack, pytest.mark.reliability]


def test_worker_sigkilled_three_times(fault_stack: PrivateStack, fault_size: Size,
                                      fault_rows: list[Row], tmp_path: Path) -> None:
    """SIGKILL the worker at three seeded points of its progress, restarting it each time."""
    with Scenario("worker SIGKILL x3", fault_stack, fault_size, 101, tmp_path, fault_rows,
                  rate=fault_size.restart_rate) as sc:
        sc.start_worker()
        sc.start_stream()
        points = sorted(sc.rng.uniform(0.1, 0.9) for _ in range(3))
        for point in points:
            sc.wait_progress(point)
            sc.kill_worker()
            sc.start_worker()
        sc.finish()


def test_redis_sigkilled_restarts_from_its_aof(fault_stack: PrivateStack, fault_size: Size,
                                               fault_rows: list[Row], tmp_path: Path) -> None:
    """SIGKILL Redis mid-stream; it comes back on the same port from its append-only file."""
    with Scenario("redis SIGKILL, AOF", fault_stack, fault_size, 102, tmp_path, fault_rows) as sc:
        sc.start_worker()
        sc.start_stream()
        sc.wait_progress(sc.rng.uniform(0.3, 0.6))
        sc.kill_service("redis")
        time.sleep(sc.rng.uniform(1, 3))  # down long enough for the worker's batches to fail
        fault_stack.up()
        sc.finish()


def test_redis_comes_back_empty(fault_stack: PrivateStack, fault_size: Size,
                                fault_rows: list[Row], tmp_path: Path) -> None:
    """SIGKILL Redis and delete its data: it restarts empty. Nobody runs a command: the worker
    must notice the loss by itself and re-apply the ledger from the sales topic."""
    with Scenario("redis lost (no persistence)", fault_stack, fault_size, 103, tmp_path,
                  fault_rows) as sc:
        sc.start_worker()
        sc.start_stream()
        sc.wait_progress(sc.rng.uniform(0.3, 0.6))
        sc.kill_service("redis")
        fault_stack.wipe_redis_data()
        time.sleep(sc.rng.uniform(1, 3))
        fault_stack.up()
        sc.finish()


def test_kafka_broker_sigkilled(fault_stack: PrivateStack, fault_size: Size,
                                fault_rows: list[Row], tmp_path: Path) -> None:
    """SIGKILL the broker mid-stream and start it again on the same data; the simulator's
    idempotent producer and the worker both have to ride it out."""
    with Scenario("kafka SIGKILL", fault_stack, fault_size, 104, tmp_path, fault_rows) as sc:
        sc.start_worker()
        sc.start_stream()
        sc.wait_progress(sc.rng.uniform(0.3, 0.6))
        sc.kill_service("kafka")
        time.sleep(sc.rng.uniform(1, 3))
        fault_stack.up()
        sc.finish()


def test_one_of_two_workers_sigkilled(fault_stack: PrivateStack, fault_size: Size,
                                      fault_rows: list[Row], tmp_path: Path) -> None:
    """Two workers share the group; one is SIGKILLed mid-stream, then brought back."""
    with Scenario("2 workers, 1 SIGKILL", fault_stack, fault_size, 105, tmp_path,
                  fault_rows) as sc:
        a = sc.start_worker("a")
        b = sc.start_worker("b")
        deadline = time.monotonic() + fault_size.ready_timeout_s
        while not (a.assigned() and b.assigned()
                   and set(a.assigned()).isdisjoint(b.assigned())):
            assert time.monotonic() < deadline, f"the two workers never split the partitions: " \
                                                f"{a.assigned()} / {b.assigned()}"
            time.sleep(0.5)
        sc.start_stream()
        sc.wait_progress(sc.rng.uniform(0.2, 0.5))
        sc.kill_worker("b")
        time.sleep(sc.rng.uniform(1, 3))
        sc.start_worker("b")
        sc.finish()


def test_poison_records_beside_the_stream(fault_stack: PrivateStack, fault_size: Size,
                                          fault_rows: list[Row], tmp_path: Path) -> None:
    """Poison records produced raw onto the sales topic mid-stream: each is rejected once
    and dead-lettered once, and no valid record loses its place."""
    with Scenario("poison records", fault_stack, fault_size, 106, tmp_path, fault_rows) as sc:
        registry = sc.registry
        records = poison_records(sorted(registry.events[ROOT].ikm), sc.seed)
        for p in records:  # the harness's own premise: no poison is a valid sale
            if p.value is None:
                continue
            try:
                parsed = parse_sale(p.value, registry, p.key)
            except (RecursionError, ValueError, OverflowError):
                continue  # crashes the parser: exactly what the worker must survive
            assert not isinstance(parsed, Sale), p.label
        raise_max_message_bytes(sc.settings, sc.settings.topic_sales, HUGE_TOPIC_LIMIT)
        sc.start_worker()
        sc.start_stream()
        sc.wait_progress(sc.rng.uniform(0.2, 0.4))
        sc.produce_poison(records, HUGE_TOPIC_LIMIT)
        sc.finish(exact_dead_letters=True)
