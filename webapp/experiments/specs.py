"""Model specs for the web: starting templates by data kind, and the engine's validator and summary.

``trainer.spec`` is the one schema and validator; this module only adapts its answers to what
the pages and the API show (a field path and a message) and suggests where to start.
"""

from __future__ import annotations

import copy

DEVICES = ("auto", "gpu", "cpu")


class SpecInvalid(ValueError):
    """A spec the engine refuses; ``field`` is the path of the first problem (``layers[2].units``)."""

    def __init__(self, message: str, field: str = "spec", errors=None):
        super().__init__(message)
        self.field = field
        self.errors = errors or [{"field": field, "message": message}]


def _spec_module():
    from trainer import spec as spec_module  # the engine's own validator

    return spec_module


def validate_spec(spec) -> dict:
    """The spec as the engine normalises it; raises SpecInvalid naming the field."""
    if not isinstance(spec, dict):
        raise SpecInvalid("spec: must be a JSON object", "spec")
    module = _spec_module()
    try:
        normalised = module.validate(copy.deepcopy(spec))
    except module.SpecError as error:
        raise _invalid(error) from None
    return normalised if isinstance(normalised, dict) else spec


def _invalid(error) -> SpecInvalid:
    errors = [{"field": _path(path), "message": str(message)} for path, message in getattr(error, "errors", [])]
    if not errors:
        errors = [{"field": "spec", "message": str(error)}]
    return SpecInvalid(str(error), errors[0]["field"], errors)


def _path(path) -> str:
    if isinstance(path, (list, tuple)):
        text = ""
        for part in path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        return text or "spec"
    return str(path) or "spec"


def summarize(spec: dict, input_shape=None) -> dict:
    module = _spec_module()
    shape = input_shape or spec.get("input_shape")
    try:
        return module.summarize(spec, shape)
    except module.SpecError as error:
        raise _invalid(error) from None


def output_error(summary: dict, data: dict | None, loss: str) -> dict | None:
    """The model's output against what the data's target needs (a value per output unit for a
    regression, a probability per class, or one for binary cross-entropy on two classes); the
    builder's error, or None when they agree or the data does not say."""
    if not data or not summary.get("output_shape"):
        return None
    outputs = int(data.get("outputs") or 0)
    if data.get("task") == "classification":
        if loss in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
            expected = [outputs]
        elif loss == "binary_crossentropy" and outputs == 2:
            expected = [1]
        else:
            return None
        what = f"{outputs} classes"
    elif data.get("task") == "regression" and outputs:
        expected, what = [outputs], f"{outputs} value{'s' if outputs > 1 else ''} per row"
    else:
        return None
    shape = list(summary["output_shape"])
    if shape == expected:
        return None
    last = len(summary.get("layers") or []) - 1
    hint = (": flatten or pool the other axes first (Flatten, a global pooling, or a recurrent layer without "
            "return_sequences)") if len(shape) > 1 else ""
    return {"field": f"layers[{last}]" if last >= 0 else "layers",
            "message": f"the model outputs ({', '.join(map(str, shape))}) but the target has {what}: it needs "
                       f"({', '.join(map(str, expected))}){hint}"}


def loss_name(spec: dict) -> str:
    loss = (spec.get("compile") or {}).get("loss", "")
    if isinstance(loss, dict):
        loss = loss.get("type", "")
    return {"mean_squared_error": "mse", "mean_absolute_error": "mae"}.get(str(loss), str(loss))


def fit_settings(spec: dict) -> dict:
    """The spec's "fit" section as the engine trains it, every default filled (Keras' own: a spec that
    says nothing trains one epoch); raises SpecInvalid naming the field."""
    module = _spec_module()
    try:
        return module.check_fit(spec.get("fit"))
    except module.SpecError as error:
        raise _invalid(error) from None


def vocabulary_error(spec: dict, vocabulary_size: int | None) -> dict | None:
    """A text model's first layer must embed every index its text column gives; the builder's error
    naming the layer (or its input_dim), or None."""
    first = (spec.get("layers") or [{}])[0]
    if not vocabulary_size or not isinstance(first, dict):
        return None
    if first.get("type") != "Embedding":
        return {"field": "layers[0]", "message": "a text column gives word indices; start the model with an "
                                                 f"Embedding of input_dim {vocabulary_size}"}
    if isinstance(first.get("input_dim"), int) and first["input_dim"] < vocabulary_size:
        return {"field": "layers[0].input_dim",
                "message": f"the text column's words take {vocabulary_size} indices (data_config.max_tokens), "
                           f"more than {first['input_dim']}; set input_dim to {vocabulary_size}"}
    return None


