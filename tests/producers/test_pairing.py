"""One-time pairing codes (producers.pairing), the booth app's routes, and the command
that prints the pairing link and QR code."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from producers import pairing
from producers.ingest.boothapp import ASSETS, STATIC
from producers.tokens import issue_token
from rekap.registry import load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from tests.producers.conftest import Ingest, start_ingest, with_tokens
from tests.support.env import run_cli, settings_env

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
TOKEN = "rkp_" + "x" * 43


# -- the store ----------------------------------------------------------------------------

def test_a_code_gives_its_token_exactly_once(tmp_path: Path) -> None:
    store = tmp_path / "tokens.toml.pairing.json"
    code = pairing.create_code(store, "kokas-01", TOKEN, now=T0)
    assert pairing.CODE_PATTERN.match(code) and len(code) >= 22  # 144 random bits
    assert pairing.redeem(store, code, now=T0 + timedelta(minutes=1)) == \
        pairing.Paired("kokas-01", TOKEN)
    again = pairing.redeem(store, code, now=T0 + timedelta(minutes=2))
    assert again == pairing.Refusal("code_used", again.detail) and again.http == 410  # type: ignore[union-attr]


def test_the_store_never_holds_a_usable_token(tmp_path: Path) -> None:
    store = tmp_path / "p.json"
    code = pairing.create_code(store, "kokas-01", TOKEN, now=T0)
    text = store.read_text()
    assert TOKEN not in text and code not in text and TOKEN[4:20] not in text
    assert pairing.code_hash(code) in text
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    pairing.redeem(store, code, now=T0)
    assert "ciphertext" not in store.read_text()  # spent: nothing left to decrypt


def test_unknown_expired_and_tampered_codes_are_refused(tmp_path: Path) -> None:
    store = tmp_path / "p.json"
    assert pairing.redeem(store, "A" * 24, now=T0).http == 404  # type: ignore[union-attr]
    code = pairing.create_code(store, "kokas-01", TOKEN, ttl=timedelta(minutes=15), now=T0)
    late = pairing.redeem(store, code, now=T0 + timedelta(minutes=15))
    assert isinstance(late, pairing.Refusal) and late.reason == "code_expired" and late.http == 410
    still = pairing.redeem(store, code, now=T0 + timedelta(minutes=16))
    assert isinstance(still, pairing.Refusal) and still.reason == "code_expired"

    code = pairing.create_code(store, "kokas-02", TOKEN, now=T0)
    doc = json.loads(store.read_text())
    doc["codes"][pairing.code_hash(code)]["booth_id"] = "kokas-03"  # moved to another booth
    store.write_text(json.dumps(doc))
    moved = pairing.redeem(store, code, now=T0)
    assert isinstance(moved, pairing.Refusal) and moved.reason == "unknown_code"


def test_a_new_code_for_a_booth_retires_its_older_one(tmp_path: Path) -> None:
    store = tmp_path / "p.json"
    old = pairing.create_code(store, "kokas-01", TOKEN, now=T0)
    other = pairing.create_code(store, "kokas-02", TOKEN + "2", now=T0)
    new = pairing.create_code(store, "kokas-01", TOKEN + "1", now=T0 + timedelta(minutes=1))
    refused = pairing.redeem(store, old, now=T0 + timedelta(minutes=2))
    assert isinstance(refused, pairing.Refusal) and refused.reason == "code_expired"
    later = T0 + timedelta(minutes=2)
    assert pairing.redeem(store, new, now=later) == pairing.Paired("kokas-01", TOKEN + "1")
    assert pairing.redeem(store, other, now=later) == pairing.Paired("kokas-02", TOKEN + "2")


def test_spent_entries_are_forgotten_after_a_day(tmp_path: Path) -> None:
    store = tmp_path / "p.json"
    code = pairing.create_code(store, "kokas-01", TOKEN, now=T0)
    pairing.create_code(store, "kokas-02", TOKEN, now=T0 + timedelta(days=2))
    assert pairing.code_hash(code) not in store.read_text()


def test_racing_redeems_hand_out_one_token(tmp_path: Path) -> None:
    store = tmp_path / "p.json"
    code = pairing.create_code(store, "kokas-01", TOKEN)
    results: list[object] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        results.append(pairing.redeem(store, code))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r for r in results if isinstance(r, pairing.Paired)] == [pairing.Paired("kokas-01", TOKEN)]
    assert sorted(r.reason for r in results if isinstance(r, pairing.Refusal)) == ["code_used"] * 7


def test_a_damaged_store_is_an_error_not_a_crash(tmp_path: Path) -> None:
    store = tmp_path / "p.json"
    store.write_text("{not json")
    with pytest.raises(pairing.PairingStoreError, match="unreadable"):
        pairing.redeem(store, "A" * 24)
    code = pairing.create_code(tmp_path / "q.json", "kokas-01", TOKEN)
    doc = json.loads((tmp_path / "q.json").read_text())
    doc["codes"][pairing.code_hash(code)]["ciphertext"] = "***"
    (tmp_path / "q.json").write_text(json.dumps(doc))
    with pytest.raises(pairing.PairingStoreError, match="damaged"):
        pairing.redeem(tmp_path / "q.json", code)


def test_pairing_link_puts_the_code_in_the_fragment() -> None:
    assert pairing.pairing_link("https://kasir.example:8443/", "abc_DEF-123456789012") == \
        "https://kasir.example:8443/booth/#pair=abc_DEF-123456789012"
    assert pairing.store_path(Path("/x/tokens.toml")) == Path("/x/tokens.toml.pairing.json")


# -- the command --------------------------------------------------------------------------

def test_issue_token_prints_token_link_and_qr(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    png = tmp_path / "qr" / "kokas-01.png"
    env = settings_env(Settings.from_env({}), REKAP_BOOTH_TOKENS_PATH=str(tokens),
                       REKAP_PUBLIC_URL="https://kasir.example:8443", REKAP_RUNTIME_DIR=str(tmp_path))
    out = run_cli(env, "registry", "issue-token", "kokas-01", "--qr-png", str(png), "--ttl-days", "3")
    assert out.returncode == 0, out.stderr
    token = out.stdout.splitlines()[1]
    link = re.search(r"^https://kasir\.example:8443/booth/#pair=([A-Za-z0-9_-]+)$", out.stdout, re.M)
    assert token.startswith("rkp_") and link, out.stdout
    assert "▀" in out.stdout or "█" in out.stdout  # the terminal QR code
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert token not in tokens.read_text() and token not in pairing.store_path(tokens).read_text()
    assert pairing.redeem(pairing.store_path(tokens), link.group(1)) == pairing.Paired("kokas-01", token)
    assert out.stderr == ""  # a public URL was given: no reachability warning

    channel = run_cli(env, "registry", "issue-token", "website")
    assert channel.returncode == 2 and "rekap tokens issue website" in channel.stderr
    unknown = run_cli(env, "registry", "issue-token", "kokas-99")
    assert unknown.returncode == 2 and "kokas-99" in unknown.stderr
    assert "website" not in tokens.read_text()  # refused before anything was written
    loopback = run_cli(env | {"REKAP_PUBLIC_URL": ""}, "registry", "issue-token", "kokas-02",
                       "--pair-ttl-minutes", "5")
    assert loopback.returncode == 0 and "/booth/#pair=" in loopback.stdout
    assert "REKAP_PUBLIC_URL" in loopback.stderr
    assert run_cli(env, "registry", "check").returncode == 0  # the kernel's command still works


# -- the app's routes ---------------------------------------------------------------------

def test_the_page_has_no_inline_code() -> None:
    """The app runs under a strict CSP: no inline script, style or handler, no eval."""
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html, re.I)
    for name in ("app.js", "sw.js"):
        js = (STATIC / name).read_text()
        assert not re.search(r"\beval\(|new Function|setTimeout\(['\"]|innerHTML|https?://", js)
    assert sorted(p.name for p in STATIC.iterdir()) == sorted(ASSETS)


@pytest.mark.integration
async def test_app_files_are_served_with_their_types(ingest: Ingest) -> None:
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        index = await client.get("/booth/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        assert "Catat penjualan" in index.text
        sw = await client.get("/booth/sw.js")
        assert sw.headers["content-type"].startswith("text/javascript")
        assert sw.headers["cache-control"] == "no-cache"
        manifest = await client.get("/booth/manifest.webmanifest")
        assert manifest.headers["content-type"].startswith("application/manifest+json")
        assert json.loads(manifest.text)["scope"] == "/booth/"
        assert (await client.get("/booth/icon.svg")).headers["content-type"] == "image/svg+xml"
        assert (await client.get("/booth/../pyproject.toml")).status_code == 404
        assert (await client.get("/booth/secret.txt")).status_code == 404
        moved = await client.get("/booth")
        assert moved.status_code == 301 and moved.headers["location"] == "/booth/"


@pytest.mark.integration
async def test_me_describes_the_booth_of_a_booth_token(ingest: Ingest) -> None:
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        me = await client.get("/v1/booth/me", headers=ingest.booth("kokas-01"))
        assert me.status_code == 200, me.text
        assert me.json() == {
            "booth_id": "kokas-01",
            "event": {"id": "lagawi-2022-kokas", "name": me.json()["event"]["name"],
                      "timezone": "Asia/Jakarta", "starts_on": "2022-06-01",
                      "ends_on": "2022-06-06", "max_sale_idr": me.json()["event"]["max_sale_idr"]},
            "ikm": [{"id": "lampung-ethnica", "name": "Lampung Ethnica"}]}
        assert me.headers["cache-control"] == "no-store"
        assert (await client.get("/v1/booth/me")).status_code == 401
        assert (await client.get("/v1/booth/me", headers={"Authorization": "Bearer rkp_nope"})
                ).status_code == 401
        channel = await client.get("/v1/booth/me", headers=ingest.channel("website"))
        assert channel.status_code == 403 and channel.json()["error"]["reason"] == "not_a_booth_token"


@pytest.mark.integration
async def test_pair_hands_out_the_token_once(ingest: Ingest) -> None:
    tokens_path = ingest.settings.booth_tokens_path
    assert tokens_path is not None
    registry = load_registry(DEFAULT_REGISTRY)
    token = issue_token(tokens_path, "kokas-02", registry)
    code = pairing.create_code(pairing.store_path(tokens_path), "kokas-02", token)
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        async def token_works(t: str) -> bool:
            return (await client.get("/v1/booth/me", headers={"Authorization": f"Bearer {t}"})
                    ).status_code == 200

        for _ in range(50):  # ingest re-reads the token file within a second
            if await token_works(token):
                break
            await asyncio.sleep(0.1)
        paired = await client.post("/v1/booth/pair", json={"code": code})
        assert paired.status_code == 200, paired.text
        assert paired.json() == {"booth_id": "kokas-02", "token": token}
        assert paired.headers["cache-control"] == "no-store"
        again = await client.post("/v1/booth/pair", json={"code": code})
        assert (again.status_code, again.json()["error"]["reason"]) == (410, "code_used")
        unknown = await client.post("/v1/booth/pair", json={"code": "B" * 24})
        assert (unknown.status_code, unknown.json()["error"]["reason"]) == (404, "unknown_code")

        # A link whose token was replaced since (`tokens issue` again) pairs nothing.
        replaced = issue_token(tokens_path, "kokas-03", registry)
        stale_code = pairing.create_code(pairing.store_path(tokens_path), "kokas-03", replaced)
        fresh = issue_token(tokens_path, "kokas-03", registry)
        for _ in range(50):
            if await token_works(fresh):
                break
            await asyncio.sleep(0.1)
        revoked = await client.post("/v1/booth/pair", json={"code": stale_code})
        assert (revoked.status_code, revoked.json()["error"]["reason"]) == (410, "token_revoked")


@pytest.mark.integration
@pytest.mark.parametrize("body", [
    b"", b"{", b"[]", b'"code"', b"null", b'{"code": 5}', b'{"code": "short"}',
    b'{"code": "has spaces in it here"}', b'{"code": "' + b"A" * 200 + b'"}',
    b'{"kode": "AAAAAAAAAAAAAAAAAAAAAAAA"}', b"\xff\xfe\x00", b"[" * 5000 + b"]" * 5000,
    b'{"code": "\\ud800AAAAAAAAAAAAAAAAAAAAAA"}', b'{"code": "' + b"A" * 5000 + b'"}',
])
async def test_malformed_pair_requests_are_400(ingest: Ingest, body: bytes) -> None:
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        resp = await client.post("/v1/booth/pair", content=body,
                                 headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["reason"] == "bad_pairing_request"


@pytest.mark.integration
async def test_a_broken_pairing_store_is_503_not_500(ingest: Ingest) -> None:
    assert ingest.settings.booth_tokens_path is not None
    pairing.store_path(ingest.settings.booth_tokens_path).write_text("{broken")
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        resp = await client.post("/v1/booth/pair", json={"code": "C" * 24})
    assert (resp.status_code, resp.json()["error"]["reason"]) == (503, "pairing_unavailable")


@pytest.mark.integration
async def test_pairing_attempts_are_rate_limited_per_address(settings: Settings, tmp_path: Path) -> None:
    s, _ = with_tokens(dataclasses.replace(settings, ingest_rate_per_address=0.01,
                                           ingest_burst_per_address=3), tmp_path / "tokens")
    runner, _app = await start_ingest(s)
    try:
        async with httpx.AsyncClient(base_url=f"http://{s.host}:{s.ingest_port}") as client:
            answers = [(await client.post("/v1/booth/pair", json={"code": "D" * 24})).status_code
                       for _ in range(4)]
            assert answers == [404, 404, 404, 429]
            limited = await client.post("/v1/booth/pair", json={"code": "D" * 24})
            assert limited.json()["error"]["reason"] == "rate_limited"
            assert int(limited.headers["Retry-After"]) >= 1
            assert (await client.get("/v1/booth/me")).status_code == 429  # same bucket
    finally:
        await runner.cleanup()
