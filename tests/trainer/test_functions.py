"""Every differentiable operation: forward values and a float64 numerical gradient check,
run on each backend (NumPy always, CuPy where a GPU is visible)."""
import numpy as np
import pytest

from trainer import backend
from trainer import functions as F
from trainer.core import Variable, no_grad


def rand(xp, *shape, low=-1.0, high=1.0, seed=0):
    values = np.random.default_rng(seed).uniform(low, high, size=shape)
    return backend.to_device(values.astype(np.float64))


ELEMENTWISE = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b * b + 1.0),
    "neg": lambda a, b: -a + b,
    "pow": lambda a, b: (a * a + 1.0) ** 1.5 + b,
    "exp": lambda a, b: F.exp(a) * b,
    "log": lambda a, b: F.log(a * a + 1.0) + b,
    "abs": lambda a, b: F.absolute(a) * b,
    "matmul": lambda a, b: a @ F.transpose(b),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_it_differentiates_arithmetic(xp, name, check_gradients):
    check_gradients(ELEMENTWISE[name], rand(xp, 3, 4), rand(xp, 3, 4, seed=1))


def test_it_reduces_broadcast_gradients_to_the_operand_shape(xp, check_gradients):
    check_gradients(lambda a, b: a * b + b, rand(xp, 2, 3, 4), rand(xp, 1, 4, seed=1))
    check_gradients(lambda a, b: a / (b * b + 1.0) - b, rand(xp, 2, 3), rand(xp, 3, seed=1))


@pytest.mark.parametrize("op", ["reshape", "transpose", "sum_axis", "sum_keepdims", "broadcast_to", "get_item",
                                "mean"])
def test_it_differentiates_shape_operations(xp, op, check_gradients):
    fns = {
        "reshape": lambda a: F.reshape(a, (4, 6)),
        "transpose": lambda a: F.transpose(a, (2, 0, 1)),
        "sum_axis": lambda a: F.sum(a, axis=(0, 2)),
        "sum_keepdims": lambda a: F.sum(a, axis=1, keepdims=True),
        "broadcast_to": lambda a: F.broadcast_to(F.sum(a, axis=0), (5, 3, 4)),
        "get_item": lambda a: a[1:, ::2],
        "mean": lambda a: F.mean(a, axis=1),
    }
    check_gradients(fns[op], rand(xp, 2, 3, 4))


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "leaky_relu", "elu", "gelu", "softmax", "log_softmax"])
def test_it_differentiates_activations(xp, name, check_gradients):
    x = rand(xp, 4, 5, low=-3, high=3)
    check_gradients(getattr(F, name), x)


def test_its_activations_have_the_expected_values(xp):
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    xd = backend.to_device(x)
    np.testing.assert_allclose(backend.to_host(F.relu(xd).data), np.maximum(x, 0))
    np.testing.assert_allclose(backend.to_host(F.sigmoid(xd).data), 1 / (1 + np.exp(-x)), rtol=1e-12)
    np.testing.assert_allclose(backend.to_host(F.leaky_relu(xd).data), np.where(x > 0, x, 0.2 * x))
    np.testing.assert_allclose(backend.to_host(F.elu(xd).data), np.where(x > 0, x, np.expm1(x)), rtol=1e-12)
    from math import erf
    exact = np.array([v * 0.5 * (1 + erf(v / np.sqrt(2))) for v in x])
    np.testing.assert_allclose(backend.to_host(F.gelu(xd).data), exact, atol=1e-7)
    s = backend.to_host(F.softmax(backend.to_device(np.array([[1000.0, 1000.0, -1000.0]]))).data)
    np.testing.assert_allclose(s, [[0.5, 0.5, 0.0]])


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
def test_it_differentiates_fused_linear(xp, activation, check_gradients):
    check_gradients(lambda x, w, b: F.linear(x, w, b, activation),
                    rand(xp, 5, 4), rand(xp, 4, 3, seed=1), rand(xp, 3, seed=2))


def test_it_applies_linear_to_the_last_axis_of_sequences(xp, check_gradients):
    check_gradients(lambda x, w: F.linear(x, w, None, "tanh"), rand(xp, 2, 3, 4), rand(xp, 4, 2, seed=1))


