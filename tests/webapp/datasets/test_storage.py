"""The storage contract the experiments app builds on, on the sample data sets."""

import numpy as np
import pandas as pd
import pytest

from tests.webapp.datasets.conftest import FIXTURES
from webapp.datasets import storage


def test_a_csv_table_loads_back_with_its_original_columns_and_types(ingest):
    version = ingest(FIXTURES / "iris.csv", name="Iris")
    assert version.status == "ready", version.error
    frame = storage.load_table(version)
    assert list(frame.columns) == ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                                   "petal width (cm)", "species"]
    assert frame.shape == (150, 5)
    assert frame["sepal length (cm)"].dtype == np.float64
    assert set(frame["species"]) == {"setosa", "versicolor", "virginica"}
    types = {c["name"]: c["type"] for c in version.schema["columns"]}
    assert types["species"] == "categorical" and types["petal width (cm)"] == "numeric"
    assert version.schema["kind"] == "table" and version.n_rows == 150
    assert version.dataset.target_column == "species"


def test_missing_values_become_nan_and_are_counted(ingest):
    version = ingest("a,b,when,flag\n1,x,2024-01-01,true\n,y,2024-01-02,false\n3,,,true\n")
    frame = storage.load_table(version)
    assert np.isnan(frame["a"][1]) and frame["a"].dtype == np.float64
    assert frame["when"].dtype.kind == "M"
    assert frame["flag"].tolist() == [True, False, True]
    missing = {c["name"]: c["missing"] for c in version.schema["columns"]}
    assert missing == {"a": 1, "b": 1, "when": 1, "flag": 0}


def test_a_zip_of_class_folders_loads_as_memory_mapped_images_and_labels(ingest):
    version = ingest(FIXTURES / "digits8x8.zip", name="Digits", filename="digits.zip")
    assert version.status == "ready", version.error
    images, labels, classes = storage.load_images(version)
    assert isinstance(images, np.memmap) and images.dtype == np.uint8 and images.shape == (1797, 8, 8, 1)
    assert labels.dtype == np.int64 and labels.shape == (1797,)
    assert classes == [str(d) for d in range(10)]
    assert version.schema["image_shape"] == [8, 8, 1] and version.schema["classes"] == classes
    assert np.bincount(labels).tolist() == [count for _, count in version.stats["class_counts"]]


def test_a_series_loads_with_its_time_column_first(ingest):
    version = ingest(FIXTURES / "co2_weekly.csv", name="CO2", kind="series")
    assert version.status == "ready", version.error
    frame = storage.load_series(version)
    assert list(frame.columns) == ["date", "co2"]
    assert frame["date"].dtype.kind == "M" and frame["date"].is_monotonic_increasing
    assert version.schema["time_column"] == "date" and version.schema["kind"] == "series"
    assert int(frame["co2"].isna().sum()) == version.schema["columns"][1]["missing"] > 0


def test_loading_a_version_that_is_not_ready_is_refused(ingest):
    failed = ingest("\x00\x01\x02garbage", name="Bad")
    with pytest.raises(storage.NotReady):
        storage.load_table(failed)


def test_statistics_match_a_hand_computation(ingest):
    version = ingest("x,label\n1,a\n2,a\n4,b\n,b\n8,c\n")
    x, label = version.stats["columns"]
    values = [1.0, 2.0, 4.0, 8.0]
    mean = sum(values) / 4
    std = (sum((v - mean) ** 2 for v in values) / 3) ** 0.5
    assert x["type"] == "numeric" and x["missing"] == 1 and x["unique"] == 4
    assert (x["min"], x["max"]) == (1.0, 8.0)
    assert x["mean"] == pytest.approx(3.75) and x["std"] == pytest.approx(std)
    assert sum(x["histogram"]["counts"]) == 4
    assert label["type"] == "categorical" and label["unique"] == 3
    assert label["top"] == [["a", 2], ["b", 2], ["c", 1]]
    assert version.stats["duplicate_rows"] == 0 and version.stats["n_rows"] == 5


def test_duplicate_rows_and_constant_columns_are_counted(ingest):
    version = ingest("a,b,c\n1,x,7\n1,x,7\n2,y,7\n1,x,7\n")
    assert version.stats["duplicate_rows"] == 2
    assert version.stats["constant_columns"] == ["c"]
    assert pd.isna(version.stats["columns"][2].get("std")) or version.stats["columns"][2]["std"] == 0
