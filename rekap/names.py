"""Names in one place: the Redis key layout and the hash fields inside it.

Redis layout (``P`` = ``REKAP_REDIS_PREFIX``, ``R`` = the *root* event of the
event tree a key belongs to)::

    P:{R}:fence:<topic>          hash   partition -> last applied offset
    P:{R}:stats                  hash   applied, duplicate:<cause>, rejected:<reason>
    P:{R}:sales                  hash   "<ikm_id>|<sale_id>" -> packed sale record (dedup +
                                        refunds); a sale_id is unique per IKM, see below
    P:{R}:rejects                hash   "<topic>/<partition>/<offset>" -> "<reason> <detail>" of
                                        records the ledger checks rejected (so a replay re-sends
                                        the same dead letter)
    P:{R}:ev:<E>                 hash   totals of event E        (TOTAL_FIELDS, channel fields)
    P:{R}:ev:<E>:days            hash   "<YYYY-MM-DD>:<field>" -> integer, local days of E
    P:{R}:ev:<E>:board           zset   ikm_id -> net amount_idr (the leaderboard)
    P:{R}:ev:<E>:ticker          list   latest applied sales of E, newest first (JSON)
    P:{R}:ev:<E>:ikm:<I>         hash   totals of IKM I in E     (TOTAL_FIELDS, channel, last sale)
    P:{R}:ev:<E>:ikm:<I>:days    hash   day buckets of I in E
    P:recovering                 hash   partition -> JSON {from, to, since} while the worker
                                        replays that partition because Redis lost writes
                                        (streams.progress); empty or absent when caught up

Every key of one event tree shares the hash tag ``{R}``, so the one script that
applies a batch for that tree touches a single slot and the layout works on
Redis Cluster. A batch holding sales of several trees is applied as one script
per tree; offsets are fenced per tree and partition, so each script is
idempotent on its own.

De-duplication is scoped to the Kafka key: ``sale_id`` identifies a sale within
its IKM (``ikm_id`` is the record key), and a refund's ``refund_of`` names a sale
of the same IKM. All records of one IKM share a partition, so every ledger
decision (duplicate, conflict, refund target) depends only on that partition's
order. Which worker applies which partition first, or how partitions interleave
in a batch, cannot change a total, and ``rekap reconcile`` can fold the topic
partition by partition and expect exactly what Redis holds.

Amounts are integer rupiah in hash fields (HINCRBY); the leaderboard score is
the same integer (doubles are exact up to 2**53 rupiah, about Rp9 kuadriliun).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Channel = Literal["offline", "marketplace", "virtual_expo", "website"]
CHANNELS: Final[tuple[Channel, ...]] = ("offline", "marketplace", "virtual_expo", "website")

#: Integer fields of every totals hash (event and IKM) and of every day bucket.
#: amount_idr is net: gross_idr - refunds_idr. quantity is net too.
TOTAL_FIELDS: Final[tuple[str, ...]] = (
    "amount_idr", "gross_idr", "refunds_idr", "count", "refund_count", "quantity",
)
#: Integer fields kept per channel, as ``ch:<channel>:<field>``.
CHANNEL_FIELDS: Final[tuple[str, ...]] = ("amount_idr", "count", "refunds_idr")
#: Fields of a day bucket, as ``<YYYY-MM-DD>:<field>`` in a ``:days`` hash.
DAY_FIELDS: Final[tuple[str, ...]] = ("amount_idr", "count", "refunds_idr", "quantity")

#: How many sales the venue ticker keeps per event.
TICKER_LENGTH: Final[int] = 50


def channel_field(channel: str, field: str) -> str:
    return f"ch:{channel}:{field}"


def day_field(day: str, field: str) -> str:
    return f"{day}:{field}"


@dataclass(frozen=True)
class Keys:
    """Builds every Redis key from the prefix; nothing else formats a key."""

    prefix: str = "rekap"

    def tag(self, root: str) -> str:
        return f"{self.prefix}:{{{root}}}"

    def fence(self, root: str, topic: str) -> str:
        return f"{self.tag(root)}:fence:{topic}"

    def stats(self, root: str) -> str:
        return f"{self.tag(root)}:stats"

    def sales(self, root: str) -> str:
        return f"{self.tag(root)}:sales"

    def rejects(self, root: str) -> str:
        return f"{self.tag(root)}:rejects"

    def event_totals(self, root: str, event: str) -> str:
        return f"{self.tag(root)}:ev:{event}"

    def event_days(self, root: str, event: str) -> str:
        return f"{self.tag(root)}:ev:{event}:days"

    def board(self, root: str, event: str) -> str:
        return f"{self.tag(root)}:ev:{event}:board"

    def ticker(self, root: str, event: str) -> str:
        return f"{self.tag(root)}:ev:{event}:ticker"

    def ikm_totals(self, root: str, event: str, ikm: str) -> str:
        return f"{self.tag(root)}:ev:{event}:ikm:{ikm}"

    def ikm_days(self, root: str, event: str, ikm: str) -> str:
        return f"{self.tag(root)}:ev:{event}:ikm:{ikm}:days"

    def recovering(self) -> str:
        return f"{self.prefix}:recovering"

    def pattern(self) -> str:
        """Glob for every key under the prefix (rebuild wipes these)."""
        return f"{self.prefix}:*"


def totals_key(event_id: str, ikm_id: str | None = None) -> str:
    """Kafka key of a totals message: ``event_id`` or ``event_id/ikm_id``."""
    return event_id if ikm_id is None else f"{event_id}/{ikm_id}"
