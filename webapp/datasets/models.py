"""Data sets and their immutable versions.

A ``Dataset`` is a name in a workspace; each upload makes a ``DatasetVersion`` whose files
live under ``DATA_DIR/datasets/<dataset id>/v<number>/`` with generated names. Once a
version is ``ready`` its files, schema and statistics never change; runs point at it.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone


class DatasetKind(models.TextChoices):
    TABLE = "table", "Table"
    IMAGES = "images", "Images"
    SERIES = "series", "Time series"


class VersionStatus(models.TextChoices):
    UPLOADED = "uploaded", "Uploaded"
    INGESTING = "ingesting", "Ingesting"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class Dataset(models.Model):
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, max_length=5000)
    kind = models.CharField(max_length=10, choices=DatasetKind.choices, default=DatasetKind.TABLE)
    # Run defaults chosen on the data set page; names of columns of the latest ready version.
    target_column = models.CharField(max_length=500, blank=True)
    ignored_columns = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def folder(self) -> Path:
        return Path(settings.DATA_DIR) / "datasets" / str(self.pk)

    def latest_version(self):
        return self.versions.order_by("-number").first()

    def latest_ready_version(self):
        return self.versions.filter(status=VersionStatus.READY).order_by("-number").first()


class DatasetVersion(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=VersionStatus.choices, default=VersionStatus.UPLOADED)
    error = models.TextField(blank=True)  # shown to users: names the line, column or file; never a traceback
    content_hash = models.CharField(max_length=64)  # sha256 of the uploaded bytes
    original_filename = models.CharField(max_length=255, blank=True)  # for display only, never a path
    size_bytes = models.BigIntegerField(default=0)  # the upload
    stored_bytes = models.BigIntegerField(default=0)  # what ingestion wrote
    options = models.JSONField(default=dict, blank=True)  # ingestion choices: {"kind": "series", "image_size": [h, w]}
    schema = models.JSONField(default=dict, blank=True)
    stats = models.JSONField(default=dict, blank=True)
    n_rows = models.BigIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    ingested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="one_number_per_dataset_version")]

    def __str__(self) -> str:
        return f"{self.dataset.name} v{self.number}"

    @property
    def folder(self) -> Path:
        return self.dataset.folder / f"v{self.number}"

    @property
    def is_ready(self) -> bool:
        return self.status == VersionStatus.READY

    @property
    def is_finished(self) -> bool:
        return self.status in (VersionStatus.READY, VersionStatus.FAILED)

    @property
    def workspace(self):
        return self.dataset.workspace
