"""A classifier's ROC and precision-recall curves on its test split, and the decision threshold
a binary classifier's predictions are cut at.

A binary run's results keep its curve (thinned to CURVE_POINTS exact operating points, for
drawing) and the counts at every threshold of a fixed grid over probabilities (0, 0.001, ...,
1), so the test-split confusion at any threshold a person picks, to three decimals, is exact
without the test rows. A multiclass run keeps one one-vs-rest curve per class.
"""

from __future__ import annotations

import numpy as np

CURVE_POINTS = 300
CLASS_CURVE_POINTS = 100
MAX_CLASS_CURVES = 20  # more classes: their AUCs only, in the per-class table
GRID_STEPS = 1000  # the threshold grid: 0, 1/1000, ..., 1
THRESHOLD_DECIMALS = 3


def _rounded(values, decimals: int = 6) -> list:
    return [None if not np.isfinite(v) else round(float(v), decimals) for v in values]


def classifier_curves(true_codes, probabilities, classes) -> dict | None:
    """The results block for a classifier scored on its test rows, or None where no curve can
    be drawn (one class only in the test rows, outputs that are not one probability per class)."""
    from trainer import metrics as tmetrics

    true_codes = np.asarray(true_codes, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(classes) or len(classes) < 2:
        return None
    if len(classes) == 2:
        positive = true_codes == 1
        if positive.all() or not positive.any():
            return None
        scores = probabilities[:, 1]
        curve = tmetrics.operating_points(positive, scores, max_points=CURVE_POINTS)
        grid = tmetrics.operating_points(positive, scores, thresholds=np.arange(GRID_STEPS + 1) / GRID_STEPS)
        return {"kind": "binary", "positive": str(classes[1]), "negative": str(classes[0]),
                "auc": tmetrics.auc(positive, scores), "average_precision": tmetrics.average_precision(positive, scores),
                "positives": curve["positives"], "negatives": curve["negatives"],
                "curve": {"threshold": _rounded(curve["thresholds"]), "tp": curve["tp"].tolist(),
                          "fp": curve["fp"].tolist()},
                "grid": {"tp": grid["tp"].tolist(), "fp": grid["fp"].tolist()}}
    found = []
    for k, name in enumerate(classes):
        positive = true_codes == k
        if positive.all() or not positive.any():
            found.append({"name": str(name), "auc": None})
            continue
        entry = {"name": str(name), "auc": tmetrics.auc(positive, probabilities[:, k])}
        if len(classes) <= MAX_CLASS_CURVES:
            points = tmetrics.operating_points(positive, probabilities[:, k], max_points=CLASS_CURVE_POINTS)
            entry["fpr"] = _rounded(points["fp"] / points["negatives"])
            entry["tpr"] = _rounded(points["tp"] / points["positives"])
        found.append(entry)
    if all(entry["auc"] is None for entry in found):
        return None
    return {"kind": "multiclass", "classes": found}


def binary_roc(results: dict | None) -> dict | None:
    roc = (results or {}).get("roc")
    return roc if isinstance(roc, dict) and roc.get("kind") == "binary" and "grid" in roc else None


def parse_threshold(value) -> float:
    """A decision threshold from a form or a JSON body, rounded to the grid; ValueError names the
    field and what it takes."""
    message = "threshold: give a number from 0 to 1 (the positive class's probability a row needs to be called positive)"
    if isinstance(value, bool):
        raise ValueError(message)  # noqa: TRY004 - one error for every bad value, named by its field
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not np.isfinite(number) or not 0 <= number <= 1:
        raise ValueError(message)
    return round(number, THRESHOLD_DECIMALS)


def operating_point(roc: dict, threshold: float) -> dict:
    """The test split's confusion when rows whose positive probability is >= threshold are called
    positive: counts, rates and scores, exact (read off the grid)."""
    i = round(threshold * GRID_STEPS)
    tp, fp = roc["grid"]["tp"][i], roc["grid"]["fp"][i]
    positives, negatives = roc["positives"], roc["negatives"]
    fn, tn = positives - tp, negatives - fp
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / positives
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    return {"threshold": i / GRID_STEPS, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "accuracy": (tp + tn) / (positives + negatives), "precision": precision, "recall": recall,
            "f1": f1, "false_positive_rate": fp / negatives if negatives else None}


def comparable_roc(run) -> dict | None:
    """A binary run's ROC curve as rates, with the point its decision threshold cuts at (for the
    compare page, which overlays several runs' curves)."""
    roc = binary_roc(run.results)
    if roc is None:
        return None
    negatives, positives = roc["negatives"], roc["positives"]
    found = {"auc": roc["auc"], "positive": roc["positive"],
             "fpr": _rounded(np.asarray(roc["curve"]["fp"]) / negatives),
             "tpr": _rounded(np.asarray(roc["curve"]["tp"]) / positives)}
    if run.decision_threshold is not None:
        at = operating_point(roc, run.decision_threshold)
        found["at"] = {"threshold": at["threshold"], "fpr": at["false_positive_rate"], "tpr": at["recall"]}
    return found
