"""Ready data sets for experiment tests, ingested in-process (no broker needed)."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "data"


def make_version(workspace, user, filename: str, *, name: str | None = None, kind: str = "auto", target: str = ""):
    from webapp.datasets.services import dataset_create_from_file, ingest_version

    with mock.patch("webapp.datasets.services._enqueue"):
        version = dataset_create_from_file(workspace=workspace, user=user, name=name or filename,
                                           uploaded_file_path=FIXTURES / filename, original_filename=filename,
                                           kind=kind)
    version = ingest_version(version.pk)
    assert version.status == "ready", version.error
    if target:
        dataset = version.dataset
        dataset.target_column = target
        dataset.save(update_fields=["target_column"])
    version.refresh_from_db()
    return version


@pytest.fixture
def iris(people):
    return make_version(people.workspace, people.owner, "iris.csv", name="Iris", target="species")


def iris_spec(epochs: int = 12, learning_rate: float = 0.02, batch_size: int = 16) -> dict:
    return {
        "input_shape": [4],
        "layers": [
            {"type": "Dense", "units": 16, "activation": "relu"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
        "compile": {"loss": "sparse_categorical_crossentropy",
                    "optimizer": {"type": "adam", "learning_rate": learning_rate}, "metrics": ["accuracy"]},
        "fit": {"epochs": epochs, "batch_size": batch_size, "seed": 1},
    }


def small_cnn_spec(epochs: int = 1) -> dict:
    """A tiny CNN for the 8x8 digits: one convolution, one pooling, a softmax."""
    return {
        "input_shape": [8, 8, 1],
        "layers": [{"type": "Conv2D", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
                   {"type": "MaxPooling2D", "pool_size": 2}, {"type": "Flatten"},
                   {"type": "Dense", "units": 10, "activation": "softmax"}],
        "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
                    "metrics": ["accuracy"]},
        "fit": {"epochs": epochs, "batch_size": 64, "seed": 2},
    }
