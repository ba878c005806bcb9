"""From a data set's raw rows to training arrays, and the same transformation again at predict time.

Plain Python on NumPy/pandas and ``trainer.data``; no Django. Every fitted transformer is fitted
on the training split only and stored as a JSON-able dict with the run (``preprocessing``), so
prediction applies exactly what training applied, without pickle.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from trainer import data as tdata

CLASSIFICATION, REGRESSION = "classification", "regression"
SCALINGS = ("standardize", "minmax", "none")
MISSING = ("mean", "most_frequent", "drop")
# Integer targets with at most this many distinct values are read as classes.
MAX_INTEGER_CLASSES = 20

DATA_CONFIG_DEFAULTS = {
    "target": None,  # None: the data set's target column
    "features": None,  # None: every column but the target and the ignored ones
    "categorical": None,  # None: inferred (text, boolean columns)
    "scaling": "standardize",
    "missing": "mean",
    "task": "auto",  # auto | classification | regression
    "test_fraction": 0.2,
    "validation_fraction": 0.1,
    "split_seed": 0,
    "window": 12,  # series only
    "horizon": 1,  # series only
    # series only: "change" trains the model on each step's change from the window's last value and adds
    # that value back to its outputs (it extrapolates a trend); "level" on the values themselves
    "forecast": "change",
    "image_scaling": "unit",  # images only: "unit" ([0, 1]) or "none"
    # k-fold cross-validation (tables and images): None, or the number of folds; the test part is then
    # fold number "fold" (from 0) of the shuffled rows, in place of test_fraction
    "folds": None,
    "fold": 0,
    # a table's text column as the model's input (word indices for an Embedding) in place of its other columns
    "text": None,
    "max_tokens": 20_000,  # text only: the vocabulary's size, padding and unknown words included
    "sequence_length": 128,  # text only: the words read from each text
}
MAX_FOLDS = 20


FORECASTS = ("change", "level")


class DataError(ValueError):
    """The data or the data config cannot be used; ``field`` names what to fix."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


@dataclass
class Prepared:
    x_train: np.ndarray  # or a tdata.ImageRows (image sets: read a batch at a time)
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    task: str
    preprocessing: dict
    class_names: list = field(default_factory=list)
    feature_names: list = field(default_factory=list)
    sample_ids: list = field(default_factory=list)  # row numbers of the test split in the data set
    # a series with a time column: when each test window's first forecast step falls (ISO text)
    test_times: list = field(default_factory=list)
    time_column: str = ""

    @property
    def input_shape(self) -> list[int]:
        return [int(d) for d in self.x_train.shape[1:]]

    @property
    def output_units(self) -> int:
        if self.task == CLASSIFICATION:
            return len(self.class_names)
        return int(np.prod(self.y_train.shape[1:])) if self.y_train.ndim > 1 else 1


