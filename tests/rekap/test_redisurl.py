"""REKAP_REDIS_URL: the three modes parse, bad URLs say what is wrong, passwords never print."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rekap.errors import ConfigError
from rekap.redisurl import mask_redis_url, parse_redis_url
from rekap.settings import Settings


def test_single_node_urls_go_to_redis_py_unchanged() -> None:
    for url in ("redis://127.0.0.1:16379/0", "rediss://:pw@cache.example:6380/2",
                "unix:///run/redis.sock?db=1"):
        target = parse_redis_url(url)
        assert (target.mode, target.url, target.hosts) == ("single", url, ())
    assert parse_redis_url("rediss://h:1/0").tls


def test_cluster_url_lists_every_seed() -> None:
    t = parse_redis_url("redis+cluster://:p%40ss@10.0.0.1:7000,10.0.0.2:7001,node3/")
    assert t.mode == "cluster"
    assert t.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("node3", 6379))
    assert (t.password, t.username, t.db, t.tls) == ("p@ss", None, 0, False)
    assert parse_redis_url("rediss+cluster://u:p@h:1/0").tls
    assert parse_redis_url("rediss+cluster://u:p@h:1/0").username == "u"


def test_sentinel_url_names_service_and_db() -> None:
    t = parse_redis_url("redis+sentinel://:pw@s1:26379,s2:26380/rekap/3")
    assert (t.mode, t.service, t.db, t.password) == ("sentinel", "rekap", 3, "pw")
    assert t.hosts == (("s1", 26379), ("s2", 26380))
    assert parse_redis_url("redis+sentinel://s1:1/svc").db == 0


@pytest.mark.parametrize(("url", "says"), [
    ("http://h:1/0", "must start with one of"),
    ("127.0.0.1:6379", "must start with one of"),
    ("redis+cluster:///0", "names no host"),
    ("redis+cluster://h:1/2", "only database 0"),
    ("redis+cluster://h:99999/", "not host:port"),
    ("redis+cluster://h:x/", "not host:port"),
    ("redis+sentinel://s:1/", "names no Sentinel service"),
    ("redis+sentinel://s:1/svc/x", "is not a number"),
    ("redis://:6379/0", "names no host"),
])
def test_bad_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_redis_url(url)


def test_errors_and_masked_urls_never_show_the_password() -> None:
    url = "redis+cluster://admin:hunter2@h1:1,h2:2/5"
    with pytest.raises(ConfigError) as caught:
        parse_redis_url(url)
    assert "hunter2" not in str(caught.value)
    assert mask_redis_url(url) == "redis+cluster://admin:***@h1:1,h2:2/5"
    assert mask_redis_url("redis+sentinel://:pw@s:1/x/0") == "redis+sentinel://:***@s:1/x/0"
    assert mask_redis_url("redis://h:1/0") == "redis://h:1/0"
    settings = Settings(redis_url="redis+sentinel://:hunter2@s1:1,s2:2/rekap/0")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.describe())
    assert "hunter2" not in settings.redis_target.described
    assert "hunter2" not in repr(settings.redis_target)


def test_settings_refuse_a_bad_url_at_load() -> None:
    with pytest.raises(ConfigError, match="only database 0"):
        Settings.from_env(redis_url="redis+cluster://h:1/1")


@given(st.text(max_size=80))
def test_no_string_makes_the_parser_raise_anything_but_config_error(url: str) -> None:
    mask_redis_url(url)
    try:
        target = parse_redis_url(url)
    except ConfigError:
        return
    assert target.mode in ("single", "cluster", "sentinel")

