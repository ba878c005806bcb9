"""Writes about runs: create, queue, cancel, continue, fork, delete, sweeps, notes and stars.

Services take typed keyword arguments, never a request; they raise ``InvalidInput`` (or the
spec's and data config's own errors, which carry a ``field`` too) for anything a person must fix.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import random
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from webapp.accounts import activity
from webapp.accounts.models import ShareLink, ShareTarget
from webapp.experiments import checkpoints, curves, preparation, pruning, selectors, specs
from webapp.experiments.models import ACTIVE_STATUSES, MetricRow, Run, RunStatus, Sweep

log = logging.getLogger(__name__)

MAX_SWEEP_RUNS = 50
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")  # trainer.optimizers.NAMES: the names a sweep may try
SWEEP_PARAMETERS = ("learning_rate", "batch_size", "epochs", "units", "filters", "dropout", "optimizer",
                    "class_weight", "window", "forecast", "fold")
# the hyper-parameters that take names
CHOICES = {"optimizer": OPTIMIZERS, "class_weight": ("none", "balanced"), "forecast": preparation.FORECASTS}
# set in each run's data config, not in its spec: a series' window and forecast, a cross-validation's fold
DATA_PARAMETERS = ("window", "forecast", "fold")
SERIES_PARAMETERS = ("window", "forecast")
RECURRENT_LAYERS = ("SimpleRNN", "LSTM", "GRU")


class InvalidInput(ValueError):
    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


# C0 control characters and DEL, except tab, newline and carriage return (a browser's textarea sends
# CRLF). PostgreSQL refuses NUL in text, so storing one would end in a 500.
_CONTROL = frozenset(chr(c) for c in (*range(32), 127)) - {"\t", "\n", "\r"}


def _check_text(value, field: str) -> None:
    if isinstance(value, str) and any(ch in _CONTROL for ch in value):
        raise InvalidInput(f"{field}: must not contain control characters such as NUL", field)


def _check_version(workspace, dataset_version) -> None:
    if dataset_version is None or dataset_version.dataset.workspace_id != workspace.pk:
        raise InvalidInput("dataset_version: no such data set version in this workspace", "dataset_version")
    status = getattr(dataset_version, "status", "ready")
    if status != "ready":
        raise InvalidInput(f"dataset_version: the data set version is {status}, not ready", "dataset_version")


def _check_columns(dataset_version, config: dict) -> None:
    """The target and feature columns must be columns of the version (when its schema lists them)."""
    schema = getattr(dataset_version, "schema", None) or {}
    columns = [c.get("name") for c in schema.get("columns", []) if isinstance(c, dict)]
    if not columns:
        return  # images, or a schema without columns: the worker's preparation checks
    for name in ("target", "text"):
        column = config.get(name)
        if column is not None and column not in columns:
            raise InvalidInput(f"data_config.{name}: no column {column!r} in this data set version",
                               f"data_config.{name}")
    for name in ("features", "categorical"):
        missing = [c for c in (config.get(name) or []) if c not in columns]
        if missing:
            raise InvalidInput(f"data_config.{name}: no column {missing[0]!r} in this data set version",
                               f"data_config.{name}")


def _check_model_fits(dataset_version, spec: dict, config: dict) -> None:
    """The model over the data's own input shape, and its output against the target: the builder's live
    check, made again here for whatever creates the run (the API, a sweep), so a mismatch is refused at once
    rather than failing in a worker."""
    from webapp.experiments import datasource

    try:
        data = datasource.describe(dataset_version, config)
    except Exception:  # noqa: BLE001 - data the worker cannot prepare fails the run there, with its reason
        return
    specs.check_output(dict(spec, input_shape=data["input_shape"]), data)


# ----------------------------------------------------------------------------- queueing


def choose_queue(device_preference: str) -> str:
    """``gpu`` when the run may use a GPU and a GPU worker is alive, else ``cpu``."""
    if device_preference == "gpu":
        return "gpu"  # waits for a GPU worker rather than silently running on a CPU
    if device_preference == "cpu":
        return "cpu"
    try:
        from webapp.core import presence

        workers = presence.live_workers()
    except Exception:  # noqa: BLE001 - the broker is down: the dispatch below fails too and the watchdog retries
        return "cpu"
    return "gpu" if any("gpu" in (w.get("queues") or []) for w in workers) else "cpu"


def dispatch(run_id: int) -> bool:
    """Send the task message now; on a broker outage leave ``dispatched_at`` empty for the watchdog."""
    from webapp.experiments.tasks import train_run

    run = Run.objects.filter(pk=run_id).values("queue", "priority", "status").first()
    if run is None or run["status"] != RunStatus.QUEUED:
        return False
    try:
        # No retries: during a Redis outage Celery's default policy held the request ~19 s. The
        # run stays queued with ``dispatched_at`` empty and the watchdog sends it later.
        train_run.apply_async((run_id,), queue=run["queue"] or "cpu", priority=run["priority"], retry=False)
    except Exception as error:  # noqa: BLE001 - the broker may be down; the watchdog retries
        log.warning("run %s: could not send its task to the broker (%s); the watchdog will retry", run_id, error)
        return False
    Run.objects.filter(pk=run_id).update(dispatched_at=timezone.now())
    return True


def enqueue(run: Run) -> None:
    run.queue = choose_queue(run.device_preference)
    run.status = RunStatus.QUEUED
    run.queued_at = timezone.now()
    run.dispatched_at = None
    Run.objects.filter(pk=run.pk).update(queue=run.queue, status=run.status, queued_at=run.queued_at,
                                         dispatched_at=None)
    transaction.on_commit(lambda: dispatch(run.pk))


# ----------------------------------------------------------------------------- creating runs


def _seed_of(spec: dict, seed) -> int:
    if seed is not None:
        return int(seed)
    fit_seed = (spec.get("fit") or {}).get("seed")
    if isinstance(fit_seed, int) and not isinstance(fit_seed, bool):
        return fit_seed
    return random.SystemRandom().randrange(2**31)


@transaction.atomic
def run_create(*, workspace, user, dataset_version, spec, data_config=None, name: str = "", device: str = "auto",
               seed: int | None = None, priority: int = 5, tags=None, parent: Run | None = None,
               from_epoch: int | None = None, sweep: Sweep | None = None, sweep_params=None,
               refit_of: Sweep | None = None, results=None) -> Run:
    _check_version(workspace, dataset_version)
    if device not in specs.DEVICES:
        raise InvalidInput(f"device: must be one of {', '.join(specs.DEVICES)}, got {device!r}", "device")
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 9:
        raise InvalidInput("priority: must be an integer from 0 (first) to 9 (last)", "priority")
    if len(name) > 120:
        raise InvalidInput("name: at most 120 characters", "name")
    _check_text(name, "name")
    spec = specs.validate_spec(spec)
    config = preparation.normalise_config(data_config)
    _check_columns(dataset_version, config)
    _check_model_fits(dataset_version, spec, config)
    seed = _seed_of(spec, seed)
    spec.setdefault("fit", {})["seed"] = seed
    run = Run.objects.create(
        workspace=workspace, dataset_version=dataset_version, created_by=user, name=name.strip(), spec=spec,
        data_config=config, seed=seed, device_preference=device, priority=priority,
        epochs_total=specs.fit_settings(spec)["epochs"], tags=_clean_tags(tags or []), parent=parent,
        from_epoch=from_epoch, sweep=sweep, sweep_params=sweep_params or {}, refit_of=refit_of,
        results=results or {},
    )
    if parent is not None and from_epoch:
        MetricRow.objects.bulk_create([
            MetricRow(run=run, epoch=row.epoch, values=row.values)
            for row in parent.metric_rows.filter(epoch__lte=from_epoch)
        ])
        Run.objects.filter(pk=run.pk).update(epochs_done=from_epoch)
        run.epochs_done = from_epoch
    enqueue(run)
    activity.record(workspace=workspace, actor=user, verb="started", target_type="run", target_id=run.pk,
                    target_label=run.display_name)
    return run


def run_continue(*, run: Run, user, epochs: int) -> Run:
    """A new run that picks up the finished run's last checkpoint and trains ``epochs`` more."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or not 1 <= epochs <= 10000:
        raise InvalidInput("epochs: must be an integer from 1 to 10000", "epochs")
    if run.is_active:
        raise InvalidInput("run: wait until the run has finished", "run")
    if not run.epochs_done or checkpoints.path_for(run, run.epochs_done) is None:
        raise InvalidInput("run: it has no checkpoint to continue from", "run")
    spec = copy.deepcopy(run.spec)
    spec.setdefault("fit", {})["epochs"] = run.epochs_done + epochs
    return run_create(workspace=run.workspace, user=user, dataset_version=run.dataset_version, spec=spec,
                      data_config=run.data_config, name=f"{run.display_name} +{epochs}", device=run.device_preference,
                      seed=run.seed, tags=run.tags, parent=run, from_epoch=run.epochs_done)


