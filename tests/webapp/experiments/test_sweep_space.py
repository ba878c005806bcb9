"""A sweep's points: grids, random samples of them, and random draws from ranges."""

from __future__ import annotations

import itertools
import math
import random
import time

import pytest

from tests.webapp.experiments.conftest import iris_spec
from webapp.experiments import services, specs
from webapp.experiments.models import Run


def test_a_grid_is_every_combination_in_order_and_a_random_search_samples_it_without_repeats():
    space = {"units": [8, 16, 32], "learning_rate": [0.1, 0.01]}
    grid = services.sweep_points("grid", space, 10)
    expected = [dict(zip(["learning_rate", "units"], combo, strict=True))
                for combo in itertools.product([0.1, 0.01], [8, 16, 32])]
    assert grid == expected
    sample = services.sweep_points("random", space, 4, seed=7)
    assert sample == random.Random(7).sample(expected, 4)  # what sampling the built grid gives
    assert len({tuple(p.items()) for p in sample}) == 4
    assert services.sweep_points("random", space, 4, seed=7) == sample != services.sweep_points("random", space, 4, 8)


def test_a_huge_space_is_counted_not_built():
    space = {key: list(range(1, 1001)) for key in ("units", "filters", "batch_size", "epochs")}  # 10^12 points
    started = time.perf_counter()
    with pytest.raises(services.InvalidInput, match="1000000000000 runs is more than 50"):
        services.sweep_points("grid", space, 10)
    points = services.sweep_points("random", space, 5, seed=1)
    assert time.perf_counter() - started < 1.0
    assert len(points) == 5 and all(set(p) == set(space) and all(1 <= v <= 1000 for v in p.values()) for p in points)


def test_a_random_search_draws_from_ranges_log_uniformly_for_the_learning_rate_and_whole_numbers_for_sizes():
    space = {"learning_rate": {"low": 1e-4, "high": 1e-1}, "units": {"low": 8, "high": 256},
             "dropout": [0.0, 0.2]}
    points = services.sweep_points("random", space, 50, seed=3)
    rates = [p["learning_rate"] for p in points]
    assert all(1e-4 <= r <= 1e-1 for r in rates) and rates == [float(f"{r:.3g}") for r in rates]
    # Log-uniform: about as many draws in each decade (a uniform draw would put ~90 % in the last one).
    decades = [sum(1 for r in rates if 10 ** (k - 4) <= r < 10 ** (k - 3)) for k in range(3)]
    assert all(8 <= d <= 26 for d in decades), decades
    units = [p["units"] for p in points]
    assert all(isinstance(u, int) and 8 <= u <= 256 for u in units) and len(set(units)) > 20
    assert {p["dropout"] for p in points} == {0.0, 0.2}
    linear = services.sweep_points("random", {"dropout": {"low": 0.0, "high": 0.5}}, 50, seed=3)
    assert sum(p["dropout"] > 0.25 for p in linear) > 15  # not log-uniform unless asked


@pytest.mark.parametrize("method, values, message", [
    ("grid", {"low": 0.001, "high": 0.1}, "a range needs random search"),
    ("random", {"low": 0.1, "high": 0.001}, "a range needs numbers low < high"),
    ("random", {"low": 0, "high": 0.1}, "a log-uniform range needs low > 0"),
    ("random", {"low": 0.001, "high": 0.1, "step": 2}, "unknown key"),
    ("random", {"low": 0.001, "high": float("inf")}, "a range needs numbers low < high"),
])
def test_a_bad_range_is_refused_naming_the_parameter(method, values, message):
    with pytest.raises(services.InvalidInput, match=message) as raised:
        services.sweep_points(method, {"learning_rate": values}, 5)
    assert raised.value.field == "space.learning_rate"
    with pytest.raises(services.InvalidInput, match="takes whole numbers"):
        services.sweep_points("random", {"units": {"low": 8.5, "high": 64}}, 5)


