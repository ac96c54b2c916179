"""Which Redis errors are outages (retry the batch) and which are a call's own fault."""

from __future__ import annotations


def test_cluster_clients_failover_errors_are_outages_and_bugs_are_not() -> None:
    """redis-py's cluster errors do not derive from RedisError: a slot no node serves during a
    failover must retry the batch, never reject its records as internal errors."""
    from redis.exceptions import (
        ClusterDownError,
        ConnectionError,
        CrossSlotTransactionError,
        RedisClusterUnreachableError,
        ResponseError,
        SlotNotCoveredError,
        TryAgainError,
    )

    from rekap.redisconn import REDIS_ERRORS
    from streams.apply import is_outage

    outages = [SlotNotCoveredError("slot 1 not covered"), RedisClusterUnreachableError("down"),
               ClusterDownError("CLUSTERDOWN The cluster is down"), TryAgainError("TRYAGAIN"),
               ConnectionError("refused"), ResponseError("READONLY You can't write")]
    bugs = [CrossSlotTransactionError("cross slot"), ResponseError("ERR user_script:1: boom")]
    for exc in outages + bugs:
        assert isinstance(exc, REDIS_ERRORS), exc
    assert [is_outage(e) for e in outages] == [True] * len(outages)
    assert [is_outage(e) for e in bugs] == [False] * len(bugs)
