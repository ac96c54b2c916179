"""The bench's one report: a markdown table and the JSON it is made from.

:func:`markdown` renders the document :mod:`bench.__main__` builds (throughput
summary, latency summary, memory figures, settings) and :func:`targets`
derives the four goals of the issue from it, as ratios and milliseconds:

* (d)/(a) steady throughput, rekap over raw aiokafka + JSON: at least 25 %;
* (d)/(b) steady throughput, rekap over naive Faust: at least 10×;
* p99 produce → visible at 1,000 records/s: at most 50 ms;
* p99 produce → visible at 5,000 records/s: at most 250 ms.

:func:`write` puts both files side by side as ``bench-<UTC>.md`` / ``.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Row names of the table's contestants, by kind.
NAMES = {
    "raw": "(a) raw aiokafka + json.loads",
    "naive": "(b) naive Faust, 2 awaited Redis calls per event",
    "faust": "(c) stock Faust take_events, no work",
    "rekap": "(d) rekap worker",
}
#: (target, the kind (d) is divided by, lowest ratio met, the goal as shown).
THROUGHPUT_GOALS = (("(d)/(a) steady throughput", "raw", 0.25, "≥ 25%"),
                    ("(d)/(b) steady throughput", "naive", 10.0, "≥ 10×"))
LATENCY_GOALS = ((1000, 50.0), (5000, 250.0))


def _rate(row: dict[str, Any], which: str) -> str:
    return (f"{row[which + '_median']:,.0f} [{row[which + '_min']:,.0f}–"
            f"{row[which + '_max']:,.0f}]")


def _name(label: str, row: dict[str, Any], first_rekap: str | None) -> str:
    if row["kind"] != "rekap" or label == first_rekap:
        return NAMES.get(row["kind"], label)
    parts = [f"{row['ikm']:,} IKM" if row["ikm"] != row.get("base_ikm") else "",
             f"{row['workers']} workers" if row["workers"] > 1 else ""]
    return "rekap worker, " + ", ".join(p for p in parts if p)


def throughput_table(summary: dict[str, dict[str, Any]]) -> list[str]:
    first = next((label for label, row in summary.items() if row["kind"] == "rekap"), None)
    base = summary[first] if first else None
    lines = ["| contestant | IKM | workers | steady rec/s, median [min–max] | "
             "wall rec/s, median [min–max] | (d) ÷ this | this ÷ (d) | totals exact |",
             "|---|---:|---:|---:|---:|---:|---:|:---:|"]
    for label, row in summary.items():
        row = {**row, "base_ikm": base["ikm"] if base else row["ikm"]}
        to_d = from_d = ""
        if base is not None and row["kind"] != "rekap":
            to_d = f"{base['steady_median'] / row['steady_median']:.2f}×"
        elif base is not None and label != first:
            from_d = f"{row['steady_median'] / base['steady_median']:.2f}×"
        exact = {True: "yes", False: "NO", None: "–"}[row.get("verified")]
        lines.append(f"| {_name(label, row, first)} | {row['ikm']:,} | {row['workers']} | "
                     f"{_rate(row, 'steady')} | {_rate(row, 'wall')} | {to_d} | {from_d} | "
                     f"{exact} |")
    return lines


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal with its measured value (None when not measured) and whether it is met."""
    out: list[dict[str, Any]] = []
    summary = doc.get("throughput", {}).get("summary", {})
    rows = list(summary.values())
    rekap = next((r for r in rows if r["kind"] == "rekap"), None)
    for name, kind, goal, text in THROUGHPUT_GOALS:
        other = next((r for r in rows if r["kind"] == kind), None)
        value = (rekap["steady_median"] / other["steady_median"]
                 if rekap is not None and other is not None else None)
        shown = None if value is None else (f"{value:.0%}" if goal < 1 else f"{value:.1f}×")
        out.append({"target": name, "goal": text, "value": value, "shown": shown,
                    "met": None if value is None else value >= goal})
    latency = doc.get("latency", {}).get("summary", {})
    for load, limit in LATENCY_GOALS:
        row = latency.get(load) or latency.get(str(load))
        value = row["p99_ms"] if row else None
        out.append({"target": f"p99 produce → visible at {load:,} rec/s",
                    "goal": f"≤ {limit:g} ms", "value": value,
                    "shown": None if value is None else f"{value:.1f} ms",
                    "met": None if value is None else value <= limit})
    return out


