"""The booth client: SQLite outbox, sync against real ingest, SIGKILL in the middle of sync."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sqlite3
import sys
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis

from producers.booth.client import capture, sync
from producers.booth.outbox import Outbox
from producers.ingest.client import BOOTH_BACKOFF
from rekap.days import zone
from rekap.names import Keys
from rekap.registry import Registry, load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from tests.producers.conftest import Ingest
from tests.support.env import settings_env
from tests.support.kafka import read_all
from tests.support.procs import Child, wait_until
from tests.support.worker import start_worker

OPENING = datetime(2022, 6, 1, 10, 0, tzinfo=zone("Asia/Jakarta"))


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(DEFAULT_REGISTRY)


def fill(outbox: Outbox, registry: Registry, n: int, booth: str = "kokas-01",
         ikm: str = "lampung-ethnica") -> list[dict]:
    sales = [capture(registry, booth, ikm=ikm, amount=10_000 + 500 * i, quantity=1 + i % 3,
                     now=OPENING + timedelta(minutes=2 * i)) for i in range(n)]
    for s in sales:
        assert outbox.record(s)
    return sales


def test_capture_mints_a_ulid_and_a_wib_timestamp(registry: Registry) -> None:
    a = capture(registry, "kokas-01", ikm="lampung-ethnica", amount=125_000)
    b = capture(registry, "kokas-01", ikm="lampung-ethnica", amount=125_000)
    assert a["sale_id"] != b["sale_id"] and len(a["sale_id"]) == 26
    assert a["occurred_at"].endswith("+07:00")
    assert (a["event_id"], a["channel"], a["booth_id"]) == ("lagawi-2022-kokas", "offline", "kokas-01")


def test_outbox_is_wal_and_a_sale_is_stored_once(tmp_path: Path, registry: Registry) -> None:
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        (sale,) = fill(outbox, registry, 1)
        assert outbox.record(sale) is False
        assert outbox.counts() == {"pending": 1, "sent": 0, "rejected": 0}
        outbox.mark_rejected([(sale["sale_id"], "unknown_ikm", "x")])
        outbox.mark_sent([sale["sale_id"]])  # a late ack never flips a settled sale
        assert outbox.counts()["rejected"] == 1
    db = sqlite3.connect(tmp_path / "o.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_backoff_is_capped_full_jitter() -> None:
    rng = random.Random(1)
    waits = [BOOTH_BACKOFF.wait_s(a, rng) for a in range(20)]
    assert all(0 <= w <= 30 for w in waits)
    assert max(waits[:2]) <= 1.0


@pytest.mark.integration
async def test_sync_marks_sent_and_rejected_and_retries_nothing_settled(
        ingest: Ingest, tmp_path: Path, registry: Registry) -> None:
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        good = fill(outbox, registry, 12)
        foreign = capture(registry, "kokas-01", ikm="littlemonq", amount=5_000, now=OPENING)
        outbox.record(foreign)
        token = ingest.tokens["booths"]["kokas-01"]
        report = await asyncio.to_thread(sync, outbox, ingest.url, token, batch=5)
        assert (report.sent, report.rejected, report.pending_left) == (12, 1, 0)
        assert outbox.rejected() == [(foreign["sale_id"], "booth_not_allowed", outbox.rejected()[0][2])]
        again = await asyncio.to_thread(sync, outbox, ingest.url, token)
        assert again.requests == 0
    ids = [json.loads(r.value)["sale_id"] for r in read_all(ingest.settings, ingest.settings.topic_sales)]
    assert sorted(ids) == sorted(s["sale_id"] for s in good)


@pytest.mark.integration
async def test_sync_with_ingest_down_keeps_sales_pending(tmp_path: Path, registry: Registry,
                                                        settings: Settings) -> None:
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        fill(outbox, registry, 3)
        report = await asyncio.to_thread(
            sync, outbox, f"http://127.0.0.1:{settings.ingest_port}", "t", max_attempts=3,
            sleep=lambda s: None)
        assert report.pending_left == 3 and report.retries == 3
        assert outbox.counts()["sent"] == 0


@pytest.mark.integration
@pytest.mark.reliability
async def test_booth_sync_killed_mid_way_loses_and_duplicates_nothing(
        ingest: Ingest, tmp_path: Path, registry: Registry, redis_client: redis.Redis) -> None:
    settings = ingest.settings
    path = tmp_path / "booth.sqlite3"
    with Outbox(path) as outbox:
        sales = fill(outbox, registry, 240)
    env = settings_env(settings, REKAP_BOOTH_ID="kokas-01", REKAP_BOOTH_URL=ingest.url,
                       REKAP_BOOTH_TOKEN=ingest.tokens["booths"]["kokas-01"])
    cmd = [sys.executable, "-m", "rekap.cli", "booth", "sync", "--outbox", str(path), "--batch", "3"]
    kill_after = random.randrange(10, 200)
    with (Child(cmd, log_path=tmp_path / "sync.log", env=env, name="booth sync") as sync_proc,
          Outbox(path) as watch):
        for _ in range(600):
            if watch.counts()["sent"] >= kill_after or sync_proc.proc.poll() is not None:
                break
            await asyncio.sleep(0.02)
        status = sync_proc.kill()
        killed_at = watch.counts()
    assert status == -signal.SIGKILL, "sync finished before the kill: make it slower"
    assert 0 < killed_at["sent"] < 240 and killed_at["pending"] > 0
    rerun = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(rerun.communicate(), 120)
    assert rerun.returncode == 0, err.decode()
    with Outbox(path) as outbox:
        assert outbox.counts() == {"pending": 0, "sent": 240, "rejected": 0}
    ids = [json.loads(r.value)["sale_id"] for r in read_all(settings, settings.topic_sales)]
    assert set(ids) == {s["sale_id"] for s in sales}  # on the wire: all, maybe some twice

    keys = Keys(settings.redis_prefix)
    want = {"amount_idr": sum(s["amount_idr"] for s in sales), "count": 240}

    def totals() -> dict[str, int]:
        h = redis_client.hgetall(keys.event_totals("lagawi-2022", "lagawi-2022-kokas"))
        return {f: int(h.get(f.encode(), 0)) for f in want}

    with start_worker(settings):
        await asyncio.to_thread(wait_until, lambda: totals() == want, 60, 0.3, "booth totals")
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{ingest.url}/healthz")).status_code == 200