IMPORTANCE_PATIENCE = timedelta(minutes=15)  # a worker's job asked for longer ago than this has been lost


def _asked(run: Run, key: str) -> bool:
    """Whether a worker was asked for ``results[key]`` and is still working it out."""
    asked = ((run.results or {}).get(key) or {}).get("pending")
    return bool(asked) and timezone.now() - datetime.fromisoformat(asked) < IMPORTANCE_PATIENCE


def importance_pending(run: Run) -> bool:
    """Whether the run's column ranking has been asked for and is still being worked out."""
    return _asked(run, "importance")


def analyses_pending(run: Run) -> bool:
    """Whether the run's missing analyses (see missing_analyses) are being worked out."""
    return _asked(run, "reanalysis")


def _not_scored(run: Run) -> str:
    if run.status not in (RunStatus.SUCCEEDED, RunStatus.CANCELLED) or not (run.results or {}).get("test") \
            or not checkpoints.weights_path(run).exists():
        return "only a finished run with a trained, tested model"
    return ""


def rank_columns_refusal(run: Run) -> str:
    """Why the run's columns cannot be ranked now ("" when they can)."""
    if unscored := _not_scored(run):
        return unscored + " can have its columns ranked"
    if not preparation.has_columns(run.preprocessing):
        return "its input has no columns to rank (a table's, or a series with several)"
    if ((run.results or {}).get("importance") or {}).get("columns"):
        return "its columns are ranked already"
    if importance_pending(run):
        return "its columns are being ranked; the page shows them when they are"
    return ""


def missing_analyses(run: Run) -> list[str]:
    """What a run scored before Cupola made them lacks: a classifier's calibration and ROC curves (its
    decision threshold), an image classifier's saliency maps, a table's input profile (its model's input
    drift), the reference of its last hidden layer (the drift of what its model makes of its inputs)."""
    results, kind = run.results or {}, (run.preprocessing or {}).get("kind")
    wanted = []
    if results.get("task") == "classification" and results.get("test_rows") != 0:  # curves need a test split
        wanted += [("calibration", "calibration"), ("roc", "ROC curves")]
        if kind == "images":
            wanted.append(("saliency", "saliency maps"))
    if kind in ("table", "text", "images"):
        wanted.append(("input_profile", "the training rows' input profile"))
    wanted.append(("feature_basis", "its hidden layer's reference for drift"))
    return [name for key, name in wanted if key not in results]


