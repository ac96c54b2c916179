"""Which Redis errors are outages (retry the batch) and which are a call's own fault."""

from __future__ import annotations


def test_cluster_clients_failover_errors_are_outages_and_bugs_are_not() -> None:
    """redis-py's cluster errors do not derive from RedisError: a slot no node serves during a
    failover must retry the batch, never reject its records as internal errors."""
    from redis._parsers.base import BaseParser
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

    parse_error = BaseParser.parse_error
    from streams.apply import is_outage

    outages = [SlotNotCoveredError("slot 1 not covered"), RedisClusterUnreachableError("down"),
               ClusterDownError("CLUSTERDOWN The cluster is down"), TryAgainError("TRYAGAIN"),
               ConnectionError("refused"), ResponseError("READONLY You can't write")]
    # As redis-py parses the server's replies: the mapped classes lose the code from their
    # message ("CLUSTERDOWN The cluster is down" becomes ClusterDownError("The cluster is
    # down")), which once sent a batch during a cluster failover to the isolation path.
    outages += [parse_error(reply) for reply in (
        "CLUSTERDOWN The cluster is down", "MASTERDOWN Link with MASTER is down",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "READONLY You can't write against a read only replica.",
        "OOM command not allowed when used memory > 'maxmemory'.",
        "NOREPLICAS Not enough good replicas to write.", "BUSY Redis is busy running a script.",
        "LOADING Redis is loading the dataset in memory",
        "NOPERM this user has no permissions to run the 'evalsha' command")]
    bugs = [CrossSlotTransactionError("cross slot"), ResponseError("ERR user_script:1: boom"),
            parse_error("ERR user_script:1: Script attempted to access a non local key"),
            parse_error("WRONGTYPE Operation against a key holding the wrong kind of value"),
            parse_error("CROSSSLOT Keys in request don't hash to the same slot")]
    for exc in outages + bugs:
        assert isinstance(exc, REDIS_ERRORS), exc
    assert [is_outage(e) for e in outages] == [True] * len(outages)
    assert [is_outage(e) for e in bugs] == [False] * len(bugs)
