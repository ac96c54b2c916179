"""Run ``rekap worker`` as a child process in a test.

Small API, for every end-to-end test that needs the real worker::

    from tests.support.procs import wait_until
    from tests.support.worker import start_worker

    worker = start_worker(settings)          # starts it and waits until it is ready
    try:
        produce_json(settings, sales)
        wait_until(lambda: applied(settings) == len(sales), timeout=30)
    finally:
        worker.stop()                        # SIGTERM; worker.kill() for SIGKILL

Ready means: the worker's web server answers ``GET /healthz`` with
``{"ready": true, ...}``, i.e. its consumer has a partition assignment of the
sales topic and no rebalance is in progress. The worker consumes from the
earliest offset, so records produced before it is ready are not missed.

The child's stdout and stderr go to ``log_path`` (default: a file in
``settings.runtime_dir/logs``); a test failure message includes its tail.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rekap.settings import Settings
from rekap.tls import client_context, local_url
from tests.support.env import settings_env
from tests.support.procs import Child

#: Default seconds to wait for a worker to join its group and get partitions.
READY_TIMEOUT_S = 60.0


class WorkerProcess(Child):
    """A running ``rekap worker`` child process."""

    #: A graceful stop commits offsets and leaves the group: give it time.
    stop_timeout_s = 30.0

    def __init__(self, settings: Settings, env: dict[str, str], log_path: Path) -> None:
        super().__init__([sys.executable, "-m", "rekap.cli", "worker"], log_path=log_path, env=env,
                         cwd=Path(settings.runtime_dir), name="worker")
        self.settings = settings

    @property
    def url(self) -> str:
        return local_url(self.settings, self.settings.worker_port)

    def health(self) -> dict[str, Any] | None:
        """The ``/healthz`` document, or None while the web server does not answer."""
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2,  # noqa: S310
                                        context=client_context(self.settings)) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 503 while not ready, still a document
            try:
                return json.loads(exc.read())
            except ValueError:
                return None
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def assigned(self) -> list[int]:
        """Sales-topic partitions this worker holds now (empty if unknown)."""
        doc = self.health()
        return list(doc.get("partitions", [])) if doc else []

    def wait_healthy(self, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Block until ``/healthz`` reports ready and return it; kill the worker and raise
        with its log tail if it dies or ``timeout`` seconds pass."""
        def ready() -> dict[str, Any] | None:
            doc = self.health()
            return doc if doc and doc.get("ready") else None

        return self.wait_ready(ready, timeout, "/healthz ready")


def start_worker(settings: Settings, *, extra_env: dict[str, str] | None = None,
                 log_path: Path | None = None, wait: bool = True,
                 timeout: float = READY_TIMEOUT_S) -> WorkerProcess:
    """Start ``rekap worker`` with ``settings`` (via ``REKAP_*``); by default wait until ready.

    ``extra_env`` overrides variables (e.g. ``{"REKAP_WORKER_PORT": "..."}`` for a
    second worker in the same group: each needs its own port). ``wait=False``
    returns at once; call :meth:`WorkerProcess.wait_healthy` yourself.
    """
    runtime = Path(settings.runtime_dir)
    runtime.mkdir(parents=True, exist_ok=True)  # the worker's cwd, whatever log_path is
    env = settings_env(settings, **(extra_env or {}))
    port = env.get("REKAP_WORKER_PORT", str(settings.worker_port))
    if log_path is None:
        log_path = runtime / "logs" / f"worker-{port}-{int(time.time() * 1000)}.log"
    worker_settings = settings if port == str(settings.worker_port) else \
        Settings.from_env({k: v for k, v in env.items() if k.startswith("REKAP_")})
    worker = WorkerProcess(worker_settings, env, log_path)
    if wait:
        worker.wait_healthy(timeout)
    return worker


__all__ = ["READY_TIMEOUT_S", "WorkerProcess", "start_worker"]
