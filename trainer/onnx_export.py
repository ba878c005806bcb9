"""Export a trained Sequential model to ONNX, for serving it outside Cupola.

    export_onnx(model, "model.onnx", input_shape=(28, 28, 1))

The graph takes one float32 input "input" shaped (batch, *input_shape), channels last as the
engine, and returns "output" exactly as `model.predict` does (softmax/sigmoid included), for
inference: Dropout and the augmentation layers (RandomFlip, RandomTranslation) are left out and
BatchNormalization uses its moving statistics.
Convolutions and pooling run in ONNX's channels-first layout inside the graph; the exporter
transposes at the boundaries, so callers never see it.

Supported layers: Dense, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
GlobalMaxPooling2D, Conv1D, MaxPooling1D, AveragePooling1D, GlobalAveragePooling1D,
GlobalMaxPooling1D, Flatten, Reshape, Dropout, Activation, BatchNormalization, LayerNormalization,
Embedding (with mask_zero too), SimpleRNN, LSTM, GRU, Bidirectional, RandomFlip, RandomTranslation;
activations linear, relu, sigmoid, tanh, softmax, leaky_relu, elu, gelu.
An Embedding's padding mask becomes a (batch, steps) tensor in the graph: the global poolings
average or take the maximum over the steps it keeps, attention leaves the padded keys out and the
recurrent layers read each sequence's length (ONNX's ``sequence_lens``).

`onnx` is needed to export and `onnxruntime` to verify (`verify_onnx`); both are optional
dependencies imported only when these functions are called.
"""

import math

import numpy as np

from trainer import backend
from trainer.layers import MASKED

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5

__all__ = ["OPSET", "export_onnx", "to_onnx_model", "verify_onnx"]


class OnnxExportError(ValueError):
    """The model holds a layer or setting the exporter cannot express."""


def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'cupola[onnx]' (or pip install onnx)") from None
    return onnx


def _weights(layer):
    return {key: backend.to_host(value).astype(np.float32) for key, value in layer.weight_items()}