@pytest.mark.django_db
def test_a_random_sweep_records_its_seed_and_ranges_and_shows_them(client, people, iris):
    client.force_login(people.editor)
    body = {"dataset_version": iris.pk, "spec": iris_spec(epochs=2), "data_config": {"target": "species"},
            "method": "random", "count": 4, "space": {"learning_rate": {"low": 0.001, "high": 0.1}}}
    answer = client.post(f"/api/v1/workspaces/{people.workspace.slug}/sweeps", body, content_type="application/json")
    assert answer.status_code == 201, answer.content
    sweep = client.get(f"/api/v1/sweeps/{answer.json()['id']}").json()
    assert isinstance(sweep["seed"], int)
    drawn = [run["params"] for run in sweep["runs"]]
    assert drawn == services.sweep_points("random", body["space"], 4, sweep["seed"])  # reproducible from the record
    runs = Run.objects.filter(sweep_id=sweep["id"]).order_by("pk")
    assert [r.spec["compile"]["optimizer"]["learning_rate"] for r in runs] == [p["learning_rate"] for p in drawn]
    page = client.get(sweep["url"]).content.decode()
    assert f"random search (seed {sweep['seed']})" in page and "learning_rate from 0.001 to 0.1, log-uniform" in page
    again = client.post(f"/api/v1/workspaces/{people.workspace.slug}/sweeps", dict(body, seed=sweep["seed"]),
                        content_type="application/json").json()
    assert [r["params"] for r in client.get(f"/api/v1/sweeps/{again['id']}").json()["runs"]] == drawn
    assert not math.isnan(drawn[0]["learning_rate"])


def test_the_optimizers_a_sweep_may_try_are_the_engines():
    from trainer import optimizers

    assert services.OPTIMIZERS == optimizers.NAMES


@pytest.mark.django_db
def test_a_sweep_over_optimizers_gives_each_its_own_defaults_and_keeps_the_learning_rate(people, iris):
    spec = iris_spec(epochs=2)
    spec["compile"]["optimizer"] = {"type": "adam", "learning_rate": 0.02, "beta_1": 0.8}
    sweep = services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=spec,
                                  data_config={"target": "species"},
                                  space={"optimizer": ["sgd", "rmsprop"], "learning_rate": [0.05]})
    runs = list(sweep.runs.order_by("pk"))
    assert [r.sweep_params for r in runs] == [{"learning_rate": 0.05, "optimizer": o} for o in ("sgd", "rmsprop")]
    for run, name in zip(runs, ("sgd", "rmsprop"), strict=True):
        optimizer = run.spec["compile"]["optimizer"]
        assert optimizer["type"] == name and optimizer["learning_rate"] == 0.05 and "beta_1" not in optimizer
    kept = services.apply_params(spec, {"optimizer": "sgd"})["compile"]["optimizer"]
    assert kept == {"type": "sgd", "learning_rate": 0.02}


@pytest.mark.parametrize("values", [["adam", "nadam"], [], "adam", [1, 2], {"low": 1, "high": 2}])
def test_an_unknown_optimizer_is_refused_naming_the_names(values):
    with pytest.raises(services.InvalidInput, match="list of names from sgd, adam, adamw, rmsprop, adagrad") as raised:
        services.sweep_points("random", {"optimizer": values}, 3)
    assert raised.value.field == "space.optimizer"


@pytest.mark.django_db
def test_a_sweep_over_class_weights_sets_them_and_a_regression_refuses_them(people, iris):
    sweep = services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                  spec=iris_spec(epochs=2), data_config={"target": "species"},
                                  space={"class_weight": ["none", "balanced"]})
    assert [r.spec["fit"]["class_weight"] for r in sweep.runs.order_by("pk")] == [None, "balanced"]
    spec = iris_spec(epochs=2)
    spec["compile"].update(loss="mse", metrics=[])
    with pytest.raises(specs.SpecInvalid) as raised:
        services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=spec,
                              data_config={"target": "petal width (cm)"}, space={"class_weight": ["balanced"]})
    assert raised.value.field == "fit.class_weight" and "needs a classification loss" in str(raised.value)
    with pytest.raises(services.InvalidInput, match="list of names from none, balanced"):
        services.sweep_points("grid", {"class_weight": ["heavy"]}, 3)


def _random_sweep(people, iris, space, count, **extra):
    return services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                 spec=iris_spec(epochs=2), data_config={"target": "species"}, method="random",
                                 space=space, count=count, **extra)


