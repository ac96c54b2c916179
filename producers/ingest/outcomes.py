"""Per-item outcomes of an ingest request and the HTTP status each maps to (pure).

Status rules (docs/producers.md repeats them for integrators):

* 400 — the item is not a well-formed sale: ``malformed_json``, ``not_an_object``,
  ``missing_field``, ``wrong_type``, ``bad_id``, ``unsupported_version``,
  ``unknown_kind``, ``bad_timestamp``, and hostile bytes: ``nesting_too_deep``,
  ``number_too_long``, ``invalid_text``.
* 413 — ``record_too_large``: the record would be over Kafka's 1 MiB (it is never retried).
* 422 — well formed, but not a sale the registry accepts: every other contract reason
  (``unknown_ikm``, ``outside_event_window``, ``non_positive_amount`` ...).
* 403 — ``booth_not_allowed`` / ``channel_not_allowed`` / ``sale_id_not_allowed``: the
  token's scope (its booth, its channel and the events taking it, its sale_id namespace).
* 503 — ``kafka_unavailable``: not acknowledged by Kafka; retry the same sale_id.
* 202 — accepted: Kafka acknowledged the record (acks=all).

A batch answers 202 when every item was accepted, 503 (with ``Retry-After``)
when any item is ``unavailable``, else 207 with each item's own status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rekap.contract import Reason

Status = Literal["accepted", "rejected", "unavailable", "ignored"]

SYNTAX_REASONS = frozenset({
    Reason.MALFORMED_JSON, Reason.NOT_AN_OBJECT, Reason.MISSING_FIELD, Reason.WRONG_TYPE,
    Reason.BAD_ID, Reason.UNSUPPORTED_VERSION, Reason.UNKNOWN_KIND, Reason.BAD_TIMESTAMP,
    # hostile bytes (rekap.contract.decode_object): not a well-formed sale either
    Reason.NESTING_TOO_DEEP, Reason.NUMBER_TOO_LONG, Reason.INVALID_TEXT,
})
#: Ingest-only reasons, beside the contract's.
UNAUTHORIZED = "unauthorized"
CHANNEL_NOT_ALLOWED = "channel_not_allowed"
#: A sale_id or refund_of outside the token's namespace (rekap.names.CHANNEL_ID_PREFIX).
SALE_ID_NOT_ALLOWED = "sale_id_not_allowed"
BODY_TOO_LARGE = "body_too_large"
KAFKA_UNAVAILABLE = "kafka_unavailable"
TOO_MANY_ITEMS = "too_many_items"
FORBIDDEN_REASONS = frozenset({Reason.BOOTH_NOT_ALLOWED.value, CHANNEL_NOT_ALLOWED,
                               SALE_ID_NOT_ALLOWED})

#: Seconds a client should wait before retrying after a 503.
RETRY_AFTER_S = 2


def http_status(reason: str) -> int:
    if reason in FORBIDDEN_REASONS:
        return 403
    if reason == KAFKA_UNAVAILABLE:
        return 503
    if reason == Reason.RECORD_TOO_LARGE:
        return 413
    if reason in SYNTAX_REASONS:
        return 400
    return 422


@dataclass(frozen=True)
class Outcome:
    index: int
    status: Status
    sale_id: str | None = None
    reason: str | None = None
    detail: str | None = None
    partition: int | None = None
    offset: int | None = None
    ref: str | None = None

    @property
    def http(self) -> int:
        if self.status == "accepted":
            return 202
        if self.status == "ignored":
            return 200
        return http_status(self.reason or "")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "status": self.status, "http_status": self.http}
        if self.sale_id is not None:
            out["sale_id"] = self.sale_id
        if self.ref is not None:
            out["ref"] = self.ref
        if self.reason is not None:
            out["error"] = {"reason": self.reason, "detail": self.detail}
        if self.partition is not None:
            out["partition"] = self.partition
            out["offset"] = self.offset
        return out


def batch_status(outcomes: list[Outcome]) -> int:
    if any(o.status == "unavailable" for o in outcomes):
        return 503
    if all(o.status in ("accepted", "ignored") for o in outcomes):
        return 202
    return 207
