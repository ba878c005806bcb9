"""What a registered model serves: each prediction request by the model's name is logged with a
summary of its answer, and the model's page reads the log back as requests and rows per day, the
requests it refused and why, and whether what the version in production predicts has drifted
from what it predicted on its test split.

Drift is judged on the model's outputs, which every request has, not on its inputs:
- classifiers: the population stability index (PSI) between the served class mix and the test
  split's predicted class mix, sum((p - q) ln(p / q)) over classes (shares floored at 1e-4);
  under 0.1 about the same, 0.1 to 0.25 somewhat different, above that different;
- regressors and series: how far the served predictions' mean is from the test split's, in the
  test predictions' standard deviations (more than 0.5 counts as shifted).
Fewer than MIN_ROWS served rows are too few to judge; what is judged is what the last DAYS days
served. Each model may set its own limits (``RegisteredModel.drift_limits``: the PSI from which a
mix has drifted, "worth a look" from 0.4 of it; the mean shift; the share's rise; the hidden
layer's spread ratio; the rows it takes; the days), in place of these defaults.

A table model's inputs are watched too: its evaluation records the training rows' profile (per
source column: count, sum and sum of squares of a numeric column's scaled values; per category
of a categorical one, how many rows hold it), every request adds the same profile of what it was
sent, and each column is judged: a numeric one by its mean's shift in training standard
deviations (above 0.5 drifted), a categorical one by the PSI of its category mix, categories
never seen in training counted apart. A text model's input is its text's length in words
(judged as a numeric column) and its share of words the vocabulary does not know (drifted 10
points above training's). An image model's input is each image's brightness and contrast (the
mean and spread of its values, per channel), judged as numeric columns.

What the model makes of its inputs is watched as well, for every kind (an image that is a cat where
dogs were expected has the brightness of a dog's): its evaluation keeps a basis for its last hidden
layer (``feature_basis``: that layer's mean output on the test rows, or the training rows where it
has none, and its PCA directions with their spreads), each request adds the sums of its rows'
coordinates along those directions, and each direction is judged by its mean's shift in reference
standard deviations (the shift limit) and by its spread's ratio to the reference's (more than
SPREAD_RATIO times it or less than 1/SPREAD_RATIO). It is the embedding drift of tools such as Evidently, on a layer the model has.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
from django.db import transaction
from django.utils import timezone

from trainer.metrics import population_stability_index
from webapp.experiments import curves
from webapp.experiments.models import PredictionLog

MIN_ROWS = 30
PSI_FLOOR = 1e-4
PSI_SOME, PSI_DIFFERENT = 0.1, 0.25
SHIFT_LIMIT = 0.5
SHARE_RISE = 0.1  # a share (a text's unknown words) this much above training's counts as drifted
RECENT_REFUSALS = 5
MAX_DAYS = 365
# A model's own limits (RegisteredModel.drift_limits) in place of these; each name with its allowed range.
SPREAD_RATIO = 2.0  # a hidden-layer direction whose served spread is this many times its reference's (or 1/this)
DAYS = 30  # what drift is judged on: the requests of the last this many days
# A model's own limits (RegisteredModel.drift_limits) in place of these; each name with its allowed range.
DEFAULT_LIMITS = {"psi": PSI_DIFFERENT, "shift": SHIFT_LIMIT, "share": SHARE_RISE, "spread": SPREAD_RATIO,
                  "min_rows": MIN_ROWS, "days": DAYS}
LIMIT_RANGES = {"psi": (0.01, 10.0), "shift": (0.01, 20.0), "share": (0.01, 1.0), "spread": (1.05, 100.0),
                "min_rows": (1, 1_000_000), "days": (1, MAX_DAYS)}
WHOLE_LIMITS = ("min_rows", "days")


def check_limits(given) -> dict:
    """A model's drift limits as given (only those that differ from the defaults are kept); raises ValueError
    naming the field."""
    if not isinstance(given, dict):
        raise ValueError("drift_limits: an object of psi, shift, share, spread, min_rows and days")  # noqa: TRY004 - a refusal, as the others
    unknown = sorted(set(given) - set(DEFAULT_LIMITS))
    if unknown:
        raise ValueError(f"drift_limits.{unknown[0]}: unknown limit; the limits are {', '.join(DEFAULT_LIMITS)}")
    kept = {}
    for name, value in given.items():
        if value is None:  # back to the default
            continue
        low, high = LIMIT_RANGES[name]
        whole = name in WHOLE_LIMITS
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or not (
                math.isfinite(value) and low <= value <= high):
            raise ValueError(f"drift_limits.{name}: must be {'a whole number' if whole else 'a number'} from {low} "
                             f"to {high}, got {value!r}")
        if value != DEFAULT_LIMITS[name]:
            kept[name] = int(value) if whole else float(value)
    return kept


def limits_of(model) -> dict:
    return {**DEFAULT_LIMITS, **(getattr(model, "drift_limits", None) or {})}


def input_profile(x, pre: dict) -> dict | None:
    """A table's feature rows (as its preprocessing made them) summed per source column, or None for
    other kinds of input."""
    from trainer.data import TablePreprocessor, TextVectorizer

    if pre.get("kind") == "text" and isinstance(x, np.ndarray) and x.ndim == 2:
        # A text column: its length in words (as far as the model reads) and its share of unknown words.
        words = (x != TextVectorizer.PAD).sum(axis=1).astype(np.float64)
        column = pre.get("text_column", "text")
        return {"rows": len(x), "categorical": {},
                "numeric": {f"{column} (words)": {"count": len(words), "sum": float(words.sum()),
                                                  "sum_sq": float(np.square(words).sum())}},
                "shares": {f"{column} (unknown words)": {"count": int(words.sum()),
                                                         "hits": int((x == TextVectorizer.OOV).sum())}}}
    if pre.get("kind") == "images" and getattr(x, "ndim", 0) == 4:
        # Each image's brightness and contrast (the mean and spread of its values, per channel, as scaled),
        # read a chunk at a time (a training set read from disk is never held whole).
        channels = x.shape[-1]
        names = [f"{n}" if channels == 1 else f"{n} ({'RGB'[c] if channels == 3 else c})"
                 for n in ("brightness", "contrast") for c in range(channels)]
        numeric = {name: {"count": 0, "sum": 0.0, "sum_sq": 0.0} for name in names}
        for start in range(0, len(x), 4096):
            flat = np.asarray(x[start:start + 4096], dtype=np.float64).reshape(-1, int(np.prod(x.shape[1:-1])), channels)
            values = np.concatenate([flat.mean(axis=1), flat.std(axis=1)], axis=1)
            for i, name in enumerate(names):
                into = numeric[name]
                into["count"] += len(values)
                into["sum"] += float(values[:, i].sum())
                into["sum_sq"] += float(np.square(values[:, i]).sum())
        return {"rows": len(x), "numeric": numeric, "categorical": {}}
    if pre.get("kind") != "table" or not pre.get("features") or not isinstance(x, np.ndarray) or x.ndim != 2:
        return None
    table = TablePreprocessor.from_dict(pre["features"])
    groups = table.feature_groups()
    x = np.asarray(x, dtype=np.float64)
    numeric, categorical = {}, {}
    for column in table.numeric_columns:
        values = x[:, groups[column][0]]
        values = values[np.isfinite(values)]
        numeric[column] = {"count": len(values), "sum": float(values.sum()), "sum_sq": float(np.square(values).sum())}
    for column in table.categorical_columns:
        block = x[:, groups[column]] > 0.5
        categorical[column] = {"counts": dict(zip([str(c) for c in table.categories[column]],
                                                  block.sum(axis=0).astype(int).tolist())),
                               "unseen": int((~block.any(axis=1)).sum())}
    return {"rows": len(x), "numeric": numeric, "categorical": categorical}


def _pooled_inputs(profiles: list[dict]) -> dict:
    numeric, categorical, shares = {}, {}, {}
    for profile in profiles:
        for name, s in profile.get("shares", {}).items():
            into = shares.setdefault(name, {"count": 0, "hits": 0})
            into["count"] += s["count"]
            into["hits"] += s["hits"]
        for column, s in profile.get("numeric", {}).items():
            into = numeric.setdefault(column, {"count": 0, "sum": 0.0, "sum_sq": 0.0})
            for key in into:
                into[key] += s[key]
        for column, s in profile.get("categorical", {}).items():
            into = categorical.setdefault(column, {"counts": {}, "unseen": 0})
            for name, n in s["counts"].items():
                into["counts"][name] = into["counts"].get(name, 0) + n
            into["unseen"] += s["unseen"]
    return {"rows": sum(p.get("rows", 0) for p in profiles), "numeric": numeric, "categorical": categorical,
            "shares": shares}


def _mean_std(s: dict) -> tuple[float, float]:
    mean = s["sum"] / s["count"]
    return mean, math.sqrt(max(s["sum_sq"] / s["count"] - mean * mean, 0.0))


UNSEEN = "(not seen in training)"


def _mix_verdict(score: float, psi_limit: float) -> str:
    """A class or category mix's PSI against the limit: "worth a look" from 0.4 of it (0.1 of the default 0.25)."""
    return "same" if score < psi_limit * PSI_SOME / PSI_DIFFERENT else "some" if score < psi_limit else "different"


