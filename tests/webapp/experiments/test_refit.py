"""A cross-validation's final model: one of its points trained on every row, the folds' scores its estimate."""

from __future__ import annotations

import json
import statistics

import pytest

from tests.webapp.experiments.conftest import iris_spec
from webapp.experiments import datasource, execution, prediction, services
from webapp.experiments.models import Run


def _cross_validation(people, iris, *, spec=None, rates=(0.02, 0.05)):
    return services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                 spec=spec or iris_spec(epochs=6), data_config={"target": "species", "folds": 3},
                                 method="grid", space={"fold": [0, 1, 2], "learning_rate": list(rates)})


def _finish(run, *, epochs, accuracy, stopped=None):
    results = {"test": {"accuracy": accuracy, "loss": 1 - accuracy}, "test_rows": 50}
    if stopped:
        results["stopped_early"] = stopped
    Run.objects.filter(pk=run.pk).update(status="succeeded", epochs_done=epochs, results=results)


@pytest.mark.django_db
def test_the_final_model_trains_on_every_row_and_carries_its_folds_scores(client, people, iris):
    sweep = _cross_validation(people, iris)
    for run in sweep.runs.order_by("pk"):
        assert execution.run_execute(run.pk, hostname="test") == "succeeded"
    folds = [run for run in sweep.runs.all() if run.sweep_params["learning_rate"] == 0.05]
    accuracies = [run.results["test"]["accuracy"] for run in folds]

    client.force_login(people.editor)
    page = client.get(sweep.get_absolute_url()).content.decode()
    assert page.count('data-testid="refit"') == 2  # one button per point, every fold of each done
    response = client.post(f"{sweep.get_absolute_url()}refit/", {"params": json.dumps({"learning_rate": 0.05})})
    final = Run.objects.get(refit_of=sweep)
    assert response.status_code == 302 and response["Location"] == final.get_absolute_url()
    assert final.sweep is None and final.sweep_params == {"learning_rate": 0.05}
    assert final.spec["compile"]["optimizer"]["learning_rate"] == 0.05 and final.spec["fit"]["epochs"] == 6
    assert final.data_config["folds"] is None and final.data_config["test_fraction"] == 0
    assert final.data_config["validation_fraction"] == 0

    prepared = datasource.prepare(iris, final.data_config)
    assert len(prepared.x_train) == 150 and prepared.x_val is None and prepared.x_test is None
    assert execution.run_execute(final.pk, hostname="test") == "succeeded"
    final.refresh_from_db()
    assert final.results["test_rows"] == 0 and final.results["test"] == {}
    assert final.results["class_names"] == ["setosa", "versicolor", "virginica"]
    assert final.best_metric_name == "accuracy"  # no validation part: the training accuracy picks the best epoch
    estimate = final.results["cross_validation"]
    assert estimate["folds"] == 3 and estimate["sweep"] == sweep.pk and estimate["epochs"] == 6
    assert estimate["scores"]["accuracy"]["mean"] == pytest.approx(statistics.fmean(accuracies))
    assert estimate["scores"]["accuracy"]["std"] == pytest.approx(statistics.pstdev(accuracies))
    assert services.missing_analyses(final) == []  # no test split to draw curves from, and nothing is asked for

    html = client.get(final.get_absolute_url()).content.decode()
    assert 'data-testid="cv-estimate"' in html and 'data-testid="test-metrics"' not in html
    assert 'data-testid="best-on-training"' in html
    assert 'data-testid="best-on-training"' not in client.get(folds[0].get_absolute_url()).content.decode()
    assert f"{statistics.fmean(accuracies):.4f}" in html and sweep.get_absolute_url() in html
    answer = prediction.predict_arrays(final, prepared.x_train[:5], list(range(5)))
    assert len(answer["rows"]) == 5 and {row[1] for row in answer["rows"]} <= set(final.results["class_names"])
    page = client.get(sweep.get_absolute_url()).content.decode()
    assert f'href="{final.get_absolute_url()}"' in page and "Train again" in page
    _served_by_its_name(client, people, final)


def _served_by_its_name(client, people, final):
    """Registered, the final model has no test split to hold its outputs against: its inputs alone are judged."""
    import io

    from webapp.accounts.models import Notification
    from webapp.experiments import registry
    from webapp.experiments.models import RegisteredModel

    version = registry.register(run=final, user=people.editor, name="iris final")
    model_page = client.get(version.model.get_absolute_url()).content.decode()
    assert 'data-testid="version-estimate"' in model_page and "3-fold cross-validation" in model_page
    rows = "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n" + "\n".join(
        f"{9 + i % 3 * 0.1:.1f},3.0,1.5,0.2" for i in range(60))  # sepal lengths far past any in training
    answer = client.post(f"/api/v1/models/{version.model.pk}/predict", {"file": io.BytesIO(rows.encode())})
    assert answer.status_code == 200, answer.content
    model = RegisteredModel.objects.get(pk=version.model.pk)
    assert model.drift_state == "different"
    alert = Notification.objects.get(user=people.editor, link=model.get_absolute_url())
    assert alert.message.startswith("iris final v1 drifted: input columns drifted: sepal length (cm)"), alert.message
    html = client.get(model.get_absolute_url()).content.decode()
    assert "outputs not judged" in html and 'data-testid="input-drift"' in html and "no test split" in html


