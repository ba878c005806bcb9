"""A sweep's stopping rules (median, successive halving): a run worse than the others so far stops,
and says why; the rest train on."""

from __future__ import annotations

import pytest

from tests.webapp.experiments.conftest import iris_spec
from webapp.experiments import execution, pruning, services
from webapp.experiments.models import MetricRow, Run


@pytest.mark.parametrize("own, others, greater, min_runs, median", [
    (0.9, [0.5, 0.6, 0.7], False, 3, 0.6),  # a loss above the median: stop
    (0.55, [0.5, 0.6, 0.7], False, 3, None),  # below it: go on
    (0.6, [0.5, 0.6, 0.7], False, 3, None),  # at the median is not worse
    (0.4, [0.5, 0.6, 0.7, 0.9], True, 3, 0.65),  # an accuracy under the median of four
    (0.9, [0.5, 0.6], False, 3, None),  # too few runs to compare with
    (None, [0.5, 0.6, 0.7], False, 3, None),  # no value of its own yet
])
def test_the_median_rule(own, others, greater, min_runs, median):
    assert pruning.median_verdict(own, others, greater=greater, min_runs=min_runs) == pytest.approx(median)


@pytest.mark.parametrize("own, others, greater, factor, min_runs, expected", [
    (0.9, [0.5, 0.6], False, 3, 2, (0.5, 1)),  # three runs at the rung: only the best goes on
    (0.5, [0.5, 0.6], False, 3, 2, None),  # a tie with the best goes on
    (0.55, [0.5, 0.6, 0.7, 0.8, 0.9], False, 3, 2, None),  # six: the best two go on, and it is second
    (0.65, [0.5, 0.6, 0.7, 0.8, 0.9], False, 3, 2, (0.6, 2)),  # third of six
    (0.55, [0.5, 0.6, 0.8], True, 2, 3, (0.6, 2)),  # an accuracy, halving: the best two of four
    (0.85, [0.5, 0.6, 0.8], True, 2, 3, None),
    (0.9, [0.5, 0.6], False, 3, 3, None),  # too few others yet
    (None, [0.5, 0.6, 0.7], False, 3, 2, None),
])
def test_successive_halving_keeps_the_best_part_of_a_rung(own, others, greater, factor, min_runs, expected):
    assert pruning.halving_verdict(own, others, greater=greater, reduction_factor=factor, min_runs=min_runs) == expected


def test_the_rungs_grow_by_the_factor_up_to_the_last_epoch():
    assert pruning.rungs(3, 3, 30) == [3, 9, 27]
    assert pruning.rungs(1, 2, 9) == [1, 2, 4, 8]
    assert pruning.rungs(3, 3, 27) == [3, 9]  # the last epoch is no rung: a run there has finished
    assert pruning.rungs(5, 3, 5) == []


@pytest.fixture
def sweep(people, iris):
    return services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                 spec=iris_spec(epochs=4), data_config={"target": "species"},
                                 space={"learning_rate": [0.01, 0.02, 0.03, 0.04]}, stopping="median")


@pytest.mark.django_db
def test_the_others_best_counts_only_runs_that_reached_the_epoch_and_only_epochs_up_to_it(sweep):
    runs = list(sweep.runs.order_by("pk"))
    rows = {runs[0]: [0.9, 0.5, 0.7], runs[1]: [0.8, None, 0.6, 0.1], runs[2]: [0.3]}  # runs[2] is behind
    MetricRow.objects.bulk_create([MetricRow(run=run, epoch=epoch, values={"val_loss": value, "loss": 0.0})
                                   for run, values in rows.items() for epoch, value in enumerate(values, start=1)])
    MetricRow.objects.create(run=runs[3], epoch=1, values={"val_loss": 0.0})  # the asking run itself
    stopping = pruning.for_run(runs[3], metric="val_loss", greater=False, epochs=4)
    assert sorted(stopping.others) == sorted(run.pk for run in runs[:3])
    best = pruning.others_best(stopping.others, 3, "val_loss", greater=False)
    assert sorted(best) == [0.5, 0.6]  # runs[1]'s 0.1 came after epoch 3; its null is not a value
    assert sorted(pruning.others_best(stopping.others, 3, "val_loss", greater=True)) == [0.8, 0.9]
    assert sorted(pruning.others_best(stopping.others, 1, "val_loss", greater=False)) == [0.3, 0.8, 0.9]


