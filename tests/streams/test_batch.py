"""Pure batch planning: routing by root, KEYS via rekap.names, ARGV layout."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from rekap.contract import Reason, Sale
from rekap.names import Keys, dedup_slot
from rekap.records import UNROUTED, ConsumedRecord
from rekap.registry import Registry, load_registry
from rekap.settings import DEFAULT_REGISTRY
from streams.batch import plan_batch, ticker_entry
from streams.script import RECORD_FIELDS

SALE = {"sale_id": "s1", "kind": "sale", "ikm_id": "lampung-ethnica", "event_id": "lagawi-2022-kokas",
        "channel": "offline", "booth_id": "kokas-01", "amount_idr": 100_000, "quantity": 2,
        "occurred_at": "2022-06-01T23:30:00Z"}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(DEFAULT_REGISTRY)


def rec(offset: int, value: dict | bytes, partition: int = 0, key: bytes | None = None) -> ConsumedRecord:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    if key is None and isinstance(value, dict):
        key = value["ikm_id"].encode()
    return ConsumedRecord("sales", partition, offset, key, raw, 1_654_000_000_000)


def test_valid_sale_rolls_up_its_chain_and_keys_come_from_names(registry: Registry) -> None:
    plan = plan_batch([rec(5, SALE)], registry, Keys("p"))
    assert plan.rejections == [] and plan.size == 1
    (group,) = plan.groups
    keys = Keys("p")
    assert group.root == "lagawi-2022"
    assert group.events == ("lagawi-2022-kokas", "lagawi-2022")
    assert group.pairs == (("lagawi-2022-kokas", "lampung-ethnica"), ("lagawi-2022", "lampung-ethnica"))
    assert group.keys[:3] == [keys.fence("lagawi-2022", "sales"), keys.stats("lagawi-2022"),
                              keys.rejects("lagawi-2022")]
    assert keys.board("lagawi-2022", "lagawi-2022") in group.keys
    assert keys.ikm_days("lagawi-2022", "lagawi-2022", "lampung-ethnica") == group.keys[-2]
    # Last, the de-dup bucket of the sale's entry; the record names it by its index there.
    bucket, field = dedup_slot("lampung-ethnica", "s1")
    assert group.keys[-1] == keys.dedup("lagawi-2022", bucket)
    assert all(k.startswith("p:{lagawi-2022}:") for k in group.keys)
    assert group.header == ("sales", "50", "2", "2", "1")
    assert len(group.fields) == len(RECORD_FIELDS)
    fields = group.fields
    assert fields[:4] == ["0", "5", "s", "s1"]
    assert fields[7] == "2022-06-02"  # 23:30 UTC is 06:30 WIB the next day
    assert fields[11:13] == ["0,1", "0,1"]
    assert json.loads(fields[13])["amount_idr"] == 100_000
    assert fields[15:19] == ["0", field.hex(), "", ""]


def test_buckets_are_listed_once_and_refunds_name_their_targets(registry: Registry) -> None:
    sales = [{**SALE, "sale_id": f"s{i}"} for i in range(200)]
    refund = {**SALE, "sale_id": "r1", "kind": "refund", "refund_of": "s7", "amount_idr": 1,
              "quantity": 0}
    plan = plan_batch([rec(i, v) for i, v in enumerate([*sales, refund])], registry, Keys("p"))
    (group,) = plan.groups
    buckets = [k for k in group.keys if ":dedup:" in k]
    ids = [f"s{i}" for i in range(200)] + ["r1"]
    assert len(buckets) == len(set(buckets)) == len({dedup_slot("lampung-ethnica", i)[0]
                                                      for i in ids})
    first_bucket = len(group.keys) - len(buckets)
    n = len(RECORD_FIELDS)
    r = dict(zip(RECORD_FIELDS, group.fields[-n:], strict=True))
    s7 = dict(zip(RECORD_FIELDS, group.fields[7 * n:8 * n], strict=True))
    assert (r["target_bucket"], r["target_digest"]) == (s7["sale_bucket"], s7["sale_digest"])
    target_bucket, target_field = dedup_slot("lampung-ethnica", "s7")
    assert group.keys[first_bucket + int(r["target_bucket"])] == Keys("p").dedup("lagawi-2022",
                                                                                target_bucket)
    assert r["target_digest"] == target_field.hex()


def test_invalid_record_with_a_root_is_fenced_in_that_tree(registry: Registry) -> None:
    bad = {**SALE, "sale_id": "s2", "amount_idr": -1}
    plan = plan_batch([rec(1, SALE), rec(2, bad)], registry, Keys("p"))
    (group,) = plan.groups
    assert group.root == "lagawi-2022"
    assert [r.record.offset for r in group.records] == [1, 2]
    assert plan.rejections[0][1].reason == Reason.NON_POSITIVE_AMOUNT
    second = group.fields[len(RECORD_FIELDS):]
    assert second[2] == "x" and second[13] == "non_positive_amount"


def test_records_without_a_root_go_to_unrouted(registry: Registry) -> None:
    records = [rec(1, b"{not json", key=b"k"), rec(2, {**SALE, "event_id": "nope"}),
               ConsumedRecord("sales", 1, 0, None, None)]
    plan = plan_batch(records, registry, Keys("p"))
    (group,) = plan.groups
    assert group.root == UNROUTED
    assert group.keys == [Keys("p").fence(UNROUTED, "sales"), Keys("p").stats(UNROUTED),
                          Keys("p").rejects(UNROUTED)]
    assert [r.reason for _, r in plan.rejections] == [
        Reason.MALFORMED_JSON, Reason.UNKNOWN_EVENT, Reason.NOT_AN_OBJECT]


def test_key_mismatch_is_a_rejection(registry: Registry) -> None:
    plan = plan_batch([rec(0, SALE, key=b"someone-else")], registry, Keys("p"))
    assert plan.rejections[0][1].reason == Reason.KEY_MISMATCH
    assert plan.groups[0].root == "lagawi-2022"


def test_ticker_entry_is_the_compact_json_of_the_sale() -> None:
    # orjson writes it; the venue page and `watch` read it as json would have written it.
    sale = Sale("h-1", "refund", "ikm-ñ", "lagawi-2022", "website", 125_000, 2,
                datetime(2022, 6, 1, 10, 30, tzinfo=UTC), date(2022, 6, 1), refund_of="s/1")
    text = ticker_entry(sale)
    assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    assert json.loads(text) == {
        "sale_id": "h-1", "kind": "refund", "ikm_id": "ikm-ñ", "event_id": "lagawi-2022",
        "channel": "website", "amount_idr": 125_000, "quantity": 2,
        "occurred_at": "2022-06-01T10:30:00+00:00"}
