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

The front door, in the order a request meets it: the in-flight cap on POSTs and
the per-token and per-address rate limits (429 with ``Retry-After``,
:mod:`producers.ingest.limits`); the body, decoded only by
:func:`rekap.contract.decode_object` (:mod:`producers.ingest.bodies`), so any
bytes get a specific 4xx and a batch's unreadable item only its own; the
record's size against Kafka's limit before producing. Every answer carries the
security headers of :mod:`rekap.httpheaders`. What no handler expected is a bug:
a logged, counted 500 ``internal_error`` in JSON (:func:`_front_door`).
"""

from __future__ import annotations

import asyncio
import csv
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from producers.adapters import marketplace, virtual_expo, website
from producers.adapters.common import Item
from producers.ingest import boothapp, limits
from producers.ingest.auth import Principal, Unauthenticated, authorize, bearer_token, identify
from producers.ingest.bodies import decode_batch
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
from rekap.contract import MAX_RECORD_BYTES, Reason, Rejection, Sale, validate_sale
from rekap.errors import KafkaUnavailable
from rekap.httpheaders import add_security_headers
from rekap.registry import Registry, RegistrySource
from rekap.settings import Settings

log = logging.getLogger(__name__)

#: Largest number of sales in one batch request (bounded work per request).
MAX_BATCH_ITEMS = 1000
#: Ingest-only reasons of this module: a bug (answered by the last-resort middleware), a
#: record Kafka refuses for itself (never worth a retry), a CSV the csv module cannot
#: read, a body that ended before its Content-Length.
INTERNAL_ERROR: Final = "internal_error"
RECORD_REFUSED: Final = "record_refused"
MALFORMED_CSV: Final = "malformed_csv"
INCOMPLETE_BODY: Final = "incomplete_body"
#: kafka-python errors about the record itself (retriable = False): the same bytes fail
#: again, so the item is rejected, not answered 503 "retry". The first two are its size.
_SIZE_ERRORS: Final = ("MessageSizeTooLargeError", "RecordListTooLargeError")
_RECORD_ERRORS: Final = (*_SIZE_ERRORS, "InvalidRecordError", "CorruptRecordError",
                         "CorruptRecordException", "InvalidTimestampError")
#: Below this many key+value bytes a record cannot reach MAX_RECORD_BYTES with
#: kafka-python's batch framing (61 header + at most 21 record overhead + varints).
_SURELY_FITS: Final = MAX_RECORD_BYTES - 1024
#: Fields :func:`authorize` reads before the contract checks types: a non-string there
#: (a list is unhashable) is refused as wrong_type first.
_SCOPE_FIELDS: Final = ("channel", "booth_id", "event_id", "ikm_id", "sale_id", "refund_of")
#: The Kafka probe's connect timeout and how long its answer is reused.
PROBE_TIMEOUT_S: Final = 0.5
PROBE_TTL_S: Final = 1.0

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


class KafkaProbe:
    """Does any bootstrap server accept a TCP connection? Asked on the event loop.

    The connect is asyncio's, bounded by :data:`PROBE_TIMEOUT_S`, and its answer is
    kept :data:`PROBE_TTL_S`; concurrent callers share one probe. So during an
    outage (a broker whose port drops packets makes every connect wait for the
    timeout) requests are answered at once and the loop keeps serving.
    """

    def __init__(self, bootstrap: str) -> None:
        self.servers: list[tuple[str, int]] = []
        for server in bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            if port.isdigit():
                self.servers.append((host or "127.0.0.1", int(port)))
        self._answer: tuple[float, bool] | None = None
        self._running: asyncio.Task[bool] | None = None

    async def reachable(self) -> bool:
        answer = self._answer
        if answer is not None and time.monotonic() - answer[0] < PROBE_TTL_S:
            return answer[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._probe())
        return await asyncio.shield(self._running)

    async def _probe(self) -> bool:
        found = False
        try:
            for host, port in self.servers:
                try:
                    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                       PROBE_TIMEOUT_S)
                except (OSError, TimeoutError):
                    continue
                writer.close()
                found = True
                break
        finally:
            self._answer = (time.monotonic(), found)
            self._running = None
        return found


class IngestState:
    def __init__(self, settings: Settings, producer: SaleProducer | None = None) -> None:
        self.settings = settings
        self.registry_source = RegistrySource(settings.registry_path)
        self.tokens = TokenSource(settings.booth_tokens_path)
        self.producer = producer or SaleProducer(settings, client_id=f"{settings.app_id}-ingest")
        self.metrics = IngestMetrics()
        self.limits = limits.Limits.from_settings(settings)
        self.limits.refused = lambda reason: self.metrics.requests.labels(reason).inc()
        self.probe = KafkaProbe(settings.kafka_bootstrap)
        #: /readyz's last answer (monotonic time, ready) and the check under way, if any.
        self.readiness: tuple[float, bool] | None = None
        self.readiness_check: asyncio.Task[bool] | None = None
        #: The producer's close after Kafka refused a record (see _produce), while it runs.
        self.producer_reset: asyncio.Future[None] | None = None

    async def kafka_down(self) -> bool:
        """True while the last acknowledgement failed and no broker accepts TCP.

        Asked before producing: during an outage the whole request is answered 503
        at once and nothing is handed to the producer. Asked on the loop, without
        blocking it (:class:`KafkaProbe`), unlike ``SaleProducer.degraded``.
        """
        return self.producer.failing_since is not None and not await self.probe.reachable()


def create_app(settings: Settings, producer: SaleProducer | None = None) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[_front_door])
    state = IngestState(settings, producer)
    app[STATE] = state
    app[limits.LIMITS] = state.limits
    app.on_response_prepare.append(_security_headers)
    app.router.add_post("/v1/sales", _timed("sales", _post_sales))
    app.router.add_post("/v1/channels/marketplace/webhook", _timed("marketplace", _adapter_route(
        "marketplace", _json_mapper(None, marketplace.map_webhook))))
    app.router.add_post("/v1/channels/website/orders", _timed("website", _adapter_route(
        "website", _json_mapper("orders", website.map_orders))))
    app.router.add_post("/v1/channels/virtual-expo/import", _timed("virtual_expo", _adapter_route(
        "virtual_expo", _map_csv)))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    boothapp.add_routes(app)

    async def close_producer(app: web.Application) -> None:
        await asyncio.to_thread(app[STATE].producer.close)

    app.on_cleanup.append(close_producer)
    return app


# -- the front door: every request ----------------------------------------------------------

@web.middleware
async def _front_door(request: web.Request,
                      handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    """The in-flight cap on POSTs, JSON for aiohttp's own errors, and the last resort.

    An exception no handler expected is a bug, never the client's input: it is
    logged with its traceback, counted as ``internal_error`` and answered 500 in
    JSON, so a client's retry logic and an operator's dashboard both see it.
    """
    flight = request.app[STATE].limits.in_flight if request.method == "POST" else None
    if flight is not None and not flight.enter():
        request.app[STATE].limits.refused(limits.TOO_BUSY)
        return limits.too_many(limits.TOO_BUSY, limits.BUSY_RETRY_AFTER_S,
                               f"ingest is processing {flight.limit} requests; retry shortly")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Routing's 404/405 and friends: the same JSON error shape as every other answer.
        reason = (exc.reason or "error").lower().replace(" ", "_")
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return web.json_response({"error": {"reason": reason, "detail": exc.text or exc.reason}},
                                 status=exc.status, headers=headers)
    except Exception:
        log.exception("ingest failed on %s %s: a bug, answered 500", request.method, request.path)
        request.app[STATE].metrics.requests.labels(INTERNAL_ERROR).inc()
        return _error(500, INTERNAL_ERROR, "ingest failed on this request; the error is logged")
    finally:
        if flight is not None:
            flight.leave()


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    add_security_headers(response.headers, response.content_type, tls=request.secure)


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
    """Ready when Kafka accepts TCP and the sales topic's metadata is known.

    The TCP probe runs on the loop (asyncio, bounded); only when it succeeds does
    the metadata question go to a thread, one at a time and kept a second, so a
    monitor polling during an outage neither blocks the loop nor fills the
    thread pool that producing needs.
    """
    state = request.app[STATE]
    ready = False
    if await state.probe.reachable():
        seen = state.readiness
        if seen is not None and time.monotonic() - seen[0] < PROBE_TTL_S:
            ready = seen[1]
        else:
            if state.readiness_check is None:
                state.readiness_check = asyncio.ensure_future(_check_ready(state))
            ready = await asyncio.shield(state.readiness_check)
    return web.json_response({"status": "ready" if ready else "kafka_unavailable"},
                             status=200 if ready else 503)


async def _check_ready(state: IngestState) -> bool:
    try:
        ready = await asyncio.to_thread(state.producer.ready)
    finally:
        state.readiness_check = None
    state.readiness = (time.monotonic(), ready)
    return ready


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[STATE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- the pipeline shared by every route ------------------------------------------------------

async def authenticated(request: web.Request) -> Principal | web.Response:
    """The request's principal, within its rate limit; else the 401 or 429 to answer.

    Every authenticated route goes through here, the booth app's included
    (:mod:`producers.ingest.boothapp`), so all answer a bad token alike and share
    the per-token and per-address buckets.
    """
    state = request.app[STATE]
    found = identify(bearer_token(request.headers.get("Authorization")),
                     state.registry_source.current(), state.tokens.current())
    if isinstance(found, Unauthenticated):
        wait = state.limits.address_wait(request)
        if wait > 0:
            state.limits.refused(limits.RATE_LIMITED)
            return limits.too_many(limits.RATE_LIMITED, wait,
                                   "too many requests without a valid token from this address")
        state.metrics.requests.labels("unauthorized").inc()
        return web.json_response(
            {"error": {"reason": UNAUTHORIZED, "detail": found.detail}},
            status=401, headers={"WWW-Authenticate": 'Bearer realm="rekap-ingest"'})
    wait = state.limits.token_wait((found.kind, found.name))
    if wait > 0:
        state.limits.refused(limits.RATE_LIMITED)
        return limits.too_many(limits.RATE_LIMITED, wait,
                               f"{found.kind} {found.name!r} is over its request rate; "
                               "retry after the Retry-After seconds")
    return found


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
    except (OSError, ValueError) as exc:  # the peer closed before its Content-Length, bad chunks
        _count_request(state, 400)
        return _error(400, INCOMPLETE_BODY, f"the request body could not be read: {exc}")


def _scope_types(item: dict[str, Any]) -> Rejection | None:
    for name in _SCOPE_FIELDS:
        value = item.get(name)
        if value is not None and type(value) is not str:
            return Rejection(Reason.WRONG_TYPE,
                             f"field {name!r} must be a string, got {type(value).__name__}")
    return None


def _oversized(key: bytes, value: bytes) -> Rejection | None:
    """A record Kafka's producer would refuse for its size (kafka-python's own estimate)."""
    if len(key) + len(value) < _SURELY_FITS:
        return None
    from kafka.record.default_records import DefaultRecordBatchBuilder

    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
    if size <= MAX_RECORD_BYTES:
        return None
    return Rejection(Reason.RECORD_TOO_LARGE,
                     f"the sale as a Kafka record is {size} bytes, over the {MAX_RECORD_BYTES} "
                     "Kafka takes; drop or shorten its extra fields")


def _refused_by_kafka(detail: str) -> tuple[str, str] | None:
    """A producer failure about the record itself (not an outage): its reason and detail.

    Told by the kafka-python error's name in the detail, as producers.kafka reports it.
    """
    for name in _RECORD_ERRORS:
        if name in detail:
            reason = Reason.RECORD_TOO_LARGE.value if name in _SIZE_ERRORS else RECORD_REFUSED
            return reason, f"Kafka refused the record itself: {detail[:300]}"
    return None


def _admit(principal: Principal, registry: Registry, i: int, item: Any,
           ref: str | None) -> Outcome | tuple[Sale, bytes, bytes]:
    """One item up to producing: its rejection, or the sale with its Kafka key and value."""
    if item is None:
        return Outcome(i, "ignored", ref=ref)
    if not isinstance(item, dict):
        item = item if isinstance(item, Rejection) else Rejection(
            Reason.NOT_AN_OBJECT, "a sale is a JSON object")
    else:
        item = _scope_types(item) or item
    if isinstance(item, Rejection):
        return Outcome(i, "rejected", None, item.reason.value, item.detail, ref=ref)
    sale_id = item.get("sale_id")
    denial = authorize(principal, item)
    if denial is not None:
        return Outcome(i, "rejected", sale_id, denial.reason, denial.detail, ref=ref)
    result = validate_sale(item, registry)
    if isinstance(result, Rejection):
        return Outcome(i, "rejected", sale_id, result.reason.value, result.detail, ref=ref)
    key, value = result.ikm_id.encode(), result.to_bytes()
    too_big = _oversized(key, value)
    if too_big is not None:
        return Outcome(i, "rejected", result.sale_id, too_big.reason.value, too_big.detail, ref=ref)
    return result, key, value


async def _process(state: IngestState, principal: Principal,
                   items: list[Any], refs: list[str | None] | None = None) -> list[Outcome]:
    """Authorize, validate and produce; one Outcome per item, in order.

    An item is a decoded sale object, a :class:`Rejection` (it is answered as
    such), None (nothing to count: ignored) or any other JSON value (not a sale).
    """
    registry: Registry = state.registry_source.current()
    refs = refs or [None] * len(items)
    outcomes: list[Outcome] = []
    to_send: list[tuple[int, Sale, bytes, bytes]] = []
    for i, item in enumerate(items):
        admitted = _admit(principal, registry, i, item, refs[i])
        if isinstance(admitted, Outcome):
            outcomes.append(admitted)
        else:
            to_send.append((i, *admitted))
    if to_send:
        outcomes.extend(await _produce(state, to_send, refs))
        outcomes.sort(key=lambda o: o.index)
    for o in outcomes:
        state.metrics.items.labels(o.status, o.reason or "").inc()
    return outcomes


async def _produce(state: IngestState, to_send: list[tuple[int, Sale, bytes, bytes]],
                   refs: list[str | None]) -> list[Outcome]:
    acks: list[Any]
    producer = state.producer
    if await state.kafka_down():
        acks = [None] * len(to_send)  # outage: hand nothing to the producer
        detail = "Kafka is unreachable; nothing was produced, retry later"
    else:
        try:
            acks = await producer.send_async((k, v) for _, _, k, v in to_send)
            detail = "Kafka did not acknowledge the sale; retry with the same sale_id"
        except KafkaUnavailable as exc:
            acks = [None] * len(to_send)
            detail = str(exc)
    out: list[Outcome] = []
    refused_any = False
    for (i, sale, _, _), ack in zip(to_send, acks, strict=True):
        if isinstance(ack, Ack):
            out.append(Outcome(i, "accepted", sale.sale_id, partition=ack.partition,
                               offset=ack.offset, ref=refs[i]))
            continue
        why = getattr(ack, "detail", None) or detail
        refused = _refused_by_kafka(why)
        if refused is not None:
            refused_any = True
            out.append(Outcome(i, "rejected", sale.sale_id, *refused, ref=refs[i]))
        else:
            out.append(Outcome(i, "unavailable", sale.sale_id, KAFKA_UNAVAILABLE, why, ref=refs[i]))
    if refused_any and state.producer_reset is None:
        # kafka-python 3.0.12's idempotent producer keeps failing every later record of
        # the partition with the same error once the broker refused one; a new producer
        # (made lazily by the next send) does not. Closing flushes what others sent.
        log.warning("Kafka refused a record itself; starting a new producer")
        state.producer_reset = asyncio.ensure_future(_reset_producer(state))
    return out


async def _reset_producer(state: IngestState) -> None:
    try:
        await asyncio.to_thread(state.producer.close)
    finally:
        state.producer_reset = None


def _count_request(state: IngestState, status: int) -> None:
    outcome = {202: "accepted", 207: "partial", 503: "unavailable", 403: "forbidden",
               200: "accepted"}.get(status, "rejected")
    state.metrics.requests.labels(outcome).inc()


def _whole_body(state: IngestState, reason: str, detail: str) -> web.Response:
    """The answer to a body rekap cannot read at all (not JSON, not CSV)."""
    status = 413 if reason == Reason.RECORD_TOO_LARGE else 400
    _count_request(state, status)
    state.metrics.items.labels("rejected", reason).inc()
    return _error(status, reason, detail)


async def _post_sales(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    principal = await authenticated(request)
    if isinstance(principal, web.Response):
        return principal
    body = await _read_body(request)
    if isinstance(body, web.Response):
        return body
    data = decode_batch(body, "sales")
    if isinstance(data, Rejection):
        return _whole_body(state, data.reason.value, data.detail)
    if isinstance(data, list):
        if not data:
            _count_request(state, 400)
            return _error(400, Reason.WRONG_TYPE, "'sales' must be a non-empty list of sale objects")
        if len(data) > MAX_BATCH_ITEMS:
            _count_request(state, 413)
            return _error(413, TOO_MANY_ITEMS, f"at most {MAX_BATCH_ITEMS} sales per request")
        outcomes = await _process(state, principal, data)
        status = batch_status(outcomes)
        _count_request(state, status)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return web.json_response({"results": [o.to_json() for o in outcomes]}, status=status,
                                 headers=headers)
    if "sales" in data:
        _count_request(state, 400)
        return _error(400, Reason.WRONG_TYPE, "'sales' must be a non-empty list of sale objects")
    (outcome,) = await _process(state, principal, [data])
    _count_request(state, outcome.http)
    if outcome.status == "accepted":
        return web.json_response({"result": outcome.to_json()}, status=202)
    return _error(outcome.http, outcome.reason or "", outcome.detail or "", sale_id=outcome.sale_id)


#: A channel's payload to items, or (reason, detail) when the body cannot be read at all.
Mapper = Callable[[bytes, Registry], "list[Item] | tuple[str, str]"]


def _json_mapper(key: str | None, mapper: Callable[[Any, Registry], list[Item]]) -> Mapper:
    """A JSON channel payload through the hostile-safe decode, then ``mapper`` per object:
    an unreadable item of a batch is answered on its own, the rest are mapped."""
    def mapped(body: bytes, registry: Registry) -> list[Item] | tuple[str, str]:
        data = decode_batch(body, key)
        if isinstance(data, Rejection):
            return data.reason.value, data.detail
        if isinstance(data, dict):
            return mapper(data, registry)
        out: list[Item] = []
        for item in data:
            if isinstance(item, Rejection):
                out.append(Item("?", item))
            else:
                out.extend(mapper(item, registry))
        return out
    return mapped


def _map_csv(body: bytes, registry: Registry) -> list[Item] | tuple[str, str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return MALFORMED_CSV, (f"a CSV export is UTF-8 text: byte "
                               f"0x{body[exc.start:exc.start + 1].hex()} at position {exc.start}")
    try:
        return virtual_expo.map_csv(text, registry)
    except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
        return MALFORMED_CSV, f"the CSV cannot be read: {exc}"


def _adapter_route(channel: str, mapper: Mapper) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        principal = await authenticated(request)
        if isinstance(principal, web.Response):
            return principal
        if principal.kind != "channel" or principal.channel != channel:
            _count_request(state, 403)
            return _error(403, CHANNEL_NOT_ALLOWED,
                          f"this route takes a {channel!r} channel token")
        body = await _read_body(request)
        if isinstance(body, web.Response):
            return body
        mapped = mapper(body, state.registry_source.current())
        if isinstance(mapped, tuple):
            return _whole_body(state, *mapped)
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


def run(settings: Settings, ack_timeout_s: float = 10.0, processes: int = 1,
        reuse_port: bool = False) -> None:
    """Serve until interrupted (``rekap ingest``): HTTPS when REKAP_TLS_CERT/KEY are set.

    With ``processes`` > 1, this process and ``processes - 1`` spawned copies (each with its
    own producer) listen on the same port with ``SO_REUSEPORT`` and the kernel spreads the
    connections: one process is held near one core by its GIL, which its event loop and
    kafka-python's I/O thread share. Limits kept in memory (rate limits) are then per process.
    The copies stop with this process.
    """
    import multiprocessing

    from rekap.tls import server_context

    # Before Kafka: a bad certificate must stop ingest, never let it fall back to plain HTTP.
    ssl_context = server_context(settings)
    spawn = multiprocessing.get_context("spawn")
    copies = [spawn.Process(target=run, args=(settings, ack_timeout_s, 1, True), daemon=True,
                            name=f"rekap-ingest-{i}") for i in range(1, processes)]
    for copy in copies:
        copy.start()
    producer = SaleProducer(settings, client_id=f"{settings.app_id}-ingest", ack_timeout_s=ack_timeout_s,
                            max_block_s=min(3.0, ack_timeout_s / 2))
    app = create_app(settings, producer)
    log.info("ingest listening on %s://%s:%d (max body %d bytes, %d processes)",
             "https" if ssl_context else "http", settings.host, settings.ingest_port,
             settings.max_body_bytes, max(1, processes))
    try:
        web.run_app(app, host=settings.host, port=settings.ingest_port, print=None,
                    access_log=None, handle_signals=True, ssl_context=ssl_context,
                    reuse_port=reuse_port or processes > 1)
    finally:
        for copy in copies:
            copy.terminate()
        for copy in copies:
            copy.join(10)