def reanalysis_refusal(run: Run) -> str:
    if unscored := _not_scored(run):
        return unscored + " can be analysed again"
    if not missing_analyses(run):
        return "it has every analysis already"
    if analyses_pending(run):
        return "its analyses are being worked out; the page shows them when they are"
    return ""


def _ask_worker(run: Run, user, key: str, refusal, send, verb: str) -> Run:
    """Mark ``results[key]`` pending under the run's row lock (two asks at once: the second is refused) and send
    the worker's task once that is committed."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        refused = refusal(locked)
        if refused:
            raise InvalidInput(f"run: {refused}", "run")
        locked.results = {**(locked.results or {}), key: {"pending": timezone.now().isoformat()}}
        locked.save(update_fields=["results"])
        transaction.on_commit(lambda: send(run.pk))
    activity.record(workspace=run.workspace, actor=user, verb=verb, target_type="run", target_id=run.pk,
                    target_label=run.display_name)
    return locked


def run_rank_columns(*, run: Run, user) -> Run:
    """Ask a worker for a finished run's column importance (see execution.importance_execute)."""
    return _ask_worker(run, user, "importance", rank_columns_refusal, _send_rank_columns, "ranked the columns of")


def run_reanalyse(*, run: Run, user) -> Run:
    """Ask a worker for the analyses a finished run lacks (see execution.reanalysis_execute)."""
    return _ask_worker(run, user, "reanalysis", reanalysis_refusal, _send_reanalysis, "worked out the analyses of")


def _send_reanalysis(run_id: int) -> None:
    from webapp.experiments.tasks import reanalyse

    reanalyse.apply_async(args=[run_id], queue="default")


def run_set_threshold(*, run: Run, user, threshold) -> Run:
    """Set (a number from 0 to 1, to three decimals) or clear (None) the probability a binary
    classifier's predictions are cut at; its page, predictions and registered model follow."""
    if curves.binary_roc(run.results) is None:
        raise InvalidInput("threshold: only a finished binary classifier with a tested model can have a "
                           "decision threshold (its test split needs rows of both classes)", "threshold")
    value = None
    if threshold is not None:
        try:
            value = curves.parse_threshold(threshold)
        except ValueError as error:
            raise InvalidInput(str(error), "threshold") from None
    run.decision_threshold = value
    run.save(update_fields=["decision_threshold"])
    verb = "cleared the decision threshold of" if value is None else f"set the decision threshold to {value:g} on"
    activity.record(workspace=run.workspace, actor=user, verb=verb, target_type="run", target_id=run.pk,
                    target_label=run.display_name)
    return run


def prediction_job_create(*, run: Run, dataset_version, user):
    """Queue predictions of a finished run for every row (or image) of a data set version of its workspace."""
    from webapp.experiments import batch
    from webapp.experiments.models import PredictionJob

    if run.status not in (RunStatus.SUCCEEDED, RunStatus.CANCELLED) or not checkpoints.weights_path(run).exists():
        raise InvalidInput("run: only a finished run with trained weights can predict", "run")
    if dataset_version is None or dataset_version.dataset.workspace_id != run.workspace_id:
        raise InvalidInput("dataset_version: no such data set version in this workspace", "dataset_version")
    if dataset_version.status != "ready":
        raise InvalidInput(f"dataset_version: {dataset_version} is {dataset_version.status}, not ready", "dataset_version")
    kind = (run.preprocessing or {}).get("kind")
    held = (dataset_version.schema or {}).get("kind")
    if held not in batch.DATA_KINDS.get(kind, ()):
        raise InvalidInput(f"dataset_version: {dataset_version} holds {held}, and this run predicts from "
                           f"{' or '.join(batch.DATA_KINDS.get(kind, ('nothing',)))}", "dataset_version")
    with transaction.atomic():
        Run.objects.select_for_update().get(pk=run.pk)  # two asks at once count each other
        if run.prediction_jobs.filter(status__in=ACTIVE_STATUSES).count() >= batch.MAX_ACTIVE_PER_RUN:
            raise InvalidInput(f"dataset_version: this run already has {batch.MAX_ACTIVE_PER_RUN} prediction jobs "
                               "queued or running; wait for one to end", "dataset_version")
        job = PredictionJob.objects.create(workspace=run.workspace, run=run, dataset_version=dataset_version,
                                           created_by=user if getattr(user, "is_authenticated", False) else None)
        queue = "gpu" if run.device_preference != "cpu" and choose_queue("auto") == "gpu" else "default"
        transaction.on_commit(lambda: _send_prediction_job(job.pk, queue))
    activity.record(workspace=run.workspace, actor=user, verb="predicted a data set with", target_type="run",
                    target_id=run.pk, target_label=run.display_name)
    return job


def _send_prediction_job(job_id: int, queue: str = "default") -> None:
    """To a GPU worker where one is alive and the run may use it (a large model predicts faster there),
    else to the ``default`` queue that every CPU worker reads."""
    from webapp.experiments.models import PredictionJob
    from webapp.experiments.tasks import predict_dataset

    try:
        predict_dataset.apply_async(args=[job_id], kwargs={"queue": queue}, queue=queue)
    except Exception as error:  # noqa: BLE001 - the broker is down: the job says so instead of waiting forever
        log.warning("prediction job %s not sent: %s", job_id, error)
        PredictionJob.objects.filter(pk=job_id, status=RunStatus.QUEUED).update(
            status=RunStatus.FAILED, finished_at=timezone.now(),
            reason="the task queue (Redis) could not be reached; start it again once it is back")
        from webapp.experiments.batch import notify_finished

        notify_finished(job_id)


