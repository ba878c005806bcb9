"""Define-by-run automatic differentiation: Variable, Function and the mode switches.

The shape of DeZero's ``core.py``: a Function computes on raw arrays in ``forward`` and
returns raw gradient arrays from ``backward``; ``Variable.backward`` walks the graph in
reverse generation order. Gradients are plain arrays (no higher-order derivatives), which
keeps each step cheap.
"""
import contextlib
import heapq
import threading
import weakref

import numpy as np

from trainer import backend


class _Config(threading.local):
    """Per-thread modes, so inference in one thread never switches off another's training."""

    enable_backprop = True
    train = True


Config = _Config()


@contextlib.contextmanager
def using_config(name, value):
    old_value = getattr(Config, name)
    setattr(Config, name, value)
    try:
        yield
    finally:
        setattr(Config, name, old_value)


def no_grad():
    """Run without recording the graph (inference, metrics)."""
    return using_config("enable_backprop", False)


def test_mode():
    """Run layers in inference behaviour (no dropout, batch norm uses moving statistics)."""
    return using_config("train", False)


test_mode.__test__ = False  # not a test, though pytest would collect it from a test module by name


def train_mode():
    return using_config("train", True)


class Variable:
    """An array with a gradient and the Function that made it."""

    __array_priority__ = 200
    __slots__ = ("__weakref__", "creator", "data", "generation", "grad", "name", "requires_grad")

    def __init__(self, data, name=None, requires_grad=True):
        if data is not None and not hasattr(data, "shape"):
            data = np.asarray(data)
        self.data = data
        self.name = name
        self.grad = None
        self.creator = None
        self.generation = 0
        self.requires_grad = requires_grad

    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        return f"Variable({self.data!r})".replace("\n", "\n         ")

    def set_creator(self, func):
        self.creator = func
        self.generation = func.generation + 1

    def cleargrad(self):
        self.grad = None

    def numpy(self):
        return backend.to_host(self.data)

    def backward(self, grad=None, retain_grad=False):
        """Accumulate d(self)/d(leaf) into every leaf Variable's ``grad``."""
        if grad is None:
            xp = backend.get_array_module(self.data)
            grad = xp.ones_like(self.data)
        self.grad = grad
        if self.creator is None:
            return
        heap = []
        seen = set()
        counter = 0

        def add(func):
            nonlocal counter
            if func not in seen:
                seen.add(func)
                heapq.heappush(heap, (-func.generation, counter, func))
                counter += 1

        add(self.creator)
        while heap:
            func = heapq.heappop(heap)[2]
            outputs = [ref() for ref in func.outputs]
            gys = [out.grad if out is not None else None for out in outputs]
            gxs = func.backward(*gys)
            if not isinstance(gxs, tuple):
                gxs = (gxs,)
            for x, gx in zip(func.inputs, gxs):
                if gx is None or not x.requires_grad:
                    continue
                x.grad = gx if x.grad is None else x.grad + gx
                if x.creator is not None:
                    add(x.creator)
            if not retain_grad:
                for out in outputs:
                    if out is not None:
                        out.grad = None

    # Operators; implemented in trainer.functions (imported lazily to avoid a cycle).
    def reshape(self, *shape):
        from trainer import functions as F
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return F.reshape(self, shape)

    def transpose(self, *axes):
        from trainer import functions as F
        return F.transpose(self, axes or None)

    @property
    def T(self):
        return self.transpose()

    def sum(self, axis=None, keepdims=False):
        from trainer import functions as F
        return F.sum(self, axis, keepdims)

    def __add__(self, other):
        from trainer import functions as F
        return F.add(self, other)

    __radd__ = __add__

    def __mul__(self, other):
        from trainer import functions as F
        return F.mul(self, other)

    __rmul__ = __mul__

    def __neg__(self):
        from trainer import functions as F
        return F.neg(self)

    def __sub__(self, other):
        from trainer import functions as F
        return F.sub(self, other)

    def __rsub__(self, other):
        from trainer import functions as F
        return F.sub(other, self)

    def __truediv__(self, other):
        from trainer import functions as F
        return F.div(self, other)

    def __rtruediv__(self, other):
        from trainer import functions as F
        return F.div(other, self)

    def __pow__(self, power):
        from trainer import functions as F
        return F.pow(self, power)

    def __matmul__(self, other):
        from trainer import functions as F
        return F.matmul(self, other)

    def __getitem__(self, index):
        from trainer import functions as F
        return F.get_item(self, index)


class Parameter(Variable):
    """A trainable weight. Its ``data`` may be a view into an optimizer's flat buffer,
    so it is updated in place and never rebound."""

    __slots__ = ()


def as_array(x, like=None):
    if hasattr(x, "shape") and not isinstance(x, Variable):
        return x
    xp = backend.get_array_module(like) if like is not None else np
    dtype = like.dtype if like is not None and np.isscalar(x) else None
    return xp.asarray(x, dtype=dtype)


def as_variable(x, like=None):
    """Wrap a raw array or scalar as a constant (no gradient) Variable."""
    if isinstance(x, Variable):
        return x
    return Variable(as_array(x, like), requires_grad=False)


class Function:
    """An operation in the graph: ``forward`` on raw arrays, ``backward`` on raw gradients.

    ``self.inputs`` holds the input Variables during backward; ``needs_grad(i)`` tells a
    backward whether input ``i`` wants a gradient so it can skip work (e.g. dgrad of the
    first layer).
    """

    generation = 0
    inputs = ()
    outputs = ()

    def __call__(self, *inputs):
        first = inputs[0]
        like = first.data if isinstance(first, Variable) else first if hasattr(first, "shape") else None
        inputs = [x if isinstance(x, Variable) else as_variable(x, like) for x in inputs]
        ys = self.forward(*[x.data for x in inputs])
        if not isinstance(ys, tuple):
            ys = (ys,)
        requires_grad = Config.enable_backprop and any(x.requires_grad for x in inputs)
        outputs = [Variable(y, requires_grad=requires_grad) for y in ys]
        if requires_grad:
            self.generation = max(x.generation for x in inputs)
            for output in outputs:
                output.set_creator(self)
            self.inputs = inputs
            self.outputs = [weakref.ref(output) for output in outputs]
        return outputs if len(outputs) > 1 else outputs[0]

    def needs_grad(self, i):
        return self.inputs[i].requires_grad

    def forward(self, *xs):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, *gys):
        raise NotImplementedError(f"{type(self).__name__}.backward")


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. the loss became NaN). Its message is shown to users."""
