"""Write the Redis layout of :mod:`rekap.names` directly, standing in for the worker.

Used by the fast tests of the read side (queries, API, exporter, ``rekap watch``);
the end-to-end tests feed a real worker through Kafka instead. Rolls a sale up
the event chain the way the worker does: the event and each of its ancestors.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from rekap.days import local_day
from rekap.names import TICKER_LENGTH, Keys, channel_field, day_field
from rekap.registry import Registry


def add_sale(client: redis.Redis, keys: Keys, registry: Registry, *, sale_id: str, ikm_id: str,
             event_id: str, amount_idr: int, channel: str = "offline", quantity: int = 1,
             occurred_at: str = "2022-06-02T10:15:00+07:00", kind: str = "sale") -> None:
    sign = 1 if kind == "sale" else -1
    root = registry.root(event_id)
    item = json.dumps({"sale_id": sale_id, "kind": kind, "ikm_id": ikm_id, "event_id": event_id,
                       "channel": channel, "amount_idr": amount_idr, "quantity": quantity,
                       "occurred_at": occurred_at})
    pipe = client.pipeline(transaction=True)
    for ev in registry.chain(event_id):
        day = local_day(datetime.fromisoformat(occurred_at), registry.events[ev].timezone).isoformat()
        for key in (keys.event_totals(root, ev), keys.ikm_totals(root, ev, ikm_id)):
            pipe.hincrby(key, "amount_idr", sign * amount_idr)
            if kind == "sale":
                pipe.hincrby(key, "gross_idr", amount_idr)
                pipe.hincrby(key, "count", 1)
                pipe.hincrby(key, "quantity", quantity)
                pipe.hincrby(key, channel_field(channel, "count"), 1)
            else:
                pipe.hincrby(key, "refunds_idr", amount_idr)
                pipe.hincrby(key, "refund_count", 1)
                pipe.hincrby(key, channel_field(channel, "refunds_idr"), amount_idr)
            pipe.hincrby(key, channel_field(channel, "amount_idr"), sign * amount_idr)
        pipe.hincrby(keys.event_totals(root, ev), "version", 1)
        for key in (keys.event_days(root, ev), keys.ikm_days(root, ev, ikm_id)):
            pipe.hincrby(key, day_field(day, "amount_idr"), sign * amount_idr)
            pipe.hincrby(key, day_field(day, "count" if kind == "sale" else "refunds_idr"),
                         1 if kind == "sale" else amount_idr)
        pipe.zincrby(keys.board(root, ev), sign * amount_idr, ikm_id)
        pipe.lpush(keys.ticker(root, ev), item)
        pipe.ltrim(keys.ticker(root, ev), 0, TICKER_LENGTH - 1)
    pipe.execute()


def write_registry(path: Path, n_ikm: int, *, events: int = 2) -> Path:
    """A registry TOML with ``n_ikm`` IKM: one root event with all of them and child events."""
    ids = [f"ikm-{i:04d}" for i in range(n_ikm)]
    lines = ["version = 1", ""]
    lines += ['[[events]]', 'id = "prog"', 'name = "Program Uji"', 'venue = "Lampung"',
              'timezone = "Asia/Jakarta"', "starts_on = 2022-03-20", "ends_on = 2022-06-17",
              "ikm = [" + ", ".join(f'"{i}"' for i in ids) + "]", ""]
    for e in range(1, events):
        lines += ['[[events]]', f'id = "expo-{e}"', f'name = "Pameran {e}"', 'venue = "Jakarta"',
                  'parent = "prog"', 'timezone = "Asia/Jakarta"', "starts_on = 2022-06-01",
                  "ends_on = 2022-06-06",
                  "ikm = [" + ", ".join(f'"{i}"' for i in ids[: max(1, n_ikm // 2)]) + "]", ""]
    for i in ids:
        lines += ["[[ikm]]", f'id = "{i}"', f'name = "IKM {i[4:]}"', ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1)