def _send_rank_columns(run_id: int) -> None:
    from webapp.experiments.tasks import rank_columns

    rank_columns.apply_async(args=[run_id], queue="default")


def run_fork(*, run: Run, user, from_epoch: int, spec: dict | None = None, name: str = "") -> Run:
    """A new run from the checkpoint of epoch ``from_epoch``, with changed training settings."""
    if not isinstance(from_epoch, int) or isinstance(from_epoch, bool) or from_epoch < 1:
        raise InvalidInput("from_epoch: must be a positive integer", "from_epoch")
    if checkpoints.path_for(run, from_epoch) is None:
        raise InvalidInput(f"from_epoch: run has no checkpoint for epoch {from_epoch}", "from_epoch")
    spec = copy.deepcopy(spec if spec is not None else run.spec)
    if spec.get("layers") != run.spec.get("layers") or spec.get("input_shape") != run.spec.get("input_shape"):
        raise InvalidInput("layers: a fork keeps its parent's layers; start a new run to change them", "layers")
    epochs = specs.fit_settings(spec)["epochs"]
    if epochs <= from_epoch:
        raise InvalidInput(f"fit.epochs: must be more than {from_epoch} to train after the fork", "fit.epochs")
    return run_create(workspace=run.workspace, user=user, dataset_version=run.dataset_version, spec=spec,
                      data_config=run.data_config, name=name or f"{run.display_name} fork@{from_epoch}",
                      device=run.device_preference, seed=run.seed, tags=run.tags, parent=run, from_epoch=from_epoch)


# ----------------------------------------------------------------------------- controlling runs


@transaction.atomic
def run_cancel(*, run: Run, user) -> Run:
    run = Run.objects.select_for_update().get(pk=run.pk)
    who = getattr(user, "username", "") or "someone"
    if run.status == RunStatus.QUEUED:
        run.status = RunStatus.CANCELLED
        run.cancel_requested = True
        run.finished_at = timezone.now()
        run.reason = f"cancelled by {who} before it started"
        run.save(update_fields=["status", "cancel_requested", "finished_at", "reason"])
    elif run.status == RunStatus.RUNNING:
        run.cancel_requested = True
        run.reason = f"cancelled by {who}"
        run.save(update_fields=["cancel_requested", "reason"])
    else:
        return run
    activity.record(workspace=run.workspace, actor=user, verb="cancelled", target_type="run", target_id=run.pk,
                    target_label=run.display_name)
    return run


class RunInUse(InvalidInput):
    """A run that cannot be deleted now: it is still active, or an active run starts from it."""


def may_delete(obj, membership) -> bool:
    """Owners may delete any run, sweep, model or model version of their workspace; editors the ones
    they started, created or registered (``obj.created_by``)."""
    return membership.is_owner or (membership.can_write and obj.created_by_id == membership.user_id)


def prediction_job_delete(*, job, membership) -> None:
    """Delete a prediction job that ended, and its file (batch.py's post_delete). ``may_delete`` decides who."""
    from django.core.exceptions import PermissionDenied

    if not may_delete(job, membership):
        raise PermissionDenied("Only its owner, or the workspace's owners, may delete this prediction job")
    if job.is_active:
        raise InvalidInput("job: it is still queued or running; it can be deleted once it ends", "job")
    job.delete()


def run_delete(*, run: Run, user, membership) -> None:
    """Delete a finished run: its epochs, checkpoints, weights and exports, and its share links.

    Refused (PermissionDenied) unless ``may_delete``; refused (RunInUse) while it is queued or
    running (cancel it first), and while a queued or running continuation or fork still has to
    load its checkpoint. Runs continued or forked from it earlier keep their own files; they lose
    only the link to it."""
    if not may_delete(run, membership):
        raise PermissionDenied(f"{run.display_name}: only the person who started it or a workspace owner may "
                               f"delete it")
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.is_active:
            raise RunInUse(f"{run.display_name} is {run.status}: cancel it first, then delete it", "run")
        held = run.model_versions.select_related("model").order_by("pk").first()
        if held is not None:
            raise RunInUse(f"{run.display_name} is version {held.number} of the model {held.model.name}: remove it "
                           f"from the model first, then delete the run", "run")
        waiting = list(run.children.filter(status__in=ACTIVE_STATUSES).order_by("pk"))
        if waiting:
            names = ", ".join(child.display_name for child in waiting[:3]) + (" …" if len(waiting) > 3 else "")
            raise RunInUse(f"{run.display_name} cannot be deleted yet: {names} still has to start from its "
                           f"checkpoint", "run")
        ShareLink.objects.filter(workspace=run.workspace, target_type=ShareTarget.RUN, target_id=str(run.pk),
                                 revoked_at__isnull=True).update(revoked_at=timezone.now())
        pk, name = run.pk, run.display_name
        run.delete()
        activity.record(workspace=run.workspace, actor=user, verb="deleted", target_type="run", target_id=pk,
                        target_label=name)
        transaction.on_commit(lambda: checkpoints.remove_all(pk))


def runs_delete(*, membership, run_ids, user) -> tuple[list[str], list[str]]:
    """Delete each of these runs of the membership's workspace that may be deleted; return the
    names deleted and, for the others, why not (unknown ids are skipped: another tab may have
    deleted them)."""
    deleted, refused = [], []
    for run in Run.objects.filter(workspace=membership.workspace, pk__in=list(run_ids)).order_by("pk"):
        try:
            run_delete(run=run, user=user, membership=membership)
        except (RunInUse, PermissionDenied) as error:
            refused.append(str(error))
        else:
            deleted.append(run.display_name)
    return deleted, refused


