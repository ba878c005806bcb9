"""The model registry's pages: the workspace's models, one model's versions, registering a run."""

from __future__ import annotations

from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webapp.accounts.access import get_workspace_for_user
from webapp.core.links import absolute_url
from webapp.experiments import monitoring, registry, selectors
from webapp.experiments.api import serialize_version
from webapp.experiments.services import InvalidInput, may_delete
from webapp.experiments.views import _in_workspace, _run_in


def _model_in(request, ws: str, pk: int, *, write: bool = False):
    return _in_workspace(selectors.get_model_for_user, request, ws, pk, write)


@login_required
def model_list(request, ws):
    workspace, membership = get_workspace_for_user(request.user, ws)
    return render(request, "experiments/model_list.html", {
        "workspace": workspace, "membership": membership, "section": "models", "current_workspace": workspace,
        "models": selectors.models_for_workspace(workspace)})


@login_required
def model_detail(request, ws, pk):
    model, membership = _model_in(request, ws, pk)
    serving = monitoring.report(model)
    newer = selectors.newer_data(model.production.run) if model.production else None
    versions = list(model.versions.select_related("run", "created_by").order_by("-number"))
    rows = [{"version": version, **serialize_version(version, model.production_id)} for version in versions]
    api = absolute_url(reverse("api:predict_with_model", kwargs={"model_id": model.pk}), request)
    onnx = absolute_url(reverse("api:model_artifact", kwargs={"model_id": model.pk, "what": "onnx"}), request)
    return render(request, "experiments/model_detail.html", {
        "workspace": model.workspace, "membership": membership, "section": "models",
        "current_workspace": model.workspace, "model": model, "rows": rows, "predict_url": api, "onnx_url": onnx,
        "can_delete": may_delete(model, membership), "serving": serving,
        "limits": dict(serving["limits"], share_points=round(serving["limits"]["share"] * 100, 4),
                       own=bool(model.drift_limits)),
        "refusals": [dict(r, at=datetime.fromisoformat(r["at"])) for r in serving["recent_refusals"]],
        "compare_ids": ",".join(str(row["run"]) for row in rows[:12]),
        "scored": selectors.scored_jobs(versions), "newer": newer,
        "can_remove": {row["number"] for row in rows if may_delete(row["version"], membership)}})


@login_required
@require_POST
def run_register(request, ws, pk):
    run, _ = _run_in(request, ws, pk, write=True)
    try:
        version = registry.register(run=run, user=request.user, name=request.POST.get("model", ""),
                                    note=request.POST.get("note", ""))
    except InvalidInput as error:
        messages.error(request, str(error))
        return redirect(run.get_absolute_url())
    production = " (in production)" if version.model.production_id == version.pk else ""
    messages.success(request, f"{run.display_name} is now version {version.number} of {version.model.name}{production}.")
    return redirect(version.model.get_absolute_url())


@login_required
@require_POST
def model_production(request, ws, pk):
    model, _ = _model_in(request, ws, pk, write=True)
    try:
        registry.set_production(model=model, number=int(request.POST.get("version", "")), user=request.user)
    except ValueError as error:  # an InvalidInput, or int() of what is not a number
        messages.error(request, str(error) if isinstance(error, InvalidInput) else "version: a version number")
    else:
        messages.success(request, f"Version {model.production.number} of {model.name} is in production.")
    return redirect(model.get_absolute_url())


@login_required
@require_POST
def model_describe(request, ws, pk):
    model, _ = _model_in(request, ws, pk, write=True)
    try:
        registry.describe(model=model, description=request.POST.get("description", ""), user=request.user)
    except InvalidInput as error:
        messages.error(request, str(error))
    return redirect(model.get_absolute_url())


@login_required
@require_POST
def model_drift_limits(request, ws, pk):
    """The model page's drift limits form: an empty field (or "Use the defaults") is the default."""
    model, _ = _model_in(request, ws, pk, write=True)
    limits = {}
    if "reset" not in request.POST:
        for name in monitoring.DEFAULT_LIMITS:
            given = request.POST.get(name, "").strip()
            if not given:
                continue
            try:
                value = int(given) if name in monitoring.WHOLE_LIMITS else float(given)
            except ValueError:
                messages.error(request, f"drift_limits.{name}: "
                                        f"{'a whole number' if name in monitoring.WHOLE_LIMITS else 'a number'}"
                                        f", got {given!r}")
                return redirect(model.get_absolute_url() + "#drift-limits")
            limits[name] = value / 100 if name == "share" else value  # the form asks for percentage points
    try:
        registry.set_drift_limits(model=model, limits=limits, user=request.user)
    except InvalidInput as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Saved: its drift is judged by these limits from now on.")
    return redirect(model.get_absolute_url() + "#drift-limits")


@login_required
@require_POST
def model_version_remove(request, ws, pk, number):
    model, membership = _model_in(request, ws, pk, write=True)
    try:
        registry.remove_version(version=registry.version_for(model, number), user=request.user, membership=membership)
    except (InvalidInput, PermissionDenied) as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Removed version {number} from {model.name}; its run stays.")
    return redirect(model.get_absolute_url())


@login_required
@require_POST
def model_delete(request, ws, pk):
    model, membership = _model_in(request, ws, pk, write=True)
    name = model.name
    registry.delete(model=model, user=request.user, membership=membership)
    messages.success(request, f"Deleted the model “{name}”; its runs stay.")
    return redirect(reverse("model-list", kwargs={"ws": ws}))
