"""Benchmark the engine against PyTorch: the same recipes, data, split, initialisation scheme,
epochs, batch size and optimizer, trained side by side in one process.

    python -m trainer.bench [--recipe NAME ...] [--quick] [--seeds N] [--json out.json] [--device auto|cpu|gpu]

Each recipe prints wall time and samples/s for both frameworks, the time ratio
(cupola / torch; below 1 means the engine is faster), test quality, peak RSS, and the
environment (date, machine, device, threads, TF32). The engine is used only through its public
API (`trainer.Sequential`, `trainer.layers`, `trainer.optimizers`). PyTorch is optional: without
it only the engine side runs.

Seeds: `--seed` fixes the data split; `--seeds N` trains every recipe N times on each side with
the training seeds seed, seed+1, ..., seed+N-1 (each drives that side's initialisation and
shuffling; the split does not move). Quality is reported as mean ± sample std over the seeds, the
time ratio from the summed training times, and each recipe says whether the issue's quality rule
holds on the means (accuracy >= torch - 1 point, R² >= torch - 0.02, RMSE <= 1.05 x torch).

Wall time covers `fit` only, on a fresh model, after each side has trained a throwaway copy
on two batches (one-time start-up costs excluded); samples/s = epochs x training rows / time.
The warm-up's own time is reported beside it (on a GPU: kernel compilation, first allocations).

Peak RSS: on Linux the high-water mark is reset (/proc/self/clear_refs) before each side and
read from VmHWM after it, so each figure is that side's own peak - which still includes the
memory resident before it started (Python, NumPy, PyTorch's libraries: both sides share the
process). Elsewhere it is getrusage's process-wide peak so far, and the report says so.
"""

import argparse
import csv
import datetime
import io
import json
import math
import os
import platform
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainer import backend, metrics
from trainer import data as tdata

DATA_DIR_ENV = "CUPOLA_BENCH_DATA"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "data"


# ----------------------------------------------------------------------------- data sets


def data_dir():
    return Path(os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR))


def _data_file(name):
    path = data_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"bench: data file {name!r} not found in {data_dir()} (set {DATA_DIR_ENV})")
    return path


def read_csv_columns(path):
    """A CSV with a header as {column: array}: float64 where every cell parses (empty -> NaN),
    otherwise an object array of strings."""
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    columns = {}
    for j, name in enumerate(header):
        cells = [row[j] for row in rows]
        try:
            columns[name] = np.array([float(c) if c != "" else np.nan for c in cells])
        except ValueError:
            columns[name] = np.array(cells, dtype=object)
    return columns


def load_digits_images():
    """The 1797 digit images from digits8x8.zip as uint8 (N, 8, 8) and int64 labels (N,)."""
    from PIL import Image

    images, labels, order = [], [], []
    with zipfile.ZipFile(_data_file("digits8x8.zip")) as archive:
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) != 3 or not parts[2].endswith(".png"):
                continue
            with Image.open(io.BytesIO(archive.read(name))) as image:
                images.append(np.asarray(image.convert("L"), dtype=np.uint8))
            labels.append(int(parts[1]))
            order.append(parts[2])
    index = np.argsort(order)
    return np.stack(images)[index], np.array(labels, dtype=np.int64)[index]


def _bilinear_matrix(size_out, size_in):
    """(size_out, size_in) weights that resample a line by linear interpolation (pixel centres)."""
    source = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    weight = source - low
    matrix = np.zeros((size_out, size_in))
    matrix[np.arange(size_out), low] += 1 - weight
    matrix[np.arange(size_out), high] += weight
    return matrix


def upsample_images(images, size):
    """Bilinear resize of (N, h, w) uint8 images to (N, size, size) uint8."""
    rows = _bilinear_matrix(size, images.shape[1])
    cols = _bilinear_matrix(size, images.shape[2])
    resized = np.einsum("ij,njk,lk->nil", rows, images.astype(np.float64), cols)
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str  # "binary", "multiclass" or "regression"
    description: str
    target_scaler: object = None  # regression: turns predictions back into target units


def _subset(indices, quick, limit, seed):
    if quick and len(indices) > limit:
        return np.sort(np.random.default_rng(seed).choice(indices, limit, replace=False))
    return indices


def affairs_binary(quick, seed):
    table = read_csv_columns(_data_file("fair_affairs.csv"))
    features = [c for c in table if c != "affairs"]
    y = (table["affairs"] > 0).astype(np.float32).reshape(-1, 1)
    train, _, test = tdata.split_indices(len(y), test_fraction=0.2, validation_fraction=0.0, seed=seed,
                                         stratify=y[:, 0])
    train, test = _subset(train, quick, 2000, seed), _subset(test, quick, 1000, seed)
    pre = tdata.TablePreprocessor(features, []).fit({c: table[c][train] for c in features})
    x = pre.transform(table)
    return Dataset(x[train], y[train], x[test], y[test], "binary",
                   "fair_affairs.csv, target affairs > 0, 8 standardized features")


def affairs_regression(quick, seed):
    table = read_csv_columns(_data_file("fair_affairs.csv"))
    features = [c for c in table if c != "affairs"]
    y = table["affairs"].reshape(-1, 1)
    train, _, test = tdata.split_indices(len(y), test_fraction=0.2, validation_fraction=0.0, seed=seed)
    train, test = _subset(train, quick, 2000, seed), _subset(test, quick, 1000, seed)
    pre = tdata.TablePreprocessor(features, []).fit({c: table[c][train] for c in features})
    x = pre.transform(table)
    scaler = tdata.TargetScaler().fit(y[train])
    return Dataset(x[train], scaler.transform(y[train]), x[test], y[test].astype(np.float32), "regression",
                   "fair_affairs.csv, target affairs (standardized for training)", scaler)


