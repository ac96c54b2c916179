"""The dead-letter message: one home for its schema.

A record the worker rejects goes to ``REKAP_TOPIC_DEAD_LETTER``, keyed by its
source coordinates ``<topic>/<partition>/<offset>`` (so a replay re-sends the
same key, and compaction keeps one message per record). Value, JSON
(``json.dumps(..., ensure_ascii=False)``, UTF-8)::

    {"schema": "rekap.dead-letter.v1",
     "original": base64 of the record's value, its first MAX_ORIGINAL_BYTES bytes,
     "original_text": those same bytes as text, or null when they are not UTF-8
                      (a cut through a character counts) or would take more than
                      MAX_TEXT_JSON_BYTES as a JSON string (control characters
                      escape to six bytes each),
     "original_size": length of the whole value in bytes (0 for a tombstone),
     "original_sha256": hex SHA-256 of the whole value,
     "original_truncated": true when "original" holds only a prefix,
     "reason": a rekap.contract.Reason, "detail": why, in words (at most
               MAX_DETAIL_CHARS characters),
     "source": {"topic", "partition", "offset",
                "key": the key as text (undecodable bytes replaced), or null,
                "key_base64", "key_truncated": the key is cut to MAX_KEY_BYTES too,
                "timestamp": ms},
     "rejected_at": RFC 3339 UTC}

Every field the first version had keeps its meaning; ``original_size``,
``original_sha256``, ``original_truncated`` and ``key_truncated`` were added.

A dead letter must always fit in a Kafka message (1 MiB by default), or the
worker could never send it and never finish its batch. So the original is cut
to a prefix (the hash still names the whole value, and the sales topic, the
ledger, keeps it whole at the source coordinates), and every other part is
bounded: the message is at most about 700 KB whatever the record.

Nothing in the message can stop it being encoded as UTF-8: ``original_text``
and ``key`` are decoded from bytes, so they cannot hold a lone surrogate, and
the detail is made safe on the way in.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from streams.apply import Outcome

SCHEMA: Final = "rekap.dead-letter.v1"
#: Bytes of the original value kept in a dead letter (base64 makes it ~4/3 of this).
MAX_ORIGINAL_BYTES: Final = 256 * 1024
#: Largest ``original_text`` as an encoded JSON string: room for the quotes and
#: backslashes of a JSON record, not for a value that is mostly control characters.
MAX_TEXT_JSON_BYTES: Final = MAX_ORIGINAL_BYTES * 5 // 4
#: Bytes of the record key kept (a sale's key is an ``ikm_id``, at most 128 characters).
MAX_KEY_BYTES: Final = 1024
MAX_DETAIL_CHARS: Final = 1000


def dead_letter_value(outcome: Outcome, rejected_at: str) -> dict[str, Any]:
    """The dead-letter message of a rejected record: original bytes, reason and coordinates."""
    record = outcome.record
    assert outcome.dead_letter is not None
    reason, detail = outcome.dead_letter
    raw = record.value or b""
    kept = raw[:MAX_ORIGINAL_BYTES]
    key = record.key
    kept_key = key[:MAX_KEY_BYTES] if key is not None else None
    return {
        "schema": SCHEMA,
        "original": base64.b64encode(kept).decode("ascii"),
        "original_text": _text(kept),
        "original_size": len(raw),
        "original_sha256": hashlib.sha256(raw).hexdigest(),
        "original_truncated": len(kept) < len(raw),
        "reason": str(reason),
        "detail": _detail(detail),
        "source": {
            "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "key": kept_key.decode("utf-8", errors="replace") if kept_key is not None else None,
            "key_base64": base64.b64encode(kept_key).decode("ascii") if kept_key is not None else None,
            "key_truncated": key is not None and len(key) > MAX_KEY_BYTES,
            "timestamp": record.timestamp_ms,
        },
        "rejected_at": rejected_at,
    }


def dead_letter_messages(outcomes: Iterable[Outcome]) -> list[tuple[bytes, bytes]]:
    """(key, value) of each rejected record's dead letter: key = its coordinates."""
    rejected_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [(o.record.coordinates.encode(),
             json.dumps(dead_letter_value(o, rejected_at), ensure_ascii=False).encode())
            for o in outcomes]


def _text(kept: bytes) -> str | None:
    try:
        text = kept.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(json.dumps(text, ensure_ascii=False).encode("utf-8")) > MAX_TEXT_JSON_BYTES:
        return None
    return text


def _detail(detail: str) -> str:
    if len(detail) > MAX_DETAIL_CHARS:
        detail = detail[:MAX_DETAIL_CHARS - 1] + "…"
    # A detail quoting input through an exception message could hold a lone surrogate,
    # which would make the whole message unencodable: write it as an escape instead.
    return detail.encode("utf-8", "backslashreplace").decode("utf-8")
