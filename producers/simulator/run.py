"""Play a scenario: straight into Kafka, or through the ingest API with booth/channel tokens.

Pacing: as fast as possible by default; ``rate`` sends N records per second;
``speedup`` replays the programme's own clock compressed X times (90 days at
86400x take 90 s). The ground-truth file is written before the first record is
sent, so an interrupted run still leaves the totals a complete run must reach.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from producers.ingest.client import SIMULATOR_BACKOFF, IngestClient, Reply, Retry
from producers.simulator.scenario import Emission, Scenario
from rekap.errors import KafkaUnavailable, RekapError
from rekap.money import format_idr, format_idr_short
from rekap.settings import Settings
from rekap.tls import client_context

log = logging.getLogger(__name__)

#: Records per Kafka round trip when not paced (kafka-python batches them further).
KAFKA_CHUNK = 2000
#: Sales per ingest request.
INGEST_BATCH = 200


@dataclass
class RunReport:
    sent: int = 0
    accepted: int = 0
    rejected_by_ingest: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"sent": self.sent, "accepted": self.accepted, "retries": self.retries,
                "rejected_by_ingest": dict(sorted(self.rejected_by_ingest.items())),
                "seconds": round(self.seconds, 3)}


def write_truth(scenario: Scenario, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(scenario.truth, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def _paced(emissions: list[Emission], rate: float | None, speedup: float | None,
           chunk: int, *, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[list[Emission]]:
    """Chunks of at most ``chunk`` emissions, each yielded when its first record is due.

    * Neither ``rate`` nor ``speedup`` (None or 0): everything at once, ``chunk`` at a time.
    * ``rate`` (records per second): record ``i`` is due ``i / rate`` seconds after the start;
      a chunk is ``rate / 20`` records (about 20 sends a second, at least 1, at most ``chunk``).
    * ``speedup``: a record is due at its programme time since the first record over
      ``speedup``; a chunk takes along every later record already due, up to ``chunk``.

    Due times count from the start, so a slow consumer catches up instead of drifting.
    ``clock`` and ``sleep`` are injectable so a test can check the schedule on a fake clock.
    """
    if not rate and not speedup:
        for i in range(0, len(emissions), chunk):
            yield emissions[i:i + chunk]
        return
    start = clock()
    first_at = emissions[0].at if emissions else 0.0
    step = min(chunk, max(1, int(rate / 20))) if rate else 1  # 20 sends a second
    i = 0
    while i < len(emissions):
        due = i / rate if rate else (emissions[i].at - first_at) / speedup  # type: ignore[operator]
        wait = start + due - clock()
        if wait > 0:
            sleep(min(wait, 1.0))
            continue
        j = i + step
        if speedup:  # everything already due goes in this chunk
            now_due = clock() - start
            while j < len(emissions) and j - i < chunk and \
                    (emissions[j].at - first_at) / speedup <= now_due:
                j += 1
        yield emissions[i:j]
        i = j


def run_kafka(settings: Settings, scenario: Scenario, *, rate: float | None = None,
              speedup: float | None = None, on_progress: Callable[[int], None] | None = None
              ) -> RunReport:
    from producers.kafka import Ack, SaleProducer

    report = RunReport()
    started = time.monotonic()
    with SaleProducer(settings, client_id=f"{settings.app_id}-simulate", linger_ms=20,
                      ack_timeout_s=60) as producer:
        for chunk in _paced(scenario.emissions, rate, speedup, KAFKA_CHUNK):
            results = producer.send_all([(e.key, e.value) for e in chunk])
            failed = [r for r in results if not isinstance(r, Ack)]
            if failed:
                raise KafkaUnavailable(f"{len(failed)} records not acknowledged: {failed[0]}")
            report.sent += len(chunk)
            report.accepted += len(chunk)
            if on_progress:
                on_progress(len(chunk))
    report.seconds = time.monotonic() - started
    return report


def run_ingest(settings: Settings, scenario: Scenario, url: str, tokens: dict[str, dict[str, str]],
               *, rate: float | None = None, speedup: float | None = None,
               on_progress: Callable[[int], None] | None = None, max_attempts: int = 8) -> RunReport:
    """Send through ``POST /v1/sales``, one batch per run of records with the same sender."""
    report = RunReport()
    started = time.monotonic()
    rng = random.Random(scenario.options.seed)
    with IngestClient(url, timeout_s=30, tls=client_context(settings)) as client:
        for chunk in _paced(scenario.emissions, rate, speedup, INGEST_BATCH):
            for sender, group in _by_sender(chunk):
                token = _token_for(tokens, sender)
                _post_group(client, token, group, report, Retry(SIMULATOR_BACKOFF, max_attempts, rng))
            if on_progress:
                on_progress(len(chunk))
    report.seconds = time.monotonic() - started
    return report


def replay(settings: Settings, scenario: Scenario, *, via: str, url: str,
           tokens: dict[str, dict[str, str]], rate: float | None = None,
           speedup: float | None = None, progress: bool = True) -> RunReport:
    """:func:`run_kafka` or :func:`run_ingest` (``via``), with a progress bar on the terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]simulasi"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                  disable=not progress) as bar:
        task = bar.add_task("send", total=len(scenario.emissions), rate="")
        t0 = time.monotonic()
        count = [0]

        def tick(n: int) -> None:
            count[0] += n
            per_s = count[0] / max(1e-6, time.monotonic() - t0)
            bar.update(task, advance=n, rate=f"{per_s:,.0f}/dtk")

        if via == "kafka":
            return run_kafka(settings, scenario, rate=rate, speedup=speedup, on_progress=tick)
        return run_ingest(settings, scenario, url, tokens, rate=rate, speedup=speedup,
                          on_progress=tick)


