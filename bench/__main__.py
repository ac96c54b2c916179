"""``make bench``: the whole benchmark in one run, one markdown table and its JSON.

Usage::

    .venv/bin/python -m bench [--quick] [--records 100000] [--runs 3] [--partitions 6]
                              [--ikm 30] [--scale-ikm 10000,100000] [--scale-workers 2]
                              [--loads 1000,5000] [--seconds 12] [--skip latency,memory]
                              [--budget 1500] [--out-dir .rekap/bench]

On one broker and one Redis (the local stack, or ``REKAP_KAFKA_BOOTSTRAP`` /
``REKAP_REDIS_URL``), in this order:

1. throughput (:mod:`bench.throughput`): (a) raw aiokafka + JSON, (b) naive Faust,
   (c) stock Faust ``take_events``, (d) rekap at ``--ikm`` IKM, then rekap alone at
   each ``--scale-ikm`` and with each ``--scale-workers`` worker count; every rekap
   run verified exact; contestants alternate, ``--runs`` rounds, medians;
2. latency (:mod:`bench.latency`): send → visible in Redis at each ``--loads``
   offered rate for ``--seconds`` each, ``--runs`` runs, medians of the percentiles;
3. Redis memory per sale and per IKM-event and the top-10 leaderboard read p99 at
   each IKM scale (:func:`bench.memory.measure`: ``--memory-sales`` records applied
   in-process through the worker's planner and script, verified, then measured).

Then it prints the markdown and writes ``bench-<UTC>.md`` and ``.json`` (every
sample, the git describe, the settings) into ``--out-dir``. ``--quick`` is a
smoke run of every step (2,000 records, one run, 3 s per load, 100 reads) to check the
bench itself, not to quote.

It stops itself: each wait has a timeout, no new run starts once ``--budget``
seconds are spent, and a hard stop at the budget plus :data:`HARD_STOP_GRACE_S`
(or SIGTERM/SIGINT) unwinds everything, so every child process is stopped and
every topic and key prefix of the bench is deleted on the way out.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import latency, report, throughput
from bench.throughput import REPO, run_cli
from rekap.redisconn import connect_sync
from rekap.settings import Settings

#: What ``--quick`` changes (options given explicitly still win).
QUICK = {"records": 2000, "runs": 1, "seconds": 3.0, "memory_sales": 2000, "memory_reads": 100}
FULL = {"records": 100_000, "runs": 3, "seconds": 12.0, "memory_sales": 100_000,
        "memory_reads": 1000}
#: Figures of :func:`bench.memory.measure` printed as they come (all go to the JSON and table).
MEMORY_SHOWN = ("dedup_bytes_per_sale", "pair_bytes_per_pair", "leaderboard_p99_ms")
#: Seconds past ``--budget`` after which the run is cut wherever it is.
HARD_STOP_GRACE_S = 300


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def parse(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2000 records, 1 run, 3 s per load (not for quoting)")
    parser.add_argument("--records", type=int, default=None, help="records per run (100000)")
    parser.add_argument("--runs", type=int, default=None,
                        help="rounds of every contestant, and latency runs (3)")
    parser.add_argument("--partitions", type=int, default=6,
                        help="sales-topic partitions (6, the worker's default; even for 2 workers)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated streams (7)")
    parser.add_argument("--ikm", type=int, default=30,
                        help="IKM in the one event for the table and the latency (30)")
    parser.add_argument("--only", default=",".join(throughput.CONTESTANTS),
                        help="table contestants, a subset of " + ",".join(throughput.CONTESTANTS))
    parser.add_argument("--scale-ikm", type=_ints, default=(10_000, 100_000),
                        help="rekap alone also at these IKM counts (10000,100000; '' for none)")
    parser.add_argument("--scale-workers", type=_ints, default=(2,),
                        help="rekap alone also with these many workers in one group (2)")
    parser.add_argument("--loads", default="1000,5000", help="latency: offered loads, rec/s")
    parser.add_argument("--seconds", type=float, default=None, help="latency: seconds per load (12)")
    parser.add_argument("--memory-sales", type=int, default=None,
                        help="memory: records applied per IKM scale (100000)")
    parser.add_argument("--memory-reads", type=int, default=None,
                        help="memory: top-10 leaderboard reads per IKM scale (1000)")
    parser.add_argument("--skip", default="", help="steps to leave out: throughput,latency,memory")
    parser.add_argument("--budget", type=float, default=1500.0,
                        help="seconds after which no new run starts (1500)")
    parser.add_argument("--out-dir", type=Path, default=REPO / ".rekap" / "bench",
                        help="where bench-<UTC>.md/.json go (.rekap/bench)")
    args = parser.parse_args(argv)
    throughput.fill_sizes(args, FULL, QUICK)
    return parser, args


def memory_figures(settings: Settings, scales: list[int], args: argparse.Namespace
                   ) -> dict[str, Any]:
    """Redis memory per sale and per IKM-event, and the top-10 read p99, per IKM scale, from
    :func:`bench.memory.measure` (imported by name: the module is newer than this one)."""
    try:
        memory = importlib.import_module("bench.memory")
    except ModuleNotFoundError:
        return {"status": "bench/memory.py is not there", "rows": {}}
    sales, reads = args.memory_sales, args.memory_reads
    rows: dict[int, dict[str, float]] = {}
    for ikm in scales:
        rows[ikm] = dict(memory.measure(ikm=ikm, sales=sales, reads=reads,
                                        partitions=args.partitions, seed=args.seed,
                                        settings=settings))
        shown = {k: v for k, v in rows[ikm].items() if k in MEMORY_SHOWN}
        print(f"  memory at {ikm:,} IKM, {sales:,} records: "
              + "  ".join(f"{k} {v:,.2f}" for k, v in shown.items()), flush=True)
    return {"status": "measured", "sales": sales, "reads": reads, "rows": rows,
            "table": memory.table(list(rows.values()))}


def run(args: argparse.Namespace, kinds: list[str], base: Settings, started: float,
        workdir: Path) -> dict[str, Any]:
    """Every step not skipped; returns the report document."""
    skip = set(args.skip.split(","))
    deadline = started + args.budget
    contestants = throughput.lineup(kinds, args.ikm, 1, args.scale_ikm, args.scale_workers)
    wanted = {args.ikm} | {c.ikm for c in contestants}
    scales = {n: throughput.prepare_scale(workdir, n, args.records, args.seed) for n in sorted(wanted)}
    doc: dict[str, Any] = {"throughput": {}, "latency": {}, "memory": {"status": "skipped"}}
    client = connect_sync(base)
    try:
        if "throughput" not in skip:
            print(f"throughput: {len(contestants)} contestants x {args.runs} runs, "
                  f"{args.records:,} records each", flush=True)
            samples = throughput.run_all(contestants, base, scales, args.runs, workdir, client,
                                         deadline=deadline)
            doc["throughput"] = {"summary": throughput.summarise(samples),
                                 "samples": [asdict(s) for s in samples]}
        if "latency" not in skip:
            loads = latency.loads_of(args.loads)
            print(f"latency: {loads} rec/s for {args.seconds:g} s each, {args.runs} runs",
                  flush=True)
            lat = latency.run_all(base, workdir, scales[args.ikm], loads, args.seconds,
                                  args.runs, client, args.seed, deadline)
            doc["latency"] = {"summary": latency.summarise(lat),
                              "samples": [asdict(s) for s in lat]}
        if "memory" not in skip and time.monotonic() > deadline:
            doc["memory"] = {"status": "the time budget ran out before it"}
        elif "memory" not in skip:
            print("memory and leaderboard read:", flush=True)
            doc["memory"] = memory_figures(base, sorted(scales), args)
    finally:
        client.close()
    return doc


def main(argv: list[str] | None = None) -> int:
    parser, args = parse(argv)
    kinds = throughput.kinds(parser, args.only)
    base = Settings.from_env(sales_partitions=args.partitions)
    started = time.monotonic()
    throughput.bound("the bench", args.budget + HARD_STOP_GRACE_S)
    workdir, stamp = throughput.workspace()
    print(f"rekap bench{' (quick)' if args.quick else ''}: kafka {base.kafka_bootstrap}, "
          f"redis {base.redis_url_masked}, {args.partitions} partitions, budget {args.budget:g} s",
          flush=True)
    try:
        doc = run(args, kinds, base, started, workdir)
    finally:
        signal.alarm(0)
    shutil.rmtree(workdir, ignore_errors=True)  # kept when a step failed: its logs are there
    doc |= {
        "schema": "rekap.bench.v1",
        "started": stamp,
        "elapsed_s": time.monotonic() - started,
        "command": " ".join([Path(sys.executable).name, "-m", "bench",
                             *(argv if argv is not None else sys.argv[1:])]),
        "git": throughput.git_describe(),
        "machine": throughput.machine(),
        "config": {"quick": args.quick, "records": args.records, "runs": args.runs,
                   "memory_sales": args.memory_sales, "memory_reads": args.memory_reads,
                   "partitions": args.partitions, "seed": args.seed, "ikm": args.ikm,
                   "scale_ikm": list(args.scale_ikm), "scale_workers": list(args.scale_workers),
                   "loads": latency.loads_of(args.loads), "seconds": args.seconds,
                   "skip": args.skip, "budget_s": args.budget,
                   "kafka": base.kafka_bootstrap, "redis": base.redis_url_masked,
                   "worker_settings": throughput.batching(base)},
    }
    doc["targets"] = report.targets(json.loads(json.dumps(doc, default=str)))
    md, js = report.write(doc, args.out_dir)
    print()
    print(report.markdown(json.loads(js.read_text())))
    print(f"written: {md}\n         {js}")
    return 0


if __name__ == "__main__":
    try:
        run_cli(main)
    except KeyboardInterrupt as exc:
        print(f"bench stopped ({exc or 'interrupted'}); children stopped, topics deleted",
              file=sys.stderr)
        sys.exit(130)
