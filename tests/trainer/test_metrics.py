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
    assert metrics.average_precision(yb, sb) == pytest.approx(sklearn_metrics.average_precision_score(yb, sb))
    for ours, theirs in zip(metrics.roc_curve(yb, sb), sklearn_metrics.roc_curve(yb, sb, drop_intermediate=False)):
        np.testing.assert_allclose(ours, theirs)
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


# ----------------------------------------------------------------------------- curves


def test_it_draws_the_roc_curve_of_a_textbook_example():
    # scikit-learn's documented example: scores 0.1 0.4 0.35 0.8 for labels 0 0 1 1.
    fpr, tpr, thresholds = metrics.roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert thresholds[0] == np.inf
    np.testing.assert_allclose(thresholds[1:], [0.8, 0.4, 0.35, 0.1])
    assert metrics.average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.8333333333)


def test_its_roc_curve_encloses_the_rank_auc_on_tied_scores():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    scores = np.round(rng.normal(0.4 * y, 0.5), 1)  # many ties
    fpr, tpr, _ = metrics.roc_curve(y, scores)
    assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.auc(y, scores))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), min_size=2, max_size=40))
def test_its_operating_points_count_what_each_cut_calls_positive(rows):
    y = np.array([r[0] for r in rows])
    scores = np.array([r[1] for r in rows], dtype=np.float64) / 6
    points = metrics.operating_points(y, scores)
    assert points["positives"] == y.sum() and points["negatives"] == len(y) - y.sum()
    assert points["tp"][0] == points["fp"][0] == 0
    for t, tp, fp in zip(points["thresholds"], points["tp"], points["fp"]):
        called = scores >= t
        assert tp == int((called & (y == 1)).sum()) and fp == int((called & (y == 0)).sum())
    assert np.all(np.diff(points["thresholds"]) < 0)  # each distinct score once, strictest first
    assert len(points["thresholds"]) == len(np.unique(scores)) + 1
    grid = np.array([0.5, 0.0, 1.0, 0.25, 2 / 6])
    at = metrics.operating_points(y, scores, thresholds=grid)
    np.testing.assert_array_equal(at["thresholds"], grid)
    for t, tp, fp in zip(grid, at["tp"], at["fp"]):
        assert tp == int(((scores >= t) & (y == 1)).sum()) and fp == int(((scores >= t) & (y == 0)).sum())


def test_its_average_precision_weights_precision_by_the_recall_each_cut_adds():
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.4, 0.1])
    # Positives at ranks 1, 3, 4, 7: precision there 1, 2/3, 3/4, 4/7, each adding recall 1/4.
    assert metrics.average_precision(y, scores) == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 7) / 4)
    precision, recall, thresholds = metrics.precision_recall_curve(y, scores)
    assert recall[-1] == 1 and precision[0] == 1 and thresholds[0] == 0.9


def test_its_thinned_operating_points_stay_exact_and_keep_the_curve():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 20000)
    scores = rng.normal(0.8 * y, 1.0)
    full = metrics.operating_points(y, scores)
    thin = metrics.operating_points(y, scores, max_points=200)
    assert len(thin["thresholds"]) <= 200 < len(full["thresholds"])
    # Exact counts at every kept threshold, both ends kept.
    index = {t: i for i, t in enumerate(full["thresholds"])}
    rows = [index[t] for t in thin["thresholds"]]
    np.testing.assert_array_equal(thin["tp"], full["tp"][rows])
    np.testing.assert_array_equal(thin["fp"], full["fp"][rows])
    assert rows[0] == 0 and rows[-1] == len(full["thresholds"]) - 1
    # No gap wider than a grid cell in either rate, so the thinned curve's area is the full one's.
    k = (200 - 3) // 4
    assert np.diff(thin["fp"] / thin["negatives"]).max() <= 1 / k + 1e-12
    assert np.diff(thin["tp"] / thin["positives"]).max() <= 1 / k + 1e-12
    area = np.trapezoid(thin["tp"] / thin["positives"], thin["fp"] / thin["negatives"])
    assert area == pytest.approx(metrics.auc(y, scores), abs=2e-3)


