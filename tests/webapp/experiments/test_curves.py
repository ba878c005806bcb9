"""ROC and precision-recall curves of classifiers, and a binary classifier's decision threshold."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.webapp.experiments.conftest import iris_spec, make_version
from trainer import metrics as tmetrics
from webapp.experiments import curves, datasource, execution, prediction, preparation, services, specs
from webapp.experiments.models import Run


def _binary_scores(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-rng.normal(1.5 * (2 * codes - 1), 1.5)))
    return codes, np.stack([1 - p, p], axis=1)


def test_a_binary_classifiers_block_counts_every_threshold_of_the_grid_exactly():
    codes, probabilities = _binary_scores()
    roc = curves.classifier_curves(codes, probabilities, ["no", "yes"])
    assert roc["kind"] == "binary" and (roc["positive"], roc["negative"]) == ("yes", "no")
    assert roc["positives"] == codes.sum() and roc["negatives"] == len(codes) - codes.sum()
    assert roc["auc"] == pytest.approx(tmetrics.auc(codes, probabilities[:, 1]))
    assert len(roc["curve"]["threshold"]) <= curves.CURVE_POINTS and roc["curve"]["threshold"][0] is None
    assert len(roc["grid"]["tp"]) == curves.GRID_STEPS + 1
    for threshold in (0.0, 0.123, 0.5, 0.731, 1.0):
        called = probabilities[:, 1] >= threshold
        at = curves.operating_point(roc, threshold)
        assert (at["tp"], at["fp"]) == (int((called & (codes == 1)).sum()), int((called & (codes == 0)).sum()))
        assert at["tp"] + at["fn"] == roc["positives"] and at["fp"] + at["tn"] == roc["negatives"]
        assert at["accuracy"] == pytest.approx(np.mean(called == (codes == 1)))
    nothing = curves.operating_point(roc, 1.0)
    assert nothing["precision"] is None or nothing["tp"] > 0  # no row called positive: precision undefined


def test_a_multiclass_block_has_a_curve_per_class_and_skips_what_cannot_be_drawn():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 3, 300)
    probabilities = rng.dirichlet([1, 1, 1], 300) + np.eye(3)[codes]
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    roc = curves.classifier_curves(codes, probabilities, ["a", "b", "c"])
    assert roc["kind"] == "multiclass" and [c["name"] for c in roc["classes"]] == ["a", "b", "c"]
    for k, entry in enumerate(roc["classes"]):
        assert entry["auc"] == pytest.approx(tmetrics.auc(codes == k, probabilities[:, k]))
        assert entry["fpr"][0] == 0 and entry["tpr"][-1] == 1
    assert curves.classifier_curves(np.ones(5, dtype=int), np.full((5, 2), 0.5), ["no", "yes"]) is None
    assert curves.classifier_curves(codes, probabilities[:, :2], ["a", "b", "c"]) is None  # not one column per class


@pytest.mark.parametrize("value", ["", "abc", "-0.1", "1.5", "nan", None, True, [0.2]])
def test_a_threshold_that_is_not_a_probability_is_refused_by_name(value):
    with pytest.raises(ValueError, match="threshold: give a number from 0 to 1"):
        curves.parse_threshold(value)


def test_a_threshold_is_kept_to_three_decimals_and_prediction_cuts_there():
    assert curves.parse_threshold("0.31249") == 0.312
    pre = {"task": "classification", "kind": "table", "labels": {"classes": ["no", "yes"]}, "loss": "binary_crossentropy"}
    outputs = np.array([[0.2], [0.31], [0.6], [0.312]])
    assert preparation.decode_predictions(outputs, pre)["labels"] == ["no", "no", "yes", "no"]
    assert preparation.decode_predictions(outputs, pre, threshold=0.312)["labels"] == ["no", "no", "yes", "yes"]
    three = {"task": "classification", "kind": "table", "labels": {"classes": ["a", "b", "c"]}}
    scores = np.array([[0.5, 0.3, 0.2]])  # a threshold means nothing for three classes
    assert preparation.decode_predictions(scores, three, threshold=0.1)["labels"] == ["a"]


def _binary_run(people, tmp_path, epochs=8) -> Run:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 3))
    churned = features @ np.array([1.2, -0.8, 0.5]) + rng.normal(0, 0.8, 500) > 0.6
    rows = ["a,b,c,churned"] + [f"{x:.4f},{y:.4f},{z:.4f},{'yes' if c else 'no'}"
                                for (x, y, z), c in zip(features, churned)]
    (tmp_path / "churn.csv").write_text("\n".join(rows) + "\n")
    version = make_version(people.workspace, people.owner, str(tmp_path / "churn.csv"), name="Churn", target="churned")
    spec = iris_spec(epochs=epochs, learning_rate=0.05)
    spec["input_shape"], spec["layers"][-1]["units"] = [3], 2
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=version, spec=spec,
                              data_config={"target": "churned"})
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_a_binary_runs_curves_match_its_test_outputs_and_its_page_draws_them(client, people, tmp_path):
    run = _binary_run(people, tmp_path)
    roc = run.results["roc"]
    prepared = datasource.prepare(run.dataset_version, run.data_config, loss=specs.loss_name(run.spec))
    outputs = execution.predict_outputs(prediction.load_model(run), prepared.x_test)
    decoded = preparation.decode_predictions(outputs, run.preprocessing)
    truth = preparation.decode_targets(prepared.y_test, run.preprocessing)
    positive = np.asarray(decoded["probabilities"])[:, 1]
    assert roc["positive"] == "yes" and roc["positives"] == int(truth.sum())
    assert run.results["test"]["auc"] == pytest.approx(tmetrics.auc(truth, positive)) and roc["auc"] > 0.8
    assert run.results["test"]["average precision"] == pytest.approx(tmetrics.average_precision(truth, positive))
    # The default cut is the confusion matrix the results recorded.
    at = curves.operating_point(roc, 0.5)
    assert [[at["tn"], at["fp"]], [at["fn"], at["tp"]]] == run.results["confusion_matrix"]

    client.force_login(people.viewer)
    page = client.get(run.get_absolute_url()).content.decode()
    assert 'id="chart-roc"' in page and 'id="chart-pr"' in page and 'id="threshold-slider"' in page
    assert f"ROC AUC {roc['auc']:.3f}" in page
    assert "Predictions give each row its more likely class" in page
    assert 'data-testid="set-threshold"' not in page  # a viewer reads; only editors set it


@pytest.mark.django_db
def test_an_editor_sets_the_threshold_and_predictions_the_page_and_the_model_follow_it(client, people, tmp_path):
    from webapp.experiments import registry

    run = _binary_run(people, tmp_path)
    url = f"/w/{people.workspace.slug}/runs/{run.pk}/threshold/"
    client.force_login(people.viewer)
    assert client.post(url, {"threshold": "0.2"}).status_code == 403
    client.force_login(people.editor)
    response = client.post(url, {"threshold": "2"}, follow=True)
    assert "threshold: give a number from 0 to 1" in response.content.decode()
    run.refresh_from_db()
    assert run.decision_threshold is None

    rows = "a,b,c\n" + "\n".join(f"{x:.3f},0,0" for x in np.linspace(-1.5, 2.5, 41)) + "\n"
    before = prediction.predict_file(run, rows.encode(), "rows.csv")
    p_yes = np.array([row[before["columns"].index("p(yes)")] for row in before["rows"]])
    threshold = float(np.round(np.quantile(p_yes, 0.25), 3))  # calls about three quarters of the rows yes
    page = client.post(url, {"threshold": str(threshold)}, follow=True).content.decode()
    run.refresh_from_db()
    assert run.decision_threshold == threshold
    assert f"Predictions call a row yes from p(yes) ≥ {threshold:.3f}" in page
    at = curves.operating_point(run.results["roc"], threshold)
    assert f'data-point="tp">{at["tp"]}<' in page and f'data-point="fp">{at["fp"]}<' in page
    after = prediction.predict_file(run, rows.encode(), "rows.csv")
    labels = [row[after["columns"].index("prediction")] for row in after["rows"]]
    assert labels == ["yes" if p >= threshold else "no" for p in p_yes]
    assert labels.count("yes") > [row[1] for row in before["rows"]].count("yes")
    confidence = [row[after["columns"].index("confidence")] for row in after["rows"]]
    assert confidence == pytest.approx([p if p >= threshold else 1 - p for p in p_yes])

    # A registered model predicts with its run's threshold, and its page says so.
    version = registry.register(run=run, user=people.editor, name="churn")
    api = client.post(f"/api/v1/models/{version.model.pk}/predict", {"file": io.BytesIO(rows.encode())})
    assert api.status_code == 200, api.content
    answer = api.json()
    assert [row[answer["columns"].index("prediction")] for row in answer["rows"]] == labels
    model_page = client.get(version.model.get_absolute_url()).content.decode()
    assert f"predicts yes from p ≥ {threshold:.3f}" in model_page

    client.post(url, {"clear": "1"})
    run.refresh_from_db()
    assert run.decision_threshold is None
    assert prediction.predict_file(run, rows.encode(), "rows.csv")["rows"] == before["rows"]
    verbs = list(run.workspace.activities.values_list("verb", flat=True))
    assert f"set the decision threshold to {threshold:g} on" in verbs and "cleared the decision threshold of" in verbs


@pytest.mark.django_db
def test_the_api_sets_and_clears_the_threshold_and_refuses_runs_without_a_binary_curve(client, people, tmp_path, iris):
    run = _binary_run(people, tmp_path, epochs=3)
    client.force_login(people.editor)
    url = f"/api/v1/runs/{run.pk}/threshold"
    response = client.post(url, {"threshold": 0.4}, content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["decision_threshold"] == 0.4 and body["test"] == curves.operating_point(run.results["roc"], 0.4)
    assert client.get(f"/api/v1/runs/{run.pk}").json()["decision_threshold"] == 0.4
    missing = client.post(url, {}, content_type="application/json")
    assert missing.status_code == 400 and missing.json()["field"] == "threshold"
    assert client.post(url, {"threshold": None}, content_type="application/json").json()["decision_threshold"] is None

    three = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                spec=iris_spec(epochs=3), data_config={"target": "species"})
    refused = client.post(f"/api/v1/runs/{three.pk}/threshold", {"threshold": 0.4}, content_type="application/json")
    assert refused.status_code == 400 and "only a finished binary classifier" in refused.json()["detail"]


@pytest.mark.django_db
def test_a_multiclass_run_records_each_classes_auc_and_draws_one_curve_per_class(client, people, iris):
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                              spec=iris_spec(epochs=20), data_config={"target": "species"})
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    roc = run.results["roc"]
    assert roc["kind"] == "multiclass" and [c["name"] for c in roc["classes"]] == run.results["class_names"]
    aucs = [c["auc"] for c in run.results["per_class"]]
    assert aucs == [c["auc"] for c in roc["classes"]] and run.results["test"]["auc"] == pytest.approx(np.mean(aucs))
    assert min(aucs) > 0.8
    client.force_login(people.viewer)
    page = client.get(run.get_absolute_url()).content.decode()
    assert 'id="chart-roc"' in page and 'id="threshold-slider"' not in page
    assert '<th class="num" title="one class against the rest">AUC</th>' in page


@pytest.mark.django_db
def test_compare_overlays_the_binary_runs_roc_curves_and_marks_each_threshold(client, people, tmp_path, iris):
    import json

    first = _binary_run(people, tmp_path, epochs=3)
    second = Run.objects.get(pk=first.pk)
    second.pk, second.name = None, "second"
    second.save()
    services.run_set_threshold(run=second, user=people.editor, threshold=0.25)
    three = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                spec=iris_spec(epochs=3), data_config={"target": "species"})
    client.force_login(people.viewer)
    page = client.get(f"/w/{people.workspace.slug}/compare/?runs={first.pk}&runs={second.pk}&runs={three.pk}")
    html = page.content.decode()
    assert 'data-testid="compare-roc"' in html
    series = json.loads(html.split('<script id="compare-data" type="application/json">')[1].split("</script>")[0])
    roc = {entry["id"]: entry["roc"] for entry in series}
    assert roc[three.pk] is None and "at" not in roc[first.pk]
    at = curves.operating_point(second.results["roc"], 0.25)
    assert roc[second.pk]["at"] == {"threshold": 0.25, "fpr": at["false_positive_rate"], "tpr": at["recall"]}
    assert roc[first.pk]["fpr"][0] == 0 and roc[first.pk]["tpr"][-1] == 1
    only_iris = client.get(f"/w/{people.workspace.slug}/compare/?runs={three.pk}").content.decode()
    assert 'data-testid="compare-roc"' not in only_iris
    # Every classifier that was tested brings its calibration; the queued iris run has none yet.
    assert 'data-testid="compare-calibration"' in html and 'data-testid="compare-calibration"' not in only_iris
    calibration = {entry["id"]: entry["calibration"] for entry in series}
    assert calibration[first.pk] == first.results["calibration"] and calibration[three.pk] is None


@pytest.mark.django_db
def test_a_classifiers_results_hold_its_calibration_on_the_test_split(client, people, tmp_path):
    run = _binary_run(people, tmp_path, epochs=4)
    prepared = datasource.prepare(run.dataset_version, run.data_config, loss=specs.loss_name(run.spec))
    outputs = execution.predict_outputs(prediction.load_model(run), prepared.x_test)
    probabilities = np.asarray(preparation.decode_predictions(outputs, run.preprocessing)["probabilities"])
    truth = preparation.decode_targets(prepared.y_test, run.preprocessing)
    expected = tmetrics.reliability(truth, probabilities, n_bins=execution.CALIBRATION_BINS)
    found = run.results["calibration"]
    assert found["ece"] == pytest.approx(expected["ece"]) == pytest.approx(run.results["test"]["calibration error (ECE)"])
    assert sum(b["rows"] for b in found["bins"]) == run.results["test_rows"]
    assert all(0.5 <= b["confidence"] <= 1 for b in found["bins"])  # the picked class is at least half sure
    client.force_login(people.viewer)
    page = client.get(run.get_absolute_url()).content.decode()
    assert 'id="chart-calibration"' in page and f"Expected calibration error {found['ece']:.3f}" in page
