"""Every dashboard query and recording rule, evaluated by a real Prometheus.

A real ``rekap worker`` is fed a known stream through the test's sales topic;
``rekap exporter`` serves the leaderboard gauges; Prometheus scrapes both every
second with the config and rules of ``deploy/prometheus``. Then every PromQL
expression of ``deploy/grafana/dashboards/*.json`` (with ``$event`` and the
interval variables substituted) and every recording rule must return data, and
the leaderboard query must return the expected IKM, in order, with the
expected amounts.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rekap.registry import Registry
from rekap.settings import Settings
from tests.conftest import REPO
from tests.streams.web.conftest import KOKAS, ROOT
from tests.streams.web.e2e import exhibition_sales, get, get_json, sale, start_exporter
from tests.streams.web.openapi_check import validate
from tests.streams.web.promserver import start_prometheus
from tests.support.kafka import produce, produce_json
from tests.support.procs import wait_until
from tests.support.worker import start_worker

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
#: What Grafana would put in: 1 s scrapes, a window holding many samples.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "5s", "$__range": "1h"}


def panel_targets() -> Iterator[tuple[str, str, str]]:
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        for panel in doc["panels"]:
            for target in panel.get("targets", []):
                yield path.name, panel["title"], target["expr"]
        for var in doc.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                yield path.name, f"variable {var['name']}", q


def substitute(expr: str, event: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr.replace("$event", event)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (identifiers that are neither functions nor keywords)."""
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\s*[{\[)\s]|$)", re.sub(r'"[^"]*"', '""', expr)))
    return {w for w in words if w.startswith(("rekap", "faust_", "event:", "reason:")) or w == "up"}


def test_dashboards_and_rules_return_data(settings: Settings, registry: Registry,
                                          tmp_path: Any) -> None:
    # Known stream: the Kasablanka exhibition and one sale of the programme around it, which
    # makes rafins-snack (4th at the exhibition) first of the whole festival.
    kokas = exhibition_sales(registry)
    sales = [*kokas, sale("p1", "rafins-snack", ROOT, 10_000_000, channel="marketplace",
                          occurred_at="2022-05-03T09:00:00+07:00")]
    kokas_total = sum(s["amount_idr"] for s in kokas)
    expected_kokas = [(s["ikm_id"], s["amount_idr"]) for s in kokas]  # one sale per IKM
    worker = start_worker(settings)
    exporter = prom = None
    try:
        exporter = start_exporter(settings)
        prom = start_prometheus(tmp_path / "prom", f"127.0.0.1:{settings.worker_port}",
                                f"127.0.0.1:{settings.exporter_port}")
        # Let Prometheus see the counters at zero first, so rates see the stream.
        wait_until(lambda: len([r for r in prom.query('up{job=~"rekap-.*"} == 1')]) == 2,
                   timeout=30, interval=0.5, message="Prometheus scrapes worker and exporter")
        produce_json(settings, sales)
        produce_json(settings, [dict(sales[1])])  # a booth resend: duplicate by sale_id
        produce(settings, settings.topic_sales, [(b"lampung-ethnica", b"{not json")])  # dead letter
        board_url = f"{worker.url}/api/v1/events/{KOKAS}/leaderboard?limit=10"
        wait_until(lambda: get_json(board_url)["total_idr"] == kokas_total, timeout=30,
                   message="worker applied the stream")

        # The worker serves the read API per its OpenAPI document.
        for template, url in [
                ("/api/v1/events", "/api/v1/events"),
                ("/api/v1/events/{event_id}/summary", f"/api/v1/events/{ROOT}/summary"),
                ("/api/v1/events/{event_id}/leaderboard", f"/api/v1/events/{KOKAS}/leaderboard"),
                ("/api/v1/events/{event_id}/ikm/{ikm_id}", f"/api/v1/events/{ROOT}/ikm/rafins-snack"),
                ("/api/v1/events/{event_id}/snapshot", f"/api/v1/events/{KOKAS}/snapshot")]:
            validate(template, 200, get_json(worker.url + url))
        status, body, _ = get(f"{worker.url}/api/v1/events/{KOKAS}/leaderboard?limit=x")
        assert status == 400
        validate("/api/v1/events/{event_id}/leaderboard", 400, json.loads(body))
        assert get_json(f"{worker.url}/api/v1/events/{ROOT}/ikm/rafins-snack")["rank"] == 1

        # The leaderboard as Grafana's bar gauge asks for it.
        def leaderboard() -> list[tuple[str, int]] | None:
            rows = prom.query(f'sort_desc(rekap_leaderboard_amount_idr{{event="{KOKAS}"}})')
            got = [(r["metric"]["ikm"], int(float(r["value"][1]))) for r in rows]
            return got if got == expected_kokas else None

        wait_until(leaderboard, timeout=30, interval=0.5, message="leaderboard in Prometheus")
        ranks = {r["metric"]["ikm"]: float(r["value"][1])
                 for r in prom.query(f'rekap_leaderboard_rank{{event="{KOKAS}"}}')}
        assert ranks == {ikm: rank for rank, (ikm, _) in enumerate(expected_kokas, 1)}
        total = prom.query(f'rekap_event_amount_idr{{event="{ROOT}"}}')
        assert int(float(total[0]["value"][1])) == kokas_total + 10_000_000

        # Lag is read every 5 s by the worker; wait for a reading of every partition.
        wait_until(lambda: len(prom.query("rekap_consumer_lag_records")) == settings.sales_partitions,
                   timeout=30, interval=0.5, message="consumer lag series")
        # Rates need two samples after the counters moved; recording rules one evaluation.
        time.sleep(3)
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        assert len(rules) >= 10
        problems: list[str] = []
        known = set(prom.api("label/__name__/values"))
        for rule in rules:
            if rule["health"] != "ok":
                problems.append(f"rule {rule['name']}: health {rule['health']} {rule.get('lastError')}")
            if not prom.query(rule["query"]):
                problems.append(f"rule {rule['name']}: expression returns nothing")
        deadline = time.monotonic() + 15
        while missing := [r["name"] for r in rules if not prom.query(r["name"])]:
            if time.monotonic() > deadline:
                problems.append(f"recorded series missing: {missing}")
                break
            time.sleep(0.5)
        known = set(prom.api("label/__name__/values"))
        checked = 0
        for dash, title, raw in panel_targets():
            expr = substitute(raw, KOKAS)
            if expr.startswith("label_values("):
                metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", expr).groups()
                values = prom.api(f"label/{label}/values", **{"match[]": metric})
                if sorted(values) != sorted([ROOT, KOKAS]):
                    problems.append(f"{dash} {title}: {values}")
                continue
            checked += 1
            for name in metric_names(expr):
                if name not in known and name.removesuffix("_bucket") + "_bucket" not in known:
                    problems.append(f"{dash} / {title}: unknown metric {name} in {expr}")
            if not prom.query(expr):
                problems.append(f"{dash} / {title}: no data for {expr}")
        assert checked >= 30
        assert not problems, "\n".join(problems)
        # Sent = applied + duplicates + rejected, as the recording rule says.
        assert float(prom.query("rekap:records_unaccounted:sum")[0]["value"][1]) == 0
        # And the worker's /metrics page carries Faust's metrics next to ours.
        text = get(f"{worker.url}/metrics")[1].decode()
        consumed = float(len(sales) + 2)  # with the resend and the dead letter
        assert "faust_messages_received_total" in text and f"rekap_records_consumed_total {consumed}" in text
    finally:
        if prom is not None:
            prom.stop()
        if exporter is not None:
            exporter.stop()
        worker.stop()
