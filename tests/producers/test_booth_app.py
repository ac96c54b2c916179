"""The booth app in headless Chromium: pair, lose the network, record 20 sales, reload
offline, come back: every sale reaches Redis exactly once and the page shows it sent.

Real parts throughout: ingest (in this process, on a real port), Kafka, the worker
(a child process) applying to Redis, Debian's Chromium. "Offline" is both the page's
network emulation and ingest's listener closed, because emulation does not cover the
service worker's own fetches: with nothing listening, only the service worker's cache
can serve the reload. Then, on the same page: a refund from the list, a sale ingest
rejects (shown "ditolak" with its reason), a revoked token (the page offers pairing again
and keeps the sale). All of it under ingest's strict Content-Security-Policy, with no
violation. Screenshots at tablet and phone sizes go to ``test-artifacts/booth/`` for a
human to look at, with ``timings.json``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from producers.ingest.app import STATE
from rekap.httpheaders import CONTENT_SECURITY_POLICY
from rekap.names import Keys
from rekap.registry import load_registry
from rekap.settings import Settings
from tests.conftest import REPO
from tests.producers.conftest import start_ingest
from tests.streams.web.cdp import Browser
from tests.support.env import run_cli, settings_env
from tests.support.kafka import read_all
from tests.support.worker import start_worker

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ARTIFACTS = REPO / "test-artifacts" / "booth"
BOOTH = "booth-uji-01"
EVENT = "pameran-uji"
IKM = ("batik-uji", "kopi-uji")
ZONE = "Asia/Jakarta"
#: Twenty amounts in whole rupiah; the first exercises the thousands dots while typing.
AMOUNTS = [1_250_000, 35_000, 120_000, 7_500, 560_000, 99_000, 2_000_000, 15_000, 48_500,
           300_000, 125_000, 80_000, 1_000, 640_000, 22_000, 410_000, 75_250, 5_000_000,
           18_000, 260_000]
QTY = [1 + i % 3 for i in range(len(AMOUNTS))]

pending_js = "document.querySelectorAll('#sales li[data-state=\"pending\"]').length"
sent_js = "document.querySelectorAll('#sales li[data-state=\"sent\"]').length"
ids_js = "Array.from(document.querySelectorAll('#sales li'), li => li.dataset.sale)"


#: Collects the page's CSP violations where the test can read them.
WATCH_CSP = ("window.cspViolations = []; document.addEventListener('securitypolicyviolation',"
             " e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));")


def write_registry(path: Path, today: date, max_sale_idr: int) -> Path:
    """A one-event registry whose window holds today (the bundled one is 2022)."""
    text = "\n".join([
        "version = 1", "",
        "[[events]]", f'id = "{EVENT}"', 'name = "Pameran Uji Kasir"', 'venue = "Jakarta"',
        f'timezone = "{ZONE}"', f"starts_on = {today - timedelta(days=2)}",
        f"ends_on = {today + timedelta(days=2)}", f"max_sale_idr = {max_sale_idr}",
        "ikm = [" + ", ".join(f'"{i}"' for i in IKM) + "]", "",
        "[[ikm]]", f'id = "{IKM[0]}"', 'name = "Batik Uji"', "",
        "[[ikm]]", f'id = "{IKM[1]}"', 'name = "Kopi Uji"', "",
        "[[booths]]", f'id = "{BOOTH}"', f'event = "{EVENT}"',
        "ikm = [" + ", ".join(f'"{i}"' for i in IKM) + "]", ""])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


async def poll(check: Callable[[], Awaitable[Any] | Any], timeout: float, what: str) -> Any:  # noqa: ASYNC109
    """Await ``check`` until truthy without blocking the loop (ingest runs on it)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{what}: not reached after {timeout}s")


def ints(h: Any) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in h.items() if v.lstrip(b"-").isdigit()}


