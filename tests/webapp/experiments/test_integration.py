"""Runs end to end through the real broker and a real worker process: train, cancel, survive SIGKILL, fail on NaN."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.stack import wait_for
from tests.webapp.experiments.conftest import iris_spec, make_version, small_cnn_spec
from webapp.experiments import checkpoints, watchdog
from webapp.experiments.models import MetricRow, Run

pytestmark = [pytest.mark.integration]


def run_state(run_id: int) -> Run:
    return Run.objects.get(pk=run_id)


def slow_spec(epochs: int) -> dict:
    """About 0.2-0.4 s an epoch on fair_affairs: slow enough to act on mid-run, fast enough for CI."""
    return {
        "input_shape": [8],
        "layers": [{"type": "Dense", "units": 128, "activation": "relu"},
                   {"type": "Dense", "units": 128, "activation": "relu"}, {"type": "Dense", "units": 1}],
        "compile": {"loss": "mse", "optimizer": {"type": "adam", "learning_rate": 0.001}, "metrics": ["mae"]},
        "fit": {"epochs": epochs, "batch_size": 16, "seed": 3},
    }


def start(client, user, workspace, version, spec, data_config=None):
    client.force_login(user)
    response = client.post(f"/api/v1/workspaces/{workspace.slug}/runs",
                           {"dataset_version": version.pk, "spec": spec, "data_config": data_config or {}},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_a_table_run_trains_through_the_worker_and_its_charts_get_every_epoch(transactional_db, stack, client, people):
    iris = make_version(people.workspace, people.owner, "iris.csv", target="species")
    queued_at = time.monotonic()
    run_id = start(client, people.editor, people.workspace, iris, iris_spec(epochs=25), {"target": "species"})
    wait_for(lambda: run_state(run_id).started_at, 30, "the worker to start the run", stack, poll=0.02)
    queue_to_start = time.monotonic() - queued_at
    run = wait_for(lambda: (r := run_state(run_id)).is_finished and r, 60, "the run to finish", stack)
    assert run.status == "succeeded", run.reason + run.traceback_summary
    assert run.results["test"]["accuracy"] >= 0.8
    assert MetricRow.objects.filter(run_id=run_id).count() == 25
    assert run.worker.startswith("test") and run.device
    metrics = client.get(f"/api/v1/runs/{run_id}/metrics").json()
    assert metrics["series"]["epoch"] == list(range(1, 26))
    assert len(metrics["series"]["val_accuracy"]) == 25
    print(f"queue-to-start latency {queue_to_start:.3f} s; test accuracy {run.results['test']['accuracy']:.3f}")
    assert queue_to_start < 5


def test_cancel_stops_a_running_run_within_seconds_and_keeps_its_results(transactional_db, stack, client, people):
    affairs = make_version(people.workspace, people.owner, "fair_affairs.csv", target="affairs")
    run_id = start(client, people.editor, people.workspace, affairs, slow_spec(epochs=300))
    wait_for(lambda: run_state(run_id).epochs_done >= 2, 60, "two epochs", stack)
    client.force_login(people.viewer)
    assert client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 403
    client.force_login(people.editor)
    asked = time.monotonic()
    assert client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
    run = wait_for(lambda: (r := run_state(run_id)).is_finished and r, 30, "the run to stop", stack, poll=0.05)
    took = time.monotonic() - asked
    assert run.status == "cancelled", run.reason
    assert took < 5, f"cancel took {took:.1f} s"
    assert 2 <= run.epochs_done < 300
    assert run.results["test"]["mae"] is not None  # what it learned so far was evaluated and kept
    assert checkpoints.weights_path(run).exists()
    print(f"cancel to stopped: {took:.2f} s")


def test_a_run_resumes_on_a_new_worker_after_sigkill_with_every_epoch_once(transactional_db, stack, client, people,
                                                                          settings):
    settings.RUN_HEARTBEAT_TIMEOUT = 5
    affairs = make_version(people.workspace, people.owner, "fair_affairs.csv", target="affairs")
    epochs = 30
    run_id = start(client, people.editor, people.workspace, affairs, slow_spec(epochs=epochs))
    wait_for(lambda: run_state(run_id).epochs_done >= 4, 60, "four epochs", stack)
    first_worker = run_state(run_id).worker
    os.killpg(stack.worker.pid, signal.SIGKILL)
    stack.worker.process.wait(timeout=10)
    killed_at = run_state(run_id).epochs_done
    stack.start_worker()  # its environment carries the 5 s heartbeat timeout

    def recovered():
        watchdog.check_runs()  # what celery beat (and every polling page) does
        return run_state(run_id).status != "running" or run_state(run_id).attempts > 1

    wait_for(recovered, 40, "the watchdog to requeue the run", stack, poll=0.5)
    run = wait_for(lambda: (r := run_state(run_id)).is_finished and r, 90, "the resumed run to finish", stack)
    assert run.status == "succeeded", run.reason + run.traceback_summary
    assert run.attempts == 2 and run.requeues == 1
    assert run.worker != first_worker
    epochs_seen = list(MetricRow.objects.filter(run_id=run_id).order_by("epoch").values_list("epoch", flat=True))
    assert epochs_seen == list(range(1, epochs + 1))
    assert run.epochs_done == epochs and killed_at < epochs
    print(f"killed after epoch {killed_at}; resumed and finished on {run.worker}")


def test_a_diverging_run_fails_with_the_reason(transactional_db, stack, client, people):
    affairs = make_version(people.workspace, people.owner, "fair_affairs.csv", target="affairs")
    spec = slow_spec(epochs=5)
    spec["compile"]["optimizer"] = {"type": "sgd", "learning_rate": 10.0}
    run_id = start(client, people.editor, people.workspace, affairs, spec)
    run = wait_for(lambda: (r := run_state(run_id)).is_finished and r, 60, "the run to fail", stack)
    assert run.status == "failed"
    assert run.reason.startswith("loss became") and "at epoch 1" in run.reason
    page = client.get(run.get_absolute_url())
    assert run.reason.encode() in page.content


def test_an_image_run_trains_a_small_cnn_through_the_worker(transactional_db, stack, client, people):
    digits = make_version(people.workspace, people.owner, "digits8x8.zip", name="Digits")
    spec = small_cnn_spec(epochs=2)
    run_id = start(client, people.editor, people.workspace, digits, spec)
    run = wait_for(lambda: (r := run_state(run_id)).is_finished and r, 60, "the image run to finish", stack)
    assert run.status == "succeeded", run.reason + run.traceback_summary
    assert MetricRow.objects.filter(run_id=run_id).count() == 2
    assert run.results["test"]["accuracy"] >= 0.6
    assert len(run.results["confusion_matrix"]) == 10
    assert all(entry["image"].startswith("data:image/png") for entry in run.results["misclassified"])
    print(f"digits through the worker: test accuracy {run.results['test']['accuracy']:.3f} after 2 epochs")


def test_a_prediction_job_runs_on_the_worker_and_its_file_comes_over_http(transactional_db, stack, client, people):
    iris = make_version(people.workspace, people.owner, "iris.csv", target="species")
    run_id = start(client, people.editor, people.workspace, iris, iris_spec(epochs=3), {"target": "species"})
    wait_for(lambda: run_state(run_id).is_finished, 60, "the run to finish", stack)
    response = client.post(f"/api/v1/runs/{run_id}/prediction-jobs", {"dataset_version": iris.pk},
                           content_type="application/json")
    assert response.status_code == 202, response.content
    job_url = f"/api/v1/prediction-jobs/{response.json()['id']}"
    job = wait_for(lambda: (j := client.get(job_url).json())["status"] not in ("queued", "running") and j, 60,
                   "the worker to predict the data set", stack)
    assert job["status"] == "succeeded", job["reason"]
    lines = b"".join(client.get(job["download"]).streaming_content).decode().splitlines()
    assert len(lines) == 151 and lines[0].startswith("row,prediction,confidence") and lines[0].endswith(",actual")
