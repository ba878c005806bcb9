"""The GPU path's fused kernels, checked on the CPU.

Where CuPy has no device, ``backend.elementwise_kernel`` is replaced by an emulator that runs a
kernel's body element by element in Python: the C statements the kernels use (declarations,
assignments, ``? :``, ``(T)`` casts, integer division for ``int``) translated line by line. The
engine's GPU code paths (fused optimizer updates, bias + activation, the LSTM step) then run on
NumPy arrays and must equal the NumPy path. On a GPU machine the same functions run the real
kernels through the xp-parametrised tests.
"""
import ctypes
import ctypes.util
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from trainer import Sequential, backend, layers, optimizers
from trainer import functions as F
from trainer.core import Parameter, Variable

_DECLARATION = re.compile(r"^(?:const\s+)?(int|long|T)\s+(.*)$")
_TERNARY = re.compile(r"^(.+?)\s*\?\s*(.+?)\s*:\s*(.+)$")
_ASSIGNMENT = re.compile(r"^(.+?)\s*([+\-*/]?=)\s*(.+)$")
_FOR = re.compile(r"^for\s*\(\s*int\s+(\w+)\s*=\s*(.+?);\s*\1\s*<\s*(.+?);\s*\1\+\+\s*\)$")
_IF_CONTINUE = re.compile(r"^if\s*\((.*)\)\s*continue$")


def _tokens(operation):
    """Statements (split at ';' outside parentheses) and braces, in order."""
    tokens, current, depth = [], "", 0
    for char in operation:
        if char in "{}" and depth == 0:
            tokens += [current.strip(), char]
            current = ""
        elif char == ";" and depth == 0:
            tokens.append(current.strip())
            current = ""
        else:
            depth += (char == "(") - (char == ")")
            current += char
    return [t for t in [*tokens, current.strip()] if t]


def _expression(text, integer=False):
    text = re.sub(r"\((?:T|int|long)\)", "", text).replace("||", " or ").replace("&&", " and ")
    ternary = _TERNARY.match(text)
    if ternary:
        text = f"(({ternary.group(2)}) if ({ternary.group(1)}) else ({ternary.group(3)}))"
    return text.replace("/", "//") if integer else text


def _python(operation):
    """The kernel body as Python (the C subset the engine's kernels are written in: declarations,
    assignments, ``? :``, casts, ``for (int v = a; v < b; v++) {...}``, ``if (...) continue;``;
    ``/`` is integer division in int and long declarations and in loop bounds and skip conditions,
    whose operands are never negative there)."""
    lines, indent = [], 0
    for token in _tokens(operation):
        pad = "    " * indent
        loop, skip = _FOR.match(token), _IF_CONTINUE.match(token)
        if token == "{":
            indent += 1
        elif token == "}":
            indent -= 1
        elif loop:
            lines.append(f"{pad}for {loop.group(1)} in range({_expression(loop.group(2), True)}, "
                         f"{_expression(loop.group(3), True)}):")
        elif skip:
            lines.append(f"{pad}if {_expression(skip.group(1), True)}: continue")
        else:
            declaration = _DECLARATION.match(token)
            integer = bool(declaration) and declaration.group(1) in ("int", "long")
            parts = [p.strip() for p in declaration.group(2).split(",")] if declaration else [token]
            for part in parts:
                target, op, value = _ASSIGNMENT.match(part).groups()
                lines.append(f"{pad}{target} {op} {_expression(value, integer)}")
    return compile("\n".join(lines), "<kernel>", "exec")


def _params(text):
    """[(name, raw, type)] of a kernel's parameter list."""
    params = []
    for words in (p.split() for p in text.split(",") if p.strip()):
        params.append((words[-1], words[0] == "raw", words[-2]))
    return params


