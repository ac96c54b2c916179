"""rekap milestones: each milestone announced once, across restarts, replays and rebuilds."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from consumers.milestones import (
    DEFAULT_THRESHOLDS_IDR,
    Notifier,
    announcement,
    crossed,
    milestone_id,
    read_milestones,
    sign,
    signature_ok,
    thresholds_for,
)
from consumers.subscriber import IkmTotals, parse_totals, read_view
from rekap.errors import ConfigError, RegistryError
from rekap.registry import build_registry, load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from tests.consumers.crafted_totals import send_totals, totals_doc
from tests.producers.test_simulate_worker import redis_view, truth_view
from tests.support.env import run_cli, settings_env
from tests.support.kafka import read_all
from tests.support.procs import free_port, wait_until
from tests.support.worker import start_worker

REGISTRY = load_registry(DEFAULT_REGISTRY)
EV = "lagawi-2022-kokas"
JUTA = 1_000_000
SECRET = "test-only-webhook-secret"


def ikm_update(ikm: str, version: int, amount: int, event: str = EV) -> IkmTotals:
    update = parse_totals(None, totals_doc(event, ikm, version, amount))
    assert isinstance(update, IkmTotals)
    return update


def test_the_notice_is_indonesian_with_registry_names() -> None:
    assert announcement(REGISTRY, EV, "askha-jaya", 100 * JUTA) == \
        "Askha Jaya menembus Rp100 juta di Pameran Lagawi Fest, Mall Kota Kasablanka"
    assert announcement(REGISTRY, "lagawi-2022", None, 1000 * JUTA) == \
        "Penjualan Harvesting BBI Lagawi Fest 2022 menembus Rp1 miliar"
    assert announcement(REGISTRY, EV, "lampung-ethnica", 10 * JUTA).startswith(
        "Lampung Ethnica menembus Rp10 juta di ")
    assert milestone_id(EV, None, 10 * JUTA) == f"{EV}/*/10000000"


def test_thresholds_default_and_per_event_in_the_registry() -> None:
    assert thresholds_for(REGISTRY, EV) == DEFAULT_THRESHOLDS_IDR == (10 * JUTA, 100 * JUTA, 1000 * JUTA)
    kokas = REGISTRY.events[EV]
    raw: dict[str, Any] = {
        "events": [{"id": "expo", "name": "Expo", "starts_on": kokas.starts_on, "ends_on": kokas.ends_on,
                    "ikm": ["a"], "milestones_idr": [50 * JUTA, 5 * JUTA]}],
        "ikm": [{"id": "a", "name": "A"}]}
    reg = build_registry(raw)
    assert thresholds_for(reg, "expo") == (5 * JUTA, 50 * JUTA)
    assert [m.threshold_idr for m in crossed(ikm_update("a", 1, 60 * JUTA, "expo"), reg, set())] == \
        [5 * JUTA, 50 * JUTA]
    for bad in ([], [0], [5, 5], ["10"], [True], 10):
        with pytest.raises(RegistryError, match="milestones_idr"):
            build_registry({**raw, "events": [{**raw["events"][0], "milestones_idr": bad}]})


def test_a_milestone_is_once_ever_even_after_a_refund_dip() -> None:
    announced: dict[str, Any] = {}
    seen = []
    for version, amount in [(1, 9 * JUTA), (2, 12 * JUTA), (3, 8 * JUTA), (4, 15 * JUTA), (5, 130 * JUTA)]:
        for m in crossed(ikm_update("askha-jaya", version, amount), REGISTRY, announced):
            announced[m.id] = m.to_record()
            seen.append((m.id, m.version, m.amount_idr))
    assert seen == [(f"{EV}/askha-jaya/10000000", 2, 12 * JUTA),
                    (f"{EV}/askha-jaya/100000000", 5, 130 * JUTA)]
    record = announced[f"{EV}/askha-jaya/100000000"]
    assert record["text"] == "Askha Jaya menembus Rp100 juta di Pameran Lagawi Fest, Mall Kota Kasablanka"
    assert (record["threshold_text"], record["scope"], record["ikm_id"]) == \
        ("Rp100 juta", "ikm", "askha-jaya")


def test_signatures() -> None:
    body = b'{"id":"x"}'
    assert sign("k", body) == "sha256=" + __import__("hmac").new(b"k", body, "sha256").hexdigest()
    assert signature_ok("k", body, sign("k", body))
    assert not signature_ok("k", body + b" ", sign("k", body))
    assert not signature_ok("other", body, sign("k", body))
    assert not signature_ok("k", body, None)


def test_the_webhook_secret_is_required_and_never_shown(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="REKAP_MILESTONES_WEBHOOK_SECRET"):
        Notifier(replace(settings, milestones_webhook_url="http://127.0.0.1:1/hook"))
    s = Settings.from_env({"REKAP_MILESTONES_WEBHOOK_SECRET": "s3cret-hook"})
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.describe())
    assert s.describe()["milestones_webhook_secret"] == "***"


# --- the webhook receiver ----------------------------------------------------------------

@dataclass
class Receiver:
    url: str = ""
    #: ids whose first request is answered 500 (a receiver having a bad moment)
    fail_first: set[str] = field(default_factory=set)
    requests: list[tuple[str, bool, bytes, int]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        mid = request.headers.get("Idempotency-Key", "")
        ok = signature_ok(SECRET, body, request.headers.get("X-Rekap-Signature"))
        status = 200 if ok else 401
        if ok and mid in self.fail_first and not any(r[0] == mid for r in self.requests):
            status = 500
        self.requests.append((mid, ok, body, status))
        return web.Response(status=status)

    def delivered(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for mid, _, _, status in self.requests:
            if status == 200:
                out[mid] += 1
        return dict(out)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rec.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


async def until(predicate: Callable[[], Any], within_s: float = 60.0, what: str = "condition") -> None:
    """Poll without blocking the loop (the receiver answers in it)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not await asyncio.to_thread(predicate):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what} not reached within {within_s}s")
        await asyncio.sleep(0.3)


