"""The data set pages: list, upload, samples, detail (preview, statistics, charts), edits, deletion."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from PIL import Image

from webapp.accounts.access import get_workspace_for_user
from webapp.datasets import changes, presenters, selectors, services, storage
from webapp.datasets.forms import SAMPLES, ColumnsForm, UploadForm, initial_columns
from webapp.datasets.uploads import max_upload_bytes, save_upload

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
PREVIEW_PAGE_ROWS = 20
PREVIEW_MAX_COLUMNS = 60
CHART_COLUMNS = 40
THUMBS_PER_CLASS = 12
_SMALL_NUMBER = re.compile(r"[0-9]{1,9}")  # an index or class in a share link's query


def _dataset_in(request, ws: str, pk: int, *, write: bool = False):
    dataset, membership = selectors.get_dataset_for_user(request.user, pk, write=write)
    if dataset.workspace.slug != ws:
        raise Http404("Not found")
    return dataset, membership


def _wants_json(request) -> bool:
    return request.headers.get("x-requested-with") == "XMLHttpRequest"


def _upload_response(request, form, *, workspace, membership, dataset=None, error=None, status=400):
    if _wants_json(request):
        detail = error or "; ".join(f"{'' if f == '__all__' else f + ': '}{e[0]}" for f, e in form.errors.items())
        return JsonResponse({"detail": detail}, status=status)
    return render(request, "datasets/upload.html", {
        "workspace": workspace, "membership": membership, "form": form, "dataset": dataset, "section": "datasets",
        "max_upload_bytes": max_upload_bytes(), "upload_error": error}, status=status)


def _handle_upload(request, workspace, membership, dataset=None):
    form = UploadForm(request.POST or None, request.FILES or None, new_dataset=dataset is None)
    if request.method != "POST":
        return _upload_response(request, form, workspace=workspace, membership=membership, dataset=dataset, status=200)
    upload_error = getattr(request, "upload_error", None)
    if upload_error:
        return _upload_response(request, form, workspace=workspace, membership=membership, dataset=dataset,
                                error=upload_error, status=413)
    if not form.is_valid():
        return _upload_response(request, form, workspace=workspace, membership=membership, dataset=dataset)
    data = form.cleaned_data
    try:
        version = save_upload(data["file"], workspace=workspace, user=request.user, dataset=dataset, data=data)
    except services.DatasetError as error:
        return _upload_response(request, form, workspace=workspace, membership=membership, dataset=dataset,
                                error=str(error))
    url = reverse("dataset-detail", kwargs={"ws": workspace.slug, "pk": version.dataset_id})
    if _wants_json(request):
        return JsonResponse({"redirect": url, "dataset": version.dataset_id, "version": version.number}, status=201)
    return redirect(url)


@login_required
def dataset_list(request, ws):
    workspace, membership = get_workspace_for_user(request.user, ws)
    search = request.GET.get("q", "")[:100]
    datasets = selectors.datasets_in_workspace(workspace, search=search)
    rows = [(d, max(d.versions.all(), key=lambda v: v.number, default=None)) for d in datasets]
    return render(request, "datasets/list.html", {
        "workspace": workspace, "membership": membership, "rows": rows, "search": search, "section": "datasets",
        "samples": [(key, title, blurb) for key, (title, _, _, blurb) in SAMPLES.items()]})


@login_required
@require_http_methods(["GET", "POST"])
def dataset_upload(request, ws):
    workspace, membership = get_workspace_for_user(request.user, ws, write=True)
    return _handle_upload(request, workspace, membership)


@login_required
@require_http_methods(["GET", "POST"])
def dataset_new_version(request, ws, pk):
    dataset, membership = _dataset_in(request, ws, pk, write=True)
    return _handle_upload(request, dataset.workspace, membership, dataset=dataset)


@login_required
@require_POST
def dataset_load_sample(request, ws):
    workspace, _ = get_workspace_for_user(request.user, ws, write=True)
    sample = SAMPLES.get(request.POST.get("sample", ""))
    if sample is None:
        raise Http404("No such sample")
    title, filename, kind, blurb = sample
    version = services.dataset_create_from_file(
        workspace=workspace, user=request.user, name=title, description=blurb,
        uploaded_file_path=SAMPLES_DIR / filename, original_filename=filename, kind=kind)
    messages.success(request, f"Loading the sample “{title}”…")
    return redirect("dataset-detail", ws=ws, pk=version.dataset_id)


def _version_of(dataset, number):
    versions = list(dataset.versions.order_by("-number"))
    if number is not None:
        version = next((v for v in versions if str(v.number) == str(number)), None)
        if version is None:
            raise Http404("No such version")
        return version, versions
    ready = next((v for v in versions if v.is_ready), None)
    return (versions[0] if versions and (ready is None or not versions[0].is_finished) else ready), versions


@login_required
@require_GET
def dataset_detail(request, ws, pk):
    dataset, membership = _dataset_in(request, ws, pk)
    version, versions = _version_of(dataset, request.GET.get("v"))
    context = {"workspace": dataset.workspace, "membership": membership, "dataset": dataset, "version": version,
               "versions": versions, "section": "datasets",
               "run_count": dataset.versions.aggregate(runs=Count("runs"))["runs"]}
    if version is not None and version.is_ready:
        context.update(_ready_context(request, dataset, version))
    return render(request, "datasets/detail.html", context)


def _ready_context(request, dataset, version, *, compare: bool = True) -> dict:
    """The page of a ready version; ``compare``: with what changed from an earlier one (not on a share link's page,
    which shows the latest ready version only)."""
    # The data set was read before its version: ingestion may have committed in between, setting the
    # target with the version's "ready" (one transaction), so read the columns again as that left them.
    dataset.refresh_from_db(fields=["kind", "target_column", "ignored_columns"])
    stats = version.stats
    before = None
    if compare:
        try:
            before = changes.baseline(version, request.GET.get("against"))
        except ValueError as error:
            messages.error(request, str(error))
            before = changes.baseline(version)
    context = {"warnings": presenters.warnings_for(version, dataset.target_column),
               "changes": changes.compare(before, version, target=dataset.target_column) if before else None,
               "change_choices": list(dataset.versions.filter(status="ready", number__lt=version.number)
                                      .order_by("-number").values_list("number", flat=True)[:50]),
               "stored": presenters.human_bytes(version.stored_bytes),
               "uploaded": presenters.human_bytes(version.size_bytes)}
    if version.schema["kind"] == "images":
        per_class = []
        for label, (name, count) in enumerate(stats["class_counts"]):
            per_class.append((name, count, list(range(THUMBS_PER_CLASS if count else 0))))
        context.update(classes=per_class, chart_data={
            "balance": {"labels": [n for n, _ in stats["class_counts"]], "counts": [c for _, c in stats["class_counts"]],
                        "title": "Images per class"}})
        return context
    preview = storage.load_preview(version)
    columns = preview["columns"][:PREVIEW_MAX_COLUMNS]
    page = Paginator(preview["rows"], PREVIEW_PAGE_ROWS).get_page(request.GET.get("page"))
    names = [c["name"] for c in version.schema["columns"]]
    target = next((c for c in stats["columns"] if c["name"] == dataset.target_column), None)
    charts = []
    for column in stats["columns"][:CHART_COLUMNS]:
        if column.get("histogram"):
            charts.append({"name": column["name"], "kind": "histogram", **column["histogram"]})
        elif column.get("top"):
            charts.append({"name": column["name"], "kind": "bar", "labels": [v for v, _ in column["top"]],
                           "counts": [c for _, c in column["top"]]})
    chart_data = {"columns": charts}
    if target and target.get("counts"):
        chart_data["balance"] = {"labels": [v for v, _ in target["counts"]], "counts": [c for _, c in target["counts"]],
                                 "title": f"Class balance of {target['name']}"}
    if version.schema["kind"] == "series":
        chart_data["series"] = stats.get("chart")
    form = ColumnsForm(initial=initial_columns(dataset), columns=names)
    return {**context, "preview_columns": columns, "preview_page": page,
            "hidden_columns": max(0, len(preview["columns"]) - PREVIEW_MAX_COLUMNS),
            "column_stats": stats["columns"], "chart_data": chart_data, "columns_form": form,
            "chart_limit": CHART_COLUMNS}


@login_required
@require_GET
def version_status(request, ws, pk, number):
    dataset, _ = _dataset_in(request, ws, pk)
    version = dataset.versions.filter(number=number).first()
    if version is None:
        raise Http404("No such version")
    return JsonResponse({"status": version.status, "error": version.error, "finished": version.is_finished})


@login_required
@require_GET
@cache_control(private=True, max_age=3600)
def version_image(request, ws, pk, number, index):
    """One image of an image set, PNG-encoded from the stored array (never a file the user named)."""
    dataset, _ = _dataset_in(request, ws, pk)
    return _image_png(dataset.versions.filter(number=number).first(), index, request.GET.get("class"))


def _image_png(version, index: int, klass: str | None) -> HttpResponse:
    """The ``index``-th image of a ready image set (of class ``klass`` when given) as PNG; 404 otherwise."""
    if version is None or not version.is_ready or version.schema.get("kind") != "images":
        raise Http404("No such image")
    images, labels, _ = storage.load_images(version)
    if klass is not None:  # the index-th image of one class
        try:
            positions = np.flatnonzero(labels == int(klass))
            index = int(positions[index])
        except (ValueError, IndexError):
            raise Http404("No such image") from None
    if not 0 <= index < len(images):
        raise Http404("No such image")
    pixels = np.asarray(images[index])
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return HttpResponse(buffer.getvalue(), content_type="image/png")


# Read-only share links (registered in apps.py; the accounts app checks the token) -------------

def render_shared_dataset(request, dataset):
    """The latest ready version's summary, preview, statistics and charts, without write controls."""
    from webapp.accounts import sharing

    version = dataset.latest_ready_version()
    context = {"dataset": dataset, "version": version, "versions": [version] if version else []}
    if version is not None:
        context.update(_ready_context(request, dataset, version, compare=False))
        context.pop("columns_form", None)
    return sharing.render_shared(request, "datasets/shared_detail.html", context)