def data_error(spec: dict, summary: dict, data: dict | None) -> dict | None:
    """The model against the data it will train on: its output against the target (``output_error``),
    then its first layer against a text column's vocabulary; the builder's error, or None."""
    return output_error(summary, data, loss_name(spec)) or vocabulary_error(spec, (data or {}).get("vocabulary_size"))


def check_output(spec: dict, data: dict) -> None:
    """``data_error`` for a whole spec (summarised over its own input shape) against the data's task, output
    count and vocabulary, raised as SpecInvalid naming the layer: what run creation and the worker check."""
    mismatch = data_error(spec, summarize(spec), data)
    if mismatch:
        raise SpecInvalid(f"{mismatch['field']}: {mismatch['message']}", mismatch["field"])


# ----------------------------------------------------------------------------- templates


def _compile(loss: str, metrics: list[str], learning_rate: float = 0.001) -> dict:
    return {"loss": loss, "optimizer": {"type": "adam", "learning_rate": learning_rate}, "metrics": metrics}


def _fit(epochs: int, batch_size: int) -> dict:
    return {"epochs": epochs, "batch_size": batch_size, "shuffle": True, "seed": 0}


def mlp_classifier(input_shape, classes: int) -> dict:
    return {
        "input_shape": list(input_shape),
        "layers": [
            {"type": "Dense", "units": 64, "activation": "relu"},
            {"type": "Dropout", "rate": 0.1},
            {"type": "Dense", "units": 32, "activation": "relu"},
            {"type": "Dense", "units": max(2, classes), "activation": "softmax"},
        ],
        "compile": _compile("sparse_categorical_crossentropy", ["accuracy"], 0.01),
        "fit": _fit(30, 32),
    }


def mlp_regressor(input_shape, outputs: int = 1) -> dict:
    return {
        "input_shape": list(input_shape),
        "layers": [
            {"type": "Dense", "units": 64, "activation": "relu"},
            {"type": "Dense", "units": 32, "activation": "relu"},
            {"type": "Dense", "units": outputs},
        ],
        "compile": _compile("mse", ["mae"], 0.003),
        "fit": _fit(40, 32),
    }


SMALL_IMAGE_SIDE = 32  # up to this many pixels a side, the CNN template keeps where features are


def small_cnn(input_shape, classes: int) -> dict:
    # On small images (digits, icons) where a stroke is matters, and averaging it away costs
    # most of the accuracy; on large ones flattening would make the dense layer huge.
    small = max(int(d) for d in list(input_shape)[:2]) <= SMALL_IMAGE_SIDE
    head = ([{"type": "MaxPooling2D", "pool_size": 2}, {"type": "Flatten"}] if small
            else [{"type": "GlobalAveragePooling2D"}])
    return {
        "input_shape": list(input_shape),
        "layers": [
            {"type": "Conv2D", "filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"},
            {"type": "MaxPooling2D", "pool_size": 2},
            {"type": "Conv2D", "filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"},
            *head,
            {"type": "Dense", "units": 64, "activation": "relu"},
            {"type": "Dense", "units": max(2, classes), "activation": "softmax"},
        ],
        "compile": _compile("sparse_categorical_crossentropy", ["accuracy"], 0.003),
        "fit": _fit(15, 64),
    }


def lstm_forecaster(input_shape, horizon: int = 1) -> dict:
    return {
        "input_shape": list(input_shape),
        "layers": [
            {"type": "LSTM", "units": 32},
            {"type": "Dense", "units": horizon},
        ],
        "compile": _compile("mse", ["mae"], 0.005),
        "fit": _fit(30, 32),
    }


def conv1d_forecaster(input_shape, horizon: int = 1) -> dict:
    """A 1-D CNN over the window: two convolutions, then every step's features into the output (a
    forecast needs to know which step is the latest, which a global pooling would forget)."""
    steps = int(next(iter(input_shape)))
    conv = {"type": "Conv1D", "filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"}
    pool = [{"type": "MaxPooling1D", "pool_size": 2}] if steps >= 4 else []
    fit = _fit(40, 32)
    fit["reduce_lr_on_plateau"] = {"monitor": "val_loss", "factor": 0.5, "patience": 4, "min_lr": 3e-6}
    return {
        "input_shape": list(input_shape),
        "layers": [conv, *pool, dict(conv), {"type": "Flatten"}, {"type": "Dense", "units": horizon}],
        "compile": _compile("mse", ["mae"], 0.003),
        "fit": fit,
    }


