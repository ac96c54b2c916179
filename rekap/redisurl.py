"""``REKAP_REDIS_URL``: which Redis deployment rekap talks to, parsed without I/O.

Three modes, one variable::

    redis://[[user]:password@]host:port/db         one server (rediss:// = TLS, unix:// too)
    redis+cluster://[[user]:password@]h1:p1,h2:p2,.../0
                                                   Redis Cluster; the hosts are seeds, the
                                                   client discovers every node (db must be 0)
    redis+sentinel://[[user]:password@]s1:p1,s2:p2,.../service/db
                                                   the primary of ``service`` that the
                                                   sentinels name; it follows a failover

``rediss+cluster://`` and ``rediss+sentinel://`` use TLS to the data nodes. In
Sentinel mode the credentials are the data nodes'; the sentinels themselves are
reached without a password. A password with URL-special characters (``@ : / %``)
must be percent-encoded. redis-py reads only the single-server schemes, and
``urlsplit`` cannot take several hosts, hence this parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import unquote, urlsplit

from rekap.errors import ConfigError

Mode = Literal["single", "cluster", "sentinel"]

_SINGLE: Final = ("redis", "rediss", "unix")
_MULTI: Final[dict[str, tuple[Mode, bool]]] = {
    "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
}
SCHEMES: Final = (*_SINGLE, *_MULTI)


@dataclass(frozen=True)
class RedisTarget:
    """A parsed ``REKAP_REDIS_URL``. ``url`` keeps the original for redis-py (single mode)."""

    mode: Mode
    url: str = field(repr=False)
    #: Cluster seeds or sentinels (empty in single mode: redis-py parses ``url``).
    hosts: tuple[tuple[str, int], ...] = ()
    #: The Sentinel service name (``sentinel monitor <service> ...``).
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @property
    def masked(self) -> str:
        """The URL with its password replaced by ``***``: safe to print and log."""
        return mask_redis_url(self.url)

    @property
    def described(self) -> str:
        """Where rekap writes, for messages: mode and masked URL."""
        if self.mode == "single":
            return self.masked
        return f"{self.masked} (Redis {'Cluster' if self.mode == 'cluster' else 'Sentinel'})"


def parse_redis_url(url: str) -> RedisTarget:
    """Parse ``url`` or raise :class:`ConfigError` saying what is wrong with it."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ConfigError(
            f"REKAP_REDIS_URL must start with one of {', '.join(s + '://' for s in SCHEMES)}; "
            f"got {mask_redis_url(url)!r}")
    if scheme in _SINGLE:
        if scheme != "unix" and not urlsplit(url).hostname:
            raise ConfigError(f"REKAP_REDIS_URL {mask_redis_url(url)!r} names no host")
        return RedisTarget("single", url, tls=scheme == "rediss")
    mode, tls = _MULTI[scheme]
    userinfo, at, location = rest.rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    netloc, _, path = location.partition("/")
    path = path.split("?", 1)[0].strip("/")
    hosts = tuple(_host_port(h, url) for h in netloc.split(",") if h)
    if not hosts:
        raise ConfigError(f"REKAP_REDIS_URL {mask_redis_url(url)!r} names no host")
    if mode == "cluster":
        if path not in ("", "0"):
            raise ConfigError(
                f"REKAP_REDIS_URL {mask_redis_url(url)!r}: Redis Cluster has only database 0")
        return RedisTarget(mode, url, hosts, "", 0, username, password, tls)
    service, _, db = path.partition("/")
    if not service:
        raise ConfigError(
            f"REKAP_REDIS_URL {mask_redis_url(url)!r} names no Sentinel service: "
            "write redis+sentinel://s1:p1,s2:p2/<service>/<db>")
    return RedisTarget(mode, url, hosts, unquote(service), _db(db or "0", url),
                       username, password, tls)


def mask_redis_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (works on multi-host URLs too)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hosts}{slash}{tail}"


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None, unquote(password) if colon else None)


def _host_port(text: str, url: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = text, "6379"
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"REKAP_REDIS_URL {mask_redis_url(url)!r}: {text!r} is not host:port")
    return host, int(port)


def _db(text: str, url: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"REKAP_REDIS_URL {mask_redis_url(url)!r}: database {text!r} is not a number")
    return int(text)
