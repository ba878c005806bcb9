"""What a trained model relies on: permutation importance (scikit-learn's
`sklearn.inspection.permutation_importance`, for this engine's models).

A feature's importance is how much the model's score drops when that feature's values are
shuffled among the rows, which breaks its link with the target while keeping its distribution.
Features can be shuffled in groups (the one-hot columns of one categorical column together), so
the answer is per source column, not per encoded feature.

    result = permutation_importance(model, x_test, y_test, score=lambda y, out: accuracy(y, out),
                                    groups={"age": [0], "colour": [1, 2, 3]}, n_repeats=5, seed=0)
    result["importances_mean"]  # {"age": 0.21, "colour": 0.02}
"""
import numpy as np

from trainer.backend import to_host

__all__ = ["permutation_importance"]


def _check(owner, x, y, n_repeats, groups):
    if not isinstance(n_repeats, (int, np.integer)) or isinstance(n_repeats, bool) or n_repeats < 1:
        raise ValueError(f"{owner}: n_repeats must be a positive integer. Received: n_repeats={n_repeats!r}")
    if x.ndim < 2:
        raise ValueError(f"{owner}: x must have a row axis and a feature axis. Received: shape {x.shape}")
    if len(x) != len(y):
        raise ValueError(f"{owner}: x and y must have as many rows. Received: {len(x)} and {len(y)}")
    if len(x) < 2:
        raise ValueError(f"{owner}: at least 2 rows are needed to shuffle. Received: {len(x)}")
    width = x.shape[-1]
    if groups is None:
        return {str(j): [j] for j in range(width)}
    checked = {}
    for name, columns in dict(groups).items():
        columns = [int(c) for c in columns]
        if not columns:
            raise ValueError(f"{owner}: group {name!r} has no feature columns")
        bad = [c for c in columns if not 0 <= c < width]
        if bad:
            raise ValueError(f"{owner}: group {name!r} names feature column {bad[0]}, "
                             f"but x has {width} (0 to {width - 1})")
        checked[str(name)] = columns
    return checked


def permutation_importance(model, x, y, *, score, groups=None, n_repeats=5, seed=0, batch_size=256):
    """The drop in `score(y, outputs)` (greater is better) when each group of feature columns
    (the last axis of `x`) is shuffled across rows, `n_repeats` times each.

    Returns {"baseline": float, "importances": {name: [drop per repeat]},
    "importances_mean": {name: float}, "importances_std": {name: float}}. Group names default
    to the column numbers. The rows of a group are shuffled together (one permutation for all
    its columns), so a one-hot block stays one-hot. The shuffles come from `seed` alone.
    """
    x = np.asarray(to_host(x))
    y = np.asarray(to_host(y))
    groups = _check("permutation_importance", x, y, n_repeats, groups)

    def scored(features):
        outputs = np.asarray(to_host(model.predict(features, batch_size=batch_size)), dtype=np.float64)
        return float(score(y, outputs))

    baseline = scored(x)
    rng = np.random.default_rng(seed)
    shuffled = x.copy()
    drops = {}
    for name, columns in groups.items():
        drops[name] = []
        for _ in range(n_repeats):
            order = rng.permutation(len(x))
            shuffled[..., columns] = x[order][..., columns]
            drops[name].append(baseline - scored(shuffled))
        shuffled[..., columns] = x[..., columns]
    return {"baseline": baseline, "importances": drops,
            "importances_mean": {name: float(np.mean(d)) for name, d in drops.items()},
            "importances_std": {name: float(np.std(d)) for name, d in drops.items()}}
