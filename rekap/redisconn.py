"""Redis connections, built from settings, with errors translated at the boundary.

``REKAP_REDIS_URL`` names one of three deployments (rekap.redisurl); every component
gets its client here, so each works on all three:

* single node: redis-py's ``Redis.from_url``;
* Redis Cluster: redis-py's ``RedisCluster``, seeded with every host of the URL (a dead
  first seed is survived) and following MOVED/ASK and failovers by itself. Every key of
  one event tree shares a hash tag (rekap.names), so the apply script touches one slot;
  reads that span trees go through a non-transactional pipeline, which redis-py splits
  per node: each key is read atomically, the set of them is not one snapshot;
* Sentinel: redis-py's ``Sentinel(...).master_for(service)``, which asks the sentinels
  for the current primary on every new connection, so a failover is a few seconds of
  ConnectionErrors (retried by the caller as an outage) and then the new primary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.cluster import ClusterNode
from redis.exceptions import RedisClusterException, RedisError
from redis.sentinel import Sentinel, SentinelConnectionPool

from rekap.errors import ConfigError, RedisUnavailable
from rekap.redisurl import RedisTarget
from rekap.settings import Settings

#: Every client :func:`connect` returns. Both speak the commands rekap uses; only the
#: cluster one refuses a transaction across slots, which rekap never asks for.
AsyncClient: TypeAlias = "aioredis.Redis | aioredis.RedisCluster"
SyncClient: TypeAlias = "redis.Redis | redis.RedisCluster"

#: Every exception a redis-py client raises for a failed call: the cluster client's own
#: (a slot no reachable node serves, every seed down) do not derive from RedisError.
REDIS_ERRORS: Final = (RedisError, RedisClusterException)

#: Connection health check, seconds: a pooled connection idle this long is PINGed first.
HEALTH_CHECK_S = 30
#: Sentinel queries must fail fast so a dead sentinel is skipped, not waited on (with it,
#: the worker followed a failover within ~3.5 s in tests/scale).
SENTINEL_TIMEOUT_S = 0.5
#: Socket timeout to a Sentinel-named primary unless the caller sets one: a dead primary
#: is noticed within it, and then the sentinels are asked again.
SENTINEL_PRIMARY_TIMEOUT_S = 5.0


def connect(settings: Settings, **kwargs: Any) -> AsyncClient:
    """An asyncio client. ``decode_responses`` stays off: hashes hold integer bytes."""
    client: AsyncClient = _client(settings.redis_target, _ASYNC, kwargs)
    return client


def connect_sync(settings: Settings, **kwargs: Any) -> SyncClient:
    """The blocking twin of :func:`connect` (CLI commands, the exporter, tests)."""
    client: SyncClient = _client(settings.redis_target, _SYNC, kwargs)
    return client


def is_cluster(client: object) -> bool:
    return isinstance(client, redis.RedisCluster | aioredis.RedisCluster)


@dataclass(frozen=True)
class _Flavour:
    """redis-py's classes for one I/O style: the same three modes, built the same way."""

    single: Any
    cluster: Any
    node: Any
    sentinel: Any
    primary_pool: Any


def _client(target: RedisTarget, flavour: _Flavour, kwargs: dict[str, Any]) -> Any:
    kwargs = {"health_check_interval": HEALTH_CHECK_S, **kwargs}
    if target.mode == "single":
        return flavour.single.from_url(target.url, **kwargs)
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.tls:
        auth["ssl"] = True
    if target.mode == "cluster":
        return flavour.cluster(startup_nodes=[flavour.node(h, p) for h, p in target.hosts],
                               **auth, **kwargs)
    kwargs.setdefault("socket_timeout", SENTINEL_PRIMARY_TIMEOUT_S)
    sentinels = flavour.sentinel(list(target.hosts), sentinel_kwargs={
        "socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S,
        **({"ssl": True} if target.tls else {})})
    return sentinels.master_for(target.service, connection_pool_class=flavour.primary_pool,
                                db=target.db, **auth, **kwargs)


