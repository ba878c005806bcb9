"""Runs over the REST API: create, read, metrics, cancel, continue, fork, predict, artifacts, sweeps,
and the model registry.

The same services and access helpers as the pages; errors are JSON naming the field.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from django.http import Http404, JsonResponse
from django.utils.text import slugify
from ninja import Body, Router, Schema, Status

from webapp.accounts.access import get_workspace_for_user
from webapp.experiments import curves, exports, monitoring, prediction, registry, selectors, services, watchdog
from webapp.experiments.preparation import DataError
from webapp.experiments.specs import SpecInvalid

router = Router(tags=["experiments"])

INPUT_ERRORS = (services.InvalidInput, SpecInvalid, DataError)


def bad_request(error) -> JsonResponse:
    field = getattr(error, "field", "") or None
    errors = getattr(error, "errors", None) or [{"field": field, "message": str(error)}]
    return JsonResponse({"detail": str(error), "field": field, "errors": errors}, status=400)


def answers_input_errors(view):
    """Turn the services' input errors into 400 answers naming the field."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except INPUT_ERRORS as error:
            return bad_request(error)

    return wrapper


def _version_in(workspace, version_id):
    from webapp.datasets.models import DatasetVersion

    return DatasetVersion.objects.select_related("dataset").filter(pk=version_id, dataset__workspace=workspace).first()


def serialize_run(run, *, full: bool = True) -> dict:
    data = selectors.run_state(run)
    data.update({
        "workspace": run.workspace.slug, "dataset_version": run.dataset_version_id, "seed": run.seed,
        "device_preference": run.device_preference, "priority": run.priority, "tags": run.tags,
        "starred": run.starred, "parent": run.parent_id, "from_epoch": run.from_epoch, "sweep": run.sweep_id,
        "refit_of": run.refit_of_id, "url": run.get_absolute_url(), "decision_threshold": run.decision_threshold,
    })
    if full:
        data.update({"spec": run.spec, "data_config": run.data_config, "results": run.results, "notes": run.notes,
                     "code_version": run.code_version, "library_versions": run.library_versions,
                     "traceback_summary": run.traceback_summary})
    return data


def serialize_sweep(sweep, *, with_runs: bool = True) -> dict:
    data = {"id": sweep.pk, "name": sweep.name, "workspace": sweep.workspace.slug,
            "dataset_version": sweep.dataset_version_id, "method": sweep.method, "space": sweep.space,
            "seed": sweep.seed, "stopping": sweep.stopping, "created_at": sweep.created_at,
            "url": sweep.get_absolute_url()}
    if with_runs:
        runs = list(sweep.runs.select_related("workspace").order_by("pk"))
        best = selectors.sweep_best(runs)
        data.update(best_run=best.pk if best else None, runs=[
            dict(serialize_run(run, full=False), params=run.sweep_params,
                 stopped_early=(run.results or {}).get("stopped_early")) for run in runs])
        if "fold" in sweep.space:  # a cross-validation's final models, newest first
            data["final_models"] = [dict(serialize_run(run, full=False), params=run.sweep_params)
                                    for run in sweep.refits.select_related("workspace").order_by("-pk")]
    return data


class RunIn(Schema):
    dataset_version: int
    spec: dict
    data_config: dict = {}
    name: str = ""
    device: str = "auto"
    priority: int = 5
    tags: list[str] = []


class ContinueIn(Schema):
    epochs: int


class ForkIn(Schema):
    from_epoch: int
    spec: dict | None = None
    name: str = ""


class ForecastIn(Schema):
    steps: int


class RunUpdateIn(Schema):
    notes: str | None = None
    starred: bool | None = None
    tags: list[str] | None = None
    name: str | None = None
    priority: int | None = None


class SummaryIn(Schema):
    spec: dict
    dataset_version: int | None = None
    data_config: dict = {}