class EmulatedKernel:
    """Calls like cupy.ElementwiseKernel: inputs, then outputs (allocated when left out)."""

    def __init__(self, in_params, out_params, operation):
        self.ins, self.outs = _params(in_params), _params(out_params)
        self.code = _python(operation)

    def __call__(self, *args):
        ins, outs = args[:len(self.ins)], list(args[len(self.ins):])
        arrays = [a for a, (_, raw, _) in zip(ins, self.ins) if isinstance(a, np.ndarray) and not raw]
        given = [o for o, (_, raw, _) in zip(outs, self.outs) if not raw]
        shape = np.broadcast_shapes(*(a.shape for a in arrays + given))
        for _, _, kind in self.outs[len(outs):]:  # outputs left out are made, as CuPy does
            outs.append(np.empty(shape, dtype=np.bool_ if kind == "bool" else arrays[0].dtype))
        env = {"tanh": np.tanh, "sqrt": np.sqrt, "exp": np.exp, "log": np.log, "max": np.maximum}
        elements, results = {}, {}
        for value, (name, raw, _) in zip(ins, self.ins):
            if raw:
                env[name] = value.reshape(-1)
            elif isinstance(value, np.ndarray):
                elements[name] = np.broadcast_to(value, shape)
            else:
                env[name] = value
        for value, (name, raw, _) in zip(outs, self.outs):
            if raw:
                assert value.flags.c_contiguous, f"raw output {name} must be contiguous"
                env[name] = value.reshape(-1)
            else:
                results[name] = value  # any strides: written element by element
        for i in range(int(np.prod(shape))):
            index = np.unravel_index(i, shape)
            env["i"] = i
            for name, values in {**elements, **results}.items():
                env[name] = values[index]
            exec(self.code, env)  # noqa: S102 - the engine's own kernel bodies, never input
            for name, values in results.items():
                values[index] = env[name]
        return outs[0] if len(outs) == 1 else tuple(outs)


def _load_nvrtc():
    """NVRTC, CUDA's run-time compiler (the nvidia-cuda-nvrtc wheel of the dev extra), or None."""
    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
    candidates = [p for root in roots for p in sorted(Path(root).glob("*/lib/libnvrtc.so*"))]
    for candidate in [*candidates, ctypes.util.find_library("nvrtc")]:
        try:
            return ctypes.CDLL(str(candidate)) if candidate else None
        except OSError:
            continue
    return None


_NVRTC = _load_nvrtc()
_C_TYPES = {"T": "T", "int32": "int", "int64": "long long", "bool": "bool", "float32": "float", "float64": "double"}
_RAW = ("template <typename U> struct Raw {  // CuPy's CArray, as far as the kernels use it\n"
        "  U *p; long long n;\n"
        "  __device__ U &operator[](long long k) const { return p[k]; }\n"
        "  __device__ long long size() const { return n; }\n};\n")


def cuda_source(name, in_params, out_params, operation, dtype):
    """The kernel as CuPy's ElementwiseKernel writes it: a grid-stride loop over ``i``, each non-raw
    argument bound to its element by reference (inputs const), raw ones indexable as a whole."""
    params, bindings = [], []
    for text, const in ((in_params, "const "), (out_params, "")):
        for pname, raw, kind in _params(text):
            ctype = _C_TYPES[kind]
            if raw:
                params.append(f"Raw<{ctype}> {pname}")
            else:
                params.append(f"{const}{ctype} *_raw_{pname}")
                bindings.append(f"{const}{ctype} &{pname} = _raw_{pname}[i];")
    return (f"typedef {dtype} T;\n{_RAW}extern \"C\" __global__ void {name}({', '.join([*params, 'long long _n'])}) {{\n"
            "  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < _n;"
            " i += (long long)blockDim.x * gridDim.x) {\n"
            f"    {' '.join(bindings)}\n    {operation};\n  }}\n}}\n")


def nvrtc_errors(source, name):
    """NVRTC's log when ``source`` does not compile for sm_90 (Hopper), else None."""
    program = ctypes.c_void_p()
    assert _NVRTC.nvrtcCreateProgram(ctypes.byref(program), source.encode(), f"{name}.cu".encode(), 0, None, None) == 0
    options = (ctypes.c_char_p * 2)(b"--gpu-architecture=compute_90", b"--std=c++17")
    status = _NVRTC.nvrtcCompileProgram(program, 2, options)
    size = ctypes.c_size_t()
    _NVRTC.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    _NVRTC.nvrtcGetProgramLog(program, log)
    _NVRTC.nvrtcDestroyProgram(ctypes.byref(program))
    return None if status == 0 else log.value.decode(errors="replace")


_COMPILED = set()


def compiled_check(name, in_params, out_params, operation):
    """Compile a kernel once for float and double with NVRTC (where it is installed): the emulator
    checks what a kernel computes, this that CUDA accepts it, before any GPU machine sees it."""
    key = (name, in_params, out_params, operation)
    if _NVRTC is None or key in _COMPILED:
        return
    for dtype in ("float", "double"):
        errors = nvrtc_errors(cuda_source(name, in_params, out_params, operation, dtype), name)
        if errors:
            pytest.fail(f"the kernel {name} does not compile for T={dtype}:\n{errors}")
    _COMPILED.add(key)


