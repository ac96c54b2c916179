"""Subcommands of the producers: ``ingest``, ``booth``, ``import``, ``simulate``, ``tokens``.

Wiring only: each handler turns options and :class:`~rekap.settings.Settings` into
a call to the module that does the work, and prints its outcome. Heavy imports
(aiohttp, kafka-python, httpx, rich) stay inside the handlers so ``rekap booth
status`` starts fast. Booth and channel defaults (``REKAP_BOOTH_ID``,
``REKAP_BOOTH_URL``, ``REKAP_BOOTH_TOKEN``, ``REKAP_CHANNEL_TOKEN``) are fields of
Settings; an option given on the command line wins.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime
from pathlib import Path

from rekap.errors import ConfigError
from rekap.settings import Settings
from rekap.tls import client_context, local_url


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="serve the booth/channel ingest HTTP API (POST /v1/sales)")
    p.add_argument("--ack-timeout", type=float, default=10.0,
                   help="seconds to wait for Kafka's acknowledgement before answering 503 (default 10)")
    p.add_argument("--processes", type=int, default=1,
                   help="processes sharing the port (SO_REUSEPORT), each with its own producer; "
                        "rate limits are then per process (default 1)")
    p.set_defaults(handler=_ingest)

    booth = sub.add_parser("booth", help="offline-first booth client: record, sync, status")
    bsub = booth.add_subparsers(dest="booth_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--booth-id", default=None, help="this booth's id (env REKAP_BOOTH_ID)")
    common.add_argument("--outbox", type=Path, default=None,
                        help="SQLite outbox (default: <runtime_dir>/booth/<booth-id>.sqlite3)")
    r = bsub.add_parser("record", parents=[common], help="record one sale in the local outbox")
    r.add_argument("--ikm", required=True, help="IKM id, e.g. lampung-ethnica")
    r.add_argument("--amount", required=True, type=_rupiah, help="whole rupiah, e.g. 125000")
    r.add_argument("--qty", type=int, default=1, help="units sold (default 1)")
    r.add_argument("--sku", default=None)
    r.add_argument("--channel", default="offline", help="default offline")
    r.add_argument("--event", default=None, help="event id (default: the booth's event)")
    r.add_argument("--refund-of", default=None, help="record a refund of this sale_id")
    r.add_argument("--at", default=None,
                   help="occurred_at (RFC 3339, e.g. 2022-06-01T13:45:00+07:00); default now")
    r.set_defaults(handler=_booth_record)
    s = bsub.add_parser("sync", parents=[common], help="send pending sales to ingest")
    s.add_argument("--url", default=None, help="ingest base URL (env REKAP_BOOTH_URL)")
    s.add_argument("--token", default=None, help="booth token (env REKAP_BOOTH_TOKEN)")
    s.add_argument("--batch", type=int, default=100, help="sales per request (default 100)")
    s.add_argument("--max-attempts", type=int, default=10,
                   help="consecutive failed requests before giving up (default 10)")
    s.add_argument("--deadline", type=float, default=None, help="stop after this many seconds")
    s.set_defaults(handler=_booth_sync)
    st = bsub.add_parser("status", parents=[common],
                         help="pending/sent/rejected counts and net rupiah (refunds subtract)")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.set_defaults(handler=_booth_status)

    imp = sub.add_parser("import", help="import a channel's export file")
    isub = imp.add_subparsers(dest="import_command", required=True)
    vx = isub.add_parser("virtual-expo", help="import a Telkom virtual-expo transaction CSV")
    vx.add_argument("file", type=Path)
    vx.add_argument("--via", choices=("kafka", "ingest"), default="kafka",
                    help="straight to the sales topic (default) or through ingest")
    vx.add_argument("--url", default=None, help="ingest base URL (default http(s)://host:ingest_port)")
    vx.add_argument("--token", default=None, help="virtual_expo channel token (env REKAP_CHANNEL_TOKEN)")
    vx.add_argument("--dry-run", action="store_true", help="map and validate only; print the sales")
    vx.set_defaults(handler=_import_virtual_expo)

    sim = sub.add_parser("simulate", help="replay the Lagawi Fest 2022 programme (seeded)")
    sim.add_argument("--seed", type=int, default=2022)
    sim.add_argument("--scale", type=float, default=1.0,
                     help="fraction of the number of sales (totals stay exact); default 1")
    sim.add_argument("--resend-rate", type=float, default=0.02, help="same sale sent again")
    sim.add_argument("--refund-rate", type=float, default=0.03)
    sim.add_argument("--bad-rate", type=float, default=0.005, help="records the worker must reject")
    pace = sim.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=_positive, default=None, help="records per second")
    pace.add_argument("--speedup", type=_positive, default=None,
                      help="replay the programme's clock X times faster (86400: a day per second)")
    sim.add_argument("--via", choices=("kafka", "ingest"), default="kafka")
    sim.add_argument("--url", default=None, help="ingest base URL for --via ingest")
    sim.add_argument("--tokens", type=Path, default=None,
                     help="plaintext demo tokens (default <runtime_dir>/demo-tokens.secret.json)")
    sim.add_argument("--truth", type=Path, default=None,
                     help="ground-truth JSON (default <runtime_dir>/simulate/groundtruth-<seed>.json)")
    sim.add_argument("--dump", type=Path, default=None, help="also write the stream as JSON lines")
    sim.add_argument("--dry-run", action="store_true", help="generate and write the truth, send nothing")
    sim.add_argument("--no-progress", action="store_true")
    sim.add_argument("--issue-demo-tokens", action="store_true",
                     help="make tokens for every booth and channel in the runtime dir, then exit")
    sim.set_defaults(handler=_simulate)

    tok = sub.add_parser("tokens", help="booth and channel tokens (only their hashes are stored)")
    tsub = tok.add_subparsers(dest="tokens_command", required=True)
    t = tsub.add_parser("issue",
                        help="print a new token for a booth or channel and store only its hash")
    t.add_argument("name", help="a booth id, or a channel (marketplace, website, virtual_expo, "
                                "or <channel>:<integrator>)")
    t.add_argument("--tokens-file", type=Path, default=None,
                   help="token-hash file to update (default: REKAP_BOOTH_TOKENS_PATH)")
    t.add_argument("--expires", default=None, metavar="ISO8601",
                   help="when the token stops working, with an offset "
                        "(2022-06-06T22:00:00+07:00); default never")
    t.set_defaults(handler=_tokens_issue)

    rsub = _registry_subcommands(sub)
    it = rsub.add_parser(
        "issue-token", help="a new token for a booth, with a one-time pairing link and QR code "
                            "for the booth app (channels: `rekap tokens issue`)")
    it.add_argument("name", help="a booth id of the registry")
    it.add_argument("--tokens-file", type=Path, default=None,
                    help="token-hash file to update (default: REKAP_BOOTH_TOKENS_PATH)")
    expiry = it.add_mutually_exclusive_group()
    expiry.add_argument("--expires", default=None, metavar="ISO8601",
                        help="when the token stops working, with an offset; default never")
    expiry.add_argument("--ttl-days", type=_positive, default=None, metavar="N",
                        help="the token stops working N days from now")
    it.add_argument("--pair-ttl-minutes", type=_positive, default=15.0,
                    help="minutes the pairing link works (default 15; single use)")
    it.add_argument("--qr-png", type=Path, default=None, metavar="PATH",
                    help="also write the pairing link's QR code as a PNG")
    it.add_argument("--public-url", default=None,
                    help="ingest as the tablets reach it (env REKAP_PUBLIC_URL; default "
                         "http(s)://REKAP_HOST:REKAP_INGEST_PORT)")
    it.set_defaults(handler=_registry_issue_token)


def _registry_subcommands(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The subcommands of ``rekap registry``: the kernel owns the group (``check``), and the
    kernel may not import producers, so ``issue-token`` joins the group from here."""
    parent = sub.choices.get("registry")
    if parent is None:
        parent = sub.add_parser("registry", help="the registry: check it, issue booth tokens")
        return parent.add_subparsers(dest="registry_command", required=True)
    for action in parent._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parent.add_subparsers(dest="registry_command", required=True)


