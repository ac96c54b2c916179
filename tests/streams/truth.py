"""Ground truth for generated streams: plain Python sums, independent of the worker and the ledger model.

Valid for streams from :mod:`tests.support.salesgen` (every refund is valid and
comes after its sale; resends are identical), so the rules reduce to: count a
sale_id once; a refund subtracts in its sale's channel and WIB day.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import redis

from rekap.names import Keys
from rekap.registry import Registry

WIB = ZoneInfo("Asia/Jakarta")


def wib_day(text: str) -> str:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(WIB).date().isoformat()


def truth(records: list[dict[str, Any]], registry: Registry, keys: Keys):  # type: ignore[no-untyped-def]
    hashes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    boards: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["sale_id"] in seen:
            continue
        seen[r["sale_id"]] = r
        booked = seen[r["refund_of"]] if r["kind"] == "refund" else r
        ch, day, a, q = booked["channel"], wib_day(booked["occurred_at"]), r["amount_idr"], r["quantity"]
        root = registry.root(r["event_id"])
        events = [r["event_id"]] + ([registry.events[r["event_id"]].parent]
                                    if registry.events[r["event_id"]].parent else [])
        for ev in events:
            for k in (keys.event_totals(root, ev), keys.ikm_totals(root, ev, r["ikm_id"])):
                h = hashes[k]
                if r["kind"] == "sale":
                    h["amount_idr"] += a; h["gross_idr"] += a; h["count"] += 1; h["quantity"] += q  # noqa: E702
                    h[f"ch:{ch}:amount_idr"] += a; h[f"ch:{ch}:count"] += 1  # noqa: E702
                else:
                    h["amount_idr"] -= a; h["refunds_idr"] += a; h["refund_count"] += 1  # noqa: E702
                    h["quantity"] -= q; h[f"ch:{ch}:amount_idr"] -= a; h[f"ch:{ch}:refunds_idr"] += a  # noqa: E702
            for k in (keys.event_days(root, ev), keys.ikm_days(root, ev, r["ikm_id"])):
                h = hashes[k]
                if r["kind"] == "sale":
                    h[f"{day}:amount_idr"] += a; h[f"{day}:count"] += 1; h[f"{day}:quantity"] += q  # noqa: E702
                else:
                    h[f"{day}:amount_idr"] -= a; h[f"{day}:refunds_idr"] += a; h[f"{day}:quantity"] -= q  # noqa: E702
            boards[keys.board(root, ev)][r["ikm_id"]] += a if r["kind"] == "sale" else -a
    return ({k: {f: v for f, v in h.items() if v} for k, h in hashes.items()},
            {k: dict(v) for k, v in boards.items()})


IGNORED = {"version", "as_of", "last_sale_at", "last_sale_id", "last_amount_idr"}


def redis_totals(client: redis.Redis, keys: Keys):  # type: ignore[no-untyped-def]
    """(hashes, boards) as in Redis: every totals/days hash and board under the prefix."""
    hashes: dict[str, dict[str, int]] = {}
    boards: dict[str, dict[str, int]] = {}
    for raw in client.scan_iter(match=f"{keys.prefix}:*:ev:*", count=1000):
        key = raw.decode()
        if key.endswith(":ticker"):
            continue
        if key.endswith(":board"):
            boards[key] = {m.decode(): int(s) for m, s in client.zrange(key, 0, -1, withscores=True)}
        else:
            hashes[key] = {f.decode(): int(v) for f, v in client.hgetall(key).items()
                           if f.decode() not in IGNORED and int(v) != 0}
    return hashes, boards


def assert_matches(client: redis.Redis, records: list[dict[str, Any]], registry: Registry,
                   keys: Keys) -> None:
    want_h, want_b = truth(records, registry, keys)
    have_h, have_b = redis_totals(client, keys)
    assert set(have_h) == set(want_h), set(have_h) ^ set(want_h)
    for k in want_h:
        diff = {f: (have_h[k].get(f), want_h[k].get(f)) for f in set(have_h[k]) | set(want_h[k])
                if have_h[k].get(f) != want_h[k].get(f)}
        assert not diff, (k, diff)
    assert have_b == want_b


def stats(client: redis.Redis, keys: Keys, root: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(keys.stats(root)).items()}


def sale_bytes(r: dict[str, Any]) -> bytes:
    return json.dumps(r).encode()