def input_drift(training: dict, profiles: list[dict], limits: dict = DEFAULT_LIMITS) -> list[dict]:
    """Each source column's drift from the training rows, the most drifted first."""
    shift_limit, psi_limit, share_limit = limits["shift"], limits["psi"], limits["share"]
    served = _pooled_inputs(profiles)
    found = []
    for column, s in served["numeric"].items():
        reference = training.get("numeric", {}).get(column)
        if not reference or not reference["count"] or not s["count"]:
            continue
        (mean, _), (center, spread) = _mean_std(s), _mean_std(reference)
        shift = (mean - center) / spread if spread > 0 else 0.0
        found.append({"column": column, "kind": "numeric", "score": shift, "severity": abs(shift) / shift_limit,
                      "verdict": "different" if abs(shift) > shift_limit else "same",
                      "says": f"mean {abs(shift):.2f} training standard deviations {'above' if shift > 0 else 'below'}"})
    for column, s in served["categorical"].items():
        reference = training.get("categorical", {}).get(column)
        if not reference:
            continue
        score = psi({**s["counts"], UNSEEN: s["unseen"]}, {**reference["counts"], UNSEEN: reference["unseen"]})
        verdict = _mix_verdict(score, psi_limit)
        unseen = s["unseen"] / served["rows"] if served["rows"] else 0.0
        found.append({"column": column, "kind": "categorical", "score": score, "severity": score / psi_limit,
                      "verdict": verdict, "says": f"category mix PSI {score:.3f}" + (
                          f", {unseen:.0%} of rows in categories not seen in training" if s["unseen"] else "")})
    for name, s in served["shares"].items():
        reference = training.get("shares", {}).get(name)
        if not reference or not reference["count"] or not s["count"]:
            continue
        now_share, then = s["hits"] / s["count"], reference["hits"] / reference["count"]
        rise = now_share - then
        found.append({"column": name, "kind": "share", "score": rise, "severity": rise / share_limit,
                      "verdict": "different" if rise > share_limit else "same",
                      "says": f"{now_share:.0%} of them, against {then:.0%} in training"})
    found.sort(key=lambda entry: -entry["severity"])
    return found


