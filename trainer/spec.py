"""The JSON model/training specification: one schema, one validator.

    validate(spec)              -> normalised copy with defaults filled, or SpecError
    summarize(spec, input_shape) -> per-layer output shapes, parameters and FLOPs, no weights
    build_model(spec)           -> compiled Sequential (also Sequential.from_spec)
    fit_kwargs(spec)            -> keyword arguments for Sequential.fit, callbacks included
    fit(spec, x, y, ...)        -> (model, history): build, resume from a checkpoint, train
    layer_catalog(), catalog()  -> every layer type's (and optimizer's, loss's...) arguments, for forms

The layer arguments come from the layer classes themselves (``Layer.args``), so the web forms,
the REST API and the Python API accept exactly the same things. ``validate`` raises nothing
but SpecError, whatever JSON-like value it is given.
"""
import math

from trainer import callbacks, layers, losses, optimizers, schedules, tuning
from trainer.layers import REQUIRED, Arg, ArgumentError, MissingArgument, ShapeError, show

MAX_LAYERS = 200
MAX_PARAMS = 200_000_000
MAX_INPUT_DIM = 1_000_000
MAX_INPUT_SIZE = 100_000_000
TOP_LEVEL_KEYS = ("input_shape", "layers", "compile", "fit", "name")
METRICS = ("accuracy", "mae", "mse", "rmse", "precision", "recall", "f1", "auc", "r2")

FIT_ARGS = {
    "epochs": Arg("int", 1, low=1, high=100_000),
    "batch_size": Arg("int", 32, low=1, high=1_000_000),
    "validation_split": Arg("float", 0.0, low=0.0, high=1.0, high_open=True),
    "shuffle": Arg("bool", True),
    "seed": Arg("int", None, low=0, high=2 ** 63 - 1, nullable=True),
    "class_weight": Arg("class_weight", None, nullable=True),
}
MONITORS = tuple(prefix + name for prefix in ("", "val_") for name in ("loss",) + METRICS)
EARLY_STOPPING_ARGS = {
    "monitor": Arg("choice", "val_loss", choices=MONITORS),
    "patience": Arg("int", 0, low=0, high=100_000),
    "min_delta": Arg("float", 0.0, low=0.0),
    "restore_best_weights": Arg("bool", False),
    "mode": Arg("choice", "auto", choices=("auto", "min", "max")),
}
REDUCE_LR_ARGS = {  # ReduceLROnPlateau, Keras' defaults
    "monitor": Arg("choice", "val_loss", choices=MONITORS),
    "factor": Arg("float", 0.1, low=0.0, high=1.0, low_open=True, high_open=True),
    "patience": Arg("int", 10, low=0, high=100_000),
    "min_delta": Arg("float", 1e-4, low=0.0),
    "cooldown": Arg("int", 0, low=0, high=100_000),
    "min_lr": Arg("float", 0.0, low=0.0),
    "mode": Arg("choice", "auto", choices=("auto", "min", "max")),
}
FIND_LR_ARGS = {  # the range test before training (trainer.tuning.lr_find)
    "start": Arg("float", 1e-7, low=0.0, low_open=True, high=10.0),
    "end": Arg("float", 1.0, low=0.0, low_open=True, high=10.0),
    "steps": Arg("int", 100, low=10, high=10_000),
}
# The objects inside "fit": null (off) or their settings.
FIT_SECTIONS = {"early_stopping": EARLY_STOPPING_ARGS, "reduce_lr_on_plateau": REDUCE_LR_ARGS,
                "find_learning_rate": FIND_LR_ARGS}
LOSS_OPTION_ARGS = {"from_logits": Arg("bool", False), "delta": Arg("float", 1.0, low=0.0, low_open=True)}


class SpecError(ValueError):
    """One or more problems in a spec; each is (path, message), e.g.
    ("layers[2].units", "must be a positive integer, got -3")."""

    def __init__(self, errors):
        if isinstance(errors, tuple) and len(errors) == 2 and isinstance(errors[0], str):
            errors = [errors]
        self.errors = list(errors)
        self.path, self.message = self.errors[0]
        super().__init__(str(self))

    def __str__(self):
        return "; ".join(f"{path}: {message}" if path else message for path, message in self.errors)