def test_its_curves_refuse_what_they_cannot_draw():
    with pytest.raises(ValueError, match="only one class"):
        metrics.roc_curve([1, 1, 1], [0.2, 0.4, 0.9])
    with pytest.raises(ValueError, match="no positive rows"):
        metrics.precision_recall_curve([0, 0], [0.2, 0.4])
    with pytest.raises(ValueError, match="labels 0 and 1"):
        metrics.operating_points([0, 2], [0.2, 0.4])
    with pytest.raises(ValueError, match="NaN"):
        metrics.operating_points([0, 1], [np.nan, 0.4])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        metrics.operating_points([0, 1], np.ones((2, 3)))
    with pytest.raises(ValueError, match="not both"):
        metrics.operating_points([0, 1], [0.2, 0.4], max_points=10, thresholds=[0.5])
    with pytest.raises(ValueError, match="at least 8"):
        metrics.operating_points([0, 1] * 10, np.arange(20.0), max_points=5)
    # Two-column scores use the positive column, as auc does.
    _, tpr, _ = metrics.roc_curve([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])


# ----------------------------------------------------------------------------- calibration


def test_its_calibration_curve_bins_probabilities_by_hand():
    y = [0, 0, 1, 1, 1, 0]
    p = [0.05, 0.15, 0.12, 0.95, 0.85, 0.9]
    prob_true, prob_pred = metrics.calibration_curve(y, p, n_bins=2)
    # Bin [0, 0.5]: rows 0-2, one positive; bin (0.5, 1]: rows 3-5, two positives.
    np.testing.assert_allclose(prob_true, [1 / 3, 2 / 3])
    np.testing.assert_allclose(prob_pred, [(0.05 + 0.15 + 0.12) / 3, (0.95 + 0.85 + 0.9) / 3])
    prob_true, _ = metrics.calibration_curve(y, p, n_bins=10)
    assert len(prob_true) == 4  # the empty bins are left out


def test_its_expected_calibration_error_is_zero_when_confidence_matches_accuracy():
    # Every row 0.75 sure of class 1, and three in four are class 1: calibrated.
    y = np.array([1, 1, 1, 0] * 25)
    scores = np.tile([[0.25, 0.75]], (100, 1))
    assert metrics.expected_calibration_error(y, scores) == pytest.approx(0.0)
    # Overconfident: 0.95 sure, right 75% of the time.
    assert metrics.expected_calibration_error(y, np.tile([[0.05, 0.95]], (100, 1))) == pytest.approx(0.2)
    found = metrics.reliability(y, np.full(100, 0.95), n_bins=10)  # positive-class probabilities read the same
    assert found["rows"].tolist() == [100] and found["accuracy"][0] == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        metrics.calibration_curve([0, 1], [0.2, 1.3])
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        metrics.expected_calibration_error([0, 1], [0.2, 0.3], n_bins=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_its_calibration_curve_agrees_with_scikit_learn_when_it_is_installed(seed):
    calibration = pytest.importorskip("sklearn.calibration")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    p = np.clip(rng.beta(2, 2, 500) * 0.6 + 0.4 * y * rng.random(500), 0, 1)
    for ours, theirs in zip(metrics.calibration_curve(y, p, n_bins=8), calibration.calibration_curve(y, p, n_bins=8)):
        np.testing.assert_allclose(ours, theirs)


def test_the_population_stability_index_counts_a_name_one_side_lacks_and_refuses_empty_mixes():
    from trainer.metrics import population_stability_index as psi

    assert psi({"a": 30, "b": 70}, {"a": 3, "b": 7}) == pytest.approx(0.0)
    q = np.array([0.5, 0.25, 0.25])
    p = np.maximum(np.array([5, 5, 0]) / 10, 1e-4)
    assert psi({"a": 5, "b": 5}, {"a": 2, "b": 1, "c": 1}) == pytest.approx(float(np.sum((p - q) * np.log(p / q))))
    with pytest.raises(ValueError, match="both mixes need counts above zero"):
        psi({"a": 0}, {"a": 1})
