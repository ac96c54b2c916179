"""Hostile input at ingest's front door, over real HTTP into the real broker.

Every body and header a client can send gets a specific 4xx with a JSON
``{"error": {"reason", "detail"}}`` (or per-item answers), never a 500; the
good items of a mixed batch are accepted and are in Kafka. The last part is a
hypothesis test that generates such requests against every POST route.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from producers.ingest.app import STATE
from rekap.settings import Settings
from tests.producers.conftest import Ingest, with_tokens
from tests.support import rawhttp
from tests.support.env import settings_env
from tests.support.kafka import read_all
from tests.support.procs import Child

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "producers" / "samples"
ROUTES = {
    "/v1/sales": ("booth", "kokas-01"),
    "/v1/channels/marketplace/webhook": ("channel", "marketplace"),
    "/v1/channels/website/orders": ("channel", "website"),
    "/v1/channels/virtual-expo/import": ("channel", "virtual_expo"),
}


def booth_sale(n: int = 1, **changes: Any) -> dict[str, Any]:
    sale = json.loads((SAMPLES / "booth-sale.json").read_text())
    sale["sale_id"] = f"01G4D3X2N6Q8Z5V7B9C1H{n:05d}"
    sale.update(changes)
    return sale


def auth(ingest: Ingest, route: str) -> list[tuple[bytes, bytes]]:
    kind, name = ROUTES[route]
    token = ingest.tokens["booths" if kind == "booth" else "channels"][name]
    return [(b"Authorization", f"Bearer {token}".encode())]


async def post(ingest: Ingest, route: str, body: bytes, *,
               headers: list[tuple[bytes, bytes]] | None = None,
               content_length: int | None = None) -> rawhttp.Reply:
    s = ingest.settings
    reply = await rawhttp.request(
        s.host, s.ingest_port, "POST", route, body=body, content_length=content_length,
        headers=(auth(ingest, route) if headers is None else headers)
        + [(b"Content-Type", b"application/json")])
    assert reply is not None, "ingest closed the connection without an answer"
    return reply


def reason_of(reply: rawhttp.Reply) -> str:
    """The reason of an error answer: the body's, or its one item's (channel routes)."""
    assert reply.headers.get("content-type", "").startswith("application/json"), reply
    data = reply.json()
    if "results" in data and len(data["results"]) == 1:
        return str(data["results"][0]["error"]["reason"])
    return str(data["error"]["reason"])


async def internal_errors(ingest: Ingest) -> float:
    s = ingest.settings
    reply = await rawhttp.request(s.host, s.ingest_port, "GET", "/metrics")
    assert reply is not None
    for line in reply.body.decode().splitlines():
        if line.startswith('rekap_ingest_requests_total{outcome="internal_error"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def topic_ids(ingest: Ingest) -> list[str]:
    return [json.loads(r.value)["sale_id"] for r in read_all(ingest.settings, ingest.settings.topic_sales)]


def _sale_text(**raw_fields: str) -> bytes:
    """A booth sale with some fields spliced in as raw JSON text (what json.dumps cannot write)."""
    text = json.dumps(booth_sale())[:-1]
    return (text + "".join(f', "{k}": {v}' for k, v in raw_fields.items()) + "}").encode()


# -- the holes, one by one (each answered 500 before) ------------------------------------------

HOSTILE_SALES = {
    "deep_nesting": (_sale_text(note="[" * 100_000 + "]" * 100_000), 400, "nesting_too_deep"),
    "long_number": (_sale_text(amount_idr="9" * 5000).replace(b'"amount_idr": 350000, ', b""),
                    400, "number_too_long"),
    "lone_surrogate": (_sale_text(note='"\\ud800"'), 400, "invalid_text"),
    "surrogate_key": (_sale_text(**{"\\udfff": "1"}), 400, "invalid_text"),
    "huge_float": (_sale_text(note="1e999"), 400, "number_too_long"),
    "nan": (_sale_text(note="NaN"), 400, "malformed_json"),
    "extreme_offset": (json.dumps(booth_sale(occurred_at="0001-01-01T00:00:00+23:59")).encode(),
                       400, "bad_timestamp"),
    "not_utf8": (b'{"sale_id": "\xff\xfe"}', 400, "malformed_json"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_SALES))
async def test_hostile_sale_body_gets_its_4xx_not_a_500(ingest: Ingest, case: str) -> None:
    body, status, reason = HOSTILE_SALES[case]
    reply = await post(ingest, "/v1/sales", body)
    assert (reply.status, reason_of(reply)) == (status, reason), reply
    assert reply.json()["error"]["detail"]
    assert await internal_errors(ingest) == 0
    assert topic_ids(ingest) == []


async def test_batch_with_hostile_items_answers_each_and_accepts_the_good(ingest: Ingest) -> None:
    good = [json.dumps(booth_sale(n)) for n in (1, 2, 3)]
    items = [good[0], '{"note": "\\ud800"}', good[1], "[" * 5000 + "]" * 5000,
             '{"amount_idr": ' + "7" * 5000 + "}", good[2], '"just text"']
    body = ('{"sales": [' + ", ".join(items) + "]}").encode()
    reply = await post(ingest, "/v1/sales", body)
    assert reply.status == 207, reply
    got = [(r["index"], r["status"], r.get("error", {}).get("reason")) for r in reply.json()["results"]]
    assert got == [(0, "accepted", None), (1, "rejected", "invalid_text"), (2, "accepted", None),
                   (3, "rejected", "nesting_too_deep"), (4, "rejected", "number_too_long"),
                   (5, "accepted", None), (6, "rejected", "not_an_object")]
    assert sorted(topic_ids(ingest)) == sorted(booth_sale(n)["sale_id"] for n in (1, 2, 3))
    assert await internal_errors(ingest) == 0


@pytest.mark.parametrize("value", [b"Bearer \xff\xfe\xfd", b"\xff", b"Bearer caf\xc3\xa9",
                                   b"Bearer \x80" + b"a" * 40, b"bearer  \t "])
async def test_non_utf8_authorization_is_401(ingest: Ingest, value: bytes) -> None:
    reply = await post(ingest, "/v1/sales", json.dumps(booth_sale()).encode(),
                       headers=[(b"Authorization", value)])
    assert (reply.status, reason_of(reply)) == (401, "unauthorized"), reply
    assert await internal_errors(ingest) == 0


ADAPTER_HOSTILE = [
    # extreme offsets: a real datetime whose UTC instant is outside what datetime can hold
    ("/v1/channels/marketplace/webhook",
     {"marketplace": "tokopedia", "shop_id": "lampung-ethnica", "order_id": "X-1", "status": "paid",
      "paid_at": "0001-01-01T00:00:00+23:59", "total_idr": 1000}, "bad_timestamp"),
    ("/v1/channels/marketplace/webhook",
     {"marketplace": "tokopedia", "shop_id": "lampung-ethnica", "order_id": "X-2", "status": "paid",
      "paid_at": "9999-12-31T23:59:59-23:59", "total_idr": 1000}, "bad_timestamp"),
    ("/v1/channels/website/orders",
     {"order_no": "W-1", "merchant_id": "pisang-shamiya", "payment_status": "paid",
      "created_at": "9999-12-31T23:59:59-23:59", "lines": [{"qty": 1, "unit_price": 1000}]},
     "bad_timestamp"),
    # wrong types where the adapter compares or converts
    ("/v1/channels/website/orders",  # not a paid status: nothing to count, as any other
     {"order_no": "W-2", "merchant_id": "pisang-shamiya", "payment_status": ["paid"],
      "created_at": "2022-04-20T19:05:11+07:00", "lines": [{"qty": 1, "unit_price": 1000}]},
     None),
    ("/v1/channels/virtual-expo/import",
     "trx_id,tenant_id,trx_time,sku,qty,total_idr,status\n"
     "V-1,askha-jaya,2022-03-25 14:02:11,S,1," + "9" * 5000 + ",SETTLED\n", "wrong_type"),
    ("/v1/channels/virtual-expo/import",
     "trx_id,tenant_id,trx_time,sku,qty,total_idr,status\n"
     "V-2,askha-jaya,0001-01-01 00:00:00,S,²,1000,SETTLED\n", "bad_timestamp"),
    ("/v1/channels/marketplace/webhook",
     {"marketplace": "tokopedia", "shop_id": "lampung-ethnica", "order_id": "X-3", "status": "paid",
      "paid_at": "2022-03-21T10:15:00+07:00", "items": [{"qty": "²", "price_idr": 1000}]},
     "wrong_type"),
    ("/v1/channels/marketplace/webhook",
     {"marketplace": "tokopedia", "shop_id": "lampung-ethnica", "order_id": "X-4", "status": "paid",
      "paid_at": "2022-03-21T10:15:00+07:00", "total_idr": "Rp²"}, "wrong_type"),
]


@pytest.mark.parametrize(("route", "payload", "reason"), ADAPTER_HOSTILE)
async def test_hostile_adapter_payload_is_rejected_per_item(
        ingest: Ingest, route: str, payload: dict[str, Any] | str, reason: str | None) -> None:
    body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    reply = await post(ingest, route, body)
    (result,) = reply.json()["results"]
    if reason is None:
        assert (reply.status, result["status"]) == (202, "ignored"), reply
    else:
        assert reply.status == 400, reply
        assert (result["status"], result["error"]["reason"]) == ("rejected", reason)
    assert await internal_errors(ingest) == 0


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize(("body", "reason"), [
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nesting_too_deep"),
    (b"[" + b"1" * 5000 + b"]", "number_too_long"),
    (b'{"x": "\\udc00"}', "invalid_text"),
    (b"\xff\xfe\x00", "malformed_json"),
])
async def test_every_route_answers_hostile_json_with_a_4xx(
        ingest: Ingest, route: str, body: bytes, reason: str) -> None:
    reply = await post(ingest, route, body)
    assert 400 <= reply.status < 500, reply
    assert reason_of(reply)
    if route != "/v1/channels/virtual-expo/import":  # CSV: these bytes are a CSV question
        assert reason_of(reply) == reason
    assert await internal_errors(ingest) == 0


async def test_csv_with_a_field_past_the_csv_limit_is_400(ingest: Ingest) -> None:
    csv = (SAMPLES / "virtual-expo.csv").read_bytes() + b'X,askha-jaya,"' + b"z" * 200_000 + b'"\n'
    reply = await post(ingest, "/v1/channels/virtual-expo/import", csv)
    assert (reply.status, reason_of(reply)) == (400, "malformed_csv"), reply
    assert await internal_errors(ingest) == 0


async def test_record_grown_past_the_producer_limit_is_rejected_not_retried(ingest: Ingest) -> None:
    # 1e5 re-encodes as 100000.0: a ~520 KB body becomes a ~1.2 MB record, past Kafka's 1 MiB.
    grown = _sale_text(note="[" + ",".join(["1e5"] * 130_000) + "]")
    assert len(grown) < ingest.settings.max_body_bytes
    alone = await post(ingest, "/v1/sales", grown)
    assert (alone.status, reason_of(alone)) == (413, "record_too_large"), alone
    batch = b'{"sales": [' + json.dumps(booth_sale(2)).encode() + b", " + grown + b"]}"
    mixed = await post(ingest, "/v1/sales", batch)
    assert mixed.status == 207, mixed
    got = [(r["status"], r["http_status"], r.get("error", {}).get("reason"))
           for r in mixed.json()["results"]]
    assert got == [("accepted", 202, None), ("rejected", 413, "record_too_large")]
    assert topic_ids(ingest) == [booth_sale(2)["sale_id"]]
    assert await internal_errors(ingest) == 0


@pytest.mark.parametrize(("declared", "body"), [
    (100, b'{"sale_id": 1}'),  # the body ends early: the client half-closed
    (3, b'{"sale_id": 1}'),  # the rest is read as a (broken) next request
])
async def test_content_length_mismatch_is_a_4xx_or_a_closed_connection(
        ingest: Ingest, declared: int, body: bytes) -> None:
    s = ingest.settings
    reply = await rawhttp.request(s.host, s.ingest_port, "POST", "/v1/sales", body=body,
                                  content_length=declared, headers=auth(ingest, "/v1/sales"),
                                  half_close=declared > len(body), timeout_s=5)
    assert reply is None or 400 <= reply.status < 500, reply
    assert await internal_errors(ingest) == 0


# -- generated: hypothesis drives a running ingest ---------------------------------------------

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
#: JSON text (grammatical, as far as Python's json reads it) that rekap must refuse or carry.
HOSTILE_JSON = st.one_of(
    st.integers(30, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(30, 300).map(lambda n: '{"a": ' * n + "1" + "}" * n),
    st.integers(4290, 6000).map(lambda n: "9" * n),
    st.sampled_from(['"\\ud800"', '"a\\udfffb"', '"\\udc00\\ud800"', "1e999", "-1e400",
                     "NaN", "-Infinity", '"\\u0000"', '"\\u00e9\\u00e9"', "1E5"]),
    st.integers(1000, 150_000).map(lambda n: json.dumps("x" * n)),
    JSON_VALUES.map(json.dumps),
)
SALE_FIELDS = [*sorted(json.loads((SAMPLES / "booth-sale.json").read_text())), "extra", "\\ud800"]
HEADER_BYTES = st.binary(max_size=60).map(
    lambda b: bytes(c for c in b if c == 9 or 32 <= c < 127 or c >= 128).strip())


def good_sale() -> dict[str, Any]:
    return booth_sale() | {"sale_id": f"hyp-{uuid.uuid4().hex}"}


def with_field(name: str, raw: str) -> str:
    """A good sale's JSON text with field ``name`` set to the raw JSON text ``raw``."""
    sale = good_sale()
    sale[name] = "@@RAW@@"
    return json.dumps(sale).replace('"@@RAW@@"', raw)


