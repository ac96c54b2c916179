"""The script's wire codec: one layout, read by name on both sides."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from rekap.contract import Sale
from rekap.errors import RedisLostWrites
from rekap.names import CHANNELS
from rekap.registry import build_registry
from streams.script import (
    CHANNEL_CODES,
    RECORD_FIELDS,
    REFUND_CODE,
    SALE_HEAD,
    SALE_NUMBERS,
    Entry,
    decode_reply,
    event_code,
    fence_args,
    pack_rejected,
    pack_sale,
    read_entry,
    sale_entry,
    script_source,
    tree_event_codes,
    wire_args,
)

SALE = Sale(sale_id="s1", kind="refund", ikm_id="ikm", event_id="ev", channel="offline",
            amount_idr=5_000, quantity=1, occurred_at=datetime(2022, 6, 1, 23, 30, tzinfo=UTC),
            day=date(2022, 6, 2), refund_of="s0", booth_id="b")


def test_packed_records_follow_the_named_layout() -> None:
    packed = pack_sale(3, 7, SALE, "0,1", "2,3", "{}", "t", (4, b"\x01" * 10), (0, b"\xff" * 10),
                       event_code("ev"))
    sale = dict(zip(RECORD_FIELDS, packed, strict=True))
    assert sale == {"partition": "3", "offset": "7", "op": "r", "sale_id": "s1", "ikm_id": "ikm",
                    "event_id": "ev", "channel": "offline", "day": "2022-06-02",
                    "amount_idr": "5000", "quantity": "1", "refund_of": "s0",
                    "chain_events": "0,1", "chain_pairs": "2,3", "ticker": "{}",
                    "occurred_at": "t", "sale_bucket": "4", "sale_digest": "01" * 10,
                    "target_bucket": "0", "target_digest": "ff" * 10,
                    "entry": sale_entry(SALE, event_code("ev")).hex()}
    rejected = dict(zip(RECORD_FIELDS, pack_rejected(0, 9, "malformed_json"), strict=True))
    assert (rejected["op"], rejected["ticker"], rejected["offset"]) == ("x", "malformed_json", "9")


def test_entries_are_small_and_read_back() -> None:
    sale = replace(SALE, kind="sale", refund_of=None, amount_idr=150_000, quantity=2)
    code = event_code("ev")
    raw = sale_entry(sale, code)
    assert len(raw) == sum(w for _, w in SALE_HEAD) + len("150000,2,0,0")
    assert read_entry(raw) == Entry(code, "sale", "offline", date(2022, 6, 2),
                                    {"amount_idr": 150_000, "quantity": 2, "refunded_idr": 0,
                                     "refunded_quantity": 0})
    refund = sale_entry(SALE, code)
    assert len(refund) == 9 and read_entry(refund).kind == "refund"
    # A refund's fingerprint tells amount and refund_of apart.
    assert sale_entry(replace(SALE, amount_idr=5_001), code) != refund
    assert sale_entry(replace(SALE, refund_of="s9"), code) != refund
    # Every day Python has fits the 3 bytes; the largest entry stays a listpack value (<= 64).
    assert read_entry(sale_entry(replace(sale, day=date.max), code)).day == date.max
    biggest = sale_entry(replace(sale, amount_idr=2**53, quantity=10**6), code)
    fully_refunded = biggest.removesuffix(b"0,0") + f"{2**53},{10**6}".encode()
    assert read_entry(fully_refunded).numbers["refunded_idr"] == 2**53
    assert len(fully_refunded) == 57 <= 64


def test_channel_codes_cover_every_channel_once() -> None:
    assert set(CHANNEL_CODES) == set(CHANNELS)
    codes = list(CHANNEL_CODES.values())
    assert len(set(codes)) == len(codes) and REFUND_CODE not in codes
    assert all(len(c.encode()) == dict(SALE_HEAD)["kind"] for c in [*codes, REFUND_CODE])


def test_two_events_of_a_tree_may_not_share_an_event_code() -> None:
    # Found by a birthday search over "expo-<n>": the two share 4 bytes of BLAKE2b.
    assert event_code("expo-25478") == event_code("expo-54993")

    def event(id_: str, parent: str = "") -> dict[str, object]:
        return {"id": id_, "starts_on": date(2024, 1, 1), "ends_on": date(2024, 1, 2),
                "parent": parent}

    apart = build_registry({"events": [event("expo-25478"), event("expo-54993")]})
    assert tree_event_codes(apart, "expo-54993").of("expo-54993") == event_code("expo-54993")
    together = build_registry({"events": [event("expo-25478"), event("expo-54993", "expo-25478"),
                                          event("expo-1", "expo-25478")]})
    codes = tree_event_codes(together, "expo-25478")
    assert codes.of("expo-1") == event_code("expo-1")
    for event_id in ("expo-25478", "expo-54993"):
        with pytest.raises(ValueError, match="share the de-dup code 92d5197b"):
            codes.of(event_id)


def test_the_script_reads_fields_by_the_generated_names() -> None:
    source = script_source()
    assert f"local NF = {len(RECORD_FIELDS)}" in source
    for i, name in enumerate(RECORD_FIELDS, 1):
        assert f"local R_{name.upper()} = {i}\n" in source
    for i, name in enumerate(SALE_NUMBERS, 1):
        assert f"local S_{name.upper()} = {i}\n" in source
    assert "local E_DAY = 6\nlocal E_DAY_END = 8\nlocal E_NUMBERS = 9\n" in source
    # No positional read of a packed record or an entry is left in the script.
    assert not re.search(r"A\[b \+ \d+\]|\bn\[\d+\]|ssub\((entry|target|booked|a|b), \d", source)
    assert "\n-- @layout\n" not in source


def test_wire_args_and_reply() -> None:
    fences = fence_args("r", {0: 10, 2: 4}, {("r", 0): 8})
    assert fences == '["0","8","10","2","-1","4"]'
    argv = wire_args(("sales", "50", "1", "1", "1"), ["a", "b"], "now", fences)
    assert argv == ["now", "sales", "50", "1", "1", "1", b'["a","b"]', fences]
    reply = decode_reply('[["applied",""],[["amount_idr","5"]],{},["0","10"]]', "r", 1, 2)
    assert reply.outcomes == ["applied", ""]
    assert reply.event_totals == [{"amount_idr": "5"}] and reply.pair_totals == [{}, {}]
    assert reply.fences == {0: 10}
    with pytest.raises(RedisLostWrites) as lost:
        decode_reply('{"lost":["0","3"]}', "r", 1, 1)
    assert lost.value.fences == {("r", 0): 3}
