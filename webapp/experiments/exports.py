"""Files and answers about a run's model: spec JSON, weights, ONNX, every epoch's metrics as CSV, the
builder's live summary, a Python snippet."""

from __future__ import annotations

import csv
import io
import json

from django.http import FileResponse, Http404, HttpResponse, JsonResponse

from webapp.experiments import checkpoints, datasource, specs
from webapp.experiments.prediction import to_csv
from webapp.experiments.preparation import DataError


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401

        import trainer.onnx_export  # noqa: F401
    except ImportError:
        return False
    return True


def spec_response(run) -> JsonResponse:
    spec = dict(run.spec)
    if run.preprocessing.get("input_shape"):
        spec["input_shape"] = run.preprocessing["input_shape"]
    response = JsonResponse(spec, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-spec.json"'
    return response


def csv_attachment(result: dict, filename: str) -> HttpResponse:
    """Predictions or a forecast ({"columns", "rows"}) as a CSV download."""
    response = HttpResponse(to_csv(result), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def preprocessing_response(run) -> JsonResponse:
    """What the run's worker fitted on its training split to turn data into the model's inputs and its
    outputs back into the data's terms: a table's scaling and categories, a text column's vocabulary, a
    series' window and statistics, the class names or the target's scaling."""
    if not run.preprocessing:
        raise Http404("This run has not prepared its data yet")
    response = JsonResponse(run.preprocessing, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-preprocessing.json"'
    return response


def prediction_job_response(job) -> FileResponse:
    from webapp.experiments import batch

    path = batch.output_path(job)
    if job.status != "succeeded" or not path.exists():
        raise Http404("This prediction job has no file (yet)")
    return FileResponse(open(path, "rb"), as_attachment=True, filename=batch.download_name(job), content_type="text/csv")


def weights_response(run) -> FileResponse:
    path = checkpoints.weights_path(run)
    if not path.exists():
        raise Http404("This run has no weights yet")
    return FileResponse(open(path, "rb"), as_attachment=True, filename=f"run-{run.pk}-weights.npz",
                        content_type="application/octet-stream")


def onnx_response(run) -> FileResponse:
    if not onnx_available():
        raise Http404("ONNX export needs the onnx package on the server")
    weights = checkpoints.weights_path(run)
    if not weights.exists():
        raise Http404("This run has no weights yet")
    path = checkpoints.onnx_path(run)
    if not path.exists() or path.stat().st_mtime < weights.stat().st_mtime:
        from trainer.onnx_export import export_onnx
        from webapp.experiments.prediction import load_model

        model = load_model(run)
        checkpoints.save_atomically(lambda tmp: export_onnx(model, tmp, tuple(run.preprocessing["input_shape"])), path)
    return FileResponse(open(path, "rb"), as_attachment=True, filename=f"run-{run.pk}-model.onnx",
                        content_type="application/octet-stream")


def metrics_csv_response(run) -> HttpResponse:
    """Every epoch's values, one row per epoch (not thinned like the curves), a column per metric in
    the order they first appear; an empty cell where an epoch has no value for one."""
    rows = list(run.metric_rows.order_by("epoch").values_list("epoch", "values"))
    names = list(dict.fromkeys(name for _, values in rows for name in values))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["epoch", *names])
    for epoch, values in rows:
        writer.writerow([epoch, *(("" if values.get(name) is None else repr(values[name])) for name in names)])
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-metrics.csv"'
    return response


def python_snippet(run, base_url: str = "") -> str:
    return f'''import json
from trainer import Sequential

# Downloaded from this run's page: the spec, the weights and the preprocessing.
spec = json.load(open("run-{run.pk}-spec.json"))
model = Sequential.from_spec(spec)
model.load_weights("run-{run.pk}-weights.npz")
pre = json.load(open("run-{run.pk}-preprocessing.json"))

# Inputs are prepared as the training data was (or let the server do it:
# POST a CSV to {base_url}/api/v1/runs/{run.pk}/predict)
{_inputs(run)}outputs = model.predict(x)
{_outputs(run)}'''


def _inputs(run) -> str:
    kind = (run.preprocessing or {}).get("kind")
    if kind == "table":
        return ("from trainer.data import TablePreprocessor\n"
                "x = TablePreprocessor.from_dict(pre[\"features\"]).transform(frame)  # frame: a pandas DataFrame\n")
    if kind == "text":
        return ("from trainer.data import TextVectorizer\n"
                f"x = TextVectorizer.from_dict(pre[\"vectorizer\"]).transform(texts)  # texts: the "
                f"{run.preprocessing.get('text_column', 'text')!r} column\n")
    if kind == "series":
        return ("import numpy as np\n"
                "values = (frame[pre[\"columns\"]].to_numpy() - pre[\"mean\"]) / pre[\"scale\"]  # oldest first\n"
                "x = np.lib.stride_tricks.sliding_window_view(values, pre[\"window\"], axis=0)"
                ".transpose(0, 2, 1).astype(\"float32\")\n")
    if kind == "images":
        return "x = images / 255.0  # (N, H, W, C) uint8, as trained with image scaling \"unit\"\n"
    return ""


def _outputs(run) -> str:
    pre = run.preprocessing or {}
    if pre.get("task") == "classification":
        return "labels = [pre[\"labels\"][\"classes\"][i] for i in outputs.argmax(axis=1)]\n"
    if pre.get("kind") == "series":
        offset = " + x[:, -1, :1]" if pre.get("forecast") == "change" else ""
        note = ("# This model forecasts the change from each window's last value (standardized).\n"
                if offset else "")
        return f"{note}values = (outputs{offset}) * pre[\"scale\"][0] + pre[\"mean\"][0]\n"
    if pre.get("target_scaler"):
        return ("from trainer.data import TargetScaler\n"
                "values = TargetScaler.from_dict(pre[\"target_scaler\"]).inverse_transform(outputs)\n")
    return ""


def summary_answer(workspace, spec, version_id, data_config) -> JsonResponse:
    """{"summary": …, "data": …} or {"errors": [{"field", "message"}]} (status 200 either way: the builder
    shows messages beside the fields while the user types)."""
    data = None
    input_shape = None
    if version_id:
        from webapp.datasets.models import DatasetVersion

        version = DatasetVersion.objects.select_related("dataset").filter(
            pk=version_id, dataset__workspace=workspace).first()
        if version is None:
            return JsonResponse({"errors": [{"field": "dataset_version", "message": "no such data set version"}]})
        try:
            data = datasource.describe(version, data_config or {})
            input_shape = data["input_shape"]
        except DataError as error:
            return JsonResponse({"errors": [{"field": error.field or "data_config", "message": str(error)}]})
        except Exception as error:  # noqa: BLE001 - an unreadable version must not break the builder
            return JsonResponse({"errors": [{"field": "dataset_version", "message": str(error)}]})
    if not isinstance(spec, dict):
        return JsonResponse({"errors": [{"field": "spec", "message": "must be a JSON object"}], "data": data})
    checked = dict(spec)
    if input_shape:
        checked["input_shape"] = input_shape
    try:
        normalised = specs.validate_spec(checked)
        summary = specs.summarize(normalised, input_shape)
    except specs.SpecInvalid as error:
        return JsonResponse({"errors": error.errors, "data": data})
    mismatch = specs.data_error(normalised, summary, data)
    answer = {"summary": summary, "data": data, "errors": [mismatch] if mismatch else []}
    return JsonResponse(json.loads(json.dumps(answer, default=str)))
