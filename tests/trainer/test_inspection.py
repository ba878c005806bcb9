import numpy as np
import pytest

from trainer import Sequential, layers
from trainer.inspection import permutation_importance, saliency
from trainer.metrics import accuracy


class Linear:
    """A model whose outputs are x @ w: the importance of each feature is known in closed form."""

    def __init__(self, w):
        self.w = np.asarray(w, dtype=np.float64)
        self.calls = 0

    def predict(self, x, batch_size=256):
        self.calls += 1
        return (x @ self.w).reshape(-1, 1)


def negative_mse(y, out):
    return -float(np.mean((out.reshape(-1) - y) ** 2))


def test_a_features_importance_is_the_error_its_shuffle_adds():
    # y = x @ w exactly; shuffling column j adds w_j * (x_j[perm] - x_j), whose mean square is 2 w_j^2 var(x_j).
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20000, 3)) * [1.0, 2.0, 1.0]
    w = [1.5, 0.5, 0.0]
    result = permutation_importance(Linear(w), x, x @ w, score=negative_mse, n_repeats=3, seed=0)
    assert result["baseline"] == pytest.approx(0.0, abs=1e-12)
    expected = [2 * 1.5**2 * 1.0, 2 * 0.5**2 * 4.0, 0.0]
    for j, value in enumerate(expected):
        assert result["importances_mean"][str(j)] == pytest.approx(value, rel=0.05, abs=1e-12)
        assert len(result["importances"][str(j)]) == 3
    assert result["importances_std"]["2"] == 0.0


def test_it_shuffles_a_group_with_one_permutation_and_restores_it_after():
    x = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]].astype(np.float32)  # one one-hot block of 4 columns
    seen = []

    class Recorder:
        def predict(self, features, batch_size=256):
            seen.append(features.copy())
            return features[:, :1]

    permutation_importance(Recorder(), x, np.zeros(8), score=negative_mse, groups={"colour": [0, 1, 2, 3]},
                           n_repeats=2, seed=3)
    assert np.array_equal(seen[0], x)
    for shuffled in seen[1:]:
        assert np.array_equal(shuffled.sum(axis=1), np.ones(8))  # still one-hot: the rows moved whole
        assert sorted(map(tuple, shuffled)) == sorted(map(tuple, x))
    assert np.array_equal(x, np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]])  # the caller's array is left alone


def test_the_same_seed_gives_the_same_importances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    y = x @ [1.0, -1.0]
    first = permutation_importance(Linear([1.0, -1.0]), x, y, score=negative_mse, seed=7)
    again = permutation_importance(Linear([1.0, -1.0]), x, y, score=negative_mse, seed=7)
    other = permutation_importance(Linear([1.0, -1.0]), x, y, score=negative_mse, seed=8)
    assert first == again
    assert first["importances"] != other["importances"]


