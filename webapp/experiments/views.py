"""Pages for runs: dashboard, run page, new run (the model builder), compare, predict, queue, sweeps."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from webapp.accounts.access import get_workspace_for_user
from webapp.experiments import (
    batch,
    checkpoints,
    curves,
    exports,
    prediction,
    pruning,
    selectors,
    services,
    specs,
    watchdog,
)
from webapp.experiments.api import INPUT_ERRORS
from webapp.experiments.models import ACTIVE_STATUSES, Run, RunStatus, Sweep

MAX_COMPARE = 12


def _in_workspace(get_for_user, request, ws: str, pk: int, write: bool):
    """``get_for_user``'s object and membership, where the object belongs to the URL's workspace (else 404)."""
    obj, membership = get_for_user(request.user, pk, write=write)
    if obj.workspace.slug != ws:
        raise Http404("Not found")
    return obj, membership


def _run_in(request, ws: str, pk: int, *, write: bool = False):
    return _in_workspace(selectors.get_run_for_user, request, ws, pk, write)


def _sweep_in(request, ws: str, pk: int, *, write: bool = False):
    return _in_workspace(selectors.get_sweep_for_user, request, ws, pk, write)


def _count_runs(count: int) -> str:
    return f"{count} run{'s' if count != 1 else ''}"


CANCEL_NOTE = "Queued ones never start, running ones stop after their current batch."


DASHBOARD_PAGE_SIZE = 50


def _datasets(workspace):
    from webapp.datasets.models import Dataset

    return Dataset.objects.filter(workspace=workspace).order_by("name")


# ----------------------------------------------------------------------------- dashboard


@login_required
def dashboard(request, ws):
    workspace, membership = get_workspace_for_user(request.user, ws)
    watchdog.check_runs_now_and_then()
    filters = {"dataset": request.GET.get("dataset") or None, "status": request.GET.get("status") or None,
               "tag": request.GET.get("tag") or None, "starred": request.GET.get("starred") == "1",
               "query": (request.GET.get("q") or "").strip()[:100] or None}
    if filters["dataset"] and not str(filters["dataset"]).isdigit():
        filters["dataset"] = None
    page = Paginator(selectors.runs_for_workspace(workspace, **filters), DASHBOARD_PAGE_SIZE).get_page(request.GET.get("page"))
    active = Run.objects.filter(workspace=workspace, status__in=ACTIVE_STATUSES).count()
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "experiments/dashboard.html", {
        "workspace": workspace, "membership": membership, "section": "dashboard", "runs": page.object_list,
        "page": page, "page_query": query.urlencode(),
        "datasets": _datasets(workspace), "tags": selectors.workspace_tags(workspace), "statuses": RunStatus.choices,
        "filters": filters, "active_count": active, "current_workspace": workspace,
    })


# ----------------------------------------------------------------------------- one run


def _run_context(run, *, can_write: bool, shared: bool = False) -> dict:
    return {
        "run": run, "workspace": run.workspace, "can_write": can_write and not shared,
        "initial": {"state": selectors.run_state(run), **selectors.metric_series(run)},
        "results": run.results or {}, "spec_json": json.dumps(run.spec, indent=2),
        "data_config_json": json.dumps(run.data_config, indent=2),
        "checkpoint_epochs": checkpoints.epochs_saved(run) if not shared else [],
        "has_weights": checkpoints.weights_path(run).exists(), "onnx": exports.onnx_available(),
        "snippet": exports.python_snippet(run), "children": run.children.all()[:20],
        **_ranking(run, can_write and not shared), **_decision(run),
    }


def _decision(run) -> dict:
    """A binary classifier's test split at its decision threshold (0.5 until one is set)."""
    roc = curves.binary_roc(run.results)
    if roc is None:
        return {}
    threshold = 0.5 if run.decision_threshold is None else run.decision_threshold
    return {"operating_point": curves.operating_point(roc, threshold)}


def _ranking(run, can_write: bool) -> dict:
    """Whether the run's column ranking is being worked out, and whether this person may ask for it."""
    return {"importance_pending": services.importance_pending(run),
            "can_rank_columns": can_write and not services.rank_columns_refusal(run),
            "analyses_pending": services.analyses_pending(run),
            "missing_analyses": services.missing_analyses(run) if run.is_finished and (run.results or {}).get("test") else [],
            "can_reanalyse": can_write and not services.reanalysis_refusal(run)}


