"""Prediction jobs: a finished run predicts every row (or image) of a data set version on a worker."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from unittest import mock

import pandas as pd
import pytest
from django.utils import timezone

from tests.webapp.experiments.conftest import FIXTURES, iris_spec, make_version, small_cnn_spec
from webapp.experiments import batch, execution, prediction, services, watchdog
from webapp.experiments.models import PredictionJob
from webapp.experiments.tasks import predict_dataset


def _trained(people, version, spec, data_config=None):
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=version, spec=spec,
                              data_config=data_config or {})
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    return run


def _job(people, run, version, outcome="succeeded") -> PredictionJob:
    """A job of ``run`` on ``version``, started by the editor and worked out in-process, as it ended."""
    with mock.patch.object(predict_dataset, "apply_async"):
        job = services.prediction_job_create(run=run, dataset_version=version, user=people.editor)
    assert batch.job_execute(job.pk) == outcome
    return PredictionJob.objects.get(pk=job.pk)


def _rows(path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


@pytest.mark.django_db
def test_a_job_predicts_every_row_as_a_request_would_with_the_data_sets_own_answer(people, iris, monkeypatch):
    run = _trained(people, iris, iris_spec(epochs=10), {"target": "species"})
    monkeypatch.setattr(batch, "CHUNK_ROWS", 40)  # 150 rows in four chunks
    with mock.patch.object(predict_dataset, "apply_async"):
        job = services.prediction_job_create(run=run, dataset_version=iris, user=people.editor)
    assert job.status == "queued"
    assert batch.job_execute(job.pk) == "succeeded"
    job.refresh_from_db()
    assert (job.status, job.rows, job.total) == ("succeeded", 150, 150) and job.finished_at
    written = _rows(batch.output_path(job))
    expected = prediction.predict_file(run, (FIXTURES / "iris.csv").read_bytes(), "iris.csv")
    assert written[0] == expected["columns"] + ["actual"]
    assert [row[:2] for row in written[1:]] == [[str(r[0]), r[1]] for r in expected["rows"]]
    for ours, theirs in zip(written[1:], expected["rows"]):
        assert [float(v) for v in ours[2:-1]] == pytest.approx(theirs[2:], abs=1e-6)
    assert [row[-1] for row in written[1:]] == pd.read_csv(FIXTURES / "iris.csv")["species"].tolist()
    # Scored against those answers over the four chunks, as the file has it, beside its test split's accuracy.
    right = sum(row[1] == row[-1] for row in written[1:])
    scores = job.scores
    assert scores["rows"] == 150 and scores["missing"] == 0 and scores["unknown"]["rows"] == 0
    assert scores["accuracy"] == pytest.approx(right / 150)
    assert scores["test"] == {"accuracy": run.results["test"]["accuracy"]}
    matrix = scores["confusion_matrix"]
    assert scores["class_names"] == run.results["class_names"] and sum(map(sum, matrix)) == 150
    assert sum(matrix[i][i] for i in range(3)) == right
    assert [c["support"] for c in scores["per_class"]] == [50, 50, 50]  # iris: 50 of each
    assert batch.job_execute(job.pk) == "skipped"  # a redelivered message finds it done
    from webapp.accounts.models import Notification

    told = Notification.objects.get(user=people.editor)
    line = (f"accuracy {right / 150:.4g} ({run.results['test']['accuracy']:.4g} on its test split) "
            f"on 150 answered rows (the data it trained on: most of these rows trained it)")
    assert job.score_line == line
    assert told.message == f"Predictions of {run.display_name} on Iris v1 succeeded: 150 rows; {line}"
    assert told.link.endswith("/predict/#jobs")


@pytest.mark.django_db
def test_a_job_on_data_that_lacks_a_column_fails_naming_it_and_leaves_no_file(people, iris, tmp_path):
    run = _trained(people, iris, iris_spec(epochs=2), {"target": "species"})
    frame = pd.read_csv(FIXTURES / "iris.csv").drop(columns=["petal width (cm)"])
    frame.to_csv(tmp_path / "cut.csv", index=False)
    job = _job(people, run, make_version(people.workspace, people.owner, str(tmp_path / "cut.csv"), name="Cut"), "failed")
    assert job.status == "failed" and "the data set has no column 'petal width (cm)'" in job.reason and "Cut v1" in job.reason
    assert not batch.output_path(job).exists() and not batch.output_path(job).with_suffix(".part").exists()


@pytest.mark.django_db
def test_an_image_job_predicts_every_image_with_its_folder_as_the_answer(people):
    digits = make_version(people.workspace, people.owner, "digits8x8.zip", name="Digits")
    spec = small_cnn_spec(epochs=2)
    run = _trained(people, digits, spec)
    with mock.patch.object(predict_dataset, "apply_async"):
        job = services.prediction_job_create(run=run, dataset_version=digits, user=people.editor)
    assert batch.job_execute(job.pk) == "succeeded"
    written = _rows(batch.output_path(PredictionJob.objects.get(pk=job.pk)))
    assert written[0][:2] == ["image", "prediction"] and written[0][-1] == "actual"
    assert len(written) - 1 == digits.n_rows
    right = sum(row[1] == row[-1] for row in written[1:]) / (len(written) - 1)
    assert right > 0.5  # a trained model's predictions beside the folders they came from


@pytest.mark.django_db
def test_a_job_is_refused_for_an_unfinished_run_another_kind_of_data_or_too_many_at_once(people, iris):
    run = _trained(people, iris, iris_spec(epochs=2), {"target": "species"})
    digits = make_version(people.workspace, people.owner, "digits8x8.zip", name="Digits")
    with pytest.raises(services.InvalidInput, match="Digits v1 holds images, and this run predicts from table"):
        services.prediction_job_create(run=run, dataset_version=digits, user=people.editor)
    elsewhere = make_version(people.other_workspace, people.outsider, "iris.csv", name="Theirs")
    with pytest.raises(services.InvalidInput, match="no such data set version in this workspace"):
        services.prediction_job_create(run=run, dataset_version=elsewhere, user=people.editor)
    queued = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                 spec=iris_spec(epochs=2), data_config={"target": "species"})
    with pytest.raises(services.InvalidInput, match="only a finished run"):
        services.prediction_job_create(run=queued, dataset_version=iris, user=people.editor)
    with mock.patch.object(predict_dataset, "apply_async"):
        for _ in range(batch.MAX_ACTIVE_PER_RUN):
            services.prediction_job_create(run=run, dataset_version=iris, user=people.editor)
        with pytest.raises(services.InvalidInput, match="already has 3 prediction jobs queued or running"):
            services.prediction_job_create(run=run, dataset_version=iris, user=people.editor)


@pytest.mark.django_db
def test_a_job_whose_worker_died_fails_and_one_the_broker_never_got_says_so(people, iris, django_capture_on_commit_callbacks):
    run = _trained(people, iris, iris_spec(epochs=2), {"target": "species"})
    with mock.patch.object(predict_dataset, "apply_async", side_effect=ConnectionError("Redis is down")), \
            django_capture_on_commit_callbacks(execute=True):
        lost = services.prediction_job_create(run=run, dataset_version=iris, user=people.editor)
    lost.refresh_from_db()
    assert lost.status == "failed" and "could not be reached" in lost.reason
    with mock.patch.object(predict_dataset, "apply_async"):
        job = services.prediction_job_create(run=run, dataset_version=iris, user=people.editor)
    stale = timezone.now() - timedelta(minutes=30)
    PredictionJob.objects.filter(pk=job.pk).update(status="running", heartbeat_at=stale, rows=40, total=150)
    assert watchdog.check_runs()["prediction_jobs_failed"] == [job.pk]
    job.refresh_from_db()
    assert job.status == "failed" and "stopped responding after 40 of 150 rows" in job.reason
    from webapp.accounts.models import Notification

    assert [n.level for n in Notification.objects.filter(user=people.editor)] == ["error", "error"]  # both said so
    assert batch.job_execute(job.pk) == "skipped"


@pytest.mark.django_db
def test_the_predict_page_starts_a_job_lists_it_and_serves_its_file(client, people, iris, django_capture_on_commit_callbacks):
    run = _trained(people, iris, iris_spec(epochs=2), {"target": "species"})
    page_url = f"/w/{people.workspace.slug}/runs/{run.pk}/predict/"
    start_url = f"/w/{people.workspace.slug}/runs/{run.pk}/predict-dataset/"
    client.force_login(people.viewer)
    assert 'data-testid="predict-dataset-form"' not in client.get(page_url).content.decode()
    assert client.post(start_url, {"dataset_version": iris.pk}).status_code == 403
    client.force_login(people.editor)
    assert f'<option value="{iris.pk}">Iris v1 · 150 rows</option>' in client.get(page_url).content.decode()
    with mock.patch.object(predict_dataset, "apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            page = client.post(start_url, {"dataset_version": iris.pk}, follow=True).content.decode()
        job = PredictionJob.objects.get()
        send.assert_called_once_with(args=[job.pk], kwargs={"queue": "default"}, queue="default")
    assert "A worker is predicting every row of Iris v1" in page and "autoreload.js" in page
    assert client.post(start_url, {"dataset_version": "x"}, follow=True).status_code == 200
    predict_dataset(job.pk)  # what the worker runs
    page = client.get(page_url).content.decode()
    assert 'data-testid="job-download"' in page and "autoreload.js" not in page
    client.force_login(people.viewer)
    download = client.get(f"/w/{people.workspace.slug}/runs/{run.pk}/predictions/{job.pk}.csv")
    assert download.status_code == 200 and download["Content-Disposition"].endswith(f'run-{run.pk}-predictions-{job.pk}.csv"')
    assert b"".join(download.streaming_content) == batch.output_path(job).read_bytes()
    assert client.get(f"/w/{people.workspace.slug}/runs/{run.pk}/predictions/{job.pk + 1}.csv").status_code == 404
    path = batch.output_path(job)
    PredictionJob.objects.filter(pk=job.pk).delete()  # as with its data set, run or workspace: the file goes too
    assert path.parent.exists() and not path.exists()


@pytest.mark.django_db
def test_the_api_starts_reads_and_downloads_a_job(client, people, iris):
    run = _trained(people, iris, iris_spec(epochs=2), {"target": "species"})
    client.force_login(people.editor)
    with mock.patch.object(predict_dataset, "apply_async"):
        response = client.post(f"/api/v1/runs/{run.pk}/prediction-jobs", {"dataset_version": iris.pk},
                               content_type="application/json")
        assert response.status_code == 202, response.content
        bad = client.post(f"/api/v1/runs/{run.pk}/prediction-jobs", {"dataset_version": "1"},
                          content_type="application/json")
    assert bad.status_code == 400 and bad.json()["field"] == "dataset_version"
    body = response.json()
    assert body["status"] == "queued" and body["download"] is None
    batch.job_execute(body["id"])
    done = client.get(f"/api/v1/prediction-jobs/{body['id']}").json()
    assert done["status"] == "succeeded" and done["rows"] == 150
    download = client.get(done["download"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content).decode().splitlines()[0].endswith(",actual")
    client.force_login(people.outsider)
    assert client.get(f"/api/v1/prediction-jobs/{body['id']}").status_code == 404


@pytest.mark.django_db
def test_a_model_predicts_a_data_set_by_its_name_with_the_version_in_production(client, people, iris,
                                                                               django_capture_on_commit_callbacks):
    from webapp.experiments import registry

    run = _trained(people, iris, iris_spec(epochs=2), {"target": "species"})
    model = registry.register(run=run, user=people.editor, name="flowers").model
    client.force_login(people.editor)
    with mock.patch.object(predict_dataset, "apply_async") as send, django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/models/{model.pk}/prediction-jobs", {"dataset_version": iris.pk},
                               content_type="application/json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["model"], body["version"], body["run"]) == ("flowers", 1, run.pk)
    send.assert_called_once_with(args=[body["id"]], kwargs={"queue": "default"}, queue="default")
    missing = client.post(f"/api/v1/models/{model.pk}/prediction-jobs?version=7", {"dataset_version": iris.pk},
                          content_type="application/json")
    assert missing.status_code == 400 and "has no version 7" in missing.json()["detail"]


@pytest.mark.django_db
def test_a_series_job_predicts_the_step_after_every_window_as_a_request_would(client, people):
    from tests.webapp.experiments.test_images_and_series import trained_series_run

    co2 = make_version(people.workspace, people.owner, "co2_weekly.csv", name="CO2", kind="series")
    run = trained_series_run(client, people, co2, {"window": 12, "horizon": 1}, epochs=1)
    with mock.patch.object(predict_dataset, "apply_async"):
        job = services.prediction_job_create(run=run, dataset_version=co2, user=people.editor)
    assert batch.job_execute(job.pk) == "succeeded"
    written = _rows(batch.output_path(job))
    expected = prediction.predict_file(run, (FIXTURES / "co2_weekly.csv").read_bytes(), "co2.csv")
    assert written[0] == expected["columns"] and len(written) - 1 == len(expected["rows"])
    assert [int(row[0]) for row in written[1:]] == [r[0] for r in expected["rows"]]
    assert [float(row[1]) for row in written[1:]] == pytest.approx([r[1] for r in expected["rows"]], abs=1e-6)


@pytest.mark.django_db
def test_a_job_that_ended_is_deleted_with_its_file_by_its_starter_and_not_while_it_works(client, people, iris):
    run = _trained(people, iris, iris_spec(epochs=2), {"target": "species"})
    with mock.patch.object(predict_dataset, "apply_async"):
        job = services.prediction_job_create(run=run, dataset_version=iris, user=people.editor)
    url = f"/w/{people.workspace.slug}/runs/{run.pk}/predictions/{job.pk}/delete/"
    client.force_login(people.editor)
    page = client.post(url, follow=True).content.decode()
    assert "it is still queued or running" in page and PredictionJob.objects.filter(pk=job.pk).exists()
    batch.job_execute(job.pk)
    path = batch.output_path(job)
    assert path.exists() and 'data-testid="job-delete"' in client.get(
        f"/w/{people.workspace.slug}/runs/{run.pk}/predict/").content.decode()
    client.force_login(people.viewer)
    assert client.post(url).status_code == 403
    client.force_login(people.editor)
    assert client.delete(f"/api/v1/prediction-jobs/{job.pk}").status_code == 204
    assert not PredictionJob.objects.filter(pk=job.pk).exists() and not path.exists()


@pytest.mark.django_db
def test_a_data_sets_predict_page_offers_the_runs_that_read_it_models_first_naming_what_they_lack(
        client, people, iris, tmp_path):
    from webapp.experiments import registry

    older = _trained(people, iris, iris_spec(epochs=1), {"target": "species"})
    newer = _trained(people, iris, iris_spec(epochs=1), {"target": "species"})
    registry.register(run=older, user=people.editor, name="iris model")
    path = tmp_path / "iris_short.csv"
    pd.read_csv(FIXTURES / "iris.csv").drop(columns=["petal width (cm)"]).to_csv(path, index=False)
    short = make_version(people.workspace, people.owner, str(path), name="Iris without a column")
    digits = make_version(people.workspace, people.owner, "digits8x8.zip", name="Digits", kind="images")

    client.force_login(people.editor)
    page = client.get(f"/w/{people.workspace.slug}/predict/{iris.pk}/")
    assert [c["run"].pk for c in page.context["candidates"]] == [older.pk, newer.pk]  # the model in production first
    assert page.context["candidates"][0]["models"] == ["iris model v1"]
    assert page.content.decode().count('data-testid="predict-with"') == 2
    lacking = client.get(f"/w/{people.workspace.slug}/predict/{short.pk}/")
    assert all(c["missing"] == ["petal width (cm)"] for c in lacking.context["candidates"])
    assert 'data-testid="predict-with"' not in lacking.content.decode()
    images = client.get(f"/w/{people.workspace.slug}/predict/{digits.pk}/")
    assert images.context["candidates"] == [] and 'data-testid="no-candidates"' in images.content.decode()

    with mock.patch.object(predict_dataset, "apply_async"):
        response = client.post(f"/w/{people.workspace.slug}/runs/{newer.pk}/predict-dataset/",
                               {"dataset_version": iris.pk})
    assert response.status_code == 302
    job = PredictionJob.objects.get()
    assert batch.job_execute(job.pk) == "succeeded"
    listed = client.get(f"/w/{people.workspace.slug}/predict/{iris.pk}/")
    assert [j.pk for j in listed.context["jobs"]] == [job.pk]
    assert f"/runs/{newer.pk}/predictions/{job.pk}.csv" in listed.content.decode()
    assert f'href="/w/{people.workspace.slug}/datasets/{iris.dataset_id}/?v=1"' in listed.content.decode()
    dataset_page = client.get(f"/w/{people.workspace.slug}/datasets/{iris.dataset_id}/").content.decode()
    assert f'href="/w/{people.workspace.slug}/predict/{iris.pk}/"' in dataset_page
    client.force_login(people.outsider)
    assert client.get(f"/w/{people.workspace.slug}/predict/{iris.pk}/").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(("preference", "gpu_worker", "queue"), [
    ("auto", True, "gpu"), ("gpu", True, "gpu"), ("cpu", True, "default"), ("auto", False, "default"),
    ("gpu", False, "default")])  # a prediction never waits for a GPU that is not there
def test_a_job_goes_to_a_live_gpu_worker_when_its_run_may_use_one(people, iris, monkeypatch, preference, gpu_worker,
                                                                  queue, django_capture_on_commit_callbacks):
    from webapp.experiments.models import Run

    run = _trained(people, iris, iris_spec(epochs=1), {"target": "species"})
    Run.objects.filter(pk=run.pk).update(device_preference=preference)
    run.refresh_from_db()
    monkeypatch.setattr("webapp.core.presence.live_workers",
                        lambda: [{"queues": ["gpu"] if gpu_worker else ["default", "cpu"]}])
    with mock.patch.object(predict_dataset, "apply_async") as send, django_capture_on_commit_callbacks(execute=True):
        job = services.prediction_job_create(run=run, dataset_version=iris, user=people.editor)
    assert send.call_args.kwargs == {"args": [job.pk], "kwargs": {"queue": queue}, "queue": queue}
    chosen = []
    monkeypatch.setattr(execution, "use_device", chosen.append)
    assert batch.job_execute(job.pk, queue=queue) == "succeeded" and chosen == [queue]


def test_a_cached_model_is_one_per_device_as_a_workers_runs_switch_it(monkeypatch):
    from types import SimpleNamespace

    from trainer import backend

    run = SimpleNamespace(pk=-7, spec=iris_spec(epochs=1), preprocessing={"input_shape": [4]})
    path = mock.Mock(**{"exists.return_value": True, "stat.return_value": mock.Mock(st_mtime_ns=1)})
    monkeypatch.setattr("webapp.experiments.checkpoints.weights_path", lambda run: path)
    monkeypatch.setattr("trainer.Sequential.load_weights", lambda self, path: None)
    first = prediction.load_model(run)
    assert prediction.load_model(run) is first
    monkeypatch.setattr(backend, "get_device", lambda: "gpu")  # as after a GPU run in the same process
    assert prediction.load_model(run) is not first


@pytest.mark.django_db
def test_a_job_scores_a_regressor_and_counts_the_answers_it_cannot_use(people, tmp_path):
    import numpy as np

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 2))
    y = 3 * x[:, 0] - 2 * x[:, 1] + rng.normal(0, 0.1, 300)
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": y}).to_csv(tmp_path / "train.csv", index=False)
    train = make_version(people.workspace, people.owner, str(tmp_path / "train.csv"), name="Train", target="y")
    spec = iris_spec(epochs=30, learning_rate=0.02)
    spec["input_shape"], spec["layers"][-1] = [2], {"type": "Dense", "units": 1}
    spec["compile"]["loss"], spec["compile"]["metrics"] = "mse", []
    run = _trained(people, train, spec, {"target": "y"})
    assert run.preprocessing["task"] == "regression"
    # New rows: two without an answer, one whose answer is not a number.
    fresh = pd.DataFrame({"a": x[:40, 0], "b": x[:40, 1], "y": [f"{v:.6f}" for v in y[:40]]})
    fresh.loc[[3, 7], "y"] = ""
    fresh.loc[11, "y"] = "unknown"
    fresh.to_csv(tmp_path / "fresh.csv", index=False)
    job = _job(people, run, make_version(people.workspace, people.owner, str(tmp_path / "fresh.csv"), name="Fresh"))
    written = _rows(batch.output_path(job))
    used = [(float(row[1]), float(row[-1].lstrip("'")))  # (text cells starting with - are quoted in the file)
            for row in written[1:] if row[-1] not in ("", "unknown")]
    errors = np.array([p - t for p, t in used])
    truth = np.array([t for _, t in used])
    scores = job.scores
    assert (scores["rows"], scores["missing"], scores["not_numeric"]) == (37, 2, 1)
    assert scores["mae"] == pytest.approx(np.abs(errors).mean())
    assert scores["rmse"] == pytest.approx(np.sqrt(np.square(errors).mean()))
    assert scores["r2"] == pytest.approx(1 - np.square(errors).sum() / np.square(truth - truth.mean()).sum())
    assert scores["test"] == {name: run.results["test"][name] for name in ("mae", "rmse", "r2")}
    assert "own_data" not in scores and "trained it" not in job.score_line  # new rows, another data set
    assert job.score_line.startswith(f"RMSE {scores['rmse']:.4g} ({run.results['test']['rmse']:.4g} on its test split)")


def test_a_classifiers_answers_it_has_no_class_for_count_as_wrong():
    run = mock.Mock(preprocessing={"task": "classification"}, results={"test": {"accuracy": 0.9}})
    score = batch.JobScore(run)
    columns = ["row", "prediction", "confidence", "p(0)", "p(1)"]
    score.add({"columns": columns, "rows": [[1, "0"], [2, "1"], [3, "1"], [4, "0"]]}, [0, 1.0, "2", None])
    found = score.result()
    # 0 and 1.0 name the classes "0" and "1"; "2" is one the model does not know; a row had no answer.
    assert found["rows"] == 3 and found["missing"] == 1 and found["accuracy"] == pytest.approx(2 / 3)
    assert found["unknown"] == {"rows": 1, "labels": ["2"]} and found["confusion_matrix"] == [[1, 0], [0, 1]]
    assert "1 of them in classes it does not know (2)" in batch.score_line(found)
    assert batch.JobScore(run).result() == {}  # nothing answered: no scores


@pytest.mark.django_db
def test_a_models_page_holds_its_versions_scores_on_the_same_labelled_data_side_by_side(client, people, iris):
    from webapp.experiments import registry

    weak = _trained(people, iris, iris_spec(epochs=1, learning_rate=0.001), {"target": "species"})
    strong = _trained(people, iris, iris_spec(epochs=25), {"target": "species"})
    model = registry.register(run=weak, user=people.editor, name="flowers").model
    registry.register(run=strong, user=people.editor, name="flowers")
    jobs = [_job(people, run, iris) for run in (weak, strong, strong)]  # the second job of v2 on Iris is its latest
    client.force_login(people.viewer)
    page = client.get(model.get_absolute_url()).content.decode()
    table = page.split('data-testid="scored-jobs"')[1].split("</table>")[0]
    assert table.count("<tr") == 3  # the header, and one row per version
    assert table.index("v2") < table.index("v1 <span")  # v1 (in production) after v2
    assert jobs[2].score_line in table and jobs[0].score_line in table
    assert jobs[2].scores["accuracy"] > jobs[0].scores["accuracy"]
    api = client.get(f"/api/v1/prediction-jobs/{jobs[0].pk}").json()
    assert api["scores"]["accuracy"] == jobs[0].scores["accuracy"] and api["scores"]["rows"] == 150


@pytest.mark.django_db
def test_a_newer_version_of_its_data_is_offered_to_score_the_model_in_production_and_to_train_again(
        client, people, iris, tmp_path, django_capture_on_commit_callbacks):
    from webapp.datasets.services import ingest_version, version_create_from_file
    from webapp.experiments import registry

    run = _trained(people, iris, iris_spec(epochs=10), {"target": "species"})
    model = registry.register(run=run, user=people.editor, name="flowers").model
    client.force_login(people.editor)
    assert 'data-testid="newer-data"' not in client.get(model.get_absolute_url()).content.decode()
    frame = pd.read_csv(FIXTURES / "iris.csv").sample(frac=1, random_state=1).head(90)
    frame.to_csv(tmp_path / "iris-more.csv", index=False)
    with mock.patch("webapp.datasets.services._enqueue"):
        newer = version_create_from_file(dataset=iris.dataset, user=people.owner, uploaded_file_path=tmp_path / "iris-more.csv",
                                         original_filename="iris-more.csv")
    newer = ingest_version(newer.pk)
    page = client.get(model.get_absolute_url()).content.decode()
    assert "Iris has a newer version: v2" in page and "trained on v1" in page
    assert f"?from_run={run.pk}&amp;version={newer.pk}" in page  # the builder, started from its run on the new data
    run_page = client.get(run.get_absolute_url()).content.decode()  # the run's page says so too
    assert 'data-testid="run-newer-data"' in run_page and "Iris v2 is newer" in run_page
    assert "?v=2&amp;against=1#changes" in run_page and f"?from_run={run.pk}&amp;version={newer.pk}" in run_page
    with mock.patch.object(predict_dataset, "apply_async") as send, django_capture_on_commit_callbacks(execute=True):
        back = client.post(f"/w/{people.workspace.slug}/runs/{run.pk}/predict-dataset/",
                           {"dataset_version": newer.pk, "next": model.get_absolute_url() + "#scored"})
    assert back.status_code == 302 and back["Location"] == model.get_absolute_url() + "#scored"
    job = PredictionJob.objects.get(pk=send.call_args.kwargs["args"][0])
    assert batch.job_execute(job.pk) == "succeeded"
    page = client.get(model.get_absolute_url()).content.decode()
    job.refresh_from_db()
    assert job.scores["rows"] == 90 and "own_data" not in job.scores and job.score_line in page
    # Elsewhere than a model page of this workspace, it goes back to the run's predict page.
    with mock.patch.object(predict_dataset, "apply_async"):
        away = client.post(f"/w/{people.workspace.slug}/runs/{run.pk}/predict-dataset/",
                           {"dataset_version": newer.pk, "next": "https://elsewhere.example/w/x/models/"})
    assert away["Location"].endswith(f"/runs/{run.pk}/predict/#jobs")
    client.force_login(people.viewer)  # a viewer reads it but is offered neither
    assert 'data-testid="newer-data"' not in client.get(model.get_absolute_url()).content.decode()


@pytest.mark.django_db
def test_a_request_that_holds_its_answers_is_scored_against_them_on_the_page_and_by_the_api(client, people, iris):
    run = _trained(people, iris, iris_spec(epochs=10), {"target": "species"})
    raw = (FIXTURES / "iris.csv").read_bytes()
    answer = prediction.predict_file(run, raw, "iris.csv")
    truth = pd.read_csv(FIXTURES / "iris.csv")["species"].tolist()
    right = sum(row[1] == t for row, t in zip(answer["rows"], truth))
    assert answer["scores"]["rows"] == 150 and answer["scores"]["accuracy"] == pytest.approx(right / 150)
    # Without the target column there is nothing to score.
    bare = pd.read_csv(FIXTURES / "iris.csv").drop(columns=["species"]).to_csv(index=False).encode()
    assert "scores" not in prediction.predict_file(run, bare, "rows.csv")
    client.force_login(people.viewer)
    api = client.post(f"/api/v1/runs/{run.pk}/predict", {"file": io.BytesIO(raw)}).json()
    assert api["scores"]["accuracy"] == answer["scores"]["accuracy"] and "own_data" not in api["scores"]
    assert "scores" not in client.post(f"/api/v1/runs/{run.pk}/predict", {"file": io.BytesIO(bare)}).json()
    upload = io.BytesIO(raw)
    upload.name = "iris.csv"
    page = client.post(f"/w/{people.workspace.slug}/runs/{run.pk}/predict/", {"file": upload}).content.decode()
    assert 'data-testid="predict-score"' in page and batch.score_line(answer["scores"]) in page


@pytest.mark.django_db
def test_an_image_zip_in_class_folders_is_scored_by_its_folders(people):
    digits = make_version(people.workspace, people.owner, "digits8x8.zip", name="Digits")
    run = _trained(people, digits, small_cnn_spec(epochs=2))
    answer = prediction.predict_uploads(run, [((FIXTURES / "digits8x8.zip").read_bytes(), "digits8x8.zip")])
    folders = [name.split("/")[-2] for name in (row[0] for row in answer["rows"])]
    right = sum(row[1] == folder for row, folder in zip(answer["rows"], folders))
    assert answer["scores"]["rows"] == len(folders) and answer["scores"]["accuracy"] == pytest.approx(right / len(folders))
    # Loose images, in no folder: no answers.
    assert prediction._folder_answers(["a.png", "b.png"], run.preprocessing) is None
    assert prediction._folder_answers(["cats/a.png"], run.preprocessing) is None  # no folder names a class
