"""The compiled CPU kernels (trainer/_cpukernels.c) against the NumPy ufuncs they stand in for:
the same outputs and gradients, NaN included, and no read or write past a buffer given wrong
sizes. Skipped where the extension is not built; the gradient checks of test_functions.py run
through the kernels wherever it is."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from trainer import backend, optimizers
from trainer import functions as F
from trainer.core import Variable

pytestmark = pytest.mark.skipif(backend._cpukernels is None, reason="trainer._cpukernels is not built")
K = backend._cpukernels

# (input shape, kernel, strides, padding, activation): the cell-major layout up to 4 input
# channels, the plain one past them; odd sizes leave a row and a column the pool drops.
POOL_CASES = [
    ((3, 28, 28, 1), (3, 3), 1, "valid", "relu"), ((4, 13, 13, 32), (3, 3), 1, "valid", "relu"),
    ((2, 7, 6, 2), (3, 3), 1, "valid", "sigmoid"), ((2, 6, 9, 6), (3, 3), 1, "same", "tanh"),
    ((2, 9, 8, 3), (2, 3), (2, 1), "same", "linear"), ((2, 11, 10, 5), (3, 2), (1, 2), "valid", "relu"),
]


def _forward_backward(function, x, W, b, kernels, input_grad=True):
    """Outputs and gradients (x, W, b) of a fresh function, with the kernels on or off."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backend, "_fused", kernels)
        assert (backend.cpu_kernels(np) is not None) == kernels
        variables = [Variable(x, requires_grad=input_grad), Variable(W), Variable(b)]
        y = function(*variables)
        y.backward(np.random.default_rng(7).standard_normal(y.shape).astype(x.dtype))
        return [y.data] + [v.grad for v in variables]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,kernel,strides,padding,activation", POOL_CASES)
def test_the_pooled_convolution_gives_the_ufuncs_outputs_and_gradients(dtype, shape, kernel, strides, padding,
                                                                     activation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    x[:, : shape[1] // 3] = 0.0  # a flat region: ties in every pooling window there
    W = (rng.standard_normal((*kernel, shape[-1], 8)) * 0.3).astype(dtype)
    b = rng.standard_normal(8).astype(dtype)
    pooled = lambda *v: F.conv2d_max_pool(*v, strides, padding, activation)
    on, off = (_forward_backward(pooled, x, W, b, kernels) for kernels in (True, False))
    np.testing.assert_array_equal(on[0], off[0])  # the maxima are the same values
    tolerance = {"rtol": 1e-12, "atol": 1e-12} if dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-6}
    for got, expected in zip(on[1:], off[1:]):  # col2im sums its offsets as the ufuncs do; one GEMM, not nine
        np.testing.assert_allclose(got, expected, **tolerance)


@pytest.mark.parametrize("channels", [1, 16])
def test_a_nan_in_a_window_wins_it_as_in_np_maximum(channels):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 8, channels)).astype(np.float32)
    W = rng.standard_normal((1, 1, channels, 4)).astype(np.float32)  # 1x1: a NaN input stays in its cell
    b = np.zeros(4, np.float32)
    for cell in [(0, 0, 0), (0, 1, 0), (1, 2, 3), (1, 3, 3), (0, 5, 6), (1, 7, 7)]:
        x[cell] = np.nan
    pooled = lambda *v: F.conv2d_max_pool(*v, 1, "valid", "linear")
    on, off = (_forward_backward(pooled, x, W, b, kernels) for kernels in (True, False))
    assert np.isnan(on[0]).any()
    np.testing.assert_array_equal(np.isnan(on[0]), np.isnan(off[0]))
    np.testing.assert_array_equal(on[0], off[0])


