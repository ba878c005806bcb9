"""Reads about runs: access-checked lookups, filtered lists, metric series for charts."""

from __future__ import annotations

import statistics

from django.db.models import Count, Q

from webapp.accounts.access import get_object_in_workspace
from webapp.experiments.models import MetricRow, RegisteredModel, Run, Sweep

MAX_POINTS = 2000
LIVE_POINTS = 500  # the most epochs one poll of a training run's page brings (static/js/run.js thins the rest)


def get_run_for_user(user, pk, *, write: bool = False):
    """``(run, membership)``; 404 for outsiders and missing runs alike, 403 for read-only writes."""
    return get_object_in_workspace(Run, user, pk, write=write)


def get_sweep_for_user(user, pk, *, write: bool = False):
    return get_object_in_workspace(Sweep, user, pk, write=write)


def get_model_for_user(user, pk, *, write: bool = False):
    return get_object_in_workspace(RegisteredModel, user, pk, write=write)


def models_for_workspace(workspace):
    """The workspace's registered models, each with its version in production (and that run) and
    ``version_count``, in one query."""
    return (RegisteredModel.objects.filter(workspace=workspace).select_related("production__run", "created_by")
            .annotate(version_count=Count("versions")).order_by("name", "pk"))


def sweep_best(runs):
    """The run of a sweep with the best value of the metric they monitor, or None before any reports one."""
    from webapp.experiments.execution import greater_is_better

    measured = [run for run in runs if run.best_metric is not None]
    if not measured:
        return None
    greater = greater_is_better(measured[0].best_metric_name or "loss")
    return (max if greater else min)(measured, key=lambda run: run.best_metric)


