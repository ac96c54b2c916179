"""Poison records for the sales topic: each one malformed in a way that has broken consumers.

Every record here must be rejected, whatever parser reads it: besides its poison, each
sale-shaped record carries a defect the contract rejects on its own (a zero or negative
amount, an unknown IKM, a time outside the event, a key that is not its ``ikm_id``), so
a parser that copes with the poison still finds it invalid and the ground truth of the
stream does not change. Keys cycle through registered IKM, so the records land on
several partitions beside the simulator's.
"""

from __future__ import annotations

import json
import random
from typing import Any

from tests.faults.harness import Poison
from tests.streams.crafted import GOOD

#: The broker's default largest record is 1 MiB: this one fits under it.
NEAR_LIMIT_BYTES = 900_000
#: Needs the topic's max.message.bytes raised (see ``raise_max_message_bytes``).
HUGE_BYTES = 10_000_000
#: What the scenario raises the sales topic's max.message.bytes to, for :data:`HUGE_BYTES`.
HUGE_TOPIC_LIMIT = 16 * 1024 * 1024
DEPTH = 100_000


def poison_records(ikm_ids: list[str], seed: int) -> list[Poison]:
    """The poison list, in produce order (the 10 MB record last)."""
    rng = random.Random(seed)
    out: list[Poison] = []

    def sale(label: str, **changes: Any) -> dict[str, Any]:
        ikm = ikm_ids[len(out) % len(ikm_ids)]
        return {**GOOD, "sale_id": f"poison-{label}", "ikm_id": ikm, **changes}

    def add(label: str, value: bytes | None, *, key: bytes | None = None,
            record: dict[str, Any] | None = None) -> None:
        if key is None:
            key = str(record["ikm_id"] if record else ikm_ids[len(out) % len(ikm_ids)]).encode()
        out.append(Poison(label, key, value))

    def add_json(label: str, record: dict[str, Any]) -> None:
        # json.dumps writes NaN/Infinity and \\udXXX escapes as Python's json accepts them.
        add(label, json.dumps(record).encode(), record=record)

    r = sale("deep", amount_idr=0, note="@@")
    add("json nested 100,000 deep", json.dumps(r).encode().replace(
        b'"@@"', b"[" * DEPTH + b"]" * DEPTH), record=r)
    r = sale("digits")
    add("5,000-digit amount", json.dumps({**r, "amount_idr": "@@"}).encode().replace(
        b'"@@"', b"9" * 5_000), record=r)
    r = sale("utf8", amount_idr=0)
    add("invalid UTF-8", json.dumps(r).encode().replace(b"poison-utf8", b"poison-\xff\xfe\xc3"),
        record=r)
    r = sale("cesu", amount_idr=0)
    add("UTF-8-encoded surrogate", json.dumps(r).encode().replace(b"poison-cesu", b"poison-\xed\xa0\x80"),
        record=r)
    add_json("lone surrogate in sale_id", sale("x", sale_id="poison-\ud800"))
    add_json("lone surrogate in channel", sale("channel", channel="website\udfff"))
    add_json("lone surrogate in sku", sale("sku", sku="\ud800\udbff", amount_idr=0))
    add_json("NaN amount", sale("nan", amount_idr=float("nan")))
    add_json("Infinity quantity", sale("inf", quantity=float("inf")))
    add_json("-Infinity amount", sale("neginf", amount_idr=float("-inf")))
    add_json("year 0001 +14:00", sale("y1", occurred_at="0001-01-01T00:00:00+14:00"))
    add_json("year 9999 -23:59", sale("y9999", occurred_at="9999-12-31T23:59:59-23:59"))
    r = sale("big", ikm_id="ikm-tidak-terdaftar", note="")
    r["note"] = "x" * (NEAR_LIMIT_BYTES - len(json.dumps(r)))
    add("~900 KB value", json.dumps(r).encode(), record=r)
    add("random bytes", rng.randbytes(4096))
    add("tombstone", None)
    r = sale("key")
    add("non-UTF-8 key", json.dumps(r).encode(), key=b"\xff\xfe" + r["ikm_id"].encode())
    r = sale("huge", amount_idr=-5, note="")
    r["note"] = "y" * (HUGE_BYTES - len(json.dumps(r)))
    add("10 MB value", json.dumps(r).encode(), record=r)
    return out
