"""A dead letter carries the original, says whether it is whole, and always fits in a Kafka message."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import pytest

from rekap.contract import Reason
from rekap.records import ConsumedRecord
from streams.apply import Outcome
from streams.deadletter import (
    MAX_DETAIL_CHARS,
    MAX_KEY_BYTES,
    MAX_ORIGINAL_BYTES,
    MAX_TEXT_JSON_BYTES,
    SCHEMA,
    dead_letter_value,
)

AT = "2022-06-01T03:00:00.000Z"
#: Kafka's default largest message (message.max.bytes), the size a dead letter must stay under.
KAFKA_MAX_MESSAGE = 1_048_588
TEN_MB = 10 * 1024 * 1024


def outcome(value: bytes | None, key: bytes | None = b"littlemonq", detail: str = "kind must be 'sale'",
            reason: Reason = Reason.UNKNOWN_KIND) -> Outcome:
    record = ConsumedRecord(topic="rekap.sales", partition=2, offset=41, key=key, value=value,
                            timestamp_ms=1_654_052_400_000)
    return Outcome(record, "rejected", str(reason), detail, dead_letter=(reason, detail))


def wire(message: dict[str, Any]) -> bytes:
    """The bytes the worker sends (streams/agents.py: json.dumps, ensure_ascii=False, UTF-8)."""
    return json.dumps(message, ensure_ascii=False).encode("utf-8")


def test_a_small_value_is_kept_whole_and_round_trips() -> None:
    value = '{"sale_id":"s-1","kind":"void","sku":"tapis-é"}'.encode()
    message = dead_letter_value(outcome(value), AT)
    assert base64.b64decode(message["original"]) == value
    assert message["original_text"] == value.decode("utf-8")
    assert message["original_truncated"] is False
    assert message["original_size"] == len(value)
    assert message["original_sha256"] == hashlib.sha256(value).hexdigest()
    assert message["schema"] == SCHEMA == "rekap.dead-letter.v1"
    assert message["reason"] == "unknown_kind"
    assert message["detail"] == "kind must be 'sale'"
    assert message["rejected_at"] == AT
    assert message["source"] == {
        "topic": "rekap.sales", "partition": 2, "offset": 41, "key": "littlemonq",
        "key_base64": base64.b64encode(b"littlemonq").decode(), "key_truncated": False,
        "timestamp": 1_654_052_400_000}
    assert json.loads(wire(message)) == message


def test_a_value_that_is_not_utf8_has_no_text_but_keeps_its_bytes() -> None:
    value = b'{"sale_id": "\xff\xfe"}'
    message = dead_letter_value(outcome(value), AT)
    assert message["original_text"] is None
    assert base64.b64decode(message["original"]) == value
    assert message["original_truncated"] is False


def test_a_tombstone_is_an_empty_original() -> None:
    message = dead_letter_value(outcome(None, reason=Reason.NOT_AN_OBJECT), AT)
    assert message["original"] == "" and message["original_text"] == ""
    assert message["original_size"] == 0
    assert message["original_sha256"] == hashlib.sha256(b"").hexdigest()


def test_a_10_mb_binary_value_is_cut_to_a_prefix_and_the_message_stays_small() -> None:
    value = os.urandom(TEN_MB)
    message = dead_letter_value(outcome(value, reason=Reason.RECORD_TOO_LARGE), AT)
    assert len(wire(message)) < 400_000
    assert message["original_truncated"] is True
    assert message["original_size"] == TEN_MB
    assert message["original_sha256"] == hashlib.sha256(value).hexdigest()
    assert base64.b64decode(message["original"]) == value[:MAX_ORIGINAL_BYTES]
    assert message["original_text"] is None


def test_a_10_mb_text_value_keeps_its_prefix_as_text_and_fits_a_kafka_message() -> None:
    value = b'{"sku": "' + b"x" * TEN_MB + b'"}'
    message = dead_letter_value(outcome(value, reason=Reason.RECORD_TOO_LARGE), AT)
    assert message["original_truncated"] is True
    assert message["original_text"] == value[:MAX_ORIGINAL_BYTES].decode()
    assert message["original_sha256"] == hashlib.sha256(value).hexdigest()
    assert len(wire(message)) < 700_000


def test_a_prefix_cut_through_a_character_is_not_text() -> None:
    value = b"a" * (MAX_ORIGINAL_BYTES - 1) + "é".encode() * 10  # é is two bytes
    message = dead_letter_value(outcome(value), AT)
    assert message["original_truncated"] is True
    assert message["original_text"] is None


def test_text_that_json_would_blow_up_is_left_to_the_bytes() -> None:
    # Control characters are valid UTF-8 but json.dumps writes each as \u00XX (six bytes).
    value = b"\x01" * MAX_ORIGINAL_BYTES
    message = dead_letter_value(outcome(value), AT)
    assert message["original_text"] is None
    assert base64.b64decode(message["original"]) == value
    assert len(wire(message)) < 400_000
    small = b"\x01" * (MAX_TEXT_JSON_BYTES // 6 - 10)
    assert dead_letter_value(outcome(small), AT)["original_text"] == small.decode()


@pytest.mark.parametrize("key", [None, b"\xff\xfelittlemonq"])
def test_a_missing_or_undecodable_key(key: bytes | None) -> None:
    message = dead_letter_value(outcome(b"{}", key=key, reason=Reason.KEY_MISMATCH), AT)
    source = message["source"]
    if key is None:
        assert source["key"] is None and source["key_base64"] is None
    else:
        assert source["key"] == "\ufffd\ufffdlittlemonq"
        assert base64.b64decode(source["key_base64"]) == key
    assert source["key_truncated"] is False
    wire(message)


def test_a_huge_key_is_cut_too() -> None:
    key = b"\x00" * (TEN_MB // 10)
    message = dead_letter_value(outcome(b"{}", key=key, reason=Reason.KEY_MISMATCH), AT)
    assert message["source"]["key_truncated"] is True
    assert base64.b64decode(message["source"]["key_base64"]) == key[:MAX_KEY_BYTES]
    assert len(wire(message)) < 20_000


def test_the_detail_is_clipped_and_always_encodable() -> None:
    message = dead_letter_value(outcome(b"{}", detail="\ud800" + "x" * 5000,
                                        reason=Reason.INTERNAL_ERROR), AT)
    assert len(message["detail"]) <= MAX_DETAIL_CHARS + len("\\ud800")
    assert message["detail"].startswith("\\ud800xxx") and message["detail"].endswith("…")
    wire(message)


def test_the_worst_record_still_fits_a_kafka_message() -> None:
    # Everything at its bound at once: a value whose text escapes just under the
    # text limit, a huge key of control characters, a long detail of control characters.
    quotes = MAX_TEXT_JSON_BYTES - MAX_ORIGINAL_BYTES - 10  # each is written as \"
    value = b'"' * quotes + b"x" * (MAX_ORIGINAL_BYTES - quotes)
    key = b"\x01" * TEN_MB
    message = dead_letter_value(outcome(value, key=key, detail="\x01" * 10_000), AT)
    assert message["original_text"] is not None
    assert len(wire(message)) < KAFKA_MAX_MESSAGE * 0.7