def run_set_priority(*, run: Run, priority: int) -> Run:
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 9:
        raise InvalidInput("priority: must be an integer from 0 (first) to 9 (last)", "priority")
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.priority == priority:
            return run
        run.priority = priority
        run.save(update_fields=["priority"])
        if run.status == RunStatus.QUEUED:
            # A message already in the broker keeps its old priority; a new one with the new
            # priority overtakes it, and whichever arrives second finds the run taken and exits.
            transaction.on_commit(lambda: dispatch(run.pk))
    return run


def _clean_tags(tags) -> list[str]:
    if isinstance(tags, str):
        tags = tags.split(",")
    if not isinstance(tags, (list, tuple)):
        raise InvalidInput("tags: must be a list of words", "tags")
    clean = []
    for tag in tags:
        _check_text(str(tag), "tags")
        tag = str(tag).strip()[:40]
        if tag and tag not in clean:
            clean.append(tag)
    return clean[:20]


def run_update(*, run: Run, notes: str | None = None, starred: bool | None = None, tags=None,
               name: str | None = None) -> Run:
    fields = []
    if notes is not None:
        if len(notes) > 20000:
            raise InvalidInput("notes: at most 20000 characters", "notes")
        _check_text(notes, "notes")
        run.notes, fields = notes, fields + ["notes"]
    if starred is not None:
        run.starred, fields = bool(starred), fields + ["starred"]
    if tags is not None:
        run.tags, fields = _clean_tags(tags), fields + ["tags"]
    if name is not None:
        if len(name) > 120:
            raise InvalidInput("name: at most 120 characters", "name")
        _check_text(name, "name")
        run.name, fields = name.strip(), fields + ["name"]
    if fields:
        run.save(update_fields=fields)
    return run


# ----------------------------------------------------------------------------- sweeps


def apply_params(spec: dict, params: dict) -> dict:
    """A copy of ``spec`` with the sweep's hyper-parameters set."""
    spec = copy.deepcopy(spec)
    for key, value in sorted(params.items(), key=lambda item: item[0] != "optimizer"):  # the optimizer first
        if key == "learning_rate":
            optimizer = spec.setdefault("compile", {}).setdefault("optimizer", {"type": "adam"})
            if isinstance(optimizer, str):
                optimizer = spec["compile"]["optimizer"] = {"type": optimizer}
            optimizer["learning_rate"] = value
        elif key == "optimizer":  # its own defaults but the learning rate (another's betas would not fit it)
            current = spec.setdefault("compile", {}).get("optimizer") or "adam"
            rate = current.get("learning_rate") if isinstance(current, dict) else None
            spec["compile"]["optimizer"] = {"type": value, **({} if rate is None else {"learning_rate": rate})}
        elif key in ("batch_size", "epochs"):
            spec.setdefault("fit", {})[key] = value
        elif key == "class_weight":  # "balanced", or "none": every class weighs the same
            spec.setdefault("fit", {})["class_weight"] = None if value == "none" else value
        elif key == "units":  # every hidden Dense and recurrent layer; the output layer keeps its size
            dense = [layer for layer in spec.get("layers", []) if layer.get("type") == "Dense"]
            for layer in dense[:-1]:
                layer["units"] = value
            for layer in spec.get("layers", []):
                if layer.get("type") in RECURRENT_LAYERS:
                    layer["units"] = value
                elif layer.get("type") == "Bidirectional" and isinstance(layer.get("layer"), dict):
                    layer["layer"]["units"] = value
        elif key == "filters":  # every convolution
            for layer in spec.get("layers", []):
                if layer.get("type") in ("Conv1D", "Conv2D"):
                    layer["filters"] = value
        elif key == "window":  # the series' window, which is also the model's number of input steps
            shape = spec.get("input_shape")
            if isinstance(shape, list) and shape:
                shape[0] = value
        elif key == "dropout":  # every Dropout layer's rate and every Transformer block's dropout
            for layer in spec.get("layers", []):
                if layer.get("type") == "Dropout":
                    layer["rate"] = value
                elif layer.get("type") == "TransformerEncoder":
                    layer["dropout"] = value
    return spec


def apply_data_params(config: dict | None, params: dict) -> dict:
    """A copy of a sweep's data config with the point's data hyper-parameters (window, forecast, fold) set."""
    config = dict(config or {})
    config.update({key: value for key, value in params.items() if key in DATA_PARAMETERS})
    return config


INTEGER_PARAMETERS = ("batch_size", "epochs", "units", "filters", "window", "fold")


def _check_range(key: str, values: dict) -> dict:
    """A random search's range for one hyper-parameter: {"low", "high", "log"} checked and filled."""
    unknown = sorted(set(values) - {"low", "high", "log"})
    if unknown:
        raise InvalidInput(f"space.{key}.{unknown[0]}: unknown key (expected: low, high, log)", f"space.{key}")
    low, high = values.get("low"), values.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)) \
            or not low < high:
        raise InvalidInput(f"space.{key}: a range needs numbers low < high, got {low!r} and {high!r}", f"space.{key}")
    log = values.get("log", key == "learning_rate")
    if not isinstance(log, bool):
        raise InvalidInput(f"space.{key}.log: must be true or false", f"space.{key}")
    if log and low <= 0:
        raise InvalidInput(f"space.{key}: a log-uniform range needs low > 0, got {low!r}", f"space.{key}")
    if key in INTEGER_PARAMETERS and (low != int(low) or high != int(high)):
        raise InvalidInput(f"space.{key}: {key} takes whole numbers, so its range does too", f"space.{key}")
    return {"low": low, "high": high, "log": log}


