import numpy as np
import pytest

from trainer import Sequential, layers
from trainer.inspection import permutation_importance
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