class SweepIn(Schema):
    dataset_version: int
    spec: dict
    data_config: dict = {}
    method: str = "grid"
    space: dict
    count: int = 10
    name: str = ""
    device: str = "auto"
    stopping: Any = None  # "median", "asha" or e.g. {"rule": "asha", "grace_epochs": 3, "reduction_factor": 3}; see pruning.py
    seed: int | None = None  # a random search's draw (chosen and recorded when left out)


@router.post("/workspaces/{ws}/runs", response={201: dict})
@answers_input_errors
def create_run(request, ws: str, payload: RunIn):
    """Queue a training run: a spec, a data config and a ready data set version of the workspace."""
    workspace, _ = get_workspace_for_user(request.user, ws, write=True)
    version = _version_in(workspace, payload.dataset_version)
    if version is None:
        raise services.InvalidInput("dataset_version: no such data set version in this workspace", "dataset_version")
    run = services.run_create(workspace=workspace, user=request.user, dataset_version=version, spec=payload.spec,
                              data_config=payload.data_config, name=payload.name, device=payload.device,
                              priority=payload.priority, tags=payload.tags)
    return Status(201, serialize_run(run))


@router.get("/workspaces/{ws}/runs")
def list_runs(request, ws: str, status: str = "", dataset: int | None = None, tag: str = "", limit: int = 100):
    workspace, _ = get_workspace_for_user(request.user, ws)
    runs = selectors.runs_for_workspace(workspace, dataset=dataset, status=status or None, tag=tag or None)
    return {"runs": [serialize_run(run, full=False) for run in runs[: max(1, min(limit, 1000))]]}


@router.get("/runs/{run_id}")
def get_run(request, run_id: int):
    run, _ = selectors.get_run_for_user(request.user, run_id)
    watchdog.check_runs_now_and_then()
    return serialize_run(run)


@router.get("/runs/{run_id}/metrics")
def get_metrics(request, run_id: int, since: int = 0):
    """Per-epoch values as columns (``epoch``, ``loss``, ``val_loss``, …), downsampled past 2,000 epochs."""
    run, _ = selectors.get_run_for_user(request.user, run_id)
    watchdog.check_runs_now_and_then()
    return {"run": selectors.run_state(run), **selectors.metric_series(run, since=since)}


@router.post("/runs/{run_id}/cancel")
def cancel_run(request, run_id: int):
    run, _ = selectors.get_run_for_user(request.user, run_id, write=True)
    return serialize_run(services.run_cancel(run=run, user=request.user), full=False)


@router.post("/runs/{run_id}/rank-columns", response={202: dict})
@answers_input_errors
def rank_run_columns(request, run_id: int):
    """Ask a worker to rank a finished run's columns (a run from before they were ranked, or whose
    ranking failed); the run's ``results.importance`` holds ``pending`` until it has them."""
    run, _ = selectors.get_run_for_user(request.user, run_id, write=True)
    run = services.run_rank_columns(run=run, user=request.user)
    return Status(202, {"run": run.pk, "importance": run.results["importance"]})


class PredictionJobIn(Schema):
    dataset_version: Any = None


def serialize_job(job) -> dict:
    return {"id": job.pk, "run": job.run_id, "dataset_version": job.dataset_version_id, "status": job.status,
            "rows": job.rows, "total": job.total, "reason": job.reason, "scores": job.scores or None,
            "created_at": job.created_at,
            "started_at": job.started_at, "finished_at": job.finished_at,
            "download": f"/api/v1/prediction-jobs/{job.pk}/download" if job.status == "succeeded" else None}


@router.post("/runs/{run_id}/prediction-jobs", response={202: dict})
@answers_input_errors
def create_prediction_job(request, run_id: int, payload: PredictionJobIn):
    """Predict every row (or image) of a data set version of the run's workspace on a worker, into a CSV
    (``GET /prediction-jobs/{id}`` says how far it is; its ``download`` link once it succeeded)."""
    run, _ = selectors.get_run_for_user(request.user, run_id, write=True)
    job = services.prediction_job_create(run=run, dataset_version=_job_version(run.workspace, payload), user=request.user)
    return Status(202, serialize_job(job))


