"""The read API served by the same handlers the worker mounts, on a bare aiohttp server.

Bodies are validated against ``streams/web/openapi.json``; the worker-mounted
routes are exercised end to end in ``test_worker_web.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import jsonschema
import pytest
import redis
from aiohttp.test_utils import TestServer

from rekap.names import Keys
from rekap.registry import Registry
from rekap.settings import Settings
from streams.web.views import WebApi, build_app
from tests.streams.web.conftest import KOKAS, ROOT
from tests.streams.web.openapi_check import SPEC, validate
from tests.streams.web.seed import add_sale

pytestmark = pytest.mark.integration


@pytest.fixture
async def http(seeded: Settings) -> AsyncIterator[httpx.AsyncClient]:
    server = TestServer(build_app(WebApi(seeded)), host="127.0.0.1")
    await server.start_server()
    try:
        async with httpx.AsyncClient(base_url=str(server.make_url("")), timeout=10) as client:
            yield client
    finally:
        await server.close()


def test_openapi_document_is_valid_3_1() -> None:
    assert SPEC["openapi"].startswith("3.1")
    for name, schema in SPEC["components"]["schemas"].items():
        Draft202012Validator = jsonschema.Draft202012Validator
        Draft202012Validator.check_schema({**schema, "components": SPEC["components"]}), name
    for path, item in SPEC["paths"].items():
        assert set(item) == {"get"}, path


async def test_every_endpoint_answers_per_its_schema(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/api/v1/openapi.json")).json()
    assert spec == SPEC
    cases = [
        ("/api/v1/events", "/api/v1/events"),
        ("/api/v1/events/{event_id}/summary", f"/api/v1/events/{KOKAS}/summary"),
        ("/api/v1/events/{event_id}/leaderboard", f"/api/v1/events/{ROOT}/leaderboard?limit=3"),
        ("/api/v1/events/{event_id}/ikm/{ikm_id}", f"/api/v1/events/{KOKAS}/ikm/lampung-ethnica"),
        ("/api/v1/events/{event_id}/ikm/{ikm_id}", f"/api/v1/events/{KOKAS}/ikm/askha-jaya"),
        ("/api/v1/events/{event_id}/snapshot", f"/api/v1/events/{ROOT}/snapshot"),
    ]
    for template, url in cases:
        resp = await http.get(url)
        assert resp.status_code == 200, (url, resp.text)
        validate(template, 200, resp.json())
    events = (await http.get("/api/v1/events")).json()["events"]
    assert [(e["event_id"], e["totals"]["amount_idr"]) for e in events] == [
        (ROOT, 4_600_000), (KOKAS, 2_600_000)]
    board = (await http.get(f"/api/v1/events/{ROOT}/leaderboard?limit=3")).json()
    assert [(e["rank"], e["ikm_id"], e["amount_idr"]) for e in board["entries"]] == [
        (1, "lampung-ethnica", 2_000_000), (1, "littlemonq", 2_000_000), (3, "pisang-shamiya", 300_000)]
    assert board["entries"][0]["share"] == "0.4348" and board["entries"][0]["share_bp"] == 4348


@pytest.mark.parametrize(("url", "status", "template"), [
    ("/api/v1/events/nope/summary", 404, "/api/v1/events/{event_id}/summary"),
    ("/api/v1/events/nope/leaderboard", 404, "/api/v1/events/{event_id}/leaderboard"),
    (f"/api/v1/events/{KOKAS}/ikm/kopi-way-tebu-x", 404, "/api/v1/events/{event_id}/ikm/{ikm_id}"),
    ("/api/v1/events/nope/ikm/littlemonq", 404, "/api/v1/events/{event_id}/ikm/{ikm_id}"),
    (f"/api/v1/events/{KOKAS}/leaderboard?limit=0", 400, "/api/v1/events/{event_id}/leaderboard"),
    (f"/api/v1/events/{KOKAS}/leaderboard?limit=abc", 400, "/api/v1/events/{event_id}/leaderboard"),
    (f"/api/v1/events/{KOKAS}/leaderboard?limit=1001", 400, "/api/v1/events/{event_id}/leaderboard"),
    ("/api/v1/events/nope/snapshot", 404, "/api/v1/events/{event_id}/snapshot"),
    ("/api/v1/events/nope/stream", 404, "/api/v1/events/{event_id}/stream"),
])
async def test_errors_say_why(http: httpx.AsyncClient, url: str, status: int, template: str) -> None:
    resp = await http.get(url)
    assert resp.status_code == status
    body = resp.json()
    validate(template, status, body)
    assert body["reason"]


async def test_venue_page_and_redirect(http: httpx.AsyncClient) -> None:
    resp = await http.get("/venue/")
    assert resp.status_code == 302 and resp.headers["location"] == f"/venue/{ROOT}"
    page = await http.get(f"/venue/{KOKAS}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Papan Peringkat" in page.text and f'data-event="{KOKAS}"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    for asset in ("/static/venue.css", "/static/venue.js"):
        body = (await http.get(asset)).text
        assert "http://" not in body and "https://" not in body and "@import" not in body
    assert (await http.get("/venue/nope")).status_code == 404


async def _next_snapshot(lines: AsyncIterator[str]) -> dict:
    data = None
    async for line in lines:
        if line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            return data
    raise AssertionError("stream ended")


async def test_stream_pushes_a_snapshot_within_a_second_of_a_change(
        http: httpx.AsyncClient, seeded: Settings, redis_client: redis.Redis, registry: Registry) -> None:
    async with http.stream("GET", f"/api/v1/events/{KOKAS}/stream") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.aiter_lines()
        first = await asyncio.wait_for(_next_snapshot(lines), 5)
        validate("/api/v1/events/{event_id}/snapshot", 200, first)
        assert first["total_idr"] == 2_600_000
        add_sale(redis_client, Keys(seeded.redis_prefix), registry, sale_id="s-6",
                 ikm_id="pisang-shamiya", event_id=KOKAS, amount_idr=5_000_000)
        second = await asyncio.wait_for(_next_snapshot(lines), 1.0)
        assert second["total_idr"] == 7_600_000
        assert second["leaderboard"][0]["ikm_id"] == "pisang-shamiya"
        assert second["leaderboard"][0]["amount_text"] == "Rp5,3 juta"
        assert second["ticker"][0]["sale_id"] == "s-6"