@login_required
def run_detail(request, ws, pk):
    run, membership = _run_in(request, ws, pk)
    context = _run_context(run, can_write=membership.can_write)
    context.update({"membership": membership, "section": "runs", "current_workspace": run.workspace,
                    "live_url": reverse("run-live", kwargs={"ws": ws, "pk": run.pk}),
                    "model_versions": list(run.model_versions.select_related("model").order_by("model__name")),
                    "can_register": membership.can_write and context["has_weights"] and run.is_finished,
                    "model_names": list(run.workspace.registered_models.values_list("name", flat=True)),
                    "newer_data": selectors.newer_data(run) if run.is_finished else None})
    context["can_delete"] = run.is_finished and services.may_delete(run, membership) and not context["model_versions"]
    return render(request, "experiments/run_detail.html", context)


def render_shared_run(request, run):
    """The run page without write controls, for a read-only share link (called by the share view)."""
    from webapp.accounts import sharing

    context = _run_context(run, can_write=False, shared=True)
    share = getattr(request, "share", None)
    context["live_url"] = f"/s/{share.link.token}/data/metrics/" if share else ""
    return sharing.render_shared(request, "experiments/shared_run.html", context)


def shared_run_metrics(request, run):
    return JsonResponse({"state": selectors.run_state(run), **selectors.metric_series(run)})


@login_required
@require_GET
def run_live(request, ws, pk):
    """What the run page polls every ~2 s: the state and the epochs after ``since``."""
    run, _ = _run_in(request, ws, pk)
    watchdog.check_runs_now_and_then()
    since = request.GET.get("since", "0")
    since = int(since) if since.isdigit() else 0
    # A poll brings what trained in the last seconds: at most LIVE_POINTS of it (a fast run's
    # thousands of epochs thinned like a whole run's), the page thins what it has collected.
    limit = selectors.LIVE_POINTS if since else selectors.MAX_POINTS
    return JsonResponse({"state": selectors.run_state(run), **selectors.metric_series(run, since=since, limit=limit)})


@login_required
@require_POST
def run_cancel(request, ws, pk):
    run, _ = _run_in(request, ws, pk, write=True)
    services.run_cancel(run=run, user=request.user)
    messages.info(request, f"Cancelling {run.display_name}: it stops after the current batch and keeps what it "
                           f"learned.")
    if request.POST.get("next") == "queue":  # the queue page's Cancel stays on the queue
        return redirect(reverse("run-queue", kwargs={"ws": ws}))
    return redirect(run.get_absolute_url())


@login_required
@require_POST
def run_delete(request, ws, pk):
    run, membership = _run_in(request, ws, pk, write=True)
    name = run.display_name
    try:
        services.run_delete(run=run, user=request.user, membership=membership)
    except services.RunInUse as error:
        messages.error(request, str(error))
        return redirect(run.get_absolute_url())
    messages.success(request, f"Deleted {name}, its checkpoints and its share links.")
    return redirect(reverse("workspace-dashboard", kwargs={"ws": ws}))


def _ticked(request, ws):
    """The membership (editors and owners only) and the runs ticked on the dashboard, by id."""
    _, membership = get_workspace_for_user(request.user, ws, write=True)
    return membership, [int(i) for i in request.POST.getlist("runs") if i.strip().isdigit()]


def _runs(names: list[str]) -> str:
    return f"{_count_runs(len(names))}: {', '.join(names)}"


@login_required
@require_POST
def runs_delete(request, ws):
    """The dashboard's "Delete selected": each run that may go goes; the others say why not."""
    membership, ids = _ticked(request, ws)
    deleted, refused = services.runs_delete(membership=membership, run_ids=ids, user=request.user)
    if deleted:
        messages.success(request, f"Deleted {_runs(deleted)}.")
    for reason in refused:
        messages.error(request, reason)
    if not deleted and not refused:
        messages.info(request, "No run was selected.")
    return redirect(reverse("workspace-dashboard", kwargs={"ws": ws}))


