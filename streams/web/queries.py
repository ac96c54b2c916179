"""Read queries over the Redis totals: Redis replies in, plain dicts out.

Shared by the worker's read API and venue page, the leaderboard exporter and
``rekap watch``. Every worker can answer every query because all state lives
in Redis (layout: :mod:`rekap.names`); nothing here keeps state between calls.

A query is written once as a generator of *steps*: it yields a function that
queues commands on a Redis pipeline, receives the pipeline's replies, and
finally returns the result. :func:`run` drives it on an asyncio client and
:func:`run_sync` on a blocking one (the exporter's scrape thread, ``rekap
watch``), so the read logic and the parsing are the same everywhere and the
parsing is testable without I/O. A query costs one or two round trips.

Pipelines are not transactions: each reply is one key read atomically, and a step
that reads several keys may see a batch applied between two of them (the next poll
shows the rest). That is also what makes every query work on Redis Cluster, where a
step spanning event trees spans slots and nodes: redis-py sends each node its share.

Money stays integer rupiah. A share of an event total is given in basis points
(``share_bp``, 1/100 of a percent, rounded half up) and as a decimal string
(``share``, ``"0.4123"``) computed from integers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from rekap.days import zone
from rekap.money import format_idr, format_idr_short
from rekap.names import CHANNEL_FIELDS, CHANNELS, DAY_FIELDS, TOTAL_FIELDS, Keys
from rekap.redisconn import AsyncClient, SyncClient
from rekap.registry import Event, Registry

T = TypeVar("T")
Step = Callable[[Any], object]
#: A query: yields pipeline-filling steps, receives each step's replies, returns the result.
Query = Generator[Step, list[Any], T]

#: Largest page the leaderboard endpoint serves; the venue page shows ten.
MAX_LIMIT = 1000
#: Sales in the venue ticker snapshot.
TICKER_SHOWN = 12
#: Channel names on the venue page and in ``rekap watch``.
CHANNEL_LABELS: Mapping[str, str] = {
    "offline": "Luring", "marketplace": "Marketplace", "virtual_expo": "Pameran Virtual",
    "website": "Situs Web",
}
#: Fields read to notice that an event changed (``version`` when the worker keeps one).
SIGNATURE_FIELDS = ("version", "amount_idr", "count", "refund_count", "gross_idr")


class NotFound(LookupError):
    """An unknown event, or an IKM not taking part in it; ``str()`` is the reason."""


@dataclass(frozen=True)
class Reader:
    """What every query needs: the key layout and the current registry."""

    keys: Keys
    registry: Registry

    def event(self, event_id: str) -> Event:
        ev = self.registry.events.get(event_id)
        if ev is None:
            raise NotFound(f"event {event_id!r} is not in the registry")
        return ev

    def root(self, event_id: str) -> str:
        return self.registry.root(event_id)

    def ikm_name(self, ikm_id: str) -> str:
        ikm = self.registry.ikm.get(ikm_id)
        return ikm.name if ikm is not None else ikm_id


# ------------------------------------------------------------------ drivers --

async def run(client: AsyncClient, query: Query[T]) -> T:
    """Run a query on an asyncio Redis client (one pipeline round trip per step)."""
    try:
        step = next(query)
        while True:
            pipe = client.pipeline(transaction=False)
            step(pipe)
            replies = await pipe.execute()
            step = query.send(replies)
    except StopIteration as stop:
        return stop.value


def run_sync(client: SyncClient, query: Query[T]) -> T:
    """Run a query on a blocking Redis client."""
    try:
        step = next(query)
        while True:
            pipe = client.pipeline(transaction=False)
            step(pipe)
            replies = pipe.execute()
            step = query.send(replies)
    except StopIteration as stop:
        return stop.value


# ------------------------------------------------------------------ parsing --

def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int:
    if value is None:
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        return int(float(value))  # a zset score comes back as a float


def parse_totals(raw: Mapping[Any, Any]) -> dict[str, Any]:
    """A totals hash (event or IKM) as ``{amount_idr, ..., by_channel}``; absent fields are 0."""
    fields = {_s(k): v for k, v in raw.items()}
    out: dict[str, Any] = {name: _int(fields.get(name)) for name in TOTAL_FIELDS}
    out["by_channel"] = {
        ch: {f: _int(fields.get(f"ch:{ch}:{f}")) for f in CHANNEL_FIELDS} for ch in CHANNELS}
    if "version" in fields:
        out["version"] = _int(fields["version"])
    return out


def parse_days(raw: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """A ``:days`` hash (``<YYYY-MM-DD>:<field>``) as a list of day rows, oldest first."""
    days: dict[str, dict[str, int]] = {}
    for k, v in raw.items():
        day, _, field = _s(k).partition(":")
        if field in DAY_FIELDS:
            days.setdefault(day, dict.fromkeys(DAY_FIELDS, 0))[field] = _int(v)
    return [{"day": d, **days[d]} for d in sorted(days)]


def share_bp(amount: int, total: int) -> int:
    """``amount / total`` in basis points, rounded half up, with integers only."""
    if total <= 0 or amount <= 0:
        return 0
    return (amount * 20_000 + total) // (2 * total)


def share_text(bp: int) -> str:
    """Basis points as a decimal fraction string: 4123 -> ``"0.4123"``."""
    return f"{bp // 10_000}.{bp % 10_000:04d}"


def rank_rows(pairs: list[tuple[str, int]]) -> list[tuple[int, str, int]]:
    """Order by amount (desc) then id, with competition ranks: equal amounts share a rank."""
    ordered = sorted(pairs, key=lambda p: (-p[1], p[0]))
    out: list[tuple[int, str, int]] = []
    for i, (ikm, amount) in enumerate(ordered):
        rank = out[-1][0] if out and out[-1][2] == amount else i + 1
        out.append((rank, ikm, amount))
    return out


def _event_info(reader: Reader, ev: Event) -> dict[str, Any]:
    return {
        "event_id": ev.id, "name": ev.name, "venue": ev.venue, "timezone": ev.timezone,
        "starts_on": ev.starts_on.isoformat(), "ends_on": ev.ends_on.isoformat(),
        "parent": ev.parent, "children": list(reader.registry.children(ev.id)),
        "ikm_count": len(ev.ikm),
    }


# ------------------------------------------------------------------ queries --

def events(reader: Reader) -> Query[dict[str, Any]]:
    """Every registry event with its (rolled-up) totals, in registry order."""
    evs = list(reader.registry.events.values())

    def step(pipe: Any) -> None:
        for ev in evs:
            pipe.hgetall(reader.keys.event_totals(reader.root(ev.id), ev.id))
        pipe.exists(reader.keys.recovering())

    *replies, recovering = yield step
    out = []
    for ev, raw in zip(evs, replies, strict=True):
        totals = parse_totals(raw)
        out.append({**_event_info(reader, ev), "totals": _public_totals(totals)})
    return {"events": out, "recovering": bool(recovering)}


def _public_totals(totals: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in totals.items() if k != "by_channel"}


def top_pages(reader: Reader, event_ids: list[str],
              limit: int) -> Query[dict[str, list[tuple[int, str, int]]]]:
    """The top ``limit`` (rank, ikm_id, amount) of each event, in two round trips at most.

    Order is amount descending, then ikm_id ascending. Redis orders equal scores
    by member *descending* in ZREVRANGE, so when a page is full the IKM tied on
    its last amount are re-read in id order: the API, the exporter and the
    venue screen then agree on who makes the last places.
    """
    boards = {ev: reader.keys.board(reader.root(ev), ev) for ev in event_ids}

    def first(pipe: Any) -> None:
        for key in boards.values():
            pipe.zrevrange(key, 0, limit - 1, withscores=True)

    replies = yield first
    pages = {ev: [(_s(m), _int(score)) for m, score in reply]
             for ev, reply in zip(event_ids, replies, strict=True)}
    full = [ev for ev, pairs in pages.items() if len(pairs) == limit]
    if full:
        def edges(pipe: Any) -> None:
            for ev in full:
                edge = pages[ev][-1][1]
                above = sum(1 for p in pages[ev] if p[1] > edge)
                pipe.zrangebyscore(boards[ev], edge, edge, start=0, num=limit - above)

        replies = yield edges
        for ev, reply in zip(full, replies, strict=True):
            edge = pages[ev][-1][1]
            pages[ev] = [p for p in pages[ev] if p[1] > edge] + [(_s(m), edge) for m in reply]
    return {ev: rank_rows(pairs) for ev, pairs in pages.items()}


def leaderboard(reader: Reader, event_id: str, limit: int) -> Query[dict[str, Any]]:
    """The top ``limit`` IKM of an event, with rank, amount, sale count and share."""
    ev = reader.event(event_id)
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    root = reader.root(ev.id)
    rows = (yield from top_pages(reader, [ev.id], limit))[ev.id]

    def details(pipe: Any) -> None:
        pipe.hgetall(reader.keys.event_totals(root, ev.id))
        pipe.zcard(reader.keys.board(root, ev.id))
        pipe.exists(reader.keys.recovering())
        for _, ikm, _ in rows:
            pipe.hget(reader.keys.ikm_totals(root, ev.id, ikm), "count")

    raw_totals, ranked, recovering, *counts = yield details
    totals = parse_totals(raw_totals)
    total = totals["amount_idr"]
    entries = []
    for (rank, ikm, amount), count in zip(rows, counts, strict=True):
        bp = share_bp(amount, total)
        entries.append({"rank": rank, "ikm_id": ikm, "name": reader.ikm_name(ikm),
                        "amount_idr": amount, "count": _int(count), "share_bp": bp,
                        "share": share_text(bp)})
    return {"event_id": ev.id, "name": ev.name, "total_idr": total, "count": totals["count"],
            "ranked_ikm": _int(ranked), "limit": limit, "entries": entries,
            "recovering": bool(recovering)}


def exporter_view(reader: Reader, top_k: int, days: int) -> Query[list[dict[str, Any]]]:
    """Per registry event: totals, top K, and the last ``days`` day buckets that have data.

    Bounded by construction: K IKM and ``days`` days per event, however many IKM
    sell. Three round trips for all events together.
    """
    ids = list(reader.registry.events)
    pages = yield from top_pages(reader, ids, top_k)

    def step(pipe: Any) -> None:
        for ev in ids:
            root = reader.root(ev)
            pipe.hgetall(reader.keys.event_totals(root, ev))
            pipe.hgetall(reader.keys.event_days(root, ev))
            pipe.zcard(reader.keys.board(root, ev))

    replies = yield step
    out = []
    for i, ev in enumerate(ids):
        raw_totals, raw_days, ranked = replies[3 * i: 3 * i + 3]
        out.append({"event_id": ev, "totals": parse_totals(raw_totals),
                    "by_day": parse_days(raw_days)[-days:] if days > 0 else [],
                    "ranked_ikm": _int(ranked),
                    "top": [{"rank": r, "ikm_id": i_, "name": reader.ikm_name(i_), "amount_idr": a}
                            for r, i_, a in pages[ev]]})
    return out


def summary(reader: Reader, event_id: str) -> Query[dict[str, Any]]:
    """An event's totals, per channel and per local day."""
    ev = reader.event(event_id)
    root = reader.root(ev.id)

    def step(pipe: Any) -> None:
        pipe.hgetall(reader.keys.event_totals(root, ev.id))
        pipe.hgetall(reader.keys.event_days(root, ev.id))
        pipe.zcard(reader.keys.board(root, ev.id))
        pipe.exists(reader.keys.recovering())

    raw_totals, raw_days, ranked, recovering = yield step
    totals = parse_totals(raw_totals)
    return {**_event_info(reader, ev), "totals": _public_totals(totals),
            "by_channel": totals["by_channel"], "by_day": parse_days(raw_days),
            "ikm_with_sales": _int(ranked), "recovering": bool(recovering)}


