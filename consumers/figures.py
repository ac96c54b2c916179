"""An event's figures as the shortlist and the report use them: event, channel, day and IKM.

Built by one pure function, :func:`from_hashes`, from a mapping of Redis key to hash
(field -> integer), so the two ways of getting those hashes give the same figures:

* :func:`read_live` reads them from Redis in one pipeline (``rekap shortlist``);
* ``rekap report`` takes them from the snapshot that ``reconcile`` just compared with the
  ledger (:mod:`consumers.report`), so every figure it prints is one that was checked.

Hashes are parsed by the read API's own parsers (:mod:`streams.web.queries`), so the
report and the venue screen cannot read a field differently. Money stays integer rupiah.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from rekap.names import CHANNELS, Keys
from rekap.redisconn import REDIS_ERRORS, SyncClient
from rekap.registry import Event, Registry
from rekap.settings import Settings
from streams.web.queries import parse_days, parse_totals

#: A Redis hash as read: field -> integer.
Hash = Mapping[str, int]


@dataclass(frozen=True)
class Totals:
    """One totals hash: net ``amount_idr`` = ``gross_idr`` - ``refunds_idr``."""

    amount_idr: int = 0
    gross_idr: int = 0
    refunds_idr: int = 0
    count: int = 0
    refund_count: int = 0
    quantity: int = 0
    #: channel -> {"amount_idr" (net), "count", "refunds_idr"}, every channel present.
    by_channel: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    #: local day -> {"amount_idr" (net), "count", "refunds_idr", "quantity"}, days with data.
    by_day: Mapping[date, Mapping[str, int]] = field(default_factory=dict)

    def channel_net(self, channel: str) -> int:
        return int(self.by_channel.get(channel, {}).get("amount_idr", 0))

    def day_net(self, day: date) -> int:
        return int(self.by_day.get(day, {}).get("amount_idr", 0))


@dataclass(frozen=True)
class IkmFigures:
    ikm_id: str
    name: str
    city: str
    category: str
    totals: Totals


@dataclass(frozen=True)
class EventFigures:
    event: Event
    totals: Totals
    #: Every IKM of the event in registry order, those without sales too (all zero).
    ikm: tuple[IkmFigures, ...]
    #: Child events (the exhibition inside the programme): (event, its totals).
    children: tuple[tuple[Event, Totals], ...] = ()

    def window(self) -> list[date]:
        """Every local day of the event's window, and any day with data outside it."""
        ev = self.event
        days = {ev.starts_on + timedelta(n) for n in range((ev.ends_on - ev.starts_on).days + 1)}
        days |= set(self.totals.by_day)
        return sorted(days)


def keys_of(keys: Keys, registry: Registry, event_id: str) -> list[str]:
    """Every hash :func:`from_hashes` reads for ``event_id``."""
    ev = registry.events[event_id]
    root = registry.root(event_id)
    out = [keys.event_totals(root, ev.id), keys.event_days(root, ev.id)]
    for child in registry.children(ev.id):
        out += [keys.event_totals(root, child), keys.event_days(root, child)]
    for ikm in sorted(ev.ikm):
        out += [keys.ikm_totals(root, ev.id, ikm), keys.ikm_days(root, ev.id, ikm)]
    return out


def totals_of(raw_totals: Hash, raw_days: Hash) -> Totals:
    """A totals hash and its ``:days`` hash as :class:`Totals`."""
    t = parse_totals(raw_totals)
    days = {date.fromisoformat(row["day"]): {k: v for k, v in row.items() if k != "day"}
            for row in parse_days(raw_days)}
    return Totals(amount_idr=t["amount_idr"], gross_idr=t["gross_idr"],
                  refunds_idr=t["refunds_idr"], count=t["count"],
                  refund_count=t["refund_count"], quantity=t["quantity"],
                  by_channel={ch: dict(t["by_channel"][ch]) for ch in CHANNELS}, by_day=days)


def from_hashes(keys: Keys, registry: Registry, event_id: str,
                hashes: Mapping[str, Hash]) -> EventFigures:
    """The figures of ``event_id`` from ``{redis key: hash}``; an absent key is all zero."""
    ev = registry.events[event_id]
    root = registry.root(event_id)

    def get(totals_key: str, days_key: str) -> Totals:
        return totals_of(hashes.get(totals_key, {}), hashes.get(days_key, {}))

    rows = []
    for ikm_id in _registry_order(registry, ev):
        info = registry.ikm.get(ikm_id)
        rows.append(IkmFigures(
            ikm_id, info.name if info else ikm_id, info.city if info else "",
            info.category if info else "",
            get(keys.ikm_totals(root, ev.id, ikm_id), keys.ikm_days(root, ev.id, ikm_id))))
    children = tuple((registry.events[c], get(keys.event_totals(root, c), keys.event_days(root, c)))
                     for c in registry.children(ev.id))
    return EventFigures(ev, get(keys.event_totals(root, ev.id), keys.event_days(root, ev.id)),
                        tuple(rows), children)


def _registry_order(registry: Registry, ev: Event) -> list[str]:
    # ev.ikm is a frozenset; the registry's [[ikm]] order is the order people wrote.
    return [i for i in registry.ikm if i in ev.ikm] + sorted(i for i in ev.ikm if i not in registry.ikm)


def read_live(settings: Settings, registry: Registry, client: SyncClient,
              event_id: str) -> EventFigures:
    """The figures of ``event_id`` as Redis holds them now (one pipeline, not a transaction:
    a batch the worker applies meanwhile may show in some hashes and not yet in others)."""
    from rekap.generations import current_keys_sync
    from rekap.redisconn import unavailable

    try:
        keys = current_keys_sync(client, Keys(settings.redis_prefix))  # follows `rekap rebuild`
        wanted = keys_of(keys, registry, event_id)
        pipe = client.pipeline(transaction=False)
        for key in wanted:
            pipe.hgetall(key)
        replies = pipe.execute()
    except REDIS_ERRORS as exc:
        raise unavailable(settings, exc, f"reading the totals of {event_id}") from exc
    hashes = {key: _ints(raw) for key, raw in zip(wanted, replies, strict=True)}
    return from_hashes(keys, registry, event_id, hashes)


def _ints(raw: Mapping[Any, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in raw.items():
        name = k.decode() if isinstance(k, bytes) else str(k)
        try:
            out[name] = int(v)
        except (TypeError, ValueError):
            continue  # bookkeeping that is not a total (e.g. the last sale's JSON)
    return out
