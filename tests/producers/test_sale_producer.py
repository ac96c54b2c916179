"""The ingest producer path: sends on the loop once metadata is known, acks handed back in bulk."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest

from producers import kafka as kafka_module
from producers.kafka import Ack, Failed, SaleProducer, _Inbox
from rekap.settings import Settings
from tests.support.kafka import read_all


async def test_inbox_resolves_every_waiter_put_from_many_threads_once() -> None:
    loop = asyncio.get_running_loop()
    inbox = _Inbox(loop)
    waiters = [loop.create_future() for _ in range(4000)]
    wakeups = Counter[str]()
    drain = inbox.drain

    def counted() -> None:
        wakeups["drain"] += 1
        drain()

    inbox.drain = counted  # type: ignore[method-assign]

    def put(part: list[asyncio.Future[Ack | Failed]], base: int) -> None:
        for i, waiter in enumerate(part):
            inbox.put(waiter, Ack(0, base + i))

    threads = [threading.Thread(target=put, args=(waiters[n::4], n * 1000)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = await asyncio.wait_for(asyncio.gather(*waiters), 10)
    assert len(results) == 4000 and all(isinstance(r, Ack) for r in results)
    # Bulk: far fewer loop wake-ups than results (one per burst, not one per record).
    assert 1 <= wakeups["drain"] < 4000


@pytest.mark.integration
async def test_send_async_hands_records_over_on_the_loop_once_metadata_is_known(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    hops = Counter[str]()
    real_to_thread = asyncio.to_thread

    async def counting_to_thread(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        hops["to_thread"] += 1
        return await real_to_thread(func, *args, **kwargs)

    monkeypatch.setattr(kafka_module.asyncio, "to_thread", counting_to_thread)
    producer = SaleProducer(settings)
    try:
        first = await producer.send_async([(b"ikm-a", b'{"sale_id":"s-0"}')])
        assert isinstance(first[0], Ack)
        assert hops["to_thread"] == 1  # creating the producer and fetching metadata

        async def one(i: int) -> list[Ack | Failed]:
            return await producer.send_async([(b"ikm-%d" % (i % 5), b'{"sale_id":"s-%d"}' % i)])

        results = await asyncio.gather(*(one(i) for i in range(1, 301)))
    finally:
        await real_to_thread(producer.close)
    assert hops["to_thread"] == 1, "a send with cached metadata took a thread hop"
    assert all(isinstance(r[0], Ack) for r in results)
    ids = Counter(r.value for r in read_all(settings, settings.topic_sales))
    assert len(ids) == 301 and set(ids.values()) == {1}
