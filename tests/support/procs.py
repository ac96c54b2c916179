"""Child processes of the tests: start, wait until ready, stop or kill; free ports; polling.

Every process a test starts (``rekap worker``, ``rekap exporter``, Prometheus,
Chromium, a throwaway Redis, the simulator) goes through here, so each is
started the same way (its own session, output in a log file) and stopped the
same way (SIGTERM, then SIGKILL if it does not exit in time)::

    from tests.support.procs import Child, free_port, wait_until

    with Child(["redis-server", "--port", str(port)], log_path=tmp / "redis.log",
               name="redis") as redis_server:
        redis_server.wait_ready(lambda: ping(port), timeout=15, what="PING answered")
        ...                                  # leaving the block stops it

:class:`Child` is the base of :class:`tests.support.worker.WorkerProcess` and of
the web tests' exporter and Prometheus. :func:`stop` and :func:`kill` serve a
bare :class:`subprocess.Popen` too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Self, TypeVar

T = TypeVar("T")

#: Seconds a child killed with SIGKILL may take to be reaped.
KILL_WAIT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the kernel just handed out as free (ephemeral range); nobody holds it now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def free_range(base: int, span: int, host: str = "127.0.0.1") -> bool:
    """Whether every port in ``[base, base + span)`` can be bound and has no listener."""
    for port in range(base, base + span):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
        if port_open(port, host):
            return False
    return True


def alive(pid: int) -> bool:
    """Running and not a zombie (a killed process waits to be reaped by whoever adopted it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_mentioning(text: str) -> dict[int, str]:
    """Every live process (but this one) whose command line contains ``text``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited while we looked
        if text in cmdline and alive(int(entry.name)):
            found[int(entry.name)] = cmdline
    return found


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


def kill(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL (no shutdown at all, as in a power cut) unless it has exited; its exit status."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(KILL_WAIT_S)
    return proc.returncode


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM and wait ``timeout`` seconds for a clean exit, then SIGKILL; its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill(proc)
    return proc.returncode


class Child:
    """A child process, started on construction, its stdout and stderr appended to ``log_path``.

    It runs in its own session, so a Ctrl-C of pytest does not reach it before the
    test's teardown stops it. Use as a context manager, or call :meth:`stop`.
    """

    #: Seconds :meth:`stop` waits after SIGTERM before it sends SIGKILL.
    stop_timeout_s = 10.0

    def __init__(self, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, name: str | None = None) -> None:
        self.name = name or Path(argv[0]).name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] | None = log_path.open("ab")
        try:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                list(argv), env=None if env is None else dict(env), cwd=cwd, stdout=self._log,
                stderr=subprocess.STDOUT, start_new_session=True)
        except BaseException:
            self._close_log()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` (default :attr:`stop_timeout_s`); exit status."""
        try:
            return stop(self.proc, self.stop_timeout_s if timeout is None else timeout)
        finally:
            self._close_log()

    def kill(self) -> int:
        """SIGKILL: no shutdown at all, as in a power cut. Returns the exit status."""
        try:
            return kill(self.proc)
        finally:
            self._close_log()

    def wait_ready(self, check: Callable[[], T | None], timeout: float, what: str = "ready",
                   interval: float = 0.2) -> T:
        """Call ``check`` until it returns a truthy value, and return that value.

        An exception from ``check`` (connection refused while the child starts) counts as
        "not yet", as in :func:`wait_until`. If the child exits first, :class:`RuntimeError`
        is raised; if ``timeout`` seconds pass, it is killed and :class:`TimeoutError` raised
        (chained to the last exception of ``check``); both carry its log tail.
        """
        deadline = time.monotonic() + timeout
        last_exc: BaseException | None = None
        while (status := self.proc.poll()) is None:
            try:
                if value := check():
                    return value
            except Exception as exc:
                last_exc = exc
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{self.name}: {what} not reached within {timeout}s:\n"
                                   f"{self.log_tail()}") from last_exc
            time.sleep(interval)
        self._close_log()
        raise RuntimeError(f"{self.name} exited with {status} before {what}:\n"
                           f"{self.log_tail()}") from last_exc

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.pid} log={self.log_path}>"

