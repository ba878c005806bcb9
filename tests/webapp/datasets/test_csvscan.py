"""The compiled CSV fast path reads every file as pyarrow's reader does, and its statistics are the
NumPy path's. Each test compares the two paths on the same file; skipped where the extension is not built."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webapp.datasets import csvscan, ingest, statistics
from webapp.datasets.sniff import IngestError, sniff_text

pytestmark = pytest.mark.skipif(csvscan._csvscan is None, reason="the _csvscan extension is not built")


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Chunks of 64 bytes, so rows meet chunk ends everywhere."""
    monkeypatch.setattr(ingest, "FAST_CHUNK_BYTES", 64)


def _without_extension(monkeypatch):
    monkeypatch.setattr(csvscan, "_csvscan", None)
    monkeypatch.setattr(statistics, "_csvscan", None)


def _both(path, monkeypatch):
    """The table read by the fast path, and by pyarrow's reader; and whether the fast path read it."""
    text_format = sniff_text(path)
    schema = ingest.stream_csv(path, text_format, lambda schema, batches: schema)
    fast_reads = csvscan.reads(text_format.encoding, text_format.delimiter, schema.types)
    fast = ingest.read_csv(path, text_format)
    with monkeypatch.context() as m:
        _without_extension(m)
        slow = ingest.read_csv(path, text_format)
    return fast, slow, fast_reads


def _assert_same(fast: pa.Table, slow: pa.Table):
    assert fast.schema == slow.schema
    fast, slow = fast.combine_chunks(), slow.combine_chunks()
    for name in fast.column_names:
        a, b = fast.column(name), slow.column(name)
        if pa.types.is_floating(a.type):  # NaN == NaN here, and -0.0 is told from 0.0
            x, y = a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False)
            assert a.null_count == b.null_count, name
            assert np.array_equal(np.signbit(x), np.signbit(y)) and np.array_equal(x, y, equal_nan=True), name
        else:
            assert a.equals(b), (name, a.to_pylist()[:10], b.to_pylist()[:10])


TRICKY = {
    "quotes": 'a,b,c\n"x, y",1,"say ""hi"""\n"",2,plain\n"NA",3,"a""b"\n',
    "numbers": ("v,w\n1.5,  2\n-0,+3\n.5,5.\n1e5,1E-7\ninf,-Infinity\nnan,NaN\n"
                "12345678901234567890123,0.000000000000000000000000123\n007,-1.25e+300\n"
                "0.1234567890123456789,123456789.123456789\n,NA\n"),
    "booleans": "flag,n\ntrue,1\nFalse,2\n,3\nTRUE,4\nNULL,5\n",
    "windows": "a,b\r\n1,x\r\n2,y\r\n\r\n3,z\r\n",
    "bom and no final newline": "\ufeffa;b\n1;2\n3;4",
    "empty lines": "a,b\n\n1,2\n\n\n3,4\n\n",
    "unicode": "name,n\nÉlodie,1\n日本,2\n\"Zoë, the 2nd\",3\n",
    "dates": "day,at,n\n2021-01-02,2021-01-02 03:04:05,1\n2021-12-31,2022-06-30T23:59:59,2\n,,3\n",
    "calendar": ('day,n\n2000-02-29,1\n  1969-12-31\t,2\n"2024-02-29",3\n0001-01-01,4\n9999-12-31,5\nNA,6\n'
                 '1970-01-01,7\n1900-03-01,8\n2100-12-31,9\n'),
    "tabs": "a\tb\n1\tx y\n2\tz\n",
    "many digits": "x\n" + "\n".join(repr(v) for v in np.random.default_rng(0).normal(0, 1e6, 200)) + "\n",
}


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_it_reads_each_tricky_file_as_pyarrow_does(name, tmp_path, monkeypatch, tiny_chunks):
    path = tmp_path / "t.csv"
    path.write_bytes(TRICKY[name].encode("utf-8"))
    fast, slow, fast_reads = _both(path, monkeypatch)
    assert fast_reads
    _assert_same(fast, slow)


