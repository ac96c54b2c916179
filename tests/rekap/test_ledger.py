"""The pure ledger model (used by reconcile): the rules, without Redis."""

from __future__ import annotations

import json

from rekap.ledger import fold
from rekap.names import Keys
from rekap.records import ConsumedRecord
from rekap.registry import load_registry
from rekap.settings import DEFAULT_REGISTRY

REG = load_registry(DEFAULT_REGISTRY)
K = Keys("p")
R = "lagawi-2022"
SALE = {"sale_id": "s1", "kind": "sale", "ikm_id": "littlemonq", "event_id": "lagawi-2022-kokas",
        "channel": "offline", "booth_id": "kokas-03", "amount_idr": 100_000, "quantity": 4,
        "occurred_at": "2022-06-01T23:30:00Z"}


def records(*values: dict) -> list[ConsumedRecord]:
    return [ConsumedRecord("t", 0, i, v["ikm_id"].encode(), json.dumps(v).encode())
            for i, v in enumerate(values)]


def refund(sid: str, amount: int, qty: int = 0, of: str = "s1", **kw: object) -> dict:
    return {**SALE, "sale_id": sid, "kind": "refund", "refund_of": of, "amount_idr": amount,
            "quantity": qty, "occurred_at": "2022-06-03T10:00:00+07:00", **kw}


def test_refunds_full_partial_exceeding_unknown_and_rollup() -> None:
    ledger = fold(records(SALE, refund("r1", 30_000, 1), refund("r2", 80_000),
                          refund("r3", 70_000, 3), refund("r4", 1, of="missing"),
                          {**SALE, "sale_id": "s1"}, {**SALE, "amount_idr": 5}), REG, K)
    for event in ("lagawi-2022-kokas", "lagawi-2022"):
        totals = ledger.hashes[K.event_totals(R, event)]
        assert totals["amount_idr"] == 0 and totals["gross_idr"] == 100_000
        assert totals["refunds_idr"] == 100_000 and totals["refund_count"] == 2
        assert totals["quantity"] == 0 and totals["count"] == 1
        # refunds are booked in the sale's channel and (WIB) day, not their own day
        assert totals["ch:offline:refunds_idr"] == 100_000
        days = ledger.hashes[K.event_days(R, event)]
        assert days["2022-06-02:refunds_idr"] == 100_000 and days["2022-06-02:count"] == 1
        assert "2022-06-03:refunds_idr" not in days
        assert ledger.boards[K.board(R, event)] == {"littlemonq": 0}
    assert ledger.stats[R] == {"applied": 3, "rejected:refund_exceeds_sale": 1,
                               "rejected:unknown_refund_target": 1, "duplicate:sale_id": 1,
                               "rejected:sale_id_conflict": 1}
    assert ledger.records[R] == 7


def test_a_refund_must_come_through_the_channel_of_its_sale() -> None:
    online = {**SALE, "event_id": R, "channel": "marketplace", "booth_id": None,
              "sale_id": "mp:tokopedia:littlemonq:1", "occurred_at": "2022-04-01T10:00:00+07:00"}
    other = refund("web:esmartikm:1:refund:1", 1_000, of=online["sale_id"], event_id=R,
                   channel="website", booth_id=None, occurred_at=online["occurred_at"])
    own = {**other, "sale_id": "mp:tokopedia:littlemonq:1:refund:1", "channel": "marketplace"}
    booth = refund("01HZZREFUND000000000000001", 1_000, of=online["sale_id"], event_id=R,
                   occurred_at=online["occurred_at"])  # offline, naming the marketplace sale
    ledger = fold(records(online, other, booth, own), REG, K)
    assert ledger.stats[R] == {"applied": 2, "rejected:refund_mismatch": 1,
                               # an offline record in the programme names no booth of it
                               "rejected:booth_not_allowed": 1}
    assert ledger.hashes[K.event_totals(R, R)]["ch:marketplace:refunds_idr"] == 1_000
    assert fold(records(online, other), REG, K).stats[R] == {
        "applied": 1, "rejected:refund_mismatch": 1}


def test_limits_skip_records_above_the_fence() -> None:
    ledger = fold(records(SALE, {**SALE, "sale_id": "s2"}), REG, K, limits={(R, 0): 0})
    assert ledger.hashes[K.event_totals(R, R)]["count"] == 1
    assert ledger.total_amount == 100_000


def test_sale_id_is_scoped_to_the_ikm_so_partition_interleaving_cannot_change_an_outcome() -> None:
    # Two IKM (two record keys, so two partitions) both use sale_id s1 and refund their own s1;
    # IKM B also names s2, a sale only IKM A has: with a global sale_id that refund would be
    # unknown or a mismatch depending on which partition was read first.
    def on(partition: int, *values: dict) -> list[ConsumedRecord]:
        return [ConsumedRecord("t", partition, i, v["ikm_id"].encode(), json.dumps(v).encode())
                for i, v in enumerate(values)]

    b_ikm = "askha-jaya"
    a = on(0, SALE, refund("r1", 10_000), {**SALE, "sale_id": "s2"})
    b_booth = {"ikm_id": b_ikm, "booth_id": "kokas-05"}
    b = on(1, {**SALE, **b_booth, "amount_idr": 70_000},
           refund("r1", 5_000, **b_booth), refund("r2", 1, of="s2", **b_booth))
    a_first, b_first = fold([*a, *b], REG, K), fold([*b, *a], REG, K)
    interleaved = fold([b[0], a[0], b[1], a[1], a[2], b[2]], REG, K)
    for ledger in (a_first, b_first, interleaved):
        assert ledger.stats[R] == {"applied": 5, "rejected:unknown_refund_target": 1}
        assert ledger.boards[K.board(R, R)] == {"littlemonq": 190_000, b_ikm: 65_000}
    assert a_first.hashes == b_first.hashes == interleaved.hashes
