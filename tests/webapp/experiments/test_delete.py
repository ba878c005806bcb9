"""Deleting runs: from the run page, the dashboard's selection and the API; what goes with a run,
what is refused (active runs, runs a waiting continuation starts from, other people's runs)."""

from __future__ import annotations

import pytest

from tests.webapp.experiments.conftest import iris_spec
from webapp.accounts.models import Activity, ApiToken, ShareLink
from webapp.experiments import checkpoints, execution, services
from webapp.experiments.models import MetricRow, Run


def _trained(people, iris, user=None, name="baseline"):
    run = services.run_create(workspace=people.workspace, user=user or people.owner, dataset_version=iris,
                              spec=iris_spec(epochs=3), data_config={"target": "species"}, name=name)
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    return run


def _queued(people, iris, user=None, name="waiting"):
    return services.run_create(workspace=people.workspace, user=user or people.owner, dataset_version=iris,
                               spec=iris_spec(), data_config={"target": "species"}, name=name)


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


@pytest.mark.django_db
def test_deleting_a_run_takes_its_epochs_files_and_share_links_and_frees_its_data_set(
        client, people, iris, django_capture_on_commit_callbacks):
    run = _trained(people, iris)
    folder = checkpoints.run_dir(run)
    assert checkpoints.weights_path(run).exists() and MetricRow.objects.filter(run=run).count() == 3
    link = ShareLink.objects.create(workspace=people.workspace, created_by=people.owner, target_type="run",
                                    target_id=str(run.pk))
    assert client.get(f"/s/{link.token}/").status_code == 200
    client.force_login(people.viewer)
    page = client.get(f"/w/{people.workspace.slug}/datasets/{iris.dataset.pk}/").content.decode()
    assert "1 run</a> trained on it" in page and "train-on-it" not in page
    client.force_login(people.owner)
    page = client.get(f"/w/{people.workspace.slug}/datasets/{iris.dataset.pk}/").content.decode()
    assert f'href="/w/{people.workspace.slug}/?dataset={iris.dataset.pk}">1 run</a> trained on it' in page
    assert f'href="/w/{people.workspace.slug}/runs/new/?version={iris.pk}" data-testid="train-on-it"' in page
    refused = client.post(f"/w/{people.workspace.slug}/datasets/{iris.dataset.pk}/delete/", follow=True)
    assert any("is used by 1 run, so it cannot be deleted" in m for m in _messages(refused))

    page = client.get(run.get_absolute_url())
    assert b'data-testid="delete"' in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/w/{people.workspace.slug}/runs/{run.pk}/delete/", follow=True)
    assert response.redirect_chain[-1][0] == f"/w/{people.workspace.slug}/"
    assert any("Deleted baseline" in m for m in _messages(response))
    assert not Run.objects.filter(pk=run.pk).exists() and not MetricRow.objects.filter(run_id=run.pk).exists()
    assert not folder.exists()
    link.refresh_from_db()
    assert link.revoked_at is not None and client.get(f"/s/{link.token}/").status_code == 404
    record = Activity.objects.filter(verb="deleted", target_type="run").get()
    assert (record.actor, record.target_id, record.target_label) == (people.owner, str(run.pk), "baseline")
    assert client.get(run.get_absolute_url()).status_code == 404

    assert "No run has trained on it yet" in client.get(f"/w/{people.workspace.slug}/datasets/{iris.dataset.pk}/").content.decode()
    freed = client.post(f"/w/{people.workspace.slug}/datasets/{iris.dataset.pk}/delete/", follow=True)
    assert any("Deleted the data set" in m for m in _messages(freed))


@pytest.mark.django_db
def test_a_queued_or_running_run_is_kept_with_the_reason(client, people, iris):
    queued = _queued(people, iris)
    running = _queued(people, iris, name="busy")
    Run.objects.filter(pk=running.pk).update(status="running")
    client.force_login(people.owner)
    assert b'data-testid="delete"' not in client.get(queued.get_absolute_url()).content
    response = client.post(f"/w/{people.workspace.slug}/runs/{queued.pk}/delete/", follow=True)
    assert response.redirect_chain[-1][0] == queued.get_absolute_url()
    assert _messages(response) == ["waiting is queued: cancel it first, then delete it"]

    key = ApiToken.issue(user=people.owner, name="script")[1]
    answer = client.delete(f"/api/v1/runs/{running.pk}", headers={"authorization": f"Bearer {key}"})
    assert answer.status_code == 409 and answer.json()["detail"] == "busy is running: cancel it first, then delete it"
    assert Run.objects.filter(pk__in=[queued.pk, running.pk]).count() == 2

    services.run_cancel(run=queued, user=people.owner)
    assert client.delete(f"/api/v1/runs/{queued.pk}", headers={"authorization": f"Bearer {key}"}).status_code == 204
    assert not Run.objects.filter(pk=queued.pk).exists()