class _GraphBuilder:
    """Accumulates nodes and initializers; tracks whether the current tensor is channels first."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.helper = onnx.helper
        self.nodes, self.initializers = [], []
        self.counter = 0
        self.channels_first = False  # only ever True for 4-D tensors between conv/pool layers
        self.mask = None             # the padding mask (N, T), 1.0 at the steps kept, after Embedding(mask_zero)

    def name(self, hint):
        self.counter += 1
        return f"{hint}_{self.counter}"

    def constant(self, hint, array):
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, hint=None, **attributes):
        output = self.name(hint or op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=self.name(op), **attributes))
        return output

    def axes(self, *axes):
        return self.constant("axes", np.array(axes, dtype=np.int64))

    def mask_steps(self):
        """The mask as (N, T, 1), to multiply (N, T, C) with."""
        return self.node("Unsqueeze", [self.mask, self.axes(2)])

    def mask_counts(self):
        """How many steps each sequence keeps, (N, 1)."""
        return self.node("ReduceSum", [self.mask, self.axes(1)], keepdims=1)

    def mask_lengths(self, steps):
        """Each sequence's length, (N,): its steps up to its last one kept (the engine's ``_lengths``)."""
        positions = self.constant("positions", np.arange(1, steps + 1, dtype=np.float32))
        return self.node("ReduceMax", [self.node("Mul", [self.mask, positions])], axes=[1], keepdims=0)

    def to_channels_first(self, x, rank):
        if rank == 4 and not self.channels_first:
            self.channels_first = True
            return self.node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
        return x

    def to_channels_last(self, x, rank):
        if rank == 4 and self.channels_first:
            self.channels_first = False
            return self.node("Transpose", [x], "nhwc", perm=[0, 2, 3, 1])
        return x


def _activation(graph, x, name, rank):
    if name in (None, "linear"):
        return x
    if name == "relu":
        return graph.node("Relu", [x])
    if name == "sigmoid":
        return graph.node("Sigmoid", [x])
    if name == "tanh":
        return graph.node("Tanh", [x])
    if name == "softmax":
        axis = 1 if (rank == 4 and graph.channels_first) else -1
        return graph.node("Softmax", [x], axis=axis)
    if name == "leaky_relu":
        return graph.node("LeakyRelu", [x], alpha=0.2)  # the engine's and Keras' default slope
    if name == "elu":
        return graph.node("Elu", [x], alpha=1.0)
    if name == "gelu":  # exact GELU: x * 0.5 * (1 + erf(x / sqrt 2)); the Gelu op needs opset 20
        scaled = graph.node("Mul", [x, graph.constant("inv_sqrt2", np.float32(1 / math.sqrt(2)))])
        erf = graph.node("Erf", [scaled])
        one_plus = graph.node("Add", [erf, graph.constant("one", np.float32(1.0))])
        half_x = graph.node("Mul", [x, graph.constant("half", np.float32(0.5))])
        return graph.node("Mul", [half_x, one_plus])
    raise OnnxExportError(f"export_onnx: activation {name!r} is not supported")


def _same_pads(size, kernel, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _window_pads(layer, input_shape, window, strides):
    if layer.padding != "same":
        return [0, 0, 0, 0]
    (top, bottom), (left, right) = (_same_pads(input_shape[0], window[0], strides[0]),
                                    _same_pads(input_shape[1], window[1], strides[1]))
    return [top, left, bottom, right]


def _export_dense(graph, layer, x, shape):
    w = _weights(layer)
    x = graph.to_channels_last(x, len(shape) + 1)
    y = graph.node("MatMul", [x, graph.constant("kernel", w["kernel"])])
    if "bias" in w:
        y = graph.node("Add", [y, graph.constant("bias", w["bias"])])
    return _activation(graph, y, layer.activation, len(shape) + 1)


def _export_conv2d(graph, layer, x, shape):
    w = _weights(layer)
    x = graph.to_channels_first(x, 4)
    kernel = np.ascontiguousarray(w["kernel"].transpose(3, 2, 0, 1))  # (kh, kw, in, out) -> (out, in, kh, kw)
    inputs = [x, graph.constant("kernel", kernel)]
    if "bias" in w:
        inputs.append(graph.constant("bias", w["bias"]))
    y = graph.node("Conv", inputs, kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                   pads=_window_pads(layer, shape, layer.kernel_size, layer.strides))
    return _activation(graph, y, layer.activation, 4)


def _export_pool(op):
    def export(graph, layer, x, shape):
        x = graph.to_channels_first(x, 4)
        strides = list(layer.strides or layer.pool_size)
        attributes = {"kernel_shape": list(layer.pool_size), "strides": strides,
                      "pads": _window_pads(layer, shape, layer.pool_size, strides)}
        if op == "AveragePool":
            attributes["count_include_pad"] = 0  # padded cells are not counted, as the engine does
        return graph.node(op, [x], **attributes)

    return export


def _export_global_pool(op):
    def export(graph, layer, x, shape):
        x = graph.to_channels_first(x, 4)
        pooled = graph.node(op, [x])  # (N, C, 1, 1)
        graph.channels_first = False
        return graph.node("Flatten", [pooled], axis=1)

    return export


def _steps_pads(layer, steps, window, stride):
    return list(_same_pads(steps, window, stride)) if layer.padding == "same" else [0, 0]


def _along_steps(graph, x, op, **attributes):
    """A 1-D ONNX op on (N, steps, C): transposed to (N, C, steps) for it and back."""
    inputs = [graph.node("Transpose", [x[0]], "ncw", perm=[0, 2, 1]), *x[1:]]
    y = graph.node(op, inputs, **attributes)
    return graph.node("Transpose", [y], "nwc", perm=[0, 2, 1])


def _export_conv1d(graph, layer, x, shape):
    w = _weights(layer)
    kernel = np.ascontiguousarray(w["kernel"].transpose(2, 1, 0))  # (k, in, out) -> (out, in, k)
    inputs = [x, graph.constant("kernel", kernel)]
    if "bias" in w:
        inputs.append(graph.constant("bias", w["bias"]))
    y = _along_steps(graph, inputs, "Conv", kernel_shape=[layer.kernel_size], strides=[layer.strides],
                     pads=_steps_pads(layer, shape[0], layer.kernel_size, layer.strides))
    return _activation(graph, y, layer.activation, 3)


def _export_pool1d(op):
    def export(graph, layer, x, shape):
        stride = layer.strides or layer.pool_size
        attributes = {"kernel_shape": [layer.pool_size], "strides": [stride],
                      "pads": _steps_pads(layer, shape[0], layer.pool_size, stride)}
        if op == "AveragePool":
            attributes["count_include_pad"] = 0
        return _along_steps(graph, [x], op, **attributes)

    return export


def _export_reduce_steps(op):
    def export(graph, layer, x, shape):
        return graph.node(op, [x], axes=[1], keepdims=0)  # opset 17: axes is an attribute

    return export


def _export_global_average_pooling1d(graph, layer, x, shape):
    if graph.mask is None:
        return _export_reduce_steps("ReduceMean")(graph, layer, x, shape)
    total = graph.node("ReduceSum", [graph.node("Mul", [x, graph.mask_steps()]), graph.axes(1)], keepdims=0)
    return graph.node("Div", [total, graph.node("Max", [graph.mask_counts(), graph.constant("one", np.float32(1.0))])])


def _export_global_max_pooling1d(graph, layer, x, shape):
    if graph.mask is None:
        return _export_reduce_steps("ReduceMax")(graph, layer, x, shape)
    dropped = graph.node("Sub", [graph.constant("one", np.float32(1.0)), graph.mask_steps()])
    padding = graph.node("Mul", [dropped, graph.constant("masked", np.float32(-MASKED))])
    pooled = graph.node("ReduceMax", [graph.node("Add", [x, padding])], axes=[1], keepdims=0)
    return graph.node("Mul", [pooled, _any_kept(graph)])


def _any_kept(graph):
    """1.0 for the sequences with a step kept, 0.0 for the empty ones, (N, 1)."""
    kept = graph.node("Greater", [graph.mask_counts(), graph.constant("zero", np.float32(0.0))])
    return graph.node("Cast", [kept], to=graph.onnx.TensorProto.FLOAT)


def _export_flatten(graph, layer, x, shape):
    x = graph.to_channels_last(x, len(shape) + 1)  # flatten in the engine's (H, W, C) order
    return graph.node("Flatten", [x], axis=1)


def _export_reshape(graph, layer, x, shape):
    x = graph.to_channels_last(x, len(shape) + 1)
    target = [-1, *layer.compute_output_shape(shape)]
    return graph.node("Reshape", [x, graph.constant("shape", np.array(target, dtype=np.int64))])


def _export_identity(graph, layer, x, shape):
    return x


def _export_activation(graph, layer, x, shape):
    return _activation(graph, x, layer.activation, len(shape) + 1)


def _export_batch_normalization(graph, layer, x, shape):
    # Inference form as one affine map on the last (channel) axis: x * a + b.
    w = _weights(layer)
    a = w["gamma"] / np.sqrt(w["moving_variance"] + np.float32(layer.epsilon))
    b = w["beta"] - w["moving_mean"] * a
    if len(shape) == 3 and graph.channels_first:
        a, b = a.reshape(-1, 1, 1), b.reshape(-1, 1, 1)
    y = graph.node("Mul", [x, graph.constant("bn_scale", a.astype(np.float32))])
    return graph.node("Add", [y, graph.constant("bn_shift", b.astype(np.float32))])


def _export_layer_normalization(graph, layer, x, shape):
    w = _weights(layer)
    x = graph.to_channels_last(x, len(shape) + 1)
    return graph.node("LayerNormalization", [x, graph.constant("gamma", w["gamma"]), graph.constant("beta", w["beta"])],
                      axis=-1, epsilon=float(layer.epsilon))


def _export_embedding(graph, layer, x, shape):
    w = _weights(layer)
    indices = graph.node("Cast", [x], to=graph.onnx.TensorProto.INT64)
    if layer.mask_zero:
        padded = graph.node("Equal", [indices, graph.constant("zero", np.int64(0))])
        graph.mask = graph.node("Cast", [graph.node("Not", [padded])], to=graph.onnx.TensorProto.FLOAT)
    return graph.node("Gather", [graph.constant("embeddings", w["embeddings"]), indices], axis=0)


def _export_position_embedding(graph, layer, x, shape):
    steps = shape[0]
    return graph.node("Add", [x, graph.constant("positions", _weights(layer)["embeddings"][:steps])])


def _export_transformer_encoder(graph, layer, x, shape):
    w = _weights(layer)
    steps, width = shape
    heads, size = layer.num_heads, width // layer.num_heads

    def dense(y, part):
        y = graph.node("MatMul", [y, graph.constant(f"{part}_kernel", w[f"{part}_kernel"])])
        return graph.node("Add", [y, graph.constant(f"{part}_bias", w[f"{part}_bias"])])

    def norm(y, part):
        scale, shift = graph.constant("gamma", w[f"{part}_norm_gamma"]), graph.constant("beta", w[f"{part}_norm_beta"])
        return graph.node("LayerNormalization", [y, scale, shift], axis=-1, epsilon=float(layer.layer_norm_epsilon))

    def split(y, part):  # (N, T, width) -> (N, heads, T, size); a 0 in Reshape's shape keeps the batch axis
        y = graph.node("Reshape", [dense(y, part), graph.constant("heads", np.array([0, steps, heads, size], dtype=np.int64))])
        return graph.node("Transpose", [y], perm=[0, 2, 1, 3])

    def attend(y):
        keys = graph.node("Transpose", [split(y, "key")], perm=[0, 1, 3, 2])
        scores = graph.node("MatMul", [split(y, "query"), keys])
        scores = graph.node("Mul", [scores, graph.constant("scale", np.float32(1 / math.sqrt(size)))])
        if graph.mask is not None:  # (N, T) -> (N, 1, 1, T): the padded keys left out
            dropped = graph.node("Sub", [graph.constant("one", np.float32(1.0)), graph.mask])
            bias = graph.node("Mul", [dropped, graph.constant("masked", np.float32(-MASKED))])
            scores = graph.node("Add", [scores, graph.node("Unsqueeze", [bias, graph.axes(1, 2)])])
        y = graph.node("MatMul", [graph.node("Softmax", [scores], axis=-1), split(y, "value")])
        y = graph.node("Transpose", [y], perm=[0, 2, 1, 3])
        return dense(graph.node("Reshape", [y, graph.constant("merged", np.array([0, steps, width], dtype=np.int64))]), "output")

    def feed_forward(y):
        return dense(_activation(graph, dense(y, "intermediate"), layer.activation, 3), "feedforward")

    if layer.normalize_first:
        x = graph.node("Add", [x, attend(norm(x, "attention"))])
        return graph.node("Add", [x, feed_forward(norm(x, "feedforward"))])
    x = norm(graph.node("Add", [x, attend(x)]), "attention")
    return norm(graph.node("Add", [x, feed_forward(x)]), "feedforward")


def _gate_blocks(matrix, units, order):
    """The gate blocks on the last axis of a Keras weight, put in ONNX's gate order."""
    blocks = [matrix[..., k * units:(k + 1) * units] for k in order]
    return np.concatenate(blocks, axis=-1)


