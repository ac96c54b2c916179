"""Fixtures shared by every test.

One real Kafka broker and one real Redis serve the whole session (the local
stack: ``deploy/local/stack up``, or ``--kafka-bootstrap`` / ``--redis-url``).
Each test that asks for ``settings`` gets its own topics, consumer group and
Redis key prefix, created before and removed after it, so tests never see each
other's records or keys and can run in any order.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from rekap.redisconn import REDIS_ERRORS, SyncClient, connect_sync
from rekap.settings import Settings
from rekap.topics import delete_topics, ensure_topics
from tests.support.procs import free_port

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    base = Settings.from_env()
    parser.addoption("--kafka-bootstrap", default=base.kafka_bootstrap,
                     help="Kafka bootstrap servers of the test broker (REKAP_KAFKA_BOOTSTRAP)")
    parser.addoption("--redis-url", default=base.redis_url,
                     help="Redis URL of the test server (REKAP_REDIS_URL)")


def kafka_socket_filters(bootstrap: str) -> list[str]:
    """``filterwarnings`` entries that ignore an unclosed socket whose peer is this broker.

    kafka-python 3.0 (up to 3.0.12, the newest) can leave a socket to the broker open
    after a client's ``close()`` (its source shows a connect coroutine that never closes
    the socket it made if it is abandoned mid-way; a reproduction did not come up in
    hundreds of tries). The socket surfaces only when the garbage collector reaches it,
    as a ``ResourceWarning`` that the "error" filter turns into a failure of whichever
    test happens to be running (seen once in CI, at session end, after every test had
    passed). Every rekap client is closed in a ``finally`` block. So exactly that warning
    is ignored: any other unclosed socket, or Redis connection, still fails the test.
    """
    out = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        out.append(rf"ignore:unclosed <socket\.socket .*raddr=\('{re.escape(host)}', {port}\)>"
                   ":ResourceWarning")
    return out


def pytest_configure(config: pytest.Config) -> None:
    for line in kafka_socket_filters(config.getoption("--kafka-bootstrap")):
        config.addinivalue_line("filterwarnings", line)


@pytest.fixture(scope="session")
def base_settings(pytestconfig: pytest.Config) -> Settings:
    return Settings.from_env(kafka_bootstrap=pytestconfig.getoption("--kafka-bootstrap"),
                             redis_url=pytestconfig.getoption("--redis-url"))


@pytest.fixture(scope="session")
def redis_session(base_settings: Settings) -> Iterator[SyncClient]:
    """The test Redis, in any of the three modes (``--redis-url redis+cluster://...`` runs
    the suite on Redis Cluster, ``redis+sentinel://...`` behind Sentinel)."""
    client = connect_sync(base_settings)
    try:
        client.ping()
    except REDIS_ERRORS as exc:
        pytest.fail(f"no Redis at {base_settings.redis_url_masked}: {exc}. "
                    "Start the stack: deploy/local/stack up (or make test).", pytrace=False)
    yield client
    client.close()


@pytest.fixture(scope="session")
def kafka_ready(base_settings: Settings) -> str:
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        KafkaAdminClient(bootstrap_servers=base_settings.kafka_bootstrap,
                         request_timeout_ms=10_000).close()
    except KafkaError as exc:
        pytest.fail(f"no Kafka at {base_settings.kafka_bootstrap}: {exc}. "
                    "Start the stack: deploy/local/stack up (or make test).", pytrace=False)
    return base_settings.kafka_bootstrap


@pytest.fixture
def test_id() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(base_settings: Settings, kafka_ready: str, redis_session: redis.Redis,
             test_id: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings private to one test: own topics (created), group, prefix, ports, dirs."""
    s = Settings.from_env(
        kafka_bootstrap=base_settings.kafka_bootstrap,
        redis_url=base_settings.redis_url,
        redis_prefix=test_id,
        topic_sales=f"{test_id}.sales",
        topic_dead_letter=f"{test_id}.dead-letter",
        topic_totals_ikm=f"{test_id}.totals.ikm",
        topic_totals_event=f"{test_id}.totals.event",
        topic_milestones=f"{test_id}.milestones",
        sales_partitions=3,
        app_id=test_id,
        worker_port=free_port(),
        ingest_port=free_port(),
        exporter_port=free_port(),
        runtime_dir=tmp_path / "runtime",
        # Plain HTTP even in a shell that ran `eval "$(deploy/local/stack env)"`; the TLS
        # tests turn it on themselves (tests/rekap/test_tls.py, tests/producers/test_ingest_tls.py).
        tls_cert=None, tls_key=None, tls_ca=None,
    )
    ensure_topics(s)
    yield s
    delete_topics(s)
    keys = list(redis_session.scan_iter(match=f"{test_id}:*", count=1000))
    for start in range(0, len(keys), 500):
        redis_session.delete(*keys[start:start + 500])


@pytest.fixture
def redis_client(settings: Settings, redis_session: redis.Redis) -> redis.Redis:
    """A Redis client for a test that already owns its prefix (``settings.redis_prefix``)."""
    return redis_session
