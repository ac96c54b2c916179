"""The worker web's security headers, and the venue page working under its CSP in Chromium.

The bare aiohttp app (:func:`streams.web.views.build_app`) serves the same
handlers as the worker; one test asks a real ``rekap worker`` too, since Faust
mounts them its own way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from rekap.httpheaders import CONTENT_SECURITY_POLICY
from rekap.settings import Settings
from streams.web.views import WebApi, build_app
from tests.streams.web.cdp import Browser
from tests.streams.web.conftest import KOKAS
from tests.support.worker import start_worker

pytestmark = pytest.mark.integration

PAGE = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
DATA = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
#: Collects every CSP violation from before the page's own scripts run (CDP-injected
#: scripts are not subject to the page's CSP).
WATCH_CSP = """window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"""


@pytest.fixture
async def web_url(seeded: Settings) -> AsyncIterator[str]:
    # A short shutdown: the venue page's event stream is still open when the browser goes,
    # and aiohttp would wait for its handler (~15 s) before closing.
    runner = web.AppRunner(build_app(WebApi(seeded)), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, seeded.host, seeded.worker_port).start()
    try:
        yield f"http://{seeded.host}:{seeded.worker_port}"
    finally:
        await runner.cleanup()


def has(headers: httpx.Headers, expected: dict[str, str]) -> bool:
    return all(headers.get(name) == value for name, value in expected.items())


async def test_pages_get_the_csp_and_data_gets_nosniff_no_store(web_url: str) -> None:
    async with httpx.AsyncClient(base_url=web_url) as client:
        page = await client.get(f"/venue/{KOKAS}")
        script = await client.get("/static/venue.js")
        style = await client.get("/static/venue.css")
        missing = await client.get("/venue/no-such-event")
        api = await client.get("/api/v1/events")
        snapshot = await client.get(f"/api/v1/events/{KOKAS}/snapshot")
        not_found = await client.get("/api/v1/events/no-such-event/summary")
        async with client.stream("GET", f"/api/v1/events/{KOKAS}/stream") as stream:
            stream_headers = stream.headers
    for answer in (page, script, style, missing):
        assert has(answer.headers, PAGE), (answer.url, answer.headers)
    assert script.headers["Cache-Control"] == "no-cache"  # the handler's own, kept
    for answer in (api, snapshot, not_found):
        assert has(answer.headers, DATA), (answer.url, answer.headers)
    assert has(stream_headers, DATA)
    assert not any("Strict-Transport-Security" in a.headers for a in (page, api))  # plain HTTP


@pytest.mark.browser
async def test_venue_page_runs_under_its_csp_without_a_violation(web_url: str) -> None:
    async with Browser() as browser:
        await browser.send("Page.addScriptToEvaluateOnNewDocument", source=WATCH_CSP)
        await browser.goto(f"{web_url}/venue/{KOKAS}")
        # The script ran (rows drawn from the seeded totals) and the stylesheet applied.
        await browser.wait_for("document.querySelectorAll('#board li').length >= 3")
        await browser.wait_for("document.getElementById('live').dataset.state === 'live'")
        styled = await browser.eval(
            "getComputedStyle(document.getElementById('screen')).display === 'grid'")
        violations = json.loads(await browser.eval("JSON.stringify(window.__csp)"))
    assert styled
    assert violations == []


async def test_the_worker_itself_sends_them(seeded: Settings) -> None:
    worker = start_worker(seeded)
    try:
        async with httpx.AsyncClient(base_url=worker.url) as client:
            page = await client.get(f"/venue/{KOKAS}")
            api = await client.get(f"/api/v1/events/{KOKAS}/summary")
    finally:
        worker.stop()
    assert page.status_code == 200 and has(page.headers, PAGE), page.headers
    assert api.status_code == 200 and has(api.headers, DATA), api.headers