def normalise_config(config: dict | None) -> dict:
    """Fill defaults and check the data config's values; raises DataError naming the field."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(DATA_CONFIG_DEFAULTS) - {"device"})
    if unknown:
        raise DataError(f"data_config.{unknown[0]}: unknown setting", f"data_config.{unknown[0]}")
    merged = {**DATA_CONFIG_DEFAULTS, **config}
    merged.pop("device", None)
    for name in ("test_fraction", "validation_fraction"):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise DataError(f"data_config.{name}: must be a number in [0, 1), got {value!r}", f"data_config.{name}")
    folds, fold = merged["folds"], merged["fold"]
    if folds is not None and (isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= MAX_FOLDS):
        raise DataError(f"data_config.folds: must be a whole number from 2 to {MAX_FOLDS}, got {folds!r}",
                        "data_config.folds")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < (folds or 1):
        raise DataError(f"data_config.fold: must be a whole number from 0 to {(folds or 1) - 1}"
                        + ("" if folds else " without folds") + f", got {fold!r}", "data_config.fold")
    if folds is not None and 1 / folds + merged["validation_fraction"] >= 0.9:
        raise DataError(f"data_config.validation_fraction: with {folds} folds, a fold and the validation part "
                        "together must leave 10% for training", "data_config.validation_fraction")
    if folds is None and merged["test_fraction"] + merged["validation_fraction"] >= 0.9:
        raise DataError("data_config.test_fraction: test and validation together must leave 10% for training",
                        "data_config.test_fraction")
    for name, low in (("split_seed", 0), ("window", 1), ("horizon", 1)):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DataError(f"data_config.{name}: must be an integer ≥ {low}, got {value!r}", f"data_config.{name}")
    choices = {"scaling": SCALINGS, "missing": MISSING, "task": ("auto", CLASSIFICATION, REGRESSION),
               "image_scaling": ("unit", "none"), "forecast": FORECASTS}
    for name, allowed in choices.items():
        if merged[name] not in allowed:
            raise DataError(f"data_config.{name}: must be one of {', '.join(allowed)}, got {merged[name]!r}",
                            f"data_config.{name}")
    for name in ("features", "categorical"):
        value = merged[name]
        if value is not None and (not isinstance(value, list) or not all(isinstance(c, str) for c in value)):
            raise DataError(f"data_config.{name}: must be a list of column names", f"data_config.{name}")
    if merged["text"] is not None and (not isinstance(merged["text"], str) or not merged["text"]):
        raise DataError("data_config.text: must be a column name", "data_config.text")
    for name, low, high in (("max_tokens", 3, 1_000_000), ("sequence_length", 1, 10_000)):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise DataError(f"data_config.{name}: must be a whole number from {low} to {high}, got {value!r}",
                            f"data_config.{name}")
    if merged["target"] is not None and not isinstance(merged["target"], str):
        raise DataError("data_config.target: must be a column name", "data_config.target")
    return merged


def infer_task(values, requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    array = np.asarray(values)
    if array.dtype.kind in "OUSb":
        return CLASSIFICATION
    if array.dtype.kind in "iu":
        return CLASSIFICATION if len(np.unique(array)) <= MAX_INTEGER_CLASSES else REGRESSION
    if array.dtype.kind == "f":
        finite = array[np.isfinite(array)]
        if finite.size and np.all(finite == np.round(finite)) and len(np.unique(finite)) <= MAX_INTEGER_CLASSES:
            return CLASSIFICATION
    return REGRESSION


def encode_targets(task: str, values, loss: str):
    """Targets shaped the way ``loss`` expects: class codes, one-hot, a 0/1 column, or a value column."""
    if task == CLASSIFICATION:
        encoder = tdata.LabelEncoder().fit(values)
        return encoder, None
    return None, tdata.TargetScaler().fit(np.asarray(values, dtype=np.float64))


def _shape_targets(task: str, codes_or_values, loss: str, num_classes: int):
    if task == CLASSIFICATION:
        codes = np.asarray(codes_or_values, dtype=np.int64)
        if loss == "categorical_crossentropy":
            return np.eye(num_classes, dtype=np.float32)[codes]
        if loss == "binary_crossentropy":
            return codes.astype(np.float32).reshape(-1, 1)
        return codes
    values = np.asarray(codes_or_values, dtype=np.float32)
    return values.reshape(-1, 1) if values.ndim == 1 else values


def _split(n: int, config: dict, stratify=None):
    if config["folds"] is not None and config["folds"] > n:
        raise DataError(f"data_config.folds: {config['folds']} folds need at least as many rows; this data has {n}",
                        "data_config.folds")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tdata.split_indices(n, test_fraction=config["test_fraction"],
                                   validation_fraction=config["validation_fraction"],
                                   seed=config["split_seed"], stratify=stratify,
                                   folds=config["folds"], fold=config["fold"])


# ----------------------------------------------------------------------------- tables


def table_columns(frame, config: dict, *, target: str, ignored=()) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature columns for a table."""
    columns = [str(c) for c in frame.columns]
    features = config["features"] if config["features"] is not None else [
        c for c in columns if c != target and c not in set(ignored or ())]
    for column in features:
        if column not in columns:
            raise DataError(f"data_config.features: no column named {column!r}", "data_config.features")
    if target in features:
        raise DataError(f"data_config.features: the target {target!r} cannot also be a feature",
                        "data_config.features")
    if not features:
        raise DataError("data_config.features: no feature columns left", "data_config.features")
    if config["categorical"] is not None:
        categorical = [c for c in features if c in set(config["categorical"])]
    else:
        categorical = [c for c in features if frame[c].dtype.kind in "OUSb" or str(frame[c].dtype) in ("category", "string")]
    numeric = [c for c in features if c not in categorical]
    for column in numeric:
        if frame[column].dtype.kind not in "iufb":
            raise DataError(f"column {column!r} is not numeric; mark it categorical", "data_config.categorical")
    return numeric, categorical