@pytest.mark.django_db
def test_more_runs_of_a_random_search_over_ranges_go_on_with_its_stream(client, people, iris):
    space = {"learning_rate": {"low": 0.001, "high": 0.1}}
    sweep = _random_sweep(people, iris, space, 3, seed=11)
    client.force_login(people.editor)
    answer = client.post(f"/api/v1/sweeps/{sweep.pk}/extend", {"count": 2}, content_type="application/json")
    assert answer.status_code == 201, answer.content
    runs = list(sweep.runs.order_by("pk"))
    assert [r.pk for r in runs[3:]] == answer.json()["added"] and len(runs) == 5
    # The five are what one sweep of five would have drawn with the same seed.
    assert [r.sweep_params for r in runs] == services.sweep_points("random", sweep.space, 5, 11)
    assert runs[4].name.startswith(f"{sweep.name} #5 (")
    assert all(r.status == "queued" and r.created_by == people.editor for r in runs[3:])


@pytest.mark.django_db
def test_more_runs_of_a_sampled_grid_take_only_untried_points_and_stop_when_none_are_left(client, people, iris):
    sweep = _random_sweep(people, iris, {"learning_rate": [0.01, 0.02, 0.05], "units": [8, 16]}, 2)
    added = services.sweep_extend(sweep=sweep, user=people.owner, count=3)
    points = [tuple(sorted(r.sweep_params.items())) for r in sweep.runs.all()]
    assert len(added) == 3 and len(set(points)) == 5
    with pytest.raises(services.InvalidInput, match="only 1 point of this sweep's space is still untried"):
        services.sweep_extend(sweep=sweep, user=people.owner, count=2)
    client.force_login(people.owner)
    page = client.post(reverse_extend(people, sweep), {"count": "1"}, follow=True).content.decode()
    assert "Added 1 run to the sweep." in page and sweep.runs.count() == 6
    assert "all 6 points" not in page and 'data-testid="extend-sweep"' in page
    page = client.post(reverse_extend(people, sweep), {"count": "1"}, follow=True).content.decode()
    assert "only 0 points of this sweep&#x27;s space are still untried" in page and sweep.runs.count() == 6


def reverse_extend(people, sweep):
    return f"/w/{people.workspace.slug}/sweeps/{sweep.pk}/extend/"


@pytest.mark.django_db
def test_a_grid_and_a_full_sweep_cannot_grow_and_a_viewer_may_not_add_runs(client, people, iris):
    grid = services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                 spec=iris_spec(epochs=2), data_config={"target": "species"},
                                 space={"learning_rate": [0.01, 0.02]})
    with pytest.raises(services.InvalidInput, match="a grid sweep already has a run for every point"):
        services.sweep_extend(sweep=grid, user=people.owner, count=1)
    full = _random_sweep(people, iris, {"learning_rate": {"low": 0.001, "high": 0.1}}, services.MAX_SWEEP_RUNS - 1)
    with pytest.raises(services.InvalidInput, match="must be an integer from 1 to 1 \\(a sweep has at most 50 runs"):
        services.sweep_extend(sweep=full, user=people.owner, count=2)
    services.sweep_extend(sweep=full, user=people.owner, count=1)
    with pytest.raises(services.InvalidInput, match="this sweep has its 50 runs"):
        services.sweep_extend(sweep=full, user=people.owner, count=1)
    client.force_login(people.viewer)
    assert client.post(f"/api/v1/sweeps/{full.pk}/extend", {"count": 1}, content_type="application/json").status_code == 403
    assert 'data-testid="extend-sweep"' not in client.get(full.get_absolute_url()).content.decode()


@pytest.mark.django_db
def test_the_queue_and_an_active_sweep_reload_themselves_by_script_not_by_meta_refresh(client, people, iris):
    sweep = _random_sweep(people, iris, {"learning_rate": [0.01, 0.02]}, 2)
    client.force_login(people.viewer)
    queue = client.get(f"/w/{people.workspace.slug}/queue/").content.decode()
    assert 'js/autoreload.js" data-seconds="10"' in queue and "http-equiv" not in queue
    assert 'js/autoreload.js" data-seconds="5"' in client.get(sweep.get_absolute_url()).content.decode()
    Run.objects.filter(sweep=sweep).update(status="succeeded")
    assert "autoreload.js" not in client.get(sweep.get_absolute_url()).content.decode()  # nothing left to watch


