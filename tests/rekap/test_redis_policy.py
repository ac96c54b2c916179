"""rekap refuses a Redis that may evict keys (offset fences, sale_id de-dup), before it runs.

A throwaway ``redis-server`` (Debian's, on a free port, in a tmp dir, no persistence)
runs with ``allkeys-lru`` and CONFIG disabled, as on many managed Redis services.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from rekap.errors import ConfigError, RedisUnavailable
from rekap.redisconn import check_eviction_policy
from rekap.settings import Settings
from tests.support.env import run_cli, settings_env
from tests.support.procs import Child, free_port

PASSWORD = "throwaway-pass"  # a private server that lives for this module only


@dataclass(frozen=True)
class Server:
    port: int

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"


@pytest.fixture(scope="module")
def evicting_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run `make setup` (apt-get install redis-server)",
                    pytrace=False)
    workdir = tmp_path_factory.mktemp("evicting-redis")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--maxmemory-policy", "allkeys-lru", "--requirepass", PASSWORD,
            "--rename-command", "CONFIG", ""]
    with Child(argv, log_path=workdir / "redis.log", name="redis-server") as server:
        client = redis.Redis.from_url(Server(port).url)
        try:
            server.wait_ready(client.ping, 15, "PING answered", 0.05)
        finally:
            client.close()
        yield Server(port)


def test_an_evicting_redis_is_refused_with_the_policy_and_the_fix(evicting_redis: Server) -> None:
    client = redis.Redis.from_url(evicting_redis.url)
    try:
        with pytest.raises(redis.ResponseError):
            client.config_get("maxmemory-policy")  # CONFIG is off: INFO must be enough
        with pytest.raises(ConfigError) as err:
            check_eviction_policy(client)
    finally:
        client.close()
    message = str(err.value)
    assert "maxmemory-policy allkeys-lru" in message
    assert "maxmemory-policy noeviction" in message
    assert f"127.0.0.1:{evicting_redis.port}" in message


def test_the_message_names_the_url_without_its_password(evicting_redis: Server) -> None:
    settings = Settings.from_env({}, redis_url=evicting_redis.url)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        with pytest.raises(ConfigError, match="allkeys-lru") as err:
            check_eviction_policy(client, settings)
    finally:
        client.close()
    assert settings.redis_url_masked in str(err.value)
    assert PASSWORD not in str(err.value)


@pytest.mark.integration
def test_the_session_redis_never_evicts(redis_session: redis.Redis) -> None:
    check_eviction_policy(redis_session)  # the stack's Redis: noeviction, or no test is exact


def test_an_unreachable_redis_is_redis_unavailable() -> None:
    settings = Settings.from_env({}, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    try:
        with pytest.raises(RedisUnavailable, match="reading INFO memory"):
            check_eviction_policy(client, settings)
    finally:
        client.close()


def test_worker_exits_at_once_against_an_evicting_redis(evicting_redis: Server,
                                                        tmp_path: Path) -> None:
    # No Kafka here (a closed port): the check comes first, so the worker never needs it.
    settings = Settings.from_env({}, redis_url=evicting_redis.url,
                                 kafka_bootstrap=f"127.0.0.1:{free_port()}",
                                 runtime_dir=tmp_path / "runtime")
    out = run_cli(settings_env(settings), "worker", timeout_s=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "maxmemory-policy allkeys-lru" in out.stderr
    assert "noeviction" in out.stderr
    assert PASSWORD not in out.stdout + out.stderr
    assert not (tmp_path / "runtime" / "faust").exists(), "Faust started before the check"