def _job_version(workspace, payload: PredictionJobIn):
    """The workspace's data set version a job payload names by its id, or None (refused by the service)."""
    chosen = payload.dataset_version
    return _version_in(workspace, chosen) if isinstance(chosen, int) and not isinstance(chosen, bool) else None


def _job_for(request, job_id: int):
    from webapp.experiments.models import PredictionJob

    job = PredictionJob.objects.filter(pk=job_id).first()
    if job is None:
        raise Http404("Not found")
    selectors.get_run_for_user(request.user, job.run_id)  # the run's workspace decides who may read it
    return job


@router.get("/prediction-jobs/{job_id}")
def get_prediction_job(request, job_id: int):
    return serialize_job(_job_for(request, job_id))


@router.delete("/prediction-jobs/{job_id}", response={204: None})
@answers_input_errors
def delete_prediction_job(request, job_id: int):
    """Delete a prediction job that ended, and its file (its starter, or an owner of the workspace)."""
    job = _job_for(request, job_id)
    _, membership = selectors.get_run_for_user(request.user, job.run_id, write=True)
    services.prediction_job_delete(job=job, membership=membership)
    return Status(204, None)


@router.get("/prediction-jobs/{job_id}/download")
def download_prediction_job(request, job_id: int):
    return exports.prediction_job_response(_job_for(request, job_id))


class ThresholdIn(Schema):
    threshold: Any = "missing"  # a number from 0 to 1, or null for the more likely class


@router.post("/runs/{run_id}/threshold")
@answers_input_errors
def set_run_threshold(request, run_id: int, payload: ThresholdIn):
    """Set the probability a binary classifier's predictions are cut at (``null``: the more likely class), and
    what that cut does on its test split."""
    run, _ = selectors.get_run_for_user(request.user, run_id, write=True)
    run = services.run_set_threshold(run=run, user=request.user, threshold=payload.threshold)
    roc = curves.binary_roc(run.results)
    at = curves.operating_point(roc, 0.5 if run.decision_threshold is None else run.decision_threshold)
    return {"run": run.pk, "decision_threshold": run.decision_threshold, "test": at}


@router.post("/runs/{run_id}/reanalyse", response={202: dict})
@answers_input_errors
def reanalyse_run(request, run_id: int):
    """Ask a worker for the analyses a finished run scored before Cupola made them lacks (calibration, ROC
    curves, saliency maps, a table's input profile); ``results.reanalysis`` holds ``pending`` until then."""
    run, _ = selectors.get_run_for_user(request.user, run_id, write=True)
    missing = services.missing_analyses(run)
    run = services.run_reanalyse(run=run, user=request.user)
    return Status(202, {"run": run.pk, "missing": missing, "reanalysis": run.results["reanalysis"]})


@router.delete("/runs/{run_id}", response={204: None, 409: dict})
def delete_run(request, run_id: int):
    """Delete a finished run and its files (409 while it, or a run starting from it, is queued or running)."""
    run, membership = selectors.get_run_for_user(request.user, run_id, write=True)
    return _deletion(services.run_delete, run=run, user=request.user, membership=membership)


def _deletion(delete, **kwargs):
    """204 once ``delete(**kwargs)`` is done; 409 with the reason where a run in use keeps it."""
    try:
        delete(**kwargs)
    except services.RunInUse as error:
        return Status(409, {"detail": str(error), "field": error.field})
    return Status(204, None)


@router.patch("/runs/{run_id}")
@answers_input_errors
def update_run(request, run_id: int, payload: RunUpdateIn):
    run, _ = selectors.get_run_for_user(request.user, run_id, write=True)
    if payload.priority is not None:
        run = services.run_set_priority(run=run, priority=payload.priority)
    run = services.run_update(run=run, notes=payload.notes, starred=payload.starred, tags=payload.tags,
                              name=payload.name)
    return serialize_run(run)


