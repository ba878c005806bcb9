"""Predictions for a whole data set version on a worker (a prediction job): every row of a table, or
every image, through a finished run's stored preprocessing and final weights, in chunks, into a
CSV file beside the run (``runs/<run>/predictions/<job>.csv``).

The CSV holds what a prediction request returns (an identifier, the prediction, for classifiers
the confidence and each class's probability, cut at the run's decision threshold), and the
data set's own answer where it has one (its target column, an image's folder) as ``actual``.
Where it has them, the job scores the model against those answers as its evaluation scored it on
its test split (``JobScore``: accuracy, each class's precision and recall and the confusion
matrix; or MAE, RMSE and R²), with the test split's scores beside them, so a model in production
can be held against newly labelled data, and two versions against the same rows.
A job beats a heartbeat after every chunk; the watchdog fails a running job whose heartbeat
stopped (its worker died), so none stays "running".
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from webapp.experiments import checkpoints, preparation
from webapp.experiments.models import PredictionJob, RunStatus

log = logging.getLogger(__name__)

CHUNK_ROWS = 20_000
MAX_ACTIVE_PER_RUN = 3
# What a run's input kind predicts from: a text run reads a table's text column, a series run a series.
DATA_KINDS = {"table": ("table",), "text": ("table",), "series": ("series",), "images": ("images",)}


def input_columns(pre: dict) -> list[str]:
    """The columns of a table or series a run's model reads (none for images)."""
    from trainer.data import TablePreprocessor

    kind = pre.get("kind")
    if kind == "table":
        table = TablePreprocessor.from_dict(pre["features"])
        return [*table.numeric_columns, *table.categorical_columns]
    if kind == "text":
        return [pre["text_column"]]
    return list(pre.get("columns") or []) if kind == "series" else []


def missing_columns(run, version) -> list[str]:
    """The columns the run's model reads that the data set version lacks (a job for it would fail on them)."""
    held = {column["name"] for column in (version.schema or {}).get("columns") or []}
    return [column for column in input_columns(run.preprocessing or {}) if column not in held]


def output_path(job) -> Path:
    return checkpoints.run_dir(job.run_id) / "predictions" / f"{job.pk}.csv"


def download_name(job) -> str:
    return f"run-{job.run_id}-predictions-{job.pk}.csv"


def _chunks(run, version):
    """(inputs, identifiers, identifier column, actual answers or None) per chunk, and the total rows."""
    from webapp.datasets import storage

    pre = run.preprocessing
    kind = pre.get("kind")
    if kind == "images":
        images, labels, classes = storage.load_images(version)
        total = len(images)

        def image_chunks():
            for start in range(0, total, CHUNK_ROWS):
                stop = min(start + CHUNK_ROWS, total)
                yield (preparation.transform_images(np.asarray(images[start:stop]), pre), list(range(start + 1, stop + 1)),
                       "image", [str(classes[int(code)]) for code in labels[start:stop]])
        return image_chunks(), total
    frame = storage.load_table(version)
    target = pre.get("target") if pre.get("target") in frame.columns else None
    if kind == "series":  # windows overlap: one chunk
        x = preparation.transform_series(frame, pre)
        ids = list(range(pre["window"], pre["window"] + len(x)))
        return iter([(x, ids, "last_step", None)]), len(x)
    transform = preparation.transform_text if kind == "text" else preparation.transform_table
    total = len(frame)

    def table_chunks():
        for start in range(0, total, CHUNK_ROWS):
            part = frame.iloc[start:start + CHUNK_ROWS]
            actual = part[target].astype(object).where(part[target].notna(), None).tolist() if target else None
            yield transform(part, pre), list(range(start + 1, start + len(part) + 1)), "row", actual
    return table_chunks(), total


MAX_SCORED_CLASSES = 50  # a confusion matrix and the per-class scores for at most this many classes


def _label(value) -> str:
    """A class as the data set and the model both name it: 1, 1.0 and "1" alike."""
    text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return text[:-2] if text.endswith(".0") and text[:-2].lstrip("-").isdigit() else text