def parameter_effects(sweep, runs) -> list[dict]:
    """Each swept hyper-parameter's marginal effect on the metric the runs monitor: their best values
    grouped by the parameter's value (a range's values cut into three bins of as many runs, by rank),
    each group's mean, and the spread between the best and the worst group's mean; the largest spread
    first. A parameter needs two groups with measured runs; the fold of a cross-validation is no
    hyper-parameter."""
    from webapp.experiments.execution import greater_is_better

    measured = [run for run in runs if run.best_metric is not None and run.sweep_params]
    if len(measured) < 3:
        return []
    greater = greater_is_better(measured[0].best_metric_name or "loss")
    effects = []
    for key, values in (sweep.space or {}).items():
        pairs = sorted(((run.sweep_params[key], run.best_metric) for run in measured if key in run.sweep_params),
                       key=lambda pair: (str(type(pair[0])), pair[0]))
        if key == "fold" or not pairs:
            continue
        if isinstance(values, dict):  # a range: low, middle and high thirds of the values drawn
            cuts = [part for part in (pairs[len(pairs) * i // 3: len(pairs) * (i + 1) // 3] for i in range(3)) if part]
            groups = [{"label": f"{part[0][0]:.3g} – {part[-1][0]:.3g}", "scores": [m for _, m in part]}
                      for part in cuts]
        else:
            order = {str(v): i for i, v in enumerate(values)}
            by_value = {}
            for value, metric in pairs:
                by_value.setdefault(str(value), []).append(metric)
            groups = [{"label": label, "scores": scores}
                      for label, scores in sorted(by_value.items(), key=lambda item: order.get(item[0], 0))]
        if len(groups) < 2:
            continue
        for group in groups:
            group["mean"], group["runs"] = statistics.fmean(group["scores"]), len(group["scores"])
        best = (max if greater else min)(groups, key=lambda g: g["mean"])
        means = [g["mean"] for g in groups]
        effects.append({"name": key, "groups": groups, "spread": max(means) - min(means), "best": best["label"],
                        "metric": measured[0].best_metric_name})
    effects.sort(key=lambda effect: -effect["spread"])
    return effects


def newer_data(run):
    """The newest ready version of the run's data set when it is newer than the one the run trained on, else None."""
    from webapp.datasets.models import DatasetVersion

    trained_on = run.dataset_version
    return (DatasetVersion.objects.filter(dataset_id=trained_on.dataset_id, status="ready", number__gt=trained_on.number)
            .select_related("dataset").order_by("-number").first())


def scored_jobs(versions) -> list[dict]:
    """Each model version's latest prediction job with scores (batch.JobScore) per data set version, grouped by data
    set version (the newest first) and then by version number: what the model page holds its versions against."""
    from webapp.experiments.models import PredictionJob, RunStatus

    by_run = {version.run_id: version for version in versions}
    jobs = (PredictionJob.objects.filter(run_id__in=list(by_run), status=RunStatus.SUCCEEDED).exclude(scores={})
            .select_related("dataset_version__dataset", "created_by").order_by("-finished_at", "-pk"))
    latest = {}
    for job in jobs[:500]:
        latest.setdefault((job.dataset_version_id, job.run_id), job)
    entries = [{"job": job, "number": by_run[job.run_id].number,
                "in_production": by_run[job.run_id].model.production_id == by_run[job.run_id].pk}
               for job in latest.values()]
    entries.sort(key=lambda e: (-e["job"].dataset_version_id, -e["number"]))
    return entries


def point_of(run) -> dict:
    """A cross-validation run's point: its swept values but the fold."""
    return {key: value for key, value in (run.sweep_params or {}).items() if key != "fold"}


def cross_validation(sweep, runs) -> dict | None:
    """A cross-validating sweep's scores: per point of its other hyper-parameters (one group when it
    sweeps the fold alone), each test metric's mean and spread (standard deviation, as scikit-learn's
    cross_val_score reports) over the folds that have finished, and how many of them have.
    {"metrics": [names], "groups": [{"params", "folds", "done", "scores": [{mean, std, values} | None]}]}."""
    if "fold" not in (sweep.space or {}):
        return None
    groups = {}
    for run in runs:
        key = tuple(sorted(point_of(run).items()))
        groups.setdefault(key, []).append(run)
    finished = {key: [run.results["test"] for run in members
                      if run.status == "succeeded" and (run.results or {}).get("test")]
                for key, members in groups.items()}
    names = []
    for tests in finished.values():
        names.extend(name for test in tests for name in test if name not in names)

    def score(tests, name):
        values = [float(test[name]) for test in tests if isinstance(test.get(name), (int, float))]
        if not values or len(values) < len(tests):
            return None
        return {"mean": statistics.fmean(values), "std": statistics.pstdev(values), "values": values}

    return {"metrics": names, "groups": [
        {"params": dict(key), "folds": len(members), "done": len(finished[key]),
         "scores": [score(finished[key], name) for name in names]} for key, members in groups.items()]}


# What a list of runs never shows: each run's large JSON (spec, results, fitted preprocessing) and its
# data set version's schema and statistics, which would otherwise be read and parsed once per row.
LIST_DEFERRED = ("spec", "data_config", "results", "preprocessing", "library_versions", "sweep_params",
                 "traceback_summary", "notes", "dataset_version__schema", "dataset_version__stats",
                 "dataset_version__options", "dataset_version__dataset__description",
                 "dataset_version__dataset__ignored_columns")


def runs_for_workspace(workspace, *, dataset=None, status=None, tag=None, starred=False, query=None):
    """The workspace's runs for a list (dashboard, API list): newest first, without their large fields."""
    runs = (Run.objects.filter(workspace=workspace)
            .select_related("workspace", "dataset_version__dataset", "created_by").defer(*LIST_DEFERRED))
    if dataset:
        runs = runs.filter(dataset_version__dataset_id=dataset)
    if status:
        runs = runs.filter(status=status)
    if starred:
        runs = runs.filter(starred=True)
    if query:
        runs = runs.filter(Q(name__icontains=query) | Q(notes__icontains=query))
    if tag:
        # JSON containment is not on SQLite; tags are few, so filter the page in Python.
        return [run for run in runs if tag in (run.tags or [])]
    return runs


def workspace_tags(workspace) -> list[str]:
    tags = set()
    for run_tags in Run.objects.filter(workspace=workspace).exclude(tags=[]).values_list("tags", flat=True)[:2000]:
        tags.update(run_tags or [])
    return sorted(tags)


def downsample_epochs(epochs: list[int], keep=(), limit: int = MAX_POINTS) -> list[int]:
    """At most about ``limit`` epochs, evenly spread, always with the first, the last and ``keep``."""
    if len(epochs) <= limit:
        return epochs
    step = len(epochs) / limit
    chosen = {epochs[int(i * step)] for i in range(limit)}
    chosen.update({epochs[0], epochs[-1]})
    chosen.update(e for e in keep if e is not None)
    return sorted(chosen)


def metric_series(run: Run, *, since: int = 0, limit: int = MAX_POINTS) -> dict:
    """Per-epoch values as columns, ready for Plotly: {"epoch": [...], "loss": [...], ...}.

    The epoch numbers are read first, then the values of the epochs shown (past ``limit``, those
    ``downsample_epochs`` keeps): a run of 100,000 epochs costs 100,000 integers and 2,000 decoded
    rows, not 100,000 of them."""
    query = MetricRow.objects.filter(run=run, epoch__gt=since).order_by("epoch")
    epochs = list(query.values_list("epoch", flat=True))
    total = len(epochs)
    if total > limit:
        query = query.filter(epoch__in=downsample_epochs(epochs, keep=[run.best_epoch], limit=limit))
    rows = list(query.values_list("epoch", "values"))
    names = []
    for _, values in rows:
        for name in values:
            if name not in names:
                names.append(name)
    series = {"epoch": [e for e, _ in rows]}
    for name in names:
        series[name] = [values.get(name) for _, values in rows]
    return {"series": series, "count": total, "downsampled": total > len(rows)}


def run_state(run: Run) -> dict:
    """The small status record pages poll while a run trains."""
    return {
        "id": run.pk, "name": run.display_name, "status": run.status, "reason": run.reason,
        "epochs_done": run.epochs_done, "epochs_total": run.epochs_total, "worker": run.worker, "device": run.device,
        "queue": run.queue, "best_metric_name": run.best_metric_name, "best_metric": run.best_metric,
        "best_epoch": run.best_epoch, "attempts": run.attempts, "requeues": run.requeues,
        "cancel_requested": run.cancel_requested, "duration_seconds": run.duration_seconds,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "created_at": run.created_at.isoformat(),
    }
