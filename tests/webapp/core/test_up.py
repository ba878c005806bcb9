"""`python manage.py up` end to end, in a subprocess on a fresh data folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as error:  # noqa: BLE001 - the server may not be listening yet
            last = error
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def _up_env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CUPOLA_SQLITE_PATH"}}
    env.update(CUPOLA_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="webapp.settings", PYTHONUNBUFFERED="1")
    return env


def test_up_starts_web_worker_and_redis_and_stops_them_all_on_sigterm(tmp_path):
    port = _free_port()
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "up", "--port", str(port), "--concurrency", "1", "--web-workers", "1"],
        cwd=ROOT, env=_up_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        health = _wait_for(lambda: (h := _get_json(f"{base}/api/v1/health")) and h["worker_count"] == 1 and h,
                           90, "a live worker in /api/v1/health")
        assert health["database"]["ok"] and health["broker"]["ok"]
        assert health["workers"][0]["device"] == "cpu"
        with urllib.request.urlopen(f"{base}/accounts/signup/", timeout=5) as response:
            assert response.status == 200
        assert (data_dir / "cupola.sqlite3").exists()
        assert (data_dir / "redis.sock").exists()

        # A trivial task round-trips through the real worker over the real broker.
        ping = subprocess.run(
            [sys.executable, "-c",
             ("import django; django.setup(); from webapp.core.tasks import ping; "
              "print(ping.delay('round-trip').get(timeout=30)['echo'])")],
            cwd=ROOT, env=_up_env(data_dir), capture_output=True, text=True, timeout=60, check=False,
        )
        assert ping.stdout.strip().endswith("round-trip"), ping.stderr[-2000:]

        children = psutil.Process(process.pid).children(recursive=True)
        descendants = [p.pid for p in children]
        assert len(descendants) >= 3  # redis, worker (+ its pool), web (+ its workers)
        # Training yields the CPU to the web server; the web server keeps normal priority.
        workers = [p for p in children if "celery" in " ".join(p.cmdline())]
        webs = [p for p in children if "gunicorn" in " ".join(p.cmdline())]
        assert workers and all(p.nice() == 10 for p in workers)
        assert webs and all(p.nice() == 0 for p in webs)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert "Cupola is running at http://127.0.0.1:" in output
    assert "accounts/signup/" in output  # first start tells how to get in
    assert process.returncode == 0, output
    still_alive = [pid for pid in descendants if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert still_alive == []

    # A second `up` on the same folder finds everything where it was left, less the partial uploads
    # a killed web server left in tmp (only the stale ones: a fresh one may be an upload in progress).
    stale, fresh = data_dir / "tmp" / "tmpstale.upload", data_dir / "tmp" / "tmpfresh.upload"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    os.utime(stale, (time.time() - 7 * 3600,) * 2)
    second = subprocess.Popen(
        [sys.executable, "manage.py", "up", "--port", str(port), "--concurrency", "1", "--web-workers", "1"],
        cwd=ROOT, env=_up_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _wait_for(lambda: _get_json(f"{base}/api/v1/health")["database"]["ok"], 60, "the second start")
        assert not stale.exists() and fresh.exists()
    finally:
        second.send_signal(signal.SIGINT)
        output, _ = second.communicate(timeout=60)
    assert second.returncode == 0, output


def test_up_refuses_a_port_that_is_not_a_number(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "up", "--port", "eighty"], cwd=ROOT, env=_up_env(tmp_path),
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert "--port must be an integer; got 'eighty'" in result.stderr
