"""Evaluation metrics computed on host NumPy arrays, once per epoch or after training.

Each metric takes (y_true, y_pred) and returns a Python float (or an int matrix for
`confusion_matrix`). `compute(name, y_true, y_pred, loss=...)` picks how to read the model's
outputs from the loss the model was trained with, so callers can store every metric by name.

Reading predictions:
  - (N, K) with K > 1 are class scores: the class is the argmax;
  - (N,) or (N, 1) floats are probabilities of the positive class, cut at `threshold`;
  - integer or bool arrays are class labels, taken as they are.
Targets are class labels (N,) or one-hot (N, K).
"""

import math

import numpy as np

from trainer.backend import to_host

__all__ = [
    "GREATER_IS_BETTER",
    "METRICS",
    "accuracy",
    "auc",
    "average_precision",
    "binary_accuracy",
    "calibration_curve",
    "categorical_accuracy",
    "compute",
    "confusion_matrix",
    "expected_calibration_error",
    "f1",
    "mae",
    "mse",
    "operating_points",
    "population_stability_index",
    "precision",
    "precision_recall_curve",
    "r2",
    "recall",
    "reliability",
    "rmse",
    "roc_curve",
    "sparse_categorical_accuracy",
]


def _host(x, name):
    array = to_host(x)
    if array.dtype == object:
        raise ValueError(f"{name} must be a numeric array. Received: dtype=object")
    return array


def _same_rows(owner, y_true, y_pred):
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(
            f"{owner}: y_true and y_pred must have the same number of rows. "
            f"Received: {y_true.shape[0]} and {y_pred.shape[0]}"
        )
    if y_true.shape[0] == 0:
        raise ValueError(f"{owner}: y_true is empty")


def _true_labels(y_true):
    if y_true.ndim == 2 and y_true.shape[1] > 1:  # one-hot
        return y_true.argmax(axis=1)
    return y_true.reshape(-1).astype(np.int64)


def _predicted_labels(y_pred, threshold):
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        return y_pred.argmax(axis=1)
    flat = y_pred.reshape(-1)
    if flat.dtype.kind == "f":
        return (flat > threshold).astype(np.int64)
    return flat.astype(np.int64)


def _labels(owner, y_true, y_pred, threshold=0.5):
    y_true, y_pred = _host(y_true, "y_true"), _host(y_pred, "y_pred")
    _same_rows(owner, y_true, y_pred)
    return _true_labels(y_true), _predicted_labels(y_pred, threshold)


# ----------------------------------------------------------------------------- classification


def binary_accuracy(y_true, y_pred, *, threshold=0.5):
    """Share of elements where (y_pred > threshold) equals y_true; works element-wise, so
    multi-label outputs (N, K) count every label."""
    y_true, y_pred = _host(y_true, "y_true"), _host(y_pred, "y_pred")
    _same_rows("binary_accuracy", y_true, y_pred)
    if y_true.size != y_pred.size:
        raise ValueError(
            f"binary_accuracy: y_true and y_pred must have the same size. Received: {y_true.shape} and {y_pred.shape}"
        )
    return float(np.mean((y_pred.reshape(-1) > threshold) == (y_true.reshape(-1) > 0.5)))


def categorical_accuracy(y_true, y_pred):
    """Share of rows whose argmax of the scores equals the argmax of the one-hot target."""
    return accuracy(y_true, y_pred)


def sparse_categorical_accuracy(y_true, y_pred):
    """Share of rows whose argmax of the scores equals the integer target."""
    return accuracy(y_true, y_pred)


def accuracy(y_true, y_pred, *, threshold=0.5):
    """Share of rows whose predicted class equals the true class (see the module docstring
    for how predictions and targets are read)."""
    true, pred = _labels("accuracy", y_true, y_pred, threshold)
    return float(np.mean(true == pred))