@pytest.mark.django_db
def test_more_runs_of_a_sample_of_a_huge_grid_are_new_points(people, iris):
    space = {"units": list(range(8, 1008)), "batch_size": list(range(8, 1008))}  # 10^6 points: drawn, not listed
    sweep = _random_sweep(people, iris, space, 2)
    added = services.sweep_extend(sweep=sweep, user=people.owner, count=3)
    points = {tuple(sorted(r.sweep_params.items())) for r in sweep.runs.all()}
    assert len(added) == 3 and len(points) == 5
    assert all(8 <= r.sweep_params["units"] < 1008 for r in added)


@pytest.fixture
def co2(people):
    from tests.webapp.experiments.conftest import make_version

    return make_version(people.workspace, people.owner, "co2_weekly.csv", name="CO2", kind="series", target="co2")


@pytest.mark.django_db
def test_a_series_sweep_over_windows_and_forecasts_sets_each_runs_data_and_input_steps(client, people, co2):
    from webapp.experiments import execution

    spec = specs.suggest("series", "regression", [12, 1], 1)
    spec["fit"]["epochs"] = 1
    sweep = services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=co2, spec=spec,
                                  data_config={"window": 12}, space={"window": [6, 24], "forecast": ["change", "level"]})
    runs = list(sweep.runs.order_by("pk"))
    assert [(r.sweep_params["forecast"], r.sweep_params["window"]) for r in runs] == [
        ("change", 6), ("change", 24), ("level", 6), ("level", 24)]
    for run in runs:
        assert run.data_config["window"] == run.sweep_params["window"] == run.spec["input_shape"][0]
        assert run.data_config["forecast"] == run.sweep_params["forecast"]
    assert sweep.data_config["window"] == 12  # the sweep's own config stays
    assert execution.run_execute(runs[3].pk) == "succeeded", runs[3].reason
    runs[3].refresh_from_db()
    assert runs[3].preprocessing["window"] == 24 and runs[3].preprocessing["forecast"] == "level"
    assert runs[3].results["test"]["rmse"] > 0
    client.force_login(people.viewer)
    page = client.get(sweep.get_absolute_url()).content.decode()
    assert '<th class="num">window</th>' in page and '<th class="num">forecast</th>' in page


@pytest.mark.django_db
def test_a_table_refuses_a_sweep_over_windows_and_a_bad_window_names_itself(client, people, iris, co2):
    client.force_login(people.editor)
    url = f"/api/v1/workspaces/{people.workspace.slug}/sweeps"
    body = {"dataset_version": iris.pk, "spec": iris_spec(epochs=1), "data_config": {"target": "species"},
            "space": {"window": [4, 8]}}
    answer = client.post(url, body, content_type="application/json")
    assert answer.status_code == 400 and answer.json()["field"] == "space.window"
    assert "only a series has a window and a forecast" in answer.json()["detail"]
    series = dict(body, dataset_version=co2.pk, data_config={}, spec=specs.suggest("series", "regression", [12, 1], 1),
                  space={"window": [0, 8]})
    answer = client.post(url, series, content_type="application/json")
    assert answer.status_code == 400 and answer.json()["field"] == "space.window", answer.json()
    assert answer.json()["detail"] == "space.window: must be an integer ≥ 1, got 0"
    answer = client.post(url, dict(series, space={"forecast": ["change", "delta"]}), content_type="application/json")
    assert answer.status_code == 400 and answer.json()["field"] == "space.forecast"
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_a_cross_validation_tests_every_row_once_and_reports_each_scores_mean_and_spread(client, people, iris):
    import statistics

    from webapp.experiments import datasource, execution

    sweep = services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                  spec=iris_spec(epochs=5), data_config={"target": "species", "folds": 3},
                                  method="grid", space={"fold": [0, 1, 2]})
    runs = list(sweep.runs.order_by("pk"))
    assert sweep.name == "3-fold cross-validation" and [r.data_config["fold"] for r in runs] == [0, 1, 2]
    tested = []
    for run in runs:
        prepared = datasource.prepare(iris, run.data_config)
        assert len(prepared.x_test) == 50 and len(prepared.x_train) + len(prepared.x_val) == 100
        tested.extend(prepared.sample_ids)
        assert execution.run_execute(run.pk) == "succeeded"
    assert sorted(tested) == list(range(150))  # every row is tested by exactly one fold
    accuracies = [Run.objects.get(pk=r.pk).results["test"]["accuracy"] for r in runs]
    client.force_login(people.viewer)
    page = client.get(sweep.get_absolute_url()).content.decode()
    assert 'data-testid="cross-validation"' in page and "3 / 3" in page
    assert f"{statistics.fmean(accuracies):.4f} ± {statistics.pstdev(accuracies):.4f}" in page
    assert 'data-testid="sweep-best"' not in page  # no fold is a "best" model


