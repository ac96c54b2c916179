"""``rekap import virtual-expo``: a channel's export file into the sales topic.

Two ways in, chosen by ``--via``:

* ``kafka`` (and every ``--dry-run``): the file is mapped and validated here, the
  sales produced straight to the sales topic (nothing else would judge the rows).
* ``ingest``: the file is posted as is to ``/v1/channels/virtual-expo/import`` with
  a channel token, and ingest's own per-row answers are reported.

Exit codes: 0 every row accepted or ignored; 1 a row was rejected (one stderr line
each: fix it and import again); 3 a row was not acknowledged by Kafka (import the
same file again later: the same rows map to the same sale_ids, so nothing counts
twice). Output is for the operator, in Bahasa Indonesia.
"""

from __future__ import annotations

import sys
from pathlib import Path

from producers.ingest.client import IngestClient
from rekap.contract import Rejection, Sale, validate_sale
from rekap.errors import ConfigError
from rekap.registry import load_registry
from rekap.settings import Settings
from rekap.tls import client_context

#: Re-importing is always safe: the same file maps to the same sale_ids.
RETRY_LATER = "ulangi impor nanti (aman: sale_id sama)"
#: Printed when ingest could not get rows acknowledged by Kafka (503).
RETRY_IMPORT = f"ingest: Kafka tidak tersedia; {RETRY_LATER}"


def read_export(path: Path) -> bytes:
    """The file's bytes, checked to be UTF-8 text (both ways in need it)."""
    try:
        body = path.read_bytes()
        body.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return body


def import_via_kafka(settings: Settings, path: Path, body: bytes, *, dry_run: bool = False) -> int:
    """Map and validate locally; produce the valid sales unless ``dry_run`` (then print them)."""
    from producers.adapters.virtual_expo import map_csv

    registry = load_registry(settings.registry_path)
    items = map_csv(body.decode("utf-8"), registry)
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
    if dry_run:
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
    print(f"{path}: {len(sales)} diterima, {bad} ditolak, {ignored} diabaikan")
    return 0 if bad == 0 else 1


def import_via_ingest(settings: Settings, path: Path, body: bytes, *, url: str, token: str) -> int:
    """POST the file to ingest and report what ingest decided for each row (one request,
    not retried: the exit code tells the operator to import again)."""
    limit = settings.max_body_bytes
    if len(body) > limit:
        raise ConfigError(f"{path} is {len(body)} bytes, more than ingest takes in one request "
                          f"({limit}, REKAP_MAX_BODY_BYTES): import it with --via kafka, "
                          "or split it into smaller files")
    with IngestClient(url, token, timeout_s=60, tls=client_context(settings)) as client:
        reply = client.post("/v1/channels/virtual-expo/import", content=body, content_type="text/csv")
    if not reply.reached:
        print(f"ingest {url} tidak terjangkau ({reply.text}); {RETRY_LATER}", file=sys.stderr)
        return 3
    results = reply.results()
    if results is None:  # a whole-request answer: 401, 403, 413, a proxy's 503 ...
        if reply.status == 503:
            print(RETRY_IMPORT, file=sys.stderr)
            return 3
        raise ConfigError(f"ingest answered {reply.status}: {reply.text[:300]}")
    tally = {"accepted": 0, "rejected": 0, "ignored": 0, "unavailable": 0}
    for row in results:
        tally[row["status"]] += 1
        if row["status"] == "rejected":
            error = row.get("error") or {}
            ref = row.get("ref") or row.get("sale_id") or f"item {row.get('index')}"
            print(f"ditolak {ref}: {error.get('reason')} — {error.get('detail')}", file=sys.stderr)
    summary = (f"{path}: {tally['accepted']} diterima, {tally['rejected']} ditolak, "
               f"{tally['ignored']} diabaikan")
    print(summary + (f", {tally['unavailable']} belum diterima Kafka" if tally["unavailable"] else ""))
    if tally["unavailable"]:
        print(RETRY_IMPORT, file=sys.stderr)
        return 3
    return 1 if tally["rejected"] else 0
