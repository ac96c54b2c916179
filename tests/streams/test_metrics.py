"""observe_batch counts what one observe/inc per record would: same series, same values."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, Histogram

from rekap.contract import Sale
from rekap.records import ConsumedRecord
from streams import metrics
from streams.apply import BatchResult, GroupResult, Outcome

BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 60)


def _samples(h: Histogram) -> dict[str, float]:
    return {f"{s.name}{sorted(s.labels.items())}": s.value
            for m in h.collect() for s in m.samples if not s.name.endswith("_created")}


@pytest.mark.parametrize("values", [
    [], [0.0], [0.1], [0.1000001], [60.0], [61.0, math.inf], [-1.0, 0.0, 3.0],
    [random.Random(seed).expovariate(0.2) for _ in range(500) for seed in [7]],
    [b for b in BUCKETS] * 3,
])
def test_observe_all_is_observe_per_value(values: list[float]) -> None:
    registry = CollectorRegistry()
    one = Histogram("one", "h", buckets=BUCKETS, registry=registry)
    many = Histogram("many", "h", buckets=BUCKETS, registry=registry)
    for v in values:
        one.observe(v)
    metrics.observe_all(many, list(values))
    a = {k.replace("one", "X"): v for k, v in _samples(one).items()}
    b = {k.replace("many", "X"): v for k, v in _samples(many).items()}
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-9), k


def test_observe_all_without_histogram_internals_observes_each_value() -> None:
    class Plain:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, v: float) -> None:
            self.seen.append(v)

    h = Plain()
    metrics.observe_all(h, [3.0, 1.0])  # type: ignore[arg-type]
    assert h.seen == [3.0, 1.0]


def _sale(i: int, event: str, channel: str, kind: str, at: datetime) -> Sale:
    return Sale(f"s{i}", kind, "ikm", event, channel, 1000 + i, 1, at, date(2022, 1, 1))  # type: ignore[arg-type]


def _value(metric: object, *labels: str) -> float:
    child = metric.labels(*labels) if labels else metric  # type: ignore[attr-defined]
    return child._value.get()  # type: ignore[no-any-return]


def test_observe_batch_counts_each_record_once() -> None:
    now = datetime.now(UTC)
    outcomes = []
    expected_apply: dict[str, int] = {}
    expected_amount: dict[tuple[str, str, str], int] = {}
    for i in range(300):
        rec = ConsumedRecord("t", 0, i, b"k", b"v", int((now.timestamp() - i % 7) * 1000) if i % 5 else None)
        if i % 10 == 3:
            outcomes.append(Outcome(rec, "duplicate", "sale_id"))
        elif i % 10 == 4:
            outcomes.append(Outcome(rec, "rejected", "bad_id"))
        else:
            ev, ch, kind = f"ev{i % 3}", ("website", "offline")[i % 2], ("sale", "refund")[i % 4 == 0]
            sale = _sale(i, ev, ch, kind, now - timedelta(seconds=i))
            outcomes.append(Outcome(rec, "applied", "", sale=sale))
            expected_apply[ev] = expected_apply.get(ev, 0) + 1
            expected_amount[(ev, ch, kind)] = expected_amount.get((ev, ch, kind), 0) + sale.amount_idr
    before = {
        "applied": {e: _value(metrics.RECORDS_APPLIED, e) for e in expected_apply},
        "amount": {k: _value(metrics.SALES_AMOUNT, *k) for k in expected_amount},
        "dup": _value(metrics.RECORDS_DUPLICATE, "sale_id"),
        "rej": _value(metrics.RECORDS_REJECTED, "bad_id"),
        "ingest": metrics.INGEST_TO_APPLY_SECONDS._sum.get(),
        "ingest_n": sum(b.get() for b in metrics.INGEST_TO_APPLY_SECONDS._buckets),
        "capture_n": sum(b.get() for b in metrics.CAPTURE_TO_APPLY_SECONDS._buckets),
    }
    result = BatchResult([GroupResult("root", outcomes, [])])
    metrics.observe_batch(result, [o.record for o in outcomes])
    for e, n in expected_apply.items():
        assert _value(metrics.RECORDS_APPLIED, e) - before["applied"][e] == n
    for k, amount in expected_amount.items():
        assert _value(metrics.SALES_AMOUNT, *k) - before["amount"][k] == amount
    assert _value(metrics.RECORDS_DUPLICATE, "sale_id") - before["dup"] == 30
    assert _value(metrics.RECORDS_REJECTED, "bad_id") - before["rej"] == 30
    applied = sum(expected_apply.values())
    with_ts = sum(1 for o in outcomes if o.status == "applied" and o.record.timestamp_ms)
    assert sum(b.get() for b in metrics.CAPTURE_TO_APPLY_SECONDS._buckets) - before["capture_n"] == applied
    assert sum(b.get() for b in metrics.INGEST_TO_APPLY_SECONDS._buckets) - before["ingest_n"] == with_ts
    assert metrics.INGEST_TO_APPLY_SECONDS._sum.get() - before["ingest"] == pytest.approx(
        sum(i % 7 for i, o in enumerate(outcomes) if o.status == "applied" and o.record.timestamp_ms),
        abs=1.0)
