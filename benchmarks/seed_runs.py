"""Seed a workspace with many finished runs, for the load benchmark.

Writes straight through the models (no worker, no broker): one user, one workspace, the iris
sample ingested in-process, and ``--runs`` succeeded runs with ``--epochs`` metric rows each.
Prints one JSON line with what the load benchmark needs (workspace slug, credentials, an API
token, the data set version id).

    CUPOLA_DATA_DIR=/tmp/cupola-bench python benchmarks/seed_runs.py --runs 1000

The data folder must be a throw-away one: the database is migrated there.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import timedelta
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "webapp" / "datasets" / "samples" / "iris.csv"
USERNAME, PASSWORD = "bench", "bench-pw-Cupola-2024"


def _setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def _spec(epochs: int) -> dict:
    return {
        "input_shape": [4],
        "layers": [{"type": "Dense", "units": 16, "activation": "relu"},
                   {"type": "Dense", "units": 3, "activation": "softmax"}],
        "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
                    "metrics": ["accuracy"]},
        "fit": {"epochs": epochs, "batch_size": 16, "seed": 1},
    }


def seed(*, runs: int, epochs: int, workspace_name: str = "Load bench") -> dict:
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from webapp.accounts import services as accounts
    from webapp.datasets import services as datasets
    from webapp.experiments.models import MetricRow, Run, RunStatus

    User = get_user_model()
    user = User.objects.filter(username=USERNAME).first() or accounts.user_sign_up(username=USERNAME, password=PASSWORD)
    workspace = accounts.workspace_create(name=workspace_name, owner=user)
    with mock.patch("webapp.datasets.services._enqueue"):
        version = datasets.dataset_create_from_file(workspace=workspace, user=user, name="Iris",
                                                    uploaded_file_path=SAMPLE, original_filename="iris.csv")
    version = datasets.ingest_version(version.pk)
    assert version.status == "ready", version.error
    dataset = version.dataset
    dataset.target_column = "species"
    dataset.save(update_fields=["target_column"])
    _, token = accounts.token_create(user=user, name="load bench")

    rng = random.Random(0)
    spec = _spec(epochs)
    now = timezone.now()
    started = time.perf_counter()
    batch = 200
    for first in range(0, runs, batch):
        with transaction.atomic():
            rows = []
            for i in range(first, min(first + batch, runs)):
                created = now - timedelta(minutes=10 * (runs - i))
                accuracy = 0.6 + 0.4 * rng.random()
                rows.append(Run(
                    workspace=workspace, dataset_version=version, created_by=user, name=f"seeded run {i + 1}",
                    spec=spec, data_config={"target": "species"}, seed=i, status=RunStatus.SUCCEEDED, queue="cpu",
                    worker="seed@bench", device="CPU (seeded)", epochs_total=epochs, epochs_done=epochs,
                    best_metric_name="val_accuracy", best_metric=accuracy, best_epoch=epochs,
                    created_at=created, queued_at=created, dispatched_at=created,
                    started_at=created + timedelta(seconds=1), heartbeat_at=created + timedelta(seconds=30),
                    finished_at=created + timedelta(seconds=30), tags=["seeded"] if i % 10 == 0 else [],
                    results={"test": {"accuracy": accuracy}}))
            created_runs = Run.objects.bulk_create(rows)
            metrics = []
            for run in created_runs:
                loss = 1.1
                for epoch in range(1, epochs + 1):
                    loss *= 0.93
                    metrics.append(MetricRow(run=run, epoch=epoch, values={
                        "loss": loss, "accuracy": 1 - loss / 2, "val_loss": loss * 1.1, "val_accuracy": 1 - loss / 1.8,
                        "learning_rate": 0.01, "epoch_time": 0.02, "samples_per_second": 5000.0}))
            MetricRow.objects.bulk_create(metrics, batch_size=2000)
    return {"workspace": workspace.slug, "username": USERNAME, "password": PASSWORD, "token": token,
            "dataset_version": version.pk, "runs": runs, "epochs": epochs,
            "seconds": round(time.perf_counter() - started, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20, help="metric rows per seeded run")
    args = parser.parse_args(argv)
    if not os.environ.get("CUPOLA_DATA_DIR"):
        parser.error("set CUPOLA_DATA_DIR to a throw-away data folder")
    _setup_django()
    print(json.dumps(seed(runs=args.runs, epochs=args.epochs)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