def test_numbers_are_parsed_exactly_as_python_parses_them(tmp_path):
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0, 1, 500), rng.normal(0, 1e12, 500), rng.random(500).round(4),
                             10.0 ** rng.integers(-300, 300, 200), np.array([5e-324, 1.7976931348623157e308])])
    text = "x\n" + "\n".join([repr(float(v)) for v in values] + [f"{v:.4f}" for v in values[:500]]) + "\n"
    path = tmp_path / "n.csv"
    path.write_text(text)
    got = ingest.read_csv(path, sniff_text(path)).column("x").to_numpy()
    expected = np.array([float(line) for line in text.splitlines()[1:]])
    assert np.array_equal(got, expected)


@pytest.mark.parametrize(("content", "reason"), [
    ('a,b\n1,"two\nlines"\n3,x\n', "a quoted line break"),
    ("a,b\n1,x\r2,y\r", "carriage returns alone"),
])
def test_files_it_cannot_cut_into_chunks_are_read_by_pyarrow_the_same(content, reason, tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    path.write_text(content, newline="")
    fast, slow, _ = _both(path, monkeypatch)
    _assert_same(fast, slow)
    assert fast.num_rows == 2, reason


def test_a_latin1_file_is_left_to_pyarrow_which_transcodes_it(tmp_path, monkeypatch, tiny_chunks):
    path = tmp_path / "t.csv"
    path.write_bytes(b"name,n\n" + b"abc,1\n" * 2_000 + b"caf\xe9,2\n")
    fast, slow, fast_reads = _both(path, monkeypatch)
    assert not fast_reads
    _assert_same(fast, slow)
    assert fast.column("name")[-1].as_py() == "café"


def test_a_ragged_row_in_a_later_chunk_is_reported_with_its_line(tmp_path, tiny_chunks):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n" + "1,2\n" * 500 + "1,2,3\n")
    with pytest.raises(IngestError, match="Line 502 has 3 fields but the header has 2"):
        ingest.ingest_table(path, tmp_path, file_format="csv")


def test_the_compiled_reader_itself_reads_dates_to_pyarrow_s_days(tmp_path):
    """No giving way here: ChunkReader raises where it cannot read, and the days are pyarrow's."""
    rng = np.random.default_rng(4)
    days = pd.to_datetime(rng.integers(-719_000, 2_900_000, 3_000), unit="D", origin="1970-01-01").strftime("%Y-%m-%d")
    path = tmp_path / "d.csv"
    path.write_text("day\n" + "\n".join(f" {d} " if i % 7 == 0 else d for i, d in enumerate(days)) + "\nNA\n")
    reader = csvscan.ChunkReader(path, schema=pa.schema([("day", pa.date32())]), delimiter=",", has_header=True,
                                 null_values=["NA"], true_values=[], false_values=[], chunk_bytes=4096)
    got = pa.concat_arrays([batch.column(0) for batch in reader])
    expected = pa.array([*days, None]).cast(pa.date32())
    assert got.equals(expected)


@pytest.mark.parametrize("bad", ["2021-02-29", "2021-13-01", "2021-1-05", "20210105", "1900-02-29"])
def test_a_date_column_with_an_impossible_date_past_the_typed_head_is_text_on_both_paths(bad, tmp_path, monkeypatch):
    days = pd.date_range("1990-01-01", periods=120_000, freq="D").strftime("%Y-%m-%d")  # past the 1 MB typed
    path = tmp_path / "d.csv"
    path.write_text("day\n" + "\n".join(days) + f"\n{bad}\n")
    fast, slow, fast_reads = _both(path, monkeypatch)
    assert fast_reads
    _assert_same(fast, slow)
    assert fast.schema.field("day").type == pa.string() and fast.column("day")[-1].as_py() == bad


def _table_text(rows=6000, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(50, 8, rows).round(3)
    x[rng.random(rows) < 0.05] = np.nan
    frame = pd.DataFrame({
        "x": x, "k": rng.integers(0, 5, rows), "big": rng.normal(0, 1, rows),
        "word": rng.choice(["a", "bb", "ccc"], rows), "flag": rng.random(rows) < 0.5,
        "day": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 90, rows), unit="D"),
    })
    frame.loc[3, "big"] = -0.0
    frame.loc[4, "big"] = 0.0
    frame.loc[5, "big"] = np.inf
    frame.loc[[7, 9], "day"] = pd.NaT
    return pd.concat([frame, frame.iloc[:40]]).to_csv(index=False, date_format="%Y-%m-%d")