def _emulated(name, in_params, out_params, operation):
    compiled_check(name, in_params, out_params, operation)
    return EmulatedKernel(in_params, out_params, operation)


@pytest.fixture(name="emulated")
def emulated_kernels(monkeypatch):
    monkeypatch.setattr(backend, "elementwise_kernel", _emulated)


@pytest.mark.skipif(_NVRTC is None, reason="NVRTC (pip install nvidia-cuda-nvrtc) is not installed")
def test_nvrtc_compiles_a_kernel_and_names_the_line_of_a_broken_one():
    assert nvrtc_errors(cuda_source("ok", "T x, raw T table, int32 H", "T y", "y = x * table[i % H];", "float"),
                        "ok") is None
    errors = nvrtc_errors(cuda_source("broken", "T x", "T y", "y = x * undefined_name;", "float"), "broken")
    assert errors and "undefined_name" in errors
    assert nvrtc_errors(cuda_source("writes_input", "T x", "T y", "x = 1; y = x;", "float"), "writes_input")


def test_the_emulator_runs_loops_and_skips_like_a_kernel():
    kernel = EmulatedKernel("T x, int32 K", "T y",
                            "T acc = 0; for (int k = 0; k < K; k++) { if (k % 2 != 0 || k == 0) continue; "
                            "const long twice = (long)k * 2 / 2; acc += x * twice; } y = acc;")
    np.testing.assert_array_equal(kernel(np.array([1.0, 3.0]), np.int32(5)), [6.0, 18.0])  # k = 2, 4


def test_the_emulator_runs_c_statements_like_a_kernel():
    kernel = EmulatedKernel("T x, raw T table, int32 H", "T y, T z",
                            "const int k = i / H; T s = (T)2 * x; y = s > table[k] ? s : (T)0; z += x;")
    x = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    y, z = kernel(x, np.array([1.0, 7.0], dtype=np.float32), np.int32(2), np.empty(4, np.float32), np.ones(4, np.float32))
    np.testing.assert_array_equal(y, [2.0, 4.0, 0.0, 8.0])
    np.testing.assert_array_equal(z, [2.0, 3.0, 4.0, 5.0])


OPTIMIZERS = {
    "sgd": lambda: optimizers.SGD(0.1), "momentum": lambda: optimizers.SGD(0.1, momentum=0.9),
    "nesterov": lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True), "adam": lambda: optimizers.Adam(0.01),
    "adamw": lambda: optimizers.AdamW(0.01, weight_decay=0.1), "rmsprop": lambda: optimizers.RMSprop(0.01),
    "adagrad": lambda: optimizers.Adagrad(0.01),
}


def _train_params(make, fused):
    rng = np.random.default_rng(0)
    params = [Parameter(rng.normal(size=(3, 2)).astype(np.float32)), Parameter(rng.normal(size=4).astype(np.float32))]
    opt = make()
    opt.build(params)
    if fused:  # the GPU branch of each update, on NumPy arrays
        update = type(opt).update
        opt.update = lambda w, g, lr, xp: update(opt, w, g, lr, _NotNumpy)
    for step in range(3):
        grads = np.random.default_rng(step + 1)
        for p in params:
            p.grad = grads.normal(size=p.shape).astype(np.float32)
        opt.step()
    return [p.data.copy() for p in params]


class _NumpyUnderAnotherName:
    """Stands for CuPy's module: NumPy's functions, but ``xp is not np``, so the GPU branches run."""

    def __getattr__(self, name):
        return getattr(np, name)


