"""Layers with Keras names and arguments.

Each layer class declares its arguments once (``args``: name -> Arg). The same declaration
validates constructor calls (``Dense: units must be a positive integer. Received: units=0``)
and JSON specs (``layers[2].units: must be a positive integer, got -3``, see trainer.spec).
``compute_output_shape``, ``count_params`` and ``count_flops`` work on shapes alone, so a spec
can be summarised without allocating weights. Shapes exclude the batch axis.
"""
import json
import math
from typing import ClassVar

import numpy as np

from trainer import activations, backend, initializers
from trainer import functions as F
from trainer.core import Config, Parameter, as_variable

REQUIRED = object()
MAX_UNITS = 65536
MAX_KERNEL = 64
MAX_RANK = 8


class ArgumentError(ValueError):
    """An argument value is invalid; ``message`` reads after the argument's name."""

    def __init__(self, message, subpath=""):
        super().__init__(message)
        self.message = message
        self.subpath = subpath


class MissingArgument(ArgumentError):
    """A required argument is absent (its name is the subpath)."""


def check_args(args, values):
    """``values`` checked against ``args`` (name -> Arg), defaults filled: name -> normalised value.
    Raises ArgumentError whose subpath starts with the argument's name (MissingArgument when absent)."""
    checked = {}
    for key, arg in args.items():
        value = values.get(key, arg.default)
        if value is REQUIRED:
            raise MissingArgument("is required", subpath=key)
        try:
            checked[key] = arg.check(value)
        except ArgumentError as error:
            raise type(error)(error.message, subpath=f"{key}.{error.subpath}" if error.subpath else key) from None
    return checked


class ShapeError(ValueError):
    """A layer cannot take an input of the given shape."""


