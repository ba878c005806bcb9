"""Using a trained run: load its model, read a file in the training format, predict.

The run's stored preprocessing (fitted on its training split) is applied to the new rows, so
predictions match what ``trainer`` gives for the same inputs.
"""

from __future__ import annotations

import copy
import csv
import io
import zipfile
from collections import OrderedDict

import numpy as np

from webapp.experiments import checkpoints, monitoring, preparation
from webapp.experiments.preparation import DataError

MAX_ROWS = 100_000
MAX_IMAGES = 2_000
_models: OrderedDict = OrderedDict()


def load_model(run):
    """The run's final model, cached per process (keyed by the weights file's mtime)."""
    import trainer

    path = checkpoints.weights_path(run)
    if not path.exists():
        raise DataError("this run has no trained weights to predict with", "run")
    from trainer import backend

    key = (run.pk, path.stat().st_mtime_ns, backend.get_device())  # a worker's runs may switch the device
    if key in _models:
        _models.move_to_end(key)
        return _models[key]
    spec = copy.deepcopy(run.spec)
    spec["input_shape"] = run.preprocessing.get("input_shape") or spec.get("input_shape")
    model = trainer.Sequential.from_spec(spec)
    model.load_weights(str(path))
    _models[key] = model
    while len(_models) > 4:
        _models.popitem(last=False)
    return model


DELIMITERS = ",;\t|"


def _delimiter(raw: bytes) -> str:
    """The file's delimiter among , ; tab and |, a comma when it cannot tell (a file of one column:
    pandas' own sniffing would take a letter common to every line for one)."""
    try:
        return csv.Sniffer().sniff(raw[:65536].decode("utf-8", errors="replace"), delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def read_table_file(raw: bytes, pre: dict):
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(raw), nrows=MAX_ROWS + 1, sep=_delimiter(raw))
    except Exception as error:  # noqa: BLE001 - pandas raises many kinds on a malformed CSV
        raise DataError(f"the file is not a readable CSV ({type(error).__name__})", "file") from None
    if len(frame) > MAX_ROWS:
        raise DataError(f"at most {MAX_ROWS:,} rows at a time", "file")
    if len(frame) == 0:
        raise DataError("the file has no rows", "file")
    frame.columns = [str(c) for c in frame.columns]
    categorical = (pre.get("features") or {}).get("categorical_columns", [])
    for column in categorical:
        if column in frame.columns:
            # Ingestion stores categories as strings; read 1 and "1" as the same category.
            frame[column] = frame[column].map(lambda v: None if pd.isna(v) else _as_category(v))
    return frame


def _answers_in(frame, pre: dict) -> list | None:
    """The answers an uploaded table holds: its target column's values (None where one is missing), or None
    where it has no such column."""
    target = pre.get("target")
    if not target or target not in frame.columns:
        return None
    values = frame[target]
    return values.astype(object).where(values.notna(), None).tolist()


def _folder_answers(names: list[str], pre: dict) -> list | None:
    """An image zip's class folders as its answers (as a data set's are), where every image sits in a folder and
    some folder is named as one of the model's classes; else None."""
    classes = {str(c) for c in (pre.get("labels") or {}).get("classes", [])}
    folders = [name.rsplit("/", 2)[-2] if "/" in name else None for name in names]
    if not classes or None in folders or not classes.intersection(folders):
        return None
    return folders