@pytest.mark.django_db
@pytest.mark.parametrize("stopping, field", [
    ("sometimes", "stopping.rule"),
    ({"rule": "mean"}, "stopping.rule"),
    ({"rule": "median", "grace_epochs": 0}, "stopping.grace_epochs"),
    ({"rule": "median", "min_runs": True}, "stopping.min_runs"),
    ({"rule": "median", "patience": 2}, "stopping.patience"),
    ({"rule": "median", "min_runs": 2}, "stopping.min_runs"),  # two runs: one other to compare with
    ({"rule": "asha", "reduction_factor": 1}, "stopping.reduction_factor"),  # keeping every run stops none
    ({"rule": "median", "reduction_factor": 3}, "stopping.reduction_factor"),  # not a setting of this rule
    (["median"], "stopping"),
])
def test_a_bad_stopping_setting_is_refused_naming_its_field(client, people, iris, stopping, field):
    client.force_login(people.editor)
    body = {"dataset_version": iris.pk, "spec": iris_spec(epochs=2), "data_config": {"target": "species"},
            "space": {"learning_rate": [0.01, 0.1]}, "stopping": stopping}
    response = client.post(f"/api/v1/workspaces/{people.workspace.slug}/sweeps", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field, response.json()
    assert not Run.objects.exists()


def test_the_median_rule_compares_with_at_most_the_other_runs_there_are():
    assert services.check_stopping("median", 10) == {"rule": "median", "grace_epochs": 3, "min_runs": 3}
    assert services.check_stopping("median", 3) == {"rule": "median", "grace_epochs": 3, "min_runs": 2}
    assert services.check_stopping("asha", 10) == {"rule": "asha", "grace_epochs": 3, "reduction_factor": 3,
                                                   "min_runs": 3}
    assert services.check_stopping({"rule": "asha", "reduction_factor": 2, "grace_epochs": 1}, 2)["min_runs"] == 1
    assert services.check_stopping(None, 3) == services.check_stopping("none", 3) == {}
    with pytest.raises(services.InvalidInput, match="a sweep of one run has no other run"):
        services.check_stopping("median", 1)


def _lossy_spec(epochs: int) -> dict:
    spec = iris_spec(epochs=epochs)
    spec["compile"]["metrics"] = []  # the runs are compared on val_loss
    return spec


@pytest.mark.django_db
@pytest.mark.parametrize("stopping", [{"rule": "median", "grace_epochs": 2, "min_runs": 2}, None])
def test_a_sweeps_run_worse_than_the_median_stops_after_its_grace_epochs_and_says_why(client, people, iris, stopping):
    # Two runs that learn, then one whose rate is too small to learn anything in six epochs.
    sweep = services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                  spec=_lossy_spec(6), data_config={"target": "species", "validation_fraction": 0.2},
                                  space={"learning_rate": [0.05, 0.04, 1e-7]}, stopping=stopping)
    good, better, hopeless = sorted(sweep.runs.all(), key=lambda run: -run.sweep_params["learning_rate"])
    for run in (good, better, hopeless):
        assert execution.run_execute(run.pk, hostname="test") == "succeeded"
        run.refresh_from_db()
    assert good.epochs_done == better.epochs_done == 6 and "stopped_early" not in good.results
    if stopping is None:
        assert hopeless.epochs_done == 6 and "stopped_early" not in hopeless.results
        return
    verdict = hopeless.results["stopped_early"]
    assert hopeless.epochs_done == 2 and MetricRow.objects.filter(run=hopeless).count() == 2
    assert verdict["epoch"] == 2 and verdict["epochs"] == 6 and verdict["metric"] == "val_loss"
    assert verdict["runs"] == 2 and verdict["value"] == hopeless.best_metric
    bests = [min(row.values["val_loss"] for row in run.metric_rows.filter(epoch__lte=2)) for run in (good, better)]
    assert verdict["median"] == pytest.approx(sum(bests) / 2) and verdict["value"] > verdict["median"]
    assert hopeless.results["test"]["loss"] > 0  # a finished run: scored on the test split, with its weights
    client.force_login(people.viewer)
    page = client.get(hopeless.get_absolute_url()).content.decode()
    assert "after epoch 2 of 6, by its sweep&#x27;s median rule" in page or "after epoch 2 of 6, by its sweep's median rule" in page
    sweep_page = client.get(sweep.get_absolute_url()).content.decode()
    assert "stopped at epoch 2" in sweep_page and "(1 stopped so far)" in sweep_page
    assert client.get(f"/api/v1/runs/{hopeless.pk}").json()["results"]["stopped_early"]["epoch"] == 2


