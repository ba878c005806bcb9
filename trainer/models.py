"""The Sequential model: build, compile, fit, evaluate, predict, save and resume."""
import contextlib
import math
import time

import numpy as np

from trainer import backend, feed, graphs, io, losses, optimizers
from trainer import callbacks as callbacks_module
from trainer import data as data_module
from trainer import layers as layers_module
from trainer.core import Config, TrainingError, Variable, no_grad, test_mode, using_config

BUILTIN_METRICS = ("accuracy", "mae", "mse", "rmse")
METRIC_ALIASES = {"acc": "accuracy", "mean_absolute_error": "mae", "mean_squared_error": "mse"}


class Sequential:
    """A linear stack of layers (Keras ``Sequential``)."""

    def __init__(self, layers=None, input_shape=None, seed=None, name=None, dtype="float32"):
        self.layers = []
        self.name = name
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"Sequential: dtype must be float32 or float64. Received: dtype={dtype!r}")
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.seed = seed
        self.built = False
        self.loss = None
        self.optimizer = None
        self.metrics = []
        self.stop_training = False
        self.fit_config = None
        self._seed = seed          # seed of the current training (shuffles, dropout)
        self._resumed_seed = False
        self._callbacks = None           # the CallbackList of the running fit (checkpoints save their state)
        self.step_graphs = None          # the last fit's CUDA graphs: trainer.graphs.StepGraphs.status
        self.data_feed = None            # how the last fit's rows reached the device: feed.Batches.status
        self.class_weights = None        # the last fit's weight per class (fit's class_weight), a list
        self._class_weights = None       # the same on the device while that fit runs
        self._dropout_rng = None         # what dropout draws from (backend.step_random)
        self._resumed_callback_states = {}
        for layer in layers or ():
            self.add(layer)
        if self.input_shape is not None:
            self.build(self.input_shape)

    # ------------------------------------------------------------------ structure
    def add(self, layer):
        if not isinstance(layer, layers_module.Layer):
            raise TypeError(f"Sequential.add: expected a Layer, got {type(layer).__name__}")
        self.layers.append(layer)
        self.built = False
        return self

    def build(self, input_shape, seed=None):
        """Create every layer's weights for samples of ``input_shape`` (no batch axis)."""
        seed = self.seed if seed is None else seed
        rng = np.random.default_rng(seed)
        shape = tuple(int(d) for d in input_shape)
        self.input_shape = shape
        masked = False
        for layer in self.layers:
            out = layer.compute_output_shape(shape)
            masked = layer.output_masked(masked)
            layer.build(shape, rng, dtype=self.dtype)
            shape = out
        self.output_shape = shape
        self.built = True
        if self.optimizer is not None:
            self.optimizer.build(self.trainable_weights)
        return self

    @property
    def trainable_weights(self):
        return [p for layer in self.layers for p in layer.params.values()]

    def count_params(self):
        return sum(int(value.size) for layer in self.layers for _, value in layer.weight_items())

    def get_weights(self):
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights):
        weights = list(weights)
        for layer in self.layers:
            n = len(layer.weight_items())
            layer.set_weights(weights[:n])
            weights = weights[n:]
        if weights:
            raise ValueError(f"set_weights: {len(weights)} more arrays than the model has weights")

    # ------------------------------------------------------------------ compile
    def compile(self, loss="mse", optimizer="rmsprop", metrics=None):
        self.loss = losses.get(loss)
        self.optimizer = optimizers.get(optimizer)
        self.metrics = []
        for name in metrics or ():
            if not isinstance(name, str):
                raise TypeError(f"compile: metrics must be names, got {name!r}")
            self.metrics.append(METRIC_ALIASES.get(name, name))
        if self.built:
            self.optimizer.build(self.trainable_weights)
        return self

    def _require_compiled(self, what):
        if self.loss is None:
            raise RuntimeError(f"You must call compile() before {what}.")

    @property
    def _fused(self):
        """True when the last activation is folded into the loss (softmax/sigmoid + cross-entropy)."""
        wanted = self.loss.fusable_activation
        return (wanted is not None and not self.loss.from_logits and bool(self.layers)
                and self.layers[-1].final_activation() == wanted)

    # ------------------------------------------------------------------ forward
    def __call__(self, x, logits=False):
        return self._forward(x, logits)[0]

    def _forward(self, x, logits=False, keep=None):
        """The outputs for ``x``, and the output of layer ``keep`` on the way (None when not asked)."""
        h = x if isinstance(x, Variable) else Variable(x, requires_grad=False)
        mask = None  # the padding mask (N, T) of h's steps, from an Embedding(mask_zero=True)
        last = len(self.layers) - 1
        kept = None
        i = 0
        while i <= last:
            layer = self.layers[i]
            if (i < last and i != keep and isinstance(layer, layers_module.Conv2D) and layer.built
                    and layer.pools_into(self.layers[i + 1])):
                h = layer.call_pooled(h)  # the convolution and the max-pool after it, as one function
                i += 2
            else:
                h, mask = layer(h, logits and i == last, mask), layer.output_mask(h, mask)
                i += 1
            if keep is not None and i - 1 == keep:
                kept = h
        return h, kept

    def feature_layer(self, max_size=None):
        """The index of the layer whose output is the model's last hidden representation (what a
        feature extractor would cut at: Keras' ``Model(inputs, layers[k].output)``): the last layer
        before the final layer with weights, where that output holds at most ``max_size`` values per
        sample (the nearest earlier one that does otherwise). A layer that passes its input on when
        predicting (a Dropout) stands for the layer before it. None for a model with no hidden layer."""
        if not self.built:
            raise ValueError("feature_layer: the model is not built yet")
        weighted = [i for i, layer in enumerate(self.layers) if layer.params]
        if not weighted or weighted[-1] == 0:
            return None
        shapes = self._output_shapes()
        for i in range(weighted[-1] - 1, -1, -1):
            if max_size is None or int(np.prod(shapes[i])) <= max_size:
                while i >= 0 and self.layers[i].inference_identity:
                    i -= 1
                return i if i >= 0 else None  # (only identities before it: no hidden layer)
        return None

    def _output_shapes(self):
        """Each layer's output shape (no batch axis)."""
        shapes, shape = [], self.input_shape
        for layer in self.layers:
            shape = layer.compute_output_shape(shape)
            shapes.append(shape)
        return shapes

    def predict_features(self, x, layer, batch_size=256):
        """``predict``'s outputs and, from the same pass, layer ``layer``'s output per sample flattened
        to one row: ``(outputs, features)`` as host NumPy arrays."""
        x = self._prepare_x(x)
        if not self.built:
            self.build(x.shape[1:])
        self._check_input(x)
        if not 0 <= int(layer) < len(self.layers):
            raise ValueError(f"predict_features: layer must be 0..{len(self.layers) - 1}. Received: layer={layer!r}")
        outputs, features = [], []
        with no_grad(), test_mode(), contextlib.closing(self._batches(x, None, batch_size).epoch()) as each:
            for _begin, _end, xb, _ in each:
                out, kept = self._forward(xb, keep=int(layer))
                # Copied: a layer's output may be the batch's buffer (a lone Flatten), which the next batch refills.
                outputs.append(np.array(backend.to_host(out.data)))
                features.append(np.array(backend.to_host(kept.data)).reshape(len(kept.data), -1))
        if not outputs:
            width = int(np.prod(self._output_shapes()[int(layer)]))
            return (np.zeros((0, *self.output_shape), dtype=np.float32), np.zeros((0, width), dtype=np.float32))
        return np.concatenate(outputs), np.concatenate(features)

    def _regularization(self):
        total = None
        for layer in self.layers:
            term = layer.regularization_loss()
            if term is not None:
                total = term if total is None else total + term
        return total

    def _train_step(self, xb, yb, fused):
        loss, out = self._forward_backward(xb, yb, fused)
        lr = self.optimizer.step()
        return loss, out, lr

    def _forward_backward(self, xb, yb, fused):
        """The batch's loss and outputs (raw arrays), its gradients left in the parameters."""
        if isinstance(self._dropout_rng, backend.CounterRandom):
            self._dropout_rng.next_step()
        out = self(Variable(xb, requires_grad=False), logits=fused)
        loss = self.loss(yb, out, logits=True if fused else None, weights=self._sample_weights(yb))
        reg = self._regularization()
        if reg is not None:
            loss = loss + reg
        loss.backward()
        return loss.data, out.data

    def _sample_weights(self, yb):
        """Each sample's class weight during a fit with class_weight (a gather on the device), else None."""
        cw = self._class_weights
        if cw is None:
            return None
        if self.loss.sparse_labels:
            return cw[yb.reshape(-1).astype(np.int64, copy=False)]
        if isinstance(self.loss, losses.BinaryCrossentropy):
            return cw[0] + (cw[1] - cw[0]) * yb.reshape(-1).astype(cw.dtype, copy=False)
        return yb.reshape(-1, len(cw)).astype(cw.dtype, copy=False) @ cw  # one-hot rows pick their class

    def _class_weight_array(self, class_weight, y):
        """fit's class_weight as one weight per class: "balanced" (n / (classes present x count), as
        scikit-learn), a list, or a dict {class index: weight} (Keras; a class not named weighs 1)."""
        if class_weight is None:
            return None
        if not self.loss.weighs_classes:
            raise ValueError(f"fit: class_weight needs a classification loss (sparse_categorical_crossentropy, "
                             f"categorical_crossentropy or binary_crossentropy), not {self.loss.name}")
        binary = isinstance(self.loss, losses.BinaryCrossentropy)
        units = self.output_shape[-1]
        if binary and units != 1:
            raise ValueError(f"fit: class_weight with binary_crossentropy needs one output unit, not {units}")
        classes = 2 if binary else units
        labels = np.asarray(backend.to_host(y))
        if self.loss.sparse_labels:
            counts = np.bincount(labels.reshape(-1).astype(np.int64), minlength=classes)[:classes]
        elif binary:
            positive = float(labels.sum())
            counts = np.array([labels.size - positive, positive])
        else:
            counts = labels.reshape(-1, classes).sum(axis=0, dtype=np.float64)
        if isinstance(class_weight, str):
            if class_weight != "balanced":
                raise ValueError(f'fit: class_weight must be "balanced", a list or a dict. Received: {class_weight!r}')
            present = counts > 0
            weights = np.where(present, counts.sum() / (max(int(present.sum()), 1) * np.maximum(counts, 1)), 1.0)
        elif isinstance(class_weight, dict):
            weights = np.ones(classes)
            for key, value in class_weight.items():
                if not (isinstance(key, (int, np.integer)) and 0 <= key < classes):
                    raise ValueError(f"fit: class_weight names class {key!r}; the classes are 0 to {classes - 1}")
                weights[int(key)] = value
        else:
            weights = np.asarray(class_weight, dtype=np.float64)
            if weights.shape != (classes,):
                raise ValueError(f"fit: class_weight needs {classes} weights (one per class), got {weights.size}")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("fit: class weights must be finite non-negative numbers")
        self.class_weights = [float(w) for w in weights]
        return backend.to_device(weights.astype(self.dtype))

    def _graphed_steps(self, train, fused):
        """A graphs.GraphedSteps when this fit's steps are replayed from CUDA graphs, else None."""
        mode = backend.step_graphs_mode(backend.xp())
        if mode is None:
            self.step_graphs = None
            return None
        self._dropout_rng = backend.step_random(self._dropout_rng, [self._seed, 0, 1])  # one for the whole fit
        frozen = [(self.optimizer, "iterations"), (self.optimizer, "_scalars"), (self._dropout_rng, "draws"),
                  *((layer, "rng") for layer in self.layers)]
        step_graphs = graphs.StepGraphs(mode, frozen)
        self.step_graphs = step_graphs.status
        return graphs.GraphedSteps(self, train, fused, step_graphs)

    # ------------------------------------------------------------------ data preparation
    def _input_dtype(self):
        if self.layers and isinstance(self.layers[0], layers_module.Embedding):
            return np.dtype(np.int64)
        return self.dtype

    @staticmethod
    def _prepare_x(x):
        """x as an array, in its own dtype: a memory map stays one and ImageRows stay unread (batches
        are read and cast as they go)."""
        if isinstance(x, (np.ndarray, data_module.ImageRows)) or backend.is_device_array(x):
            return x
        return np.asarray(x)

    def _prepare_y(self, y):
        y = np.asarray(y) if not hasattr(y, "shape") else y
        out = getattr(self, "output_shape", None)
        if self.loss.sparse_labels:
            # One class index per output position: (N,) for (N, C) outputs, (N, T) for (N, T, C).
            positions = tuple(out[:-1]) if out else ()
            if positions and tuple(y.shape[1:]) in (positions, (*positions, 1)):
                y = y.reshape(len(y), *positions)
            elif y.ndim > 1 and y.shape[-1] != 1 or (out and positions and y.ndim == 1):
                raise ValueError(f"{self.loss.name} expects integer labels of shape (N, "
                                 f"{', '.join(map(str, positions))}{', ' if positions else ''}) here, got shape "
                                 f"{tuple(y.shape)}; use categorical_crossentropy for one-hot labels.")
            else:
                y = y.reshape(-1)
            labels = y
            if labels.dtype.kind == "f" and labels.size and not np.all(labels == np.round(labels)):
                raise ValueError(f"{self.loss.name} expects integer class labels.")
            labels = labels.astype(np.int64)
            classes = out[-1] if out else None
            if labels.size and classes and (labels.min() < 0 or labels.max() >= classes):
                raise ValueError(f"{self.loss.name}: labels must be in [0, {classes}) for an output of "
                                 f"{classes} classes, got values in [{labels.min()}, {labels.max()}]")
            return labels
        y = y.astype(self.dtype, copy=False)
        if out is not None:
            if y.ndim == 1 and tuple(out) == (1,):
                y = y.reshape(-1, 1)
            if tuple(y.shape[1:]) != tuple(out):
                hint = ""
                if self.loss.name == "categorical_crossentropy" and y.ndim == 1:
                    hint = " Use sparse_categorical_crossentropy for integer labels."
                raise ValueError(f"{self.loss.name}: labels of shape {tuple(y.shape)} do not match the "
                                 f"model output (N, {', '.join(map(str, out))}).{hint}")
        return y

    def _check_input(self, x):
        if self.built and tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"Input of shape {tuple(x.shape)} does not match the model's input shape "
                             f"(N, {', '.join(map(str, self.input_shape))}).")

    # ------------------------------------------------------------------ metrics
    def _accuracy_kind(self):
        if self.loss.sparse_labels:
            return "sparse"
        if self.loss.name == "binary_crossentropy" or tuple(self.output_shape[-1:]) == (1,):
            return "binary"
        return "categorical"

    def _batch_sums(self, y_true, y_pred, logits):
        """Per-metric (sum, count) for one batch, kept on the device (read once per epoch)."""
        sums = {}
        probabilities = None
        for name in self.metrics:
            if name == "accuracy":
                kind = self._accuracy_kind()
                if kind == "sparse":
                    hits = y_pred.reshape(-1, y_pred.shape[-1]).argmax(axis=1) == y_true.reshape(-1)
                elif kind == "categorical":
                    hits = y_pred.argmax(axis=-1) == y_true.argmax(axis=-1)
                else:
                    threshold = 0.0 if logits else 0.5
                    hits = (y_pred > threshold) == (y_true > 0.5)
                sums[name] = (hits.sum(), hits.size)
            elif name in ("mae", "mse", "rmse"):
                if self.loss.sparse_labels:
                    continue  # errors against class indices mean nothing
                if probabilities is None:
                    probabilities = self._activate_logits(y_pred) if logits else y_pred
                diff = probabilities - y_true.reshape(probabilities.shape)
                value = abs(diff).sum() if name == "mae" else (diff * diff).sum()
                sums[name] = (value, diff.size)
        return sums

    def _activate_logits(self, y):
        xp = backend.get_array_module(y)
        if self.loss.fusable_activation == "sigmoid":
            return 1.0 / (1.0 + xp.exp(-y))
        e = xp.exp(y - y.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    @staticmethod
    def _finish(totals):
        logs = {}
        for name, (value, count) in totals.items():
            mean = float(value) / max(count, 1)
            logs[name] = math.sqrt(mean) if name == "rmse" else mean
        return logs

    @staticmethod
    def _add(totals, sums, weight=1):
        for name, (value, count) in sums.items():
            old = totals.get(name)
            totals[name] = (value * weight, count * weight) if old is None else \
                (old[0] + value * weight, old[1] + count * weight)

    # ------------------------------------------------------------------ fit
    def fit(self, x, y, epochs=1, batch_size=32, validation_split=0.0, validation_data=None, shuffle=True,
            seed=None, callbacks=None, verbose=0, initial_epoch=0, class_weight=None):
        """Train; returns a History whose ``history`` maps log names to per-epoch lists.
        ``class_weight`` ("balanced", one weight per class, or {class: weight}) weighs each training
        sample's loss by its class, as Keras does (validation loss and metrics stay unweighted)."""
        self._require_compiled("fit()")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"fit: batch_size must be a positive integer. Received: batch_size={batch_size!r}")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1). Received: validation_split={validation_split!r}")
        backend.ensure_blas_threads()
        if backend.get_device() == "cpu":
            backend.tune_allocator()
        x = self._prepare_x(x)
        if not self.built:
            self.build(x.shape[1:], seed=seed)
        self._check_input(x)
        y = self._prepare_y(y)
        if len(x) != len(y):
            raise ValueError(f"fit: x has {len(x)} samples but y has {len(y)}")
        if validation_data is None and validation_split > 0:
            split_at = math.floor(len(x) * (1.0 - validation_split))
            validation_data = (x[split_at:], y[split_at:])
            x, y = x[:split_at], y[:split_at]
        if validation_data is not None:
            xv, yv = self._prepare_x(validation_data[0]), self._prepare_y(validation_data[1])
            self._check_input(xv)
            validation_data = (self._batches(xv, yv, max(batch_size, 256)), yv)
        if len(x) == 0:
            raise ValueError("fit: no training samples (check validation_split)")
        self.class_weights = None
        class_weights = self._class_weight_array(class_weight, y)
        if self.optimizer.params != self.trainable_weights:
            self.optimizer.build(self.trainable_weights)

        if seed is not None:
            self._seed = seed
        elif not self._resumed_seed or self._seed is None:
            self._seed = int(np.random.SeedSequence().generate_state(1)[0])
        self._resumed_seed = False
        # Remembered for to_spec(); keeps what fit() does not take (early stopping) from the spec.
        self.fit_config = {**(self.fit_config or {}), "epochs": epochs, "batch_size": batch_size,
                           "validation_split": validation_split, "shuffle": shuffle}
        if seed is not None or "seed" not in self.fit_config:
            self.fit_config["seed"] = seed
        if class_weight is not None:
            self.fit_config["class_weight"] = class_weight if isinstance(class_weight, str) else self.class_weights

        history = callbacks_module.History()
        cbs = callbacks_module.CallbackList([*(callbacks or ()), history], model=self)
        batch_logs = cbs.wants_batch_logs
        train = self._batches(x, y, batch_size)
        self.data_feed = train.status
        fused = self._fused
        self.stop_training = False
        self.history = history
        self._callbacks = cbs
        cbs.on_train_begin({})
        for i, callback in enumerate(cbs.callbacks):
            saved = self._resumed_callback_states.get((i, type(callback).__name__))
            if saved is not None:
                callback.set_state(*saved)
        self._resumed_callback_states = {}
        self._class_weights = class_weights
        graphed = self._graphed_steps(train, fused)
        try:
            self._fit_epochs(initial_epoch, epochs, train, shuffle, fused, cbs, batch_logs, graphed, validation_data,
                             verbose)
        finally:
            self._class_weights = None
            if graphed is not None:
                graphed.close()
        cbs.on_train_end({})
        return history

    def _fit_epochs(self, initial_epoch, epochs, train, shuffle, fused, cbs, batch_logs, graphed, validation_data,
                    verbose):
        with using_config("train", True):
            for epoch in range(initial_epoch, epochs):
                cbs.on_epoch_begin(epoch, {})
                logs = self._fit_epoch(epoch, train, shuffle, fused, cbs, batch_logs, graphed)
                if validation_data is not None:
                    with test_mode():
                        val = self._evaluate_batches(validation_data[0])
                        val.update(self._extra_metrics(validation_data[0], validation_data[1]))
                    logs.update({"val_" + k: v for k, v in val.items()})
                cbs.on_epoch_end(epoch, logs)
                if verbose:
                    shown = " - ".join(f"{k}: {v:.4g}" for k, v in logs.items() if k != "samples_per_second")
                    print(f"Epoch {epoch + 1}/{epochs} - {shown}")
                if self.stop_training:
                    break

    def _epoch_order(self, train, seed, epoch, shuffle=True):
        """An epoch's batch order (host and device) from ``seed`` and its number, and its own stream for
        dropout and augmentation in every layer."""
        order = np.random.default_rng([seed, epoch]).permutation(len(train)) if shuffle else None
        self._dropout_rng = backend.step_random(self._dropout_rng, [seed, epoch, 1])
        for layer in self.layers:
            layer.rng = self._dropout_rng
        return order, train.device_order(order)

    def _fit_epoch(self, epoch, train, shuffle, fused, cbs, batch_logs, graphed=None):
        start = time.perf_counter()
        order, order_device = self._epoch_order(train, self._seed, epoch, shuffle)
        if graphed is not None:
            seen, loss_total, totals, lr = graphed.epoch(order, order_device, cbs, batch_logs)
        else:
            seen, loss_total, totals, lr = self._eager_epoch(train, order, order_device, fused, cbs, batch_logs)
        logs = {"loss": float(loss_total) / max(seen, 1)}
        logs.update(self._finish(totals))
        elapsed = time.perf_counter() - start
        logs["learning_rate"] = lr
        logs["epoch_time"] = elapsed
        logs["samples_per_second"] = seen / elapsed if elapsed > 0 else float("inf")
        return logs

    def _eager_epoch(self, train, order, order_device, fused, cbs, batch_logs):
        """One epoch, a step at a time; returns (samples seen, loss sum, metric totals, learning rate)."""
        xp = backend.xp()
        loss_total = xp.zeros((), dtype=np.float64)
        totals = {}
        lr = self.optimizer.current_learning_rate()
        seen = 0
        with contextlib.closing(train.epoch(order, order_device)) as batches:
            for batch, (_begin, _end, xb, yb) in enumerate(batches):
                loss, out, lr = self._train_step(xb, yb, fused)
                size = len(xb)
                seen += size
                loss_total += loss * size
                if self.metrics:
                    self._add(totals, self._batch_sums(yb, out, fused or self.loss.from_logits), 1)
                if batch_logs:
                    logs = {"batch": batch, "size": size}
                    if xp is np:  # reading the loss on a GPU would stall the step; only the CPU reports it
                        logs["loss"] = float(loss)
                    cbs.on_batch_end(batch, logs)
                if self.stop_training:
                    break
        return seen, loss_total, totals, lr

    # ------------------------------------------------------------------ evaluate / predict
    def _batches(self, x, y, batch_size):
        """A ``feed.Batches`` of host arrays ``x`` and ``y`` (y may be None) in the dtypes the model reads."""
        return feed.Batches(feed.Rows(x, self._input_dtype()), None if y is None else feed.Rows(y, y.dtype),
                            batch_size)

    def _evaluate_batches(self, batches):
        """Loss and metrics over ``batches`` (a ``feed.Batches`` of x and y)."""
        xp = backend.xp()
        fused = self._fused
        loss_total = xp.zeros((), dtype=np.float64)
        totals = {}
        with no_grad(), contextlib.closing(batches.epoch()) as each:
            for _begin, _end, xb, yb in each:
                out = self(xb, logits=fused)
                loss = self.loss(yb, out, logits=True if fused else None).data
                loss_total += loss * len(xb)
                if self.metrics:
                    self._add(totals, self._batch_sums(yb, out.data, fused or self.loss.from_logits), 1)
            reg = self._regularization()
        logs = {"loss": float(loss_total) / max(len(batches), 1) + (float(reg.data) if reg is not None else 0.0)}
        logs.update(self._finish(totals))
        return logs

    def _extra_metrics(self, batches, y):
        """Metrics beyond the built-in ones over ``batches`` (a ``feed.Batches``; its x is
        predicted), computed on the host by trainer.metrics if present."""
        extra = [m for m in self.metrics if m not in BUILTIN_METRICS]
        if not extra:
            return {}
        try:
            from trainer import metrics as host_metrics
        except ImportError:
            return {}
        y_pred = self._predict_batches(batches)
        return {name: float(host_metrics.compute(name, y, y_pred, loss=self.loss)) for name in extra}

    def evaluate(self, x, y, batch_size=256, verbose=0):
        """{"loss": ..., <metric>: ...} over (x, y) in inference mode."""
        self._require_compiled("evaluate()")
        x = self._prepare_x(x)
        if not self.built:
            self.build(x.shape[1:])
        self._check_input(x)
        y = self._prepare_y(y)
        with test_mode():
            batches = self._batches(x, y, batch_size)
            logs = self._evaluate_batches(batches)
            logs.update(self._extra_metrics(batches, y))
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        return logs

    def predict(self, x, batch_size=256, verbose=0):
        """Outputs for ``x`` as a host NumPy array (inference mode, no graph)."""
        x = self._prepare_x(x)
        if not self.built:
            self.build(x.shape[1:])
        self._check_input(x)
        return self._predict_batches(self._batches(x, None, batch_size))

    def _predict_batches(self, batches):
        """Outputs for the x of ``batches`` (a ``feed.Batches``) as a host NumPy array."""
        outputs = []
        with no_grad(), test_mode(), contextlib.closing(batches.epoch()) as each:
            for _begin, _end, xb, _ in each:
                out = backend.to_host(self(xb).data)
                # An output may be its input's buffer (a lone Flatten), which the next batch refills.
                # (On the GPU to_host copies, and NumPy may not look at a CuPy array.)
                outputs.append(out.copy() if isinstance(xb, np.ndarray) and np.may_share_memory(out, xb) else out)
        if not outputs:
            return np.zeros((0, *self.output_shape), dtype=np.float32)
        return np.concatenate(outputs)

    # ------------------------------------------------------------------ description
    def summary(self, print_fn=None):
        """A text table of layers, output shapes and parameter counts (printed with ``print_fn``)."""
        if not self.built:
            raise ValueError("summary(): the model is not built yet; call build(input_shape) or fit() first.")
        rows = [("Layer (type)", "Output Shape", "Param #")]
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            params = layer.count_params(shape)
            shape = layer.compute_output_shape(shape)
            label = f"{layer.name or type(layer).__name__.lower() + '_' + str(i)} ({type(layer).__name__})"
            rows.append((label, str((None, *shape)), f"{params:,}"))
        widths = [max(len(r[c]) for r in rows) + 2 for c in range(3)]
        line = "-" * sum(widths)
        text = [f'Model: "{self.name or "sequential"}"', line]
        for j, row in enumerate(rows):
            text.append("".join(cell.ljust(w) for cell, w in zip(row, widths)))
            if j == 0:
                text.append("=" * sum(widths))
        trainable = sum(int(p.data.size) for p in self.trainable_weights)
        total = self.count_params()
        text += ["=" * sum(widths), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                 f"Non-trainable params: {total - trainable:,}"]
        result = "\n".join(text)
        if print_fn is not None:
            print_fn(result)
        return result

    # ------------------------------------------------------------------ specs and files
    def to_spec(self):
        """The JSON-serialisable spec of this model (see trainer.spec)."""
        spec = {}
        if self.input_shape is not None:
            spec["input_shape"] = list(self.input_shape)
        spec["layers"] = [layer.get_config() for layer in self.layers]
        if self.loss is not None:
            spec["compile"] = {"loss": self.loss.get_config(), "optimizer": self.optimizer.get_config(),
                               "metrics": list(self.metrics)}
        if self.fit_config is not None:
            spec["fit"] = dict(self.fit_config)
        return spec

    @classmethod
    def from_spec(cls, spec):
        """Build (and compile, when the spec says how) a model from a spec; validates first."""
        from trainer import spec as spec_module
        return spec_module.build_model(spec)

    def save_weights(self, path):
        io.save_weights(self, path)

    def load_weights(self, path):
        io.load_weights(self, path)

    def save_checkpoint(self, path, epoch):
        io.save_checkpoint(self, path, epoch)

    def checkpoint_arrays(self, epoch, own=False):
        """A checkpoint's contents, to write later with ``trainer.io.write_checkpoint``."""
        return io.checkpoint_arrays(self, epoch, own=own)

    def load_checkpoint(self, path):
        return io.load_checkpoint(self, path)


__all__ = ["Config", "Sequential", "TrainingError"]