@dataclass
class _Targets:
    """A table's target column read for training: the rows that have one, the task, the split and the
    fitted target encoding (shared by tables of features and by text columns)."""
    frame: object
    values: np.ndarray
    task: str
    splits: tuple
    encoder: object
    scaler: object
    target: str
    loss: str

    @property
    def class_names(self) -> list:
        return list(self.encoder.classes_) if self.encoder is not None else []

    def describe(self) -> dict:
        return {"labels": self.encoder.to_dict()} if self.encoder is not None else \
            {"target_scaler": self.scaler.to_dict()}

    def encode(self, index, kept=None):
        raw = self.values[index] if kept is None else self.values[index][kept]
        if self.encoder is not None:
            try:
                y = self.encoder.transform(raw)
            except ValueError as error:  # a class seen only outside the training split
                raise DataError(f"column {self.target!r}: {error}", "data_config.target") from None
        else:
            y = self.scaler.transform(raw)
        return _shape_targets(self.task, y, self.loss, len(self.class_names))


def _read_targets(frame, config: dict, *, target: str, loss: str) -> _Targets:
    if not target:
        raise DataError("data_config.target: choose the column to predict", "data_config.target")
    if target not in frame.columns:
        raise DataError(f"data_config.target: no column named {target!r}", "data_config.target")
    target_values = frame[target].to_numpy()
    missing_target = frame[target].isna().to_numpy()
    if missing_target.all():
        raise DataError(f"column {target!r} has no values to learn from", "data_config.target")
    if missing_target.any():  # rows without a target cannot teach anything
        frame = frame.loc[~missing_target].reset_index(drop=True)
        target_values = target_values[~missing_target]
    task = infer_task(target_values, config["task"])
    if task == REGRESSION:
        try:
            target_values = np.asarray(target_values, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"column {target!r} is not numeric, so it cannot be a regression target",
                            "data_config.task") from None
    stratify = np.asarray([str(v) for v in target_values]) if task == CLASSIFICATION else None
    train, val, test = _split(len(frame), config, stratify)
    if len(train) == 0 or (len(test) == 0 and (config["test_fraction"] > 0 or config["folds"])):
        raise DataError("data_config.test_fraction: the table has too few rows for this split",
                        "data_config.test_fraction")
    encoder, scaler = encode_targets(task, target_values[train], loss)
    return _Targets(frame, target_values, task, (train, val, test), encoder, scaler, target, loss)


def prepare_table(frame, config: dict, *, target: str, ignored=(), loss: str = "") -> Prepared:
    if config.get("text"):
        return prepare_text(frame, config, target=target, loss=loss)
    targets = _read_targets(frame, config, target=target, loss=loss)
    numeric, categorical = table_columns(frame, config, target=target, ignored=ignored)
    frame, task, (train, val, test) = targets.frame, targets.task, targets.splits
    preprocessor = tdata.TablePreprocessor(numeric, categorical, scaling=config["scaling"], missing=config["missing"])
    try:
        preprocessor.fit(frame.iloc[train])
    except ValueError as error:
        raise DataError(str(error).replace("TablePreprocessor: ", ""), _column_field(error)) from None
    pre = {"kind": "table", "target": target, "task": task, "features": preprocessor.to_dict(), "loss": loss,
           **targets.describe()}

    def part(index):
        if len(index) == 0:
            return None, None
        x, kept = preprocessor.transform(frame.iloc[index], return_mask=True)
        return x, targets.encode(index, kept)

    x_train, y_train = part(train)
    x_val, y_val = part(val)
    x_test, y_test = part(test)
    return Prepared(x_train, y_train, x_val, y_val, x_test, y_test, task, pre, targets.class_names,
                    preprocessor.feature_names, [int(i) for i in test])


def prepare_text(frame, config: dict, *, target: str, loss: str = "") -> Prepared:
    """A text column of a table as the model's one input: each text as word indices (a TextVectorizer
    fitted on the training rows), the table's target as for any table."""
    column = config["text"]
    if column not in frame.columns:
        raise DataError(f"data_config.text: no column named {column!r}", "data_config.text")
    if column == target:
        raise DataError("data_config.text: the text column cannot be the target too", "data_config.text")
    targets = _read_targets(frame, config, target=target, loss=loss)
    frame, task, (train, val, test) = targets.frame, targets.task, targets.splits
    texts = frame[column].to_numpy(dtype=object)
    vectorizer = tdata.TextVectorizer(config["max_tokens"], config["sequence_length"]).fit(texts[train])
    if not vectorizer.vocabulary:
        raise DataError(f"data_config.text: column {column!r} has no words in its training rows", "data_config.text")
    pre = {"kind": "text", "target": target, "task": task, "text_column": column, "vectorizer": vectorizer.to_dict(),
           "vocabulary_size": vectorizer.vocabulary_size, "loss": loss, **targets.describe()}

    def part(index):
        return (vectorizer.transform(texts[index]), targets.encode(index)) if len(index) else (None, None)

    x_train, y_train = part(train)
    x_val, y_val = part(val)
    x_test, y_test = part(test)
    return Prepared(x_train, y_train, x_val, y_val, x_test, y_test, task, pre, targets.class_names, [column],
                    [int(i) for i in test])