@router.post("/runs/{run_id}/continue", response={201: dict})
@answers_input_errors
def continue_run(request, run_id: int, payload: ContinueIn):
    run, _ = selectors.get_run_for_user(request.user, run_id, write=True)
    return Status(201, serialize_run(services.run_continue(run=run, user=request.user, epochs=payload.epochs)))


@router.post("/runs/{run_id}/fork", response={201: dict})
@answers_input_errors
def fork_run(request, run_id: int, payload: ForkIn):
    run, _ = selectors.get_run_for_user(request.user, run_id, write=True)
    child = services.run_fork(run=run, user=request.user, from_epoch=payload.from_epoch, spec=payload.spec,
                              name=payload.name)
    return Status(201, serialize_run(child))


@router.post("/runs/{run_id}/predict")
@answers_input_errors
def predict(request, run_id: int):
    """Upload ``file`` (multipart: a CSV, or images: one or more image files or a zip in the training format), or send JSON
    ``{"rows": [{"column": value, …}, …]}`` for tables; predictions use the run's stored preprocessing."""
    run, _ = selectors.get_run_for_user(request.user, run_id)
    return _predictions(request, run, f"run-{run.pk}")


@router.post("/runs/{run_id}/forecast")
@answers_input_errors
def forecast(request, run_id: int, payload: ForecastIn):
    """A series run's forecast of the ``steps`` steps after the end of its data set, from its last window
    (beyond the model's horizon each step is fed back; a series of one column only)."""
    run, _ = selectors.get_run_for_user(request.user, run_id)
    return _forecast(run, payload.steps)


def _forecast(run, steps: int) -> dict:
    ahead = prediction.forecast_ahead(run, steps)
    return {key: ahead[key] for key in ("columns", "rows", "horizon", "recursive")}


def _predictions(request, run, stem: str):
    return _prediction_answer(request, _predicted(request, run), stem)


def _prediction_answer(request, result: dict, stem: str):
    if request.GET.get("format") == "csv":
        return exports.csv_attachment(result, f"{stem}-predictions.csv")
    answer = {"columns": result["columns"], "rows": result["rows"], "outputs": result["outputs"]}
    if result.get("scores"):  # against the answers the request held (its target column, its images' folders)
        answer["scores"] = result["scores"]
    return answer


def _predicted(request, run) -> dict:
    """A prediction request's result: an uploaded ``file``, or JSON rows."""
    uploads = request.FILES.getlist("file")
    if uploads:
        result = prediction.predict_uploads(run, [(upload.read(), upload.name) for upload in uploads])
    else:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            raise DataError("send a file named `file` or JSON {\"rows\": [...]}", "file") from None
        rows = body.get("rows") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise DataError("rows: a non-empty list of objects, one per row", "rows")
        import pandas as pd

        frame = pd.DataFrame(rows[: prediction.MAX_ROWS])
        buffer = frame.to_csv(index=False).encode()
        result = prediction.predict_file(run, buffer, "rows.csv")
    return result


@router.get("/runs/{run_id}/artifacts/spec")
def artifact_spec(request, run_id: int):
    run, _ = selectors.get_run_for_user(request.user, run_id)
    return exports.spec_response(run)


@router.get("/runs/{run_id}/artifacts/weights")
def artifact_weights(request, run_id: int):
    run, _ = selectors.get_run_for_user(request.user, run_id)
    return exports.weights_response(run)


@router.get("/runs/{run_id}/artifacts/preprocessing")
def artifact_preprocessing(request, run_id: int):
    run, _ = selectors.get_run_for_user(request.user, run_id)
    return exports.preprocessing_response(run)


@router.get("/runs/{run_id}/artifacts/onnx")
def artifact_onnx(request, run_id: int):
    run, _ = selectors.get_run_for_user(request.user, run_id)
    return exports.onnx_response(run)