def _draw(key: str, values, rng: random.Random):
    """One value of a hyper-parameter: from its list, or from its range (log-uniform where asked; whole
    numbers for the integer parameters; other values to three significant digits, to read in run names)."""
    if isinstance(values, list):
        return rng.choice(values)
    low, high = values["low"], values["high"]
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if values["log"] else rng.uniform(low, high)
    if key in INTEGER_PARAMETERS:
        return min(int(high), max(int(low), round(value)))
    return float(f"{value:.3g}")


def check_space(method: str, space) -> dict:
    """The search space checked: known hyper-parameters, each a list of numbers (or of names, for
    those in CHOICES) or, for a random search, a range, returned filled (see ``_check_range``)."""
    if method not in ("grid", "random"):
        raise InvalidInput("method: must be grid or random", "method")
    if not isinstance(space, dict) or not space:
        raise InvalidInput("space: choose at least one hyper-parameter with values", "space")
    checked = {}
    for key, values in space.items():
        if key not in SWEEP_PARAMETERS:
            raise InvalidInput(f"space.{key}: unknown hyper-parameter; choose from {', '.join(SWEEP_PARAMETERS)}",
                               f"space.{key}")
        if key in CHOICES:
            if not isinstance(values, list) or not values or not all(
                    isinstance(v, str) and v in CHOICES[key] for v in values):
                raise InvalidInput(f"space.{key}: must be a non-empty list of names from {', '.join(CHOICES[key])}",
                                   f"space.{key}")
        elif isinstance(values, dict):
            if method != "random":
                raise InvalidInput(f"space.{key}: a range needs random search; a grid takes a list of values",
                                   f"space.{key}")
            values = _check_range(key, values)
        elif not isinstance(values, list) or not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise InvalidInput(f"space.{key}: must be a non-empty list of numbers"
                               + (" or a range {\"low\": …, \"high\": …}" if method == "random" else ""),
                               f"space.{key}")
        checked[key] = values
    return checked


def sweep_points(method: str, space: dict, count: int, seed: int = 0) -> list[dict]:
    """The sweep's points: every combination of the listed values (grid), or ``count`` of them drawn
    without repeats (random); a random search may also give ranges ({"low", "high", "log"}), and each
    point then draws every hyper-parameter afresh."""
    return _points(method, check_space(method, space), count, seed)


def _points(method: str, space: dict, count: int, seed: int) -> list[dict]:
    """``sweep_points`` over a space ``check_space`` has checked."""
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_SWEEP_RUNS:
        raise InvalidInput(f"count: must be an integer from 1 to {MAX_SWEEP_RUNS}", "count")
    keys = sorted(space)
    rng = random.Random(seed)
    ranges = {key: values for key, values in space.items() if isinstance(values, dict)}
    if ranges:
        return _draws(space, ranges, count, rng)
    sizes = [len(space[key]) for key in keys]
    total = math.prod(sizes)  # counted, never built: a few long lists multiply past any memory
    if method == "grid" and total > MAX_SWEEP_RUNS:
        raise InvalidInput(f"space: {total} runs is more than {MAX_SWEEP_RUNS}; use random search with a count",
                           "space")
    chosen = rng.sample(range(total), count) if method == "random" and count < total else range(total)
    return [_combination(space, keys, sizes, index) for index in chosen]


def _draws(space: dict, ranges: dict, count: int, rng: random.Random) -> list[dict]:
    """``count`` points drawn one after another, each hyper-parameter from its range or its list."""
    return [{key: _draw(key, ranges.get(key, space[key]), rng) for key in sorted(space)} for _ in range(count)]


def _combination(space: dict, keys: list, sizes: list, index: int) -> dict:
    """The index-th combination of the listed values, the last key varying fastest."""
    point = {}
    for key, size in zip(reversed(keys), reversed(sizes), strict=True):
        index, position = divmod(index, size)
        point[key] = space[key][position]
    return {key: point[key] for key in keys}


def _untried_points(space: dict, tried: list[dict], count: int, seed: int) -> list[dict]:
    """``count`` points of the space that are not among ``tried``: the next draws of the sweep's own
    stream where it has ranges, else a sample of the combinations not tried yet."""
    def point_key(point: dict) -> tuple:
        return tuple(sorted(point.items()))

    seen = {point_key(point) for point in tried}
    fresh = []

    def take(candidates) -> list[dict]:  # the first ``count`` candidates not seen, each once
        for point in candidates:
            if len(fresh) == count:
                break
            if point_key(point) not in seen:
                seen.add(point_key(point))
                fresh.append(point)
        return fresh

    ranges = {key: values for key, values in space.items() if isinstance(values, dict)}  # stored checked
    if ranges:
        # The sweep's first draws are the points it has; going on with the same stream gives new ones.
        return take(_draws(space, ranges, len(tried) + 2 * count, random.Random(seed))[len(tried):])
    keys = sorted(space)
    sizes = [len(space[key]) for key in keys]
    total = math.prod(sizes)
    rng = random.Random(f"{seed}:{len(tried)}")
    if total <= 100_000:
        untried = [point for point in (_combination(space, keys, sizes, index) for index in range(total))
                   if point_key(point) not in seen]
        return rng.sample(untried, min(count, len(untried)))
    # A huge space: a draw is almost never one tried before.
    return take(_combination(space, keys, sizes, rng.randrange(total)) for _ in itertools.count())


