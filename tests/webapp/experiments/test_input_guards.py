"""Proof-test regressions: inputs the services must refuse with a 400 naming the field."""

from __future__ import annotations

import pytest

from tests.webapp.experiments.conftest import iris_spec
from webapp.experiments.models import Run


def _sweep(client, people, iris, **extra):
    body = {"dataset_version": iris.pk, "spec": iris_spec(), "data_config": {"target": "species"},
            "method": "random", "space": {"learning_rate": [0.01, 0.02, 0.05]}, **extra}
    return client.post(f"/api/v1/workspaces/{people.workspace.slug}/sweeps", body, content_type="application/json")


@pytest.mark.django_db
@pytest.mark.parametrize("count", [-5, 0, 51])
def test_a_sweep_count_out_of_range_gives_400_naming_count(client, people, iris, count):
    client.force_login(people.editor)
    response = _sweep(client, people, iris, count=count)
    assert response.status_code == 400, response.content
    assert response.json()["field"] == "count"
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_the_builder_has_a_place_for_the_count_message(client, people, iris):
    client.force_login(people.editor)
    page = client.get(f"/w/{people.workspace.slug}/runs/new/")
    assert page.status_code == 200
    assert b'data-error-for="count"' in page.content


def _create(client, people, iris, **extra):
    body = {"dataset_version": iris.pk, "spec": iris_spec(), "data_config": {"target": "species"}, **extra}
    return client.post(f"/api/v1/workspaces/{people.workspace.slug}/runs", body, content_type="application/json")


