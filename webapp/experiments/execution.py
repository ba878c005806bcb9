"""Executing one run on a worker: claim it, prepare the data, train with reporting callbacks,
evaluate on the test split, record everything.

The Celery task only calls ``run_execute``. Every write after the claim is fenced by the
attempt number the claim handed out: if the watchdog gave the run to another worker (because
this one stopped beating), this one's late writes change nothing and it stops.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import platform
import subprocess
import threading
import time
import traceback
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from webapp.accounts import activity, webhooks
from webapp.experiments import checkpoints, curves, datasource, explain, monitoring, preparation, pruning, specs
from webapp.experiments.models import MetricRow, Run, RunStatus

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 1.0  # seconds between heartbeats (the timeout is RUN_HEARTBEAT_TIMEOUT ≥ 5 s)
CANCEL_POLL = 0.5  # seconds between looks at cancel_requested
SAMPLE_PREDICTIONS = 25
RESIDUAL_POINTS = 1000
CALIBRATION_BINS = 10
FORECAST_POINTS = 2000  # a series run's test period, true and forecast, at most this many steps drawn
IMPORTANCE_ROWS = 2000  # test rows the permutation importance shuffles (a seeded sample of larger splits)
IMPORTANCE_SHUFFLES = 500  # predictions it may make in all: 5 shuffles per column up to 100 columns, fewer beyond


def heartbeat_fresh(run: Run, now=None) -> bool:
    if run.heartbeat_at is None:
        return False
    now = now or timezone.now()
    return now - run.heartbeat_at < timedelta(seconds=settings.RUN_HEARTBEAT_TIMEOUT)


# ----------------------------------------------------------------------------- claiming


def claim(run_id: int, hostname: str) -> int | None:
    """Mark the run running on this worker and return the attempt number, or None to skip it.

    A second delivery of the same run (acks_late redelivery, a watchdog re-queue racing with a
    slow worker) finds it running with a fresh heartbeat, or finished, and leaves it alone.
    """
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.is_finished:
            return None
        now = timezone.now()
        if run.cancel_requested:
            run.status, run.finished_at = RunStatus.CANCELLED, now
            run.reason = run.reason or "cancelled before it started"
            run.save(update_fields=["status", "finished_at", "reason"])
            return None
        if run.status == RunStatus.RUNNING and heartbeat_fresh(run, now):
            log.info("run %s is already running on %s; this delivery exits", run_id, run.worker)
            return None
        run.status = RunStatus.RUNNING
        run.attempts += 1
        run.worker = hostname[:200]
        run.heartbeat_at = now
        run.started_at = run.started_at or now
        run.reason = ""
        run.traceback_summary = ""
        run.save(update_fields=["status", "attempts", "worker", "heartbeat_at", "started_at", "reason",
                                "traceback_summary"])
        return run.attempts


def _owned(run_id: int, attempt: int):
    return Run.objects.filter(pk=run_id, attempts=attempt, status=RunStatus.RUNNING)


class RunMonitor(threading.Thread):
    """Beats the run's heartbeat and watches for a cancel request, off the training thread."""

    def __init__(self, run_id: int, attempt: int):
        super().__init__(name=f"run-{run_id}-monitor", daemon=True)
        self.run_id, self.attempt = run_id, attempt
        self.cancel = threading.Event()
        self.lost = threading.Event()  # another attempt owns the run now
        self._halt = threading.Event()

    def run(self) -> None:
        last_beat = 0.0
        try:
            while not self._halt.is_set():
                try:
                    now = time.monotonic()
                    if now - last_beat >= HEARTBEAT_EVERY:
                        if not _owned(self.run_id, self.attempt).update(heartbeat_at=timezone.now()):
                            self.lost.set()
                        last_beat = now
                    if Run.objects.filter(pk=self.run_id, cancel_requested=True).exists():
                        self.cancel.set()
                except Exception as error:  # noqa: BLE001 - the database may blink; the next beat retries
                    if not self._halt.is_set():  # once the run is over, a beat that did not land is no loss
                        log.warning("run %s: heartbeat failed: %s", self.run_id, error)
                self._halt.wait(CANCEL_POLL)
        finally:
            connection.close()

    def stop(self) -> None:
        self._halt.set()


# ----------------------------------------------------------------------------- callbacks


def _callback_base():
    from trainer.callbacks import Callback

    return Callback


def _finite(value):
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def clean_logs(logs: dict | None) -> dict:
    values = {}
    for key, value in (logs or {}).items():
        try:
            values[str(key)] = _finite(float(value))
        except (TypeError, ValueError):
            continue
    return values


