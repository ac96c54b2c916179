"""The real worker end to end: exact totals, dead letters, metrics, totals topics, replay."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from consumers.rebuild import active_members, beginning_offsets, commit_offsets
from consumers.reconcile import format_report
from consumers.reconcile import run as reconcile
from consumers.subscriber import read_view
from producers.simulator.synthetic import generate
from rekap.names import Keys
from rekap.records import UNROUTED
from rekap.registry import load_registry
from rekap.settings import Settings
from tests.streams.crafted import GOOD, crafted, write_registry
from tests.streams.truth import assert_matches, stats
from tests.support.kafka import produce, produce_json, read_all
from tests.support.procs import wait_until
from tests.support.worker import start_worker

pytestmark = pytest.mark.integration
ROOT = "lagawi-2022"


def counted(client: redis.Redis, keys: Keys) -> int:
    """applied + duplicate:sale_id + rejected over every tree: records the worker has taken in."""
    return sum(v for root in (ROOT, UNROUTED) for k, v in stats(client, keys, root).items()
               if k != "duplicate:offset")


def wait_counted(client: redis.Redis, keys: Keys, n: int, timeout: float = 60.0,
                 message: str = "records counted") -> None:
    """Block until the worker has taken in exactly ``n`` records (:func:`counted`)."""
    wait_until(lambda: counted(client, keys) == n, timeout=timeout, message=message)


def assert_reconciled(settings: Settings) -> None:
    """The reconciler, re-reading the sales topic from the start, finds Redis exact."""
    report = reconcile(settings, timeout_s=5)
    assert report.ok, format_report(report)


def replays(client: redis.Redis, keys: Keys) -> int:
    return sum(stats(client, keys, root).get("duplicate:offset", 0) for root in (ROOT, UNROUTED))


def redis_view(client: redis.Redis, keys: Keys) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(scope, totals key) -> (version, amount_idr, count) of every totals hash in Redis."""
    out = {}
    for raw in client.scan_iter(match=f"{keys.prefix}:*:ev:*", count=1000):
        parts = raw.decode().split("}:", 1)[1].split(":")
        if len(parts) == 2:
            scope, key = "event", parts[1]
        elif len(parts) == 4 and parts[2] == "ikm":
            scope, key = "ikm", f"{parts[1]}/{parts[3]}"
        else:
            continue
        h = client.hgetall(raw)
        out[(scope, key)] = (int(h[b"version"]), int(h[b"amount_idr"]), int(h[b"count"]))
    return out


def subscriber_view(settings: Settings) -> dict[tuple[str, str], tuple[int, int, int]]:
    view = read_view(settings)
    return {slot: (u.version, u.amount_idr, u.count) for slot, u in view.latest.items()}


def versions_in_topic_order(settings: Settings) -> dict[str, list[int]]:
    """Per totals key, the versions in topic order.

    Also checks that messages repeating a version are identical: a settle pass or
    a replay may re-send a key's current state, never a different state under an
    old version.
    """
    seq: dict[str, list[int]] = defaultdict(list)
    by_version: dict[tuple[str, int], dict[str, object]] = {}
    for topic in (settings.topic_totals_event, settings.topic_totals_ikm):
        for m in read_all(settings, topic):
            key, value = f"{topic}|{m.key.decode()}", json.loads(m.value)
            seq[key].append(value["version"])
            assert by_version.setdefault((key, value["version"]), value) == value, (key, value)
    return seq


def test_worker_end_to_end(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> None:
    settings = replace(settings, registry_path=write_registry(tmp_path / "registry.toml"))
    REGISTRY = load_registry(settings.registry_path)
    keys = Keys(settings.redis_prefix)
    values = generate(REGISTRY, 300, seed=5)
    bad = crafted()
    produce_json(settings, values)
    produce(settings, settings.topic_sales, [(k, v) for k, v, _ in bad])
    total = len(values) + len(bad)

    worker = start_worker(settings)
    try:
        wait_until(lambda: counted(redis_client, keys) == total, timeout=60,
                   message=f"{total} records counted")
        good_crafted = [json.loads(v) for _, v, reason in bad if reason is None]
        assert_matches(redis_client, values + good_crafted, REGISTRY, keys)
        assert GOOD["sale_id"] == good_crafted[0]["sale_id"]

        # Every rejection reason: in the dead-letter topic with its coordinates and bytes.
        rejected = [(k, v, r) for k, v, r in bad if r is not None]
        dead = wait_until(lambda: (lambda m: m if len(m) == len(rejected) else None)(
            read_all(settings, settings.topic_dead_letter)), timeout=20, message="dead letters")
        sales = {(m.partition, m.offset): m.value for m in read_all(settings, settings.topic_sales)}
        by_original = {base64.b64decode(json.loads(m.value)["original"]): m for m in dead}
        for key, value, reason in rejected:
            msg = by_original[value]
            doc = json.loads(msg.value)
            src = doc["source"]
            assert doc["reason"] == reason.value, (value, doc)
            assert sales[(src["partition"], src["offset"])] == value
            assert msg.key.decode() == f"{settings.topic_sales}/{src['partition']}/{src['offset']}"
            assert src["topic"] == settings.topic_sales and src["key"] == key.decode()
            assert doc["original_text"] == (None if value.startswith(b'{"sale_id": "x", \xff')
                                            else value.decode())
        s = {**stats(redis_client, keys, ROOT), **stats(redis_client, keys, UNROUTED)}
        assert sorted(k.split(":", 1)[1] for k in s if k.startswith("rejected:")) == \
            sorted(r.value for _, _, r in rejected)
        with urllib.request.urlopen(f"{worker.url}/metrics", timeout=5) as resp:  # noqa: S310
            text = resp.read().decode()
        for _, _, reason in rejected:
            assert f'rekap_records_rejected_total{{reason="{reason.value}"}} 1.0' in text

        # Totals topics: the reference subscriber agrees with Redis; versions never go back.
        wait_until(lambda: subscriber_view(settings) == redis_view(redis_client, keys),
                   timeout=20, message="subscriber view equals Redis")
        for key, seq in versions_in_topic_order(settings).items():
            assert seq == sorted(seq), (key, seq)
        before = redis_view(redis_client, keys)
    finally:
        worker.stop()

    # Replay the whole topic through a new worker process: nothing changes, no version goes back.
    wait_until(lambda: active_members(settings) == 0, timeout=30, message="group empty")
    commit_offsets(settings, beginning_offsets(settings))
    worker = start_worker(settings)
    try:
        wait_until(lambda: replays(redis_client, keys) == total, timeout=60, message="replayed")
        assert counted(redis_client, keys) == total
        assert_matches(redis_client, values + good_crafted, REGISTRY, keys)
        assert redis_view(redis_client, keys) == before
        wait_until(lambda: subscriber_view(settings) == before, timeout=20)
        for key, seq in versions_in_topic_order(settings).items():
            assert seq == sorted(seq), (key, seq)
    finally:
        worker.stop()
