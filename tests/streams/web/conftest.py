"""Fixtures of the read-side tests: a registry, a seeded prefix, a reader."""

from __future__ import annotations

import pytest
import redis

from rekap.names import Keys
from rekap.registry import Registry, load_registry
from rekap.settings import Settings
from streams.web import queries
from tests.streams.web.seed import add_sale

KOKAS = "lagawi-2022-kokas"
ROOT = "lagawi-2022"

#: (sale_id, ikm_id, event_id, amount_idr, channel, occurred_at)
SALES = [
    ("s-1", "lampung-ethnica", KOKAS, 1_250_000, "offline", "2022-06-01T10:00:00+07:00"),
    ("s-2", "pisang-shamiya", KOKAS, 300_000, "offline", "2022-06-01T11:00:00+07:00"),
    ("s-3", "lampung-ethnica", KOKAS, 750_000, "offline", "2022-06-02T09:30:00+07:00"),
    ("s-4", "littlemonq", ROOT, 2_000_000, "marketplace", "2022-05-10T20:00:00+07:00"),
    ("s-5", "rafins-snack", KOKAS, 300_000, "offline", "2022-06-01T23:30:00+00:00"),
]


@pytest.fixture
def registry(settings: Settings) -> Registry:
    return load_registry(settings.registry_path)


@pytest.fixture
def seeded(settings: Settings, redis_client: redis.Redis, registry: Registry) -> Settings:
    keys = Keys(settings.redis_prefix)
    for sale_id, ikm, event, amount, channel, at in SALES:
        add_sale(redis_client, keys, registry, sale_id=sale_id, ikm_id=ikm, event_id=event,
                 amount_idr=amount, channel=channel, occurred_at=at)
    return settings


@pytest.fixture
def reader(seeded: Settings, registry: Registry) -> queries.Reader:
    return queries.Reader(Keys(seeded.redis_prefix), registry)
