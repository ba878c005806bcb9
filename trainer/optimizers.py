"""Optimizers with Keras names, defaults and update rules.

On ``build`` the parameters are packed into one flat buffer (each Parameter's ``data`` becomes
a view into it), so an update is a handful of in-place vectorised operations over all
weights at once, whatever the number of layers. Weight decay is decoupled (Keras 3 / AdamW).
"""
import math
from typing import ClassVar

import numpy as np

from trainer import backend, schedules
from trainer.layers import REQUIRED, Arg


class Optimizer:
    type = ""
    slot_names: ClassVar[tuple] = ()
    args: ClassVar[dict] = {}
    common_args: ClassVar[dict] = {
        "learning_rate": Arg("float", 0.001, low=0.0, low_open=True, high=10.0),
        "weight_decay": Arg("float", None, low=0.0, high=1.0, nullable=True),
        "clipnorm": Arg("float", None, low=0.0, low_open=True, nullable=True),
        "clipvalue": Arg("float", None, low=0.0, low_open=True, nullable=True),
        "global_clipnorm": Arg("float", None, low=0.0, low_open=True, nullable=True),
    }

    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, **values):
        cls = type(self).__name__
        self.learning_rate = schedules.get(learning_rate)
        if not isinstance(self.learning_rate, schedules.LearningRateSchedule):
            self.learning_rate = self._checked(cls, "learning_rate", self.common_args["learning_rate"], learning_rate)
        common = {"weight_decay": weight_decay, "clipnorm": clipnorm, "clipvalue": clipvalue,
                  "global_clipnorm": global_clipnorm}
        for key, value in common.items():
            setattr(self, key, self._checked(cls, key, self.common_args[key], value))
        for key, arg in self.args.items():
            setattr(self, key, self._checked(cls, key, arg, values.pop(key, arg.default)))
        if values:
            raise TypeError(f"{cls}: unexpected argument(s) {', '.join(sorted(values))}")
        self.iterations = 0
        self.lr_factor = 1.0  # what ReduceLROnPlateau has multiplied the rate by so far
        self.params = []
        self.flat = None
        self.device_scalars = None
        self._scalars = None

    @staticmethod
    def _checked(owner, key, arg, value):
        if value is REQUIRED:
            raise TypeError(f"{owner}: missing required argument {key!r}")
        try:
            return arg.check(value)
        except ValueError as error:
            raise ValueError(f"{owner}: {key} {error}. Received: {key}={value!r}") from None

    # -- configuration
    def get_config(self):
        lr = self.learning_rate
        config = {"type": self.type,
                  "learning_rate": lr.get_config() if hasattr(lr, "get_config") else lr}
        for key in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        for key in self.args:
            config[key] = getattr(self, key)
        return config

    def current_learning_rate(self):
        lr = self.learning_rate
        return (float(lr(self.iterations)) if callable(lr) else float(lr)) * self.lr_factor

    # -- state
    def build(self, params):
        """Pack ``params`` into one flat buffer and allocate the optimizer slots."""
        params = list(params)
        xp = backend.get_array_module(params[0].data) if params else np
        dtype = params[0].data.dtype if params else np.float32
        sizes = [p.data.size for p in params]
        total = sum(sizes)
        flat = xp.empty(total, dtype=dtype)
        offset = 0
        for p, size in zip(params, sizes):
            view = flat[offset:offset + size].reshape(p.data.shape)
            view[...] = p.data
            p.data = view
            offset += size
        self.params = params
        self.flat = flat
        self.grad = xp.zeros(total, dtype=dtype)
        self.sizes = sizes
        self.offsets = np.cumsum([0] + sizes[:-1]).astype(np.int64)
        self.scratch = xp.empty(total, dtype=dtype)
        self.slots = {name: self.initial_slot(name, flat) for name in self.slot_names}
        self.iterations = 0
        self.lr_factor = 1.0
        self.device_scalars = None

    def initial_slot(self, name, flat):
        return backend.get_array_module(flat).zeros_like(flat)

    def get_state(self):
        """Slots (host arrays), the step counter and the plateau factor, for checkpoints."""
        state = {name: np.array(backend.to_host(value), copy=True) for name, value in self.slots.items()}
        state["iterations"] = np.asarray(self.iterations, dtype=np.int64)
        state["lr_factor"] = np.asarray(self.lr_factor, dtype=np.float64)
        return state

    def set_state(self, state):
        for name in self.slots:
            value = state[name]
            if value.shape != self.slots[name].shape:
                raise ValueError(f"{type(self).__name__}: slot {name!r} has {self.slots[name].size} values, "
                                 f"the checkpoint has {value.size}")
            backend.copy_to_device(self.slots[name], value)
        self.iterations = int(state["iterations"])
        self.lr_factor = float(state["lr_factor"]) if "lr_factor" in state else 1.0  # older checkpoints: none

    # -- the update
    def step(self):
        """Apply one update from the parameters' ``grad`` (then cleared); returns the learning rate."""
        lr = self.prepare_step()
        self.apply_step()
        return lr

    def prepare_step(self):
        """The host's half of a step: count it and work out its scalars (learning rate, decay
        factor, bias corrections). Returns the learning rate. ``apply_step`` does the rest on the
        device; a step replayed from a CUDA graph runs only that half, so with
        ``use_device_scalars`` the scalars come from rows that ``plan_steps`` put on the device."""
        lr = self.current_learning_rate()
        self.iterations += 1
        if self.device_scalars is None:
            self._scalars = self.step_scalars(lr)
        return lr

    def plan_steps(self, count):
        """Put the scalars of the next ``count`` steps on the device, in one copy: each step's
        ``apply_step`` then loads its row there, with no host-to-device copy between steps."""
        start, rows = self.iterations, []
        try:
            for _ in range(count):
                lr = self.current_learning_rate()
                self.iterations += 1
                rows.append(self.step_scalars(lr))
        finally:
            self.iterations = start
        self.device_scalars.plan(rows)

    def step_scalars(self, lr):
        """The numbers one step's update takes that may change from step to step."""
        return {"lr": lr, "decay": 1.0 - lr * self.weight_decay} if self.weight_decay else {"lr": lr}

    def use_device_scalars(self, steps):
        """From now on read each step's scalars from the device, from rows for up to ``steps`` steps
        that ``plan_steps`` writes; with 0, take them as host numbers again."""
        self.device_scalars = _DeviceScalars(self.flat, steps) if steps else None

    def apply_step(self):
        """The device's half of a step: gather the gradients, clip, decay and update the weights."""
        xp = backend.get_array_module(self.flat)
        g = self.grad
        # One concatenation into the flat gradient (on the GPU one kernel, not one copy per weight).
        if self.params:
            xp.concatenate([p.grad.reshape(-1) if p.grad is not None else xp.zeros(size, dtype=g.dtype)
                            for p, size in zip(self.params, self.sizes)], out=g)
        for p in self.params:
            p.grad = None
        self._clip(g, xp)
        scalars = self._scalars if self.device_scalars is None else self.device_scalars.next()
        if self.weight_decay:
            self.flat *= scalars["decay"]
        self.update(self.flat, g, scalars, xp)

    def _clip(self, g, xp):
        if self.clipvalue is not None:
            xp.clip(g, -self.clipvalue, self.clipvalue, out=g)
        if self.clipnorm is not None and len(self.sizes):
            squares = xp.add.reduceat(g * g, xp.asarray(self.offsets)) if xp is np else \
                xp.stack([(g[o:o + s] ** 2).sum() for o, s in zip(self.offsets, self.sizes)])
            norms = xp.sqrt(squares)
            scale = xp.minimum(1.0, self.clipnorm / xp.maximum(norms, 1e-12)).astype(g.dtype)
            g *= xp.repeat(scale, self.sizes)
        if self.global_clipnorm is not None:
            norm = xp.sqrt((g * g).sum())
            g *= xp.minimum(1.0, self.global_clipnorm / xp.maximum(norm, 1e-12)).astype(g.dtype)

    def update(self, w, g, s, xp):
        """Update ``w`` in place from ``g``; ``s`` holds ``step_scalars``' values (numbers, or device
        scalars that the update must pass to its kernels as they are)."""
        raise NotImplementedError(f"{type(self).__name__}.update")

    def _fused_update(self, operation, w, g, scalars, slots=()):
        """The update as one GPU kernel over the flat buffer: ``g`` and the scalars are read, ``w``
        and the named slots are updated in place (the NumPy path keeps its in-place ufuncs)."""
        kernel = backend.elementwise_kernel(
            f"cupola_{self.type}_{len(slots)}", ", ".join(["T g", *(f"T {name}" for name in scalars)]),
            ", ".join(["T w", *(f"T {name}" for name in slots)]), operation)
        kernel(g, *(value if hasattr(value, "shape") else g.dtype.type(value) for value in scalars.values()), w,
               *(self.slots[name] for name in slots))