def test_a_trained_classifier_relies_on_the_column_that_decides_the_class():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3)).astype(np.float32)
    y = (x[:, 1] > 0).astype(np.int64)  # only column 1 carries the class
    model = Sequential([layers.Dense(16, activation="relu"), layers.Dense(2, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    model.fit(x[:400], y[:400], epochs=30, batch_size=32, verbose=0, seed=0)
    result = permutation_importance(model, x[400:], y[400:], score=accuracy,
                                    groups={"a": [0], "b": [1], "c": [2]}, seed=0)
    assert result["baseline"] > 0.9
    mean = result["importances_mean"]
    assert mean["b"] > 0.3
    assert abs(mean["a"]) < 0.05 and abs(mean["c"]) < 0.05


@pytest.mark.parametrize("kwargs, message", [
    ({"n_repeats": 0}, "n_repeats must be a positive integer. Received: n_repeats=0"),
    ({"groups": {"g": [5]}}, "group 'g' names feature column 5, but x has 2"),
    ({"groups": {"g": []}}, "group 'g' has no feature columns"),
])
def test_it_rejects_bad_arguments_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        permutation_importance(Linear([1.0, 1.0]), np.ones((4, 2)), np.ones(4), score=negative_mse, **kwargs)


def test_it_rejects_rows_that_do_not_match():
    with pytest.raises(ValueError, match="as many rows. Received: 4 and 3"):
        permutation_importance(Linear([1.0]), np.ones((4, 1)), np.ones(3), score=negative_mse)


# ----------------------------------------------------------------------------- saliency


def _image_model(seed=0):
    """A small CNN with dropout and batch norm, which saliency must read in inference behaviour."""
    model = Sequential([layers.Conv2D(4, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
                        layers.BatchNormalization(), layers.Dropout(0.5), layers.Flatten(),
                        layers.Dense(3, activation="softmax")], seed=seed, dtype="float64")
    model.build((6, 6, 2))
    return model


def test_saliency_is_the_gradient_of_each_rows_class_logit_by_central_differences():
    from tests.trainer.conftest import numerical_gradient
    from trainer.core import no_grad, test_mode

    model = _image_model()
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 2))
    classes = np.array([2, 0])

    def logit(k):
        def f(image):
            with test_mode(), no_grad():
                return model(image[None], logits=True).data[0, k]
        return f

    found = saliency(model, x, classes=classes)
    assert found.shape == x.shape and found.dtype == np.float64
    for i, k in enumerate(classes):
        expected = numerical_gradient(logit(k), [x[i].copy()], 0)
        np.testing.assert_allclose(found[i], expected, rtol=1e-5, atol=1e-7)
    # Without classes, each row's highest output is explained.
    with test_mode(), no_grad():
        top = model(x, logits=True).data.argmax(axis=1)
    np.testing.assert_allclose(saliency(model, x), saliency(model, x, classes=top))


def test_saliency_leaves_the_weights_untouched_and_collects_no_gradient_in_them():
    model = _image_model()
    before = [w.data.copy() for w in model.trainable_weights]
    saliency(model, np.random.default_rng(2).normal(size=(3, 6, 6, 2)), samples=3)
    assert all(w.grad is None and w.requires_grad for w in model.trainable_weights)
    for w, old in zip(model.trainable_weights, before):
        np.testing.assert_array_equal(w.data, old)


def test_smoothgrad_averages_noisy_copies_from_the_seed_alone():
    model = _image_model()
    x = np.random.default_rng(3).normal(size=(2, 6, 6, 2))
    once = saliency(model, x, classes=[1, 1], samples=8, noise=0.2, seed=5)
    np.testing.assert_array_equal(once, saliency(model, x, classes=[1, 1], samples=8, noise=0.2, seed=5))
    assert not np.allclose(once, saliency(model, x, classes=[1, 1]))
    # Other seeds draw other noise, but the mean over many copies settles on the same map.
    many = [saliency(model, x, classes=[1, 1], samples=64, noise=0.2, seed=s) for s in (0, 1)]
    assert np.abs(many[0] - many[1]).mean() < 0.35 * np.abs(many[0]).mean()


def test_saliency_refuses_what_it_cannot_explain():
    model = _image_model()
    x = np.zeros((2, 6, 6, 2))
    with pytest.raises(ValueError, match="one output per row"):
        saliency(model, x, classes=[0])
    with pytest.raises(ValueError, match="from 0 to 2"):
        saliency(model, x, classes=[0, 3])
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        saliency(model, x, samples=0)
    with pytest.raises(ValueError, match="at least one row"):
        saliency(model, np.zeros((0, 6, 6, 2)))


def test_a_trained_cnns_saliency_falls_on_the_pixels_that_decide_the_class():
    # The class is whether the top-left 3x3 corner is brighter than average; the other pixels are noise.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8, 8, 1))
    y = (x[:, :3, :3, 0].mean(axis=(1, 2)) > 0).astype(np.int64)
    model = Sequential([layers.Conv2D(8, 3, padding="same", activation="relu"), layers.Flatten(),
                        layers.Dense(2, activation="softmax")], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:500], y[:500], epochs=15, batch_size=32, verbose=0)
    assert accuracy(y[500:], model.predict(x[500:])) > 0.85
    maps = np.abs(saliency(model, x[500:], samples=4, noise=0.1)).max(axis=-1).mean(axis=0)
    corner = np.zeros((8, 8), dtype=bool)
    corner[:3, :3] = True
    assert maps[corner].mean() > 3 * maps[~corner].mean()


def test_saliency_on_each_backend_matches_the_numpy_float64_maps(xp):
    from trainer import backend

    x = np.random.default_rng(4).normal(size=(5, 6, 6, 2))
    model = Sequential([layers.Conv2D(4, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
                        layers.Flatten(), layers.Dense(3, activation="softmax")], seed=3)
    model.build((6, 6, 2))
    found = saliency(model, x.astype(np.float32), samples=2, noise=0.05)
    assert isinstance(found, np.ndarray) and found.dtype == np.float32  # on the host, whichever the device
    on = "gpu" if xp is not np else "cpu"
    backend.set_device("cpu")
    try:
        reference = Sequential([layers.Conv2D(4, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
                                layers.Flatten(), layers.Dense(3, activation="softmax")], seed=3, dtype="float64")
        reference.build((6, 6, 2))
        expected = saliency(reference, x, samples=2, noise=0.05)
    finally:
        backend.set_device(on)
    np.testing.assert_allclose(found, expected, rtol=2e-3, atol=2e-4)
