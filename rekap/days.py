"""Day buckets are local: a sale's day is its ``occurred_at`` in the event's zone."""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_day(occurred_at: datetime, timezone: str) -> date:
    """The calendar day of an aware timestamp in ``timezone``.

    23:30 UTC is 06:30 the next day in Asia/Jakarta (WIB, UTC+7), so a late
    evening sale logged in UTC lands in the right venue day.
    """
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must carry a UTC offset")
    return occurred_at.astimezone(zone(timezone)).date()
