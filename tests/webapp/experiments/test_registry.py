"""The model registry: runs registered under a name, one version in production, predictions and
downloads by the model's name, and what keeps a registered run from being deleted."""

from __future__ import annotations

import io

import pytest

from tests.webapp.experiments.conftest import iris_spec
from webapp.experiments import execution, services
from webapp.experiments.models import ModelVersion, RegisteredModel, Run

ROWS = "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"

pytestmark = pytest.mark.django_db


def trained(people, iris, rate: float) -> Run:
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                              spec=iris_spec(epochs=3, learning_rate=rate), data_config={"target": "species"})
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    return run


@pytest.fixture
def runs(people, iris):
    return trained(people, iris, 0.05), trained(people, iris, 0.01)


def predict(client, url):
    return client.post(url, {"file": io.BytesIO(ROWS.encode())}, format="multipart")


def test_a_run_registered_under_a_new_name_is_its_models_first_version_in_production(client, people, runs):
    first, second = runs
    client.force_login(people.editor)
    answer = client.post(f"/w/{people.workspace.slug}/runs/{first.pk}/register/", {"model": "Iris  classifier",
                                                                                 "note": "the baseline"})
    model = RegisteredModel.objects.get()
    assert answer.status_code == 302 and answer["Location"] == model.get_absolute_url()
    assert model.name == "Iris classifier" and model.production.run == first and model.production.note == "the baseline"
    # The same name in other letters is the same model; its second version waits to be put in production.
    answer = client.post(f"/api/v1/runs/{second.pk}/register", {"model": "iris CLASSIFIER"},
                         content_type="application/json")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["production"] == {"number": 1, "run": first.pk}
    assert [(v["number"], v["run"], v["in_production"]) for v in body["versions"]] == [(2, second.pk, False),
                                                                                     (1, first.pk, True)]
    assert body["versions"][0]["metric"] == second.best_metric_name and body["versions"][0]["test"]["accuracy"] >= 0
    page = client.get(model.get_absolute_url()).content.decode()
    assert "the baseline" in page and 'data-testid="promote-2"' in page and 'data-testid="promote-1"' not in page
    assert "Version 1 of" in client.get(first.get_absolute_url()).content.decode()
    listed = client.get(f"/api/v1/workspaces/{people.workspace.slug}/models").json()["models"]
    assert [(m["name"], m["production"]) for m in listed] == [("Iris classifier", {"number": 1, "run": first.pk})]


def test_predictions_by_the_models_name_come_from_the_version_in_production(client, people, runs):
    first, second = runs
    from webapp.experiments import registry

    model = registry.register(run=first, user=people.owner, name="iris").model
    registry.register(run=second, user=people.owner, name="iris")
    client.force_login(people.viewer)
    by_run = {run.pk: predict(client, f"/api/v1/runs/{run.pk}/predict").json()["outputs"] for run in runs}
    assert by_run[first.pk] != by_run[second.pk]
    answer = predict(client, f"/api/v1/models/{model.pk}/predict").json()
    assert (answer["version"], answer["run"], answer["outputs"]) == (1, first.pk, by_run[first.pk])
    assert predict(client, f"/api/v1/models/{model.pk}/predict?version=2").json()["outputs"] == by_run[second.pk]
    assert client.post(f"/api/v1/models/{model.pk}/production", {"version": 2},
                       content_type="application/json").status_code == 403  # a viewer reads, never promotes
    client.force_login(people.editor)
    answer = client.post(f"/w/{people.workspace.slug}/models/{model.pk}/production/", {"version": "2"})
    assert answer.status_code == 302
    answer = predict(client, f"/api/v1/models/{model.pk}/predict").json()
    assert (answer["version"], answer["outputs"]) == (2, by_run[second.pk])
    weights = client.get(f"/api/v1/models/{model.pk}/artifacts/weights")
    assert weights.status_code == 200 and b"".join(weights.streaming_content)[:2] == b"PK"  # an .npz
    csv = client.post(f"/api/v1/models/{model.pk}/predict?format=csv", {"file": io.BytesIO(ROWS.encode())},
                      format="multipart")
    assert 'filename="iris-v2-predictions.csv"' in csv["Content-Disposition"]
    missing = client.post(f"/api/v1/models/{model.pk}/predict?version=7", {"file": io.BytesIO(ROWS.encode())},
                          format="multipart")
    assert missing.status_code == 400 and missing.json()["field"] == "version"
    assert "iris has no version 7" in missing.json()["detail"]


