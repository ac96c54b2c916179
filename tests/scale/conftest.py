"""Fixtures of the scale-out suite: private multi-node stacks, its size, and its summary.

Each topology is ``deploy/local/stack up`` with its own runtime dir and ports, started
once per session and purged at the end:

* ``cluster_stack``: Redis Cluster (3 primaries + 3 replicas) and one Kafka broker;
* ``sentinel_stack``: a Redis primary, 2 replicas, 3 sentinels, and one Kafka broker;
* ``brokers_stack``: three Kafka brokers (replication 3, min ISR 2) and one Redis.

Size: the short version (~3,100 records per scenario) of the tests marked
``scale_default`` runs in ``make test``; ``make scale`` passes ``--scale-full``, which
runs every scenario at the full Lagawi Fest size (~31,000 records each). The summary
table is printed at the end and written as JSON to ``REKAP_SCALE_REPORT``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import kafka_socket_filters
from tests.faults.harness import PrivateStack, Row, Size, collect_rows, print_summary, running
from tests.support.procs import free_range

SHORT = Size("short", scale=0.1, rate=300, restart_rate=150, ready_timeout_s=150,
             progress_timeout_s=200, stall_s=30, drain_cap_s=240, test_timeout_s=420)
FULL = Size("full", scale=1.0, rate=600, restart_rate=600, ready_timeout_s=150,
            progress_timeout_s=320, stall_s=45, drain_cap_s=420, test_timeout_s=900)

REPORT_KEY = pytest.StashKey[tuple[list[Row], Path]]()
#: (kafka, controller, redis) base ports of each topology, picked at start-up.
PORTS_KEY = pytest.StashKey[dict[str, tuple[int, int, int]]]()
#: Ports each base must have free above it: Kafka nodes are 10 apart, Redis nodes are
#: base+0..5 with cluster buses (or sentinels) at base+10..15.
SPAN = 30


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--scale-full", action="store_true",
                     default=os.environ.get("REKAP_SCALE_FULL") == "1",
                     help="run every scale-out scenario at full size (make scale; REKAP_SCALE_FULL=1)")


def pytest_configure(config: pytest.Config) -> None:
    ports = _pick_ports()
    config.stash[PORTS_KEY] = ports
    for kafka, _, _ in ports.values():
        for k in range(3):
            for line in kafka_socket_filters(f"127.0.0.1:{kafka + 10 * k}"):
                config.addinivalue_line("filterwarnings", line)


def _pick_ports() -> dict[str, tuple[int, int, int]]:
    """Base ports in 10000-15999, each with :data:`SPAN` free ports above it: below the
    default stack's (16066-19093), the fault suite's (20000-31999) and the ephemeral
    range that free_port() uses (32768 up)."""
    rng = random.Random()
    taken: list[int] = []
    out: dict[str, tuple[int, int, int]] = {}
    for name in ("cluster", "sentinel", "brokers"):
        bases: list[int] = []
        while len(bases) < 3:
            base = rng.randrange(10_000, 16_000 - SPAN, SPAN)
            if any(abs(base - t) < SPAN for t in taken) or not free_range(base, SPAN):
                continue
            bases.append(base)
            taken.append(base)
        out[name] = (bases[0], bases[1], bases[2])
    return out


def size_of(config: pytest.Config) -> Size:
    return FULL if config.getoption("--scale-full") else SHORT


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    size = size_of(config)
    deselected = []
    kept = []
    for item in items:
        if not item.get_closest_marker("scale"):
            kept.append(item)
            continue
        item.add_marker(pytest.mark.timeout(size.test_timeout_s))
        if size is SHORT and not item.get_closest_marker("scale_default"):
            deselected.append(item)  # make scale runs it; make test has no time for it
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session")
def scale_size(pytestconfig: pytest.Config) -> Size:
    return size_of(pytestconfig)


@pytest.fixture(scope="session")
def scale_rows(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory,
               scale_size: Size) -> Iterator[list[Row]]:
    yield from collect_rows(pytestconfig, tmp_path_factory, scale_size, REPORT_KEY,
                            "REKAP_SCALE_REPORT", "scale-report.json")


def _stack(config: pytest.Config, factory: pytest.TempPathFactory, name: str,
           **topology: object) -> Iterator[PrivateStack]:
    kafka, controller, redis_port = config.stash[PORTS_KEY][name]
    stack = PrivateStack(factory.mktemp(f"{name}-stack"), kafka, controller, redis_port,
                         **topology)  # type: ignore[arg-type]
    yield from running(stack)


@pytest.fixture(scope="session")
def cluster_stack(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[PrivateStack]:
    yield from _stack(pytestconfig, tmp_path_factory, "cluster", redis_mode="cluster")


@pytest.fixture(scope="session")
def sentinel_stack(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[PrivateStack]:
    yield from _stack(pytestconfig, tmp_path_factory, "sentinel", redis_mode="sentinel")


@pytest.fixture(scope="session")
def brokers_stack(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[PrivateStack]:
    yield from _stack(pytestconfig, tmp_path_factory, "brokers", kafka_brokers=3)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    print_summary(terminalreporter, config, REPORT_KEY, "scale-out suite summary", "tests/scale/")