def show(value):
    """A short JSON-ish rendering of a value for error messages."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _interval(low, high, low_open, high_open):
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    return f"{left}{low:g}, {high:g}{right}"


class Arg:
    """One argument's kind, default and limits; ``check`` returns the normalised value."""

    def __init__(self, kind, default=REQUIRED, low=None, high=None, choices=None,
                 low_open=False, high_open=False, nullable=False):
        self.kind = kind
        self.default = default
        self.low, self.high = low, high
        self.low_open, self.high_open = low_open, high_open
        self.choices = choices
        self.nullable = nullable

    @property
    def required(self):
        return self.default is REQUIRED

    def check(self, value):
        if value is None and self.nullable:
            return None
        return getattr(self, "_check_" + self.kind)(value)

    def _int_message(self):
        if self.low == 1:
            return "must be a positive integer"
        if self.low == 0:
            return "must be a non-negative integer"
        return "must be an integer"

    def _check_int(self, value):
        if not _is_int(value) or (self.low is not None and value < self.low):
            raise ArgumentError(self._int_message())
        if self.high is not None and value > self.high:
            raise ArgumentError(f"must be at most {self.high}")
        return int(value)

    def _check_pair(self, value):
        message = "must be a positive integer or a list of two positive integers"
        if _is_int(value):
            items = [value, value]
        elif isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value):
            items = list(value)
        else:
            raise ArgumentError(message)
        if any(v < 1 for v in items):
            raise ArgumentError(message)
        if any(v > self.high for v in items):
            raise ArgumentError(f"must be at most {self.high}")
        return [int(v) for v in items]

    def _check_float(self, value):
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        bad = not _is_number(value) or not math.isfinite(float(value))
        if not bad:
            v = float(value)
            bad = v < low or v > high or (self.low_open and v == low) or (self.high_open and v == high)
        if bad:
            if self.low is not None and self.high is not None:
                raise ArgumentError(f"must be a number in {_interval(low, high, self.low_open, self.high_open)}")
            if self.low is not None:
                raise ArgumentError("must be a positive number" if self.low_open and low == 0
                                    else f"must be a number >= {low:g}")
            raise ArgumentError("must be a number")
        return float(value)

    def _check_bool(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise ArgumentError("must be true or false")
        return bool(value)

    def _check_choice(self, value):
        if not isinstance(value, str) or value not in self.choices:
            options = ", ".join(f'"{c}"' for c in self.choices)
            raise ArgumentError(f"must be one of {options}" + (" or null" if self.nullable else ""))
        return value

    def _check_regularizer(self, value):
        if not isinstance(value, dict):
            raise ArgumentError('must be null or an object like {"l1": 0.0, "l2": 0.01}')
        result = {}
        for key, amount in value.items():
            if key not in ("l1", "l2"):
                raise ArgumentError('unknown key (expected "l1" or "l2")', subpath=str(key))
            if not _is_number(amount) or not math.isfinite(float(amount)) or float(amount) < 0:
                raise ArgumentError("must be a non-negative number", subpath=key)
            result[key] = float(amount)
        return {"l1": result.get("l1", 0.0), "l2": result.get("l2", 0.0)}

    def _check_class_weight(self, value):
        message = 'must be null, "balanced" or a list of non-negative numbers (one per class)'
        if value == "balanced":
            return value
        if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_UNITS:
            raise ArgumentError(message)
        if not all(_is_number(v) and math.isfinite(float(v)) and float(v) >= 0 for v in value):
            raise ArgumentError(message)
        return [float(v) for v in value]

    def _check_recurrent_layer(self, value):
        """A recurrent layer's config (or the layer itself), checked as that layer checks it."""
        if isinstance(value, _RNN):
            return value.get_config()
        kinds = ", ".join(f'"{name}"' for name in RECURRENT)
        if not isinstance(value, dict) or value.get("type") not in RECURRENT:
            raise ArgumentError(f"must be a recurrent layer's config, an object with a type of {kinds}")
        cls = LAYERS[value["type"]]
        for key in value:
            if key not in (*cls.args, "type", "name"):
                raise ArgumentError(f"unknown key for {value['type']}", subpath=str(key))
        check_args(cls.args, value)  # its messages keep the wrapped argument's name as their subpath
        return cls.from_config(value).get_config()

    def _check_shape(self, value):
        message = "must be a list of positive integers (one of them may be -1)"
        if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_RANK:
            raise ArgumentError(message + f", with 1 to {MAX_RANK} entries")
        if not all(_is_int(v) and (v >= 1 or v == -1) for v in value) or list(value).count(-1) > 1:
            raise ArgumentError(message)
        if any(v > 2 ** 31 for v in value):
            raise ArgumentError(f"entries must be at most {2 ** 31}")
        return [int(v) for v in value]


def activation_arg(default=None):
    return Arg("choice", default, choices=activations.NAMES, nullable=True)


def initializer_arg(default):
    return Arg("choice", default, choices=initializers.NAMES)


def _rank_error(layer, expected, input_shape):
    return ShapeError(f"{type(layer).__name__} expects an input of rank {expected} "
                      f"(without the batch axis), got shape {list(input_shape)}")


class Layer:
    """Base layer: argument checking, lazy building, weights and shape arithmetic.

    Padding masks (Keras' ``mask_zero``): an ``Embedding(mask_zero=True)`` marks the steps whose
    index is 0 as padding, and the mask (N, T) goes along with the steps to the layers after it.
    ``masking`` says what a layer does with one: ``"keep"`` works step by step and passes it on,
    ``"read"`` uses it and returns no steps (the mask ends there), ``None`` cannot take one (it
    mixes neighbouring steps, or has none), which the model reports when it is built. A layer that
    uses the mask (``reads_mask``) gets it as ``call(x, logits, mask=...)``."""

    args: ClassVar[dict] = {}
    has_activation = False
    masking = None
    reads_mask = False
    inference_identity = False  # passes its input on unchanged when predicting (dropout, augmentation)

    def __init__(self, name=None, **values):
        cls = type(self).__name__
        try:
            checked = check_args(self.args, values)
        except MissingArgument as error:
            raise TypeError(f"{cls}: missing required argument {error.subpath!r}") from None
        except ArgumentError as error:
            key = error.subpath.split(".", 1)[0]
            raise ValueError(f"{cls}: {error.subpath} {error.message}. Received: {key}={values.get(key)!r}") from None
        for key, value in checked.items():
            setattr(self, key, value)
        if name is not None and not isinstance(name, str):
            raise ValueError(f"{cls}: name must be a string. Received: name={name!r}")
        self.name = name
        self.built = False
        self.input_shape = None
        self.params = {}     # trainable: name -> Parameter
        self.state = {}      # non-trainable: name -> array (e.g. moving statistics)
        self.rng = None      # backend random Generator, set by the model for dropout

    # -- configuration
    def get_config(self):
        config = {"type": type(self).__name__}
        for key in self.args:
            value = getattr(self, key)
            config[key] = list(value) if isinstance(value, tuple) else value
        if self.name is not None:
            config["name"] = self.name
        return config

    @classmethod
    def from_config(cls, config):
        values = {k: v for k, v in config.items() if k != "type"}
        return cls(**values)

    # -- shapes (no batch axis)
    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def weight_shapes(self, input_shape):
        """name -> shape of every weight (trainable first), from the input shape alone."""
        return {}

    def non_trainable_names(self):
        return ()

    def count_params(self, input_shape):
        return sum(math.prod(shape) for shape in self.weight_shapes(input_shape).values())

    def count_flops(self, input_shape):
        """Multiply-adds x 2 for one sample's forward pass (elementwise work not counted)."""
        return 0

    # -- weights
    def build(self, input_shape, rng=None, dtype=np.float32):
        rng = rng if rng is not None else np.random.default_rng()
        self.input_shape = tuple(input_shape)
        frozen = self.non_trainable_names()
        for key, shape in self.weight_shapes(input_shape).items():
            value = backend.to_device(self.initial_value(key, shape, rng, dtype))
            if key in frozen:
                self.state[key] = value
            else:
                self.params[key] = Parameter(value, name=key)
        self.built = True

    def initial_value(self, key, shape, rng, dtype):
        return initializers.zeros(shape, rng, dtype)

    def weight_items(self):
        """(name, array) for trainable then non-trainable weights, in a stable order."""
        return [(k, p.data) for k, p in self.params.items()] + list(self.state.items())

    def get_weights(self):
        """Host copies of the weights (never views: the live arrays change as training goes on)."""
        return [np.array(backend.to_host(value), copy=True) for _, value in self.weight_items()]

    def set_weights(self, values):
        items = self.weight_items()
        if len(values) != len(items):
            raise ValueError(f"{self.describe()}: expected {len(items)} weight arrays, got {len(values)}")
        for (key, target), value in zip(items, values):
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"{self.describe()}: weight {key!r} has shape {tuple(target.shape)}, "
                                 f"got {tuple(value.shape)}")
            backend.copy_to_device(target, value)

    def regularization_loss(self):
        return None

    def _random(self):
        """What the layer draws from: the model's step generator (``rng``), or one of its own
        when it is called outside a fit."""
        if self.rng is None:
            self.rng = backend.random_generator(None)
        return self.rng

    def describe(self):
        return self.name or type(self).__name__

    # -- masks
    def output_masked(self, masked):
        """Whether the output carries a padding mask, given whether the input does; ShapeError
        when the layer cannot take the input's."""
        if masked and self.masking is None:
            raise ShapeError(f"{type(self).__name__} cannot take the padding mask that Embedding(mask_zero=True) "
                             f"sets: put a layer that reads it (GlobalAveragePooling1D, GlobalMaxPooling1D, "
                             f"an LSTM, GRU or SimpleRNN) before it, or set mask_zero to false")
        return masked and self.masking == "keep"

    def output_mask(self, x, mask):
        """The padding mask (N, T) of the output for the input ``x`` and its mask (None: no mask)."""
        return mask if mask is not None and self.masking == "keep" else None

    # -- calling
    def __call__(self, x, logits=False, mask=None):
        x = as_variable(x)
        if not self.built:
            self.build(x.shape[1:])
        if mask is not None and self.reads_mask:
            return self.call(x, logits, mask=mask)
        return self.call(x, logits)

    def call(self, x, logits=False):
        raise NotImplementedError(f"{type(self).__name__}.call")

    def final_activation(self):
        """The activation applied last by this layer (used to fuse softmax/sigmoid with the loss)."""
        return getattr(self, "activation", None) or "linear" if self.has_activation else "linear"


