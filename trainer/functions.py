"""Differentiable operations: each a Function with forward/backward and a lowercase wrapper.

Hot paths are fused with hand-written backward passes: linear (+activation), conv2d by
im2col (+activation), pooling, normalisation, whole-sequence recurrent cells and the
loss functions. Everything is written against ``xp`` so it runs on NumPy and CuPy alike; the
largest passes have a fused kernel on either path (CuPy ElementwiseKernels on the GPU, the compiled
trainer/_cpukernels.c on the CPU where it is built), each giving what the generic code gives.
"""
import functools
import math

import numpy as np

from trainer import backend
from trainer.core import Function, Variable, as_variable


def _xp(x):
    return backend.get_array_module(x)


def sum_rows(g):
    """Column sums of a 2-D array as one GEMV (several times faster than ``g.sum(axis=0)``)."""
    return _xp(g).ones(g.shape[0], dtype=g.dtype) @ g


def sum_to(x, shape):
    """Sum the raw array ``x`` down to ``shape`` (undo broadcasting)."""
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape) if s == 1 and x.shape[i + lead] != 1)
    y = x.sum(axis=axes, keepdims=True)
    if lead > 0:
        y = y.reshape(y.shape[lead:])
    return y


# --------------------------------------------------------------------------- arithmetic

class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, gy):
        a, b = self.inputs
        return sum_to(gy, a.shape), sum_to(gy, b.shape)


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, gy):
        a, b = self.inputs
        return sum_to(gy, a.shape), sum_to(-gy, b.shape)


class Mul(Function):
    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        return sum_to(gy * b.data, a.shape), sum_to(gy * a.data, b.shape)


class Div(Function):
    def forward(self, a, b):
        return a / b

    def backward(self, gy):
        a, b = self.inputs
        ga = gy / b.data
        return sum_to(ga, a.shape), sum_to(-ga * a.data / b.data, b.shape)


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Pow(Function):
    def __init__(self, power):
        self.power = power

    def forward(self, x):
        return x ** self.power

    def backward(self, gy):
        x = self.inputs[0].data
        return gy * self.power * x ** (self.power - 1)


class Exp(Function):
    def forward(self, x):
        self.y = _xp(x).exp(x)
        return self.y

    def backward(self, gy):
        return gy * self.y


class Log(Function):
    def forward(self, x):
        return _xp(x).log(x)

    def backward(self, gy):
        return gy / self.inputs[0].data


class Abs(Function):
    def forward(self, x):
        return abs(x)

    def backward(self, gy):
        return gy * _xp(gy).sign(self.inputs[0].data)


def add(a, b):
    return Add()(a, b)


def sub(a, b):
    return Sub()(a, b)


def mul(a, b):
    return Mul()(a, b)


def div(a, b):
    return Div()(a, b)


def neg(x):
    return Neg()(x)


def pow(x, power):
    return Pow(power)(x)


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


def absolute(x):
    return Abs()(x)


# --------------------------------------------------------------------------- shapes and reductions

class Reshape(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.x_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, gy):
        return gy.reshape(self.x_shape)


class Transpose(Function):
    def __init__(self, axes=None):
        self.axes = axes

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, gy):
        if self.axes is None:
            return gy.transpose()
        return gy.transpose(np.argsort(self.axes))


class Sum(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis = axis
        self.keepdims = keepdims

    def forward(self, x):
        self.x_shape = x.shape
        return x.sum(axis=self.axis, keepdims=self.keepdims)

    def backward(self, gy):
        xp = _xp(gy)
        if not self.keepdims and self.axis is not None:
            axes = (self.axis,) if isinstance(self.axis, int) else self.axis
            axes = sorted(a % len(self.x_shape) for a in axes)
            for a in axes:
                gy = xp.expand_dims(gy, a)
        return xp.broadcast_to(gy, self.x_shape)


class BroadcastTo(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.x_shape = x.shape
        return _xp(x).broadcast_to(x, self.shape)

    def backward(self, gy):
        return sum_to(gy, self.x_shape)


class MatMul(Function):
    def forward(self, a, b):
        return a @ b

    def backward(self, gy):
        a, b = self.inputs
        ga = gy @ b.data.swapaxes(-1, -2) if self.needs_grad(0) else None
        gb = a.data.swapaxes(-1, -2) @ gy if self.needs_grad(1) else None
        if gb is not None:
            gb = sum_to(gb, b.shape)
        if ga is not None:
            ga = sum_to(ga, a.shape)
        return ga, gb


class GetItem(Function):
    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.x_shape = x.shape
        return x[self.index]

    def backward(self, gy):
        xp = _xp(gy)
        gx = xp.zeros(self.x_shape, dtype=gy.dtype)
        return backend.scatter_add(gx, self.index, gy)


class ReverseSteps(Function):
    """The steps of (N, T, ...) in reverse order (a contiguous copy); its gradient flips back."""

    def forward(self, x):
        return _xp(x).ascontiguousarray(x[:, ::-1])

    def backward(self, gy):
        return _xp(gy).ascontiguousarray(gy[:, ::-1])


class Concat(Function):
    """Arrays joined along the last axis."""

    def forward(self, *xs):
        self.sizes = [x.shape[-1] for x in xs]
        return _xp(xs[0]).concatenate(xs, axis=-1)

    def backward(self, gy):
        xp = _xp(gy)
        bounds = np.cumsum(self.sizes)[:-1].tolist()
        return tuple(xp.ascontiguousarray(part) for part in xp.split(gy, bounds, axis=-1))


def reverse_steps(x):
    return ReverseSteps()(x)


def concat(*xs):
    return Concat()(*xs)


def reshape(x, shape):
    if x.shape == tuple(shape):
        return as_variable(x)
    return Reshape(shape)(x)


def transpose(x, axes=None):
    return Transpose(axes)(x)


def sum(x, axis=None, keepdims=False):
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    data = x.data if isinstance(x, Variable) else x
    count = data.size if axis is None else int(np.prod([data.shape[a] for a in np.atleast_1d(axis)]))
    return Sum(axis, keepdims)(x) * (1.0 / count)


def broadcast_to(x, shape):
    return BroadcastTo(shape)(x)


def matmul(a, b):
    return MatMul()(a, b)


def get_item(x, index):
    return GetItem(index)(x)


def flatten(x):
    return reshape(x, (x.shape[0], -1))


# --------------------------------------------------------------------------- activations

def _erf(x):
    """Error function (Abramowitz & Stegun 7.1.26 refined: |error| < 1.2e-7)."""
    xp = _xp(x)
    # Numerical Recipes erfc, fractional error < 1.2e-7 everywhere.
    z = abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    erfc = t * xp.exp(poly)
    return xp.where(x >= 0, 1.0 - erfc, erfc - 1.0).astype(x.dtype, copy=False)


_ZERO_TILE = 16384


def relu_inplace(y):
    """y = max(y, 0) in place. NumPy's maximum against a scalar takes a loop about five times
    slower than against an array, so a contiguous y is compared with a tile of zeros broadcast
    over its rows (bit-identical results)."""
    xp = _xp(y)
    if xp is not np or y.size < _ZERO_TILE or not y.flags.c_contiguous:
        return xp.maximum(y, 0, out=y)
    zeros = _zero_tile(y.dtype)
    flat = y.reshape(-1)
    whole = flat.size - flat.size % _ZERO_TILE
    rows = flat[:whole].reshape(-1, _ZERO_TILE)
    np.maximum(rows, zeros, out=rows)
    np.maximum(flat[whole:], zeros[:flat.size - whole], out=flat[whole:])
    return y


@functools.cache
def _zero_tile(dtype):
    tile = np.zeros(_ZERO_TILE, dtype=dtype)
    tile.flags.writeable = False
    return tile


# On the GPU each of these is one CuPy kernel (the generic path launches up to four), the bias add
# included: ``y`` is the layer's output, updated in place; ``gz`` the gradient before the activation.
_GPU_ACTIVATE = {"linear": "", "relu": "y = max(y, (T)0);", "sigmoid": "y = (T)0.5 * tanh((T)0.5 * y) + (T)0.5;",
                 "tanh": "y = tanh(y);"}
_GPU_ACTIVATION_GRAD = {"relu": "gz = y > (T)0 ? gy : (T)0;", "sigmoid": "gz = gy * y * ((T)1 - y);",
                        "tanh": "gz = gy * ((T)1 - y * y);"}


def _activate_inplace(y, name, bias=None):
    """Add ``bias`` (broadcast over the rows) and apply an activation to ``y`` in place; only
    activations whose derivative follows from the output."""
    xp = _xp(y)
    if backend.fused(xp) and name in _GPU_ACTIVATE:
        if bias is not None:
            backend.elementwise_kernel(f"cupola_bias_{name}", "T b", "T y", "y += b; " + _GPU_ACTIVATE[name])(bias, y)
        elif name != "linear":
            backend.elementwise_kernel(f"cupola_{name}", "", "T y", _GPU_ACTIVATE[name])(y)
        return y
    if bias is not None:
        y += bias
    if name == "relu":
        relu_inplace(y)
    elif name == "sigmoid":
        y *= 0.5
        xp.tanh(y, out=y)
        y += 1.0
        y *= 0.5
    elif name == "tanh":
        xp.tanh(y, out=y)
    return y


def _activation_grad(gy, y, name):
    """d activation / d input times gy, computed from the activation's output ``y``."""
    if name in _GPU_ACTIVATION_GRAD and backend.fused(_xp(y)):
        return backend.elementwise_kernel(f"cupola_{name}_grad", "T gy, T y", "T gz", _GPU_ACTIVATION_GRAD[name])(gy, y)
    if name == "relu":
        return gy * (y > 0)
    if name == "sigmoid":
        return gy * y * (1.0 - y)
    if name == "tanh":
        return gy * (1.0 - y * y)
    return gy


FUSABLE_ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh")


class ElementwiseActivation(Function):
    def __init__(self, name):
        self.name = name

    def forward(self, x):
        self.y = _activate_inplace(x.copy(), self.name)
        return self.y

    def backward(self, gy):
        return _activation_grad(gy, self.y, self.name)


class LeakyReLU(Function):
    def __init__(self, negative_slope=0.2):
        self.negative_slope = negative_slope

    def forward(self, x):
        return _xp(x).where(x > 0, x, x * self.negative_slope)

    def backward(self, gy):
        return _xp(gy).where(self.inputs[0].data > 0, gy, gy * self.negative_slope)


class ELU(Function):
    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def forward(self, x):
        xp = _xp(x)
        self.y = xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0)))
        return self.y

    def backward(self, gy):
        xp = _xp(gy)
        return xp.where(self.inputs[0].data > 0, gy, gy * (self.y + self.alpha))