@pytest.mark.django_db
def test_a_run_is_kept_while_a_continuation_still_has_to_load_its_checkpoint(people, iris,
                                                                              django_capture_on_commit_callbacks):
    owner = people.workspace.memberships.get(user=people.owner)
    parent = _trained(people, iris)
    child = services.run_continue(run=parent, user=people.owner, epochs=2)
    with pytest.raises(services.RunInUse, match=r"baseline \+2 still has to start from its checkpoint"):
        services.run_delete(run=parent, user=people.owner, membership=owner)

    assert execution.run_execute(child.pk) == "succeeded"
    with django_capture_on_commit_callbacks(execute=True):
        services.run_delete(run=parent, user=people.owner, membership=owner)
    child.refresh_from_db()
    assert child.parent_id is None and child.from_epoch == 3 and child.epochs_done == 5
    assert checkpoints.weights_path(child).exists() and child.metric_rows.count() == 5
    assert not checkpoints.run_dir(parent.pk).exists()


@pytest.mark.django_db
def test_editors_delete_the_runs_they_started_and_owners_any(client, people, iris):
    mine = _trained(people, iris, user=people.editor, name="eddie's")
    theirs = _trained(people, iris, name="olga's")
    client.force_login(people.editor)
    assert b'data-testid="delete"' not in client.get(theirs.get_absolute_url()).content
    assert client.post(f"/w/{people.workspace.slug}/runs/{theirs.pk}/delete/").status_code == 403
    response = client.post(f"/w/{people.workspace.slug}/runs/delete/", {"runs": [mine.pk, theirs.pk]}, follow=True)
    assert _messages(response) == [
        "Deleted 1 run: eddie's.",
        "olga's: only the person who started it or a workspace owner may delete it",
    ]
    assert list(Run.objects.values_list("name", flat=True)) == ["olga's"]

    client.force_login(people.viewer)
    assert b'id="delete-button"' not in client.get(f"/w/{people.workspace.slug}/").content
    assert client.post(f"/w/{people.workspace.slug}/runs/delete/", {"runs": [theirs.pk]}).status_code == 403
    client.force_login(people.owner)
    assert b'id="delete-button"' in client.get(f"/w/{people.workspace.slug}/").content
    response = client.post(f"/w/{people.workspace.slug}/runs/delete/", {"runs": [theirs.pk]}, follow=True)
    assert _messages(response) == ["Deleted 1 run: olga's."] and not Run.objects.exists()


@pytest.mark.django_db
def test_the_dashboards_selection_deletes_only_its_own_workspaces_finished_runs(client, people, iris):
    from tests.webapp.experiments.conftest import make_version

    done = [_trained(people, iris, name=f"done {i}") for i in range(2)]
    waiting = _queued(people, iris)
    elsewhere_version = make_version(people.other_workspace, people.outsider, "iris.csv", target="species")
    elsewhere = services.run_create(workspace=people.other_workspace, user=people.outsider,
                                    dataset_version=elsewhere_version, spec=iris_spec(), name="not yours")
    Run.objects.filter(pk=elsewhere.pk).update(status="succeeded")
    client.force_login(people.owner)
    response = client.post(f"/w/{people.workspace.slug}/runs/delete/",
                           {"runs": [r.pk for r in done] + [waiting.pk, elsewhere.pk, 99999]}, follow=True)
    assert _messages(response) == ["Deleted 2 runs: done 0, done 1.",
                                   "waiting is queued: cancel it first, then delete it"]
    assert set(Run.objects.values_list("name", flat=True)) == {"waiting", "not yours"}
    assert _messages(client.post(f"/w/{people.workspace.slug}/runs/delete/", follow=True)) == ["No run was selected."]


