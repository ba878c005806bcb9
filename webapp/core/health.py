"""The system's health as the health endpoint and the dashboard's banner report it."""

from __future__ import annotations

from django.db import connection

from webapp.core import presence
from webapp.core.broker import redis_client

WORKER_HINT = "no worker is running: start one with `python manage.py up` or `celery -A webapp worker -Q default,cpu`"


def check() -> dict:
    result = {"database": {"ok": False}, "broker": {"ok": False}, "workers": [], "worker_count": 0}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        result["database"] = {"ok": True, "engine": connection.vendor}
    except Exception as error:  # noqa: BLE001 - the health page reports any failure
        result["database"] = {"ok": False, "error": str(error)}
    try:
        redis_client().ping()
        result["broker"] = {"ok": True}
        workers = presence.live_workers()
        result["workers"] = [{"hostname": w["hostname"], "device": w["device"], "queues": w["queues"]} for w in workers]
        result["worker_count"] = len(workers)
    except Exception as error:  # noqa: BLE001 - the health page reports any failure
        result["broker"] = {"ok": False, "error": f"the broker (Redis) is unreachable: {error}"}
    problems = []
    if not result["database"]["ok"]:
        problems.append("the database is unreachable")
    if not result["broker"]["ok"]:
        problems.append(result["broker"]["error"])
    elif not result["worker_count"]:
        problems.append(WORKER_HINT)
    result["ok"] = not problems
    result["problems"] = problems
    return result