@dataclass(frozen=True)
class Body:
    raw: bytes
    good: frozenset[str] = frozenset()  # sale ids that must be accepted
    items: int | None = None  # how many per-item answers, when it is a batch


@st.composite
def retyped(draw: st.DrawFn, template: dict[str, Any]) -> str:
    """``template`` with some of its fields (at least one) given any JSON value: wrong types
    in every field, lists and objects included."""
    out = dict(template)
    names = draw(st.lists(st.sampled_from(sorted(template)), min_size=1, max_size=3, unique=True))
    for name in names:
        out[name] = draw(JSON_VALUES | st.lists(JSON_SCALARS, max_size=2)
                         | st.dictionaries(st.text(max_size=3), JSON_SCALARS, max_size=2))
    return json.dumps(out)


BAD_ITEMS = st.one_of(st.builds(with_field, st.sampled_from(SALE_FIELDS), HOSTILE_JSON), HOSTILE_JSON,
                      st.builds(good_sale).flatmap(retyped), st.builds(good_sale).flatmap(retyped))


@st.composite
def sales_bodies(draw: st.DrawFn) -> Body:
    kind = draw(st.sampled_from(["bytes", "one", "retyped", "batch", "batch", "batch_of_anything"]))
    if kind == "bytes":
        return Body(draw(st.binary(max_size=300)))
    if kind == "retyped":
        return Body(draw(retyped(good_sale())).encode())
    if kind == "one":
        return Body(draw(BAD_ITEMS).encode())
    if kind == "batch_of_anything":
        return Body(json.dumps({"sales": draw(st.lists(JSON_VALUES, max_size=5))}).encode())
    bad = draw(st.lists(BAD_ITEMS, max_size=4))
    good = [json.dumps(good_sale()) for _ in range(draw(st.integers(0 if bad else 1, 3)))]
    items = draw(st.permutations(bad + good))
    return Body(('{"sales": [' + ", ".join(items) + "]}").encode(),
                frozenset(json.loads(g)["sale_id"] for g in good), len(items))