@login_required
@require_POST
def runs_cancel(request, ws):
    """The dashboard's "Cancel selected": the ticked runs still queued or running are cancelled."""
    membership, ids = _ticked(request, ws)
    active = Run.objects.filter(workspace=membership.workspace, pk__in=ids, status__in=ACTIVE_STATUSES,
                                cancel_requested=False)
    cancelled = [services.run_cancel(run=run, user=request.user).display_name for run in active.order_by("pk")]
    if cancelled:
        messages.info(request, f"Cancelling {_runs(cancelled)}. {CANCEL_NOTE}")
    else:
        messages.info(request, "None of the selected runs is queued or running.")
    return redirect(reverse("workspace-dashboard", kwargs={"ws": ws}))


@login_required
@require_POST
def run_edit(request, ws, pk):
    """Notes, tags, star, name: the small edits on the run page."""
    run, _ = _run_in(request, ws, pk, write=True)
    fields = {}
    if "starred" in request.POST:
        fields["starred"] = request.POST["starred"] == "1"
    for name in ("notes", "tags", "name"):
        if name in request.POST:
            fields[name] = request.POST[name]
    try:
        services.run_update(run=run, **fields)
    except services.InvalidInput as error:
        messages.error(request, str(error))
    if request.POST.get("next") == "dashboard":
        return redirect(reverse("workspace-dashboard", kwargs={"ws": ws}))
    return redirect(run.get_absolute_url())


@login_required
@require_POST
def run_continue(request, ws, pk):
    run, _ = _run_in(request, ws, pk, write=True)
    try:
        epochs = int(request.POST.get("epochs", ""))
        child = services.run_continue(run=run, user=request.user, epochs=epochs)
    except ValueError as error:
        messages.error(request, str(error) if isinstance(error, INPUT_ERRORS) else "epochs: enter a whole number")
        return redirect(run.get_absolute_url())
    return redirect(child.get_absolute_url())


def _ask_a_worker(request, ws, pk, ask, done: str, anchor: str):
    """A POST that asks a worker for something about a finished run; back to its page, saying how it went."""
    run, _ = _run_in(request, ws, pk, write=True)
    try:
        ask(run=run, user=request.user)
    except INPUT_ERRORS as error:
        messages.error(request, str(error))
    else:
        messages.success(request, done)
    return redirect(run.get_absolute_url() + anchor)


@login_required
@require_POST
def run_rank_columns(request, ws, pk):
    return _ask_a_worker(request, ws, pk, services.run_rank_columns,
                         "A worker is ranking the columns; they show here when it is done.", "#importance")


@login_required
@require_POST
def run_reanalyse(request, ws, pk):
    return _ask_a_worker(request, ws, pk, services.run_reanalyse,
                         "A worker is working out what this run's results lack; they show here when it is done.",
                         "#analyses")


@login_required
@require_POST
def run_threshold(request, ws, pk):
    run, _ = _run_in(request, ws, pk, write=True)
    clear = "clear" in request.POST
    try:
        services.run_set_threshold(run=run, user=request.user, threshold=None if clear else request.POST.get("threshold"))
    except INPUT_ERRORS as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Predictions now go to the more likely class." if clear else
                         f"Predictions now call a row {run.results['roc']['positive']} from a probability of "
                         f"{run.decision_threshold:g}.")
    return redirect(run.get_absolute_url() + "#curves")


@login_required
@require_POST
def run_fork(request, ws, pk):
    run, _ = _run_in(request, ws, pk, write=True)
    try:
        from_epoch = int(request.POST.get("from_epoch", ""))
        spec = json.loads(request.POST["spec"]) if request.POST.get("spec") else None
        child = services.run_fork(run=run, user=request.user, from_epoch=from_epoch, spec=spec)
    except ValueError as error:
        messages.error(request, str(error) if isinstance(error, INPUT_ERRORS) else "from_epoch: enter a whole number")
        return redirect(run.get_absolute_url())
    return redirect(child.get_absolute_url())


@login_required
def run_download(request, ws, pk, what):
    run, _ = _run_in(request, ws, pk)
    if what == "spec":
        return exports.spec_response(run)
    if what == "weights":
        return exports.weights_response(run)
    if what == "onnx":
        return exports.onnx_response(run)
    if what == "metrics":
        return exports.metrics_csv_response(run)
    if what == "preprocessing":
        return exports.preprocessing_response(run)
    raise Http404("Not found")


