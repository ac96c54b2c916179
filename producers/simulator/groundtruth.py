"""Ground truth of a stream: the totals a correct worker must reach, computed without the worker.

The stream is folded by the ledger model (:func:`rekap.ledger.fold_sent`, the
rules the worker's script applies, including that a refund is booked on its
sale's channel and local day) and written as a nested document a person can
read and the simulator's report can quote::

    {"records": {"sent", "applied", "duplicates", "rejected": {reason: n}, "rejected_total"},
     "events": {event_id: {amount_idr, gross_idr, refunds_idr, count, refund_count, quantity,
                           "channels": {channel: {amount_idr, count, refunds_idr}},
                           "days": {YYYY-MM-DD: {amount_idr, count, refunds_idr, quantity}},
                           "ikm": {ikm_id: {the same without "ikm"}}}}}

``duplicates`` counts identical resends (``duplicate:sale_id``); a reused
``sale_id`` with other content is rejected as ``sale_id_conflict``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from rekap.ledger import Ledger, fold_sent
from rekap.names import TOTAL_FIELDS, Keys
from rekap.registry import Registry

_KEYS: Final = Keys("truth")
_CHANNEL_FIELDS: Final = ("amount_idr", "count", "refunds_idr")
_DAY_FIELDS: Final = ("amount_idr", "count", "refunds_idr", "quantity")


def compute(records: Iterable[tuple[bytes, bytes]], registry: Registry) -> dict[str, Any]:
    """Ground truth of ``(key, value)`` records in stream order."""
    records = list(records)
    ledger = fold_sent(records, registry, _KEYS)
    stats: dict[str, int] = {}
    for per_root in ledger.stats.values():
        for label, n in per_root.items():
            stats[label] = stats.get(label, 0) + n
    rejected = {label.removeprefix("rejected:"): n for label, n in sorted(stats.items())
                if label.startswith("rejected:")}
    events: dict[str, Any] = {}
    for event_id in sorted(registry.events):
        root = registry.root(event_id)
        totals = _totals(ledger, _KEYS.event_totals(root, event_id),
                         _KEYS.event_days(root, event_id))
        if totals is None:
            continue
        board = ledger.boards.get(_KEYS.board(root, event_id), {})
        totals["ikm"] = {ikm: _totals(ledger, _KEYS.ikm_totals(root, event_id, ikm),
                                      _KEYS.ikm_days(root, event_id, ikm))
                         for ikm in sorted(board)}
        events[event_id] = totals
    return {
        "records": {"sent": len(records), "applied": stats.get("applied", 0),
                    "duplicates": stats.get("duplicate:sale_id", 0), "rejected": rejected,
                    "rejected_total": sum(rejected.values())},
        "events": events,
    }


def _totals(ledger: Ledger, totals_key: str, days_key: str) -> dict[str, Any] | None:
    """One totals hash and its day buckets, nested; None if no record ever touched it."""
    flat = ledger.hashes.get(totals_key)
    if flat is None:
        return None
    out: dict[str, Any] = {f: flat.get(f, 0) for f in TOTAL_FIELDS}
    out["channels"] = _nest(flat, "ch:", _CHANNEL_FIELDS)
    out["days"] = _nest(ledger.hashes.get(days_key, {}), "", _DAY_FIELDS)
    return out


def _nest(flat: dict[str, int], prefix: str, names: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """``{"<prefix><group>:<name>": n}`` as ``{group: {name: n}}``, every name present."""
    out: dict[str, dict[str, int]] = {}
    for name, value in flat.items():
        if not name.startswith(prefix) or ":" not in name[len(prefix):]:
            continue
        group, _, field = name[len(prefix):].rpartition(":")
        out.setdefault(group, dict.fromkeys(names, 0))[field] = value
    return {group: out[group] for group in sorted(out)}
