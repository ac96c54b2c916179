"""Helpers of the end-to-end tests: known sales, the exporter process, small HTTP reads."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rekap.registry import Registry
from rekap.settings import Settings
from tests.support.env import settings_env


def sale(sale_id: str, ikm_id: str, event_id: str, amount_idr: int, *, channel: str = "website",
         registry: Registry | None = None, occurred_at: str = "2022-06-02T14:05:00+07:00",
         **extra: Any) -> dict[str, Any]:
    """A valid sale record (offline sales get the IKM's booth from ``registry``)."""
    out: dict[str, Any] = {"sale_id": sale_id, "kind": "sale", "ikm_id": ikm_id,
                           "event_id": event_id, "channel": channel, "amount_idr": amount_idr,
                           "quantity": 1, "occurred_at": occurred_at, **extra}
    if channel == "offline":
        assert registry is not None
        out["booth_id"] = next(b.id for b in registry.booths.values()
                               if b.event == event_id and ikm_id in b.ikm)
    return out


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url)  # noqa: S310 - http URLs the test builds
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def get_json(url: str) -> Any:
    status, body, _ = get(url)
    if status != 200:
        raise AssertionError(f"GET {url} -> {status}: {body[:300]!r}")
    return json.loads(body)


@dataclass
class Exporter:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    _log: Any = field(default=None, repr=False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()


def start_exporter(settings: Settings, timeout: float = 20.0) -> Exporter:
    """``rekap exporter`` as a child process, returned once ``/metrics`` answers."""
    logs = Path(settings.runtime_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "exporter.log"
    log = log_path.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "rekap.cli", "exporter"],
                            env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    exp = Exporter(proc, f"http://{settings.host}:{settings.exporter_port}/metrics", log_path, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exporter exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            if get(exp.url, timeout=1)[0] == 200:
                return exp
        except OSError:
            pass
        time.sleep(0.2)
    exp.stop()
    raise TimeoutError(f"exporter not up: {log_path.read_text(errors='replace')[-2000:]}")
