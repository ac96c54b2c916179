"""Subcommands of the producers: ``ingest``, ``booth``, ``import``, ``simulate``.

Heavy imports (aiohttp, kafka-python, httpx, rich) stay inside the handlers so
``rekap booth status`` starts fast. Booth settings come from options with
environment defaults (``REKAP_BOOTH_URL``, ``REKAP_BOOTH_TOKEN``, ``REKAP_BOOTH_ID``),
read here in the handler, never deeper.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rekap.errors import ConfigError
from rekap.settings import Settings

if TYPE_CHECKING:
    from producers.booth.outbox import Outbox


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="serve the booth/channel ingest HTTP API (POST /v1/sales)")
    p.add_argument("--ack-timeout", type=float, default=10.0,
                   help="seconds to wait for Kafka's acknowledgement before answering 503 (default 10)")
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
    vx.add_argument("--url", default=None, help="ingest base URL (default http://host:ingest_port)")
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
    run(settings, ack_timeout_s=args.ack_timeout)
    return 0


# -- booth ----------------------------------------------------------------------------------

def _booth_id(args: argparse.Namespace) -> str:
    booth_id = args.booth_id or os.environ.get("REKAP_BOOTH_ID")
    if not booth_id:
        raise ConfigError("give --booth-id or set REKAP_BOOTH_ID")
    return booth_id


def _outbox(args: argparse.Namespace, settings: Settings, booth_id: str, *, create: bool) -> Outbox:
    """The booth's outbox; only ``record`` (``create=True``) may make a new one."""
    from producers.booth.outbox import Outbox

    return Outbox(args.outbox or settings.runtime_dir / "booth" / f"{booth_id}.sqlite3", create=create)