def _onnx_rnn_weights(layer, gates):
    """ONNX's W (G*H, F), R (G*H, H) and B (2*G*H) of one direction, from a Keras-layout layer."""
    w = _weights(layer)
    units = layer.units
    kernel = _gate_blocks(w["kernel"], units, gates).T
    recurrent = _gate_blocks(w["recurrent_kernel"], units, gates).T
    bias = w["bias"]
    if bias.ndim == 2:  # GRU reset_after: rows are the input and the recurrent bias
        input_bias, recurrent_bias = bias[0], bias[1]
    else:
        input_bias, recurrent_bias = bias, np.zeros_like(bias)
    bias = np.concatenate([_gate_blocks(input_bias, units, gates), _gate_blocks(recurrent_bias, units, gates)])
    return kernel, recurrent, bias


def _recurrent_node(graph, op, gates, directions, x):
    """One ONNX RNN/LSTM/GRU node over (N, T, F) for one or two directions (forward, then
    reversed); returns its Y (T, D, N, H) and Y_h (D, N, H). Under a padding mask it reads each
    sequence's length (at least 1: an empty one's output is zeroed after)."""
    layer = directions[0]
    w, r, b = (np.ascontiguousarray(np.stack(parts)) for parts in
               zip(*(_onnx_rnn_weights(d, gates) for d in directions)))
    attributes = {"hidden_size": layer.units}
    if len(directions) == 2:
        attributes["direction"] = "bidirectional"
    if op == "GRU":
        attributes["linear_before_reset"] = 1  # Keras reset_after=True
    if op == "RNN":
        activation = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}.get(layer.activation)
        if activation is None:
            raise OnnxExportError(f"export_onnx: SimpleRNN activation {layer.activation!r} is not supported")
        attributes["activations"] = [activation] * len(directions)
    time_major = graph.node("Transpose", [x], "time_major", perm=[1, 0, 2])  # (N, T, F) -> (T, N, F)
    inputs = [time_major, graph.constant("W", w), graph.constant("R", r), graph.constant("B", b)]
    if graph.mask is not None:
        lengths = graph.node("Max", [graph.mask_lengths(layer.input_shape[0]), graph.constant("one", np.float32(1.0))])
        inputs.append(graph.node("Cast", [lengths], to=graph.onnx.TensorProto.INT32))
    names = [graph.name("Y"), graph.name("Y_h")]
    graph.nodes.append(graph.helper.make_node(op, inputs, names, name=graph.name(op), **attributes))
    return names