def topic_keys(settings: Settings) -> list[str]:
    """Every record key on the milestones topic, repeats included (nothing is compacted yet)."""
    return [(r.key or b"").decode() for r in read_all(settings, settings.topic_milestones)]


def start_notifier(settings: Settings, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "rekap.cli", "milestones", *args], env=env,
                                stdout=fh, stderr=subprocess.STDOUT)


def ids(event: str, *pairs: tuple[str | None, int]) -> set[str]:
    return {milestone_id(event, ikm, t * JUTA) for ikm, t in pairs}


@pytest.mark.integration
@pytest.mark.reliability
async def test_exactly_once_across_kill_replay_and_rebuild(settings: Settings, receiver: Receiver,
                                                           tmp_path: Path) -> None:
    env = settings_env(settings, REKAP_MILESTONES_WEBHOOK_URL=receiver.url,
                       REKAP_MILESTONES_WEBHOOK_SECRET=SECRET)
    log = tmp_path / "notifier.log"
    receiver.fail_first = {milestone_id(EV, None, 10 * JUTA)}
    latest = {
        "askha": [totals_doc(EV, "askha-jaya", 1, 5 * JUTA), totals_doc(EV, "askha-jaya", 2, 12 * JUTA)],
        "event": [totals_doc(EV, None, 1, 12 * JUTA)],
        "lm": [totals_doc(EV, "littlemonq", 1, 3 * JUTA)],
    }
    await asyncio.to_thread(send_totals, settings, [d for docs in latest.values() for d in docs])
    want = ids(EV, ("askha-jaya", 10), (None, 10))

    # 1. announce, then SIGKILL (no shutdown: offsets maybe not committed, webhook maybe not sent)
    n1 = start_notifier(settings, env, log)
    try:
        await until(lambda: set(topic_keys(settings)) == want, what=f"{want} announced")
    finally:
        n1.kill()
        n1.wait(10)

    # 2. more sales, a duplicate; a restarted notifier announces only what is new
    phase2 = [totals_doc(EV, "askha-jaya", 2, 12 * JUTA), totals_doc(EV, "askha-jaya", 3, 150 * JUTA),
              totals_doc(EV, None, 2, 165 * JUTA), totals_doc(EV, "littlemonq", 2, 20 * JUTA)]
    await asyncio.to_thread(send_totals, settings, phase2)
    want |= ids(EV, ("askha-jaya", 100), (None, 100), ("littlemonq", 10))
    n2 = start_notifier(settings, env, log)
    try:
        await until(lambda: set(topic_keys(settings)) == want, what=f"{want} announced")
        await until(lambda: set(receiver.delivered()) == want, what="every milestone at the webhook")
    finally:
        n2.send_signal(signal.SIGTERM)
        assert n2.wait(30) == 0, log.read_text()[-3000:]

    # 3. a full replay of the totals topics announces nothing
    out = await asyncio.to_thread(run_cli, env, "milestones", "--from-beginning", "--until-end")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "milestones: 0 announced, 5 found already announced" in out.stdout, out.stdout + out.stderr[-2000:]

    # 4. a rebuild: the same totals again at higher versions, and a refund dip below Rp100 juta
    # and back; nothing is announced again
    rebuilt = [{**d, "version": d["version"] + 1000} for d in
               (totals_doc(EV, "askha-jaya", 3, 150 * JUTA), totals_doc(EV, None, 2, 165 * JUTA),
                totals_doc(EV, "littlemonq", 2, 20 * JUTA))]
    rebuilt += [totals_doc(EV, "askha-jaya", 1004, 90 * JUTA), totals_doc(EV, "askha-jaya", 1005, 120 * JUTA)]
    await asyncio.to_thread(send_totals, settings, rebuilt)
    out = await asyncio.to_thread(run_cli, env, "milestones", "--until-end")
    assert "milestones: 0 announced" in out.stdout, out.stdout + out.stderr[-2000:]
    # ... and the next real crossing still is
    await asyncio.to_thread(send_totals, settings, [totals_doc(EV, None, 1003, 1_200 * JUTA)])
    out = await asyncio.to_thread(run_cli, env, "milestones", "--until-end")
    assert "milestones: 1 announced" in out.stdout, out.stdout + out.stderr[-2000:]
    want |= ids(EV, (None, 1000))

    keys = await asyncio.to_thread(topic_keys, settings)
    assert sorted(keys) == sorted(want), "each milestone exactly once on the topic"
    records = await read_milestones(settings)
    assert records[milestone_id(EV, "askha-jaya", 100 * JUTA)]["text"] == \
        "Askha Jaya menembus Rp100 juta di Pameran Lagawi Fest, Mall Kota Kasablanka"
    assert records[milestone_id(EV, None, 1000 * JUTA)]["amount_idr"] == 1_200 * JUTA

    # the webhook: every request signed; each milestone landed; a repeat (the 5xx retried, or
    # a delivery the SIGKILL cut short) carries the same idempotency id and the same body
    assert set(receiver.delivered()) == want
    assert all(ok for _, ok, _, _ in receiver.requests)
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for mid, _, body, _ in receiver.requests:
        bodies[mid].add(body)
        assert json.loads(body)["id"] == mid
    assert all(len(b) == 1 for b in bodies.values()), bodies
    retried = [r for r in receiver.requests if r[0] == milestone_id(EV, None, 10 * JUTA)]
    assert [r[3] for r in retried][:2] == [500, 200]
    # without a crash in between, a milestone lands once
    assert receiver.delivered()[milestone_id(EV, None, 1000 * JUTA)] == 1


