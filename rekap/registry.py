"""The registry: which events exist, which IKM take part, which booth posts for whom.

One TOML file, loaded by every component (worker, ingest, simulator, exporter)::

    version = 1

    [[events]]
    id = "lagawi-2022"                 # slug, stable forever
    name = "Harvesting BBI Lagawi Fest 2022"
    venue = "Lampung, daring dan luring"
    timezone = "Asia/Jakarta"          # day buckets use this zone
    starts_on = 2022-03-20             # inclusive local dates
    ends_on = 2022-06-17
    parent = ""                        # optional: totals roll up into the parent
    max_sale_idr = 500000000           # optional cap per record (absurd-amount guard)
    channels = ["offline"]             # optional: the only channels whose sales it takes
                                       # (default: every channel); ["offline"] = booths only
    milestones_idr = [10000000, 100000000]  # optional: `rekap milestones` thresholds
                                       # (default Rp10 juta, Rp100 juta, Rp1 miliar)
    ikm = ["lampung-ethnica", ...]     # participants (a child's must be in its parent)

    [[ikm]]
    id = "lampung-ethnica"
    name = "Lampung Ethnica"
    city = "Bandar Lampung"
    category = "fashion"
    champion = true

    [[booths]]
    id = "kokas-01"
    event = "lagawi-2022-kokas"
    ikm = ["lampung-ethnica"]

Booth and channel tokens are not the registry's business: they live in a
separate file of hashes, read by :mod:`producers.tokens`.

:class:`RegistrySource` re-reads the file when it changes, so a booth or an
IKM added during an expo is picked up without a restart; a broken edit is
logged and the last good registry stays in force.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rekap.errors import RegistryError
from rekap.filewatch import FileWatch
from rekap.names import CHANNELS

log = logging.getLogger(__name__)

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DEFAULT_MAX_SALE_IDR = 500_000_000


@dataclass(frozen=True)
class Event:
    id: str
    name: str
    venue: str
    timezone: str
    starts_on: date
    ends_on: date
    ikm: frozenset[str]
    parent: str | None = None
    max_sale_idr: int = DEFAULT_MAX_SALE_IDR
    #: Channels whose sales the event takes (``channels`` in the file; default all). The
    #: contract rejects any other (``channel_not_in_event``) and ingest refuses a channel
    #: token there, so an exhibition of booths stays booths only.
    channels: frozenset[str] = frozenset(CHANNELS)
    #: Net sales amounts ``rekap milestones`` announces for the event and each of its IKM
    #: (``milestones_idr`` in the file, ascending integer rupiah); None: its defaults.
    milestones_idr: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Ikm:
    id: str
    name: str
    city: str = ""
    category: str = ""
    champion: bool = False


@dataclass(frozen=True)
class Booth:
    id: str
    event: str
    ikm: frozenset[str]


@dataclass(frozen=True)
class Registry:
    events: Mapping[str, Event]
    ikm: Mapping[str, Ikm]
    booths: Mapping[str, Booth]
    #: Identifies the file contents this registry was built from.
    fingerprint: str = field(default="", compare=False)

    def chain(self, event_id: str) -> tuple[str, ...]:
        """The event and its ancestors, nearest first: where its totals roll up."""
        return self._chains[event_id]

    def root(self, event_id: str) -> str:
        return self._chains[event_id][-1]

    @cached_property
    def _chains(self) -> dict[str, tuple[str, ...]]:
        # Asked once or twice per record by the worker's planner: walk each chain once.
        chains: dict[str, tuple[str, ...]] = {}
        for event_id in self.events:
            out: list[str] = []
            current: str | None = event_id
            while current is not None:
                out.append(current)
                current = self.events[current].parent
            chains[event_id] = tuple(out)
        return chains

    def children(self, event_id: str) -> tuple[str, ...]:
        return tuple(sorted(e.id for e in self.events.values() if e.parent == event_id))


def load_registry(path: Path) -> Registry:
    """Read and check the registry file (tokens are not in it: :mod:`producers.tokens`)."""
    return build_registry(_read_toml(path),
                          fingerprint=hashlib.sha256(path.read_bytes()).hexdigest()[:16])


def build_registry(raw: Mapping[str, Any], fingerprint: str = "") -> Registry:
    """Build a registry from parsed TOML, raising :class:`RegistryError` on any inconsistency."""
    if raw.get("version", 1) != 1:
        raise RegistryError(f"registry version {raw.get('version')!r} is not supported (want 1)")
    ikm = {i.id: i for i in (_ikm(x) for x in raw.get("ikm", []))}
    _unique("ikm", (x.get("id") for x in raw.get("ikm", [])))
    events = {e.id: e for e in (_event(x) for x in raw.get("events", []))}
    _unique("event", (x.get("id") for x in raw.get("events", [])))
    booths = {b.id: b for b in (_booth(x) for x in raw.get("booths", []))}
    _unique("booth", (x.get("id") for x in raw.get("booths", [])))
    for ev in events.values():
        _check_event(ev, events, ikm.keys())
    for ev in events.values():
        _check_ancestry(ev, events)
    for booth in booths.values():
        _check_booth(booth, events)
    return Registry(events=events, ikm=ikm, booths=booths, fingerprint=fingerprint)


def _check_event(ev: Event, events: Mapping[str, Event], ikm: Iterable[str]) -> None:
    unknown = ev.ikm - set(ikm)
    if unknown:
        raise RegistryError(f"event {ev.id!r} lists unknown IKM {sorted(unknown)}")
    if ev.starts_on > ev.ends_on:
        raise RegistryError(f"event {ev.id!r} ends before it starts")
    if ev.parent is None:
        return
    parent = events.get(ev.parent)
    if parent is None:
        raise RegistryError(f"event {ev.id!r} has unknown parent {ev.parent!r}")
    if not ev.ikm <= parent.ikm:
        raise RegistryError(
            f"event {ev.id!r} has IKM not in its parent {ev.parent!r}: "
            f"{sorted(ev.ikm - parent.ikm)}")
    if not (parent.starts_on <= ev.starts_on and ev.ends_on <= parent.ends_on):
        raise RegistryError(f"event {ev.id!r} lies outside its parent's dates")


def _check_ancestry(ev: Event, events: Mapping[str, Event]) -> None:
    seen: set[str] = set()
    current: str | None = ev.id
    while current is not None:
        if current in seen:
            raise RegistryError(f"event {ev.id!r} is its own ancestor")
        seen.add(current)
        current = events[current].parent


def _check_booth(booth: Booth, events: Mapping[str, Event]) -> None:
    booth_event = events.get(booth.event)
    if booth_event is None:
        raise RegistryError(f"booth {booth.id!r} is for unknown event {booth.event!r}")
    if not booth.ikm <= booth_event.ikm:
        raise RegistryError(f"booth {booth.id!r} lists IKM not in event {booth_event.id!r}: "
                            f"{sorted(booth.ikm - booth_event.ikm)}")
    if "offline" not in booth_event.channels:
        raise RegistryError(f"booth {booth.id!r} is for event {booth_event.id!r}, whose channels "
                            f"{sorted(booth_event.channels)} leave out 'offline' (booth sales)")


class RegistrySource:
    """The current registry, re-read when its file changes.

    ``current()`` is cheap (a ``stat`` per call at most every ``check_every_s``)
    so hot paths may call it per batch or per request. A change that does not
    load is logged and ignored: the last good registry stays in force.
    """

    def __init__(self, path: Path, check_every_s: float = 2.0) -> None:
        self._watch = FileWatch(path, check_every_s)
        self._path = path
        self._registry = load_registry(path)

    def current(self) -> Registry:
        if self._watch.changed():
            try:
                self._registry = load_registry(self._path)
                log.info("registry reloaded from %s (%s)", self._path, self._registry.fingerprint)
            except (RegistryError, OSError) as exc:
                log.error("registry change in %s ignored, keeping the last good one: %s",
                          self._path, exc)
        return self._registry


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise RegistryError(f"registry file {path} does not exist (set REKAP_REGISTRY_PATH)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"registry file {path} is not valid TOML: {exc}") from exc


def _unique(kind: str, ids: Iterable[Any]) -> None:
    seen: set[Any] = set()
    for i in ids:
        if i in seen:
            raise RegistryError(f"{kind} id {i!r} appears twice")
        seen.add(i)


def _slug(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not SLUG.match(value):
        raise RegistryError(f"{kind} id {value!r} must be a lower-case slug (a-z, 0-9, -)")
    return value


def _date(kind: str, value: Any) -> date:
    if not isinstance(value, date):
        raise RegistryError(f"{kind} needs a TOML date like 2022-06-01, got {value!r}")
    return value


def _event(x: Mapping[str, Any]) -> Event:
    ev_id = _slug("event", x.get("id"))
    tz = x.get("timezone", "Asia/Jakarta")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RegistryError(f"event {ev_id!r} has unknown time zone {tz!r}") from exc
    max_sale = x.get("max_sale_idr", DEFAULT_MAX_SALE_IDR)
    if not isinstance(max_sale, int) or max_sale < 1:
        raise RegistryError(f"event {ev_id!r}: max_sale_idr must be a positive integer")
    return Event(
        id=ev_id,
        name=str(x.get("name", ev_id)),
        venue=str(x.get("venue", "")),
        timezone=tz,
        starts_on=_date(f"event {ev_id!r} starts_on", x.get("starts_on")),
        ends_on=_date(f"event {ev_id!r} ends_on", x.get("ends_on")),
        ikm=frozenset(_slug("ikm", i) for i in x.get("ikm", [])),
        parent=x.get("parent") or None,
        max_sale_idr=max_sale,
        channels=_channels(ev_id, x.get("channels", list(CHANNELS))),
        milestones_idr=_milestones(ev_id, x.get("milestones_idr")),
    )


def _milestones(ev_id: str, value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
            or len(set(value)) != len(value)):
        raise RegistryError(f"event {ev_id!r}: milestones_idr must be a non-empty list of distinct "
                            f"positive integer rupiah, got {value!r}")
    return tuple(sorted(value))


def _channels(ev_id: str, value: Any) -> frozenset[str]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(c, str) and c in CHANNELS for c in value)):
        raise RegistryError(f"event {ev_id!r}: channels must be a non-empty list of "
                            f"{', '.join(CHANNELS)}, got {value!r}")
    return frozenset(value)


def _ikm(x: Mapping[str, Any]) -> Ikm:
    return Ikm(id=_slug("ikm", x.get("id")), name=str(x.get("name", x.get("id"))),
               city=str(x.get("city", "")), category=str(x.get("category", "")),
               champion=bool(x.get("champion", False)))


def _booth(x: Mapping[str, Any]) -> Booth:
    return Booth(id=_slug("booth", x.get("id")), event=_slug("event", x.get("event")),
                 ikm=frozenset(_slug("ikm", i) for i in x.get("ikm", [])))
