"""The builder's live summary: the engine's own shapes, parameters and FLOPs, or its messages with their paths."""

from __future__ import annotations

import copy

import pytest

from tests.webapp.experiments.conftest import make_version
from trainer import Sequential
from trainer import spec as trainer_spec
from webapp.experiments import specs


def summary_url(people) -> str:
    return f"/api/v1/workspaces/{people.workspace.slug}/specs/summary"


def engine_errors(spec: dict) -> list[dict]:
    """What trainer.spec says about an invalid spec, with paths written as the builder shows them."""
    with pytest.raises(trainer_spec.SpecError) as raised:
        trainer_spec.summarize(trainer_spec.validate(spec), spec.get("input_shape"))
    return [{"field": specs._path(path), "message": str(message)} for path, message in raised.value.errors]


@pytest.fixture
def digits(people):
    return make_version(people.workspace, people.owner, "digits8x8.zip", name="Digits")


@pytest.mark.django_db
def test_the_summary_is_the_engines_layer_by_layer(client, people, digits):
    client.force_login(people.editor)
    spec = specs.small_cnn([8, 8, 1], 10)
    answer = client.post(summary_url(people), {"spec": spec, "dataset_version": digits.pk},
                         content_type="application/json").json()
    assert answer["errors"] == []
    expected = trainer_spec.summarize(trainer_spec.validate(spec), [8, 8, 1])
    assert answer["summary"] == expected
    rows = answer["summary"]["layers"]
    assert [row["type"] for row in rows] == [layer["type"] for layer in spec["layers"]]
    assert rows[0]["output_shape"] == [8, 8, 16] and rows[0]["params"] == 3 * 3 * 1 * 16 + 16
    assert all(row["flops"] >= 0 for row in rows) and rows[0]["flops"] > 0
    assert answer["summary"]["total_params"] == Sequential.from_spec(spec).count_params()
    # The data set decides the input shape, whatever the spec says.
    answer = client.post(summary_url(people), {"spec": dict(spec, input_shape=[28, 28, 1]),
                                               "dataset_version": digits.pk}, content_type="application/json").json()
    assert answer["summary"]["input_shape"] == [8, 8, 1]


@pytest.mark.django_db
@pytest.mark.parametrize("change, field", [
    (lambda s: s["layers"][0].update(kernel_size=0), "layers[0].kernel_size"),
    (lambda s: s["layers"][5].update(activation="sparkle"), "layers[5].activation"),
    (lambda s: s["layers"].insert(0, {"type": "LSTM", "units": 4}), "layers[0]"),
    (lambda s: s["compile"].update(loss="nonsense"), "compile.loss"),
])
def test_an_invalid_spec_answers_the_validators_message_with_its_path(client, people, change, field):
    client.force_login(people.viewer)
    spec = copy.deepcopy(specs.small_cnn([8, 8, 1], 10))
    change(spec)
    answer = client.post(summary_url(people), {"spec": spec}, content_type="application/json")
    assert answer.status_code == 200  # the builder shows it beside the field while you type
    errors = answer.json()["errors"]
    assert errors == engine_errors(spec)
    assert errors[0]["field"] == field and errors[0]["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("change, message", [
    (lambda s: s["layers"][-1].update(units=3), "the model outputs (3) but the target has 10 classes: it needs (10)"),
    (lambda s: s["layers"].pop(-3),  # the Flatten before the dense head
     ("the model outputs (2, 2, 10) but the target has 10 classes: it needs (10): flatten or pool the other axes "
      "first (Flatten, a global pooling, or a recurrent layer without return_sequences)")),
])
def test_the_summary_says_when_the_models_output_does_not_fit_the_target(client, people, digits, change, message):
    client.force_login(people.editor)
    spec = specs.small_cnn([8, 8, 1], 10)
    change(spec)
    answer = client.post(summary_url(people), {"spec": spec, "dataset_version": digits.pk},
                         content_type="application/json").json()
    assert answer["errors"] == [{"field": f"layers[{len(spec['layers']) - 1}]", "message": message}]
    assert answer["summary"]["output_shape"]  # the summary still comes, for the other rows


def test_the_output_check_knows_binary_cross_entropy_and_regressions():
    summary = {"output_shape": [1], "layers": [{}]}
    assert specs.output_error(summary, {"task": "classification", "outputs": 2}, "binary_crossentropy") is None
    assert specs.output_error(summary, {"task": "regression", "outputs": 1}, "mse") is None
    error = specs.output_error({"output_shape": [12, 1], "layers": [{}, {}]}, {"task": "regression", "outputs": 1}, "mse")
    assert error["field"] == "layers[1]" and error["message"].startswith(
        "the model outputs (12, 1) but the target has 1 value per row: it needs (1)")
    assert specs.output_error(summary, None, "mse") is None