def _as_category(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _image_items(raw: bytes, filename: str, items: list) -> None:
    """Add ``(name, bytes)`` for each image in one upload: a zip in the training format, or one image."""
    if zipfile.is_zipfile(io.BytesIO(raw)):
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            for info in archive.infolist():
                if info.is_dir() or info.file_size > 20 * 1024 * 1024:
                    continue
                if len(items) >= MAX_IMAGES:
                    raise DataError(f"at most {MAX_IMAGES} images at a time", "file")
                # The path inside the zip: class folders may reuse file names.
                items.append((info.filename, archive.read(info)))
    else:
        if len(items) >= MAX_IMAGES:
            raise DataError(f"at most {MAX_IMAGES} images at a time", "file")
        items.append((filename or "image", raw))


def read_images_files(uploads, pre: dict) -> tuple[np.ndarray, list[str]]:
    """Images decoded the way ingestion decoded the training set: same mode, bilinear resize only
    when the size differs. ``uploads`` is a list of ``(bytes, filename)``."""
    from PIL import Image, UnidentifiedImageError

    height, width, channels = pre["image_shape"]
    mode = "L" if channels == 1 else "RGB"
    items: list[tuple[str, bytes]] = []
    for raw, filename in uploads:
        _image_items(raw, filename, items)
    arrays, names = [], []
    for name, data in items:
        try:
            with Image.open(io.BytesIO(data)) as image:
                image = image.convert(mode)
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            continue  # not an image (a stray file in the zip)
        arrays.append(array.reshape(height, width, channels))
        names.append(name)
    if not arrays:
        raise DataError("no readable images in the file", "file")
    return np.stack(arrays), names


def read_images_file(raw: bytes, filename: str, pre: dict) -> tuple[np.ndarray, list[str]]:
    return read_images_files([(raw, filename)], pre)


def predict_uploads(run, uploads, *, explain: bool = False) -> dict:
    """Predictions for uploaded files, a list of ``(bytes, filename)``: several only for images. With
    ``explain``, an image classifier's answer also holds ``pictures``: its first images with their saliency
    maps for the predicted class (see explain.py)."""
    uploads = list(uploads)
    if not uploads:
        raise DataError("file: choose a file", "file")
    if (run.preprocessing or {}).get("kind") == "images":
        pre = run.preprocessing
        images, ids = read_images_files(uploads, pre)
        return predict_arrays(run, preparation.transform_images(images, pre), ids, "file", explain=explain,
                              actual=_folder_answers(ids, pre))
    if len(uploads) > 1:
        raise DataError("file: send one CSV file at a time", "file")
    return predict_file(run, *uploads[0])


def predict_file(run, raw: bytes, filename: str = "") -> dict:
    """{"columns": [...], "rows": [[...], ...]} for a page, a CSV or the API (with ``scores`` against the file's own
    answers where it has them: its target column, an image zip's class folders)."""
    pre = run.preprocessing or {}
    kind = pre.get("kind")
    ids: list
    actual = None
    if kind == "table":
        frame = read_table_file(raw, pre)
        x = preparation.transform_table(frame, pre)
        ids = list(range(1, len(frame) + 1))
        id_name, actual = "row", _answers_in(frame, pre)
    elif kind == "text":
        frame = read_table_file(raw, {})
        x = preparation.transform_text(frame, pre)
        ids = list(range(1, len(frame) + 1))
        id_name, actual = "row", _answers_in(frame, pre)
    elif kind == "series":
        frame = read_table_file(raw, {})
        x = preparation.transform_series(frame, pre)
        ids = list(range(pre["window"], pre["window"] + len(x)))
        id_name = "last_step"
    elif kind == "images":
        images, ids = read_images_file(raw, filename, pre)
        x = preparation.transform_images(images, pre)
        id_name, actual = "file", _folder_answers(ids, pre)
    else:
        raise DataError("this run did not finish preparing its data, so it cannot predict", "run")
    return predict_arrays(run, x, ids, id_name, actual=actual)


def predict_arrays(run, x, ids, id_name: str = "row", *, explain: bool = False, model=None,
                   features: bool = True, actual: list | None = None) -> dict:
    from webapp.experiments import explain as explaining
    from webapp.experiments.execution import predict_outputs

    pre = run.preprocessing
    model = model or load_model(run)
    basis = (run.results or {}).get("feature_basis") if features else None
    coordinates = None
    if basis and basis["layer"] < len(model.layers):
        # One pass gives the outputs and the hidden layer a registered model's log watches (monitoring.feature_drift).
        outputs, hidden = model.predict_features(x, basis["layer"])
        outputs = np.asarray(outputs, dtype=np.float64)
        if hidden.shape[1] == basis["size"]:
            coordinates = monitoring.project_features(basis, hidden)
    else:
        outputs = predict_outputs(model, x)
    decoded = preparation.decode_predictions(outputs, pre, x, threshold=run.decision_threshold)
    if pre["task"] == "classification":
        classes = [str(c) for c in decoded["classes"]]
        columns = [id_name, "prediction", "confidence"] + [f"p({c})" for c in classes]
        # The confidence is the predicted class's probability (below one half where a threshold called it).
        rows = [[ident, str(label), probs[code]] + list(probs)
                for ident, label, code, probs in zip(ids, decoded["labels"], decoded["codes"], decoded["probabilities"])]
    else:
        values = decoded["values"]
        if values and isinstance(values[0], list):  # a forecast of several steps: a column per step ahead
            columns = [id_name] + [f"prediction (t+{step})" for step in range(1, len(values[0]) + 1)]
            rows = [[ident, *steps] for ident, steps in zip(ids, values)]
        else:
            columns = [id_name, "prediction"]
            rows = [[ident, value] for ident, value in zip(ids, values)]
    # The model inputs ride along for a registered model's log (monitoring.summarize); never sent back.
    answer = {"columns": columns, "rows": rows, "outputs": outputs.tolist(), "inputs": x, "features": coordinates}
    if actual is not None:  # the sender's own answers, one per row: the scores against them (batch.JobScore)
        from webapp.experiments.batch import JobScore

        score = JobScore(run)
        score.add(answer, actual)
        if found := score.result():
            answer["scores"] = found
    if explain and pre["task"] == "classification" and pre.get("kind") == "images":
        first = slice(0, explaining.PREDICT_EXPLAINED)
        answer["pictures"] = explaining.picture_pairs(model, x[first], decoded["codes"][first], pre.get("scaling"))
    return answer


MAX_FORECAST_STEPS = 1000
HISTORY_STEPS = 200  # the end of the series drawn before a forecast


def _iso(stamps) -> list:
    """Times as ISO text: dates alone where every one falls at midnight (daily, weekly, monthly data)."""
    import pandas as pd

    stamps = pd.DatetimeIndex(stamps)
    dates = bool((stamps.dropna() == stamps.dropna().normalize()).all())
    return [None if pd.isna(t) else (t.date().isoformat() if dates else t.isoformat()) for t in stamps]


def _future_times(stamps, steps: int) -> list:
    """ISO times for ``steps`` steps after the last of ``stamps``, at the series' usual spacing (the median
    gap between its last steps), or None where the series has no times to go by."""
    import pandas as pd

    stamps = pd.DatetimeIndex(stamps).dropna()
    if len(stamps) < 2:
        return [None] * steps
    gap = pd.Series(stamps[-50:]).diff().dropna().median()
    return _iso([stamps[-1] + gap * k for k in range(1, steps + 1)])


def forecast_ahead(run, steps) -> dict:
    """The next ``steps`` steps after the end of the run's series, from its last window. Beyond the
    model's horizon each forecast feeds the next (a series of one column only: the others' future
    values are unknown). {"columns", "rows", "history", "time_column", "horizon", "recursive"}."""
    from webapp.datasets import storage
    from webapp.experiments.execution import predict_outputs

    pre = run.preprocessing or {}
    if pre.get("kind") != "series":
        raise DataError("only a run trained on a series forecasts beyond its data", "run")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_FORECAST_STEPS:
        raise DataError(f"steps: a whole number from 1 to {MAX_FORECAST_STEPS}, got {steps!r}", "steps")
    horizon, columns = int(pre["horizon"]), pre["columns"]
    if len(columns) > 1 and steps > horizon:
        raise DataError(f"steps: this model reads {len(columns)} columns, so beyond its horizon of {horizon} "
                        f"step{'s' if horizon > 1 else ''} it would need their future values too; ask for at most "
                        f"{horizon}", "steps")
    frame = storage.load_series(run.dataset_version)
    window = preparation.transform_series(frame, pre)[-1:].copy()  # the last window, standardized
    model = load_model(run)
    mean, scale = float(pre["mean"][0]), float(pre["scale"][0])
    values: list[float] = []
    while len(values) < steps:
        decoded = preparation.decode_predictions(predict_outputs(model, window), pre, window)["values"]
        ahead = np.asarray(decoded[0], dtype=np.float64).reshape(-1)[:steps - len(values)]
        values.extend(float(v) for v in ahead)
        fed = ((ahead - mean) / scale).astype(np.float32).reshape(1, -1, 1)
        window = np.concatenate([window, fed], axis=1)[:, -pre["window"]:, :]
    time_column = preparation.series_time_column(frame)
    target = frame[columns[0]].to_numpy(dtype=np.float64)[-HISTORY_STEPS:]
    if time_column:
        history_times = _iso(frame[time_column].to_numpy()[-HISTORY_STEPS:])
        times = _future_times(frame[time_column].to_numpy(), steps)
    else:
        history_times = list(range(len(frame) - len(target) + 1, len(frame) + 1))
        times = list(range(len(frame) + 1, len(frame) + steps + 1))
    return {"columns": [time_column or "step", f"forecast ({columns[0]})"],
            "rows": [[t, v] for t, v in zip(times, values)], "time_column": time_column, "target": columns[0],
            "history": {"time": history_times, "values": [None if np.isnan(v) else float(v) for v in target]},
            "horizon": horizon, "recursive": steps > horizon}


def to_csv(result: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(result["columns"])
    for row in result["rows"]:
        # A cell starting with = + - @ would be a formula in a spreadsheet; quote it as text.
        writer.writerow([f"'{cell}" if isinstance(cell, str) and cell[:1] in "=+-@" else cell for cell in row])
    return buffer.getvalue()
