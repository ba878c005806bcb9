"""Choosing a learning rate: the range test (Smith, "Cyclical Learning Rates for Training Neural
Networks", 2015; fast.ai's and PyTorch Lightning's ``lr_find``).

Train from the model's initial weights for a few dozen steps while the rate grows exponentially
from ``start`` to ``end``, and watch the smoothed training loss: it stays flat while the rate is
too small to matter, falls once the rate is useful, and blows up once it is too large. The
suggested rate is where the loss falls fastest (the steepest slope against the log of the rate),
before its lowest point. The model's weights and its optimizer's state are put back afterwards.

    found = lr_find(model, x, y, batch_size=32)
    found["suggestion"]  # e.g. 0.0028, or None when the loss never clearly fell
    spec = with_learning_rate(spec, found["suggestion"])
"""
import contextlib
import copy
import math

import numpy as np

from trainer import backend
from trainer.core import using_config

__all__ = ["lr_find", "suggest", "with_learning_rate"]


def _check(owner, start, end, steps, smoothing, divergence):
    if not (isinstance(start, (int, float)) and 0 < start < 10):
        raise ValueError(f"{owner}: start must be a number in (0, 10). Received: start={start!r}")
    if not (isinstance(end, (int, float)) and start < end <= 10):
        raise ValueError(f"{owner}: end must be larger than start and at most 10. Received: end={end!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or not 10 <= steps <= 10_000:
        raise ValueError(f"{owner}: steps must be an integer in [10, 10000]. Received: steps={steps!r}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"{owner}: smoothing must be in [0, 1). Received: smoothing={smoothing!r}")
    if not divergence > 1:
        raise ValueError(f"{owner}: divergence must be larger than 1. Received: divergence={divergence!r}")


def suggest(rates, losses, skip=0.1):
    """The rate where ``losses`` (smoothed) fall fastest against log(rate), among the points after the
    first ``skip`` share and up to the lowest loss; None when there is no such descent (or fewer than
    5 points)."""
    losses = np.asarray(losses, dtype=np.float64)
    lowest = int(np.argmin(losses))
    first = int(len(losses) * skip)
    # A descent worth the name: over a few points, by a tenth of the loss at least (not batch noise).
    if len(losses) < 5 or lowest - first < 2 or not losses[lowest] < 0.9 * losses[first]:
        return None
    slopes = np.gradient(losses[first:lowest + 1], np.log(np.asarray(rates[first:lowest + 1], dtype=np.float64)))
    steepest = int(np.argmin(slopes))
    return float(rates[first + steepest]) if slopes[steepest] < 0 else None


def lr_find(model, x, y, *, batch_size=32, start=1e-7, end=1.0, steps=100, seed=0, smoothing=0.98,
            divergence=4.0):
    """Run the range test on ``model`` (compiled) over ``x``, ``y``; returns {"learning_rates",
    "losses" (smoothed, bias-corrected as an Adam moment; a step's loss counts at most
    ``divergence`` × the median of the 10 before it), "raw_losses", "suggestion",
    "minimum" (the rate at the lowest smoothed loss), "stopped" ("diverged", "not finite" or
    "end")}. It stops early once the smoothed loss passes ``divergence`` × its lowest value, judged
    from the tenth of the steps (at least 5) on."""
    owner = "lr_find"
    model._require_compiled(f"{owner}()")
    _check(owner, start, end, steps, smoothing, divergence)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"{owner}: batch_size must be a positive integer. Received: batch_size={batch_size!r}")
    x = model._prepare_x(x)
    if not model.built:
        model.build(x.shape[1:], seed=seed)
    model._check_input(x)
    y = model._prepare_y(y)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"{owner}: x has {len(x)} samples and y {len(y)}: they must match and not be empty")
    optimizer = model.optimizer
    if optimizer.params != model.trainable_weights:
        optimizer.build(model.trainable_weights)
    weights = [np.array(backend.to_host(w), copy=True) for w in model.get_weights()]
    state, rate_setting = optimizer.get_state(), optimizer.learning_rate
    rates = start * (end / start) ** (np.arange(steps) / (steps - 1))
    found = {"learning_rates": [], "losses": [], "raw_losses": [], "stopped": "end"}
    average, lowest, warm = 0.0, math.inf, max(5, steps // 10)
    train = model._batches(x, y, batch_size)
    try:
        with using_config("train", True):
            epoch = 0
            while len(found["raw_losses"]) < steps and found["stopped"] == "end":
                with contextlib.closing(train.epoch(*model._epoch_order(train, seed, epoch))) as batches:
                    for _begin, _end, xb, yb in batches:
                        i = len(found["raw_losses"])
                        optimizer.learning_rate = float(rates[i])
                        loss, _, _ = model._train_step(xb, yb, model._fused)
                        loss = float(loss)  # one read per step: the test is a few dozen steps
                        found["raw_losses"].append(loss)
                        found["learning_rates"].append(float(rates[i]))
                        if not math.isfinite(loss):
                            found["stopped"] = "not finite"
                            found["losses"].append(None)
                            break
                        # A batch far above the steps before it (a skewed target's rare large values) is
                        # counted at `divergence` × their median: noise, not the rate blowing up, which
                        # lifts the median too.
                        recent = found["raw_losses"][-11:-1]
                        counted = min(loss, divergence * float(np.median(recent))) if len(recent) >= 3 else loss
                        average = smoothing * average + (1 - smoothing) * counted
                        smoothed = average / (1 - smoothing ** (i + 1))
                        found["losses"].append(smoothed)
                        # The first steps' average rests on a few batches, and one easy batch would set
                        # a lowest loss that the next hard one seems to blow past: judged after them.
                        if i >= warm:
                            lowest = min(lowest, smoothed)
                            if smoothed > divergence * lowest:
                                found["stopped"] = "diverged"
                                break
                        if i + 1 == steps:
                            break
                epoch += 1
    finally:
        model.set_weights(weights)
        optimizer.learning_rate = rate_setting
        optimizer.set_state(state)
    finite = [(r, s) for r, s in zip(found["learning_rates"], found["losses"]) if s is not None]
    kept_rates, kept_losses = [r for r, _ in finite], [s for _, s in finite]
    found["suggestion"] = suggest(kept_rates, kept_losses) if finite else None
    found["minimum"] = kept_rates[int(np.argmin(kept_losses))] if finite else None
    return found


def with_learning_rate(spec, rate):
    """A copy of ``spec`` whose optimizer starts at ``rate``: the constant rate, or a schedule's
    starting (or warm-up target) rate, inside a warm-up wrapper too."""
    spec = copy.deepcopy(spec)
    compile_section = spec.setdefault("compile", {})
    optimizer = compile_section.get("optimizer", "rmsprop")
    if isinstance(optimizer, str):
        optimizer = {"type": optimizer}
    compile_section["optimizer"] = optimizer
    setting = optimizer.get("learning_rate")
    if not isinstance(setting, dict):
        optimizer["learning_rate"] = float(rate)
        return spec
    while "schedule" in setting:  # a warm-up around another schedule, or around a constant rate
        if not isinstance(setting["schedule"], dict):
            setting["schedule"] = float(rate)
            return spec
        setting = setting["schedule"]
    key = "warmup_target" if setting.get("warmup_target") is not None else "initial_learning_rate"
    setting[key] = float(rate)
    return spec
