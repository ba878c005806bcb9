"""The real runtime parts for integration tests: a Redis server and a Celery worker process.

The worker is a separate process on the test database file (or the PostgreSQL test
database), exactly as in production; nothing runs eagerly.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from webapp.core import presence, runtime


def wait_for(predicate, timeout: float, what: str, stack=None, poll: float = 0.1):
    """Poll ``predicate`` until it returns something true; on timeout, fail with the worker's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    log = stack.worker_log()[-4000:] if stack else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{log}")


def worker_env() -> dict:
    """The environment that points a child process at the test database and broker."""
    db = connection.settings_dict
    env = {"CUPOLA_DATA_DIR": str(settings.DATA_DIR), "DJANGO_SETTINGS_MODULE": "webapp.settings",
           "REDIS_URL": settings.REDIS_URL, "CUPOLA_HEARTBEAT_TIMEOUT": str(settings.RUN_HEARTBEAT_TIMEOUT)}
    if db["ENGINE"].endswith("sqlite3"):
        env["CUPOLA_SQLITE_PATH"] = str(db["NAME"])
        env.pop("DATABASE_URL", None)
    else:
        auth = f"{quote(db['USER'])}:{quote(db['PASSWORD'])}@" if db.get("USER") else ""
        env["DATABASE_URL"] = f"postgres://{auth}{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    return env


class Stack:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.redis: runtime.Child | None = None
        self.worker: runtime.Child | None = None

    def start_redis(self) -> None:
        if os.environ.get("REDIS_URL"):
            return  # a real server from the environment (CI's Debian redis-server)
        socket_path = settings.REDIS_SOCKET
        socket_path.unlink(missing_ok=True)
        self.redis = runtime.Child("redis", runtime.redis_server_argv(settings.DATA_DIR, socket_path),
                                   self.log_dir / "redis.log")
        self.redis.start()
        runtime.wait_for_socket(socket_path, self.redis)

    def start_worker(self, queues=("default", "cpu"), concurrency: int = 1) -> runtime.Child:
        argv = runtime.worker_argv(settings.DATA_DIR, list(queues), concurrency, beat=False)
        argv[argv.index("embedded@%h")] = f"test{int(time.time() * 1000) % 100000}@%h"
        worker = runtime.Child("worker", argv, self.log_dir / "worker.log", env=worker_env())
        worker.start()
        self.worker = worker
        self.wait_for_workers(1)
        return worker

    def wait_for_workers(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.worker and not self.worker.running():
                raise RuntimeError(f"worker exited; see {self.worker.log_path}:\n{self.worker_log()[-3000:]}")
            with contextlib.suppress(Exception):  # the broker may not be up yet
                if len(presence.live_workers()) >= count:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"no worker announced itself within {timeout} s:\n{self.worker_log()[-3000:]}")

    def wait_until_idle(self, timeout: float = 60.0) -> bool:
        """Wait until no worker holds a task (active or prefetched); False if one still does.

        A test ends when what it checks is in the database, but the worker may still be writing
        (the tail of a run, a requeued duplicate); flushing the test database under it can
        deadlock on PostgreSQL and fail the next test."""
        from webapp.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not (self.worker and self.worker.running()):
                return True
            inspector = app.control.inspect(timeout=1.0, limit=1)  # one worker: answer on its reply
            held = [task for replies in (inspector.active(), inspector.reserved()) if replies
                    for tasks in replies.values() for task in tasks]
            if not held:
                return True
            time.sleep(0.2)
        return False

    def worker_log(self) -> str:
        path = self.log_dir / "worker.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.worker:
            self.worker.stop(grace=10)
            presence.withdraw_all()
        if self.redis:
            self.redis.stop()