class _Checker:
    """Collects (path, message) pairs while walking a spec."""

    def __init__(self):
        self.errors = []

    def error(self, path, message):
        self.errors.append((path, message))

    def arg(self, path, arg, value):
        """Checked value of one argument, or REQUIRED after recording an error."""
        try:
            return arg.check(value)
        except ArgumentError as error:
            where = f"{path}.{error.subpath}" if error.subpath else path
            shown = value.get(error.subpath) if error.subpath and isinstance(value, dict) else value
            missing = isinstance(error, MissingArgument) or error.message.startswith("unknown key")
            suffix = "" if missing else f", got {show(shown)}"
            self.error(where, error.message + suffix)
            return REQUIRED

    def obj(self, path, value, allowed, what):
        """True when value is a dict (unknown keys are recorded, and checking goes on)."""
        if not isinstance(value, dict):
            self.error(path, f"must be an object, got {show(value)}")
            return False
        for key in value:
            if key not in allowed:
                name = key if isinstance(key, str) else show(key)
                expected = ", ".join(allowed)
                self.error(f"{path}.{name}" if path else str(name), f"unknown key for {what} (expected: {expected})")
        return True

    def args(self, path, schema, values):
        """Normalised dict of schema arguments taken from values (defaults filled)."""
        result = {}
        for key, arg in schema.items():
            sub = f"{path}.{key}" if path else key
            if key not in values:
                if arg.required:
                    self.error(sub, "is required")
                    continue
                result[key] = arg.default
                continue
            checked = self.arg(sub, arg, values[key])
            if checked is not REQUIRED:
                result[key] = checked
        return result


def _check_input_shape(checker, value):
    if value is None:
        return None
    ok = isinstance(value, list) and 1 <= len(value) <= 4 and all(
        layers._is_int(v) and 1 <= v <= MAX_INPUT_DIM for v in value)
    if not ok:
        checker.error("input_shape", f"must be a list of 1 to 4 positive integers (each at most "
                                     f"{MAX_INPUT_DIM}), got {show(value)}")
        return None
    if math.prod(value) > MAX_INPUT_SIZE:
        checker.error("input_shape", f"describes more than {MAX_INPUT_SIZE} values per sample, got {show(value)}")
        return None
    return [int(v) for v in value]


def _check_layer(checker, path, value):
    if not isinstance(value, dict):
        checker.error(path, f"must be an object with a \"type\", got {show(value)}")
        return None
    kind = value.get("type")
    cls = layers.get(kind)
    if cls is None:
        if "type" not in value:
            checker.error(f"{path}.type", "is required")
        else:
            checker.error(f"{path}.type", f"unknown layer type {show(kind)}; expected one of "
                                          f"{', '.join(layers.LAYERS)}")
        return None
    allowed = ("type", *cls.args, "name")
    if not checker.obj(path, value, allowed, cls.__name__):
        return None
    config = {"type": cls.__name__, **checker.args(path, cls.args, value)}
    if "name" in value:
        name = value["name"]
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            checker.error(f"{path}.name", f"must be a string of 1 to 100 characters, got {show(name)}")
        else:
            config["name"] = name
    return config


def _check_schedule(checker, path, value):
    kind = value.get("type")
    if kind == schedules.LinearWarmup.type:
        if not checker.obj(path, value, ("type", "schedule", "warmup_steps"), "linear_warmup schedule"):
            return None
        result = {"type": kind, **checker.args(path, {"warmup_steps": Arg("int", low=0, high=10 ** 9)}, value)}
        inner = value.get("schedule")
        if isinstance(inner, dict) and inner.get("type") != kind:
            result["schedule"] = _check_schedule(checker, f"{path}.schedule", inner)
        else:
            result["schedule"] = checker.arg(f"{path}.schedule",
                                             Arg("float", low=0.0, low_open=True, high=10.0), inner)
        return result
    if not isinstance(kind, str) or kind not in schedules.SCHEDULES:
        checker.error(f"{path}.type", f"unknown schedule type {show(kind)}; expected one of "
                                      f"{', '.join(schedules.SCHEDULES)}")
        return None
    cls = schedules.SCHEDULES[kind]
    if not checker.obj(path, value, ("type", *cls.args), f"{kind} schedule"):
        return None
    return {"type": kind, **checker.args(path, cls.args, value)}


