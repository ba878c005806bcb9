"""A sweep's early stopping of its poor runs: the median rule (Vizier's, Optuna's ``MedianPruner``).

After its grace epochs, a run of the sweep stops at epoch *e* when its best value of the monitored
metric up to *e* is worse than the median of the best values up to *e* of the sweep's other runs
that have reached *e*, and at least ``min_runs`` of them have. It stops as a finished run: its
weights, checkpoints and test scores are those of the epochs it trained, and its results say
why it stopped (``results["stopped_early"]``).
"""

from __future__ import annotations

import statistics

from django.db.models import FloatField, Max, Min
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from webapp.experiments.models import MetricRow, Run

RULES = ("median",)
DEFAULTS = {"grace_epochs": 3, "min_runs": 3}


def others_best(run_ids: list[int], epoch: int, metric: str, greater: bool) -> list[float]:
    """The best ``metric`` up to ``epoch`` of each of these runs that has a row for that epoch (one
    aggregate query on the rows' index: a run of many epochs does not read every row of every run each epoch)."""
    value = Cast(KeyTextTransform(metric, "values"), FloatField())
    rows = (MetricRow.objects.filter(run_id__in=run_ids, epoch__lte=epoch)
            .exclude(**{f"values__{metric}": None})  # a JSON null is no value (SQLite would cast it to 0)
            .order_by().values("run_id").annotate(reached=Max("epoch"), best=(Max if greater else Min)(value)))
    return [row["best"] for row in rows if row["reached"] == epoch and row["best"] is not None]


def median_verdict(own_best: float | None, others: list[float], *, greater: bool, min_runs: int) -> float | None:
    """The median this run is worse than, or None when it may go on (too few to compare, or not worse)."""
    if own_best is None or len(others) < min_runs:
        return None
    median = statistics.median(others)
    return median if (own_best < median if greater else own_best > median) else None


class MedianStopping:
    """What the worker's reporter asks after each epoch of a sweep's run."""

    def __init__(self, *, others: list[int], metric: str, greater: bool, epochs: int, grace_epochs: int,
                 min_runs: int):
        self.others, self.metric, self.greater = others, metric, greater
        self.epochs, self.grace_epochs, self.min_runs = epochs, grace_epochs, min_runs

    def verdict(self, epoch: int, best: float | None) -> dict | None:
        """Why the run should stop after ``epoch`` (its best so far being ``best``), or None."""
        if epoch < self.grace_epochs or epoch >= self.epochs:
            return None
        others = others_best(self.others, epoch, self.metric, self.greater)
        median = median_verdict(best, others, greater=self.greater, min_runs=self.min_runs)
        if median is None:
            return None
        return {"rule": "median", "epoch": epoch, "epochs": self.epochs, "metric": self.metric, "value": best,
                "median": median, "runs": len(others)}


def for_run(run, *, metric: str, greater: bool, epochs: int) -> MedianStopping | None:
    """The stopping rule of the run's sweep, or None (not in a sweep, or the sweep stops nothing)."""
    stopping = run.sweep.stopping if run.sweep_id else None
    if not stopping or stopping.get("rule") not in RULES:
        return None
    others = list(Run.objects.filter(sweep_id=run.sweep_id).exclude(pk=run.pk).values_list("pk", flat=True))
    return MedianStopping(others=others, metric=metric, greater=greater, epochs=epochs,
                          grace_epochs=stopping["grace_epochs"], min_runs=stopping["min_runs"])
