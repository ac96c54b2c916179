"""Kernel subcommands: ``rekap settings``, ``rekap topics``, ``rekap registry``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rekap.registry import hash_token, load_registry, new_token
from rekap.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("settings", help="print the effective settings (secrets masked)")
    p.set_defaults(handler=_settings)

    p = sub.add_parser("topics", help="create rekap's Kafka topics with their configs")
    p.set_defaults(handler=_topics)

    p = sub.add_parser("registry", help="check the registry, or issue a booth token")
    rsub = p.add_subparsers(dest="registry_command", required=True)
    c = rsub.add_parser("check", help="load and check the registry file")
    c.set_defaults(handler=_registry_check)
    t = rsub.add_parser("issue-token",
                        help="print a new token for a booth or channel and store only its hash")
    t.add_argument("name", help="a booth id, or a channel (marketplace, website, virtual_expo, "
                                "or <channel>:<integrator>)")
    t.add_argument("--tokens-file", type=Path, default=None,
                   help="token-hash file to update (default: REKAP_BOOTH_TOKENS_PATH)")
    t.set_defaults(handler=_registry_issue_token)


def _settings(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.describe(), indent=2))
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from rekap.topics import ensure_topics

    created = ensure_topics(settings)
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0


def _registry_check(args: argparse.Namespace, settings: Settings) -> int:
    reg = load_registry(settings.registry_path, settings.booth_tokens_path)
    print(f"registry {settings.registry_path}: {len(reg.events)} events, {len(reg.ikm)} IKM, "
          f"{len(reg.booths)} booths ({sum(b.token_sha256 is not None for b in reg.booths.values())}"
          f" with tokens), fingerprint {reg.fingerprint}")
    return 0


def _registry_issue_token(args: argparse.Namespace, settings: Settings) -> int:
    """Print a fresh token once; only its SHA-256 is written to the token file."""
    from producers.ingest.auth import ONLINE_CHANNELS
    from producers.tokens import write_tokens_file
    from rekap.errors import ConfigError

    path = args.tokens_file or settings.booth_tokens_path
    if path is None:
        raise ConfigError("give --tokens-file or set REKAP_BOOTH_TOKENS_PATH")
    token = new_token()
    if args.name.split(":", 1)[0] in ONLINE_CHANNELS:
        write_tokens_file(path, channels={args.name: hash_token(token)})
    else:
        reg = load_registry(settings.registry_path, path if path.exists() else None)
        if args.name not in reg.booths:
            raise ConfigError(f"{args.name!r} is neither a booth in the registry nor a channel")
        write_tokens_file(path, booths={args.name: hash_token(token)})
    print(token)
    return 0
