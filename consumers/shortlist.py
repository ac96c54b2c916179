"""``rekap shortlist EVENT``: rank an event's IKM by weighted assessment criteria.

The programme picks its champions "berdasarkan kriteria penilaian"; this module makes
those criteria explicit and the ranking explainable. Each criterion has a *raw* value
per IKM, computed from the totals (:mod:`consumers.figures`):

========================  ================================================================
``net``                   net sales, integer rupiah (gross - refunds)
``growth``                (B - A) / (A + B) of the net in period A and period B, in -1..1;
                          default periods: the first and the second half of the event's days
``channel_mix``           Shannon entropy of the net across the event's channels, divided by
                          its maximum ln(k): 0 = one channel, 1 = evenly spread
``online_share``          net of the online channels / net
``consistency``           1 / (1 + CV) of the daily net over the event's days (CV = population
                          standard deviation / mean): 1 = the same every day
``refund_rate``           refunds / gross (lower is better)
========================  ================================================================

Each raw value is scaled to a *score* in 0..1 across the event's IKM (min-max; reversed
where lower is better; a criterion on which every IKM is equal scores 1 for all, so it
moves nobody), and the total is the weighted mean of the scores. A criterion that cannot
tell IKM apart in the event (channel mix or online share in a booths-only exhibition) is
left out of the weights. Ties are broken by net sales, then ``ikm_id``, so the order never
depends on the order IKM were read. Default weights and why: docs/shortlist.md.

Everything above the I/O section is pure and tested without Redis
(tests/consumers/test_shortlist.py).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any, Final, Literal

from consumers.figures import EventFigures, IkmFigures
from rekap.money import format_idr, format_idr_short
from rekap.names import CHANNELS, ONLINE_CHANNELS
from rekap.settings import Settings

Criterion = Literal["net", "growth", "channel_mix", "online_share", "consistency", "refund_rate"]
CRITERIA: Final[tuple[Criterion, ...]] = (
    "net", "growth", "channel_mix", "online_share", "consistency", "refund_rate")
#: Criteria where a lower raw value is better.
LOWER_IS_BETTER: Final[frozenset[Criterion]] = frozenset({"refund_rate"})
#: Default weights (they sum to 1); why each: docs/shortlist.md.
DEFAULT_WEIGHTS: Final[Mapping[Criterion, float]] = {
    "net": 0.35, "growth": 0.20, "channel_mix": 0.10, "online_share": 0.15,
    "consistency": 0.10, "refund_rate": 0.10}
#: Column headings in Bahasa Indonesia (table, CSV header note, report).
LABELS: Final[Mapping[Criterion, str]] = {
    "net": "Penjualan bersih", "growth": "Pertumbuhan", "channel_mix": "Ragam kanal",
    "online_share": "Porsi daring", "consistency": "Konsistensi harian",
    "refund_rate": "Tingkat refund"}

Period = tuple[date, date]


@dataclass(frozen=True)
class Raw:
    """One IKM's raw criterion values, and the figures behind them."""

    ikm_id: str
    name: str
    values: Mapping[Criterion, float]
    net_idr: int
    period_a_idr: int
    period_b_idr: int
    active_days: int


@dataclass(frozen=True)
class Row:
    rank: int
    raw: Raw
    scores: Mapping[Criterion, float]
    score: float


@dataclass(frozen=True)
class Shortlist:
    event_id: str
    event_name: str
    periods: tuple[Period, Period]
    #: Weights as used: normalised to sum 1, criteria that cannot apply set to 0.
    weights: Mapping[Criterion, float]
    rows: tuple[Row, ...]
    #: Criteria left out for this event, with the reason (Bahasa Indonesia).
    left_out: Mapping[Criterion, str]


# ------------------------------------------------------------------ parsing --