def _direction(graph, y, y_h, index, sequences):
    """Direction ``index`` of a node's output as the engine shapes it: (N, T, H) or (N, H)."""
    axis = graph.constant("axis", np.array([index], dtype=np.int64))
    if sequences:
        picked = graph.node("Gather", [y, axis], axis=1)  # (T, 1, N, H)
        sequence = graph.node("Squeeze", [picked, graph.constant("axis", np.array([1], dtype=np.int64))])
        return graph.node("Transpose", [sequence], perm=[1, 0, 2])  # (T, N, H) -> (N, T, H)
    picked = graph.node("Gather", [y_h, axis], axis=0)  # (1, N, H)
    last = graph.node("Squeeze", [picked, graph.constant("axis", np.array([0], dtype=np.int64))])
    return last if graph.mask is None else graph.node("Mul", [last, _any_kept(graph)])


def _export_recurrent(op, keras_to_onnx_gates):
    def export(graph, layer, x, shape):
        y, y_h = _recurrent_node(graph, op, keras_to_onnx_gates, [layer], x)
        return _direction(graph, y, y_h, 0, layer.return_sequences)

    return export


RECURRENT_OPS = {  # Keras gate orders: LSTM (i, f, c, o), GRU (z, r, h); ONNX: LSTM (i, o, f, c), GRU (z, r, h).
    "SimpleRNN": ("RNN", [0]), "LSTM": ("LSTM", [0, 3, 1, 2]), "GRU": ("GRU", [0, 1, 2])}


