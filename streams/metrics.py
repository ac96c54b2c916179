"""Prometheus metrics of the worker. Names follow Prometheus conventions, prefix ``rekap_``.

Per-IKM series are NOT here: the leaderboard gauges are served by the exporter,
read from Redis at scrape time, so N workers never duplicate them and their
number stays bounded (top K per event).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from rekap.records import ConsumedRecord
    from streams.apply import BatchResult

RECORDS_CONSUMED = Counter(
    "rekap_records_consumed_total", "Sales-topic records the worker read (before validation).")
RECORDS_APPLIED = Counter(
    "rekap_records_applied_total", "Records applied to the Redis totals for the first time.",
    ["event"])
RECORDS_DUPLICATE = Counter(
    "rekap_records_duplicate_total",
    "Records skipped as duplicates: cause=offset (a replayed offset, fenced) or sale_id (a resend).",
    ["cause"])
RECORDS_REJECTED = Counter(
    "rekap_records_rejected_total", "Records rejected and dead-lettered, by reason.", ["reason"])
DEAD_LETTERS_PUBLISHED = Counter(
    "rekap_dead_letters_published_total", "Records written to the dead-letter topic.")
TOTALS_PUBLISHED = Counter(
    "rekap_totals_published_total", "Messages written to the totals topics.", ["scope"])
SALES = Counter(
    "rekap_sales_total", "Applied sales and refunds, by event (own, not rolled up), channel, kind.",
    ["event", "channel", "kind"])
SALES_AMOUNT = Counter(
    "rekap_sales_amount_idr_total",
    "Rupiah of applied sales and refunds, by event (own, not rolled up), channel, kind.",
    ["event", "channel", "kind"])
APPLY_BATCH_SECONDS = Histogram(
    "rekap_apply_batch_seconds", "Time to apply one batch to Redis (all its scripts).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
BATCH_SECONDS = Histogram(
    "rekap_batch_seconds",
    "Time from taking a fetched batch to having it applied and its dead letters and totals "
    "acknowledged: how long its offsets wait to become committable (streams.consume).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 30))
BATCH_RECORDS = Histogram(
    "rekap_apply_batch_records", "Records per applied batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000))
# Ingest time is the Kafka record timestamp; capture time is occurred_at, which
# for a booth that was offline can be hours old, hence the long buckets.
INGEST_TO_APPLY_SECONDS = Histogram(
    "rekap_ingest_to_apply_seconds", "Kafka record timestamp to applied in Redis.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
CAPTURE_TO_APPLY_SECONDS = Histogram(
    "rekap_capture_to_apply_seconds", "Sale occurred_at to applied in Redis.",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 60, 300, 1800, 3600, 6 * 3600, 24 * 3600))
CONSUMER_LAG = Gauge(
    "rekap_consumer_lag_records", "End offset minus committed offset, per sales partition.",
    ["partition"])
KAFKA_ERRORS = Counter("rekap_kafka_errors_total", "Kafka operations that failed.", ["operation"])
REDIS_ERRORS = Counter("rekap_redis_errors_total", "Redis operations that failed.", ["operation"])
#: Progress lives with the data (streams.progress).
REDIS_LOSSES = Counter(
    "rekap_redis_lost_writes_total",
    "Times the worker found an offset fence in Redis below one it had seen (Redis lost writes).")
RECORDS_REPLAYED = Counter(
    "rekap_records_replayed_total",
    "Records read again from the sales topic to restore what Redis lost.")
RECOVERING_PARTITIONS = Gauge(
    "rekap_recovering_partitions",
    "Sales partitions this worker is replaying into Redis right now (0 when caught up).")
INTERNAL_ERRORS = Counter(
    "rekap_internal_errors_total",
    "Unexpected failures of the worker itself (a bug, not an outage), by operation; the work "
    "is retried, never dropped.", ["operation"])


def observe_batch(result: BatchResult, records: Sequence[ConsumedRecord]) -> None:
    """Count a batch: one increment per series, not one per record.

    Counts and amounts are summed per label set first, so each series is
    looked up (``.labels()``) and locked once per batch; the two latency
    histograms get every applied record's latency the same way
    (:func:`observe_all`).
    """
    BATCH_RECORDS.observe(len(records))
    now = time.time()
    sales: dict[tuple[str, str, str], list[int]] = {}
    duplicate: dict[str, int] = {}
    rejected: dict[str, int] = {}
    ingest_ms: list[int] = []
    captured: list[float] = []
    for o in result.outcomes:
        status = o.status
        if status == "applied":
            sale = o.sale
            assert sale is not None
            series_key = (sale.event_id, sale.channel, sale.kind)
            series = sales.get(series_key)
            if series is None:
                series = sales[series_key] = [0, 0]
            series[0] += 1
            series[1] += sale.amount_idr
            if o.record.timestamp_ms:
                ingest_ms.append(o.record.timestamp_ms)
            captured.append(sale.occurred_at.timestamp())
        elif status == "duplicate":
            duplicate[o.cause] = duplicate.get(o.cause, 0) + 1
        else:
            rejected[o.cause] = rejected.get(o.cause, 0) + 1
    observe_all(INGEST_TO_APPLY_SECONDS, [max(0.0, now - ms / 1000) for ms in ingest_ms])
    observe_all(CAPTURE_TO_APPLY_SECONDS, [max(0.0, now - at) for at in captured])
    applied: dict[str, int] = {}
    for (event_id, _, _), (n, _amount) in sales.items():
        applied[event_id] = applied.get(event_id, 0) + n
    for event_id, n in applied.items():
        RECORDS_APPLIED.labels(event_id).inc(n)
    for labels, (n, amount) in sales.items():
        SALES.labels(*labels).inc(n)
        SALES_AMOUNT.labels(*labels).inc(amount)
    for cause, n in duplicate.items():
        RECORDS_DUPLICATE.labels(cause).inc(n)
    for cause, n in rejected.items():
        RECORDS_REJECTED.labels(cause).inc(n)


def observe_all(histogram: Histogram, values: list[float]) -> None:
    """``histogram.observe(v)`` for each of ``values``, as one increment per bucket.

    prometheus_client has no batch observe, and its ``observe`` takes two locks
    and walks the buckets in Python for each value (~1 µs; two per applied
    record were most of a batch's metrics time). This adds the same counts to
    the same bucket and sum values ``observe`` writes to (its ``_upper_bounds``,
    ``_buckets``, ``_sum``), so the exposition is what per-value observes give;
    a histogram without them (another prometheus_client) is observed value by value.
    """
    if not values:
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    values = sorted(values)
    # observe counts a value in the first bucket whose bound is >= it; bounds end with +Inf.
    below = 0
    for bound, bucket in zip(bounds, buckets, strict=True):
        upto = bisect.bisect_right(values, bound)
        if upto > below:
            bucket.inc(upto - below)
            below = upto
    total.inc(sum(values))
