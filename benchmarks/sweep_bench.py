"""What a sweep's median stopping rule saves: the same sweep with and without it, on one worker.

    python benchmarks/sweep_bench.py [--epochs 30] [--json PATH]

On a fresh data folder (SQLite in WAL mode, files on disk), the 8×8 digit images are ingested and
one random search (12 of the 18 points of learning rate × hidden units of a two-layer MLP
classifier, each run with the same seed) is created twice: once training every run to its last epoch, once with the median rule
(``webapp/experiments/pruning.py``, from epoch 3, at least 3 other runs to compare with). The runs
execute one after another in creation order, as one worker takes them from its queue, through the
worker's own ``run_execute``.

Reported for each: the epochs trained, the wall time, the best run found (by the monitored
``val_accuracy``) and its test accuracy; and how many runs the rule stopped. The runs
are deterministic on the CPU, so a run the rule did not stop trains exactly as in the full sweep.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from epoch_bench import django_setup, table_version

SPACE = {"learning_rate": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2], "units": [8, 32, 128]}
COUNT = 12  # a random search: 12 of the 18 points, in the sampled order
SEED = 0  # the same 12 points, in the same order, for both sweeps
STOPPING = {"rule": "median", "grace_epochs": 3, "min_runs": 3}
MODES = {"every run to the end": None, "median rule": STOPPING}


def _spec(epochs: int) -> dict:
    dense = {"type": "Dense", "units": 32, "activation": "relu"}
    return {"input_shape": [8, 8, 1], "layers": [{"type": "Flatten"}, dense, dict(dense),
                                                 {"type": "Dense", "units": 10, "activation": "softmax"}],
            "compile": {"loss": "sparse_categorical_crossentropy",
                        "optimizer": {"type": "adam", "learning_rate": 0.001}, "metrics": ["accuracy"]},
            "fit": {"epochs": epochs, "batch_size": 32, "seed": 1}}


def run_sweep(workspace, user, version, epochs: int, stopping) -> dict:
    from webapp.experiments import execution, pruning, services

    with mock.patch.object(services, "dispatch"):
        sweep = services.sweep_create(workspace=workspace, user=user, dataset_version=version, spec=_spec(epochs),
                                      data_config={}, space=SPACE, method="random", count=COUNT,
                                      stopping=stopping, seed=SEED)
    asked = []  # seconds in each of the rule's verdicts (its query)
    verdict = pruning.MedianStopping.verdict

    def timed(self, *args):
        begun = time.perf_counter()
        try:
            return verdict(self, *args)
        finally:
            asked.append(time.perf_counter() - begun)

    started = time.perf_counter()
    with mock.patch.object(pruning.MedianStopping, "verdict", timed):
        for run in sweep.runs.order_by("pk"):
            if execution.run_execute(run.pk) != "succeeded":
                raise SystemExit(f"sweep run {run.pk} did not succeed")
    seconds = time.perf_counter() - started
    runs = list(sweep.runs.order_by("pk"))
    best = max(runs, key=lambda run: run.best_metric)
    return {"seconds": seconds, "runs": len(runs), "points": [run.sweep_params for run in runs], "epochs_trained": sum(run.epochs_done for run in runs),
            "epochs_asked": sum(run.epochs_total for run in runs),
            "stopped": sum(1 for run in runs if "stopped_early" in run.results),
            "verdicts": len(asked), "verdict_ms": 1000 * sum(asked) / len(asked) if asked else None,
            "best": {"params": best.sweep_params, "metric": best.best_metric_name, "value": best.best_metric,
                     "test_accuracy": best.results["test"].get("accuracy")}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cupola-sweep-bench-") as folder:
        django_setup(Path(folder))
        workspace, user, version = table_version("digits8x8.zip", "", "Digits")
        run_sweep(workspace, user, version, 2, None)  # warm up: imports, first queries, the data's preparation
        results = {mode: run_sweep(workspace, user, version, args.epochs, stopping) for mode, stopping in MODES.items()}
    full, median = results["every run to the end"], results["median rule"]
    report = {"epochs": args.epochs, "space": SPACE, "seed": SEED, "stopping": STOPPING, "results": results,
              "epochs_ratio": median["epochs_trained"] / full["epochs_trained"],
              "time_ratio": median["seconds"] / full["seconds"],
              "same_best": median["best"]["params"] == full["best"]["params"]}
    print(f"a {full['runs']}-run random sweep of the 8x8 digits (MLP, {args.epochs} epochs each), one worker")
    for mode, r in results.items():
        print(f"  {mode:22s} {r['epochs_trained']:4d} of {r['epochs_asked']} epochs  {r['seconds']:7.2f} s  "
              f"{r['stopped']:2d} stopped  best {r['best']['params']} {r['best']['metric']} {r['best']['value']:.4f} "
              f"test accuracy {r['best']['test_accuracy']:.4f}"
              + (f"  ({r['verdicts']} verdicts, {r['verdict_ms']:.2f} ms each)" if r["verdicts"] else ""))
    print(f"  median rule / every run (epochs): {report['epochs_ratio']:.2f}, (time): {report['time_ratio']:.2f}, "
          f"same best run: {report['same_best']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
