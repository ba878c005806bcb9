"""Step-based learning-rate schedules (Keras-like). ``schedule(step) -> float``.

Every schedule accepts ``warmup_steps``: the rate rises linearly to the schedule's start over
that many steps, then the schedule runs from its own step 0. In specs a schedule is a dict
``{"type": "cosine" | "exponential" | "step", ...}``.
"""
import math
from typing import ClassVar

from trainer.layers import REQUIRED, Arg


class LearningRateSchedule:
    type = ""
    args: ClassVar[dict] = {}

    def __init__(self, **values):
        cls = type(self).__name__
        for key, arg in self.args.items():
            value = values.get(key, arg.default)
            if value is REQUIRED:
                raise TypeError(f"{cls}: missing required argument {key!r}")
            try:
                value = arg.check(value)
            except ValueError as error:
                raise ValueError(f"{cls}: {key} {error}. Received: {key}={values.get(key)!r}") from None
            setattr(self, key, value)

    def __call__(self, step):
        warmup = getattr(self, "warmup_steps", 0)
        if step < warmup:
            return self.peak() * (step + 1) / warmup
        return float(self.decay(step - warmup))

    def peak(self):
        return self.initial_learning_rate

    def get_config(self):
        return {"type": self.type, **{key: getattr(self, key) for key in self.args}}


_RATE = Arg("float", REQUIRED, low=0.0, high=10.0)
_WARMUP = Arg("int", 0, low=0, high=10 ** 9)


class ExponentialDecay(LearningRateSchedule):
    type = "exponential"
    args: ClassVar[dict] = {"initial_learning_rate": _RATE, "decay_steps": Arg("int", low=1, high=10 ** 9),
            "decay_rate": Arg("float", low=0.0, low_open=True, high=10.0),
            "staircase": Arg("bool", False), "warmup_steps": _WARMUP}

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, warmup_steps=0):
        super().__init__(initial_learning_rate=initial_learning_rate, decay_steps=decay_steps,
                         decay_rate=decay_rate, staircase=staircase, warmup_steps=warmup_steps)

    def decay(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p


class StepDecay(LearningRateSchedule):
    """Multiply the rate by ``gamma`` every ``step_size`` steps."""

    type = "step"
    args: ClassVar[dict] = {"initial_learning_rate": _RATE, "step_size": Arg("int", low=1, high=10 ** 9),
            "gamma": Arg("float", 0.1, low=0.0, low_open=True, high=10.0), "warmup_steps": _WARMUP}

    def __init__(self, initial_learning_rate, step_size, gamma=0.1, warmup_steps=0):
        super().__init__(initial_learning_rate=initial_learning_rate, step_size=step_size, gamma=gamma,
                         warmup_steps=warmup_steps)

    def decay(self, step):
        return self.initial_learning_rate * self.gamma ** (step // self.step_size)


class CosineDecay(LearningRateSchedule):
    """Keras CosineDecay: optional linear warmup from initial_learning_rate to warmup_target,
    then cosine decay to alpha x the peak over decay_steps."""

    type = "cosine"
    args: ClassVar[dict] = {"initial_learning_rate": _RATE, "decay_steps": Arg("int", low=1, high=10 ** 9),
            "alpha": Arg("float", 0.0, low=0.0, high=1.0), "warmup_steps": _WARMUP,
            "warmup_target": Arg("float", None, low=0.0, low_open=True, high=10.0, nullable=True)}

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, warmup_steps=0, warmup_target=None):
        super().__init__(initial_learning_rate=initial_learning_rate, decay_steps=decay_steps, alpha=alpha,
                         warmup_steps=warmup_steps, warmup_target=warmup_target)

    def peak(self):
        return self.initial_learning_rate if self.warmup_target is None else self.warmup_target

    def __call__(self, step):
        if step < self.warmup_steps and self.warmup_target is not None:
            start = self.initial_learning_rate
            return start + (self.warmup_target - start) * step / self.warmup_steps
        return super().__call__(step)

    def decay(self, step):
        fraction = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
        return self.peak() * ((1.0 - self.alpha) * cosine + self.alpha)


class LinearWarmup(LearningRateSchedule):
    """Wrap a schedule (or a constant rate): rise linearly over ``warmup_steps``, then follow it."""

    type = "linear_warmup"

    def __init__(self, schedule, warmup_steps):
        if not isinstance(warmup_steps, int) or isinstance(warmup_steps, bool) or warmup_steps < 0:
            raise ValueError(f"LinearWarmup: warmup_steps must be a non-negative integer. "
                             f"Received: warmup_steps={warmup_steps!r}")
        self.schedule = schedule
        self.warmup_steps = warmup_steps

    def peak(self):
        return self.schedule(0) if callable(self.schedule) else float(self.schedule)

    def decay(self, step):
        return self.schedule(step) if callable(self.schedule) else float(self.schedule)

    def get_config(self):
        inner = self.schedule.get_config() if callable(self.schedule) else self.schedule
        return {"type": self.type, "schedule": inner, "warmup_steps": self.warmup_steps}


SCHEDULES = {cls.type: cls for cls in (ExponentialDecay, StepDecay, CosineDecay)}


def get(identifier):
    """A schedule from a dict {"type": ...}, a schedule, or a float (returned unchanged)."""
    if isinstance(identifier, (LearningRateSchedule, float, int)) and not isinstance(identifier, bool):
        return identifier
    if isinstance(identifier, dict):
        kind = identifier.get("type")
        options = {k: v for k, v in identifier.items() if k != "type"}
        if kind == LinearWarmup.type:
            return LinearWarmup(get(options.get("schedule")), options.get("warmup_steps", 0))
        if kind in SCHEDULES:
            unknown = set(options) - set(SCHEDULES[kind].args)
            if unknown:
                raise ValueError(f"{kind} schedule: unknown option(s) {', '.join(sorted(unknown))}")
            return SCHEDULES[kind](**options)
    raise ValueError(f"Unknown learning-rate schedule: {identifier!r}. "
                     f"Expected a number or a dict with type {', '.join(SCHEDULES)}.")