def _export_bidirectional(graph, layer, x, shape):
    op, gates = RECURRENT_OPS[type(layer.forward_layer).__name__]
    sequences = layer.forward_layer.return_sequences
    y, y_h = _recurrent_node(graph, op, gates, [layer.forward_layer, layer.backward_layer], x)
    forward, backward = (_direction(graph, y, y_h, i, sequences) for i in (0, 1))
    if layer.merge_mode == "concat":
        return graph.node("Concat", [forward, backward], axis=-1)
    if layer.merge_mode == "mul":
        return graph.node("Mul", [forward, backward])
    total = graph.node("Add", [forward, backward])
    return total if layer.merge_mode == "sum" else graph.node("Mul", [total, graph.constant("half", np.float32(0.5))])


EXPORTERS = {
    "Dense": _export_dense,
    "Conv2D": _export_conv2d,
    "MaxPooling2D": _export_pool("MaxPool"),
    "AveragePooling2D": _export_pool("AveragePool"),
    "GlobalAveragePooling2D": _export_global_pool("GlobalAveragePool"),
    "GlobalMaxPooling2D": _export_global_pool("GlobalMaxPool"),
    "Conv1D": _export_conv1d,
    "MaxPooling1D": _export_pool1d("MaxPool"),
    "AveragePooling1D": _export_pool1d("AveragePool"),
    "GlobalAveragePooling1D": _export_global_average_pooling1d,
    "GlobalMaxPooling1D": _export_global_max_pooling1d,
    "Flatten": _export_flatten,
    "Reshape": _export_reshape,
    "Dropout": _export_identity,
    "RandomFlip": _export_identity,  # training only
    "RandomTranslation": _export_identity,
    "Activation": _export_activation,
    "BatchNormalization": _export_batch_normalization,
    "LayerNormalization": _export_layer_normalization,
    "Embedding": _export_embedding,
    "PositionEmbedding": _export_position_embedding,
    "TransformerEncoder": _export_transformer_encoder,
    **{name: _export_recurrent(*spec) for name, spec in RECURRENT_OPS.items()},
    "Bidirectional": _export_bidirectional,
}