def confusion_matrix(y_true, y_pred, num_classes=None, *, threshold=0.5):
    """Counts (num_classes, num_classes), int64: rows are true classes, columns predicted ones."""
    true, pred = _labels("confusion_matrix", y_true, y_pred, threshold)
    if min(true.min(), pred.min()) < 0:
        raise ValueError("confusion_matrix: class labels must be non-negative integers")
    seen = int(max(true.max(), pred.max())) + 1
    if num_classes is None:
        num_classes = seen
    elif num_classes < seen:
        raise ValueError(f"confusion_matrix: a label is >= num_classes. Received: num_classes={num_classes}")
    counts = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def per_class_scores(matrix):
    """Precision, recall, F1 and support of each class from a confusion matrix (rows true, columns
    predicted), as scikit-learn's classification report: a class never predicted (or never
    present) scores 0 where its denominator is 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    hits = np.diag(matrix)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        recall = np.where(support > 0, hits / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return [{"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for p, r, f, n in zip(precision, recall, f1, support)]


def _precision_recall(owner, y_true, y_pred, average, threshold):
    if average not in ("binary", "macro"):
        raise ValueError(f"{owner}: average must be 'binary' or 'macro'. Received: average={average!r}")
    true, pred = _labels(owner, y_true, y_pred, threshold)
    if average == "binary":
        classes = np.array([1])
        if np.setdiff1d(np.union1d(true, pred), [0, 1]).size:
            raise ValueError(f"{owner}: average='binary' needs labels 0 and 1; use average='macro' for more classes")
    else:
        classes = np.union1d(true, pred)  # as scikit-learn: the labels present in either
    tp = np.array([np.sum((pred == c) & (true == c)) for c in classes], dtype=np.float64)
    predicted = np.array([np.sum(pred == c) for c in classes], dtype=np.float64)
    actual = np.array([np.sum(true == c) for c in classes], dtype=np.float64)
    # An undefined ratio (no predicted or no actual positives) counts as 0, as scikit-learn does.
    precisions = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recalls = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    return precisions, recalls


def precision(y_true, y_pred, *, average="binary", threshold=0.5):
    """TP / (TP + FP) for class 1 ("binary") or averaged over classes ("macro")."""
    precisions, _ = _precision_recall("precision", y_true, y_pred, average, threshold)
    return float(precisions.mean())


def recall(y_true, y_pred, *, average="binary", threshold=0.5):
    """TP / (TP + FN) for class 1 ("binary") or averaged over classes ("macro")."""
    _, recalls = _precision_recall("recall", y_true, y_pred, average, threshold)
    return float(recalls.mean())


def f1(y_true, y_pred, *, average="binary", threshold=0.5):
    """Harmonic mean of precision and recall, per class, then averaged for "macro"."""
    p, r = _precision_recall("f1", y_true, y_pred, average, threshold)
    total = p + r
    scores = np.divide(2 * p * r, total, out=np.zeros_like(total), where=total > 0)
    return float(scores.mean())


def _average_ranks(values):
    """Ranks 1..N of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start of each run of equal values, and the run's average rank.
    starts = np.flatnonzero(np.concatenate(([True], sorted_values[1:] != sorted_values[:-1])))
    ends = np.concatenate((starts[1:], [values.size]))
    run_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def _binary_auc(positive, scores):
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(scores.astype(np.float64))
    # Mann-Whitney U: the chance that a random positive outscores a random negative, ties half.
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc(y_true, y_score):
    """Area under the ROC curve, from ranks (ties count one half).

    Binary: y_score (N,), (N, 1) or (N, 2) (the positive column is used), y_true 0/1.
    Multiclass: y_score (N, K), y_true labels or one-hot; the macro average of one-vs-rest AUCs
    over the classes that have both positive and negative rows in y_true.
    """
    y_true, y_score = _host(y_true, "y_true"), _host(y_score, "y_score")
    _same_rows("auc", y_true, y_score)
    if not np.isfinite(y_score).all():
        raise ValueError("auc: y_score contains NaN or infinite values")
    if y_score.ndim == 1 or y_score.shape[1] <= 2:
        scores = y_score.reshape(-1) if y_score.ndim == 1 or y_score.shape[1] == 1 else y_score[:, 1]
        labels = _true_labels(y_true)
        if np.setdiff1d(labels, [0, 1]).size:
            raise ValueError("auc: binary scores need y_true labels 0 and 1")
        value = _binary_auc(labels == 1, scores)
        if value is None:
            raise ValueError("auc: y_true holds only one class; ROC AUC is undefined")
        return value
    labels = _true_labels(y_true)
    values = [_binary_auc(labels == k, y_score[:, k]) for k in range(y_score.shape[1])]
    values = [v for v in values if v is not None]
    if not values:
        raise ValueError("auc: no class has both positive and negative rows in y_true")
    return float(np.mean(values))


