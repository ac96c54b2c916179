"""The programme as a stream: ``seed → records + ground truth``, a pure function.

:func:`generate` reproduces Harvesting BBI Lagawi Fest 2022 from the registry:
30 IKM (champions sell more), 20 March – 17 June 2022 on the marketplaces, the
Telkom virtual expo and esmartikm.id, plus the exhibition at Mall Kota
Kasablanka (1–6 June) through its booths as channel ``offline``. Net totals are
exact at any ``scale``: Rp5.230.000.000 for the programme (the exhibition rolls
up into it) and Rp210.900.000 for the exhibition.

How exactness works (integer rupiah, units of Rp500):

1. The programme's direct online total (5.230.000.000 − 210.900.000) and the
   exhibition total are split over IKM, then channels, by seeded weights with
   the largest-remainder method, so the parts add up exactly.
2. Each (event, IKM, channel) bucket's amount is split over its sales the same
   way: those are the *net* amounts.
3. Refunds never move the net: a partial refund raises its sale's gross by the
   refunded amount; a cancellation is an extra sale refunded in full.

Resends (the same bytes again, later), bad records (which the worker must
dead-letter) and their expected fate are tagged on each :class:`Emission`; the
ground truth is folded from the stream by :mod:`producers.simulator.groundtruth`
and checked against the targets before anything is returned.

The same seed and options give the same bytes (``Scenario.digest``); each kind
of randomness has its own seeded generator, so the per-IKM split does not
change with ``scale``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from producers.simulator import shape
from producers.simulator.groundtruth import compute
from rekap.days import zone
from rekap.names import CHANNEL_ID_PREFIX
from rekap.registry import Event, Registry

UNIT = 500  # rupiah: every amount is a multiple of Rp500
PROGRAMME_TOTAL = 5_230_000_000
EXHIBITION_TOTAL = 210_900_000
#: Average ticket per channel, rupiah: sets the number of sales (~27k at scale 1).
AVG_TICKET = {"marketplace": 140_000, "website": 230_000, "virtual_expo": 420_000,
              "offline": 115_000}
#: Share of each online channel before per-IKM variation.
CHANNEL_MIX = {"marketplace": 0.50, "website": 0.30, "virtual_expo": 0.20}
#: Typical unit price per IKM category, for quantities.
UNIT_PRICE = {"makanan": 30_000, "minuman": 65_000, "fashion": 240_000, "kriya": 140_000}
MARKETPLACES = (("tokopedia", 0.45), ("shopee", 0.40), ("bukalapak", 0.10), ("blibli", 0.05))
CHAMPION_WEIGHT = 3.2
KASIR_SHARE = 0.15  # exhibition sales rung up at the central cashier, not the IKM's booth


@dataclass(frozen=True)
class Options:
    seed: int = 2022
    scale: float = 1.0
    resend_rate: float = 0.02
    refund_rate: float = 0.03
    bad_rate: float = 0.005
    programme: str = "lagawi-2022"
    exhibition: str = "lagawi-2022-kokas"
    programme_total: int = PROGRAMME_TOTAL
    exhibition_total: int = EXHIBITION_TOTAL

    def check(self) -> None:
        if not 0 < self.scale <= 10:
            raise ValueError("scale must be in (0, 10]")
        for name in ("resend_rate", "refund_rate", "bad_rate"):
            if not 0 <= getattr(self, name) < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5)")
        if self.programme_total % UNIT or self.exhibition_total % UNIT:
            raise ValueError(f"totals must be multiples of Rp{UNIT}")


@dataclass(frozen=True)
class Emission:
    """One record to send, in stream order."""

    key: bytes
    value: bytes
    #: ``apply`` | ``duplicate`` | ``reject:<reason>``: what a correct worker does with it.
    expect: str
    #: Unix time the record's sale happened (for --speedup pacing).
    at: float
    #: Who sends it through ingest: ``booth:<id>`` or ``channel:<name>``.
    sender: str


@dataclass
class Scenario:
    options: Options
    emissions: list[Emission]
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for e in self.emissions:
            h.update(e.key + b"\t" + e.value + b"\n")
        return h.hexdigest()

    def jsonl(self) -> bytes:
        return b"".join(e.value + b"\n" for e in self.emissions)


@dataclass
class _Draft:
    at: int  # unix seconds
    record: dict[str, Any]
    sender: str
    tie: int


def split(total: int, weights: list[float], minimum: int = 0) -> list[int]:
    """Integers ≥ ``minimum`` proportional to ``weights`` summing exactly to ``total``
    (largest remainder; ties by position, so it is deterministic)."""
    n = len(weights)
    rest = total - minimum * n
    if rest < 0:
        raise ValueError(f"cannot split {total} into {n} parts of at least {minimum}")
    wsum = math.fsum(weights)
    raw = [rest * w / wsum for w in weights]
    parts = [int(x) for x in raw]
    order = sorted(range(n), key=lambda i: (-(raw[i] - parts[i]), i))
    for i in order[: rest - sum(parts)]:
        parts[i] += 1
    return [p + minimum for p in parts]


def _ulid(ms: int, rng: random.Random) -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = (ms << 80) | rng.getrandbits(80)
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in range(25, -1, -1))


def _local_epoch(day: date, seconds: int, tz: str) -> int:
    moment = datetime(day.year, day.month, day.day, tzinfo=zone(tz)) + timedelta(seconds=seconds)
    return int(moment.timestamp())


def _iso(at: int, tz: str) -> str:
    return datetime.fromtimestamp(at, zone(tz)).isoformat()


def generate(registry: Registry, options: Options | None = None) -> Scenario:
    """Build the whole stream and its ground truth; raises if the truth misses a target."""
    opts = options or Options()
    opts.check()
    prog = registry.events[opts.programme]
    expo = registry.events[opts.exhibition]
    ikm_ids = sorted(prog.ikm)
    rng_w = random.Random(f"{opts.seed}:weights")
    weight = {i: rng_w.lognormvariate(0, 0.45) * (CHAMPION_WEIGHT if registry.ikm[i].champion else 1)
              for i in ikm_ids}

    drafts: list[_Draft] = []
    tie = 0

    # --- online: the programme event directly ------------------------------------------------
    online_units = (opts.programme_total - opts.exhibition_total) // UNIT
    per_ikm = dict(zip(ikm_ids, split(online_units, [weight[i] for i in ikm_ids]), strict=True))
    channels = list(CHANNEL_MIX)
    day_cache: dict[tuple[str, str], tuple[list[date], list[float]]] = {}
    for ikm in ikm_ids:
        category = registry.ikm[ikm].category
        mix = [CHANNEL_MIX[c] * rng_w.lognormvariate(0, 0.3) for c in channels]
        for channel, units in zip(channels, split(per_ikm[ikm], mix), strict=True):
            if units == 0:
                continue
            cache_key = (channel, category)
            if cache_key not in day_cache:
                ds = shape.days(prog.starts_on, prog.ends_on)
                ws = [shape.online_day_weight(d, prog.starts_on, prog.ends_on, channel, category)
                      for d in ds]
                day_cache[cache_key] = (ds, ws)
            ds, ws = day_cache[cache_key]
            rng = random.Random(f"{opts.seed}:{prog.id}:{ikm}:{channel}")
            for at, record in _bucket(rng, opts, prog, ikm, category, channel, units, ds, ws,
                                      lambda d, c=channel: shape.online_hour_weights(d, c), registry):
                drafts.append(_Draft(at, record, f"channel:{channel}", tie))
                tie += 1

    # --- the exhibition: booths, channel offline ----------------------------------------------
    expo_ikm = sorted(expo.ikm)
    booth_of = {next(iter(b.ikm)): b.id for b in sorted(registry.booths.values(), key=lambda b: b.id)
                if b.event == expo.id and len(b.ikm) == 1}
    kasir = [b.id for b in sorted(registry.booths.values(), key=lambda b: b.id)
             if b.event == expo.id and len(b.ikm) > 1]
    expo_units = split(opts.exhibition_total // UNIT, [weight[i] ** 0.6 for i in expo_ikm])
    ds = shape.days(expo.starts_on, expo.ends_on)
    ws = [shape.expo_day_weight(d) for d in ds]
    for ikm, units in zip(expo_ikm, expo_units, strict=True):
        rng = random.Random(f"{opts.seed}:{expo.id}:{ikm}:offline")
        for at, record in _bucket(rng, opts, expo, ikm, registry.ikm[ikm].category, "offline", units,
                                  ds, ws, shape.expo_hour_weights, registry):
            booths = [b for b in kasir if ikm in registry.booths[b].ikm]
            booth = booth_of.get(ikm)
            if "_refund_of" in record:  # a refund goes back through the sale's booth
                booth = record["_refund_of"]["booth_id"]
            elif booth is None or (booths and rng.random() < KASIR_SHARE):
                booth = booths[0]
            record["booth_id"] = booth
            drafts.append(_Draft(at, record, f"booth:{booth}", tie))
            tie += 1

    drafts.sort(key=lambda d: (d.at, d.tie))
    _assign_ids(drafts, random.Random(f"{opts.seed}:ids"))
    emissions = [Emission(d.record["ikm_id"].encode(), _encode(d.record), "apply", float(d.at),
                          d.sender) for d in drafts]
    emissions = _add_noise(emissions, opts, prog, registry, random.Random(f"{opts.seed}:noise"))

    truth = compute(((e.key, e.value) for e in emissions), registry)
    truth["seed"] = opts.seed
    truth["options"] = asdict(opts)
    truth["digest"] = Scenario(opts, emissions).digest
    _check_truth(truth, opts, emissions)
    return Scenario(opts, emissions, truth)


def _bucket(rng: random.Random, opts: Options, event: Event, ikm: str, category: str,
            channel: str, units: int, ds: list[date], ws: list[float], hours: Any,
            registry: Registry) -> list[tuple[int, dict[str, Any]]]:
    """Sales (and their refunds) of one IKM on one channel in one event, net = ``units``."""
    cap_units = event.max_sale_idr // UNIT
    expected = units * UNIT / AVG_TICKET[channel] * opts.scale
    n = max(1, round(expected), math.ceil(units / (cap_units // 2)))
    minimum = min(20, units // n)  # Rp10.000 smallest ticket when the bucket allows it
    nets = split(units, [rng.lognormvariate(0, 0.8) for _ in range(n)], minimum)
    if max(nets) > cap_units:  # a very lucky draw: flatten, still exact
        nets = split(units, [1.0] * n, minimum)
    n_refunds = round(n * opts.refund_rate)
    n_cancel = n_refunds // 2  # cancellations: extra sales refunded in full
    refunded = set(rng.sample(range(n), min(n, n_refunds - n_cancel)))  # partial refunds
    unit_price = UNIT_PRICE.get(category, 100_000)
    cum: list[float] = []
    acc = 0.0
    for w in ws:
        acc += w
        cum.append(acc)
    chosen_days = rng.choices(ds, cum_weights=cum, k=n + n_cancel)
    out: list[tuple[int, dict[str, Any]]] = []
    base = {"schema_version": 1, "ikm_id": ikm, "event_id": event.id, "channel": channel}

    def moment(day: date) -> int:
        hour = rng.choices(range(24), weights=hours(day))[0]
        return _local_epoch(day, hour * 3600 + rng.randrange(3600), event.timezone)

    def quantity(amount: int) -> int:
        return max(1, min(500, round(amount / (unit_price * rng.uniform(0.7, 1.3)))))

    for k in range(n + n_cancel):
        day = chosen_days[k]
        at = moment(day)
        if k < n:
            net = nets[k] * UNIT
            refund = 0
            if k in refunded and nets[k] >= 2:
                refund = max(1, round(nets[k] * rng.uniform(0.1, 0.5))) * UNIT  # partial
            gross = net + refund
        else:  # a cancellation: an extra sale, refunded in full; its net is 0
            gross = refund = max(minimum, round(units / n * rng.uniform(0.3, 1.2))) * UNIT
            gross = refund = min(gross, cap_units * UNIT)
        qty = quantity(gross)
        sale = {**base, "kind": "sale", "amount_idr": gross, "quantity": qty,
                "occurred_at": _iso(at, event.timezone)}
        out.append((at, sale))
        if refund:
            # Same local day, later: the day buckets agree whichever day a worker files it under.
            end_of_day = _local_epoch(day, 24 * 3600 - 1, event.timezone)
            if channel == "offline":
                end_of_day -= 2 * 3600
            rat = min(end_of_day, at + rng.randrange(600, 3 * 3600))
            rat = max(rat, at + 1)
            rqty = qty if refund == gross else (rng.randrange(1, qty) if qty > 1 else 0)
            out.append((rat, {**base, "kind": "refund", "amount_idr": refund, "quantity": rqty,
                              "occurred_at": _iso(rat, event.timezone), "_refund_of": sale}))
    return out


_MP, _WEB, _VX = (CHANNEL_ID_PREFIX[c] for c in ("marketplace", "website", "virtual_expo"))


def _assign_ids(drafts: list[_Draft], rng: random.Random) -> None:
    """Channel order ids in time order, so they look like each channel's own numbering."""
    counters: dict[str, int] = {}
    markets = [m for m, _ in MARKETPLACES]
    market_w = [w for _, w in MARKETPLACES]
    for d in drafts:
        r = d.record
        target = r.pop("_refund_of", None)
        if target is not None:
            r["refund_of"] = target["sale_id"]
            if r["channel"] == "offline":
                r["sale_id"] = _ulid(d.at * 1000 + rng.randrange(1000), rng)
            else:
                r["sale_id"] = f"{target['sale_id']}:refund:1"
            continue
        local = datetime.fromisoformat(r["occurred_at"])
        stamp = local.strftime("%y%m%d")
        channel = r["channel"]
        n = counters[channel] = counters.get(channel, 0) + 1
        if channel == "offline":
            r["sale_id"] = _ulid(d.at * 1000 + rng.randrange(1000), rng)
        elif channel == "marketplace":
            market = rng.choices(markets, weights=market_w)[0]
            order = (f"INV-20{stamp}-{n:07d}" if market == "tokopedia" else f"{stamp}{n:07d}")
            r["sale_id"] = f"{_MP}:{market}:{r['ikm_id']}:{order}"
        elif channel == "website":
            r["sale_id"] = f"{_WEB}:esmartikm:ESI-2022-{n:06d}"
        else:
            r["sale_id"] = f"{_VX}:telkom:VX{stamp}-{n:05d}"
    for d in drafts:  # refunds were placed after their sale in time, so its id exists now
        r = d.record
        if r["kind"] == "refund" and "refund_of" not in r:
            raise AssertionError("refund without target")


