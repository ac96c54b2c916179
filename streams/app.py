"""The Faust application of ``rekap worker``.

Reads top to bottom: settings → app → agent (:mod:`streams.agents`) → web views
(:mod:`streams.web`, plus ``/healthz`` here). No Faust tables: the state lives
in Redis, so ``store='memory://'`` and no changelog topics.
"""

from __future__ import annotations

from typing import Any

from rekap.settings import Settings
from rekap.tls import server_context
from streams.consume import BatchApp

#: Faust's own offset-commit interval (its default, stated). A crash replays at
#: most this much, which the offset fences absorb.
COMMIT_INTERVAL_S = 2.8
#: How long the group coordinator waits for every live worker to rejoin once a
#: rebalance starts (Faust's default, stated). A live worker rejoins only after its
#: in-flight batch is done, and a batch is retried through a Redis or Kafka outage;
#: this is how long such a worker may hold the others up before the broker drops
#: it. It does not delay a restart after SIGKILL: the dead member never rejoins and
#: is dropped when its session times out (REKAP_SESSION_TIMEOUT_S).
REBALANCE_TIMEOUT_S = 60.0


def broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def faust_options(settings: Settings) -> dict[str, Any]:
    """Faust settings of the worker that shape its consume path (also used by ``bench/``).

    The benchmark's stock-Faust baseline runs with exactly these, so the
    difference it measures is rekap's own work, not a tuning difference.
    """
    return dict(
        broker=broker_urls(settings.kafka_bootstrap),
        store="memory://",
        consumer_auto_offset_reset="earliest",
        # Our agent is the only consumer of the group; no leader topic needed
        # (and the broker does not auto-create topics).
        topic_disable_leader=True,
        # rekap creates every topic itself, with its replication and configs (rekap.topics),
        # before Faust starts; Faust would create a missing one with its own defaults.
        topic_allow_declare=False,
        broker_commit_interval=COMMIT_INTERVAL_S,
        # Faust's 60 s session would leave a worker restarted after SIGKILL idle for a
        # minute, waiting for the broker to give up on the dead one (Settings explains).
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_rebalance_timeout=REBALANCE_TIMEOUT_S,
        # None, not "": aiokafka sends LeaveGroup on a clean shutdown only without one.
        consumer_group_instance_id=settings.group_instance_id or None,
        # One fetch is one batch (streams.consume): at most this many records.
        broker_max_poll_records=settings.batch_max,
        producer_acks=-1,
        # No linger: a batch's offsets wait for its totals' acks, so lingering only adds to
        # every batch (5 ms cost about a third of the throughput, docs/PERFORMANCE.md).
        producer_linger_ms=0,
    )


def create_app(settings: Settings) -> BatchApp:
    """Build the worker app for ``settings`` (app id = consumer group = ``REKAP_APP_ID``)."""
    datadir = settings.runtime_dir.resolve() / "faust" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    ssl_context = server_context(settings)
    app = BatchApp(
        settings.app_id,
        datadir=str(datadir),
        web_enabled=True,
        web_port=settings.worker_port,
        web_bind=settings.host,
        web_host=settings.host,
        # Faust hands it to aiohttp's TCPSite: read API, venue page and /metrics on HTTPS only.
        web_ssl_context=ssl_context,
        canonical_url=f"{'https' if ssl_context else 'http'}://{settings.host}:{settings.worker_port}",
        **faust_options(settings),
    )

    from streams import agents, web

    agents.install(app, settings)
    install_health(app, settings)
    web.install(app, settings)
    return app


def health(app: Any, settings: Settings) -> dict[str, Any]:
    """Readiness: the consumer holds sales partitions and no rebalance is running."""
    try:
        assignment = app.consumer.assignment()
    except Exception:
        assignment = set()
    partitions = sorted(tp.partition for tp in assignment if tp.topic == settings.topic_sales)
    rebalancing = bool(getattr(app, "rebalancing", False))
    return {"ready": bool(partitions) and not rebalancing, "partitions": partitions,
            "rebalancing": rebalancing, "app_id": settings.app_id,
            "topic": settings.topic_sales}


def install_health(app: Any, settings: Settings) -> None:
    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        doc = health(app, settings)
        return web.json(doc, status=200 if doc["ready"] else 503)