def _rupiah(text: str) -> int:
    cleaned = text.strip().removeprefix("Rp").replace(".", "")
    if not cleaned.isdigit() or int(cleaned) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole rupiah amount")
    return int(cleaned)


def _positive(text: str) -> float:
    """A pacing knob (``--rate``, ``--speedup``): a finite number above zero.

    Zero or a negative number would silently mean "no pacing"; leave the flag out for that.
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number (leave the flag out "
                                         "to send as fast as possible)")
    return value


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from producers.ingest.app import run

    if settings.booth_tokens_path is None:
        print("rekap ingest: warning: REKAP_BOOTH_TOKENS_PATH is not set, every request gets 401",
              file=sys.stderr)
    if args.processes < 1:
        raise ConfigError("--processes must be at least 1")
    run(settings, ack_timeout_s=args.ack_timeout, processes=args.processes)
    return 0


# -- booth ----------------------------------------------------------------------------------

def _booth_id(args: argparse.Namespace, settings: Settings) -> str:
    booth_id: str = args.booth_id or settings.booth_id
    if not booth_id:
        raise ConfigError("give --booth-id or set REKAP_BOOTH_ID")
    return booth_id


def _outbox_path(args: argparse.Namespace, settings: Settings, booth_id: str) -> Path:
    from producers.booth.outbox import default_path

    return args.outbox or default_path(settings.runtime_dir, booth_id)


def _booth_record(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime

    from producers.booth.client import record
    from rekap.contract import Rejection
    from rekap.money import format_idr
    from rekap.registry import load_registry

    booth_id = _booth_id(args, settings)
    registry = load_registry(settings.registry_path)
    try:
        at = datetime.fromisoformat(args.at) if args.at else None
    except ValueError as exc:
        raise ConfigError(f"--at {args.at!r} is not an RFC 3339 time: {exc}") from exc
    if at is not None and at.tzinfo is None:
        raise ConfigError("--at needs an offset, e.g. 2022-06-01T13:45:00+07:00")
    sale = record(registry, _outbox_path(args, settings, booth_id), booth_id, ikm=args.ikm,
                  amount=args.amount, quantity=args.qty, sku=args.sku, channel=args.channel,
                  event=args.event, refund_of=args.refund_of, now=at)
    if isinstance(sale, Rejection):
        print(f"rekap booth record: penjualan ditolak ({sale.reason}): {sale.detail}", file=sys.stderr)
        return 1
    print(f"tercatat {sale['sale_id']} {args.ikm} {format_idr(args.amount)} x{args.qty}")
    return 0


def _booth_sync(args: argparse.Namespace, settings: Settings) -> int:
    from producers.booth.client import AuthError, sync
    from producers.booth.outbox import Outbox

    booth_id = _booth_id(args, settings)
    url = args.url or settings.booth_url or local_url(settings, settings.ingest_port)
    token = args.token or settings.booth_token
    if not token:
        raise ConfigError("give --token or set REKAP_BOOTH_TOKEN")
    with Outbox(_outbox_path(args, settings, booth_id), create=False) as outbox:
        try:
            report = sync(outbox, url, token, batch=args.batch, max_attempts=args.max_attempts,
                          deadline_s=args.deadline, tls=client_context(settings))
        except AuthError as exc:
            raise ConfigError(str(exc)) from exc
    print(f"terkirim {report.sent}, ditolak {report.rejected}, tertunda {report.pending_left} "
          f"({report.requests} permintaan, {report.retries} percobaan ulang)")
    return 0 if report.pending_left == 0 else 3


def _booth_status(args: argparse.Namespace, settings: Settings) -> int:
    from producers.booth.outbox import Outbox
    from producers.booth.status import print_status, status_json

    booth_id = _booth_id(args, settings)
    with Outbox(_outbox_path(args, settings, booth_id), create=False) as outbox:
        if args.json:
            print(json.dumps(status_json(booth_id, outbox)))
        else:
            print_status(booth_id, outbox)
    return 0


# -- import ---------------------------------------------------------------------------------

def _import_virtual_expo(args: argparse.Namespace, settings: Settings) -> int:
    from producers.importer import import_via_ingest, import_via_kafka, read_export

    body = read_export(args.file)
    if args.via == "kafka" or args.dry_run:
        return import_via_kafka(settings, args.file, body, dry_run=args.dry_run)
    token = args.token or settings.channel_token
    if not token:
        raise ConfigError("give --token or set REKAP_CHANNEL_TOKEN for --via ingest")
    return import_via_ingest(settings, args.file, body, token=token,
                             url=args.url or local_url(settings, settings.ingest_port))


# -- simulate -------------------------------------------------------------------------------

def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from producers.simulator.run import describe, replay, write_truth
    from producers.simulator.scenario import Options, generate
    from producers.tokens import DEMO_SECRETS, issue_demo_tokens, load_demo_secrets
    from rekap.registry import load_registry

    registry = load_registry(settings.registry_path)
    if args.issue_demo_tokens:
        hashes, secrets = issue_demo_tokens(registry, settings.runtime_dir)
        print(f"token hashes: {hashes}\n  (start ingest with REKAP_BOOTH_TOKENS_PATH={hashes})\n"
              f"plaintext tokens (0600, never commit): {secrets}")
        return 0
    try:
        opts = Options(seed=args.seed, scale=args.scale, resend_rate=args.resend_rate,
                       refund_rate=args.refund_rate, bad_rate=args.bad_rate)
        opts.check()
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    started = time.perf_counter()
    scenario = generate(registry, opts)
    generated_s = time.perf_counter() - started
    truth_path = write_truth(scenario, args.truth or settings.runtime_dir / "simulate"
                             / f"groundtruth-{args.seed}.json")
    if args.dump:
        args.dump.parent.mkdir(parents=True, exist_ok=True)
        args.dump.write_bytes(scenario.jsonl())
    print(describe(scenario, truth_path, generated_s))
    if args.dry_run:
        return 0
    tokens = (load_demo_secrets(args.tokens or settings.runtime_dir / DEMO_SECRETS)
              if args.via == "ingest" else {})
    report = replay(settings, scenario, via=args.via, tokens=tokens, rate=args.rate,
                    speedup=args.speedup, progress=not args.no_progress,
                    url=args.url or local_url(settings, settings.ingest_port))
    print(json.dumps({"via": args.via, **report.to_json()}))
    return 0


# -- tokens ---------------------------------------------------------------------------------

def _tokens_issue(args: argparse.Namespace, settings: Settings) -> int:
    """Print a fresh token once; only its SHA-256 is written to the token file."""
    from producers.tokens import issue_token
    from rekap.registry import load_registry

    path = args.tokens_file or settings.booth_tokens_path
    if path is None:
        raise ConfigError("give --tokens-file or set REKAP_BOOTH_TOKENS_PATH")
    print(issue_token(path, args.name, load_registry(settings.registry_path),
                      expires=_expiry(args.expires)))
    return 0


def _expiry(text: str | None) -> datetime | None:
    """``--expires``: an ISO 8601 date-time with an offset (``Z`` too), or None."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"--expires {text!r} is not an ISO 8601 date-time: {exc}") from exc
    if moment.tzinfo is None:
        raise ConfigError(f"--expires {text!r} needs an offset, e.g. 2022-06-06T22:00:00+07:00")
    return moment


