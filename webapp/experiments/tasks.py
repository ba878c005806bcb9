"""Celery tasks for runs: thin wrappers over ``execution`` and ``watchdog``."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="experiments.train_run", bind=True, acks_late=True, reject_on_worker_lost=True)
def train_run(self, run_id: int) -> str:
    from webapp.experiments.execution import run_execute

    return run_execute(int(run_id), hostname=self.request.hostname or "")


@shared_task(name="experiments.check_runs", ignore_result=True)
def check_runs() -> dict:
    from webapp.experiments.watchdog import check_runs as check

    return check()
