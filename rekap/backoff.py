"""How long to wait before trying again: one exponential backoff for every retrying part.

The worker retries a batch during an outage (:mod:`streams.retry`), booths and the
simulator retry their posts to ingest (:mod:`producers.ingest.client`); each picks
its own numbers, all with this rule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """The wait before retry ``n`` (1, 2, ...) is ``min(cap_s, base_s * 2**n)`` times a
    uniform draw from ``[floor, 1]``.

    ``floor=0`` is full jitter: many clients retrying at once (forty booths back on the
    venue Wi-Fi) spread over the whole window instead of hammering ingest in step.
    ``floor=1`` is no jitter: one process retrying its own work.
    """

    base_s: float
    cap_s: float
    floor: float = 0.0

    def wait_s(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** attempt)
        if self.floor >= 1.0:
            return ceiling
        return ceiling * (rng or random).uniform(self.floor, 1.0)
