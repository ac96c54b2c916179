"""kafka-python clients, built from settings, with errors translated at the boundary.

The Kafka twin of :mod:`rekap.redisconn`. Every call that reaches a broker through
kafka-python (building a client, admin requests, offsets, polling, producing) runs
inside :func:`unavailable`, which turns what kafka-python raises into
:class:`rekap.errors.KafkaUnavailable`, re-raised ``from exc``::

    with (unavailable(f"committing offsets for group {settings.app_id}", settings),
          admin_client(settings, "rebuild") as admin):
        admin.alter_group_offsets(...)

Listing :func:`unavailable` first puts the client's construction (its bootstrap)
and its ``close()`` inside the boundary too.

What kafka-python raises, checked against kafka-python 3.0:

* :class:`kafka.errors.KafkaError` and its subclasses: an unreachable broker, a
  closed port or an unknown host are ``KafkaTimeoutError: Unable to bootstrap``
  after ``bootstrap_timeout_ms`` (it is *not* ``NoBrokersAvailable`` any more);
  broker answers such as ``CoordinatorNotAvailableError`` or ``RequestTimedOutError``
  are ``BrokerResponseError`` subclasses.
* :class:`OSError`: kafka-python wraps the errors of ``connect()`` into
  ``KafkaConnectionError``, but not those of the sockets it opens for itself (the
  wake-up socket pair of its selector), e.g. "too many open files".

Anything else passes through unchanged: a malformed ``REKAP_KAFKA_BOOTSTRAP``
(``ValueError`` from kafka-python) or rekap's own errors raised inside the block,
such as :class:`KafkaUnavailable` for a missing topic or :class:`ConfigError`.

The aiokafka clients of the worker (:mod:`streams`) translate their own errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rekap.errors import KafkaUnavailable
from rekap.settings import Settings

#: kafka-python's own default for both bootstrapping and one request. A caller that
#: must answer sooner (a test against a dead port, a health probe) passes less.
DEFAULT_TIMEOUT_S = 30.0
#: A consumer refuses a request timeout not above its ``fetch_max_wait_ms`` (500 ms).
_MIN_REQUEST_TIMEOUT_MS = 1000


@contextmanager
def unavailable(what: str, settings: Settings | None = None) -> Iterator[None]:
    """Raise :class:`KafkaUnavailable` naming ``what`` for a Kafka error in the block.

    ``what`` says what rekap was doing ("creating topics", "reading rekap.sales.v1");
    ``settings`` only names the bootstrap servers in the message. Also a decorator
    (``@unavailable("...")``), as every ``contextmanager`` is.
    """
    try:
        yield
    except Exception as exc:
        # Imported here, as everywhere in rekap: importing kafka takes most of a second,
        # which commands that never reach Kafka should not pay.
        from kafka.errors import KafkaError

        if not isinstance(exc, KafkaError | OSError):
            raise
        # A KafkaError names its class in str() already ("[Error 15] CoordinatorNot...").
        detail = str(exc) if isinstance(exc, KafkaError) else f"{type(exc).__name__}: {exc}"
        where = settings.kafka_bootstrap if settings is not None else None
        raise _unavailable_at(where, detail, what) from exc


def _unavailable_at(where: str | None, detail: str, what: str) -> KafkaUnavailable:
    at = f"Kafka at {where}" if where else "Kafka"
    return KafkaUnavailable(
        f"{at} failed while {what}: {detail}. "
        "Check that the broker is running (deploy/local/stack status) and REKAP_KAFKA_BOOTSTRAP.")


def _common(settings: Settings, role: str, timeout_s: float) -> dict[str, Any]:
    timeout_ms = int(timeout_s * 1000)
    return {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        # Names the rekap component in the broker's request logs and quotas.
        "client_id": f"{settings.app_id}-{role}",
        "bootstrap_timeout_ms": timeout_ms,
        "request_timeout_ms": max(_MIN_REQUEST_TIMEOUT_MS, timeout_ms),
    }


def _construct(client_class: Any, **configs: Any) -> Any:
    """``client_class(**configs)``, without kafka-python's leak when the broker is down.

    kafka-python 3.0 (up to 3.0.12) ``KafkaConsumer`` and ``KafkaAdminClient`` start their
    I/O thread before they bootstrap, and when bootstrapping fails they raise without
    stopping it: every failed attempt would leave a thread, its selector and sockets
    behind, for the life of the process. Their documented ``kafka_client`` option lets
    us keep hold of the network client they make, and close it if construction fails.
    """
    made: list[Any] = []
    default = client_class.DEFAULT_CONFIG["kafka_client"]

    def kafka_client(**kwargs: Any) -> Any:
        made.append(default(**kwargs))
        return made[-1]

    try:
        return client_class(kafka_client=kafka_client, **configs)
    except BaseException:
        for net_client in made:
            net_client.close()
        raise


@contextmanager
def admin_client(settings: Settings, role: str = "admin", *,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[Any]:
    """A ``KafkaAdminClient``, closed on exit. ``timeout_s`` bounds bootstrap and each request.

    Enter it inside :func:`unavailable`: it connects to the broker on construction.
    """
    from kafka.admin import KafkaAdminClient

    admin = _construct(KafkaAdminClient, **_common(settings, role, timeout_s))
    try:
        yield admin
    finally:
        admin.close()


@contextmanager
def reader(settings: Settings, role: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
           **kwargs: Any) -> Iterator[Any]:
    """A ``KafkaConsumer`` without a group (it never commits), closed on exit.

    For reading topics from the beginning with ``assign``/``seek``, and offsets
    lookups; ``kwargs`` go to ``KafkaConsumer`` (``max_poll_records`` ...). Enter it
    inside :func:`unavailable`: it connects to the broker on construction.
    """
    from kafka import KafkaConsumer

    consumer = _construct(KafkaConsumer, **_common(settings, role, timeout_s), group_id=None,
                          enable_auto_commit=False, **kwargs)
    try:
        yield consumer
    finally:
        consumer.close()
