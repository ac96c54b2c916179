"""Kafka goes away under ingest: 503, nothing partial, and the client's retries land every sale once.

Runs its own private broker (``deploy/local/stack`` with a separate runtime dir
and ports) because it stops it; the session's shared broker is never touched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from producers.booth.client import sync
from producers.booth.outbox import Outbox
from rekap.settings import Settings
from rekap.topics import ensure_topics
from tests.conftest import REPO
from tests.producers.conftest import with_tokens
from tests.producers.test_booth import fill
from tests.support.env import clean_env, settings_env
from tests.support.kafka import read_all
from tests.support.procs import Child, free_port

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

STACK = REPO / "deploy" / "local" / "stack"


@dataclasses.dataclass
class PrivateStack:
    env: dict[str, str]
    bootstrap: str

    def run(self, *args: str) -> None:
        done = subprocess.run([str(STACK), *args], env=self.env, capture_output=True, text=True,
                              timeout=240)
        assert done.returncode == 0, f"stack {' '.join(args)}: {done.stdout}\n{done.stderr}"


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[PrivateStack]:
    kafka_port = free_port()
    env = clean_env(REKAP_RUNTIME_DIR=str(tmp_path / "stack"), REKAP_KAFKA_PORT=str(kafka_port),
                    REKAP_KAFKA_CONTROLLER_PORT=str(free_port()), REKAP_REDIS_PORT=str(free_port()),
                    REKAP_STACK_PROMETHEUS="0")
    assert env["REKAP_KAFKA_PORT"] != "19092" and env["REKAP_REDIS_PORT"] != "16379"
    stack = PrivateStack(env, f"127.0.0.1:{kafka_port}")
    stack.run("up")
    try:
        yield stack
    finally:
        stack.run("down", "--purge")


def topic_ids(settings: Settings) -> list[str]:
    return [json.loads(r.value)["sale_id"] for r in read_all(settings, settings.topic_sales)]


async def test_kafka_outage_answers_503_then_retries_land_exactly_once(
        private_stack: PrivateStack, settings: Settings, tmp_path: Path) -> None:
    s = dataclasses.replace(settings, kafka_bootstrap=private_stack.bootstrap)
    ensure_topics(s)
    s, tokens = with_tokens(s, tmp_path / "tokens")
    # ingest runs as its own process: kafka-python leaks the socket of every connect refused
    # during the outage (3.0.12), which must not fail this test session's warning checks.
    ingest = Child([sys.executable, "-m", "rekap.cli", "ingest", "--ack-timeout", "4"],
                   log_path=tmp_path / "ingest.log", env=settings_env(s), name="ingest")
    url = f"http://{s.host}:{s.ingest_port}"
    await asyncio.to_thread(ingest.wait_ready, lambda: _healthy(url), 30, "/healthz answered")
    headers = {"Authorization": f"Bearer {tokens['booths']['kokas-01']}"}
    from rekap.registry import load_registry

    registry = load_registry(s.registry_path)
    outbox = Outbox(tmp_path / "booth.sqlite3")
    try:
        sales = fill(outbox, registry, 30)
        before = sales[:10]
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            ok = await client.post("/v1/sales", json={"sales": before}, headers=headers)
            assert ok.status_code == 202, ok.text
            outbox.mark_sent(x["sale_id"] for x in before)

            await asyncio.to_thread(private_stack.run, "down")  # the outage
            during = sales[10:20]
            first = await client.post("/v1/sales", json={"sales": during}, headers=headers)
            second = await client.post("/v1/sales", json={"sales": sales[20:]}, headers=headers)
            ready = await client.get("/readyz")
        for resp in (first, second):
            assert resp.status_code == 503, resp.text
            assert resp.headers["Retry-After"].isdigit()
            assert {r["status"] for r in resp.json()["results"]} == {"unavailable"}
            assert {r["error"]["reason"] for r in resp.json()["results"]} == {"kafka_unavailable"}
        assert ready.status_code == 503

        await asyncio.to_thread(private_stack.run, "up")  # Kafka is back, same data
        await asyncio.sleep(6)  # longer than the producer's delivery timeout
        # Nothing of the refused batches was produced behind the client's back.
        assert sorted(await asyncio.to_thread(topic_ids, s)) == sorted(x["sale_id"] for x in before)

        report = await asyncio.to_thread(sync, outbox, url, tokens["booths"]["kokas-01"], batch=7)
        assert report.pending_left == 0, report
        assert outbox.counts() == {"pending": 0, "sent": 30, "rejected": 0}
        ids = await asyncio.to_thread(topic_ids, s)
        assert set(ids) == {x["sale_id"] for x in sales}
        assert len(ids) == len(set(ids)) == 30  # the client resent only what was not acknowledged
    finally:
        outbox.close()
        ingest.stop(15)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
