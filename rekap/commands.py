"""Kernel subcommands: ``rekap settings``, ``rekap topics``, ``rekap registry check``."""

from __future__ import annotations

import argparse
import json

from rekap.registry import load_registry
from rekap.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("settings", help="print the effective settings (secrets masked)")
    p.set_defaults(handler=_settings)

    p = sub.add_parser("topics", help="create rekap's Kafka topics with their configs")
    p.set_defaults(handler=_topics)

    p = sub.add_parser("registry", help="check the registry")
    rsub = p.add_subparsers(dest="registry_command", required=True)
    c = rsub.add_parser("check", help="load and check the registry file")
    c.set_defaults(handler=_registry_check)


def _settings(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.describe(), indent=2))
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from rekap.topics import ensure_topics

    created = ensure_topics(settings)
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0


def _registry_check(args: argparse.Namespace, settings: Settings) -> int:
    reg = load_registry(settings.registry_path)
    print(f"registry {settings.registry_path}: {len(reg.events)} events, {len(reg.ikm)} IKM, "
          f"{len(reg.booths)} booths, fingerprint {reg.fingerprint}")
    return 0
