"""Who may post what: the principal behind a bearer token, and the scope it may post in.

Tokens and their hashes live in :mod:`producers.tokens` (one file, one reloading
source for booth and channel tokens); this module only maps a token to a
:class:`Principal` and checks each item against that principal's scope.

A **booth** principal may post only ``channel = offline`` sales for its own
``booth_id`` (filled in when absent), its registered event and its IKM
(403 ``booth_not_allowed`` otherwise). A **channel** principal may post only
sales of its own channel (403 ``channel_not_allowed``), for any IKM taking part
in an event that takes that channel (the registry's ``channels``; a booths-only
exhibition refuses it, 403 ``channel_not_allowed``); the contract checks the
rest. Channel tokens cannot post ``offline`` sales: only booths can.

Sale ids are namespaced (:data:`rekap.names.CHANNEL_ID_PREFIX`), because a
channel's ids are derived from its order numbers, which anyone can guess: a
token ``<channel>`` posts only ``sale_id`` and ``refund_of`` starting
``<prefix>:``, a token ``<channel>:<integrator>`` only those starting
``<prefix>:<integrator>:``, and a booth none starting with any channel's prefix
(403 ``sale_id_not_allowed``). So one integrator cannot claim another's orders
before they arrive, nor refund a sale of another channel or of a booth: a
refund comes through the channel of its sale (the worker checks that again
against the ledger, for records that never passed ingest).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from producers.ingest.outcomes import CHANNEL_NOT_ALLOWED, SALE_ID_NOT_ALLOWED
from producers.tokens import Tokens
from rekap.contract import Reason
from rekap.names import CHANNEL_ID_PREFIX, sale_id_namespace
from rekap.registry import Registry

#: The 401 details: no usable token, and a known token past its expiry.
INVALID_TOKEN: Final = "a valid bearer token is required"  # noqa: S105 - a message, not a secret
TOKEN_EXPIRED: Final = "token expired"  # noqa: S105 - a message, not a secret

_CHANNEL_PREFIXES: Final = tuple(f"{p}:" for p in CHANNEL_ID_PREFIX.values())


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    kind: Literal["booth", "channel"]
    name: str  # booth id, or the channel token's name ("marketplace:tokopedia")
    channel: str  # "offline" for booths
    event: str | None = None
    ikm: frozenset[str] = frozenset()
    #: What every sale_id and refund_of it posts starts with ("mp:", "mp:tokopedia:");
    #: "" for a booth, whose ids must instead start with no channel's prefix.
    namespace: str = ""
    #: Events whose registry ``channels`` leave out this principal's channel.
    closed_events: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Unauthenticated:
    """Why a request has no principal (HTTP 401): :data:`INVALID_TOKEN` or :data:`TOKEN_EXPIRED`."""

    detail: str


@dataclass(frozen=True)
class Denial:
    """Why an authenticated principal may not post one item (HTTP 403)."""

    reason: str
    detail: str


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    # Tokens are ASCII; anything else (raw 0xff bytes arrive as surrogate escapes) is
    # no token, and must not reach hashing, which would fail to encode it.
    if scheme.lower() != "bearer" or not token.strip() or not token.isascii():
        return None
    return token.strip()


def identify(token: str | None, registry: Registry, tokens: Tokens,
             now: datetime | None = None) -> Principal | Unauthenticated:
    """The principal owning ``token``, or why there is none.

    A booth token counts only while its booth is in the registry: a booth removed from
    the registry is refused even if the token file still names it. A token past its
    ``expires`` is refused with its own detail, so its holder knows to ask for a new one.
    """
    if not token:
        return Unauthenticated(INVALID_TOKEN)
    owner = tokens.owner(token)
    if owner is None:
        return Unauthenticated(INVALID_TOKEN)
    kind, name = owner
    if tokens.expired(kind, name, now):
        return Unauthenticated(TOKEN_EXPIRED)
    if kind == "channel":
        channel, _, integrator = name.partition(":")
        closed = frozenset(e.id for e in registry.events.values() if channel not in e.channels)
        return Principal("channel", name, channel,
                         namespace=sale_id_namespace(channel, integrator or None),
                         closed_events=closed)
    booth = registry.booths.get(name)
    if booth is None:
        return Unauthenticated(INVALID_TOKEN)
    return Principal("booth", booth.id, "offline", booth.event, booth.ikm)


def authenticate(token: str | None, registry: Registry, tokens: Tokens) -> Principal | None:
    """:func:`identify` without the reason: the principal owning ``token``, or None."""
    found = identify(token, registry, tokens)
    return found if isinstance(found, Principal) else None


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
        return _booth_ids(principal, item)
    if channel != principal.channel:
        return Denial(CHANNEL_NOT_ALLOWED,
                      f"token {principal.name!r} may only post channel {principal.channel!r}, "
                      f"got {channel!r}")
    event = item.get("event_id")
    if event in principal.closed_events:
        return Denial(CHANNEL_NOT_ALLOWED,
                      f"event {event!r} does not take channel {principal.channel!r} "
                      "(its registry entry lists the channels it takes)")
    for name in ("sale_id", "refund_of"):
        value = item.get(name)
        if isinstance(value, str) and not value.startswith(principal.namespace):
            return Denial(SALE_ID_NOT_ALLOWED,
                          f"token {principal.name!r} may only post a {name} starting "
                          f"{principal.namespace!r}, got {value[:80]!r}")
    return None


def _booth_ids(principal: Principal, item: dict[str, Any]) -> Denial | None:
    for name in ("sale_id", "refund_of"):
        value = item.get(name)
        if isinstance(value, str) and value.startswith(_CHANNEL_PREFIXES):
            return Denial(SALE_ID_NOT_ALLOWED,
                          f"booth {principal.name!r} may not post a {name} in a channel's "
                          f"namespace ({', '.join(_CHANNEL_PREFIXES)}), got {value[:80]!r}")
    return None
