"""Data preparation for training runs: splits, table preprocessing, target encoding,
time-series windows, image scaling and augmentation, and batching from memory-mapped arrays.

Everything here works on host NumPy arrays and is deterministic for a given seed. Fitted
transformers are fitted on the training part only and serialise to plain JSON-able dicts
(`to_dict`/`from_dict`) so a run can store them and apply them again at prediction time
without pickle.
"""

import math
import re
import warnings

import numpy as np

__all__ = [
    "ImageRows",
    "LabelEncoder",
    "TablePreprocessor",
    "TargetScaler",
    "TextVectorizer",
    "chronological_split",
    "input_windows",
    "interpolate_missing",
    "iterate_batches",
    "load_array",
    "random_crop",
    "random_flip",
    "scale_images",
    "sliding_windows",
    "split_indices",
]

SCALINGS = ("standardize", "minmax", "none")
MISSING_STRATEGIES = ("mean", "most_frequent", "drop")


# ----------------------------------------------------------------------------- splits


def _check_fractions(owner, test_fraction, validation_fraction):
    for name, value in (("test_fraction", test_fraction), ("validation_fraction", validation_fraction)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
            raise ValueError(f"{owner}: {name} must be a number in [0, 1). Received: {name}={value!r}")
    if test_fraction + validation_fraction >= 1:
        raise ValueError(
            f"{owner}: test_fraction + validation_fraction must be below 1 so rows remain for training. "
            f"Received: test_fraction={test_fraction!r}, validation_fraction={validation_fraction!r}"
        )


def _check_count(owner, n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{owner}: n must be a non-negative integer. Received: n={n!r}")
    return int(n)


def _rng(owner, rng):
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"{owner}: rng must be a numpy Generator or an integer seed. Received: rng={rng!r}")


def split_indices(n, *, test_fraction=0.2, validation_fraction=0.1, seed=0, stratify=None, folds=None, fold=0):
    """Shuffle-split `n` rows into (train_idx, val_idx, test_idx), each a sorted int64 array.

    The test part gets round(n * test_fraction) rows and the validation part
    round(n * validation_fraction); the rest is training. With `stratify` (one label per row)
    every class is spread over the parts in proportion to its size; that needs every class to
    have at least 2 rows, otherwise the split falls back to a plain shuffle with a warning.

    With `folds` (k-fold cross-validation) `test_fraction` is not used: the shuffled rows are cut
    into `folds` parts of near-equal size (each holding the classes in proportion when
    stratified) and part `fold` is the test part, so the k splits of one seed test every row
    exactly once; the validation part comes from the other parts.
    """
    n = _check_count("split_indices", n)
    if folds is not None:
        if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= max(n, 2):
            raise ValueError(f"split_indices: folds must be an integer from 2 to the number of rows ({n}). "
                             f"Received: folds={folds!r}")
        if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < folds:
            raise ValueError(f"split_indices: fold must be an integer from 0 to {folds - 1}. Received: fold={fold!r}")
        test_fraction = 0.0
    _check_fractions("split_indices", test_fraction, validation_fraction)
    if folds is not None and 1 / folds + validation_fraction >= 1:
        raise ValueError(f"split_indices: a fold (1/{folds}) and validation_fraction={validation_fraction!r} "
                         "leave no rows for training")
    rng = np.random.default_rng(seed)
    n_test = round(n * test_fraction)
    n_val = round(n * validation_fraction)

    order = None
    if stratify is not None:
        labels = np.asarray(stratify)
        if labels.shape != (n,):
            raise ValueError(
                f"split_indices: stratify must hold one label per row, shape ({n},). "
                f"Received: shape={labels.shape}"
            )
        _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
        if counts.size and counts.min() >= 2:
            order = _stratified_order(codes.reshape(-1), counts, rng)
        else:
            warnings.warn(
                "split_indices: a class in stratify has fewer than 2 rows; splitting without stratification",
                stacklevel=2,
            )
    if order is None:
        order = rng.permutation(n)
    if folds is not None:  # the fold's part first, then the others in their order: the cut below is the same
        bounds = np.linspace(0, n, folds + 1).round().astype(np.int64)
        part = np.zeros(n, dtype=bool)
        part[bounds[fold]:bounds[fold + 1]] = True
        order, n_test = np.concatenate([order[part], order[~part]]), int(part.sum())

    test = np.sort(order[:n_test])
    val = np.sort(order[n_test:n_test + n_val])
    train = np.sort(order[n_test + n_val:])
    return train.astype(np.int64), val.astype(np.int64), test.astype(np.int64)


def _stratified_order(codes, counts, rng):
    # Give the k-th (shuffled) row of a class of size m the position (k + u) / m, u uniform in
    # [0, 1): sorting all rows by position interleaves the classes evenly, so any prefix of the
    # order - the test part, then the validation part - holds each class in proportion.
    n = codes.size
    shuffled = rng.permutation(n)
    by_class = shuffled[np.argsort(codes[shuffled], kind="stable")]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank_in_class = np.arange(n) - np.repeat(starts, counts)
    position = (rank_in_class + rng.random(n)) / np.repeat(counts, counts)
    return by_class[np.argsort(position, kind="stable")]


def chronological_split(n, *, test_fraction=0.2, validation_fraction=0.1, gap=0):
    """Split `n` time-ordered samples into contiguous (train_idx, val_idx, test_idx), oldest first.

    Nothing is shuffled: training is the earliest part, then validation, then test. `gap`
    samples are left out before the validation part and before the test part, e.g. the window
    length when the samples are sliding windows, so no input window overlaps the next part.
    """
    n = _check_count("chronological_split", n)
    _check_fractions("chronological_split", test_fraction, validation_fraction)
    if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or gap < 0:
        raise ValueError(f"chronological_split: gap must be a non-negative integer. Received: gap={gap!r}")
    n_test = round(n * test_fraction)
    n_val = round(n * validation_fraction)
    gaps = gap * ((n_test > 0) + (n_val > 0))
    n_train = n - n_test - n_val - gaps
    if n_train <= 0:
        raise ValueError(
            f"chronological_split: no samples left for training (n={n}, gap={gap}, "
            f"test_fraction={test_fraction}, validation_fraction={validation_fraction})"
        )
    train = np.arange(n_train, dtype=np.int64)
    val_start = n_train + (gap if n_val else 0)
    val = np.arange(val_start, val_start + n_val, dtype=np.int64)
    test_start = val_start + n_val + (gap if n_test else 0)
    test = np.arange(test_start, test_start + n_test, dtype=np.int64)
    return train, val, test


# ----------------------------------------------------------------------------- tables


def _is_missing(value):
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    # pandas.NA and pandas.NaT, recognised without importing pandas.
    return type(value).__name__ in ("NAType", "NaTType")


def _python_scalar(value):
    """A JSON-able Python scalar for a category or class label (numpy scalars unwrapped)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        # 3.0 and 3 are the same category; keep the integer form so JSON round-trips stay equal.
        value = int(value)
    if not isinstance(value, (str, int, float, bool)):
        value = str(value)
    return value


def _sorted_values(values):
    try:
        return sorted(values)
    except TypeError:  # mixed types, e.g. 1 and "a"
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


class TablePreprocessor:
    """Turn table columns into a float32 feature matrix: numeric columns imputed and scaled,
    categorical columns imputed and one-hot encoded.

    Fit on the training rows only; `transform` then applies the training statistics to any
    rows. `frame` is a pandas DataFrame or a dict of 1-D arrays, indexed by column name.

    missing:
      - "mean": numeric gaps get the training mean, categorical gaps the most frequent category;
      - "most_frequent": every gap gets the column's most frequent training value;
      - "drop": rows with a gap in any used column are left out (`transform(frame,
        return_mask=True)` says which rows were kept).
    scaling: "standardize" (training mean 0, std 1), "minmax" (training range to [0, 1]) or
    "none". Statistics come from the observed (non-missing) training values; a constant column
    is centred but not divided. A category not seen in training encodes as all zeros.
    """

    def __init__(self, numeric_columns=(), categorical_columns=(), *, scaling="standardize", missing="mean"):
        numeric_columns = self._check_columns("numeric_columns", numeric_columns)
        categorical_columns = self._check_columns("categorical_columns", categorical_columns)
        overlap = sorted(set(numeric_columns) & set(categorical_columns))
        if overlap:
            raise ValueError(f"TablePreprocessor: column {overlap[0]!r} is both numeric and categorical")
        if not numeric_columns and not categorical_columns:
            raise ValueError("TablePreprocessor: at least one numeric or categorical column is needed")
        if scaling not in SCALINGS:
            raise ValueError(f"TablePreprocessor: scaling must be one of {SCALINGS}. Received: scaling={scaling!r}")
        if missing not in MISSING_STRATEGIES:
            raise ValueError(
                f"TablePreprocessor: missing must be one of {MISSING_STRATEGIES}. Received: missing={missing!r}"
            )
        self.numeric_columns = numeric_columns
        self.categorical_columns = categorical_columns
        self.scaling = scaling
        self.missing = missing
        self.numeric_stats = None  # {column: {"fill": float|None, "center": float, "scale": float}}
        self.categories = None  # {column: [category, ...]}
        self.category_fill = None  # {column: category|None}

    @staticmethod
    def _check_columns(argument, columns):
        if isinstance(columns, str):
            raise ValueError(f"TablePreprocessor: {argument} must be a list of column names. Received: {columns!r}")  # noqa: TRY004 - Keras raises ValueError here
        columns = list(columns)
        for column in columns:
            if not isinstance(column, str):
                raise ValueError(f"TablePreprocessor: column names must be strings. Received: {column!r} in {argument}")  # noqa: TRY004 - Keras raises ValueError here
        if len(set(columns)) != len(columns):
            raise ValueError(f"TablePreprocessor: {argument} lists a column twice. Received: {columns!r}")
        return columns

    # -- reading columns

    @staticmethod
    def _raw_column(frame, column):
        try:
            values = frame[column]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"TablePreprocessor: unknown column {column!r}") from None
        return values

    def _numeric(self, frame, column):
        values = self._raw_column(frame, column)
        try:
            if hasattr(values, "to_numpy"):  # pandas, including nullable dtypes holding pd.NA
                array = values.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"TablePreprocessor: column {column!r} is not numeric") from None
        if array.ndim != 1:
            raise ValueError(f"TablePreprocessor: column {column!r} must be 1-D. Received: shape={array.shape}")
        if np.isinf(array).any():
            raise ValueError(f"TablePreprocessor: column {column!r} contains infinite values")
        return array

    def _categorical(self, frame, column):
        values = self._raw_column(frame, column)
        array = values.to_numpy(dtype=object) if hasattr(values, "to_numpy") else np.asarray(values, dtype=object)
        if array.ndim != 1:
            raise ValueError(f"TablePreprocessor: column {column!r} must be 1-D. Received: shape={array.shape}")
        missing = np.fromiter((_is_missing(v) for v in array), dtype=bool, count=array.size)
        return array, missing

    def _read(self, frame):
        numeric = {c: self._numeric(frame, c) for c in self.numeric_columns}
        categorical = {c: self._categorical(frame, c) for c in self.categorical_columns}
        lengths = {c: a.size for c, a in numeric.items()}
        lengths.update({c: a.size for c, (a, _) in categorical.items()})
        if len(set(lengths.values())) > 1:
            raise ValueError(f"TablePreprocessor: columns have different lengths: {lengths}")
        n_rows = next(iter(lengths.values()))
        keep = np.ones(n_rows, dtype=bool)
        if self.missing == "drop":
            for array in numeric.values():
                keep &= ~np.isnan(array)
            for _, missing in categorical.values():
                keep &= ~missing
        return numeric, categorical, keep

    # -- fitting and transforming

    @property
    def is_fitted(self):
        return self.numeric_stats is not None

    def fit(self, frame):
        numeric, categorical, keep = self._read(frame)
        if not keep.any():
            raise ValueError("TablePreprocessor: no complete rows to fit on after dropping missing values")
        stats = {}
        for column, array in numeric.items():
            observed = array[keep & ~np.isnan(array)]
            if observed.size == 0:
                raise ValueError(f"TablePreprocessor: column {column!r} has no values in the training data")
            if self.missing == "mean":
                fill = float(observed.mean())
            elif self.missing == "most_frequent":
                values, counts = np.unique(observed, return_counts=True)
                fill = float(values[np.argmax(counts)])  # ties: the smallest value
            else:
                fill = None
            if self.scaling == "standardize":
                center, scale = float(observed.mean()), float(observed.std())
            elif self.scaling == "minmax":
                center, scale = float(observed.min()), float(observed.max() - observed.min())
            else:
                center, scale = 0.0, 1.0
            stats[column] = {"fill": fill, "center": center, "scale": scale if scale > 0 else 1.0}

        categories, fills = {}, {}
        for column, (array, missing) in categorical.items():
            observed = [_python_scalar(v) for v in array[keep & ~missing]]
            if not observed:
                raise ValueError(f"TablePreprocessor: column {column!r} has no values in the training data")
            counts = {}
            for value in observed:
                counts[value] = counts.get(value, 0) + 1
            categories[column] = _sorted_values(counts)
            # Most frequent; ties go to the first category in sorted order.
            fills[column] = None if self.missing == "drop" else max(categories[column], key=lambda v: counts[v])
        self.numeric_stats, self.categories, self.category_fill = stats, categories, fills
        return self

    def transform(self, frame, *, return_mask=False):
        """Features as float32 (rows, len(feature_names)). With `return_mask=True` returns
        (features, kept) where `kept` is a bool array over the input rows: all True unless
        missing="drop" left rows out; use it to select the matching targets."""
        if not self.is_fitted:
            raise RuntimeError("TablePreprocessor: call fit() before transform()")
        numeric, categorical, keep = self._read(frame)
        n_kept = int(keep.sum())
        blocks = []
        for column in self.numeric_columns:
            stats = self.numeric_stats[column]
            array = numeric[column][keep]
            if stats["fill"] is not None:
                array = np.where(np.isnan(array), stats["fill"], array)
            blocks.append(((array - stats["center"]) / stats["scale"]).reshape(-1, 1))
        for column in self.categorical_columns:
            array, missing = categorical[column]
            array, missing = array[keep], missing[keep]
            lookup = {category: i for i, category in enumerate(self.categories[column])}
            fill = self.category_fill[column]
            codes = np.fromiter(
                (lookup.get(fill if gap else _python_scalar(v), -1) for v, gap in zip(array, missing)),
                dtype=np.int64,
                count=n_kept,
            )
            one_hot = np.zeros((n_kept, len(lookup)), dtype=np.float32)
            seen = codes >= 0
            one_hot[np.flatnonzero(seen), codes[seen]] = 1.0
            blocks.append(one_hot)
        features = np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)
        return (features, keep) if return_mask else features

    def fit_transform(self, frame, *, return_mask=False):
        return self.fit(frame).transform(frame, return_mask=return_mask)

    @property
    def feature_names(self):
        """One name per output column: numeric column names, then `column=category` per one-hot."""
        if not self.is_fitted:
            raise RuntimeError("TablePreprocessor: call fit() before reading feature_names")
        names = list(self.numeric_columns)
        for column in self.categorical_columns:
            names.extend(f"{column}={category}" for category in self.categories[column])
        return names

    def feature_groups(self):
        """{source column: [its output columns]}: one for a numeric column, one per category for a
        categorical one, in feature_names' order."""
        if not self.is_fitted:
            raise RuntimeError("TablePreprocessor: call fit() before reading feature_groups")
        sizes = [(c, 1) for c in self.numeric_columns] + [(c, len(self.categories[c])) for c in self.categorical_columns]
        groups, start = {}, 0
        for column, size in sizes:
            groups[column] = list(range(start, start + size))
            start += size
        return groups

    # -- serialisation

    def to_dict(self):
        if not self.is_fitted:
            raise RuntimeError("TablePreprocessor: call fit() before to_dict()")
        return {
            "kind": "TablePreprocessor",
            "version": 1,
            "numeric_columns": list(self.numeric_columns),
            "categorical_columns": list(self.categorical_columns),
            "scaling": self.scaling,
            "missing": self.missing,
            "numeric_stats": {c: dict(s) for c, s in self.numeric_stats.items()},
            "categories": {c: list(v) for c, v in self.categories.items()},
            "category_fill": dict(self.category_fill),
        }

    @classmethod
    def from_dict(cls, data):
        _check_kind(data, "TablePreprocessor")
        try:
            preprocessor = cls(
                data["numeric_columns"], data["categorical_columns"], scaling=data["scaling"], missing=data["missing"]
            )
            stats = {}
            for column in preprocessor.numeric_columns:
                entry = data["numeric_stats"][column]
                fill = entry["fill"]
                stats[column] = {
                    "fill": None if fill is None else float(fill),
                    "center": float(entry["center"]),
                    "scale": float(entry["scale"]),
                }
            categories = {c: list(data["categories"][c]) for c in preprocessor.categorical_columns}
            fills = {c: data["category_fill"][c] for c in preprocessor.categorical_columns}
        except KeyError as error:
            raise ValueError(f"TablePreprocessor.from_dict: missing key {error.args[0]!r}") from None
        for column, entry in stats.items():
            if not all(math.isfinite(v) for v in (entry["center"], entry["scale"])) or entry["scale"] <= 0:
                raise ValueError(f"TablePreprocessor.from_dict: bad statistics for column {column!r}")
        preprocessor.numeric_stats, preprocessor.categories, preprocessor.category_fill = stats, categories, fills
        return preprocessor


def _check_kind(data, kind):
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise ValueError(f"{kind}.from_dict: expected a dict with kind={kind!r}")
    if data.get("version") != 1:
        raise ValueError(f"{kind}.from_dict: unsupported version {data.get('version')!r}")


# ----------------------------------------------------------------------------- text


_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?")  # runs of letters and digits (any script), "don't" kept whole


class TextVectorizer:
    """Text to fixed-length sequences of word indices, for an Embedding (Keras' TextVectorization
    with output_mode="int", as a fitted preprocessor like TablePreprocessor).

    Each text is lower-cased and split into words (runs of letters and digits; punctuation
    dropped). `fit` keeps the `max_tokens - 2` most frequent words of the training texts (ties in
    alphabetical order): index 0 pads, 1 stands for a word outside the vocabulary, the kept words
    follow from 2. `transform` gives int32 (rows, sequence_length): the first words of each text,
    zeros after its end. A missing text reads as no words.
    """

    PAD, OOV = 0, 1

    def __init__(self, max_tokens=20_000, sequence_length=128):
        for name, value, low, high in (("max_tokens", max_tokens, 3, 1_000_000),
                                       ("sequence_length", sequence_length, 1, 10_000)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                raise ValueError(f"TextVectorizer: {name} must be an integer from {low} to {high}. "
                                 f"Received: {name}={value!r}")
        self.max_tokens, self.sequence_length = int(max_tokens), int(sequence_length)
        self.vocabulary = None  # the kept words, index 2 onwards

    @staticmethod
    def tokens(text):
        if text is None or (isinstance(text, float) and math.isnan(text)):
            return []
        return _TOKEN.findall(str(text).lower())

    @property
    def is_fitted(self):
        return self.vocabulary is not None

    @property
    def vocabulary_size(self):
        """The Embedding's input_dim: padding, out-of-vocabulary and the kept words."""
        if not self.is_fitted:
            raise RuntimeError("TextVectorizer: call fit() before reading vocabulary_size")
        return len(self.vocabulary) + 2

    def fit(self, texts):
        counts = {}
        for text in texts:
            for token in self.tokens(text):
                counts[token] = counts.get(token, 0) + 1
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        self.vocabulary = [token for token, _ in ranked[: self.max_tokens - 2]]
        self._index = {token: i + 2 for i, token in enumerate(self.vocabulary)}
        return self

    def transform(self, texts):
        if not self.is_fitted:
            raise RuntimeError("TextVectorizer: call fit() before transform()")
        texts = list(texts)
        out = np.zeros((len(texts), self.sequence_length), dtype=np.int32)
        for row, text in enumerate(texts):
            ids = [self._index.get(token, self.OOV) for token in self.tokens(text)[: self.sequence_length]]
            out[row, : len(ids)] = ids
        return out

    def fit_transform(self, texts):
        texts = list(texts)
        return self.fit(texts).transform(texts)

    def to_dict(self):
        if not self.is_fitted:
            raise RuntimeError("TextVectorizer: call fit() before to_dict()")
        return {"kind": "TextVectorizer", "version": 1, "max_tokens": self.max_tokens,
                "sequence_length": self.sequence_length, "vocabulary": list(self.vocabulary)}

    @classmethod
    def from_dict(cls, data):
        _check_kind(data, "TextVectorizer")
        try:
            vectorizer = cls(data["max_tokens"], data["sequence_length"])
            vocabulary = data["vocabulary"]
        except KeyError as error:
            raise ValueError(f"TextVectorizer.from_dict: missing key {error.args[0]!r}") from None
        if not isinstance(vocabulary, list) or not all(isinstance(t, str) for t in vocabulary) or \
                len(vocabulary) > vectorizer.max_tokens - 2:
            raise ValueError("TextVectorizer.from_dict: the vocabulary must be a list of at most max_tokens - 2 words")
        vectorizer.vocabulary = list(vocabulary)
        vectorizer._index = {token: i + 2 for i, token in enumerate(vectorizer.vocabulary)}
        return vectorizer


# ----------------------------------------------------------------------------- targets


class LabelEncoder:
    """Map class labels (strings or integers) to codes 0..K-1, in sorted label order."""

    def __init__(self):
        self.classes_ = None

    @property
    def num_classes(self):
        return len(self.classes_)

    @staticmethod
    def _labels(y, method):
        labels = np.asarray(y, dtype=object).reshape(-1) if not isinstance(y, np.ndarray) else y.reshape(-1)
        if labels.dtype == object or labels.dtype.kind == "f":
            gaps = [i for i, v in enumerate(labels) if _is_missing(v)]
            if gaps:
                raise ValueError(f"LabelEncoder.{method}: y has {len(gaps)} missing labels (first at row {gaps[0]})")
        return labels

    def fit(self, y):
        labels = self._labels(y, "fit")
        if labels.size == 0:
            raise ValueError("LabelEncoder.fit: y is empty")
        self.classes_ = _sorted_values({_python_scalar(v) for v in np.unique(labels).tolist()})
        return self

    def transform(self, y):
        if self.classes_ is None:
            raise RuntimeError("LabelEncoder: call fit() before transform()")
        labels = self._labels(y, "transform")
        uniques, inverse = np.unique(labels, return_inverse=True)
        lookup = {c: i for i, c in enumerate(self.classes_)}
        unique_codes = np.empty(len(uniques), dtype=np.int64)
        for i, value in enumerate(uniques.tolist()):
            key = _python_scalar(value)
            if key not in lookup:
                raise ValueError(f"LabelEncoder: unknown label {key!r}; known classes: {self.classes_!r}")
            unique_codes[i] = lookup[key]
        return unique_codes[inverse.reshape(-1)]

    def fit_transform(self, y):
        return self.fit(y).transform(y)

    def inverse_transform(self, codes):
        if self.classes_ is None:
            raise RuntimeError("LabelEncoder: call fit() before inverse_transform()")
        codes = np.asarray(codes)
        if codes.dtype.kind not in "iu":
            raise ValueError(f"LabelEncoder.inverse_transform: codes must be integers. Received: dtype={codes.dtype}")
        if codes.size and (codes.min() < 0 or codes.max() >= len(self.classes_)):
            raise ValueError(f"LabelEncoder.inverse_transform: codes must be in [0, {len(self.classes_)})")
        classes = np.array(self.classes_, dtype=object)
        if all(isinstance(c, str) for c in self.classes_):
            classes = classes.astype(str)
        elif all(isinstance(c, int) and not isinstance(c, bool) for c in self.classes_):
            classes = classes.astype(np.int64)
        return classes[codes]

    def to_dict(self):
        if self.classes_ is None:
            raise RuntimeError("LabelEncoder: call fit() before to_dict()")
        return {"kind": "LabelEncoder", "version": 1, "classes": list(self.classes_)}

    @classmethod
    def from_dict(cls, data):
        _check_kind(data, "LabelEncoder")
        if not isinstance(data.get("classes"), list) or not data["classes"]:
            raise ValueError("LabelEncoder.from_dict: 'classes' must be a non-empty list")
        encoder = cls()
        encoder.classes_ = list(data["classes"])
        return encoder


class TargetScaler:
    """Standardize regression targets with the training mean and std (per column for 2-D y)."""

    def __init__(self):
        self.mean_ = None
        self.scale_ = None

    def fit(self, y):
        y = np.asarray(y, dtype=np.float64)
        if y.ndim not in (1, 2) or y.shape[0] == 0:
            raise ValueError(f"TargetScaler.fit: y must be a non-empty 1-D or 2-D array. Received: shape={y.shape}")
        if not np.isfinite(y).all():
            raise ValueError("TargetScaler.fit: y contains missing or infinite values")
        mean, scale = y.mean(axis=0), y.std(axis=0)
        self.mean_ = np.atleast_1d(mean).tolist() if y.ndim == 2 else float(mean)
        scale = np.where(np.asarray(scale) > 0, scale, 1.0)
        self.scale_ = np.atleast_1d(scale).tolist() if y.ndim == 2 else float(scale)
        return self

    def _check(self):
        if self.mean_ is None:
            raise RuntimeError("TargetScaler: call fit() first")

    def transform(self, y):
        self._check()
        y = np.asarray(y, dtype=np.float64)
        return ((y - np.asarray(self.mean_)) / np.asarray(self.scale_)).astype(np.float32)

    def fit_transform(self, y):
        return self.fit(y).transform(y)

    def inverse_transform(self, y_scaled):
        self._check()
        y_scaled = np.asarray(y_scaled, dtype=np.float64)
        mean, scale = np.asarray(self.mean_), np.asarray(self.scale_)
        if y_scaled.ndim == 2 and mean.ndim == 0:
            mean, scale = mean.reshape(1, 1), scale.reshape(1, 1)  # predictions shaped (N, 1)
        return y_scaled * scale + mean

    def to_dict(self):
        self._check()
        return {"kind": "TargetScaler", "version": 1, "mean": self.mean_, "scale": self.scale_}

    @classmethod
    def from_dict(cls, data):
        _check_kind(data, "TargetScaler")
        scaler = cls()
        try:
            scaler.mean_, scaler.scale_ = data["mean"], data["scale"]
        except KeyError as error:
            raise ValueError(f"TargetScaler.from_dict: missing key {error.args[0]!r}") from None
        return scaler


# ----------------------------------------------------------------------------- series


def interpolate_missing(values):
    """Fill NaNs in a (T,) or (T, F) series linearly along time, each column on its own; gaps at
    the ends take the nearest observed value. Returns float64."""
    values = np.array(values, dtype=np.float64)
    columns = values.reshape(values.shape[0], -1)
    steps = np.arange(columns.shape[0])
    for j in range(columns.shape[1]):
        gaps = np.isnan(columns[:, j])
        if gaps.all():
            raise ValueError(f"interpolate_missing: column {j} has no observed values")
        if gaps.any():
            columns[gaps, j] = np.interp(steps[gaps], steps[~gaps], columns[~gaps, j])
    return columns.reshape(values.shape)


def _series(owner, values, missing):
    series = np.asarray(values, dtype=np.float64)
    if series.ndim == 1:
        series = series.reshape(-1, 1)
    if series.ndim != 2:
        raise ValueError(f"{owner}: values must be (T,) or (T, F). Received: shape={np.shape(values)}")
    if missing not in ("error", "interpolate"):
        raise ValueError(f"{owner}: missing must be 'error' or 'interpolate'. Received: missing={missing!r}")
    gaps = int(np.isnan(series).sum())
    if gaps:
        if missing == "error":
            raise ValueError(f"{owner}: values contain {gaps} missing entries; pass missing='interpolate'")
        series = interpolate_missing(series)
    return series


def input_windows(values, window, *, missing="error"):
    """Every window of `window` consecutive steps as float32 (T - window + 1, window, F), oldest
    first: the model inputs for predicting after each window (no targets needed)."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"input_windows: window must be a positive integer. Received: window={window!r}")
    series = _series("input_windows", values, missing)
    if series.shape[0] < window:
        raise ValueError(f"input_windows: a series of length {series.shape[0]} is too short for window={window}")
    windows = np.lib.stride_tricks.sliding_window_view(series.astype(np.float32), window, axis=0)
    return np.ascontiguousarray(windows.transpose(0, 2, 1))


def sliding_windows(values, window, horizon=1, *, target_column=0, missing="error"):
    """Cut a series into supervised samples.

    values: (T,) or (T, F), oldest first. Sample i has inputs values[i : i+window] (all
    features) and targets the next `horizon` values of `target_column`.
    Returns X float32 (N, window, F) and y float32 (N,) for horizon 1, else (N, horizon), with
    N = T - window - horizon + 1, in time order.
    missing: "error" (refuse NaNs) or "interpolate" (fill them with `interpolate_missing`).
    """
    for name, value in (("window", window), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"sliding_windows: {name} must be a positive integer. Received: {name}={value!r}")
    series = _series("sliding_windows", values, missing)
    if isinstance(target_column, bool) or not isinstance(target_column, (int, np.integer)) or not (
        0 <= target_column < series.shape[1]
    ):
        raise ValueError(
            f"sliding_windows: target_column must be in [0, {series.shape[1]}). Received: target_column={target_column!r}"
        )
    n = series.shape[0] - window - horizon + 1
    if n < 1:
        raise ValueError(
            f"sliding_windows: a series of length {series.shape[0]} is too short for "
            f"window={window} and horizon={horizon}"
        )
    series = series.astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(series, window, axis=0)  # (T-window+1, F, window)
    x = np.ascontiguousarray(windows[:n].transpose(0, 2, 1))
    targets = np.lib.stride_tricks.sliding_window_view(series[window:, target_column], horizon)[:n]
    y = np.ascontiguousarray(targets[:, 0] if horizon == 1 else targets)
    return x, y


# ----------------------------------------------------------------------------- images


def scale_images(images):
    """uint8 pixels to float32 in [0, 1]."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"scale_images: expected uint8 images. Received: dtype={images.dtype}")
    return images.astype(np.float32) * IMAGE_SCALE


IMAGE_SCALE = np.float32(1 / 255)
_CHUNK_BYTES = 64 << 20  # what reading a whole ImageRows holds at once beside its result


class ImageRows:
    """The rows ``indices`` of a uint8 image array as float32 images, scaled to [0, 1] with
    ``scale`` (as ``scale_images`` does), read from ``images`` only when asked for.

    It stands for the array ``scale_images(images[indices])`` without making it: on a memory map
    nothing is read until a batch is, so a set bigger than memory trains from disk, and a split of
    one costs its indices. Like that array, it has ``shape``, ``dtype`` (float32) and ``len``; a
    slice is another ImageRows (a view), an integer or an array of them reads those rows into a new
    NumPy array, and ``np.asarray`` reads them all. The values are those of ``scale_images``, bit
    for bit.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, images, indices=None, scale=True):
        if getattr(images, "dtype", None) != np.uint8 or getattr(images, "ndim", 0) < 2:
            raise ValueError("ImageRows: expected uint8 images of shape (N, ...). Received: "
                             f"dtype={getattr(images, 'dtype', None)}, shape={getattr(images, 'shape', None)}")
        self.images = images
        self.indices = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices.ndim != 1:
            raise ValueError(f"ImageRows: indices must be one-dimensional. Received: shape={self.indices.shape}")
        self.scale = bool(scale)

    @property
    def shape(self):
        return (len(self.indices), *self.images.shape[1:])

    @property
    def ndim(self):
        return self.images.ndim

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def nbytes(self):
        return self.size * self.dtype.itemsize

    def __len__(self):
        return len(self.indices)

    def __repr__(self):
        return f"ImageRows(shape={self.shape}, scale={self.scale})"

    def __getitem__(self, key):
        if isinstance(key, slice):
            return ImageRows(self.images, self.indices[key], self.scale)
        if isinstance(key, (int, np.integer)):
            return self.read(np.array([key]))[0]
        return self.read(np.arange(len(self))[key] if np.asarray(key).dtype == bool else key)

    def stored(self, positions):
        """The images at ``positions`` (of this view) as they are stored: uint8, unscaled."""
        return gather_rows(self.images, self.indices[np.asarray(positions, dtype=np.int64)])

    def read(self, positions, out=None):
        """The images at ``positions`` (of this view) as float32, into ``out`` if given (any float dtype)."""
        if out is not None and out.dtype != np.float32:  # computed in float32 first, as scale_images does
            out[...] = self.read(positions)
            return out
        out = gather_rows(self.images, self.indices[np.asarray(positions, dtype=np.int64)], np.float32, out=out)
        if self.scale:
            out *= IMAGE_SCALE
        return out

    def chunks(self):
        """``(begin, end)`` spans of rows, each read at once (about 64 MB as float32)."""
        step = max(1, _CHUNK_BYTES // (self.dtype.itemsize * math.prod(self.images.shape[1:])))
        return [(begin, min(begin + step, len(self))) for begin in range(0, len(self), step)]

    def astype(self, dtype, copy=True):
        """All the rows, read, as a NumPy array of ``dtype``."""
        return np.asarray(self, dtype=dtype)

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, dtype=np.float32 if dtype is None else dtype)
        for begin, end in self.chunks():
            self.read(np.arange(begin, end), out=out[begin:end])
        return out


def _spatial_axes(owner, batch, data_format):
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            f"{owner}: data_format must be 'channels_last' or 'channels_first'. Received: data_format={data_format!r}"
        )
    if batch.ndim == 3:  # (N, H, W), no channel axis
        return 1, 2
    if batch.ndim != 4:
        raise ValueError(f"{owner}: batch must be (N, H, W) or (N, H, W, C)/(N, C, H, W). Received: shape={batch.shape}")
    return (1, 2) if data_format == "channels_last" else (2, 3)


def random_crop(batch, padding, rng, *, data_format="channels_last"):
    """Zero-pad each image by `padding` pixels on every side and cut it back to its size at a
    random offset (one offset per image). Returns a new array; `batch` is not changed."""
    batch = np.asarray(batch)
    h_axis, w_axis = _spatial_axes("random_crop", batch, data_format)
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"random_crop: padding must be a non-negative integer. Received: padding={padding!r}")
    rng = _rng("random_crop", rng)
    if padding == 0:
        return batch.copy()
    pad = [(0, 0)] * batch.ndim
    pad[h_axis] = pad[w_axis] = (padding, padding)
    padded = np.pad(batch, pad)
    n, height, width = batch.shape[0], batch.shape[h_axis], batch.shape[w_axis]
    top = rng.integers(0, 2 * padding + 1, size=n)
    left = rng.integers(0, 2 * padding + 1, size=n)
    rows = (top[:, None] + np.arange(height))[:, :, None]  # (N, H, 1)
    cols = (left[:, None] + np.arange(width))[:, None, :]  # (N, 1, W)
    images = np.arange(n)[:, None, None]
    if batch.ndim == 4 and data_format == "channels_first":
        return padded.transpose(0, 2, 3, 1)[images, rows, cols].transpose(0, 3, 1, 2).copy()
    return padded[images, rows, cols]


def random_flip(batch, rng, *, probability=0.5, data_format="channels_last"):
    """Mirror each image left-right with the given probability. Returns a new array."""
    batch = np.asarray(batch)
    _, w_axis = _spatial_axes("random_flip", batch, data_format)
    if not 0 <= probability <= 1:
        raise ValueError(f"random_flip: probability must be in [0, 1]. Received: probability={probability!r}")
    rng = _rng("random_flip", rng)
    flip = rng.random(batch.shape[0]) < probability
    out = batch.copy()
    out[flip] = np.flip(batch[flip], axis=w_axis)
    return out


# ----------------------------------------------------------------------------- batching


def load_array(path, *, mmap=True):
    """Open a saved `.npy` array, memory-mapped read-only by default, never unpickling."""
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def iterate_batches(x, y=None, batch_size=32, *, shuffle=False, rng=None, drop_last=False):
    """Yield (x_batch, y_batch) NumPy copies of `batch_size` rows (y_batch None without y).

    Works on in-memory arrays and on memory-mapped ones (`load_array`): only the rows of one
    batch are read at a time, so a data set larger than memory can be trained on. With
    `shuffle`, the row order is a fresh permutation from `rng` (Generator or seed) each call;
    the indices inside a batch are sorted so reads from a memory map go forward through the
    file, which leaves the batch's row order ascending (the batch's content is still random).
    """
    n = len(x)
    if y is not None and len(y) != n:
        raise ValueError(f"iterate_batches: x and y must have the same number of rows. Received: {n} and {len(y)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"iterate_batches: batch_size must be a positive integer. Received: batch_size={batch_size!r}")
    if shuffle:
        if rng is None:
            raise ValueError("iterate_batches: shuffle=True needs rng (a numpy Generator or a seed)")
        order = _rng("iterate_batches", rng).permutation(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, n)
        if shuffle:
            index = np.sort(order[start:end])
            xb = np.asarray(x[index])
            yb = None if y is None else np.asarray(y[index])
        else:  # contiguous slice: one sequential read; copied so no view pins the map
            xb = np.array(x[start:end])
            yb = None if y is None else np.array(y[start:end])
        yield xb, yb


def gather_rows(array, indices, dtype=None, out=None):
    """``array[indices]`` as an in-memory array of ``dtype`` (a new one, or ``out``), rows in the
    order of ``indices``.

    The rows are read in ascending order (forward through a memory map, the order the page
    cache reads ahead in) and then put in the order asked for, so a shuffled batch of a
    memory-mapped set reads like a sorted one and still comes out exactly as ``array[indices]``.
    Only the batch is copied, in the array's own dtype first, then cast while it is placed.
    """
    indices = np.asarray(indices)
    ascending = np.argsort(indices, kind="stable")
    rows = array[indices[ascending]]
    if out is None:
        out = np.empty((len(indices), *array.shape[1:]), dtype=array.dtype if dtype is None else dtype)
    out[ascending] = rows
    return out