class GELU(Function):
    """Exact GELU, x * Phi(x), as Keras' default (approximate=False)."""

    def forward(self, x):
        self.cdf = 0.5 * (1.0 + _erf(x * (1.0 / math.sqrt(2.0))))
        return x * self.cdf

    def backward(self, gy):
        x = self.inputs[0].data
        pdf = _xp(x).exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
        return gy * (self.cdf + x * pdf)


class Softmax(Function):
    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        xp = _xp(x)
        y = x - x.max(axis=self.axis, keepdims=True)
        xp.exp(y, out=y)
        y /= y.sum(axis=self.axis, keepdims=True)
        self.y = y
        return y

    def backward(self, gy):
        y = self.y
        gx = y * gy
        gx -= y * gx.sum(axis=self.axis, keepdims=True)
        return gx


class LogSoftmax(Function):
    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        self.y = _log_softmax(x, self.axis)
        return self.y

    def backward(self, gy):
        return gy - _xp(gy).exp(self.y) * gy.sum(axis=self.axis, keepdims=True)


def _log_softmax(x, axis=-1):
    xp = _xp(x)
    z = x - x.max(axis=axis, keepdims=True)
    z -= xp.log(xp.exp(z).sum(axis=axis, keepdims=True))
    return z


def relu(x):
    return ElementwiseActivation("relu")(x)


def sigmoid(x):
    return ElementwiseActivation("sigmoid")(x)


def tanh(x):
    return ElementwiseActivation("tanh")(x)


def leaky_relu(x, negative_slope=0.2):
    return LeakyReLU(negative_slope)(x)


def elu(x, alpha=1.0):
    return ELU(alpha)(x)


def gelu(x):
    return GELU()(x)


def softmax(x, axis=-1):
    return Softmax(axis)(x)


def log_softmax(x, axis=-1):
    return LogSoftmax(axis)(x)


def linear_activation(x):
    return as_variable(x)


# --------------------------------------------------------------------------- dense

class Linear(Function):
    """y = activation(x @ W + b) for x of any rank (the last axis is contracted)."""

    def __init__(self, activation="linear"):
        self.activation = activation

    def forward(self, x, W, b=None):
        x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
        y = x2 @ W
        _activate_inplace(y, self.activation, b)
        self.y = y
        return y.reshape(x.shape[:-1] + (W.shape[1],)) if x.ndim != 2 else y

    def backward(self, gy):
        x, W = self.inputs[0].data, self.inputs[1].data
        gz = _activation_grad(gy.reshape(self.y.shape), self.y, self.activation)
        x2 = x.reshape(-1, x.shape[-1])
        gx = (gz @ W.T).reshape(x.shape) if self.needs_grad(0) else None
        gW = x2.T @ gz
        if len(self.inputs) == 3:
            return gx, gW, sum_rows(gz)
        return gx, gW


def linear(x, W, b=None, activation="linear"):
    if b is None:
        return Linear(activation)(x, W)
    return Linear(activation)(x, W, b)


# --------------------------------------------------------------------------- convolution

def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def same_padding(size, kernel, stride):
    """(before, after) padding for "same" like TensorFlow: output = ceil(size / stride)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_output_length(size, kernel, stride, padding):
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def _pad_hw(x, pads, value=0.0):
    (pt, pb), (pl, pr) = pads
    if pt == pb == pl == pr == 0:
        return x
    xp = _xp(x)
    return xp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=value)


def _unpad_hw(gx, pads):
    (pt, pb), (pl, pr) = pads
    return gx[:, pt:gx.shape[1] - pb, pl:gx.shape[2] - pr, :]


# The GPU's col2im: each input cell (s, h, w, c) sums the column gradients of the windows that
# cover it (a gather: no atomics), with the positions in the GEMM's row order of Conv2D._grid.
_GPU_COL2IM = """
    const int c = i % C; const int w = i / C % W; const int h = i / (C * W) % H; const int s = i / (C * W * H);
    T acc = 0;
    for (int ki = 0; ki < KH; ki++) {
        const int top = h - ki;
        if (top < 0 || top % SH != 0 || top / SH >= RG * ROWS) continue;
        const int oh = top / SH;
        for (int kj = 0; kj < KW; kj++) {
            const int left = w - kj;
            if (left < 0 || left % SW != 0 || left / SW >= CG * COLS) continue;
            const int ow = left / SW;
            const long pos = (((long)(oh % RG) * CG + ow % CG) * N + s) * ROWS * COLS + (oh / RG) * COLS + ow / CG;
            acc += dcols[(pos * KH + ki) * KW * C + kj * C + c];
        }
    }
    gx = acc;
