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

from producers.simulator.scenario import Emission, Scenario
from rekap.errors import KafkaUnavailable, RekapError
from rekap.settings import Settings

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
    import httpx

    report = RunReport()
    started = time.monotonic()
    rng = random.Random(scenario.options.seed)
    with httpx.Client(base_url=url.rstrip("/"), timeout=30) as client:
        for chunk in _paced(scenario.emissions, rate, speedup, INGEST_BATCH):
            for sender, group in _by_sender(chunk):
                token = _token_for(tokens, sender)
                _post_group(client, token, group, report, rng, max_attempts)
            if on_progress:
                on_progress(len(chunk))
    report.seconds = time.monotonic() - started
    return report


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


def _post_group(client: Any, token: str, group: list[Emission], report: RunReport,
                rng: random.Random, max_attempts: int) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    pending = list(group)
    raw = [e for e in pending if not _is_json_object(e.value)]
    pending = [e for e in pending if _is_json_object(e.value)]
    for e in raw:  # a malformed record cannot ride in a JSON batch: post it alone
        resp = client.post("/v1/sales", content=e.value, headers=headers)
        report.sent += 1
        _count_reject(report, resp.json().get("error", {}).get("reason", str(resp.status_code)))
    attempt = 0
    while pending:
        body = b'{"sales":[' + b",".join(e.value for e in pending) + b"]}"
        try:
            resp = client.post("/v1/sales", content=body, headers=headers)
        except httpx.TransportError as exc:
            resp = None
            log.warning("ingest unreachable: %s", exc)
        report.sent += len(pending)
        retry: list[Emission] = []
        results = _results(resp)
        if resp is None or (resp.status_code >= 500 and results is None):
            retry = pending
        elif resp.status_code == 401:
            raise RekapError("ingest refused the demo token (401): is ingest running with "
                             "REKAP_BOOTH_TOKENS_PATH pointing at the demo token file?")
        else:
            if results is None:
                raise RekapError(f"ingest answered {resp.status_code}: {resp.text[:200]}")
            for e, r in zip(pending, results, strict=True):
                if r["status"] == "accepted":
                    report.accepted += 1
                elif r["status"] == "unavailable":
                    retry.append(e)
                elif r["status"] == "rejected":
                    _count_reject(report, r["error"]["reason"])
        if not retry:
            return
        attempt += 1
        report.retries += 1
        if attempt >= max_attempts:
            raise KafkaUnavailable(f"{len(retry)} sales still unacknowledged after {attempt} attempts")
        time.sleep(min(10.0, 0.2 * 2 ** attempt) * rng.uniform(0.5, 1.0))
        pending = retry


def _results(resp: Any) -> list[dict[str, Any]] | None:
    if resp is None:
        return None
    try:
        doc = resp.json()
    except ValueError:
        return None
    return doc.get("results") if isinstance(doc, dict) else None


def _count_reject(report: RunReport, reason: str) -> None:
    report.rejected_by_ingest[reason] = report.rejected_by_ingest.get(reason, 0) + 1


def _is_json_object(value: bytes) -> bool:
    try:
        return isinstance(json.loads(value), dict)
    except ValueError:
        return False
