"""Reading a ready data set version back: the contract other apps (experiments) build on.

Pure functions of a ready ``DatasetVersion``; the files were written by ingestion and never
change afterwards.

- ``load_table(version)`` → ``pandas.DataFrame`` with the original column names: numeric
  columns float64 (NaN for missing), categorical and text columns strings, booleans,
  datetimes as datetime64[ns].
- ``load_images(version)`` → ``(images, labels, class_names)``: uint8 ``(N, H, W, C)``
  memory-mapped read-only, int64 ``(N,)``, and the class names in label order.
- ``load_series(version)`` → ``pandas.DataFrame``: the time column (if any, named by
  ``version.schema["time_column"]``) and the numeric value columns, sorted by time.
- ``version.schema``: ``{"kind", "columns": [{"name", "type", "missing"}, …]}`` for tables and
  series (type one of numeric, categorical, text, boolean, datetime), ``{"kind", "image_shape":
  [H, W, C], "classes": [...]}`` for images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from webapp.datasets.images import IMAGES_FILE, LABELS_FILE
from webapp.datasets.ingest import PREVIEW_FILE, TABLE_FILE, read_table

UPLOAD_FILE = "upload.bin"  # the uploaded bytes, under a generated name


class NotReady(ValueError):
    pass


def _folder(version, kinds: tuple[str, ...]) -> Path:
    if version.status != "ready":
        raise NotReady(f"Data set version {version.pk} is {version.status}, not ready")
    kind = version.schema.get("kind")
    if kind not in kinds:
        raise NotReady(f"Data set version {version.pk} holds {kind}, not {' or '.join(kinds)}")
    return version.folder


def load_table(version):
    """The whole table as a DataFrame (also works for series, which are tables with a time column)."""
    return read_table(_folder(version, ("table", "series")) / TABLE_FILE).to_pandas()


def load_series(version):
    return read_table(_folder(version, ("series",)) / TABLE_FILE).to_pandas()


def load_images(version) -> tuple[np.ndarray, np.ndarray, list[str]]:
    folder = _folder(version, ("images",))
    images = np.load(folder / IMAGES_FILE, mmap_mode="r", allow_pickle=False)
    labels = np.load(folder / LABELS_FILE, allow_pickle=False)
    return images, labels, list(version.schema["classes"])


def load_preview(version) -> dict:
    """The first rows of a table or series: {"columns": [...], "rows": [[...], ...]}."""
    return json.loads((_folder(version, ("table", "series")) / PREVIEW_FILE).read_text())


def upload_path(version) -> Path:
    return version.folder / UPLOAD_FILE


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0
