"""Helpers of the end-to-end tests: known sales, the exporter process, small HTTP reads."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rekap.registry import Registry
from rekap.settings import Settings
from tests.streams.web.conftest import KOKAS
from tests.support.env import settings_env
from tests.support.procs import Child


def sale(sale_id: str, ikm_id: str, event_id: str, amount_idr: int, *, channel: str = "website",
         registry: Registry | None = None, occurred_at: str = "2022-06-02T14:05:00+07:00",
         **extra: Any) -> dict[str, Any]:
    """A valid sale record (offline sales get the IKM's booth from ``registry``)."""
    out: dict[str, Any] = {"sale_id": sale_id, "kind": "sale", "ikm_id": ikm_id,
                           "event_id": event_id, "channel": channel, "amount_idr": amount_idr,
                           "quantity": 1, "occurred_at": occurred_at, **extra}
    if channel == "offline":
        assert registry is not None
        out["booth_id"] = next(b.id for b in registry.booths.values()
                               if b.event == event_id and ikm_id in b.ikm)
    return out


def exhibition_sales(registry: Registry) -> list[dict[str, Any]]:
    """Eight known sales at the Kasablanka exhibition: one per IKM, largest first, each from its
    booth (the exhibition takes booth sales only: its registry ``channels``).

    The stream the venue page and the Prometheus tests push through a real worker.
    """
    return [
        sale("v1", "lampung-ethnica", KOKAS, 12_500_000, channel="offline", registry=registry),
        sale("v2", "pisang-shamiya", KOKAS, 8_750_000, channel="offline", registry=registry),
        sale("v3", "littlemonq", KOKAS, 6_200_000, channel="offline", registry=registry),
        sale("v4", "rafins-snack", KOKAS, 4_125_000, channel="offline", registry=registry),
        sale("v5", "askha-jaya", KOKAS, 3_980_000, channel="offline", registry=registry),
        sale("v6", "batik-siger-nusantara", KOKAS, 2_450_000, channel="offline", registry=registry),
        sale("v7", "kopi-way-tebu", KOKAS, 1_275_000, channel="offline", registry=registry),
        sale("v8", "rengginang-bu-sari", KOKAS, 125_000, channel="offline", registry=registry,
             occurred_at="2022-06-03T19:45:00+07:00"),
    ]


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url)  # noqa: S310 - http URLs the test builds
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def get_json(url: str) -> Any:
    status, body, _ = get(url)
    if status != 200:
        raise AssertionError(f"GET {url} -> {status}: {body[:300]!r}")
    return json.loads(body)


class Exporter(Child):
    """``rekap exporter`` as a child process; :attr:`url` is its ``/metrics`` page."""

    def __init__(self, settings: Settings) -> None:
        super().__init__([sys.executable, "-m", "rekap.cli", "exporter"],
                         log_path=Path(settings.runtime_dir) / "logs" / "exporter.log",
                         env=settings_env(settings), name="exporter")
        self.url = f"http://{settings.host}:{settings.exporter_port}/metrics"


def start_exporter(settings: Settings, timeout: float = 20.0) -> Exporter:
    """``rekap exporter`` as a child process, returned once ``/metrics`` answers."""
    exporter = Exporter(settings)
    exporter.wait_ready(lambda: get(exporter.url, timeout=1)[0] == 200, timeout, "/metrics answered")
    return exporter
