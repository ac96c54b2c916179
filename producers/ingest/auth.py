"""Who may post what: the principal behind a bearer token, and the scope it may post in.

Tokens and their hashes live in :mod:`producers.tokens` (one file, one reloading
source for booth and channel tokens); this module only maps a token to a
:class:`Principal` and checks each item against that principal's scope.

A **booth** principal may post only ``channel = offline`` sales for its own
``booth_id`` (filled in when absent), its registered event and its IKM
(403 ``booth_not_allowed`` otherwise). A **channel** principal may post only
sales of its own channel (403 ``channel_not_allowed``), for any IKM taking part
in the event; the contract checks the rest. Channel tokens cannot post
``offline`` sales: only booths can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from producers.ingest.outcomes import CHANNEL_NOT_ALLOWED
from producers.tokens import Tokens
from rekap.contract import Reason
from rekap.registry import Registry


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


def authenticate(token: str | None, registry: Registry, tokens: Tokens) -> Principal | None:
    """The principal owning ``token``, or None.

    A booth token counts only while its booth is in the registry: a booth removed from
    the registry is refused even if the token file still names it.
    """
    if not token:
        return None
    owner = tokens.owner(token)
    if owner is None:
        return None
    kind, name = owner
    if kind == "channel":
        return Principal("channel", name, name.split(":", 1)[0])
    booth = registry.booths.get(name)
    if booth is None:
        return None
    return Principal("booth", booth.id, "offline", booth.event, booth.ikm)


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
            return Denial(Reason.BOOTH_NOT_ALLOWED.value,
                          f"booth {principal.name!r} may only post channel 'offline', got {channel!r}")
        if item["booth_id"] != principal.name:
            return Denial(Reason.BOOTH_NOT_ALLOWED.value,
                          f"booth {principal.name!r} may not post as booth {item['booth_id']!r}")
        if item.get("event_id") != principal.event or item.get("ikm_id") not in principal.ikm:
            return Denial(Reason.BOOTH_NOT_ALLOWED.value,
                          f"booth {principal.name!r} may not post for IKM {item.get('ikm_id')!r} "
                          f"in event {item.get('event_id')!r}")
        return None
    if channel != principal.channel:
        return Denial(CHANNEL_NOT_ALLOWED,
                      f"token {principal.name!r} may only post channel {principal.channel!r}, "
                      f"got {channel!r}")
    return None