def _booth_record(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime

    from producers.booth.client import capture
    from rekap.contract import Rejection, validate_sale
    from rekap.money import format_idr
    from rekap.registry import load_registry

    booth_id = _booth_id(args)
    registry = load_registry(settings.registry_path)
    try:
        at = datetime.fromisoformat(args.at) if args.at else None
    except ValueError as exc:
        raise ConfigError(f"--at {args.at!r} is not an RFC 3339 time: {exc}") from exc
    if at is not None and at.tzinfo is None:
        raise ConfigError("--at needs an offset, e.g. 2022-06-01T13:45:00+07:00")
    sale = capture(registry, booth_id, ikm=args.ikm, amount=args.amount, quantity=args.qty,
                   sku=args.sku, channel=args.channel, event=args.event, refund_of=args.refund_of,
                   now=at)
    checked = validate_sale(dict(sale), registry)
    if isinstance(checked, Rejection):
        print(f"rekap booth record: penjualan ditolak ({checked.reason}): {checked.detail}",
              file=sys.stderr)
        return 1
    with _outbox(args, settings, booth_id, create=True) as outbox:
        outbox.record(sale)
    print(f"tercatat {sale['sale_id']} {args.ikm} {format_idr(args.amount)} x{args.qty}")
    return 0


def _booth_sync(args: argparse.Namespace, settings: Settings) -> int:
    from producers.booth.client import AuthError, sync

    booth_id = _booth_id(args)
    url = args.url or os.environ.get("REKAP_BOOTH_URL") or f"http://{settings.host}:{settings.ingest_port}"
    token = args.token or os.environ.get("REKAP_BOOTH_TOKEN")
    if not token:
        raise ConfigError("give --token or set REKAP_BOOTH_TOKEN")
    with _outbox(args, settings, booth_id, create=False) as outbox:
        try:
            report = sync(outbox, url, token, batch=args.batch, max_attempts=args.max_attempts,
                          deadline_s=args.deadline)
        except AuthError as exc:
            raise ConfigError(str(exc)) from exc
    print(f"terkirim {report.sent}, ditolak {report.rejected}, tertunda {report.pending_left} "
          f"({report.requests} permintaan, {report.retries} percobaan ulang)")
    return 0 if report.pending_left == 0 else 3


def _booth_status(args: argparse.Namespace, settings: Settings) -> int:
    from rekap.money import format_idr

    booth_id = _booth_id(args)
    with _outbox(args, settings, booth_id, create=False) as outbox:
        counts, refunds, amounts = outbox.counts(), outbox.refunds(), outbox.amounts()
        rejected = outbox.rejected(10)
    if args.json:  # amounts_idr: net rupiah, refunds subtracted; refunds: how many of counts
        print(json.dumps({"booth_id": booth_id, "counts": counts, "refunds": refunds,
                          "amounts_idr": amounts}))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Outbox booth {booth_id}")
    table.add_column("Status")
    table.add_column("Jumlah", justify="right")
    table.add_column("Retur", justify="right")
    table.add_column("Nilai bersih", justify="right")
    for state, label in (("pending", "tertunda"), ("sent", "terkirim"), ("rejected", "ditolak")):
        table.add_row(label, str(counts[state]), str(refunds[state]), format_idr(amounts[state]))
    console = Console()
    console.print(table)
    for sale_id, reason, detail in rejected:
        console.print(f"[red]ditolak[/red] {sale_id}: {reason} — {detail}")
    return 0


# -- import ---------------------------------------------------------------------------------

def _import_virtual_expo(args: argparse.Namespace, settings: Settings) -> int:
    """``--via ingest`` reports ingest's own per-row answers; ``--dry-run`` and ``--via kafka``
    map and validate locally (nothing else would judge the rows)."""
    from producers.adapters.virtual_expo import map_csv
    from rekap.contract import Rejection, Sale, validate_sale
    from rekap.registry import load_registry

    try:
        body = args.file.read_bytes()
        text = body.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {args.file}: {exc}") from exc
    if args.via == "ingest" and not args.dry_run:
        return _import_via_ingest(args, settings, body)
    registry = load_registry(settings.registry_path)
    items = map_csv(text, registry)
    sales: list[Sale] = []
    bad = 0
    for item in items:
        if item.result is None:
            continue
        result: Sale | Rejection = (validate_sale(item.result, registry)
                                    if isinstance(item.result, dict) else item.result)
        if isinstance(result, Rejection):
            bad += 1
            print(f"ditolak {item.ref}: {result.reason} — {result.detail}", file=sys.stderr)
        else:
            sales.append(result)
    ignored = sum(1 for i in items if i.ignored)
    if args.dry_run:
        for s in sales:
            print(s.to_bytes().decode())
    elif sales:
        from producers.kafka import Ack, SaleProducer

        with SaleProducer(settings, client_id=f"{settings.app_id}-import") as producer:
            results = producer.send_all([(s.ikm_id.encode(), s.to_bytes()) for s in sales])
        failed = [r for r in results if not isinstance(r, Ack)]
        if failed:
            print(f"{len(failed)} penjualan tidak diterima Kafka; ulangi impor (aman: sale_id sama)",
                  file=sys.stderr)
            return 3
    print(f"{args.file}: {len(sales)} diterima, {bad} ditolak, {ignored} diabaikan")
    return 0 if bad == 0 else 1


#: Re-importing is always safe: the same file maps to the same sale_ids.
_RETRY_LATER = "ulangi impor nanti (aman: sale_id sama)"
#: Printed when ingest could not get rows acknowledged by Kafka (503).
_RETRY_IMPORT = f"ingest: Kafka tidak tersedia; {_RETRY_LATER}"


def _import_via_ingest(args: argparse.Namespace, settings: Settings, body: bytes) -> int:
    """POST the file to ingest and report what ingest decided for each row.

    Exit 0: every row accepted or ignored; 1: ingest rejected a row (one stderr line each,
    fix and re-import); 3: a row was not acknowledged by Kafka (re-import later).
    """
    import httpx

    limit = settings.max_body_bytes
    if len(body) > limit:
        raise ConfigError(f"{args.file} is {len(body)} bytes, more than ingest takes in one request "
                          f"({limit}, REKAP_MAX_BODY_BYTES): import it with --via kafka, "
                          "or split it into smaller files")
    url = args.url or f"http://{settings.host}:{settings.ingest_port}"
    token = args.token or os.environ.get("REKAP_CHANNEL_TOKEN")
    if not token:
        raise ConfigError("give --token or set REKAP_CHANNEL_TOKEN for --via ingest")
    try:
        resp = httpx.post(f"{url.rstrip('/')}/v1/channels/virtual-expo/import", content=body,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
                          timeout=60)
    except httpx.TransportError as exc:
        print(f"ingest {url} tidak terjangkau ({exc}); {_RETRY_LATER}", file=sys.stderr)
        return 3
    results = _row_results(resp)
    if results is None:  # a whole-request answer: 401, 403, 413, a proxy's 503 ...
        if resp.status_code == 503:
            print(_RETRY_IMPORT, file=sys.stderr)
            return 3
        raise ConfigError(f"ingest answered {resp.status_code}: {resp.text[:300]}")
    tally = {"accepted": 0, "rejected": 0, "ignored": 0, "unavailable": 0}
    for row in results:
        tally[row["status"]] += 1
        if row["status"] == "rejected":
            error = row.get("error") or {}
            ref = row.get("ref") or row.get("sale_id") or f"item {row.get('index')}"
            print(f"ditolak {ref}: {error.get('reason')} — {error.get('detail')}", file=sys.stderr)
    summary = (f"{args.file}: {tally['accepted']} diterima, {tally['rejected']} ditolak, "
               f"{tally['ignored']} diabaikan")
    print(summary + (f", {tally['unavailable']} belum diterima Kafka" if tally["unavailable"] else ""))
    if tally["unavailable"]:
        print(_RETRY_IMPORT, file=sys.stderr)
        return 3
    return 1 if tally["rejected"] else 0


def _row_results(resp: Any) -> list[dict[str, Any]] | None:
    """Ingest's per-row ``results``, or None when the answer is not a per-row one."""
    try:
        doc = resp.json()
    except ValueError:
        return None
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, list) or not all(
            isinstance(r, dict) and r.get("status") in ("accepted", "rejected", "ignored", "unavailable")
            for r in results):
        return None
    return results