def describe(scenario: Scenario, truth_path: Path, generated_s: float) -> str:
    """What was generated, for the operator (Bahasa Indonesia)."""
    opts = scenario.options
    rec = scenario.truth["records"]
    lines = [f"skenario seed {opts.seed} skala {opts.scale}: {len(scenario.emissions)} rekaman "
             f"({rec['applied']} penjualan/retur, {rec['duplicates']} kirim ulang, "
             f"{rec['rejected_total']} rusak) dibuat dalam {generated_s:.2f} dtk"]
    for event_id, totals in scenario.truth["events"].items():
        lines.append(f"  {event_id}: {format_idr(totals['amount_idr'])} "
                     f"({format_idr_short(totals['amount_idr'])})")
    lines.append(f"  kebenaran dasar: {truth_path}")
    return "\n".join(lines)


def _by_sender(chunk: list[Emission]) -> Iterator[tuple[str, list[Emission]]]:
    group: list[Emission] = []
    for e in chunk:
        if group and (e.sender != group[0].sender or len(group) >= INGEST_BATCH):
            yield group[0].sender, group
            group = []
        group.append(e)
    if group:
        yield group[0].sender, group


def _token_for(tokens: dict[str, dict[str, str]], sender: str) -> str:
    kind, _, name = sender.partition(":")
    table = tokens["booths" if kind == "booth" else "channels"]
    if name not in table:
        raise RekapError(f"no demo token for {sender}; run `rekap simulate --issue-demo-tokens`")
    return table[name]


def _post_group(client: IngestClient, token: str, group: list[Emission], report: RunReport,
                retry: Retry) -> None:
    """Post one sender's records until each is accepted or rejected.

    Retried: everything after a network error or a 5xx that is not per-item, and the
    ``unavailable`` items of a per-item answer; ``retry`` gives up with KafkaUnavailable.
    """
    raw = [e for e in group if not _is_json_object(e.value)]
    pending = [e for e in group if _is_json_object(e.value)]
    for e in raw:  # a malformed record cannot ride in a JSON batch: post it alone
        reply = client.post_sales(body=e.value, token=token)
        if not reply.reached:
            raise RekapError(f"ingest unreachable: {reply.text}")
        report.sent += 1
        _count_reject(report, reply.reason or str(reply.status))
    while pending:
        reply = client.post_sales(body=b'{"sales":[' + b",".join(e.value for e in pending) + b"]}",
                                  token=token)
        if not reply.reached:
            log.warning("ingest unreachable: %s", reply.text)
        report.sent += len(pending)
        again = _settle(reply, pending, report)
        if not again:
            return
        report.retries += 1
        if not retry.failed():
            raise KafkaUnavailable(f"{len(again)} sales still unacknowledged after "
                                   f"{retry.failures} attempts")
        pending = again


def _settle(reply: Reply, pending: list[Emission], report: RunReport) -> list[Emission]:
    """Count one batch answer; the records to send again (all of them if there was no answer)."""
    results = reply.results(expected=len(pending))
    if reply.status is None or (reply.status >= 500 and results is None):
        return pending
    if reply.status == 401:
        raise RekapError("ingest refused the demo token (401): is ingest running with "
                         "REKAP_BOOTH_TOKENS_PATH pointing at the demo token file?")
    if results is None:
        raise RekapError(f"ingest answered {reply.status}: {reply.text[:200]}")
    again: list[Emission] = []
    for e, r in zip(pending, results, strict=True):
        if r["status"] == "accepted":
            report.accepted += 1
        elif r["status"] == "unavailable":
            again.append(e)
        elif r["status"] == "rejected":
            _count_reject(report, r["error"]["reason"])
    return again


def _count_reject(report: RunReport, reason: str) -> None:
    report.rejected_by_ingest[reason] = report.rejected_by_ingest.get(reason, 0) + 1


def _is_json_object(value: bytes) -> bool:
    try:
        return isinstance(json.loads(value), dict)
    except ValueError:
        return False