@router.post("/workspaces/{ws}/specs/summary")
def spec_summary(request, ws: str, payload: SummaryIn = Body(...)):
    """Per-layer output shapes, parameters and FLOPs for a spec (the builder calls this as you type)."""
    workspace, _ = get_workspace_for_user(request.user, ws)
    return exports.summary_answer(workspace, payload.spec, payload.dataset_version, payload.data_config)


@router.post("/workspaces/{ws}/sweeps", response={201: dict})
@answers_input_errors
def create_sweep(request, ws: str, payload: SweepIn):
    workspace, _ = get_workspace_for_user(request.user, ws, write=True)
    version = _version_in(workspace, payload.dataset_version)
    if version is None:
        raise services.InvalidInput("dataset_version: no such data set version in this workspace", "dataset_version")
    sweep = services.sweep_create(workspace=workspace, user=request.user, dataset_version=version, spec=payload.spec,
                                  data_config=payload.data_config, method=payload.method, space=payload.space,
                                  count=payload.count, name=payload.name, device=payload.device,
                                  stopping=payload.stopping, seed=payload.seed)
    return Status(201, {"id": sweep.pk, "name": sweep.name,
                       "runs": list(sweep.runs.values_list("pk", flat=True)),
                       "url": sweep.get_absolute_url()})


@router.get("/workspaces/{ws}/sweeps")
def list_sweeps(request, ws: str, limit: int = 100):
    """The workspace's sweeps, newest first, without their runs."""
    workspace, _ = get_workspace_for_user(request.user, ws)
    sweeps = workspace.sweeps.select_related("workspace").order_by("-created_at", "-id")[: max(1, min(limit, 1000))]
    return {"sweeps": [serialize_sweep(sweep, with_runs=False) for sweep in sweeps]}


@router.get("/sweeps/{sweep_id}")
def get_sweep(request, sweep_id: int):
    """A sweep with its runs (each one's hyper-parameters, state, best metric and whether the rule stopped it)."""
    sweep, _ = selectors.get_sweep_for_user(request.user, sweep_id)
    watchdog.check_runs_now_and_then()
    return serialize_sweep(sweep)


class ExtendIn(Schema):
    count: int


@router.post("/sweeps/{sweep_id}/extend", response={201: dict})
@answers_input_errors
def extend_sweep(request, sweep_id: int, payload: ExtendIn):
    """``count`` more runs of a random search, at points it has not tried."""
    sweep, _ = selectors.get_sweep_for_user(request.user, sweep_id, write=True)
    added = services.sweep_extend(sweep=sweep, user=request.user, count=payload.count)
    return Status(201, dict(serialize_sweep(sweep), added=[run.pk for run in added]))


class RefitIn(Schema):
    params: dict = {}


@router.post("/sweeps/{sweep_id}/refit", response={201: dict})
@answers_input_errors
def refit_sweep(request, sweep_id: int, payload: RefitIn):
    """A cross-validation's final model at one of its points (``params``: the swept values but the fold): trained
    on every row, its results carrying the folds' test scores as its estimate."""
    sweep, _ = selectors.get_sweep_for_user(request.user, sweep_id, write=True)
    run = services.sweep_refit(sweep=sweep, user=request.user, params=payload.params)
    return Status(201, serialize_run(run))


@router.post("/sweeps/{sweep_id}/cancel")
def cancel_sweep(request, sweep_id: int):
    """Cancel every run of the sweep still queued or running."""
    sweep, _ = selectors.get_sweep_for_user(request.user, sweep_id, write=True)
    return {"id": sweep.pk, "cancelled": services.sweep_cancel(sweep=sweep, user=request.user)}