def _binary_scores(owner, y_true, y_score):
    """Positive-class labels (bool) and scores from 0/1 targets and (N,), (N, 1) or (N, 2) scores."""
    y_true, y_score = _host(y_true, "y_true"), _host(y_score, "y_score")
    _same_rows(owner, y_true, y_score)
    if y_score.ndim > 2 or (y_score.ndim == 2 and y_score.shape[1] > 2):
        raise ValueError(f"{owner}: y_score must hold one positive-class score per row, (N,), (N, 1) or (N, 2). "
                         f"Received: shape={y_score.shape}")
    scores = y_score.reshape(-1) if y_score.ndim == 1 or y_score.shape[1] == 1 else y_score[:, 1]
    scores = scores.astype(np.float64)
    if not np.isfinite(scores).all():
        raise ValueError(f"{owner}: y_score contains NaN or infinite values")
    labels = _true_labels(y_true)
    if np.setdiff1d(labels, [0, 1]).size:
        raise ValueError(f"{owner}: y_true must hold labels 0 and 1")
    return labels == 1, scores


def operating_points(y_true, y_score, *, max_points=None, thresholds=None):
    """Every threshold a binary classifier's scores can be cut at, and what each cut counts.

    A row is called positive when its score is >= the threshold. Returns a dict of arrays, from
    the strictest cut down: "thresholds" (the first is +inf: nothing called positive; then each
    distinct score, descending), "tp" and "fp" (positive and negative rows called positive at
    that threshold), and the totals "positives" and "negatives". ROC and precision-recall curves
    are both read off these counts.

    max_points: keep at most this many thresholds (at least 8). The unit square of (false-,
    true-positive rate) is cut into a grid of k x k cells, k = (max_points - 3) // 4; the first
    and last threshold in each cell the curve passes are kept. The curves keep their shape (no
    two consecutive kept points are more than a cell apart in either rate), and the counts are
    exact at every kept threshold.

    thresholds: count at these thresholds instead (any order, returned as given), e.g. a fixed
    grid over probabilities that a decision threshold can be read off exactly.
    """
    positive, scores = _binary_scores("operating_points", y_true, y_score)
    n_pos = int(positive.sum())
    if thresholds is not None:
        if max_points is not None:
            raise ValueError("operating_points: give max_points or thresholds, not both")
        cuts = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        # Rows at or above each cut: N minus those strictly below it.
        pos_sorted, neg_sorted = np.sort(scores[positive]), np.sort(scores[~positive])
        tp = pos_sorted.size - np.searchsorted(pos_sorted, cuts, side="left")
        fp = neg_sorted.size - np.searchsorted(neg_sorted, cuts, side="left")
        return {"thresholds": cuts, "tp": tp.astype(np.int64), "fp": fp.astype(np.int64), "positives": n_pos,
                "negatives": int(positive.size - n_pos)}
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    # The last row of each run of equal scores: cutting there takes the whole run.
    last = np.flatnonzero(np.concatenate((scores[1:] != scores[:-1], [True])))
    tp = np.concatenate(([0], np.cumsum(positive)[last]))
    fp = np.concatenate(([0], (last + 1) - tp[1:]))
    thresholds = np.concatenate(([np.inf], scores[last]))
    n_neg = int(positive.size - n_pos)
    if max_points is not None and thresholds.size > max_points:
        if max_points < 8:
            raise ValueError(f"operating_points: max_points must be at least 8. Received: max_points={max_points}")
        steps = (max_points - 3) // 4
        cells = (np.floor(fp / max(n_neg, 1) * steps) * (steps + 1) + np.floor(tp / max(n_pos, 1) * steps))
        keep = np.concatenate(([True], cells[1:] != cells[:-1]))
        keep[-1] = True
        # Each new (fpr, tpr) cell starts a kept point; the point before it closes the previous cell.
        keep[:-1] |= keep[1:]
        keep = np.flatnonzero(keep)
        thresholds, tp, fp = thresholds[keep], tp[keep], fp[keep]
    return {"thresholds": thresholds, "tp": tp.astype(np.int64), "fp": fp.astype(np.int64),
            "positives": n_pos, "negatives": n_neg}


