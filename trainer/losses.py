"""Loss functions by Keras name. Each reduces to the mean over samples (and outputs).

A probability loss (categorical, sparse categorical or binary cross-entropy) that follows a
softmax or sigmoid output is computed from the logits by the model: the fused, stable form.
"""
import numpy as np

from trainer import functions as F
from trainer.core import as_variable


class Loss:
    name = ""
    fusable_activation = None   # "softmax" / "sigmoid": the model may hand over logits instead
    sparse_labels = False
    weighs_classes = False      # takes per-sample weights (fit's class_weight)

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)

    def __call__(self, y_true, y_pred, logits=None, weights=None):
        """Loss Variable for labels ``y_true`` (raw array) and predictions ``y_pred`` (Variable).
        ``logits=True`` says y_pred holds logits although from_logits is False (fusion).
        ``weights``: one per sample (a classification loss only, see ``weighs_classes``)."""
        y_pred = as_variable(y_pred)
        logits = self.from_logits if logits is None else logits
        if weights is None:
            return self.compute(self._align(y_true, y_pred), y_pred, logits)
        return self.compute(self._align(y_true, y_pred), y_pred, logits, weights=weights)

    def _align(self, y_true, y_pred):
        if y_true.shape != y_pred.shape and y_true.size == y_pred.size:
            y_true = y_true.reshape(y_pred.shape)
        if y_true.dtype != y_pred.dtype:
            y_true = y_true.astype(y_pred.dtype)
        return y_true

    def get_config(self):
        if not self.from_logits:
            return self.name
        return {"type": self.name, "from_logits": True}


class MeanSquaredError(Loss):
    name = "mse"

    def compute(self, y_true, y_pred, logits):
        return F.mean_squared_error(y_pred, y_true)


class MeanAbsoluteError(Loss):
    name = "mae"

    def compute(self, y_true, y_pred, logits):
        return F.mean_absolute_error(y_pred, y_true)


class Huber(Loss):
    name = "huber"

    def __init__(self, delta=1.0):
        super().__init__()
        self.delta = float(delta)

    def compute(self, y_true, y_pred, logits):
        return F.huber(y_pred, y_true, self.delta)

    def get_config(self):
        return self.name if self.delta == 1.0 else {"type": self.name, "delta": self.delta}


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"
    fusable_activation = "sigmoid"
    weighs_classes = True

    def compute(self, y_true, y_pred, logits, weights=None):
        if logits:
            return F.sigmoid_cross_entropy(y_pred, y_true, weights=weights)
        return F.binary_cross_entropy(y_pred, y_true, weights=weights)


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"
    fusable_activation = "softmax"
    weighs_classes = True

    def compute(self, y_true, y_pred, logits, weights=None):
        if logits:
            return F.softmax_cross_entropy(y_pred, y_true, weights=weights)
        return F.cross_entropy(y_pred, y_true, weights=weights)


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"
    fusable_activation = "softmax"
    sparse_labels = True
    weighs_classes = True

    def _align(self, y_true, y_pred):
        if y_true.dtype.kind == "f":
            y_true = y_true.astype(np.int64)
        return y_true.reshape(-1)

    def compute(self, y_true, y_pred, logits, weights=None):
        if logits:
            return F.softmax_cross_entropy(y_pred, y_true, sparse=True, weights=weights)
        return F.cross_entropy(y_pred, y_true, sparse=True, weights=weights)


LOSSES = {cls.name: cls for cls in (MeanSquaredError, MeanAbsoluteError, Huber, BinaryCrossentropy,
                                     CategoricalCrossentropy, SparseCategoricalCrossentropy)}
ALIASES = {"mean_squared_error": "mse", "mean_absolute_error": "mae", "huber_loss": "huber"}
NAMES = tuple(LOSSES) + tuple(ALIASES)
OPTIONS = {"binary_crossentropy": ("from_logits",), "categorical_crossentropy": ("from_logits",),
           "sparse_categorical_crossentropy": ("from_logits",), "huber": ("delta",)}


def canonical(name):
    return ALIASES.get(name, name)


def get(identifier):
    """A Loss from a name, a dict {"type": name, ...options}, or a Loss instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        options = {}
        name = identifier
    elif isinstance(identifier, dict):
        options = {k: v for k, v in identifier.items() if k != "type"}
        name = identifier.get("type")
    else:
        raise TypeError(f"Unknown loss: {identifier!r}. Expected one of {', '.join(NAMES)}.")
    cls = LOSSES.get(canonical(name)) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"Unknown loss: {name!r}. Expected one of {', '.join(NAMES)}.")
    unknown = set(options) - set(OPTIONS.get(cls.name, ()))
    if unknown:
        raise ValueError(f"{cls.name}: unknown option(s) {', '.join(sorted(unknown))}")
    return cls(**options)
