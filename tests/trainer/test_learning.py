"""End-to-end learning on small real data sets (tests/fixtures/data)."""
import csv
from pathlib import Path

import numpy as np

from trainer import Sequential, layers, optimizers

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def load_table(name, target):
    with open(DATA / name, newline="") as f:
        rows = list(csv.DictReader(f))
    features = [k for k in rows[0] if k != target]
    x = np.array([[float(r[k]) for k in features] for r in rows], dtype=np.float32)
    classes = sorted({r[target] for r in rows})
    y = np.array([classes.index(r[target]) for r in rows], dtype=np.int64)
    return x, y


def split_standardized(x, y, seed=0, test_fraction=0.2):
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    cut = int(len(x) * (1 - test_fraction))
    mean, std = x[:cut].mean(axis=0), x[:cut].std(axis=0)
    return (x[:cut] - mean) / std, y[:cut], (x[cut:] - mean) / std, y[cut:]


def test_it_learns_iris_to_over_90_percent_test_accuracy():
    x, y, xt, yt = split_standardized(*load_table("iris.csv", "species"))
    model = Sequential([layers.Dense(10, activation="relu"), layers.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizers.Adam(learning_rate=1e-2),
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=60, batch_size=10, validation_split=0.2, seed=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(xt, yt)["accuracy"] >= 0.9


def test_it_learns_wine_despite_features_on_very_different_scales():
    x, y, xt, yt = split_standardized(*load_table("wine.csv", "cultivar"), seed=1)
    model = Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.1),
                        layers.Dense(3, activation="softmax")], seed=0)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, epochs=40, batch_size=16, seed=0)
    assert model.evaluate(xt, yt)["accuracy"] >= 0.9


def test_it_learns_iris_from_a_json_spec_with_early_stopping():
    from trainer import spec

    x, y, xt, yt = split_standardized(*load_table("iris.csv", "species"))
    model_spec = {
        "input_shape": [4],
        "layers": [{"type": "Dense", "units": 16, "activation": "relu"},
                   {"type": "BatchNormalization"},
                   {"type": "Dense", "units": 3, "activation": "softmax"}],
        "compile": {"loss": "sparse_categorical_crossentropy",
                    "optimizer": {"type": "adam", "learning_rate": {
                        "type": "cosine", "initial_learning_rate": 0.02, "decay_steps": 600}},
                    "metrics": ["accuracy"]},
        "fit": {"epochs": 80, "batch_size": 10, "validation_split": 0.2, "seed": 0,
                "early_stopping": {"patience": 10, "restore_best_weights": True}},
    }
    model = Sequential.from_spec(model_spec)
    history = model.fit(x, y, **spec.fit_kwargs(model_spec))
    assert len(history.history["val_loss"]) <= 80
    assert model.evaluate(xt, yt)["accuracy"] >= 0.9
