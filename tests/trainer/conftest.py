"""Shared helpers for the engine tests: the backend parametrisation and a numerical gradient check."""
import numpy as np
import pytest

from trainer import backend
from trainer.core import Variable


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module of each backend; the CuPy run is skipped where no GPU is visible."""
    if request.param == "cupy":
        if not backend.gpu_available():
            pytest.skip("CuPy or a CUDA device is not available")
        backend.set_device("gpu")
        try:
            yield backend.xp()
        finally:
            backend.set_device("cpu")
    else:
        yield np


def numerical_gradient(f, arrays, index, eps=1e-6):
    """Central differences of the scalar f(*arrays) with respect to arrays[index]."""
    x = arrays[index]
    host = np.ascontiguousarray(backend.to_host(x), dtype=np.float64)
    grad = np.zeros_like(host)
    flat = host.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        arrays[index] = backend.to_device(host.copy())
        plus = float(backend.to_host(f(*arrays)))
        flat[i] = old - eps
        arrays[index] = backend.to_device(host.copy())
        minus = float(backend.to_host(f(*arrays)))
        flat[i] = old
        grad.reshape(-1)[i] = (plus - minus) / (2 * eps)
    arrays[index] = x
    return grad


def check_gradients(fn, *arrays, wrt=None, rtol=1e-5, atol=1e-6, seed=0):
    """Assert that backward of ``fn`` (Variables -> Variable) matches central differences.

    The output is contracted with a fixed random tensor so every output element's gradient
    path is exercised. ``wrt`` lists the indices of the differentiable inputs (default all).
    """
    wrt = range(len(arrays)) if wrt is None else wrt
    arrays = list(arrays)
    variables = [Variable(a) if i in wrt else Variable(a, requires_grad=False) for i, a in enumerate(arrays)]
    y = fn(*variables)
    weights = backend.to_device(np.random.default_rng(seed).standard_normal(y.shape))

    def scalar(*raw):
        return (fn(*[Variable(r, requires_grad=False) for r in raw]).data * weights).sum()

    y.backward(weights)
    for i in wrt:
        expected = numerical_gradient(scalar, arrays, i)
        actual = backend.to_host(variables[i].grad) if variables[i].grad is not None else np.zeros_like(expected)
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")


@pytest.fixture(name="check_gradients")
def check_gradients_fixture():
    """The numerical gradient check, as a fixture (tests/trainer is not a package)."""
    return check_gradients
