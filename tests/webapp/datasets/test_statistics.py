"""Streaming statistics: block by block, they match a computation over the whole table."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from webapp.datasets import ingest, statistics
from webapp.datasets.ingest import ingest_table, read_table


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few kilobytes and batches of 1,000 rows, so a small file crosses many of them."""
    monkeypatch.setattr(ingest, "PARSE_BLOCK_BYTES", 4096)
    monkeypatch.setattr(ingest, "FAST_CHUNK_BYTES", 4096)
    monkeypatch.setattr(ingest, "INFER_BLOCK_BYTES", 4096)
    monkeypatch.setattr(ingest, "BATCH_ROWS", 1000)


@pytest.fixture(params=["compiled", "numpy"])
def each_path(request, monkeypatch):
    """Once with the compiled CSV reader and statistics (where built), once with pyarrow and NumPy alone."""
    from webapp.datasets import csvscan

    if request.param == "numpy":
        monkeypatch.setattr(csvscan, "_csvscan", None)
        monkeypatch.setattr(statistics, "_csvscan", None)
    elif csvscan._csvscan is None:
        pytest.skip("the _csvscan extension is not built")
    return request.param


def _frame(rows=12_000, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(5, 2, rows).round(3)
    x[rng.random(rows) < 0.05] = np.nan
    frame = pd.DataFrame({
        "x": x,
        "n": rng.integers(0, 7, rows),
        "city": rng.choice(["Paris", "Lyon", "Nice"], rows),
        "word": [f"w{i}" for i in rng.integers(0, 5000, rows)],
        "flag": rng.random(rows) < 0.3,
        "day": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 400, rows), unit="D"),
    })
    return pd.concat([frame, frame.iloc[:25]], ignore_index=True)  # 25 duplicate rows at the end


def test_statistics_over_many_blocks_match_a_computation_over_the_whole_table(tmp_path, small_blocks, each_path):
    frame = _frame()
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False, date_format="%Y-%m-%d")
    result = ingest_table(path, tmp_path, file_format="csv")
    columns = {c["name"]: c for c in result["stats"]["columns"]}
    assert read_table(tmp_path / "table.arrow").num_rows == len(frame) == result["n_rows"]

    x, present = columns["x"], frame["x"].dropna()
    assert (x["type"], x["missing"], x["unique"]) == ("numeric", frame["x"].isna().sum(), present.nunique())
    assert (x["min"], x["max"]) == (present.min(), present.max())
    assert x["mean"] == pytest.approx(present.mean(), rel=1e-12) and x["std"] == pytest.approx(present.std(), rel=1e-9)
    counts, edges = np.histogram(present, bins=30)
    assert x["histogram"] == {"counts": counts.tolist(), "edges": edges.tolist()}

    n = columns["n"]
    assert n["unique"] == 7 and dict(n["counts"]) == {str(k): int(v) for k, v in frame["n"].value_counts().items()}
    city = columns["city"]
    assert city["type"] == "categorical" and dict(city["counts"]) == frame["city"].value_counts().to_dict()
    word = columns["word"]
    assert word["type"] == "text" and word["unique"] == frame["word"].nunique()
    assert [c for _, c in word["top"]] == frame["word"].value_counts().iloc[:20].tolist()
    assert word["mean_length"] == pytest.approx(frame["word"].str.len().mean())
    assert dict(columns["flag"]["counts"]) == {str(k): int(v) for k, v in frame["flag"].value_counts().items()}
    day = columns["day"]
    assert (day["type"], day["unique"]) == ("datetime", frame["day"].nunique())
    assert (day["min"], day["max"]) == (str(frame["day"].min()), str(frame["day"].max()))
    assert result["stats"]["duplicate_rows"] == frame.duplicated().sum() >= 25
    preview = (tmp_path / "preview.json").read_text()
    assert '"Paris"' in preview or '"Lyon"' in preview or '"Nice"' in preview


def test_a_column_that_turns_to_words_after_the_first_blocks_is_read_as_text(tmp_path, small_blocks, each_path):
    lines = ["a,b"] + [f"{i},{i * 0.5}" for i in range(3000)] + ["oops,1.5"] + [f"{i},2" for i in range(100)]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    result = ingest_table(path, tmp_path, file_format="csv")
    a, b = result["stats"]["columns"]
    assert a["type"] == "text" and b["type"] == "numeric" and result["n_rows"] == 3101
    assert read_table(tmp_path / "table.arrow").column("a")[3000].as_py() == "oops"


def test_the_hostile_messages_survive_streaming(tmp_path, small_blocks, each_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n" + "1,2\n" * 3000 + "1,2,3\n" + "1,2\n" * 10)
    with pytest.raises(ingest.IngestError, match="Line 3002 has 3 fields but the header has 2"):
        ingest_table(path, tmp_path, file_format="csv")


def test_distinct_counts_of_continuous_columns_are_estimated_within_a_few_percent(each_path):
    values = np.random.default_rng(0).random(300_000)
    table = statistics.TableStatistics(["v"], ["numeric"])
    for start in range(0, len(values), 32_768):
        table.add(pa.record_batch([pa.array(values[start:start + 32_768])], names=["v"]))
    column = table.finish()[0][0]
    assert column["unique_estimated"] is True
    assert column["unique"] == pytest.approx(300_000, rel=0.05)


def test_duplicate_rows_past_the_bound_are_estimated_from_a_hash_sample(monkeypatch, each_path):
    monkeypatch.setattr(statistics, "MAX_ROW_HASHES", 20_000)
    rng = np.random.default_rng(3)
    values = rng.integers(0, 40_000, 100_000).astype(float)  # many repeats
    expected = pd.Series(values).duplicated().sum()
    table = statistics.TableStatistics(["v"], ["numeric"])
    for start in range(0, len(values), 10_000):
        table.add(pa.record_batch([pa.array(values[start:start + 10_000])], names=["v"]))
    summary = table.finish()[1]
    assert summary["duplicate_rows_estimated"] is True
    assert summary["duplicate_rows"] == pytest.approx(expected, rel=0.1)
