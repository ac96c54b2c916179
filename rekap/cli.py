"""The ``rekap`` console command: one subcommand per job.

Each subcommand lives beside the code it runs, in a module that defines
``register(subparsers)`` and keeps heavy imports (Faust, Kafka clients) inside
its handler, so ``rekap booth status`` starts fast. A handler receives the
parsed arguments and the process's :class:`~rekap.settings.Settings` and
returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from rekap import __version__
from rekap.errors import RekapError
from rekap.settings import Settings

#: Modules that register subcommands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "rekap.commands",
    "streams.commands",
    "streams.web.commands",
    "producers.commands",
    "consumers.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rekap", description="rekap: exact sales tallies for IKM sales programmes.")
    parser.add_argument("--version", action="version", version=f"rekap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a stage without commands yet
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        logging.basicConfig(level=settings.log_level.upper() if settings.log_level != "warn"
                            else "WARNING",
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # httpx logs every request at INFO; rekap's commands report their own outcomes.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        return int(args.handler(args, settings) or 0)
    except RekapError as exc:
        print(f"rekap {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
