"""The champion shortlist's pure parts: raw criteria, scaling, weights, ordering."""

from __future__ import annotations

import math
import random
from datetime import date, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from consumers.figures import EventFigures, IkmFigures, Totals
from consumers.shortlist import (
    CRITERIA,
    DEFAULT_WEIGHTS,
    Raw,
    build,
    channel_mix,
    consistency,
    csv_rows,
    default_periods,
    growth,
    normalise,
    parse_periods,
    parse_weights,
    rank,
)
from rekap.names import CHANNELS
from rekap.registry import Event

PROPS = hypothesis_settings(max_examples=200, deadline=None, derandomize=True, database=None)
START = date(2022, 6, 1)


def event(channels: frozenset[str] = frozenset(CHANNELS), days: int = 6) -> Event:
    return Event(id="ev", name="Acara", venue="Jakarta", timezone="Asia/Jakarta", starts_on=START,
                 ends_on=START + timedelta(days - 1), ikm=frozenset(), channels=channels)


def ikm(ikm_id: str, daily: list[int], channels: dict[str, int] | None = None,
        refunds: int = 0) -> IkmFigures:
    net = sum(daily)
    by_channel: dict[str, dict[str, int]] = {
        c: {"amount_idr": 0, "count": 0, "refunds_idr": 0} for c in CHANNELS}
    for c, amount in (channels or {"offline": net}).items():
        by_channel[c]["amount_idr"] = amount
    by_day = {START + timedelta(n): {"amount_idr": a, "count": 1, "refunds_idr": 0, "quantity": 1}
              for n, a in enumerate(daily) if a}
    return IkmFigures(ikm_id, ikm_id.title(), "", "", Totals(
        amount_idr=net, gross_idr=net + refunds, refunds_idr=refunds, count=len(by_day),
        by_channel=by_channel, by_day=by_day))


# ------------------------------------------------------------ raw criteria --

def test_growth_is_symmetric_and_bounded() -> None:
    assert growth(100, 300) == pytest.approx(0.5)
    assert growth(300, 100) == pytest.approx(-0.5)
    assert growth(0, 50) == 1.0 and growth(50, 0) == -1.0 and growth(0, 0) == 0.0


def test_channel_mix_is_normalised_entropy() -> None:
    assert channel_mix([100, 0, 0, 0], 4) == 0.0
    assert channel_mix([25, 25, 25, 25], 4) == pytest.approx(1.0)
    assert channel_mix([50, 50], 4) == pytest.approx(0.5)  # ln 2 / ln 4
    assert channel_mix([10, 10], 1) == 0.0  # one channel: nothing to spread over


def test_consistency_is_one_over_one_plus_cv() -> None:
    assert consistency([5, 5, 5]) == 1.0
    assert consistency([0, 0, 0]) == 0.0
    # mean 2, population sd 2: CV 1
    assert consistency([4, 0, 4, 0]) == pytest.approx(0.5)


def test_raw_values_of_one_ikm() -> None:
    figures = EventFigures(event(), Totals(), (
        ikm("a", [100, 100, 100, 300, 300, 300],
            {"offline": 600, "marketplace": 300, "website": 300}, refunds=400),))
    row = build(figures).rows[0]
    assert row.raw.net_idr == 1200
    assert (row.raw.period_a_idr, row.raw.period_b_idr) == (300, 900)
    v = row.raw.values
    assert v["net"] == 1200 and v["growth"] == pytest.approx(0.5)
    assert v["online_share"] == pytest.approx(0.5)
    assert v["channel_mix"] == pytest.approx(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25))
                                             / math.log(4))
    assert v["refund_rate"] == pytest.approx(400 / 1600)
    assert row.raw.active_days == 6


# ------------------------------------------------------------------ parsing --

