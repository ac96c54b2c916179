"""Ingest's rate limits, in-flight cap, readiness without blocking, and security headers.

The bucket logic is tested with a stepped clock; the rest against a real
ingest on HTTP with small limits, producing into the real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from producers.ingest.app import STATE
from producers.ingest.limits import InFlight, TokenBucket, retry_after
from rekap.httpheaders import CONTENT_SECURITY_POLICY
from rekap.settings import Settings
from tests.producers.conftest import Ingest, start_ingest, with_tokens
from tests.support import rawhttp

SAMPLES = Path(__file__).resolve().parents[2] / "producers" / "samples"


def booth_sale(n: int = 1) -> dict[str, Any]:
    sale = json.loads((SAMPLES / "booth-sale.json").read_text())
    sale["sale_id"] = f"01G4D3X2N6Q8Z5V7B9C1L{n:05d}"
    return dict(sale)


# -- the bucket, pure --------------------------------------------------------------------------

def test_bucket_gives_its_burst_then_one_per_interval() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take("a", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a", 100.0) == pytest.approx(0.5)
    assert bucket.take("a", 100.25) == pytest.approx(0.25)  # half a token back, not one
    assert bucket.take("a", 100.5) == 0.0
    assert bucket.take("b", 100.5) == 0.0  # each key its own bucket
    assert bucket.take("a", 200.0) == 0.0
    assert [bucket.take("a", 200.0) for _ in range(3)][-1] > 0  # refills to the burst, no more


def test_bucket_peek_takes_nothing_and_rate_zero_is_off() -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.peek("a", 0.0) == 0.0
    assert bucket.take("a", 0.0) == 0.0
    assert bucket.peek("a", 0.0) == pytest.approx(1.0)
    assert bucket.peek("a", 0.0) == pytest.approx(1.0)
    off = TokenBucket(rate=0, burst=1)
    assert all(off.take("a", 0.0) == 0.0 for _ in range(1000))
    assert len(off) == 0


def test_bucket_memory_is_bounded_whatever_the_number_of_keys() -> None:
    bucket = TokenBucket(rate=1.0, burst=5, max_keys=100)
    for n in range(10_000):
        bucket.take(f"10.0.{n // 256}.{n % 256}", 0.0)  # all busy: none has refilled
        assert len(bucket) <= 100
    bucket.take("busy", 1.0)
    bucket.take("busy", 1.0)
    for n in range(99):
        bucket.take(n, 100.0)  # the others refilled long ago: forgotten first
    assert bucket.take("new", 100.0) == 0.0 and len(bucket) <= 100


def test_in_flight_and_retry_after() -> None:
    flight = InFlight(2)
    assert flight.enter() and flight.enter() and not flight.enter()
    flight.leave()
    assert flight.enter()
    assert all(InFlight(0).enter() for _ in range(1000))
    assert [retry_after(w) for w in (0.0, 0.01, 1.0, 1.2, 59.9)] == [1, 1, 1, 2, 60]


# -- over HTTP ---------------------------------------------------------------------------------

@pytest.fixture
async def limited(settings: Settings, tmp_path: Path) -> AsyncIterator[Ingest]:
    s, tokens = with_tokens(dataclasses.replace(
        settings, ingest_rate_per_token=0.5, ingest_burst_per_token=3,
        ingest_rate_per_address=0.5, ingest_burst_per_address=4, ingest_max_in_flight=2),
        tmp_path / "tokens")
    runner, app = await start_ingest(s)
    try:
        yield Ingest(f"http://{s.host}:{s.ingest_port}", s, tokens, app)
    finally:
        await runner.cleanup()


def metric(text: str, outcome: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'rekap_ingest_requests_total{{outcome="{outcome}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.integration
async def test_a_token_over_its_rate_gets_429_with_retry_after(limited: Ingest) -> None:
    async with httpx.AsyncClient(base_url=limited.url) as client:
        answers = [await client.post("/v1/sales", json=booth_sale(n), headers=limited.booth("kokas-01"))
                   for n in range(5)]
        other = await client.post("/v1/sales", json=booth_sale(9), headers=limited.booth("kokas-01"))
        metrics = (await client.get("/metrics")).text
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
    refused = answers[3]
    assert refused.json()["error"]["reason"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 2  # 0.5 token/s: 2 s for the next
    assert other.status_code == 429
    assert metric(metrics, "rate_limited") == 3
    assert metric(metrics, "accepted") == 3


@pytest.mark.integration
async def test_tokens_have_their_own_buckets(limited: Ingest, settings: Settings) -> None:
    async with httpx.AsyncClient(base_url=limited.url) as client:
        one = [(await client.post("/v1/sales", json=booth_sale(n), headers=limited.booth("kokas-01")))
               .status_code for n in range(4)]
        sale = booth_sale(20) | {"booth_id": "kokas-02", "ikm_id": "pisang-shamiya"}
        two = await client.post("/v1/sales", json=sale, headers=limited.booth("kokas-02"))
    assert one == [202, 202, 202, 429]
    assert two.status_code != 429, two.text


@pytest.mark.integration
async def test_bad_tokens_from_one_address_are_slowed_but_valid_ones_pass(limited: Ingest) -> None:
    async with httpx.AsyncClient(base_url=limited.url) as client:
        bad = [await client.post("/v1/sales", json=booth_sale(),
                                 headers={"Authorization": f"Bearer guess-{n}"}) for n in range(6)]
        good = await client.post("/v1/sales", json=booth_sale(), headers=limited.booth("kokas-01"))
    assert [b.status_code for b in bad] == [401, 401, 401, 401, 429, 429]
    assert bad[4].json()["error"]["reason"] == "rate_limited"
    assert int(bad[4].headers["Retry-After"]) >= 1
    assert good.status_code == 202, good.text


@pytest.mark.integration
async def test_requests_past_the_in_flight_cap_get_429_too_busy(limited: Ingest) -> None:
    s = limited.settings
    token = limited.tokens["booths"]["kokas-01"]
    body = json.dumps(booth_sale(1)).encode()
    held = []
    for _ in range(2):  # two requests stuck reading their bodies: both in flight
        reader, writer = await asyncio.open_connection(s.host, s.ingest_port)
        writer.write(f"POST /v1/sales HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body[:10])
        await writer.drain()
        held.append((reader, writer))
    await asyncio.sleep(0.2)
    busy = await rawhttp.request(s.host, s.ingest_port, "POST", "/v1/sales", body=body,
                                 headers=[(b"Authorization", f"Bearer {token}".encode())])
    health = await rawhttp.request(s.host, s.ingest_port, "GET", "/healthz")
    for _, writer in held:
        writer.write(body[10:])
        await writer.drain()
    finished = [rawhttp.parse(await asyncio.wait_for(reader.read(4096), 10)) for reader, _ in held]
    for _, writer in held:
        writer.close()
        await writer.wait_closed()
    assert busy is not None and busy.status == 429, busy
    assert busy.json()["error"]["reason"] == "too_busy"
    assert busy.headers["retry-after"] == "1"
    assert health is not None and health.status == 200  # GETs are not capped
    assert [f.status if f else None for f in finished] == [202, 202]
    assert limited.app[STATE].limits.in_flight.count == 0


# -- readiness never blocks the loop -----------------------------------------------------------

@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A port whose connects hang: a listener that never accepts, its queue already full
    (Linux drops further SYNs), like a broker host dropping packets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    try:
        yield port
    finally:
        for sock in [*fillers, server]:
            sock.close()


@pytest.mark.integration
async def test_an_unreachable_kafka_never_blocks_the_event_loop(
        settings: Settings, tmp_path: Path, stalled_port: int) -> None:
    s, tokens = with_tokens(dataclasses.replace(settings, kafka_bootstrap=f"127.0.0.1:{stalled_port}"),
                            tmp_path / "tokens")
    runner, app = await start_ingest(s)
    app[STATE].producer.failing_since = time.monotonic()  # an acknowledgement just failed
    headers = {"Authorization": f"Bearer {tokens['booths']['kokas-01']}"}
    try:
        async with httpx.AsyncClient(base_url=f"http://{s.host}:{s.ingest_port}", timeout=30) as client:
            async def health() -> float:
                started = time.perf_counter()
                await client.get("/healthz")
                return time.perf_counter() - started

            started = time.perf_counter()
            answers = await asyncio.gather(
                *[client.post("/v1/sales", json=booth_sale(n), headers=headers) for n in range(12)],
                *[client.get("/readyz") for _ in range(4)])
            took = time.perf_counter() - started
            pauses = await asyncio.gather(*[health() for _ in range(3)], client.get("/readyz"),
                                          *[health() for _ in range(3)])
    finally:
        await runner.cleanup()
    # The old blocking probe took 0.5 s per request on the loop: 8 s for these 16.
    assert took < 2.0, took
    assert {a.status_code for a in answers} == {503}
    assert all(a.headers["Retry-After"].isdigit() for a in answers[:12])
    assert {a.json()["results" if "results" in a.json() else "error"]["reason"]
            for a in answers[:12]} == {"kafka_unavailable"}
    assert max(p for p in pauses if isinstance(p, float)) < 0.3, pauses


# -- security headers --------------------------------------------------------------------------

@pytest.mark.integration
async def test_api_answers_carry_nosniff_and_no_store_and_pages_the_csp(ingest: Ingest) -> None:
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        accepted = await client.post("/v1/sales", json=booth_sale(), headers=ingest.booth("kokas-01"))
        refused = await client.post("/v1/sales", content=b"{", headers=ingest.booth("kokas-01"))
        unknown = await client.get("/v1/nothing-here")
        page = await client.get("/booth/")
    for answer in (accepted, refused, unknown):
        assert answer.headers["X-Content-Type-Options"] == "nosniff", answer
        assert answer.headers["Cache-Control"] == "no-store", answer
        assert "Strict-Transport-Security" not in answer.headers  # plain HTTP
    assert unknown.status_code == 404 and unknown.json()["error"]["reason"] == "not_found"
    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Frame-Options"] == "DENY"


@pytest.mark.integration
async def test_answers_over_tls_carry_hsts(settings: Settings, tmp_path: Path) -> None:
    from aiohttp import web

    from producers.ingest.app import create_app
    from rekap.tls import client_context, init_local, server_context

    made = init_local(tmp_path / "tls")
    s = dataclasses.replace(settings, tls_cert=made.server.cert, tls_key=made.server.key,
                            tls_ca=made.ca.cert)
    runner = web.AppRunner(create_app(s), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, s.host, s.ingest_port, ssl_context=server_context(s)).start()
    try:
        async with httpx.AsyncClient(base_url=f"https://localhost:{s.ingest_port}",
                                     verify=client_context(s)) as client:
            health = await client.get("/healthz")
            page = await client.get("/booth/")
    finally:
        await runner.cleanup()
    for answer in (health, page):
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000", answer.headers
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
