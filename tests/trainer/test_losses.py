"""Losses by Keras name: values, options, label alignment and the fused logits path."""
import numpy as np
import pytest

from trainer import losses
from trainer.core import Variable


def value(loss, y_true, y_pred, logits=None):
    return float(losses.get(loss)(np.asarray(y_true), Variable(np.asarray(y_pred, dtype=np.float64)), logits).data)


def test_it_computes_regression_losses_as_means():
    y, p = [[1.0, 2.0], [3.0, 4.0]], [[1.5, 2.0], [2.0, 6.0]]
    assert value("mse", y, p) == pytest.approx((0.25 + 0 + 1 + 4) / 4)
    assert value("mean_squared_error", y, p) == value("mse", y, p)
    assert value("mae", y, p) == pytest.approx((0.5 + 0 + 1 + 2) / 4)
    assert value("huber", y, p) == pytest.approx((0.125 + 0 + 0.5 + 1.5) / 4)
    assert value({"type": "huber", "delta": 2.0}, y, p) == pytest.approx((0.125 + 0 + 0.5 + 2.0) / 4)


def test_it_aligns_flat_targets_with_a_single_output_column():
    assert value("mse", [1.0, 2.0, 3.0], [[1.0], [2.0], [5.0]]) == pytest.approx(4 / 3)


def test_its_cross_entropies_agree_between_probabilities_and_logits():
    logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([0, 2])
    expected = -np.log(probs[[0, 1], labels]).mean()
    assert value("sparse_categorical_crossentropy", labels, probs) == pytest.approx(expected)
    assert value("sparse_categorical_crossentropy", labels, logits, logits=True) == pytest.approx(expected)
    assert value("categorical_crossentropy", np.eye(3)[labels], probs) == pytest.approx(expected)
    assert value({"type": "categorical_crossentropy", "from_logits": True}, np.eye(3)[labels], logits) == \
        pytest.approx(expected)


def test_its_binary_cross_entropy_clips_probabilities_like_keras():
    assert value("binary_crossentropy", [[1.0]], [[0.0]]) == pytest.approx(-np.log(1e-7), rel=1e-6)
    x = np.array([[-30.0], [0.0], [30.0]])
    y = np.array([[1.0], [1.0], [0.0]])
    expected = np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x))))
    assert value({"type": "binary_crossentropy", "from_logits": True}, y, x) == pytest.approx(expected)


def test_it_round_trips_configs_and_rejects_unknown_losses_and_options():
    for config in ("mse", "mae", "huber", "binary_crossentropy", {"type": "huber", "delta": 0.5},
                   {"type": "sparse_categorical_crossentropy", "from_logits": True}):
        assert losses.get(losses.get(config).get_config()).get_config() == losses.get(config).get_config()
    with pytest.raises(ValueError, match="Unknown loss: 'hinge'"):
        losses.get("hinge")
    with pytest.raises(ValueError, match="mse: unknown option"):
        losses.get({"type": "mse", "from_logits": True})


def test_it_marks_which_losses_can_fuse_with_an_output_activation():
    assert losses.get("categorical_crossentropy").fusable_activation == "softmax"
    assert losses.get("sparse_categorical_crossentropy").fusable_activation == "softmax"
    assert losses.get("binary_crossentropy").fusable_activation == "sigmoid"
    assert losses.get("mse").fusable_activation is None