def good_webhook() -> dict[str, Any]:
    webhook = json.loads((SAMPLES / "marketplace-paid.json").read_text())
    return dict(webhook) | {"order_id": f"HYP-{uuid.uuid4().hex[:20]}"}


@st.composite
def webhook_bodies(draw: st.DrawFn) -> Body:
    names = sorted(good_webhook())
    bad = []
    for _ in range(draw(st.integers(0, 3))):
        webhook = good_webhook()
        if draw(st.booleans()):
            bad.append(draw(retyped(webhook)))
            continue
        webhook[draw(st.sampled_from(names))] = "@@RAW@@"
        bad.append(json.dumps(webhook).replace('"@@RAW@@"', draw(HOSTILE_JSON)))
    good = [good_webhook() for _ in range(draw(st.integers(0 if bad else 1, 2)))]
    items = draw(st.permutations(bad + [json.dumps(g) for g in good]))
    ids = frozenset(f"mp:{g['marketplace']}:{g['shop_id']}:{g['order_id']}" for g in good)
    return Body(("[" + ", ".join(items) + "]").encode(), ids, len(items))


@st.composite
def order_bodies(draw: st.DrawFn) -> Body:
    orders = json.loads((SAMPLES / "website-orders.json").read_text())["orders"]
    order = dict(draw(st.sampled_from(orders)))
    if draw(st.booleans()):
        return Body(('{"orders": [' + draw(retyped(order)) + "]}").encode())
    order[draw(st.sampled_from(sorted(order)))] = "@@RAW@@"
    text = json.dumps({"orders": [order]}).replace('"@@RAW@@"', draw(HOSTILE_JSON))
    return Body(text.encode())


