"""Reading a data set version for a run: the datasets app's storage, then ``preparation``."""

from __future__ import annotations

import json
from collections import OrderedDict

from webapp.experiments import preparation

_shape_cache: OrderedDict = OrderedDict()
_CACHE_SIZE = 32


def dataset_kind(version) -> str:
    return str(version.dataset.kind)


def prepare(version, data_config: dict | None, *, loss: str = "") -> preparation.Prepared:
    from webapp.datasets import storage

    config = preparation.normalise_config(data_config)
    dataset = version.dataset
    kind = dataset_kind(version)
    target = config["target"] or (dataset.target_column or "")
    ignored = list(getattr(dataset, "ignored_columns", None) or [])
    # Free text and dates are not features unless the data config names them.
    ignored += [c.get("name") for c in (version.schema or {}).get("columns", [])
                if isinstance(c, dict) and c.get("type") in ("text", "datetime")]
    if kind == "images":
        images, labels, class_names = storage.load_images(version)
        return preparation.prepare_images(images, labels, class_names, config, loss=loss)
    if kind == "series":
        frame = storage.load_series(version)
        return preparation.prepare_series(frame, config, target=target, ignored=ignored, loss=loss)
    frame = storage.load_table(version)
    return preparation.prepare_table(frame, config, target=target, ignored=ignored, loss=loss)


def describe(version, data_config: dict | None = None) -> dict:
    """What the builder needs to know about the prepared data: input shape, task, outputs, classes."""
    dataset = version.dataset
    # Everything the answer depends on: ids alone repeat (a test database starts again at 1) and a
    # data set's target or ignored columns can change after ingestion.
    key = (version.pk, version.content_hash, str(version.ingested_at), dataset_kind(version),
           dataset.target_column or "", json.dumps(list(getattr(dataset, "ignored_columns", None) or [])),
           json.dumps(data_config or {}, sort_keys=True))
    if key in _shape_cache:
        _shape_cache.move_to_end(key)
        return _shape_cache[key]
    prepared = prepare(version, data_config)
    config = preparation.normalise_config(data_config)
    info = {
        "kind": prepared.preprocessing.get("kind") or dataset_kind(version),  # a table's text column: "text"
        "task": prepared.task,
        "input_shape": prepared.input_shape,
        "outputs": prepared.output_units,
        "class_names": [str(c) for c in prepared.class_names][:100],
        "feature_names": [str(c) for c in prepared.feature_names][:200],
        "target": prepared.preprocessing.get("target") or config["target"] or "",
        "rows": {"train": len(prepared.x_train), "validation": 0 if prepared.x_val is None else len(prepared.x_val),
                 "test": 0 if prepared.x_test is None else len(prepared.x_test)},
    }
    if "vocabulary_size" in prepared.preprocessing:
        info["vocabulary_size"] = prepared.preprocessing["vocabulary_size"]
    _shape_cache[key] = info
    while len(_shape_cache) > _CACHE_SIZE:
        _shape_cache.popitem(last=False)
    return info