_FIELD_ORDER = ("schema_version", "sale_id", "kind", "refund_of", "ikm_id", "event_id", "channel",
                "booth_id", "amount_idr", "quantity", "sku", "occurred_at")


def _encode(record: dict[str, Any]) -> bytes:
    ordered = {k: record[k] for k in _FIELD_ORDER if k in record}
    ordered.update({k: v for k, v in record.items() if k not in ordered})
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()


#: Bad records the worker must reject, by what it should say.
BAD_KINDS = ("non_positive_amount", "unknown_ikm", "bad_timestamp", "outside_event_window",
             "missing_field", "malformed_json", "unknown_refund_target", "booth_not_allowed")


def _bad(kind: str, n: int, template: dict[str, Any], at: int, prog: Event) -> tuple[bytes, bytes, str]:
    r = {k: v for k, v in template.items() if k != "refund_of"}
    # In the sending channel's namespace, so ingest judges the record itself and not its id.
    prefix = CHANNEL_ID_PREFIX.get(template["channel"])
    namespace = f"{prefix}:" if prefix else ""
    r.update(sale_id=f"{namespace}sim-bad-{n:05d}", kind="sale")
    if kind == "non_positive_amount":
        r["amount_idr"] = 0
    elif kind == "unknown_ikm":
        r["ikm_id"] = "ikm-tidak-terdaftar"
    elif kind == "bad_timestamp":
        r["occurred_at"] = datetime.fromtimestamp(at, zone(prog.timezone)).strftime("%d/%m/%Y %H:%M")
    elif kind == "outside_event_window":
        r["occurred_at"] = "2022-07-01T10:00:00+07:00"
    elif kind == "missing_field":
        del r["amount_idr"]
    elif kind == "malformed_json":
        return r["ikm_id"].encode(), _encode(r)[:40], "reject:malformed_json"
    elif kind == "unknown_refund_target":
        r.update(kind="refund", refund_of=f"{namespace}sim-missing-{n:05d}")
    elif kind == "booth_not_allowed":
        r.update(sale_id=f"sim-bad-{n:05d}", channel="offline", event_id="lagawi-2022-kokas",
                 booth_id="kokas-01", ikm_id="jahe-merah-mesuji",
                 occurred_at="2022-06-02T15:00:00+07:00")
    return r["ikm_id"].encode(), _encode(r), f"reject:{kind}"