@login_required
def run_predict(request, ws, pk):
    """Predictions on uploaded files, or for a series a forecast past the end of its data: shown, or as a CSV."""
    run, membership = _run_in(request, ws, pk)
    kind = (run.preprocessing or {}).get("kind", "")
    context = {"result": None, "error": None, "ahead": None, "ahead_error": None, "steps": ""}
    answer, stem = None, "predictions"
    if request.method == "POST" and "steps" in request.POST:  # a series: forecast past the end of its data
        kind, stem, context["steps"] = "series", "forecast", request.POST["steps"]
        try:
            answer = context["ahead"] = prediction.forecast_ahead(run, int(request.POST["steps"]))
        except INPUT_ERRORS as problem:
            context["ahead_error"] = str(problem)
        except ValueError:
            context["ahead_error"] = "steps: a whole number of steps"
    elif request.method == "POST":
        uploads = request.FILES.getlist("file")
        try:
            if not uploads:
                raise services.InvalidInput("file: choose a file", "file")
            answer = prediction.predict_uploads(run, [(upload.read(), upload.name) for upload in uploads],
                                                explain=request.POST.get("download") != "csv")
        except INPUT_ERRORS as problem:
            context["error"] = str(problem)
        else:
            pictures = answer.get("pictures", [])
            context["result"] = {"columns": answer["columns"], "total": len(answer["rows"]),
                                 "score": batch.score_line(answer.get("scores") or {}),
                                 "task": (run.preprocessing or {}).get("task"), "pictures": bool(pictures),
                                 "lines": [{"cells": row, "picture": pictures[i] if i < len(pictures) else None}
                                           for i, row in enumerate(answer["rows"][:500])]}
    if answer is not None and request.POST.get("download") == "csv":
        return exports.csv_attachment(answer, f"run-{run.pk}-{stem}.csv")
    return render(request, "experiments/predict.html", {
        "run": run, "workspace": run.workspace, "membership": membership, "section": "runs", **context,
        "current_workspace": run.workspace, "kind": kind, "has_weights": checkpoints.weights_path(run).exists(),
        **_prediction_jobs(run, membership)})


def _prediction_jobs(run, membership) -> dict:
    """The run's prediction jobs, and the data set versions it can predict for (those of its input's kind)."""
    from webapp.datasets.models import DatasetVersion

    kinds = batch.DATA_KINDS.get((run.preprocessing or {}).get("kind"), ())
    versions = [v for v in DatasetVersion.objects.filter(dataset__workspace=run.workspace, status="ready")
                .select_related("dataset").order_by("dataset__name", "-number") if (v.schema or {}).get("kind") in kinds]
    jobs = list(run.prediction_jobs.select_related("dataset_version__dataset", "created_by")[:20])
    return {"job_versions": versions if membership.can_write else [], "jobs": jobs,
            "jobs_active": any(job.is_active for job in jobs),
            "jobs_deletable": {job.pk for job in jobs if not job.is_active and services.may_delete(job, membership)}}


@login_required
@require_POST
def run_predict_dataset(request, ws, pk):
    from webapp.datasets.models import DatasetVersion

    run, _ = _run_in(request, ws, pk, write=True)
    chosen = request.POST.get("dataset_version", "")
    version = DatasetVersion.objects.select_related("dataset").filter(pk=int(chosen)).first() if chosen.isdigit() else None
    try:
        services.prediction_job_create(run=run, dataset_version=version, user=request.user)
    except INPUT_ERRORS as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"A worker is predicting every row of {version}; the file shows here when it is done.")
    back = request.POST.get("next", "")
    if back.startswith(f"/w/{ws}/models/") and url_has_allowed_host_and_scheme(back, allowed_hosts=None):
        return redirect(back)  # the model page that asked (a path of this workspace only)
    return redirect(reverse("run-predict", kwargs={"ws": ws, "pk": run.pk}) + "#jobs")


CANDIDATE_RUNS = 40  # the finished runs a data set's predict page offers, newest first after the models