def test_its_statistics_are_the_numpy_path_s(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    path.write_text(_table_text())
    (tmp_path / "fast").mkdir()
    (tmp_path / "slow").mkdir()
    fast = ingest.ingest_table(path, tmp_path / "fast", file_format="csv")
    with monkeypatch.context() as m:
        _without_extension(m)
        slow = ingest.ingest_table(path, tmp_path / "slow", file_format="csv")
    assert fast["schema"] == slow["schema"]
    summary = {k: v for k, v in fast["stats"].items() if k != "columns"}
    assert summary == {k: v for k, v in slow["stats"].items() if k != "columns"}
    assert summary["duplicate_rows"] >= 40
    for a, b in zip(fast["stats"]["columns"], slow["stats"]["columns"]):
        for key in ("mean", "std"):
            if key in b:
                assert a.pop(key) == pytest.approx(b.pop(key), rel=1e-12), (b["name"], key)
        assert a == b


def _histogram_of(values: np.ndarray, edges, counts=None) -> np.ndarray:
    """The histogram float_stats counts on the way (its other outputs left aside)."""
    counts = np.zeros(len(edges) - 1, np.int64) if counts is None else counts
    scratch = np.zeros(len(values), np.uint64), np.empty(len(values), np.uint64)
    csvscan._csvscan.float_stats(values, None, 0, len(values), *scratch, 2**64 - 1, 1, counts, np.asarray(edges))
    return counts


def test_the_compiled_histogram_counts_as_numpy_does_at_every_edge():
    rng = np.random.default_rng(3)
    for trial in range(200):
        low, high = sorted(rng.normal(0, 10 ** rng.uniform(-3, 6), 2))
        bins = int(rng.integers(1, 60))
        edges = np.histogram_bin_edges(np.empty(0), bins, (low, high))
        values = np.concatenate([rng.uniform(low, high, 500), edges, np.nextafter(edges, np.inf),
                                 np.nextafter(edges, -np.inf), [np.nan, np.inf, -np.inf]])
        counts = _histogram_of(values, edges)
        assert counts.tolist() == np.histogram(values, bins=bins, range=(low, high))[0].tolist(), trial


def test_distinct_values_are_counted_exactly_by_their_hashes():
    values = np.array([0.0, -0.0, 1.5, 1.5, np.nan, 2.0, np.inf, -np.inf, np.inf] * 3)
    table = statistics.TableStatistics(["v"], ["numeric"])
    table.add(pa.record_batch([pa.array(values, from_pandas=False)], names=["v"]))
    column = table.finish()[0][0]
    assert (column["unique"], column["missing"]) == (5, 3)  # 0, 1.5, 2, inf, -inf


def _kept_hashes(function, values, limit):
    """The hashes float_stats or int_stats hands back for the distinct count, and every value's hash."""
    rows, present = np.zeros(len(values), np.uint64), np.empty(len(values), np.uint64)
    kept = function(values, None, 0, len(values), rows, present, limit, 1)[-1]
    alone = np.zeros(len(values), np.uint64)  # each value's own hash, from its row's (weight 1, one column)
    for i in range(len(values)):
        function(values[i:i + 1], None, 0, 1, alone[i:i + 1], np.empty(1, np.uint64), limit, 1)
    return present[:kept], alone


@pytest.mark.parametrize("kind", ["float", "int"])
def test_an_exact_count_gets_each_hash_of_a_few_valued_block_once_in_first_seen_order(kind):
    rng = np.random.default_rng(5)
    function = csvscan._csvscan.float_stats if kind == "float" else csvscan._csvscan.int_stats
    few = rng.integers(-3, 300, 20_000)
    values = np.append(few.astype(np.float64), [0.0, -0.0, 0.0]) if kind == "float" else few.astype(np.int64)
    kept, alone = _kept_hashes(function, values, 2**64 - 1)
    _, first = np.unique(alone, return_index=True)
    assert kept.tolist() == alone[np.sort(first)].tolist()
    # Under a sketch's limit, every hash up to it comes back, repeats included.
    limit = int(np.sort(alone)[len(alone) // 2])
    kept, alone = _kept_hashes(function, values, limit)
    assert kept.tolist() == alone[alone <= limit].tolist()


def test_an_exact_count_of_a_many_valued_block_still_gets_every_distinct_hash():
    values = np.random.default_rng(6).normal(size=30_000)  # past the set's capacity: later hashes all written
    values[20_000:] = values[:10_000]
    kept, alone = _kept_hashes(csvscan._csvscan.float_stats, values, 2**64 - 1)
    assert set(kept.tolist()) == set(alone.tolist())
    assert len(np.unique(kept)) == 20_000 and len(kept) > 20_000


def test_the_fast_path_gives_way_without_the_extension(monkeypatch):
    assert csvscan.reads("utf-8", ",", [pa.float64(), pa.string()])
    assert not csvscan.reads("latin-1", ",", [pa.float64()])
    assert not csvscan.reads("utf-8", ",", [pa.decimal128(10, 2)])
    _without_extension(monkeypatch)
    assert not csvscan.reads("utf-8", ",", [pa.float64()])


_FIELD = st.one_of(
    st.sampled_from(["", "NA", "null", "true", "False", "1", "-0", "2.5", "1e3", "inf", "nan", " 7 ", '"q"',
                     '"a,b"', '"x""y"', "word", "2021-03-04", "0.1", "12345678901234567890"]),
    st.floats(allow_nan=False).map(repr),
    st.text(alphabet="ab1.-e ", max_size=6),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 4).flatmap(lambda n: st.lists(st.lists(_FIELD, min_size=n, max_size=n), min_size=1, max_size=30)))
def test_any_table_of_such_fields_reads_the_same_on_both_paths(rows, tmp_path_factory, monkeypatch):
    path = tmp_path_factory.mktemp("p") / "t.csv"
    header = ",".join(f"c{i}" for i in range(len(rows[0])))
    path.write_text(header + "\n" + "\n".join(",".join(row) for row in rows) + "\n")
    fast, slow = _outcome(path), None
    with monkeypatch.context() as m:
        _without_extension(m)
        slow = _outcome(path)
    if isinstance(slow, str):
        assert fast == slow
    else:
        _assert_same(fast, slow)


def _outcome(path):
    try:
        return ingest.read_csv(path, sniff_text(path))
    except IngestError as error:
        return str(error)


def test_string_hashes_are_equal_exactly_for_equal_strings_wherever_the_array_starts():
    words = ["", "a", "ab", "abcdefgh", "abcdefghi", "Élodie", "日本語のテキスト", "a" * 100, "a" * 99 + "b"]
    array = pa.array(words * 3)
    whole = statistics._string_hashes(array)
    assert len(set(whole[:len(words)].tolist())) == len(words)
    assert whole[:len(words)].tolist() == whole[len(words):2 * len(words)].tolist()
    assert statistics._string_hashes(array.slice(5, 9)).tolist() == whole[5:14].tolist()


def test_string_hashes_never_read_outside_a_broken_array():
    offsets = np.array([0, 4, -7, 1 << 30, 2], np.int32)
    out = np.empty(4, np.uint64)
    csvscan._csvscan.string_hashes(offsets, b"abcd", 0, 4, out)  # the broken ones hash as empty strings
    with pytest.raises(ValueError):
        csvscan._csvscan.string_hashes(offsets, b"abcd", 2, 4, out)


def test_the_compiled_histogram_refuses_edges_without_a_range():
    counts = np.zeros(2, np.int64)
    for edges in ([1.0, 1.0, 1.0], [2.0, 1.5, 1.0], [0.0, np.inf, np.inf]):
        with pytest.raises(ValueError, match="finite range"):
            _histogram_of(np.ones(3), edges, counts)


def test_chunk_memory_is_used_again_only_once_no_array_refers_to_it():
    slabs = csvscan.Slabs()
    first = slabs.take(1000)
    held = pa.py_buffer(first[8:16].view(np.float64))  # as the batches hold it: an Arrow buffer of a view
    del first
    assert slabs.take(1000).base is not slabs.slabs[0]  # still held: a second slab
    del held
    assert slabs.take(1000).base is slabs.slabs[0]


def test_a_table_read_whole_keeps_every_chunk_s_values(tmp_path, monkeypatch, tiny_chunks):
    rows = [f"{i},{i * 0.25},w{i % 7}" for i in range(3000)]
    path = tmp_path / "t.csv"
    path.write_text("a,b,c\n" + "\n".join(rows) + "\n")
    table = ingest.read_csv(path, sniff_text(path))  # holds every batch: no chunk memory may be reused
    assert table.column("a").to_pylist() == [float(i) for i in range(3000)]
    assert table.column("c").to_pylist()[-7:] == [f"w{i % 7}" for i in range(2993, 3000)]


def _encodings(array, monkeypatch):
    """The compiled encoding, and Arrow's (the compiled one given room for no value)."""
    fast = statistics._dictionary_encode(array)
    with monkeypatch.context() as patch:
        patch.setattr(statistics, "CODED_DISTINCT", 0)
        slow = statistics._dictionary_encode(array)
    return fast, slow


@pytest.mark.parametrize("case", ["plain", "nulls", "sliced", "many"])
def test_the_compiled_dictionary_encoding_is_arrow_s(case, monkeypatch):
    rng = np.random.default_rng(8)
    words = ["", "a", "Paris", "Zoë", "日本語のテキスト", "a" * 9, "a" * 8, "b" * 17, "Lyon", "<script>"]
    values = [words[i] for i in rng.integers(0, len(words), 2_000)]
    if case == "nulls":
        values = [None if i % 7 == 0 else v for i, v in enumerate(values)]
    array = pa.array(values, pa.string())
    if case == "sliced":
        array = array.slice(333, 1_000)
    if case == "many":  # past the compiled encoding's capacity: Arrow's encoding, the same result
        monkeypatch.setattr(statistics, "CODED_DISTINCT", 5)
    (fast_values, fast_codes, fast_hashes, compiled), (slow_values, slow_codes, slow_hashes, _) = _encodings(
        array, monkeypatch)
    assert compiled == (case != "many")
    assert fast_values.equals(slow_values)
    assert fast_codes.tolist() == slow_codes.tolist()
    assert fast_hashes.tolist() == slow_hashes.tolist()


def test_the_compiled_dictionary_encoding_never_reads_outside_a_broken_array():
    offsets = np.array([0, 3, 1 << 20, 2], np.int32)  # a value past the data, then one ending before it starts
    codes, hashes, firsts = np.empty(3, np.int32), np.empty(3, np.uint64), np.empty(3, np.int64)
    assert csvscan._csvscan.string_codes(offsets, b"abcd", None, 0, 3, codes, hashes, firsts) == 2
    assert codes.tolist() == [0, 1, 1]  # the broken values read as empty strings, alike
    with pytest.raises(ValueError, match="do not hold"):
        csvscan._csvscan.string_codes(offsets, b"abcd", None, 1, 3, codes, hashes, firsts)