FEATURE_SIZE = 256  # the widest hidden layer watched (its basis is kept in the run's results)
FEATURE_COMPONENTS = 8
FEATURE_ROWS = 5000


def _short(values) -> list:
    return [float(f"{v:.6g}") for v in np.asarray(values, dtype=np.float64).ravel()]


def feature_basis(model, x, *, source: str) -> dict | None:
    """The reference for watching what the model makes of its inputs: its last hidden layer's output
    (``Sequential.feature_layer``, at most FEATURE_SIZE values) on up to FEATURE_ROWS rows of ``x``
    (evenly spread), reduced to its main directions by PCA; each direction's spread there. None where the
    model has no such layer, or its output does not vary."""
    layer = model.feature_layer(max_size=FEATURE_SIZE)
    if layer is None or x is None or len(x) < 2:
        return None
    picked = np.unique(np.linspace(0, len(x) - 1, min(len(x), FEATURE_ROWS)).astype(np.int64))
    _, features = model.predict_features(x[picked], layer)
    features = np.asarray(features, dtype=np.float64)
    if not np.all(np.isfinite(features)):
        return None
    mean = features.mean(axis=0)
    _, singular, directions = np.linalg.svd(features - mean, full_matrices=False)
    variance = np.square(singular) / len(features)
    total = float(variance.sum())
    kept = [i for i in range(min(FEATURE_COMPONENTS, len(variance))) if total > 0 and variance[i] > 1e-9 * total]
    if not kept:
        return None
    return {"layer": int(layer), "layer_type": type(model.layers[layer]).__name__, "size": int(features.shape[1]),
            "rows": len(features), "source": source, "mean": _short(mean),
            "components": [_short(directions[i]) for i in kept], "std": _short(np.sqrt(variance[kept])),
            "explained": _short(variance[kept] / total)}