_NotNumpy = _NumpyUnderAnotherName()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_fused_optimizer_update_equals_the_numpy_path(emulated, name):
    for fused, plain in zip(_train_params(OPTIMIZERS[name], True), _train_params(OPTIMIZERS[name], False)):
        np.testing.assert_allclose(fused, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
def test_the_fused_bias_activation_and_its_gradient_equal_the_numpy_path(emulated, monkeypatch, activation):
    rng = np.random.default_rng(0)
    z, bias, gy = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(3, 4))
    z[0, 0], bias[0] = 0.5, -0.5  # a pre-activation of exactly 0 for the ReLU
    expected = F._activate_inplace(z.copy(), activation, bias)
    expected_grad = F._activation_grad(gy, expected, activation)
    monkeypatch.setattr(F, "_xp", lambda array: _NotNumpy)
    y = F._activate_inplace(z.copy(), activation, bias)
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    np.testing.assert_allclose(F._activate_inplace(z + bias, activation), expected, rtol=1e-12)
    np.testing.assert_allclose(F._activation_grad(gy, y, activation), expected_grad, rtol=1e-12)


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_the_fused_recurrent_steps_forward_and_backward_equal_the_numpy_path(emulated, monkeypatch, kind,
                                                                            return_sequences):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 3))
    layer = getattr(layers, kind)(3, return_sequences=return_sequences)
    layer.build(x.shape[1:], np.random.default_rng(1), dtype=np.float64)
    weights = [layer.params[k].data for k in ("kernel", "recurrent_kernel", "bias")]
    weights[2] = weights[2] + rng.normal(size=weights[2].shape)  # non-zero biases, both of a GRU's
    results = []
    for fused in (False, True):
        f = getattr(F, kind)(return_sequences)
        f.inputs = [Variable(x), *(Variable(w) for w in weights)]
        with monkeypatch.context() as patch:
            if fused:  # the GPU branches, on NumPy arrays
                patch.setattr(F, "_xp", lambda array: _NotNumpy)
            y = f.forward(x, *weights)
            gy = np.random.default_rng(2).normal(size=y.shape)
            results.append([y, *f.backward(gy)])
    for plain, fused in zip(*results):
        np.testing.assert_allclose(fused, plain, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("channels", [2, 6])  # the cell-major layout on an image input, the plain one after
@pytest.mark.parametrize("activation", ["linear", "relu", "tanh"])
def test_the_fused_max_pool_kernels_equal_the_numpy_path(emulated, monkeypatch, channels, activation):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, channels))
    x[:, :2] = 0.0  # a flat region: ties in the pooling windows
    W, b = rng.normal(size=(3, 3, channels, 3)), rng.normal(size=3)
    gy = np.random.default_rng(1).normal(size=(2, 1, 2, 3))
    results = []
    for fused in (False, True):
        f = F.Conv2DMaxPool(1, "valid", activation)
        f.inputs = [Variable(x), Variable(W), Variable(b)]
        with monkeypatch.context() as patch:
            if fused:  # the GPU branches, on NumPy arrays
                patch.setattr(F, "_xp", lambda array: _NotNumpy)
            y = f.forward(x, W, b)
            results.append([y.copy(), *f.backward(gy)])
    for plain, fused in zip(*results):
        np.testing.assert_allclose(fused, plain, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weights", [None, [0.5, 2.0, 0.0, 1.0, 3.0]])
def test_the_fused_sparse_softmax_cross_entropy_equals_the_numpy_path(emulated, monkeypatch, weights):
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(5, 4)) * 30, rng.integers(0, 4, 5)  # large logits: the max shift matters
    results = []
    for fused in (False, True):
        f = F.SoftmaxCrossEntropy(sparse=True, weights=None if weights is None else np.array(weights))
        f.inputs = [Variable(logits), Variable(labels, requires_grad=False)]
        with monkeypatch.context() as patch:
            if fused:
                patch.setattr(F, "_xp", lambda array: _NotNumpy)
            loss = f.forward(logits, labels)
            results.append([loss, f.log_p, f.backward(np.asarray(0.7))[0]])
    for plain, fused in zip(*results):
        np.testing.assert_allclose(fused, plain, rtol=1e-12)
    assert np.isfinite(results[1][0])


@pytest.mark.parametrize("shape,kernel,strides,padding,pooled", [
    ((2, 6, 5, 3), (3, 3), (1, 1), "valid", False), ((2, 7, 6, 6), (3, 2), (2, 1), "same", False),
    ((2, 7, 7, 2), (3, 3), (1, 1), "valid", True), ((1, 8, 9, 6), (2, 3), (1, 2), "same", True),
])
def test_the_col2im_kernel_gives_the_numpy_input_gradient(emulated, monkeypatch, shape, kernel, strides, padding,
                                                          pooled):
    rng = np.random.default_rng(0)
    x, W, b = rng.normal(size=shape), rng.normal(size=(*kernel, shape[-1], 4)), rng.normal(size=4)
    results = []
    for fused in (False, True):
        f = (F.Conv2DMaxPool if pooled else F.Conv2D)(strides, padding, "tanh")
        f.inputs = [Variable(x), Variable(W), Variable(b)]
        y = f.forward(x, W, b)
        gy = np.random.default_rng(1).normal(size=y.shape)
        with monkeypatch.context() as patch:
            if fused:
                patch.setattr(F, "_xp", lambda array: _NotNumpy)
            results.append(f.backward(gy)[0])
    np.testing.assert_allclose(results[1], results[0], rtol=1e-10, atol=1e-12)


