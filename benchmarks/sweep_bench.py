"""What a sweep's stopping rules save: the same sweep with and without each, on one worker.

    python benchmarks/sweep_bench.py [--epochs 30] [--json PATH]

On a fresh data folder (SQLite in WAL mode, files on disk), the 8×8 digit images are ingested and
one random search (12 of the 18 points of learning rate × hidden units of a two-layer MLP
classifier, each run with the same seed) is created three times: once training every run to its last epoch, once with the median rule and
once with successive halving (``webapp/experiments/pruning.py``: both from epoch 3 and with at
least 3 other runs to compare with; halving keeps the best third at epochs 3, 9, 27). The runs
execute one after another in creation order, as one worker takes them from its queue, through the
worker's own ``run_execute``.

Reported for each: the epochs trained, the wall time, the best run found (by the monitored
``val_accuracy``) and its test accuracy; and how many runs each rule stopped. The runs
are deterministic on the CPU, so a run a rule did not stop trains exactly as in the full sweep.
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
FULL = "every run to the end"
RULES = {"median rule": {"rule": "median", "grace_epochs": 3, "min_runs": 3},
         "successive halving": {"rule": "asha", "grace_epochs": 3, "reduction_factor": 3, "min_runs": 3}}
MODES = {FULL: None, **RULES}


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
    asked = []  # seconds in each of the rules' queries (a verdict asks one at each epoch it judges)
    query = pruning.others_best

    def timed(*args):
        begun = time.perf_counter()
        try:
            return query(*args)
        finally:
            asked.append(time.perf_counter() - begun)

    started = time.perf_counter()
    with mock.patch.object(pruning, "others_best", timed):
        for run in sweep.runs.order_by("pk"):
            if execution.run_execute(run.pk) != "succeeded":
                raise SystemExit(f"sweep run {run.pk} did not succeed")
    seconds = time.perf_counter() - started
    runs = list(sweep.runs.order_by("pk"))
    best = max(runs, key=lambda run: run.best_metric)
    return {"seconds": seconds, "runs": len(runs), "points": [run.sweep_params for run in runs],
            "stopped_at": [run.results.get("stopped_early", {}).get("epoch") for run in runs], "epochs_trained": sum(run.epochs_done for run in runs),
            "epochs_asked": sum(run.epochs_total for run in runs),
            "stopped": sum(1 for run in runs if "stopped_early" in run.results),
            "queries": len(asked), "query_ms": 1000 * sum(asked) / len(asked) if asked else None,
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
    from webapp.experiments import pruning

    full, halving = results[FULL], RULES["successive halving"]
    report = {"rungs": pruning.rungs(halving["grace_epochs"], halving["reduction_factor"], args.epochs),
              "epochs": args.epochs, "space": SPACE, "seed": SEED, "stopping": RULES, "results": results,
              "rules": {mode: {"epochs_ratio": results[mode]["epochs_trained"] / full["epochs_trained"],
                               "time_ratio": results[mode]["seconds"] / full["seconds"],
                               "same_best": results[mode]["best"]["params"] == full["best"]["params"],
                               # where the rule stopped the run that is best trained to the end (None: it did not)
                               "best_stopped_at": results[mode]["stopped_at"][full["points"].index(full["best"]["params"])]}
                        for mode in RULES}}
    print(f"a {full['runs']}-run random sweep of the 8x8 digits (MLP, {args.epochs} epochs each), one worker")
    for mode, r in results.items():
        print(f"  {mode:22s} {r['epochs_trained']:4d} of {r['epochs_asked']} epochs  {r['seconds']:7.2f} s  "
              f"{r['stopped']:2d} stopped  best {r['best']['params']} {r['best']['metric']} {r['best']['value']:.4f} "
              f"test accuracy {r['best']['test_accuracy']:.4f}"
              + (f"  ({r['queries']} queries, {r['query_ms']:.2f} ms each)" if r['queries'] else ""))
    for mode, ratios in report["rules"].items():
        print(f"  {mode} / every run (epochs): {ratios['epochs_ratio']:.2f}, (time): {ratios['time_ratio']:.2f}, "
              f"same best run: {ratios['same_best']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
