"""Weights and checkpoints as ``.npz`` files, without pickle.

A checkpoint holds the weights, the optimizer's slots and step counter, the number of
completed epochs, the training seed (the random state at an epoch boundary follows from
it) and the state of stateful callbacks (early stopping's counters and best weights), so
``fit(..., initial_epoch=load_checkpoint(path))`` with the same callbacks continues exactly. Files are
written to a temporary name and renamed, so a worker that dies mid-write leaves the previous
checkpoint intact.
"""
import json
import os

import numpy as np

FORMAT = "cupola-checkpoint"
VERSION = 1


def _weight_arrays(model):
    arrays = {}
    for i, layer in enumerate(model.layers):
        for name, value in layer.weight_items():
            arrays[f"layers.{i}.{name}"] = value
    return arrays


def _write(path, arrays):
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def _json(value):
    return np.array(json.dumps(value))


def save_weights(model, path):
    if not model.built:
        raise ValueError("save_weights: the model has no weights yet (build or fit it first)")
    from trainer import backend
    arrays = {key: backend.to_host(value) for key, value in _weight_arrays(model).items()}
    arrays["meta"] = _json({"format": "cupola-weights", "version": VERSION,
                            "input_shape": list(model.input_shape)})
    _write(path, arrays)


def _read(path):
    with np.load(os.fspath(path), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _assign_weights(model, stored, path):
    expected = _weight_arrays(model)
    missing = sorted(set(expected) - set(stored))
    extra = sorted(k for k in stored if k.startswith("layers.") and k not in expected)
    if missing or extra:
        raise ValueError(f"{path}: weights do not match this model (missing: {missing[:5]}, "
                         f"unexpected: {extra[:5]})")
    for key, target in expected.items():
        if stored[key].shape != target.shape:
            raise ValueError(f"{path}: weight {key} has shape {stored[key].shape}, the model expects "
                             f"{tuple(target.shape)}")
    from trainer import backend
    for key, target in expected.items():
        backend.copy_to_device(target, stored[key])


def _meta(stored, path):
    try:
        return json.loads(str(stored["meta"]))
    except (KeyError, ValueError):
        raise ValueError(f"{path}: not a Cupola weights or checkpoint file") from None


def _ensure_built(model, meta):
    if not model.built:
        if not meta.get("input_shape"):
            raise ValueError("load: build the model before loading weights")
        model.build(meta["input_shape"])


def load_weights(model, path):
    stored = _read(path)
    _ensure_built(model, _meta(stored, path))
    _assign_weights(model, stored, path)


def checkpoint_arrays(model, epoch, own=False):
    """What a checkpoint of ``model`` at the end of ``epoch`` holds, as host arrays. With ``own``,
    none of them is the model's own memory, so they keep this moment while training goes on
    (on the GPU they are copies anyway; on the CPU the weights are copied)."""
    from trainer import backend
    if model.optimizer is None or model.optimizer.flat is None:
        raise ValueError("save_checkpoint: compile and build (or fit) the model first")

    def host(value):
        if own and isinstance(value, np.ndarray):
            return value.copy()
        return backend.to_host(value)  # a device array comes back as a copy of its own

    arrays = {key: host(value) for key, value in _weight_arrays(model).items()}
    for name, value in model.optimizer.get_state().items():
        arrays[f"optimizer.{name}"] = value
    callback_states = []
    for i, callback in enumerate(model._callbacks.callbacks if model._callbacks is not None else ()):
        saved = callback.get_state()
        if saved is None:
            continue
        state, values = saved
        callback_states.append({"index": i, "type": type(callback).__name__, "state": state, "arrays": len(values)})
        for j, value in enumerate(values):
            arrays[f"callbacks.{i}.{j}"] = host(value)
    arrays["epoch"] = np.asarray(int(epoch), dtype=np.int64)
    arrays["meta"] = _json({
        "format": FORMAT, "version": VERSION, "epoch": int(epoch),
        "input_shape": list(model.input_shape),
        "optimizer": model.optimizer.type,
        "learning_rate": model.optimizer.current_learning_rate(),
        "rng": {"seed": model._seed, "scheme": "numpy default_rng([seed, epoch])"},
        "callbacks": callback_states,
    })
    return arrays


def write_checkpoint(path, arrays):
    """Write what ``checkpoint_arrays`` returned (to a temporary name, then renamed)."""
    _write(path, arrays)


def save_checkpoint(model, path, epoch):
    _write(path, checkpoint_arrays(model, epoch))


def load_checkpoint(model, path):
    """Restore weights, optimizer state and training seed; returns the stored epoch."""
    stored = _read(path)
    meta = _meta(stored, path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a checkpoint (use load_weights for weight files)")
    if model.optimizer is None:
        raise ValueError("load_checkpoint: compile the model (same spec as when saved) first")
    _ensure_built(model, meta)
    if meta["optimizer"] != model.optimizer.type:
        raise ValueError(f"{path}: saved with optimizer {meta['optimizer']!r}, the model uses "
                         f"{model.optimizer.type!r}")
    _assign_weights(model, stored, path)
    if model.optimizer.params != model.trainable_weights:
        model.optimizer.build(model.trainable_weights)
    state = {key.split(".", 1)[1]: value for key, value in stored.items() if key.startswith("optimizer.")}
    model.optimizer.set_state(state)
    model._resumed_callback_states = {
        (entry["index"], entry["type"]): (entry["state"], [stored[f"callbacks.{entry['index']}.{j}"]
                                                            for j in range(entry["arrays"])])
        for entry in meta.get("callbacks", [])}
    seed = meta.get("rng", {}).get("seed")
    if seed is not None:
        model._seed = int(seed)
        model._resumed_seed = True
    return int(stored["epoch"])
