"""Data sets in the REST API: the same services as the pages."""

from __future__ import annotations

from django.http import Http404
from ninja import File, Form, Router, Schema, Status
from ninja.files import UploadedFile

from webapp.accounts.access import get_workspace_for_user
from webapp.datasets import changes, selectors, services
from webapp.datasets.models import Dataset, DatasetVersion
from webapp.datasets.uploads import save_upload

router = Router(tags=["datasets"])


class ColumnsIn(Schema):
    target_column: str | None = None
    ignored_columns: list[str] | None = None


def _error(status: int, detail: str, field: str | None = None):
    body = {"detail": f"{field}: {detail}" if field and not detail.startswith(field) else detail}
    if field:
        body["field"] = field
    return Status(status, body)


def version_json(version: DatasetVersion, *, full: bool = True) -> dict:
    body = {"id": version.pk, "number": version.number, "status": version.status, "error": version.error,
            "content_hash": version.content_hash, "original_filename": version.original_filename,
            "size_bytes": version.size_bytes, "stored_bytes": version.stored_bytes, "n_rows": version.n_rows,
            "options": {k: v for k, v in version.options.items() if k != "attempts"},
            "created_at": version.created_at.isoformat(),
            "ingested_at": version.ingested_at.isoformat() if version.ingested_at else None}
    if full:
        body.update(schema=version.schema, stats=version.stats)
    return body


def dataset_json(dataset: Dataset, *, full: bool = False) -> dict:
    versions = list(dataset.versions.order_by("-number"))
    return {"id": dataset.pk, "workspace": dataset.workspace.slug, "name": dataset.name,
            "description": dataset.description, "kind": dataset.kind, "target_column": dataset.target_column,
            "ignored_columns": dataset.ignored_columns, "created_at": dataset.created_at.isoformat(),
            "created_by": dataset.created_by.username if dataset.created_by else None,
            "versions": [version_json(v, full=full) for v in versions]}


@router.post("/workspaces/{ws}/datasets", response={201: dict, 400: dict, 404: dict, 413: dict})
def create_dataset(request, ws: str, file: File[UploadedFile] = None, name: Form[str] = "",
                   description: Form[str] = "", dataset: Form[int | None] = None, kind: Form[str] = "auto",
                   image_height: Form[int | None] = None, image_width: Form[int | None] = None):
    """Upload a file (multipart ``file``) as a new data set, or as a new version of ``dataset``."""
    workspace, _ = get_workspace_for_user(request.user, ws, write=True)
    if getattr(request, "upload_error", None):
        return _error(413, request.upload_error, "file")
    if file is None:
        return _error(400, "a file is required (multipart field “file”)", "file")
    if (image_height is None) != (image_width is None):
        return _error(400, "give both image_height and image_width, or neither", "image_height")
    image_size = [image_height, image_width] if image_height is not None else None
    target = None
    if dataset is not None:
        target, _ = selectors.get_dataset_for_user(request.user, dataset, write=True)
        if target.workspace_id != workspace.pk:
            raise Http404("Not found")
    if target is None and not name.strip():
        name = (file.name or "").rsplit(".", 1)[0]
    try:
        version = save_upload(file, workspace=workspace, user=request.user, dataset=target,
                               data={"name": name, "description": description, "kind": kind, "image_size": image_size})
    except services.DatasetError as error:
        return _error(400, str(error), error.field)
    return Status(201, dataset_json(version.dataset))


@router.get("/workspaces/{ws}/datasets", response=dict)
def list_datasets(request, ws: str, search: str = ""):
    workspace, _ = get_workspace_for_user(request.user, ws)
    return {"datasets": [dataset_json(d) for d in selectors.datasets_in_workspace(workspace, search=search)]}


@router.get("/datasets/{dataset_id}", response=dict)
def get_dataset(request, dataset_id: int):
    dataset, _ = selectors.get_dataset_for_user(request.user, dataset_id)
    return dataset_json(dataset, full=True)


@router.get("/datasets/{dataset_id}/changes", response={200: dict, 400: dict})
def dataset_changes(request, dataset_id: int, version: int | None = None, against: int | None = None):
    """What changed from version ``against`` (by default the latest ready one before it) to version ``version``
    (by default the latest ready one): rows, columns added and removed, and each column's verdict (changes.py)."""
    dataset, _ = selectors.get_dataset_for_user(request.user, dataset_id)
    ready = dataset.versions.filter(status="ready").order_by("-number")
    chosen = ready.filter(number=version).first() if version is not None else ready.first()
    if chosen is None:
        return _error(400, f"version: {dataset.name} has no ready version {version if version is not None else ''}"
                      .rstrip(), "version")
    try:
        before = changes.baseline(chosen, against)
    except ValueError as error:
        return _error(400, str(error), "against")
    if before is None:
        return _error(400, f"against: {dataset.name} has no ready version before v{chosen.number}", "against")
    return Status(200, changes.compare(before, chosen, target=dataset.target_column))


@router.patch("/datasets/{dataset_id}", response={200: dict, 400: dict})
def update_dataset(request, dataset_id: int, payload: ColumnsIn):
    """Set the target column and the ignored columns (run defaults)."""
    dataset, _ = selectors.get_dataset_for_user(request.user, dataset_id, write=True)
    try:
        services.dataset_update_columns(dataset=dataset, target_column=payload.target_column,
                                        ignored_columns=payload.ignored_columns)
    except services.DatasetError as error:
        return _error(400, str(error), error.field)
    return Status(200, dataset_json(dataset))


@router.delete("/datasets/{dataset_id}", response={204: None, 409: dict})
def delete_dataset(request, dataset_id: int):
    dataset, _ = selectors.get_dataset_for_user(request.user, dataset_id, write=True)
    try:
        services.dataset_delete(dataset=dataset, user=request.user)
    except services.DatasetError as error:
        return _error(409, str(error))
    return Status(204, None)