def test_parse_weights_overrides_the_named_ones() -> None:
    w = parse_weights("net=1, growth=0")
    assert w["net"] == 1.0 and w["growth"] == 0.0
    assert w["refund_rate"] == DEFAULT_WEIGHTS["refund_rate"]
    assert parse_weights(None) == dict(DEFAULT_WEIGHTS)
    assert sum(DEFAULT_WEIGHTS.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("text", ["speed=1", "net", "net=-1", "net=x", "net=nan",
                                  ",".join(f"{c}=0" for c in CRITERIA)])
def test_parse_weights_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_weights(text)


def test_periods() -> None:
    assert parse_periods("2022-06-01..2022-06-03,2022-06-04..2022-06-06") == (
        (date(2022, 6, 1), date(2022, 6, 3)), (date(2022, 6, 4), date(2022, 6, 6)))
    for bad in ("2022-06-01..2022-06-03", "2022-06-03..2022-06-01,2022-06-04..2022-06-06",
                "juni..juli,a..b"):
        with pytest.raises(ValueError):
            parse_periods(bad)
    days = [START + timedelta(n) for n in range(7)]
    assert default_periods(days) == ((days[0], days[2]), (days[4], days[6]))
    assert default_periods(days[:1]) == ((days[0], days[0]), (days[0], days[0]))


def test_one_channel_event_leaves_channel_criteria_out() -> None:
    figures = EventFigures(event(frozenset({"offline"})), Totals(),
                           (ikm("a", [1, 2, 3, 4, 5, 6]), ikm("b", [6, 5, 4, 3, 2, 1])))
    s = build(figures)
    assert set(s.left_out) == {"channel_mix", "online_share"}
    assert s.weights["channel_mix"] == 0 and s.weights["online_share"] == 0
    assert sum(s.weights.values()) == pytest.approx(1.0)
    # equal net, so growth decides: b sold less each day
    assert [r.raw.ikm_id for r in s.rows] == ["a", "b"]
    with pytest.raises(ValueError):
        build(figures, {"channel_mix": 1.0})


def test_csv_shows_every_raw_value_and_score() -> None:
    figures = EventFigures(event(), Totals(), (ikm("a", [1000, 0, 0, 0, 0, 5000]),))
    head, row = csv_rows(build(figures))
    assert row[head.index("net_raw")] == 6000 and row[head.index("net_idr")] == 6000
    for c in CRITERIA:
        assert f"{c}_raw" in head and f"{c}_skor" in head and f"{c}_bobot" in head


# -------------------------------------------------------------- properties --

finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
raw_st = st.lists(
    st.tuples(st.integers(0, 10**10), *[st.floats(0, 1) for _ in range(5)]),
    min_size=1, max_size=25)
weights_st = st.dictionaries(st.sampled_from(CRITERIA), st.floats(0.001, 1000),
                             min_size=1).map(lambda w: {c: w.get(c, 0.0) for c in CRITERIA})


def raws(values: list[tuple[int, float, float, float, float, float]]) -> list[Raw]:
    out = []
    for n, (net, *rest) in enumerate(values):
        named = dict(zip(CRITERIA, [float(net), *rest], strict=True))
        out.append(Raw(f"ikm-{n:02d}", f"IKM {n}", named, net, 0, 0, 0))
    return out


@PROPS
@given(st.lists(finite, max_size=30), st.booleans())
def test_normalised_scores_are_in_0_1(values: list[float], lower: bool) -> None:
    out = normalise(values, lower)
    assert len(out) == len(values) and all(0.0 <= x <= 1.0 for x in out)
    if values and max(values) > min(values):
        best = values.index(min(values) if lower else max(values))
        assert out[best] == 1.0


@PROPS
@given(raw_st, weights_st)
def test_total_scores_are_in_0_1_and_ordered(values: list, weights: dict) -> None:
    rows = rank(raws(values), weights)
    assert [r.rank for r in rows] == list(range(1, len(rows) + 1))
    assert all(0.0 <= r.score <= 1.0 for r in rows)
    assert all(0.0 <= s <= 1.0 for r in rows for s in r.scores.values())
    assert all(a.score >= b.score for a, b in pairwise(rows))


@PROPS
@given(raw_st, st.dictionaries(st.sampled_from(CRITERIA), st.integers(1, 1000), min_size=1),
       st.sampled_from(["e-2", "e-3", "e0", "e3"]))
def test_weights_in_another_unit_change_nothing(values: list, ints: dict, unit: str) -> None:
    """``net=35,growth=20`` ranks exactly as ``net=0.35,growth=0.2`` (or per mille, ...)."""
    whole = {c: float(ints.get(c, 0)) for c in CRITERIA}
    scaled = {c: float(f"{ints.get(c, 0)}{unit}") for c in CRITERIA}
    before, after = rank(raws(values), whole), rank(raws(values), scaled)
    assert [(r.raw.ikm_id, r.score) for r in after] == [(r.raw.ikm_id, r.score) for r in before]


@PROPS
@given(raw_st, weights_st, st.randoms(use_true_random=False))
def test_order_does_not_depend_on_input_order(values: list, weights: dict,
                                              rnd: random.Random) -> None:
    items = raws(values)
    shuffled = list(items)
    rnd.shuffle(shuffled)
    # copies of one IKM tie on every criterion: net, then ikm_id, decide
    assert [r.raw.ikm_id for r in rank(shuffled, weights)] == \
        [r.raw.ikm_id for r in rank(items, weights)]


@PROPS
@given(raw_st, weights_st)
def test_an_ikm_best_on_every_criterion_ranks_first(values: list, weights: dict) -> None:
    items = raws(values)
    top = {c: (min if c == "refund_rate" else max)(r.values[c] for r in items) for c in CRITERIA}
    net = max(r.net_idr for r in items) + 1
    star = Raw("zz-star", "Star", {**top, "net": float(net)}, net, 0, 0, 0)
    assert rank([*items, star], weights)[0].raw.ikm_id == "zz-star"
