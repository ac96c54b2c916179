"""Downstream commands: ``rekap reconcile``, ``rekap rebuild``, ``rekap totals-tail``,
``rekap milestones``, ``rekap shortlist``, ``rekap report``."""

from __future__ import annotations

import argparse
from pathlib import Path

from rekap.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconcile", help="prove that the Redis totals match the sales topic")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the worker to apply what was read (default 30)")
    p.set_defaults(handler=_reconcile)

    p = sub.add_parser("rebuild", help="rebuild the totals from the sales topic into a new key "
                       "generation and switch to it, while the worker keeps running")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar or progress lines on stderr (for scripts)")
    p.set_defaults(handler=_rebuild)

    p = sub.add_parser("totals-tail", help="print totals updates (highest version per key)")
    p.add_argument("--until-end", action="store_true",
                   help="stop at the end of the topics instead of following them")
    p.set_defaults(handler=_totals_tail)

    p = sub.add_parser("milestones", help="announce totals crossing milestones (Rp10 juta, ...), "
                                          "once each, to the milestones topic, log and webhook")
    p.add_argument("--group", default=None,
                   help="consumer group of the totals subscription (default <REKAP_APP_ID>-milestones)")
    p.add_argument("--from-beginning", action="store_true",
                   help="re-read the totals topics whole (announces nothing already announced)")
    p.add_argument("--until-end", action="store_true",
                   help="stop once caught up with the totals topics instead of following them")
    p.set_defaults(handler=_milestones)

    p = sub.add_parser("shortlist", help="rank an event's IKM by weighted criteria (champion "
                                         "shortlist): table and CSV")
    p.add_argument("event", help="event id, e.g. lagawi-2022")
    p.add_argument("--weights", default=None, metavar="K=V,...",
                   help="override default weights, e.g. net=0.5,growth=0 (criteria: net, growth, "
                        "channel_mix, online_share, consistency, refund_rate; docs/shortlist.md)")
    p.add_argument("--periods", default=None, metavar="A..B,C..D",
                   help="the two periods of growth, YYYY-MM-DD..YYYY-MM-DD,... "
                        "(default: first and second half of the event's days)")
    p.add_argument("--csv", type=Path, default=None,
                   help="CSV path (default REKAP_RUNTIME_DIR/laporan/shortlist-EVENT.csv)")
    p.add_argument("--top", type=int, default=None, help="rows printed (the CSV has all)")
    p.set_defaults(handler=_shortlist)

    p = sub.add_parser("report", help="the programme report (PDF + XLSX), written only if "
                                      "reconcile finds Redis equal to the ledger")
    p.add_argument("event", help="event id, e.g. lagawi-2022")
    p.add_argument("--out", type=Path, default=None,
                   help="directory of laporan-EVENT.pdf/.xlsx (default REKAP_RUNTIME_DIR/laporan)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds reconcile waits for the worker to apply what it read (default 30)")
    p.set_defaults(handler=_report)


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.reconcile import format_report, run

    report = run(settings, timeout_s=args.timeout)
    print(format_report(report))
    return 0 if report.ok else 1


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.rebuild import rebuild

    try:
        result = rebuild(settings, quiet=args.quiet)
    except KeyboardInterrupt:
        print("rebuild: dihentikan; jalankan lagi untuk melanjutkan. / interrupted; run it again "
              "to resume.")
        return 130
    print(f"rebuild: generation {result.old_generation} -> {result.generation}: applied "
          f"{result.applied_records} records, dropped {result.keys_removed} old keys. Run "
          "`rekap reconcile` to check.")
    return 0


def _totals_tail(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from consumers.subscriber import Subscriber, TotalsUpdate
    from rekap.money import format_idr

    def show(update: TotalsUpdate) -> None:
        print(f"{update.scope:5} {update.key:50} v{update.version} "
              f"{format_idr(update.amount_idr)} count={update.count}", flush=True)

    async def tail() -> None:
        async with Subscriber(settings, until_end=args.until_end) as totals:
            stats = await totals.run(show)
        skipped = sum(stats.skipped.values())
        print(f"totals-tail: {stats.accepted} taken, {stats.stale} stale dropped, "
              f"{skipped} skipped {dict(stats.skipped) or ''}".rstrip(), flush=True)

    asyncio.run(tail())
    return 0


def _milestones(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from consumers.milestones import Notifier

    notifier = Notifier(settings, group_id=args.group, from_beginning=args.from_beginning,
                        until_end=args.until_end)
    stats = asyncio.run(notifier.run(handle_signals=True))
    print(f"milestones: {stats.announced} announced, {stats.known} found already announced, "
          f"webhook {stats.webhook_delivered} delivered / {stats.webhook_failed} failed", flush=True)
    return 0


def _shortlist(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.shortlist import command

    command(settings, args.event, weights=args.weights, periods=args.periods, csv_path=args.csv,
            top=args.top)
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.report import run

    written = run(settings, args.event, args.out, timeout_s=args.timeout)
    print(written.check.sentence(written.timezone))
    print(f"PDF:  {written.pdf}\nXLSX: {written.xlsx}")
    return 0