def _activate(x, name, logits):
    if logits and name in ("softmax", "sigmoid"):
        return x
    return activations.apply(name, x)


class _KernelLayer(Layer):
    """Dense, Conv2D and Conv1D: a kernel, an optional bias and an L1/L2 kernel regularizer."""

    has_activation = True

    def initial_value(self, key, shape, rng, dtype):
        name = self.kernel_initializer if key == "kernel" else self.bias_initializer
        return initializers.get(name)(shape, rng, dtype)

    def regularization_loss(self):
        reg = self.kernel_regularizer
        if not reg or (reg["l1"] == 0 and reg["l2"] == 0):
            return None
        kernel = self.params["kernel"]
        loss = None
        if reg["l1"]:
            loss = F.sum(F.absolute(kernel)) * reg["l1"]
        if reg["l2"]:
            term = F.sum(kernel * kernel) * reg["l2"]
            loss = term if loss is None else loss + term
        return loss

    def _fused(self, logits):
        name = activations.canonical(self.activation)
        if name in F.FUSABLE_ACTIVATIONS and not (logits and name == "sigmoid"):
            return name, None
        return "linear", name


_KERNEL_ARGS = {
    "activation": activation_arg(),
    "use_bias": Arg("bool", True),
    "kernel_initializer": initializer_arg("glorot_uniform"),
    "bias_initializer": initializer_arg("zeros"),
    "kernel_regularizer": Arg("regularizer", None, nullable=True),
}


