"""The ingest HTTP service (aiohttp): sales from booths and channels into the sales topic.

Routes::

    POST /v1/sales                          one sale object, or {"sales": [...]} (per-item results)
    POST /v1/channels/marketplace/webhook   a marketplace order webhook (adapters.marketplace)
    POST /v1/channels/website/orders        esmartikm.id orders (adapters.website)
    POST /v1/channels/virtual-expo/import   a virtual-expo CSV export (adapters.virtual_expo)
    GET  /healthz                           the process is alive
    GET  /readyz                            Kafka answers and the sales topic's metadata is known
    GET  /metrics                           Prometheus text (rekap_ingest_*)

Every route but the health checks needs ``Authorization: Bearer <token>`` (see
:mod:`producers.ingest.auth`). An answer of 202 means Kafka acknowledged the
record with acks=all; 503 (``Retry-After``) means it did not, and the client
retries with the same sale_id (the worker de-duplicates by sale_id). During an
outage a request is answered 503 before anything is handed to the producer, so
nothing of that batch is produced.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from producers.adapters import marketplace, virtual_expo, website
from producers.adapters.common import Item
from producers.ingest.auth import Principal, authenticate, authorize, bearer_token
from producers.ingest.outcomes import (
    BODY_TOO_LARGE,
    CHANNEL_NOT_ALLOWED,
    KAFKA_UNAVAILABLE,
    RETRY_AFTER_S,
    TOO_MANY_ITEMS,
    UNAUTHORIZED,
    Outcome,
    batch_status,
)
from producers.kafka import Ack, SaleProducer
from producers.tokens import TokenSource
from rekap.contract import Reason, Rejection, Sale, validate_sale
from rekap.errors import KafkaUnavailable
from rekap.registry import Registry, RegistrySource
from rekap.settings import Settings

log = logging.getLogger(__name__)

#: Largest number of sales in one batch request (bounded work per request).
MAX_BATCH_ITEMS = 1000

STATE: web.AppKey[IngestState] = web.AppKey("rekap_ingest_state")


class IngestMetrics:
    """rekap_ingest_* series in their own CollectorRegistry (one per app, test friendly)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("rekap_ingest_requests", "Ingest HTTP requests by outcome",
                                ["outcome"], registry=self.registry)
        self.items = Counter("rekap_ingest_items", "Sale items by outcome and rejection reason",
                             ["outcome", "reason"], registry=self.registry)
        self.seconds = Histogram("rekap_ingest_request_seconds", "Ingest request latency",
                                 ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20))


class IngestState:
    def __init__(self, settings: Settings, producer: SaleProducer | None = None) -> None:
        self.settings = settings
        self.registry_source = RegistrySource(settings.registry_path)
        self.tokens = TokenSource(settings.booth_tokens_path)
        self.producer = producer or SaleProducer(settings, client_id=f"{settings.app_id}-ingest")
        self.metrics = IngestMetrics()


def create_app(settings: Settings, producer: SaleProducer | None = None) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes)
    state = IngestState(settings, producer)
    app[STATE] = state
    app.router.add_post("/v1/sales", _timed("sales", _post_sales))
    app.router.add_post("/v1/channels/marketplace/webhook", _timed("marketplace", _adapter_route(
        "marketplace", lambda body, reg: marketplace.map_webhook(json.loads(body), reg))))
    app.router.add_post("/v1/channels/website/orders", _timed("website", _adapter_route(
        "website", lambda body, reg: website.map_orders(json.loads(body), reg))))
    app.router.add_post("/v1/channels/virtual-expo/import", _timed("virtual_expo", _adapter_route(
        "virtual_expo", lambda body, reg: virtual_expo.map_csv(body.decode("utf-8"), reg))))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)

    async def close_producer(app: web.Application) -> None:
        import asyncio

        await asyncio.to_thread(app[STATE].producer.close)

    app.on_cleanup.append(close_producer)
    return app