def project_features(basis: dict, features) -> np.ndarray:
    """Rows of the basis' layer output as their coordinates along its directions (n, components)."""
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    return (features - np.asarray(basis["mean"])) @ np.asarray(basis["components"]).T


def feature_drift(basis: dict, served: dict, limits: dict = DEFAULT_LIMITS) -> dict | None:
    """How the served rows' coordinates along the basis' directions compare with the reference's: each
    direction's mean shift (in reference standard deviations; drifted past the shift limit) and spread ratio
    (drifted past the spread limit either way); drifted when any direction did."""
    count = served.get("count", 0)
    if not count or len(served.get("sum", [])) != len(basis["std"]):
        return None
    components = []
    for i, (total, squares, spread) in enumerate(zip(served["sum"], served["sum_sq"], basis["std"])):
        mean = total / count
        shift = mean / spread
        ratio = math.sqrt(max(squares / count - mean * mean, 0.0)) / spread
        moved = abs(shift) / limits["shift"]
        widened = abs(math.log(max(ratio, 1e-12))) / math.log(limits["spread"])
        components.append({"component": i + 1, "explained": basis["explained"][i], "shift": shift, "spread": ratio,
                           "severity": max(moved, widened), "verdict": "different" if max(moved, widened) > 1 else "same",
                           "says": " and ".join(part for part in (
                               moved > 1 and f"mean {abs(shift):.2f} standard deviations {'above' if shift > 0 else 'below'}",
                               widened > 1 and f"spread {ratio:.2f} times as wide") if part)})
    worst = max(components, key=lambda c: c["severity"])
    drifted = [c for c in components if c["verdict"] == "different"]
    rows = "test" if basis["source"] == "test" else "training"
    where = f"its last hidden layer ({basis['layer_type']}, {basis['size']} values)"
    if drifted:
        says = (f"{where} responds differently from its {rows} rows in {len(drifted)} of its {len(components)} main "
                f"directions, most direction {worst['component']} ({worst['explained']:.0%} of its variance): its {worst['says']}")
    else:
        says = (f"{where} responds to what it is sent as to its {rows} rows (the largest move, in direction "
                f"{worst['component']}, is {worst['severity']:.0%} of what counts as drift)")
    return {"layer": basis["layer"], "layer_type": basis["layer_type"], "size": basis["size"], "source": basis["source"],
            "rows": count, "components": components, "verdict": "different" if drifted else "same", "says": says}


