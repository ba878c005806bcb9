"""The health endpoint against the real broker and worker."""

import pytest

pytestmark = [pytest.mark.integration]


def test_health_reports_database_broker_and_the_live_worker(stack, transactional_db, client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    health = response.json()
    assert health["database"]["ok"] is True
    assert health["broker"]["ok"] is True
    assert health["worker_count"] >= 1
    assert all(worker["device"] for worker in health["workers"])
    assert health["ok"] is True


def test_a_task_round_trips_through_the_worker_process(stack, transactional_db):
    import os

    from webapp.core.tasks import ping

    reply = ping.delay("hello").get(timeout=30)
    assert reply["echo"] == "hello"
    assert reply["pid"] != os.getpid()


def test_health_says_how_to_start_a_worker_when_none_is_alive(db, client, monkeypatch):
    from webapp.core import health, presence

    monkeypatch.setattr(presence, "live_workers", list)
    monkeypatch.setattr(health, "redis_client", lambda: type("R", (), {"ping": lambda self: True})())
    body = client.get("/api/v1/health").json()
    assert body["ok"] is False
    assert body["worker_count"] == 0
    assert any("no worker is running: start one with" in p for p in body["problems"])