# -- responses -------------------------------------------------------------------------------

def _error(status: int, reason: str, detail: str, **extra: Any) -> web.Response:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return web.json_response({"error": {"reason": reason, "detail": detail}, **extra},
                             status=status, headers=headers)


def _timed(route: str, handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            return await handler(request)
        finally:
            request.app[STATE].metrics.seconds.labels(route).observe(time.perf_counter() - started)
    return wrapped


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    import asyncio

    ready = await asyncio.to_thread(request.app[STATE].producer.ready)
    return web.json_response({"status": "ready" if ready else "kafka_unavailable"},
                             status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[STATE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- the pipeline shared by every route ------------------------------------------------------

async def _authenticated(request: web.Request) -> Principal | web.Response:
    state = request.app[STATE]
    principal = authenticate(bearer_token(request.headers.get("Authorization")),
                             state.registry_source.current(), state.tokens.current())
    if principal is None:
        state.metrics.requests.labels("unauthorized").inc()
        return web.json_response(
            {"error": {"reason": UNAUTHORIZED, "detail": "a valid bearer token is required"}},
            status=401, headers={"WWW-Authenticate": 'Bearer realm="rekap-ingest"'})
    return principal


async def _read_body(request: web.Request) -> bytes | web.Response:
    state = request.app[STATE]
    limit = state.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        state.metrics.requests.labels("too_large").inc()
        return _error(413, BODY_TOO_LARGE, f"request body is larger than {limit} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        state.metrics.requests.labels("too_large").inc()
        return _error(413, BODY_TOO_LARGE, f"request body is larger than {limit} bytes")


async def _process(state: IngestState, principal: Principal,
                   items: list[dict[str, Any] | Rejection | None],
                   refs: list[str | None] | None = None) -> list[Outcome]:
    """Authorize, validate and produce; one Outcome per item, in order."""
    registry: Registry = state.registry_source.current()
    refs = refs or [None] * len(items)
    outcomes: list[Outcome | None] = [None] * len(items)
    to_send: list[tuple[int, Sale]] = []
    for i, item in enumerate(items):
        if item is None:
            outcomes[i] = Outcome(i, "ignored", ref=refs[i])
            continue
        if isinstance(item, Rejection):
            outcomes[i] = Outcome(i, "rejected", None, item.reason.value, item.detail, ref=refs[i])
            continue
        sale_id = item.get("sale_id") if isinstance(item.get("sale_id"), str) else None
        denial = authorize(principal, item)
        if denial is not None:
            outcomes[i] = Outcome(i, "rejected", sale_id, denial.reason, denial.detail, ref=refs[i])
            continue
        result = validate_sale(item, registry)
        if isinstance(result, Rejection):
            outcomes[i] = Outcome(i, "rejected", sale_id, result.reason.value, result.detail,
                                  ref=refs[i])
            continue
        to_send.append((i, result))
    if to_send:
        acks: list[Any]
        if state.producer.degraded():
            acks = [None] * len(to_send)  # outage: hand nothing to the producer
            detail = "Kafka is unreachable; nothing was produced, retry later"
        else:
            try:
                acks = await state.producer.send_async(
                    (s.ikm_id.encode(), s.to_bytes()) for _, s in to_send)
                detail = "Kafka did not acknowledge the sale; retry with the same sale_id"
            except KafkaUnavailable as exc:
                acks = [None] * len(to_send)
                detail = str(exc)
        for (i, sale), ack in zip(to_send, acks, strict=True):
            if isinstance(ack, Ack):
                outcomes[i] = Outcome(i, "accepted", sale.sale_id, partition=ack.partition,
                                      offset=ack.offset, ref=refs[i])
            else:
                outcomes[i] = Outcome(i, "unavailable", sale.sale_id, KAFKA_UNAVAILABLE,
                                      getattr(ack, "detail", None) or detail, ref=refs[i])
    done = [o for o in outcomes if o is not None]
    for o in done:
        state.metrics.items.labels(o.status, o.reason or "").inc()
    return done


def _count_request(state: IngestState, status: int) -> None:
    outcome = {202: "accepted", 207: "partial", 503: "unavailable", 403: "forbidden",
               200: "accepted"}.get(status, "rejected")
    state.metrics.requests.labels(outcome).inc()


async def _post_sales(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    principal = await _authenticated(request)
    if isinstance(principal, web.Response):
        return principal
    body = await _read_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _count_request(state, 400)
        state.metrics.items.labels("rejected", Reason.MALFORMED_JSON.value).inc()
        return _error(400, Reason.MALFORMED_JSON, f"body is not valid UTF-8 JSON: {exc}")
    if isinstance(data, dict) and "sales" in data:
        sales = data["sales"]
        if not isinstance(sales, list) or not sales:
            _count_request(state, 400)
            return _error(400, Reason.WRONG_TYPE, "'sales' must be a non-empty list of sale objects")
        if len(sales) > MAX_BATCH_ITEMS:
            _count_request(state, 413)
            return _error(413, TOO_MANY_ITEMS, f"at most {MAX_BATCH_ITEMS} sales per request")
        items: list[dict[str, Any] | Rejection | None] = [
            s if isinstance(s, dict) else Rejection(Reason.NOT_AN_OBJECT, "a sale is a JSON object")
            for s in sales]
        outcomes = await _process(state, principal, items)
        status = batch_status(outcomes)
        _count_request(state, status)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return web.json_response({"results": [o.to_json() for o in outcomes]}, status=status,
                                 headers=headers)
    if not isinstance(data, dict):
        _count_request(state, 400)
        state.metrics.items.labels("rejected", Reason.NOT_AN_OBJECT.value).inc()
        return _error(400, Reason.NOT_AN_OBJECT, "send one sale object or {\"sales\": [...]}")
    (outcome,) = await _process(state, principal, [data])
    _count_request(state, outcome.http)
    if outcome.status == "accepted":
        return web.json_response({"result": outcome.to_json()}, status=202)
    return _error(outcome.http, outcome.reason or "", outcome.detail or "", sale_id=outcome.sale_id)


def _adapter_route(channel: str, mapper: Callable[[bytes, Registry], list[Item]]
                   ) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        principal = await _authenticated(request)
        if isinstance(principal, web.Response):
            return principal
        if principal.kind != "channel" or principal.channel != channel:
            _count_request(state, 403)
            return _error(403, CHANNEL_NOT_ALLOWED,
                          f"this route takes a {channel!r} channel token")
        body = await _read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            mapped = mapper(body, state.registry_source.current())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            _count_request(state, 400)
            return _error(400, Reason.MALFORMED_JSON, f"body is not valid UTF-8 JSON/CSV: {exc}")
        outcomes = await _process(state, principal, [m.result for m in mapped],
                                  [m.ref for m in mapped])
        status = batch_status(outcomes) if outcomes else 202
        if len(outcomes) == 1 and outcomes[0].status == "rejected":
            status = outcomes[0].http
        _count_request(state, status)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return web.json_response({"results": [o.to_json() for o in outcomes]}, status=status,
                                 headers=headers)
    return handler


def run(settings: Settings, ack_timeout_s: float = 10.0) -> None:
    """Serve until interrupted (``rekap ingest``)."""
    producer = SaleProducer(settings, client_id=f"{settings.app_id}-ingest", ack_timeout_s=ack_timeout_s,
                            max_block_s=min(3.0, ack_timeout_s / 2))
    app = create_app(settings, producer)
    log.info("ingest listening on http://%s:%d (max body %d bytes)", settings.host,
             settings.ingest_port, settings.max_body_bytes)
    web.run_app(app, host=settings.host, port=settings.ingest_port, print=None,
                access_log=None, handle_signals=True)