def greater_is_better(metric: str) -> bool:
    """Whether a higher value of this logged metric (``val_`` or not) is the better one."""
    from trainer.metrics import GREATER_IS_BETTER

    name = metric.removeprefix("val_")
    return name == "acc" or (name != "loss" and bool(GREATER_IS_BETTER.get(name, False)))


def monitored_metric(spec: dict, has_validation: bool) -> tuple[str, bool]:
    """The metric that decides the best epoch, and whether higher is better."""
    metrics = [m if isinstance(m, str) else str(m.get("type", "")) for m in (spec.get("compile") or {}).get("metrics", [])]
    name = ("val_" if has_validation else "") + (metrics[0] if metrics else "loss")
    return name, greater_is_better(name)


def _check_loss(loss, epoch: int) -> None:
    from trainer.core import TrainingError

    if loss is None or math.isfinite(loss):
        return
    what = "NaN" if math.isnan(loss) else "infinite"
    raise TrainingError(f"loss became {what} at epoch {epoch}: try a lower learning rate or scaled inputs")


ROWS_EVERY = 0.25  # seconds between writes of an epoch's metric rows and progress


def make_callbacks(run_id: int, attempt: int, monitor: RunMonitor, *, metric: str, greater: bool,
                   best: float | None, best_epoch: int | None, preprocessing: dict | None = None, loss: str = "",
                   stopping=None):
    Callback = _callback_base()

    class DatabaseReporter(Callback):
        """One MetricRow per epoch (upserted, so a resumed epoch replaces its old row), and checkpoints.

        Rows hold regression errors in the target's own units: the curves, the best metric and the
        dashboard all read them, so they all agree. They are written with the run's progress and
        heartbeat in one transaction, at most every ``ROWS_EVERY`` seconds (the first epoch's at
        once, and always before a checkpoint), so epochs of a few milliseconds are not each a
        transaction; the run page polls every two seconds.

        In a sweep that stops its poor runs (``stopping``, a pruning.Stopping), the reporter asks
        after each epoch whether this run is worse than the others so far; if so it stops training and
        keeps the verdict in ``stopped_early`` for the run's results.

        An epoch's checkpoint is written when ``checkpoints.prune`` would keep it (the best epoch, a
        round one) or when the last write is ``checkpoints.WRITE_EVERY`` seconds old. Otherwise it
        is held in memory and written at the end of training (or replaced by the next epoch's): short
        epochs do not each pay a file, and a worker that dies loses at most those seconds.
        """

        def __init__(self):
            super().__init__()
            self.best, self.best_epoch = best, best_epoch
            self.written_at, self.pending = time.monotonic(), None
            self.rows, self.progress, self.reported_at = [], {}, -math.inf
            self.stopped_early = None

        def _report(self) -> bool:
            """Write the rows and progress held back; False once another worker owns the run."""
            if self.rows:
                with transaction.atomic():
                    if not _owned(run_id, attempt).update(**self.progress):
                        monitor.lost.set()
                        self.model.stop_training = True
                        return False
                    MetricRow.objects.bulk_create(
                        [MetricRow(run_id=run_id, epoch=number, values=values) for number, values in self.rows],
                        update_conflicts=True, unique_fields=["run", "epoch"], update_fields=["values"])
                self.rows, self.progress, self.reported_at = [], {}, time.monotonic()
            return not monitor.lost.is_set()

        def _write(self, number, arrays):
            from trainer import io

            checkpoints.save_atomically(functools.partial(io.write_checkpoint, arrays=arrays),
                                        checkpoints.checkpoint_path(run_id, number))
            checkpoints.prune(run_id, best=self.best_epoch, pinned=lambda: Run.objects.filter(
                parent_id=run_id, from_epoch__isnull=False).values_list("from_epoch", flat=True))
            self.written_at, self.pending = time.monotonic(), None

        def flush(self):
            """Write the rows and the checkpoint held in memory (not once another worker owns the run)."""
            if self._report() and self.pending is not None:
                self._write(*self.pending)

        def on_train_end(self, logs=None):
            self.flush()

        def on_epoch_end(self, epoch, logs=None):
            if monitor.lost.is_set():
                self.model.stop_training = True
                return
            number = int(epoch) + 1
            values = preparation.logs_in_target_units(clean_logs(logs), preprocessing or {}, loss)
            self.rows.append((number, values))
            self.progress.update(epochs_done=number, heartbeat_at=timezone.now())
            value = values.get(metric)
            if value is not None and (self.best is None or (value > self.best if greater else value < self.best)):
                self.best, self.best_epoch = value, number
                self.progress.update(best_metric=value, best_epoch=number, best_metric_name=metric)
            if stopping is not None and not self.model.stop_training:
                self.stopped_early = stopping.verdict(number, self.best)
                if self.stopped_early:
                    log.info("run %s: stopped after epoch %s by its sweep's %s rule", run_id, number, stopping.rule)
                    self.model.stop_training = True
            now = time.monotonic()
            checkpoint_now = (self.best_epoch == number or checkpoints.is_round(number)
                              or now - self.written_at >= checkpoints.WRITE_EVERY)
            if (checkpoint_now or now - self.reported_at >= ROWS_EVERY) and not self._report():
                return
            if checkpoint_now:
                self._write(number, self.model.checkpoint_arrays(number))
            else:
                self.pending = (number, self.model.checkpoint_arrays(number, own=True))

    class CancelWatch(Callback):
        """Stops training between batches soon after someone asks (the monitor reads the flag), and
        fails the run as soon as the loss stops being a number."""

        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = int(epoch) + 1

        def on_batch_end(self, batch, logs=None):
            if monitor.cancel.is_set() or monitor.lost.is_set():
                self.model.stop_training = True
            _check_loss((logs or {}).get("loss"), self.epoch)

        def on_epoch_end(self, epoch, logs=None):
            if monitor.cancel.is_set() or monitor.lost.is_set():
                self.model.stop_training = True
            _check_loss((logs or {}).get("loss"), int(epoch) + 1)

    return DatabaseReporter(), CancelWatch()


