from __future__ import annotations

from pathlib import Path

import pytest

from rekap.errors import ConfigError
from rekap.settings import Settings


def test_defaults_point_at_the_local_stack() -> None:
    s = Settings.from_env({})
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.redis_url == "redis://127.0.0.1:16379/0"
    assert s.registry_path.is_file()


def test_values_are_typed_from_the_environment() -> None:
    s = Settings.from_env({"REKAP_SALES_PARTITIONS": "12", "REKAP_BATCH_MAX": "50",
                           "REKAP_REGISTRY_PATH": "/tmp/r.toml", "REKAP_APP_ID": "x",
                           "REKAP_TOTALS_SETTLE_S": "0"})
    assert (s.sales_partitions, s.batch_max, s.registry_path, s.app_id,
            s.totals_settle_s) == (12, 50, Path("/tmp/r.toml"), "x", 0.0)


def test_to_env_is_read_back_by_from_env() -> None:
    s = Settings.from_env({}, sales_partitions=3, batch_max=10, runtime_dir=Path("/tmp/rt"),
                          booth_tokens_path=None, redis_url="redis://:s3cret@127.0.0.1:6379/0")
    env = s.to_env()
    assert env["REKAP_REDIS_URL"] == "redis://:s3cret@127.0.0.1:6379/0"  # for a child, unmasked
    assert "REKAP_BOOTH_TOKENS_PATH" not in env
    assert Settings.from_env(env) == s


@pytest.mark.parametrize(("name", "value"), [
    ("REKAP_SALES_PARTITIONS", "many"), ("REKAP_SALES_PARTITIONS", "0"),
    ("REKAP_REDIS_PREFIX", "a{b}"), ("REKAP_REDIS_URL", "http://x"),
    ("REKAP_BATCH_MAX", "-1"), ("REKAP_TOTALS_SETTLE_S", "-0.5"),
])
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_secrets_never_printed() -> None:
    s = Settings.from_env({"REKAP_REDIS_URL": "redis://:s3cret@127.0.0.1:6379/0",
                           "REKAP_BOOTH_TOKEN": "b00th-s3cret", "REKAP_CHANNEL_TOKEN": "chann3l-s3cret"})
    for text in (repr(s), str(s.describe())):
        assert "s3cret" not in text
    assert s.describe()["redis_url"] == "redis://:***@127.0.0.1:6379/0"
    assert (s.describe()["booth_token"], s.describe()["channel_token"]) == ("***", "***")
    assert Settings.from_env({}).describe()["booth_token"] == ""  # unset shows as unset


def test_booth_and_channel_client_settings_keep_their_variable_names() -> None:
    env = {"REKAP_BOOTH_ID": "kokas-01", "REKAP_BOOTH_URL": "http://ingest:16067",
           "REKAP_BOOTH_TOKEN": "t1", "REKAP_CHANNEL_TOKEN": "t2"}
    s = Settings.from_env(env)
    assert (s.booth_id, s.booth_url, s.booth_token, s.channel_token) == \
        ("kokas-01", "http://ingest:16067", "t1", "t2")
    assert s.to_env().items() >= env.items()  # a child gets them, unmasked
    assert Settings.from_env(s.to_env()) == s