def _check_input_shape(input_shape):
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"export_onnx: input_shape must be a tuple of positive integers. "
                         f"Received: input_shape={input_shape!r}") from None
    if not shape or any(v < 1 for v in shape):
        raise ValueError(f"export_onnx: input_shape must be a tuple of positive integers (without the batch "
                         f"axis). Received: input_shape={input_shape!r}")
    return shape


def _ensure_built(model, input_shape):
    if getattr(model, "built", False) and all(layer.built for layer in model.layers):
        built_for = getattr(model, "input_shape", None)
        if built_for is not None and tuple(built_for) != tuple(input_shape):
            raise ValueError(f"export_onnx: the model was built for inputs {tuple(built_for)}. "
                             f"Received: input_shape={tuple(input_shape)}")
        return
    model.build(input_shape)  # weights are created lazily; an untrained model exports its initial ones


def to_onnx_model(model, input_shape, *, opset=OPSET, name="cupola_model"):
    """The ONNX ModelProto for a Sequential `model` taking inputs shaped (batch, *input_shape)."""
    onnx = _require_onnx()
    input_shape = _check_input_shape(input_shape)
    layers = list(model.layers)
    if not layers:
        raise OnnxExportError("export_onnx: the model has no layers")
    for index, layer in enumerate(layers):
        if type(layer).__name__ not in EXPORTERS:
            raise OnnxExportError(f"export_onnx: layer {index} ({type(layer).__name__}) is not supported; "
                                  f"supported layers: {sorted(EXPORTERS)}")
    _ensure_built(model, input_shape)

    graph = _GraphBuilder(onnx)
    x, shape = INPUT_NAME, input_shape
    for layer in layers:
        x = EXPORTERS[type(layer).__name__](graph, layer, x, shape)
        shape = tuple(layer.compute_output_shape(shape))
        if not layer.output_masked(graph.mask is not None):
            graph.mask = None
    x = graph.to_channels_last(x, len(shape) + 1)
    graph.nodes.append(onnx.helper.make_node("Identity", [x], [OUTPUT_NAME], name="output_identity"))

    float32 = onnx.TensorProto.FLOAT
    inputs = [onnx.helper.make_tensor_value_info(INPUT_NAME, float32, ["batch", *input_shape])]
    outputs = [onnx.helper.make_tensor_value_info(OUTPUT_NAME, float32, ["batch", *shape])]
    onnx_graph = onnx.helper.make_graph(graph.nodes, name, inputs, outputs, graph.initializers)
    proto = onnx.helper.make_model(onnx_graph, producer_name="cupola",
                                   opset_imports=[onnx.helper.make_opsetid("", opset)])
    proto.ir_version = min(proto.ir_version, 8)  # readable by onnxruntime releases from 1.14 on
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model, path, input_shape, *, opset=OPSET):
    """Write `model` as an ONNX file at `path`; returns the path. input_shape excludes the batch
    axis, e.g. (28, 28, 1) for images or (10, 1) for 10 time steps of one feature."""
    onnx = _require_onnx()
    proto = to_onnx_model(model, input_shape, opset=opset)
    onnx.save_model(proto, str(path))
    return path


def verify_onnx(model, path, x, *, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL):
    """Run the exported file with onnxruntime on `x` and compare with `model.predict(x)`.

    Returns the largest absolute difference; raises AssertionError when any element is off by
    more than atol + rtol * |expected| (float32 arithmetic in a different order than the engine's:
    the defaults allow about 1e-4 relative)."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("verify_onnx needs onnxruntime: pip install 'cupola[onnx]'") from None
    x = np.asarray(x, dtype=np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    expected = backend.to_host(model.predict(x)).astype(np.float32)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)
    return float(np.max(np.abs(got - expected))) if got.size else 0.0