class JobScore:
    """A job's predictions held against the data set's own answers, a chunk at a time: a classifier's
    confusion counts (an answer the model has no class for counts as wrong), a regressor's sums of errors."""

    def __init__(self, run, version=None):
        self.task = (run.preprocessing or {}).get("task")
        # The data the run trained on: its training rows are among those scored, so the score flatters it.
        self.own_data = version is not None and version.pk == run.dataset_version_id
        self.test = (run.results or {}).get("test") or {}
        self.classes: list[str] = []
        self.pairs: dict[tuple[str, str], int] = {}
        self.missing = self.not_numeric = 0
        self.n, self.sums = 0, np.zeros(4)  # squared errors, absolute errors, answers, squared answers

    def add(self, result: dict, actual: list) -> None:
        at = result["columns"].index("prediction") if "prediction" in result["columns"] else 1
        predicted = [row[at] for row in result["rows"]]
        if self.task == "classification":
            self.classes = self.classes or [_label(c[2:-1]) for c in result["columns"] if c.startswith("p(")]
            for answer, guess in zip(actual, predicted):
                if answer is None:
                    self.missing += 1
                    continue
                key = (_label(answer), _label(guess))
                self.pairs[key] = self.pairs.get(key, 0) + 1
            return
        for answer, guess in zip(actual, predicted):
            try:
                answer = float(answer)
            except (TypeError, ValueError):
                self.not_numeric += answer is not None
                self.missing += answer is None
                continue
            if not np.isfinite(answer) or guess is None or not np.isfinite(float(guess)):
                self.missing += 1
                continue
            error = float(guess) - answer
            self.n += 1
            self.sums += (error * error, abs(error), answer, answer * answer)

    def result(self) -> dict:
        """The scores (empty where no row had an answer), with the test split's same scores as ``test``."""
        if self.task == "classification":
            scored = sum(self.pairs.values())
            if not scored:
                return {}
            index = {name: i for i, name in enumerate(self.classes)}
            matrix = np.zeros((len(self.classes), len(self.classes)), dtype=np.int64)
            unknown: dict[str, int] = {}
            for (answer, guess), n in self.pairs.items():
                if answer in index and guess in index:
                    matrix[index[answer], index[guess]] += n
                else:
                    unknown[answer] = unknown.get(answer, 0) + n
            found = {"task": "classification", "rows": scored, "missing": self.missing,
                     "accuracy": float(np.trace(matrix) / scored),
                     "unknown": {"rows": sum(unknown.values()), "labels": sorted(unknown, key=lambda k: -unknown[k])[:5]}}
            if len(self.classes) <= MAX_SCORED_CLASSES:
                from trainer import metrics as tmetrics

                found["class_names"] = self.classes
                found["confusion_matrix"] = matrix.tolist()
                found["per_class"] = [dict(scores, name=name) for name, scores in
                                      zip(self.classes, tmetrics.per_class_scores(matrix))]
            names = ["accuracy"]
        else:
            if not self.n:
                return {"missing": self.missing, "not_numeric": self.not_numeric} if self.not_numeric else {}
            squared, absolute, total, squares = self.sums
            spread = squares - total * total / self.n
            found = {"task": "regression", "rows": self.n, "missing": self.missing, "not_numeric": self.not_numeric,
                     "mae": absolute / self.n, "rmse": float(np.sqrt(squared / self.n)),
                     "r2": 1 - squared / spread if spread > 0 else None}
            names = ["mae", "rmse", "r2"]
        found["test"] = {name: self.test.get(name) for name in names}
        if self.own_data:
            found["own_data"] = True
        return found


def score_line(scores: dict) -> str:
    """A job's scores in a few words, beside its test split's: "accuracy 0.947 (0.967 on its test split)"."""
    if not scores or not scores.get("rows"):
        return ""
    names = ["accuracy"] if scores.get("task") == "classification" else ["rmse", "r2"]
    parts = []
    for name in names:
        value, test = scores.get(name), (scores.get("test") or {}).get(name)
        if value is None:
            continue
        label = {"r2": "R²", "rmse": "RMSE"}.get(name, name)
        parts.append(f"{label} {value:.4g}" + (f" ({test:.4g} on its test split)" if test is not None else ""))
    line = ", ".join(parts) + f" on {scores['rows']:,} answered row{'s' if scores['rows'] != 1 else ''}"
    if scores.get("own_data"):
        line += " (the data it trained on: most of these rows trained it)"
    unknown = (scores.get("unknown") or {}).get("rows")
    if unknown:
        line += f"; {unknown:,} of them in classes it does not know ({', '.join(scores['unknown']['labels'])})"
    return line


def claim(job_id: int) -> PredictionJob | None:
    with transaction.atomic():
        job = PredictionJob.objects.select_for_update().select_related("run", "dataset_version").filter(pk=job_id).first()
        if job is None or job.status != RunStatus.QUEUED:
            return None  # removed, or a redelivered message of a job that ran
        now = timezone.now()
        job.status, job.started_at, job.heartbeat_at = RunStatus.RUNNING, now, now
        job.save(update_fields=["status", "started_at", "heartbeat_at"])
    return job


def _finish(job_id: int, **fields) -> None:
    PredictionJob.objects.filter(pk=job_id, status=RunStatus.RUNNING).update(finished_at=timezone.now(), **fields)