def _check_optimizer(checker, path, value):
    named = isinstance(value, str)
    if named:
        value = {"type": value}
    if not isinstance(value, dict):
        checker.error(path, f"must be an optimizer name or an object with a \"type\", got {show(value)}")
        return None
    kind = value.get("type")
    kind = kind.lower() if isinstance(kind, str) else None
    if kind not in optimizers.OPTIMIZERS:
        where = path if named else f"{path}.type"
        message = "is required" if "type" not in value else \
            f"unknown optimizer {show(value.get('type'))}; expected one of {', '.join(optimizers.NAMES)}"
        checker.error(where, message)
        return None
    cls = optimizers.OPTIMIZERS[kind]
    schema = {**cls.common_args, **cls.args}
    if kind == "adamw":
        schema["weight_decay"] = Arg("float", 0.004, low=0.0, high=1.0)
    if kind == "sgd":
        schema["learning_rate"] = Arg("float", 0.01, low=0.0, low_open=True, high=10.0)
    if not checker.obj(path, value, ("type", *schema), cls.__name__):
        return None
    lr = value.get("learning_rate")
    values = dict(value)
    result = {"type": kind}
    if isinstance(lr, dict):
        values.pop("learning_rate")
        schema = {k: v for k, v in schema.items() if k != "learning_rate"}
        result["learning_rate"] = _check_schedule(checker, f"{path}.learning_rate", lr)
    result.update(checker.args(path, schema, values))
    return {k: v for k, v in result.items() if v is not None or k == "learning_rate"}


def _check_loss(checker, path, value):
    if isinstance(value, str):
        if losses.canonical(value) not in losses.LOSSES:
            checker.error(path, f"unknown loss {show(value)}; expected one of {', '.join(losses.NAMES)}")
            return None
        return losses.canonical(value)
    if not isinstance(value, dict):
        checker.error(path, f"must be a loss name or an object with a \"type\", got {show(value)}")
        return None
    kind = value.get("type")
    kind = losses.canonical(kind) if isinstance(kind, str) else None
    if kind not in losses.LOSSES:
        checker.error(f"{path}.type", f"unknown loss {show(value.get('type'))}; expected one of "
                                      f"{', '.join(losses.NAMES)}")
        return None
    options = losses.OPTIONS.get(kind, ())
    if not checker.obj(path, value, ("type", *options), kind):
        return None
    schema = {k: LOSS_OPTION_ARGS[k] for k in options}
    result = {"type": kind, **checker.args(path, schema, value)}
    return result if len(result) > 1 else kind


def _check_compile(checker, value):
    if not checker.obj("compile", value, ("loss", "optimizer", "metrics"), "compile"):
        return None
    result = {"loss": _check_loss(checker, "compile.loss", value.get("loss", "mse")),
              "optimizer": _check_optimizer(checker, "compile.optimizer", value.get("optimizer", "adam"))}
    metrics = value.get("metrics", [])
    if not isinstance(metrics, list) or len(metrics) > len(METRICS):
        checker.error("compile.metrics", f"must be a list of metric names, got {show(metrics)}")
        metrics = []
    names = []
    for i, name in enumerate(metrics):
        canonical = {"acc": "accuracy"}.get(name, name) if isinstance(name, str) else name
        if canonical not in METRICS:
            checker.error(f"compile.metrics[{i}]", f"unknown metric {show(name)}; expected one of {', '.join(METRICS)}")
        elif canonical not in names:
            names.append(canonical)
    result["metrics"] = names
    return result


def _check_fit(checker, value):
    if not checker.obj("fit", value, (*FIT_ARGS, *FIT_SECTIONS), "fit"):
        return None
    result = checker.args("fit", FIT_ARGS, value)
    for key, schema in FIT_SECTIONS.items():
        settings = value.get(key)
        if settings is None:
            result[key] = None
        elif checker.obj(f"fit.{key}", settings, tuple(schema), key):
            result[key] = checker.args(f"fit.{key}", schema, settings)
    found = result.get("find_learning_rate")
    if found and found["end"] <= found["start"]:
        checker.error("fit.find_learning_rate.end", f"must be larger than start ({found['start']}), got {found['end']}")
    return result


def _check_class_weight_loss(checker, result):
    """Class weights weigh a classification loss; a regression has no classes to weigh."""
    if not (result.get("fit") or {}).get("class_weight"):
        return
    loss = (result.get("compile") or {}).get("loss", "mse")
    name = loss.get("type") if isinstance(loss, dict) else loss
    if isinstance(name, str) and not losses.get(name).weighs_classes:
        checker.error("fit.class_weight", f"needs a classification loss (sparse_categorical_crossentropy, "
                                          f"categorical_crossentropy or binary_crossentropy), not {name}")


