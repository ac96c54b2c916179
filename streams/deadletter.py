"""The dead-letter message: one home for its schema.

A record the worker rejects goes to ``REKAP_TOPIC_DEAD_LETTER``, keyed by its
source coordinates ``<topic>/<partition>/<offset>`` (so a replay re-sends the
same key, and compaction keeps one message per record). Value, JSON::

    {"schema": "rekap.dead-letter.v1",
     "original": base64 of the record's value (its first MAX_ORIGINAL_BYTES bytes),
     "original_text": the same bytes as text, or null when they are not UTF-8,
     "original_size": length of the whole value in bytes,
     "original_sha256": hex SHA-256 of the whole value,
     "original_truncated": true when "original" holds only a prefix,
     "reason": a rekap.contract.Reason, "detail": why, in words (at most MAX_DETAIL_CHARS),
     "source": {"topic", "partition", "offset", "key" (text, undecodable bytes replaced),
                "key_base64", "timestamp" (ms)},
     "rejected_at": RFC 3339 UTC}

A dead letter must always fit in a Kafka message, or the worker could never
acknowledge its batch: the original is cut to a prefix (the hash still names
the whole value, and the sales topic, the ledger, keeps it whole).
``original_text`` is decoded from bytes, so it never holds a lone surrogate.
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from streams.apply import Outcome

SCHEMA: Final = "rekap.dead-letter.v1"
#: Bytes of the original value kept in a dead letter (base64 makes it ~4/3 of this).
MAX_ORIGINAL_BYTES: Final = 256 * 1024
MAX_DETAIL_CHARS: Final = 1000


def dead_letter_value(outcome: Outcome, rejected_at: str) -> dict[str, Any]:
    """The dead-letter message of a rejected record: original bytes, reason and coordinates."""
    record = outcome.record
    assert outcome.dead_letter is not None
    reason, detail = outcome.dead_letter
    raw = record.value or b""
    kept = raw[:MAX_ORIGINAL_BYTES]
    try:
        text: str | None = kept.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    key = record.key
    return {
        "schema": SCHEMA,
        "original": base64.b64encode(kept).decode("ascii"),
        "original_text": text,
        "original_size": len(raw),
        "original_sha256": hashlib.sha256(raw).hexdigest(),
        "original_truncated": len(kept) < len(raw),
        "reason": str(reason),
        "detail": detail[:MAX_DETAIL_CHARS],
        "source": {
            "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "key": key.decode("utf-8", errors="replace") if key is not None else None,
            "key_base64": base64.b64encode(key).decode("ascii") if key is not None else None,
            "timestamp": record.timestamp_ms,
        },
        "rejected_at": rejected_at,
    }