async def record_sale(b: Browser, i: int, amount: int) -> None:
    """Fill the form like the staff would: pick the IKM, type the amount, step the quantity."""
    await b.eval(f"(() => {{ const s = document.getElementById('ikm'); s.value = {json.dumps(IKM[i % 2])};"
                 " s.dispatchEvent(new Event('change', {bubbles: true})); })()")
    await b.type_text("#amount", str(amount))
    assert await b.eval("document.getElementById('amount').value") == f"{amount:,}".replace(",", ".")
    for _ in range(QTY[i] - 1):
        await b.click("#qty-plus")
    if i % 4 == 0:
        await b.type_text("#sku", f"produk-{i:02d}")
    await b.click("#submit")
    await b.wait_for(f"document.querySelectorAll('#sales li').length === {i + 1}", timeout=5)


async def test_booth_app_offline_sales_arrive_exactly_once(
        settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> None:
    started = time.monotonic()
    today = datetime.now(ZoneInfo(ZONE)).date()
    registry_path = write_registry(tmp_path / "registry.toml", today, 50_000_000)
    s = dataclasses.replace(settings, registry_path=registry_path,
                            booth_tokens_path=tmp_path / "tokens" / "tokens.toml")
    base = f"http://{s.host}:{s.ingest_port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    issued = run_cli(settings_env(s), "registry", "issue-token", BOOTH, "--public-url", base,
                     "--qr-png", str(ARTIFACTS / "pairing-qr.png"))
    assert issued.returncode == 0, issued.stderr
    link = re.search(r"^(http://\S+/booth/#pair=[A-Za-z0-9_-]+)$", issued.stdout, re.M)
    assert link, issued.stdout
    token = issued.stdout.split("\n")[1].strip()
    assert token.startswith("rkp_") and token not in link.group(1)

    worker = start_worker(s)
    runner, app = await start_ingest(s)
    try:
        async with Browser(1024, 768) as b:
            await b.timezone(ZONE)
            await b.on_new_document(WATCH_CSP)
            await b.goto(link.group(1))
            await b.wait_for("document.documentElement.dataset.app === 'paired'"
                             " && !document.getElementById('app').hidden", timeout=15)
            assert await b.eval("location.href") == f"{base}/booth/"  # fragment gone
            assert await b.eval("document.getElementById('booth-name').textContent") == f"Booth {BOOTH}"
            assert await b.eval("document.getElementById('ikm').options.length") == 2
            stored = await b.eval(
                "new Promise(r => { const q = indexedDB.open('rekap-booth'); q.onsuccess = () =>"
                " { const g = q.result.transaction('config').objectStore('config').get('pairing');"
                " g.onsuccess = () => r(g.result.token); }; })")
            assert stored == token
            await b.wait_for("navigator.serviceWorker.controller !== null", timeout=15)
            paired_s = time.monotonic() - started

            # Offline: the venue Wi-Fi is gone and ingest with it.
            await runner.cleanup()
            await b.offline(True)
            await b.wait_for("document.getElementById('net').dataset.state === 'offline'")
            for i, amount in enumerate(AMOUNTS):
                await record_sale(b, i, amount)
                if i == 0:
                    assert await b.eval("document.querySelector('#sales li .amount').textContent") \
                        == "Rp 1.250.000"
            assert await b.eval(pending_js) == 20
            assert await b.eval("document.getElementById('t-count').textContent") == "20"
            assert await b.eval("document.getElementById('t-net').textContent") == \
                "Rp " + f"{sum(AMOUNTS):,}".replace(",", ".")
            await b.eval("window.scrollTo(0, 0)")
            await b.screenshot(ARTIFACTS / "tablet-offline.png")
            sale_ids = await b.eval(ids_js)
            assert sale_ids == sorted(sale_ids, reverse=True) and len(set(sale_ids)) == 20

            # Reload with the network still gone: only the service worker's cache can serve it.
            await b.reload()
            await b.wait_for(f"{pending_js} === 20", timeout=10)
            assert await b.eval("navigator.serviceWorker.controller !== null")
            assert await b.eval("performance.getEntriesByType('navigation')[0].workerStart > 0")
            assert await b.eval(ids_js) == sale_ids

            # Back online: same port, the page's network restored.
            runner, app = await start_ingest(s)
            online_at = time.monotonic()
            await b.offline(False)
            await b.wait_for(f"{sent_js} === 20", timeout=30)
            synced_s = time.monotonic() - online_at
            badges = await b.eval("Array.from(document.querySelectorAll('#sales .badge'),"
                                  " x => x.textContent)")
            assert badges == ["terkirim"] * 20

            keys = Keys(s.redis_prefix)
            want = {"count": 20, "amount_idr": sum(AMOUNTS), "gross_idr": sum(AMOUNTS),
                    "quantity": sum(QTY)}

            def event_totals() -> dict[str, int]:
                totals = ints(redis_client.hgetall(keys.event_totals(EVENT, EVENT)))
                return {k: totals.get(k, 0) for k in want}

            await poll(lambda: event_totals() == want, 30, "event totals in Redis")
            for n, ikm in enumerate(IKM):
                mine = [a for i, a in enumerate(AMOUNTS) if i % 2 == n]
                ikm_totals = ints(redis_client.hgetall(keys.ikm_totals(EVENT, EVENT, ikm)))
                assert (ikm_totals.get("count"), ikm_totals.get("amount_idr")) == (len(mine), sum(mine))
            in_kafka = [json.loads(r.value or b"{}") for r in
                        await asyncio.to_thread(read_all, s, s.topic_sales)]
            # A resend may put a sale in Kafka twice; Redis above counted each once.
            assert {r["sale_id"] for r in in_kafka} == set(sale_ids)
            assert all(r["booth_id"] == BOOTH and r["occurred_at"].endswith("+07:00") for r in in_kafka)

            # Refund one sale from the list: the net goes down, the sale count stays.
            first = sale_ids[-1]
            await b.click(f"#sales li[data-sale='{first}'] .refund")
            await b.wait_for("document.getElementById('refund-dialog').open")
            assert await b.eval("document.getElementById('refund-amount').value") == "1.250.000"
            await b.eval("document.getElementById('refund-amount').value = ''")
            await b.type_text("#refund-amount", "250000")
            await b.click("#refund-submit")
            await b.wait_for("document.querySelector('#sales li[data-kind=\"refund\"]')"
                             "?.dataset.state === 'sent'", timeout=15)
            assert await b.eval(f"document.querySelector(\"#sales li[data-sale='{first}'] .refund\")"
                                ".textContent") == "Refund"  # Rp 1.000.000 left to refund
            # The refund took back the sale's one unit too (the dialog's default).
            want_after = {**want, "amount_idr": sum(AMOUNTS) - 250_000, "quantity": sum(QTY) - 1}
            await poll(lambda: event_totals() == want_after, 30, "refund in Redis")
            refunds = ints(redis_client.hgetall(keys.event_totals(EVENT, EVENT)))
            assert (refunds.get("refunds_idr"), refunds.get("refund_count")) == (250_000, 1)

            # A sale ingest refuses shows "ditolak" with the reason. The registry lowers the
            # event's cap after pairing; the page still knows the old one, ingest the new.
            write_registry(registry_path, today, 1_000_000)
            await poll(lambda: app[STATE].registry_source.current().events[EVENT].max_sale_idr
                       == 1_000_000, 10, "ingest reloaded the registry")
            await b.type_text("#amount", "2500000")
            await b.click("#submit")
            await b.wait_for("!!document.querySelector('#sales li[data-state=\"rejected\"]')", timeout=15)
            rejected = await b.eval("document.querySelector('#sales li[data-state=\"rejected\"]').innerText")
            assert "ditolak" in rejected and "Jumlah melebihi batas acara (amount_too_large)" in rejected
            assert "1000000" in rejected  # the server's detail names the cap
            assert await b.eval("document.getElementById('t-rejected').textContent") == "1"
            await b.eval("window.scrollTo(0, 0)")
            await asyncio.sleep(0.3)
            await b.screenshot(ARTIFACTS / "tablet.png")
            await b.viewport(390, 844, mobile=True, scale=2)
            await b.eval("window.scrollTo(0, 0)")
            await asyncio.sleep(0.3)
            await b.screenshot(ARTIFACTS / "phone.png")
            await b.eval("document.getElementById('today-title').scrollIntoView()")
            await asyncio.sleep(0.3)
            await b.screenshot(ARTIFACTS / "phone-totals.png")
            assert await b.eval("document.documentElement.scrollWidth") <= 390  # no sideways scroll

            # Token revoked (the token file is the grant): the page says so, offers pairing
            # again, and keeps the sale it could not send.
            await b.viewport(1024, 768)
            assert s.booth_tokens_path is not None
            s.booth_tokens_path.unlink()
            await poll(lambda: app[STATE].tokens.current().owner(token) is None, 10, "revoked")
            await b.type_text("#amount", "10000")
            await b.click("#submit")
            await b.wait_for("!document.getElementById('auth-error').hidden", timeout=15)
            assert await b.eval(pending_js) == 1
            await b.click("#repair")
            assert await b.eval("!document.getElementById('pair').hidden")
            assert not [line for line in b.console if line.startswith("EXCEPTION")], b.console
            assert await b.eval("window.cspViolations") == []
            # ... under the strict policy ingest sends with the page (cached with it, too).
            assert await b.eval("fetch('./').then(r => r.headers.get('Content-Security-Policy'))") \
                == CONTENT_SECURITY_POLICY
        await poll(lambda: event_totals() == want_after, 5, "nothing more arrived")
    finally:
        await runner.cleanup()
        worker.stop()
    (ARTIFACTS / "timings.json").write_text(json.dumps({
        "paired_after_s": round(paired_s, 2), "synced_after_online_s": round(synced_s, 2),
        "test_s": round(time.monotonic() - started, 2)}) + "\n")
    for name in ("tablet.png", "tablet-offline.png", "phone.png", "phone-totals.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000
    assert load_registry(registry_path).events[EVENT].max_sale_idr == 1_000_000


def spki_pin(cert_path: Path) -> str:
    """Chromium's pin of a certificate's public key: base64 SHA-256 of its SubjectPublicKeyInfo."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


async def test_booth_app_pairs_and_sends_over_https(settings: Settings, tmp_path: Path) -> None:
    """The same app behind ingest's own TLS (the local CA of ``rekap tls init``): the pairing
    link the command prints is https, the service worker registers (a secure context off
    loopback needs https), and a sale recorded on the page is acknowledged by Kafka.

    Chromium cannot be given a CA without an NSS database; it is told to trust the server
    certificate's key instead (``--ignore-certificate-errors-spki-list``), which is what a
    tablet with the local CA installed gets.
    """
    from rekap.tls import init_local

    tls = init_local(tmp_path / "tls")
    today = datetime.now(ZoneInfo(ZONE)).date()
    s = dataclasses.replace(
        settings, registry_path=write_registry(tmp_path / "registry.toml", today, 50_000_000),
        booth_tokens_path=tmp_path / "tokens" / "tokens.toml",
        tls_cert=tls.server.cert, tls_key=tls.server.key, tls_ca=tls.ca.cert)
    base = f"https://{s.host}:{s.ingest_port}"
    issued = run_cli(settings_env(s), "registry", "issue-token", BOOTH)
    assert issued.returncode == 0, issued.stderr
    link = re.search(r"^(https://\S+/booth/#pair=[A-Za-z0-9_-]+)$", issued.stdout, re.M)
    assert link and link.group(1).startswith(base), issued.stdout

    runner, _ = await start_ingest(s)
    try:
        pin = f"--ignore-certificate-errors-spki-list={spki_pin(tls.server.cert)}"
        async with Browser(1024, 768, flags=(pin,)) as b:
            await b.timezone(ZONE)
            await b.goto(link.group(1))
            await b.wait_for("document.documentElement.dataset.app === 'paired'"
                             " && !document.getElementById('app').hidden", timeout=15)
            assert await b.eval("location.href") == f"{base}/booth/"
            assert await b.eval("window.isSecureContext") is True
            await b.wait_for("navigator.serviceWorker.controller !== null", timeout=15)
            await record_sale(b, 0, AMOUNTS[0])
            await b.wait_for(f"{sent_js} === 1", timeout=15)
            (sale_id,) = await b.eval(ids_js)
            assert await b.eval("fetch('./').then(r => r.headers.get('Strict-Transport-Security'))")
    finally:
        await runner.cleanup()
    in_kafka = [json.loads(r.value or b"{}") for r in await asyncio.to_thread(read_all, s, s.topic_sales)]
    assert [(r["sale_id"], r["amount_idr"]) for r in in_kafka] == [(sale_id, AMOUNTS[0])]
