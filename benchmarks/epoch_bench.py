"""What the worker adds to each epoch of a run: metric rows, progress and checkpoints, vs the bare fit.

    python benchmarks/epoch_bench.py [--epochs 300] [--rounds 3] [--json PATH]

On a fresh data folder (SQLite in WAL mode, files on disk, as ``manage.py up`` has them), the Iris
table is ingested and the same small MLP (batch 16: a few milliseconds per epoch, where the cost of
reporting shows most) is trained, side by side in one process, in alternating order:

- ``bare fit``: ``trainer`` alone, the data prepared as the worker prepares it, no callbacks;
- ``every epoch written``: the worker's ``run_execute`` with every epoch's rows and checkpoint
  written as soon as it ends (``ROWS_EVERY`` and ``WRITE_EVERY`` 0, every checkpoint kept): how
  the worker did it before rows and checkpoints of short epochs were held back;
- ``worker default``: ``run_execute`` as it runs.

Reported: the best wall time of each, milliseconds per epoch, what the worker adds per epoch over the
bare fit, and the checkpoint files each run leaves.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = ("bare fit", "every epoch written", "worker default")


def django_setup(data_dir: Path):
    """Django on a fresh data folder (SQLite in WAL mode, migrated), and BLAS on one thread as a worker has it."""
    os.environ["CUPOLA_DATA_DIR"] = str(data_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "webapp.settings"
    os.environ.pop("DATABASE_URL", None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from trainer import backend

    backend.set_blas_threads(1)


def table_version(filename: str = "iris.csv", target: str = "species", name: str = "Iris"):
    """A workspace, its owner and a ready version of one of the test tables, ingested in-process."""
    from django.contrib.auth import get_user_model

    from webapp.accounts.services import workspace_create
    from webapp.datasets import services as datasets

    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    workspace = workspace_create(name="Bench", owner=user)
    with mock.patch("webapp.datasets.services._enqueue"):
        version = datasets.dataset_create_from_file(
            workspace=workspace, user=user, name=name, uploaded_file_path=ROOT / "tests/fixtures/data" / filename,
            original_filename=filename)
    version = datasets.ingest_version(version.pk)
    version.dataset.target_column = target
    version.dataset.save(update_fields=["target_column"])
    return workspace, user, version


def _spec(epochs: int) -> dict:
    return {"input_shape": [4],
            "layers": [{"type": "Dense", "units": 16, "activation": "relu"},
                       {"type": "Dense", "units": 3, "activation": "softmax"}],
            "compile": {"loss": "sparse_categorical_crossentropy",
                        "optimizer": {"type": "adam", "learning_rate": 0.01}, "metrics": ["accuracy"]},
            "fit": {"epochs": epochs, "batch_size": 16, "seed": 1}}


def bare_fit(version, epochs: int) -> float:
    from webapp.experiments import datasource, execution, specs

    spec = _spec(epochs)
    prepared = datasource.prepare(version, {"target": "species"}, loss=specs.loss_name(spec))
    spec["input_shape"] = prepared.input_shape
    model = execution.build_model(spec)
    started = time.perf_counter()
    model.fit(prepared.x_train, prepared.y_train, epochs=epochs, batch_size=16, verbose=0,
              validation_data=(prepared.x_val, prepared.y_val), seed=1)
    return time.perf_counter() - started


def worker_run(workspace, user, version, epochs: int, *, every_epoch: bool) -> tuple[float, int]:
    from django.conf import settings

    from webapp.experiments import checkpoints, execution, services

    with mock.patch.object(services, "dispatch"):
        run = services.run_create(workspace=workspace, user=user, dataset_version=version, spec=_spec(epochs),
                                  data_config={"target": "species"})
    saved = settings.KEEP_CHECKPOINTS, checkpoints.WRITE_EVERY, execution.ROWS_EVERY
    if every_epoch:
        settings.KEEP_CHECKPOINTS, checkpoints.WRITE_EVERY, execution.ROWS_EVERY = None, 0.0, 0.0
    try:
        started = time.perf_counter()
        outcome = execution.run_execute(run.pk)
        seconds = time.perf_counter() - started
    finally:
        settings.KEEP_CHECKPOINTS, checkpoints.WRITE_EVERY, execution.ROWS_EVERY = saved
    if outcome != "succeeded":
        raise SystemExit(f"the benchmark run {outcome}")
    run.refresh_from_db()
    assert run.epochs_done == epochs and run.metric_rows.count() == epochs
    return seconds, len(checkpoints.epochs_saved(run))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cupola-epoch-bench-") as folder:
        django_setup(Path(folder))
        workspace, user, version = table_version()
        worker_run(workspace, user, version, 3, every_epoch=False)  # warm up: imports, first queries
        times = {mode: [] for mode in MODES}
        files = {}
        for _ in range(args.rounds):
            times["bare fit"].append(bare_fit(version, args.epochs))
            for mode, every in (("every epoch written", True), ("worker default", False)):
                seconds, files[mode] = worker_run(workspace, user, version, args.epochs, every_epoch=every)
                times[mode].append(seconds)
    best = {mode: min(values) for mode, values in times.items()}
    per_epoch = {mode: 1000 * seconds / args.epochs for mode, seconds in best.items()}
    report = {
        "epochs": args.epochs, "rounds": args.rounds, "batch_size": 16,
        "seconds": best, "ms_per_epoch": per_epoch,
        "added_ms_per_epoch": {mode: per_epoch[mode] - per_epoch["bare fit"] for mode in MODES[1:]},
        "checkpoint_files": files,
        "default_over_every_epoch": best["worker default"] / best["every epoch written"],
    }
    print(f"{args.epochs} epochs of Iris (batch 16), best of {args.rounds} rounds, SQLite (WAL) and files on disk")
    for mode in MODES:
        added = f", +{report['added_ms_per_epoch'][mode]:.2f} ms/epoch over the bare fit" if mode != "bare fit" else ""
        kept = f", {files[mode]} checkpoint files" if mode in files else ""
        print(f"  {mode:20s} {best[mode]:7.3f} s  {per_epoch[mode]:6.2f} ms/epoch{added}{kept}")
    print(f"  worker default / every epoch written (time): {report['default_over_every_epoch']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