def test_the_fused_kernels_can_be_turned_off_for_the_generic_path(monkeypatch):
    def no_kernels(*args):
        raise AssertionError("a fused kernel was made while they are off")

    monkeypatch.setattr(backend, "elementwise_kernel", no_kernels)
    monkeypatch.setattr(F, "_xp", lambda array: _NotNumpy)
    monkeypatch.setattr(backend, "_fused", False)
    assert not backend.fused(_NotNumpy) and not backend.fused(np)
    x = np.random.default_rng(0).normal(size=(2, 4, 3))
    layer = layers.LSTM(3)
    layer.build(x.shape[1:], np.random.default_rng(1), dtype=np.float64)
    f = F.LSTM()
    weights = [layer.params[k].data for k in ("kernel", "recurrent_kernel", "bias")]
    f.inputs = [Variable(x), *(Variable(w) for w in weights)]
    y = f.forward(x, *weights)
    assert len(f.backward(np.ones_like(y))) == 4
    backend.set_fused_kernels(True)
    assert backend.fused(_NotNumpy) and not backend.fused(np)


def _gpu_branches(monkeypatch, graphs_mode):
    """Every module sees CuPy's stand-in: the fused kernels (emulated) and the GPU branches run."""
    monkeypatch.setattr(backend, "xp", lambda: _NotNumpy)
    monkeypatch.setattr(backend, "get_array_module", lambda x: _NotNumpy)
    monkeypatch.setattr(F, "_xp", lambda array: _NotNumpy)
    monkeypatch.setattr(backend, "step_graphs_mode", lambda xp: graphs_mode)