def parse_weights(text: str | None, base: Mapping[Criterion, float] = DEFAULT_WEIGHTS
                  ) -> dict[Criterion, float]:
    """``"net=0.5,growth=0"`` over ``base``: named criteria are replaced, others kept.

    :class:`ValueError` on an unknown name, a negative or non-finite weight, or weights
    that sum to zero.
    """
    out: dict[Criterion, float] = dict(base)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in CRITERIA:
            raise ValueError(f"weight {part.strip()!r}: want name=value, name one of "
                             + ", ".join(CRITERIA))
        try:
            w = float(value)
        except ValueError as exc:
            raise ValueError(f"weight {part.strip()!r}: {value.strip()!r} is not a number") from exc
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"weight {part.strip()!r}: must be a finite number >= 0")
        out[_criterion(name)] = w
    if sum(out.values()) <= 0:
        raise ValueError("weights sum to zero: give at least one criterion a weight above 0")
    return out


def _criterion(name: str) -> Criterion:
    for c in CRITERIA:
        if c == name:
            return c
    raise ValueError(name)


def parse_periods(text: str) -> tuple[Period, Period]:
    """``"2022-06-01..2022-06-03,2022-06-04..2022-06-06"`` as two inclusive periods."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise ValueError(f"periods {text!r}: want two, as A..B,C..D (dates YYYY-MM-DD)")
    out = []
    for p in parts:
        start, sep, end = p.partition("..")
        try:
            a, b = date.fromisoformat(start.strip()), date.fromisoformat(end.strip())
        except ValueError as exc:
            raise ValueError(f"period {p!r}: want YYYY-MM-DD..YYYY-MM-DD") from exc
        if not sep or b < a:
            raise ValueError(f"period {p!r}: want YYYY-MM-DD..YYYY-MM-DD, start <= end")
        out.append((a, b))
    return out[0], out[1]


def default_periods(days: Sequence[date]) -> tuple[Period, Period]:
    """The first and second half of ``days`` (sorted); an odd middle day is in neither,
    so both halves are the same length."""
    if not days:
        raise ValueError("an event without days has no periods")
    half = len(days) // 2
    if half == 0:
        return (days[0], days[0]), (days[0], days[0])
    return (days[0], days[half - 1]), (days[len(days) - half], days[-1])


# ------------------------------------------------------------ raw criteria --

def growth(a: int, b: int) -> float:
    """(b - a) / (a + b): -1 (all in A) .. 1 (all in B); 0 if both are 0.

    Not (b - a) / a, which is unbounded and undefined for an IKM that started selling in
    period B: the symmetric form ranks the same way wherever both are positive.
    """
    a, b = max(a, 0), max(b, 0)
    return 0.0 if a + b == 0 else (b - a) / (a + b)


def channel_mix(amounts: Iterable[int], channels: int) -> float:
    """Normalised Shannon entropy of the amounts over ``channels`` channels, 0..1."""
    values = [a for a in amounts if a > 0]
    total = sum(values)
    if channels < 2 or total <= 0:
        return 0.0
    h = -sum((a / total) * math.log(a / total) for a in values)
    return min(1.0, max(0.0, h / math.log(channels)))


def share(part: int, whole: int) -> float:
    return 0.0 if whole <= 0 else min(1.0, max(0.0, part / whole))


def consistency(daily: Sequence[int]) -> float:
    """1 / (1 + coefficient of variation) of the daily amounts; 0 if nothing was sold."""
    if not daily:
        return 0.0
    mean = sum(daily) / len(daily)
    if mean <= 0:
        return 0.0
    sd = math.sqrt(sum((x - mean) ** 2 for x in daily) / len(daily))
    return 1.0 / (1.0 + sd / mean)


def period_net(ikm: IkmFigures, period: Period) -> int:
    return sum(ikm.totals.day_net(d) for d in ikm.totals.by_day if period[0] <= d <= period[1])


def raw_values(ikm: IkmFigures, days: Sequence[date], periods: tuple[Period, Period],
               channels: Sequence[str]) -> Raw:
    """Every criterion's raw value for one IKM over the event's ``days`` and ``channels``."""
    t = ikm.totals
    a, b = period_net(ikm, periods[0]), period_net(ikm, periods[1])
    online = sum(t.channel_net(c) for c in channels if c in ONLINE_CHANNELS)
    daily = [t.day_net(d) for d in days]
    values: dict[Criterion, float] = {
        "net": float(t.amount_idr),
        "growth": growth(a, b),
        "channel_mix": channel_mix((t.channel_net(c) for c in channels), len(channels)),
        "online_share": share(online, t.amount_idr),
        "consistency": consistency(daily),
        "refund_rate": share(t.refunds_idr, t.gross_idr),
    }
    return Raw(ikm.ikm_id, ikm.name, values, t.amount_idr, a, b, sum(1 for x in daily if x > 0))


# ------------------------------------------------------------------ scoring --

def normalise(values: Sequence[float], lower_is_better: bool = False) -> list[float]:
    """Min-max to 0..1 (reversed if lower is better); all equal -> all 1."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi <= lo:
        return [1.0] * len(values)
    out = [(v - lo) / (hi - lo) for v in values]
    return [min(1.0, max(0.0, 1.0 - x if lower_is_better else x)) for x in out]