@router.delete("/sweeps/{sweep_id}", response={204: None, 409: dict})
def delete_sweep(request, sweep_id: int):
    """Delete the sweep and its runs (409 while one of them, or a run starting from one, is active)."""
    sweep, membership = selectors.get_sweep_for_user(request.user, sweep_id, write=True)
    return _deletion(services.sweep_delete, sweep=sweep, user=request.user, membership=membership)


# ----------------------------------------------------------------------------- the model registry

def serialize_version(version, production_id) -> dict:
    run = version.run
    return {"number": version.number, "run": run.pk, "run_name": run.display_name, "note": version.note,
            "in_production": version.pk == production_id, "metric": run.best_metric_name or None,
            "value": run.best_metric, "test": (run.results or {}).get("test"),
            "cross_validation": ((run.results or {}).get("cross_validation") or {}).get("scores"),
            "created_by": version.created_by.username if version.created_by else None,
            "created_at": version.created_at}


def serialize_model(model, *, with_versions: bool = True) -> dict:
    production = model.production
    data = {"id": model.pk, "workspace": model.workspace.slug, "name": model.name, "description": model.description,
            "production": None if production is None else {"number": production.number, "run": production.run_id},
            "created_at": model.created_at, "url": model.get_absolute_url(),
            "drift_limits": monitoring.limits_of(model), "drift_state": model.drift_state or None}
    if with_versions:
        versions = model.versions.select_related("run", "created_by").order_by("-number")
        data["versions"] = [serialize_version(version, model.production_id) for version in versions]
    return data


class RegisterIn(Schema):
    model: Any = None  # the model's name: a new one, or one of the workspace's (compared without regard to case)
    note: Any = ""


class ProductionIn(Schema):
    version: Any = None


@router.post("/runs/{run_id}/register", response={201: dict})
@answers_input_errors
def register_run(request, run_id: int, payload: RegisterIn):
    """Add a run that finished with its weights (succeeded, or cancelled after training) as the next version of a
    model (created if new; its first version goes in production)."""
    run, _ = selectors.get_run_for_user(request.user, run_id, write=True)
    version = registry.register(run=run, user=request.user, name=payload.model, note=payload.note)
    return Status(201, serialize_model(version.model))


@router.get("/workspaces/{ws}/models")
def list_models(request, ws: str):
    workspace, _ = get_workspace_for_user(request.user, ws)
    return {"models": [serialize_model(model, with_versions=False) for model in selectors.models_for_workspace(workspace)]}


@router.get("/models/{model_id}")
def get_model(request, model_id: int):
    model, _ = selectors.get_model_for_user(request.user, model_id)
    return serialize_model(model)


class ModelUpdateIn(Schema):
    description: Any = None
    drift_limits: Any = None  # {"psi", "shift", "share", "spread", "min_rows", "days"}: each null (or left out) for the default


@router.patch("/models/{model_id}")
@answers_input_errors
def update_model(request, model_id: int, payload: ModelUpdateIn):
    """What the model is for, and the limits its drift is judged by."""
    model, _ = selectors.get_model_for_user(request.user, model_id, write=True)
    if payload.description is None and payload.drift_limits is None:
        raise services.InvalidInput("description: give a description or drift_limits to change", "description")
    if payload.drift_limits is not None:
        registry.set_drift_limits(model=model, limits=payload.drift_limits, user=request.user)
    if payload.description is not None:
        registry.describe(model=model, description=payload.description, user=request.user)
    return serialize_model(model)


@router.post("/models/{model_id}/production")
@answers_input_errors
def set_production(request, model_id: int, payload: ProductionIn):
    model, _ = selectors.get_model_for_user(request.user, model_id, write=True)
    return serialize_model(registry.set_production(model=model, number=payload.version, user=request.user))


