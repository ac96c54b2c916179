"""``rekap worker``: run the Faust worker that turns the sales topic into totals."""

from __future__ import annotations

import argparse

from rekap.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run the aggregation worker (sales topic → Redis totals)")
    p.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    """Check Redis keeps every key, create the topics if missing, then run until SIGTERM/SIGINT."""
    from faust.worker import Worker

    from rekap.redisconn import check_eviction_policy, connect_sync
    from rekap.topics import ensure_topics
    from streams.app import create_app

    # Before Faust starts: once it runs, a problem surfaces as a retried batch in a
    # log, and an evicting Redis would not surface at all until totals were wrong.
    client = connect_sync(settings)
    try:
        check_eviction_policy(client, settings)
    finally:
        client.close()
    ensure_topics(settings)
    app = create_app(settings)
    settings.runtime_dir.mkdir(parents=True, exist_ok=True)
    level = {"warning": "warn"}.get(settings.log_level.lower(), settings.log_level.lower())
    worker = Worker(app, loglevel=level, workdir=str(settings.runtime_dir),
                    redirect_stdouts=False)
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0