@pytest.mark.django_db
def test_the_api_reads_a_sweep_with_its_runs_best_run_and_stopping_and_lists_them(client, people, iris):
    sweep = services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                  spec=iris_spec(epochs=2), data_config={"target": "species"},
                                  space={"learning_rate": [0.01, 0.1, 0.02]}, stopping={"rule": "median", "min_runs": 2})
    runs = list(sweep.runs.order_by("pk"))
    for run, best in zip(runs[:2], (0.7, 0.9), strict=True):  # accuracy: the higher is the better
        Run.objects.filter(pk=run.pk).update(best_metric=best, best_metric_name="val_accuracy", best_epoch=2)
    client.force_login(people.viewer)
    answer = client.get(f"/api/v1/sweeps/{sweep.pk}").json()
    assert answer["best_run"] == runs[1].pk and answer["stopping"] == {"rule": "median", "grace_epochs": 3, "min_runs": 2}
    assert [r["id"] for r in answer["runs"]] == [r.pk for r in runs]
    assert [r["params"] for r in answer["runs"]] == [{"learning_rate": v} for v in (0.01, 0.1, 0.02)]
    assert all(r["stopped_early"] is None for r in answer["runs"])
    listed = client.get(f"/api/v1/workspaces/{people.workspace.slug}/sweeps").json()["sweeps"]
    assert [s["id"] for s in listed] == [sweep.pk] and "runs" not in listed[0]
    page = client.get(sweep.get_absolute_url()).content.decode()
    assert f'Best so far: <a href="{runs[1].get_absolute_url()}">#{runs[1].pk}</a> (learning_rate 0.1)' in page
    # Another workspace's member sees neither.
    client.force_login(people.outsider)
    assert client.get(f"/api/v1/sweeps/{sweep.pk}").status_code == 404
    assert client.get(f"/api/v1/workspaces/{people.workspace.slug}/sweeps").status_code in (403, 404)


@pytest.mark.django_db
def test_successive_halving_stops_a_run_short_of_the_best_at_a_rung_only(client, people, iris):
    # Three runs that learn, then one too slow to learn in eight epochs. Rungs at epochs 2 and 4
    # (every 2 × 2^k before the last), halving: a run goes on if among the best half at a rung.
    stopping = {"rule": "asha", "grace_epochs": 2, "reduction_factor": 2, "min_runs": 3}
    sweep = services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                  spec=_lossy_spec(8), data_config={"target": "species", "validation_fraction": 0.2},
                                  space={"learning_rate": [0.05, 0.04, 0.03, 1e-7]}, stopping=stopping)
    runs = sorted(sweep.runs.all(), key=lambda run: -run.sweep_params["learning_rate"])
    for run in runs:
        assert execution.run_execute(run.pk, hostname="test") == "succeeded"
        run.refresh_from_db()
    assert [run.epochs_done for run in runs[:3]] == [8, 8, 8]  # fewer than three others: never judged
    hopeless = runs[3]
    verdict = hopeless.results["stopped_early"]
    assert verdict["rule"] == "asha" and verdict["epoch"] == 2 == hopeless.epochs_done
    bests = sorted(min(row.values["val_loss"] for row in run.metric_rows.filter(epoch__lte=2)) for run in runs[:3])
    assert verdict["runs"] == 3 and verdict["kept"] == 2 and verdict["cutoff"] == pytest.approx(bests[1])
    assert verdict["value"] == hopeless.best_metric > verdict["cutoff"]
    client.force_login(people.viewer)
    page = client.get(hopeless.get_absolute_url()).content.decode().replace("&#x27;", "'")
    assert "after epoch 2 of 8, by its sweep's successive halving" in page
    assert "not among the best 2 of the 4 runs that reached that epoch" in page
    sweep_page = client.get(sweep.get_absolute_url()).content.decode()
    assert "successive halving (ASHA): at epochs 2, 4, a run goes on" in sweep_page
    assert "best 1 in 2 of the runs" in sweep_page and "(1 stopped so far)" in sweep_page


def test_successive_halving_judges_at_its_rungs_only(monkeypatch):
    asked = []
    monkeypatch.setattr(pruning, "others_best", lambda ids, epoch, metric, greater: asked.append(epoch) or [0.1, 0.2, 0.3])
    rule = pruning.HalvingStopping(others=[1, 2, 3], metric="val_loss", greater=False, epochs=30, grace_epochs=3,
                                   reduction_factor=3, min_runs=3)
    verdicts = {epoch: rule.verdict(epoch, 0.5) for epoch in range(1, 31)}
    assert asked == [3, 9, 27]  # no query between the rungs
    assert [epoch for epoch, verdict in verdicts.items() if verdict] == [3, 9, 27]
    assert verdicts[9] == {"rule": "asha", "epoch": 9, "epochs": 30, "metric": "val_loss", "value": 0.5, "runs": 3,
                           "cutoff": 0.1, "kept": 1, "reduction_factor": 3}
    assert rule.verdict(9, 0.05) is None
