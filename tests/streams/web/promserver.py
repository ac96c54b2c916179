"""A real Prometheus (Debian's /usr/bin/prometheus) for one test, on a free port."""

from __future__ import annotations

import json
import shutil
import urllib.parse
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.streams.web.e2e import get
from tests.support.procs import Child, free_port

PROMETHEUS = "/usr/bin/prometheus"
DEPLOY = REPO / "deploy" / "prometheus"


def _replace(text: str, old: str, new: str) -> str:
    if old not in text:
        raise AssertionError(f"{old!r} not found: deploy/prometheus changed, update this test")
    return text.replace(old, new)


class Prometheus(Child):
    """Prometheus serving ``workdir``'s config on ``127.0.0.1:port``; :attr:`url` is its root."""

    #: On SIGTERM Prometheus closes its TSDB before it exits, which can take a few seconds.
    stop_timeout_s = 15.0

    def __init__(self, workdir: Path, port: int) -> None:
        data = workdir / "data"
        shutil.rmtree(data, ignore_errors=True)
        super().__init__(
            [PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}",
             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            log_path=workdir / "prometheus.log", cwd=workdir, name="prometheus")
        self.url = f"http://127.0.0.1:{port}"

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body, _ = get(url, timeout=10)
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise AssertionError(f"Prometheus {path} {params}: {status} {body[:500]!r}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return result  # type: ignore[no-any-return]


def start_prometheus(workdir: Path, worker: str, exporter: str, timeout: float = 30.0) -> Prometheus:
    """Prometheus with deploy/prometheus's config and rules, retargeted and sped up to 1 s."""
    workdir.mkdir(parents=True, exist_ok=True)
    rules = DEPLOY.joinpath("rules.yml").read_text()
    rules = _replace(rules, "interval: 15s", "interval: 1s")
    (workdir / "rules.yml").write_text(rules)
    config = DEPLOY.joinpath("prometheus.yml").read_text()
    config = _replace(config, "127.0.0.1:16066", worker)
    config = _replace(config, "127.0.0.1:16068", exporter)
    config = _replace(config, "scrape_interval: 5s", "scrape_interval: 1s")
    config = _replace(config, "evaluation_interval: 5s", "evaluation_interval: 1s")
    (workdir / "prometheus.yml").write_text(config)
    prom = Prometheus(workdir, free_port())
    prom.wait_ready(lambda: get(f"{prom.url}/-/ready", timeout=1)[0] == 200, timeout, "ready")
    return prom
