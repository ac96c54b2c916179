"""Pure batch planning: routing by root, KEYS via rekap.names, ARGV layout."""

from __future__ import annotations

import json

import pytest

from rekap.contract import Reason
from rekap.names import Keys
from rekap.records import UNROUTED, ConsumedRecord
from rekap.registry import Registry, load_registry
from rekap.settings import DEFAULT_REGISTRY
from streams.batch import plan_batch
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
    assert group.keys[:4] == [keys.fence("lagawi-2022", "sales"), keys.stats("lagawi-2022"),
                              keys.sales("lagawi-2022"), keys.rejects("lagawi-2022")]
    assert keys.board("lagawi-2022", "lagawi-2022") in group.keys
    assert keys.ikm_days("lagawi-2022", "lagawi-2022", "lampung-ethnica") == group.keys[-1]
    assert all(k.startswith("p:{lagawi-2022}:") for k in group.keys)
    assert group.header == ("sales", "50", "2", "2", "1")
    assert len(group.fields) == len(RECORD_FIELDS)
    fields = group.fields
    assert fields[:4] == ["0", "5", "s", "s1"]
    assert fields[7] == "2022-06-02"  # 23:30 UTC is 06:30 WIB the next day
    assert fields[11:13] == ["0,1", "0,1"]
    assert json.loads(fields[13])["amount_idr"] == 100_000


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
                          Keys("p").sales(UNROUTED), Keys("p").rejects(UNROUTED)]
    assert [r.reason for _, r in plan.rejections] == [
        Reason.MALFORMED_JSON, Reason.UNKNOWN_EVENT, Reason.NOT_AN_OBJECT]


def test_key_mismatch_is_a_rejection(registry: Registry) -> None:
    plan = plan_batch([rec(0, SALE, key=b"someone-else")], registry, Keys("p"))
    assert plan.rejections[0][1].reason == Reason.KEY_MISMATCH
    assert plan.groups[0].root == "lagawi-2022"