@pytest.mark.django_db
@pytest.mark.parametrize(("data_config", "extra", "message"), [
    ({"target": "species"}, {}, "space.fold: set data_config.folds"),
    ({"target": "species", "folds": 3}, {"stopping": "median"}, "stopping: a cross-validation trains every fold"),
    ({"target": "species", "folds": 3}, {"space": {"fold": [0, 3]}}, "space.fold: must be a whole number from 0 to 2"),
    ({"target": "species", "folds": 1}, {"space": {"fold": [0]}}, "data_config.folds: must be a whole number from 2 to 20"),
])
def test_a_cross_validation_that_cannot_run_is_refused_naming_the_field(people, iris, data_config, extra, message):
    kwargs = {"method": "grid", "space": {"fold": [0, 1, 2]}, **extra}
    with pytest.raises(ValueError, match=message):
        services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                              spec=iris_spec(), data_config=data_config, **kwargs)


@pytest.mark.django_db
def test_a_sweep_page_says_which_hyper_parameters_mattered_by_their_values_mean_best_metric(client, people, iris):
    sweep = services.sweep_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                  spec=iris_spec(), data_config={"target": "species"}, method="grid",
                                  space={"learning_rate": [0.001, 0.1], "units": [8, 16, 32]})
    # Planted: the rate moves val_accuracy by 0.3, the units by 0.01 at most.
    for run in sweep.runs.all():
        p = run.sweep_params
        value = (0.6 if p["learning_rate"] == 0.001 else 0.9) + {8: 0.0, 16: 0.01, 32: 0.005}[p["units"]]
        Run.objects.filter(pk=run.pk).update(best_metric=value, best_metric_name="val_accuracy", status="succeeded")
    client.force_login(people.viewer)
    page = client.get(sweep.get_absolute_url())
    effects = page.context["effects"]
    assert [e["name"] for e in effects] == ["learning_rate", "units"]  # the one that mattered first
    rate, units = effects
    assert rate["spread"] == pytest.approx(0.3) and rate["best"] == "0.1"
    assert [(g["label"], g["runs"]) for g in units["groups"]] == [("8", 2), ("16", 2), ("32", 2)]
    assert units["spread"] == pytest.approx(0.01) and units["best"] == "16"
    html = page.content.decode()
    assert 'data-testid="parameter-effects"' in html and "0.1: 0.9050 (3)" in html


def test_a_random_searchs_range_is_judged_in_thirds_of_its_runs():
    from types import SimpleNamespace

    from webapp.experiments import selectors

    sweep = SimpleNamespace(space={"learning_rate": {"low": 1e-4, "high": 1e-1, "log": True}})
    rates = [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03]
    runs = [SimpleNamespace(sweep_params={"learning_rate": r}, best_metric=m, best_metric_name="val_loss")
            for r, m in zip(rates, [0.9, 0.8, 0.5, 0.45, 0.7, 0.75])]
    (effect,) = selectors.parameter_effects(sweep, runs)
    assert [g["label"] for g in effect["groups"]] == ["0.0001 – 0.0003", "0.001 – 0.003", "0.01 – 0.03"]
    assert effect["best"] == "0.001 – 0.003"  # a loss: lower is better
    assert effect["spread"] == pytest.approx(0.85 - 0.475)


def test_more_folds_than_rows_are_refused_naming_the_folds():
    import pandas as pd

    from webapp.experiments import preparation

    frame = pd.DataFrame({"x": range(6), "y": [0, 1] * 3})
    config = preparation.normalise_config({"folds": 10, "fold": 0})
    with pytest.raises(preparation.DataError, match="data_config.folds: 10 folds need at least as many rows; this "
                                                    "data has 6"):
        preparation.prepare_table(frame, config, target="y")