def transform_text(frame, pre: dict) -> np.ndarray:
    column = pre["text_column"]
    if column not in frame.columns:
        raise DataError(f"the file has no column {column!r}, which the model was trained on", "file")
    return tdata.TextVectorizer.from_dict(pre["vectorizer"]).transform(frame[column].to_numpy(dtype=object))


def _column_field(error) -> str:
    text = str(error)
    if "column" in text:
        return "data_config.features"
    return "data_config"


def transform_table(frame, pre: dict) -> np.ndarray:
    preprocessor = tdata.TablePreprocessor.from_dict(pre["features"])
    for column in preprocessor.numeric_columns + preprocessor.categorical_columns:
        if column not in frame.columns:
            raise DataError(f"the file has no column {column!r}, which the model was trained on", "file")
    try:
        return preprocessor.transform(frame)
    except ValueError as error:
        raise DataError(str(error).replace("TablePreprocessor: ", ""), "file") from None


# ----------------------------------------------------------------------------- images


def prepare_images(images, labels, class_names, config: dict, *, loss: str = "") -> Prepared:
    images = images if isinstance(images, np.ndarray) else np.asarray(images)  # a memory map stays one
    if images.ndim != 4 or len(images) == 0:
        raise DataError(f"expected images shaped (N, H, W, C), got {images.shape}", "dataset_version")
    if config["text"]:
        raise DataError("data_config.text: a text column is a table's, not an image set's", "data_config.text")
    labels = np.asarray(labels, dtype=np.int64)
    train, val, test = _split(len(images), config, stratify=labels)
    scale = config["image_scaling"] == "unit"
    pre = {"kind": "images", "task": CLASSIFICATION, "scaling": config["image_scaling"],
           "image_shape": [int(d) for d in images.shape[1:]], "labels": {"kind": "LabelEncoder", "version": 1,
                                                                       "classes": list(class_names)}, "loss": loss}

    def part(index):
        if len(index) == 0:
            return None, None
        # Read a batch at a time while training (the images stay on disk), or at once where the set fits.
        x = tdata.ImageRows(images, index, scale=scale)
        return x, _shape_targets(CLASSIFICATION, labels[index], loss, len(class_names))

    x_train, y_train = part(train)
    x_val, y_val = part(val)
    x_test, y_test = part(test)
    return Prepared(x_train, y_train, x_val, y_val, x_test, y_test, CLASSIFICATION, pre, list(class_names), [],
                    [int(i) for i in test])


def transform_images(images, pre: dict) -> np.ndarray:
    images = np.asarray(images)
    expected = tuple(pre["image_shape"])
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise DataError(f"images must be {expected[0]}×{expected[1]} with {expected[2]} channels like the training set",
                        "file")
    return tdata.scale_images(images) if pre.get("scaling") == "unit" else images.astype(np.float32)


THUMBNAIL_SIDE = 64  # pixels; misclassified samples are shown small on the run page


def image_thumbnail(image, scaling: str) -> str:
    """One prepared image (H, W, C) as a small PNG data URL, for showing next to its prediction."""
    array = np.asarray(image, dtype=np.float64)
    if scaling == "unit":
        array = array * 255.0
    return png_data_url(np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8))


def png_data_url(array) -> str:
    """An (H, W, C) uint8 picture (one channel grey, else RGB) as a PNG data URL at most THUMBNAIL_SIDE wide."""
    import base64
    import io

    from PIL import Image

    array = array[:, :, 0] if array.shape[-1] == 1 else array[:, :, :3]
    picture = Image.fromarray(array)
    if max(picture.size) > THUMBNAIL_SIDE:
        picture.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------- series


def series_columns(frame, config: dict, *, target: str, ignored=()) -> list[str]:
    """The columns a series' windows hold, the target first (the windows' targets, the scaling of the
    predictions and the errors in the target's units all read column 0)."""
    numeric = [str(c) for c in frame.columns if frame[c].dtype.kind in "iuf"]
    if config["features"] is not None:
        columns = list(config["features"])
        for column in columns:
            if column not in numeric:
                raise DataError(f"data_config.features: {column!r} is not a numeric column", "data_config.features")
    else:
        columns = [c for c in numeric if c not in set(ignored or ())]
    return [target] + [column for column in columns if column != target]


