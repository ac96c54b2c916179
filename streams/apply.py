"""Redis apply: run the planned groups of a batch through ``lua/apply_batch.lua``.

One script call per (batch, root) group, so each tree's fence, de-dup and
increments change together or not at all. The script is registered once
(redis-py ``AsyncScript``: EVALSHA, reloaded on ``NOSCRIPT``) and every key it
touches is passed in ``KEYS``.

Semantics, per record of a group (see the script's header for the details):

* ``applied`` — first time seen: totals of its event and every ancestor changed;
* ``duplicate:offset`` — offset at or below the tree's fence for its partition:
  a re-delivery after a crash or rebalance, counted and otherwise ignored. If the
  ledger had rejected it the first time, the stored reason comes back so the
  dead letter is sent again with the same reason;
* ``duplicate:sale_id`` — a resend of an applied sale (same ikm, event, amount,
  kind, refund_of): counted once;
* ``rejected:<reason>`` — a validation reason, or one of the ledger reasons
  ``unknown_refund_target``, ``refund_mismatch``, ``refund_exceeds_sale``,
  ``sale_id_conflict``.

The result carries the absolute contents of every event and IKM totals hash the
group touched, changed or fenced alike, so a batch replayed after a crash
between Redis and the Kafka publish re-publishes the same versions.

Redis errors become :class:`rekap.errors.RedisUnavailable` here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from rekap.contract import Reason, Sale
from rekap.names import Keys
from rekap.redisconn import unavailable
from rekap.settings import Settings
from streams.batch import HEADER_ARGS, BatchPlan, ConsumedRecord, RootGroup

SCRIPT_NAME = "apply_batch.lua"


def script_source() -> str:
    return files("streams").joinpath("lua", SCRIPT_NAME).read_text(encoding="utf-8")


Status = Literal["applied", "duplicate", "rejected"]


@dataclass(frozen=True)
class Outcome:
    """What the script did with one record."""

    record: ConsumedRecord
    status: Status
    #: ``offset`` or ``sale_id`` for a duplicate, the reason for a rejection, '' when applied.
    cause: str
    detail: str = ""
    sale: Sale | None = None
    #: For a record that is (or, on a re-delivery, was) rejected: why. Drives the dead letter.
    dead_letter: tuple[Reason, str] | None = None

    @property
    def label(self) -> str:
        return self.status if self.status == "applied" else f"{self.status}:{self.cause}"


@dataclass(frozen=True)
class TotalsSnapshot:
    """Absolute contents of one totals hash after a script call."""

    scope: Literal["event", "ikm"]
    root: str
    event_id: str
    ikm_id: str | None
    values: dict[str, str]

    @property
    def version(self) -> int:
        return int(self.values.get("version", 0))

    def integer(self, name: str) -> int:
        return int(self.values.get(name, 0))


@dataclass
class GroupResult:
    root: str
    outcomes: list[Outcome]
    totals: list[TotalsSnapshot]


@dataclass
class BatchResult:
    groups: list[GroupResult] = field(default_factory=list)

    @property
    def outcomes(self) -> list[Outcome]:
        return [o for g in self.groups for o in g.outcomes]

    @property
    def totals(self) -> list[TotalsSnapshot]:
        return [t for g in self.groups for t in g.totals]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.label] = out.get(o.label, 0) + 1
        return out

    def dead_letters(self) -> list[Outcome]:
        """Records to (re-)send to the dead-letter topic, in consumption order."""
        return [o for o in self.outcomes if o.dead_letter is not None]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Applier:
    """Applies planned batches to Redis. One per process; safe to share between tasks."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.keys = Keys(settings.redis_prefix)
        self._script = client.register_script(script_source())

    async def apply(self, plan: BatchPlan, as_of: str | None = None) -> BatchResult:
        """Apply every group of ``plan``; raise :class:`RedisUnavailable` if any call fails.

        Retrying the same plan after a failure is safe: groups already applied
        come back as ``duplicate:offset``.
        """
        as_of = as_of or now_iso()
        result = BatchResult()
        for group in plan.groups:
            result.groups.append(await self.apply_group(group, as_of))
        return result

    async def apply_group(self, group: RootGroup, as_of: str) -> GroupResult:
        try:
            raw = await self._script(keys=group.keys, args=wire_args(group, as_of))
        except RedisError as exc:
            raise unavailable(self.settings, exc, f"applying a batch of tree {group.root}") from exc
        return decode_result(group, raw)


#: ARGV values of a group that stay separate; the rest (the records' fields) travel as one JSON
#: array. Every field is a string, so cjson in the script gives back exactly these strings.
_HEAD = HEADER_ARGS - 1
_encode_fields = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def wire_args(group: RootGroup, as_of: str) -> list[str]:
    """The script's ARGV: ``as_of``, the group's header, then its records' fields as one JSON array.

    One value instead of :data:`~streams.batch.RECORD_ARGS` per record: redis-py
    packs each ARGV value in Python, the JSON array is encoded in C.
    """
    argv = group.argv
    return [as_of, *argv[:_HEAD], _encode_fields(argv[_HEAD:])]


def decode_result(group: RootGroup, raw: bytes | str) -> GroupResult:
    """Read the script's reply: one JSON document (see the script's header)."""
    flat, ev_totals, pair_totals = json.loads(raw)
    # cjson encodes an empty Lua table as an object.
    flat = flat or []
    ev_totals = ev_totals or [{}] * len(group.events)
    pair_totals = pair_totals or [{}] * len(group.pairs)
    outcomes: list[Outcome] = []
    for i, planned in enumerate(group.records):
        label, detail = flat[2 * i], flat[2 * i + 1]
        status, _, cause = label.partition(":")
        dead: tuple[Reason, str] | None = None
        if planned.rejection is not None:
            # Rejected before Redis: the dead letter is (re-)sent on every delivery.
            dead = (planned.rejection.reason, planned.rejection.detail)
            detail = detail or planned.rejection.detail
        elif status == "rejected":
            dead = (Reason(cause), detail)
        elif label == "duplicate:offset" and detail:
            reason, _, why = detail.partition(" ")
            dead = (Reason(reason), why)
        outcomes.append(Outcome(planned.record, status, cause, detail,
                                planned.sale, dead))
    totals: list[TotalsSnapshot] = []
    for event_id, values in zip(group.events, ev_totals, strict=True):
        if values:
            totals.append(TotalsSnapshot("event", group.root, event_id, None, _pairs(values)))
    for (event_id, ikm_id), values in zip(group.pairs, pair_totals, strict=True):
        if values:
            totals.append(TotalsSnapshot("ikm", group.root, event_id, ikm_id, _pairs(values)))
    return GroupResult(group.root, outcomes, totals)


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))
