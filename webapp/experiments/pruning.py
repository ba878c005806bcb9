"""A sweep's early stopping of its poor runs, by one of two rules.

- ``median`` (Vizier's, Optuna's ``MedianPruner``): after its grace epochs, a run of the sweep stops
  at epoch *e* when its best value of the monitored metric up to *e* is worse than the median of the
  best values up to *e* of the sweep's other runs that have reached *e*, and at least ``min_runs``
  of them have.
- ``asha`` (asynchronous successive halving, Li et al. 2020; Optuna's ``SuccessiveHalvingPruner``,
  Ray Tune's and Determined's ASHA): the rungs are the epochs ``grace_epochs × reduction_factor^k``.
  At a rung, a run goes on only if its best value so far is among the best ``1 / reduction_factor``
  of those of every run that has reached that rung, itself included (at least the best one goes
  on), once at least ``min_runs`` others have. Asynchronous: a run is judged against the runs that
  got there before it, so none waits for the others and the first ones are never stopped.

A stopped run ends as a finished run: its weights, checkpoints and test scores are those of the
epochs it trained, and its results say why it stopped (``results["stopped_early"]``).
"""

from __future__ import annotations

import statistics
from typing import ClassVar

from django.db.models import FloatField, Max, Min
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from webapp.experiments.models import MetricRow, Run

LOWEST = {"reduction_factor": 2}  # a setting's smallest value; the others start at 1


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


def halving_verdict(own_best: float | None, others: list[float], *, greater: bool, reduction_factor: int,
                    min_runs: int) -> tuple[float, int] | None:
    """At a rung: the value a run needed to reach and how many of the rung's runs go on, when this
    one's best is short of it; None when it may go on (too few to compare, or among the best)."""
    if own_best is None or len(others) < min_runs:
        return None
    ranked = sorted([*others, own_best], reverse=greater)
    kept = max(1, len(ranked) // reduction_factor)
    cutoff = ranked[kept - 1]
    return (cutoff, kept) if (own_best < cutoff if greater else own_best > cutoff) else None


def rungs(first: int, factor: int, epochs: int) -> list[int]:
    """Successive halving's rungs before a run's last epoch: ``first × factor^k`` for k ≥ 0."""
    found = []
    while first < epochs:
        found.append(first)
        first *= factor
    return found


class Stopping:
    """What the worker's reporter asks after each epoch of a sweep's run; a rule says at which epochs
    it judges (``judges``) and how (``compare``)."""

    rule = ""
    defaults: ClassVar[dict[str, int]] = {}  # the rule's settings, with their defaults

    def __init__(self, *, others: list[int], metric: str, greater: bool, epochs: int, grace_epochs: int,
                 min_runs: int, **settings):
        self.others, self.metric, self.greater = others, metric, greater
        self.epochs, self.grace_epochs, self.min_runs = epochs, grace_epochs, min_runs
        self.settings = settings

    def judges(self, epoch: int) -> bool:
        return self.grace_epochs <= epoch < self.epochs

    def compare(self, best: float | None, others: list[float]) -> dict | None:
        raise NotImplementedError

    def verdict(self, epoch: int, best: float | None) -> dict | None:
        """Why the run should stop after ``epoch`` (its best so far being ``best``), or None."""
        if not self.judges(epoch):
            return None
        others = others_best(self.others, epoch, self.metric, self.greater)
        found = self.compare(best, others)
        if found is None:
            return None
        return {"rule": self.rule, "epoch": epoch, "epochs": self.epochs, "metric": self.metric, "value": best,
                "runs": len(others), **found}


class MedianStopping(Stopping):
    rule = "median"
    defaults: ClassVar[dict[str, int]] = {"grace_epochs": 3, "min_runs": 3}

    def compare(self, best, others):
        median = median_verdict(best, others, greater=self.greater, min_runs=self.min_runs)
        return None if median is None else {"median": median}


class HalvingStopping(Stopping):
    rule = "asha"
    defaults: ClassVar[dict[str, int]] = {"grace_epochs": 3, "reduction_factor": 3, "min_runs": 3}

    def judges(self, epoch):
        return epoch in rungs(self.grace_epochs, self.settings["reduction_factor"], self.epochs)

    def compare(self, best, others):
        factor = self.settings["reduction_factor"]
        found = halving_verdict(best, others, greater=self.greater, reduction_factor=factor, min_runs=self.min_runs)
        if found is None:
            return None
        cutoff, kept = found
        return {"cutoff": cutoff, "kept": kept, "reduction_factor": factor}


RULES = {rule.rule: rule for rule in (MedianStopping, HalvingStopping)}


def for_run(run, *, metric: str, greater: bool, epochs: int) -> Stopping | None:
    """The stopping rule of the run's sweep, or None (not in a sweep, or the sweep stops nothing)."""
    stopping = run.sweep.stopping if run.sweep_id else None
    if not stopping or stopping.get("rule") not in RULES:
        return None
    rule = RULES[stopping["rule"]]
    others = list(Run.objects.filter(sweep_id=run.sweep_id).exclude(pk=run.pk).values_list("pk", flat=True))
    settings = {key: stopping.get(key, default) for key, default in rule.defaults.items()}
    return rule(others=others, metric=metric, greater=greater, epochs=epochs, **settings)
