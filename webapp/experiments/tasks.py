"""Celery tasks for runs: thin wrappers over ``execution`` and ``watchdog``."""

from __future__ import annotations

from celery import shared_task

# Imported when the worker starts (not on its first task), so a run starts without waiting for
# NumPy, pandas and the engine to load.
import trainer  # noqa: F401
from webapp.experiments import batch, execution, watchdog


@shared_task(name="experiments.train_run", bind=True, acks_late=True, reject_on_worker_lost=True)
def train_run(self, run_id: int) -> str:
    return execution.run_execute(int(run_id), hostname=self.request.hostname or "")


@shared_task(name="experiments.rank_columns", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def rank_columns(run_id: int) -> None:
    execution.importance_execute(int(run_id))


@shared_task(name="experiments.reanalyse", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def reanalyse(run_id: int) -> None:
    execution.reanalysis_execute(int(run_id))


@shared_task(name="experiments.predict_dataset", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def predict_dataset(job_id: int, queue: str = "default") -> None:
    batch.job_execute(int(job_id), queue=queue)


@shared_task(name="experiments.prune_prediction_logs", ignore_result=True)
def prune_prediction_logs() -> int:
    from webapp.experiments import monitoring

    return monitoring.prune()


@shared_task(name="experiments.check_runs", ignore_result=True)
def check_runs() -> dict:
    return watchdog.check_runs()
