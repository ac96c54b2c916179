"""The leaderboard exporter: ``rekap exporter`` serves per-event and top-K gauges read from Redis.

Why a separate process: the leaderboard is a property of Redis, not of a
worker. If every worker exported it, N workers would serve N copies of every
series; read at scrape time by one exporter, each series exists once, and its
number is bounded by the registry, not by how many IKM sell:

=====================================  ==========================  ====================
metric                                 labels                      series
=====================================  ==========================  ====================
rekap_leaderboard_amount_idr           event, ikm, name            K per event
rekap_leaderboard_rank                 event, ikm, name            K per event
rekap_event_amount_idr                 event                       1 per event
rekap_event_gross_idr                  event                       1 per event
rekap_event_refunds_idr                event                       1 per event
rekap_event_sales_total (counter)      event                       1 per event
rekap_event_ikm_with_sales             event                       1 per event
rekap_event_channel_amount_idr         event, channel              4 per event
rekap_event_day_amount_idr             event, day                  DAYS_EXPORTED per event
rekap_exporter_redis_up                                            1
rekap_exporter_scrape_seconds                                      1
=====================================  ==========================  ====================

The rank is a gauge of its own, not a label: a label would start a new series
every time two IKM swap places. Amounts are rolled up (an exhibition's sales
count in its programme too), unlike the worker's ``rekap_sales_amount_idr_total``
which counts each sale once under its own event. The full leaderboard stays in
Redis and the read API.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from rekap.generations import current_keys_sync
from rekap.names import CHANNELS, Keys
from rekap.redisconn import REDIS_ERRORS, connect_sync
from rekap.registry import RegistrySource
from rekap.settings import Settings
from streams.web import queries

log = logging.getLogger(__name__)

#: Day buckets exported per event: the most recent days that have sales. An
#: exhibition lasts about a week; older days stay in Redis and the API.
DAYS_EXPORTED = 7
#: A scrape must not hang on a stuck Redis (Prometheus' default timeout is 10 s).
REDIS_TIMEOUT_S = 3.0


class LeaderboardCollector(Collector):
    """Reads the totals and the top K of every registry event at each scrape."""

    def __init__(self, settings: Settings, source: RegistrySource | None = None,
                 client: Any = None) -> None:
        self._settings = settings
        self._source = source or RegistrySource(settings.registry_path)
        self._keys = Keys(settings.redis_prefix)
        self._client = client or connect_sync(settings, socket_timeout=REDIS_TIMEOUT_S,
                                              socket_connect_timeout=REDIS_TIMEOUT_S)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no scrape at registration time

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily("rekap_exporter_redis_up",
                               "1 when the last scrape could read Redis, else 0.")
        try:
            # Per scrape: a rebuild moves the generation (rekap.generations).
            reader = queries.Reader(current_keys_sync(self._client, self._keys),
                                    self._source.current())
            view = queries.run_sync(self._client, queries.exporter_view(
                reader, self._settings.leaderboard_top_k, DAYS_EXPORTED))
        except REDIS_ERRORS as exc:
            log.warning("exporter cannot read Redis at %s: %s", self._settings.redis_url_masked, exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from self._families(view)
        took = GaugeMetricFamily("rekap_exporter_scrape_seconds",
                                 "Time the exporter spent reading Redis for this scrape.")
        took.add_metric([], time.perf_counter() - started)
        yield took

    @staticmethod
    def _families(view: list[dict[str, Any]]) -> Iterator[Metric]:
        amount = GaugeMetricFamily(
            "rekap_leaderboard_amount_idr",
            "Net rupiah of the top-K IKM of each event (rolled up from child events).",
            labels=["event", "ikm", "name"])
        rank = GaugeMetricFamily(
            "rekap_leaderboard_rank", "Rank (1 = best; equal amounts share a rank) of the top-K IKM.",
            labels=["event", "ikm", "name"])
        ev_amount = GaugeMetricFamily("rekap_event_amount_idr",
                                      "Net rupiah of the event (rolled up).", labels=["event"])
        ev_gross = GaugeMetricFamily("rekap_event_gross_idr",
                                     "Gross rupiah of the event before refunds.", labels=["event"])
        ev_refunds = GaugeMetricFamily("rekap_event_refunds_idr",
                                       "Refunded rupiah of the event.", labels=["event"])
        ev_sales = CounterMetricFamily("rekap_event_sales", "Sales applied to the event (rolled up).",
                                       labels=["event"])
        ev_ranked = GaugeMetricFamily("rekap_event_ikm_with_sales",
                                      "IKM with at least one sale in the event.", labels=["event"])
        ev_channel = GaugeMetricFamily("rekap_event_channel_amount_idr",
                                       "Net rupiah of the event per channel.", labels=["event", "channel"])
        ev_day = GaugeMetricFamily(
            "rekap_event_day_amount_idr",
            f"Net rupiah per local day, the last {DAYS_EXPORTED} days with sales.",
            labels=["event", "day"])
        for ev in view:
            e, totals = ev["event_id"], ev["totals"]
            for row in ev["top"]:
                labels = [e, row["ikm_id"], row["name"]]
                amount.add_metric(labels, row["amount_idr"])
                rank.add_metric(labels, row["rank"])
            ev_amount.add_metric([e], totals["amount_idr"])
            ev_gross.add_metric([e], totals["gross_idr"])
            ev_refunds.add_metric([e], totals["refunds_idr"])
            ev_sales.add_metric([e], totals["count"])
            ev_ranked.add_metric([e], ev["ranked_ikm"])
            for ch in CHANNELS:
                ev_channel.add_metric([e, ch], totals["by_channel"][ch]["amount_idr"])
            for day in ev["by_day"]:
                ev_day.add_metric([e, day["day"]], day["amount_idr"])
        yield from (amount, rank, ev_amount, ev_gross, ev_refunds, ev_sales, ev_ranked,
                    ev_channel, ev_day)


def build_registry(settings: Settings, **kwargs: Any) -> CollectorRegistry:
    """A registry holding only the leaderboard collector (no process metrics to mix up)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LeaderboardCollector(settings, **kwargs))
    return registry


def serve(settings: Settings) -> int:
    """Serve ``/metrics`` on ``settings.host:settings.exporter_port`` until SIGTERM or SIGINT."""
    registry = build_registry(settings)
    server, thread = start_http_server(settings.exporter_port, addr=settings.host, registry=registry)
    log.info("leaderboard exporter on http://%s:%d/metrics (top %d per event)",
             settings.host, settings.exporter_port, settings.leaderboard_top_k)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    thread.join(timeout=5)
    log.info("leaderboard exporter stopped")
    return 0
