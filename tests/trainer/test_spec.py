"""The JSON spec: validation with named paths, defaults, summaries without weights, building and fit kwargs."""
import copy
import json
import time

import numpy as np
import pytest

from trainer import Sequential, callbacks, spec
from trainer.spec import SpecError

GOOD = {
    "input_shape": [4],
    "layers": [{"type": "Dense", "units": 10, "activation": "relu"},
               {"type": "Dense", "units": 3, "activation": "softmax"}],
    "compile": {"loss": "sparse_categorical_crossentropy",
                "optimizer": {"type": "adam", "learning_rate": 0.001},
                "metrics": ["accuracy"]},
    "fit": {"epochs": 100, "batch_size": 10, "validation_split": 0.2, "shuffle": True, "seed": 0,
            "early_stopping": {"patience": 5, "monitor": "val_loss", "restore_best_weights": True}},
}

CNN = {"layers": [
    {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Conv2D", "filters": 64, "kernel_size": [3, 3], "padding": "same", "activation": "relu"},
    {"type": "MaxPooling2D"},
    {"type": "Flatten"},
    {"type": "Dense", "units": 128, "activation": "relu"},
    {"type": "Dropout", "rate": 0.5},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]}


def errors_of(bad_spec):
    with pytest.raises(SpecError) as error:
        spec.validate(bad_spec)
    return error.value


def with_layer(layer, **top):
    return {"layers": [layer], **top}


def test_it_fills_defaults_and_returns_a_json_serialisable_copy():
    original = copy.deepcopy(GOOD)
    normalized = spec.validate(GOOD)
    assert GOOD == original
    json.dumps(normalized)
    assert normalized["layers"][0]["use_bias"] is True
    assert normalized["layers"][0]["kernel_initializer"] == "glorot_uniform"
    assert normalized["compile"]["optimizer"]["beta_1"] == 0.9
    assert normalized["fit"]["early_stopping"]["min_delta"] == 0.0
    assert spec.validate(normalized) == normalized


def test_it_names_the_path_of_a_bad_value():
    error = errors_of({"layers": [{"type": "Dense", "units": 3}, {"type": "Flatten"},
                                  {"type": "Dense", "units": -3}]})
    assert str(error) == "layers[2].units: must be a positive integer, got -3"
    assert error.path == "layers[2].units"
    assert error.message == "must be a positive integer, got -3"


def test_it_collects_several_errors():
    error = errors_of({"layers": [{"type": "Dense", "units": 0}, {"type": "Dropout", "rate": 2}],
                       "fit": {"epochs": 0}})
    assert [path for path, _ in error.errors] == ["layers[0].units", "layers[1].rate", "fit.epochs"]


@pytest.mark.parametrize("bad,path,message", [
    (with_layer({"type": "Dense", "units": True}), "layers[0].units", "must be a positive integer, got true"),
    (with_layer({"type": "Dense", "units": 3.0}), "layers[0].units", "must be a positive integer, got 3.0"),
    (with_layer({"type": "Dense", "units": 10 ** 6}), "layers[0].units", "must be at most 65536, got 1000000"),
    (with_layer({"type": "Dense"}), "layers[0].units", "is required"),
    (with_layer({"type": "Dense", "units": 3, "unit": 2}), "layers[0].unit", "unknown key for Dense"),
    (with_layer({"type": "Conv3D"}), "layers[0].type", 'unknown layer type "Conv3D"'),
    (with_layer({"units": 3}), "layers[0].type", "is required"),
    (with_layer("Dense"), "layers[0]", 'must be an object with a "type", got "Dense"'),
    (with_layer({"type": "Dense", "units": 3, "activation": "swish"}), "layers[0].activation", "must be one of"),
    (with_layer({"type": "Conv2D", "filters": 3, "kernel_size": [3, 3, 3]}), "layers[0].kernel_size",
     "must be a positive integer or a list of two positive integers"),
    (with_layer({"type": "Conv2D", "filters": 3, "kernel_size": 3, "padding": "full"}), "layers[0].padding",
     'must be one of "valid", "same"'),
    (with_layer({"type": "Dropout", "rate": 1}), "layers[0].rate", "must be a number in [0, 1), got 1"),
    (with_layer({"type": "Dropout", "rate": float("nan")}), "layers[0].rate", "must be a number in [0, 1)"),
    (with_layer({"type": "Dense", "units": 2, "kernel_regularizer": {"l2": -1}}),
     "layers[0].kernel_regularizer.l2", "must be a non-negative number, got -1"),
    (with_layer({"type": "Dense", "units": 2, "kernel_regularizer": {"l3": 1}}),
     "layers[0].kernel_regularizer.l3", "unknown key"),
    (with_layer({"type": "Reshape", "target_shape": [-1, -1]}), "layers[0].target_shape", "must be a list"),
    ({"layers": []}, "layers", "must be a non-empty list"),
    ({"layers": [{"type": "Flatten"}] * 201}, "layers", "must have at most 200 layers, got 201"),
    ({"layers": [{"type": "Flatten"}], "input_shape": [0]}, "input_shape", "must be a list of 1 to 4 positive"),
    ({"layers": [{"type": "Flatten"}], "optimizer": "adam"}, "optimizer", "unknown key for a model spec"),
    ({"layers": [{"type": "Flatten"}], "compile": {"loss": "hinge"}}, "compile.loss", 'unknown loss "hinge"'),
    ({"layers": [{"type": "Flatten"}], "compile": {"loss": {"type": "mse", "from_logits": True}}},
     "compile.loss.from_logits", "unknown key for mse"),
    ({"layers": [{"type": "Flatten"}], "compile": {"optimizer": "nadam"}}, "compile.optimizer",
     'unknown optimizer "nadam"'),
    ({"layers": [{"type": "Flatten"}], "compile": {"optimizer": {"type": "adam", "beta_1": 1.5}}},
     "compile.optimizer.beta_1", "must be a number in [0, 1), got 1.5"),
    ({"layers": [{"type": "Flatten"}], "compile": {"optimizer": {"type": "adam", "learning_rate": {
        "type": "cosine", "initial_learning_rate": 0.1, "decay_steps": 0}}}},
     "compile.optimizer.learning_rate.decay_steps", "must be a positive integer, got 0"),
    ({"layers": [{"type": "Flatten"}], "compile": {"metrics": ["accuracy", "bogus"]}}, "compile.metrics[1]",
     'unknown metric "bogus"'),
    ({"layers": [{"type": "Flatten"}], "fit": {"batch_size": 0}}, "fit.batch_size", "must be a positive integer"),
    ({"layers": [{"type": "Flatten"}], "fit": {"shuffle": 1}}, "fit.shuffle", "must be true or false, got 1"),
    ({"layers": [{"type": "Flatten"}], "fit": {"validation_split": 1.0}}, "fit.validation_split",
     "must be a number in [0, 1)"),
    ({"layers": [{"type": "Flatten"}], "fit": {"early_stopping": {"monitor": "val_nonsense"}}},
     "fit.early_stopping.monitor", "must be one of"),
    ({"layers": [{"type": "Flatten"}], "fit": {"class_weight": "balanced"}}, "fit.class_weight",
     ("needs a classification loss (sparse_categorical_crossentropy, categorical_crossentropy or binary_crossentropy), "
      "not mse")),
    ({"layers": [{"type": "Flatten"}], "compile": {"loss": "binary_crossentropy"}, "fit": {"class_weight": [1, -1]}},
     "fit.class_weight", 'must be null, "balanced" or a list of non-negative numbers (one per class), got [1, -1]'),
    ({"layers": [{"type": "Flatten"}], "fit": {"reduce_lr_on_plateau": {"factor": 1.5}}},
     "fit.reduce_lr_on_plateau.factor", "must be a number in (0, 1), got 1.5"),
    ({"layers": [{"type": "Flatten"}], "fit": {"reduce_lr_on_plateau": {"patience": 3, "min_learning_rate": 0}}},
     "fit.reduce_lr_on_plateau.min_learning_rate", "unknown key"),
])
def test_it_rejects_bad_specs_with_named_errors(bad, path, message):
    error = errors_of(bad)
    assert error.path == path
    assert error.message.startswith(message), error.message


def test_a_missing_argument_of_a_wrapped_layer_is_said_to_be_required_without_a_value():
    error = errors_of({"input_shape": [5, 2], "layers": [{"type": "Bidirectional", "layer": {"type": "LSTM"}}]})
    assert (error.path, error.message) == ("layers[0].layer.units", "is required")


@pytest.mark.parametrize("value", [None, 1, "spec", [], [1, 2], 1.5, True])
def test_it_rejects_a_spec_that_is_not_an_object(value):
    assert errors_of(value).message.startswith("a spec must be an object")


def test_it_finds_shape_errors_when_the_input_shape_is_known():
    conv_on_table = {"input_shape": [10], "layers": [{"type": "Dense", "units": 4},
                                                     {"type": "Conv2D", "filters": 3, "kernel_size": 3}]}
    error = errors_of(conv_on_table)
    assert error.path == "layers[1]" and "expects an input of rank 3" in error.message
    with pytest.raises(SpecError) as big_kernel:
        spec.summarize({"layers": [{"type": "Conv2D", "filters": 3, "kernel_size": 5}]}, (3, 3, 1))
    assert big_kernel.value.path == "layers[0]" and "larger than the input" in big_kernel.value.message
    conv1d_on_image = {"input_shape": [8, 8, 1], "layers": [{"type": "Conv1D", "filters": 3, "kernel_size": 3}]}
    error = errors_of(conv1d_on_image)
    assert error.path == "layers[0]" and "expects an input of rank 2 (steps, channels)" in error.message


def test_it_summarises_a_transformer_on_a_series_window_and_names_its_shape_errors():
    stack = [{"type": "Dense", "units": 8}, {"type": "PositionEmbedding"},
             {"type": "TransformerEncoder", "intermediate_dim": 16, "num_heads": 2},
             {"type": "GlobalAveragePooling1D"}, {"type": "Dense", "units": 1}]
    summary = spec.summarize({"layers": stack}, (12, 2))
    assert [layer["output_shape"] for layer in summary["layers"]] == [[12, 8], [12, 8], [12, 8], [8], [1]]
    attention = 4 * (8 * 8 + 8) + 2 * 8  # query, key, value, output; a layer norm
    feed_forward = (8 * 16 + 16) + (16 * 8 + 8) + 2 * 8
    assert summary["total_params"] == (2 * 8 + 8) + 12 * 8 + attention + feed_forward + (8 + 1)
    uneven = {"input_shape": [12, 2], "layers": [dict(stack[2], num_heads=3), {"type": "Flatten"}]}
    error = errors_of(uneven)
    assert error.path == "layers[0]" and "2 features do not split into num_heads=3 heads" in error.message
    short = {"input_shape": [12, 2], "layers": [{"type": "PositionEmbedding", "sequence_length": 10}]}
    assert "12 steps, more than its sequence_length 10" in errors_of(short).message
    table = {"input_shape": [4], "layers": [dict(stack[2])]}
    assert "expects an input of rank 2 (timesteps, features)" in errors_of(table).message


def test_it_summarises_a_conv1d_model_on_a_series_window():
    summary = spec.summarize({"layers": [{"type": "Conv1D", "filters": 8, "kernel_size": 3, "padding": "same"},
                                         {"type": "MaxPooling1D"}, {"type": "Flatten"}, {"type": "Dense", "units": 1}]},
                             (12, 2))
    assert summary["output_shape"] == [1]
    assert [layer["output_shape"] for layer in summary["layers"]] == [[12, 8], [6, 8], [48], [1]]
    assert summary["total_params"] == (3 * 2 * 8 + 8) + (6 * 8 + 1)


def test_it_caps_the_total_number_of_parameters():
    huge = {"input_shape": [65536], "layers": [{"type": "Dense", "units": 65536}] * 2}
    error = errors_of(huge)
    assert error.path == "layers" and "more than the limit of 200,000,000" in error.message


def test_it_summarizes_shapes_params_and_flops_without_weights():
    summary = spec.summarize(CNN, (28, 28, 1))
    shapes = [row["output_shape"] for row in summary["layers"]]
    assert shapes == [[26, 26, 32], [13, 13, 32], [13, 13, 64], [6, 6, 64], [2304], [128], [128], [10]]
    params = [row["params"] for row in summary["layers"]]
    assert params == [320, 0, 18496, 0, 0, 295040, 0, 1290]
    assert summary["total_params"] == sum(params)
    assert summary["layers"][0]["flops"] == 2 * 26 * 26 * 32 * 9
    assert summary["total_flops"] == sum(row["flops"] for row in summary["layers"])
    model = Sequential.from_spec({**CNN, "input_shape": [28, 28, 1]})
    assert model.count_params() == summary["total_params"]


def test_it_summarizes_a_typical_spec_in_under_5_ms():
    spec.summarize(CNN, (28, 28, 1))
    start = time.perf_counter()
    for _ in range(20):
        spec.summarize(CNN, (28, 28, 1))
    assert (time.perf_counter() - start) / 20 < 0.005


def test_it_needs_an_input_shape_to_summarize():
    with pytest.raises(SpecError) as error:
        spec.summarize(CNN)
    assert error.value.path == "input_shape"


def test_it_builds_a_compiled_model_and_fit_arguments_from_a_spec():
    model = Sequential.from_spec(GOOD)
    assert model.built and model.optimizer.type == "adam" and model.loss.name == "sparse_categorical_crossentropy"
    kwargs = spec.fit_kwargs(GOOD)
    assert {k: kwargs[k] for k in ("epochs", "batch_size", "validation_split", "shuffle", "seed")} == \
        {"epochs": 100, "batch_size": 10, "validation_split": 0.2, "shuffle": True, "seed": 0}
    (stopper,) = kwargs["callbacks"]
    assert isinstance(stopper, callbacks.EarlyStopping) and stopper.patience == 5 and stopper.restore_best_weights
    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    y = np.arange(20) % 3
    history = model.fit(x, y, **{**kwargs, "epochs": 2})
    assert len(history.history["loss"]) == 2


def test_it_round_trips_a_spec_through_a_model():
    model = Sequential.from_spec(GOOD)
    again = model.to_spec()
    assert spec.validate(again) == spec.validate(GOOD)


def test_it_initialises_weights_from_the_spec_seed():
    a, b = Sequential.from_spec(GOOD), Sequential.from_spec(GOOD)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_it_describes_every_layer_type_for_forms():
    catalog = spec.layer_catalog()
    json.dumps(catalog)
    dense = {arg["name"]: arg for arg in catalog["Dense"]}
    assert dense["units"]["required"] and dense["units"]["low"] == 1
    assert dense["activation"]["default"] is None and "relu" in dense["activation"]["choices"]


def test_it_never_raises_anything_but_spec_errors_on_fuzzed_input():
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")

    scalars = st.none() | st.booleans() | st.integers(min_value=-2 ** 70, max_value=2 ** 70) | \
        st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8) | \
        st.sampled_from(["Dense", "Conv2D", "LSTM", "relu", "same", "adam", "cosine", "type", "units", "mse"])
    json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                               st.dictionaries(st.text(max_size=6) | st.sampled_from(
                                   ["type", "units", "filters", "kernel_size", "rate", "learning_rate"]),
                                   inner, max_size=4), max_leaves=20)
    layer_types = st.sampled_from(sorted(spec.layers.LAYERS))
    arg_names = st.sampled_from(sorted({k for c in spec.layers.LAYERS.values() for k in c.args}))
    layer = st.builds(lambda t, extra: {"type": t, **extra}, layer_types,
                      st.dictionaries(arg_names, json_values | st.integers(1, 40), max_size=4))
    specs = st.fixed_dictionaries({"layers": st.lists(layer, min_size=1, max_size=5)}, optional={
        "input_shape": st.lists(st.integers(-2, 40), max_size=4) | json_values,
        "compile": st.dictionaries(st.sampled_from(["loss", "optimizer", "metrics"]), json_values, max_size=3),
        "fit": st.dictionaries(st.sampled_from(["epochs", "batch_size", "early_stopping", "seed"]), json_values),
    })

    @hypothesis.settings(max_examples=60, deadline=None, database=None)
    @hypothesis.given(json_values | specs)
    def check(value):
        try:
            result = spec.validate(value)
        except SpecError as error:
            assert error.errors and isinstance(error.path, str) and isinstance(error.message, str)
            assert not error.message.startswith("could not be validated"), error.message
            return
        json.dumps(result)
        if result["input_shape"] is not None:
            spec.summarize(result)

    check()