@pytest.mark.django_db
def test_once_a_sweeps_runs_are_deleted_its_data_set_can_go_and_the_sweep_with_it(people, iris):
    from webapp.datasets import services as datasets
    from webapp.experiments.models import Sweep

    owner = people.workspace.memberships.get(user=people.owner)
    sweep = services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                  spec=iris_spec(epochs=1), data_config={"target": "species"},
                                  space={"learning_rate": [0.01, 0.1]})
    runs = list(sweep.runs.order_by("pk"))
    for run in runs:
        services.run_cancel(run=run, user=people.owner)
    services.run_delete(run=runs[0], user=people.owner, membership=owner)
    with pytest.raises(datasets.DatasetError, match="is used by 1 run, so it cannot be deleted"):
        datasets.dataset_delete(dataset=iris.dataset, user=people.owner)
    assert Sweep.objects.filter(pk=sweep.pk).exists()
    services.run_delete(run=runs[1], user=people.owner, membership=owner)
    datasets.dataset_delete(dataset=iris.dataset, user=people.owner)
    assert not Sweep.objects.exists()


@pytest.mark.django_db
def test_a_sweep_is_cancelled_in_one_go_then_deleted_with_its_runs(client, people, iris,
                                                                    django_capture_on_commit_callbacks):
    from webapp.experiments.models import Sweep

    sweep = services.sweep_create(workspace=people.workspace, user=people.editor, dataset_version=iris,
                                  spec=iris_spec(epochs=2), data_config={"target": "species"},
                                  space={"learning_rate": [0.01, 0.03, 0.1]})
    first, second, third = sweep.runs.order_by("pk")
    assert execution.run_execute(first.pk) == "succeeded"
    Run.objects.filter(pk=second.pk).update(status="running")
    url = sweep.get_absolute_url()
    client.force_login(people.editor)
    page = client.get(url)
    assert b'data-testid="cancel-sweep"' in page.content and b'data-testid="delete-sweep"' not in page.content

    refused = client.post(f"{url}delete/", follow=True)
    assert _messages(refused) == ["The sweep was kept: " + f"{second.display_name} is running: cancel it first, "
                                                           "then delete it"]
    assert Run.objects.filter(sweep=sweep).count() == 3 and checkpoints.weights_path(first).exists()

    cancelled = client.post(f"{url}cancel/", follow=True)
    assert _messages(cancelled)[0].startswith("Cancelling 2 runs of the sweep")
    statuses = dict(Run.objects.filter(sweep=sweep).values_list("pk", "status"))
    assert statuses == {first.pk: "succeeded", second.pk: "running", third.pk: "cancelled"}
    assert Run.objects.get(pk=second.pk).cancel_requested
    Run.objects.filter(pk=second.pk).update(status="cancelled")  # as its worker does after the current batch

    client.force_login(people.viewer)
    assert client.post(f"{url}delete/").status_code == 403
    client.force_login(people.editor)
    assert b'data-testid="delete-sweep"' in client.get(url).content
    with django_capture_on_commit_callbacks(execute=True):
        gone = client.post(f"{url}delete/", follow=True)
    assert _messages(gone) == [f"Deleted the sweep “{sweep.name}” and its 3 runs."]
    assert not Sweep.objects.exists() and not Run.objects.exists()
    assert not checkpoints.run_dir(first).exists()
    assert Activity.objects.filter(verb="deleted").count() == 4  # three runs and the sweep


@pytest.mark.django_db
def test_the_dashboards_selection_cancels_only_its_workspaces_active_runs(client, people, iris):
    done = _trained(people, iris, name="done")
    queued = _queued(people, iris, name="waiting")
    running = _queued(people, iris, name="busy")
    Run.objects.filter(pk=running.pk).update(status="running")
    client.force_login(people.editor)
    response = client.post(f"/w/{people.workspace.slug}/runs/cancel/",
                           {"runs": [done.pk, queued.pk, running.pk, 99999]}, follow=True)
    assert _messages(response) == [("Cancelling 2 runs: waiting, busy. Queued ones never start, running ones stop "
                                    "after their current batch.")]
    states = {r.name: (r.status, r.cancel_requested) for r in Run.objects.all()}
    assert states == {"done": ("succeeded", False), "waiting": ("cancelled", True), "busy": ("running", True)}
    again = client.post(f"/w/{people.workspace.slug}/runs/cancel/", {"runs": [running.pk]}, follow=True)
    assert _messages(again) == ["None of the selected runs is queued or running."]
    client.force_login(people.viewer)
    assert client.post(f"/w/{people.workspace.slug}/runs/cancel/", {"runs": [running.pk]}).status_code == 403
