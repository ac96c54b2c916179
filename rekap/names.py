"""Names in one place: the Redis key layout and the hash fields inside it.

Redis layout (``P`` = ``REKAP_REDIS_PREFIX``, ``R`` = the *root* event of the
event tree a key belongs to)::

    P:{R}:fence:<topic>          hash   partition -> last applied offset
    P:{R}:stats                  hash   applied, duplicate:<cause>, rejected:<reason>
    P:{R}:dedup:<b>              hash   de-dup entries of the tree, in DEDUP_BUCKETS buckets
                                        b = 0..DEDUP_BUCKETS-1: field = the DEDUP_FIELD_BYTES
                                        digest of "<ikm_id>|<sale_id>" (:func:`dedup_slot`, which
                                        also picks b), value = a packed entry of a booked sale or
                                        refund (streams.script); a sale_id is unique per IKM
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
    P:gen                        string the generation readers read (absent: 0)
    P:{R}:gen                    string the generation the worker writes tree R in (absent: P:gen)
    P:rebuild                    string the running ``rekap rebuild``'s token (expires)

Generations: ``rekap rebuild`` folds the ledger into a fresh namespace while the
worker keeps applying to the current one, then switches (consumers.rebuild). The
keys above marked ``P:{R}:...`` belong to generation 0, the layout before
generations, so existing data needs no migration; generation N >= 1 puts the
same keys under ``P:gN:{R}:...`` (:meth:`Keys.namespace`). The hash tag stays
``{R}``, so one tree's keys of every generation share a slot and the switch of a
tree (``streams/lua/switch_tree.lua``) is one atomic script on Redis Cluster too.
``P:recovering`` and the two pointers belong to no generation. A reader resolves
``P:gen`` per request (:func:`rekap.generations.current_keys`); the worker
resolves the tree pointers (:func:`streams.progress.resolve_trees`).

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

The de-dup state is the one part of the layout that grows with every booked
record, forever, so it is kept small: about 37 bytes of Redis per booked sale
or refund (a 10-byte field, a ~20-byte entry, listpack framing and the bucket
keys' share), where one ``"<ikm_id>|<sale_id>"`` hash took ~150 (``python -m
bench.memory``). That holds while each bucket is a *listpack*, Redis' compact
encoding, which a hash keeps while it has at most ``hash-max-listpack-entries``
fields of at most ``hash-max-listpack-value`` (64) bytes; an entry is at most
57 bytes. The bucket count is sized for a limit of 128 entries: with
:data:`DEDUP_BUCKETS` = 1024, a tree's fullest bucket stays at or under 128
with probability above 99.99 % up to 80 000 booked records per tree. Redis'
own default limit is 512 (compiled in and in the shipped ``redis.conf``), which
keeps every bucket a listpack up to about 400 000 records per tree. Past the
limit, buckets turn one by one into hashtable encoding as they outgrow it:
still correct, about 80 bytes per entry instead of ~37. Below a few thousand
records per tree, the ~80 bytes of each bucket key are shared by few entries:
about 100 bytes per record at 1 000, 61 at 4 000, 48 at 8 000, 41 at 20 000.

The digest is the first 12 bytes of BLAKE2b: 10 bits of it choose the bucket
and the next 10 bytes are the field, so two (ikm_id, sale_id) share an entry
only if 90 bits agree: with 10**8 records in one tree, the odds that any two
do are about 4e-12. (Such a pair would make the later record a
``duplicate:sale_id`` or a ``sale_id_conflict``, or point a refund at the
wrong sale.) Nobody can aim at another IKM's entry either: that is a second
preimage of 90 bits.

The bucket of a record depends on :data:`DEDUP_BUCKETS`, so the constant can
never change for a ledger that has data: a different count is a new layout
(``rekap rebuild`` re-applies the topic into it).

Amounts are integer rupiah in hash fields (HINCRBY); the leaderboard score is
the same integer (doubles are exact up to 2**53 rupiah, about Rp9 kuadriliun).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

Channel = Literal["offline", "marketplace", "virtual_expo", "website"]
CHANNELS: Final[tuple[Channel, ...]] = ("offline", "marketplace", "virtual_expo", "website")
#: The channels sales arrive through online (channel tokens); ``offline`` is the booths'.
ONLINE_CHANNELS: Final[tuple[Channel, ...]] = tuple(c for c in CHANNELS if c != "offline")

#: The sale_id namespace of each online channel: its adapters derive ids as
#: ``<prefix>:<integrator>:<order>`` (``mp:tokopedia:<shop>:<order>``, ``web:esmartikm:<order>``,
#: ``vx:telkom:<trx>``). Order ids are predictable, so ingest lets a channel token post only ids
#: (and ``refund_of``) in its own namespace, and a booth none in any (booths mint ULIDs).
#: Part of the ids already on the topic: never change a prefix.
CHANNEL_ID_PREFIX: Final[Mapping[Channel, str]] = {
    "marketplace": "mp", "website": "web", "virtual_expo": "vx"}


def sale_id_namespace(channel: str, integrator: str | None = None) -> str:
    """What every sale_id of ``channel`` (of ``integrator`` within it, if given) starts with:
    ``"mp:"``, ``"mp:tokopedia:"``. :class:`KeyError` for a channel without one (offline)."""
    prefix = _PREFIX_OF[channel]
    return f"{prefix}:" if integrator is None else f"{prefix}:{integrator}:"


def channel_of_sale_id(sale_id: str) -> Channel | None:
    """The online channel whose namespace ``sale_id`` lies in, or None (a booth's id)."""
    head, sep, _ = sale_id.partition(":")
    return _CHANNEL_OF.get(head) if sep else None


_PREFIX_OF: Final[dict[str, str]] = {c: p for c, p in CHANNEL_ID_PREFIX.items()}
_CHANNEL_OF: Final[dict[str, Channel]] = {p: c for c, p in CHANNEL_ID_PREFIX.items()}

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

#: De-dup buckets per tree. Sized so that buckets stay listpacks (<= 128 entries) up to about
#: 80 000 booked records per tree (400 000 under Redis' default limit of 512) while each
#: bucket key's overhead is shared by a few records from a few thousand on (see the module
#: docstring). Never change it for a ledger that holds data: every record's bucket would
#: move (a new layout, rebuilt from the topic).
DEDUP_BUCKETS: Final[int] = 1024
#: Bytes of a de-dup field: with the bucket's 10 bits (1024 = 2**10), 90 bits tell two records apart.
DEDUP_FIELD_BYTES: Final[int] = 10


def channel_field(channel: str, field: str) -> str:
    return f"ch:{channel}:{field}"


def day_field(day: str, field: str) -> str:
    return f"{day}:{field}"


@dataclass(frozen=True)
class Keys:
    """Builds every Redis key from the prefix; nothing else formats a key.

    ``Keys(prefix)`` is generation 0. A reader that must follow ``rekap rebuild``
    builds its keys with :func:`rekap.generations.current_keys` per request instead.
    """

    prefix: str = "rekap"
    #: The generation whose data keys this builds (0: ``P:{R}:...``, N: ``P:gN:{R}:...``).
    generation: int = 0
    #: Trees on another generation than ``generation``, as sorted (root, generation) pairs:
    #: the worker's view while a rebuild switches trees one by one.
    trees: tuple[tuple[str, int], ...] = ()

    def at(self, generation: int, trees: Mapping[str, int] | None = None) -> Keys:
        """The same prefix at ``generation`` (with per-tree exceptions ``trees``)."""
        own = tuple(sorted((r, g) for r, g in (trees or {}).items() if g != generation))
        return Keys(self.prefix, generation, own)

    def generation_of(self, root: str) -> int:
        for r, g in self.trees:
            if r == root:
                return g
        return self.generation

    def namespace(self, generation: int | None = None) -> str:
        """What the data keys of a generation (default: this one) start with."""
        g = self.generation if generation is None else generation
        return self.prefix if g == 0 else f"{self.prefix}:g{g}"

    def tag(self, root: str) -> str:
        return f"{self.namespace(self.generation_of(root))}:{{{root}}}"

    def pointer(self) -> str:
        """The generation readers read (``rekap rebuild`` moves it last)."""
        return f"{self.prefix}:gen"

    def tree_pointer(self, root: str) -> str:
        """The generation the worker writes tree ``root`` in; in the tree's slot, so the
        switch script sets it atomically with retiring the tree's old fences."""
        return f"{self.prefix}:{{{root}}}:gen"

    def fence(self, root: str, topic: str) -> str:
        return f"{self.tag(root)}:fence:{topic}"

    def stats(self, root: str) -> str:
        return f"{self.tag(root)}:stats"

    def dedup(self, root: str, bucket: int) -> str:
        return f"{self.tag(root)}:dedup:{bucket}"

    def legacy_sales(self, root: str) -> str:
        """The one de-dup hash of rekap before the buckets: if it exists, the tree's ledger
        was written by that version and must be rebuilt (README, "Redis")."""
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

    def rebuild_lock(self) -> str:
        """Held (with a TTL) by the one ``rekap rebuild`` that may run at a time."""
        return f"{self.prefix}:rebuild"

    def pattern(self) -> str:
        """Glob for every key under the prefix, of every generation."""
        return f"{self.prefix}:*"

    def data_pattern(self) -> str:
        """Glob for the tree keys of this generation (with generation 0, also the tree
        pointers ``P:{R}:gen``, which :meth:`parse` leaves out)."""
        return f"{self.namespace()}:{{*"

    def parse(self, key: str) -> tuple[str, str] | None:
        """(root, rest) of a tree key of this generation, e.g. ``("lagawi-2022", "ev:x:days")``;
        None for any other key (another generation's, a pointer, ``P:recovering``)."""
        head = self.namespace() + ":{"
        if not key.startswith(head):
            return None
        root, sep, rest = key[len(head):].partition("}:")
        return (root, rest) if sep and rest != "gen" else None


def dedup_slot(ikm_id: str, sale_id: str) -> tuple[int, bytes]:
    """(bucket, field) of the de-dup entry of ``sale_id`` of ``ikm_id``: where it is looked up.

    Ids never hold ``|`` (:data:`rekap.contract.ID_PATTERN`), so the digested text is
    unambiguous.
    """
    digest = hashlib.blake2b(f"{ikm_id}|{sale_id}".encode(), digest_size=2 + DEDUP_FIELD_BYTES).digest()
    return int.from_bytes(digest[:2], "big") % DEDUP_BUCKETS, digest[2:]


def totals_key(event_id: str, ikm_id: str | None = None) -> str:
    """Kafka key of a totals message: ``event_id`` or ``event_id/ikm_id``."""
    return event_id if ikm_id is None else f"{event_id}/{ikm_id}"
