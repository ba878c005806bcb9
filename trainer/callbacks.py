"""Callbacks with the Keras protocol. Epoch numbers are 0-based, as in Keras."""
import math

import numpy as np

from trainer.core import TrainingError


class Callback:
    """Base class. ``on_batch_end`` logs hold "batch" and "size", plus "loss" on the CPU (on a GPU
    reading it would stall every step); epoch logs hold loss, metrics, val_*, learning_rate,
    epoch_time and samples_per_second. Set ``self.model.stop_training = True`` to stop."""

    def __init__(self):
        self.model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def get_state(self):
        """(JSON-able dict, list of arrays) to store in a checkpoint, or None when stateless."""
        return

    def set_state(self, state, arrays):
        """Restore what get_state returned (called after on_train_begin when resuming)."""


class CallbackList(Callback):
    def __init__(self, callbacks=(), model=None):
        super().__init__()
        self.callbacks = list(callbacks or ())
        if model is not None:
            self.set_model(model)

    def set_model(self, model):
        self.model = model
        for callback in self.callbacks:
            callback.set_model(model)

    def _each(self, method, *args):
        for callback in self.callbacks:
            getattr(callback, method)(*args)

    def on_train_begin(self, logs=None):
        self._each("on_train_begin", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._each("on_epoch_begin", epoch, logs)

    def on_batch_end(self, batch, logs=None):
        self._each("on_batch_end", batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._each("on_epoch_end", epoch, logs)

    def on_train_end(self, logs=None):
        self._each("on_train_end", logs)

    @property
    def wants_batch_logs(self):
        return any(type(c).on_batch_end is not Callback.on_batch_end or "on_batch_end" in vars(c)  # LambdaCallback
                   for c in self.callbacks)


class History(Callback):
    """Collects every epoch's logs into ``history`` (name -> list); returned by ``fit``."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


def _monitor_mode(monitor, mode):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'. Received: mode={mode!r}")
    if mode == "auto":
        higher_is_better = any(word in monitor for word in ("acc", "auc", "precision", "recall", "f1", "r2"))
        mode = "max" if higher_is_better else "min"
    return mode


def _better(mode, value, best, min_delta):
    """Whether ``value`` improves on ``best`` by more than ``min_delta`` in ``mode`` ("min" or "max")."""
    return value < best - min_delta if mode == "min" else value > best + min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, restore_best_weights=False,
                 mode="auto", start_from_epoch=0):
        super().__init__()
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be a non-negative integer. Received: patience={patience!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = abs(float(min_delta))
        self.restore_best_weights = restore_best_weights
        self.mode = _monitor_mode(monitor, mode)
        self.start_from_epoch = start_from_epoch
        self.stopped_epoch = None
        self.best_epoch = None

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights = None
        self.best_epoch = None
        self.stopped_epoch = None

    def _improved(self, value):
        return _better(self.mode, value, self.best, self.min_delta)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or epoch < self.start_from_epoch:
            return
        if self._improved(value):
            self.best = value
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def get_state(self):
        state = {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                 "has_best_weights": self.best_weights is not None}
        return state, list(self.best_weights or ())

    def set_state(self, state, arrays):
        self.wait, self.best, self.best_epoch = state["wait"], state["best"], state["best_epoch"]
        self.best_weights = list(arrays) if state["has_best_weights"] else None

    def on_train_end(self, logs=None):
        # Restore whether training stopped early or ran out of epochs: the user asked for the best.
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved by ``min_delta``
    for ``patience`` epochs, then wait ``cooldown`` epochs before counting again; a reduction never
    takes the rate below ``min_lr``. Keras' rules. The reduction is a factor on the optimizer's rate
    (``Optimizer.lr_factor``), so it works on top of a schedule too, and checkpoints keep it."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, mode="auto", min_delta=1e-4, cooldown=0,
                 min_lr=0.0):
        super().__init__()
        if not 0.0 < float(factor) < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be a number in (0, 1). Received: factor={factor!r}")
        for key, value in (("patience", patience), ("cooldown", cooldown)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"ReduceLROnPlateau: {key} must be a non-negative integer. Received: {key}={value!r}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = patience
        self.mode = _monitor_mode(monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.cooldown = cooldown
        self.min_lr = float(min_lr)
        self.reductions = []  # (epoch, new learning rate), 0-based epochs

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.cooldown_counter = 0
        self.best = math.inf if self.mode == "min" else -math.inf

    def _improved(self, value):
        return _better(self.mode, value, self.best, self.min_delta)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(value):
            self.best = value
            self.wait = 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        optimizer = self.model.optimizer
        old = optimizer.current_learning_rate()
        if old > np.float32(self.min_lr):
            new = max(old * self.factor, self.min_lr)
            optimizer.lr_factor *= new / old
            self.reductions.append((epoch, new))
            self.cooldown_counter = self.cooldown
            self.wait = 0

    def get_state(self):
        return {"wait": self.wait, "cooldown_counter": self.cooldown_counter, "best": self.best}, []

    def set_state(self, state, arrays):
        self.wait, self.cooldown_counter, self.best = state["wait"], state["cooldown_counter"], state["best"]


class ModelCheckpoint(Callback):
    """Save a checkpoint (weights + optimizer + epoch) after each epoch, or weights only.

    ``filepath`` may contain ``{epoch}`` (1-based, as in Keras) and log names, e.g.
    ``"ckpt-{epoch:03d}-{val_loss:.3f}.npz"``. The stored epoch is the number of completed
    epochs, so ``fit(initial_epoch=model.load_checkpoint(path))`` resumes right after it.
    """

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, save_weights_only=False, mode="auto"):
        super().__init__()
        self.filepath = str(filepath)
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = _monitor_mode(monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.last_path = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                return
            better = value < self.best if self.mode == "min" else value > self.best
            if not better:
                return
            self.best = value
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save_checkpoint(path, epoch=epoch + 1)
        self.last_path = path


class LambdaCallback(Callback):
    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_batch_end=None, on_train_begin=None,
                 on_train_end=None):
        super().__init__()
        for name, fn in (("on_epoch_begin", on_epoch_begin), ("on_epoch_end", on_epoch_end),
                         ("on_batch_end", on_batch_end), ("on_train_begin", on_train_begin),
                         ("on_train_end", on_train_end)):
            if fn is not None:
                setattr(self, name, fn)


class Reporter(Callback):
    """Call ``fn(epoch, logs)`` after every epoch; logs include loss, metrics, val_*,
    learning_rate, epoch_time (seconds) and samples_per_second."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def on_epoch_end(self, epoch, logs=None):
        self.fn(epoch, dict(logs or {}))


class TerminateOnNaN(Callback):
    """Raise TrainingError("loss became NaN at epoch N") (N 0-based) when an epoch's loss is not
    finite (checked once per epoch, so no step waits for the device)."""

    def __init__(self, raise_error=True):
        super().__init__()
        self.raise_error = raise_error
        self.epoch = 0
        self.message = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def _check(self, loss):
        if loss is not None and not np.isfinite(loss):
            self.message = f"loss became NaN at epoch {self.epoch}"
            self.model.stop_training = True
            if self.raise_error:
                raise TrainingError(self.message)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch = epoch
        self._check((logs or {}).get("loss"))