def _validate(spec):
    checker = _Checker()
    if not isinstance(spec, dict):
        raise SpecError(("", f"a spec must be an object, got {show(spec)}"))
    checker.obj("", spec, TOP_LEVEL_KEYS, "a model spec")
    result = {}
    if "name" in spec:
        name = spec["name"]
        if not isinstance(name, str) or len(name) > 200:
            checker.error("name", f"must be a string of at most 200 characters, got {show(name)}")
        else:
            result["name"] = name
    result["input_shape"] = _check_input_shape(checker, spec.get("input_shape"))
    layer_list = spec.get("layers")
    configs = []
    if "layers" not in spec:
        checker.error("layers", "is required")
    elif not isinstance(layer_list, list) or not layer_list:
        checker.error("layers", f"must be a non-empty list of layers, got {show(layer_list)}")
    elif len(layer_list) > MAX_LAYERS:
        checker.error("layers", f"must have at most {MAX_LAYERS} layers, got {len(layer_list)}")
    else:
        configs = [_check_layer(checker, f"layers[{i}]", layer) for i, layer in enumerate(layer_list)]
    result["layers"] = configs
    if "compile" in spec and spec["compile"] is not None:
        result["compile"] = _check_compile(checker, spec["compile"])
    if "fit" in spec and spec["fit"] is not None:
        result["fit"] = _check_fit(checker, spec["fit"])
        _check_class_weight_loss(checker, result)
    if not checker.errors and result["input_shape"] is not None:
        _infer_shapes(configs, result["input_shape"], checker)
    if checker.errors:
        raise SpecError(checker.errors)
    return result


def validate(spec):
    """A normalised copy of ``spec`` (defaults filled) or SpecError naming each bad field."""
    try:
        return _validate(spec)
    except SpecError:
        raise
    except RecursionError:
        raise SpecError(("", "the spec is nested too deeply")) from None
    except Exception as error:  # noqa: BLE001 - a validator bug must still reach users as a spec error
        raise SpecError(("", f"could not be validated ({type(error).__name__})")) from None


def _infer_shapes(configs, input_shape, checker):
    """Per-layer rows; records shape errors at ``layers[i]``."""
    rows = []
    shape = tuple(input_shape)
    total_params = total_flops = 0
    masked = False
    for i, config in enumerate(configs):
        layer = layers.from_config(config)
        try:
            out = layer.compute_output_shape(shape)
            masked = layer.output_masked(masked)
            params = layer.count_params(shape)
            flops = layer.count_flops(shape)
        except ShapeError as error:
            checker.error(f"layers[{i}]", str(error))
            return None
        total_params += params
        total_flops += flops
        rows.append({"index": i, "type": config["type"], "name": config.get("name"),
                     "input_shape": list(shape), "output_shape": list(out), "params": params, "flops": flops})
        shape = out
    if total_params > MAX_PARAMS:
        checker.error("layers", f"the model has {total_params:,} parameters, more than the limit of {MAX_PARAMS:,}")
        return None
    return {"layers": rows, "total_params": total_params, "total_flops": total_flops,
            "input_shape": list(input_shape), "output_shape": list(shape)}


def summarize(spec, input_shape=None):
    """Shapes, parameter counts and FLOPs (multiply-adds x 2, per sample) without building weights.

    ``input_shape`` (no batch axis) overrides the spec's own. Returns
    {"layers": [{"index", "type", "name", "input_shape", "output_shape", "params", "flops"}],
     "total_params", "total_flops", "input_shape", "output_shape"}.
    """
    normalized = validate(spec if input_shape is None or not isinstance(spec, dict)
                          else {**spec, "input_shape": None})
    checker = _Checker()
    shape = _check_input_shape(checker, list(input_shape) if isinstance(input_shape, tuple) else input_shape) \
        if input_shape is not None else normalized["input_shape"]
    if shape is None and not checker.errors:
        checker.error("input_shape", "is required to summarize a model")
    if checker.errors:
        raise SpecError(checker.errors)
    summary = _infer_shapes(normalized["layers"], shape, checker)
    if checker.errors:
        raise SpecError(checker.errors)
    return summary


def build_model(spec):
    """A Sequential from a spec: built when the spec has an input_shape, compiled when it has compile."""
    from trainer.models import Sequential
    normalized = validate(spec)
    fit = normalized.get("fit") or {}
    model = Sequential([layers.from_config(c) for c in normalized["layers"]], seed=fit.get("seed"),
                       name=normalized.get("name"))
    compile_spec = normalized.get("compile")
    if compile_spec is not None:
        model.compile(loss=compile_spec["loss"], optimizer=compile_spec["optimizer"],
                      metrics=compile_spec["metrics"])
    if normalized["input_shape"] is not None:
        model.build(normalized["input_shape"])
    if "fit" in normalized:
        model.fit_config = {k: v for k, v in fit.items()}
    return model


def fit_kwargs(spec, extra_callbacks=()):
    """Keyword arguments for ``model.fit`` from the spec's "fit" section; early stopping and
    reduce_lr_on_plateau become their callbacks, followed by ``extra_callbacks`` (e.g. the worker's reporter)."""
    fit = validate(spec).get("fit") or _Checker().args("fit", FIT_ARGS, {})
    kwargs = {key: fit.get(key, arg.default) for key, arg in FIT_ARGS.items()}
    kwargs["callbacks"] = fit_callbacks(fit) + list(extra_callbacks)
    return kwargs