"""


class Conv2D(Function):
    """Channels-last 2-D convolution by im2col + one GEMM; kernel (KH, KW, C, F).

    The GEMM's rows are the output positions in the order of ``_grid`` = (RG, CG, rows, cols):
    position order (row group, column group, sample, row, col) for output row = row group +
    RG * row and column = column group + CG * col. A plain convolution has one group of each
    (the usual (N, OH, OW) order); Conv2DMaxPool asks for 2 x 2 groups, one per cell of its
    pooling windows, so that the pooling reads four contiguous blocks.
    """

    def __init__(self, strides=1, padding="valid", activation="linear"):
        self.strides = pair(strides)
        self.padding = padding
        self.activation = activation

    def _grid(self, oh, ow):
        return 1, 1, oh, ow

    def forward(self, x, W, b=None):
        y = self._convolve(x, W, b)
        _activate_inplace(y, self.activation)
        self.y = y
        _, _, rows, cols = self.grid
        return y.reshape(x.shape[0], rows, cols, W.shape[3])

    def _convolve(self, x, W, b):
        """The linear convolution of x at the positions of ``_grid``, as (positions, F)."""
        kh, kw, c, f = W.shape
        sh, sw = self.strides
        n, h, w, _ = x.shape
        if self.padding == "same":
            pads = (same_padding(h, kh, sh), same_padding(w, kw, sw))
        else:
            pads = ((0, 0), (0, 0))
        self.pads = pads
        xp_ = _pad_hw(x, pads)
        oh = (xp_.shape[1] - kh) // sh + 1
        ow = (xp_.shape[2] - kw) // sw + 1
        # Few input channels (images): columns as (KH*KW*C, positions), gathered by one copy from a
        # strided view whose inner axis runs along an image row, instead of short windows of C values.
        # The bias rides in the GEMM as a row of ones: its column of the output is large next to
        # the few-row product, and a separate broadcast add would be one more pass over it.
        self.transposed = c <= 4 and not (kh == kw == 1 and sh == sw == 1)
        self.grid = row_groups, col_groups, rows, cols = self._grid(oh, ow)
        self.padded_shape = xp_.shape
        xp = _xp(x)
        k = kh * kw * c
        self.bias_in_cols = self.transposed and b is not None
        # A 1x1 stride-1 convolution over every position takes the input itself as its columns.
        self.pointwise = not self.transposed and kh == kw == 1 and sh == sw == 1 and self.grid == (1, 1, oh, ow)
        # Every window of every group: (row group, column group, sample, row, col, KH, KW, C).
        sN, sH, sW, sC = xp_.strides
        windows = xp.lib.stride_tricks.as_strided(
            xp_, shape=(row_groups, col_groups, n, rows, cols, kh, kw, c),
            strides=(sH * sh, sW * sw, sN, sH * sh * row_groups, sW * sw * col_groups, sH, sW, sC))
        if self.transposed:
            columns = xp.empty((k + self.bias_in_cols, row_groups * col_groups * n * rows * cols), dtype=x.dtype)
            xp.copyto(columns[:k].reshape(kh, kw, c, row_groups, col_groups, n, rows, cols),
                      windows.transpose(5, 6, 7, 0, 1, 2, 3, 4))
            if self.bias_in_cols:
                columns[k] = 1.0
                weights = xp.concatenate([W.reshape(k, f), b.reshape(1, f).astype(W.dtype, copy=False)])
            else:
                weights = W.reshape(k, f)
            y = columns.T @ weights
        elif self.pointwise:
            columns = xp_.reshape(-1, c)
            y = columns @ W.reshape(c, f)
        else:
            # copyto into a fresh contiguous block gathers the windows several times faster
            # than reshape() of the strided view does.
            columns = xp.empty(windows.shape, dtype=x.dtype)
            xp.copyto(columns, windows)
            columns = columns.reshape(-1, k)
            y = columns @ W.reshape(k, f)
        self.cols = columns
        if b is not None and not self.bias_in_cols:
            y += b
        return y

    def _window(self, padded, i, j, row_group, col_group):
        """The (N, rows, cols) slice of the padded input under kernel offset (i, j) for a group."""
        sh, sw = self.strides
        row_groups, col_groups, rows, cols = self.grid
        top, left = i + sh * row_group, j + sw * col_group
        down, across = sh * row_groups, sw * col_groups
        return padded[:, top:top + down * (rows - 1) + 1:down, left:left + across * (cols - 1) + 1:across, :]

    def backward(self, gy):
        f = self.inputs[1].shape[3]
        return self._backward_linear(_activation_grad(gy.reshape(-1, f), self.y, self.activation))

    def _backward_linear(self, gz):
        """Gradients from gz, the gradient of the linear output in the GEMM's row order."""
        W = self.inputs[1].data
        kh, kw, c, f = W.shape
        gW = (self.cols if self.transposed else self.cols.T) @ gz
        gb = None
        if self.bias_in_cols:  # the row of ones gave the bias gradient, the column sums of gz
            gW, gb = gW[:-1], gW[-1]
        gW = gW.reshape(W.shape)
        gx = None
        if self.needs_grad(0):
            n = self.padded_shape[0]
            row_groups, col_groups, rows, cols = self.grid
            kernels = backend.cpu_kernels(_xp(gz))
            if self.pointwise:
                gx = (gz @ W.reshape(c, f).T).reshape(self.padded_shape)
            elif backend.fused(_xp(gz)) or kernels:  # one GEMM to the columns' gradient, one kernel gathers it
                gx = _xp(gz).empty(self.padded_shape, dtype=gz.dtype)
                sizes = (n, *self.padded_shape[1:], kh, kw, *self.strides, row_groups, col_groups, rows, cols)
                weights = W.reshape(kh * kw * c, f).T
                # On the CPU the columns' gradient goes where the columns were (gW has read them).
                dcols = np.matmul(gz, weights, out=self.cols) if kernels and not self.transposed else gz @ weights
                if kernels:
                    kernels.col2im(dcols, gx, *sizes)
                else:
                    col2im = backend.elementwise_kernel(
                        "cupola_col2im", "raw T dcols, int32 N, int32 H, int32 W, int32 C, int32 KH, int32 KW, "
                        "int32 SH, int32 SW, int32 RG, int32 CG, int32 ROWS, int32 COLS", "T gx", _GPU_COL2IM)
                    col2im(dcols, *(np.int32(v) for v in sizes), gx)
            else:
                # col2im one kernel offset at a time: each GEMM writes a contiguous block of
                # positions that is added into its strided window of the input gradient.
                xp = _xp(gz)
                gx = xp.zeros(self.padded_shape, dtype=gz.dtype)
                for i in range(kh):
                    for j in range(kw):
                        part = (gz @ W[i, j].T).reshape(row_groups, col_groups, n, rows, cols, c)
                        for r in range(row_groups):
                            for g in range(col_groups):
                                self._window(gx, i, j, r, g)[...] += part[r, g]
            gx = _unpad_hw(gx, self.pads)
        self.cols = None
        if len(self.inputs) == 3:
            return gx, gW, sum_rows(gz) if gb is None else gb
        return gx, gW


# Conv2DMaxPool on the GPU: a window's four cells (row, column) in, the maximum and the three
# comparisons out (then the activation, appended); backward spreads the gradient the same way.
_GPU_MAX_POOL = """
    right_top = c01 > c00; const T top = right_top ? c01 : c00;
    right_bottom = c11 > c10; const T bottom = right_bottom ? c11 : c10;
    lower = bottom > top; y = lower ? bottom : top;
"""
_GPU_MAX_POOL_GRAD = """
    const T low = g * (T)lower; const T high = g - low;
    g01 = high * (T)right_top; g00 = high - g01;
    g11 = low * (T)right_bottom; g10 = low - g11;
"""


