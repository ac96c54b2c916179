"""The one Kafka error boundary: what kafka-python raises comes out as KafkaUnavailable.

The unit tests feed :func:`rekap.kafkaconn.unavailable` errors directly, and fake
clients into the rebuild helpers that used to let a raw ``KafkaError`` escape. The
last tests point real kafka-python clients at a closed loopback port.
"""

from __future__ import annotations

import gc
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kafka.errors import (
    CoordinatorNotAvailableError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaTimeoutError,
    UnknownTopicOrPartitionError,
)

import consumers.rebuild
from rekap import kafkaconn
from rekap.errors import ConfigError, KafkaUnavailable
from rekap.kafkaconn import unavailable
from rekap.settings import Settings
from rekap.topics import delete_topics, ensure_topics

#: The small timeout the closed-port tests give kafka-python, and what they allow on top.
TIMEOUT_S = 1.0
SLACK_S = 10.0


def _settings(bootstrap: str = "broker-a:9092,broker-b:9092") -> Settings:
    return Settings.from_env({}, kafka_bootstrap=bootstrap)


# -- the mapping --------------------------------------------------------------

@pytest.mark.parametrize("raised", [
    KafkaTimeoutError("Unable to bootstrap from broker-a:9092"),
    KafkaConnectionError("111 ECONNREFUSED"),
    UnknownTopicOrPartitionError(),
    ConnectionRefusedError(111, "Connection refused"),
    OSError(24, "Too many open files"),
])
def test_kafka_and_socket_errors_become_kafka_unavailable(raised: Exception) -> None:
    with (pytest.raises(KafkaUnavailable) as caught,
          unavailable("committing offsets for group g1", _settings())):
        raise raised
    message = str(caught.value)
    assert "committing offsets for group g1" in message
    assert "broker-a:9092,broker-b:9092" in message
    assert type(raised).__name__ in message
    assert "REKAP_KAFKA_BOOTSTRAP" in message
    assert caught.value.__cause__ is raised


def test_without_settings_the_message_names_no_servers() -> None:
    with (pytest.raises(KafkaUnavailable, match=r"^Kafka failed while reading t1: KafkaTimeoutError"),
          unavailable("reading t1")):
        raise KafkaTimeoutError("slow")


@pytest.mark.parametrize("raised", [
    ValueError("invalid literal for int() with base 10: 'notaport'"),
    KeyError("partition"),
    ConfigError("topic has too few partitions"),
    KafkaUnavailable("topic t1 does not exist (run `rekap topics`)"),
])
def test_other_errors_pass_through_unchanged(raised: Exception) -> None:
    with pytest.raises(type(raised)) as caught, unavailable("reading t1", _settings()):
        raise raised
    assert caught.value is raised
    assert caught.value.__cause__ is None


def test_a_clean_block_returns_its_value() -> None:
    def read() -> int:
        with unavailable("reading t1"):
            return 7
    assert read() == 7


def test_usable_as_a_decorator() -> None:
    @unavailable("describing group g1", _settings())
    def describe() -> None:
        raise CoordinatorNotAvailableError()

    with pytest.raises(KafkaUnavailable, match="describing group g1") as caught:
        describe()
    assert isinstance(caught.value.__cause__, CoordinatorNotAvailableError)


# -- the gaps the boundary closes ------------------------------------------------

class _FailingClient:
    """Stands in for an admin client or consumer whose every broker call fails."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __getattr__(self, name: str) -> Any:
        def fail(*_args: Any, **_kwargs: Any) -> Any:
            raise self.exc
        return fail


def _fake(exc: Exception) -> Any:
    @contextmanager
    def factory(*_args: Any, **_kwargs: Any) -> Iterator[_FailingClient]:
        yield _FailingClient(exc)
    return factory


def test_commit_offsets_translates_a_broker_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not retriable, so rebuild.retrying gives it straight back.
    exc = GroupAuthorizationFailedError()
    monkeypatch.setattr(consumers.rebuild, "admin_client", _fake(exc))
    with pytest.raises(KafkaUnavailable, match="committing offsets for group rekap") as caught:
        consumers.rebuild.commit_offsets(_settings(), {0: 0})
    assert caught.value.__cause__ is exc


def test_beginning_offsets_translates_a_broker_error(monkeypatch: pytest.MonkeyPatch) -> None:
    exc = KafkaTimeoutError("Failed to get offsets by timestamps in 30000 ms")
    monkeypatch.setattr(consumers.rebuild, "reader", _fake(exc))
    with pytest.raises(KafkaUnavailable, match=r"beginning offsets of rekap\.sales\.v1") as caught:
        consumers.rebuild.beginning_offsets(_settings())
    assert caught.value.__cause__ is exc


# -- real clients, no broker -------------------------------------------------------

#: kafka-python 3.0.12 does not close the socket of a refused connect (``sock_connect`` in
#: ``kafka/net/inet.py`` raises without ``sock.close()``), so each bootstrap attempt at a
#: closed port leaves an unconnected socket for the garbage collector. Only that warning
#: is ignored, in these tests (and :func:`closed_port` collects the sockets before they
#: end): an unclosed socket *with* a peer still fails the test.
refused_sockets = pytest.mark.filterwarnings(
    r"ignore:unclosed <socket\.socket [^>]*laddr=\('0\.0\.0\.0', \d+\)>$:ResourceWarning")


@pytest.fixture
def closed_port(caplog: pytest.LogCaptureFixture) -> Iterator[Settings]:
    """Settings whose bootstrap server is a loopback port nobody listens on.

    kafka-python logs each refused connect with the exception as an argument; a captured
    record would keep its traceback, and the socket in it, alive past the collection below.
    """
    caplog.set_level(logging.CRITICAL, logger="kafka")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield _settings(f"127.0.0.1:{port}")
    gc.collect()


@refused_sockets
def test_ensure_topics_without_a_broker_is_kafka_unavailable(closed_port: Settings) -> None:
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable, match="creating topics") as caught:
        ensure_topics(closed_port, timeout_s=TIMEOUT_S)
    assert time.monotonic() - started < TIMEOUT_S + SLACK_S
    assert closed_port.kafka_bootstrap in str(caught.value)
    assert isinstance(caught.value.__cause__, KafkaTimeoutError)


@refused_sockets
def test_delete_topics_without_a_broker_is_kafka_unavailable(closed_port: Settings) -> None:
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable, match="deleting topics"):
        delete_topics(closed_port, timeout_s=TIMEOUT_S)
    assert time.monotonic() - started < TIMEOUT_S + SLACK_S


@refused_sockets
def test_a_reader_without_a_broker_is_kafka_unavailable(closed_port: Settings) -> None:
    started = time.monotonic()
    with (pytest.raises(KafkaUnavailable, match="reading t1"),
          unavailable("reading t1", closed_port),
          kafkaconn.reader(closed_port, "test", timeout_s=TIMEOUT_S) as consumer):
        consumer.topics()
    assert time.monotonic() - started < TIMEOUT_S + SLACK_S
    # kafka-python leaves the I/O thread of a client that failed to bootstrap running;
    # kafkaconn closes it.
    assert not [t.name for t in threading.enumerate() if t.name == "kafka-io-rekap-test"]
