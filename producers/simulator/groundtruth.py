"""Ground truth of a stream: the totals a correct worker must reach, computed without the worker.

Folds the stream the way the contract says, on its own: validate each record
(:func:`rekap.contract.parse_sale`), keep the first record of each ``sale_id``
of an IKM (later ones are duplicates), reject a refund whose target is not a
sale of the same IKM, is of another event or would take back more rupiah or units
than are left, then add sales and
subtract refunds into every event of the sale's chain (the exhibition rolls up
into the programme). Integer arithmetic only.

Counting rules: ``count`` counts sales, ``refund_count`` refunds; ``amount_idr``
is net (``gross_idr - refunds_idr``), ``quantity`` is net units. Day buckets use
each record's own local day (the scenario keeps a refund on its sale's day).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from rekap.contract import Reason, Rejection, Sale, parse_sale
from rekap.registry import Registry


def _totals() -> dict[str, Any]:
    return {"amount_idr": 0, "gross_idr": 0, "refunds_idr": 0, "count": 0, "refund_count": 0,
            "quantity": 0, "channels": {}, "days": {}}


def _add(t: dict[str, Any], s: Sale) -> None:
    sign = 1 if s.kind == "sale" else -1
    t["amount_idr"] += sign * s.amount_idr
    t["quantity"] += sign * s.quantity
    ch = t["channels"].setdefault(s.channel, {"amount_idr": 0, "count": 0, "refunds_idr": 0})
    day = t["days"].setdefault(s.day.isoformat(), {"amount_idr": 0, "count": 0, "refunds_idr": 0,
                                                   "quantity": 0})
    ch["amount_idr"] += sign * s.amount_idr
    day["amount_idr"] += sign * s.amount_idr
    day["quantity"] += sign * s.quantity
    if s.kind == "sale":
        t["gross_idr"] += s.amount_idr
        t["count"] += 1
        ch["count"] += 1
        day["count"] += 1
    else:
        t["refunds_idr"] += s.amount_idr
        t["refund_count"] += 1
        ch["refunds_idr"] += s.amount_idr
        day["refunds_idr"] += s.amount_idr


def compute(records: Iterable[tuple[bytes, bytes]], registry: Registry) -> dict[str, Any]:
    """Ground truth of ``(key, value)`` records in stream order."""
    seen: dict[tuple[str, str], Sale] = {}  # (ikm_id, sale_id): the idempotency key
    refunded: Counter[tuple[str, str]] = Counter()
    refunded_units: Counter[tuple[str, str]] = Counter()
    rejected: Counter[str] = Counter()
    sent = duplicates = 0
    events: dict[str, dict[str, Any]] = {}
    for key, value in records:
        sent += 1
        result = parse_sale(value, registry, key)
        if isinstance(result, Rejection):
            rejected[result.reason.value] += 1
            continue
        if (result.ikm_id, result.sale_id) in seen:
            duplicates += 1
            continue
        if result.kind == "refund":
            target_key = (result.ikm_id, result.refund_of or "")
            target = seen.get(target_key)
            problem = None
            if target is None:
                problem = Reason.UNKNOWN_REFUND_TARGET
            elif target.kind != "sale" or target.event_id != result.event_id:
                problem = Reason.REFUND_MISMATCH
            elif (refunded[target_key] + result.amount_idr > target.amount_idr
                  or refunded_units[target_key] + result.quantity > target.quantity):
                problem = Reason.REFUND_EXCEEDS_SALE
            if problem is not None:
                rejected[problem.value] += 1
                continue
            refunded[target_key] += result.amount_idr
            refunded_units[target_key] += result.quantity
        seen[(result.ikm_id, result.sale_id)] = result
        for event_id in registry.chain(result.event_id):
            ev = events.setdefault(event_id, {**_totals(), "ikm": {}})
            _add(ev, result)
            _add(ev["ikm"].setdefault(result.ikm_id, _totals()), result)
    applied = len(seen)
    return {
        "records": {"sent": sent, "applied": applied, "duplicates": duplicates,
                    "rejected": dict(sorted(rejected.items())),
                    "rejected_total": sum(rejected.values())},
        "events": _sorted(events),
    }


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    return value