def job_execute(job_id: int, *, queue: str = "default") -> str:
    """Work out a queued job's predictions, on the GPU when it came by the ``gpu`` queue and one is here (else
    the CPU, whatever the process's last run used); its status says how it ended (a failure with the reason)."""
    from webapp.experiments.execution import use_device
    from webapp.experiments.prediction import load_model, predict_arrays

    job = claim(job_id)
    if job is None:
        return "skipped"
    use_device(queue)
    target = output_path(job)
    partial = target.with_suffix(".part")
    try:
        chunks, total = _chunks(job.run, job.dataset_version)
        PredictionJob.objects.filter(pk=job.pk).update(total=total)
        model, done, score = load_model(job.run), 0, JobScore(job.run, job.dataset_version)
        partial.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            for x, ids, id_name, actual in chunks:
                result = predict_arrays(job.run, x, ids, id_name, model=model, features=False)
                if done == 0:
                    writer.writerow(result["columns"] + (["actual"] if actual is not None else []))
                if actual is not None:
                    score.add(result, actual)
                for i, row in enumerate(result["rows"]):
                    cells = row + ([actual[i]] if actual is not None else [])
                    # A cell starting with = + - @ would be a formula in a spreadsheet; quote it as text.
                    writer.writerow([f"'{c}" if isinstance(c, str) and c[:1] in "=+-@" else c for c in cells])
                done += len(result["rows"])
                if not PredictionJob.objects.filter(pk=job.pk).update(rows=done, heartbeat_at=timezone.now()):
                    partial.unlink(missing_ok=True)
                    return "removed"  # deleted with its run or data set while it worked
        partial.replace(target)
    except ValueError as error:  # the data does not fit the model (a DataError, a version not ready): the reason
        partial.unlink(missing_ok=True)
        message = str(error).replace("the file has", "the data set has").replace("the file", "the data set")
        _finish(job.pk, status=RunStatus.FAILED, reason=f"{job.dataset_version}: {message}"[:2000])
        notify_finished(job.pk)
        return "failed"
    except Exception as error:
        log.exception("prediction job %s failed", job.pk)
        partial.unlink(missing_ok=True)
        _finish(job.pk, status=RunStatus.FAILED, reason=f"{type(error).__name__}: {error}"[:2000])
        notify_finished(job.pk)
        return "failed"
    _finish(job.pk, status=RunStatus.SUCCEEDED, rows=done, scores=score.result())
    notify_finished(job.pk)
    return "succeeded"


def notify_finished(job_id: int) -> None:
    """Tell whoever started the job (a notification) and the workspace's webhooks (``prediction_job.succeeded`` or
    ``prediction_job.failed``) that it ended; neither may fail it."""
    from django.urls import reverse

    from webapp.accounts import activity, webhooks

    job = PredictionJob.objects.select_related("workspace", "run", "dataset_version__dataset", "created_by").filter(
        pk=job_id).first()
    if job is None:
        return
    try:
        path = reverse("run-predict", kwargs={"ws": job.workspace.slug, "pk": job.run_id}) + "#jobs"
        detail = job.reason
        if job.status == RunStatus.SUCCEEDED:
            detail = f"{job.rows:,} rows" + (f"; {line}" if (line := score_line(job.scores)) else "")
        message = f"Predictions of {job.run.display_name} on {job.dataset_version} {job.status}: {detail}"
        if job.created_by is not None:
            activity.notify(user=job.created_by, workspace=job.workspace, message=message, link=path,
                            level="error" if job.status == RunStatus.FAILED else "info")
        webhooks.dispatch(job.workspace, f"prediction_job.{job.status}", {
            "job": job.pk, "run": job.run_id, "dataset_version": job.dataset_version_id, "status": job.status,
            "rows": job.rows, "reason": job.reason or None, "path": path, "scores": job.scores or None,
            "download": f"/api/v1/prediction-jobs/{job.pk}/download" if job.status == RunStatus.SUCCEEDED else None,
        }, text=f"[{job.workspace.name}] {message}")
    except Exception as error:  # noqa: BLE001 - a notification must never fail the job
        log.warning("prediction job %s: could not notify: %s", job_id, error)


def fail_stale(cutoff) -> list[int]:
    """Fail running jobs whose heartbeat is older than ``cutoff`` (their worker stopped)."""
    stale = list(PredictionJob.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True))
    for job_id in stale:
        job = PredictionJob.objects.filter(pk=job_id).first()
        if job is None:
            continue
        failed = PredictionJob.objects.filter(pk=job_id, status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).update(
            status=RunStatus.FAILED, finished_at=timezone.now(),
            reason=f"the worker stopped responding after {job.rows} of {job.total or '?'} rows; start it again")
        output_path(job).with_suffix(".part").unlink(missing_ok=True)
        if failed:
            notify_finished(job_id)
    return stale


@receiver(post_delete, sender=PredictionJob)
def _remove_file(sender, instance, **kwargs):
    """A job deleted (with its data set, its run or its workspace) takes its file along."""
    output_path(instance).unlink(missing_ok=True)