def digits_flat(quick, seed):
    images, labels = load_digits_images()
    x = tdata.scale_images(images).reshape(len(images), -1)
    train, _, test = tdata.split_indices(len(labels), test_fraction=0.2, validation_fraction=0.0, seed=seed,
                                         stratify=labels)
    train = _subset(train, quick, 600, seed)
    return Dataset(x[train], labels[train], x[test], labels[test], "multiclass",
                   "digits8x8.zip flattened to 64 features, 10 classes")


def digits_28(quick, seed):
    images, labels = load_digits_images()
    x = tdata.scale_images(upsample_images(images, 28))[..., None]  # (N, 28, 28, 1), channels last
    train, _, test = tdata.split_indices(len(labels), test_fraction=0.2, validation_fraction=0.0, seed=seed,
                                         stratify=labels)
    train, test = _subset(train, quick, 256, seed), _subset(test, quick, 256, seed)
    return Dataset(x[train], labels[train], x[test], labels[test], "multiclass",
                   "digits8x8.zip upsampled bilinearly to 28x28x1, 10 classes")


def co2_windows(quick, seed):
    table = read_csv_columns(_data_file("co2_weekly.csv"))
    series = tdata.interpolate_missing(table["co2"])
    n_windows = len(series) - 10
    train, _, test = tdata.chronological_split(n_windows, test_fraction=0.2, validation_fraction=0.0, gap=10)
    # Standardize with the statistics of the values the training windows can see.
    scaler = tdata.TargetScaler().fit(series[: train[-1] + 11])
    x, y = tdata.sliding_windows(scaler.transform(series), 10)
    y = y.reshape(-1, 1)
    if quick:
        train = train[-512:]
    y_test = scaler.inverse_transform(y[test]).astype(np.float32)
    return Dataset(x[train], y[train], x[test], y_test, "regression",
                   "co2_weekly.csv, gaps interpolated, window 10 -> next week, chronological split", scaler)


def random_classification(n, width, classes, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, width), dtype=np.float32)
    y = rng.integers(0, classes, n)
    return Dataset(x, y, x[:0], y[:0], "throughput", f"random N(0, 1) inputs, {width} features, {classes} classes")


# ----------------------------------------------------------------------------- recipes

# Architectures in a neutral form, built by both frameworks:
#   ("dense", units, activation) ("conv2d", filters, kernel, activation) ("maxpool", size)
#   ("flatten",) ("lstm", units)
#   ("conv1d", filters, kernel, activation) (padding "same") ("maxpool1d", size)
#   ("bilstm", units) (Bidirectional LSTM, its two last states concatenated)
#   ("position",) (a learned vector per step, added) ("transformer", intermediate, heads, normalize_first)


@dataclass
class Recipe:
    name: str
    title: str
    architecture: list
    loss: str  # "binary_crossentropy", "sparse_categorical_crossentropy" or "mse"
    load: object  # (quick, seed) -> Dataset
    epochs: int
    quick_epochs: int
    batch_size: int
    learning_rate: float = 1e-3
    options: dict = field(default_factory=dict)
    report_seeds: int = 3  # training seeds per side in the full report (benchmarks/engine_report.py)


RECIPES = {
    r.name: r
    for r in [
        Recipe("keras_example", "Dense(10,relu)-Dense(1,sigmoid), the Keras example",
               [("dense", 10, "relu"), ("dense", 1, "sigmoid")], "binary_crossentropy",
               affairs_binary, epochs=20, quick_epochs=1, batch_size=10),
        Recipe("mlp_classifier", "MLP 64-64 classifier",
               [("dense", 64, "relu"), ("dense", 64, "relu"), ("dense", 10, "softmax")],
               "sparse_categorical_crossentropy", digits_flat, epochs=50, quick_epochs=2, batch_size=32),
        Recipe("mlp_regressor", "MLP 64-64 regressor",
               [("dense", 64, "relu"), ("dense", 64, "relu"), ("dense", 1, None)], "mse",
               affairs_regression, epochs=30, quick_epochs=1, batch_size=32),
        Recipe("cnn_digits", "CNN conv32-pool-conv64-pool-dense128-dense10",
               [("conv2d", 32, 3, "relu"), ("maxpool", 2), ("conv2d", 64, 3, "relu"), ("maxpool", 2),
                ("flatten",), ("dense", 128, "relu"), ("dense", 10, "softmax")],
               "sparse_categorical_crossentropy", digits_28, epochs=10, quick_epochs=1, batch_size=64),
        Recipe("lstm_co2", "LSTM(32)-Dense(1) on a univariate series",
               [("lstm", 32), ("dense", 1, None)], "mse", co2_windows, epochs=20, quick_epochs=1, batch_size=32,
               # The test R² of this small LSTM moves by 0.02-0.05 from one initialisation to the
               # next on both sides: with 3 seeds the means compare luck more than the engines.
               report_seeds=8),
        Recipe("conv1d_co2", "Conv1D(32)-pool-Conv1D(32)-Dense(1), the 1-D CNN series template",
               [("conv1d", 32, 3, "relu"), ("maxpool1d", 2), ("conv1d", 32, 3, "relu"), ("flatten",),
                ("dense", 1, None)], "mse", co2_windows, epochs=30, quick_epochs=1, batch_size=32,
               # Like the LSTM's, its test scores move with the initialisation on both sides (R² 0.94-0.99).
               report_seeds=8),
        Recipe("bilstm_co2", "Bidirectional(LSTM(32))-Dense(1) on a univariate series",
               [("bilstm", 32), ("dense", 1, None)], "mse", co2_windows, epochs=30, quick_epochs=1, batch_size=32,
               report_seeds=8),
        Recipe("transformer_co2", "Dense(32)-PositionEmbedding-TransformerEncoder(64, 4 heads, pre-norm)-Dense(1) on "
               "a univariate series", [("dense", 32, None), ("position",), ("transformer", 64, 4, True), ("flatten",),
                                               ("dense", 1, None)], "mse", co2_windows, epochs=30, quick_epochs=1,
               batch_size=32, report_seeds=8),
    ]
}
THROUGHPUT = "mlp_throughput"
ALL_NAMES = [*RECIPES, THROUGHPUT]


