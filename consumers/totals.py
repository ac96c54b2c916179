"""A reference subscriber of the totals topics (kafka-python).

Downstream services (awards scoring, dashboards, notifications) read the
compacted totals topics. Each message carries absolute totals and a
``version`` that only grows per key, so a subscriber needs one rule: keep the
highest version per key and drop any message whose version is not higher
(a replay, a re-publish after a crash, or a slower worker's older view).
:class:`TotalsView` is that rule; :func:`follow` feeds it from Kafka.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rekap.kafkaconn import reader, unavailable
from rekap.settings import Settings


@dataclass
class TotalsView:
    """Latest totals per (scope, key), by version."""

    latest: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    accepted: int = 0
    dropped: int = 0

    def offer(self, key: str, value: bytes | dict[str, Any]) -> bool:
        """Take a message if its version is higher than the one held; return whether it was."""
        doc = json.loads(value) if isinstance(value, bytes | str) else value
        slot = (doc.get("scope", ""), key)
        held = self.latest.get(slot)
        if held is not None and int(doc["version"]) <= int(held["version"]):
            self.dropped += 1
            return False
        self.latest[slot] = doc
        self.accepted += 1
        return True

    def event(self, event_id: str) -> dict[str, Any] | None:
        return self.latest.get(("event", event_id))

    def ikm(self, event_id: str, ikm_id: str) -> dict[str, Any] | None:
        return self.latest.get(("ikm", f"{event_id}/{ikm_id}"))


def follow(settings: Settings, on_update: Callable[[str, dict[str, Any], bool], None] | None = None,
           *, view: TotalsView | None = None, until_end: bool = False,
           idle_timeout_s: float | None = None) -> TotalsView:
    """Read both totals topics from the beginning into ``view``.

    ``on_update(key, doc, accepted)`` is called per message. With ``until_end``
    it returns once the end offsets seen at the start are reached; otherwise it
    follows until ``idle_timeout_s`` passes without a message (forever if None).
    """
    from kafka import TopicPartition

    view = view or TotalsView()
    with (unavailable("reading the totals topics", settings),
          reader(settings, "totals-reader") as consumer):
        parts = [TopicPartition(t, p) for t in (settings.topic_totals_event, settings.topic_totals_ikm)
                 for p in sorted(consumer.partitions_for_topic(t) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        last_message = time.monotonic()
        while True:
            if until_end and all(consumer.position(tp) >= ends[tp] for tp in parts):
                return view
            if idle_timeout_s is not None and time.monotonic() - last_message > idle_timeout_s:
                return view
            for batch in consumer.poll(timeout_ms=500).values():
                for m in batch:
                    last_message = time.monotonic()
                    key = m.key.decode() if m.key else ""
                    doc = json.loads(m.value)
                    accepted = view.offer(key, doc)
                    if on_update is not None:
                        on_update(key, doc, accepted)