# -- simulate -------------------------------------------------------------------------------

def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from producers.simulator.run import run_ingest, run_kafka, write_truth
    from producers.simulator.scenario import Options, generate
    from producers.tokens import DEMO_SECRETS, issue_demo_tokens, load_demo_secrets
    from rekap.money import format_idr, format_idr_short
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
    gen_s = time.perf_counter() - started
    truth_path = args.truth or settings.runtime_dir / "simulate" / f"groundtruth-{args.seed}.json"
    write_truth(scenario, truth_path)
    if args.dump:
        args.dump.parent.mkdir(parents=True, exist_ok=True)
        args.dump.write_bytes(scenario.jsonl())
    ev = scenario.truth["events"]
    rec = scenario.truth["records"]
    print(f"skenario seed {args.seed} skala {args.scale}: {len(scenario.emissions)} rekaman "
          f"({rec['applied']} penjualan/retur, {rec['duplicates']} kirim ulang, "
          f"{rec['rejected_total']} rusak) dibuat dalam {gen_s:.2f} dtk")
    for event_id, totals in ev.items():
        print(f"  {event_id}: {format_idr(totals['amount_idr'])} ({format_idr_short(totals['amount_idr'])})")
    print(f"  kebenaran dasar: {truth_path}")
    if args.dry_run:
        return 0

    tokens: dict[str, dict[str, str]] = {}
    url = args.url or f"http://{settings.host}:{settings.ingest_port}"
    if args.via == "ingest":
        secrets = args.tokens or settings.runtime_dir / DEMO_SECRETS
        if not secrets.exists():
            raise ConfigError(f"no demo tokens at {secrets}: run `rekap simulate --issue-demo-tokens` "
                              "and start ingest with the token file it prints")
        tokens = load_demo_secrets(secrets)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]simulasi"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                  disable=args.no_progress) as progress:
        task = progress.add_task("send", total=len(scenario.emissions), rate="")
        t0 = time.monotonic()
        count = [0]

        def tick(n: int) -> None:
            count[0] += n
            rate = count[0] / max(1e-6, time.monotonic() - t0)
            progress.update(task, advance=n, rate=f"{rate:,.0f}/dtk")

        if args.via == "kafka":
            report = run_kafka(settings, scenario, rate=args.rate, speedup=args.speedup, on_progress=tick)
        else:
            report = run_ingest(settings, scenario, url, tokens, rate=args.rate, speedup=args.speedup,
                                on_progress=tick)
    print(json.dumps({"via": args.via, **report.to_json()}))
    return 0
