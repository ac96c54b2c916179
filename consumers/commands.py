"""Downstream commands: ``rekap reconcile``, ``rekap rebuild``, ``rekap totals-tail``."""

from __future__ import annotations

import argparse

from rekap.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconcile", help="prove that the Redis totals match the sales topic")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the worker to apply what was read (default 30)")
    p.set_defaults(handler=_reconcile)

    p = sub.add_parser("rebuild", help="wipe Redis and rebuild the totals from the sales topic")
    p.add_argument("--apply", action="store_true",
                   help="apply the whole topic here instead of leaving it to the worker")
    p.set_defaults(handler=_rebuild)

    p = sub.add_parser("totals-tail", help="print totals updates (highest version per key)")
    p.add_argument("--until-end", action="store_true",
                   help="stop at the end of the topics instead of following them")
    p.set_defaults(handler=_totals_tail)


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.reconcile import format_report, run

    report = run(settings, timeout_s=args.timeout)
    print(format_report(report))
    return 0 if report.ok else 1


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.rebuild import rebuild

    result = rebuild(settings, apply=args.apply)
    print(f"rebuild: removed {result.keys_removed} keys under {settings.redis_prefix}:* "
          f"(kept {result.versions_kept} totals versions), group {settings.app_id} reset to the "
          "beginning of " + settings.topic_sales)
    if result.applied_records is None:
        print("Jalankan worker sekarang (`rekap worker`): ia akan membaca ulang seluruh topik "
              "penjualan. / Start the worker now: it replays the whole sales topic.")
    else:
        print(f"rebuild: applied {result.applied_records} records; offsets committed at the end. "
              "Run `rekap reconcile` to check.")
    return 0


def _totals_tail(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.totals import follow
    from rekap.money import format_idr

    def show(key: str, doc: dict, accepted: bool) -> None:
        mark = "" if accepted else "  (stale, dropped)"
        print(f"{doc.get('scope', '?'):5} {key:50} v{doc.get('version')} "
              f"{format_idr(int(doc.get('amount_idr', 0)))} count={doc.get('count')}{mark}",
              flush=True)

    follow(settings, show, until_end=args.until_end)
    return 0
