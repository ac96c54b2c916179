"""The leaderboard exporter: right numbers, and series bounded by events x K however many IKM sell."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rekap.names import Keys
from rekap.registry import load_registry
from rekap.settings import Settings
from streams.web.exporter import DAYS_EXPORTED, build_registry
from tests.streams.web.conftest import KOKAS, ROOT
from tests.streams.web.seed import add_sale, write_registry

pytestmark = pytest.mark.integration


def scrape(settings: Settings) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = generate_latest(build_registry(settings)).decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_exporter_reads_totals_and_top_k(seeded: Settings) -> None:
    m = scrape(dataclasses.replace(seeded, leaderboard_top_k=2))
    assert m["rekap_exporter_redis_up"] == [({}, 1.0)]
    amounts = {(lb["event"], lb["ikm"]): v for lb, v in m["rekap_leaderboard_amount_idr"]}
    ranks = {(lb["event"], lb["ikm"]): v for lb, v in m["rekap_leaderboard_rank"]}
    assert amounts == {(KOKAS, "lampung-ethnica"): 2_000_000, (KOKAS, "pisang-shamiya"): 300_000,
                       (ROOT, "lampung-ethnica"): 2_000_000, (ROOT, "littlemonq"): 2_000_000}
    assert ranks[(KOKAS, "pisang-shamiya")] == 2 and ranks[(ROOT, "littlemonq")] == 1
    names = {lb["ikm"]: lb["name"] for lb, _ in m["rekap_leaderboard_amount_idr"]}
    assert names["lampung-ethnica"] == "Lampung Ethnica"
    assert dict((lb["event"], v) for lb, v in m["rekap_event_amount_idr"]) == {
        ROOT: 4_600_000, KOKAS: 2_600_000}
    assert dict((lb["event"], v) for lb, v in m["rekap_event_sales_total"]) == {ROOT: 5, KOKAS: 4}
    channels = {(lb["event"], lb["channel"]): v for lb, v in m["rekap_event_channel_amount_idr"]}
    assert channels[(ROOT, "marketplace")] == 2_000_000 and channels[(KOKAS, "website")] == 0
    days = {(lb["event"], lb["day"]): v for lb, v in m["rekap_event_day_amount_idr"]}
    assert days[(KOKAS, "2022-06-02")] == 1_050_000


def test_series_stay_bounded_with_500_ikm(settings: Settings, redis_client: redis.Redis,
                                          tmp_path: Path) -> None:
    path = write_registry(tmp_path / "big.toml", 500, events=3)
    s = dataclasses.replace(settings, registry_path=path, leaderboard_top_k=10)
    registry = load_registry(path)
    keys = Keys(s.redis_prefix)
    rng = random.Random(5)
    ikm = sorted(registry.ikm)
    for n in range(1200):
        event = rng.choice(["prog", "expo-1", "expo-2"])
        who = rng.choice(sorted(registry.events[event].ikm))
        day = 1 + n % 6
        add_sale(redis_client, keys, registry, sale_id=f"x{n}", ikm_id=who, event_id=event,
                 amount_idr=rng.randrange(10_000, 5_000_000),
                 channel=rng.choice(["offline", "website", "marketplace", "virtual_expo"]),
                 occurred_at=f"2022-06-0{day}T12:00:00+07:00")
    assert len(ikm) == 500
    m = scrape(s)
    events, k = len(registry.events), s.leaderboard_top_k
    per_event = 2 * k + 5 + 4 + DAYS_EXPORTED  # top-K pair, 5 event totals, channels, days
    series = sum(len(v) for name, v in m.items() if not name.endswith("_created"))
    assert series <= events * per_event + 2, series
    assert len(m["rekap_leaderboard_amount_idr"]) == events * k
    # The top K really are the top: compare with Redis directly.
    root_board = redis_client.zrevrange(keys.board("prog", "prog"), 0, k - 1, withscores=True)
    exported = sorted((v for lb, v in m["rekap_leaderboard_amount_idr"] if lb["event"] == "prog"),
                      reverse=True)
    assert exported == [s for _, s in root_board]


def test_exporter_reports_redis_down(settings: Settings) -> None:
    s = dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0")
    m = scrape(s)
    assert m == {"rekap_exporter_redis_up": [({}, 0.0)]}
