"""Weight initializers by Keras name. Each takes (shape, rng, dtype) and returns a host array;
fan in/out follow Keras (the receptive field counts for convolution kernels)."""
import math

import numpy as np


def _fans(shape):
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def zeros(shape, rng, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def ones(shape, rng, dtype=np.float32):
    return np.ones(shape, dtype=dtype)


def glorot_uniform(shape, rng, dtype=np.float32):
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def glorot_normal(shape, rng, dtype=np.float32):
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(shape, rng, math.sqrt(2.0 / (fan_in + fan_out)), dtype)


def he_uniform(shape, rng, dtype=np.float32):
    fan_in, _ = _fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(shape, rng, dtype=np.float32):
    fan_in, _ = _fans(shape)
    return _truncated_normal(shape, rng, math.sqrt(2.0 / fan_in), dtype)


def lecun_normal(shape, rng, dtype=np.float32):
    fan_in, _ = _fans(shape)
    return _truncated_normal(shape, rng, math.sqrt(1.0 / fan_in), dtype)


def random_normal(shape, rng, dtype=np.float32):
    return (rng.standard_normal(shape) * 0.05).astype(dtype)


def random_uniform(shape, rng, dtype=np.float32):
    return rng.uniform(-0.05, 0.05, size=shape).astype(dtype)


def orthogonal(shape, rng, dtype=np.float32):
    rows, cols = math.prod(shape[:-1]), shape[-1]
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return np.ascontiguousarray(q[:rows, :cols].reshape(shape), dtype=dtype)


def _truncated_normal(shape, rng, stddev, dtype):
    # Keras scales by 1/0.8796 so the truncated distribution keeps the requested stddev.
    stddev = stddev / 0.87962566103423978
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2.0
    return (values * stddev).astype(dtype)


INITIALIZERS = {
    "zeros": zeros, "ones": ones,
    "glorot_uniform": glorot_uniform, "glorot_normal": glorot_normal,
    "he_uniform": he_uniform, "he_normal": he_normal, "lecun_normal": lecun_normal,
    "random_normal": random_normal, "random_uniform": random_uniform, "orthogonal": orthogonal,
}

NAMES = tuple(INITIALIZERS)


def get(name):
    if name not in INITIALIZERS:
        raise ValueError(f"Unknown initializer: {name!r}. Expected one of {', '.join(NAMES)}.")
    return INITIALIZERS[name]
