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
    t = rsub.add_parser("issue-token", help="print a new token for a booth and store its hash")
    t.add_argument("booth_id")
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
    from rekap.errors import ConfigError

    path = args.tokens_file or settings.booth_tokens_path
    if path is None:
        raise ConfigError("give --tokens-file or set REKAP_BOOTH_TOKENS_PATH")
    reg = load_registry(settings.registry_path, path if path.exists() else None)
    if args.booth_id not in reg.booths:
        raise ConfigError(f"booth {args.booth_id!r} is not in the registry")
    token = new_token()
    write_token_hashes(path, {args.booth_id: hash_token(token)})
    print(token)
    return 0


def write_token_hashes(path: Path, hashes: dict[str, str]) -> None:
    """Merge booth token hashes into a token file (TOML ``[booths]`` table)."""
    import tomllib

    current: dict[str, str] = {}
    if path.exists():
        current = dict(tomllib.loads(path.read_text()).get("booths", {}))
    current.update(hashes)
    lines = ["# Booth token hashes (SHA-256). Never store the tokens themselves.", "[booths]"]
    lines += [f'"{booth}" = "{digest}"' for booth, digest in sorted(current.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
