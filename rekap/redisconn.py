"""Redis connections, built from settings, with errors translated at the boundary."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

from rekap.errors import RedisUnavailable
from rekap.settings import Settings


def connect(settings: Settings, **kwargs: Any) -> aioredis.Redis:
    """An asyncio client. ``decode_responses`` stays off: hashes hold integer bytes."""
    return aioredis.Redis.from_url(settings.redis_url, health_check_interval=30, **kwargs)


def connect_sync(settings: Settings, **kwargs: Any) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, health_check_interval=30, **kwargs)


def unavailable(settings: Settings, exc: Exception, doing: str) -> RedisUnavailable:
    """The operator-facing error for a failed Redis call; raise it ``from exc``."""
    return RedisUnavailable(
        f"Redis at {settings.redis_url_masked} failed while {doing}: {exc}. "
        "Check that Redis is running (deploy/local/stack status) and REKAP_REDIS_URL.")