@router.post("/models/{model_id}/predict")
@answers_input_errors
def predict_with_model(request, model_id: int, version: str = ""):
    """As ``/runs/{id}/predict``, with the model's version in production (or ``?version=N``)."""
    model, _ = selectors.get_model_for_user(request.user, model_id)
    chosen = registry.version_for(model, version)
    result = _served(request, model, chosen, "predict", lambda: _predicted(request, chosen.run))
    answer = _prediction_answer(request, result, f"{slugify(model.name) or 'model'}-v{chosen.number}")
    if isinstance(answer, dict):
        answer = {"model": model.name, "version": chosen.number, "run": chosen.run_id, **answer}
    return answer


@router.post("/models/{model_id}/forecast")
@answers_input_errors
def forecast_with_model(request, model_id: int, payload: ForecastIn, version: str = ""):
    """As ``/runs/{id}/forecast``, with the model's version in production (or ``?version=N``)."""
    model, _ = selectors.get_model_for_user(request.user, model_id)
    chosen = registry.version_for(model, version)
    ahead = _served(request, model, chosen, "forecast", lambda: _forecast(chosen.run, payload.steps))
    return {"model": model.name, "version": chosen.number, "run": chosen.run_id, **ahead}


def _served(request, model, chosen, kind: str, answer):
    """``answer()`` for a request to a model by its name, logged (refused, with the reason, or answered) and then
    judged for drift (see monitoring.py)."""
    try:
        result = answer()
    except INPUT_ERRORS as error:
        monitoring.record(chosen, request.user, kind=kind, refused=str(error))
        raise
    monitoring.record(chosen, request.user, kind=kind, result=result)
    monitoring.check_drift(model)
    return result


@router.post("/models/{model_id}/prediction-jobs", response={202: dict})
@answers_input_errors
def create_model_prediction_job(request, model_id: int, payload: PredictionJobIn, version: str = ""):
    """As ``/runs/{id}/prediction-jobs``, with the model's version in production (or ``?version=N``)."""
    model, _ = selectors.get_model_for_user(request.user, model_id, write=True)
    chosen = registry.version_for(model, version)
    job = services.prediction_job_create(run=chosen.run, dataset_version=_job_version(model.workspace, payload),
                                         user=request.user)
    return Status(202, dict(serialize_job(job), model=model.name, version=chosen.number))


@router.get("/models/{model_id}/predictions")
def model_predictions(request, model_id: int, days: int | None = None):
    """What the model served by its name over the last ``days`` days (at most 365; by default its drift limits'
    window, 30 days unless set): rows per day and version,
    the requests it refused and why, and whether the version in production predicts a different mix (classes)
    or level (values) than on its test split."""
    model, _ = selectors.get_model_for_user(request.user, model_id)
    return monitoring.report(model, days=days)


ARTIFACTS = {"spec": exports.spec_response, "weights": exports.weights_response, "onnx": exports.onnx_response,
             "preprocessing": exports.preprocessing_response}


@router.get("/models/{model_id}/artifacts/{what}")
@answers_input_errors
def model_artifact(request, model_id: int, what: str, version: str = ""):
    """The spec, weights or ONNX file of the model's version in production (or ``?version=N``)."""
    model, _ = selectors.get_model_for_user(request.user, model_id)
    if what not in ARTIFACTS:
        raise services.InvalidInput(f"what: one of {', '.join(ARTIFACTS)}", "what")
    return ARTIFACTS[what](registry.version_for(model, version).run)


@router.delete("/models/{model_id}", response={204: None})
def delete_model(request, model_id: int):
    """Delete a model and its versions (its runs stay)."""
    model, membership = selectors.get_model_for_user(request.user, model_id, write=True)
    registry.delete(model=model, user=request.user, membership=membership)
    return Status(204, None)


@router.delete("/models/{model_id}/versions/{number}", response={204: None})
@answers_input_errors
def remove_version(request, model_id: int, number: int):
    """Take a version out of its model (its run stays, and may then be deleted)."""
    model, membership = selectors.get_model_for_user(request.user, model_id, write=True)
    registry.remove_version(version=registry.version_for(model, number), user=request.user, membership=membership)
    return Status(204, None)