@pytest.mark.django_db
@pytest.mark.parametrize("field, value", [
    ("name", "bad\x00name"), ("name", "bell\x07"), ("tags", ["ok", "nul\x00tag"]), ("tags", ["esc\x1b"]),
])
def test_creating_a_run_refuses_control_characters(client, people, iris, field, value):
    client.force_login(people.editor)
    response = _create(client, people, iris, **{field: value})
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert not Run.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("field, value", [
    ("notes", "before\x00after"), ("notes", "x\x0by"), ("name", "n\x00"), ("tags", ["t\x00"]), ("tags", ["\x7f"]),
])
def test_patching_a_run_refuses_control_characters(client, people, iris, field, value):
    client.force_login(people.editor)
    run_id = _create(client, people, iris, name="clean", tags=["a"]).json()["id"]
    response = client.patch(f"/api/v1/runs/{run_id}", {field: value}, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    run = Run.objects.get(pk=run_id)
    assert (run.name, run.notes, run.tags) == ("clean", "", ["a"])


@pytest.mark.django_db
def test_tabs_and_newlines_in_notes_are_kept(client, people, iris):
    client.force_login(people.editor)
    run_id = _create(client, people, iris).json()["id"]
    notes = "line one\r\n\tline two\n"
    response = client.patch(f"/api/v1/runs/{run_id}", {"notes": notes}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert Run.objects.get(pk=run_id).notes == notes


class _BrokerDown(Exception):
    pass


def _slow_unless_retry_off(calls):
    """A publish to a Redis that is down: Celery's default retry policy keeps a request waiting."""
    import time

    def apply_async(args, **options):
        calls.append(options)
        if options.get("retry", True) is not False and not options.get("retry_policy"):
            time.sleep(3)  # stands for the ~19 s of retries seen in the outage
        raise _BrokerDown("Error 111 connecting to redis: Connection refused")

    return apply_async


@pytest.mark.django_db
def test_a_broker_outage_does_not_hold_up_creating_a_run(client, people, iris, monkeypatch,
                                                          django_capture_on_commit_callbacks):
    import time

    from webapp.experiments.tasks import train_run

    calls = []
    monkeypatch.setattr(train_run, "apply_async", _slow_unless_retry_off(calls))
    monkeypatch.setattr("webapp.experiments.services.choose_queue", lambda device: "cpu")
    client.force_login(people.editor)
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        response = _create(client, people, iris)
    assert time.monotonic() - started < 2
    assert response.status_code == 201, response.content
    assert calls, "the run's task was published"
    run = Run.objects.get(pk=response.json()["id"])
    assert run.status == "queued" and run.dispatched_at is None  # the watchdog sends it later


@pytest.mark.django_db
def test_the_watchdog_on_a_polled_page_gives_up_fast_when_the_broker_is_down(client, people, iris, monkeypatch):
    import time
    from datetime import timedelta

    from django.utils import timezone

    from webapp.experiments import watchdog
    from webapp.experiments.tasks import train_run

    monkeypatch.setattr("webapp.experiments.services.choose_queue", lambda device: "cpu")
    client.force_login(people.editor)
    ids = [_create(client, people, iris, name=f"r{i}").json()["id"] for i in range(4)]
    Run.objects.filter(pk__in=ids).update(queued_at=timezone.now() - timedelta(minutes=1), dispatched_at=None)
    calls = []
    monkeypatch.setattr(train_run, "apply_async", _slow_unless_retry_off(calls))
    monkeypatch.setattr(watchdog, "_last_check", 0.0)
    started = time.monotonic()
    response = client.get(f"/api/v1/runs/{ids[0]}")
    assert time.monotonic() - started < 2
    assert response.status_code == 200
    assert len(calls) == 1  # one fast failure, not one per waiting run
    assert set(Run.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"queued"}
    assert not Run.objects.filter(pk__in=ids, dispatched_at__isnull=False).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("config, field", [
    ({"target": "no such column"}, "data_config.target"),
    ({"target": "species", "features": ["sepal length (cm)", "nope"]}, "data_config.features"),
])
def test_a_data_config_naming_a_missing_column_gives_400(client, people, iris, config, field):
    client.force_login(people.editor)
    response = client.post(f"/api/v1/workspaces/{people.workspace.slug}/runs",
                           {"dataset_version": iris.pk, "spec": iris_spec(), "data_config": config},
                           content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    sweep = _sweep(client, people, iris, count=2, data_config=config)
    assert sweep.status_code == 400 and sweep.json()["field"] == field
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_a_data_config_with_real_columns_is_accepted(client, people, iris):
    client.force_login(people.editor)
    columns = [c["name"] for c in iris.schema["columns"]]
    features = [c for c in columns if c != "species"][:2]
    response = _create(client, people, iris, data_config={"target": "species", "features": features})
    assert response.status_code == 201, response.content


@pytest.mark.django_db
def test_the_json_views_answer_only_get(client, people, iris):
    client.force_login(people.editor)
    run_id = _create(client, people, iris).json()["id"]
    ws = people.workspace.slug
    for url in (f"/w/{ws}/runs/{run_id}/live.json", f"/w/{ws}/runs/template.json?version={iris.pk}"):
        assert client.get(url).status_code == 200, url
        assert client.post(url).status_code == 405, url


@pytest.mark.django_db
def test_the_run_page_has_a_share_button_for_editors_only(client, people, iris):
    from webapp.accounts.models import ShareLink

    client.force_login(people.editor)
    run_id = _create(client, people, iris).json()["id"]
    ws = people.workspace.slug
    share_url = f"/w/{ws}/shares/?type=run&amp;id={run_id}".encode()
    for user in (people.editor, people.owner):
        client.force_login(user)
        page = client.get(f"/w/{ws}/runs/{run_id}/")
        assert page.status_code == 200
        assert share_url in page.content and b'data-testid="share"' in page.content
    client.force_login(people.viewer)
    page = client.get(f"/w/{ws}/runs/{run_id}/")
    assert page.status_code == 200 and b'data-testid="share"' not in page.content
    link = ShareLink.objects.create(workspace=people.workspace, created_by=people.owner, target_type="run",
                                    target_id=str(run_id))
    client.logout()
    shared = client.get(f"/s/{link.token}/")
    assert shared.status_code == 200 and b'data-testid="share"' not in shared.content
