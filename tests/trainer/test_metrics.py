import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer import metrics

# Six rows, binary: TP = 2 (rows 0, 1), FN = 1 (row 2), FP = 1 (row 3), TN = 2 (rows 4, 5).
Y_BINARY = np.array([1, 1, 1, 0, 0, 0])
P_BINARY = np.array([0.9, 0.6, 0.4, 0.7, 0.2, 0.1])

# Three classes: true 0 0 1 1 2 2, predicted 0 1 1 1 2 0.
Y_MULTI = np.array([0, 0, 1, 1, 2, 2])
S_MULTI = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.7, 0.2],
        [0.2, 0.5, 0.3],
        [0.1, 0.2, 0.7],
        [0.5, 0.2, 0.3],
    ]
)


def test_it_cuts_binary_probabilities_at_the_threshold():
    assert metrics.accuracy(Y_BINARY, P_BINARY) == pytest.approx(4 / 6)
    # At 0.65 rows 1 and 2 are missed and row 3 is a false alarm; at 0.3 only row 3 is wrong.
    assert metrics.accuracy(Y_BINARY, P_BINARY.reshape(-1, 1), threshold=0.65) == pytest.approx(3 / 6)
    assert metrics.accuracy(Y_BINARY, P_BINARY, threshold=0.3) == pytest.approx(5 / 6)


def test_it_takes_the_argmax_for_categorical_and_sparse_accuracy():
    one_hot = np.eye(3)[Y_MULTI]
    assert metrics.sparse_categorical_accuracy(Y_MULTI, S_MULTI) == pytest.approx(4 / 6)
    assert metrics.categorical_accuracy(one_hot, S_MULTI) == pytest.approx(4 / 6)


def test_it_counts_binary_precision_recall_and_f1_by_hand():
    assert metrics.precision(Y_BINARY, P_BINARY) == pytest.approx(2 / 3)
    assert metrics.recall(Y_BINARY, P_BINARY) == pytest.approx(2 / 3)
    assert metrics.f1(Y_BINARY, P_BINARY) == pytest.approx(2 / 3)
    assert metrics.precision(Y_BINARY, P_BINARY, threshold=0.65) == pytest.approx(1 / 2)  # TP 1, FP 1
    assert metrics.recall(Y_BINARY, P_BINARY, threshold=0.65) == pytest.approx(1 / 3)
    assert metrics.f1(Y_BINARY, P_BINARY, threshold=0.65) == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))


def test_it_macro_averages_per_class_scores():
    # class 0: predicted {0, 5}, TP 1 -> P 1/2, R 1/2; class 1: predicted {1, 2, 3}, TP 2 -> P 2/3, R 1;
    # class 2: predicted {4}, TP 1 -> P 1, R 1/2.
    p = [1 / 2, 2 / 3, 1.0]
    r = [1 / 2, 1.0, 1 / 2]
    f = [2 * a * b / (a + b) for a, b in zip(p, r)]
    assert metrics.precision(Y_MULTI, S_MULTI, average="macro") == pytest.approx(np.mean(p))
    assert metrics.recall(Y_MULTI, S_MULTI, average="macro") == pytest.approx(np.mean(r))
    assert metrics.f1(Y_MULTI, S_MULTI, average="macro") == pytest.approx(np.mean(f))


def test_it_scores_an_undefined_precision_as_zero():
    assert metrics.precision([1, 0], np.array([0.1, 0.2])) == 0.0


def test_it_refuses_binary_averaging_for_three_classes():
    with pytest.raises(ValueError, match="average='macro'"):
        metrics.precision(Y_MULTI, S_MULTI)


def test_it_builds_the_confusion_matrix_with_true_classes_as_rows():
    matrix = metrics.confusion_matrix(Y_MULTI, S_MULTI, num_classes=4)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[:3, :3] = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert np.array_equal(matrix, expected) and matrix.dtype == np.int64
    assert metrics.confusion_matrix(Y_BINARY, P_BINARY).tolist() == [[2, 1], [1, 2]]