@login_required
@require_GET
def version_predict(request, ws, version):
    """Predict every row of a data set version: the workspace's finished runs whose input reads it (the registered
    models' versions in production first), each with the columns it would lack, and the jobs already on it."""
    from webapp.datasets.models import DatasetVersion
    from webapp.experiments.models import PredictionJob, RegisteredModel

    workspace, membership = get_workspace_for_user(request.user, ws)
    found = (DatasetVersion.objects.select_related("dataset")
             .filter(pk=version, dataset__workspace=workspace, status="ready").first())
    if found is None:
        raise Http404("Not found")
    held = (found.schema or {}).get("kind")
    serving = {}
    for model in RegisteredModel.objects.filter(workspace=workspace, production__isnull=False).select_related(
            "production").order_by("name"):
        serving.setdefault(model.production.run_id, []).append(f"{model.name} v{model.production.number}")
    finished = (Run.objects.filter(workspace=workspace, status__in=(RunStatus.SUCCEEDED, RunStatus.CANCELLED))
                .select_related("workspace", "dataset_version__dataset").defer("spec", "library_versions", "notes")
                .order_by("-finished_at", "-pk"))
    candidates = []
    for run in [*finished.filter(pk__in=serving), *finished.exclude(pk__in=serving)[:200]]:
        if held in batch.DATA_KINDS.get((run.preprocessing or {}).get("kind"), ()) and \
                checkpoints.weights_path(run).exists():
            candidates.append({"run": run, "models": serving.get(run.pk, []),
                               "missing": batch.missing_columns(run, found)})
        if len(candidates) >= CANDIDATE_RUNS + len(serving):
            break
    jobs = list(PredictionJob.objects.filter(dataset_version=found).select_related("run__workspace", "created_by")
                .order_by("-pk")[:20])
    return render(request, "experiments/version_predict.html", {
        "workspace": workspace, "membership": membership, "current_workspace": workspace, "section": "datasets",
        "version": found, "candidates": candidates, "jobs": jobs, "jobs_active": any(job.is_active for job in jobs)})


@login_required
@require_POST
def prediction_job_delete(request, ws, pk, job):
    run, membership, found = _job_in(request, ws, pk, job)
    try:
        services.prediction_job_delete(job=found, membership=membership)
    except INPUT_ERRORS as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"The predictions on {found.dataset_version} are deleted.")
    return redirect(reverse("run-predict", kwargs={"ws": ws, "pk": run.pk}) + "#jobs")


@login_required
def prediction_job_download(request, ws, pk, job):
    return exports.prediction_job_response(_job_in(request, ws, pk, job)[2])


def _job_in(request, ws, pk, job):
    """The run (readable by this person), their membership, and the run's prediction job ``job``, or 404."""
    run, membership = _run_in(request, ws, pk)
    found = run.prediction_jobs.filter(pk=job).first()
    if found is None:
        raise Http404("Not found")
    return run, membership, found


# ----------------------------------------------------------------------------- new run (the builder)


def _text_columns(version) -> list[str]:
    return [c.get("name") for c in (version.schema or {}).get("columns", [])
            if isinstance(c, dict) and c.get("type") == "text"]


def _text_only(version) -> bool:
    """A table whose columns, besides its target and its dates, are all free text (reviews, tickets)."""
    others = [c for c in (version.schema or {}).get("columns", []) if isinstance(c, dict)
              and c.get("name") != version.dataset.target_column and c.get("type") != "datetime"]
    return version.dataset.kind == "table" and bool(others) and all(c.get("type") == "text" for c in others)


@login_required
def run_new(request, ws):
    workspace, membership = get_workspace_for_user(request.user, ws, write=True)
    from webapp.datasets.models import DatasetVersion

    versions = (DatasetVersion.objects.filter(dataset__workspace=workspace, status="ready")
                .select_related("dataset").order_by("dataset__name", "-number"))
    start = {"dataset_version": None, "spec": None, "data_config": {}, "from_run": None}
    from_run = request.GET.get("from_run")
    if from_run and from_run.isdigit():
        source, _ = selectors.get_run_for_user(request.user, int(from_run))
        if source.workspace_id == workspace.pk:
            start.update(dataset_version=source.dataset_version_id, spec=source.spec, from_run=source.pk,
                         data_config={k: v for k, v in source.data_config.items()})
    version_id = request.GET.get("version")
    dataset_id = request.GET.get("dataset")
    if version_id and version_id.isdigit():
        start["dataset_version"] = int(version_id)
    elif dataset_id and dataset_id.isdigit() and not start["dataset_version"]:
        latest = versions.filter(dataset_id=int(dataset_id)).first()
        start["dataset_version"] = latest.pk if latest else None
    if not start["dataset_version"] and versions:
        start["dataset_version"] = versions[0].pk
    choices = [{"id": v.pk, "label": f"{v.dataset.name} v{v.number}", "kind": v.dataset.kind,
                "target": v.dataset.target_column,
                "columns": [c.get("name") for c in (v.schema or {}).get("columns", []) if isinstance(c, dict)],
                "text_columns": _text_columns(v), "text_only": _text_only(v)}
               for v in versions[:200]]
    return render(request, "experiments/run_new.html", {
        "workspace": workspace, "membership": membership, "section": "new-run", "current_workspace": workspace,
        "builder": {"versions": choices, "start": start, "catalog": _layer_catalog(),
                    "create_url": f"/api/v1/workspaces/{workspace.slug}/runs",
                    "summary_url": f"/api/v1/workspaces/{workspace.slug}/specs/summary",
                    "template_url": reverse("run-template", kwargs={"ws": ws}),
                    "sweep_url": f"/api/v1/workspaces/{workspace.slug}/sweeps",
                    "devices": list(specs.DEVICES)},
    })


