"""Ingest's rate limits: token buckets per caller and a cap on requests in flight.

Three limits, each answered ``429`` with ``Retry-After`` (whole seconds) and a
JSON reason, before any work is done for the request:

* **per token** (``rate_limited``): a bucket per authenticated principal (booth
  or channel token), ``Settings.ingest_rate_per_token`` requests/s with bursts
  of ``ingest_burst_per_token``. A batch of sales is one request, so a booth
  syncing a backlog in batches is never near it.
* **per client address, for failed authentication** (``rate_limited``): only
  requests without a valid token take from it. Tokens are 256 random bits, so
  guessing one is not the risk; the bucket makes a client that keeps sending a
  bad or revoked token back off (429 instead of 401, with ``Retry-After``) and
  never refuses a valid token from the same address, so booths behind the
  venue's one NAT address keep working while one device misbehaves
  (``Settings.ingest_rate_per_address`` / ``ingest_burst_per_address``). A
  route that checks a short secret of its own (the booth pairing code) calls
  :func:`address_limited` *before* checking it, which does slow guessing.
* **in flight** (``too_busy``): at most ``Settings.ingest_max_in_flight`` POST
  requests processed at once; bodies are up to ``max_body_bytes``, so this also
  bounds the memory they hold.

Behind a reverse proxy every request comes from the proxy's address: the
per-address bucket then limits failed authentication for all callers together.

The bucket logic is pure, with the clock passed in: costs well under a
microsecond per request, with no lock (one event loop) and no thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from rekap.settings import Settings

#: Reasons of a 429.
RATE_LIMITED: Final = "rate_limited"
TOO_BUSY: Final = "too_busy"
#: Retry-After of a ``too_busy`` answer: requests in flight finish in milliseconds.
BUSY_RETRY_AFTER_S: Final = 1
#: Keys a bucket keeps before it forgets idle ones (a full bucket is the same as none).
MAX_KEYS: Final = 10_000


class TokenBucket:
    """A token bucket per key: ``rate`` tokens a second up to ``burst``; one per request.

    ``rate`` 0 turns the limit off. A key's bucket starts full.
    """

    def __init__(self, rate: float, burst: int, *, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.max_keys = max_keys
        #: key -> [tokens, monotonic time they were counted]
        self._buckets: dict[Hashable, list[float]] = {}

    def take(self, key: Hashable, now: float) -> float:
        """Take a token: 0.0 when there was one, else the seconds until there is one."""
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget(now)
            self._buckets[key] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def peek(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` has a token (0.0: it has one now), taking nothing."""
        bucket = self._buckets.get(key)
        if self.rate <= 0 or bucket is None:
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget(self, now: float) -> None:
        """Drop buckets that have refilled (no different from a new one); if that frees
        nothing, the older half, so memory stays bounded whatever the number of keys."""
        full = [k for k, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            for key in list(self._buckets)[:len(self._buckets) // 2 + 1]:
                del self._buckets[key]


class InFlight:
    """Requests being processed at once, up to ``limit`` (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def enter(self) -> bool:
        if self.limit and self.count >= self.limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        self.count -= 1


def retry_after(wait_s: float) -> int:
    """A ``Retry-After`` value: whole seconds, at least 1, never before a token is back."""
    return max(1, math.ceil(wait_s))


@dataclass
class Limits:
    """The limits of one ingest app; ``refused`` counts each 429 by reason."""

    per_token: TokenBucket
    per_address: TokenBucket
    in_flight: InFlight
    refused: Callable[[str], None] = field(default=lambda reason: None)
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(TokenBucket(settings.ingest_rate_per_token, settings.ingest_burst_per_token),
                   TokenBucket(settings.ingest_rate_per_address, settings.ingest_burst_per_address),
                   InFlight(settings.ingest_max_in_flight))

    def token_wait(self, key: Hashable) -> float:
        return self.per_token.take(key, self.clock())

    def address_wait(self, request: web.Request) -> float:
        return self.per_address.take(request.remote or "", self.clock())


def too_many(reason: str, wait_s: float, detail: str) -> web.Response:
    """The 429 answer."""
    return web.json_response({"error": {"reason": reason, "detail": detail}}, status=429,
                             headers={"Retry-After": str(retry_after(wait_s))})


LIMITS: web.AppKey[Limits] = web.AppKey("rekap_ingest_limits", Limits)


def address_limited(request: web.Request) -> web.Response | None:
    """For a route checking a secret of its own (a pairing code), before checking it:
    a 429 when this client address has used up its failed-attempt bucket, else None.

    Takes a token whether the secret then turns out right or wrong: pairing is rare.
    """
    limits = request.app[LIMITS]
    wait = limits.address_wait(request)
    if wait <= 0:
        return None
    limits.refused(RATE_LIMITED)
    return too_many(RATE_LIMITED, wait, "too many attempts from this address; retry later")