def ikm(reader: Reader, event_id: str, ikm_id: str) -> Query[dict[str, Any]]:
    """One IKM's totals in an event: per channel, per day, and its rank."""
    ev = reader.event(event_id)
    if ikm_id not in ev.ikm:
        raise NotFound(f"IKM {ikm_id!r} does not take part in event {event_id!r}")
    root = reader.root(ev.id)
    board_key = reader.keys.board(root, ev.id)

    def step(pipe: Any) -> None:
        pipe.hgetall(reader.keys.ikm_totals(root, ev.id, ikm_id))
        pipe.hgetall(reader.keys.ikm_days(root, ev.id, ikm_id))
        pipe.zscore(board_key, ikm_id)
        pipe.hget(reader.keys.event_totals(root, ev.id), "amount_idr")
        pipe.exists(reader.keys.recovering())

    raw_totals, raw_days, score, event_total, recovering = yield step
    rank = None
    if score is not None:
        # Competition rank: one more than the IKM with a strictly larger amount.
        replies = yield lambda pipe: pipe.zcount(board_key, f"({_int(score)}", "+inf")
        rank = _int(replies[0]) + 1
    totals = parse_totals(raw_totals)
    bp = share_bp(totals["amount_idr"], _int(event_total))
    info = reader.registry.ikm[ikm_id]
    return {"event_id": ev.id, "ikm_id": ikm_id, "name": info.name, "city": info.city,
            "category": info.category, "rank": rank, "share_bp": bp, "share": share_text(bp),
            "totals": _public_totals(totals), "by_channel": totals["by_channel"],
            "by_day": parse_days(raw_days), "recovering": bool(recovering)}