@pytest.mark.parametrize("kernel,strides,padding", [
    ((3, 3), (1, 1), "valid"), ((3, 3), (1, 1), "same"), ((3, 3), (2, 2), "same"), ((2, 3), (2, 1), "valid"),
    ((1, 1), (1, 1), "valid"), ((4, 4), (2, 2), "same"),
])
def test_it_differentiates_conv2d(xp, kernel, strides, padding, check_gradients):
    check_gradients(lambda x, w, b: F.conv2d(x, w, b, strides, padding, "relu"),
                    rand(xp, 2, 6, 5, 3), rand(xp, *kernel, 3, 2, seed=1), rand(xp, 2, seed=2))


@pytest.mark.parametrize("channels,bias", [(6, True), (3, False), (6, False)])
def test_it_differentiates_conv2d_with_many_channels_or_without_bias(xp, channels, bias, check_gradients):
    # Up to 4 channels the columns are (K, M) and carry the bias as a row of ones; more channels
    # take the window-copy path with a separate bias add.
    x, w = rand(xp, 2, 5, 5, channels), rand(xp, 3, 3, channels, 2, seed=1)
    if bias:
        check_gradients(lambda x, w, b: F.conv2d(x, w, b, 1, "same", "relu"), x, w, rand(xp, 2, seed=2))
    else:
        check_gradients(lambda x, w: F.conv2d(x, w, None, (2, 1), "valid", "tanh"), x, w)


@pytest.mark.parametrize("strides", [1, 2, (1, 2)])
def test_it_differentiates_1x1_conv2d_with_many_channels(xp, strides, check_gradients):
    # Stride 1 takes the input itself as columns; strides above 1 gather the windows like any kernel.
    check_gradients(lambda x, w: F.conv2d(x, w, None, strides, "valid", "tanh"),
                    rand(xp, 2, 5, 6, 6), rand(xp, 1, 1, 6, 3, seed=1))