def summarize(result: dict, pre: dict) -> dict:
    """A request's answer in a few numbers: class counts and mean confidence, or sums of the values."""
    columns, rows = result["columns"], result["rows"]
    if pre.get("task") == "classification":
        at, conf = columns.index("prediction"), columns.index("confidence")
        counts: dict[str, int] = {}
        for row in rows:
            counts[str(row[at])] = counts.get(str(row[at]), 0) + 1
        confidence = [float(row[conf]) for row in rows]
        return _with_inputs({"kind": "classes", "counts": counts, "confidence_sum": float(np.sum(confidence))},
                            result, pre)
    values = np.asarray([row[1] for row in rows], dtype=np.float64)  # the first step ahead
    values = values[np.isfinite(values)]
    if not len(values):
        return {"kind": "values", "count": 0}
    return _with_inputs({"kind": "values", "count": len(values), "sum": float(values.sum()),
                         "sum_sq": float(np.square(values).sum()), "min": float(values.min()),
                         "max": float(values.max())}, result, pre)


def _with_inputs(summary: dict, result: dict, pre: dict) -> dict:
    """The summary, with the profile of the model inputs the request was answered from (``result["inputs"]``)."""
    profile = input_profile(result["inputs"], pre) if result.get("inputs") is not None else None
    if profile:
        summary["inputs"] = profile
    if result.get("features") is not None and len(result["features"]):
        coordinates = np.asarray(result["features"], dtype=np.float64)
        summary["features"] = {"count": len(coordinates), "sum": coordinates.sum(axis=0).tolist(),
                               "sum_sq": np.square(coordinates).sum(axis=0).tolist()}
    return summary


def record(version, user, *, kind: str, result: dict | None = None, refused: str = "") -> None:
    """Log one request to ``version`` (its model's name answered it). A log that cannot be written never
    fails the request it describes."""
    try:
        with transaction.atomic():
            PredictionLog.objects.create(
                model_id=version.model_id, version=version, number=version.number,
                caller=user if getattr(user, "is_authenticated", False) else None, kind=kind,
                rows=len(result["rows"]) if result else 0, refused=refused[:300],
                summary=summarize(result, version.run.preprocessing or {}) if result else {})
    except Exception:  # the answer matters more than its log line
        import logging

        logging.getLogger(__name__).exception("prediction log of model %s not written", version.model_id)


def reference(version) -> dict | None:
    """What the version's run predicted on its test split, in the summary's terms."""
    results = version.run.results or {}
    if results.get("confusion_matrix") and results.get("class_names"):
        predicted = np.asarray(results["confusion_matrix"]).sum(axis=0)
        counts = dict(zip(results["class_names"], predicted.astype(int).tolist()))
        roc = curves.binary_roc(results)
        if roc is not None and version.run.decision_threshold is not None:  # the mix its threshold calls
            at = curves.operating_point(roc, version.run.decision_threshold)
            counts = {roc["negative"]: at["fn"] + at["tn"], roc["positive"]: at["tp"] + at["fp"]}
        return {"kind": "classes", "counts": counts}
    predicted = (results.get("residuals") or {}).get("predicted")
    values = np.asarray([v for v in predicted or [] if v is not None], dtype=np.float64)
    if len(values) < 2:
        return None
    return {"kind": "values", "mean": float(values.mean()), "std": float(values.std())}


def psi(served: dict, expected: dict) -> float:
    return population_stability_index(served, expected, floor=PSI_FLOOR)


def _pooled(summaries: list[dict]) -> dict:
    if summaries and summaries[0].get("kind") == "classes":
        counts: dict[str, int] = {}
        for s in summaries:
            for name, n in s.get("counts", {}).items():
                counts[name] = counts.get(name, 0) + int(n)
        rows = sum(counts.values())
        confidence = sum(s.get("confidence_sum", 0.0) for s in summaries)
        return {"kind": "classes", "counts": counts, "rows": rows, "confidence": confidence / rows if rows else None}
    count = sum(s.get("count", 0) for s in summaries)
    if not count:
        return {"kind": "values", "rows": 0}
    total, squares = sum(s.get("sum", 0.0) for s in summaries), sum(s.get("sum_sq", 0.0) for s in summaries)
    mean = total / count
    return {"kind": "values", "rows": count, "mean": mean, "std": math.sqrt(max(squares / count - mean * mean, 0.0)),
            "min": min(s["min"] for s in summaries if s.get("count")),
            "max": max(s["max"] for s in summaries if s.get("count"))}