def prepare_series(frame, config: dict, *, target: str, ignored=(), loss: str = "") -> Prepared:
    if not target:
        numeric = [str(c) for c in frame.columns if frame[c].dtype.kind in "iuf"]
        if not numeric:
            raise DataError("data_config.target: the series has no numeric column", "data_config.target")
        target = numeric[-1]
    if target not in frame.columns:
        raise DataError(f"data_config.target: no column named {target!r}", "data_config.target")
    if frame[target].dtype.kind not in "iuf":
        raise DataError(f"column {target!r} is not numeric", "data_config.target")
    if config["text"]:
        raise DataError("data_config.text: a text column is a table's; a series reads its numeric columns",
                        "data_config.text")
    if config["folds"] is not None:
        raise DataError("data_config.folds: a series is split by time (its test part is its end), so it is not "
                        "cross-validated by folds", "data_config.folds")
    columns = series_columns(frame, config, target=target, ignored=ignored)
    values = frame[columns].to_numpy(dtype=np.float64)
    window, horizon = config["window"], config["horizon"]
    n_samples = len(values) - window - horizon + 1
    if n_samples < 10:
        raise DataError(f"data_config.window: a series of {len(values)} steps is too short for window {window} "
                        f"and horizon {horizon}", "data_config.window")
    train, val, test = tdata.chronological_split(n_samples, test_fraction=config["test_fraction"],
                                                 validation_fraction=config["validation_fraction"], gap=window)
    # Statistics from the steps the training windows see, never later ones.
    seen = values[: train[-1] + window + horizon]
    seen = seen[~np.isnan(seen).any(axis=1)]
    mean, scale = seen.mean(axis=0), seen.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    pre = {"kind": "series", "task": REGRESSION, "target": target, "columns": columns, "window": window,
           "horizon": horizon, "mean": mean.tolist(), "scale": scale.tolist(), "loss": loss,
           "forecast": config["forecast"]}
    x, y = tdata.sliding_windows((values - mean) / scale, window, horizon, target_column=0, missing="interpolate")
    y = y.reshape(len(y), -1) - series_offsets(x, pre)
    y = y.astype(np.float32)

    def part(index):
        return (x[index], y[index]) if len(index) else (None, None)

    x_train, y_train = part(train)
    x_val, y_val = part(val)
    x_test, y_test = part(test)
    time_column = series_time_column(frame)
    times = []
    if time_column:  # the step each test window forecasts first: its window's end + 1
        import pandas as pd

        stamps = pd.DatetimeIndex(frame[time_column].to_numpy()[np.asarray(test, dtype=np.int64) + window])
        times = [None if pd.isna(t) else t.isoformat() for t in stamps]
    return Prepared(x_train, y_train, x_val, y_val, x_test, y_test, REGRESSION, pre, [], columns,
                    [int(i) for i in test], times, time_column)


def has_columns(preprocessing: dict) -> bool:
    """Whether a run's input has columns to rank: a table's, or a series' when it reads several."""
    kind = (preprocessing or {}).get("kind")
    return kind == "table" or (kind == "series" and len(preprocessing.get("columns", ())) > 1)


def series_time_column(frame) -> str:
    """The series' first column of times, or "" when it has none."""
    return next((str(c) for c in frame.columns if frame[c].dtype.kind == "M"), "")


def series_offsets(x, pre: dict):
    """What a series model's outputs are measured from, per window (N, 1), in its standardized
    units: the window's last target value when it forecasts the change, else 0."""
    if pre.get("kind") != "series" or pre.get("forecast", "level") != "change":
        return 0.0
    return np.asarray(x[:, -1, :1], dtype=np.float64)


def transform_series(frame, pre: dict) -> np.ndarray:
    for column in pre["columns"]:
        if column not in frame.columns:
            raise DataError(f"the file has no column {column!r}, which the model was trained on", "file")
    values = frame[pre["columns"]].to_numpy(dtype=np.float64)
    if len(values) < pre["window"]:
        raise DataError(f"the series needs at least {pre['window']} steps", "file")
    values = (values - np.asarray(pre["mean"])) / np.asarray(pre["scale"])
    values = tdata.interpolate_missing(values) if np.isnan(values).any() else values
    windows = np.lib.stride_tricks.sliding_window_view(values.astype(np.float32), pre["window"], axis=0)
    return np.ascontiguousarray(windows.transpose(0, 2, 1))