class Conv2DMaxPool(Conv2D):
    """Conv2D, its activation and a 2x2 max-pool with stride 2 as one function.

    The activations that fuse are non-decreasing, so max-pooling the linear output and
    activating the pooled values gives the same outputs and gradients as the layers one after
    the other, with the activation and its gradient on a quarter of the values. Positions the
    pool drops (the last row or column of an odd size) are not computed. Pooling takes the
    maximum of each window's two columns, then of its two rows: the first maximum of the window
    in row-major order (as MaxPool2D and PyTorch), ties included. The comparisons are kept as
    three boolean masks, so the backward pass reads neither the linear output nor the maxima.

    On an image input (the transposed im2col, whose input gradient is rarely wanted) the GEMM
    yields the four cells of every window as four contiguous blocks, so the passes over the
    largest tensor of the network are whole-array operations. Elsewhere the plain order is
    kept: the col2im of the input gradient then adds contiguous rows.
    """

    def _grid(self, oh, ow):
        if oh < 2 or ow < 2:
            raise ValueError(f"max-pool 2x2 of a {oh}x{ow} convolution output")
        if self.transposed:
            return 2, 2, oh // 2, ow // 2
        return 1, 1, 2 * (oh // 2), 2 * (ow // 2)

    def _cells(self, z):
        """(2, 2, N, OH, OW, F): each window cell's values, from an array in the GEMM's order."""
        row_groups, _, rows, cols = self.grid
        n, f = self.padded_shape[0], z.shape[-1]
        if row_groups == 2:
            return z.reshape(2, 2, n, rows, cols, f)
        return z.reshape(n, rows // 2, 2, cols // 2, 2, f).transpose(2, 4, 0, 1, 3, 5)

    @staticmethod
    def _cell_strides(cells):
        """A cells view's strides in elements, for the CPU kernels: (cell row, cell column, sample, row, col)."""
        return tuple(stride // cells.itemsize for stride in cells.strides[:5])

    def forward(self, x, W, b=None):
        xp = _xp(x)
        z = self._convolve(x, W, b)
        cells = self._cells(z)
        kernels = backend.cpu_kernels(xp)
        if kernels:  # one pass for the pooling and its masks; the activation on a quarter of the values
            self.y = y = xp.empty(cells.shape[2:], dtype=z.dtype)
            self.right = xp.empty(y.shape, dtype=bool), xp.empty(y.shape, dtype=bool)
            self.lower = xp.empty(y.shape, dtype=bool)
            kernels.max_pool(z, self._cell_strides(cells), *y.shape, y, *self.right, self.lower)
            return _activate_inplace(y, self.activation)
        if backend.fused(xp):  # one kernel: the pooling, its masks and the activation
            pool = backend.elementwise_kernel(
                f"cupola_max_pool_{self.activation}", "T c00, T c01, T c10, T c11",
                "T y, bool right_top, bool right_bottom, bool lower", _GPU_MAX_POOL + _GPU_ACTIVATE[self.activation])
            self.y, *masks = pool(cells[0, 0], cells[0, 1], cells[1, 0], cells[1, 1])
            self.right, self.lower = tuple(masks[:2]), masks[2]
            return self.y
        top = xp.maximum(cells[0, 0], cells[0, 1])
        bottom = xp.maximum(cells[1, 0], cells[1, 1])
        # Where the later cell is strictly larger it takes the gradient (first maximum otherwise).
        self.right = (cells[0, 1] > cells[0, 0], cells[1, 1] > cells[1, 0])
        self.lower = bottom > top
        y = xp.maximum(top, bottom, out=top)
        _activate_inplace(y, self.activation)
        self.y = y
        return y

    def backward(self, gy):
        xp = _xp(gy)
        gz = xp.empty((4 * gy.size // gy.shape[-1], gy.shape[-1]), dtype=gy.dtype)
        cells = self._cells(gz)
        kernels = backend.cpu_kernels(xp)
        if backend.fused(xp):  # one kernel: the activation's gradient spread to the four cells
            grad = _GPU_ACTIVATION_GRAD.get(self.activation, "gz = gy;").replace("gz =", "const T g =", 1)
            spread = backend.elementwise_kernel(
                f"cupola_max_pool_grad_{self.activation}", "T gy, T y, bool right_top, bool right_bottom, bool lower",
                "T g00, T g01, T g10, T g11", grad + _GPU_MAX_POOL_GRAD)
            spread(gy, self.y, *self.right, self.lower, cells[0, 0], cells[0, 1], cells[1, 0], cells[1, 1])
        elif kernels:  # the activation's gradient, then one pass spreads it to the four cells
            g = xp.ascontiguousarray(_activation_grad(gy, self.y, self.activation))
            kernels.max_pool_grad(g, *self.right, self.lower, gz, self._cell_strides(cells), *g.shape)
        else:
            gy = _activation_grad(gy, self.y, self.activation)
            bottom = xp.multiply(gy, self.lower)
            top = gy - bottom
            for row, (g, right) in enumerate(zip((top, bottom), self.right)):
                xp.multiply(g, right, out=cells[row, 1])
                xp.subtract(g, cells[row, 1], out=cells[row, 0])
        self.right = self.lower = None
        return self._backward_linear(gz)


def conv2d(x, W, b=None, strides=1, padding="valid", activation="linear"):
    if b is None:
        return Conv2D(strides, padding, activation)(x, W)
    return Conv2D(strides, padding, activation)(x, W, b)


def conv2d_max_pool(x, W, b=None, strides=1, padding="valid", activation="linear"):
    """max_pool2d(activation(conv2d(x, W, b)), 2) for an activation in FUSABLE_ACTIVATIONS."""
    if b is None:
        return Conv2DMaxPool(strides, padding, activation)(x, W)
    return Conv2DMaxPool(strides, padding, activation)(x, W, b)


# --------------------------------------------------------------------------- pooling

class _Pool2D(Function):
    """Pooling as a loop over the window offsets: each offset is one strided slice of the
    (padded) input, so the work is a few whole-array ufuncs and no window copy."""

    def __init__(self, pool_size=2, strides=None, padding="valid"):
        self.pool_size = pair(pool_size)
        self.strides = pair(strides) if strides is not None else self.pool_size
        self.padding = padding

    def _setup(self, x, pad_value):
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        _, h, w, _ = x.shape
        if self.padding == "same":
            pads = (same_padding(h, ph, sh), same_padding(w, pw, sw))
        else:
            pads = ((0, 0), (0, 0))
        self.pads = pads
        padded = _pad_hw(x, pads, value=pad_value)
        oh = (padded.shape[1] - ph) // sh + 1
        ow = (padded.shape[2] - pw) // sw + 1
        self.padded_shape = padded.shape
        self.slices = [(slice(None), slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))
                       for i in range(ph) for j in range(pw)]
        # Windows that tile the input without overlap can be written back instead of added.
        self.disjoint = sh >= ph and sw >= pw
        return padded

    def _grad_input(self, parts):
        xp = _xp(parts[0])
        gx = xp.zeros(self.padded_shape, dtype=parts[0].dtype)
        for s, part in zip(self.slices, parts):
            if self.disjoint:
                gx[s] = part
            else:
                gx[s] += part
        return _unpad_hw(gx, self.pads)


class MaxPool2D(_Pool2D):
    def forward(self, x):
        xp = _xp(x)
        padded = self._setup(x, -xp.inf)
        y = padded[self.slices[0]].copy()
        for s in self.slices[1:]:
            xp.maximum(y, padded[s], out=y)
        self.padded, self.y = padded, y
        return y

    def backward(self, gy):
        xp = _xp(gy)
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        if (ph, pw) == (sh, sw) and self.pads == ((0, 0), (0, 0)):
            gx = self._tiled_backward(gy, xp)
            if gx is not None:
                return gx
        taken = None
        parts = []
        # Each output's gradient goes to the first maximum of its window (as PyTorch), even with ties.
        for s in self.slices:
            hit = self.padded[s] == self.y
            if taken is None:
                taken = hit.copy()
            else:
                hit &= ~taken
                taken |= hit
            parts.append(xp.multiply(gy, hit))
        return self._grad_input(parts)

    def _tiled_backward(self, gy, xp):
        """Windows that tile the input: one broadcast comparison over a reshaped view, then ties
        resolved in place to the first maximum of each window in row-major order (as the general
        path and PyTorch). Ties are common - a ReLU's zeros, and equal positive values wherever
        an image has a flat region - and must not multiply the gradient."""
        (ph, pw) = self.pool_size
        n, oh, ow, c = gy.shape
        x = self.padded[:, :oh * ph, :ow * pw, :]
        hits = x.reshape(n, oh, ph, ow, pw, c) == self.y[:, :, None, :, None, :]
        if ph * pw > 1:
            taken = hits[:, :, 0, :, 0, :].copy()
            for i in range(ph):
                for j in range(pw):
                    if i == j == 0:
                        continue
                    hit = hits[:, :, i, :, j, :]
                    hit &= ~taken
                    taken |= hit
        g = xp.multiply(hits, gy[:, :, None, :, None, :], dtype=gy.dtype).reshape(n, oh * ph, ow * pw, c)
        if g.shape == self.padded_shape:
            return g
        gx = xp.zeros(self.padded_shape, dtype=gy.dtype)
        gx[:, :oh * ph, :ow * pw, :] = g
        return gx


class AvgPool2D(_Pool2D):
    """Average pooling; with "same" padding the padded cells are not counted (as Keras)."""

    def forward(self, x):
        xp = _xp(x)
        padded = self._setup(x, 0.0)
        y = padded[self.slices[0]].copy()
        for s in self.slices[1:]:
            y += padded[s]
        if self.pads == ((0, 0), (0, 0)):
            self.scale = 1.0 / len(self.slices)
        else:
            ones = _pad_hw(xp.ones((1, *x.shape[1:3], 1), dtype=x.dtype), self.pads)
            counts = ones[self.slices[0]].copy()
            for s in self.slices[1:]:
                counts += ones[s]
            self.scale = 1.0 / counts
        y *= self.scale
        return y

    def backward(self, gy):
        g = gy * self.scale
        return self._grad_input([g] * len(self.slices))


class GlobalAvgPool2D(Function):
    def forward(self, x):
        return x.mean(axis=(1, 2))

    def backward(self, gy):
        n, h, w, c = self.inputs[0].shape
        return _xp(gy).broadcast_to((gy * (1.0 / (h * w)))[:, None, None, :], (n, h, w, c))


class GlobalMaxPool(Function):
    """The maximum over every axis between the batch and the channels ((N, steps, C) or (N, H, W, C));
    the gradient goes to each channel's first maximum, as PyTorch's adaptive max pool sends it."""

    def forward(self, x):
        n, c = x.shape[0], x.shape[-1]
        flat = x.reshape(n, -1, c)
        self.first = flat.argmax(axis=1)  # (N, C)
        return flat.max(axis=1)

    def backward(self, gy):
        xp = _xp(gy)
        shape = self.inputs[0].shape
        cells = xp.arange(math.prod(shape[1:-1]))[None, :, None]
        hit = cells == self.first[:, None, :]
        return xp.multiply(hit, gy[:, None, :], dtype=gy.dtype).reshape(shape)


def global_max_pool(x):
    return GlobalMaxPool()(x)


def max_pool2d(x, pool_size=2, strides=None, padding="valid"):
    return MaxPool2D(pool_size, strides, padding)(x)


def avg_pool2d(x, pool_size=2, strides=None, padding="valid"):
    return AvgPool2D(pool_size, strides, padding)(x)


def global_avg_pool2d(x):
    return GlobalAvgPool2D()(x)


# --------------------------------------------------------------------------- attention

class Attention(Function):
    """Scaled dot-product attention over heads: q, k, v shaped (N, H, T, D) give
    ``dropout(softmax(q kᵀ / √D + key_bias)) v``, with the dropout's (already scaled) ``mask`` on
    the weights (N, H, T, T) when one is given, and ``key_bias`` (N, 1, 1, T: a large negative
    number at the keys left out, 0 elsewhere) added to the scores when one is given. One node
    with its own backward: the weights are kept, never recomputed."""

    def __init__(self, mask=None, key_bias=None):
        self.mask, self.key_bias = mask, key_bias

    def forward(self, q, k, v):
        xp = _xp(q)
        scores = q @ k.swapaxes(-1, -2)
        scores *= scores.dtype.type(1.0 / math.sqrt(q.shape[-1]))
        if self.key_bias is not None:
            scores += self.key_bias
        scores -= scores.max(axis=-1, keepdims=True)
        xp.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        self.weights = scores
        self.dropped = scores if self.mask is None else scores * self.mask
        return self.dropped @ v

    def backward(self, gy):
        q, k, v = (var.data for var in self.inputs)
        gv = self.dropped.swapaxes(-1, -2) @ gy
        gw = gy @ v.swapaxes(-1, -2)
        if self.mask is not None:
            gw *= self.mask
        w = self.weights
        gs = w * (gw - (gw * w).sum(axis=-1, keepdims=True))
        gs *= gs.dtype.type(1.0 / math.sqrt(q.shape[-1]))
        return gs @ k, gs.swapaxes(-1, -2) @ q, gv


def attention(q, k, v, rate=0.0, rng=None, key_bias=None):
    """Scaled dot-product attention (see Attention); ``rate`` > 0 drops weights, masks drawn from ``rng``."""
    if not rate:
        return Attention(key_bias=key_bias)(q, k, v)
    dtype = (q.data if isinstance(q, Variable) else q).dtype
    return Attention(dropout_mask((*q.shape[:-1], k.shape[-2]), dtype, rate, rng), key_bias)(q, k, v)


# --------------------------------------------------------------------------- normalisation, dropout, embedding

class BatchNorm(Function):
    """Training-mode batch normalisation over every axis but the last (channels-last).

    weights: None, or a 0/1 weight per position (every axis but the last, e.g. a padding mask
    (N, T)); the statistics then count only the positions weighted 1. Every position is still
    normalised with them (padded ones are left out further on).
    """

    def __init__(self, epsilon=1e-3, weights=None):
        self.epsilon = epsilon
        self.weights = weights

    def forward(self, x, gamma, beta):
        xp = _xp(x)
        x2 = x.reshape(-1, x.shape[-1])
        if self.weights is None:
            self.w, self.n = None, x2.shape[0]
            self.mean = x2.mean(axis=0)
            xc = x2 - self.mean
            self.var = (xc * xc).mean(axis=0)
        else:
            self.w = self.weights.reshape(-1, 1).astype(x.dtype)
            self.n = xp.maximum(self.w.sum(), 1.0)  # on the device: no host read in the step
            self.mean = sum_rows(x2 * self.w) / self.n
            xc = x2 - self.mean
            self.var = sum_rows(xc * xc * self.w) / self.n
        self.inv_std = 1.0 / xp.sqrt(self.var + self.epsilon)
        self.xhat = xc * self.inv_std
        return (self.xhat * gamma + beta).reshape(x.shape)

    def backward(self, gy):
        gamma = self.inputs[1].data
        g2 = gy.reshape(self.xhat.shape)
        gbeta = sum_rows(g2)
        ggamma = sum_rows(g2 * self.xhat)
        gx = None
        if self.needs_grad(0):
            # The statistics' share of each position's gradient goes to the positions they counted.
            share = (self.xhat * ggamma + gbeta) * (1.0 / self.n)
            gx = (gamma * self.inv_std) * (g2 - (share if self.w is None else share * self.w))
            gx = gx.reshape(gy.shape)
        return gx, ggamma, gbeta


class FixedBatchNorm(Function):
    """Inference-mode batch normalisation with given mean and variance."""

    def __init__(self, mean, var, epsilon=1e-3):
        self.mean, self.var, self.epsilon = mean, var, epsilon

    def forward(self, x, gamma, beta):
        xp = _xp(x)
        self.inv_std = 1.0 / xp.sqrt(self.var + self.epsilon)
        self.xhat = (x - self.mean) * self.inv_std
        return self.xhat * gamma + beta

    def backward(self, gy):
        gamma = self.inputs[1].data
        axes = tuple(range(gy.ndim - 1))
        gx = gy * (gamma * self.inv_std) if self.needs_grad(0) else None
        return gx, (gy * self.xhat).sum(axis=axes), gy.sum(axis=axes)


class LayerNorm(Function):
    """Normalise over the last axis, then scale and shift."""

    def __init__(self, epsilon=1e-3):
        self.epsilon = epsilon

    def forward(self, x, gamma, beta):
        xp = _xp(x)
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=-1, keepdims=True)
        self.inv_std = 1.0 / xp.sqrt(var + self.epsilon)
        self.xhat = xc * self.inv_std
        return self.xhat * gamma + beta

    def backward(self, gy):
        gamma = self.inputs[1].data
        axes = tuple(range(gy.ndim - 1))
        ggamma = (gy * self.xhat).sum(axis=axes)
        gbeta = gy.sum(axis=axes)
        gx = None
        if self.needs_grad(0):
            g = gy * gamma
            d = g.shape[-1]
            gx = self.inv_std * (g - g.mean(axis=-1, keepdims=True)
                                 - self.xhat * (g * self.xhat).sum(axis=-1, keepdims=True) * (1.0 / d))
        return gx, ggamma, gbeta


class Dropout(Function):
    def __init__(self, mask):
        self.mask = mask  # already scaled by 1 / (1 - rate)

    def forward(self, x):
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask


class Embedding(Function):
    def __init__(self, indices):
        self.indices = indices

    def forward(self, W):
        return W[self.indices]

    def backward(self, gy):
        W = self.inputs[0]
        xp = _xp(gy)
        gW = xp.zeros(W.shape, dtype=gy.dtype)
        return backend.scatter_add(gW, self.indices.ravel(), gy.reshape(-1, W.shape[1]))


def batch_norm(x, gamma, beta, epsilon=1e-3, weights=None):
    return BatchNorm(epsilon, weights)(x, gamma, beta)


def fixed_batch_norm(x, gamma, beta, mean, var, epsilon=1e-3):
    return FixedBatchNorm(mean, var, epsilon)(x, gamma, beta)


def layer_norm(x, gamma, beta, epsilon=1e-3):
    return LayerNorm(epsilon)(x, gamma, beta)


def dropout_mask(shape, dtype, rate, rng):
    """Inverted dropout's mask: 0 where dropped, 1 / (1 - rate) where kept, drawn from ``rng``."""
    keep = 1.0 - rate
    return (rng.random(shape, dtype=np.float32) < keep).astype(dtype) * dtype.type(1.0 / keep)


def dropout(x, rate, rng):
    """Inverted dropout with masks drawn from ``rng`` (a backend random Generator)."""
    data = x.data if isinstance(x, Variable) else x
    return Dropout(dropout_mask(data.shape, data.dtype, rate, rng))(x)


class Flip(Function):
    """Each image (N, H, W, C) mirrored along the axes its masks say: ``rows`` (N,) bools flip it
    top to bottom, ``columns`` (N,) left to right (either may be None). Its own inverse, so the
    gradient is flipped back the same way."""

    def __init__(self, rows, columns):
        self.rows, self.columns = rows, columns

    def _apply(self, a):
        xp = _xp(a)
        if self.rows is not None:
            a = xp.where(self.rows[:, None, None, None], a[:, ::-1], a)
        if self.columns is not None:
            a = xp.where(self.columns[:, None, None, None], a[:, :, ::-1], a)
        return a

    def forward(self, x):
        return self._apply(x)

    def backward(self, gy):
        return self._apply(gy)


class Translate(Function):
    """Each image (N, H, W, C) shifted by whole pixels, ``dy`` (N,) down and ``dx`` (N,) right,
    the uncovered border filled with zeros. The gradient is shifted back (the adjoint): what left
    the image gets no gradient."""

    def __init__(self, dy, dx):
        self.dy, self.dx = dy, dx

    @staticmethod
    def _shift(a, dy, dx):
        xp = _xp(a)
        n, h, w = a.shape[:3]
        rows = xp.arange(h)[None, :] - dy[:, None]  # (N, H): the source row of each output row
        columns = xp.arange(w)[None, :] - dx[:, None]
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((columns >= 0) & (columns < w))[:, None, :]
        out = a[xp.arange(n)[:, None, None], xp.clip(rows, 0, h - 1)[:, :, None], xp.clip(columns, 0, w - 1)[:, None, :]]
        return out * inside[..., None].astype(a.dtype)

    def forward(self, x):
        return self._shift(x, self.dy, self.dx)

    def backward(self, gy):
        return self._shift(gy, -self.dy, -self.dx)


def _coins(rng, n):
    """``n`` fair coin flips from ``rng`` (a backend Generator or CounterRandom), as bools."""
    return rng.random((n,), dtype=np.float32) < 0.5


def random_flip(x, rng, horizontal, vertical):
    """Mirror each image left to right (``horizontal``) and/or top to bottom (``vertical``), each
    with probability 1/2, drawn per image from ``rng``."""
    n = x.shape[0]
    return Flip(_coins(rng, n) if vertical else None, _coins(rng, n) if horizontal else None)(x)


def random_translation(x, rng, max_dy, max_dx):
    """Shift each image by a whole number of pixels drawn uniformly from [-max_dy, max_dy] down and
    [-max_dx, max_dx] right (per image, from ``rng``), filling with zeros."""
    n = x.shape[0]

    def shifts(limit):
        u = rng.random((n,), dtype=np.float32)  # in [0, 1): 2 * limit + 1 equally likely integers
        return (u * np.float32(2 * limit + 1)).astype(np.int64) - limit

    return Translate(shifts(max_dy), shifts(max_dx))(x)


def embedding(indices, W):
    return Embedding(indices)(W)


# --------------------------------------------------------------------------- recurrent layers

def _sig(x):
    return _activate_inplace(x, "sigmoid")


def _time_major(x):
    """(N, T, F) -> contiguous (T, N, F)."""
    return _xp(x).ascontiguousarray(x.transpose(1, 0, 2))


class _Recurrent(Function):
    def __init__(self, return_sequences=False):
        self.return_sequences = return_sequences

    def _output(self, hs):
        # hs: (T + 1, N, H) with hs[0] the initial state.
        if self.return_sequences:
            return hs[1:].transpose(1, 0, 2)
        return hs[-1]

    def _grad_h(self, gy, t, T):
        if self.return_sequences:
            return gy[:, t]
        return gy if t == T - 1 else None

    def _through_time(self, gy, step):
        """Backpropagation through time: ``step(t, gh)`` gets the gradient reaching h_t (from the
        output and from step t + 1) and returns the gradient it passes on to h_(t-1)."""
        T = self.hs.shape[0] - 1
        gh = _xp(gy).zeros_like(self.hs[0])
        for t in reversed(range(T)):
            g_out = self._grad_h(gy, t, T)
            if g_out is not None:
                gh = gh + g_out
            gh = step(t, gh)

    def _gradients(self, gz_all, W, gu_all=None):
        """(gx, gW, gU, gb) from the gradient of the input projection's output (gz_all, (T, N, G))
        and of the recurrent projection's (gu_all; the same unless given, as in a GRU, whose
        bias gradient then holds one row for each)."""
        gx, gW, gz2 = self._input_grads(gz_all, self.x_tm, W)
        gu2 = gz2 if gu_all is None else gu_all.reshape(gz2.shape)
        gU = self.hs[:-1].reshape(-1, self.hs.shape[2]).T @ gu2
        gb = sum_rows(gz2) if gu_all is None else _xp(gz2).stack([sum_rows(gz2), sum_rows(gu2)])
        return gx, gW, gU, gb

    def _input_grads(self, gz_all, x_tm, W):
        T, N, F = x_tm.shape
        gz2 = gz_all.reshape(T * N, -1)
        gW = x_tm.reshape(T * N, F).T @ gz2
        gx = (gz2 @ W.T).reshape(T, N, F).transpose(1, 0, 2) if self.needs_grad(0) else None
        return gx, gW, gz2


class SimpleRNN(_Recurrent):
    def __init__(self, activation="tanh", return_sequences=False):
        super().__init__(return_sequences)
        self.activation = activation

    def forward(self, x, W, U, b):
        xp = _xp(x)
        n, T, _ = x.shape
        H = U.shape[0]
        self.x_tm = _time_major(x)
        xw = (self.x_tm.reshape(T * n, -1) @ W + b).reshape(T, n, H)
        hs = xp.zeros((T + 1, n, H), dtype=x.dtype)
        for t in range(T):
            z = xw[t]
            z += hs[t] @ U
            hs[t + 1] = _activate_inplace(z, self.activation)
        self.hs = hs
        return self._output(hs)

    def backward(self, gy):
        W, U = self.inputs[1].data, self.inputs[2].data
        xp = _xp(gy)
        hs = self.hs
        gz_all = xp.empty_like(hs[1:])

        def step(t, gh):
            gz_all[t] = _activation_grad(gh, hs[t + 1], self.activation)
            return gz_all[t] @ U.T

        self._through_time(gy, step)
        return self._gradients(gz_all, W)


# The GPU's LSTM step, forward and backward, as one kernel each over the (N, H) cells (Chainer's
# lstm_fwd / lstm_bwd shape): the gate rows (N, 4H) are read and written by index, gate k of cell
# (row, col) at row * 4H + k * H + col. Sigmoid as 0.5 tanh(z / 2) + 0.5, like the CPU path.
_LSTM_STEP = """
    const int row = i / H, col = i % H, at = row * 4 * H + col;
    const T gi = (T)0.5 * tanh((T)0.5 * (xg[at] + r[at])) + (T)0.5;
    const T gf = (T)0.5 * tanh((T)0.5 * (xg[at + H] + r[at + H])) + (T)0.5;
    const T gg = tanh(xg[at + 2 * H] + r[at + 2 * H]);
    const T go = (T)0.5 * tanh((T)0.5 * (xg[at + 3 * H] + r[at + 3 * H])) + (T)0.5;
    act[at] = gi; act[at + H] = gf; act[at + 2 * H] = gg; act[at + 3 * H] = go;
    c = gf * c_prev + gi * gg;
    tanh_c = tanh(c);
    h = go * tanh_c;
"""
_LSTM_STEP_GRAD = """
    const int row = i / H, col = i % H, at = row * 4 * H + col;
    const T gi = act[at], gf = act[at + H], gg = act[at + 2 * H], go = act[at + 3 * H];
    const T dc = gc + gh * go * ((T)1 - tanh_c * tanh_c);
    gz[at] = dc * gg * gi * ((T)1 - gi);
    gz[at + H] = dc * c_prev * gf * ((T)1 - gf);
    gz[at + 2 * H] = dc * gi * ((T)1 - gg * gg);
    gz[at + 3 * H] = gh * tanh_c * go * ((T)1 - go);
    gc = dc * gf;
"""


class LSTM(_Recurrent):
    """Keras LSTM: gates (i, f, c, o), kernel (F, 4H), recurrent kernel (H, 4H), bias (4H)."""

    def forward(self, x, W, U, b):
        xp = _xp(x)
        n, T, _ = x.shape
        H = U.shape[0]
        self.x_tm = _time_major(x)
        if backend.fused(xp):
            return self._forward_fused(xp, W, U, b, n, T, H)
        # sigmoid(z) = 0.5 * tanh(z / 2) + 0.5: halve the sigmoid gates' pre-activations up front
        # (input projection and recurrent kernel), so each step needs one tanh over all four gates.
        half = xp.full(4 * H, 0.5, dtype=x.dtype)
        half[2 * H:3 * H] = 1.0
        shift = xp.where(half == 1.0, 0.0, 0.5).astype(x.dtype)
        gates = (self.x_tm.reshape(T * n, -1) @ W + b).reshape(T, n, 4 * H)
        gates *= half
        U_half = U * half
        hs = xp.zeros((T + 1, n, H), dtype=x.dtype)
        cs = xp.zeros((T + 1, n, H), dtype=x.dtype)
        tanh_c = xp.empty((T, n, H), dtype=x.dtype)
        for t in range(T):
            z = gates[t]
            z += hs[t] @ U_half
            xp.tanh(z, out=z)
            z *= half
            z += shift
            i, f, g, o = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
            c = cs[t + 1]
            xp.multiply(f, cs[t], out=c)
            c += i * g
            xp.tanh(c, out=tanh_c[t])
            xp.multiply(o, tanh_c[t], out=hs[t + 1])
        self.gates, self.hs, self.cs, self.tanh_c = gates, hs, cs, tanh_c
        return self._output(hs)

    def _forward_fused(self, xp, W, U, b, n, T, H):
        dtype = W.dtype
        pre = (self.x_tm.reshape(T * n, -1) @ W + b).reshape(T, n, 4 * H)
        gates = xp.empty_like(pre)  # the activations, for the backward pass
        hs = xp.zeros((T + 1, n, H), dtype=dtype)
        cs = xp.zeros((T + 1, n, H), dtype=dtype)
        tanh_c = xp.empty((T, n, H), dtype=dtype)
        step = backend.elementwise_kernel("cupola_lstm_step", "raw T xg, raw T r, T c_prev, int32 H",
                                          "raw T act, T c, T tanh_c, T h", _LSTM_STEP)
        for t in range(T):
            step(pre[t], hs[t] @ U, cs[t], np.int32(H), gates[t], cs[t + 1], tanh_c[t], hs[t + 1])
        self.gates, self.hs, self.cs, self.tanh_c = gates, hs, cs, tanh_c
        return self._output(hs)

    def backward(self, gy):
        W, U = self.inputs[1].data, self.inputs[2].data
        xp = _xp(gy)
        gates, hs, cs, tanh_c = self.gates, self.hs, self.cs, self.tanh_c
        T, n, H4 = gates.shape
        H = H4 // 4
        if backend.fused(xp):
            return self._backward_fused(xp, gy, W, U, T, H)
        i, f, g, o = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:3 * H], gates[..., 3 * H:]
        # Every factor that does not depend on the incoming gradient, for all steps at once, so the
        # loop over time is a handful of operations per step.
        to_c = o * (1.0 - tanh_c * tanh_c)                      # dh -> dc
        from_c = xp.empty((T, n, 3, H), dtype=gates.dtype)     # dc -> d(pre-activation) of i, f, g
        from_c[:, :, 0] = g * i * (1.0 - i)
        from_c[:, :, 1] = cs[:-1] * f * (1.0 - f)
        from_c[:, :, 2] = i * (1.0 - g * g)
        from_h = tanh_c * o * (1.0 - o)                         # dh -> d(pre-activation) of o
        gz_all = xp.empty_like(gates)
        gz4 = gz_all.reshape(T, n, 4, H)
        gh = xp.zeros_like(hs[0])
        gc = xp.zeros_like(hs[0])
        for t in reversed(range(T)):
            g_out = self._grad_h(gy, t, T)
            if g_out is not None:
                gh += g_out
            gc += gh * to_c[t]
            xp.multiply(gc[:, None, :], from_c[t], out=gz4[t, :, :3])
            xp.multiply(gh, from_h[t], out=gz4[t, :, 3])
            gc *= f[t]
            gh = gz_all[t] @ U.T
        return self._gradients(gz_all, W)

    def _backward_fused(self, xp, gy, W, U, T, H):
        hs, cs = self.hs, self.cs
        gz_all = xp.empty_like(self.gates)
        gc = xp.zeros_like(hs[0])
        kernel = backend.elementwise_kernel("cupola_lstm_step_grad", "T gh, raw T act, T c_prev, T tanh_c, int32 H",
                                            "T gc, raw T gz", _LSTM_STEP_GRAD)

        def step(t, gh):
            kernel(gh, self.gates[t], cs[t], self.tanh_c[t], np.int32(H), gc, gz_all[t])
            return gz_all[t] @ U.T

        self._through_time(gy, step)
        return self._gradients(gz_all, W)


# The GPU's GRU step (reset_after), forward and backward, as one kernel each over the (N, H) cells;
# gate k of cell (row, col) at row * 3H + k * H + col (row * 2H + ... for the stored z and r).
_GRU_STEP = """
    const int row = i / H, col = i % H, at = row * 3 * H + col, zat = row * 2 * H + col;
    const T z = (T)0.5 * tanh((T)0.5 * (xw[at] + (hu[at] + b1[col]))) + (T)0.5;
    const T r = (T)0.5 * tanh((T)0.5 * (xw[at + H] + (hu[at + H] + b1[col + H]))) + (T)0.5;
    zr[zat] = z; zr[zat + H] = r;
    uh = hu[at + 2 * H] + b1[col + 2 * H];
    hh = tanh(r * uh + xw[at + 2 * H]);
    h = hh + z * (h_prev - hh);
"""
_GRU_STEP_GRAD = """
    const int row = i / H, col = i % H, at = row * 3 * H + col, zat = row * 2 * H + col;
    const T z = zr[zat], r = zr[zat + H];
    const T ga_h = gh * ((T)1 - z) * ((T)1 - hh * hh);
    const T ga_z = gh * (h_prev - hh) * z * ((T)1 - z);
    const T ga_r = ga_h * uh * r * ((T)1 - r);
    gx[at] = ga_z; gx[at + H] = ga_r; gx[at + 2 * H] = ga_h;
    gu[at] = ga_z; gu[at + H] = ga_r; gu[at + 2 * H] = ga_h * r;
    carry = gh * z;
"""


class GRU(_Recurrent):
    """Keras GRU with reset_after=True: gates (z, r, h), bias (2, 3H) = input and recurrent bias."""

    def forward(self, x, W, U, b):
        xp = _xp(x)
        n, T, _ = x.shape
        H = U.shape[0]
        self.x_tm = _time_major(x)
        if backend.fused(xp):
            return self._forward_fused(xp, W, U, b, n, T, H)
        xw = (self.x_tm.reshape(T * n, -1) @ W + b[0]).reshape(T, n, 3 * H)
        hs = xp.zeros((T + 1, n, H), dtype=x.dtype)
        self.zr = xp.empty((T, n, 2 * H), dtype=x.dtype)
        self.hh = xp.empty((T, n, H), dtype=x.dtype)
        self.uh = xp.empty((T, n, H), dtype=x.dtype)
        for t in range(T):
            hu = hs[t] @ U + b[1]
            zr = self.zr[t]
            xp.add(xw[t, :, :2 * H], hu[:, :2 * H], out=zr)
            _sig(zr)
            z, r = zr[:, :H], zr[:, H:]
            self.uh[t] = hu[:, 2 * H:]
            hh = self.hh[t]
            xp.multiply(r, hu[:, 2 * H:], out=hh)
            hh += xw[t, :, 2 * H:]
            xp.tanh(hh, out=hh)
            # h = z * h_prev + (1 - z) * hh = hh + z * (h_prev - hh)
            hs[t + 1] = hh + z * (hs[t] - hh)
        self.hs = hs
        return self._output(hs)

    def _forward_fused(self, xp, W, U, b, n, T, H):
        dtype = W.dtype
        xw = (self.x_tm.reshape(T * n, -1) @ W + b[0]).reshape(T, n, 3 * H)
        hs = xp.zeros((T + 1, n, H), dtype=dtype)
        self.zr = xp.empty((T, n, 2 * H), dtype=dtype)
        self.hh = xp.empty((T, n, H), dtype=dtype)
        self.uh = xp.empty((T, n, H), dtype=dtype)
        step = backend.elementwise_kernel("cupola_gru_step", "raw T xw, raw T hu, raw T b1, T h_prev, int32 H",
                                          "raw T zr, T hh, T uh, T h", _GRU_STEP)
        for t in range(T):
            step(xw[t], hs[t] @ U, b[1], hs[t], np.int32(H), self.zr[t], self.hh[t], self.uh[t], hs[t + 1])
        self.hs = hs
        return self._output(hs)

    def backward(self, gy):
        W, U = self.inputs[1].data, self.inputs[2].data
        xp = _xp(gy)
        hs = self.hs
        T, n, H = self.hh.shape
        if backend.fused(xp):
            return self._backward_fused(xp, gy, W, U, T, n, H)
        gx_all = xp.empty((T, n, 3 * H), dtype=gy.dtype)
        gu_all = xp.empty((T, n, 3 * H), dtype=gy.dtype)
        gh = xp.zeros_like(hs[0])
        for t in reversed(range(T)):
            g_out = self._grad_h(gy, t, T)
            if g_out is not None:
                gh = gh + g_out
            z, r = self.zr[t, :, :H], self.zr[t, :, H:]
            hh, uh, h_prev = self.hh[t], self.uh[t], hs[t]
            ga_h = gh * (1.0 - z) * (1.0 - hh * hh)
            ga_z = gh * (h_prev - hh) * z * (1.0 - z)
            ga_r = ga_h * uh * r * (1.0 - r)
            gx_all[t, :, :H] = ga_z
            gx_all[t, :, H:2 * H] = ga_r
            gx_all[t, :, 2 * H:] = ga_h
            gu = gu_all[t]
            gu[:, :2 * H] = gx_all[t, :, :2 * H]
            gu[:, 2 * H:] = ga_h * r
            gh = gh * z + gu @ U.T
        return self._gradients(gx_all, W, gu_all)

    def _backward_fused(self, xp, gy, W, U, T, n, H):
        hs = self.hs
        gx_all = xp.empty((T, n, 3 * H), dtype=gy.dtype)
        gu_all = xp.empty((T, n, 3 * H), dtype=gy.dtype)
        carry = xp.empty_like(hs[0])
        kernel = backend.elementwise_kernel("cupola_gru_step_grad", "T gh, raw T zr, T hh, T uh, T h_prev, int32 H",
                                            "raw T gx, raw T gu, T carry", _GRU_STEP_GRAD)

        def step(t, gh):
            kernel(gh, self.zr[t], self.hh[t], self.uh[t], hs[t], np.int32(H), gx_all[t], gu_all[t], carry)
            return carry + gu_all[t] @ U.T

        self._through_time(gy, step)
        return self._gradients(gx_all, W, gu_all)


def simple_rnn(x, W, U, b, activation="tanh", return_sequences=False):
    return SimpleRNN(activation, return_sequences)(x, W, U, b)


def lstm(x, W, U, b, return_sequences=False):
    return LSTM(return_sequences)(x, W, U, b)


def gru(x, W, U, b, return_sequences=False):
    return GRU(return_sequences)(x, W, U, b)


# --------------------------------------------------------------------------- losses (mean over every element)

class MeanSquaredError(Function):
    def forward(self, y, t):
        self.diff = y - t
        return (self.diff * self.diff).mean()

    def backward(self, gy):
        return self.diff * (gy * (2.0 / self.diff.size)), None


class MeanAbsoluteError(Function):
    def forward(self, y, t):
        self.diff = y - t
        return abs(self.diff).mean()

    def backward(self, gy):
        return _xp(gy).sign(self.diff) * (gy * (1.0 / self.diff.size)), None


class Huber(Function):
    def __init__(self, delta=1.0):
        self.delta = delta

    def forward(self, y, t):
        xp = _xp(y)
        self.diff = y - t
        a = abs(self.diff)
        quad = xp.minimum(a, self.delta)
        return (0.5 * quad * quad + self.delta * (a - quad)).mean()

    def backward(self, gy):
        xp = _xp(gy)
        return xp.clip(self.diff, -self.delta, self.delta) * (gy * (1.0 / self.diff.size)), None


# The GPU's sparse softmax-cross-entropy forward, one thread per row of C logits, as the CPU's
# _log_softmax: z = x - max, log_p = z - log(sum(exp(z))); nll = -log_p[label].
_GPU_SOFTMAX_CROSS_ENTROPY = """
    const long base = (long)i * C;
    T peak = x[base];
    for (int k = 1; k < C; k++) { peak = max(peak, x[base + k]); }
    T total = 0;
    for (int k = 0; k < C; k++) { total += exp(x[base + k] - peak); }
    const T shift = log(total);
    for (int k = 0; k < C; k++) { log_p[base + k] = (x[base + k] - peak) - shift; }
    nll = -log_p[base + labels[i]];
"""


def _weighted_sum(values, weights):
    """sum(values) or, with per-row weights, sum(values * weights)."""
    return values.sum() if weights is None else (values * weights).sum()


def _weigh_rows(g, weights):
    """Scale each row of the gradient ``g`` (rows on the first axis) by its weight, in place."""
    if weights is not None:
        g *= weights.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype, copy=False)
    return g


class SoftmaxCrossEntropy(Function):
    """Fused softmax + cross-entropy from logits; ``t`` is one-hot, or integer labels when sparse.
    ``weights`` (one per row of logits, e.g. class weights): the mean of the weighted losses (Keras'
    sample weights, summed over the batch and divided by its size)."""

    def __init__(self, sparse=False, weights=None):
        self.sparse = sparse
        self.weights = weights

    def forward(self, x, t):
        xp = _xp(x)
        c = x.shape[-1]
        x2 = x.reshape(-1, c)
        m = x2.shape[0]
        if self.sparse and backend.fused(xp):  # one kernel, a thread per row: log-softmax and its picked loss
            self.labels = t.reshape(-1).astype(np.int64, copy=False)
            self.log_p = xp.empty_like(x2)
            kernel = backend.elementwise_kernel("cupola_softmax_cross_entropy", "raw T x, raw int64 labels, int32 C",
                                                "raw T log_p, T nll", _GPU_SOFTMAX_CROSS_ENTROPY)
            _, nll = kernel(xp.ascontiguousarray(x2), self.labels, np.int32(c), self.log_p, xp.empty(m, dtype=x2.dtype))
            return _weighted_sum(nll, self.weights) * (1.0 / m)
        self.log_p = _log_softmax(x2)
        if self.sparse:
            self.labels = t.reshape(-1).astype(np.int64, copy=False)
            picked = self.log_p[xp.arange(m), self.labels]
            return -_weighted_sum(picked, self.weights) * (1.0 / m)
        self.t2 = t.reshape(-1, c)
        if self.weights is None:
            return -(self.t2 * self.log_p).sum() * (1.0 / m)
        return -_weighted_sum((self.t2 * self.log_p).sum(axis=1), self.weights) * (1.0 / m)

    def backward(self, gy):
        xp = _xp(gy)
        m = self.log_p.shape[0]
        if self.sparse and backend.fused(xp):  # one kernel: (softmax - one-hot) * gy / m
            kernel = backend.elementwise_kernel(
                "cupola_softmax_cross_entropy_grad", "T log_p, raw int64 labels, raw T gy, T scale, int32 C", "T gx",
                "const int row = i / C; const int col = i % C; const T hit = labels[row] == col ? (T)1 : (T)0;"
                "gx = (exp(log_p) - hit) * gy[0] * scale;")
            dtype = self.log_p.dtype
            gx = kernel(self.log_p, self.labels, xp.asarray(gy, dtype=dtype).reshape(1), dtype.type(1.0 / m),
                        np.int32(self.log_p.shape[1]))
            return _weigh_rows(gx, self.weights).reshape(self.inputs[0].shape), None
        gx = xp.exp(self.log_p)
        if self.sparse:
            gx[xp.arange(m), self.labels] -= 1.0
        else:
            # p * sum(t) - t: exact for soft labels too; p - t for one-hot rows.
            gx *= self.t2.sum(axis=1, keepdims=True)
            gx -= self.t2
        gx *= gy * (1.0 / m)
        return _weigh_rows(gx, self.weights).reshape(self.inputs[0].shape), None


class CrossEntropy(Function):
    """Cross-entropy on probabilities (clipped to [eps, 1 - eps] like Keras); ``weights`` as in
    SoftmaxCrossEntropy."""

    def __init__(self, sparse=False, epsilon=1e-7, weights=None):
        self.sparse = sparse
        self.epsilon = epsilon
        self.weights = weights

    def forward(self, p, t):
        xp = _xp(p)
        c = p.shape[-1]
        self.p2 = xp.clip(p.reshape(-1, c), self.epsilon, 1.0 - self.epsilon)
        m = self.p2.shape[0]
        if self.sparse:
            self.labels = t.reshape(-1).astype(np.int64, copy=False)
            return -_weighted_sum(xp.log(self.p2[xp.arange(m), self.labels]), self.weights) * (1.0 / m)
        self.t2 = t.reshape(-1, c)
        if self.weights is None:
            return -(self.t2 * xp.log(self.p2)).sum() * (1.0 / m)
        return -_weighted_sum((self.t2 * xp.log(self.p2)).sum(axis=1), self.weights) * (1.0 / m)

    def backward(self, gy):
        xp = _xp(gy)
        p = self.inputs[0].data.reshape(self.p2.shape)
        m = self.p2.shape[0]
        inside = (p > self.epsilon) & (p < 1.0 - self.epsilon)
        if self.sparse:
            gx = xp.zeros_like(self.p2)
            rows = xp.arange(m)
            gx[rows, self.labels] = -1.0 / self.p2[rows, self.labels]
        else:
            gx = -self.t2 / self.p2
        gx *= inside
        gx *= gy * (1.0 / m)
        return _weigh_rows(gx, self.weights).reshape(self.inputs[0].shape), None


class SigmoidCrossEntropy(Function):
    """Binary cross-entropy from logits, stable for large |x|; ``weights`` one per sample (row)."""

    def __init__(self, weights=None):
        self.weights = weights

    def forward(self, x, t):
        xp = _xp(x)
        self.t = t
        loss = xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-abs(x)))
        return loss.mean() if self.weights is None else _weigh_rows(loss, self.weights).mean()

    def backward(self, gy):
        x = self.inputs[0].data
        p = _activate_inplace(x.copy(), "sigmoid")
        return _weigh_rows((p - self.t) * (gy * (1.0 / x.size)), self.weights), None


