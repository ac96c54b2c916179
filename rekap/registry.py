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

Booth tokens are secrets, so they are not in the registry file itself: an
optional second TOML file (``REKAP_BOOTH_TOKENS_PATH``) maps booth ids to the
SHA-256 of their token (``[booths] kokas-01 = "<hex>"``). Tokens are 256-bit
random strings, so a plain SHA-256 is enough; the comparison is constant-time.

:class:`RegistrySource` re-reads the files when they change, so a booth or an
IKM added during an expo is picked up without a restart; a broken edit is
logged and the last good registry stays in force.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rekap.errors import RegistryError

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
    token_sha256: str | None = None

    def token_matches(self, token: str) -> bool:
        if self.token_sha256 is None:
            return False
        return hmac.compare_digest(hash_token(token), self.token_sha256)


@dataclass(frozen=True)
class Registry:
    events: Mapping[str, Event]
    ikm: Mapping[str, Ikm]
    booths: Mapping[str, Booth]
    #: Identifies the file contents this registry was built from.
    fingerprint: str = field(default="", compare=False)

    def chain(self, event_id: str) -> tuple[str, ...]:
        """The event and its ancestors, nearest first: where its totals roll up."""
        out: list[str] = []
        current: str | None = event_id
        while current is not None:
            out.append(current)
            current = self.events[current].parent
        return tuple(out)

    def root(self, event_id: str) -> str:
        return self.chain(event_id)[-1]

    def children(self, event_id: str) -> tuple[str, ...]:
        return tuple(sorted(e.id for e in self.events.values() if e.parent == event_id))

    def booth_for_token(self, token: str) -> Booth | None:
        """The booth whose token this is, comparing every hash in constant time."""
        digest = hash_token(token)
        found = None
        for booth in self.booths.values():
            if booth.token_sha256 is not None and hmac.compare_digest(digest, booth.token_sha256):
                found = booth
        return found


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh booth token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def load_registry(path: Path, tokens_path: Path | None = None) -> Registry:
    """Read and check the registry file (and the optional token-hash file)."""
    raw = _read_toml(path)
    tokens: Mapping[str, Any] = {}
    digest = hashlib.sha256(path.read_bytes())
    if tokens_path is not None:
        tokens = _read_toml(tokens_path).get("booths", {})
        digest.update(tokens_path.read_bytes())
    return build_registry(raw, tokens, fingerprint=digest.hexdigest()[:16])


def build_registry(raw: Mapping[str, Any], tokens: Mapping[str, Any] | None = None,
                   fingerprint: str = "") -> Registry:
    """Build a registry from parsed TOML, raising :class:`RegistryError` on any inconsistency."""
    if raw.get("version", 1) != 1:
        raise RegistryError(f"registry version {raw.get('version')!r} is not supported (want 1)")
    tokens = tokens or {}
    ikm = {i.id: i for i in (_ikm(x) for x in raw.get("ikm", []))}
    _unique("ikm", (x.get("id") for x in raw.get("ikm", [])))
    events = {e.id: e for e in (_event(x) for x in raw.get("events", []))}
    _unique("event", (x.get("id") for x in raw.get("events", [])))
    booths = {b.id: b for b in (_booth(x, tokens) for x in raw.get("booths", []))}
    _unique("booth", (x.get("id") for x in raw.get("booths", [])))
    for ev in events.values():
        unknown = ev.ikm - ikm.keys()
        if unknown:
            raise RegistryError(f"event {ev.id!r} lists unknown IKM {sorted(unknown)}")
        if ev.starts_on > ev.ends_on:
            raise RegistryError(f"event {ev.id!r} ends before it starts")
        if ev.parent is not None:
            parent = events.get(ev.parent)
            if parent is None:
                raise RegistryError(f"event {ev.id!r} has unknown parent {ev.parent!r}")
            if not ev.ikm <= parent.ikm:
                raise RegistryError(
                    f"event {ev.id!r} has IKM not in its parent {ev.parent!r}: "
                    f"{sorted(ev.ikm - parent.ikm)}")
            if not (parent.starts_on <= ev.starts_on and ev.ends_on <= parent.ends_on):
                raise RegistryError(f"event {ev.id!r} lies outside its parent's dates")
    for ev in events.values():
        seen: set[str] = set()
        current: str | None = ev.id
        while current is not None:
            if current in seen:
                raise RegistryError(f"event {ev.id!r} is its own ancestor")
            seen.add(current)
            current = events[current].parent
    for booth in booths.values():
        booth_event = events.get(booth.event)
        if booth_event is None:
            raise RegistryError(f"booth {booth.id!r} is for unknown event {booth.event!r}")
        if not booth.ikm <= booth_event.ikm:
            raise RegistryError(f"booth {booth.id!r} lists IKM not in event {booth_event.id!r}: "
                                f"{sorted(booth.ikm - booth_event.ikm)}")
    unknown_tokens = set(tokens) - booths.keys()
    if unknown_tokens:
        raise RegistryError(f"token file names unknown booths {sorted(unknown_tokens)}")
    return Registry(events=events, ikm=ikm, booths=booths, fingerprint=fingerprint)


class RegistrySource:
    """The current registry, re-read when its files change.

    ``current()`` is cheap (a ``stat`` per call at most every ``check_every_s``)
    so hot paths may call it per batch or per request.
    """

    def __init__(self, path: Path, tokens_path: Path | None = None,
                 check_every_s: float = 2.0) -> None:
        import time

        self._clock = time.monotonic
        self._path = path
        self._tokens_path = tokens_path
        self._check_every_s = check_every_s
        self._stamp = self._stat()
        self._registry = load_registry(path, tokens_path)
        self._checked_at = self._clock()

    def current(self) -> Registry:
        now = self._clock()
        if now - self._checked_at < self._check_every_s:
            return self._registry
        self._checked_at = now
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._registry = load_registry(self._path, self._tokens_path)
                log.info("registry reloaded from %s (%s)", self._path, self._registry.fingerprint)
            except (RegistryError, OSError) as exc:
                log.error("registry change in %s ignored, keeping the last good one: %s",
                          self._path, exc)
        return self._registry

    def _stat(self) -> tuple[float, ...]:
        paths = [self._path] + ([self._tokens_path] if self._tokens_path else [])
        try:
            return tuple(p.stat().st_mtime_ns for p in paths)
        except OSError:
            return ()


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
    )


def _ikm(x: Mapping[str, Any]) -> Ikm:
    return Ikm(id=_slug("ikm", x.get("id")), name=str(x.get("name", x.get("id"))),
               city=str(x.get("city", "")), category=str(x.get("category", "")),
               champion=bool(x.get("champion", False)))


def _booth(x: Mapping[str, Any], tokens: Mapping[str, Any]) -> Booth:
    booth_id = _slug("booth", x.get("id"))
    token = tokens.get(booth_id, x.get("token_sha256"))
    if token is not None and not re.fullmatch(r"[0-9a-f]{64}", str(token)):
        raise RegistryError(f"booth {booth_id!r}: token hash must be 64 hex characters")
    return Booth(id=booth_id, event=_slug("event", x.get("event")),
                 ikm=frozenset(_slug("ikm", i) for i in x.get("ikm", [])),
                 token_sha256=token)