class SGD(Optimizer):
    type = "sgd"
    args: ClassVar[dict] = {"momentum": Arg("float", 0.0, low=0.0, high=1.0), "nesterov": Arg("bool", False)}
    slot_names: ClassVar[tuple] = ("momentum",)

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, momentum=momentum, nesterov=nesterov, **kwargs)

    def update(self, w, g, s, xp):
        lr = s["lr"]
        if backend.fused(xp):
            if not self.momentum:
                return self._fused_update("w -= lr * g;", w, g, {"lr": lr})
            step = "mu * momentum - lr * g" if self.nesterov else "momentum"
            return self._fused_update(f"momentum = mu * momentum - lr * g; w += {step};", w, g,
                                      {"lr": lr, "mu": self.momentum}, ("momentum",))
        if not self.momentum:
            g *= lr
            w -= g
            return
        v = self.slots["momentum"]
        # v = momentum * v - lr * g; w += v (Nesterov: w += momentum * v - lr * g)
        v *= self.momentum
        g *= lr
        v -= g
        if self.nesterov:
            xp.multiply(v, self.momentum, out=self.scratch)
            self.scratch -= g
            w += self.scratch
        else:
            w += v


class Adam(Optimizer):
    type = "adam"
    args: ClassVar[dict] = {"beta_1": Arg("float", 0.9, low=0.0, high=1.0, high_open=True),
            "beta_2": Arg("float", 0.999, low=0.0, high=1.0, high_open=True),
            "epsilon": Arg("float", 1e-7, low=0.0, low_open=True, high=1.0)}
    slot_names: ClassVar[tuple] = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kwargs)

    def step_scalars(self, lr):
        b1, b2, t = self.beta_1, self.beta_2, self.iterations
        return {**super().step_scalars(lr), "alpha": lr * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)}

    def update(self, w, g, s, xp):
        m, v, tmp = self.slots["m"], self.slots["v"], self.scratch
        b1, b2, alpha = self.beta_1, self.beta_2, s["alpha"]
        if backend.fused(xp):
            return self._fused_update(
                "m = b1 * m + (1 - b1) * g; v = b2 * v + (1 - b2) * g * g; w -= alpha * m / (sqrt(v) + eps);",
                w, g, {"alpha": alpha, "b1": b1, "b2": b2, "eps": self.epsilon}, ("m", "v"))
        kernels = backend.cpu_kernels(xp)
        if kernels:  # the operations below, in one pass
            return kernels.adam(w, g, m, v, alpha, b1, b2, self.epsilon)
        m *= b1
        xp.multiply(g, 1.0 - b1, out=tmp)
        m += tmp
        v *= b2
        g *= g
        g *= 1.0 - b2
        v += g
        xp.sqrt(v, out=tmp)
        tmp += self.epsilon
        xp.divide(m, tmp, out=tmp)
        tmp *= alpha
        w -= tmp