def _pooled_features(parts: list[dict]) -> dict:
    width = max((len(p["sum"]) for p in parts), default=0)
    parts = [p for p in parts if len(p["sum"]) == width]  # (all of one basis: a run's basis does not change)
    return {"count": sum(p["count"] for p in parts),
            "sum": np.sum([p["sum"] for p in parts], axis=0).tolist() if parts else [],
            "sum_sq": np.sum([p["sum_sq"] for p in parts], axis=0).tolist() if parts else []}


def drift(version, summaries: list[dict], limits: dict = DEFAULT_LIMITS) -> dict | None:
    """Whether what ``version`` served (its logs' summaries) differs from what it predicted on its test split."""
    min_rows = limits["min_rows"]
    expected = reference(version)
    served = _pooled([s for s in summaries if s])
    training = (version.run.results or {}).get("input_profile")
    profiles = [s["inputs"] for s in summaries if s and s.get("inputs")]
    if not served.get("rows") or (expected is None and not (training and profiles)) or (
            expected is not None and served["kind"] != expected["kind"]):
        return None
    found = {"version": version.number, "rows": served["rows"], "served": served, "test": expected, "inputs": None,
             "features": None}
    if training and profiles and served["rows"] >= min_rows:
        found["inputs"] = input_drift(training, profiles, limits)
    basis = (version.run.results or {}).get("feature_basis")
    features = _pooled_features([s["features"] for s in summaries if s and s.get("features")])
    if basis and features["count"] >= min_rows:
        found["features"] = feature_drift(basis, features, limits)
    if served["rows"] >= min_rows and expected is None:  # a model that trained on every row: its inputs only
        return dict(found, verdict="unjudged", says="has no test split to hold its predictions against, as it "
                    "trained on every row; what it was sent is held against its training rows below")
    if served["rows"] < min_rows:
        rows = served["rows"]
        return dict(found, verdict="too few",
                    says=f"has served {rows} row{'s' if rows != 1 else ''} so far: too few to judge drift (it takes {min_rows})")
    if served["kind"] == "classes":
        score = psi(served["counts"], expected["counts"])
        verdict = _mix_verdict(score, limits["psi"])
        says = {"same": "served about the same class mix as on its test split",
                "some": "served a somewhat different class mix from its test split's",
                "different": "served a different class mix from its test split's: check what it is sent"}[verdict]
        return dict(found, psi=score, verdict=verdict, says=f"{says} (PSI {score:.3f})")
    shift = (served["mean"] - expected["mean"]) / expected["std"] if expected["std"] > 0 else 0.0
    verdict = "different" if abs(shift) > limits["shift"] else "same"
    says = (f"served predictions {abs(shift):.2f} test standard deviations {'above' if shift > 0 else 'below'} its test "
            f"split's on average{': check what it is sent' if verdict == 'different' else ''}")
    return dict(found, shift=shift, verdict=verdict, says=says)


def report(model, *, days: int | None = None, now=None) -> dict:
    """The model's log over the last ``days`` days (its drift window by default): per day and version, totals,
    refusals, and drift of the version in production."""
    days = max(1, min(int(days or limits_of(model)["days"]), MAX_DAYS))
    now = now or timezone.now()
    first = timezone.localdate(now) - timedelta(days=days - 1)
    since = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    logs = list(model.prediction_logs.filter(created_at__gte=since).select_related("caller").order_by("created_at"))
    dates = [first + timedelta(days=i) for i in range(days)]
    numbers = sorted({log.number for log in logs})
    per_day = {n: [0] * days for n in numbers}
    for log in logs:
        if not log.refused:
            per_day[log.number][(timezone.localdate(log.created_at) - first).days] += log.rows
    answered = [log for log in logs if not log.refused]
    refused = [log for log in logs if log.refused]
    production = model.production
    return {
        "days": days, "dates": [d.isoformat() for d in dates],
        "rows_per_day": [{"version": n, "rows": per_day[n]} for n in numbers],
        "requests": len(answered), "rows": sum(log.rows for log in answered), "refused": len(refused),
        "last_at": logs[-1].created_at.isoformat() if logs else None,
        "recent_refusals": [{"at": log.created_at.isoformat(), "version": log.number, "reason": log.refused,
                             "caller": log.caller.username if log.caller else None}
                            for log in reversed(refused[-RECENT_REFUSALS:])],
        "drift": drift(production, [log.summary for log in answered if log.version_id == production.pk],
                       limits_of(model)) if production else None,
        "limits": limits_of(model),
    }


