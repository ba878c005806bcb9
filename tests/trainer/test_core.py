"""The autograd core and the backend: graphs, modes and devices."""
import numpy as np
import pytest

from trainer import backend
from trainer import functions as F
from trainer.core import Config, Function, Variable, no_grad, test_mode, train_mode


def test_it_backpropagates_through_a_diamond_in_generation_order():
    x = Variable(np.array(2.0))
    a = x * x          # 4
    b = F.exp(x) * 0.0 + x * 3.0
    y = a * b + a      # d/dx = 2x * b + a * 3 + 2x
    y.backward()
    assert float(x.grad) == pytest.approx(2 * 2 * 6 + 4 * 3 + 4)


def test_it_frees_intermediate_gradients_unless_asked_to_retain_them():
    x = Variable(np.ones(3))
    h = x * 2.0
    y = F.sum(h * h)
    y.backward()
    assert h.grad is None and x.grad is not None
    x2 = Variable(np.ones(3))
    h2 = x2 * 2.0
    F.sum(h2 * h2).backward(retain_grad=True)
    np.testing.assert_array_equal(h2.grad, [4.0, 4.0, 4.0])


def test_it_skips_gradients_for_constants():
    constant = Variable(np.ones(2), requires_grad=False)
    w = Variable(np.full(2, 3.0))
    F.sum(constant * w).backward()
    assert constant.grad is None
    np.testing.assert_array_equal(w.grad, [1.0, 1.0])


def test_its_modes_are_context_managers_that_restore_the_previous_value():
    assert Config.enable_backprop and Config.train
    with no_grad():
        assert not Config.enable_backprop
        y = Variable(np.ones(1)) * 2.0
        assert y.creator is None
    with test_mode():
        assert not Config.train
        with train_mode():
            assert Config.train
        assert not Config.train
    assert Config.enable_backprop and Config.train


def test_it_supports_python_operators_with_scalars_and_arrays():
    x = Variable(np.array([1.0, 2.0]))
    y = (2.0 - x) / 2.0 + 1.0 / (x + 1.0) - (-x) ** 2
    np.testing.assert_allclose(y.data, (2 - x.data) / 2 + 1 / (x.data + 1) - x.data ** 2)
    assert (x.reshape(2, 1).T @ x.reshape(2, 1)).shape == (1, 1)


def test_a_new_function_needs_only_forward_and_backward():
    class Square(Function):
        def forward(self, x):
            return x * x

        def backward(self, gy):
            return 2 * self.inputs[0].data * gy

    x = Variable(np.array([3.0]))
    Square()(x).backward()
    assert float(x.grad[0]) == 6.0


def test_its_backend_uses_numpy_on_the_cpu():
    assert backend.get_device() == "cpu"
    assert backend.get_array_module(np.ones(1)) is np
    assert backend.get_array_module(Variable(np.ones(1))) is np
    host = backend.to_host(backend.to_device([1, 2]))
    assert isinstance(host, np.ndarray) and host.tolist() == [1, 2]


def test_it_explains_how_to_get_a_gpu_when_none_is_available():
    if backend.gpu_available():
        pytest.skip("a GPU is available here")
    with pytest.raises(backend.DeviceError, match="pip install cupy"):
        backend.set_device("gpu")
    assert backend.get_device() == "cpu"
    with pytest.raises(ValueError, match="device must be 'cpu' or 'gpu'"):
        backend.set_device("tpu")


def test_it_sets_blas_threads():
    assert backend.set_blas_threads(1) == 1
    assert backend.set_blas_threads() >= 1


def test_its_modes_belong_to_the_thread_that_set_them():
    import threading

    seen = []
    with no_grad(), test_mode():
        worker = threading.Thread(target=lambda: seen.append((Config.enable_backprop, Config.train)))
        worker.start()
        worker.join()
    assert seen == [(True, True)]
