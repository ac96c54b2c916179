"""The read queries against real Redis, seeded with the worker's key layout."""

from __future__ import annotations

import pytest
import redis

from streams.web import queries
from tests.streams.web.conftest import KOKAS, ROOT

pytestmark = pytest.mark.integration


def test_share_is_integer_basis_points_rounded_half_up() -> None:
    assert queries.share_bp(1, 3) == 3333
    assert queries.share_bp(2, 3) == 6667
    assert queries.share_bp(1, 20_000) == 1  # 0.5 bp rounds up
    assert queries.share_bp(5, 0) == 0
    assert queries.share_text(6667) == "0.6667"
    assert queries.share_text(10_000) == "1.0000"


def test_rank_rows_shares_ranks_on_ties() -> None:
    rows = queries.rank_rows([("b", 5), ("a", 5), ("c", 9), ("d", 1)])
    assert rows == [(1, "c", 9), (2, "a", 5), (2, "b", 5), (4, "d", 1)]


def test_leaderboard_of_the_exhibition(reader: queries.Reader, redis_client: redis.Redis) -> None:
    board = queries.run_sync(redis_client, queries.leaderboard(reader, KOKAS, 10))
    assert board["total_idr"] == 2_600_000
    assert board["count"] == 4
    assert [(e["rank"], e["ikm_id"], e["amount_idr"], e["count"]) for e in board["entries"]] == [
        (1, "lampung-ethnica", 2_000_000, 2),
        (2, "pisang-shamiya", 300_000, 1),
        (2, "rafins-snack", 300_000, 1),
    ]
    assert board["entries"][0]["name"] == "Lampung Ethnica"
    assert board["entries"][0]["share_bp"] == 7692  # 2.0 / 2.6
    assert sum(e["amount_idr"] for e in board["entries"]) == board["total_idr"]


def test_leaderboard_rolls_up_into_the_programme(reader: queries.Reader,
                                                 redis_client: redis.Redis) -> None:
    board = queries.run_sync(redis_client, queries.leaderboard(reader, ROOT, 2))
    assert board["total_idr"] == 4_600_000
    assert [e["ikm_id"] for e in board["entries"]] == ["lampung-ethnica", "littlemonq"]
    assert board["ranked_ikm"] == 4


def test_summary_days_are_local(reader: queries.Reader, redis_client: redis.Redis) -> None:
    s = queries.run_sync(redis_client, queries.summary(reader, KOKAS))
    # 2022-06-01T23:30Z is 06:30 on 2 June in Jakarta.
    assert [(d["day"], d["amount_idr"], d["count"]) for d in s["by_day"]] == [
        ("2022-06-01", 1_550_000, 2), ("2022-06-02", 1_050_000, 2)]
    assert s["by_channel"]["offline"]["amount_idr"] == 2_600_000
    assert s["by_channel"]["marketplace"]["amount_idr"] == 0
    assert s["totals"]["amount_idr"] == 2_600_000
    assert s["parent"] == ROOT and s["children"] == []


def test_ikm_detail_and_rank(reader: queries.Reader, redis_client: redis.Redis) -> None:
    d = queries.run_sync(redis_client, queries.ikm(reader, ROOT, "littlemonq"))
    assert d["rank"] == 1 and d["totals"]["amount_idr"] == 2_000_000  # tied with Lampung Ethnica
    assert d["by_channel"]["marketplace"] == {"amount_idr": 2_000_000, "count": 1, "refunds_idr": 0}
    tied = queries.run_sync(redis_client, queries.ikm(reader, KOKAS, "rafins-snack"))
    assert tied["rank"] == 2
    none_yet = queries.run_sync(redis_client, queries.ikm(reader, KOKAS, "askha-jaya"))
    assert none_yet["rank"] is None and none_yet["totals"]["amount_idr"] == 0


def test_unknown_event_and_ikm_are_not_found(reader: queries.Reader) -> None:
    with pytest.raises(queries.NotFound, match="not in the registry"):
        next(queries.summary(reader, "no-such-event"))
    with pytest.raises(queries.NotFound, match="does not take part"):
        next(queries.ikm(reader, KOKAS, "kopi-way-tebu-x"))


def test_snapshot_is_formatted_the_indonesian_way(reader: queries.Reader,
                                                   redis_client: redis.Redis) -> None:
    snap = queries.run_sync(redis_client, queries.snapshot(reader, ROOT))
    assert snap["total_text"] == "Rp4,6 juta"
    assert snap["total_exact"] == "Rp4.600.000"
    assert snap["leaderboard"][0]["amount_text"] == "Rp2 juta"
    assert snap["ticker"][0]["sale_id"] == "s-5"  # newest first
    assert snap["ticker"][0]["time"] == "02/06 06.30"
    assert snap["ticker"][0]["amount_text"] == "Rp300.000"
    assert snap["ticker"][0]["channel_label"] == "Luring"