@pytest.mark.parametrize("shape,kernel,strides,padding", [
    ((2, 9, 9, 6), (3, 3), 1, "valid"), ((2, 10, 7, 5), (3, 2), (2, 1), "same"), ((3, 8, 8, 2), (2, 2), 2, "valid"),
])
def test_the_input_gradient_by_col2im_is_the_ufuncs(shape, kernel, strides, padding):
    rng = np.random.default_rng(2)
    x, W, b = rng.standard_normal(shape), rng.standard_normal((*kernel, shape[-1], 5)), rng.standard_normal(5)
    convolution = lambda *v: F.conv2d(*v, strides, padding, "tanh")
    on, off = (_forward_backward(convolution, x, W, b, kernels) for kernels in (True, False))
    for got, expected in zip(on, off):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_the_cell_major_layout_s_input_gradient_is_the_ufuncs():
    """An image input whose gradient is wanted: col2im over the 2 x 2 groups of positions."""
    rng = np.random.default_rng(3)
    x, W, b = rng.standard_normal((2, 9, 8, 3)), rng.standard_normal((3, 3, 3, 4)), rng.standard_normal(4)
    pooled = lambda *v: F.conv2d_max_pool(*v, 1, "same", "relu")
    on, off = (_forward_backward(pooled, x, W, b, kernels) for kernels in (True, False))
    for got, expected in zip(on, off):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_the_kernels_refuse_sizes_their_buffers_do_not_hold():
    dcols, gx = np.zeros((8, 9 * 2)), np.zeros((1, 4, 4, 2))
    K.col2im(dcols, gx, 1, 4, 4, 2, 3, 3, 1, 1, 1, 1, 2, 4)  # 8 positions: fits
    with pytest.raises(ValueError, match="dcols holds"):
        K.col2im(dcols, gx, 1, 4, 4, 2, 3, 3, 1, 1, 1, 1, 3, 4)
    with pytest.raises(ValueError, match="gx holds"):
        K.col2im(dcols, np.zeros((1, 4, 4, 1)), 1, 4, 4, 2, 3, 3, 1, 1, 1, 1, 2, 4)
    with pytest.raises(ValueError, match="below 1"):
        K.col2im(dcols, gx, 1, 4, 4, 2, 3, 3, 0, 1, 1, 1, 2, 4)
    with pytest.raises(TypeError, match="differ in dtype"):
        K.col2im(dcols.astype(np.float32), gx, 1, 4, 4, 2, 3, 3, 1, 1, 1, 1, 2, 4)
    with pytest.raises(TypeError, match="float32 or float64"):
        K.col2im(dcols.astype(np.int64), gx.astype(np.int64), 1, 4, 4, 2, 3, 3, 1, 1, 1, 1, 2, 4)
    z, y = np.zeros(4 * 6), np.zeros(6)
    masks = [np.zeros(6, bool) for _ in range(3)]
    K.max_pool(z, (12, 6, 6, 6, 6), 1, 1, 1, 6, y, *masks)  # the four cells of one window of six values
    with pytest.raises(ValueError, match="past the end"):
        K.max_pool(z, (12, 7, 6, 6, 6), 1, 1, 1, 6, y, *masks)
    with pytest.raises(ValueError, match="must not be negative"):
        K.max_pool(z, (12, -6, 6, 6, 6), 1, 1, 1, 6, y, *masks)
    with pytest.raises(ValueError, match="y holds"):
        K.max_pool(z, (12, 6, 6, 6, 6), 1, 1, 1, 6, np.zeros(5), *masks)
    with pytest.raises(ValueError, match="past the end"):
        K.max_pool_grad(y, *masks, np.zeros(4 * 6 - 1), (12, 6, 6, 6, 6), 1, 1, 1, 6)
    with pytest.raises(ValueError, match="lower holds"):
        K.max_pool_grad(y, masks[0], masks[1], np.zeros(5, bool), z, (12, 6, 6, 6, 6), 1, 1, 1, 6)


def test_the_kernels_are_off_with_the_fused_kernels_and_never_for_other_arrays(monkeypatch):
    monkeypatch.setattr(backend, "_fused", True)
    assert backend.cpu_kernels(np) is K
    assert backend.cpu_kernels(object()) is None
    monkeypatch.setattr(backend, "_fused", False)
    assert backend.cpu_kernels(np) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer", [lambda: optimizers.Adam(0.01), lambda: optimizers.AdamW(0.003, weight_decay=0.1),
                                       lambda: optimizers.Adam(0.001, beta_1=0.5, beta_2=0.9, epsilon=1e-3)])
def test_adam_s_kernel_steps_exactly_as_its_ufuncs(dtype, optimizer):
    weights = []
    for kernels in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(backend, "_fused", kernels)
            rng = np.random.default_rng(4)
            params = [Variable(rng.standard_normal(shape).astype(dtype)) for shape in [(7, 5), (5,), (3, 3, 2)]]
            opt = optimizer()
            opt.build(params)
            for _ in range(6):
                for p in params:
                    p.grad = rng.standard_normal(p.shape).astype(dtype) * 3
                opt.step()
            weights.append([p.data.copy() for p in params] + [opt.slots["m"].copy(), opt.slots["v"].copy()])
    for got, expected in zip(*weights):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, expected)


def test_adam_s_kernel_refuses_buffers_of_other_sizes_or_types():
    w = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="m holds"):
        K.adam(w, np.zeros(10, np.float32), np.zeros(9, np.float32), np.zeros(10, np.float32), 0.1, 0.9, 0.99, 1e-7)
    with pytest.raises(TypeError, match="differ in dtype"):
        K.adam(w, np.zeros(10), np.zeros(10, np.float32), np.zeros(10, np.float32), 0.1, 0.9, 0.99, 1e-7)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), h=st.integers(2, 9), w=st.integers(2, 9), c=st.integers(1, 7), f=st.integers(1, 5),
       kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 2), sw=st.integers(1, 2),
       padding=st.sampled_from(["valid", "same"]), pooled=st.booleans(),
       activation=st.sampled_from(["linear", "relu", "sigmoid", "tanh"]), seed=st.integers(0, 2**16))
def test_any_small_convolution_gives_the_ufuncs_results(n, h, w, c, f, kh, kw, sh, sw, padding, pooled, activation,
                                                        seed):
    out_h = -(-h // sh) if padding == "same" else (h - kh) // sh + 1
    out_w = -(-w // sw) if padding == "same" else (w - kw) // sw + 1
    assume(out_h >= (2 if pooled else 1) and out_w >= (2 if pooled else 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).round(1)  # rounded: ties in the pooling windows
    W, b = rng.standard_normal((kh, kw, c, f)).round(1), rng.standard_normal(f)
    function = F.conv2d_max_pool if pooled else F.conv2d
    convolution = lambda *v: function(*v, (sh, sw), padding, activation)
    on, off = (_forward_backward(convolution, x, W, b, kernels) for kernels in (True, False))
    np.testing.assert_array_equal(on[0], off[0])
    for got, expected in zip(on[1:], off[1:]):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
