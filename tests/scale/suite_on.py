"""Run test modules against a private multi-node stack: the whole worker, read API, venue page,
exporter, watch, reconcile and rebuild on Redis Cluster or behind Sentinel.

    python -m tests.scale.suite_on cluster|sentinel [--kafka-brokers 3] [pytest args ...]

Starts ``deploy/local/stack up`` with the topology in a temporary runtime dir on free
ports, runs pytest with ``--redis-url`` / ``--kafka-bootstrap`` pointing at it (the
suite's fixtures build every client through ``rekap.redisconn``), and always stops and
purges the stack. ``make scale`` runs it; the exit status is pytest's.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.faults.harness import PrivateStack
from tests.scale.conftest import SPAN
from tests.support.procs import free_range

DEFAULT_TESTS = ["tests/streams", "tests/consumers"]


def _bases() -> tuple[int, int, int]:
    bases: list[int] = []
    for base in range(12_000, 16_000 - SPAN, SPAN):
        if free_range(base, SPAN):
            bases.append(base)
        if len(bases) == 3:
            return bases[0], bases[1], bases[2]
    raise SystemExit("no free port ranges in 12000-15999 for a private stack")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("cluster", "sentinel"))
    parser.add_argument("--kafka-brokers", type=int, choices=(1, 3), default=1)
    args, pytest_args = parser.parse_known_args(argv)
    # A `timeout` or kill must still stop the private stack (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    paths = [] if any(not a.startswith("-") for a in pytest_args) else DEFAULT_TESTS
    with tempfile.TemporaryDirectory(prefix=f"rekap-suite-{args.mode}-") as tmp:
        kafka, controller, redis_port = _bases()
        stack = PrivateStack(Path(tmp) / "stack", kafka, controller, redis_port,
                             redis_mode=args.mode, kafka_brokers=args.kafka_brokers)
        try:
            stack.up()
            print(f"suite on {args.mode} ({stack.redis_url}), Kafka {stack.bootstrap}", flush=True)
            return subprocess.call([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                                    "--redis-url", stack.redis_url,
                                    "--kafka-bootstrap", stack.bootstrap,
                                    *pytest_args, *paths])
        finally:
            stack.down()


if __name__ == "__main__":
    sys.exit(main())
