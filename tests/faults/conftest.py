"""Fixtures of the fault suite: its size, its private stack, and the summary it prints.

Size: the short version (a few thousand records per scenario) runs in the default
``pytest``/``make test``; ``--faults-long`` (``make faults`` passes it) runs ~112,000
records per scenario. The option exists when ``tests/faults`` is named on the command
line (pytest reads this conftest early only then); ``REKAP_FAULTS_LONG=1`` works in
every case. Each scenario's pytest-timeout comes from the size, not the suite's 180 s.

The private stack gets ports below the kernel's ephemeral range, picked at start-up:
``free_port()`` elsewhere in the suite hands out ephemeral ports, so the two never race
for one, and kafka-python's stray-socket warning filter (``tests/conftest.py``) can name
this broker before any test runs.

The summary table is printed at the end of the run and written as JSON to
``REKAP_FAULTS_REPORT`` (default: ``faults-report.json`` in pytest's temporary dir).
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import kafka_socket_filters
from tests.faults.harness import (
    LONG,
    SHORT,
    PrivateStack,
    Row,
    Size,
    collect_rows,
    print_summary,
    running,
)


@dataclass(frozen=True)
class Ports:
    kafka: int
    controller: int
    redis: int


PORTS_KEY = pytest.StashKey[Ports]()
REPORT_KEY = pytest.StashKey[tuple[list[Row], Path]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--faults-long", action="store_true",
                     default=os.environ.get("REKAP_FAULTS_LONG") == "1",
                     help="run the long fault scenarios (~112k records each; REKAP_FAULTS_LONG=1)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: a fault scenario on a private stack "
                                       "(tests/faults; make faults runs the long version)")
    ports = _pick_ports()
    config.stash[PORTS_KEY] = ports
    for line in kafka_socket_filters(f"127.0.0.1:{ports.kafka}"):
        config.addinivalue_line("filterwarnings", line)


def _pick_ports() -> Ports:
    """Three free ports in 20000-31999, below the ephemeral range that free_port() uses."""
    rng = random.Random()
    chosen: list[int] = []
    for _ in range(200):
        port = rng.randrange(20_000, 32_000)
        if port in chosen or port in (26379, 29090, 29092, 29093):  # tests/deploy/test_stack.py
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
        if len(chosen) == 3:
            return Ports(*chosen)
    raise RuntimeError("no three free ports in 20000-31999 for the fault suite's private stack")


def size_of(config: pytest.Config) -> Size:
    return LONG if config.getoption("--faults-long") else SHORT


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    size = size_of(config)
    for item in items:
        if item.get_closest_marker("faults"):
            item.add_marker(pytest.mark.timeout(size.test_timeout_s))


@pytest.fixture(scope="session")
def fault_size(pytestconfig: pytest.Config) -> Size:
    return size_of(pytestconfig)


@pytest.fixture(scope="session")
def fault_rows(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory,
               fault_size: Size) -> Iterator[list[Row]]:
    """Every scenario's summary row; written as JSON when the session ends."""
    yield from collect_rows(pytestconfig, tmp_path_factory, fault_size, REPORT_KEY,
                            "REKAP_FAULTS_REPORT", "faults-report.json")


@pytest.fixture(scope="session")
def fault_stack(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[PrivateStack]:
    """Kafka and Redis of our own, started once for every scenario and purged at the end."""
    ports = pytestconfig.stash[PORTS_KEY]
    stack = PrivateStack(tmp_path_factory.mktemp("fault-stack"), ports.kafka, ports.controller,
                         ports.redis)
    yield from running(stack)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    print_summary(terminalreporter, config, REPORT_KEY, "fault suite summary",
                  "tests/faults/harness.py")