class _PrimaryPool(SentinelConnectionPool):
    """Closing the client also closes its connections to the sentinels (redis-py keeps
    them open, and a command line or test would leave their sockets behind)."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        super().disconnect(inuse_connections)
        for s in self.sentinel_manager.sentinels:
            s.connection_pool.disconnect()


class _AsyncPrimaryPool(AsyncSentinelPool):
    """:class:`_PrimaryPool` for asyncio."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        for s in self.sentinel_manager.sentinels:
            await s.connection_pool.disconnect()


_SYNC = _Flavour(redis.Redis, redis.RedisCluster, ClusterNode, Sentinel, _PrimaryPool)
_ASYNC = _Flavour(aioredis.Redis, aioredis.RedisCluster, AsyncClusterNode, AsyncSentinel,
                  _AsyncPrimaryPool)


def unavailable(settings: Settings, exc: Exception, doing: str) -> RedisUnavailable:
    """The operator-facing error for a failed Redis call; raise it ``from exc``."""
    return _unavailable_at(settings.redis_target.described, exc, doing)


def _unavailable_at(where: str, exc: Exception, doing: str) -> RedisUnavailable:
    return RedisUnavailable(
        f"Redis at {where} failed while {doing}: {exc}. "
        "Check that Redis is running (deploy/local/stack status) and REKAP_REDIS_URL.")


#: The only eviction policy under which Redis keeps every key rekap wrote.
SAFE_EVICTION_POLICY = "noeviction"


def check_eviction_policy(client: SyncClient, settings: Settings | None = None) -> None:
    """Refuse a Redis that may evict keys: raise :class:`ConfigError` unless ``noeviction``.

    The offset fences and the sale_id de-dup sets live in Redis beside the totals. A
    Redis that evicts under memory pressure drops a fence or a de-dup entry without an
    error, and the next replay then counts those sales twice. Under ``noeviction`` a
    full Redis refuses writes instead, which the worker retries and reports.

    Read from ``INFO memory``, not ``CONFIG GET``: managed Redis services often disable
    CONFIG. On Redis Cluster every node of the client's slot map is asked, replicas too
    (a replica is the primary of tomorrow's failover; a cluster lists one there once its
    nodes have gossiped it, seconds after it joined). ``settings`` only names the server
    in messages (its masked URL); without it the client's host and port are named.
    """
    where = settings.redis_url_masked if settings is not None else _address(client)
    try:
        if isinstance(client, redis.RedisCluster):
            infos = client.info("memory", target_nodes=redis.RedisCluster.ALL_NODES)
        else:
            infos = {where: client.info("memory")}
    except REDIS_ERRORS as exc:
        if settings is not None:
            raise unavailable(settings, exc, "reading INFO memory") from exc
        raise _unavailable_at(where, exc, "reading INFO memory") from exc
    for node, info in infos.items():
        _check_policy(node if node == where else f"{node} ({where})", info.get("maxmemory_policy"))


def _check_policy(where: str, policy: object) -> None:
    if policy is None:
        raise ConfigError(
            f"Redis at {where} does not report maxmemory_policy in INFO memory, so rekap "
            "cannot tell whether it may evict keys. rekap needs a Redis (4 or later) set to "
            f"'maxmemory-policy {SAFE_EVICTION_POLICY}'.")
    if str(policy) != SAFE_EVICTION_POLICY:
        raise ConfigError(
            f"Redis at {where} has maxmemory-policy {policy}: it may evict keys when its memory "
            "is full. rekap keeps its offset fences and sale_id de-duplication in Redis, and an "
            "evicted one makes a replay count sales twice, silently. Set 'maxmemory-policy "
            f"{SAFE_EVICTION_POLICY}' (in redis.conf, with CONFIG SET, or in your provider's "
            "parameter group) and give Redis enough memory: when full it then refuses writes, "
            "which rekap retries and reports.")


def _address(client: SyncClient) -> str:
    if isinstance(client, redis.RedisCluster):
        return "Redis Cluster " + ",".join(n.name for n in client.get_nodes())
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