class AdamW(Adam):
    type = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 **kwargs):
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         weight_decay=weight_decay, **kwargs)


class RMSprop(Optimizer):
    type = "rmsprop"
    args: ClassVar[dict] = {"rho": Arg("float", 0.9, low=0.0, high=1.0, high_open=True),
            "epsilon": Arg("float", 1e-7, low=0.0, low_open=True, high=1.0)}
    slot_names: ClassVar[tuple] = ("velocity",)

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, rho=rho, epsilon=epsilon, **kwargs)

    def update(self, w, g, s, xp):
        lr = s["lr"]
        if backend.fused(xp):
            return self._fused_update("velocity = rho * velocity + (1 - rho) * g * g; w -= lr * g / sqrt(velocity + eps);",
                                      w, g, {"lr": lr, "rho": self.rho, "eps": self.epsilon}, ("velocity",))
        v, tmp = self.slots["velocity"], self.scratch
        v *= self.rho
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - self.rho
        v += tmp
        xp.add(v, self.epsilon, out=tmp)
        xp.sqrt(tmp, out=tmp)
        xp.divide(g, tmp, out=tmp)
        tmp *= lr
        w -= tmp


class Adagrad(Optimizer):
    type = "adagrad"
    args: ClassVar[dict] = {"initial_accumulator_value": Arg("float", 0.1, low=0.0, high=1e6),
            "epsilon": Arg("float", 1e-7, low=0.0, low_open=True, high=1.0)}
    slot_names: ClassVar[tuple] = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, initial_accumulator_value=initial_accumulator_value,
                         epsilon=epsilon, **kwargs)

    def initial_slot(self, name, flat):
        return backend.get_array_module(flat).full_like(flat, self.initial_accumulator_value)

    def update(self, w, g, s, xp):
        lr = s["lr"]
        if backend.fused(xp):
            return self._fused_update("accumulator += g * g; w -= lr * g / sqrt(accumulator + eps);",
                                      w, g, {"lr": lr, "eps": self.epsilon}, ("accumulator",))
        acc, tmp = self.slots["accumulator"], self.scratch
        xp.multiply(g, g, out=tmp)
        acc += tmp
        xp.add(acc, self.epsilon, out=tmp)
        xp.sqrt(tmp, out=tmp)
        xp.divide(g, tmp, out=tmp)
        tmp *= lr
        w -= tmp


