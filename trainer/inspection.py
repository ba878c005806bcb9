"""What a trained model relies on: permutation importance (scikit-learn's
`sklearn.inspection.permutation_importance`, for this engine's models), and saliency: the
gradient of a class's score with respect to each input value (Simonyan et al. 2014,
"Deep Inside Convolutional Networks"), averaged over noisy copies of the input on request
(SmoothGrad, Smilkov et al. 2017).

A feature's importance is how much the model's score drops when that feature's values are
shuffled among the rows, which breaks its link with the target while keeping its distribution.
Features can be shuffled in groups (the one-hot columns of one categorical column together), so
the answer is per source column, not per encoded feature.

    result = permutation_importance(model, x_test, y_test, score=lambda y, out: accuracy(y, out),
                                    groups={"age": [0], "colour": [1, 2, 3]}, n_repeats=5, seed=0)
    result["importances_mean"]  # {"age": 0.21, "colour": 0.02}

    gradients = saliency(model, images, samples=16, noise=0.1)  # (N, H, W, C), as images
    maps = np.abs(gradients).max(axis=-1)  # (N, H, W): how much each pixel moves the score
"""
import numpy as np

from trainer.backend import to_host

__all__ = ["permutation_importance", "saliency"]


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


def saliency(model, x, *, classes=None, samples=1, noise=0.1, seed=0, batch_size=64):
    """d score / d x for each row of `x`: the gradient of one output's score, taken before the
    model's last activation (a class's logit, which softmax would squash), with respect to every
    input value, in inference behaviour (no dropout, batch norm's moving statistics).

    classes: the output to explain per row, (N,) ints; None explains each row's highest output.
    samples > 1 averages the gradients of that many copies of each row with Gaussian noise of
    standard deviation `noise` times the span of `x` added (SmoothGrad), from `seed` alone.
    Returns a host array shaped like `x`, in the model's dtype. The model's weights are left as they were and
    collect no gradient.
    """
    from trainer import backend
    from trainer.core import Variable, test_mode

    x = np.asarray(to_host(x), dtype=getattr(model, "dtype", np.float32))
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"saliency: x must hold at least one row. Received: shape {x.shape}")
    if not isinstance(samples, (int, np.integer)) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"saliency: samples must be a positive integer. Received: samples={samples!r}")
    if classes is not None:
        classes = np.asarray(classes).reshape(-1).astype(np.int64)
        if len(classes) != len(x):
            raise ValueError(f"saliency: classes must name one output per row. Received: {len(classes)} for {len(x)} rows")
    if not model.built:
        model.build(x.shape[1:])
    weights = list(model.trainable_weights)
    wanted = [w.requires_grad for w in weights]
    rng = np.random.default_rng(seed)
    spread = float(x.max() - x.min()) or 1.0
    found = np.zeros_like(x)
    try:
        for w in weights:  # the input's gradient only: no weight gradient is worked out or kept
            w.requires_grad = False
        with test_mode():
            for start in range(0, len(x), batch_size):
                rows = x[start:start + batch_size]
                for _ in range(samples):
                    noisy = rows if samples == 1 else rows + rng.normal(0, noise * spread, rows.shape).astype(x.dtype)
                    xv = Variable(backend.to_device(noisy), requires_grad=True)
                    out = model(xv, logits=True)
                    scores = np.asarray(to_host(out.data))
                    flat = scores.reshape(len(rows), -1)
                    picked = flat.argmax(axis=1) if classes is None else classes[start:start + len(rows)]
                    if picked.min() < 0 or picked.max() >= flat.shape[1]:
                        raise ValueError(f"saliency: classes must be from 0 to {flat.shape[1] - 1}")
                    seed_grad = np.zeros_like(flat)
                    seed_grad[np.arange(len(rows)), picked] = 1.0
                    out.backward(backend.to_device(seed_grad.reshape(scores.shape).astype(scores.dtype)))
                    found[start:start + len(rows)] += np.asarray(to_host(xv.grad), dtype=x.dtype)
    finally:
        for w, flag in zip(weights, wanted):
            w.requires_grad = flag
    return found / samples if samples > 1 else found
