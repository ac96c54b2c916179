"""Token scope at a real ingest: sale_id namespaces, refunds through the sale's channel,
booths-only events, revocation by editing the token file, and token expiry."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from producers.ingest.auth import (
    INVALID_TOKEN,
    TOKEN_EXPIRED,
    Principal,
    Unauthenticated,
    authorize,
    identify,
)
from producers.tokens import CHECK_EVERY_S, Tokens, hash_token, issue_token, load_tokens
from rekap.registry import Registry, load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from tests.producers.conftest import Ingest, start_ingest, with_tokens
from tests.producers.test_ingest import SAMPLES, booth_sale, topic_ids

KOKAS = "lagawi-2022-kokas"
ROOT = "lagawi-2022"
#: Integrator tokens the fixture adds to the demo tokens (every booth and channel).
INTEGRATORS = ("marketplace:tokopedia", "website:esmartikm", "virtual_expo:telkom")
EXPIRED = "marketplace:expired"
LATER = "marketplace:later"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(DEFAULT_REGISTRY)


@pytest.fixture
async def ingest(settings: Settings, tmp_path: Path) -> AsyncIterator[Ingest]:
    """Ingest with the demo tokens plus integrator tokens, one expired and one expiring later."""
    s, tokens = with_tokens(settings, tmp_path / "tokens")
    assert s.booth_tokens_path is not None
    registry = load_registry(s.registry_path)
    now = datetime.now(UTC)
    for name in INTEGRATORS:
        tokens["channels"][name] = issue_token(s.booth_tokens_path, name, registry)
    tokens["channels"][EXPIRED] = issue_token(s.booth_tokens_path, EXPIRED, registry,
                                              expires=now - timedelta(seconds=1))
    tokens["channels"][LATER] = issue_token(s.booth_tokens_path, LATER, registry,
                                            expires=now + timedelta(days=1))
    runner, app = await start_ingest(s)
    try:
        yield Ingest(f"http://{s.host}:{s.ingest_port}", s, tokens, app)
    finally:
        await runner.cleanup()


def online(sale_id: str, channel: str = "website", n: int = 1, **changes: Any) -> dict[str, Any]:
    """A valid online sale of lampung-ethnica in the programme (not the exhibition)."""
    fields = {"channel": channel, "event_id": ROOT, "booth_id": None, "sale_id": sale_id,
              "occurred_at": "2022-04-10T10:00:00+07:00", **changes}
    return booth_sale(n, **fields)


def refund(sale_id: str, of: str, channel: str, **changes: Any) -> dict[str, Any]:
    return online(sale_id, channel, kind="refund", refund_of=of, amount_idr=1_000, quantity=0,
                  **changes)


async def post(ingest: Ingest, token: str, body: dict[str, Any], kind: str = "channel",
               route: str = "/v1/sales") -> httpx.Response:
    headers = ingest.channel(token) if kind == "channel" else ingest.booth(token)
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        return await client.post(route, json=body, headers=headers)


def reason(resp: httpx.Response) -> tuple[int, str]:
    """(HTTP status, the first item's reason, or its status when it was accepted)."""
    doc = resp.json()
    if "error" in doc:
        return resp.status_code, doc["error"]["reason"]
    item = doc["results"][0] if "results" in doc else doc["result"]
    return resp.status_code, item["error"]["reason"] if "error" in item else item["status"]


# -- hole 1: a channel token refunding a booth's or another channel's sale --------------------

@pytest.mark.integration
async def test_a_channel_token_cannot_refund_a_booth_sale(ingest: Ingest) -> None:
    booth = booth_sale()
    assert (await post(ingest, "kokas-01", booth, kind="booth")).status_code == 202
    # In the sale's own event (booths only) and, naming it from the programme, by its id.
    at_the_booth = refund("web:esmartikm:R-1", booth["sale_id"], "website", event_id=KOKAS,
                          occurred_at=booth["occurred_at"])
    from_outside = refund("web:esmartikm:R-2", booth["sale_id"], "website")
    assert reason(await post(ingest, "website", at_the_booth)) == (403, "channel_not_allowed")
    resp = await post(ingest, "website", from_outside)
    assert reason(resp) == (403, "sale_id_not_allowed")
    assert "refund_of" in resp.json()["error"]["detail"]
    assert topic_ids(ingest) == [booth["sale_id"]]


@pytest.mark.integration
async def test_a_channel_token_cannot_refund_another_channels_sale(ingest: Ingest) -> None:
    sale = online("mp:tokopedia:lampung-ethnica:INV-1", "marketplace")
    assert (await post(ingest, "marketplace", sale)).status_code == 202
    taken_back = refund("web:esmartikm:R-3", sale["sale_id"], "website")
    assert reason(await post(ingest, "website", taken_back)) == (403, "sale_id_not_allowed")
    # Nor one integrator another's, in the same channel.
    shopee = online("mp:shopee:lampung-ethnica:9", "marketplace", n=2)
    assert (await post(ingest, "marketplace", shopee)).status_code == 202
    other = refund("mp:tokopedia:lampung-ethnica:9:refund:1", shopee["sale_id"], "marketplace")
    assert reason(await post(ingest, "marketplace:tokopedia", other)) == \
        (403, "sale_id_not_allowed")
    # Its own channel may.
    own = refund(f"{sale['sale_id']}:refund:1", sale["sale_id"], "marketplace")
    assert (await post(ingest, "marketplace:tokopedia", own)).status_code == 202
    assert topic_ids(ingest) == [sale["sale_id"], shopee["sale_id"], own["sale_id"]]


# -- hole 2: a channel token posting into the booths-only exhibition -------------------------

@pytest.mark.integration
@pytest.mark.parametrize(("token", "channel", "sale_id"), [
    ("website", "website", "web:esmartikm:K-1"),
    ("marketplace:tokopedia", "marketplace", "mp:tokopedia:lampung-ethnica:K-1"),
    ("virtual_expo", "virtual_expo", "vx:telkom:K-1"),
])
async def test_a_channel_token_cannot_post_into_the_booths_only_exhibition(
        ingest: Ingest, token: str, channel: str, sale_id: str) -> None:
    sale = booth_sale(channel=channel, booth_id=None, sale_id=sale_id)
    assert sale["event_id"] == KOKAS
    resp = await post(ingest, token, sale)
    assert reason(resp) == (403, "channel_not_allowed")
    assert KOKAS in resp.json()["error"]["detail"]
    assert topic_ids(ingest) == []


# -- hole 3: predictable ids of another channel or integrator ---------------------------------

@pytest.mark.integration
@pytest.mark.parametrize(("token", "kind", "sale", "expected"), [
    ("website", "channel", online("mp:tokopedia:lampung-ethnica:INV-7"), "mp:"),
    ("website", "channel", online("vx:telkom:VX-7"), "web:"),
    ("website", "channel", online("01G4D3X2N6Q8Z5V7B9C1E3FAAA"), "web:"),
    ("website:esmartikm", "channel", online("web:other-site:7"), "web:esmartikm:"),
    ("marketplace:tokopedia", "channel",
     online("mp:shopee:lampung-ethnica:7", "marketplace"), "mp:tokopedia:"),
    ("virtual_expo:telkom", "channel", online("vx:other:7", "virtual_expo"), "vx:telkom:"),
    ("kokas-01", "booth", booth_sale(sale_id="mp:tokopedia:lampung-ethnica:INV-8"), "mp:"),
    ("kokas-01", "booth", booth_sale(sale_id="web:esmartikm:8"), "web:"),
])
async def test_a_token_posts_only_sale_ids_of_its_namespace(
        ingest: Ingest, token: str, kind: str, sale: dict[str, Any], expected: str) -> None:
    resp = await post(ingest, token, sale, kind=kind)
    assert reason(resp) == (403, "sale_id_not_allowed"), resp.text
    assert expected in resp.json()["error"]["detail"]
    assert topic_ids(ingest) == []


@pytest.mark.integration
async def test_a_booth_cannot_refund_a_channel_sale(ingest: Ingest) -> None:
    body = booth_sale(kind="refund", refund_of="mp:tokopedia:lampung-ethnica:INV-1",
                      amount_idr=1_000, quantity=0)
    assert reason(await post(ingest, "kokas-01", body, kind="booth")) == (403, "sale_id_not_allowed")


@pytest.mark.integration
async def test_tokens_post_in_their_own_namespace(ingest: Ingest) -> None:
    sales = [("website", online("web:esmartikm:1")),
             ("website:esmartikm", online("web:esmartikm:2", n=2)),
             ("marketplace", online("mp:shopee:lampung-ethnica:3", "marketplace", n=3)),
             ("marketplace:tokopedia", online("mp:tokopedia:lampung-ethnica:4", "marketplace", n=4)),
             ("virtual_expo:telkom", online("vx:telkom:5", "virtual_expo", n=5))]
    for token, sale in sales:
        resp = await post(ingest, token, sale)
        assert resp.status_code == 202, (token, resp.text)
    assert (await post(ingest, "kokas-01", booth_sale(), kind="booth")).status_code == 202
    assert topic_ids(ingest) == [s["sale_id"] for _, s in sales] + [booth_sale()["sale_id"]]


# -- hole 4: a tokopedia token posting shopee orders ---------------------------------------

@pytest.mark.integration
async def test_a_tokopedia_token_cannot_post_shopee_orders(ingest: Ingest) -> None:
    paid = json.loads((SAMPLES / "marketplace-paid.json").read_text())
    shopee = {**paid, "marketplace": "shopee", "order_id": "220321000001"}
    route = "/v1/channels/marketplace/webhook"
    resp = await post(ingest, "marketplace:tokopedia", shopee, route=route)
    assert resp.status_code == 403, resp.text
    assert resp.json()["results"][0]["error"]["reason"] == "sale_id_not_allowed"
    as_sale = online("mp:shopee:lampung-ethnica:220321000002", "marketplace")
    assert reason(await post(ingest, "marketplace:tokopedia", as_sale)) == \
        (403, "sale_id_not_allowed")
    assert topic_ids(ingest) == []
    ok = await post(ingest, "marketplace:tokopedia", paid, route=route)
    assert ok.status_code == 202, ok.text
    assert topic_ids(ingest) == ["mp:tokopedia:lampung-ethnica:INV-20220321-0001"]


# -- hole 5: editing the token file revokes booth and channel tokens alike --------------------

@pytest.mark.integration
async def test_editing_out_an_entry_revokes_booth_and_channel_tokens_alike(
        ingest: Ingest, registry: Registry) -> None:
    path = ingest.settings.booth_tokens_path
    assert path is not None

    async def statuses() -> tuple[int, ...]:
        async with httpx.AsyncClient(base_url=ingest.url) as client:
            out = []
            for n, (kind, name) in enumerate([("booth", "kokas-01"), ("channel", "website"),
                                              ("booth", "kokas-02"), ("channel", "marketplace")]):
                if kind == "booth":
                    ikm = next(iter(registry.booths[name].ikm))
                    body = booth_sale(n, booth_id=None, ikm_id=ikm)
                    headers = ingest.booth(name)
                else:
                    prefix = {"website": "web", "marketplace": "mp"}[name]
                    body = online(f"{prefix}:x:{n}", name, n)
                    headers = ingest.channel(name)
                out.append((await client.post("/v1/sales", json=body, headers=headers)).status_code)
            return tuple(out)

    assert await statuses() == (202, 202, 202, 202)
    # An operator edits the file: the kokas-01 and website lines go, the rest stays.
    kept = [line for line in path.read_text().splitlines()
            if not line.startswith(('"kokas-01" =', '"website" ='))]
    tmp = path.with_suffix(".edit")
    tmp.write_text("\n".join(kept) + "\n")
    tmp.replace(path)
    deadline = time.monotonic() + 3 * CHECK_EVERY_S + 2
    got = await statuses()
    while got != (401, 401, 202, 202) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        got = await statuses()
    assert got == (401, 401, 202, 202)


# -- hole 6: expiry ---------------------------------------------------------------------------

@pytest.mark.integration
async def test_an_expired_token_is_refused_and_one_expiring_later_works(ingest: Ingest) -> None:
    expired = await post(ingest, EXPIRED, online("mp:expired:lampung-ethnica:1", "marketplace"))
    assert reason(expired) == (401, "unauthorized")
    later = await post(ingest, LATER, online("mp:later:lampung-ethnica:1", "marketplace"))
    assert later.status_code == 202, later.text


def test_an_expired_token_says_so_and_an_unknown_one_does_not(
        tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "tokens.toml"
    until = datetime(2022, 6, 6, 22, 0, tzinfo=UTC)
    booth = issue_token(path, "kokas-01", registry, expires=until)
    channel = issue_token(path, "website:esmartikm", registry, expires=until)
    tokens = load_tokens(path)
    before, after = until - timedelta(seconds=1), until
    for token, kind in ((booth, "booth"), (channel, "channel")):
        found = identify(token, registry, tokens, now=before)
        assert isinstance(found, Principal) and found.kind == kind
        assert identify(token, registry, tokens, now=after) == Unauthenticated(TOKEN_EXPIRED)
    assert identify("rkp_unknown", registry, tokens, now=before) == Unauthenticated(INVALID_TOKEN)
    assert identify(None, registry, tokens) == Unauthenticated(INVALID_TOKEN)


def test_the_table_form_round_trips_and_plain_entries_stay_plain(
        tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "tokens.toml"
    until = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    plain = issue_token(path, "kokas-02", registry)
    timed = issue_token(path, "kokas-01", registry, expires=until)
    timed_channel = issue_token(path, "website", registry,
                                expires=datetime(2026, 1, 2, 3, 4, 5,
                                                 tzinfo=datetime.fromisoformat(
                                                     "2026-01-01T00:00:00+07:00").tzinfo))
    text = path.read_text()
    assert f'"kokas-02" = "{hash_token(plain)}"' in text
    assert f'"kokas-01" = {{ sha256 = "{hash_token(timed)}", expires = ' in text
    # Another write (a merge) keeps every entry, expiry included.
    issue_token(path, "marketplace", registry)
    tokens = load_tokens(path)
    assert tokens.owner(plain) == ("booth", "kokas-02")
    assert tokens.owner(timed) == ("booth", "kokas-01")
    assert tokens.expires == {
        ("booth", "kokas-01"): until,
        ("channel", "website"): datetime.fromisoformat("2026-01-02T03:04:05+07:00")}
    assert tokens.owner(timed_channel) == ("channel", "website")
    assert ("booth", "kokas-02") not in tokens.expires


def test_an_expiry_without_an_offset_is_refused(tmp_path: Path, registry: Registry,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from rekap.errors import ConfigError

    with pytest.raises(ConfigError, match="offset"):
        issue_token(tmp_path / "t.toml", "kokas-01", registry, expires=datetime(2026, 1, 1))
    path = tmp_path / "hand.toml"
    good = hash_token("t")
    path.write_text(f'[booths]\n"kokas-01" = {{ sha256 = "{good}", expires = 2026-01-01T00:00:00 }}\n'
                    f'"kokas-02" = {{ sha256 = "{good}", expires = 2026-01-01T00:00:00Z }}\n')
    tokens = load_tokens(path)
    # A token whose end is unclear is not granted at all (fail closed).
    assert dict(tokens.booths) == {"kokas-02": good}
    assert "kokas-01" in caplog.text


def test_rekap_tokens_issue_takes_an_expiry(tmp_path: Path) -> None:
    from tests.support.env import run_cli, settings_env

    settings = Settings.from_env(runtime_dir=tmp_path / "runtime", booth_tokens_path=tmp_path / "t.toml")
    proc = run_cli(settings_env(settings), "tokens", "issue", "website:esmartikm",
                   "--expires", "2022-06-06T22:00:00+07:00")
    assert proc.returncode == 0, proc.stderr
    tokens = load_tokens(tmp_path / "t.toml")
    assert tokens.owner(proc.stdout.strip()) == ("channel", "website:esmartikm")
    assert tokens.expired("channel", "website:esmartikm")
    proc = run_cli(settings_env(settings), "tokens", "issue", "website", "--expires", "2026-01-01")
    assert proc.returncode == 2 and "offset" in proc.stderr


# -- authorize on its own (no I/O) ------------------------------------------------------------

def principal(name: str, registry: Registry) -> Principal:
    tokens = Tokens(channels={name: hash_token(name)})
    found = identify(name, registry, tokens)
    assert isinstance(found, Principal)
    return found


def test_an_event_that_lists_channels_closes_to_the_others(registry: Registry) -> None:
    assert registry.events[KOKAS].channels == frozenset({"offline"})
    web = principal("website", registry)
    assert web.namespace == "web:" and KOKAS in web.closed_events and ROOT not in web.closed_events
    assert principal("marketplace:tokopedia", registry).namespace == "mp:tokopedia:"
    denial = authorize(web, online("web:esmartikm:1", event_id=KOKAS))
    assert denial is not None and denial.reason == "channel_not_allowed"
    assert authorize(web, online("web:esmartikm:1")) is None
    opened = dataclasses.replace(web, closed_events=frozenset())
    assert authorize(opened, online("web:esmartikm:1", event_id=KOKAS)) is None
