"""A real Prometheus (Debian's /usr/bin/prometheus) for one test, on a free port."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import REPO, free_port
from tests.web.e2e import get

PROMETHEUS = "/usr/bin/prometheus"
DEPLOY = REPO / "deploy" / "prometheus"


def _replace(text: str, old: str, new: str) -> str:
    if old not in text:
        raise AssertionError(f"{old!r} not found: deploy/prometheus changed, update this test")
    return text.replace(old, new)


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    _log: Any = field(default=None, repr=False)

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

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


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
    port = free_port()
    log_path = workdir / "prometheus.log"
    log = log_path.open("ab")
    data = workdir / "data"
    shutil.rmtree(data, ignore_errors=True)
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}",
         "--storage.tsdb.retention.time=1h", "--log.level=warn"],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    prom = Prometheus(proc, f"http://127.0.0.1:{port}", log_path, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited: {prom.log_tail()}")
        try:
            if get(f"{prom.url}/-/ready", timeout=1)[0] == 200:
                return prom
        except OSError:
            pass
        time.sleep(0.2)
    prom.stop()
    raise TimeoutError(f"prometheus not ready: {prom.log_tail()}")
