"""Running a run in-process: the same service the worker calls, without the broker."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from tests.webapp.experiments.conftest import iris_spec, make_version
from trainer import Sequential
from webapp.experiments import checkpoints, datasource, execution, preparation, services, specs
from webapp.experiments.models import MetricRow, Run


@pytest.mark.django_db
def test_a_run_on_iris_trains_to_a_real_accuracy(people, iris):
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                              spec=iris_spec(epochs=30), data_config={"target": "species"})
    assert execution.run_execute(run.pk, hostname="test") == "succeeded"
    run.refresh_from_db()
    assert run.status == "succeeded", run.reason
    assert run.results["test"]["accuracy"] >= 0.8
    assert MetricRow.objects.filter(run=run).count() == 30
    assert run.epochs_done == 30
    assert run.results["confusion_matrix"] and len(run.results["class_names"]) == 3
    matrix = np.asarray(run.results["confusion_matrix"])
    per_class = run.results["per_class"]
    assert [c["name"] for c in per_class] == run.results["class_names"]
    assert [c["support"] for c in per_class] == matrix.sum(axis=1).tolist()
    assert np.mean([c["recall"] for c in per_class]) <= 1.0 and sum(
        c["recall"] * c["support"] for c in per_class) == pytest.approx(np.trace(matrix))
    assert checkpoints.weights_path(run).exists()
    assert checkpoints.epochs_saved(run)[-1] == 30
    assert run.code_version and run.library_versions["numpy"]
    memory = run.results["memory"]
    assert 20 < memory["peak_rss_mb"] < 100_000 and memory["gpu_pool_mb"] is None  # a CPU run


@pytest.mark.django_db
def test_the_worker_refuses_a_model_whose_output_does_not_fit_the_target_before_it_trains(people, iris):
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                              spec=iris_spec(epochs=3), data_config={"target": "species"})
    spec = dict(run.spec, layers=run.spec["layers"][:-1])  # as if the spec had changed since: a hidden layer last
    Run.objects.filter(pk=run.pk).update(spec=spec)
    assert execution.run_execute(run.pk, hostname="test") == "failed"
    run.refresh_from_db()
    assert run.status == "failed" and run.epochs_done == 0 and not MetricRow.objects.filter(run=run).exists()
    assert f"layers[{len(spec['layers']) - 1}]: the model outputs" in run.reason
    assert "but the target has 3 classes: it needs (3)" in run.reason


def affairs_spec(epochs: int, batch_size: int = 64) -> dict:
    return {
        "input_shape": [8],
        "layers": [{"type": "Dense", "units": 32, "activation": "relu"}, {"type": "Dense", "units": 1}],
        "compile": {"loss": "mse", "optimizer": {"type": "adam", "learning_rate": 0.003}, "metrics": ["mae"]},
        "fit": {"epochs": epochs, "batch_size": batch_size, "seed": 5},
    }


@pytest.fixture
def affairs(people):
    return make_version(people.workspace, people.owner, "fair_affairs.csv", name="Affairs", target="affairs")


def test_logged_errors_convert_to_the_targets_units():
    pre = {"task": "regression", "kind": "table", "target_scaler": {"kind": "TargetScaler", "version": 1,
                                                                    "mean": 10.0, "scale": 3.0}}
    logs = {"loss": 2.0, "mae": 0.5, "val_loss": 1.0, "val_mae": 0.25, "val_rmse": 0.5, "val_r2": 0.9,
            "learning_rate": 0.01, "epoch_time": 1.5}
    converted = preparation.logs_in_target_units(logs, pre, "mse")
    assert converted == {"loss": 18.0, "mae": 1.5, "val_loss": 9.0, "val_mae": 0.75, "val_rmse": 1.5, "val_r2": 0.9,
                         "learning_rate": 0.01, "epoch_time": 1.5}
    assert preparation.logs_in_target_units(logs, pre, "huber")["loss"] == 2.0  # not a unit of the target
    series = {"task": "regression", "kind": "series", "mean": [330.0], "scale": [10.0]}
    assert preparation.logs_in_target_units({"val_mae": 0.1}, series, "mse") == {"val_mae": pytest.approx(1.0)}
    assert preparation.logs_in_target_units(logs, {"task": "classification"}, "mse") == logs


@pytest.mark.django_db
def test_a_regression_runs_curves_and_best_metric_are_in_the_targets_units(client, people, affairs):
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=affairs,
                              spec=affairs_spec(epochs=3), data_config={"target": "affairs"}, name="affairs")
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    rows = list(MetricRow.objects.filter(run=run).order_by("epoch").values_list("values", flat=True))
    # By hand: the final model's error on the validation split, in years of affairs.
    prepared = datasource.prepare(affairs, run.data_config, loss="mse")
    model = Sequential.from_spec(dict(run.spec, input_shape=prepared.input_shape))
    model.load_weights(str(checkpoints.weights_path(run)))
    predicted = preparation.decode_predictions(model.predict(prepared.x_val), prepared.preprocessing)["values"]
    truth = preparation.decode_targets(prepared.y_val, prepared.preprocessing)
    mae = float(np.mean(np.abs(np.asarray(predicted) - truth)))
    assert rows[-1]["val_mae"] == pytest.approx(mae, rel=1e-4)
    assert rows[-1]["val_loss"] == pytest.approx(np.mean((np.asarray(predicted) - truth) ** 2), rel=1e-3)
    assert run.best_metric_name == "val_mae"
    assert run.best_metric == min(row["val_mae"] for row in rows)
    assert run.best_metric == pytest.approx(run.results["test"]["mae"], rel=0.5)  # same units as the test MAE
    assert "mape (%)" not in run.results["test"]  # most people report no affair: a percentage of 0 is undefined
    client.force_login(people.viewer)
    page = client.get(f"/w/{people.workspace.slug}/").content.decode()
    assert f"{run.best_metric:.4f}" in page


class FakeMonitor:
    def __init__(self):
        self.cancel, self.lost = threading.Event(), threading.Event()


@pytest.mark.django_db
def test_the_cancel_check_between_batches_reads_a_flag_and_touches_nothing_else(django_assert_num_queries):
    from trainer.core import TrainingError

    monitor = FakeMonitor()
    _, cancel_watch = execution.make_callbacks(1, 1, monitor, metric="val_loss", greater=False, best=None,
                                               best_epoch=None)
    cancel_watch.set_model(SimpleNamespace(stop_training=False))
    with django_assert_num_queries(0):
        for batch in range(100):
            cancel_watch.on_batch_end(batch, {"batch": batch, "size": 32})  # a GPU step: no loss read back
        assert cancel_watch.model.stop_training is False
        monitor.cancel.set()
        cancel_watch.on_batch_end(100, {"batch": 100, "size": 32, "loss": 0.5})
    assert cancel_watch.model.stop_training is True
    with pytest.raises(TrainingError, match="loss became NaN at epoch 1"):
        cancel_watch.on_epoch_begin(0)
        cancel_watch.on_batch_end(0, {"loss": float("nan")})


def test_cancel_stops_an_in_process_run_within_seconds(transactional_db, people, monkeypatch):
    monkeypatch.setattr(services, "dispatch", lambda run_id: False)  # no broker here: this test is the worker
    affairs = make_version(people.workspace, people.owner, "fair_affairs.csv", target="affairs")
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=affairs,
                              spec=affairs_spec(epochs=500, batch_size=16), data_config={"target": "affairs"})
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(execution.run_execute(run.pk, hostname="thread")))
    worker.start()
    deadline = time.monotonic() + 60
    while Run.objects.get(pk=run.pk).epochs_done < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    asked = time.monotonic()
    services.run_cancel(run=Run.objects.get(pk=run.pk), user=people.editor)
    worker.join(timeout=30)
    took = time.monotonic() - asked
    run.refresh_from_db()
    assert outcome == ["cancelled"] and run.status == "cancelled"
    assert took < 5, f"cancel took {took:.1f} s"
    assert 1 <= run.epochs_done < 500 and run.results["test"]["mae"] is not None
    print(f"in-process cancel to stopped: {took:.2f} s after epoch {run.epochs_done}")


@pytest.mark.parametrize(("tf32", "shown"), [("0", "GPU (NVIDIA H100 80GB HBM3)"),
                                             ("1", "GPU (NVIDIA H100 80GB HBM3, TF32 matrix products)")])
def test_a_gpu_run_records_the_gpu_by_name_and_its_tf32_setting(monkeypatch, tf32, shown):
    from trainer import backend

    chosen = []
    monkeypatch.setattr(backend, "gpu_available", lambda: True)
    monkeypatch.setattr(backend, "set_device", chosen.append)
    monkeypatch.setattr(backend, "get_device", lambda: chosen[-1])
    monkeypatch.setattr(backend, "gpu_name", lambda: "NVIDIA H100 80GB HBM3")
    monkeypatch.setenv("CUPY_TF32", tf32)
    assert execution.use_device("gpu") == shown and chosen == ["gpu"]
    assert execution.use_device("cpu").startswith("CPU (") and chosen[-1] == "cpu"


@pytest.mark.django_db
def test_a_runs_plateau_cuts_show_in_its_curves_carry_into_a_continue_and_not_into_a_retuned_fork(people, iris):
    spec = iris_spec(epochs=8, learning_rate=0.02)
    # No epoch beats the best by 10: from the second on, each cuts the rate in half.
    spec["fit"]["reduce_lr_on_plateau"] = {"monitor": "loss", "factor": 0.5, "patience": 0, "min_delta": 10.0}
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=spec,
                              data_config={"target": "species"})
    assert execution.run_execute(run.pk) == "succeeded"
    rates = [row.values["learning_rate"] for row in MetricRow.objects.filter(run=run).order_by("epoch")]
    assert rates == pytest.approx([0.02 * 0.5 ** max(0, epoch - 1) for epoch in range(8)])

    run.refresh_from_db()
    more = services.run_continue(run=run, user=people.owner, epochs=1)
    assert execution.run_execute(more.pk) == "succeeded"
    assert MetricRow.objects.get(run=more, epoch=9).values["learning_rate"] == pytest.approx(rates[-1] / 2)

    retuned = dict(run.spec, compile=dict(run.spec["compile"], optimizer={"type": "adam", "learning_rate": 0.01}),
                   fit=dict(run.spec["fit"], epochs=9, reduce_lr_on_plateau=None))
    fork = services.run_fork(run=run, user=people.owner, from_epoch=8, spec=retuned)
    assert execution.run_execute(fork.pk) == "succeeded"
    assert MetricRow.objects.get(run=fork, epoch=9).values["learning_rate"] == pytest.approx(0.01)


@pytest.mark.django_db
def test_a_run_with_balanced_class_weights_records_what_each_class_weighed_and_shows_it(client, people, tmp_path):
    rng = np.random.default_rng(0)
    rare = rng.random(600) < 0.1
    features = rng.normal(size=(600, 3)) + rare[:, None] * 1.5
    rows = ["a,b,c,kind"] + [f"{x:.4f},{y:.4f},{z:.4f},{'rare' if r else 'common'}"
                             for (x, y, z), r in zip(features, rare)]
    (tmp_path / "rare.csv").write_text("\n".join(rows) + "\n")
    version = make_version(people.workspace, people.owner, str(tmp_path / "rare.csv"), name="Rare", target="kind")
    spec = iris_spec(epochs=5)
    spec["input_shape"], spec["layers"][-1]["units"] = [3], 2
    spec["fit"]["class_weight"] = "balanced"
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=version, spec=spec,
                              data_config={"target": "kind"})
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    y_train = datasource.prepare(version, run.data_config).y_train
    counts = np.bincount(y_train)
    recorded = run.results["class_weights"]
    assert recorded["setting"] == "balanced" and list(recorded["weights"]) == run.preprocessing["class_names"]
    assert list(recorded["weights"].values()) == pytest.approx(len(y_train) / (2 * counts))
    client.force_login(people.viewer)
    page = client.get(run.get_absolute_url()).content.decode()
    assert "balanced (each class weighs inversely to its share of the training rows)" in page
    assert f"{run.results['memory']['peak_rss_mb']:.0f} MB at most in the worker process" in page
    assert f"rare {recorded['weights']['rare']:.3f}" in page
    rare = next(c for c in run.results["per_class"] if c["name"] == "rare")
    assert f"<td>rare</td><td class=\"num\">{rare['precision']:.3f}</td><td class=\"num\">{rare['recall']:.3f}</td>" in page

    regression = dict(spec, compile=dict(spec["compile"], loss="mse"))
    with pytest.raises(specs.SpecInvalid, match="fit.class_weight: needs a classification loss"):
        services.run_create(workspace=people.workspace, user=people.owner, dataset_version=version, spec=regression,
                            data_config={"target": "kind"})


@pytest.mark.django_db
def test_a_run_that_early_stopping_ended_says_when_and_why(client, people, iris):
    spec = iris_spec(epochs=20)
    spec["fit"]["early_stopping"] = {"monitor": "loss", "patience": 1, "min_delta": 100.0, "restore_best_weights": True}
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=spec,
                              data_config={"target": "species"})
    assert execution.run_execute(run.pk, hostname="test") == "succeeded"
    run.refresh_from_db()
    assert run.epochs_done == 2  # the first epoch improves on nothing; the second not by 100
    assert run.results["stopped_early"] == {"rule": "early_stopping", "epoch": 2, "epochs": 20, "metric": "loss",
                                            "patience": 1, "best_epoch": 1, "restored": True}
    client.force_login(people.viewer)
    page = client.get(run.get_absolute_url()).content.decode()
    assert ("after epoch 2 of 20, by early stopping: loss had not improved for 1 epoch since epoch 1, whose weights "
            "the model keeps") in page
    assert 'data-testid="stopped-note">stopped early</small>' in page
    plain = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                spec=iris_spec(epochs=2), data_config={"target": "species"})
    execution.run_execute(plain.pk, hostname="test")
    plain.refresh_from_db()
    assert "stopped_early" not in plain.results and "stopped-note" not in client.get(plain.get_absolute_url()).content.decode()


@pytest.mark.django_db
def test_a_table_runs_column_importance_finds_the_columns_that_carry_the_target_and_shows_them(
        client, people, tmp_path):
    planted_run(client, people, tmp_path)


def planted_run(client, people, tmp_path):
    """A run on a table whose target comes from one numeric column and one category, and not from a
    third; trained, its importance checked, and shown to a viewer (logged in after it)."""
    rng = np.random.default_rng(3)
    n = 800
    signal, noise = rng.normal(size=n), rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    shift = np.select([colour == "red", colour == "green"], [2.0, -2.0], 0.0)
    target = 3 * signal + shift + 0.1 * rng.normal(size=n)  # noise plays no part
    rows = ["signal,noise,colour,target"] + [f"{a:.4f},{b:.4f},{c},{t:.4f}"
                                             for a, b, c, t in zip(signal, noise, colour, target)]
    (tmp_path / "planted.csv").write_text("\n".join(rows) + "\n")
    version = make_version(people.workspace, people.owner, str(tmp_path / "planted.csv"), name="Planted",
                           target="target")
    spec = affairs_spec(epochs=40, batch_size=32)
    spec["input_shape"] = [5]
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=version, spec=spec,
                              data_config={"target": "target"})
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    importance = run.results["importance"]
    assert importance["metric"] == "r2" and importance["scored"] == "R²" and importance["repeats"] == 5
    assert importance["rows"] == run.results["test_rows"]
    assert importance["baseline"] == pytest.approx(run.results["test"]["r2"], abs=1e-6)
    by_name = {c["name"]: c for c in importance["columns"]}
    assert [c["name"] for c in importance["columns"]] == ["signal", "colour", "noise"]  # one entry per source column
    assert by_name["signal"]["mean"] > 1.0  # shuffling it loses about twice its share of the variance
    assert by_name["colour"]["mean"] > 0.1
    assert abs(by_name["noise"]["mean"]) < 0.02
    client.force_login(people.viewer)
    page = client.get(run.get_absolute_url()).content.decode()
    assert 'data-testid="importance"' in page and f"drops when one column's values are shuffled among {run.results['test_rows']} test rows" in page
    return run


@pytest.mark.django_db
def test_a_run_trained_before_columns_were_ranked_gets_its_ranking_from_a_worker_on_request(
        client, people, tmp_path, django_capture_on_commit_callbacks):
    from unittest import mock

    from webapp.experiments.tasks import rank_columns

    run = planted_run(client, people, tmp_path)
    at_training = run.results.pop("importance")
    run.save(update_fields=["results"])  # as a run from before the ranking was made looks
    url = f"/w/{people.workspace.slug}/runs/{run.pk}/rank-columns/"
    page = client.get(run.get_absolute_url()).content.decode()
    assert 'data-testid="rank-columns"' not in page  # a viewer may not ask
    assert client.post(url).status_code == 403
    client.force_login(people.editor)
    assert 'data-testid="rank-columns"' in client.get(run.get_absolute_url()).content.decode()
    with mock.patch.object(rank_columns, "apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post(url).status_code == 302
        apply_async.assert_called_once_with(args=[run.pk], queue="default")  # once the ask is committed
        page = client.get(run.get_absolute_url()).content.decode()
        assert "data-importance-pending" in page and 'data-testid="rank-columns"' not in page
        client.post(url)  # a second ask while the first is worked out starts nothing
        assert apply_async.call_count == 1
    rank_columns(run.pk)  # what the worker runs
    run.refresh_from_db()
    assert run.results["importance"] == at_training  # the same model, rows and shuffles as at the end of training
    page = client.get(run.get_absolute_url()).content.decode()
    assert 'id="chart-importance"' in page and "data-importance-pending" not in page and "rank-columns" not in page


@pytest.mark.django_db
def test_a_lost_or_failed_ranking_can_be_asked_for_again_and_a_run_without_columns_cannot(client, people, iris):
    from datetime import timedelta
    from unittest import mock

    from django.utils import timezone

    from webapp.experiments.tasks import rank_columns

    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                              spec=iris_spec(epochs=2), data_config={"target": "species"})
    client.force_login(people.editor)
    url = f"/w/{people.workspace.slug}/runs/{run.pk}/rank-columns/"
    messages = client.post(url, follow=True).content.decode()
    assert "only a finished run with a trained, tested model" in messages
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    long_ago = (timezone.now() - services.IMPORTANCE_PATIENCE - timedelta(minutes=1)).isoformat()
    run.results["importance"] = {"pending": long_ago}  # its worker was lost
    run.save(update_fields=["results"])
    assert not services.importance_pending(run)
    with mock.patch.object(rank_columns, "apply_async"):
        assert client.post(url).status_code == 302
    run.refresh_from_db()
    assert services.importance_pending(run)
    with mock.patch("webapp.experiments.datasource.prepare", side_effect=OSError("the data set's file is gone")):
        execution.importance_execute(run.pk)
    run.refresh_from_db()
    assert run.results["importance"] == {"error": "OSError: the data set's file is gone"}
    page = client.get(run.get_absolute_url()).content.decode()
    assert "could not be worked out: OSError: the data set&#x27;s file is gone" in page and "Try again" in page
    with mock.patch.object(rank_columns, "apply_async"):  # the API asks the same way
        answer = client.post(f"/api/v1/runs/{run.pk}/rank-columns")
        assert answer.status_code == 202 and set(answer.json()["importance"]) == {"pending"}
        answer = client.post(f"/api/v1/runs/{run.pk}/rank-columns")
        assert answer.status_code == 400 and "being ranked" in answer.json()["detail"]
    run.preprocessing = {**run.preprocessing, "kind": "images"}
    run.save(update_fields=["preprocessing"])
    assert "no columns to rank" in client.post(url, follow=True).content.decode()


def test_column_importance_samples_a_large_test_split_and_shuffles_fewer_times_for_wide_tables(monkeypatch):
    from trainer.data import TablePreprocessor

    columns = [f"c{i}" for i in range(250)]
    frame = {c: np.arange(3000, dtype=np.float64) for c in columns}
    pre = TablePreprocessor(columns, []).fit(frame)
    x = pre.transform(frame)
    prepared = SimpleNamespace(task="regression", x_test=x, y_test=np.zeros((3000, 1), np.float32),
                               preprocessing={"kind": "table", "features": pre.to_dict()})
    seen = []

    class Model:
        def predict(self, features, batch_size=256):
            seen.append(len(features))
            return features[:, :1]

    found = execution.column_importance(Model(), prepared, "mse", 32)
    assert found["rows"] == execution.IMPORTANCE_ROWS and set(seen) == {execution.IMPORTANCE_ROWS}
    assert found["repeats"] == 2 and len(seen) == 1 + 250 * 2
    assert len(found["columns"]) == 250


@pytest.mark.django_db
def test_a_run_that_asks_for_the_range_test_trains_at_the_rate_it_found_and_says_so(client, people, iris):
    spec = iris_spec(epochs=3, learning_rate=1e-6)
    spec["fit"]["find_learning_rate"] = {"start": 1e-6, "end": 10.0, "steps": 60}
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=spec,
                              data_config={"target": "species"})
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    found = run.results["lr_find"]
    rate = found["suggestion"]
    assert 1e-4 < rate < 10.0 and found["given"] == 1e-6 and found["settings"]["steps"] == 60
    assert len(found["learning_rates"]) == len(found["losses"]) <= 60
    # The stored spec says what trained: the found rate, and no second range test for a continue or a fork.
    assert run.spec["compile"]["optimizer"]["learning_rate"] == rate
    assert run.spec["fit"]["find_learning_rate"] is None
    rows = MetricRow.objects.filter(run=run).order_by("epoch").values_list("values", flat=True)
    assert [r["learning_rate"] for r in rows] == [pytest.approx(rate)] * 3
    assert run.results["test"]["accuracy"] > 0.5 and "confusion_matrix" in run.results
    client.force_login(people.viewer)
    page = client.get(run.get_absolute_url()).content.decode()
    assert f"chose the learning rate: <strong>{rate:.3g}</strong>" in page and 'id="chart-lr-find"' in page


@pytest.mark.django_db
def test_a_sweep_over_the_learning_rate_refuses_a_spec_that_finds_it(people, iris):
    spec = iris_spec()
    spec["fit"]["find_learning_rate"] = {}
    with pytest.raises(services.InvalidInput, match="space.learning_rate: the spec finds its learning rate"):
        services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=spec,
                              data_config={"target": "species"}, space={"learning_rate": [0.01, 0.1]})
