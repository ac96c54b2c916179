"""Fixtures for the producers' tests: demo tokens and an ingest server on real HTTP."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from producers.ingest.app import create_app
from producers.tokens import issue_demo_tokens, load_demo_secrets
from rekap.registry import load_registry
from rekap.settings import Settings
from rekap.tls import server_context


@dataclasses.dataclass
class Ingest:
    url: str
    settings: Settings
    tokens: dict[str, dict[str, str]]
    app: web.Application

    def booth(self, booth_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['booths'][booth_id]}"}

    def channel(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['channels'][name]}"}


def with_tokens(settings: Settings, directory: Path) -> tuple[Settings, dict[str, dict[str, str]]]:
    """Settings whose token file holds fresh demo tokens for every booth and channel."""
    registry = load_registry(settings.registry_path)
    hashes, secrets = issue_demo_tokens(registry, directory)
    return dataclasses.replace(settings, booth_tokens_path=hashes), load_demo_secrets(secrets)


async def start_ingest(settings: Settings) -> tuple[web.AppRunner, web.Application]:
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.ingest_port,
                      ssl_context=server_context(settings)).start()
    return runner, app


@pytest.fixture
async def ingest(settings: Settings, tmp_path: Path) -> AsyncIterator[Ingest]:
    s, tokens = with_tokens(settings, tmp_path / "tokens")
    runner, app = await start_ingest(s)
    try:
        yield Ingest(f"http://{s.host}:{s.ingest_port}", s, tokens, app)
    finally:
        await runner.cleanup()
