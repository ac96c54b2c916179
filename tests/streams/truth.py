"""What Redis must hold after a stream of sale dicts, and what it does hold.

The expectation is the ledger model's (:func:`rekap.ledger.fold_sent`, in the
order the records were sent); Redis is read the way ``rekap reconcile`` reads it
(:func:`consumers.reconcile.snapshot`). Neither rule nor read is written here.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from consumers.reconcile import compare_totals, snapshot
from rekap.ledger import BOOKKEEPING_FIELDS, fold_sent
from rekap.names import Keys
from rekap.registry import Registry

Hashes = dict[str, dict[str, int]]

#: Bookkeeping fields of a totals hash, left out of every comparison.
IGNORED = BOOKKEEPING_FIELDS


def redis_totals(client: redis.Redis, keys: Keys) -> tuple[Hashes, Hashes]:
    """(hashes, boards) as in Redis: every totals/days hash (zero fields left out) and board."""
    trees = snapshot(client, keys, "")
    hashes = {k: {f: v for f, v in h.items() if v} for t in trees.values()
              for k, h in t.hashes.items()}
    boards = {k: b for t in trees.values() for k, b in t.boards.items()}
    return hashes, boards


def assert_matches(client: redis.Redis, records: list[dict[str, Any]], registry: Registry,
                   keys: Keys) -> None:
    """Redis holds exactly the totals, day buckets and boards of ``records`` (sent in order)."""
    ledger = fold_sent(((str(r["ikm_id"]).encode(), sale_bytes(r)) for r in records),
                       registry, keys)
    diffs = compare_totals(ledger, snapshot(client, keys, ""))
    assert not diffs, "\n".join(diffs[:20])


def stats(client: redis.Redis, keys: Keys, root: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(keys.stats(root)).items()}


def sale_bytes(r: dict[str, Any]) -> bytes:
    return json.dumps(r).encode()