def _add_noise(emissions: list[Emission], opts: Options, prog: Event, registry: Registry,
               rng: random.Random) -> list[Emission]:
    n = len(emissions)
    timeline: list[tuple[float, int, Emission]] = [(e.at, 2 * i, e) for i, e in enumerate(emissions)]
    for j in range(round(n * opts.resend_rate)):
        original = emissions[rng.randrange(n)]
        later = original.at + rng.uniform(1, 3600)
        timeline.append((later, 2 * n + 2 * j + 1,
                         Emission(original.key, original.value, "duplicate", later, original.sender)))
    online = [e for e in emissions if e.sender.startswith("channel:")] or emissions
    n_bad = round(n * opts.bad_rate)
    if opts.bad_rate > 0:
        n_bad = max(n_bad, 1)
    for j in range(n_bad):
        kind = BAD_KINDS[j % len(BAD_KINDS)]
        template = json.loads(online[rng.randrange(len(online))].value)
        at = template_at = datetime.fromisoformat(template["occurred_at"]).timestamp()
        key, value, expect = _bad(kind, j, template, int(template_at), prog)
        sender = "booth:kokas-01" if kind == "booth_not_allowed" else f"channel:{template['channel']}"
        timeline.append((at + 0.5, 4 * n + j, Emission(key, value, expect, at + 0.5, sender)))
    timeline.sort(key=lambda t: (t[0], t[1]))
    return [e for _, _, e in timeline]


def _check_truth(truth: dict[str, Any], opts: Options, emissions: list[Emission]) -> None:
    events = truth["events"]
    got = (events[opts.programme]["amount_idr"], events[opts.exhibition]["amount_idr"])
    want = (opts.programme_total, opts.exhibition_total)
    if got != want:
        raise AssertionError(f"scenario totals {got} differ from targets {want} (seed {opts.seed})")
    expected = {"apply": 0, "duplicate": 0, "reject": 0}
    for e in emissions:
        expected[e.expect.split(":")[0]] += 1
    rec = truth["records"]
    if (rec["applied"], rec["duplicates"], rec["rejected_total"]) != (
            expected["apply"], expected["duplicate"], expected["reject"]):
        raise AssertionError(f"ground truth {rec} disagrees with the scenario's tags {expected}")