def normalised_weights(weights: Mapping[Criterion, float]) -> dict[Criterion, float]:
    """Weights divided by their sum, computed exactly from their decimal form (Fraction of
    the shortest repr), so weights typed in any unit (``net=35`` or ``net=0.35``, the
    others alike) give bit-identical weights and so the identical ranking."""
    exact = {c: Fraction(repr(float(weights.get(c, 0.0)))) for c in CRITERIA}
    total = sum(exact.values(), Fraction(0))
    if total <= 0:
        raise ValueError("weights sum to zero")
    return {c: float(w / total) for c, w in exact.items()}


def rank(raws: Sequence[Raw], weights: Mapping[Criterion, float]) -> list[Row]:
    """Score and order the IKM: total score descending, then net descending, then id."""
    w = normalised_weights(weights)
    per: dict[Criterion, list[float]] = {
        c: normalise([r.values[c] for r in raws], c in LOWER_IS_BETTER) for c in CRITERIA}
    scored = []
    for i, r in enumerate(raws):
        scores = {c: per[c][i] for c in CRITERIA}
        total = sum(w[c] * scores[c] for c in CRITERIA)
        scored.append((min(1.0, max(0.0, total)), r, scores))
    scored.sort(key=lambda x: (-x[0], -x[1].net_idr, x[1].ikm_id))
    return [Row(n, r, s, total) for n, (total, r, s) in enumerate(scored, start=1)]


def build(figures: EventFigures, weights: Mapping[Criterion, float] | None = None,
          periods: tuple[Period, Period] | None = None) -> Shortlist:
    """The shortlist of an event's figures (pure)."""
    ev = figures.event
    days = figures.window()
    periods = periods or default_periods(days)
    channels = [c for c in CHANNELS if c in ev.channels]
    left_out: dict[Criterion, str] = {}
    if len(channels) < 2:
        left_out["channel_mix"] = "acara hanya menerima satu kanal"
    if not any(c in ONLINE_CHANNELS for c in channels):
        left_out["online_share"] = "acara tanpa kanal daring"
    chosen: dict[Criterion, float] = dict(weights if weights is not None else DEFAULT_WEIGHTS)
    for c in left_out:
        chosen[c] = 0.0
    if sum(chosen.values()) <= 0:
        raise ValueError("no criterion with a weight applies to this event")
    raws = [raw_values(i, days, periods, channels) for i in figures.ikm]
    return Shortlist(ev.id, ev.name, periods, normalised_weights(chosen),
                     tuple(rank(raws, chosen)), left_out)


# ------------------------------------------------------------------- output --

def raw_text(c: Criterion, value: float) -> str:
    """A raw value for people: rupiah for net, percent (decimal comma) otherwise."""
    if c == "net":
        return format_idr_short(int(value))
    return f"{value * 100:.1f}".replace(".", ",") + "%"


