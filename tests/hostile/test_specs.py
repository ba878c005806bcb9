"""Hostile model specs through the REST API (create a run, summarise a spec, sweeps, forks).

Every bad spec gets a 400 whose JSON names the field, no run is created, and nothing stored changes.
"""

from __future__ import annotations

import copy
import json

import pytest

from tests.hostile.conftest import assert_no_trace, assert_unchanged, iris_spec, snapshot


def _with(path_and_value):
    spec = iris_spec()
    for path, value in path_and_value:
        target = spec
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = keys[-1]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return spec


def _deep(depth: int):
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


BAD_SPECS = [
    ("huge-units", _with([("layers.0.units", 10 ** 12)]), "units"),
    ("units-too-many-params", _with([("layers.0.units", 2_000_000)]), "layers"),
    ("negative-units", _with([("layers.0.units", -3)]), "units"),
    ("zero-units", _with([("layers.0.units", 0)]), "units"),
    ("units-as-string", _with([("layers.0.units", "16")]), "units"),
    ("units-as-float", _with([("layers.0.units", 16.5)]), "units"),
    ("units-as-bool", _with([("layers.0.units", True)]), "units"),
    ("units-as-list", _with([("layers.0.units", [16])]), "units"),
    ("unknown-layer", _with([("layers.0", {"type": "Teleport", "units": 3})]), "type"),
    ("layer-not-an-object", _with([("layers.0", "Dense")]), "layers"),
    ("layers-empty", _with([("layers", [])]), "layers"),
    ("layers-not-a-list", _with([("layers", {"type": "Dense"})]), "layers"),
    ("too-many-layers", _with([("layers", [{"type": "Dense", "units": 2}] * 500)]), "layers"),
    ("unknown-activation", _with([("layers.0.activation", "rm -rf /")]), "activation"),
    ("unknown-key-in-layer", _with([("layers.0.__class__", "os.system")]), "__class__"),
    ("negative-epochs", _with([("fit.epochs", -1)]), "epochs"),
    ("zero-batch-size", _with([("fit.batch_size", 0)]), "batch_size"),
    ("epochs-absurd", _with([("fit.epochs", 10 ** 9)]), "epochs"),
    ("validation-split-1", _with([("fit.validation_split", 1.0)]), "validation_split"),
    ("unknown-optimizer", _with([("compile.optimizer", "gradient-ascent")]), "optimizer"),
    ("negative-learning-rate", _with([("compile.optimizer", {"type": "adam", "learning_rate": -0.1})]),
     "learning_rate"),
    ("unknown-loss", _with([("compile.loss", "__import__('os')")]), "loss"),
    ("unknown-metric", _with([("compile.metrics", ["accuracy", "vibes"])]), "metrics"),
    ("input-shape-negative", _with([("input_shape", [-4])]), "input_shape"),
    ("input-shape-huge", _with([("input_shape", [10 ** 7, 10 ** 7])]), "input_shape"),
    ("input-shape-string", _with([("input_shape", "4")]), "input_shape"),
    ("conv-on-a-vector", _with([("layers.0", {"type": "Conv2D", "filters": 4, "kernel_size": 3})]), "layers"),
    ("unknown-top-level-key", {**iris_spec(), "exec": "import os"}, "exec"),
    ("deeply-nested-value", _with([("name", _deep(200))]), "name"),
    ("spec-is-a-list", [iris_spec()], "spec"),
    ("spec-is-a-string", "Dense(3)", "spec"),
    ("spec-is-null", None, "spec"),
]


@pytest.mark.parametrize("spec,field", [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS])
def test_a_bad_spec_gets_a_400_naming_the_field(world, spec, field):
    from webapp.experiments.models import Run

    count = Run.objects.count()
    response = world.api.post(f"/api/v1/workspaces/{world.ws}/runs", {
        "dataset_version": world.version.pk, "spec": spec, "data_config": {"target": "species"}},
        content_type="application/json")
    assert_no_trace(response)
    assert response.status_code == 400, response.content[:500]
    body = response.json()
    assert field in json.dumps(body), f"the answer does not name {field!r}: {body}"
    assert Run.objects.count() == count
    assert_unchanged(world.before, snapshot())


@pytest.mark.parametrize("spec", [c[1] for c in BAD_SPECS if isinstance(c[1], dict)],
                         ids=[c[0] for c in BAD_SPECS if isinstance(c[1], dict)])