def check_stopping(stopping, runs: int) -> dict:
    """A sweep's early stopping, normalised: {} (none) or a rule of pruning.RULES with each of its
    settings (see pruning.py), comparing each run with at most the ``runs - 1`` others there are."""
    if stopping in (None, {}, "", "none"):
        return {}
    if isinstance(stopping, str):
        stopping = {"rule": stopping}
    if not isinstance(stopping, dict):
        names = ", ".join(f'"{name}"' for name in pruning.RULES)
        raise InvalidInput(f'stopping: must be "none", {names} or an object with a "rule"', "stopping")
    rule = pruning.RULES.get(stopping.get("rule")) if isinstance(stopping.get("rule"), str) else None
    if rule is None:
        raise InvalidInput(f"stopping.rule: must be one of {', '.join(pruning.RULES)}, got {stopping.get('rule')!r}",
                           "stopping.rule")
    unknown = sorted(set(stopping) - {"rule", *rule.defaults})
    if unknown:
        raise InvalidInput(f"stopping.{unknown[0]}: unknown key for the {rule.rule} rule (expected: rule, "
                           f"{', '.join(rule.defaults)})", f"stopping.{unknown[0]}")
    if runs < 2:
        raise InvalidInput("stopping: a sweep of one run has no other run to compare it with", "stopping")
    checked = {"rule": rule.rule}
    defaults = dict(rule.defaults, min_runs=min(rule.defaults["min_runs"], runs - 1))
    for key, default in defaults.items():
        value, lowest = stopping.get(key, default), pruning.LOWEST.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or not lowest <= value <= 10000:
            raise InvalidInput(f"stopping.{key}: must be an integer from {lowest} to 10000, got {value!r}",
                               f"stopping.{key}")
        checked[key] = value
    if checked["min_runs"] > runs - 1:
        raise InvalidInput(f"stopping.min_runs: a sweep of {runs} runs has only {runs - 1} others to compare each "
                           f"run with, not {checked['min_runs']}", "stopping.min_runs")
    return checked


@transaction.atomic
def sweep_create(*, workspace, user, dataset_version, spec, data_config=None, method: str = "grid",
                 space: dict, count: int = 10, name: str = "", device: str = "auto", stopping=None,
                 seed: int | None = None) -> Sweep:
    _check_version(workspace, dataset_version)
    _check_text(name, "name")
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    elif not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise InvalidInput("seed: must be a non-negative integer", "seed")
    space = check_space(method, space)
    points = _points(method, space, count, seed)
    stopping = check_stopping(stopping, len(points))
    config = preparation.normalise_config(data_config)
    _check_columns(dataset_version, config)
    series_keys = sorted(set(space) & set(SERIES_PARAMETERS))
    if series_keys and dataset_version.dataset.kind != "series":
        raise InvalidInput(f"space.{series_keys[0]}: only a series has a window and a forecast to sweep over",
                           f"space.{series_keys[0]}")
    if "fold" in space:
        if config["folds"] is None:
            raise InvalidInput("space.fold: set data_config.folds (how many folds) to cross-validate", "space.fold")
        if stopping:
            raise InvalidInput("stopping: a cross-validation trains every fold to the end, so that their scores "
                               "compare; leave stopping off", "stopping")
    base = specs.validate_spec(spec)
    if "learning_rate" in space and (base.get("fit") or {}).get("find_learning_rate"):
        raise InvalidInput("space.learning_rate: the spec finds its learning rate by a range test "
                           "(fit.find_learning_rate); sweep over the rate or find it, not both", "space.learning_rate")
    _check_points(base, config, points)
    sweep = Sweep.objects.create(workspace=workspace, dataset_version=dataset_version, created_by=user,
                                 name=name or _sweep_name(space, config), method=method, space=space,
                                 base_spec=base, data_config=config, stopping=stopping, seed=seed)
    _sweep_runs(sweep, user, points, first=1, device=device)
    return sweep


def _sweep_name(space: dict, config: dict) -> str:
    others = ", ".join(sorted(set(space) - {"fold"}))
    if "fold" in space:
        return f"{config['folds']}-fold cross-validation" + (f" over {others}" if others else "")
    return f"Sweep over {others}"


def _check_points(base_spec: dict, data_config: dict, points: list[dict]) -> None:
    """Refuse the whole set of points if one is invalid: its data config (a bad window is named as
    ``space.window``) or its spec."""
    for point in points:
        try:
            preparation.normalise_config(apply_data_params(data_config, point))
        except preparation.DataError as error:
            key = error.field.removeprefix("data_config.")
            if key not in point:
                raise
            raise InvalidInput(f"space.{key}: {error}".replace(f"data_config.{key}: ", ""), f"space.{key}") from None
        specs.validate_spec(apply_params(base_spec, point))


def _point_label(point: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(point.items()))


def _sweep_runs(sweep: Sweep, user, points: list[dict], *, first: int, device: str) -> list[Run]:
    runs = []
    for i, point in enumerate(points, start=first):
        label = _point_label(point)
        runs.append(run_create(workspace=sweep.workspace, user=user, dataset_version=sweep.dataset_version,
                               spec=apply_params(sweep.base_spec, point),
                               data_config=apply_data_params(sweep.data_config, point),
                               name=f"{sweep.name} #{i} ({label})"[:120], device=device, sweep=sweep,
                               sweep_params=point))
    return runs


