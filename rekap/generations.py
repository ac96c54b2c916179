"""Which generation of the Redis layout a reader reads (see :mod:`rekap.names`).

``rekap rebuild`` builds a new generation beside the live one and moves the
pointer ``P:gen`` once the new one holds at least everything the old one did;
then it drops the old one. A reader that keeps one :class:`~rekap.names.Keys`
for its lifetime would read the dropped keys (empty) after a rebuild, so every
reader resolves the pointer once per request (one GET) and builds that request's
keys from the answer::

    keys = await current_keys(client, Keys(settings.redis_prefix))   # asyncio client
    keys = current_keys_sync(client, Keys(settings.redis_prefix))    # blocking client

A request that resolved the old generation just before the switch still reads
it whole: the old generation is dropped a grace period after the pointer moved
(:data:`consumers.rebuild.DROP_GRACE_S`), longer than any request takes.
"""

from __future__ import annotations

from typing import Any

from rekap.names import Keys


def generation_of(value: Any) -> int:
    """A pointer's value (bytes, str or None) as a generation number; absent is 0."""
    if value is None:
        return 0
    return int(value.decode() if isinstance(value, bytes) else value)


async def current_keys(client: Any, keys: Keys) -> Keys:
    """``keys`` at the generation readers read now (asyncio client)."""
    return keys.at(generation_of(await client.get(keys.pointer())))


def current_keys_sync(client: Any, keys: Keys) -> Keys:
    """``keys`` at the generation readers read now (blocking client)."""
    return keys.at(generation_of(client.get(keys.pointer())))
