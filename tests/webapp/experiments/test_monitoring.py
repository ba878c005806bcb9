"""What a registered model serves by its name: the log of requests, and drift from its test split."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from tests.webapp.experiments.test_curves import _binary_run
from webapp.experiments import monitoring, registry
from webapp.experiments.models import ModelVersion, PredictionLog, Run


def test_the_population_stability_index_by_hand():
    assert monitoring.psi({"a": 50, "b": 50}, {"a": 5, "b": 5}) == pytest.approx(0.0)
    # Shares 0.8/0.2 against 0.5/0.5: (0.3 ln 1.6) + (-0.3 ln 0.4).
    assert monitoring.psi({"a": 80, "b": 20}, {"a": 50, "b": 50}) == pytest.approx(0.3 * np.log(1.6) - 0.3 * np.log(0.4))
    # A class never predicted on the test split counts at the floor share, not as infinity.
    assert np.isfinite(monitoring.psi({"a": 10, "c": 10}, {"a": 10}))


def test_summaries_pool_into_the_mean_and_spread_of_all_rows():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3, 2, n) for n in (5, 40, 17)]
    summaries = [monitoring.summarize({"columns": ["row", "prediction"], "rows": [[i, v] for i, v in enumerate(b)]},
                                      {"task": "regression"}) for b in batches]
    pooled = monitoring._pooled(summaries)
    everything = np.concatenate(batches)
    assert pooled["rows"] == 62 and pooled["mean"] == pytest.approx(everything.mean())
    assert pooled["std"] == pytest.approx(everything.std()) and pooled["max"] == pytest.approx(everything.max())
    classes = monitoring.summarize({"columns": ["row", "prediction", "confidence"],
                                    "rows": [[1, "yes", 0.9], [2, "no", 0.6], [3, "yes", 0.7]]}, {"task": "classification"})
    assert classes == {"kind": "classes", "counts": {"yes": 2, "no": 1}, "confidence_sum": pytest.approx(2.2)}


def _regressor(predicted) -> ModelVersion:
    return ModelVersion(number=1, run=Run(results={"residuals": {"true": predicted, "predicted": predicted}}))


def test_a_regressors_drift_is_its_mean_shift_in_test_standard_deviations():
    test = list(np.linspace(0, 10, 101))  # mean 5, std about 2.93
    served = [{"kind": "values", "count": 40, "sum": 40 * 7.0, "sum_sq": 40 * (7.0 ** 2 + 1.0), "min": 4, "max": 9}]
    found = monitoring.drift(_regressor(test), served)
    assert found["shift"] == pytest.approx(2.0 / np.std(test)) and found["verdict"] == "different"
    assert f"{2.0 / np.std(test):.2f} test standard deviations above" in found["says"]
    few = monitoring.drift(_regressor(test), [dict(served[0], count=10, sum=70.0, sum_sq=500.0)])
    assert few["verdict"] == "too few" and "it takes 30" in few["says"] and "has served 10 rows so far" in few["says"]
    assert monitoring.drift(_regressor([1.0]), served) is None  # no test predictions to compare with


@pytest.mark.django_db
def test_a_models_requests_are_logged_and_its_page_shows_rows_refusals_and_drift(client, people, tmp_path):
    run = _binary_run(people, tmp_path, epochs=6)
    version = registry.register(run=run, user=people.editor, name="churn")
    url = f"/api/v1/models/{version.model.pk}/predict"
    client.force_login(people.viewer)  # a viewer may predict and read what was served
    rng = np.random.default_rng(5)
    like_training = "a,b,c\n" + "\n".join(",".join(f"{v:.3f}" for v in row) for row in rng.normal(size=(200, 3)))
    assert client.post(url, {"file": io.BytesIO(like_training.encode())}).status_code == 200
    page = client.get(version.model.get_absolute_url()).content.decode()
    assert "1 request answered · 200 rows predicted" in page
    assert "steady" in page and "about the same class mix as on its test split" in page

    # Rows far on one side: the model calls nearly all of them one class.
    skewed = "a,b,c\n" + "\n".join(f"{3 + v:.3f},{-3 + v:.3f},1" for v in rng.normal(0, 0.3, 300))
    answer = client.post(url, {"file": io.BytesIO(skewed.encode())}).json()
    assert [row[1] for row in answer["rows"]].count("yes") > 290
    refused = client.post(url, {"file": io.BytesIO(b"a,b\n1,2\n")})
    assert refused.status_code == 400
    report = client.get(f"/api/v1/models/{version.model.pk}/predictions").json()
    assert report["requests"] == 2 and report["rows"] == 500 and report["refused"] == 1
    assert report["rows_per_day"] == [{"version": 1, "rows": [0] * 29 + [500]}]
    assert report["recent_refusals"][0]["caller"] == "vera" and "c" in report["recent_refusals"][0]["reason"]
    drift = report["drift"]
    served = drift["served"]["counts"]
    logged = PredictionLog.objects.filter(model=version.model, refused="")
    assert sum(served.values()) == 500 and served["yes"] == sum(log.summary["counts"].get("yes", 0) for log in logged)
    expected = np.asarray(run.results["confusion_matrix"]).sum(axis=0)
    assert drift["test"]["counts"] == {"no": int(expected[0]), "yes": int(expected[1])}
    assert drift["psi"] == pytest.approx(monitoring.psi(served, drift["test"]["counts"]))
    assert drift["verdict"] == "different"
    # Its inputs against the training rows: a and b were sent about 3 training deviations off (1.8 over both
    # requests), c was sent as 1 in the second (0.6 over both).
    inputs = {c["column"]: c for c in drift["inputs"]}
    assert [c["column"] for c in drift["inputs"]][2] == "c" and all(c["verdict"] == "different" for c in inputs.values())
    assert inputs["a"]["score"] == pytest.approx(1.8, abs=0.25) and inputs["b"]["score"] == pytest.approx(-1.8, abs=0.25)
    assert inputs["c"]["score"] == pytest.approx(0.6, abs=0.15)
    page = client.get(version.model.get_absolute_url()).content.decode()
    assert "2 requests answered · 500 rows predicted" in page and "1 refused" in page
    assert "drifted" in page and 'data-testid="refusals"' in page and 'data-testid="input-drift"' in page
    assert f"<td>a</td><td>{inputs['a']['says']}</td>" in page
    assert json.loads(page.split('<script id="serving-data" type="application/json">')[1].split("</script>")[0]) == report


@pytest.mark.django_db
def test_the_report_covers_the_days_asked_for_and_follows_the_version_in_production(people, tmp_path):
    run = _binary_run(people, tmp_path, epochs=2)
    version = registry.register(run=run, user=people.editor, name="churn")
    now = timezone.now()
    for age, rows in ((0, 7), (3, 5), (40, 100)):
        PredictionLog.objects.create(model=version.model, version=version, number=1, rows=rows,
                                     summary={"kind": "classes", "counts": {"yes": rows}, "confidence_sum": rows * 0.9},
                                     created_at=now - timedelta(days=age))
    report = monitoring.report(version.model, days=7, now=now)
    assert report["rows"] == 12 and len(report["dates"]) == 7 and report["rows_per_day"][0]["rows"][-1] == 7
    assert monitoring.report(version.model, days=90, now=now)["rows"] == 112
    assert monitoring.report(version.model, days=10**6, now=now)["days"] == monitoring.MAX_DAYS
    version.model.production = None
    version.model.save()
    assert monitoring.report(version.model, days=7, now=now)["drift"] is None


def test_a_tables_input_profile_catches_a_shifted_column_and_categories_never_seen_in_training():
    import pandas as pd

    from trainer.data import TablePreprocessor

    rng = np.random.default_rng(2)
    train = pd.DataFrame({"age": rng.normal(40, 10, 1000), "plan": rng.choice(["basic", "pro"], 1000, p=[0.7, 0.3])})
    table = TablePreprocessor(["age"], ["plan"]).fit(train)
    pre = {"kind": "table", "features": table.to_dict()}
    training = monitoring.input_profile(table.transform(train), pre)
    assert training["rows"] == 1000 and training["categorical"]["plan"]["unseen"] == 0
    assert training["categorical"]["plan"]["counts"]["pro"] == (train["plan"] == "pro").sum()
    same = pd.DataFrame({"age": rng.normal(40, 10, 400), "plan": rng.choice(["basic", "pro"], 400, p=[0.7, 0.3])})
    moved = pd.DataFrame({"age": rng.normal(55, 10, 400), "plan": ["enterprise"] * 200 + ["pro"] * 200})
    steady = {c["column"]: c for c in monitoring.input_drift(training, [monitoring.input_profile(table.transform(same), pre)])}
    assert steady["age"]["verdict"] == steady["plan"]["verdict"] == "same"
    found = monitoring.input_drift(training, [monitoring.input_profile(table.transform(moved), pre)])
    age, plan = found[0] if found[0]["column"] == "age" else found[1], next(c for c in found if c["column"] == "plan")
    assert age["score"] == pytest.approx(1.5, abs=0.2) and age["verdict"] == "different"
    assert plan["verdict"] == "different" and "50% of rows in categories not seen in training" in plan["says"]
    assert monitoring.input_profile(np.zeros((3, 12, 1)), {"kind": "series"}) is None  # a series: outputs only


@pytest.mark.django_db
def test_a_model_that_turns_to_drift_tells_its_people_and_webhooks_once_and_again_when_steady(client, people, tmp_path):
    from webapp.accounts.models import Notification, Webhook, WebhookDelivery
    from webapp.experiments.models import RegisteredModel

    run = _binary_run(people, tmp_path, epochs=6)
    version = registry.register(run=run, user=people.editor, name="churn")
    Webhook.objects.create(workspace=people.workspace, url="https://hooks.example.org/cupola", created_by=people.owner)
    url = f"/api/v1/models/{version.model.pk}/predict"
    client.force_login(people.viewer)
    rng = np.random.default_rng(7)
    skewed = "a,b,c\n" + "\n".join(f"{3 + v:.3f},{-3 + v:.3f},1" for v in rng.normal(0, 0.3, 100))
    assert client.post(url, {"file": io.BytesIO(skewed.encode())}).status_code == 200
    model = RegisteredModel.objects.get(pk=version.model.pk)
    assert model.drift_state == "different" and model.drift_checked_at is not None
    alerts = Notification.objects.filter(link=version.model.get_absolute_url())
    alert = alerts.get(user=people.editor)  # who registered the model (and its version), once
    assert alert.level == "error" and alert.message.startswith("churn v1 drifted: it served a different class mix")
    assert set(alert.message.split("input columns drifted: ")[1].split(", ")) >= {"a", "b"}
    models_page = client.get(f"/w/{people.workspace.slug}/models/").content.decode()
    assert 'data-testid="model-drifted"' in models_page
    delivery = WebhookDelivery.objects.get()
    assert delivery.event == "model.drifted" and {"a", "b"} <= set(delivery.payload["data"]["drifted_columns"])
    # More requests within the check interval: no new check, no second alert.
    assert client.post(url, {"file": io.BytesIO(skewed.encode())}).status_code == 200
    assert alerts.count() == 1 and WebhookDelivery.objects.count() == 1
    # Later, with the old requests out of the window and rows like training served: steady again, said once.
    PredictionLog.objects.update(created_at=timezone.now() - timedelta(days=40))
    like = "a,b,c\n" + "\n".join(",".join(f"{v:.3f}" for v in row) for row in rng.normal(size=(300, 3)))
    PredictionLog.objects.create(model=model, version=version, number=1, rows=300, summary=monitoring.summarize(
        registry_predict(version, like), version.run.preprocessing))
    assert monitoring.check_drift(model, now=timezone.now() + monitoring.DRIFT_CHECK_EVERY) in ("same", "some")
    assert alerts.filter(level="info", message__startswith="churn v1 is steady again").count() == 1
    assert list(WebhookDelivery.objects.values_list("event", flat=True).order_by("pk")) == ["model.drifted", "model.steady"]


def registry_predict(version, rows: str) -> dict:
    from webapp.experiments import prediction

    return prediction.predict_file(version.run, rows.encode(), "rows.csv")


@pytest.mark.django_db
def test_the_log_keeps_the_days_it_is_told_and_the_beat_prunes_it_hourly(people, tmp_path, settings):
    from webapp.celery import app
    from webapp.experiments.tasks import prune_prediction_logs

    run = _binary_run(people, tmp_path, epochs=1)
    version = registry.register(run=run, user=people.editor, name="churn")
    now = timezone.now()
    for age in (0, 10, 399, 401):
        PredictionLog.objects.create(model=version.model, version=version, number=1, rows=1,
                                     created_at=now - timedelta(days=age))
    assert settings.KEEP_PREDICTION_LOGS == 400
    assert prune_prediction_logs() == 1 and PredictionLog.objects.count() == 3
    settings.KEEP_PREDICTION_LOGS = 7
    assert monitoring.prune(now=now) == 2
    settings.KEEP_PREDICTION_LOGS = None  # "all"
    assert monitoring.prune(now=now + timedelta(days=10**4)) == 0 and PredictionLog.objects.count() == 1
    entry = app.conf.beat_schedule["experiments-prune-prediction-logs"]
    assert entry["task"] == "experiments.prune_prediction_logs" and entry["schedule"] == 3600.0


def test_an_image_profile_reads_brightness_and_contrast_a_chunk_at_a_time_from_stored_rows():
    from trainer.data import ImageRows

    rng = np.random.default_rng(3)
    stored = rng.integers(0, 256, (5000, 6, 6, 3), dtype=np.uint8)
    from_disk = monitoring.input_profile(ImageRows(stored), {"kind": "images"})
    in_memory = monitoring.input_profile(np.asarray(ImageRows(stored)), {"kind": "images"})
    assert from_disk.keys() == in_memory.keys() and from_disk["rows"] == 5000
    for name, s in in_memory["numeric"].items():
        assert from_disk["numeric"][name] == pytest.approx(s)
    assert sorted(in_memory["numeric"]) == ["brightness (B)", "brightness (G)", "brightness (R)",
                                            "contrast (B)", "contrast (G)", "contrast (R)"]
    dark = monitoring.input_profile(np.asarray(ImageRows(stored // 3)), {"kind": "images"})
    found = {c["column"]: c for c in monitoring.input_drift(in_memory, [dark])}
    assert found["brightness (R)"]["verdict"] == "different" and found["brightness (R)"]["score"] < -5


def test_drift_limits_are_checked_naming_the_field_and_only_those_off_the_defaults_are_kept():
    assert monitoring.check_limits({"psi": 0.25, "shift": 1, "min_rows": 100, "share": None}) == {
        "shift": 1.0, "min_rows": 100}
    for given, message in [({"psi": 0}, "drift_limits.psi: must be a number from 0.01 to 10.0, got 0"),
                           ({"min_rows": 2.5}, "drift_limits.min_rows: must be a whole number"),
                           ({"shift": float("nan")}, "drift_limits.shift: must be a number"),
                           ({"shift": True}, "drift_limits.shift: must be a number"),
                           ({"bias": 1}, "drift_limits.bias: unknown limit"), ([1], "drift_limits: an object")]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            monitoring.check_limits(given)


def test_a_columns_verdict_follows_the_models_own_limits():
    training = {"rows": 100, "numeric": {"age": {"count": 100, "sum": 0.0, "sum_sq": 100.0}}, "categorical": {},
                "shares": {}}
    served = [{"rows": 10, "numeric": {"age": {"count": 10, "sum": 15.0, "sum_sq": 32.5}}, "categorical": {},
               "shares": {}}]  # a mean 1.5 training deviations up
    assert monitoring.input_drift(training, served)[0]["verdict"] == "different"
    looser = dict(monitoring.DEFAULT_LIMITS, shift=2.0)
    assert monitoring.input_drift(training, served, looser)[0]["verdict"] == "same"
    assert monitoring._mix_verdict(0.09, 0.25) == "same" and monitoring._mix_verdict(0.2, 0.25) == "some"
    assert monitoring._mix_verdict(0.19, 0.5) == "same" and monitoring._mix_verdict(0.3, 0.25) == "different"


@pytest.mark.django_db
def test_an_editor_sets_a_models_drift_limits_and_it_is_judged_again_at_once(client, people, tmp_path):
    from webapp.accounts.models import Notification
    from webapp.experiments.models import RegisteredModel

    run = _binary_run(people, tmp_path, epochs=6)
    version = registry.register(run=run, user=people.editor, name="churn")
    client.force_login(people.editor)
    rng = np.random.default_rng(7)
    skewed = "a,b,c\n" + "\n".join(f"{3 + v:.3f},{-3 + v:.3f},1" for v in rng.normal(0, 0.3, 100))
    assert client.post(f"/api/v1/models/{version.model.pk}/predict", {"file": io.BytesIO(skewed.encode())}).status_code == 200
    model = RegisteredModel.objects.get(pk=version.model.pk)
    assert model.drift_state == "different"
    url = f"/w/{people.workspace.slug}/models/{model.pk}/drift-limits/"
    # What its hidden layer makes of those rows drifted too (they sit in a corner: its spread collapsed).
    assert monitoring.report(model)["drift"]["features"]["verdict"] == "different"
    response = client.post(url, {"psi": "10", "shift": "20", "share": "100", "spread": "100", "min_rows": ""})
    assert response.status_code == 302 and response["Location"].endswith("#drift-limits")
    model.refresh_from_db()
    assert model.drift_limits == {"psi": 10.0, "shift": 20.0, "share": 1.0, "spread": 100.0}
    assert model.drift_state in ("same", "some")  # judged again at once by the looser limits
    assert Notification.objects.filter(user=people.editor, message__startswith="churn v1 is steady again").exists()
    page = client.get(model.get_absolute_url()).content.decode()
    assert "this model&#x27;s own limits" in page or "this model's own limits" in page
    assert 'data-testid="reset-limits"' in page
    bad = client.post(url, {"psi": "many"}, follow=True).content.decode()
    assert "drift_limits.psi: a number, got &#x27;many&#x27;" in bad
    assert client.post(url, {"reset": "1"}).status_code == 302
    model.refresh_from_db()
    assert model.drift_limits == {} and model.drift_state == "different"

    answer = client.patch(f"/api/v1/models/{model.pk}", {"drift_limits": {"min_rows": 0}}, content_type="application/json")
    assert answer.status_code == 400 and "drift_limits.min_rows" in answer.json()["detail"]
    answer = client.patch(f"/api/v1/models/{model.pk}", {"drift_limits": {"min_rows": 500}},
                          content_type="application/json")
    assert answer.status_code == 200 and answer.json()["drift_limits"]["min_rows"] == 500
    assert RegisteredModel.objects.get(pk=model.pk).drift_state == "too few"  # 100 rows served, 500 asked for
    client.force_login(people.viewer)
    assert client.post(url, {"psi": "1"}).status_code == 403
    assert 'data-testid="save-limits"' not in client.get(model.get_absolute_url()).content.decode()