def _describe_args(args: dict) -> list[dict]:
    described = []
    for name, arg in args.items():
        entry = {"name": name, "kind": arg.kind, "required": arg.required}
        if not arg.required:
            entry["default"] = arg.default
        if arg.choices is not None:
            entry["choices"] = list(arg.choices)
        described.append(entry)
    return described


def _layer_catalog() -> dict:
    """Layer, optimizer, schedule and loss choices with their arguments, straight from the engine."""
    from trainer import losses, optimizers, schedules
    from trainer.spec import METRICS, layer_catalog

    return {
        "layers": layer_catalog(),
        "optimizers": {name: _describe_args({**cls.common_args, **cls.args})
                       for name, cls in optimizers.OPTIMIZERS.items()},
        "schedules": {name: _describe_args(cls.args) for name, cls in schedules.SCHEDULES.items()},
        "losses": list(losses.LOSSES), "metrics": list(METRICS),
    }


@login_required
@require_GET
def run_template(request, ws):
    """The suggested starting spec for a data set version and data config (tables → MLP, images → CNN, series → LSTM
    or, with ?start=conv1d, a 1-D CNN, ?start=transformer, a Transformer encoder; a text column → averaged
    embeddings or, with ?start=lstm, a bidirectional LSTM; ?start=empty: no layers)."""
    workspace, _ = get_workspace_for_user(request.user, ws)
    from webapp.datasets.models import DatasetVersion
    from webapp.experiments import datasource

    version_id = request.GET.get("version", "")
    versions = DatasetVersion.objects.select_related("dataset").filter(dataset__workspace=workspace, status="ready")
    version = (versions.filter(pk=int(version_id)) if version_id.isdigit() else versions.order_by("-created_at")).first()
    if version is None:
        raise Http404("Not found")
    try:
        config = json.loads(request.GET.get("data_config") or "{}")
        info = datasource.describe(version, config if isinstance(config, dict) else {})
    except INPUT_ERRORS as error:
        return JsonResponse({"errors": [{"field": getattr(error, "field", "") or "data_config", "message": str(error)}]})
    except ValueError:
        return JsonResponse({"errors": [{"field": "data_config", "message": "must be a JSON object"}]})
    except Exception as error:  # noqa: BLE001 - an unreadable version must not break the builder
        return JsonResponse({"errors": [{"field": "dataset_version", "message": f"cannot be read: {error}"}]})
    start = request.GET.get("start", "template")
    spec = specs.empty_spec(info["input_shape"]) if start == "empty" else specs.suggest(
        info["kind"], info["task"], info["input_shape"], info["outputs"], start=start,
        vocabulary_size=info.get("vocabulary_size", 0))
    return JsonResponse({"spec": spec, "data": info, "errors": []})


# ----------------------------------------------------------------------------- compare


