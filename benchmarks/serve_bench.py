"""Serving benchmark: what the model log costs a prediction request, and what a prediction job
(a whole data set version on a worker, in chunks, into a CSV) costs per row against the same
rows predicted in one request. Side by side in one process, on a throw-away data folder.

1. A generated table (``--rows`` rows: 6 numeric columns, 2 categorical, a binary target) is
   ingested in-process; an MLP trains on it in-process (``execution.run_execute``) and is
   registered as a model.
2. Requests: a CSV of ``--request-rows`` rows is sent ``--repeats`` times to the model's API
   view (``/api/v1/models/<id>/predict``, Django's test client) with the log and the drift
   check turned off (the reference), then with them; the median of each and their ratio.
3. Jobs: the whole version through ``batch.job_execute``; rows per second against
   ``predict_file`` of the same table as one CSV (below the request limit if ``--rows`` is).

    CUPOLA_DATA_DIR=$(mktemp -d) python benchmarks/serve_bench.py --rows 100000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent


def _table(rows: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6))
    plan = rng.choice(["basic", "pro", "team"], rows)
    region = rng.choice(["north", "south", "east", "west"], rows)
    score = x @ np.array([1.0, -0.7, 0.4, 0.0, 0.2, -0.3]) + (plan == "pro") * 0.8 + rng.normal(0, 0.7, rows)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)]).round(4)
    frame["plan"], frame["region"] = plan, region
    frame["churned"] = np.where(score > 0.5, "yes", "no")
    return frame


def _median_seconds(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--request-rows", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    os.environ.setdefault("CUPOLA_DATA_DIR", tempfile.mkdtemp(prefix="cupola-serve-bench-"))
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")  # Django's test client
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from django.test import Client

    from webapp.accounts import services as accounts
    from webapp.datasets import services as datasets
    from webapp.experiments import batch, execution, monitoring, prediction, registry, services
    from webapp.experiments.models import PredictionJob
    from webapp.experiments.tasks import predict_dataset

    user = accounts.user_sign_up(username="serve-bench", password="serve-bench-pw-Cupola-1")
    workspace = accounts.workspace_create(name="Serve bench", owner=user)
    frame = _table(args.rows)
    source = Path(os.environ["CUPOLA_DATA_DIR"]) / "churn.csv"
    frame.to_csv(source, index=False)
    with mock.patch("webapp.datasets.services._enqueue"):
        version = datasets.dataset_create_from_file(workspace=workspace, user=user, name="Churn",
                                                    uploaded_file_path=source, original_filename="churn.csv")
    version = datasets.ingest_version(version.pk)
    assert version.status == "ready", version.error
    spec = {"input_shape": [13], "layers": [{"type": "Dense", "units": 64, "activation": "relu"},
                                            {"type": "Dense", "units": 2, "activation": "softmax"}],
            "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam", "metrics": ["accuracy"]},
            "fit": {"epochs": 2, "batch_size": 256, "seed": 1}}
    run = services.run_create(workspace=workspace, user=user, dataset_version=version, spec=spec,
                              data_config={"target": "churned"})
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    model = registry.register(run=run, user=user, name="churn").model

    request_csv = frame.drop(columns=["churned"]).head(args.request_rows).to_csv(index=False).encode()
    client = Client()
    client.force_login(user)

    def through_the_api():
        response = client.post(f"/api/v1/models/{model.pk}/predict", {"file": io.BytesIO(request_csv)})
        assert response.status_code == 200, response.content

    through_the_api()  # warm both paths: the model's weights load, the drift check's first pass
    with mock.patch.object(monitoring, "record"), mock.patch.object(monitoring, "check_drift"):
        bare = _median_seconds(through_the_api, args.repeats)  # the same request, nothing logged
    logged = _median_seconds(through_the_api, args.repeats)

    whole_csv = frame.to_csv(index=False).encode()
    rows_one_request = min(args.rows, prediction.MAX_ROWS)
    one_request = _median_seconds(lambda: prediction.predict_file(
        run, frame.head(rows_one_request).to_csv(index=False).encode(), "rows.csv"), 3)
    with mock.patch.object(predict_dataset, "apply_async"):
        job = services.prediction_job_create(run=run, dataset_version=version, user=user)
    started = time.perf_counter()
    assert batch.job_execute(job.pk) == "succeeded"
    job_seconds = time.perf_counter() - started
    job = PredictionJob.objects.get(pk=job.pk)
    found = {
        "rows": args.rows, "request_rows": args.request_rows, "repeats": args.repeats,
        "request_seconds_bare": bare, "request_seconds_logged": logged, "log_overhead_ratio": logged / bare,
        "one_request_rows": rows_one_request, "one_request_seconds": one_request,
        "one_request_rows_per_second": rows_one_request / one_request,
        "job_rows": job.rows, "job_seconds": job_seconds, "job_rows_per_second": job.rows / job_seconds,
        "job_vs_request_per_row": (job_seconds / job.rows) / (one_request / rows_one_request),
        "csv_mib": len(whole_csv) / 2**20, "log_rows": model.prediction_logs.count(),
    }
    print(f"{args.request_rows}-row request to the model's API: {bare * 1000:.1f} ms without its log, "
          f"{logged * 1000:.1f} ms with its log and drift check ({found['log_overhead_ratio']:.2f}x)")
    print(f"whole data set: one request of {rows_one_request:,} rows {found['one_request_rows_per_second']:,.0f} rows/s; "
          f"a job of {job.rows:,} rows {found['job_rows_per_second']:,.0f} rows/s "
          f"({found['job_vs_request_per_row']:.2f}x the time per row)")
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
