"""Writes about data sets: new data sets and versions from uploaded files, ingestion, edits, deletion."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import unicodedata
from pathlib import Path

from django.db import transaction
from django.db.models import Max, RestrictedError
from django.dispatch import Signal
from django.urls import reverse
from django.utils import timezone

from webapp.accounts import activity
from webapp.datasets import storage
from webapp.datasets.images import ingest_images
from webapp.datasets.ingest import ingest_series, ingest_table
from webapp.datasets.models import Dataset, DatasetKind, DatasetVersion, VersionStatus
from webapp.datasets.sniff import IngestError, detect_format

log = logging.getLogger(__name__)

KIND_CHOICES = ("auto", "table", "series", "images")
MAX_ATTEMPTS = 2  # a version whose ingestion killed the worker this often is failed, not retried forever


class DatasetError(Exception):
    """A refused request, said in words for the user; ``field`` names the input at fault."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def _check_text(value: str, field: str) -> None:
    """Refuse NUL and other control characters (PostgreSQL cannot store NUL); tab and line breaks are text."""
    for position, ch in enumerate(value):
        if ch not in "\t\n\r" and unicodedata.category(ch) == "Cc":
            raise DatasetError(f"{field} may not contain control characters (U+{ord(ch):04X} at position {position})",
                               field=field)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _clean_options(kind: str = "auto", image_size=None) -> dict:
    if kind not in KIND_CHOICES:
        raise DatasetError(f"kind must be one of {', '.join(KIND_CHOICES)}; got “{kind}”", field="kind")
    options: dict = {"kind": kind}
    if image_size:
        try:
            height, width = (int(v) for v in image_size)
        except (TypeError, ValueError):
            raise DatasetError("image_size must be two whole numbers: height and width", field="image_size") from None
        if not (1 <= height <= 1024 and 1 <= width <= 1024):
            raise DatasetError(f"image_size must be between 1 and 1024 pixels; got {height}×{width}",
                               field="image_size")
        options["image_size"] = [height, width]
    return options


def _place_upload(version: DatasetVersion, source: Path, move: bool) -> None:
    if version.folder.exists():  # left over from a deleted data set whose id was reused
        shutil.rmtree(version.folder)
    version.folder.mkdir(parents=True)
    target = storage.upload_path(version)
    if move:
        try:
            os.replace(source, target)
            return
        except OSError:
            pass
    shutil.copyfile(source, target)
    if move:
        source.unlink(missing_ok=True)


def _enqueue(version_id: int) -> None:
    from webapp.datasets.tasks import ingest_dataset_version

    ingest_dataset_version.delay(version_id)


