"""The Redis server stops while runs are queued and running, then comes back.

No run is lost or run twice: every run ends ``succeeded`` with each epoch's metrics exactly once and
one attempt; a run created during the outage is dispatched when the broker is back. Meanwhile the
health endpoint reports the outage and the pages still answer.
"""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.faults.conftest import iris_spec, ready_version, slow_spec, wait_for
from webapp.core import runtime

pytestmark = [pytest.mark.integration]


def _runs(ids):
    from webapp.experiments.models import Run

    return {run.pk: run for run in Run.objects.filter(pk__in=ids)}


def _create(client, ws, version, spec, name):
    response = client.post(f"/api/v1/workspaces/{ws}/runs", {
        "dataset_version": version.pk, "spec": spec, "name": name, "device": "cpu",
        "data_config": {"target": version.dataset.target_column}}, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _restart_redis(stack) -> None:
    if not stack.redis.running():
        stack.redis.start()
        runtime.wait_for_socket(settings.REDIS_SOCKET, stack.redis)


def test_no_run_is_lost_or_duplicated_when_redis_stops_and_comes_back(transactional_db, stack, client, people):
    from webapp.experiments import watchdog
    from webapp.experiments.models import MetricRow

    if stack.redis is None:
        pytest.skip("Redis comes from REDIS_URL here; this test stops the embedded one")
    affairs = ready_version(people.workspace, people.owner, "fair_affairs.csv", "affairs")
    iris = ready_version(people.workspace, people.owner, "iris.csv", "species")
    client.force_login(people.editor)
    ws = people.workspace.slug
    epochs = {}
    running = _create(client, ws, affairs, slow_spec(12), "running during the outage")
    epochs[running] = 12
    for i in range(2):
        run_id = _create(client, ws, iris, iris_spec(4), f"queued during the outage {i}")
        epochs[run_id] = 4
    wait_for(lambda: _runs([running])[running].epochs_done >= 2, 60, "the first run to train", stack)

    stack.redis.stop()
    try:
        health = client.get("/api/v1/health")
        assert health.status_code == 200  # the database still answers
        body = health.json()
        assert body["ok"] is False and body["broker"]["ok"] is False
        assert any("broker" in problem.lower() or "redis" in problem.lower() for problem in body["problems"])
        dashboard = client.get(f"/w/{ws}/")
        assert dashboard.status_code == 200
        assert b"health-banner" in dashboard.content
        during = _create(client, ws, iris, iris_spec(3), "created during the outage")
        epochs[during] = 3
        assert _runs([during])[during].dispatched_at is None  # the message could not be sent yet
        assert client.get(f"/w/{ws}/runs/{running}/live.json").status_code == 200
        wait_for(lambda: _runs([running])[running].epochs_done >= 4, 60, "training to go on without the broker",
                 stack)
    finally:
        _restart_redis(stack)

    wait_for(lambda: client.get("/api/v1/health").json()["broker"]["ok"], 30, "the health check to recover")
    stack.wait_for_workers(1, timeout=30)

    def all_finished():
        watchdog.check_runs()  # what celery beat and every polling page do: resend the undelivered message
        return all(run.is_finished for run in _runs(epochs).values())

    wait_for(all_finished, 150, "every run to finish after the outage", stack, poll=1.0)
    for run_id, run in _runs(epochs).items():
        assert run.status == "succeeded", f"{run.name}: {run.status} {run.reason} {run.traceback_summary[-500:]}"
        seen = list(MetricRow.objects.filter(run_id=run_id).order_by("epoch").values_list("epoch", flat=True))
        assert seen == list(range(1, epochs[run_id] + 1)), f"{run.name}: epochs {seen}"
        assert run.attempts == 1, f"{run.name} was started {run.attempts} times"
    assert client.get("/api/v1/health").json()["ok"] is True