def signature(reader: Reader, event_id: str) -> Query[tuple[int, ...]]:
    """A cheap fingerprint of an event's totals: changes whenever a sale is applied."""
    ev = reader.event(event_id)
    key = reader.keys.event_totals(reader.root(ev.id), ev.id)
    replies = yield lambda pipe: (pipe.hmget(key, list(SIGNATURE_FIELDS)),
                                  pipe.exists(reader.keys.recovering()))
    return (*(_int(v) for v in replies[0]), _int(replies[1]))


def parse_ticker_item(reader: Reader, ev: Event, raw: Any) -> dict[str, Any] | None:
    """One ticker entry (the worker's JSON) for display, or None if unreadable."""
    try:
        item = json.loads(raw)
        amount = int(item["amount_idr"])
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(item, dict):
        return None
    ikm_id = str(item.get("ikm_id", ""))
    channel = str(item.get("channel", ""))
    kind = str(item.get("kind", "sale"))
    when = ""
    try:
        at = datetime.fromisoformat(str(item.get("occurred_at")))
        when = at.astimezone(zone(ev.timezone)).strftime("%d/%m %H.%M")
    except (ValueError, TypeError):
        pass
    return {"sale_id": str(item.get("sale_id", "")), "kind": kind, "ikm_id": ikm_id,
            "name": reader.ikm_name(ikm_id), "channel": channel,
            "channel_label": CHANNEL_LABELS.get(channel, channel), "amount_idr": amount,
            "amount_text": ("−" if kind == "refund" else "") + format_idr(amount),
            "time": when}