class Dense(_KernelLayer):
    args: ClassVar[dict] = {"units": Arg("int", low=1, high=MAX_UNITS), **_KERNEL_ARGS}
    masking = "keep"  # on steps (T, features) it applies to each step alone

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, name=None):
        super().__init__(name, units=units, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer)

    def _check(self, input_shape):
        if len(input_shape) < 1:
            raise _rank_error(self, "1 or more", input_shape)

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        return tuple(input_shape[:-1]) + (self.units,)

    def weight_shapes(self, input_shape):
        self._check(input_shape)
        shapes = {"kernel": (input_shape[-1], self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def count_flops(self, input_shape):
        return 2 * math.prod(input_shape) * self.units

    def call(self, x, logits=False):
        fused, after = self._fused(logits)
        b = self.params.get("bias")
        y = F.linear(x, self.params["kernel"], b, fused)
        return y if after is None else _activate(y, after, logits)


def _conv_args(window_kind):
    window = {"low": 1} if window_kind == "int" else {}
    return {
        "filters": Arg("int", low=1, high=MAX_UNITS),
        "kernel_size": Arg(window_kind, high=MAX_KERNEL, **window),
        "strides": Arg(window_kind, 1, high=MAX_KERNEL, **window),
        "padding": Arg("choice", "valid", choices=("valid", "same")),
        **_KERNEL_ARGS,
    }


class _Convolution(_KernelLayer):
    """Conv2D and Conv1D: the same arguments, a kernel shaped (*window, in, filters)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 name=None):
        super().__init__(name, filters=filters, kernel_size=kernel_size, strides=strides, padding=padding,
                         activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer)

    def weight_shapes(self, input_shape):
        self.compute_output_shape(input_shape)
        window = self.kernel_size if isinstance(self.kernel_size, list) else [self.kernel_size]
        shapes = {"kernel": (*window, input_shape[-1], self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes


class Conv2D(_Convolution):
    args: ClassVar[dict] = _conv_args("pair")

    def compute_output_shape(self, input_shape):
        return _window_output_shape(self, input_shape, self.kernel_size, self.strides, self.padding,
                                    "kernel_size", self.filters)

    def count_flops(self, input_shape):
        oh, ow, f = self.compute_output_shape(input_shape)
        return 2 * oh * ow * f * self.kernel_size[0] * self.kernel_size[1] * input_shape[-1]

    def call(self, x, logits=False):
        fused, after = self._fused(logits)
        y = F.conv2d(x, self.params["kernel"], self.params.get("bias"), self.strides, self.padding, fused)
        return y if after is None else _activate(y, after, logits)

    def pools_into(self, layer):
        """True when ``layer``, the next layer, is a 2x2 max-pool this convolution can run fused."""
        return (type(layer) is MaxPooling2D and tuple(layer.pool_size) == (2, 2)
                and tuple(layer.strides or (2, 2)) == (2, 2) and layer.padding == "valid"
                and self._fused(False)[1] is None)

    def call_pooled(self, x):
        """This layer then the 2x2 max-pool after it (see pools_into) as one function: F.Conv2DMaxPool."""
        return F.conv2d_max_pool(x, self.params["kernel"], self.params.get("bias"), self.strides, self.padding,
                                 self._fused(False)[0])


def _window_output_shape(layer, input_shape, window, strides, padding, window_name, channels=None):
    if len(input_shape) != 3:
        raise _rank_error(layer, "3 (height, width, channels)", input_shape)
    h, w, c = input_shape
    oh = F.conv_output_length(h, window[0], strides[0], padding)
    ow = F.conv_output_length(w, window[1], strides[1], padding)
    if oh < 1 or ow < 1:
        raise ShapeError(f"{type(layer).__name__}: {window_name} {list(window)} is larger than the input "
                         f"({h} x {w}) with padding \"valid\"")
    return (oh, ow, c if channels is None else channels)


class _Pooling2D(Layer):
    args: ClassVar[dict] = {
        "pool_size": Arg("pair", 2, high=MAX_KERNEL),
        "strides": Arg("pair", None, high=MAX_KERNEL, nullable=True),
        "padding": Arg("choice", "valid", choices=("valid", "same")),
    }

    def __init__(self, pool_size=2, strides=None, padding="valid", name=None):
        super().__init__(name, pool_size=pool_size, strides=strides, padding=padding)

    def compute_output_shape(self, input_shape):
        return _window_output_shape(self, input_shape, self.pool_size, self.strides or self.pool_size,
                                    self.padding, "pool_size")


class MaxPooling2D(_Pooling2D):
    def call(self, x, logits=False):
        return F.max_pool2d(x, self.pool_size, self.strides, self.padding)


class AveragePooling2D(_Pooling2D):
    def call(self, x, logits=False):
        return F.avg_pool2d(x, self.pool_size, self.strides, self.padding)


class _GlobalPooling(Layer):
    """One value per channel over the whole image (2D) or all the steps (1D)."""

    rank, axes = 3, "3 (height, width, channels)"

    def __init__(self, name=None):
        super().__init__(name)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != self.rank:
            raise _rank_error(self, self.axes, input_shape)
        return (input_shape[-1],)


class GlobalAveragePooling2D(_GlobalPooling):
    def call(self, x, logits=False):
        return F.global_avg_pool2d(x)


class GlobalMaxPooling2D(_GlobalPooling):
    def call(self, x, logits=False):
        return F.global_max_pool(x)


def _steps_output_shape(layer, input_shape, window, stride, padding, window_name, channels=None):
    if len(input_shape) != 2:
        raise _rank_error(layer, "2 (steps, channels)", input_shape)
    steps, c = input_shape
    out = F.conv_output_length(steps, window, stride, padding)
    if out < 1:
        raise ShapeError(f"{type(layer).__name__}: {window_name} {window} is larger than the input "
                         f"({steps} steps) with padding \"valid\"")
    return (out, c if channels is None else channels)


MASKED = 1e9  # taken from masked steps before a maximum or a softmax, so that they never win


def _xp_of(array):
    return backend.get_array_module(array)


def _lengths(mask):
    """Each sequence's length under a padding mask (N, T): its steps up to the last one not
    masked (0 when all are). The recurrent layers read those steps, zeros before the last real
    one included (Keras would skip them); a text's padding all comes after it."""
    xp = _xp_of(mask)
    last = mask.shape[1] - mask[:, ::-1].argmax(axis=1)
    return xp.where(mask.any(axis=1), last, 0)


def _last_steps(sequence, lengths):
    """(N, T, F) -> (N, F): each sequence's output at its last step (zeros for an empty one)."""
    xp = _xp_of(lengths)
    picked = F.get_item(sequence, (xp.arange(sequence.shape[0]), xp.maximum(lengths - 1, 0)))
    return picked * (lengths > 0).astype(sequence.dtype)[:, None]


def _reverse_within(x, lengths):
    """Each sequence's first ``length`` steps in reverse order, the padding after them in place
    (its own inverse)."""
    xp = _xp_of(lengths)
    steps = xp.arange(x.shape[1])[None, :]
    lengths = lengths[:, None]
    order = xp.where(steps < lengths, lengths - 1 - steps, steps)
    return F.get_item(x, (xp.arange(x.shape[0])[:, None], order))


def _as_rows(x):
    """(N, steps, channels) as (N, 1, steps, channels): the 1-D layers run the 2-D functions on one row."""
    return F.reshape(x, (x.shape[0], 1, *x.shape[1:]))


def _from_rows(y):
    return F.reshape(y, (y.shape[0], *y.shape[2:]))


class Conv1D(_Convolution):
    """A convolution along the steps of (steps, channels) inputs: Conv2D's kernels on one row, so
    the same im2col + GEMM path (and its GPU kernels) does the work."""

    args: ClassVar[dict] = _conv_args("int")

    def compute_output_shape(self, input_shape):
        return _steps_output_shape(self, input_shape, self.kernel_size, self.strides, self.padding,
                                   "kernel_size", self.filters)

    def count_flops(self, input_shape):
        steps, f = self.compute_output_shape(input_shape)
        return 2 * steps * f * self.kernel_size * input_shape[-1]

    def call(self, x, logits=False):
        fused, after = self._fused(logits)
        kernel = self.params["kernel"]
        y = F.conv2d(_as_rows(x), F.reshape(kernel, (1, *kernel.shape)), self.params.get("bias"),
                     (1, self.strides), self.padding, fused)
        y = _from_rows(y)
        return y if after is None else _activate(y, after, logits)


class _Pooling1D(Layer):
    args: ClassVar[dict] = {
        "pool_size": Arg("int", 2, low=1, high=MAX_KERNEL),
        "strides": Arg("int", None, low=1, high=MAX_KERNEL, nullable=True),
        "padding": Arg("choice", "valid", choices=("valid", "same")),
    }
    pool = None  # the 2-D function it runs on one row

    def __init__(self, pool_size=2, strides=None, padding="valid", name=None):
        super().__init__(name, pool_size=pool_size, strides=strides, padding=padding)

    def compute_output_shape(self, input_shape):
        return _steps_output_shape(self, input_shape, self.pool_size, self.strides or self.pool_size,
                                   self.padding, "pool_size")

    def call(self, x, logits=False):
        pooled = self.pool(_as_rows(x), (1, self.pool_size), (1, self.strides or self.pool_size), self.padding)
        return _from_rows(pooled)


class MaxPooling1D(_Pooling1D):
    pool = staticmethod(F.max_pool2d)


class AveragePooling1D(_Pooling1D):
    pool = staticmethod(F.avg_pool2d)


class GlobalAveragePooling1D(_GlobalPooling):
    """The mean over the steps; with a padding mask, over the steps not masked (0 when all are)."""

    rank, axes = 2, "2 (steps, channels)"
    masking, reads_mask = "read", True

    def call(self, x, logits=False, mask=None):
        if mask is None:
            return F.global_avg_pool2d(_as_rows(x))
        kept = mask.astype(x.dtype)
        counts = kept.sum(axis=1, keepdims=True)
        return F.sum(x * kept[:, :, None], axis=1) * (1.0 / _xp_of(counts).maximum(counts, 1.0))


class GlobalMaxPooling1D(_GlobalPooling):
    """The maximum over the steps; with a padding mask, over the steps not masked (0 when all are)."""

    rank, axes = 2, "2 (steps, channels)"
    masking, reads_mask = "read", True

    def call(self, x, logits=False, mask=None):
        if mask is None:
            return F.global_max_pool(x)
        padding = (~mask).astype(x.dtype) * x.dtype.type(-MASKED)
        pooled = F.global_max_pool(x + padding[:, :, None])
        return pooled * mask.any(axis=1, keepdims=True).astype(x.dtype)


class Flatten(Layer):
    def __init__(self, name=None):
        super().__init__(name)

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def call(self, x, logits=False):
        return F.reshape(x, (x.shape[0], -1))


class Reshape(Layer):
    args: ClassVar[dict] = {"target_shape": Arg("shape")}

    def __init__(self, target_shape, name=None):
        super().__init__(name, target_shape=target_shape)

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape)
        target = list(self.target_shape)
        known = math.prod(v for v in target if v != -1)
        if -1 in target:
            if known == 0 or size % known:
                raise ShapeError(f"Reshape: cannot reshape {list(input_shape)} ({size} values) "
                                 f"to {self.target_shape}")
            target[target.index(-1)] = size // known
        elif known != size:
            raise ShapeError(f"Reshape: cannot reshape {list(input_shape)} ({size} values) "
                             f"to {self.target_shape} ({known} values)")
        return tuple(target)

    def call(self, x, logits=False):
        return F.reshape(x, (x.shape[0],) + self.compute_output_shape(x.shape[1:]))


class Dropout(Layer):
    args: ClassVar[dict] = {"rate": Arg("float", low=0.0, high=1.0, high_open=True)}
    masking = "keep"
    inference_identity = True

    def __init__(self, rate, name=None):
        super().__init__(name, rate=rate)

    def call(self, x, logits=False):
        if not Config.train or self.rate == 0.0:
            return x
        return F.dropout(x, self.rate, self._random())


class _Augmentation(Layer):
    """A random change to each training image (N, H, W, C), drawn anew every step; the identity
    when predicting or evaluating (Keras' preprocessing layers)."""

    inference_identity = True

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise _rank_error(self, 3, input_shape)
        return tuple(input_shape)

    def call(self, x, logits=False):
        return self.augment(x, self._random()) if Config.train else x


class RandomFlip(_Augmentation):
    """Mirrors each image with probability 1/2: left to right ("horizontal"), top to bottom
    ("vertical"), or each independently ("horizontal_and_vertical")."""

    args: ClassVar[dict] = {"mode": Arg("choice", "horizontal",
                                        choices=("horizontal", "vertical", "horizontal_and_vertical"))}

    def __init__(self, mode="horizontal", name=None):
        super().__init__(name, mode=mode)

    def augment(self, x, rng):
        return F.random_flip(x, rng, horizontal=self.mode != "vertical", vertical=self.mode != "horizontal")


class RandomTranslation(_Augmentation):
    """Shifts each image by up to ``height_factor`` of its height and ``width_factor`` of its
    width (whole pixels, drawn uniformly each way), filling the uncovered border with zeros."""

    args: ClassVar[dict] = {"height_factor": Arg("float", low=0.0, high=1.0, high_open=True),
                            "width_factor": Arg("float", low=0.0, high=1.0, high_open=True)}

    def __init__(self, height_factor, width_factor, name=None):
        super().__init__(name, height_factor=height_factor, width_factor=width_factor)

    def augment(self, x, rng):
        limits = round(self.height_factor * x.shape[1]), round(self.width_factor * x.shape[2])
        return F.random_translation(x, rng, *limits) if any(limits) else x


class Activation(Layer):
    has_activation = True
    masking = "keep"
    args: ClassVar[dict] = {"activation": activation_arg(REQUIRED)}

    def __init__(self, activation, name=None):
        super().__init__(name, activation=activation)

    def call(self, x, logits=False):
        return _activate(x, activations.canonical(self.activation), logits)


class BatchNormalization(Layer):
    """Normalises over the last axis with batch statistics when training, moving ones otherwise.
    It passes a padding mask on, and its batch statistics (so its moving ones) count only the real
    steps."""

    masking, reads_mask = "keep", True

    args: ClassVar[dict] = {
        "momentum": Arg("float", 0.99, low=0.0, high=1.0),
        "epsilon": Arg("float", 1e-3, low=0.0, low_open=True, high=1.0),
    }

    def __init__(self, momentum=0.99, epsilon=0.001, name=None):
        super().__init__(name, momentum=momentum, epsilon=epsilon)

    def weight_shapes(self, input_shape):
        c = (input_shape[-1],)
        return {"gamma": c, "beta": c, "moving_mean": c, "moving_variance": c}

    def non_trainable_names(self):
        return ("moving_mean", "moving_variance")

    def initial_value(self, key, shape, rng, dtype):
        one = key in ("gamma", "moving_variance")
        return (initializers.ones if one else initializers.zeros)(shape, rng, dtype)

    def call(self, x, logits=False, mask=None):
        gamma, beta = self.params["gamma"], self.params["beta"]
        if Config.train:
            func = F.BatchNorm(self.epsilon, weights=mask)
            y = func(x, gamma, beta)
            m = self.momentum
            mean, var = self.state["moving_mean"], self.state["moving_variance"]
            mean *= m
            mean += (1.0 - m) * func.mean
            var *= m
            var += (1.0 - m) * func.var
            return y
        return F.fixed_batch_norm(x, gamma, beta, self.state["moving_mean"],
                                  self.state["moving_variance"], self.epsilon)


class LayerNormalization(Layer):
    args: ClassVar[dict] = {"epsilon": Arg("float", 1e-3, low=0.0, low_open=True, high=1.0)}
    masking = "keep"

    def __init__(self, epsilon=0.001, name=None):
        super().__init__(name, epsilon=epsilon)

    def weight_shapes(self, input_shape):
        return {"gamma": (input_shape[-1],), "beta": (input_shape[-1],)}

    def initial_value(self, key, shape, rng, dtype):
        return (initializers.ones if key == "gamma" else initializers.zeros)(shape, rng, dtype)

    def call(self, x, logits=False):
        return F.layer_norm(x, self.params["gamma"], self.params["beta"], self.epsilon)


class Embedding(Layer):
    """Integer indices (N, T) -> vectors (N, T, output_dim). With ``mask_zero`` the steps whose
    index is 0 are padding (what ``TextVectorizer`` puts after a short text): the layers after it
    leave them out (see ``Layer``)."""

    args: ClassVar[dict] = {
        "input_dim": Arg("int", low=1, high=10_000_000),
        "output_dim": Arg("int", low=1, high=MAX_UNITS),
        "mask_zero": Arg("bool", False),
    }

    def __init__(self, input_dim, output_dim, mask_zero=False, name=None):
        super().__init__(name, input_dim=input_dim, output_dim=output_dim, mask_zero=mask_zero)

    def output_masked(self, masked):
        return self.mask_zero

    def output_mask(self, x, mask):
        return x.data != 0 if self.mask_zero else None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def weight_shapes(self, input_shape):
        return {"embeddings": (self.input_dim, self.output_dim)}

    def initial_value(self, key, shape, rng, dtype):
        return initializers.random_uniform(shape, rng, dtype)

    def call(self, x, logits=False):
        indices = x.data.astype(np.int64, copy=False)
        # Checked on the host only: on a GPU the comparison would stall every step.
        if backend.get_array_module(indices) is np and indices.size and (
                indices.min() < 0 or indices.max() >= self.input_dim):
            raise ValueError(f"Embedding: indices must be in [0, {self.input_dim}), got values in "
                             f"[{int(indices.min())}, {int(indices.max())}]")
        return F.embedding(indices, self.params["embeddings"])


class PositionEmbedding(Layer):
    """A learned vector per step added to a sequence (N, T, features), so that the layers after
    it (attention, which is blind to order) know where each step is. Keras Hub's
    ``PositionEmbedding`` returns the vectors for the caller to add; in a stack of layers this one
    adds them. ``sequence_length`` (the input's steps when null) may be longer than the input:
    its first T vectors are used."""

    args: ClassVar[dict] = {
        "sequence_length": Arg("int", None, low=1, high=MAX_UNITS, nullable=True),
        "initializer": initializer_arg("glorot_uniform"),
    }

    def __init__(self, sequence_length=None, initializer="glorot_uniform", name=None):
        super().__init__(name, sequence_length=sequence_length, initializer=initializer)

    def _check(self, input_shape):
        if len(input_shape) != 2:
            raise _rank_error(self, "2 (timesteps, features)", input_shape)
        if self.sequence_length is not None and input_shape[0] > self.sequence_length:
            raise ShapeError(f"PositionEmbedding: the input has {input_shape[0]} steps, more than its "
                             f"sequence_length {self.sequence_length}")

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        return tuple(input_shape)

    def weight_shapes(self, input_shape):
        self._check(input_shape)
        return {"embeddings": (self.sequence_length or input_shape[0], input_shape[1])}

    def initial_value(self, key, shape, rng, dtype):
        return initializers.get(self.initializer)(shape, rng, dtype)

    masking = "keep"

    def call(self, x, logits=False):
        embeddings = self.params["embeddings"]
        steps = x.shape[1]
        return x + (embeddings if embeddings.shape[0] == steps else F.get_item(embeddings, slice(0, steps)))


class TransformerEncoder(Layer):
    """One Transformer encoder block over a sequence (N, T, features), Keras Hub's
    ``TransformerEncoder`` (and PyTorch's ``TransformerEncoderLayer``): multi-head self-attention
    with ``num_heads`` heads of ``features / num_heads`` each, then a feed-forward network of
    ``intermediate_dim`` units; each part added to its input and layer-normalised, after it
    (``normalize_first`` false, the original Transformer) or before it. ``dropout`` drops
    attention weights and each part's output while training."""

    args: ClassVar[dict] = {
        "intermediate_dim": Arg("int", low=1, high=MAX_UNITS),
        "num_heads": Arg("int", low=1, high=1024),
        "dropout": Arg("float", 0.0, low=0.0, high=1.0, high_open=True),
        "activation": Arg("choice", "relu", choices=("relu", "gelu", "tanh", "sigmoid", "elu", "linear")),
        "layer_norm_epsilon": Arg("float", 1e-5, low=0.0, low_open=True, high=1.0),
        "normalize_first": Arg("bool", False),
    }
    PROJECTIONS = ("query", "key", "value", "output")
    masking, reads_mask = "keep", True  # padded steps are never attended to

    def __init__(self, intermediate_dim, num_heads, dropout=0.0, activation="relu", layer_norm_epsilon=1e-5,
                 normalize_first=False, name=None):
        super().__init__(name, intermediate_dim=intermediate_dim, num_heads=num_heads, dropout=dropout,
                         activation=activation, layer_norm_epsilon=layer_norm_epsilon, normalize_first=normalize_first)

    def _check(self, input_shape):
        if len(input_shape) != 2:
            raise _rank_error(self, "2 (timesteps, features)", input_shape)
        if input_shape[1] % self.num_heads:
            features = f"{input_shape[1]} feature" + ("s do" if input_shape[1] != 1 else " does")
            raise ShapeError(f"TransformerEncoder: the input's {features} not split into "
                             f"num_heads={self.num_heads} heads of equal size")

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        return tuple(input_shape)

    def weight_shapes(self, input_shape):
        self._check(input_shape)
        d, inner = input_shape[1], self.intermediate_dim
        shapes = {}
        for part in self.PROJECTIONS:
            shapes[f"{part}_kernel"], shapes[f"{part}_bias"] = (d, d), (d,)
        shapes.update(attention_norm_gamma=(d,), attention_norm_beta=(d,),
                      intermediate_kernel=(d, inner), intermediate_bias=(inner,),
                      feedforward_kernel=(inner, d), feedforward_bias=(d,),
                      feedforward_norm_gamma=(d,), feedforward_norm_beta=(d,))
        return shapes

    def count_flops(self, input_shape):
        self._check(input_shape)
        t, d = input_shape
        return 2 * t * d * (4 * d + 2 * self.intermediate_dim) + 4 * t * t * d

    def initial_value(self, key, shape, rng, dtype):
        if key.endswith("_kernel"):
            return initializers.glorot_uniform(shape, rng, dtype)
        return (initializers.ones if key.endswith("_gamma") else initializers.zeros)(shape, rng, dtype)

    def _drop(self, x):
        return F.dropout(x, self.dropout, self._random()) if Config.train and self.dropout else x

    def _norm(self, x, part):
        p = self.params
        return F.layer_norm(x, p[f"{part}_norm_gamma"], p[f"{part}_norm_beta"], self.layer_norm_epsilon)

    def _attend(self, x, mask):
        p = self.params
        n, t, d = x.shape
        heads, size = self.num_heads, d // self.num_heads

        def split(part):  # (N, T, d) -> (N, heads, T, size)
            y = F.linear(x, p[f"{part}_kernel"], p[f"{part}_bias"])
            return F.transpose(F.reshape(y, (n, t, heads, size)), (0, 2, 1, 3))

        rate = self.dropout if Config.train else 0.0
        key_bias = None if mask is None else ((~mask).astype(x.dtype) * x.dtype.type(-MASKED))[:, None, None, :]
        y = F.attention(split("query"), split("key"), split("value"), rate, self._random() if rate else None,
                        key_bias=key_bias)
        y = F.reshape(F.transpose(y, (0, 2, 1, 3)), (n, t, d))
        return self._drop(F.linear(y, p["output_kernel"], p["output_bias"]))

    def _feed_forward(self, x):
        p = self.params
        name = activations.canonical(self.activation)
        fused = name if name in F.FUSABLE_ACTIVATIONS else "linear"
        y = F.linear(x, p["intermediate_kernel"], p["intermediate_bias"], fused)
        if fused != name:
            y = activations.apply(name, y)
        return self._drop(F.linear(y, p["feedforward_kernel"], p["feedforward_bias"]))

    def call(self, x, logits=False, mask=None):
        if self.normalize_first:
            x = x + self._attend(self._norm(x, "attention"), mask)
            return x + self._feed_forward(self._norm(x, "feedforward"))
        x = self._norm(x + self._attend(x, mask), "attention")
        return self._norm(x + self._feed_forward(x), "feedforward")


class _RNN(Layer):
    gates = 1
    reads_mask = True

    @property
    def masking(self):
        return "keep" if self.return_sequences else "read"

    def call(self, x, logits=False, mask=None):
        """With a padding mask: the output at each sequence's last step, or with return_sequences
        the outputs with zeros after it (as Keras gives them)."""
        if mask is None:
            return self._recur(x, self.return_sequences)
        lengths, sequence = _lengths(mask), self._recur(x, True)
        if not self.return_sequences:
            return _last_steps(sequence, lengths)
        within = _xp_of(lengths).arange(x.shape[1])[None, :] < lengths[:, None]
        return sequence * within.astype(sequence.dtype)[:, :, None]

    def _check(self, input_shape):
        if len(input_shape) != 2:
            raise _rank_error(self, "2 (timesteps, features)", input_shape)

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        if self.return_sequences:
            return (input_shape[0], self.units)
        return (self.units,)

    def weight_shapes(self, input_shape):
        self._check(input_shape)
        k = self.gates * self.units
        return {"kernel": (input_shape[-1], k), "recurrent_kernel": (self.units, k), "bias": self._bias_shape()}

    def _bias_shape(self):
        return (self.gates * self.units,)

    def count_flops(self, input_shape):
        self._check(input_shape)
        t, f = input_shape
        return 2 * t * (f + self.units) * self.gates * self.units

    def initial_value(self, key, shape, rng, dtype):
        if key == "kernel":
            return initializers.glorot_uniform(shape, rng, dtype)
        if key == "recurrent_kernel":
            return initializers.orthogonal(shape, rng, dtype)
        return initializers.zeros(shape, rng, dtype)

    def _weights(self):
        return self.params["kernel"], self.params["recurrent_kernel"], self.params["bias"]


class SimpleRNN(_RNN):
    args: ClassVar[dict] = {
        "units": Arg("int", low=1, high=MAX_UNITS),
        "activation": Arg("choice", "tanh", choices=("tanh", "relu", "sigmoid", "linear"), nullable=True),
        "return_sequences": Arg("bool", False),
    }

    def __init__(self, units, activation="tanh", return_sequences=False, name=None):
        super().__init__(name, units=units, activation=activation, return_sequences=return_sequences)

    def _recur(self, x, return_sequences):
        return F.simple_rnn(x, *self._weights(), activations.canonical(self.activation), return_sequences)


class LSTM(_RNN):
    gates = 4
    args: ClassVar[dict] = {"units": Arg("int", low=1, high=MAX_UNITS), "return_sequences": Arg("bool", False)}

    def __init__(self, units, return_sequences=False, name=None):
        super().__init__(name, units=units, return_sequences=return_sequences)

    def initial_value(self, key, shape, rng, dtype):
        value = super().initial_value(key, shape, rng, dtype)
        if key == "bias":  # Keras unit_forget_bias=True
            value[self.units:2 * self.units] = 1.0
        return value

    def _recur(self, x, return_sequences):
        return F.lstm(x, *self._weights(), return_sequences)


class GRU(_RNN):
    gates = 3
    args: ClassVar[dict] = {"units": Arg("int", low=1, high=MAX_UNITS), "return_sequences": Arg("bool", False)}

    def __init__(self, units, return_sequences=False, name=None):
        super().__init__(name, units=units, return_sequences=return_sequences)

    def _bias_shape(self):
        return (2, 3 * self.units)

    def _recur(self, x, return_sequences):
        return F.gru(x, *self._weights(), return_sequences)


class Bidirectional(Layer):
    """A recurrent layer run over the steps both ways, Keras' wrapper: ``layer`` reads them in order,
    a copy of it (its own weights) reads them reversed, and the two outputs merge by ``merge_mode``
    (with return_sequences the reversed one is put back in step order first)."""

    args: ClassVar[dict] = {
        "layer": Arg("recurrent_layer"),
        "merge_mode": Arg("choice", "concat", choices=("concat", "sum", "ave", "mul")),
    }

    def __init__(self, layer, merge_mode="concat", name=None):
        super().__init__(name, layer=layer, merge_mode=merge_mode)
        self.forward_layer = from_config(self.layer)
        self.backward_layer = from_config(self.layer)

    def compute_output_shape(self, input_shape):
        shape = self.forward_layer.compute_output_shape(input_shape)
        return (*shape[:-1], 2 * shape[-1]) if self.merge_mode == "concat" else shape

    def weight_shapes(self, input_shape):
        return {f"{side}_{key}": shape for side, layer in self._sides()
                for key, shape in layer.weight_shapes(input_shape).items()}

    def count_flops(self, input_shape):
        return 2 * self.forward_layer.count_flops(input_shape)

    def _sides(self):
        return (("forward", self.forward_layer), ("backward", self.backward_layer))

    def build(self, input_shape, rng=None, dtype=np.float32):
        rng = rng if rng is not None else np.random.default_rng()
        self.input_shape = tuple(input_shape)
        self.params = {}
        for side, layer in self._sides():
            layer.build(input_shape, rng, dtype)
            self.params.update({f"{side}_{key}": p for key, p in layer.params.items()})
        self.built = True

    reads_mask = True

    @property
    def masking(self):
        return self.forward_layer.masking

    def call(self, x, logits=False, mask=None):
        for side, layer in self._sides():  # the wrapper's params are the weights (what an optimizer or a test swaps)
            layer.params = {key: self.params[f"{side}_{key}"] for key in layer.params}
        forward = self.forward_layer.call(x, mask=mask)
        if mask is None:
            reverse = F.reverse_steps
        else:  # each text's words backwards, its padding still after them
            lengths = _lengths(mask)
            reverse = lambda steps: _reverse_within(steps, lengths)
        backward = self.backward_layer.call(reverse(x), mask=mask)
        if self.backward_layer.return_sequences:
            backward = reverse(backward)
        if self.merge_mode == "concat":
            return F.concat(forward, backward)
        if self.merge_mode == "sum":
            return forward + backward
        if self.merge_mode == "ave":
            return (forward + backward) * 0.5
        return forward * backward


LAYERS = {cls.__name__: cls for cls in (
    Dense, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, Conv1D,
    MaxPooling1D, AveragePooling1D, GlobalAveragePooling1D, GlobalMaxPooling1D, Flatten, Reshape, Dropout,
    BatchNormalization, LayerNormalization, Embedding, PositionEmbedding, TransformerEncoder, SimpleRNN, LSTM, GRU,
    Bidirectional, Activation, RandomFlip, RandomTranslation)}
RECURRENT = ("SimpleRNN", "LSTM", "GRU")
ALIASES = {"MaxPool2D": "MaxPooling2D", "AvgPool2D": "AveragePooling2D", "AveragePool2D": "AveragePooling2D",
           "GlobalAvgPool2D": "GlobalAveragePooling2D", "Convolution1D": "Conv1D", "MaxPool1D": "MaxPooling1D",
           "AvgPool1D": "AveragePooling1D", "AveragePool1D": "AveragePooling1D",
           "GlobalAvgPool1D": "GlobalAveragePooling1D", "GlobalMaxPool1D": "GlobalMaxPooling1D",
           "GlobalMaxPool2D": "GlobalMaxPooling2D"}

MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
MaxPool1D = MaxPooling1D
AvgPool1D = AveragePooling1D


def get(name):
    """The layer class for a type name (Keras spelling; a few Keras aliases accepted)."""
    return LAYERS.get(ALIASES.get(name, name)) if isinstance(name, str) else None


def from_config(config):
    cls = get(config.get("type"))
    if cls is None:
        raise ValueError(f"Unknown layer type: {config.get('type')!r}")
    return cls.from_config(config)