# ----------------------------------------------------------------------------- the record


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=settings.BASE_DIR, capture_output=True, text=True,
                             timeout=3, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()[:40]
    except (OSError, subprocess.SubprocessError):
        pass
    return library_versions().get("cupola", "")


@functools.lru_cache(maxsize=1)
def library_versions() -> dict:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("cupola", "numpy", "cupy-cuda12x", "cupy-cuda13x", "pandas", "django", "celery"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def use_device(queue: str) -> str:
    from trainer import backend

    if queue == "gpu" and backend.gpu_available():
        backend.set_device("gpu")
    else:
        backend.set_device("cpu")
    if backend.get_device() == "gpu":
        tf32 = ", TF32 matrix products" if backend.tf32_matmul() else ""
        return f"GPU ({backend.gpu_name()}{tf32})"[:100]
    return f"CPU ({platform.machine()})"


def human_reason(error: BaseException, *, batch_size: int, device: str) -> str:
    from trainer.core import TrainingError

    name = type(error).__name__
    text = str(error)
    if isinstance(error, MemoryError) or "OutOfMemory" in name or "out of memory" in text.lower():
        where = "GPU memory" if device.upper().startswith("GPU") else "memory"
        return f"out of {where}: try batch size {max(1, batch_size // 2)}"
    if isinstance(error, TrainingError):
        return text
    if isinstance(error, (preparation.DataError, specs.SpecInvalid)):
        return text
    if isinstance(error, ValueError):
        return text or name
    return f"{name}: {text}" if text else name


def _traceback_summary(error: BaseException) -> str:
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    return "".join(lines)[-4000:]


def _finish(run_id: int, attempt: int, **fields) -> bool:
    fields.setdefault("finished_at", timezone.now())
    fields["heartbeat_at"] = timezone.now()
    return bool(_owned(run_id, attempt).update(**fields))


def notify_finished(run_id: int) -> None:
    """Tell the run's creator (a notification) and the workspace's webhooks (``run.succeeded``,
    ``run.failed`` or ``run.cancelled``) that it ended; neither may ever fail the run."""
    run = Run.objects.select_related("workspace", "created_by").filter(pk=run_id).first()
    if run is None:
        return
    detail = run.reason if run.status == RunStatus.FAILED else (
        f"{run.best_metric_name} {run.best_metric:.4g}" if run.best_metric is not None else "")
    message = f"{run.display_name} {run.status}" + (f": {detail}" if detail else "")
    try:
        if run.created_by is not None:
            activity.notify(user=run.created_by, workspace=run.workspace, message=message,
                            link=run.get_absolute_url(), level="error" if run.status == RunStatus.FAILED else "info")
        webhooks.dispatch(run.workspace, f"run.{run.status}", {
            "run": run.pk, "name": run.display_name, "status": run.status, "path": run.get_absolute_url(),
            "metric": run.best_metric_name or None, "value": run.best_metric, "best_epoch": run.best_epoch,
            "epochs": run.epochs_done, "test": (run.results or {}).get("test"), "reason": run.reason or None,
            "sweep": run.sweep_id, "started_by": run.created_by.username if run.created_by else None,
        }, text=f"[{run.workspace.name}] {message}")
    except Exception as error:  # noqa: BLE001 - a notification must never fail the run
        log.warning("run %s: could not notify: %s", run_id, error)


# ----------------------------------------------------------------------------- the run


def build_model(spec: dict):
    import trainer

    return trainer.Sequential.from_spec(spec)


def _resume_point(model, run: Run, attempt: int) -> int:
    """Load the newest checkpoint of this run, or the parent's fork point; return the epochs already done."""
    if attempt == 1:  # a first attempt has no checkpoints of its own; anything there is stale
        checkpoints.remove_all(run)
    own = checkpoints.latest(run, at_most=run.epochs_total)
    if own:
        return int(model.load_checkpoint(str(checkpoints.checkpoint_path(run, own))) or own)
    if run.parent_id and run.from_epoch:
        path = checkpoints.path_for(run.parent_id, run.from_epoch)
        if path is None:
            raise preparation.DataError(f"the parent run has no checkpoint for epoch {run.from_epoch}", "from_epoch")
        model.load_checkpoint(str(path))
        parent_spec = Run.objects.filter(pk=run.parent_id).values_list("spec", flat=True).first() or {}
        if (parent_spec.get("compile") or {}) != (run.spec.get("compile") or {}):
            model.optimizer.lr_factor = 1.0  # a fork with its own optimizer settings starts at its own rate
        return int(run.from_epoch)
    return 0


KEPT_RESULTS = ("lr_find", "cross_validation")


def run_execute(run_id: int, *, hostname: str = "") -> str:
    """Train one run to the end. Returns what happened, for the worker's log."""
    attempt = claim(run_id, hostname)
    if attempt is None:
        return "skipped"
    monitor = RunMonitor(run_id, attempt)
    monitor.start()
    batch_size, device, reporter = 32, "", None
    try:
        run = Run.objects.select_related("dataset_version__dataset", "sweep").get(pk=run_id)
        device = use_device(run.queue)
        from trainer import backend as tbackend
        from trainer import spec as tspec

        rss_reset = tbackend.reset_memory_peaks()  # from here on, what this process holds is this run's
        Run.objects.filter(pk=run_id).update(device=device, code_version=code_version(),
                                             library_versions=library_versions())
        spec = dict(run.spec)
        loss = specs.loss_name(spec)
        fit = specs.fit_settings(spec)
        batch_size = fit["batch_size"]
        prepared = datasource.prepare(run.dataset_version, run.data_config, loss=loss)
        spec["input_shape"] = prepared.input_shape  # the data decides, whatever the form guessed
        specs.check_output(spec, {"task": prepared.task, "outputs": prepared.output_units,
                                  "vocabulary_size": prepared.preprocessing.get("vocabulary_size")})
        Run.objects.filter(pk=run_id).update(preprocessing={
            **prepared.preprocessing, "input_shape": prepared.input_shape,
            "class_names": [preparation.tdata._python_scalar(c) for c in prepared.class_names],
            "feature_names": prepared.feature_names[:500]})
        model = build_model(spec)
        initial_epoch = _resume_point(model, run, attempt)
        if fit["find_learning_rate"] and initial_epoch == 0:
            spec, model = _find_learning_rate(run, attempt, spec, model, prepared, fit)
        MetricRow.objects.filter(run_id=run_id, epoch__gt=initial_epoch).delete()  # from an attempt that died
        metric, greater = monitored_metric(spec, prepared.x_val is not None)
        best = MetricRow.objects.filter(run_id=run_id).values_list("epoch", "values")
        best_value, best_epoch = None, None
        for epoch, values in best:
            value = values.get(metric)
            if value is not None and (best_value is None or (value > best_value if greater else value < best_value)):
                best_value, best_epoch = value, epoch
        _owned(run_id, attempt).update(epochs_done=initial_epoch, best_metric=best_value, best_epoch=best_epoch,
                                       best_metric_name=metric)
        reporter, cancel_watch = make_callbacks(run_id, attempt, monitor, metric=metric, greater=greater,
                                                best=best_value, best_epoch=best_epoch,
                                                preprocessing=prepared.preprocessing, loss=loss,
                                                stopping=pruning.for_run(run, metric=metric, greater=greater,
                                                                         epochs=fit["epochs"]))
        # The spec's callbacks first: the reporter's checkpoint of an epoch then holds their state after
        # that epoch (early stopping's count, the plateau cut), so a resumed run goes on as one that never stopped.
        spec_callbacks = tspec.fit_callbacks(fit)
        callbacks = [*spec_callbacks, reporter, cancel_watch]
        if initial_epoch < fit["epochs"]:
            model.fit(prepared.x_train, prepared.y_train, epochs=fit["epochs"], batch_size=batch_size,
                      validation_data=(prepared.x_val, prepared.y_val) if prepared.x_val is not None else None,
                      callbacks=callbacks, initial_epoch=initial_epoch, shuffle=fit["shuffle"], seed=run.seed,
                      verbose=0, class_weight=fit["class_weight"])
        if monitor.lost.is_set():
            return "lost"
        results = evaluate(model, prepared, spec, batch_size)
        stored = Run.objects.values_list("results", flat=True).get(pk=run_id) or {}
        for key in KEPT_RESULTS:  # what was recorded before training: the range test's curve, the CV estimate
            if stored.get(key):
                results[key] = stored[key]
        if model.step_graphs is not None:  # on a GPU: what the fit did with CUDA graphs, for the record
            results["cuda_graphs"] = model.step_graphs
        if model.data_feed is not None:  # whether the training set was kept on the device or read per batch
            results["data_feed"] = model.data_feed
        results["memory"] = dict(tbackend.memory_peaks(), whole_process=not rss_reset)
        stopped = reporter.stopped_early or _early_stopped(spec_callbacks, fit["epochs"])
        if stopped:  # the sweep's stopping rule or the spec's early stopping ended it before its last epoch
            results["stopped_early"] = stopped
        if model.class_weights is not None:  # what each class weighed in the training loss, by name
            names = [str(name) for name in prepared.class_names] or [str(i) for i in range(len(model.class_weights))]
            results["class_weights"] = {"setting": fit["class_weight"] if isinstance(
                fit["class_weight"], str) else "given", "weights": dict(zip(names, model.class_weights))}
        checkpoints.save_atomically(model.save_weights, checkpoints.weights_path(run_id))
        cancelled = monitor.cancel.is_set()
        _finish(run_id, attempt, status=RunStatus.CANCELLED if cancelled else RunStatus.SUCCEEDED, results=results)
        outcome = "cancelled" if cancelled else "succeeded"
    except Exception as error:
        log.exception("run %s failed", run_id)
        try:  # the last good epoch's checkpoint, to fork the failed run from
            if reporter is not None:
                reporter.flush()
        except Exception:
            log.exception("run %s: its last checkpoint could not be written either", run_id)
        _finish(run_id, attempt, status=RunStatus.FAILED, traceback_summary=_traceback_summary(error),
                reason=human_reason(error, batch_size=batch_size, device=device)[:2000])
        outcome = "failed"
    finally:
        monitor.stop()
    notify_finished(run_id)
    return outcome


def _find_learning_rate(run: Run, attempt: int, spec: dict, model, prepared: preparation.Prepared, fit: dict):
    """The range test on the training split, before the first epoch. The run's stored spec then says
    the rate it trains at and no longer asks for the test (a resumed attempt, a continue or a fork
    train at that rate); its results keep the curve. Returns the spec and model to train."""
    from trainer import tuning

    settings = fit["find_learning_rate"]
    found = tuning.lr_find(model, prepared.x_train, prepared.y_train, batch_size=fit["batch_size"],
                           seed=run.seed or 0, **settings)
    optimizer = (run.spec.get("compile") or {}).get("optimizer")
    given = optimizer.get("learning_rate") if isinstance(optimizer, dict) else None  # None: the optimizer's default
    rate = found["suggestion"]
    stored = tuning.with_learning_rate(run.spec, rate) if rate is not None else copy.deepcopy(run.spec)
    stored["fit"] = dict(stored.get("fit") or {}, find_learning_rate=None)
    step = max(1, len(found["learning_rates"]) // 200)
    record = {"settings": settings, "suggestion": rate, "minimum": found["minimum"], "given": given,
              "stopped": found["stopped"], "learning_rates": found["learning_rates"][::step],
              "losses": [_finite(v) for v in found["losses"][::step]]}
    _owned(run.pk, attempt).update(spec=stored, results={"lr_find": record})
    if rate is None:
        return spec, model
    spec = tuning.with_learning_rate(spec, rate)
    return spec, build_model(spec)


def _early_stopped(spec_callbacks, epochs: int) -> dict | None:
    """What the spec's EarlyStopping did, if it ended the fit: the epoch, the metric, the patience and the
    best epoch (whose weights the model holds when restore_best_weights asked for them)."""
    from trainer.callbacks import EarlyStopping

    for callback in spec_callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopped_epoch is not None:
            best = None if callback.best_epoch is None else callback.best_epoch + 1
            return {"rule": "early_stopping", "epoch": callback.stopped_epoch + 1, "epochs": epochs,
                    "metric": callback.monitor, "patience": callback.patience, "best_epoch": best,
                    "restored": bool(callback.restore_best_weights and callback.best_weights is not None)}
    return None


# ----------------------------------------------------------------------------- evaluation


def predict_outputs(model, x, batch_size: int = 256) -> np.ndarray:
    from trainer.backend import to_host

    return np.asarray(to_host(model.predict(x, batch_size=batch_size)), dtype=np.float64)


def _test_loss(model, x, y, batch_size: int):
    try:
        result = model.evaluate(x, y, batch_size=batch_size, verbose=0)
    except TypeError:
        result = model.evaluate(x, y, batch_size=batch_size)
    if isinstance(result, dict):
        return {str(k): _finite(float(v)) for k, v in result.items()}
    if isinstance(result, (list, tuple)):
        return {"loss": _finite(float(result[0]))} if result else {}
    return {"loss": _finite(float(result))}


def evaluate(model, prepared: preparation.Prepared, spec: dict, batch_size: int, *, importance: bool = True) -> dict:
    from trainer import metrics as tmetrics

    loss = specs.loss_name(spec)
    pre = prepared.preprocessing
    if prepared.x_test is None:  # every row trained it (test_fraction 0, a cross-validation's final model)
        results = {"task": prepared.task, "test_rows": 0, "test": {}}
        if prepared.task == "classification":
            results["class_names"] = [str(c) for c in prepared.class_names]
        profile = monitoring.input_profile(prepared.x_train, pre)
        if profile is not None:
            results["input_profile"] = profile
        results["feature_basis"] = _feature_basis(model, prepared.x_train, "training")
        return results
    outputs = predict_outputs(model, prepared.x_test, max(batch_size, 256))
    scores = _test_loss(model, prepared.x_test, prepared.y_test, max(batch_size, 256))
    names = [m if isinstance(m, str) else str(m.get("type", "")) for m in (spec.get("compile") or {}).get("metrics", [])]
    results = {"task": prepared.task, "test_rows": len(prepared.x_test), "test": scores}
    if prepared.task == "classification":
        for name in names + (["accuracy"] if "accuracy" not in names and "acc" not in names else []):
            try:
                scores[name] = _finite(tmetrics.compute(name, prepared.y_test, outputs, loss=loss))
            except ValueError:
                continue
        decoded = preparation.decode_predictions(outputs, pre)
        true_codes = preparation.decode_targets(prepared.y_test, pre)
        classes = decoded["classes"]
        results["class_names"] = [str(c) for c in classes]
        results["confusion_matrix"] = tmetrics.confusion_matrix(
            true_codes, np.asarray(decoded["codes"], dtype=np.int64), num_classes=len(classes)).tolist()
        results["per_class"] = [dict(scores, name=str(name)) for name, scores in zip(
            classes, tmetrics.per_class_scores(results["confusion_matrix"]))]
        found = tmetrics.reliability(true_codes, np.asarray(decoded["probabilities"]), n_bins=CALIBRATION_BINS)
        results["calibration"] = {"ece": _finite(found["ece"]), "bins": [
            {"confidence": float(c), "accuracy": float(a), "rows": int(n)}
            for c, a, n in zip(found["confidence"], found["accuracy"], found["rows"])]}
        scores["calibration error (ECE)"] = _finite(found["ece"])
        roc = results["roc"] = curves.classifier_curves(true_codes, decoded["probabilities"], classes)
        if roc is not None:
            if roc["kind"] == "binary":
                scores["auc"], scores["average precision"] = _finite(roc["auc"]), _finite(roc["average_precision"])
            else:
                for entry, against_rest in zip(results["per_class"], roc["classes"]):
                    entry["auc"] = _finite(against_rest["auc"])
                scores["auc"] = _finite(float(np.mean([c["auc"] for c in roc["classes"] if c["auc"] is not None])))
        samples, wrong = [], []
        for i, (true, code) in enumerate(zip(true_codes.tolist(), decoded["codes"])):
            entry = {"row": prepared.sample_ids[i] if i < len(prepared.sample_ids) else i,
                     "true": str(classes[true]), "predicted": str(classes[code]),
                     "confidence": _finite(float(decoded["probabilities"][i][code]))}
            if len(samples) < SAMPLE_PREDICTIONS:
                samples.append(entry)
            if true != code and len(wrong) < SAMPLE_PREDICTIONS:
                if pre.get("kind") == "images":  # people judge a wrong image by looking at it
                    entry = dict(entry, image=preparation.image_thumbnail(prepared.x_test[i], pre.get("scaling")))
                wrong.append(entry)
        results["samples"], results["misclassified"] = samples, wrong
        if pre.get("kind") == "images":
            try:
                results["saliency"] = explain.image_saliency(model, prepared, true_codes, decoded["codes"],
                                                             decoded["probabilities"], classes)
            except Exception as error:  # the run trained and was scored: this extra must not fail it
                log.exception("saliency maps failed")
                results["saliency"] = {"error": f"{type(error).__name__}: {error}"[:500]}
    else:
        y_true = preparation.decode_targets(prepared.y_test, pre, prepared.x_test)
        y_pred = np.asarray(preparation.decode_predictions(outputs, pre, prepared.x_test)["values"], dtype=np.float64)
        y_pred = y_pred.reshape(len(y_pred), -1)[:, 0]
        # The model learns standardized targets; people read errors in the target's own units.
        scores["loss (standardized)"] = scores.pop("loss", None)
        for name in list(scores):
            if name in names:
                scores[f"{name} (standardized)"] = scores.pop(name)
        for name in ("mae", "rmse", "r2"):
            scores[name] = _finite(tmetrics.compute(name, y_true, y_pred))
        truth = np.asarray(y_true, dtype=np.float64).reshape(len(y_pred), -1)[:, 0]
        # A percentage of the true value: undefined where that is 0 (as decoded, 0 may come back as 1e-16).
        if len(truth) and np.all(np.abs(truth) > 1e-6 * np.abs(truth).max()):
            scores["mape (%)"] = _finite(float(np.mean(np.abs(y_pred - truth) / np.abs(truth)) * 100))
        step = max(1, len(y_true) // RESIDUAL_POINTS)
        results["residuals"] = {"true": [_finite(float(v)) for v in y_true[::step]],
                                "predicted": [_finite(float(v)) for v in y_pred[::step]]}
        if pre.get("kind") == "series":  # the test period in time order: each window's next step, true and forecast
            step = max(1, len(truth) // FORECAST_POINTS)
            results["forecast"] = {
                "time_column": prepared.time_column, "target": pre.get("target", ""), "horizon": pre.get("horizon", 1),
                "time": prepared.test_times[::step] if prepared.test_times else list(range(len(truth)))[::step],
                "true": [_finite(float(v)) for v in truth[::step]],
                "predicted": [_finite(float(v)) for v in y_pred[::step]]}
        results["samples"] = [
            {"row": prepared.sample_ids[i] if i < len(prepared.sample_ids) else i,
             "true": _finite(float(y_true[i])), "predicted": _finite(float(y_pred[i]))}
            for i in range(min(SAMPLE_PREDICTIONS, len(y_true)))]
    profile = monitoring.input_profile(prepared.x_train, pre)
    if profile is not None:  # what a served model's inputs are held against
        results["input_profile"] = profile
    results["feature_basis"] = _feature_basis(model, prepared.x_test, "test")
    if importance and preparation.has_columns(pre):
        try:
            results["importance"] = column_importance(model, prepared, loss, batch_size)
        except Exception as error:  # the run trained and was scored: this extra must not fail it
            log.exception("permutation importance failed")
            results["importance"] = {"error": f"{type(error).__name__}: {error}"[:500]}
    return results


def _feature_basis(model, x, source: str) -> dict | None:
    """monitoring.feature_basis, or None (recorded: looked for) where the model has no hidden layer to watch
    or working it out failed; the run trained and was scored, and this extra must not fail it."""
    try:
        return monitoring.feature_basis(model, x, source=source)
    except Exception:
        log.exception("the hidden layer's reference failed")
        return None


def importance_execute(run_id: int) -> dict:
    """A finished run's column importance, worked out afterwards (for a run from before Cupola
    ranked columns, or whose ranking failed): its data prepared again as it trained on, its final
    model, the same shuffles as at the end of training. Recorded in its results, an error included."""
    from webapp.experiments import prediction

    run = Run.objects.select_related("dataset_version__dataset").get(pk=run_id)
    try:
        loss = specs.loss_name(run.spec)
        prepared = datasource.prepare(run.dataset_version, run.data_config, loss=loss)
        found = column_importance(prediction.load_model(run), prepared, loss, specs.fit_settings(run.spec)["batch_size"])
    except Exception as error:  # the page shows why, instead of waiting forever
        log.exception("run %s: permutation importance failed", run_id)
        found = {"error": f"{type(error).__name__}: {error}"[:500]}
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        run.results = {**(run.results or {}), "importance": found}
        run.save(update_fields=["results"])
    return found


REANALYSED = ("calibration", "roc", "saliency", "input_profile", "feature_basis")


def reanalysis_execute(run_id: int) -> dict:
    """The analyses a finished run scored before Cupola made them lacks (services.missing_analyses), from its data
    prepared again as it trained on and its final model: the same test rows, so its recorded scores stay and
    only what is new is added (new test scores beside the old, each class's AUC). An error is recorded."""
    from webapp.experiments import prediction

    run = Run.objects.select_related("dataset_version__dataset").get(pk=run_id)
    try:
        loss = specs.loss_name(run.spec)
        prepared = datasource.prepare(run.dataset_version, run.data_config, loss=loss)
        fresh = evaluate(prediction.load_model(run), prepared, run.spec, specs.fit_settings(run.spec)["batch_size"],
                         importance=False)
        outcome = {"done": timezone.now().isoformat()}
    except Exception as error:  # the page shows why, instead of waiting forever
        log.exception("run %s: analysing again failed", run_id)
        fresh, outcome = {}, {"error": f"{type(error).__name__}: {error}"[:500]}
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        results = dict(run.results or {})
        for key in REANALYSED:
            if key not in results and key in fresh:
                results[key] = fresh[key]
        old_test = results.get("test") or {}
        results["test"] = {**old_test, **{k: v for k, v in (fresh.get("test") or {}).items() if k not in old_test}}
        if results.get("per_class"):
            by_name = {c.get("name"): c for c in fresh.get("per_class") or []}
            results["per_class"] = [dict({k: v for k, v in by_name.get(c.get("name"), {}).items() if k == "auc"}, **c)
                                    for c in results["per_class"]]
        results["reanalysis"] = outcome
        run.results = results
        run.save(update_fields=["results"])
    return outcome


def column_importance(model, prepared: preparation.Prepared, loss: str, batch_size: int) -> dict:
    """How much the test score drops when each source column is shuffled among the test rows (a
    table's one-hot features together, a series' column at every step of the window): accuracy for
    classifiers, R² for regressors."""
    from trainer import metrics as tmetrics
    from trainer.data import TablePreprocessor
    from trainer.inspection import permutation_importance

    pre = prepared.preprocessing
    metric = "accuracy" if prepared.task == "classification" else "r2"
    if pre["kind"] == "series":
        groups = {column: [i] for i, column in enumerate(pre["columns"])}
    else:
        groups = TablePreprocessor.from_dict(pre["features"]).feature_groups()
    x, y = prepared.x_test, prepared.y_test
    if len(x) > IMPORTANCE_ROWS:
        rows = np.sort(np.random.default_rng(0).choice(len(x), IMPORTANCE_ROWS, replace=False))
        x, y = x[rows], y[rows]
    repeats = max(1, min(5, IMPORTANCE_SHUFFLES // len(groups)))
    # R² is unchanged by the standardisation of the target, so the model's own outputs score it; a series
    # forecasting the change is scored on the change it predicts (its level would hide what shuffling cost).
    found = permutation_importance(model, x, y, groups=groups, n_repeats=repeats, seed=0,
                                   batch_size=max(batch_size, 256),
                                   score=lambda truth, out: tmetrics.compute(metric, truth, out, loss=loss))
    columns = [{"name": name, "mean": _finite(found["importances_mean"][name]),
                "std": _finite(found["importances_std"][name])} for name in groups]
    columns.sort(key=lambda c: -(c["mean"] if c["mean"] is not None else -math.inf))
    scored = "accuracy" if metric == "accuracy" else (
        "R² of the predicted change" if pre["kind"] == "series" and pre.get("forecast") == "change" else "R²")
    return {"metric": metric, "scored": scored, "baseline": _finite(found["baseline"]), "rows": len(x),
            "repeats": repeats, "columns": columns}