def csv_rows(shortlist: Shortlist) -> list[list[str | int]]:
    """Header and one row per IKM: every raw value and score; money as integer rupiah."""
    head: list[str | int] = ["peringkat", "ikm_id", "nama", "skor"]
    for c in CRITERIA:
        head += [f"{c}_raw", f"{c}_skor", f"{c}_bobot"]
    head += ["net_idr", "periode_a_idr", "periode_b_idr", "hari_aktif"]
    out = [head]
    for row in shortlist.rows:
        line: list[str | int] = [row.rank, row.raw.ikm_id, row.raw.name, f"{row.score:.6f}"]
        for c in CRITERIA:
            raw = row.raw.values[c]
            line += [int(raw) if c == "net" else f"{raw:.6f}", f"{row.scores[c]:.6f}",
                     f"{shortlist.weights[c]:.6f}"]
        line += [row.raw.net_idr, row.raw.period_a_idr, row.raw.period_b_idr, row.raw.active_days]
        out.append(line)
    return out


def write_csv(shortlist: Shortlist, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(csv_rows(shortlist))


def render(shortlist: Shortlist, top: int | None = None) -> object:
    """A rich renderable: the table, then the weights and periods it used."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    (a0, a1), (b0, b1) = shortlist.periods
    table = Table(title=f"Shortlist champion — {shortlist.event_name}",
                  caption="nilai mentah / skor 0–1 per kriteria", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("IKM")
    table.add_column("Skor", justify="right")
    for c in CRITERIA:
        if shortlist.weights[c] > 0:
            table.add_column(f"{LABELS[c]}\n(bobot " + f"{shortlist.weights[c]:.2f})".replace(".", ","),
                             justify="right")
    for row in shortlist.rows[:top]:
        cells = [str(row.rank), row.raw.name, f"{row.score:.3f}".replace(".", ",")]
        cells += [f"{raw_text(c, row.raw.values[c])} / " + f"{row.scores[c]:.2f}".replace(".", ",")
                  for c in CRITERIA if shortlist.weights[c] > 0]
        table.add_row(*cells)
    notes = [f"Pertumbuhan: periode A {a0:%d/%m/%Y}–{a1:%d/%m/%Y} dibanding "
             f"periode B {b0:%d/%m/%Y}–{b1:%d/%m/%Y}."]
    notes += [f"{LABELS[c]} tidak dipakai: {why}." for c, why in shortlist.left_out.items()]
    if shortlist.rows:
        best = shortlist.rows[0]
        notes.append(f"Teratas: {best.raw.name}, penjualan bersih {format_idr(best.raw.net_idr)}.")
    return Group(table, Text("\n".join(notes)))


# ---------------------------------------------------------------------- I/O --

def command(settings: Settings, event_id: str, weights: str | None = None,
            periods: str | None = None, csv_path: Path | None = None, top: int | None = None,
            console: Any = None) -> Shortlist:
    """``rekap shortlist``: read the event's totals from Redis, rank, print, write the CSV
    (default ``REKAP_RUNTIME_DIR/laporan/shortlist-<event>.csv``)."""
    from rich.console import Console

    from consumers.figures import read_live
    from rekap.errors import ConfigError
    from rekap.redisconn import connect_sync
    from rekap.registry import load_registry

    registry = load_registry(settings.registry_path)
    if event_id not in registry.events:
        raise ConfigError(f"event {event_id!r} is not in the registry {settings.registry_path} "
                          "(known: " + ", ".join(registry.events) + ")")
    try:
        chosen = parse_weights(weights)
        spans = parse_periods(periods) if periods else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    client = connect_sync(settings)
    try:
        figures = read_live(settings, registry, client, event_id)
    finally:
        client.close()
    try:
        shortlist = build(figures, chosen, spans)
    except ValueError as exc:
        raise ConfigError(f"{exc} (--weights)") from exc
    path = csv_path or Path(settings.runtime_dir) / "laporan" / f"shortlist-{event_id}.csv"
    write_csv(shortlist, path)
    out = console or Console()
    out.print(render(shortlist, top))
    out.print(f"CSV: {path}")
    return shortlist