@transaction.atomic
def sweep_extend(*, sweep: Sweep, user, count) -> list[Run]:
    """``count`` more runs of a random search, at points it has not tried (see ``_untried_points``)."""
    if sweep.method != "random":
        raise InvalidInput("count: a grid sweep already has a run for every point of its space", "count")
    tried = list(sweep.runs.order_by("pk"))
    room = MAX_SWEEP_RUNS - len(tried)
    if room <= 0:
        raise InvalidInput(f"count: this sweep has its {MAX_SWEEP_RUNS} runs, the most a sweep may have", "count")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= room:
        raise InvalidInput(f"count: must be an integer from 1 to {room} (a sweep has at most {MAX_SWEEP_RUNS} runs, "
                           f"this one {len(tried)})", "count")
    _check_version(sweep.workspace, sweep.dataset_version)
    points = _untried_points(sweep.space, [run.sweep_params for run in tried], count, sweep.seed or 0)
    if len(points) < count:
        raise InvalidInput(f"count: only {len(points)} point{'s' if len(points) != 1 else ''} of this sweep's space "
                           f"{'are' if len(points) != 1 else 'is'} still untried", "count")
    _check_points(sweep.base_spec, sweep.data_config, points)
    device = tried[0].device_preference if tried else "auto"
    return _sweep_runs(sweep, user, points, first=len(tried) + 1, device=device)


def _epochs_trained(run: Run) -> int:
    """The epochs whose weights a fold's model kept: the best epoch's where early stopping put them back."""
    stopped = (run.results or {}).get("stopped_early") or {}
    if stopped.get("restored") and stopped.get("best_epoch"):
        return int(stopped["best_epoch"])
    return int(stopped.get("epoch") or run.epochs_done)


def refit_refusal(sweep: Sweep, folds: list[Run]) -> str:
    """Why no final model can be trained at the point whose fold runs these are ("" when it can)."""
    total = (sweep.data_config or {}).get("folds") or len(folds)
    done = sum(1 for run in folds if run.status == RunStatus.SUCCEEDED and (run.results or {}).get("test"))
    if done < total:
        return (f"{done} of its {total} folds have succeeded; its final model trains once every fold has, "
                "so that the estimate it carries is whole")
    return ""


@transaction.atomic
def sweep_refit(*, sweep: Sweep, user, params) -> Run:
    """A cross-validation's final model (scikit-learn's ``refit``): a run at one of its points (``params``: the
    swept values but the fold) that trains on every row, with no test or validation part, for as many epochs as
    its folds kept on average. The folds' test scores (mean ± standard deviation) are its estimate, carried in
    its results; an early stopping or plateau rule that watches the validation part cannot, and is left out."""
    if "fold" not in (sweep.space or {}):
        raise InvalidInput("params: only a cross-validation trains a final model on every row; a sweep's best run "
                           "is its model", "params")
    if not isinstance(params, dict):
        raise InvalidInput("params: the swept values of one point, other than the fold, as an object", "params")
    folds = [run for run in sweep.runs.order_by("pk") if selectors.point_of(run) == params]
    if not folds:
        raise InvalidInput("params: no point of this cross-validation has these values"
                           + (f" ({_point_label(params)})" if params else ""),
                           "params")
    if refused := refit_refusal(sweep, folds):
        raise InvalidInput(f"params: {refused}", "params")
    if any(selectors.point_of(run) == params for run in sweep.refits.filter(status__in=ACTIVE_STATUSES)):
        raise InvalidInput("params: this point's final model is training already", "params")
    found = selectors.cross_validation(sweep, folds)
    group = next(g for g in found["groups"] if g["params"] == params)
    spec = apply_params(sweep.base_spec, params)
    fit = spec.setdefault("fit", {})
    fit["epochs"] = max(1, round(sum(_epochs_trained(run) for run in folds) / len(folds)))
    left_out = [key for key in ("early_stopping", "reduce_lr_on_plateau")
                if fit.get(key) and str(fit[key].get("monitor", "val_loss")).startswith("val_")]
    for key in left_out:
        del fit[key]
    config = dict(apply_data_params(sweep.data_config, params), folds=None, fold=0, test_fraction=0.0,
                  validation_fraction=0.0)
    estimate = {"sweep": sweep.pk, "sweep_name": sweep.name, "folds": len(folds), "params": params,
                "split_seed": config.get("split_seed"), "epochs": fit["epochs"], "left_out": left_out,
                "scores": {name: {"mean": score["mean"], "std": score["std"]}
                           for name, score in zip(found["metrics"], group["scores"]) if score}}
    label = _point_label(params)
    return run_create(workspace=sweep.workspace, user=user, dataset_version=sweep.dataset_version, spec=spec,
                      data_config=config, name=f"{sweep.name}: final model{f' ({label})' if label else ''}"[:120],
                      device=folds[0].device_preference, tags=folds[0].tags, sweep_params=params, refit_of=sweep,
                      results={"cross_validation": estimate})


def sweep_cancel(*, sweep: Sweep, user) -> int:
    """Cancel every run of the sweep still queued or running; return how many."""
    active = list(sweep.runs.filter(status__in=ACTIVE_STATUSES, cancel_requested=False).order_by("pk"))
    for run in active:
        run_cancel(run=run, user=user)
    return len(active)


def sweep_delete(*, sweep: Sweep, user, membership) -> int:
    """Delete the sweep and all its runs, or nothing: refused (``RunInUse``, ``PermissionDenied``)
    unless ``may_delete``, and as ``run_delete`` refuses any one of its runs. Returns how
    many runs went."""
    if not may_delete(sweep, membership):
        raise PermissionDenied("only the person who started the sweep or a workspace owner may delete it")
    with transaction.atomic():
        runs = list(sweep.runs.order_by("pk"))
        for run in runs:
            run_delete(run=run, user=user, membership=membership)
        activity.record(workspace=sweep.workspace, actor=user, verb="deleted", target_type="sweep",
                        target_id=sweep.pk, target_label=sweep.name)
        sweep.delete()
    return len(runs)


def bump_requeues(run_id: int) -> None:
    Run.objects.filter(pk=run_id).update(requeues=F("requeues") + 1)