def test_it_ranks_scores_for_roc_auc_by_hand():
    # Positives {0.9, 0.6, 0.4}, negatives {0.7, 0.2, 0.1}: of 9 pairs, the positive wins 7.
    assert metrics.auc(Y_BINARY, P_BINARY) == pytest.approx(7 / 9)


def test_it_counts_a_tied_pair_as_one_half_in_auc():
    # Pairs: (0.5 vs 0.5) tie = 1/2, (0.5 vs 0.1) win = 1, (0.9 vs 0.5) win, (0.9 vs 0.1) win.
    assert metrics.auc([1, 1, 0, 0], np.array([0.5, 0.9, 0.5, 0.1])) == pytest.approx(3.5 / 4)
    assert metrics.auc([1, 0, 1, 0], np.full(4, 0.3)) == pytest.approx(0.5)


def test_it_averages_one_vs_rest_auc_over_classes():
    expected = []
    for k in range(3):
        positive = Y_MULTI == k
        wins = sum(
            (s_pos > s_neg) + 0.5 * (s_pos == s_neg)
            for s_pos in S_MULTI[positive, k]
            for s_neg in S_MULTI[~positive, k]
        )
        expected.append(wins / (positive.sum() * (~positive).sum()))
    assert metrics.auc(Y_MULTI, S_MULTI) == pytest.approx(np.mean(expected))
    assert metrics.auc(np.eye(3)[Y_MULTI], S_MULTI) == pytest.approx(np.mean(expected))


def test_it_refuses_auc_with_a_single_class():
    with pytest.raises(ValueError, match="only one class"):
        metrics.auc([1, 1], np.array([0.2, 0.4]))


def test_it_computes_regression_errors_by_hand():
    y = np.array([3.0, -0.5, 2.0, 7.0])
    p = np.array([2.5, 0.0, 2.0, 8.0]).reshape(-1, 1)
    assert metrics.mae(y, p) == pytest.approx(0.5)
    assert metrics.mse(y, p) == pytest.approx(0.375)
    assert metrics.rmse(y, p) == pytest.approx(math.sqrt(0.375))
    total = np.sum((y - y.mean()) ** 2)
    assert metrics.r2(y, p) == pytest.approx(1 - 1.5 / total)


def test_it_scores_a_constant_target_by_scikit_learns_convention():
    assert metrics.r2([2.0, 2.0], [2.0, 2.0]) == 1.0
    assert metrics.r2([2.0, 2.0], [1.0, 2.0]) == 0.0


def test_it_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="same number of rows"):
        metrics.mae([1.0, 2.0], [1.0])


def test_it_reads_outputs_by_the_loss_the_model_was_trained_with():
    assert metrics.compute("accuracy", Y_BINARY, P_BINARY.reshape(-1, 1), loss="binary_crossentropy") == pytest.approx(
        4 / 6
    )
    assert metrics.compute("acc", Y_MULTI, S_MULTI, loss="sparse_categorical_crossentropy") == pytest.approx(4 / 6)
    assert metrics.compute("accuracy", np.eye(3)[Y_MULTI], S_MULTI, loss="categorical_crossentropy") == pytest.approx(
        4 / 6
    )
    assert metrics.compute("f1", Y_MULTI, S_MULTI) == pytest.approx(metrics.f1(Y_MULTI, S_MULTI, average="macro"))
    assert metrics.compute("f1", Y_BINARY, P_BINARY) == pytest.approx(2 / 3)
    assert metrics.compute("mean_squared_error", [1.0, 3.0], [[1.0], [1.0]], loss="mse") == pytest.approx(2.0)


def test_it_reads_multi_label_sigmoid_outputs_element_wise():
    y = np.array([[1, 0], [0, 1]])
    p = np.array([[0.9, 0.8], [0.2, 0.7]])  # one of four labels wrong
    assert metrics.compute("accuracy", y, p, loss="binary_crossentropy") == pytest.approx(3 / 4)


