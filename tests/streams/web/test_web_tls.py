"""The worker's web port on HTTPS: read API, venue page and /metrics of a real ``rekap worker``.

The worker gets ``REKAP_TLS_CERT``/``KEY`` from the local CA of ``rekap tls init``
(Faust's ``web_ssl_context``); a client that trusts the CA reads what the worker
applied from the real sales topic, plain HTTP and a client without the CA get nothing.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rekap.registry import Registry
from rekap.settings import Settings
from rekap.tls import client_context, init_local
from tests.streams.web.conftest import KOKAS
from tests.streams.web.e2e import exhibition_sales
from tests.support.kafka import produce_json
from tests.support.procs import wait_until
from tests.support.worker import start_worker

pytestmark = pytest.mark.integration


def fetch(url: str, context: ssl.SSLContext | None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_read_api_venue_page_and_metrics_over_https(settings: Settings, registry: Registry,
                                                     tmp_path: Path) -> None:
    made = init_local(tmp_path / "tls")
    s = dataclasses.replace(settings, tls_cert=made.server.cert, tls_key=made.server.key,
                            tls_ca=made.ca.cert)
    # Booth sales only: the exhibition is a booths-only event.
    sales = [x for x in exhibition_sales(registry) if x["channel"] == "offline"]
    produce_json(s, sales)
    worker = start_worker(s)  # ready = /healthz answered over https, verified by the CA
    try:
        assert worker.url.startswith("https://")
        ctx = client_context(s)
        board_url = f"{worker.url}/api/v1/events/{KOKAS}/leaderboard"

        def board() -> dict[str, Any]:
            status, body = fetch(board_url, ctx)
            doc = json.loads(body) if status == 200 else {}
            return doc if doc.get("count") == len(sales) else {}

        doc = wait_until(board, timeout=30, message="the leaderboard over https")
        assert [(e["ikm_id"], e["amount_idr"]) for e in doc["entries"]] == [
            (x["ikm_id"], x["amount_idr"]) for x in sales]  # largest first, as listed

        status, page = fetch(f"{worker.url}/venue/{KOKAS}", ctx)
        assert status == 200 and b"<html" in page.lower()
        status, metrics = fetch(f"{worker.url}/metrics", ctx)
        assert status == 200 and b"rekap_" in metrics

        with pytest.raises((urllib.error.URLError, ConnectionError)):
            fetch(board_url.replace("https://", "http://"), None)
        no_ca = client_context(dataclasses.replace(s, tls_ca=None))
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(board_url, no_ca)
    finally:
        worker.stop()
