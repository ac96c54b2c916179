"""Retrying a batch until it is done: the pause between tries, and what each failure is.

The worker never drops a batch: an outage (Redis, Kafka) or a bug that is not
one record's fault is retried with the same plan, after a growing pause, and
each failure is counted once under its own cause.
"""

from __future__ import annotations

from typing import Final, Literal

from rekap.backoff import Backoff
from rekap.errors import KafkaUnavailable, RedisUnavailable

#: 0.2 s, 0.4 s, … up to 5 s, no jitter: a Redis failover takes about a second, and a
#: recovered stack is noticed within seconds.
BATCH_BACKOFF: Final = Backoff(base_s=0.1, cap_s=5.0, floor=1.0)

Cause = Literal["redis", "kafka", "internal"]


def cause(exc: BaseException) -> Cause:
    """What a failure counts as: ``redis``, ``kafka`` (outages) or ``internal`` (a bug)."""
    if isinstance(exc, RedisUnavailable):
        return "redis"
    if isinstance(exc, KafkaUnavailable):
        return "kafka"
    return "internal"