def test_it_cuts_logits_at_zero_when_the_loss_says_from_logits():
    class BinaryCrossentropy:
        name = "binary_crossentropy"
        from_logits = True

    logits = np.array([2.0, -0.5, 0.3, -1.0])
    assert metrics.compute("accuracy", [1, 0, 1, 0], logits, loss=BinaryCrossentropy()) == 1.0


def test_it_names_an_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        metrics.compute("bleu", [1], [1])


def test_it_says_which_metrics_are_better_when_larger():
    assert metrics.GREATER_IS_BETTER["accuracy"] and metrics.GREATER_IS_BETTER["f1_macro"]
    assert not metrics.GREATER_IS_BETTER["rmse"]
    assert metrics.GREATER_IS_BETTER["acc"] and not metrics.GREATER_IS_BETTER["mean_squared_error"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_it_agrees_with_scikit_learn_when_it_is_installed(seed):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, 200)
    scores = rng.random((200, 4))
    scores /= scores.sum(axis=1, keepdims=True)
    pred = scores.argmax(axis=1)
    assert metrics.accuracy(y, scores) == pytest.approx(sklearn_metrics.accuracy_score(y, pred))
    assert metrics.f1(y, scores, average="macro") == pytest.approx(sklearn_metrics.f1_score(y, pred, average="macro"))
    assert metrics.auc(y, scores) == pytest.approx(sklearn_metrics.roc_auc_score(y, scores, multi_class="ovr"))
    yb = rng.integers(0, 2, 200)
    sb = np.round(rng.random(200), 1)  # many ties
    assert metrics.auc(yb, sb) == pytest.approx(sklearn_metrics.roc_auc_score(yb, sb))
    yr, pr = rng.normal(size=200), rng.normal(size=200)
    assert metrics.r2(yr, pr) == pytest.approx(sklearn_metrics.r2_score(yr, pr))


def test_it_matches_a_brute_force_pairwise_auc_on_random_tied_scores():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 80)
    s = np.round(rng.random(80), 1)
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert metrics.auc(y, s) == pytest.approx(brute)




@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 5)), min_size=2, max_size=60))
def test_it_agrees_with_pairwise_counting_for_any_scores(rows):
    y = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows], dtype=np.float64)
    if y.min() == y.max():
        return
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert metrics.auc(y, s) == pytest.approx(brute)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=50))
def test_it_keeps_confusion_matrix_and_accuracy_consistent(pairs):
    y = np.array([p[0] for p in pairs])
    pred = np.array([p[1] for p in pairs])
    matrix = metrics.confusion_matrix(y, pred, num_classes=4)
    assert matrix.sum() == len(pairs)
    assert np.trace(matrix) / len(pairs) == pytest.approx(metrics.accuracy(y, pred))


def test_per_class_scores_read_the_confusion_matrix_as_a_classification_report():
    #            predicted: a  b  c
    matrix = np.array([[5, 1, 0],     # true a
                       [2, 3, 0],     # true b
                       [0, 0, 0]])    # true c: absent, and never predicted
    scores = metrics.per_class_scores(matrix)
    assert [s["support"] for s in scores] == [6, 5, 0]
    assert scores[0]["precision"] == pytest.approx(5 / 7) and scores[0]["recall"] == pytest.approx(5 / 6)
    assert scores[1]["precision"] == pytest.approx(3 / 4) and scores[1]["recall"] == pytest.approx(3 / 5)
    assert scores[1]["f1"] == pytest.approx(2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5))
    assert scores[2] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    macro = np.mean([s["recall"] for s in scores[:2]])
    y_true = np.repeat([0, 0, 1, 1], [5, 1, 2, 3])
    y_pred = np.repeat([0, 1, 0, 1], [5, 1, 2, 3])
    assert macro == pytest.approx(metrics.compute("recall", y_true, np.eye(2)[y_pred], loss="categorical_crossentropy"))
