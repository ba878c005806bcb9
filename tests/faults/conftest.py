"""Helpers for the fault tests: waiting, ready data sets committed for the worker, spec shapes."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

from tests.stack import wait_for  # noqa: F401  (the fault tests import it from here)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def ready_version(workspace, user, filename: str, target: str, *, name: str | None = None):
    """A data set ingested in this process (no broker needed), committed where the worker reads it."""
    from webapp.datasets.services import dataset_create_from_file, dataset_update_columns, ingest_version

    with mock.patch("webapp.datasets.services._enqueue"):
        version = dataset_create_from_file(workspace=workspace, user=user, name=name or filename,
                                           uploaded_file_path=FIXTURES / filename, original_filename=filename)
    version = ingest_version(version.pk)
    assert version.status == "ready", version.error
    dataset_update_columns(dataset=version.dataset, target_column=target)
    version.refresh_from_db()
    return version


def iris_spec(epochs: int, units: int = 16) -> dict:
    return {
        "input_shape": [4],
        "layers": [{"type": "Dense", "units": units, "activation": "relu"},
                   {"type": "Dense", "units": 3, "activation": "softmax"}],
        "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.02},
                    "metrics": ["accuracy"]},
        "fit": {"epochs": epochs, "batch_size": 16, "seed": 1},
    }


def slow_spec(epochs: int) -> dict:
    """A few tenths of a second an epoch on fair_affairs: long enough to act on while it trains."""
    return {
        "input_shape": [8],
        "layers": [{"type": "Dense", "units": 128, "activation": "relu"},
                   {"type": "Dense", "units": 128, "activation": "relu"}, {"type": "Dense", "units": 1}],
        "compile": {"loss": "mse", "optimizer": {"type": "adam", "learning_rate": 0.001}, "metrics": ["mae"]},
        "fit": {"epochs": epochs, "batch_size": 16, "seed": 3},
    }
