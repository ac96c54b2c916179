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
    s = Settings.from_env({"REKAP_SALES_PARTITIONS": "12", "REKAP_BATCH_WINDOW_S": "0.5",
                           "REKAP_REGISTRY_PATH": "/tmp/r.toml", "REKAP_APP_ID": "x",
                           "REKAP_TOTALS_SETTLE_S": "0"})
    assert (s.sales_partitions, s.batch_window_s, s.registry_path, s.app_id,
            s.totals_settle_s) == (12, 0.5, Path("/tmp/r.toml"), "x", 0.0)


@pytest.mark.parametrize(("name", "value"), [
    ("REKAP_SALES_PARTITIONS", "many"), ("REKAP_SALES_PARTITIONS", "0"),
    ("REKAP_REDIS_PREFIX", "a{b}"), ("REKAP_REDIS_URL", "http://x"),
    ("REKAP_BATCH_WINDOW_S", "-1"), ("REKAP_TOTALS_SETTLE_S", "-0.5"),
])
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_secrets_never_printed() -> None:
    s = Settings.from_env({"REKAP_REDIS_URL": "redis://:s3cret@127.0.0.1:6379/0"})
    assert "s3cret" not in repr(s)
    assert "s3cret" not in str(s.describe())
    assert s.describe()["redis_url"] == "redis://:***@127.0.0.1:6379/0"