@pytest.mark.django_db
def test_the_final_model_trains_the_epochs_its_folds_kept_and_leaves_out_what_watches_validation(people, iris):
    spec = iris_spec(epochs=40)
    spec["fit"]["early_stopping"] = {"monitor": "val_loss", "patience": 3, "restore_best_weights": True}
    spec["fit"]["reduce_lr_on_plateau"] = {"monitor": "loss", "patience": 5}
    sweep = _cross_validation(people, iris, spec=spec, rates=(0.02,))
    kept = {0: 12, 1: 20, 2: 40}  # best epochs put back by early stopping, or the whole fit
    for run in sweep.runs.all():
        fold = run.sweep_params["fold"]
        stopped = None if fold == 2 else {"rule": "early_stopping", "epoch": kept[fold] + 3, "best_epoch": kept[fold],
                                          "restored": True}
        _finish(run, epochs=40 if fold == 2 else kept[fold] + 3, accuracy=0.9, stopped=stopped)
    final = services.sweep_refit(sweep=sweep, user=people.editor, params={"learning_rate": 0.02})
    assert final.spec["fit"]["epochs"] == 24 and final.epochs_total == 24  # (12 + 20 + 40) / 3
    assert final.spec["fit"].get("early_stopping") is None  # it watches val_loss, and there is no validation part
    assert final.spec["fit"]["reduce_lr_on_plateau"]["monitor"] == "loss"  # the training loss is still there
    assert final.results["cross_validation"]["left_out"] == ["early_stopping"]


@pytest.mark.django_db
def test_a_final_model_is_refused_until_every_fold_succeeded_and_names_why(people, iris):
    sweep = _cross_validation(people, iris, rates=(0.02,))
    runs = list(sweep.runs.order_by("pk"))
    for run in runs[:2]:
        _finish(run, epochs=6, accuracy=0.9)
    with pytest.raises(services.InvalidInput, match="params: 2 of its 3 folds have succeeded"):
        services.sweep_refit(sweep=sweep, user=people.editor, params={"learning_rate": 0.02})
    _finish(runs[2], epochs=6, accuracy=0.8)
    with pytest.raises(services.InvalidInput, match=r"no point of this cross-validation has these values "
                                                    r"\(learning_rate=0.5\)"):
        services.sweep_refit(sweep=sweep, user=people.editor, params={"learning_rate": 0.5})
    with pytest.raises(services.InvalidInput, match="params: the swept values of one point"):
        services.sweep_refit(sweep=sweep, user=people.editor, params=[0.02])
    services.sweep_refit(sweep=sweep, user=people.editor, params={"learning_rate": 0.02})
    with pytest.raises(services.InvalidInput, match="this point's final model is training already"):
        services.sweep_refit(sweep=sweep, user=people.editor, params={"learning_rate": 0.02})
    plain = services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                  spec=iris_spec(), data_config={"target": "species"}, method="grid",
                                  space={"learning_rate": [0.01]})
    with pytest.raises(services.InvalidInput, match="only a cross-validation trains a final model"):
        services.sweep_refit(sweep=plain, user=people.editor, params={})


@pytest.mark.django_db
def test_the_api_trains_a_final_model_and_lists_it_with_the_sweep(client, people, iris):
    sweep = services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                  spec=iris_spec(epochs=6), data_config={"target": "species", "folds": 3},
                                  method="grid", space={"fold": [0, 1, 2]})
    for run in sweep.runs.all():
        _finish(run, epochs=6, accuracy=0.9)
    client.force_login(people.editor)
    response = client.post(f"/api/v1/sweeps/{sweep.pk}/refit", {"params": {}}, content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["refit_of"] == sweep.pk and body["results"]["cross_validation"]["scores"]["accuracy"]["mean"] == 0.9
    listed = client.get(f"/api/v1/sweeps/{sweep.pk}").json()
    assert [m["id"] for m in listed["final_models"]] == [body["id"]]
    refused = client.post(f"/api/v1/sweeps/{sweep.pk}/refit", {"params": {}}, content_type="application/json")
    assert refused.status_code == 400 and "training already" in refused.json()["detail"]


def test_a_zero_test_fraction_is_a_table_without_a_test_split_but_folds_still_need_rows():
    import pandas as pd

    from webapp.experiments import preparation

    frame = pd.DataFrame({"x": range(10), "y": [0, 1] * 5})
    prepared = preparation.prepare_table(frame, preparation.normalise_config({"test_fraction": 0}), target="y")
    assert prepared.x_test is None and len(prepared.x_train) + len(prepared.x_val) == 10
    with pytest.raises(preparation.DataError, match="data_config.test_fraction: the table has too few rows"):
        preparation.prepare_table(frame.iloc[:3], preparation.normalise_config({"test_fraction": 0.1}), target="y")
