"""Kernel subcommands: ``rekap settings``, ``rekap topics``, ``rekap registry check``,
``rekap tls init``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

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

    p = sub.add_parser("tls", help="HTTPS for ingest and the worker: a local CA and certificate")
    tsub = p.add_subparsers(dest="tls_command", required=True)
    c = tsub.add_parser(
        "init", help="make (or reuse) a local CA and a server certificate; print REKAP_TLS_* lines",
        description="Make a local CA and a server certificate signed by it, or reuse them while "
                    "valid (renewed within 30 days of their end). Prints export lines for "
                    "REKAP_TLS_CERT, REKAP_TLS_KEY and REKAP_TLS_CA; install the CA (ca.pem) "
                    "on each booth tablet.")
    c.add_argument("--dir", type=Path, default=None,
                   help="where the CA and certificate live (default: REKAP_RUNTIME_DIR/tls)")
    c.add_argument("--host", action="append", default=[], metavar="H",
                   help="an IP address or DNS name the tablets use to reach this machine, besides "
                        "127.0.0.1 and localhost (repeatable)")
    c.set_defaults(handler=_tls_init)


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


def _tls_init(args: argparse.Namespace, settings: Settings) -> int:
    from rekap.tls import init_local

    hosts = list(args.host)
    if settings.host not in ("0.0.0.0", "::"):  # noqa: S104 - compared, not bound
        hosts.insert(0, settings.host)
    made = init_local(args.dir or settings.runtime_dir / "tls", hosts)
    for what, issued in (("CA", made.ca), ("certificate", made.server)):
        state = "made" if issued.created else "reused"
        print(f"rekap tls: {what} {issued.cert} ({state}, valid until "
              f"{issued.not_after:%Y-%m-%d})", file=sys.stderr)
    print(f"rekap tls: certificate for {', '.join(made.hosts)}", file=sys.stderr)
    for name, value in made.env().items():
        print(f"export {name}={shlex.quote(value)}")
    return 0
