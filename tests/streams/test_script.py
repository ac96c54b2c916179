"""The script's wire codec: one layout, read by name on both sides."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest

from rekap.contract import Sale
from rekap.errors import RedisLostWrites
from streams.script import (
    RECORD_FIELDS,
    SALE_FIELDS,
    decode_reply,
    fence_args,
    pack_rejected,
    pack_sale,
    script_source,
    wire_args,
)

SALE = Sale(sale_id="s1", kind="refund", ikm_id="ikm", event_id="ev", channel="offline",
            amount_idr=5_000, quantity=1, occurred_at=datetime(2022, 6, 1, 23, 30, tzinfo=UTC),
            day=date(2022, 6, 2), refund_of="s0", booth_id="b")


def test_packed_records_follow_the_named_layout() -> None:
    sale = dict(zip(RECORD_FIELDS, pack_sale(3, 7, SALE, "0,1", "2,3", "{}", "t"), strict=True))
    assert sale == {"partition": "3", "offset": "7", "op": "r", "sale_id": "s1", "ikm_id": "ikm",
                    "event_id": "ev", "channel": "offline", "day": "2022-06-02",
                    "amount_idr": "5000", "quantity": "1", "refund_of": "s0",
                    "chain_events": "0,1", "chain_pairs": "2,3", "ticker": "{}",
                    "occurred_at": "t"}
    rejected = dict(zip(RECORD_FIELDS, pack_rejected(0, 9, "malformed_json"), strict=True))
    assert (rejected["op"], rejected["ticker"], rejected["offset"]) == ("x", "malformed_json", "9")


def test_the_script_reads_fields_by_the_generated_names() -> None:
    source = script_source()
    assert f"local NF = {len(RECORD_FIELDS)}" in source
    for i, name in enumerate(RECORD_FIELDS, 1):
        assert f"local R_{name.upper()} = {i}\n" in source
    for i, name in enumerate(SALE_FIELDS, 1):
        assert f"local S_{name.upper()} = {i}\n" in source
    # No positional read of a packed record or a booked sale is left in the script.
    assert not re.search(r"A\[b \+ \d+\]|\b[es]\[\d+\]", source)
    assert "\n-- @layout\n" not in source


def test_wire_args_and_reply() -> None:
    fences = fence_args("r", {0: 10, 2: 4}, {("r", 0): 8})
    assert fences == '["0","8","10","2","-1","4"]'
    argv = wire_args(("sales", "50", "1", "1", "1"), ["a", "b"], "now", fences)
    assert argv == ["now", "sales", "50", "1", "1", "1", '["a","b"]', fences]
    reply = decode_reply('[["applied",""],[["amount_idr","5"]],{},["0","10"]]', "r", 1, 2)
    assert reply.outcomes == ["applied", ""]
    assert reply.event_totals == [{"amount_idr": "5"}] and reply.pair_totals == [{}, {}]
    assert reply.fences == {0: 10}
    with pytest.raises(RedisLostWrites) as lost:
        decode_reply('{"lost":["0","3"]}', "r", 1, 1)
    assert lost.value.fences == {("r", 0): 3}