def transformer_forecaster(input_shape, horizon: int = 1) -> dict:
    """A Transformer encoder over the window: each step projected to 32 features, a learned position
    added, one pre-norm block of 4 heads (pre-norm keeps the level the forecast has to carry, which
    post-norm's last normalisation drops), then every step's features into the output. On a short
    series a Transformer's training is less steady than an LSTM's from one initialisation to the
    next: its gradients are clipped to a global norm of 1 (on the CO₂ weeks, 20 epochs over 12 seeds,
    test R² 0.97 ± 0.02, worst 0.94, where unclipped it was 0.88 ± 0.12, worst 0.57) and its
    learning rate is halved on plateaus."""
    fit = _fit(30, 32)
    fit["reduce_lr_on_plateau"] = {"monitor": "val_loss", "factor": 0.5, "patience": 4, "min_lr": 3e-6}
    compiled = _compile("mse", ["mae"], 0.003)
    compiled["optimizer"]["global_clipnorm"] = 1.0
    return {
        "input_shape": list(input_shape),
        "layers": [{"type": "Dense", "units": 32}, {"type": "PositionEmbedding"},
                   {"type": "TransformerEncoder", "intermediate_dim": 64, "num_heads": 4, "normalize_first": True},
                   {"type": "Flatten"}, {"type": "Dense", "units": horizon}],
        "compile": compiled,
        "fit": fit,
    }


SERIES_STARTS = {"conv1d": conv1d_forecaster, "transformer": transformer_forecaster}


def text_model(input_shape, outputs: int, task: str, vocabulary_size: int) -> dict:
    """Word indices → a 32-wide Embedding, averaged over the words (fastText's bag of embeddings,
    Keras' text-classification starter), one hidden layer, the output. The padding after a short
    text is masked (``mask_zero``), so that the average is over its words alone, and a recurrent
    layer put in place of the average reads each text to its last word."""
    head = mlp_classifier if task == "classification" else mlp_regressor
    spec = head(input_shape, outputs)
    spec["layers"] = [{"type": "Embedding", "input_dim": int(vocabulary_size), "output_dim": 32, "mask_zero": True},
                      {"type": "GlobalAveragePooling1D"}, {"type": "Dense", "units": 32, "activation": "relu"},
                      spec["layers"][-1]]
    spec["compile"]["optimizer"]["learning_rate"] = 0.003
    return spec


def text_lstm(input_shape, outputs: int, task: str, vocabulary_size: int) -> dict:
    """Word indices → a masked 32-wide Embedding → a bidirectional LSTM that reads each text to its
    last word both ways (word order counts, as "not good" against "good") → the output."""
    spec = text_model(input_shape, outputs, task, vocabulary_size)
    spec["layers"] = [spec["layers"][0], {"type": "Bidirectional", "layer": {"type": "LSTM", "units": 32}},
                      spec["layers"][-1]]
    return spec


TEXT_STARTS = {"lstm": text_lstm}


def empty_spec(input_shape) -> dict:
    return {"input_shape": list(input_shape), "layers": [],
            "compile": _compile("mse", []), "fit": _fit(10, 32)}


def suggest(kind: str, task: str, input_shape, outputs: int, start: str = "template", vocabulary_size: int = 0) -> dict:
    """The starting spec for a data set: tables → MLP, images → small CNN, series → LSTM, a table's
    text column → averaged word embeddings (``start="lstm"``: a bidirectional LSTM over them), or
    with ``start="conv1d"`` a 1-D CNN or ``start="transformer"`` a Transformer encoder (series only;
    elsewhere the usual template)."""
    if kind == "text":
        return TEXT_STARTS.get(start, text_model)(input_shape, outputs, task, vocabulary_size)
    if kind == "images":
        return small_cnn(input_shape, outputs)
    if kind == "series":
        return SERIES_STARTS.get(start, lstm_forecaster)(input_shape, outputs)
    if task == "classification":
        return mlp_classifier(input_shape, outputs)
    return mlp_regressor(input_shape, outputs)