# ----------------------------------------------------------------------------- outputs


def decode_predictions(outputs, pre: dict, x=None, threshold: float | None = None) -> dict:
    """Model outputs in the data's own terms: labels with probabilities, or values in original units
    (a series model that forecasts the change needs its windows ``x`` to add their last values back).
    A two-class model with a decision ``threshold`` calls a row the second class when that class's
    probability is at least the threshold; otherwise each row gets its more likely class."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if pre["task"] == CLASSIFICATION:
        classes = list(pre["labels"]["classes"])
        if outputs.ndim == 1 or outputs.shape[1] == 1:
            positive = outputs.reshape(-1)
            if pre.get("loss") == "binary_crossentropy" or len(classes) == 2:
                probabilities = np.stack([1 - positive, positive], axis=1)
            else:
                probabilities = positive.reshape(-1, 1)
        else:
            probabilities = outputs
            row_sums = probabilities.sum(axis=1, keepdims=True)
            if not np.allclose(row_sums, 1.0, atol=1e-3) or (probabilities < 0).any():  # logits
                shifted = np.exp(probabilities - probabilities.max(axis=1, keepdims=True))
                probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        codes = probabilities.argmax(axis=1)
        if threshold is not None and len(classes) == 2 and probabilities.shape[1] == 2:
            codes = (probabilities[:, 1] >= threshold).astype(np.int64)
        return {"labels": [classes[i] for i in codes], "codes": codes.tolist(), "classes": classes,
                "probabilities": probabilities.tolist()}
    if pre["kind"] == "series":
        values = (outputs.reshape(len(outputs), -1) + _offsets(x, pre)) * pre["scale"][0] + pre["mean"][0]
    else:
        scaler = tdata.TargetScaler.from_dict(pre["target_scaler"])
        values = scaler.inverse_transform(outputs)
    values = np.asarray(values, dtype=np.float64)
    values = values.reshape(len(values), -1)
    return {"values": values[:, 0].tolist() if values.shape[1] == 1 else values.tolist()}


# How a logged value scales with the target: errors once, squared errors twice, R² not at all.
_TARGET_POWER = {"mae": 1, "mean_absolute_error": 1, "rmse": 1, "mse": 2, "mean_squared_error": 2}


def target_scale(pre: dict) -> float | None:
    """The standard deviation regression targets were divided by for training, or None."""
    if pre.get("task") != REGRESSION:
        return None
    if pre.get("kind") == "series":
        return float(pre["scale"][0])
    scale = np.asarray((pre.get("target_scaler") or {}).get("scale", 1.0), dtype=np.float64).reshape(-1)
    return float(scale[0]) if scale.size == 1 else None  # one scale per output cannot fold into one number


def logs_in_target_units(values: dict, pre: dict, loss: str = "") -> dict:
    """An epoch's logged values with errors in the target's own units (ppm, dollars) instead of the
    standardized units the model trains on. The loss converts too when it is MSE or MAE (a weight
    penalty in it scales along; it is small next to the error)."""
    scale = target_scale(pre)
    if scale is None:
        return dict(values)
    converted = {}
    for name, value in values.items():
        base = name.removeprefix("val_")
        power = _TARGET_POWER.get(loss if base == "loss" else base)
        converted[name] = value * scale ** power if power and value is not None else value
    return converted


def _offsets(x, pre: dict):
    if x is None and pre.get("forecast", "level") == "change":
        raise ValueError("decoding a series model that forecasts the change needs its windows")
    return 0.0 if x is None else series_offsets(x, pre)


def decode_targets(y, pre: dict, x=None) -> np.ndarray:
    """Test targets back in original units (regression) or as class codes (classification); a
    series' windows ``x`` as for decode_predictions."""
    y = np.asarray(y)
    if pre["task"] == CLASSIFICATION:
        if y.ndim == 2 and y.shape[1] > 1:
            return y.argmax(axis=1)
        return y.reshape(-1).astype(np.int64)
    if pre["kind"] == "series":
        y = y.astype(np.float64).reshape(len(y), -1) + _offsets(x, pre)
        return (y * pre["scale"][0] + pre["mean"][0])[:, 0]
    scaler = tdata.TargetScaler.from_dict(pre["target_scaler"])
    return np.asarray(scaler.inverse_transform(y.astype(np.float64))).reshape(len(y), -1)[:, 0]
