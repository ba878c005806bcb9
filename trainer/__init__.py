"""Cupola's deep-learning engine: a define-by-run autograd on NumPy (CuPy on GPU) with a
Keras-shaped API.

    from trainer import Sequential, layers, optimizers
    model = Sequential([layers.Dense(10, activation="relu"), layers.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, epochs=100, batch_size=10, validation_split=0.2)
"""
from trainer import (
    activations,
    backend,
    callbacks,
    functions,
    initializers,
    inspection,
    io,
    layers,
    losses,
    optimizers,
    schedules,
    spec,
)
from trainer.backend import DeviceError, get_device, set_device
from trainer.core import TrainingError, Variable, no_grad, test_mode
from trainer.models import Sequential
from trainer.spec import SpecError
from trainer.spec import fit as fit  # trainer.fit(spec, x, y, callbacks=..., checkpoint_path=..., resume=...)

__all__ = [
    "DeviceError",
    "Sequential",
    "SpecError",
    "TrainingError",
    "Variable",
    "activations",
    "backend",
    "callbacks",
    "fit",
    "functions",
    "get_device",
    "initializers",
    "inspection",
    "io",
    "layers",
    "losses",
    "no_grad",
    "optimizers",
    "schedules",
    "set_device",
    "spec",
    "test_mode",
]