class _DeviceScalars:
    """Steps' scalars on the device: a table of planned rows and the row the current step uses.

    A CUDA graph bakes the host numbers a kernel was launched with into the graph, so a replayed
    step would keep the learning rate and bias corrections of the step it was captured at. Here
    the host writes the rows of many steps at once (``plan``); each step copies its row on the
    device (``next``, a step counter indexes the table) and the update's kernels take that row's
    0-d views. On NumPy (graphs only emulated, in tests) the numbers are read back from the row.
    """

    def __init__(self, like, steps):
        xp = backend.get_array_module(like)
        self.xp, self.numpy, self.steps = xp, xp is np, steps
        self.dtype = np.float64 if self.numpy else like.dtype
        self.counter = xp.zeros(1, dtype=np.int64)
        self.table = self.row = self.views = None  # shaped by the first plan, before any step runs

    def plan(self, rows):
        if len(rows) > self.steps:
            raise ValueError(f"{len(rows)} steps planned, room for {self.steps}")
        if self.table is None:  # made once: a graph holds their addresses
            names = list(rows[0])
            self.table = self.xp.zeros((self.steps, len(names)), dtype=self.dtype)
            self.row = self.xp.zeros((1, len(names)), dtype=self.dtype)
            self.views = {name: self.row[0, i:i + 1].reshape(()) for i, name in enumerate(names)}  # 0-d views
        host = np.zeros(self.table.shape, dtype=self.table.dtype)
        host[:len(rows)] = [[row[name] for name in self.views] for row in rows]
        backend.copy_to_device(self.table, host)
        self.counter[...] = 0

    def next(self):
        """The next planned row, taken on the device, as the update's scalars."""
        self.xp.take(self.table, self.counter, axis=0, out=self.row)
        self.counter += 1
        return {name: float(view) for name, view in self.views.items()} if self.numpy else self.views


OPTIMIZERS = {cls.type: cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad)}
NAMES = tuple(OPTIMIZERS)


def option_names(kind):
    return ("learning_rate", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm") + \
        tuple(OPTIMIZERS[kind].args)


def get(identifier):
    """An Optimizer from a name ("adam"), a dict {"type": "adam", ...} or an Optimizer."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        kind, options = identifier.lower(), {}
    elif isinstance(identifier, dict):
        kind = identifier.get("type")
        kind = kind.lower() if isinstance(kind, str) else kind
        options = {k: v for k, v in identifier.items() if k != "type"}
    else:
        kind, options = None, {}
    if kind not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer: {identifier!r}. Expected one of {', '.join(NAMES)}.")
    return OPTIMIZERS[kind](**options)