@st.composite
def csv_bodies(draw: st.DrawFn) -> Body:
    lines = (SAMPLES / "virtual-expo.csv").read_text().splitlines(keepends=True)
    extra = draw(st.lists(st.text(max_size=80) | st.binary(max_size=80).map(
        lambda b: b.decode("latin-1")), max_size=4))
    text = "".join(lines[:1] + draw(st.permutations(lines[1:] + [e + "\n" for e in extra])))
    return Body(text.encode("utf-8", "surrogatepass") if draw(st.booleans()) else text.encode(
        "utf-8", "replace"))


BODIES = {
    "/v1/sales": sales_bodies(),
    "/v1/channels/marketplace/webhook": webhook_bodies(),
    "/v1/channels/website/orders": order_bodies(),
    "/v1/channels/virtual-expo/import": csv_bodies(),
}


@dataclass
class Running:
    settings: Settings
    tokens: dict[str, dict[str, str]]
    accepted: set[str] = field(default_factory=set)
    required: set[str] = field(default_factory=set)
    statuses: Counter[tuple[str, int | None]] = field(default_factory=Counter)

    def token(self, route: str) -> str:
        kind, name = ROUTES[route]
        return self.tokens["booths" if kind == "booth" else "channels"][name]


@pytest.fixture
def running_ingest(settings: Settings, tmp_path: Path) -> Iterator[Running]:
    """``rekap ingest`` as its own process, as deployed, on the test's topics."""
    s, tokens = with_tokens(settings, tmp_path / "tokens")
    child = Child([sys.executable, "-m", "rekap.cli", "ingest"], log_path=tmp_path / "ingest.log",
                  env=settings_env(s), name="ingest")
    url = f"http://{s.host}:{s.ingest_port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        child.wait_ready(healthy, 30, "/healthz answered")
        yield Running(s, tokens)
    finally:
        child.stop(15)
    # aiohttp logs the framing errors of its HTTP parser itself (bytes after a short
    # Content-Length); an exception in rekap's code is logged as "ingest failed on".
    log = (tmp_path / "ingest.log").read_text(errors="replace")
    ours = re.findall(r'File "[^"]*/(?:producers|rekap)/[^"]*", line \d+', log)
    assert "ingest failed on" not in log and not ours, (ours, log[-3000:])


