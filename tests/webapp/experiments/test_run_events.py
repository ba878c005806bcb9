"""What a run's end and the registry tell the workspace: its webhooks (``run.succeeded``,
``run.failed``, ``run.cancelled``, ``model.registered``, ``model.production``) and the creator's
notifications, whether the run ended on a worker or at the watchdog."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.webapp.experiments.conftest import iris_spec
from webapp.accounts.models import Notification, Webhook, WebhookDelivery
from webapp.experiments import execution, registry, services, watchdog
from webapp.experiments.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def hook(people):
    return Webhook.objects.create(workspace=people.workspace, url="https://example.org/hook")


def deliveries(event):
    return [d.payload for d in WebhookDelivery.objects.filter(event=event).order_by("pk")]


def new_run(people, iris, **spec):
    return services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                               spec=iris_spec(**spec), data_config={"target": "species"})


def test_a_finished_run_is_posted_to_the_workspaces_webhooks_with_its_scores(people, iris, hook):
    run = new_run(people, iris, epochs=3)
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    [payload] = deliveries("run.succeeded")
    data = payload["data"]
    assert (data["run"], data["status"], data["epochs"], data["path"]) == (run.pk, "succeeded", 3, run.get_absolute_url())
    assert data["metric"] == run.best_metric_name and data["value"] == run.best_metric
    assert data["test"]["accuracy"] == run.results["test"]["accuracy"] and data["started_by"] == "olga"
    assert payload["text"] == f"[Lab] {run.display_name} succeeded: {run.best_metric_name} {run.best_metric:.4g}"


def test_a_failed_run_says_why_to_its_webhooks_and_its_creator(people, iris, hook):
    run = new_run(people, iris, epochs=3)
    Run.objects.filter(pk=run.pk).update(spec=dict(run.spec, layers=run.spec["layers"][:-1]))  # no longer fits
    assert execution.run_execute(run.pk) == "failed"
    [payload] = deliveries("run.failed")
    assert "the model outputs" in payload["data"]["reason"] and payload["text"].startswith(f"[Lab] Run #{run.pk} failed: ")
    assert Notification.objects.get(user=people.owner, link=run.get_absolute_url()).level == "error"


def test_a_run_the_watchdog_gives_up_on_is_announced_as_failed(people, iris, hook, settings):
    run = new_run(people, iris, epochs=3)
    stale = timezone.now() - timedelta(seconds=settings.RUN_HEARTBEAT_TIMEOUT + 5)
    Run.objects.filter(pk=run.pk).update(status="running", heartbeat_at=stale, requeues=watchdog.MAX_REQUEUES)
    assert watchdog.check_runs()["failed"] == [run.pk]
    [payload] = deliveries("run.failed")
    assert "stopped responding" in payload["data"]["reason"]
    assert "stopped responding" in Notification.objects.get(user=people.owner, link=run.get_absolute_url()).message
    assert not deliveries("run.succeeded")


def test_a_run_cancelled_before_it_started_posts_nothing(people, iris, hook):
    services.run_cancel(run=new_run(people, iris), user=people.owner)
    assert not WebhookDelivery.objects.exists()


def test_the_registry_posts_new_versions_and_the_version_in_production(people, iris, hook):
    first, second = new_run(people, iris, epochs=2), new_run(people, iris, epochs=2)
    for run in (first, second):
        execution.run_execute(run.pk)
        run.refresh_from_db()
    WebhookDelivery.objects.all().delete()
    model = registry.register(run=first, user=people.editor, name="iris").model
    registry.register(run=second, user=people.editor, name="iris")
    registry.set_production(model=model, number=2, user=people.owner)
    registered = deliveries("model.registered")
    assert [(p["data"]["version"], p["data"]["in_production"]) for p in registered] == [(1, True), (2, False)]
    assert registered[0]["text"] == f"[Lab] {first.display_name} is now version 1 of iris (in production)"
    [promoted] = deliveries("model.production")
    assert promoted["data"] == {"model": model.pk, "name": "iris", "version": 2, "run": second.pk, "in_production": True,
                                "path": model.get_absolute_url(), "by": "olga"}