def test_a_registered_run_is_kept_until_its_version_is_removed(client, people, runs):
    first, second = runs
    from webapp.experiments import registry

    model = registry.register(run=first, user=people.owner, name="iris").model
    registry.register(run=second, user=people.editor, name="iris")
    client.force_login(people.owner)
    page = client.get(first.get_absolute_url()).content.decode()
    assert 'data-testid="delete"' not in page and "remove its version there to delete it" in page
    assert 'data-testid="compare-versions"' in client.get(model.get_absolute_url()).content.decode()
    refused = client.delete(f"/api/v1/runs/{first.pk}")
    assert refused.status_code == 409
    assert "version 1 of the model iris: remove it from the model first" in refused.json()["detail"]
    # The version in production goes only when no other is left.
    kept = client.delete(f"/api/v1/models/{model.pk}/versions/1")
    assert kept.status_code == 400 and "v1 is in production; put another version there first" in kept.json()["detail"]
    client.force_login(people.editor)  # the editor registered v2, and may take it out again
    assert client.delete(f"/api/v1/models/{model.pk}/versions/2").status_code == 204
    assert client.delete(f"/api/v1/models/{model.pk}/versions/1").status_code == 403  # the owner's
    client.force_login(people.owner)
    assert client.delete(f"/api/v1/models/{model.pk}/versions/1").status_code == 204
    model.refresh_from_db()
    assert model.production is None and not model.versions.exists()
    empty = predict(client, f"/api/v1/models/{model.pk}/predict")
    assert empty.status_code == 400 and "iris has no version in production" in empty.json()["detail"]
    assert client.delete(f"/api/v1/runs/{first.pk}").status_code == 204
    assert client.delete(f"/api/v1/models/{model.pk}").status_code == 204
    assert Run.objects.filter(pk=second.pk).exists()  # deleting a model leaves its runs


@pytest.mark.parametrize("name, field, message", [
    ("", "model", "a model needs a name"),
    ("x" * 101, "model", "at most 100 characters"),
    ("bad\x00name", "model", "control characters"),
    (["iris"], "model", "a model needs a name"),
    ({"model": "iris", "note": "n" * 2001}, "note", "at most 2000 characters"),
    ({"model": "iris", "note": 7}, "note", "text of at most"),
])
def test_a_bad_name_or_note_is_refused_naming_the_field(client, people, runs, name, field, message):
    client.force_login(people.editor)
    body = name if isinstance(name, dict) else {"model": name}
    answer = client.post(f"/api/v1/runs/{runs[0].pk}/register", body, content_type="application/json")
    assert answer.status_code == 400 and answer.json()["field"] == field and message in answer.json()["detail"]
    assert not RegisteredModel.objects.exists()


def test_only_a_run_with_final_weights_is_registered_and_only_once_per_model(client, people, iris, runs):
    queued = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                 spec=iris_spec(epochs=1), data_config={"target": "species"})
    client.force_login(people.editor)
    answer = client.post(f"/api/v1/runs/{queued.pk}/register", {"model": "iris"}, content_type="application/json")
    assert answer.status_code == 400 and answer.json()["detail"].endswith("is queued")
    Run.objects.filter(pk=queued.pk).update(status="cancelled")  # cancelled before it trained: no weights
    answer = client.post(f"/api/v1/runs/{queued.pk}/register", {"model": "iris"}, content_type="application/json")
    assert answer.status_code == 400 and answer.json()["detail"].endswith("is cancelled without final weights")
    assert client.post(f"/api/v1/runs/{runs[0].pk}/register", {"model": "iris"},
                       content_type="application/json").status_code == 201
    again = client.post(f"/api/v1/runs/{runs[0].pk}/register", {"model": "Iris"}, content_type="application/json")
    assert again.status_code == 400 and "is already version 1 of iris" in again.json()["detail"]
    assert ModelVersion.objects.count() == 1
    # In the page, the same refusal is a message on the run's page.
    page = client.post(f"/w/{people.workspace.slug}/runs/{runs[0].pk}/register/", {"model": "iris"}, follow=True)
    assert "is already version 1 of iris" in page.content.decode()


def test_an_editor_describes_a_model_which_its_page_and_the_api_show(client, people, runs):
    from webapp.experiments import registry

    model = registry.register(run=runs[0], user=people.owner, name="iris").model
    client.force_login(people.editor)
    answer = client.patch(f"/api/v1/models/{model.pk}", {"description": "  Flowers by their petals <b>.  "},
                          content_type="application/json")
    assert answer.status_code == 200 and answer.json()["description"] == "Flowers by their petals <b>."
    page = client.get(model.get_absolute_url()).content.decode()
    assert "Flowers by their petals &lt;b&gt;." in page
    refused = client.post(f"/w/{people.workspace.slug}/models/{model.pk}/describe/", {"description": "x" * 2001},
                          follow=True)
    assert "description: text of at most 2000 characters" in refused.content.decode()
    model.refresh_from_db()
    assert model.description == "Flowers by their petals <b>."


def test_a_model_name_with_markup_is_shown_as_text(client, people, runs):
    from webapp.experiments import registry

    model = registry.register(run=runs[0], user=people.owner, name="<script>alert(1)</script>").model
    client.force_login(people.viewer)
    for url in (model.get_absolute_url(), f"/w/{people.workspace.slug}/models/", runs[0].get_absolute_url()):
        page = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page, url


def test_a_registered_run_goes_only_with_its_whole_workspace(people, runs):
    from django.db.models import RestrictedError

    from webapp.experiments import registry

    registry.register(run=runs[0], user=people.owner, name="iris")
    with pytest.raises(RestrictedError):
        Run.objects.filter(pk=runs[0].pk).delete()  # not on its own, even past the service's check
    people.workspace.delete()
    assert not RegisteredModel.objects.exists() and not Run.objects.filter(pk=runs[0].pk).exists()