class BinaryCrossEntropy(Function):
    """Binary cross-entropy on probabilities (clipped to [eps, 1 - eps] like Keras); ``weights`` one
    per sample (row)."""

    def __init__(self, epsilon=1e-7, weights=None):
        self.epsilon = epsilon
        self.weights = weights

    def forward(self, p, t):
        xp = _xp(p)
        self.t = t
        self.pc = xp.clip(p, self.epsilon, 1.0 - self.epsilon)
        loss = t * xp.log(self.pc) + (1.0 - t) * xp.log1p(-self.pc)
        return -(loss.mean() if self.weights is None else _weigh_rows(loss, self.weights).mean())

    def backward(self, gy):
        p = self.inputs[0].data
        pc, t = self.pc, self.t
        gx = (pc - t) / (pc * (1.0 - pc))
        gx *= (p > self.epsilon) & (p < 1.0 - self.epsilon)
        gx *= gy * (1.0 / p.size)
        return _weigh_rows(gx, self.weights), None


def mean_squared_error(y, t):
    return MeanSquaredError()(y, t)


def mean_absolute_error(y, t):
    return MeanAbsoluteError()(y, t)


def huber(y, t, delta=1.0):
    return Huber(delta)(y, t)


def softmax_cross_entropy(x, t, sparse=False, weights=None):
    return SoftmaxCrossEntropy(sparse, weights=weights)(x, t)


def cross_entropy(p, t, sparse=False, weights=None):
    return CrossEntropy(sparse, weights=weights)(p, t)


def sigmoid_cross_entropy(x, t, weights=None):
    return SigmoidCrossEntropy(weights)(x, t)


def binary_cross_entropy(p, t, weights=None):
    return BinaryCrossEntropy(weights=weights)(p, t)