def _compare_context(runs) -> dict:
    settings_rows = _differences(runs)
    metric_names = []
    for run in runs:
        for name in (run.results or {}).get("test", {}):
            if name not in metric_names:
                metric_names.append(name)
    finals = [{"name": name, "values": [(run.results or {}).get("test", {}).get(name) for run in runs]}
              for name in metric_names]
    series = [{"id": run.pk, "name": run.display_name, **selectors.metric_series(run), "roc": curves.comparable_roc(run),
               "calibration": (run.results or {}).get("calibration")} for run in runs]
    return {"runs": runs, "settings_rows": settings_rows, "finals": finals, "series": series,
            "has_roc": any(entry["roc"] for entry in series),
            "has_calibration": any(entry["calibration"] for entry in series)}


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        items = {}
        for key, inner in value.items():
            items.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return items
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        items = {}
        for i, inner in enumerate(value):
            items.update(_flatten(inner, f"{prefix}[{i}]"))
        return items
    return {prefix: json.dumps(value) if isinstance(value, (list, dict)) else value}


def _differences(runs) -> list[dict]:
    """Settings rows where at least two runs differ: spec, data config, data set, seed, device."""
    flat = []
    for run in runs:
        record = {"data set": str(run.dataset_version), "seed": run.seed, "device": run.device or run.device_preference}
        record.update(_flatten(run.spec, "spec"))
        record.update(_flatten(run.data_config, "data"))
        flat.append(record)
    keys = []
    for record in flat:
        keys.extend(k for k in record if k not in keys)
    rows = []
    for key in keys:
        values = [record.get(key) for record in flat]
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1:
            rows.append({"name": key, "values": values})
    return rows


@login_required
def compare(request, ws):
    workspace, membership = get_workspace_for_user(request.user, ws)
    ids = [int(i) for i in request.GET.getlist("runs") + request.GET.get("ids", "").split(",") if i.strip().isdigit()]
    runs = list(Run.objects.filter(workspace=workspace, pk__in=ids[:MAX_COMPARE]).select_related(
        "dataset_version__dataset"))
    runs.sort(key=lambda r: ids.index(r.pk))
    context = _compare_context(runs)
    context.update({"workspace": workspace, "membership": membership, "section": "compare",
                    "current_workspace": workspace,
                    "recent": Run.objects.filter(workspace=workspace).exclude(pk__in=ids)[:30]})
    return render(request, "experiments/compare.html", context)


def render_shared_comparison(request, runs):
    from webapp.accounts import sharing

    return sharing.render_shared(request, "experiments/shared_compare.html", _compare_context(list(runs)))


# ----------------------------------------------------------------------------- queue and sweeps


@login_required
def queue(request, ws):
    workspace, membership = get_workspace_for_user(request.user, ws)
    watchdog.check_runs_now_and_then()
    runs = (Run.objects.filter(workspace=workspace, status__in=ACTIVE_STATUSES)
            .select_related("dataset_version__dataset", "created_by").order_by("status", "priority", "queued_at"))
    try:
        from webapp.core import presence

        workers = presence.live_workers()
    except Exception:  # noqa: BLE001 - the broker is down: no workers to show
        workers = []
    return render(request, "experiments/queue.html", {
        "workspace": workspace, "membership": membership, "section": "queue", "runs": runs, "workers": workers,
        "current_workspace": workspace})


@login_required
@require_POST
def run_priority(request, ws, pk):
    run, _ = _run_in(request, ws, pk, write=True)
    try:
        services.run_set_priority(run=run, priority=int(request.POST.get("priority", "")))
    except ValueError as error:
        messages.error(request, str(error) if isinstance(error, INPUT_ERRORS) else "priority: 0 to 9")
    return redirect(reverse("run-queue", kwargs={"ws": ws}))