def roc_curve(y_true, y_score):
    """(fpr, tpr, thresholds) of a binary classifier, shaped like scikit-learn's: from the
    strictest threshold (+inf, the point (0, 0)) down to the lowest score (the point (1, 1))."""
    points = operating_points(y_true, y_score)
    if points["positives"] == 0 or points["negatives"] == 0:
        raise ValueError("roc_curve: y_true holds only one class; the ROC curve is undefined")
    return points["fp"] / points["negatives"], points["tp"] / points["positives"], points["thresholds"]


def precision_recall_curve(y_true, y_score):
    """(precision, recall, thresholds) of a binary classifier at each distinct score, from the
    highest score down (recall rising to 1). Precision is tp / (tp + fp) at that cut."""
    points = operating_points(y_true, y_score)
    if points["positives"] == 0:
        raise ValueError("precision_recall_curve: y_true holds no positive rows; recall is undefined")
    tp, fp = points["tp"][1:], points["fp"][1:]
    return tp / (tp + fp), tp / points["positives"], points["thresholds"][1:]


def average_precision(y_true, y_score):
    """Area under the precision-recall curve as scikit-learn's average_precision_score sums it:
    the precision at each threshold weighted by the recall it adds."""
    precision_at, recall_at, _ = precision_recall_curve(y_true, y_score)
    return float(np.sum(np.diff(np.concatenate(([0.0], recall_at))) * precision_at))


def _bins(probabilities, n_bins):
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer. Received: n_bins={n_bins!r}")
    if probabilities.size and (probabilities.min() < 0 or probabilities.max() > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], probabilities)  # bin i holds (edge i, edge i+1], the first [0, edge 1]


def calibration_curve(y_true, y_prob, *, n_bins=10):
    """(prob_true, prob_pred) of a binary classifier, shaped like scikit-learn's (uniform bins):
    over n_bins equal-width bins of the positive-class probability, the share of positive rows and
    the mean predicted probability in each bin that holds rows. A calibrated model's pairs are equal."""
    positive, scores = _binary_scores("calibration_curve", y_true, y_prob)
    ids = _bins(scores, n_bins)
    total = np.bincount(ids, minlength=n_bins)
    held = total > 0
    prob_true = np.bincount(ids, weights=positive.astype(np.float64), minlength=n_bins)[held] / total[held]
    prob_pred = np.bincount(ids, weights=scores, minlength=n_bins)[held] / total[held]
    return prob_true, prob_pred