DRIFT_CHECK_EVERY = timedelta(minutes=10)


def overall(found: dict | None) -> str:
    """One state for a drift block: "different" when the outputs or any input column drifted."""
    if not found:
        return ""
    states = ([found["verdict"]] + [c["verdict"] for c in found.get("inputs") or []]
              + ([found["features"]["verdict"]] if found.get("features") else []))
    for state in ("different", "some", "same"):
        if state in states:
            return state
    return found["verdict"]


def check_drift(model, *, now=None) -> str | None:
    """After a request: at most every DRIFT_CHECK_EVERY per model, judge what its version in production served
    over the report's days; when that turns "different" (or back), tell whoever registered the model and the
    version (a notification) and the workspace's webhooks (``model.drifted``, ``model.steady``). Returns the new
    state, or None when it was not checked. Never fails the request."""
    from webapp.accounts import activity, webhooks
    from webapp.experiments.models import RegisteredModel

    now = now or timezone.now()
    before = model.drift_checked_at
    if before is not None and now - before < DRIFT_CHECK_EVERY:
        return None
    if not RegisteredModel.objects.filter(pk=model.pk, drift_checked_at=before).update(drift_checked_at=now):
        return None  # another request is checking
    try:
        found = report(model, now=now)["drift"]
        state, previous = overall(found), model.drift_state
        RegisteredModel.objects.filter(pk=model.pk).update(drift_state=state)
        model.drift_state, model.drift_checked_at = state, now
        drifted = state == "different"
        if drifted == (previous == "different") or (not drifted and state not in ("same", "some")):
            return state  # no turn, or it turned to too little to judge: nothing to tell
        columns = [c["column"] for c in (found or {}).get("inputs") or [] if c["verdict"] == "different"]
        outputs = "" if found["verdict"] == "unjudged" else f"it {found['says']}"  # no test split: inputs only
        hidden = (found or {}).get("features") or {}
        hidden = hidden["says"] if hidden.get("verdict") == "different" else ""
        message = (f"{model.name} v{found['version']} drifted: " + "; ".join(
            part for part in (outputs, columns and f"input columns drifted: {', '.join(columns[:5])}", hidden) if part)
                   if drifted else f"{model.name} v{found['version']} is steady again"
                   + (f": it {found['says']}" if outputs else ": its inputs look like its training rows"))
        people = {u.pk: u for u in (model.created_by, getattr(model.production, "created_by", None)) if u is not None}
        for user in people.values():
            activity.notify(user=user, workspace=model.workspace, message=message, link=model.get_absolute_url(),
                            level="error" if drifted else "info")
        webhooks.dispatch(model.workspace, "model.drifted" if drifted else "model.steady", {
            "model": model.pk, "name": model.name, "version": (found or {}).get("version"), "state": state,
            "says": (found or {}).get("says"), "psi": (found or {}).get("psi"), "shift": (found or {}).get("shift"),
            "drifted_columns": columns,
            "features_drifted": bool(hidden), "path": model.get_absolute_url()}, text=f"[{model.workspace.name}] {message}")
        return state
    except Exception:  # a drift alert must never fail the request that set it off
        import logging

        logging.getLogger(__name__).exception("drift check of model %s failed", model.pk)
        return None


def prune(*, now=None) -> int:
    """Delete prediction log rows older than settings.KEEP_PREDICTION_LOGS days; how many went."""
    from django.conf import settings

    if settings.KEEP_PREDICTION_LOGS is None:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=settings.KEEP_PREDICTION_LOGS)
    deleted, _ = PredictionLog.objects.filter(created_at__lt=cutoff).delete()
    return deleted