@login_required
def sweep_detail(request, ws, pk):
    sweep, membership = _sweep_in(request, ws, pk)
    runs = list(sweep.runs.order_by("pk"))
    params = sorted(sweep.space)
    table = [{"run": run, "params": [run.sweep_params.get(p) for p in params],
              "stopped": (run.results or {}).get("stopped_early")} for run in runs]
    chart = {"params": params, "runs": [{"id": run.pk, "name": run.display_name, "status": run.status,
                                         "params": run.sweep_params, "metric": run.best_metric,
                                         "metric_name": run.best_metric_name} for run in runs]}
    active = any(run.is_active for run in runs)
    stopping = sweep.stopping or {}
    halving_at = (pruning.rungs(stopping["grace_epochs"], stopping["reduction_factor"], max(run.epochs_total for run in runs))
                  if stopping.get("rule") == "asha" and runs else [])
    rungs = ", ".join(map(str, halving_at[:6])) + (", …" if len(halving_at) > 6 else "")
    cross_validation = selectors.cross_validation(sweep, runs)
    if cross_validation:  # each point's final model, or whether one can be trained
        refits = list(sweep.refits.select_related("workspace").order_by("-pk"))
        for group in cross_validation["groups"]:
            group["refit"] = next((run for run in refits if selectors.point_of(run) == group["params"]), None)
            group["refit_refusal"] = services.refit_refusal(
                sweep, [run for run in runs if selectors.point_of(run) == group["params"]])
            group["params_json"] = json.dumps(group["params"], sort_keys=True)
    return render(request, "experiments/sweep_detail.html", {
        "workspace": sweep.workspace, "membership": membership, "section": "runs", "sweep": sweep, "params": params,
        "table": table, "chart": chart, "current_workspace": sweep.workspace, "active": active,
        "stopped": sum(1 for row in table if row["stopped"]),
        "best": None if "fold" in sweep.space else selectors.sweep_best(runs),  # no fold is a "best" model
        "cross_validation": cross_validation,
        "effects": selectors.parameter_effects(sweep, runs),
        "folds_only": set(sweep.space) == {"fold"},  # nothing for a chart of hyper-parameters to show
        "rungs": rungs, "rung_count": len(halving_at),
        "can_extend": membership.can_write and sweep.method == "random" and len(runs) < services.MAX_SWEEP_RUNS,
        "extend_room": services.MAX_SWEEP_RUNS - len(runs),
        "extend_default": min(5, services.MAX_SWEEP_RUNS - len(runs)),
        "can_cancel": membership.can_write and any(run.is_active and not run.cancel_requested for run in runs),
        "can_delete": not active and services.may_delete(sweep, membership)
        and all(services.may_delete(run, membership) for run in runs)})


@login_required
@require_POST
def sweep_extend(request, ws, pk):
    sweep, _ = _sweep_in(request, ws, pk, write=True)
    try:
        added = services.sweep_extend(sweep=sweep, user=request.user, count=int(request.POST.get("count", "")))
    except ValueError as error:
        messages.error(request, str(error) if isinstance(error, INPUT_ERRORS) else "count: a whole number of runs")
    else:
        messages.success(request, f"Added {_count_runs(len(added))} to the sweep.")
    return redirect(sweep.get_absolute_url())


@login_required
@require_POST
def sweep_refit(request, ws, pk):
    sweep, _ = _sweep_in(request, ws, pk, write=True)
    try:
        params = json.loads(request.POST.get("params", ""))
        run = services.sweep_refit(sweep=sweep, user=request.user, params=params)
    except (ValueError, TypeError) as error:
        messages.error(request, str(error) if isinstance(error, INPUT_ERRORS) else "params: not the values of a point")
        return redirect(sweep.get_absolute_url())
    messages.success(request, "The final model trains on every row; its page shows the folds' estimate.")
    return redirect(run.get_absolute_url())


@login_required
@require_POST
def sweep_cancel(request, ws, pk):
    sweep, _ = _sweep_in(request, ws, pk, write=True)
    count = services.sweep_cancel(sweep=sweep, user=request.user)
    messages.info(request, f"Cancelling {_count_runs(count)} of the sweep. {CANCEL_NOTE}")
    return redirect(sweep.get_absolute_url())


@login_required
@require_POST
def sweep_delete(request, ws, pk):
    sweep, membership = _sweep_in(request, ws, pk, write=True)
    name = sweep.name
    try:
        count = services.sweep_delete(sweep=sweep, user=request.user, membership=membership)
    except services.RunInUse as error:
        messages.error(request, f"The sweep was kept: {error}")
        return redirect(sweep.get_absolute_url())
    messages.success(request, f"Deleted the sweep “{name}” and its {_count_runs(count)}.")
    return redirect(reverse("sweep-list", kwargs={"ws": ws}))


@login_required
def sweep_list(request, ws):
    workspace, membership = get_workspace_for_user(request.user, ws)
    return render(request, "experiments/sweep_list.html", {
        "workspace": workspace, "membership": membership, "section": "sweeps", "current_workspace": workspace,
        "sweeps": Sweep.objects.filter(workspace=workspace).select_related("dataset_version__dataset")[:100]})