WHOLE_MODELS = {
    "mlp": (lambda: Sequential([layers.Dense(4, activation="relu"), layers.Dense(3, activation="softmax")], seed=1),
            "sparse_categorical_crossentropy", lambda rng: (rng.normal(size=(22, 5)), rng.integers(0, 3, 22))),
    "cnn": (lambda: Sequential([layers.Conv2D(2, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
                                layers.Dense(3, activation="softmax")], seed=1),
            "sparse_categorical_crossentropy", lambda rng: (rng.normal(size=(10, 6, 6, 1)), rng.integers(0, 3, 10))),
    "conv1d": (lambda: Sequential([layers.Conv1D(3, 3, padding="same", activation="relu"), layers.MaxPooling1D(2),
                                   layers.GlobalAveragePooling1D(), layers.Dense(1)], seed=1), "mse",
               lambda rng: (rng.normal(size=(10, 8, 2)), rng.normal(size=(10, 1)))),
    "bidirectional": (lambda: Sequential([layers.Bidirectional(layers.LSTM(3, return_sequences=True)),
                                          layers.Bidirectional({"type": "GRU", "units": 2}), layers.Dense(1)], seed=1),
                      "mse", lambda rng: (rng.normal(size=(10, 4, 2)), rng.normal(size=(10, 1)))),
    "lstm": (lambda: Sequential([layers.LSTM(3), layers.Dense(1)], seed=1), "mse",
             lambda rng: (rng.normal(size=(10, 4, 2)), rng.normal(size=(10, 1)))),
    "gru": (lambda: Sequential([layers.Embedding(6, 2), layers.GRU(3), layers.Dense(2, activation="sigmoid")], seed=1),
            "binary_crossentropy", lambda rng: (rng.integers(0, 6, (10, 4)), rng.integers(0, 2, (10, 2)))),
}


def _whole_fit(name, optimizer="adam", extra=(), class_weight=None):
    build, loss, data = WHOLE_MODELS[name]
    model = build()
    for layer in extra:
        model.layers.insert(-1, layer)
    x, y = data(np.random.default_rng(2))
    model.compile(loss=loss, optimizer=optimizers.get({"type": optimizer, "learning_rate": 0.05}),
                  metrics=["accuracy"] if loss != "mse" else ["mae"])
    history = model.fit(x.astype(np.float32) if x.dtype.kind == "f" else x, y, epochs=2, batch_size=4, seed=3,
                        class_weight=class_weight)
    return model, history.history


@pytest.mark.parametrize("name", sorted(WHOLE_MODELS))
def test_a_whole_fit_through_the_gpu_branches_trains_as_the_numpy_path(emulated, monkeypatch, name):
    reference, reference_logs = _whole_fit(name)
    _gpu_branches(monkeypatch, None)
    fused, fused_logs = _whole_fit(name)
    for a, b in zip(fused.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fused_logs["loss"], reference_logs["loss"], rtol=1e-5)


@pytest.mark.parametrize("graphs_mode", [None, "emulate"])
def test_class_weights_train_through_the_gpu_branches_as_on_the_numpy_path(emulated, monkeypatch, graphs_mode):
    """The fused sparse softmax-cross-entropy weighs its rows, eagerly and replayed from a graph."""
    reference, reference_logs = _whole_fit("mlp", class_weight=[1.0, 4.0, 0.5])
    _gpu_branches(monkeypatch, graphs_mode)
    fused, fused_logs = _whole_fit("mlp", class_weight=[1.0, 4.0, 0.5])
    for a, b in zip(fused.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fused_logs["loss"], reference_logs["loss"], rtol=1e-5)
    unweighted, _ = _whole_fit("mlp")
    assert not np.allclose(unweighted.get_weights()[0], reference.get_weights()[0])  # the weights did something


@pytest.mark.parametrize("name", ["mlp", "cnn", "conv1d"])
def test_the_gpu_branches_replayed_from_emulated_graphs_train_exactly_as_one_step_at_a_time(emulated, monkeypatch,
                                                                                         name):
    """The GPU's own path (fused kernels, device scalars, counter-based dropout) under the graphed loop."""
    _gpu_branches(monkeypatch, None)
    eager, eager_logs = _whole_fit(name, "adamw", extra=(layers.Dropout(0.25),))
    _gpu_branches(monkeypatch, "emulate")
    graphed, graphed_logs = _whole_fit(name, "adamw", extra=(layers.Dropout(0.25),))
    assert graphed.step_graphs["captured"] and graphed.step_graphs["off"] is None, graphed.step_graphs
    assert isinstance(graphed.layers[-2].rng, backend.CounterRandom)
    for a, b in zip(eager.get_weights(), graphed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert graphed_logs["loss"] == eager_logs["loss"]


@pytest.mark.parametrize("graphs_mode", [None, "emulate"])
def test_on_the_gpu_branches_image_rows_kept_as_uint8_train_exactly_as_the_scaled_images(emulated, monkeypatch,
                                                                                       graphs_mode):
    """The GPU keeps ImageRows as uint8 and scales each batch there, also inside a graph's step."""
    from trainer.data import ImageRows, scale_images

    _gpu_branches(monkeypatch, graphs_mode)
    calls = []
    monkeypatch.setattr(ImageRows, "read", lambda *args, **kwargs: calls.append("read as float32"))
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (14, 6, 6, 1), dtype=np.uint8)
    y = rng.integers(0, 3, 14)
    runs = []
    for x in (scale_images(images), ImageRows(images)):
        model = WHOLE_MODELS["cnn"][0]()
        model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        history = model.fit(x, y, epochs=2, batch_size=4, seed=3, validation_split=0.25)
        runs.append((model, history.history))
    (reference, logs), (kept, kept_logs) = runs
    if graphs_mode:
        assert kept.step_graphs["captured"] and kept.step_graphs["off"] is None, kept.step_graphs
    assert calls == []  # kept as uint8 on the "device" (training and validation split), never read as float32
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert kept_logs[name] == logs[name]
    for a, b in zip(reference.get_weights(), kept.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_augmentation_on_the_gpu_branches_replays_from_emulated_graphs_as_one_step_at_a_time(emulated, monkeypatch):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(20, 6, 6, 1)).astype(np.float32), rng.integers(0, 3, 20)
    runs = []
    for graphs_mode in (None, "emulate"):
        _gpu_branches(monkeypatch, graphs_mode)
        model = Sequential([layers.RandomFlip("horizontal_and_vertical"), layers.RandomTranslation(0.2, 0.2),
                            *WHOLE_MODELS["cnn"][0]().layers], seed=1)
        model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        runs.append((model, model.fit(x, y, epochs=2, batch_size=8, seed=3).history))
    (eager, eager_logs), (graphed, graphed_logs) = runs
    assert graphed.step_graphs["captured"] == [8, 4] and graphed.step_graphs["off"] is None, graphed.step_graphs
    assert isinstance(graphed.layers[0].rng, backend.CounterRandom)
    assert graphed_logs["loss"] == eager_logs["loss"]
    for a, b in zip(eager.get_weights(), graphed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
