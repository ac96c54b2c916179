"""Settings, built once per process from ``REKAP_*`` environment variables.

Every component calls :meth:`Settings.from_env` once at start-up and passes the
frozen object down; nothing deeper reads the environment. Defaults point at the
local stack that ``deploy/local/stack up`` starts (non-default ports, so it
never collides with another Kafka or Redis on the machine).

The README's configuration table lists each variable; keep the two in step.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rekap.errors import ConfigError
from rekap.redisurl import RedisTarget, mask_redis_url, parse_redis_url

PACKAGE_DATA = Path(__file__).parent / "data"
DEFAULT_REGISTRY = PACKAGE_DATA / "lagawi-fest-2022.toml"

#: What Kafka accepts as a ``group.instance.id`` (the same rule as a topic name).
_GROUP_INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,249}")
#: Kafka's default group.min.session.timeout.ms. Below it the broker refuses the join
#: (InvalidSessionTimeout) and the worker idles with no partitions, logging one error.
MIN_SESSION_TIMEOUT_S = 6.0
#: Faust refuses a session timeout above its broker request timeout (90 s, kept).
MAX_SESSION_TIMEOUT_S = 90.0
#: Upper bound of the derived heartbeat interval: a surviving worker learns of a
#: rebalance (another worker left or joined) only from its next heartbeat's reply.
MAX_HEARTBEAT_INTERVAL_S = 3.0


#: Fields whose whole value is a secret: never in ``repr`` (``field(repr=False)``) nor in
#: :meth:`Settings.describe`, which shows only whether they are set.
_SECRETS = ("booth_token", "channel_token", "milestones_webhook_secret")


@dataclass(frozen=True)
class Settings:
    """Typed, frozen settings. Field ``x`` is read from ``REKAP_X``."""

    #: Kafka bootstrap servers, comma separated.
    kafka_bootstrap: str = "127.0.0.1:19092"
    #: Redis URL; a password goes in the URL (``redis://:secret@host:port/0``). Also
    #: ``redis+cluster://h1:p1,h2:p2/0`` and ``redis+sentinel://s1:p1,s2:p2/<service>/<db>``
    #: (rekap.redisurl).
    redis_url: str = field(default="redis://127.0.0.1:16379/0", repr=False)
    #: Every Redis key rekap writes starts with this prefix.
    redis_prefix: str = "rekap"

    #: The ledger: every sale and refund, key = ikm_id, infinite retention.
    topic_sales: str = "rekap.sales.v1"
    #: Records that failed validation, with their original bytes and a reason.
    topic_dead_letter: str = "rekap.sales.dead-letter.v1"
    #: Compacted absolute totals per ``event_id/ikm_id``.
    topic_totals_ikm: str = "rekap.totals.ikm.v1"
    #: Compacted absolute totals per ``event_id``.
    topic_totals_event: str = "rekap.totals.event.v1"
    #: Compacted milestone announcements of ``rekap milestones``, key
    #: ``<event>/<ikm or *>/<threshold>``: the record is the announcement (consumers.milestones).
    topic_milestones: str = "rekap.milestones.v1"
    #: Partitions of the sales topic; the unit of parallelism of the worker.
    sales_partitions: int = 6
    #: Replication factor of every topic rekap creates; 0 = what the cluster can hold:
    #: min(3, brokers), so 1 on a single broker and 3 on three or more (rekap.topics).
    replication_factor: int = 0
    #: ``min.insync.replicas`` of every topic rekap creates; 0 = 2 when the replication
    #: factor is 3 or more, else 1. With the producers' acks=all, a write is acknowledged
    #: only once this many replicas have it, so one broker may die without losing it.
    min_insync_replicas: int = 0

    #: Faust application id, which is also the Kafka consumer group.
    app_id: str = "rekap"
    #: Kafka consumer-group session timeout: a worker that sends no heartbeat for this long
    #: (SIGKILL, power cut, frozen VM) is dropped and its partitions reassigned. A worker
    #: restarted after a kill waits out its dead predecessor's session before it gets
    #: partitions, so this bounds the venue screen's freeze (measured: 7.8-8.0 s from the
    #: restart to the first sale counted, on 2 busy cores; Faust's default 60 s gave 59.8 s).
    #: 8 s, not the broker's 6 s floor: a heartbeat is every 2.7 s, so an event loop
    #: stalled for 5 s still keeps its partitions.
    session_timeout_s: float = 8.0
    #: Static group membership (Kafka ``group.instance.id``), empty = off. Must be unique per
    #: worker. A worker restarted with the same id takes its partitions back at once, with no
    #: rebalance; but a clean shutdown then does not leave the group either, so its
    #: partitions wait for the session timeout unless the same id comes back.
    group_instance_id: str = ""
    #: Registry of events, IKM and booths (TOML).
    registry_path: Path = DEFAULT_REGISTRY
    #: Optional TOML file with booth and channel token hashes, kept out of the registry
    #: (producers.tokens). Without it ingest refuses every request.
    booth_tokens_path: Path | None = None

    host: str = "127.0.0.1"
    #: The worker's web server: read API, venue page, /metrics.
    worker_port: int = 16066
    #: The booth/channel ingest HTTP service.
    ingest_port: int = 16067
    #: The leaderboard exporter (/metrics with the top-K gauges).
    exporter_port: int = 16068
    #: TLS for ingest and the worker's web port: a PEM certificate (chain) and its key. Both
    #: or neither; with both, they serve HTTPS only (rekap.tls). ``rekap tls init`` makes a
    #: local CA and a certificate for demos.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: A PEM CA bundle rekap's own HTTP clients (booth sync, imports, the simulator) trust
    #: instead of the system's; empty: the system's CAs.
    tls_ca: Path | None = None

    #: Largest batch the worker applies at once: it takes whatever has arrived, up to this
    #: many records, and never waits for more (streams.consume).
    batch_max: int = 1000
    #: Seconds between the worker's checks that Redis still holds the offset fences it saw: how
    #: soon a Redis that lost writes is noticed while no sale arrives (streams.progress).
    progress_check_s: float = 1.0
    #: Seconds between the worker's settle passes of the totals topics: how long the compacted
    #: tail of a key may lag behind Redis after its last change when several workers publish it
    #: (streams.totals.Settler). 0 turns the pass off, which is safe only with a single worker.
    totals_settle_s: float = 1.0
    #: Per-IKM metric series are exported only for the top K of each event.
    leaderboard_top_k: int = 10
    #: Largest request body ingest accepts, in bytes.
    max_body_bytes: int = 1_048_576
    #: Ingest's rate limits (producers.ingest.limits), 0 = off. Per token: requests/s and
    #: burst. A booth syncs its backlog in batches (one request each) and a channel posts a
    #: webhook per order, so neither comes near 1,000/s; the load benchmark's 64 clients
    #: over 6 booth tokens post ~250/s per token at the 1,500/s target.
    ingest_rate_per_token: float = 1000.0
    ingest_burst_per_token: int = 2000
    #: Requests with a bad or no token, per client address: requests/s and burst. Generous
    #: for a venue NAT where a few devices retry an old token with backoff; a client
    #: sending bad tokens in a loop is answered 429 after the burst.
    ingest_rate_per_address: float = 2.0
    ingest_burst_per_address: int = 60
    #: POST requests ingest processes at once, past which it answers 429 ``too_busy``: above
    #: the benchmark's 64 clients with room for booths; with 1 MiB bodies it also bounds
    #: the memory requests hold (256 MiB).
    ingest_max_in_flight: int = 256

    #: The booth client (``rekap booth``): this booth's id, the ingest base URL (empty:
    #: ``http(s)://<host>:<ingest_port>``, https with TLS settings) and the booth's token.
    booth_id: str = ""
    booth_url: str = ""
    booth_token: str = field(default="", repr=False)
    #: A channel's token, for ``rekap import --via ingest``.
    channel_token: str = field(default="", repr=False)
    #: The ingest base URL as booth tablets reach it, for pairing links
    #: (``rekap registry issue-token``); empty: ``http(s)://<host>:<ingest_port>``.
    public_url: str = ""

    #: ``rekap milestones``: an optional webhook each milestone is POSTed to (empty: none),
    #: signed with HMAC-SHA256 of the body under this secret (``X-Rekap-Signature``).
    milestones_webhook_url: str = ""
    milestones_webhook_secret: str = field(default="", repr=False)

    #: Where local processes keep pids, logs, data and outboxes.
    runtime_dir: Path = Path(".rekap")
    log_level: str = "info"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``REKAP_*`` variables, then apply ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"REKAP_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        values.update(overrides)
        settings = cls(**values)
        settings.check()
        return settings

    def to_env(self) -> dict[str, str]:
        """The ``REKAP_*`` variables that :meth:`from_env` reads back as these settings.

        For starting a child process (worker, CLI, benchmark) with the same settings. The
        values are unmasked, secrets included: pass them on, never print them (use
        :meth:`describe`). A field that is None is left out, so the child gets its default.
        """
        return {f"REKAP_{f.name.upper()}": str(value) for f in fields(self)
                if (value := getattr(self, f.name)) is not None}

    def check(self) -> None:
        """Reject settings that cannot work, naming the variable to fix."""
        positive = ("sales_partitions", "batch_max", "leaderboard_top_k", "max_body_bytes")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"REKAP_{name.upper()} must be at least 1")
        self._check_ingest_limits()
        for name in ("replication_factor", "min_insync_replicas"):
            if getattr(self, name) < 0:
                raise ConfigError(f"REKAP_{name.upper()} must be 0 (auto) or a replica count")
        if 0 < self.replication_factor < self.min_insync_replicas:
            raise ConfigError("REKAP_MIN_INSYNC_REPLICAS cannot exceed REKAP_REPLICATION_FACTOR")
        if self.progress_check_s <= 0:
            raise ConfigError("REKAP_PROGRESS_CHECK_S must be a positive number of seconds")
        if self.totals_settle_s < 0:
            raise ConfigError("REKAP_TOTALS_SETTLE_S must be 0 (off) or a positive number of seconds")
        if not MIN_SESSION_TIMEOUT_S <= self.session_timeout_s <= MAX_SESSION_TIMEOUT_S:
            raise ConfigError(
                f"REKAP_SESSION_TIMEOUT_S must be between {MIN_SESSION_TIMEOUT_S:g} (Kafka's default "
                f"group.min.session.timeout.ms) and {MAX_SESSION_TIMEOUT_S:g} seconds (Faust's "
                "request timeout)")
        if self.group_instance_id and (
                not _GROUP_INSTANCE_ID.fullmatch(self.group_instance_id)
                or self.group_instance_id in {".", ".."}):
            raise ConfigError("REKAP_GROUP_INSTANCE_ID must be empty (off) or up to 249 of "
                              "A-Z a-z 0-9 . _ - (and not '.' or '..'), unique per worker")
        if not self.redis_prefix or any(c in self.redis_prefix for c in "{} "):
            raise ConfigError("REKAP_REDIS_PREFIX must be non-empty, without braces or spaces")
        parse_redis_url(self.redis_url)

    def _check_ingest_limits(self) -> None:
        for name in ("ingest_rate_per_token", "ingest_burst_per_token", "ingest_rate_per_address",
                     "ingest_burst_per_address", "ingest_max_in_flight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"REKAP_{name.upper()} must be 0 (no limit) or positive")

    @property
    def heartbeat_interval_s(self) -> float:
        """Consumer heartbeat interval: a third of the session timeout, at most 3 s.

        Three heartbeats per session means one late or lost heartbeat never costs a
        worker its partitions.
        """
        return min(MAX_HEARTBEAT_INTERVAL_S, self.session_timeout_s / 3)

    @property
    def redis_url_masked(self) -> str:
        return mask_redis_url(self.redis_url)

    @property
    def redis_target(self) -> RedisTarget:
        """``redis_url`` parsed: single node, Redis Cluster or Sentinel (rekap.redisurl)."""
        return parse_redis_url(self.redis_url)

    def describe(self) -> dict[str, str]:
        """All settings as strings, secrets masked: safe to print or log."""
        out = {f.name: str(getattr(self, f.name)) for f in fields(self)}
        out["redis_url"] = self.redis_url_masked
        for name in _SECRETS:
            out[name] = "***" if getattr(self, name) else ""
        return out


def _convert(name: str, annotation: Any, raw: str) -> Any:
    kind = str(annotation)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if "Path" in kind:
            return Path(raw)
    except ValueError as exc:
        raise ConfigError(f"REKAP_{name.upper()}={raw!r} is not a valid {kind}") from exc
    return raw