def reliability(y_true, y_score, *, n_bins=15):
    """Top-label reliability (Guo et al. 2017, "On Calibration of Modern Neural Networks"): the rows binned
    by the probability of the class the model picked. Returns {"confidence", "accuracy", "rows"} per bin
    that holds rows (arrays), and "ece": the rows-weighted mean of |accuracy - confidence|.

    y_score: (N, K) class probabilities, or (N,) / (N, 1) positive-class probabilities (the class
    picked is then the more likely one, as argmax of [1 - p, p]).
    """
    y_true, y_score = _host(y_true, "y_true"), _host(y_score, "y_score").astype(np.float64)
    _same_rows("reliability", y_true, y_score)
    if y_score.ndim == 1 or y_score.shape[1] == 1:
        p = y_score.reshape(-1)
        y_score = np.stack([1 - p, p], axis=1)
    if not np.isfinite(y_score).all():
        raise ValueError("reliability: y_score contains NaN or infinite values")
    picked = y_score.argmax(axis=1)
    confidence = y_score[np.arange(len(y_score)), picked]
    correct = (picked == _true_labels(y_true)).astype(np.float64)
    ids = _bins(confidence, n_bins)
    total = np.bincount(ids, minlength=n_bins)
    held = total > 0
    accuracy = np.bincount(ids, weights=correct, minlength=n_bins)[held] / total[held]
    mean_confidence = np.bincount(ids, weights=confidence, minlength=n_bins)[held] / total[held]
    ece = float(np.sum(total[held] / len(confidence) * np.abs(accuracy - mean_confidence)))
    return {"confidence": mean_confidence, "accuracy": accuracy, "rows": total[held], "ece": ece}


def expected_calibration_error(y_true, y_score, *, n_bins=15):
    """The expected calibration error of the top label (see `reliability`): 0 for a calibrated model."""
    return reliability(y_true, y_score, n_bins=n_bins)["ece"]


def population_stability_index(actual, expected, *, floor=1e-4):
    """The PSI of one mix against another, each given as counts by name (dicts):
    sum((p - q) ln(p / q)) over the names in either, the shares floored at ``floor`` so a name
    one side lacks counts without an infinity. Under 0.1 is usually read as about the same,
    0.1 to 0.25 as somewhat different, above that as different."""
    names = sorted(set(actual) | set(expected), key=str)
    p = np.asarray([actual.get(n, 0) for n in names], dtype=np.float64)
    q = np.asarray([expected.get(n, 0) for n in names], dtype=np.float64)
    if not names or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("population_stability_index: both mixes need counts above zero")
    p = np.maximum(p / p.sum(), floor)
    q = np.maximum(q / q.sum(), floor)
    return float(np.sum((p - q) * np.log(p / q)))


# ----------------------------------------------------------------------------- regression


def _regression(owner, y_true, y_pred):
    y_true = _host(y_true, "y_true").astype(np.float64)
    y_pred = _host(y_pred, "y_pred").astype(np.float64)
    _same_rows(owner, y_true, y_pred)
    # (N,) targets against (N, 1) predictions is the usual single-output case.
    y_true = y_true.reshape(y_true.shape[0], -1)
    y_pred = y_pred.reshape(y_pred.shape[0], -1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{owner}: y_true and y_pred shapes differ. Received: {y_true.shape} and {y_pred.shape}")
    return y_true, y_pred


def mae(y_true, y_pred):
    y_true, y_pred = _regression("mae", y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred)))


def mse(y_true, y_pred):
    y_true, y_pred = _regression("mse", y_true, y_pred)
    return float(np.mean((y_true - y_pred) ** 2))


def rmse(y_true, y_pred):
    return math.sqrt(mse(y_true, y_pred))


def r2(y_true, y_pred):
    """Coefficient of determination, averaged over output columns. A constant target scores
    1.0 when predicted exactly and 0.0 otherwise (scikit-learn's convention)."""
    y_true, y_pred = _regression("r2", y_true, y_pred)
    residual = np.sum((y_true - y_pred) ** 2, axis=0)
    total = np.sum((y_true - y_true.mean(axis=0)) ** 2, axis=0)
    scores = np.where(total > 0, 1 - residual / np.where(total > 0, total, 1), np.where(residual == 0, 1.0, 0.0))
    return float(scores.mean())


# ----------------------------------------------------------------------------- by name

