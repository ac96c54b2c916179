"""Live snapshots for the venue screens: one Redis poller per event, shared by every viewer.

A screen subscribes to an event; while at least one screen watches it, a task
polls the event's totals signature every ``interval_s`` and, when it changed,
reads a full snapshot once and wakes every subscriber. A hundred screens on one
worker therefore cost one small ``HMGET`` per interval, not a hundred. Because
the state is in Redis, screens connected to different workers see the same
numbers; each worker polls on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from rekap.redisconn import REDIS_ERRORS, AsyncClient
from streams import metrics
from streams.web import queries

log = logging.getLogger(__name__)

#: How often an event's signature is polled while someone watches (seconds). The
#: venue promise is "within a second of a sale"; the worker applies a sale tens of
#: milliseconds after it arrives (docs/PERFORMANCE.md), so 0.3 s keeps the sum well under it.
POLL_INTERVAL_S = 0.3


class _Feed:
    def __init__(self) -> None:
        self.snapshot: dict[str, Any] | None = None
        self.seq = 0
        self.subscribers = 0
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None


def _moved_on(feed: _Feed, seen: int) -> bool:
    return feed.seq != seen


class SnapshotHub:
    """Fans out snapshots of events to subscribers, polling Redis once per event."""

    def __init__(self, client: Callable[[], AsyncClient],
                 reader: Callable[[], Awaitable[queries.Reader]],
                 interval_s: float = POLL_INTERVAL_S) -> None:
        self._client = client
        self._reader = reader
        self._interval_s = interval_s
        self._feeds: dict[str, _Feed] = {}

    async def subscribe(self, event_id: str, wait_s: float) -> AsyncIterator[dict[str, Any] | None]:
        """Yield the current snapshot, then each newer one; ``None`` after ``wait_s`` of quiet."""
        feed = self._feeds.get(event_id)
        if feed is None:
            feed = self._feeds[event_id] = _Feed()
        feed.subscribers += 1
        if feed.task is None or feed.task.done():
            feed.task = asyncio.create_task(self._poll(event_id, feed), name=f"venue-poll-{event_id}")
        seen = 0
        try:
            while True:
                snap: dict[str, Any] | None = None
                async with feed.changed:
                    try:
                        await asyncio.wait_for(
                            feed.changed.wait_for(functools.partial(_moved_on, feed, seen)),
                            timeout=wait_s)
                        seen = feed.seq
                        snap = feed.snapshot
                    except TimeoutError:
                        pass  # quiet: the caller sends a keep-alive
                # Yield outside the lock: the consumer writes to a slow socket.
                yield snap
        finally:
            feed.subscribers -= 1
            if feed.subscribers == 0 and feed.task is not None:
                feed.task.cancel()
                self._feeds.pop(event_id, None)

    async def _poll(self, event_id: str, feed: _Feed) -> None:
        last: tuple[int, ...] | None = None
        while True:
            try:
                client, reader = self._client(), await self._reader()
                sig = await queries.run(client, queries.signature(reader, event_id))
                if sig != last:
                    snap = await queries.run(client, queries.snapshot(reader, event_id))
                    last = sig
                    async with feed.changed:
                        feed.snapshot = snap
                        feed.seq += 1
                        feed.changed.notify_all()
            except REDIS_ERRORS as exc:
                metrics.REDIS_ERRORS.labels(operation="read").inc()
                log.warning("venue feed of %s cannot read Redis: %s", event_id, exc)
                await asyncio.sleep(1.0)
            except queries.NotFound:
                log.warning("venue feed of %s stops: event left the registry", event_id)
                return
            await asyncio.sleep(self._interval_s)

    async def close(self) -> None:
        for feed in list(self._feeds.values()):
            if feed.task is not None:
                feed.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await feed.task
        self._feeds.clear()
