"""Tokens: one file, one reloading source for booths and channels; deleting the file revokes both."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import pytest

from producers.ingest.auth import authenticate
from producers.tokens import (
    CHECK_EVERY_S,
    TOKEN_PREFIX,
    TokenSource,
    hash_token,
    issue_demo_tokens,
    issue_token,
    load_demo_secrets,
    load_tokens,
    new_token,
    write_tokens_file,
)
from rekap.errors import ConfigError
from rekap.registry import Registry, load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from tests.producers.conftest import Ingest
from tests.producers.test_ingest import booth_sale
from tests.support.env import run_cli, settings_env


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(DEFAULT_REGISTRY)


@pytest.fixture
def demo(tmp_path: Path, registry: Registry) -> tuple[Path, dict[str, dict[str, str]]]:
    hashes, secrets = issue_demo_tokens(registry, tmp_path)
    return hashes, load_demo_secrets(secrets)


def who(source: TokenSource, registry: Registry, token: str) -> tuple[str, str] | None:
    principal = authenticate(token, registry, source.current())
    return None if principal is None else (principal.kind, principal.name)


def test_deleting_the_token_file_revokes_booth_and_channel_tokens(
        demo: tuple[Path, dict[str, dict[str, str]]], registry: Registry) -> None:
    path, tokens = demo
    clock = FakeClock()
    source = TokenSource(path, check_every_s=0.5, clock=clock)
    booth, channel = tokens["booths"]["kokas-01"], tokens["channels"]["marketplace"]
    assert who(source, registry, booth) == ("booth", "kokas-01")
    assert who(source, registry, channel) == ("channel", "marketplace")

    path.unlink()
    clock.now += 0.4  # within the check interval: no look at the file yet
    assert who(source, registry, booth) == ("booth", "kokas-01")
    clock.now += 0.2
    assert who(source, registry, booth) is None
    assert who(source, registry, channel) is None

    write_tokens_file(path, booths={"kokas-01": hash_token(booth)})  # granted again: booth only
    clock.now += 0.6
    assert who(source, registry, booth) == ("booth", "kokas-01")
    assert who(source, registry, channel) is None


def test_a_replaced_file_is_seen_even_within_one_timestamp_tick(
        tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "tokens.toml"
    old, new = "old-token", "new-token"
    write_tokens_file(path, channels={"website": hash_token(old)})
    clock = FakeClock()
    source = TokenSource(path, check_every_s=0, clock=clock)
    stamp = path.stat().st_mtime_ns
    write_tokens_file(path, channels={"website": hash_token(new)})  # replaces the entry
    os.utime(path, ns=(stamp, stamp))  # same mtime and size; only the inode tells
    assert who(source, registry, old) is None
    assert who(source, registry, new) == ("channel", "website")


def test_an_unreadable_file_grants_nothing_and_bad_entries_are_skipped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text("this is = = not toml")
    assert load_tokens(path).booths == {} and load_tokens(path).channels == {}
    good = hash_token("t")
    path.write_text(f'[booths]\n"kokas-01" = "{good}"\n"kokas-02" = "not-a-hash"\n'
                    f'[channels]\n"website" = "{good}"\n"offline" = "{good}"\n"fax" = "{good}"\n')
    tokens = load_tokens(path)
    assert dict(tokens.booths) == {"kokas-01": good}
    assert dict(tokens.channels) == {"website": good}
    assert "kokas-02" in caplog.text and "'offline'" in caplog.text and "'fax'" in caplog.text
    assert load_tokens(tmp_path / "missing.toml").booths == {}
    assert load_tokens(None).channels == {}


def test_a_booth_token_counts_only_while_the_booth_is_in_the_registry(
        tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "tokens.toml"
    write_tokens_file(path, booths={"kokas-99": hash_token("ghost"), "kokas-01": hash_token("real")})
    source = TokenSource(path)
    assert who(source, registry, "ghost") is None
    assert who(source, registry, "real") == ("booth", "kokas-01")
    assert who(source, registry, "") is None


def test_issue_token_stores_only_the_hash_and_merges(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "tokens.toml"
    booth = issue_token(path, "kokas-01", registry)
    integrator = issue_token(path, "marketplace:tokopedia", registry)
    text = path.read_text()
    assert booth not in text and integrator not in text
    tokens = load_tokens(path)
    assert tokens.owner(booth) == ("booth", "kokas-01")
    assert tokens.owner(integrator) == ("channel", "marketplace:tokopedia")
    with pytest.raises(ConfigError, match="neither a booth in the registry nor a channel"):
        issue_token(path, "kokas-99", registry)


def test_rekap_tokens_issue_prints_a_token_once(tmp_path: Path) -> None:
    settings = Settings.from_env(runtime_dir=tmp_path / "runtime", booth_tokens_path=tmp_path / "t.toml")
    proc = run_cli(settings_env(settings), "tokens", "issue", "website")
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    assert load_tokens(tmp_path / "t.toml").owner(token) == ("channel", "website")
    other = tmp_path / "other.toml"
    proc = run_cli(settings_env(settings), "tokens", "issue", "kokas-02", "--tokens-file", str(other))
    assert proc.returncode == 0, proc.stderr
    assert load_tokens(other).owner(proc.stdout.strip()) == ("booth", "kokas-02")
    proc = run_cli(settings_env(settings), "tokens", "issue", "nobody")
    assert proc.returncode == 2 and "neither a booth" in proc.stderr
    proc = run_cli(settings_env(settings), "registry", "issue-token", "website")
    assert proc.returncode == 2  # moved to `rekap tokens issue`


@pytest.mark.integration
async def test_ingest_refuses_booth_and_channel_tokens_once_the_file_is_deleted(
        ingest: Ingest) -> None:
    online = booth_sale(channel="website", event_id="lagawi-2022", booth_id=None,
                        sale_id="web:esmartikm:T-9")
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        async def statuses() -> tuple[int, int]:
            b = await client.post("/v1/sales", json=booth_sale(), headers=ingest.booth("kokas-01"))
            c = await client.post("/v1/sales", json=online, headers=ingest.channel("website"))
            return b.status_code, c.status_code

        assert await statuses() == (202, 202)
        assert ingest.settings.booth_tokens_path is not None
        ingest.settings.booth_tokens_path.unlink()
        deadline = time.monotonic() + 3 * CHECK_EVERY_S + 2
        got = await statuses()
        while got != (401, 401) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            got = await statuses()
        assert got == (401, 401)
        body = (await client.post("/v1/sales", json=booth_sale(),
                                  headers=ingest.booth("kokas-01"))).json()
    assert body["error"]["reason"] == "unauthorized", json.dumps(body)


def test_a_token_never_reads_as_a_command_line_option() -> None:
    # token_urlsafe alone starts with "-" one time in 64: `--token <it>` then fails to parse.
    tokens = {new_token() for _ in range(2000)}
    assert len(tokens) == 2000
    assert all(t.startswith(TOKEN_PREFIX) and len(t) == len(TOKEN_PREFIX) + 43 for t in tokens)
