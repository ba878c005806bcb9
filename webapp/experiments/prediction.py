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

from webapp.experiments import checkpoints, preparation
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
    key = (run.pk, path.stat().st_mtime_ns)
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


def read_table_file(raw: bytes, pre: dict):
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(raw), nrows=MAX_ROWS + 1, sep=None, engine="python")
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


def predict_uploads(run, uploads) -> dict:
    """Predictions for uploaded files, a list of ``(bytes, filename)``: several only for images."""
    uploads = list(uploads)
    if not uploads:
        raise DataError("file: choose a file", "file")
    if (run.preprocessing or {}).get("kind") == "images":
        pre = run.preprocessing
        images, ids = read_images_files(uploads, pre)
        return predict_arrays(run, preparation.transform_images(images, pre), ids, "file")
    if len(uploads) > 1:
        raise DataError("file: send one CSV file at a time", "file")
    return predict_file(run, *uploads[0])


def predict_file(run, raw: bytes, filename: str = "") -> dict:
    """{"columns": [...], "rows": [[...], ...]} for a page, a CSV or the API."""
    pre = run.preprocessing or {}
    kind = pre.get("kind")
    ids: list
    if kind == "table":
        frame = read_table_file(raw, pre)
        x = preparation.transform_table(frame, pre)
        ids = list(range(1, len(frame) + 1))
        id_name = "row"
    elif kind == "series":
        frame = read_table_file(raw, {})
        x = preparation.transform_series(frame, pre)
        ids = list(range(pre["window"], pre["window"] + len(x)))
        id_name = "last_step"
    elif kind == "images":
        images, ids = read_images_file(raw, filename, pre)
        x = preparation.transform_images(images, pre)
        id_name = "file"
    else:
        raise DataError("this run did not finish preparing its data, so it cannot predict", "run")
    return predict_arrays(run, x, ids, id_name)


def predict_arrays(run, x, ids, id_name: str = "row") -> dict:
    from webapp.experiments.execution import predict_outputs

    pre = run.preprocessing
    outputs = predict_outputs(load_model(run), x)
    decoded = preparation.decode_predictions(outputs, pre, x)
    if pre["task"] == "classification":
        classes = [str(c) for c in decoded["classes"]]
        columns = [id_name, "prediction", "confidence"] + [f"p({c})" for c in classes]
        rows = [[ident, str(label), max(probs)] + list(probs)
                for ident, label, probs in zip(ids, decoded["labels"], decoded["probabilities"])]
    else:
        values = decoded["values"]
        if values and isinstance(values[0], list):  # a forecast of several steps: a column per step ahead
            columns = [id_name] + [f"prediction (t+{step})" for step in range(1, len(values[0]) + 1)]
            rows = [[ident, *steps] for ident, steps in zip(ids, values)]
        else:
            columns = [id_name, "prediction"]
            rows = [[ident, value] for ident, value in zip(ids, values)]
    return {"columns": columns, "rows": rows, "outputs": outputs.tolist()}


def to_csv(result: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(result["columns"])
    for row in result["rows"]:
        # A cell starting with = + - @ would be a formula in a spreadsheet; quote it as text.
        writer.writerow([f"'{cell}" if isinstance(cell, str) and cell[:1] in "=+-@" else cell for cell in row])
    return buffer.getvalue()
