"""A run that does not fit in memory fails with a hint (a smaller batch), instead of killing the worker.

The engine has no memory cap of its own to simulate a GPU running out of memory on a CPU-only
machine, so the cap comes from the operating system: a worker process (the same code the Celery
task calls) runs the run under an address-space limit (RLIMIT_AS) a few hundred MiB above what it
already uses, and the model needs gigabytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from unittest import mock

import pytest

from tests.faults.conftest import ready_version
from tests.stack import worker_env

pytestmark = [pytest.mark.integration]

CAPPED_WORKER = textwrap.dedent("""
    import resource, sys
    import django
    django.setup()
    from webapp.experiments import execution
    import trainer, numpy  # loaded before the cap, as in a warm worker
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + (640 << 20), resource.RLIM_INFINITY))
    print("outcome:", execution.run_execute(int(sys.argv[1]), hostname="capped@test"), flush=True)
""")


def huge_spec() -> dict:
    """144 million parameters: 0.6 GB of weights, 2.3 GB with gradients and Adam's moments."""
    return {
        "input_shape": [4],
        "layers": [{"type": "Dense", "units": 12000, "activation": "relu"},
                   {"type": "Dense", "units": 12000, "activation": "relu"},
                   {"type": "Dense", "units": 3, "activation": "softmax"}],
        "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam", "metrics": ["accuracy"]},
        "fit": {"epochs": 2, "batch_size": 64, "seed": 1},
    }


def test_a_run_that_runs_out_of_memory_fails_with_a_hint_to_shrink_the_batch(transactional_db, people):
    from webapp.experiments import services
    from webapp.experiments.models import Run

    iris = ready_version(people.workspace, people.owner, "iris.csv", "species")
    with mock.patch("webapp.experiments.services.dispatch"):  # the capped process runs it, not the stack's worker
        run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                  spec=huge_spec(), data_config={"target": "species"}, name="too big", device="cpu")
    env = {**os.environ, **worker_env(), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CAPPED_WORKER, str(run.pk)], env=env, capture_output=True, text=True,
                          timeout=180, cwd=os.getcwd(), check=False)
    assert "outcome: failed" in done.stdout, f"rc={done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    run = Run.objects.get(pk=run.pk)
    assert run.status == "failed"
    assert "out of memory" in run.reason and "try batch size 32" in run.reason, run.reason
    assert run.finished_at is not None
