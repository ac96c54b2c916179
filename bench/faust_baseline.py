"""Baseline 2 of :mod:`bench.throughput`: a stock Faust agent that only takes batches.

Run as a child process (``python -m bench.faust_baseline``) with the same
``REKAP_*`` environment the worker gets. The app uses the worker's Faust
settings (:func:`streams.app.faust_options`) and one agent doing
``stream.take_events(batch_max, within=batch_window_s)`` and nothing else, so
what it measures is the cost of Faust itself on this stream.

When it has seen ``--expect`` records it writes ``{"first": t, "last": t,
"first_count": n1, "count": n}`` (``time.time()`` of the first and
last batch, and the size of the first) to ``--result``
and keeps running until the parent stops it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import faust

from rekap.settings import Settings
from streams.app import faust_options


def report(result: Path, seen: dict[str, Any]) -> None:
    """Write the result once (a small local file; blocking is fine here)."""
    if not result.exists():
        result.write_text(json.dumps(seen))


def build(settings: Settings, expect: int, result: Path) -> faust.App:
    datadir = settings.runtime_dir.resolve() / "faust" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(settings.app_id, datadir=str(datadir), web_enabled=True,
                    web_port=settings.worker_port, web_bind=settings.host,
                    web_host=settings.host, **faust_options(settings))
    topic = app.topic(settings.topic_sales, key_serializer="raw", value_serializer="raw")
    seen = {"count": 0, "first": 0.0, "first_count": 0, "last": 0.0}

    @app.agent(topic, name="bench.take_only", concurrency=1)
    async def take_only(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, within=settings.batch_window_s):
            now = time.time()
            if not seen["count"]:
                seen["first"] = now
                seen["first_count"] = len(events)
            seen["count"] += len(events)
            seen["last"] = now
            if seen["count"] >= expect:
                report(result, seen)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--loop", default="aio", choices=("aio", "uvloop"))
    args = parser.parse_args()
    settings = Settings.from_env()
    app = build(settings, args.expect, args.result)
    from faust.worker import Worker

    loop = None
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    Worker(app, loglevel="warn", workdir=str(settings.runtime_dir), redirect_stdouts=False,
           loop=loop).execute_from_commandline()


if __name__ == "__main__":
    main()
