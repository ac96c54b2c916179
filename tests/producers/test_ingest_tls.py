"""A real ``rekap ingest`` process on HTTPS with the local CA, producing to the real Kafka.

Booth tokens must not cross venue Wi-Fi in clear: with ``REKAP_TLS_CERT``/``KEY``
ingest answers only TLS, a client that trusts the local CA (``REKAP_TLS_CA``)
posts and syncs, and one that does not is refused before it sends a token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from producers.booth.outbox import Outbox
from rekap.registry import load_registry
from rekap.settings import Settings
from rekap.tls import client_context, init_local, local_url
from tests.producers.conftest import with_tokens
from tests.producers.test_booth import fill
from tests.support.env import run_cli, settings_env
from tests.support.kafka import read_all
from tests.support.procs import Child

pytestmark = pytest.mark.integration


@dataclasses.dataclass
class TlsIngest:
    settings: Settings
    tokens: dict[str, dict[str, str]]
    url: str

    def booth(self, booth_id: str = "kokas-01") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['booths'][booth_id]}"}


def tls_settings(settings: Settings, directory: Path) -> Settings:
    made = init_local(directory)
    return dataclasses.replace(settings, tls_cert=made.server.cert, tls_key=made.server.key,
                               tls_ca=made.ca.cert)


@pytest.fixture
def tls_ingest(settings: Settings, tmp_path: Path) -> Iterator[TlsIngest]:
    s, tokens = with_tokens(tls_settings(settings, tmp_path / "tls"), tmp_path / "tokens")
    url = local_url(s, s.ingest_port)
    assert url.startswith("https://")
    verify = client_context(s)

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1, verify=verify).status_code == 200
        except httpx.HTTPError:
            return False

    ingest = Child([sys.executable, "-m", "rekap.cli", "ingest"], log_path=tmp_path / "ingest.log",
                   env=settings_env(s), name="ingest")
    try:
        ingest.wait_ready(healthy, 30, "/healthz answered over https")
        yield TlsIngest(s, tokens, url)
    finally:
        ingest.stop(15)
    assert "ingest listening on https://" in ingest.log_text()


def sale_ids(settings: Settings) -> list[str]:
    return [json.loads(r.value or b"null")["sale_id"] for r in read_all(settings, settings.topic_sales)]


async def test_a_post_verified_by_the_local_ca_is_accepted(tls_ingest: TlsIngest, tmp_path: Path) -> None:
    s = tls_ingest.settings
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        sales = fill(outbox, load_registry(s.registry_path), 2)
    async with httpx.AsyncClient(base_url=tls_ingest.url, verify=client_context(s), timeout=30) as client:
        resp = await client.post("/v1/sales", json={"sales": sales}, headers=tls_ingest.booth())
    assert resp.status_code == 202, resp.text
    assert resp.http_version == "HTTP/1.1" and resp.url.scheme == "https"
    assert sorted(await asyncio.to_thread(sale_ids, s)) == sorted(x["sale_id"] for x in sales)


async def test_plain_http_and_unverified_clients_get_nothing(tls_ingest: TlsIngest, tmp_path: Path) -> None:
    s = tls_ingest.settings
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        sales = fill(outbox, load_registry(s.registry_path), 1)
    plain = tls_ingest.url.replace("https://", "http://")
    async with httpx.AsyncClient(timeout=10) as client:
        with pytest.raises(httpx.TransportError):
            await client.post(f"{plain}/v1/sales", json={"sales": sales}, headers=tls_ingest.booth())
    # The system's CAs do not know the local CA: refused at the handshake, before any token.
    no_ca = client_context(dataclasses.replace(s, tls_ca=None))
    async with httpx.AsyncClient(verify=no_ca, timeout=10) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.post(f"{tls_ingest.url}/v1/sales", json={"sales": sales},
                              headers=tls_ingest.booth())
    # Trusting the CA is not enough for a name the certificate does not cover.
    async with httpx.AsyncClient(verify=client_context(s), timeout=10) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"{tls_ingest.url}/healthz", extensions={"sni_hostname": "kasir.example"})
    assert await asyncio.to_thread(sale_ids, s) == []


async def test_booth_sync_cli_over_https_with_the_ca(tls_ingest: TlsIngest, tmp_path: Path) -> None:
    s = tls_ingest.settings
    outbox_path = tmp_path / "tablet.sqlite3"
    with Outbox(outbox_path, create=True) as outbox:
        sales = fill(outbox, load_registry(s.registry_path), 3)
    # The tablet has the CA only: no certificate or key of its own.
    tablet = dataclasses.replace(s, tls_cert=None, tls_key=None)
    env = settings_env(tablet, REKAP_BOOTH_TOKEN=tls_ingest.tokens["booths"]["kokas-01"])
    common = ("booth", "sync", "--booth-id", "kokas-01", "--outbox", str(outbox_path), "--max-attempts", "1")

    without_ca = {k: v for k, v in env.items() if k != "REKAP_TLS_CA"}
    refused = await asyncio.to_thread(run_cli, without_ca, *common, "--url", tls_ingest.url)
    assert refused.returncode == 3, refused.stderr
    assert "terkirim 0, ditolak 0, tertunda 3" in refused.stdout
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr

    # No --url: with REKAP_TLS_CA the default ingest URL is https://host:ingest_port.
    done = await asyncio.to_thread(run_cli, env, *common)
    assert done.returncode == 0, done.stderr
    assert "terkirim 3, ditolak 0, tertunda 0" in done.stdout
    assert sorted(await asyncio.to_thread(sale_ids, s)) == sorted(x["sale_id"] for x in sales)


def test_ingest_refuses_to_start_on_a_key_that_is_not_the_certs(settings: Settings, tmp_path: Path) -> None:
    s = tls_settings(settings, tmp_path / "a")
    other = init_local(tmp_path / "b")
    done = run_cli(settings_env(dataclasses.replace(s, tls_key=other.server.key)), "ingest", timeout_s=30)
    assert done.returncode == 2
    assert "not a PEM certificate and its key" in done.stderr
    half = {k: v for k, v in settings_env(s).items() if k != "REKAP_TLS_KEY"}
    done = run_cli(half, "ingest", timeout_s=30)
    assert done.returncode == 2 and "REKAP_TLS_CERT and REKAP_TLS_KEY go together" in done.stderr