def shared_dataset_image(request, dataset):
    """``?index=I[&class=C]``: a thumbnail of the shared data set's latest ready version."""
    index, klass = request.GET.get("index", ""), request.GET.get("class")
    if not _SMALL_NUMBER.fullmatch(index) or (klass is not None and not _SMALL_NUMBER.fullmatch(klass)):
        raise Http404("No such image")
    return _image_png(dataset.latest_ready_version(), int(index), klass)


@login_required
@require_POST
def dataset_columns(request, ws, pk):
    dataset, _ = _dataset_in(request, ws, pk, write=True)
    version = dataset.latest_ready_version()
    names = [c["name"] for c in version.schema.get("columns", [])] if version else []
    form = ColumnsForm(request.POST, columns=names)
    if form.is_valid():
        try:
            services.dataset_update_columns(dataset=dataset, target_column=form.cleaned_data["target_column"],
                                            ignored_columns=form.cleaned_data["ignored_columns"])
            messages.success(request, "Target and ignored columns saved.")
        except services.DatasetError as error:
            messages.error(request, str(error))
    else:
        messages.error(request, "Choose columns of this data set.")
    return redirect("dataset-detail", ws=ws, pk=pk)


@login_required
@require_POST
def dataset_delete(request, ws, pk):
    dataset, _ = _dataset_in(request, ws, pk, write=True)
    name = dataset.name
    try:
        services.dataset_delete(dataset=dataset, user=request.user)
    except services.DatasetError as error:
        messages.error(request, str(error))
        return redirect("dataset-detail", ws=ws, pk=pk)
    messages.success(request, f"Deleted the data set “{name}”.")
    return redirect("dataset-list", ws=ws)