def test_the_builders_summary_answers_a_bad_spec_without_a_500(world, spec):
    response = world.api.post(f"/api/v1/workspaces/{world.ws}/specs/summary", {"spec": spec},
                              content_type="application/json")
    assert_no_trace(response)
    assert response.status_code in (200, 400), response.content[:500]
    if response.status_code == 200:
        assert response.json().get("errors"), response.json()


def test_a_ten_megabyte_json_body_is_refused_with_a_4xx(world):
    spec = iris_spec()
    spec["name"] = "x" * (10 * 1024 * 1024 + 10)
    from webapp.experiments.models import Run

    count = Run.objects.count()
    response = world.api.post(f"/api/v1/workspaces/{world.ws}/runs", {
        "dataset_version": world.version.pk, "spec": spec}, content_type="application/json")
    assert_no_trace(response)
    assert 400 <= response.status_code < 500
    assert Run.objects.count() == count
    assert_unchanged(world.before, snapshot())


def test_json_nested_ten_thousand_deep_is_refused_with_a_4xx(world):
    body = '{"dataset_version": ' + str(world.version.pk) + ', "spec": ' + '{"a":' * 10_000 + "1" + "}" * 10_000 + "}"
    response = world.api.post(f"/api/v1/workspaces/{world.ws}/runs", body, content_type="application/json")
    assert_no_trace(response)
    assert 400 <= response.status_code < 500
    assert_unchanged(world.before, snapshot())


@pytest.mark.parametrize("body", [
    '{"dataset_version": 1, "spec": {"input_shape": [NaN], "layers": [{"type": "Dense", "units": Infinity}]}}',
    '{"dataset_version": 1, "spec": {"layers": [{"type": "Dense", "units": 1e400}]}}',
    '{"dataset_version": 1, "spec": {"layers": [{"type": "Dense", "units": -0}]}}',
], ids=["nan-and-infinity", "overflowing-number", "negative-zero"])
def test_non_finite_numbers_in_a_spec_are_refused(world, body):
    body = body.replace('"dataset_version": 1', f'"dataset_version": {world.version.pk}')
    response = world.api.post(f"/api/v1/workspaces/{world.ws}/runs", body, content_type="application/json")
    assert_no_trace(response)
    assert response.status_code == 400
    assert_unchanged(world.before, snapshot())


@pytest.mark.parametrize("payload,field", [
    ({"method": "grid", "space": {"learning_rate": list(range(1, 100))}}, "space"),
    ({"method": "grid", "space": {"rm -rf": [1, 2]}}, "space"),
    ({"method": "telepathy", "space": {"learning_rate": [0.1]}}, "method"),
    ({"method": "grid", "space": {"learning_rate": "0.1"}}, "space"),
], ids=["too-many-points", "unknown-parameter", "unknown-method", "values-not-a-list"])
def test_a_bad_sweep_gets_a_400(world, payload, field):
    from webapp.experiments.models import Run, Sweep

    runs, sweeps = Run.objects.count(), Sweep.objects.count()
    response = world.api.post(f"/api/v1/workspaces/{world.ws}/sweeps", {
        "dataset_version": world.version.pk, "spec": iris_spec(), "data_config": {"target": "species"}, **payload},
        content_type="application/json")
    assert_no_trace(response)
    assert response.status_code == 400, response.content[:500]
    assert field in json.dumps(response.json())
    assert (Run.objects.count(), Sweep.objects.count()) == (runs, sweeps)


@pytest.mark.parametrize("data_config,field", [
    ({"target": "species", "test_fraction": 1.5}, "test_fraction"),
    ({"target": "species", "test_fraction": "half"}, "test_fraction"),
    ("not an object", "data_config"),
], ids=["test-fraction-over-1", "test-fraction-a-string", "not-an-object"])
def test_a_bad_data_config_gets_a_400(world, data_config, field):
    response = world.api.post(f"/api/v1/workspaces/{world.ws}/runs", {
        "dataset_version": world.version.pk, "spec": copy.deepcopy(iris_spec()), "data_config": data_config},
        content_type="application/json")
    assert_no_trace(response)
    assert response.status_code == 400, response.content[:500]
    assert field in json.dumps(response.json())
    assert_unchanged(world.before, snapshot())
