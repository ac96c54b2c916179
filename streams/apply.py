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

Redis outages become :class:`rekap.errors.RedisUnavailable` here, and a fence
that fell back (Redis lost writes) :class:`rekap.errors.RedisLostWrites`. Any
other failure of a call is the batch's own: the applier finds the record that
causes it and rejects just that one (``internal_error``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal, cast

from redis.exceptions import (
    ClusterDownError,
    DataError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisClusterUnreachableError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)

from rekap.contract import Reason, Sale
from rekap.errors import RedisLostWrites, RedisUnavailable
from rekap.names import Keys
from rekap.records import ConsumedRecord, PlannedRecord, internal_error
from rekap.redisconn import REDIS_ERRORS, AsyncClient, unavailable
from rekap.settings import Settings
from streams.batch import BatchPlan, RootGroup, build_group
from streams.script import NO_FENCES, decode_reply, fence_args, script_source, wire_args
from streams.totals import TotalsSnapshot

log = logging.getLogger(__name__)

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


@dataclass
class GroupResult:
    root: str
    outcomes: list[Outcome]
    totals: list[TotalsSnapshot]
    #: partition -> the tree's fence after the call.
    fences: dict[int, int] = field(default_factory=dict)


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

    def fences(self) -> dict[tuple[str, int], int]:
        """(root, partition) -> fence after the batch."""
        return {(g.root, p): f for g in self.groups for p, f in g.fences.items()}

    def dead_letters(self) -> list[Outcome]:
        """Records to (re-)send to the dead-letter topic, in consumption order."""
        return [o for o in self.outcomes if o.dead_letter is not None]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: Lifts a totals hash's version to ARGV[1] if it is lower (after Redis lost writes).
RAISE_VERSION: Final = """
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'version', ARGV[1]) end
return v
"""

#: Redis error replies that mean "not now" (memory, persistence, failover, loading, cluster
#: moving, auth): the same call may succeed later, so the batch is retried, never split.
OUTAGE_REPLIES: Final = ("OOM", "MISCONF", "BUSY", "LOADING", "MASTERDOWN", "NOREPLICAS",
                         "CLUSTERDOWN", "TRYAGAIN", "READONLY", "NOAUTH", "WRONGPASS", "NOPERM")
#: The ResponseError classes redis-py parses some of those replies into (MASTERDOWN's
#: MasterDownError is a ClusterDownError); the others are ConnectionErrors.
_OUTAGE_CLASSES: Final = (ClusterDownError, TryAgainError, ReadOnlyError, OutOfMemoryError,
                          NoPermissionError)


def is_outage(exc: Exception) -> bool:
    """Whether a Redis error is an outage (retry the batch) rather than this call's own fault.

    Connection problems, the replies in :data:`OUTAGE_REPLIES` and the cluster client's
    "no node serves this slot now" (during a failover) are outages. Any other error reply
    (a script runtime error, WRONGTYPE) fails the same way on every retry: the applier
    then looks for the record that causes it.
    """
    if isinstance(exc, ResponseError):
        # redis-py strips a reply's code from the message of the classes it maps it to
        # (CLUSTERDOWN -> ClusterDownError "The cluster is down", READONLY, OOM, ...) and
        # keeps it as status_code; older releases keep it only in the message.
        code = getattr(exc, "status_code", None) or str(exc).split(" ", 1)[0]
        return code in OUTAGE_REPLIES or isinstance(exc, _OUTAGE_CLASSES)
    if isinstance(exc, RedisClusterException):
        return isinstance(exc, SlotNotCoveredError | RedisClusterUnreachableError)
    return not isinstance(exc, DataError)


#: (root, partition) -> offset fence.
Fences = Mapping[tuple[str, int], int]


class CallFailed(Exception):
    """A script call failed for a reason of its own, neither an outage nor lost writes.

    Internal to the applier: it then looks for the record that causes the failure.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


class Applier:
    """Applies planned batches to Redis. One per process; safe to share between tasks."""

    def __init__(self, client: AsyncClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.keys = Keys(settings.redis_prefix)
        self._script = client.register_script(script_source())

    async def apply(self, plan: BatchPlan, as_of: str | None = None,
                    expected: Fences | None = None) -> BatchResult:
        """Apply every group of ``plan``.

        ``expected``: the fences the caller saw Redis hold; a lower fence raises
        :class:`RedisLostWrites` before that group writes anything. Raises
        :class:`RedisUnavailable` on an outage. Retrying the same plan after a
        failure is safe: groups already applied come back as ``duplicate:offset``.

        A group whose call fails for another reason (a bug, not an outage) is
        split until the record that causes it is found; that record is rejected
        with ``internal_error`` and the exception text, the others are applied.
        """
        as_of = as_of or now_iso()
        expected = expected or {}
        result = BatchResult()
        for group in plan.groups:
            fences = fence_args(group.root, plan.partitions, expected)
            try:
                result.groups.append(await self.call(group, as_of, fences))
            except CallFailed as failed:
                result.groups += await self.isolate(plan, group, as_of, fences, failed.error)
        return result

    async def raise_versions(self, floors: Sequence[tuple[str, int]]) -> None:
        """Lift each totals hash's ``version`` to at least the given one (never lowers it)."""
        # EVAL, not the cached script: on Redis Cluster a pipeline cannot reload a script
        # that a promoted replica lacks (NOSCRIPT), and this runs only after lost writes.
        async with self.client.pipeline(transaction=False) as pipe:
            for key, version in floors:
                pipe.eval(RAISE_VERSION, 1, key, version)
            await pipe.execute()

    async def call(self, group: RootGroup, as_of: str, fences: str) -> GroupResult:
        """One script call.

        Raises :class:`RedisUnavailable` on an outage, :class:`RedisLostWrites` when
        a fence fell back, and :class:`CallFailed` for any other failure.
        """
        try:
            raw = await self._script(keys=group.keys,
                                    args=wire_args(group.header, group.fields, as_of, fences))
            return decode_result(group, raw)
        except RedisLostWrites:
            raise
        except REDIS_ERRORS as exc:
            if is_outage(exc):
                raise unavailable(self.settings, exc,
                                  f"applying a batch of tree {group.root}") from exc
            raise CallFailed(exc) from exc
        except Exception as exc:
            raise CallFailed(exc) from exc

    async def isolate(self, plan: BatchPlan, group: RootGroup, as_of: str, fences: str,
                      exc: Exception) -> list[GroupResult]:
        """Apply ``group`` around the record(s) that make its call fail (see :meth:`apply`)."""
        if plan.registry is None:
            raise exc
        regroup = functools.partial(build_group, group.root, registry=plan.registry,
                                    keys=plan.keys or self.keys,
                                    ticker_length=plan.ticker_length,
                                    topic=group.topic)
        try:  # the same call without records: if that fails too, no record is to blame
            await self.call(regroup([]), as_of, NO_FENCES)
        except CallFailed as again:
            raise RedisUnavailable(
                f"the apply script fails for tree {group.root} even without records: "
                f"{again.error!r}; retrying (is the script or a key of this tree damaged?)"
            ) from again.error
        log.error("applying %d records of tree %s failed (%s: %s); isolating the record that "
                  "causes it", len(group.records), group.root, type(exc).__name__, exc)
        results: list[GroupResult] = []
        # Halves are applied in order and never advance a fence past their own records;
        # the closing fence-only call below moves every fence to the batch's end.
        pending: list[list[PlannedRecord]] = [group.records]
        while pending:
            records = pending.pop(0)
            sub = regroup(records)
            try:
                results.append(await self.call(sub, as_of, NO_FENCES))
                continue
            except CallFailed as failed:
                if len(records) > 1:
                    half = len(records) // 2
                    pending[:0] = [records[:half], records[half:]]
                    continue
                (bad,) = records
                log.error("record %s rejected as internal_error: %s: %s",
                          bad.record.coordinates, type(failed.error).__name__, failed.error)
                rejected = PlannedRecord(bad.record, rejection=internal_error(failed.error))
                results.append(await self.call(regroup([rejected]), as_of, NO_FENCES))
        results.append(await self.call(regroup([]), as_of, fences))
        return results


def decode_result(group: RootGroup, raw: bytes | str) -> GroupResult:
    """The script's reply to ``group``'s call, as outcomes, totals snapshots and fences."""
    reply = decode_reply(raw, group.root, len(group.events), len(group.pairs))
    flat = reply.outcomes
    outcomes: list[Outcome] = []
    for i, planned in enumerate(group.records):
        label, detail = flat[2 * i], flat[2 * i + 1]
        head, _, cause = label.partition(":")
        status = cast(Status, head)
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
    totals = [TotalsSnapshot("event", group.root, event_id, None, values)
              for event_id, values in zip(group.events, reply.event_totals, strict=True)
              if values]
    totals += [TotalsSnapshot("ikm", group.root, event_id, ikm_id, values)
               for (event_id, ikm_id), values in zip(group.pairs, reply.pair_totals, strict=True)
               if values]
    return GroupResult(group.root, outcomes, totals, reply.fences)