def throughput_recipe(device, quick):
    """The large-MLP probe: width-width-width hidden layers, sized for the device."""
    if device == "gpu":
        # 32 steps: the first (warm-up), the capture and the checked second launch of the CUDA
        # graph cost about two steps more than a launch, a few per cent of the run rather than 12.
        width, batch, batches = (1024, 1024, 4) if quick else (4096, 4096, 32)
    else:
        width, batch, batches = (256, 128, 8) if quick else (1024, 256, 32)
    recipe = Recipe(THROUGHPUT, f"MLP {width}-{width}-{width} throughput probe, batch {batch}",
                    [("dense", width, "relu")] * 3 + [("dense", 10, "softmax")],
                    "sparse_categorical_crossentropy", None, epochs=1, quick_epochs=1, batch_size=batch)
    recipe.options = {"width": width, "batches": batches}
    return recipe


def count_parameters(architecture, input_shape):
    """Trainable parameters of a neutral architecture (for the 6 x params x samples FLOP count)."""
    shape, total = tuple(input_shape), 0
    for layer in architecture:
        kind = layer[0]
        if kind == "dense":
            total += shape[-1] * layer[1] + layer[1]
            shape = (*shape[:-1], layer[1])
        elif kind == "conv2d":
            filters, kernel = layer[1], layer[2]
            total += kernel * kernel * shape[-1] * filters + filters
            shape = (shape[0] - kernel + 1, shape[1] - kernel + 1, filters)
        elif kind == "maxpool":
            shape = (shape[0] // layer[1], shape[1] // layer[1], shape[2])
        elif kind == "flatten":
            shape = (math.prod(shape),)
        elif kind == "lstm":
            units = layer[1]
            total += 4 * units * (shape[-1] + units + 1)
            shape = (units,)
        elif kind == "bilstm":
            units = layer[1]
            total += 2 * 4 * units * (shape[-1] + units + 1)
            shape = (2 * units,)
        elif kind == "conv1d":
            filters, kernel = layer[1], layer[2]
            total += kernel * shape[-1] * filters + filters
            shape = (shape[0], filters)  # "same" padding
        elif kind == "maxpool1d":
            shape = (shape[0] // layer[1], shape[1])
        elif kind == "position":
            total += math.prod(shape)
        elif kind == "transformer":
            width, inner = shape[-1], layer[1]
            total += 4 * (width * width + width) + 2 * (width * inner) + inner + width + 4 * width
    return total


# ----------------------------------------------------------------------------- the engine side


def cupola_available():
    try:
        from trainer import Sequential, layers, optimizers  # noqa: F401
    except ImportError:
        return False
    return True


def cupola_set_device(device, threads):
    from trainer import backend

    backend.set_device(device)
    if device == "cpu" and hasattr(backend, "set_blas_threads"):
        backend.set_blas_threads(threads)
    return backend.get_device()


def _cupola_layer(layers, spec):
    kind = spec[0]
    if kind == "dense":
        return layers.Dense(spec[1], activation=spec[2])
    if kind == "conv2d":
        return layers.Conv2D(spec[1], spec[2], activation=spec[3])
    if kind == "maxpool":
        return layers.MaxPooling2D(spec[1])
    if kind == "flatten":
        return layers.Flatten()
    if kind == "lstm":
        return layers.LSTM(spec[1])
    if kind == "conv1d":
        return layers.Conv1D(spec[1], spec[2], padding="same", activation=spec[3])
    if kind == "maxpool1d":
        return layers.MaxPooling1D(spec[1])
    if kind == "bilstm":
        return layers.Bidirectional(layers.LSTM(spec[1]))
    if kind == "position":
        return layers.PositionEmbedding()
    if kind == "transformer":
        return layers.TransformerEncoder(spec[1], spec[2], normalize_first=spec[3])
    raise ValueError(f"bench: unknown layer kind {kind!r}")


class CupolaSide:
    name = "cupola"

    def __init__(self, recipe, dataset, seed):
        from trainer import Sequential, layers, optimizers

        self.recipe, self.dataset, self.seed = recipe, dataset, seed
        self.model = Sequential([_cupola_layer(layers, spec) for spec in recipe.architecture])
        self.model.compile(optimizer=optimizers.Adam(learning_rate=recipe.learning_rate), loss=recipe.loss)

    def fit(self, x, y, epochs, batch_size):
        self.model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0, seed=self.seed)

    @property
    def step_graphs(self):
        return self.model.step_graphs  # what the fit did with CUDA graphs (None on the CPU)

    def predict(self, x):
        return np.asarray(self.model.predict(x, batch_size=1024))


# ----------------------------------------------------------------------------- the PyTorch side


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def configure_torch(device, tf32, threads):
    """Set threads and TF32 explicitly so the report states what ran."""
    import torch

    torch.set_num_threads(threads)
    if device == "gpu":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    return {
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if device == "gpu" else None,
        "torch_tf32_cudnn": bool(torch.backends.cudnn.allow_tf32) if device == "gpu" else None,
        "torch_device_name": torch.cuda.get_device_name() if device == "gpu" else None,
    }


def build_torch_model(architecture, input_shape, loss):
    """A torch.nn.Sequential mirroring the architecture, initialised like Keras: Glorot-uniform
    kernels, zero biases; LSTM recurrent kernel orthogonal and forget-gate bias 1. A final
    softmax is left out because CrossEntropyLoss takes logits (the same maths as softmax + sparse
    cross-entropy); predictions apply it."""
    import torch
    from torch import nn

    class LastStep(nn.Module):
        def __init__(self, lstm):
            super().__init__()
            self.lstm = lstm

        def forward(self, x):
            output, _ = self.lstm(x)
            return output[:, -1]

    class LastStates(nn.Module):  # a bidirectional LSTM's two final states, as Keras' Bidirectional(LSTM)
        def __init__(self, lstm):
            super().__init__()
            self.lstm = lstm

        def forward(self, x):
            _, (hidden, _) = self.lstm(x)
            return torch.cat([hidden[0], hidden[1]], dim=1)

    class Positions(nn.Module):  # PositionEmbedding: a learned vector per step, added
        def __init__(self, steps, width):
            super().__init__()
            self.embeddings = nn.Parameter(nn.init.xavier_uniform_(torch.empty(steps, width)))

        def forward(self, x):
            return x + self.embeddings

    def keras_transformer(width, inner, heads, normalize_first):
        """TransformerEncoderLayer initialised as Cupola's TransformerEncoder: Glorot-uniform on each
        of the query, key and value kernels (not on the three stacked), zero biases."""
        block = nn.TransformerEncoderLayer(width, heads, inner, dropout=0.0, batch_first=True, norm_first=normalize_first)
        with torch.no_grad():
            for part in block.self_attn.in_proj_weight.view(3, width, width):
                nn.init.xavier_uniform_(part)
            block.self_attn.in_proj_bias.zero_()
            for linear in (block.self_attn.out_proj, block.linear1, block.linear2):
                nn.init.xavier_uniform_(linear.weight)
                linear.bias.zero_()
        return block

    def keras_lstm(inputs, units, bidirectional=False):
        lstm = nn.LSTM(inputs, units, batch_first=True, bidirectional=bidirectional)
        with torch.no_grad():
            for suffix in ("_l0", "_l0_reverse") if bidirectional else ("_l0",):
                nn.init.xavier_uniform_(getattr(lstm, "weight_ih" + suffix))
                nn.init.orthogonal_(getattr(lstm, "weight_hh" + suffix))
                getattr(lstm, "bias_ih" + suffix).zero_()
                getattr(lstm, "bias_hh" + suffix).zero_()
                getattr(lstm, "bias_ih" + suffix)[units:2 * units] = 1.0  # gate order i, f, g, o, as Keras
        return lstm

    activations = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    modules, shape = [], tuple(input_shape)
    if len(shape) == 3:  # images arrive channels last; torch convolutions want channels first
        shape = (shape[2], shape[0], shape[1])
    elif len(shape) == 2 and architecture[0][0] == "conv1d":  # so do series under a 1-D convolution
        shape = (shape[1], shape[0])
    for index, spec in enumerate(architecture):
        kind, last = spec[0], index == len(architecture) - 1
        if kind == "dense":
            linear = nn.Linear(shape[-1], spec[1])
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
            modules.append(linear)
            shape = (*shape[:-1], spec[1])  # on a sequence, every step
            activation = spec[2]
        elif kind == "conv2d":
            conv = nn.Conv2d(shape[0], spec[1], spec[2])
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
            modules.append(conv)
            shape = (spec[1], shape[1] - spec[2] + 1, shape[2] - spec[2] + 1)
            activation = spec[3]
        elif kind == "maxpool":
            modules.append(nn.MaxPool2d(spec[1]))
            shape = (shape[0], shape[1] // spec[1], shape[2] // spec[1])
            activation = None
        elif kind == "flatten":
            modules.append(nn.Flatten())
            shape = (math.prod(shape),)
            activation = None
        elif kind == "lstm":
            modules.append(LastStep(keras_lstm(shape[-1], spec[1])))
            shape = (spec[1],)
            activation = None
        elif kind == "bilstm":
            modules.append(LastStates(keras_lstm(shape[-1], spec[1], bidirectional=True)))
            shape = (2 * spec[1],)
            activation = None
        elif kind == "conv1d":
            conv = nn.Conv1d(shape[0], spec[1], spec[2], padding="same")
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
            modules.append(conv)
            shape = (spec[1], shape[1])
            activation = spec[3]
        elif kind == "maxpool1d":
            modules.append(nn.MaxPool1d(spec[1]))
            shape = (shape[0], shape[1] // spec[1])
            activation = None
        elif kind == "position":
            modules.append(Positions(*shape))
            activation = None
        elif kind == "transformer":
            modules.append(keras_transformer(shape[-1], *spec[1:]))
            activation = None
        else:
            raise ValueError(f"bench: unknown layer kind {kind!r}")
        if activation == "softmax":
            if not (last and loss == "sparse_categorical_crossentropy"):
                raise ValueError("bench: softmax is supported only as the last layer with sparse cross-entropy")
        elif activation is not None:
            modules.append(activations[activation]())
    return nn.Sequential(*modules)


class TorchSide:
    name = "torch"

    def __init__(self, recipe, dataset, seed, device):
        import torch

        self.torch = torch
        torch.manual_seed(seed)
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.recipe = recipe
        self.model = build_torch_model(recipe.architecture, dataset.x_train.shape[1:], recipe.loss).to(self.device)
        # Keras' Adam epsilon is 1e-7 (PyTorch's default is 1e-8).
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=recipe.learning_rate, eps=1e-7)
        self.loss = {
            "binary_crossentropy": torch.nn.BCELoss(),
            "sparse_categorical_crossentropy": torch.nn.CrossEntropyLoss(),
            "mse": torch.nn.MSELoss(),
        }[recipe.loss]

    def _tensor(self, x, labels=False):
        torch = self.torch
        if x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)
        elif x.ndim == 3 and self.recipe.architecture[0][0] == "conv1d":  # (steps, channels) -> channels first
            x = x.transpose(0, 2, 1)
        tensor = torch.from_numpy(np.ascontiguousarray(x))
        return tensor.to(self.device, dtype=torch.int64 if labels else torch.float32)

    def fit(self, x, y, epochs, batch_size):
        torch = self.torch
        # The whole set lives on the device and batches are taken by a device-side permutation,
        # the same strategy as the engine.
        xs, ys = self._tensor(x), self._tensor(y, labels=self.recipe.loss == "sparse_categorical_crossentropy")
        self.model.train()
        n = xs.shape[0]
        for _ in range(epochs):
            order = torch.randperm(n, generator=self.generator, device=self.device)
            for start in range(0, n, batch_size):
                index = order[start:start + batch_size]
                self.optimizer.zero_grad(set_to_none=True)
                loss = self.loss(self.model(xs[index]), ys[index])
                loss.backward()
                self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def predict(self, x):
        torch = self.torch
        self.model.eval()
        outputs = []
        with torch.no_grad():
            for start in range(0, len(x), 1024):
                out = self.model(self._tensor(x[start:start + 1024]))
                if self.recipe.loss == "sparse_categorical_crossentropy":
                    out = torch.softmax(out, dim=1)
                outputs.append(out.cpu().numpy())
        return np.concatenate(outputs)


# ----------------------------------------------------------------------------- running


def quality(dataset, predictions):
    """Test-set quality: accuracy for classification; R² and RMSE (in target units) for regression."""
    if dataset.task == "regression":
        if dataset.target_scaler is not None:
            predictions = dataset.target_scaler.inverse_transform(predictions)
        return {"r2": metrics.r2(dataset.y_test, predictions), "rmse": metrics.rmse(dataset.y_test, predictions)}
    return {"accuracy": metrics.accuracy(dataset.y_test, predictions)}


def _run_side(side_factory, recipe, dataset, epochs):
    result = {"ran": False, "peak_rss_reset": backend.reset_peak_rss()}
    try:
        # Warm up outside the clock on a throwaway copy of the model: library start-up, first-call
        # allocations, kernel compilation. The timed model starts fresh, so both sides train from
        # the same kind of initial state and the quality figures are not shifted by the warm-up.
        warm = 2 * recipe.batch_size
        start = time.perf_counter()
        side_factory().fit(dataset.x_train[:warm], dataset.y_train[:warm], 1, recipe.batch_size)
        result["warmup_seconds"] = time.perf_counter() - start  # kernel compilation and first calls
        side = side_factory()
        start = time.perf_counter()
        side.fit(dataset.x_train, dataset.y_train, epochs, recipe.batch_size)
        seconds = time.perf_counter() - start
        samples = epochs * len(dataset.x_train)
        result.update(ran=True, seconds=seconds, samples_per_second=samples / seconds)
        if getattr(side, "step_graphs", None) is not None:
            result["step_graphs"] = side.step_graphs
        if recipe.name == THROUGHPUT:
            params = count_parameters(recipe.architecture, dataset.x_train.shape[1:])
            result["flop_per_second"] = 6 * params * samples / seconds
            result["parameters"] = params
        elif len(dataset.x_test):
            result["quality"] = quality(dataset, side.predict(dataset.x_test))
    except Exception as error:  # noqa: BLE001 - one failing side must not hide the others' numbers
        result["error"] = f"{type(error).__name__}: {error}"
    result["peak_rss_mb"] = backend.peak_rss_mb()
    return result


def combine_runs(runs, seeds):
    """One side's per-seed results as one: summed seconds, samples/s over the sum, quality as the
    mean with the sample standard deviation (0 for one seed) and the per-seed values, the highest
    peak RSS. A side that failed on any seed reports the first error and no figures."""
    failed = [r for r in runs if not r.get("ran")]
    result = {"ran": not failed, "seeds": list(seeds),
              "peak_rss_reset": all(r.get("peak_rss_reset") for r in runs),
              "peak_rss_mb": max((r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb") is not None), default=None)}
    if failed:
        result["error"] = failed[0].get("error", "did not run")
        return result
    graphed = [r["step_graphs"] for r in runs if "step_graphs" in r]
    if graphed:  # the first seed's, or the first that turned graphs off, which the report must show
        result["step_graphs"] = next((g for g in graphed if g.get("off")), graphed[0])
    seconds = sum(r["seconds"] for r in runs)
    samples = sum(r["seconds"] * r["samples_per_second"] for r in runs)
    result.update(seconds=seconds, samples_per_second=samples / seconds,
                  seconds_per_seed=[r["seconds"] for r in runs],
                  warmup_seconds=runs[0].get("warmup_seconds"))  # the first seed's: compilation happens once
    if "flop_per_second" in runs[0]:
        flops = sum(r["seconds"] * r["flop_per_second"] for r in runs)
        result.update(flop_per_second=flops / seconds, parameters=runs[0]["parameters"])
    if "quality" in runs[0]:
        result["quality"], result["quality_std"], result["quality_per_seed"] = {}, {}, {}
        for key in runs[0]["quality"]:
            values = [float(r["quality"][key]) for r in runs]
            result["quality"][key] = float(np.mean(values))
            result["quality_std"][key] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            result["quality_per_seed"][key] = values
    return result


# The quality rule, applied to the means over the seeds: (metric, comparison, allowance).
QUALITY_RULE = {
    "accuracy": ("accuracy >= torch - 0.01", lambda cupola, torch: cupola >= torch - 0.01),
    "r2": ("R2 >= torch - 0.02", lambda cupola, torch: cupola >= torch - 0.02),
    "rmse": ("RMSE <= 1.05 x torch", lambda cupola, torch: cupola <= 1.05 * torch),
}


def quality_rule(cupola_quality, torch_quality):
    """{"met": bool, "checks": {metric: {"rule", "cupola", "torch", "met"}}} for the metrics both
    sides report, or None when there is nothing to compare."""
    checks = {}
    for key, (text, holds) in QUALITY_RULE.items():
        if key in (cupola_quality or {}) and key in (torch_quality or {}):
            c, t = cupola_quality[key], torch_quality[key]
            checks[key] = {"rule": text, "cupola": c, "torch": t, "met": bool(holds(c, t))}
    if not checks:
        return None
    return {"met": all(c["met"] for c in checks.values()), "checks": checks}


def training_seeds(seed, seeds):
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"bench: seeds must be a positive integer. Received: seeds={seeds!r}")
    return [seed + i for i in range(seeds)]


def run_recipe(recipe, *, quick, seed, device, use_torch, seeds=1):
    """Train the recipe on both sides once per training seed (seed, seed+1, ...); the data set,
    its split and the throughput probe's inputs come from `seed` alone and stay fixed."""
    train_seeds = training_seeds(seed, seeds)
    if recipe.name == THROUGHPUT:
        width, batches = recipe.options["width"], recipe.options["batches"]
        dataset = random_classification(batches * recipe.batch_size, width, 10, seed)
    else:
        dataset = recipe.load(quick, seed)
    epochs = recipe.quick_epochs if quick else recipe.epochs
    row = {
        "recipe": recipe.name,
        "title": recipe.title,
        "data": dataset.description,
        "train_rows": len(dataset.x_train),
        "test_rows": len(dataset.x_test),
        "epochs": epochs,
        "batch_size": recipe.batch_size,
        "optimizer": f"Adam(lr={recipe.learning_rate:g})",
        "loss": recipe.loss,
        "seeds": train_seeds,
    }
    have_cupola = cupola_available()
    cupola_runs, torch_runs = [], []
    for train_seed in train_seeds:  # the two sides alternate, so a change in machine load hits both
        if have_cupola:
            cupola_runs.append(_run_side(lambda s=train_seed: CupolaSide(recipe, dataset, s), recipe, dataset, epochs))
        if use_torch:
            torch_runs.append(_run_side(lambda s=train_seed: TorchSide(recipe, dataset, s, device),
                                        recipe, dataset, epochs))
    if have_cupola:
        row["cupola"] = combine_runs(cupola_runs, train_seeds)
    else:
        row["cupola"] = {"ran": False, "error": "trainer.Sequential is not available yet"}
    if use_torch:
        row["torch"] = combine_runs(torch_runs, train_seeds)
    cupola, torch_side = row["cupola"], row.get("torch")
    if cupola.get("ran") and torch_side and torch_side.get("ran"):
        row["time_ratio"] = cupola["seconds"] / torch_side["seconds"]
        rule = quality_rule(cupola.get("quality"), torch_side.get("quality"))
        if rule is not None:
            row["quality_rule"] = rule
    return row


def environment(device, use_torch, tf32, threads):
    info = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": platform.node(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_cores_usable": usable_cores(),
        "threads": threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "device": device,
        "load_average_at_start": _load_average(),
    }
    from trainer import backend

    if device == "gpu":
        # CuPy computes float32 GEMMs in full precision unless CUPY_TF32=1 is set before it loads.
        info["cupy_tf32"] = backend.tf32_matmul()
        info["cupola_fused_kernels"] = backend.fused_kernels_enabled()
        info["cupola_cuda_graphs"] = backend.step_graphs_mode(backend.xp()) == "cuda"
        info["gpu_name"] = backend.gpu_name()
    else:  # the compiled CPU kernels: built (a C compiler at install) and on (CUPOLA_FUSED_KERNELS)
        info["cupola_cpu_kernels"] = backend.cpu_kernels(np) is not None
    if use_torch:
        info.update(configure_torch(device, tf32, threads))
    return info


def _load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    # The kernel matters: OPENBLAS_CORETYPE can pin an older one than the processor supports.
    return [" ".join(filter(None, (p.get("internal_api"), p.get("version"), p.get("architecture"),
                                   f"threads={p.get('num_threads')}")))
            for p in threadpool_info() if p.get("user_api") == "blas"]


def choose_device(requested, use_torch):
    """"auto": the GPU when CuPy (and PyTorch, when it runs) can use one; "gpu" insists, with a
    clear error before anything trains where either side cannot."""
    if requested == "cpu":
        return "cpu"
    from trainer import backend

    cupy_gpu = backend.gpu_available()
    torch_gpu = True
    if use_torch:
        import torch

        torch_gpu = torch.cuda.is_available()
    if requested == "gpu":
        if not cupy_gpu:
            raise ValueError("bench: --device gpu was asked for, but CuPy finds no GPU here "
                             "(install the gpu or gpu13 extra on a machine with one).")
        if not torch_gpu:
            raise ValueError("bench: --device gpu was asked for, but this PyTorch cannot use the GPU "
                             "(install a CUDA build of torch, or pass --no-torch).")
        return "gpu"
    return "gpu" if cupy_gpu and torch_gpu else "cpu"


def usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def run(recipes=None, *, quick=False, seed=0, device="auto", use_torch=None, tf32=False, threads=None, seeds=1):
    """Run the named recipes (all by default) and return {"environment": ..., "results": [...]}.

    seed: the data split (and the first training seed); seeds: how many training seeds per side
    (seed, seed+1, ...), reported as mean ± std; None: each recipe's ``report_seeds``.

    threads: CPU threads for both sides (the engine's BLAS, torch's intra-op pool); default all
    usable cores."""
    names = list(recipes) if recipes else list(ALL_NAMES)
    unknown = [n for n in names if n not in ALL_NAMES]
    if unknown:
        raise ValueError(f"bench: unknown recipe {unknown[0]!r}; known recipes: {ALL_NAMES}")
    if use_torch is None:
        use_torch = torch_available()
    if threads is None:
        threads = usable_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"bench: threads must be a positive integer. Received: threads={threads!r}")
    if seeds is not None:
        training_seeds(seed, seeds)  # validate before anything runs
    device = choose_device(device, use_torch)
    env = environment(device, use_torch, tf32, threads)
    if cupola_available():
        env["cupola_device"] = cupola_set_device(device, threads)
    env["blas"] = _blas_info()  # after the thread limits are set
    results = []
    for name in names:
        recipe = throughput_recipe(device, quick) if name == THROUGHPUT else RECIPES[name]
        results.append(run_recipe(recipe, quick=quick, seed=seed, device=device, use_torch=use_torch,
                                  seeds=recipe.report_seeds if seeds is None else seeds))
    env["load_average_at_end"] = _load_average()
    return {"environment": env, "quick": quick, "seed": seed, "seeds": seeds, "results": results}


# ----------------------------------------------------------------------------- report


def _fmt(value, digits=3):
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1e5:
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    return str(value)


def cpu_kernels_note(env, before):
    """"CPU kernels on/off" after ``before``, where the report says (CPU runs); else nothing."""
    if "cupola_cpu_kernels" not in env:
        return ""
    return f"{before}CPU kernels {'on' if env['cupola_cpu_kernels'] else 'off'}"


def format_report(report):
    env = report["environment"]
    lines = [
        f"Cupola engine benchmark - {env['date']}{' (quick)' if report['quick'] else ''}",
        (f"machine {env['machine']}: {env['cpu']}, {env['cpu_cores_usable']} usable cores, {env['threads']} threads "
         f"used; {env['platform']}"),
        (f"load average (1, 5, 15 min) at start {env['load_average_at_start']}, at end {env['load_average_at_end']}"
         " - other processes on the machine skew the timings"),
        (f"device {env['device']} (engine backend: {env.get('cupola_device', 'n/a')}); numpy {env['numpy']}; "
         f"BLAS {', '.join(env['blas'] or ['unknown'])}" + cpu_kernels_note(env, "; ")),
    ]
    if "torch_version" in env:
        line = f"torch {env['torch_version']}, {env['torch_threads']} threads"
        if env["device"] == "gpu":
            line += (f", GPU {env['torch_device_name']}, TF32 matmul={env['torch_tf32_matmul']} "
                     f"cudnn={env['torch_tf32_cudnn']} (set explicitly)")
        lines.append(line)
    else:
        lines.append("torch not installed: engine side only")
    if "cupy_tf32" in env:
        lines.append(f"engine TF32 (CUPY_TF32): {env['cupy_tf32']}; fused kernels (CUPOLA_FUSED_KERNELS): "
                     f"{env.get('cupola_fused_kernels')}; CUDA graphs (CUPOLA_CUDA_GRAPHS): "
                     f"{env.get('cupola_cuda_graphs')}")
    for row in report["results"]:
        lines.append("")
        lines.append(f"== {row['recipe']}: {row['title']}")
        seeds = row.get("seeds", [report.get("seed")])
        lines.append(f"   {row['data']}; {row['train_rows']} train / {row['test_rows']} test rows; "
                     f"{row['epochs']} epochs, batch {row['batch_size']}, {row['optimizer']}, {row['loss']}")
        if len(seeds) > 1:
            lines.append(f"   {len(seeds)} training seeds {seeds[0]}..{seeds[-1]} per side (split fixed): "
                         "times summed, quality mean ± std")
        sides = [s for s in ("cupola", "torch") if s in row]
        width = 18 if len(seeds) > 1 else 14
        lines.append(f"   {'':<22}" + "".join(f"{s:>{width}}" for s in sides))

        def add(label, getter, digits=3, row=row, sides=sides, width=width):
            lines.append(f"   {label:<22}" + "".join(f"{_fmt(getter(row[s]), digits):>{width}}" for s in sides))

        def quality_text(side, key, seeds=seeds):
            value = side.get("quality", {}).get(key)
            if value is None or len(seeds) == 1:
                return value
            return f"{value:.4f} ± {side.get('quality_std', {}).get(key, 0.0):.4f}"

        add("wall time (s)", lambda r: r.get("seconds"), 2)
        add("warm-up (s)", lambda r: r.get("warmup_seconds"), 2)
        add("samples/s", lambda r: r.get("samples_per_second"), 0)
        if row["recipe"] == THROUGHPUT:
            add("GFLOP/s (6*P*N/t)", lambda r: r["flop_per_second"] / 1e9 if "flop_per_second" in r else None, 1)
            peak = tf32_peak_flops(env.get("gpu_name"))
            if peak:
                add("% of dense TF32 peak", lambda r: percent_of_tf32_peak(r, env), 1)
                lines.append(f"   dense TF32 peak of the {env['gpu_name']}: {peak / 1e12:.0f} TFLOP/s (datasheet, no "
                             f"sparsity); the engine uses TF32 only with CUPY_TF32=1 ({env.get('cupy_tf32')} here)")
        else:
            keys = [k for s in sides for k in row[s].get("quality", {})]
            for key in dict.fromkeys(keys):
                add(f"test {key}", lambda r, k=key: quality_text(r, k), 4)
        label = "peak RSS (MB)" if all(row[s].get("peak_rss_reset") for s in sides) else "peak RSS so far (MB)"
        add(label, lambda r: r.get("peak_rss_mb"), 0)
        if "time_ratio" in row:
            lines.append(f"   time ratio cupola/torch: {row['time_ratio']:.2f}")
        if "quality_rule" in row:
            rule = row["quality_rule"]
            details = "; ".join(f"{c['rule']}: {c['cupola']:.4f} vs {c['torch']:.4f} {'ok' if c['met'] else 'MISSED'}"
                                for c in rule["checks"].values())
            lines.append(f"   quality rule on the means: {'met' if rule['met'] else 'NOT met'} ({details})")
        if "step_graphs" in row.get("cupola", {}):
            lines.append(f"   CUDA graphs: {step_graphs_note(row['cupola']['step_graphs'])}")
        for s in sides:
            if "error" in row[s]:
                lines.append(f"   {s} failed: {row[s]['error']}")
    return "\n".join(lines)


# Dense (no sparsity) TF32 tensor-core peaks from NVIDIA's datasheets, by a part of the device name.
TF32_PEAK_TFLOPS = (("H200", 494.7), ("H100 PCIe", 378.0), ("H100 NVL", 417.5), ("H100", 494.7), ("A100", 156.0),
                    ("L40S", 183.0), ("L4", 60.0))


def tf32_peak_flops(gpu_name):
    """The dense TF32 peak in FLOP/s of a GPU known by name, else None."""
    for part, tflops in TF32_PEAK_TFLOPS:
        if gpu_name and part in gpu_name:
            return tflops * 1e12
    return None


def percent_of_tf32_peak(side, env):
    """A side's FLOP/s as a percentage of its GPU's dense TF32 peak, or None (no FLOP/s or unknown GPU)."""
    peak = tf32_peak_flops(env.get("gpu_name"))
    return 100 * side["flop_per_second"] / peak if peak and "flop_per_second" in side else None


def step_graphs_note(status):
    """One line on what a fit did with CUDA graphs (trainer.graphs.StepGraphs.status)."""
    sizes = ", ".join(map(str, status["captured"])) or "none"
    text = f"batch sizes captured {sizes}; {status['launches']} launches, {status['checked']} checked"
    return text + (f"; turned off: {status['off']}" if status["off"] else "")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m trainer.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", action="append", choices=ALL_NAMES,
                        help="run only this recipe (repeatable); default: all")
    parser.add_argument("--quick", action="store_true", help="few epochs on small subsets (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument("--seed", type=int, default=0, help="data split and first training seed (default 0)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="training seeds per side (seed, seed+1, ...): quality as mean ± std, times summed")
    parser.add_argument("--no-torch", action="store_true", help="run the engine side only")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 in PyTorch on the GPU (default: off)")
    parser.add_argument("--threads", type=int, help="CPU threads for both sides (default: all usable cores)")
    args = parser.parse_args(argv)
    try:
        report = run(args.recipe, quick=args.quick, seed=args.seed, device=args.device,
                     use_torch=False if args.no_torch else None, tf32=args.tf32, threads=args.threads,
                     seeds=args.seeds)
    except ValueError as error:  # a bad seed or thread count, or a device that is not there
        parser.error(str(error))
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