async def test_a_webhook_that_is_down_is_given_up_after_a_bounded_time(settings: Settings) -> None:
    port = free_port()  # nothing listens there
    s = replace(settings, milestones_webhook_url=f"http://127.0.0.1:{port}/hook",
                milestones_webhook_secret=SECRET)
    notifier = Notifier(s, webhook_give_up_s=2.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with aiohttp.ClientSession() as session:
        assert not await notifier.deliver(session, "x/*/1", b"{}")
    assert loop.time() - start < 5
    assert notifier.stats.webhook_failed == 1 and notifier.stats.webhook_retries >= 1


@pytest.mark.integration
def test_lagawi_fest_milestones_equal_the_ground_truth(settings: Settings, redis_client: Any,
                                                       tmp_path: Path) -> None:
    # No refunds: every total only grows, so "reached a milestone at some point" (what is
    # announced) and "at or above it at the end" (what the ground truth holds) are the same.
    truth_path = tmp_path / "truth.json"
    subprocess.run(
        [sys.executable, "-m", "rekap.cli", "simulate", "--seed", "11", "--scale", "0.01",
         "--refund-rate", "0", "--resend-rate", "0.05", "--bad-rate", "0.01", "--no-progress",
         "--truth", str(truth_path)],
        env=settings_env(settings), check=True, capture_output=True, timeout=120)
    truth = json.loads(truth_path.read_text())
    want_totals = truth_view(truth)

    def published() -> bool:
        view = read_view(settings)
        return all((ev := view.event(e)) is not None and ev.amount_idr == t["amount_idr"]
                   for e, t in want_totals.items())

    with start_worker(settings):
        wait_until(lambda: redis_view(redis_client, settings.redis_prefix, truth) == want_totals,
                   timeout=90, interval=0.5, message="Redis totals equal to the ground truth")
        wait_until(published, timeout=60, interval=0.5, message="the totals topics caught up")
    out = run_cli(settings_env(settings), "milestones", "--until-end", timeout_s=120)
    assert out.returncode == 0, out.stderr[-3000:]

    expected = set()
    for event_id, ev in truth["events"].items():
        thresholds = thresholds_for(REGISTRY, event_id)
        expected |= {milestone_id(event_id, None, t) for t in thresholds if ev["amount_idr"] >= t}
        expected |= {milestone_id(event_id, ikm, t) for ikm, v in ev["ikm"].items()
                     for t in thresholds if v["amount_idr"] >= t}
    got = asyncio.run(read_milestones(settings))
    assert len(expected) > 20
    assert set(got) == expected
    assert sorted(topic_keys(settings)) == sorted(expected)
    assert f"milestones: {len(expected)} announced" in out.stdout