@pytest.mark.timeout(300)
def test_generated_hostile_requests_never_get_a_500(running_ingest: Running) -> None:
    run = running_ingest
    s = run.settings

    @hypothesis_settings(max_examples=250, deadline=None, derandomize=True,
                         suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow, HealthCheck.data_too_large,
                                                HealthCheck.large_base_example])
    @given(route=st.sampled_from(sorted(ROUTES)), data=st.data(),
           authorization=st.one_of(st.none(), HEADER_BYTES, HEADER_BYTES.map(lambda b: b"Bearer " + b)),
           valid_token=st.integers(0, 9), content_type=st.one_of(
               st.just(b"application/json"), HEADER_BYTES, st.just(b"text/csv; charset=utf-8")),
           length=st.sampled_from(["exact"] * 8 + ["short", "long"]))
    def drive(route: str, data: st.DataObject, authorization: bytes | None, valid_token: int,
              content_type: bytes, length: str) -> None:
        body = data.draw(BODIES[route])
        authentic = valid_token < 8  # mostly a valid token, so the body is read
        headers = [(b"Content-Type", content_type)]
        if authentic:
            headers.append((b"Authorization", f"Bearer {run.token(route)}".encode()))
        elif authorization is not None:
            headers.append((b"Authorization", authorization))
        declared = {"exact": len(body.raw), "short": max(0, len(body.raw) - 5),
                    "long": len(body.raw) + 5}[length]
        reply = asyncio.run(rawhttp.request(s.host, s.ingest_port, "POST", route, body=body.raw,
                                            headers=headers, content_length=declared,
                                            half_close=length == "long", timeout_s=30))
        run.statuses[route, reply and reply.status] += 1
        if reply is None:
            assert length == "long", "no answer to a complete request"
            return
        assert reply.status < 500 or (reply.status == 503 and reply.headers["retry-after"].isdigit()), reply
        if length == "short" and reply.status == 400 and reply.body.startswith(b"Data after"):
            return  # aiohttp's parser refusing bytes past Content-Length, before the app runs
        assert reply.headers.get("content-type", "").startswith("application/json"), reply
        answer = reply.json()
        results = answer.get("results") or ([answer["result"]] if "result" in answer else [])
        if reply.status >= 400 and not results:
            assert answer["error"]["reason"] and isinstance(answer["error"]["detail"], str), answer
        for n, result in enumerate(results):
            assert result["index"] == n, results
            if result["status"] == "accepted":
                assert result["http_status"] == 202
                run.accepted.add(result["sale_id"])
            elif result["status"] == "rejected":
                assert 400 <= result["http_status"] < 500 and result["error"]["reason"], result
        if authentic and length == "exact" and body.items is not None:
            assert len(results) == body.items, (body, answer)
            got = {r.get("sale_id") for r in results if r["status"] == "accepted"}
            assert body.good <= got, (sorted(body.good - got), answer)
            run.required |= body.good

    drive()
    print(sorted(run.statuses.items(), key=str))
    assert sum(run.statuses.values()) >= 250
    assert run.required, "no generated batch held a good item"
    in_kafka = {json.loads(r.value)["sale_id"] for r in read_all(s, s.topic_sales)}
    assert run.accepted <= in_kafka, sorted(run.accepted - in_kafka)[:5]
    metrics = httpx.get(f"http://{s.host}:{s.ingest_port}/metrics").text
    assert 'outcome="internal_error"' not in metrics


async def test_a_record_the_broker_refuses_for_its_size_is_rejected_not_retried(ingest: Ingest) -> None:
    """The broker's own limit (the topic's max.message.bytes) can be below the producer's:
    its MessageSizeTooLargeError is about the record, so the answer is 413, never 503."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    s = ingest.settings
    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, s.topic_sales,
                                            configs={"max.message.bytes": "20000"})])
    finally:
        admin.close()
    await asyncio.sleep(1)  # the broker applies topic config changes asynchronously
    big = json.dumps(booth_sale(1, note="x" * 30_000)).encode()
    refused = await post(ingest, "/v1/sales", big)
    reset = ingest.app[STATE].producer_reset  # a new producer: kafka-python's bug, see _produce
    if reset is not None:
        await reset
    fine = await post(ingest, "/v1/sales", json.dumps(booth_sale(2)).encode())
    assert (refused.status, reason_of(refused)) == (413, "record_too_large"), refused
    assert "retry-after" not in refused.headers
    assert fine.status == 202, fine
    assert topic_ids(ingest) == [booth_sale(2)["sale_id"]]