# -- registry -------------------------------------------------------------------------------

def _registry_issue_token(args: argparse.Namespace, settings: Settings) -> int:
    """Mint a booth's token and a one-time pairing link for it, shown as text and QR code."""
    from datetime import UTC, timedelta

    from producers import pairing
    from producers.tokens import issue_token
    from rekap.registry import load_registry

    path = args.tokens_file or settings.booth_tokens_path
    if path is None:
        raise ConfigError("give --tokens-file or set REKAP_BOOTH_TOKENS_PATH")
    now = datetime.now(UTC)
    expires = (now + timedelta(days=args.ttl_days) if args.ttl_days is not None
               else _expiry(args.expires))
    if expires is not None and expires <= now:
        raise ConfigError(f"the token would expire at {expires.isoformat()}, which is not in the future")
    registry = load_registry(settings.registry_path)
    if args.name not in registry.booths:
        raise ConfigError(f"{args.name!r} is not a booth of the registry "
                          f"({settings.registry_path}); a channel's token comes from "
                          f"`rekap tokens issue {args.name}`")
    token = issue_token(path, args.name, registry, expires=expires)
    until = f" (berlaku sampai {expires.isoformat(timespec='minutes')})" if expires else ""
    print(f"token {args.name}{until}, ditampilkan sekali, hanya hash-nya yang disimpan:\n{token}")
    pair_ttl = timedelta(minutes=args.pair_ttl_minutes)
    if expires is not None:
        pair_ttl = min(pair_ttl, expires - now)
    code = pairing.create_code(pairing.store_path(path), args.name, token, ttl=pair_ttl, now=now)
    public = (args.public_url or settings.public_url or local_url(settings, settings.ingest_port))
    link = pairing.pairing_link(public, code)
    print(f"\ntautan pemasangan aplikasi booth (sekali pakai, sampai "
          f"{(now + pair_ttl).isoformat(timespec='minutes')}):\n{link}\n")
    _print_qr(link, args.qr_png)
    host = public.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if host in {"127.0.0.1", "localhost", "0.0.0.0", "[::1]", "::"}:  # noqa: S104 - a comparison
        print(f"rekap registry: warning: the link points at {host}, which a tablet cannot reach; "
              "set REKAP_PUBLIC_URL or --public-url to ingest's address on the venue network",
              file=sys.stderr)
    return 0


def _print_qr(link: str, png: Path | None) -> None:
    import qrcode
    import qrcode.image.pure

    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    qr.add_data(link)
    qr.make(fit=True)
    # Inverted: on the usual dark terminal the blocks drawn are the light modules.
    qr.print_ascii(out=sys.stdout, invert=True)
    if png is not None:
        png.parent.mkdir(parents=True, exist_ok=True)
        qr.make_image(image_factory=qrcode.image.pure.PyPNGImage).save(str(png))
        print(f"QR code (PNG): {png}")
