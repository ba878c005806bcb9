"""Training runs, their per-epoch metrics, and sweeps (groups of runs over hyper-parameters)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class Sweep(models.Model):
    """A grid or random search: one run per point of the search space."""

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="sweeps")
    # Its runs protect the version; a sweep whose runs were all deleted goes with its data set.
    dataset_version = models.ForeignKey("datasets.DatasetVersion", on_delete=models.CASCADE, related_name="sweeps")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    name = models.CharField(max_length=120)
    method = models.CharField(max_length=10, default="grid")  # "grid" or "random"
    space = models.JSONField(default=dict)  # {"learning_rate": [..], "batch_size": [..], ...}
    base_spec = models.JSONField(default=dict)
    data_config = models.JSONField(default=dict)
    # {} (every run trains all its epochs) or {"rule": "median" or "asha", "grace_epochs": n, ...}: see pruning.py
    stopping = models.JSONField(default=dict, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)  # what a random search drew its points with
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("sweep-detail", kwargs={"ws": self.workspace.slug, "pk": self.pk})


class Run(models.Model):
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="runs")
    # RESTRICT: a data set used by runs cannot be deleted, but a whole workspace (admin) goes with them
    dataset_version = models.ForeignKey("datasets.DatasetVersion", on_delete=models.RESTRICT, related_name="runs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="runs")
    name = models.CharField(max_length=120, blank=True)
    spec = models.JSONField(default=dict)
    data_config = models.JSONField(default=dict)
    seed = models.BigIntegerField(default=0)
    device_preference = models.CharField(max_length=4, default="auto")  # auto | gpu | cpu

    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    priority = models.PositiveSmallIntegerField(default=5)  # Celery priority on Redis: 0 is first, 9 last
    queue = models.CharField(max_length=20, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    device = models.CharField(max_length=100, blank=True)
    reason = models.TextField(blank=True)  # why it failed or was cancelled, for people
    traceback_summary = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)  # how many times a worker started it
    requeues = models.PositiveIntegerField(default=0)  # how many times the watchdog put it back
    cancel_requested = models.BooleanField(default=False)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    queued_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True)  # when the broker accepted its task message
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    epochs_total = models.PositiveIntegerField(default=0)
    epochs_done = models.PositiveIntegerField(default=0)
    best_metric_name = models.CharField(max_length=60, blank=True)
    best_metric = models.FloatField(null=True, blank=True)
    best_epoch = models.PositiveIntegerField(null=True, blank=True)

    code_version = models.CharField(max_length=64, blank=True)
    library_versions = models.JSONField(default=dict, blank=True)
    preprocessing = models.JSONField(default=dict, blank=True)  # fitted transformers, applied again to predict
    results = models.JSONField(default=dict, blank=True)  # test metrics, confusion matrix, residuals, samples
    # A binary classifier's cut: rows whose positive-class probability is >= it are predicted
    # positive. None: the more likely class (0.5).
    decision_threshold = models.FloatField(null=True, blank=True)

    notes = models.TextField(blank=True)
    starred = models.BooleanField(default=False)
    tags = models.JSONField(default=list, blank=True)

    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    from_epoch = models.PositiveIntegerField(null=True, blank=True)  # the parent's checkpoint it starts from
    sweep = models.ForeignKey(Sweep, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    sweep_params = models.JSONField(default=dict, blank=True)
    # A cross-validation's final model: trained on every row at one of its points (services.sweep_refit)
    refit_of = models.ForeignKey(Sweep, null=True, blank=True, on_delete=models.SET_NULL, related_name="refits")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["workspace", "-created_at"])]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.name or f"Run #{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or timezone.now()
        return max(0.0, (end - self.started_at).total_seconds())

    @property
    def checkpoint_dir(self):
        return settings.DATA_DIR / "runs" / str(self.pk)

    def get_absolute_url(self) -> str:
        return reverse("run-detail", kwargs={"ws": self.workspace.slug, "pk": self.pk})


class MetricRow(models.Model):
    """One epoch of one run: every value the engine logged at the end of the epoch."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metric_rows")
    epoch = models.PositiveIntegerField()  # 1-based, as people count epochs
    values = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "epoch"]
        constraints = [models.UniqueConstraint(fields=["run", "epoch"], name="one_metric_row_per_epoch")]

    def __str__(self) -> str:
        return f"{self.run_id}@{self.epoch}"


class RegisteredModel(models.Model):
    """A named model of a workspace (the registry): numbered versions, each a finished run with its weights, one of
    them in production, which predictions and downloads by the model's name use."""

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="registered_models")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    production = models.ForeignKey("ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # What the last drift check found ("", "too few", "same", "some", "different") and when (monitoring.py).
    drift_state = models.CharField(max_length=10, blank=True)
    drift_checked_at = models.DateTimeField(null=True, blank=True)
    drift_limits = models.JSONField(default=dict, blank=True)  # its own (monitoring.check_limits), else the defaults

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], name="one_model_per_name")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("model-detail", kwargs={"ws": self.workspace.slug, "pk": self.pk})


class ModelVersion(models.Model):
    """Version ``number`` of a registered model: a finished run, its weights and preprocessing
    (the run cannot be deleted on its own while it is registered; with its whole workspace it can)."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    run = models.ForeignKey(Run, on_delete=models.RESTRICT, related_name="model_versions")
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model", "-number"]
        constraints = [models.UniqueConstraint(fields=["model", "number"], name="one_model_version_per_number"),
                       models.UniqueConstraint(fields=["model", "run"], name="a_run_once_per_model")]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.number}"


class PredictionLog(models.Model):
    """One prediction or forecast request a registered model answered (or refused), by its name: who asked,
    which version answered, how many rows, and a summary of what it predicted (see monitoring.py)."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="prediction_logs")
    # The version's number stays readable after the version is removed.
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    number = models.PositiveIntegerField()
    caller = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=10, default="predict")  # predict | forecast
    rows = models.PositiveIntegerField(default=0)
    refused = models.CharField(max_length=300, blank=True)  # why the input was refused; "" when answered
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["model", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.model_id} v{self.number} {self.rows} rows"


class PredictionJob(models.Model):
    """A finished run's predictions for every row (or image) of a data set version, worked out by a worker and
    kept as a CSV file beside the run (see batch.py)."""

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="prediction_jobs")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="prediction_jobs")
    dataset_version = models.ForeignKey("datasets.DatasetVersion", on_delete=models.CASCADE, related_name="prediction_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    rows = models.PositiveIntegerField(default=0)  # predicted so far
    total = models.PositiveIntegerField(null=True, blank=True)  # rows (or images) in the data set, once read
    reason = models.TextField(blank=True)
    # Held against the data set's own answers where it has them (batch.JobScore), with the test split's scores
    scores = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"predictions of run {self.run_id} on version {self.dataset_version_id}"

    @property
    def score_line(self) -> str:
        from webapp.experiments.batch import score_line

        return score_line(self.scores)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES
