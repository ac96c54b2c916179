"""Subcommands of the read side: ``rekap exporter`` and ``rekap watch EVENT``."""

from __future__ import annotations

import argparse

from rekap.errors import ConfigError
from rekap.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("exporter", help="serve the leaderboard gauges for Prometheus "
                                        "(REKAP_HOST:REKAP_EXPORTER_PORT/metrics)")
    p.set_defaults(handler=_exporter)

    w = sub.add_parser("watch", help="live leaderboard of an event in the terminal")
    w.add_argument("event_id", help="registry event id, e.g. lagawi-2022-kokas")
    w.add_argument("--once", action="store_true", help="print one frame and exit")
    w.add_argument("--limit", type=int, default=10, help="IKM shown (default 10)")
    w.set_defaults(handler=_watch)


def _exporter(args: argparse.Namespace, settings: Settings) -> int:
    from streams.web.exporter import serve

    return serve(settings)


def _watch(args: argparse.Namespace, settings: Settings) -> int:
    from rekap.registry import load_registry
    from streams.web.watch import watch

    registry = load_registry(settings.registry_path)
    if args.event_id not in registry.events:
        known = ", ".join(registry.events)
        raise ConfigError(f"event {args.event_id!r} is not in the registry (known: {known})")
    if not 1 <= args.limit <= 100:
        raise ConfigError("--limit must be from 1 to 100")
    return watch(settings, args.event_id, once=args.once, limit=args.limit)
