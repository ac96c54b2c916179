"""Contestant ``naive`` of :mod:`bench.throughput`: Faust used the tutorial way.

Run as a child process (``python -m bench.naive_faust``) with the same
``REKAP_*`` environment the worker gets. One stock Faust agent, the worker's
Faust settings (:func:`streams.app.faust_options`), a JSON value serializer,
and per event ``async for value in stream`` and two awaited Redis commands
(redis.asyncio, one connection):

* ``HINCRBY`` of the event's totals hash, field ``amount_idr``, by the signed amount
  (refunds negative);
* ``ZINCRBY`` of the event's leaderboard by the same amount for the IKM.

The keys are rekap's own (:class:`rekap.names.Keys`), so the writes land where the
worker's would. No de-duplication, no offset fence, no atomicity: a resend or a
replay is counted twice. It is the design rekap replaces, measured on the same
stream, and its totals are not checked. The result file is the same as
:mod:`bench.faust_baseline`'s.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import faust

from bench.faust_baseline import arguments, make_app, report, serve
from rekap.names import Keys
from rekap.redisconn import connect
from rekap.registry import load_registry
from rekap.settings import Settings


def build(settings: Settings, expect: int, result: Path) -> faust.App:
    app = make_app(settings)
    topic = app.topic(settings.topic_sales, key_serializer="raw", value_serializer="json")
    keys = Keys(settings.redis_prefix)
    registry = load_registry(settings.registry_path)
    roots = {e: registry.root(e) for e in registry.events}
    seen = {"count": 0, "first": 0.0, "first_count": 0, "last": 0.0}

    @app.agent(topic, name="bench.naive", concurrency=1)
    async def naive(stream: Any) -> None:
        client = connect(settings)
        try:
            async for value in stream:
                event = value["event_id"]
                root = roots.get(event, event)
                amount = int(value["amount_idr"]) * (-1 if value["kind"] == "refund" else 1)
                await client.hincrby(keys.event_totals(root, event), "amount_idr", amount)
                await client.zincrby(keys.board(root, event), amount, value["ikm_id"])
                now = time.time()
                if not seen["count"]:
                    seen["first"], seen["first_count"] = now, 1
                seen["count"] += 1
                seen["last"] = now
                if seen["count"] >= expect:
                    report(result, seen)
        finally:
            await client.aclose()

    return app


def main() -> None:
    args = arguments()
    settings = Settings.from_env()
    serve(build(settings, args.expect, args.result), settings, args.loop)


if __name__ == "__main__":
    main()