@transaction.atomic
def version_create_from_file(*, dataset: Dataset, user, uploaded_file_path, original_filename: str = "",
                             kind: str = "auto", image_size=None, move: bool = False) -> DatasetVersion:
    """A new version of ``dataset`` from a file on disk; ingestion is queued once the transaction commits.

    ``move=True`` lets the service take the file (an upload's temporary file) instead of copying it.
    """
    source = Path(uploaded_file_path)
    options = _clean_options(kind, image_size)
    size = source.stat().st_size
    if size == 0:
        raise DatasetError("The file is empty (0 bytes).", field="file")
    content_hash = _sha256(source)
    Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
    latest = dataset.versions.exclude(status=VersionStatus.FAILED).order_by("-number").first()
    if latest is not None and latest.content_hash == content_hash:
        raise DatasetError(f"This file is identical to version {latest.number} (same SHA-256); "
                           "no new version was made.", field="file")
    number = (dataset.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = DatasetVersion.objects.create(
        dataset=dataset, number=number, content_hash=content_hash, size_bytes=size,
        original_filename=os.path.basename(str(original_filename).replace("\\", "/"))[:255],
        options=options, created_by=user if getattr(user, "is_authenticated", False) else None)
    try:
        _place_upload(version, source, move)
    except OSError:
        shutil.rmtree(version.folder, ignore_errors=True)
        raise
    activity.record(workspace=dataset.workspace, actor=user, verb="uploaded", target_type="dataset",
                    target_id=dataset.pk, target_label=f"{dataset.name} v{number}")
    transaction.on_commit(lambda: _enqueue(version.pk))
    return version


@transaction.atomic
def dataset_create_from_file(*, workspace, user, name: str, description: str = "", uploaded_file_path,
                             original_filename: str = "", kind: str = "auto", image_size=None,
                             move: bool = False) -> DatasetVersion:
    """A new data set with its version 1; ingestion is queued once the transaction commits."""
    name = (name or "").strip()
    if not name:
        raise DatasetError("name is required", field="name")
    if len(name) > 120:
        raise DatasetError("name may be at most 120 characters", field="name")
    _check_text(name, "name")
    _check_text(description or "", "description")
    _clean_options(kind, image_size)
    dataset = Dataset.objects.create(
        workspace=workspace, name=name, description=(description or "")[:5000],
        kind=DatasetKind.SERIES if kind == "series" else DatasetKind.IMAGES if kind == "images" else DatasetKind.TABLE,
        created_by=user if getattr(user, "is_authenticated", False) else None)
    return version_create_from_file(dataset=dataset, user=user, uploaded_file_path=uploaded_file_path,
                                    original_filename=original_filename, kind=kind, image_size=image_size, move=move)


def _ingest_files(version: DatasetVersion) -> dict:
    source = storage.upload_path(version)
    file_format = detect_format(source)
    kind = version.options.get("kind", "auto")
    if file_format == "zip":
        if kind in ("table", "series"):
            raise IngestError(f"The file is a zip archive, which holds images, not a {kind}.")
        size = version.options.get("image_size")
        return ingest_images(source, version.folder, resize=tuple(size) if size else None)
    if kind == "images":
        raise IngestError("Images must be uploaded as a zip of class folders; this file is a "
                          f"{'table' if file_format == 'csv' else file_format} file.")
    if kind == "series" or (kind == "auto" and version.dataset.kind == DatasetKind.SERIES):
        return ingest_series(source, version.folder, file_format=file_format)
    return ingest_table(source, version.folder, file_format=file_format)


# Sent (``version=``) once a version is ready and announced: the experiments app tells the people whose
# models trained on an earlier version of its data set.
version_ready = Signal()


def _fail(version: DatasetVersion, message: str) -> DatasetVersion:
    for path in version.folder.glob("*"):
        if path.name != storage.UPLOAD_FILE and path.is_file():
            path.unlink(missing_ok=True)
    version.status, version.error = VersionStatus.FAILED, message[:2000]
    version.ingested_at = timezone.now()
    version.save(update_fields=["status", "error", "ingested_at"])
    _announce(version)
    return version


def _announce(version: DatasetVersion) -> None:
    """Tell whoever uploaded the version (a notification) and the workspace's webhooks (``dataset.ready``, with what
    changed from the version before it, or ``dataset.failed`` with why) how its ingestion ended. Never fails it."""
    from webapp.accounts import webhooks
    from webapp.datasets import changes

    try:
        dataset = version.dataset
        path = reverse("dataset-detail", kwargs={"ws": dataset.workspace.slug, "pk": dataset.pk}) + f"?v={version.number}"
        payload = {"dataset": dataset.pk, "name": dataset.name, "version": version.number, "status": version.status}
        if version.status == VersionStatus.READY:
            before = changes.baseline(version)
            found = changes.compare(before, version, target=dataset.target_column) if before else None
            noun = "images" if dataset.kind == DatasetKind.IMAGES else "rows"
            message = f"{version} is ready: {version.n_rows:,} {noun}" + (f"; {changes.summary(found)}" if found else "")
            payload.update(rows=version.n_rows, changes=found and {
                "from": found["from"], "changed": found["changed"], "worth_a_look": found["worth_a_look"],
                "added": found["added"], "removed": found["removed"],
                "changed_columns": [c["name"] for c in found.get("columns", []) if c["verdict"] == "different"]})
            path += "#changes" if found else ""
        else:
            message = f"{version} could not be ingested: {version.error}"
            payload["error"] = version.error
        if version.created_by is not None:
            activity.notify(user=version.created_by, workspace=dataset.workspace, message=message, link=path,
                            level="error" if version.status == VersionStatus.FAILED else "info")
        webhooks.dispatch(dataset.workspace, f"dataset.{version.status}", dict(payload, path=path),
                          text=f"[{dataset.workspace.name}] {message}")
        if version.status == VersionStatus.READY:
            version_ready.send(sender=DatasetVersion, version=version)
    except Exception:  # a notification must never undo an ingestion
        log.exception("data set version %s: could not announce it", version.pk)


def ingest_version(version_id: int) -> DatasetVersion | None:
    """Parse, type, describe and store one uploaded version: ``uploaded → ingesting → ready | failed``.

    The plain function behind the Celery task, callable in-process (tests, other apps). It never
    raises for a bad file: the version ends ``failed`` with a message that names what is wrong.
    """
    version = DatasetVersion.objects.select_related("dataset__workspace").filter(pk=version_id).first()
    if version is None or version.is_finished:
        return version
    attempts = int(version.options.get("attempts", 0)) + 1
    version.options = {**version.options, "attempts": attempts}
    version.status = VersionStatus.INGESTING
    version.save(update_fields=["status", "options"])
    if attempts > MAX_ATTEMPTS:
        return _fail(version, "Ingestion stopped before finishing twice (the worker died, perhaps out of "
                              "memory); the file was not ingested.")
    try:
        result = _ingest_files(version)
        kind = result["schema"]["kind"]
        dataset = version.dataset
        earlier = dataset.versions.filter(status=VersionStatus.READY).exclude(pk=version.pk).exists()
        if earlier and kind != dataset.kind:
            raise IngestError(f"This file holds {kind}, but the data set “{dataset.name}” holds {dataset.kind}; "
                              "upload it as a new data set.")
    except IngestError as error:
        return _fail(version, str(error))
    except MemoryError:
        return _fail(version, "The worker ran out of memory while ingesting this file.")
    except OSError as error:
        log.exception("ingestion of data set version %s failed", version_id)
        return _fail(version, f"The file could not be stored: {error.strerror or type(error).__name__}.")
    except Exception as error:  # a bug must not leave the version stuck in "ingesting"
        log.exception("ingestion of data set version %s failed", version_id)
        return _fail(version, f"Ingestion failed unexpectedly ({type(error).__name__}); "
                              "the details are in the worker's log.")
    with transaction.atomic():
        version.schema, version.stats, version.n_rows = result["schema"], result["stats"], result["n_rows"]
        version.stored_bytes = storage.folder_bytes(version.folder)
        version.status, version.error, version.ingested_at = VersionStatus.READY, "", timezone.now()
        version.save()
        dataset = Dataset.objects.select_for_update().get(pk=version.dataset_id)
        fields = []
        if dataset.kind != kind:
            dataset.kind = kind
            fields.append("kind")
        names = [c["name"] for c in result["schema"].get("columns", [])]
        if kind == "table" and names and dataset.target_column not in names:
            dataset.target_column = names[-1]  # the usual place of the target; the user can change it
            fields.append("target_column")
        if fields:
            dataset.save(update_fields=fields)
    _announce(version)
    return version


@transaction.atomic
def dataset_update_columns(*, dataset: Dataset, target_column: str | None = None,
                           ignored_columns: list[str] | None = None) -> Dataset:
    """Mark the target and the ignored columns (run defaults); names must be columns of the latest ready version."""
    version = dataset.latest_ready_version()
    names = [c["name"] for c in (version.schema.get("columns", []) if version else [])]
    if target_column is not None:
        if target_column and target_column not in names:
            raise DatasetError(f"target_column “{target_column}” is not a column of this data set",
                               field="target_column")
        dataset.target_column = target_column
    if ignored_columns is not None:
        unknown = [c for c in ignored_columns if c not in names]
        if unknown:
            raise DatasetError(f"ignored_columns: “{unknown[0]}” is not a column of this data set",
                               field="ignored_columns")
        dataset.ignored_columns = list(dict.fromkeys(ignored_columns))
    if dataset.target_column and dataset.target_column in dataset.ignored_columns:
        raise DatasetError("The target column cannot also be ignored", field="ignored_columns")
    dataset.save(update_fields=["target_column", "ignored_columns"])
    return dataset


def dataset_delete(*, dataset: Dataset, user) -> None:
    """Delete a data set and its files (and its sweeps without runs); refused while a run uses one of
    its versions."""
    folder = dataset.folder
    name, workspace, pk = dataset.name, dataset.workspace, dataset.pk
    try:
        with transaction.atomic():
            dataset.delete()
            activity.record(workspace=workspace, actor=user, verb="deleted", target_type="dataset",
                            target_id=pk, target_label=name)
    except RestrictedError as error:
        count = sum(1 for obj in error.restricted_objects if obj._meta.model_name == "run")
        raise DatasetError(f"“{name}” is used by {count} run{'s' if count != 1 else ''}, so it cannot be deleted; "
                           f"delete those runs first (the dashboard's data set filter lists them).") from None
    shutil.rmtree(folder, ignore_errors=True)
