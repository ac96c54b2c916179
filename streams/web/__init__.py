"""The worker's web surface: read API, venue page, ``/metrics`` and the consumer-lag gauge.

``streams.app`` calls :func:`install` once on the Faust app. Routes (all GET)::

    /api/v1/openapi.json                        the OpenAPI 3.1 description of what follows
    /api/v1/events                              registry events with their totals
    /api/v1/events/{event_id}/summary           total, by channel, by local day
    /api/v1/events/{event_id}/leaderboard       ?limit=N (1..1000, default 10)
    /api/v1/events/{event_id}/ikm/{ikm_id}      one IKM: totals, by channel, by day, rank
    /api/v1/events/{event_id}/snapshot          what the venue screen shows (formatted)
    /api/v1/events/{event_id}/stream            the same snapshot as server-sent events
    /venue/  /venue/{event_id}                  the venue screen (Bahasa Indonesia)
    /metrics                                    Prometheus: rekap_* and Faust's faust_*

Every handler reads Redis only, so any worker answers any request.
"""

from __future__ import annotations

import logging
from typing import Any

from rekap.contract import Reason
from rekap.settings import Settings
from streams import metrics

log = logging.getLogger(__name__)

#: Seconds between consumer-lag readings (one ListOffsets request per reading).
LAG_INTERVAL_S = 5.0
#: Prefix of Faust's own metrics. Faust defaults to the app id, which differs
#: per deployment (and per test), so dashboards could not name them.
FAUST_METRICS_PREFIX = "faust"

_installed: set[int] = set()


def install(app: Any, settings: Settings) -> None:
    """Register the worker's web views, /metrics and the lag timer on the Faust app.

    Safe to call once per app; a second call for the same app does nothing
    (Prometheus refuses to register the same metric twice in a process).
    """
    if id(app) in _installed:
        return
    _installed.add(id(app))
    from faust import web as faust_web
    from faust.sensors.prometheus import setup_prometheus_sensors
    from prometheus_client import REGISTRY

    from streams.web.views import ROUTES, WebApi, secured

    # Faust's metrics and ours share the default registry, so one page serves both.
    setup_prometheus_sensors(app, pattern="/metrics", registry=REGISTRY,
                             name_prefix=FAUST_METRICS_PREFIX)
    _init_metric_children()

    api = WebApi(settings)
    for name, path, method in ROUTES:
        app.page(path, name=name)(_page(faust_web.View, secured(getattr(api, method))))

    @app.timer(interval=LAG_INTERVAL_S, name="rekap.consumer_lag")
    async def _consumer_lag() -> None:
        await update_consumer_lag(app, settings.topic_sales)

    @app.on_before_shutdown.connect
    async def _close_web(app_: Any, **kwargs: Any) -> None:
        await api.close()


def _page(base: type, handler: Any) -> type:
    class Page(base):
        async def get(self, request: Any, **kwargs: Any) -> Any:
            return await handler(request)

    Page.__doc__ = handler.__doc__
    return Page


def _init_metric_children() -> None:
    """Create the label children whose values are known, so rates read 0 rather than nothing."""
    for cause in ("offset", "sale_id"):
        metrics.RECORDS_DUPLICATE.labels(cause=cause)
    for reason in Reason:
        metrics.RECORDS_REJECTED.labels(reason=reason.value)
    metrics.KAFKA_ERRORS.labels(operation="offsets")
    metrics.REDIS_ERRORS.labels(operation="read")


async def update_consumer_lag(app: Any, topic: str) -> None:
    """Set ``rekap_consumer_lag_records{partition}`` for the sales partitions this worker holds.

    Lag is the partition's end offset (highwater) minus the group's committed
    offset, which Faust keeps in ``Consumer._committed_offset`` (0.15.x; seeded
    from the broker on assignment, updated on each commit; ``None`` until the
    group first commits, when the earliest offset stands in). Partitions that
    moved to another worker are removed, so N workers never report one
    partition twice.
    """
    from faust.exceptions import ConsumerNotStarted

    try:
        consumer = app.consumer
        tps = sorted((tp for tp in consumer.assignment() if tp.topic == topic),
                     key=lambda tp: tp.partition)
    except (ConsumerNotStarted, AttributeError, RuntimeError):
        return  # not started, or between rebalances: try at the next tick
    try:
        highwaters = await consumer.highwaters(*tps) if tps else {}
        committed_map = getattr(consumer, "_committed_offset", {})
        missing = [tp for tp in tps if committed_map.get(tp) is None]
        earliest = await consumer.earliest_offsets(*missing) if missing else {}
    except Exception as exc:  # aiokafka raises many kinds; a reading is best effort
        metrics.KAFKA_ERRORS.labels(operation="offsets").inc()
        log.warning("consumer lag of %s not read: %r", topic, exc)
        return
    held = set()
    for tp in tps:
        end = highwaters.get(tp)
        if end is None:
            continue
        committed = committed_map.get(tp)
        if committed is None:
            committed = earliest.get(tp, 0) or 0
        metrics.CONSUMER_LAG.labels(partition=str(tp.partition)).set(max(0, end - committed))
        held.add(str(tp.partition))
    for labels in _gauge_label_values(metrics.CONSUMER_LAG):
        if labels[0] not in held:
            metrics.CONSUMER_LAG.remove(*labels)


def _gauge_label_values(gauge: Any) -> list[tuple[str, ...]]:
    # prometheus_client exposes no public list of a metric's children.
    with gauge._lock:
        return list(gauge._metrics.keys())
