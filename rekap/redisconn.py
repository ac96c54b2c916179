"""Redis connections, built from settings, with errors translated at the boundary."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

from rekap.errors import ConfigError, RedisUnavailable
from rekap.settings import Settings


def connect(settings: Settings, **kwargs: Any) -> aioredis.Redis:
    """An asyncio client. ``decode_responses`` stays off: hashes hold integer bytes."""
    return aioredis.Redis.from_url(settings.redis_url, health_check_interval=30, **kwargs)


def connect_sync(settings: Settings, **kwargs: Any) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, health_check_interval=30, **kwargs)


def unavailable(settings: Settings, exc: Exception, doing: str) -> RedisUnavailable:
    """The operator-facing error for a failed Redis call; raise it ``from exc``."""
    return _unavailable_at(settings.redis_url_masked, exc, doing)


def _unavailable_at(where: str, exc: Exception, doing: str) -> RedisUnavailable:
    return RedisUnavailable(
        f"Redis at {where} failed while {doing}: {exc}. "
        "Check that Redis is running (deploy/local/stack status) and REKAP_REDIS_URL.")


#: The only eviction policy under which Redis keeps every key rekap wrote.
SAFE_EVICTION_POLICY = "noeviction"


def check_eviction_policy(client: redis.Redis, settings: Settings | None = None) -> None:
    """Refuse a Redis that may evict keys: raise :class:`ConfigError` unless ``noeviction``.

    The offset fences and the sale_id de-dup sets live in Redis beside the totals. A
    Redis that evicts under memory pressure drops a fence or a de-dup entry without an
    error, and the next replay then counts those sales twice. Under ``noeviction`` a
    full Redis refuses writes instead, which the worker retries and reports.

    Read from ``INFO memory``, not ``CONFIG GET``: managed Redis services often disable
    CONFIG. ``settings`` only names the server in messages (its masked URL); without it
    the client's host and port are named.
    """
    where = settings.redis_url_masked if settings is not None else _address(client)
    try:
        info = client.info("memory")
    except redis.RedisError as exc:
        if settings is not None:
            raise unavailable(settings, exc, "reading INFO memory") from exc
        raise _unavailable_at(where, exc, "reading INFO memory") from exc
    policy = info.get("maxmemory_policy")
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


def _address(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
