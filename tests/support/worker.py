"""Run ``rekap worker`` as a child process in a test.

Small API, for every end-to-end test that needs the real worker::

    from tests.support.worker import start_worker, wait_until

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
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rekap.settings import Settings
from tests.support.env import settings_env

T = TypeVar("T")

#: Default seconds to wait for a worker to join its group and get partitions.
READY_TIMEOUT_S = 60.0


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.1,
               message: str = "condition") -> T:
    """Call ``predicate`` until it returns a truthy value, and return that value.

    Exceptions raised by the predicate count as "not yet" (the last one is
    chained into the :class:`TimeoutError` raised after ``timeout`` seconds).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} not reached within {timeout}s") from last_exc
        time.sleep(interval)


@dataclass
class WorkerProcess:
    """A running ``rekap worker`` child process."""

    settings: Settings
    proc: subprocess.Popen[bytes]
    log_path: Path
    _log_file: Any = field(repr=False, default=None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.worker_port}"

    def health(self) -> dict[str, Any] | None:
        """The ``/healthz`` document, or None while the web server does not answer."""
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as resp:  # noqa: S310
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

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Block until ``/healthz`` reports ready; raise with the log tail if it dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode} before ready:\n"
                                   f"{self.log_tail()}")
            doc = self.health()
            if doc and doc.get("ready"):
                return doc
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready within {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait (graceful: commits offsets); SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close_log()
        return self.proc.returncode

    def kill(self) -> int:
        """SIGKILL: no shutdown at all, as in a power cut. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_log()
        return self.proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_worker(settings: Settings, *, extra_env: dict[str, str] | None = None,
                 log_path: Path | None = None, wait: bool = True,
                 timeout: float = READY_TIMEOUT_S) -> WorkerProcess:
    """Start ``rekap worker`` with ``settings`` (via ``REKAP_*``); by default wait until ready.

    ``extra_env`` overrides variables (e.g. ``{"REKAP_WORKER_PORT": "..."}`` for a
    second worker in the same group: each needs its own port). ``wait=False``
    returns at once; call :meth:`WorkerProcess.wait_ready` yourself.
    """
    runtime = Path(settings.runtime_dir)
    (runtime / "logs").mkdir(parents=True, exist_ok=True)
    env = settings_env(settings, **(extra_env or {}))
    port = env.get("REKAP_WORKER_PORT", str(settings.worker_port))
    if log_path is None:
        log_path = runtime / "logs" / f"worker-{port}-{int(time.time() * 1000)}.log"
    log_file = log_path.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "rekap.cli", "worker"], env=env,
                            cwd=runtime, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)
    worker_settings = settings if port == str(settings.worker_port) else \
        Settings.from_env({k: v for k, v in env.items() if k.startswith("REKAP_")})
    worker = WorkerProcess(worker_settings, proc, log_path, log_file)
    if wait:
        try:
            worker.wait_ready(timeout)
        except BaseException:
            worker.kill()
            raise
    return worker


__all__ = ["READY_TIMEOUT_S", "WorkerProcess", "start_worker", "wait_until"]

