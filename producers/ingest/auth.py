"""Who may post what: booth tokens and channel tokens, stored hashed, compared in constant time.

Both kinds live in one TOML token file (``REKAP_BOOTH_TOKENS_PATH``), never in
the registry and never in plain text::

    [booths]                      # read by rekap.registry (Booth.token_sha256)
    "kokas-01" = "<sha256 hex>"

    [channels]                    # read here
    "marketplace" = "<sha256 hex>"            # one token for the channel ...
    "marketplace:tokopedia" = "<sha256 hex>"  # ... or one per integrator: <channel>:<name>
    "website" = "<sha256 hex>"
    "virtual_expo" = "<sha256 hex>"

A **booth** principal may post only ``channel = offline`` sales for its own
``booth_id`` (filled in when absent), its registered event and its IKM
(403 ``booth_not_allowed`` otherwise). A **channel** principal may post only
sales of its own channel (403 ``channel_not_allowed``), for any IKM taking part
in the event; the contract checks the rest. Channel tokens cannot post
``offline`` sales: only booths can.
"""

from __future__ import annotations

import hmac
import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rekap.names import CHANNELS
from rekap.registry import Registry, hash_token

log = logging.getLogger(__name__)

ONLINE_CHANNELS = tuple(c for c in CHANNELS if c != "offline")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    kind: Literal["booth", "channel"]
    name: str  # booth id, or the channel token's name ("marketplace:tokopedia")
    channel: str  # "offline" for booths
    event: str | None = None
    ikm: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Denial:
    """Why an authenticated principal may not post one item (HTTP 403)."""

    reason: str
    detail: str


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def load_channel_hashes(path: Path | None) -> dict[str, str]:
    """The ``[channels]`` table of the token file; bad entries are logged and skipped."""
    if path is None or not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            table = tomllib.load(fh).get("channels", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        log.error("token file %s unreadable, no channel tokens in force: %s", path, exc)
        return {}
    out: dict[str, str] = {}
    for name, digest in table.items():
        channel = name.split(":", 1)[0]
        if channel not in ONLINE_CHANNELS or not isinstance(digest, str) or not _HEX64.match(digest):
            log.error("token file %s: channel entry %r ignored (want <channel>[:<name>] = "
                      "\"<sha256 hex>\", channel one of %s)", path, name, ", ".join(ONLINE_CHANNELS))
            continue
        out[name] = digest
    return out


class ChannelTokens:
    """Channel token hashes, re-read when the token file changes (like the registry)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._stamp: int | None = None
        self._hashes: dict[str, str] = {}
        self.current()

    def current(self) -> Mapping[str, str]:
        stamp = None
        if self._path is not None:
            try:
                stamp = self._path.stat().st_mtime_ns
            except OSError:
                stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            self._hashes = load_channel_hashes(self._path)
        return self._hashes


def authenticate(token: str | None, registry: Registry,
                 channel_hashes: Mapping[str, str]) -> Principal | None:
    """The principal owning ``token``, or None. Every stored hash is compared, in constant time."""
    if not token:
        return None
    digest = hash_token(token)
    found: Principal | None = None
    booth = registry.booth_for_token(token)
    if booth is not None:
        found = Principal("booth", booth.id, "offline", booth.event, booth.ikm)
    for name, stored in channel_hashes.items():
        if hmac.compare_digest(digest, stored):
            found = Principal("channel", name, name.split(":", 1)[0])
    return found


def authorize(principal: Principal, item: dict[str, Any]) -> Denial | None:
    """Check one decoded sale against the principal's scope; fills in a booth's ``booth_id``.

    Runs before contract validation, so a booth probing other IKM learns
    nothing but "not allowed".
    """
    channel = item.get("channel")
    if principal.kind == "booth":
        if "booth_id" not in item or item["booth_id"] is None:
            item["booth_id"] = principal.name
        if channel != "offline":
            return Denial("booth_not_allowed",
                          f"booth {principal.name!r} may only post channel 'offline', got {channel!r}")
        if item["booth_id"] != principal.name:
            return Denial("booth_not_allowed",
                          f"booth {principal.name!r} may not post as booth {item['booth_id']!r}")
        if item.get("event_id") != principal.event or item.get("ikm_id") not in principal.ikm:
            return Denial("booth_not_allowed",
                          f"booth {principal.name!r} may not post for IKM {item.get('ikm_id')!r} "
                          f"in event {item.get('event_id')!r}")
        return None
    if channel != principal.channel:
        return Denial("channel_not_allowed",
                      f"token {principal.name!r} may only post channel {principal.channel!r}, "
                      f"got {channel!r}")
    return None