def check_fit(fit):
    """A normalised copy of a spec's "fit" section alone (defaults filled), or SpecError."""
    checker = _Checker()
    result = _check_fit(checker, {} if fit is None else fit)
    if checker.errors:
        raise SpecError(checker.errors)
    return result


def fit_callbacks(fit):
    """The callbacks a validated "fit" section asks for: EarlyStopping, then ReduceLROnPlateau."""
    cbs = []
    if fit.get("early_stopping"):
        cbs.append(callbacks.EarlyStopping(**fit["early_stopping"]))
    if fit.get("reduce_lr_on_plateau"):
        cbs.append(callbacks.ReduceLROnPlateau(**fit["reduce_lr_on_plateau"]))
    return cbs


def fit(spec, x, y, *, validation_data=None, callbacks=(), checkpoint_path=None, resume=False, verbose=0):
    """Build, compile and train a model from a spec in one call (what a worker runs).

    ``fit.find_learning_rate`` runs the range test first and trains at its suggestion (kept in
    ``model.lr_find``; the spec's own rate when it suggests none). ``callbacks`` follow the spec's
    early stopping; ``checkpoint_path`` saves a checkpoint after
    every epoch (written atomically); with ``resume=True`` and an existing checkpoint there,
    training continues after its last completed epoch and ends exactly where an uninterrupted
    run would have. Returns (model, history).
    """
    import os

    from trainer.callbacks import ModelCheckpoint

    model = build_model(spec)
    if model.loss is None:
        raise SpecError(("compile", "is required to train a model"))
    kwargs = fit_kwargs(spec, callbacks)
    resuming = checkpoint_path is not None and resume and os.path.exists(checkpoint_path)
    finder = (validate(spec).get("fit") or {}).get("find_learning_rate")
    if finder and not resuming:  # the range test first; the model then trains from its initial weights
        found = tuning.lr_find(model, x, y, batch_size=kwargs["batch_size"], seed=kwargs["seed"] or 0, **finder)
        if found["suggestion"] is not None:
            model = build_model(tuning.with_learning_rate(spec, found["suggestion"]))
        model.lr_find = found
    initial_epoch = 0
    if checkpoint_path is not None:
        if resuming:
            initial_epoch = model.load_checkpoint(checkpoint_path)
        kwargs["callbacks"].append(ModelCheckpoint(checkpoint_path, monitor="loss"))
    if validation_data is not None:
        kwargs["validation_split"] = 0.0
    history = model.fit(x, y, validation_data=validation_data, initial_epoch=initial_epoch, verbose=verbose,
                        **kwargs)
    return model, history


def _describe_arg(name, arg):
    entry = {"name": name, "kind": arg.kind, "required": arg.required, "nullable": arg.nullable}
    if not arg.required:
        entry["default"] = arg.default
    for key in ("low", "high", "choices"):
        value = getattr(arg, key)
        if value is not None:
            entry[key] = list(value) if isinstance(value, tuple) else value
    return entry


def layer_catalog():
    """Every layer type with its arguments (kind, default, limits, choices), for form builders."""
    return {name: [_describe_arg(key, arg) for key, arg in cls.args.items()] for name, cls in layers.LAYERS.items()}


def catalog():
    """Everything a spec may name, with argument descriptions: layers, optimizers, schedules,
    losses (and their options), metrics, activations, initializers, fit and early stopping."""
    def describe(schema):
        return [_describe_arg(key, arg) for key, arg in schema.items()]

    return {
        "layers": layer_catalog(),
        "optimizers": {kind: describe({**cls.common_args, **cls.args}) for kind, cls in optimizers.OPTIMIZERS.items()},
        "schedules": {kind: describe(cls.args) for kind, cls in schedules.SCHEDULES.items()},
        "losses": {name: describe({k: LOSS_OPTION_ARGS[k] for k in losses.OPTIONS.get(name, ())})
                   for name in losses.LOSSES},
        "metrics": list(METRICS),
        "activations": list(layers.activations.NAMES),
        "initializers": list(layers.initializers.NAMES),
        "fit": describe(FIT_ARGS),
        "early_stopping": describe(EARLY_STOPPING_ARGS),
        "reduce_lr_on_plateau": describe(REDUCE_LR_ARGS),
        "find_learning_rate": describe(FIND_LR_ARGS),
        "limits": {"max_layers": MAX_LAYERS, "max_params": MAX_PARAMS, "max_input_dim": MAX_INPUT_DIM},
    }
