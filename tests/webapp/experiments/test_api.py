"""The runs API: creating, reading, cancelling, predicting; errors name the field; roles are enforced."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from tests.webapp.experiments.conftest import FIXTURES, iris_spec
from webapp.experiments import execution, services
from webapp.experiments.models import Run


def _client(client, user):
    client.force_login(user)
    return client


def _create(client, people, iris, spec=None, **extra):
    body = {"dataset_version": iris.pk, "spec": spec or iris_spec(), "data_config": {"target": "species"}, **extra}
    return client.post(f"/api/v1/workspaces/{people.workspace.slug}/runs", body, content_type="application/json")


@pytest.mark.django_db
def test_it_creates_a_queued_run(client, people, iris):
    response = _create(_client(client, people.editor), people, iris, name="first")
    assert response.status_code == 201, response.content
    run = Run.objects.get(pk=response.json()["id"])
    assert run.status == "queued" and run.queue in ("cpu", "gpu") and run.name == "first"
    assert run.created_by == people.editor and run.seed == 1


@pytest.mark.django_db
@pytest.mark.parametrize("change, field", [
    (lambda s: s["layers"][0].update(units=-3), "layers[0].units"),
    (lambda s: s["layers"][1].update(type="Nope"), "layers[1].type"),
    (lambda s: s["compile"].update(loss="nonsense"), "compile.loss"),
    (lambda s: s["fit"].update(epochs=0), "fit.epochs"),
])
def test_an_invalid_spec_gives_400_naming_the_field(client, people, iris, change, field):
    spec = iris_spec()
    change(spec)
    response = _create(_client(client, people.owner), people, iris, spec=spec)
    assert response.status_code == 400
    assert response.json()["field"] == field, response.json()
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_a_model_whose_output_does_not_fit_the_target_gives_400_naming_its_last_layer(client, people, iris):
    spec = iris_spec()
    spec["layers"][-1]["units"] = 4  # iris has three species
    response = _create(_client(client, people.owner), people, iris, spec=spec)
    assert response.status_code == 400
    last = len(spec["layers"]) - 1
    assert response.json()["field"] == f"layers[{last}]"
    assert "the model outputs (4) but the target has 3 classes: it needs (3)" in response.json()["detail"]
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_a_bad_data_config_gives_400_naming_the_field(client, people, iris):
    body = {"dataset_version": iris.pk, "spec": iris_spec(), "data_config": {"test_fraction": 2}}
    response = _client(client, people.owner).post(f"/api/v1/workspaces/{people.workspace.slug}/runs", body,
                                                  content_type="application/json")
    assert response.status_code == 400
    assert response.json()["field"] == "data_config.test_fraction"


@pytest.mark.django_db
def test_the_viewer_cannot_start_or_cancel_runs(client, people, iris):
    assert _create(_client(client, people.viewer), people, iris).status_code == 403
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=iris_spec())
    assert client.post(f"/api/v1/runs/{run.pk}/cancel").status_code == 403
    assert client.get(f"/api/v1/runs/{run.pk}").status_code == 200
    run.refresh_from_db()
    assert run.status == "queued"


@pytest.mark.django_db
def test_an_outsider_gets_404_for_runs_and_their_workspace(client, people, iris):
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=iris_spec())
    _client(client, people.outsider)
    for url in (f"/api/v1/runs/{run.pk}", f"/api/v1/runs/{run.pk}/metrics", f"/api/v1/runs/{run.pk}/artifacts/spec"):
        assert client.get(url).status_code == 404
    assert client.post(f"/api/v1/runs/{run.pk}/cancel").status_code == 404
    assert client.get("/api/v1/runs/999999").status_code == 404
    assert _create(client, people, iris).status_code == 404
    # Their own workspace cannot use our data set version either.
    body = {"dataset_version": iris.pk, "spec": iris_spec()}
    response = client.post(f"/api/v1/workspaces/{people.other_workspace.slug}/runs", body,
                           content_type="application/json")
    assert response.status_code == 400 and response.json()["field"] == "dataset_version"
    assert client.get(f"/w/{people.workspace.slug}/runs/{run.pk}/").status_code == 404


@pytest.mark.django_db
def test_cancelling_a_queued_run_ends_it_at_once(client, people, iris):
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=iris_spec())
    response = _client(client, people.editor).post(f"/api/v1/runs/{run.pk}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert execution.run_execute(run.pk) == "skipped"


@pytest.mark.django_db
def test_predict_returns_what_trainer_gives_for_the_same_rows(client, people, iris):
    from trainer import Sequential
    from trainer import data as tdata
    from webapp.experiments import checkpoints

    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                              spec=iris_spec(epochs=8), data_config={"target": "species"})
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    csv = (FIXTURES / "iris.csv").read_bytes()
    response = _client(client, people.viewer).post(f"/api/v1/runs/{run.pk}/predict",
                                                   {"file": io.BytesIO(csv)}, format="multipart")
    assert response.status_code == 200, response.content
    answer = response.json()
    # The same by hand with the engine: stored preprocessing, stored weights.
    frame = pd.read_csv(FIXTURES / "iris.csv")
    x = tdata.TablePreprocessor.from_dict(run.preprocessing["features"]).transform(frame)
    spec = dict(run.spec, input_shape=run.preprocessing["input_shape"])
    model = Sequential.from_spec(spec)
    model.load_weights(str(checkpoints.weights_path(run)))
    expected = model.predict(x)
    np.testing.assert_allclose(np.asarray(answer["outputs"]), expected, rtol=1e-5, atol=1e-6)
    assert answer["columns"][:3] == ["row", "prediction", "confidence"]
    classes = tdata.LabelEncoder.from_dict(run.preprocessing["labels"]).classes_
    assert [row[1] for row in answer["rows"]] == [classes[i] for i in expected.argmax(axis=1)]
    accuracy = np.mean([row[1] == truth for row, truth in zip(answer["rows"], frame["species"])])
    assert accuracy > 0.6
    # JSON rows work too, and the CSV download.
    rows = frame.drop(columns=["species"]).head(3).to_dict(orient="records")
    response = client.post(f"/api/v1/runs/{run.pk}/predict?format=csv", {"rows": rows}, content_type="application/json")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.content.decode().splitlines()[0].startswith("row,prediction,confidence,p(")


@pytest.mark.django_db
def test_predict_names_a_missing_column(client, people, iris):
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                              spec=iris_spec(epochs=2), data_config={"target": "species"})
    execution.run_execute(run.pk)
    response = _client(client, people.owner).post(f"/api/v1/runs/{run.pk}/predict",
                                                  {"file": io.BytesIO(b"a,b\n1,2\n")}, format="multipart")
    assert response.status_code == 400
    assert "sepal length (cm)" in response.json()["detail"]


@pytest.mark.django_db
def test_artifacts_download_spec_and_weights(client, people, iris):
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                              spec=iris_spec(epochs=2), data_config={"target": "species"})
    execution.run_execute(run.pk)
    _client(client, people.viewer)
    spec = client.get(f"/api/v1/runs/{run.pk}/artifacts/spec")
    assert spec.status_code == 200 and spec.json()["input_shape"] == [4]
    weights = client.get(f"/api/v1/runs/{run.pk}/artifacts/weights")
    assert weights.status_code == 200 and b"".join(weights.streaming_content)[:2] == b"PK"


@pytest.mark.django_db
def test_the_summary_endpoint_gives_shapes_or_the_field(client, people, iris):
    _client(client, people.viewer)
    url = f"/api/v1/workspaces/{people.workspace.slug}/specs/summary"
    answer = client.post(url, {"spec": iris_spec(), "dataset_version": iris.pk}, content_type="application/json").json()
    assert answer["errors"] == []
    assert [row["output_shape"] for row in answer["summary"]["layers"]] == [[16], [3]]
    assert answer["summary"]["total_params"] == 4 * 16 + 16 + 16 * 3 + 3
    assert answer["data"]["task"] == "classification" and answer["data"]["outputs"] == 3
    bad = iris_spec()
    bad["layers"][0]["units"] = 0
    answer = client.post(url, {"spec": bad}, content_type="application/json").json()
    assert answer["errors"][0]["field"] == "layers[0].units"