METRICS = {
    "accuracy": accuracy,
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "precision": precision,
    "recall": recall,
    "f1": f1,
    "auc": auc,
    "mae": mae,
    "mse": mse,
    "rmse": rmse,
    "r2": r2,
}
ALIASES = {
    "acc": "accuracy",
    "mean_absolute_error": "mae",
    "mean_squared_error": "mse",
    "root_mean_squared_error": "rmse",
    "r2_score": "r2",
    "roc_auc": "auc",
}
GREATER_IS_BETTER = {name: name not in ("mae", "mse", "rmse") for name in METRICS}
for _average in ("binary", "macro"):
    for _name in ("precision", "recall", "f1"):
        GREATER_IS_BETTER[f"{_name}_{_average}"] = True
for _alias, _name in ALIASES.items():
    GREATER_IS_BETTER[_alias] = GREATER_IS_BETTER[_name]

_BINARY_LOSSES = {"binary_crossentropy", "bce", "binarycrossentropy"}
_CATEGORICAL_LOSSES = {"categorical_crossentropy", "categoricalcrossentropy", "sparse_categorical_crossentropy",
                       "sparsecategoricalcrossentropy"}


def _loss_name(loss):
    if loss is None:
        return None
    if isinstance(loss, str):
        return loss.lower()
    name = getattr(loss, "name", None) or type(loss).__name__
    return str(name).lower()


def compute(name, y_true, y_pred, *, loss=None, threshold=None):
    """The metric `name` as a float, reading the outputs the way `loss` implies.

    name: a key of METRICS or an alias ("acc", "mean_squared_error", ...); precision, recall
    and f1 may carry the average ("f1_macro"), otherwise binary tasks use "binary" and
    multiclass ones "macro".
    loss: the training loss (a name or a loss object). Binary cross-entropy means sigmoid
    outputs cut at 0.5 (at 0 when the loss object has from_logits=True), element-wise for
    multi-label outputs; categorical losses mean argmax over classes. Without a loss the shapes
    decide (see the module docstring).
    """
    if not isinstance(name, str):
        raise ValueError(f"compute: name must be a string. Received: name={name!r}")  # noqa: TRY004 - Keras raises ValueError here
    key = ALIASES.get(name.lower(), name.lower())
    average = None
    for suffix in ("_binary", "_macro"):
        if key.endswith(suffix) and key[: -len(suffix)] in ("precision", "recall", "f1"):
            key, average = key[: -len(suffix)], suffix[1:]
    if key not in METRICS:
        raise ValueError(f"compute: unknown metric {name!r}; known metrics: {sorted(METRICS)}")
    loss_name = _loss_name(loss)
    if threshold is None:
        threshold = 0.0 if getattr(loss, "from_logits", False) else 0.5

    y_pred_host = _host(y_pred, "y_pred")
    y_true_host = _host(y_true, "y_true")
    binary_loss = loss_name in _BINARY_LOSSES
    if key in ("accuracy", "binary_accuracy") and (binary_loss or key == "binary_accuracy"):
        return binary_accuracy(y_true_host, y_pred_host, threshold=threshold)
    if key in ("precision", "recall", "f1"):
        if average is None:
            multiclass = (y_pred_host.ndim == 2 and y_pred_host.shape[1] > 1) or loss_name in _CATEGORICAL_LOSSES
            average = "macro" if multiclass else "binary"
        if binary_loss:  # multi-label outputs: every label is one binary decision
            y_true_host, y_pred_host = y_true_host.reshape(-1), y_pred_host.reshape(-1)
        return METRICS[key](y_true_host, y_pred_host, average=average, threshold=threshold)
    if key == "auc" and binary_loss and y_pred_host.ndim == 2 and y_pred_host.shape[1] > 1:
        return auc(y_true_host.reshape(-1), y_pred_host.reshape(-1))
    if key == "accuracy":
        return accuracy(y_true_host, y_pred_host, threshold=threshold)
    return METRICS[key](y_true_host, y_pred_host)