def snapshot(reader: Reader, event_id: str, limit: int = 10,
             ticker: int = TICKER_SHOWN) -> Query[dict[str, Any]]:
    """Everything the venue screen shows, with amounts already formatted the Indonesian way."""
    ev = reader.event(event_id)
    root = reader.root(ev.id)
    board = yield from leaderboard(reader, event_id, limit)
    replies = yield lambda pipe: (
        pipe.hgetall(reader.keys.event_totals(root, ev.id)),
        pipe.lrange(reader.keys.ticker(root, ev.id), 0, ticker - 1),
        pipe.exists(reader.keys.recovering()),
    )
    raw_totals, raw_ticker, recovering = replies
    totals = parse_totals(raw_totals)
    for entry in board["entries"]:
        entry["amount_text"] = format_idr_short(entry["amount_idr"])
        entry["amount_exact"] = format_idr(entry["amount_idr"])
        entry["share_pct"] = f"{entry['share_bp'] / 100:.1f}".replace(".", ",") + "%"
    channels = [{"channel": ch, "label": CHANNEL_LABELS[ch], **totals["by_channel"][ch],
                 "amount_text": format_idr_short(totals["by_channel"][ch]["amount_idr"])}
                for ch in CHANNELS]
    items = [x for x in (parse_ticker_item(reader, ev, raw) for raw in raw_ticker) if x]
    return {
        **_event_info(reader, ev),
        "signature": [*_signature_of(totals), _int(recovering)],
        "recovering": bool(recovering),
        "total_idr": totals["amount_idr"], "total_text": format_idr_short(totals["amount_idr"]),
        "total_exact": format_idr(totals["amount_idr"]), "count": totals["count"],
        "count_text": f"{totals['count']:,}".replace(",", "."),
        "ranked_ikm": board["ranked_ikm"], "leaderboard": board["entries"],
        "channels": channels, "ticker": items,
    }


def _signature_of(totals: dict[str, Any]) -> tuple[int, ...]:
    return tuple(_int(totals.get(f)) for f in SIGNATURE_FIELDS)
