"""One crafted record per rejection reason (key, value, expected reason), for the worker tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rekap.contract import Reason
from rekap.settings import DEFAULT_REGISTRY

GOOD = {"sale_id": "c-good", "kind": "sale", "ikm_id": "seruit-kita", "event_id": "lagawi-2022",
        "channel": "website", "amount_idr": 20_000, "quantity": 1,
        "occurred_at": "2022-04-10T10:00:00+07:00"}
OFFLINE = {**GOOD, "event_id": "lagawi-2022-kokas", "channel": "offline",
           "ikm_id": "lampung-ethnica", "booth_id": "kokas-01",
           "occurred_at": "2022-06-02T10:00:00+07:00"}


#: Registered, but in no event: see :func:`write_registry`.
OUTSIDER = "ikm-luar-program"


def write_registry(path: Path) -> Path:
    """The Lagawi Fest registry plus one IKM that takes part in no event."""
    path.write_text(DEFAULT_REGISTRY.read_text() + f'\n[[ikm]]\nid = "{OUTSIDER}"\n'
                    'name = "IKM di luar program"\n')
    return path


def _v(d: dict[str, Any]) -> bytes:
    return json.dumps(d).encode()


def without(d: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != name}


def crafted() -> list[tuple[bytes | None, bytes, Reason]]:
    """Records in send order. The ledger cases come after the good sale they refer to."""
    k = GOOD["ikm_id"].encode()
    cases: list[tuple[bytes | None, bytes, Reason]] = [
        (k, b'{"sale_id": "x", \xff', Reason.MALFORMED_JSON),
        (k, b"[1, 2, 3]", Reason.NOT_AN_OBJECT),
        (k, _v(without(GOOD, "amount_idr") | {"sale_id": "c1"}), Reason.MISSING_FIELD),
        (k, _v(GOOD | {"sale_id": "c2", "amount_idr": "20000"}), Reason.WRONG_TYPE),
        (k, _v(GOOD | {"sale_id": "bad id!"}), Reason.BAD_ID),
        (k, _v(GOOD | {"sale_id": "c3", "schema_version": 2}), Reason.UNSUPPORTED_VERSION),
        (k, _v(GOOD | {"sale_id": "c4", "kind": "gift"}), Reason.UNKNOWN_KIND),
        (k, _v(GOOD | {"sale_id": "c5", "channel": "tiktok"}), Reason.UNKNOWN_CHANNEL),
        (k, _v(GOOD | {"sale_id": "c6", "amount_idr": 0}), Reason.NON_POSITIVE_AMOUNT),
        (k, _v(GOOD | {"sale_id": "c7", "amount_idr": 500_000_001}), Reason.AMOUNT_TOO_LARGE),
        (k, _v(GOOD | {"sale_id": "c8", "quantity": 0}), Reason.BAD_QUANTITY),
        (k, _v(GOOD | {"sale_id": "c9", "occurred_at": "yesterday"}), Reason.BAD_TIMESTAMP),
        (k, _v(GOOD | {"sale_id": "c10", "event_id": "no-such-event"}), Reason.UNKNOWN_EVENT),
        (b"ghost-ikm", _v(GOOD | {"sale_id": "c11", "ikm_id": "ghost-ikm"}), Reason.UNKNOWN_IKM),
        (OUTSIDER.encode(), _v(GOOD | {"sale_id": "c12", "ikm_id": OUTSIDER}),
         Reason.IKM_NOT_IN_EVENT),
        (k, _v(GOOD | {"sale_id": "c13", "occurred_at": "2022-07-01T10:00:00+07:00"}),
         Reason.OUTSIDE_EVENT_WINDOW),
        (b"lampung-ethnica", _v(without(OFFLINE, "booth_id") | {"sale_id": "c14"}),
         Reason.BOOTH_REQUIRED),
        (b"lampung-ethnica", _v(OFFLINE | {"sale_id": "c15", "booth_id": "kokas-99"}),
         Reason.UNKNOWN_BOOTH),
        (b"lampung-ethnica", _v(OFFLINE | {"sale_id": "c16", "booth_id": "kokas-02"}),
         Reason.BOOTH_NOT_ALLOWED),
        # An online sale in the booths-only exhibition (its registry channels).
        (b"lampung-ethnica", _v(without(OFFLINE, "booth_id") | {"sale_id": "c24",
                                                                "channel": "website"}),
         Reason.CHANNEL_NOT_IN_EVENT),
        (k, _v(GOOD | {"sale_id": "c17", "kind": "refund"}), Reason.REFUND_WITHOUT_TARGET),
        (b"someone-else", _v(GOOD | {"sale_id": "c18"}), Reason.KEY_MISMATCH),
        (k, _v(GOOD), None),  # type: ignore[list-item]  # the good sale the ledger cases use
        (k, _v(GOOD | {"sale_id": "c19", "kind": "refund", "refund_of": "c-missing"}),
         Reason.UNKNOWN_REFUND_TARGET),
        (k, _v(GOOD | {"sale_id": "c21", "kind": "refund", "refund_of": "c-good",
                       "amount_idr": 20_001}), Reason.REFUND_EXCEEDS_SALE),
        (k, _v(GOOD | {"amount_idr": 1}), Reason.SALE_ID_CONFLICT),
    ]
    # refund_mismatch: a refund (valid on its own) naming another refund.
    cases += [
        (k, _v(GOOD | {"sale_id": "c22", "kind": "refund", "refund_of": "c-good", "amount_idr": 1,
                       "quantity": 0}), None),  # type: ignore[list-item]
        (k, _v(GOOD | {"sale_id": "c23", "kind": "refund", "refund_of": "c22", "amount_idr": 1,
                       "quantity": 0}), Reason.REFUND_MISMATCH),
    ]
    return cases