def latency_table(summary: dict[Any, dict[str, float]]) -> list[str]:
    lines = ["| offered load, rec/s | sent at, rec/s | records | p50 ms | p95 ms | p99 ms | "
             "max ms | never visible | poll interval ms | runs |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for load, r in sorted(summary.items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {int(load):,} | {r['achieved_rps']:,.0f} | {r['records']:,.0f} | "
                     f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['max_ms']:.1f} | {r['missing']:.0f} | {r['poll_interval_ms']:.2f} | "
                     f"{r['runs']:.0f} |")
    return lines


def memory_table(memory: dict[str, Any]) -> list[str]:
    """:mod:`bench.memory`'s own table when it made one, else every figure per scale."""
    rows: dict[str, dict[str, float]] = memory.get("rows", {})
    if not rows:
        return [f"Not measured: {memory.get('status', 'no figures')}."]
    if memory.get("table"):
        return [str(memory["table"]), "", f"{memory['sales']:,} records applied per scale, "
                f"{memory['reads']:,} top-10 reads one after another (bench/memory.py)."]
    names = list(dict.fromkeys(k for r in rows.values() for k in r))
    lines = ["| IKM | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for ikm, r in rows.items():
        cells = [f"{r[n]:,.2f}" if n in r else "" for n in names]
        lines.append(f"| {int(ikm):,} | " + " | ".join(cells) + " |")
    return lines


def markdown(doc: dict[str, Any]) -> str:
    cfg, mach = doc["config"], doc["machine"]
    quick = " **Quick run (`--quick`): a smoke test, not a measurement.**" if cfg["quick"] else ""
    lines = [
        f"# rekap bench, {doc['started']}",
        "",
        f"git `{doc['git']}`; {mach['cpus']} CPUs, Python {mach['python']}, {mach['platform']}; "
        f"Kafka {cfg['kafka']}, Redis {cfg['redis']}. {cfg['records']:,} records per "
        f"throughput run, {cfg['partitions']} partitions, medians of {cfg['runs']} runs "
        f"(contestants alternating); worker "
        + ", ".join(f"{k} {v}" for k, v in cfg["worker_settings"].items())
        + f". Took {doc['elapsed_s']:.0f} s.{quick}",
        "",
        "## Targets",
        "",
        "| target | goal | measured | met |",
        "|---|---|---:|:---:|",
    ]
    for t in targets(doc):
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        lines.append(f"| {t['target']} | {t['goal']} | {t['shown'] or 'not measured'} | {met} |")
    lines += ["", "## Throughput, draining a backlog", ""]
    lines += throughput_table(doc.get("throughput", {}).get("summary", {}))
    lines += ["", "Steady: from the first to the last batch (raw: from positioned to the last "
              "record); wall: from process start, group join included. rekap rows are verified "
              "exact against the generated stream.", ""]
    lines += ["## Latency, send → visible in Redis (offset fence)", ""]
    latency = doc.get("latency", {}).get("summary", {})
    lines += latency_table(latency) if latency else ["Not measured."]
    lines += ["", "## Redis memory and top-10 leaderboard read", ""]
    lines += memory_table(doc.get("memory", {}))
    return "\n".join(lines) + "\n"


def write(doc: dict[str, Any], outdir: Path, *, name: str = "bench",
          render: Callable[[dict[str, Any]], str] = markdown) -> tuple[Path, Path]:
    """Write ``<name>-<started>.md`` (``render(doc)``) and ``.json`` into ``outdir``;
    return both paths. ``python -m bench.ingest`` writes its own table through it."""
    outdir.mkdir(parents=True, exist_ok=True)
    md = outdir / f"{name}-{doc['started']}.md"
    js = md.with_suffix(".json")
    js.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    md.write_text(render(doc))
    return md, js