def test_it_lists_everything_a_spec_may_name():
    everything = spec.catalog()
    json.dumps(everything)
    assert {"layers", "optimizers", "schedules", "losses", "metrics", "activations", "fit"} <= set(everything)
    assert "adam" in everything["optimizers"] and "cosine" in everything["schedules"]


def test_it_accepts_a_linear_warmup_schedule_from_a_model():
    from trainer import layers, optimizers, schedules

    model = Sequential([layers.Dense(2)], input_shape=(3,))
    model.compile(loss="mse", optimizer=optimizers.SGD(schedules.LinearWarmup(schedules.CosineDecay(0.1, 100), 10)))
    assert Sequential.from_spec(model.to_spec()).to_spec() == model.to_spec()


def test_a_fit_section_asks_for_early_stopping_and_a_plateau_cut_in_that_order():
    fit = spec.check_fit({"early_stopping": {"patience": 3}, "reduce_lr_on_plateau": {"monitor": "loss", "factor": 0.5}})
    assert fit["reduce_lr_on_plateau"] == {"monitor": "loss", "factor": 0.5, "patience": 10, "min_delta": 1e-4,
                                           "cooldown": 0, "min_lr": 0.0, "mode": "auto"}
    stopper, plateau = spec.fit_callbacks(fit)
    assert (type(stopper).__name__, stopper.patience) == ("EarlyStopping", 3)
    assert (type(plateau).__name__, plateau.monitor, plateau.factor, plateau.mode) == ("ReduceLROnPlateau", "loss",
                                                                                       0.5, "min")
    assert spec.fit_callbacks(spec.check_fit(None)) == []
    with pytest.raises(SpecError) as error:
        spec.check_fit({"reduce_lr_on_plateau": "yes"})
    assert error.value.path == "fit.reduce_lr_on_plateau"