def test_it_computes_conv2d_like_a_direct_loop():
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 3))
    w = np.random.default_rng(1).standard_normal((3, 3, 3, 4))
    y = F.conv2d(x, w, None, 2, "valid").data
    expected = np.zeros((2, 2, 2, 4))
    for i in range(2):
        for j in range(2):
            patch = x[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3, :]
            expected[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    np.testing.assert_allclose(y, expected, rtol=1e-10)


@pytest.mark.parametrize("pool,strides,padding,size", [
    (2, None, "valid", (6, 6)), (2, None, "valid", (5, 7)), (3, 1, "valid", (5, 5)), (3, 2, "same", (5, 6)),
    (2, None, "same", (5, 5)),
])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_it_differentiates_pooling(xp, kind, pool, strides, padding, size, check_gradients):
    fn = F.max_pool2d if kind == "max" else F.avg_pool2d
    check_gradients(lambda x: fn(x, pool, strides, padding), rand(xp, 2, *size, 3))


def test_its_max_pooling_sends_the_gradient_to_one_element_of_a_tie(xp):
    x = Variable(backend.to_device(np.zeros((1, 2, 2, 1))))
    y = F.max_pool2d(x, 2)
    y.backward(backend.to_device(np.ones((1, 1, 1, 1))))
    assert float(backend.to_host(x.grad).sum()) == 1.0


@pytest.mark.parametrize("size", [(4, 4), (5, 5)])
def test_its_max_pooling_after_a_relu_sends_a_positive_tie_to_one_element(xp, size):
    # A flat region of an image gives a convolution equal positive outputs: the ReLU passes them,
    # so the tie is not at zero and each output's gradient must still go to one element only.
    x = Variable(backend.to_device(np.full((2, *size, 3), 0.5)))
    z = F.relu(x)
    y = F.max_pool2d(z, 2)
    y.backward(backend.to_device(np.ones(y.shape)))
    grad = backend.to_host(x.grad)
    assert grad.sum() == y.size
    assert np.array_equal(grad[:, 0:4:2, 0:4:2, :], np.ones((2, 2, 2, 3)))  # the first of each window


# Up to 4 input channels the fused convolution orders its GEMM rows by even and odd columns;
# with more it keeps the plain order. Odd sizes leave a row and a column the pool drops.
FUSED_POOL_CASES = [
    ((2, 7, 6, 2), (3, 3), 1, "valid", "relu"), ((2, 6, 9, 6), (3, 3), 1, "same", "relu"),
    ((2, 9, 8, 3), (2, 3), (2, 1), "same", "tanh"), ((2, 6, 6, 5), (1, 1), 1, "valid", "linear"),
    ((1, 7, 7, 1), (3, 3), 1, "valid", "sigmoid"),
]


@pytest.mark.parametrize("shape,kernel,strides,padding,activation", FUSED_POOL_CASES)
def test_it_differentiates_conv2d_fused_with_max_pooling(xp, shape, kernel, strides, padding, activation,
                                                         check_gradients):
    check_gradients(lambda x, w, b: F.conv2d_max_pool(x, w, b, strides, padding, activation),
                    rand(xp, *shape), rand(xp, *kernel, shape[-1], 3, seed=1), rand(xp, 3, seed=2))


@pytest.mark.parametrize("shape,kernel,strides,padding,activation", FUSED_POOL_CASES)
def test_its_fused_conv2d_and_max_pooling_equal_the_two_one_after_the_other(xp, shape, kernel, strides, padding,
                                                                          activation):
    x = backend.to_host(rand(xp, *shape))
    x[:, :3] = 0.0  # a flat region: equal convolution outputs, ties in every pooling window there
    x = backend.to_device(x)
    w, b = rand(xp, *kernel, shape[-1], 3, seed=1), rand(xp, 3, seed=2)
    results = []
    for fused in (False, True):
        xv, wv, bv = Variable(x), Variable(w), Variable(b)
        if fused:
            y = F.conv2d_max_pool(xv, wv, bv, strides, padding, activation)
        else:
            y = F.max_pool2d(F.conv2d(xv, wv, bv, strides, padding, activation), 2)
        y.backward(backend.to_device(np.random.default_rng(3).standard_normal(y.shape)))
        results.append([backend.to_host(a) for a in (y.data, xv.grad, wv.grad, bv.grad)])
    for separate, fused in zip(*results):
        np.testing.assert_allclose(fused, separate, rtol=1e-12, atol=1e-12)


def test_its_same_average_pooling_ignores_padding(xp):
    x = backend.to_device(np.ones((1, 3, 3, 1)))
    np.testing.assert_allclose(backend.to_host(F.avg_pool2d(x, 2, 2, "same").data), np.ones((1, 2, 2, 1)))


def test_it_differentiates_global_average_pooling(xp, check_gradients):
    check_gradients(F.global_avg_pool2d, rand(xp, 2, 3, 4, 2))


def test_it_differentiates_normalisation(xp, check_gradients):
    x, g, b = rand(xp, 6, 4, low=-2, high=3), rand(xp, 4, seed=1), rand(xp, 4, seed=2)
    check_gradients(lambda x, g, b: F.batch_norm(x, g, b, 1e-3), x, g, b)
    check_gradients(lambda x, g, b: F.batch_norm(x, g, b, 1e-3), rand(xp, 2, 3, 3, 4), g, b)
    mean, var = rand(xp, 4, seed=3), rand(xp, 4, low=0.5, high=2, seed=4)
    check_gradients(lambda x, g, b: F.fixed_batch_norm(x, g, b, mean, var), x, g, b)
    check_gradients(lambda x, g, b: F.layer_norm(x, g, b), rand(xp, 2, 3, 4), g, b)


def test_it_differentiates_normalisation_over_the_weighted_positions_only(xp, check_gradients):
    x, g, b = rand(xp, 3, 5, 4, low=-2, high=3), rand(xp, 4, seed=1), rand(xp, 4, seed=2)
    mask = backend.to_device(np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=bool))
    check_gradients(lambda x, g, b: F.batch_norm(x, g, b, 1e-3, weights=mask), x, g, b)
    # The statistics are those of the real positions alone, whatever the padded ones hold.
    one, zero = backend.to_device(np.ones(4)), backend.to_device(np.zeros(4))
    host, keep = backend.to_host(x), backend.to_host(mask)
    func = F.BatchNorm(1e-8, weights=mask)
    y = backend.to_host(func(x, one, zero).data)
    np.testing.assert_allclose(backend.to_host(func.mean), host[keep].mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(backend.to_host(func.var), host[keep].var(axis=0), rtol=1e-8)
    np.testing.assert_allclose(y[keep].mean(axis=0), 0, atol=1e-8)
    np.testing.assert_allclose(y[keep].std(axis=0), 1, rtol=1e-6)


def test_it_normalises_a_batch_to_zero_mean_and_unit_variance(xp):
    x = rand(xp, 64, 3, low=5, high=9)
    one, zero = backend.to_device(np.ones(3)), backend.to_device(np.zeros(3))
    y = backend.to_host(F.batch_norm(x, one, zero, 1e-8).data)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(y.std(axis=0), 1, rtol=1e-6)


def test_it_differentiates_dropout_with_a_fixed_mask(xp, check_gradients):
    rng = backend.random_generator(0)
    x = rand(xp, 4, 5)
    mask_fn = F.dropout(Variable(x), 0.5, rng).creator.mask
    assert set(np.unique(backend.to_host(mask_fn))) <= {0.0, 2.0}
    check_gradients(lambda v: F.Dropout(mask_fn)(v), x)


@pytest.mark.parametrize("dropped", [False, True])
def test_it_differentiates_attention_with_and_without_dropped_weights(xp, dropped, check_gradients):
    q, k, v = rand(xp, 2, 3, 4, 5, seed=1), rand(xp, 2, 3, 6, 5, seed=2), rand(xp, 2, 3, 6, 2, seed=3)
    mask = F.attention(Variable(q), Variable(k), Variable(v), 0.4, backend.random_generator(0)).creator.mask
    assert mask.shape == (2, 3, 4, 6) and set(np.unique(backend.to_host(mask))) <= {0.0, 1 / 0.6}
    check_gradients(lambda *qkv: F.Attention(mask if dropped else None)(*qkv), q, k, v)


def test_its_attention_is_softmax_of_scaled_scores_times_values(xp):
    q, k, v = rand(xp, 1, 2, 3, 4, seed=1), rand(xp, 1, 2, 5, 4, seed=2), rand(xp, 1, 2, 5, 3, seed=3)
    y = backend.to_host(F.attention(Variable(q), Variable(k), Variable(v)).data)
    q, k, v = (backend.to_host(a) for a in (q, k, v))
    scores = np.einsum("nhtd,nhsd->nhts", q, k) / 2.0  # √4
    weights = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(y, np.einsum("nhts,nhsd->nhtd", weights, v), rtol=1e-12)


@pytest.mark.parametrize("axes", ["rows", "columns", "both"])
def test_it_differentiates_flips_with_fixed_masks(xp, axes, check_gradients):
    rows = backend.to_device(np.array([True, False, True])) if axes != "columns" else None
    columns = backend.to_device(np.array([False, True, True])) if axes != "rows" else None
    x = rand(xp, 3, 4, 5, 2)
    y = backend.to_host(F.Flip(rows, columns)(Variable(x)).data)
    host = backend.to_host(x)
    expected = host.copy()
    for i in range(3):
        if rows is not None and backend.to_host(rows)[i]:
            expected[i] = expected[i, ::-1]
        if columns is not None and backend.to_host(columns)[i]:
            expected[i] = expected[i, :, ::-1]
    np.testing.assert_array_equal(y, expected)
    check_gradients(lambda v: F.Flip(rows, columns)(v), x)


def test_it_differentiates_translations_by_whole_pixels(xp, check_gradients):
    dy, dx = backend.to_device(np.array([1, 0, -2])), backend.to_device(np.array([-1, 2, 0]))
    x = rand(xp, 3, 4, 5, 2)
    y = backend.to_host(F.Translate(dy, dx)(Variable(x)).data)
    host = backend.to_host(x)
    for i, (down, right) in enumerate(zip([1, 0, -2], [-1, 2, 0], strict=True)):
        expected = np.zeros_like(host[i])
        for r in range(4):
            for c in range(5):
                if 0 <= r - down < 4 and 0 <= c - right < 5:
                    expected[r, c] = host[i, r - down, c - right]
        np.testing.assert_array_equal(y[i], expected)
    check_gradients(lambda v: F.Translate(dy, dx)(v), x)


def test_random_translations_stay_within_their_limits_and_cover_them(xp):
    x = Variable(backend.to_device(np.ones((4000, 3, 3, 1))))
    shift = F.random_translation(x, backend.random_generator(0), 2, 1).creator
    dy, dx = backend.to_host(shift.dy), backend.to_host(shift.dx)
    assert set(dy.tolist()) == {-2, -1, 0, 1, 2} and set(dx.tolist()) == {-1, 0, 1}
    counts = np.bincount(dy + 2)
    assert counts.min() > 0.8 * counts.mean()  # each shift about as likely as another


def test_it_differentiates_embedding_lookups_with_repeated_indices(xp, check_gradients):
    indices = backend.to_device(np.array([[0, 2, 2], [1, 0, 3]]))
    check_gradients(lambda w: F.embedding(indices, w), rand(xp, 4, 3))


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_it_differentiates_recurrent_cells(xp, cell, return_sequences, check_gradients):
    units = 3
    gates = {"simple_rnn": 1, "lstm": 4, "gru": 3}[cell]
    x = rand(xp, 2, 4, 3)
    w = rand(xp, 3, gates * units, seed=1)
    u = rand(xp, units, gates * units, seed=2)
    b = rand(xp, *((2, 3 * units) if cell == "gru" else (gates * units,)), seed=3)
    fn = getattr(F, cell)
    check_gradients(lambda *a: fn(*a, return_sequences=return_sequences), x, w, u, b)


LOSSES = {
    "mse": (F.mean_squared_error, (-1, 1)),
    "mae": (F.mean_absolute_error, (-1, 1)),
    "huber": (lambda y, t: F.huber(y, t, 0.3), (-1, 1)),
    "binary_cross_entropy": (F.binary_cross_entropy, (0.05, 0.95)),
    "sigmoid_cross_entropy": (F.sigmoid_cross_entropy, (-3, 3)),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_it_differentiates_regression_and_binary_losses(xp, name, check_gradients):
    fn, (low, high) = LOSSES[name]
    target = rand(xp, 4, 3, low=0, high=1, seed=5)
    check_gradients(lambda y: fn(y, target), rand(xp, 4, 3, low=low, high=high))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_it_differentiates_cross_entropies(xp, sparse, weighted, check_gradients):
    labels = np.array([0, 2, 1, 2])
    target = backend.to_device(labels if sparse else np.eye(3)[labels])
    weights = backend.to_device(np.array([0.5, 2.0, 0.0, 1.5])) if weighted else None
    check_gradients(lambda x: F.softmax_cross_entropy(x, target, sparse, weights=weights),
                    rand(xp, 4, 3, low=-3, high=3))
    check_gradients(lambda p: F.cross_entropy(p, target, sparse, weights=weights), rand(xp, 4, 3, low=0.05, high=0.95))


@pytest.mark.parametrize("name", ["binary_cross_entropy", "sigmoid_cross_entropy"])
def test_it_differentiates_binary_losses_weighted_by_sample(xp, name, check_gradients):
    fn, (low, high) = LOSSES[name]
    target = backend.to_device((np.arange(8).reshape(4, 2) % 3 == 0).astype(np.float64))
    weights = backend.to_device(np.array([0.5, 2.0, 0.0, 1.5]))
    check_gradients(lambda y: fn(y, target, weights=weights), rand(xp, 4, 2, low=low, high=high))
    unweighted, weighted = fn(rand(xp, 4, 2, low=low, high=high), target), fn(
        rand(xp, 4, 2, low=low, high=high), target, weights=backend.to_device(np.ones(4)))
    assert float(unweighted.data) == pytest.approx(float(weighted.data))  # weights of one change nothing


def test_its_fused_softmax_cross_entropy_is_finite_for_huge_logits(xp):
    logits = backend.to_device(np.array([[1e4, -1e4, 0.0]], dtype=np.float32))
    labels = backend.to_device(np.array([1]))
    x = Variable(logits)
    loss = F.softmax_cross_entropy(x, labels, sparse=True)
    loss.backward()
    assert np.isclose(float(loss.data), 2e4)
    assert np.all(np.isfinite(backend.to_host(x.grad)))


def test_it_records_no_graph_under_no_grad(xp):
    x = Variable(rand(xp, 2, 2))
    with no_grad():
        y = F.relu(x) * 2.0
    assert y.creator is None and not y.requires_grad


def test_it_accumulates_the_gradient_of_a_variable_used_twice(xp):
    x = Variable(backend.to_device(np.array([3.0])))
    y = x * x + x
    y.backward()
    assert float(backend.to_host(x.grad)[0]) == 7.0


@pytest.mark.parametrize("size", [5, 16384, 16384 * 3 + 7])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_its_in_place_relu_equals_maximum_with_zero_bit_for_bit(xp, size, dtype):
    values = np.random.default_rng(size).standard_normal(size).astype(dtype)
    values[::5] = -0.0
    values[3] = np.nan
    y = backend.to_device(values, dtype=dtype)
    expected = backend.to_host(xp.maximum(y, 0))
    assert F.relu_inplace(y) is y
    assert backend.to_host(y).tobytes() == expected.tobytes()
    strided = backend.to_device(values.reshape(-1, 1).repeat(2, axis=1), dtype=dtype)[:, 0]
    F.relu_inplace(strided)
    assert backend.to_host(strided).tobytes() == expected.tobytes()
