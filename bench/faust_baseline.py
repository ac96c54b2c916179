"""Contestant ``faust`` of :mod:`bench.throughput`: a stock Faust agent that only takes batches.

Run as a child process (``python -m bench.faust_baseline``) with the same
``REKAP_*`` environment the worker gets. The app uses the worker's Faust
settings (:func:`streams.app.faust_options`) and one agent doing
``stream.take_events(batch_max, within=0.25)`` (the worker's fill window before it
took whole fetches) and nothing else, so what it measures is the cost of Faust
itself on this stream.

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

#: ``take_events``' fill window (the worker's old fixed window; draining a backlog, batches
#: fill by size long before it ends).
TAKE_WITHIN_S = 0.25


def report(result: Path, seen: dict[str, Any]) -> None:
    """Write the result once (a small local file; blocking is fine here)."""
    if not result.exists():
        result.write_text(json.dumps(seen))


def make_app(settings: Settings) -> faust.App:
    """A stock ``faust.App`` with the worker's options (also :mod:`bench.naive_faust`'s)."""
    datadir = settings.runtime_dir.resolve() / "faust" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    # Faust's own aiokafka transport, whatever the worker's app class or broker URL uses.
    options = faust_options(settings) | {
        "broker": [f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",") if h.strip()]}
    return faust.App(settings.app_id, datadir=str(datadir), web_enabled=True,
                     web_port=settings.worker_port, web_bind=settings.host,
                     web_host=settings.host, **options)


def build(settings: Settings, expect: int, result: Path) -> faust.App:
    app = make_app(settings)
    topic = app.topic(settings.topic_sales, key_serializer="raw", value_serializer="raw")
    seen = {"count": 0, "first": 0.0, "first_count": 0, "last": 0.0}

    @app.agent(topic, name="bench.take_only", concurrency=1)
    async def take_only(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, within=TAKE_WITHIN_S):
            now = time.time()
            if not seen["count"]:
                seen["first"] = now
                seen["first_count"] = len(events)
            seen["count"] += len(events)
            seen["last"] = now
            if seen["count"] >= expect:
                report(result, seen)

    return app


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--loop", default="aio", choices=("aio", "uvloop"))
    return parser.parse_args()


def serve(app: faust.App, settings: Settings, loop_name: str = "aio") -> None:
    """Run ``app`` as a Faust worker until the parent stops it."""
    from faust.worker import Worker

    loop = None
    if loop_name == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    Worker(app, loglevel="warn", workdir=str(settings.runtime_dir), redirect_stdouts=False,
           loop=loop).execute_from_commandline()


def main() -> None:
    args = arguments()
    settings = Settings.from_env()
    serve(build(settings, args.expect, args.result), settings, args.loop)


if __name__ == "__main__":
    main()
