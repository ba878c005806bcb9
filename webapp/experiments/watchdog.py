"""The heartbeat watchdog: no run (or prediction job) stays "running" after its worker died, and no
queued run is lost.

A worker killed with SIGKILL leaves its task message unacknowledged in Redis until the
visibility timeout (an hour) brings it back. The watchdog does not wait for that: a running run
whose heartbeat is older than ``RUN_HEARTBEAT_TIMEOUT`` goes back to the queue with a new
message and resumes from its last checkpoint; the old message, when it reappears, finds the
run taken or finished and exits. After ``MAX_REQUEUES`` the run fails with the reason.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webapp.experiments import batch, services
from webapp.experiments.execution import heartbeat_fresh, notify_finished
from webapp.experiments.models import Run, RunStatus

log = logging.getLogger(__name__)

MAX_REQUEUES = 3
REDISPATCH_AFTER = timedelta(seconds=10)  # a queued run whose message never reached the broker
_last_check = 0.0


def check_runs() -> dict:
    """Re-queue or fail runs whose worker stopped beating; resend undelivered messages."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.RUN_HEARTBEAT_TIMEOUT)
    report = {"requeued": [], "failed": [], "cancelled": [], "redispatched": [],
              "prediction_jobs_failed": batch.fail_stale(cutoff)}
    stale = Run.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True)
    for run_id in list(stale):
        outcome = _recover(run_id)
        if outcome:
            report[outcome].append(run_id)
        if outcome in ("failed", "cancelled"):  # it ended here, not on a worker: say so as a worker would
            notify_finished(run_id)
    undelivered = Run.objects.filter(status=RunStatus.QUEUED, dispatched_at__isnull=True,
                                     queued_at__lt=now - REDISPATCH_AFTER).values_list("pk", flat=True)
    for run_id in list(undelivered):
        if services.dispatch(run_id):
            report["redispatched"].append(run_id)
        elif Run.objects.filter(pk=run_id, status=RunStatus.QUEUED, dispatched_at__isnull=True).exists():
            break  # the broker is down: one fast failure is enough, the rest wait for the next check
    if any(report.values()):
        log.warning("watchdog: %s", report)
    return report


def _recover(run_id: int) -> str | None:
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != RunStatus.RUNNING or heartbeat_fresh(run):
            return None  # it finished or beat again meanwhile
        now = timezone.now()
        if run.cancel_requested:
            run.status, run.finished_at = RunStatus.CANCELLED, now
            run.reason = run.reason or "cancelled"
            run.save(update_fields=["status", "finished_at", "reason"])
            return "cancelled"
        run.requeues += 1
        if run.requeues > MAX_REQUEUES:
            run.status, run.finished_at = RunStatus.FAILED, now
            run.reason = f"the worker stopped responding {MAX_REQUEUES} times (last on {run.worker or 'unknown'})"
            run.save(update_fields=["status", "finished_at", "reason", "requeues"])
            return "failed"
        log.warning("run %s: worker %s stopped responding; putting it back in the queue", run_id, run.worker)
        run.reason = f"resuming: worker {run.worker or 'unknown'} stopped responding"
        run.save(update_fields=["requeues", "reason"])
        services.enqueue(run)
    return "requeued"


def check_runs_now_and_then(every: float = 5.0) -> None:
    """Pages that poll call this, so runs recover even where no beat scheduler runs."""
    global _last_check
    if time.monotonic() - _last_check < every:
        return
    _last_check = time.monotonic()
    try:
        check_runs()
    except Exception as error:  # noqa: BLE001 - a page must not fail because the broker is down
        log.warning("watchdog check from a page failed: %s", error)
