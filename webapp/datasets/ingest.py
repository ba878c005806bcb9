"""Reading tables and series into typed columns, and describing them with statistics.

Pure functions, no Django. Input: the uploaded file and a folder to write into. Output:
``table.arrow`` (the typed columns, Arrow IPC, read back by ``storage.load_table``), ``preview.json``
(the first rows, for the page), and the schema and statistics as plain dicts.

Parsing uses pyarrow's multi-threaded CSV reader; statistics use pyarrow compute kernels
column by column so memory stays near the size of the typed table.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from webapp.datasets.sniff import MAX_COLUMNS, IngestError, TextFormat, sniff_text

TABLE_FILE = "table.arrow"  # Arrow IPC: written at disk speed, read back memory-mapped
PREVIEW_FILE = "preview.json"
PREVIEW_ROWS = 200
TOP_VALUES = 20
HISTOGRAM_BINS = 30
COUNTS_MAX_UNIQUE = 50  # value counts are kept for columns with at most this many values (class balance)
SERIES_CHART_POINTS = 2000

STREAM_ABOVE_BYTES = 64 << 20
NULL_VALUES = ["", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "#N/A", "-NaN", "-nan", "n/a"]


# ----------------------------------------------------------------------------- reading


def read_csv(path, text_format: TextFormat) -> pa.Table:
    names = text_format.column_names
    read_options = pacsv.ReadOptions(
        column_names=names, skip_rows=1 if text_format.has_header else 0,
        encoding="utf8" if text_format.encoding.startswith("utf-8") else "latin1",
        block_size=16 << 20,
    )
    convert_options = pacsv.ConvertOptions(
        null_values=NULL_VALUES, strings_can_be_null=True, quoted_strings_can_be_null=True,
        true_values=["true", "True", "TRUE"], false_values=["false", "False", "FALSE"],
    )
    if os.path.getsize(path) > STREAM_ABOVE_BYTES:
        table = _read_csv_streaming(path, read_options, convert_options, text_format.delimiter)
        if table is not None:
            return table
    # Parsing in parallel needs rows that never span lines; a quoted newline makes the fast pass
    # fail, and the slower pass that allows them reads the file again.
    for newlines_in_values in (False, True):
        parse_options = pacsv.ParseOptions(delimiter=text_format.delimiter, newlines_in_values=newlines_in_values)
        try:
            return pacsv.read_csv(path, read_options=read_options, parse_options=parse_options,
                                  convert_options=convert_options)
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as error:
            message = str(error)
    raise _explain_csv_error(path, text_format, message)


def _read_csv_streaming(path, read_options, convert_options, delimiter) -> pa.Table | None:
    """Large files block by block, so memory stays near the size of the typed table.

    The column types come from the first block, with integers widened to float64 (what they
    become anyway); a later block that does not fit them returns None and the caller reads the
    whole file at once, inferring types from all of it.
    """
    parse_options = pacsv.ParseOptions(delimiter=delimiter)
    try:
        with pacsv.open_csv(path, read_options=read_options, parse_options=parse_options,
                            convert_options=convert_options) as reader:
            first = reader.schema
        types = {f.name: pa.float64() if pa.types.is_integer(f.type) or pa.types.is_null(f.type) else f.type
                 for f in first}
        options = pacsv.ConvertOptions(
            column_types=types, null_values=convert_options.null_values,
            strings_can_be_null=True, quoted_strings_can_be_null=True,
            true_values=convert_options.true_values, false_values=convert_options.false_values)
        with pacsv.open_csv(path, read_options=read_options, parse_options=parse_options,
                            convert_options=options) as reader:
            return pa.Table.from_batches(list(reader), schema=reader.schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        return None


def _explain_csv_error(path, text_format: TextFormat, message: str) -> IngestError:
    expected = re.search(r"Expected (\d+) columns, got (\d+)", message)
    if expected:
        line, got = _first_ragged_line(path, text_format, int(expected.group(1)))
        if line is not None:
            return IngestError(
                f"Line {line} has {got} fields but the header has {expected.group(1)} "
                f"(separated by {text_format.delimiter_name}s). Every row must have the same number of columns.")
        return IngestError(f"Rows have different numbers of fields: expected {expected.group(1)}, "
                           f"got {expected.group(2)}.")
    if "invalid UTF8" in message or "UTF-8" in message or "utf8" in message.lower():
        return IngestError("The file is not valid UTF-8 beyond its first part, and could not be decoded.")
    if "straddling" in message or "quote" in message.lower():
        return IngestError("A quoted field is never closed; check the file's quotes near its end.")
    return IngestError(f"The file could not be read as a table: {message.splitlines()[0][:300]}")


def _first_ragged_line(path, text_format: TextFormat, expected: int) -> tuple[int | None, int]:
    encoding = "latin-1" if text_format.encoding == "latin-1" else text_format.encoding
    with open(path, encoding=encoding, errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter=text_format.delimiter)
        for row in reader:
            if row and len(row) != expected:
                return reader.line_num, len(row)
    return None, 0


def read_parquet(path) -> pa.Table:
    try:
        schema = pq.read_schema(path)
        if len(schema.names) > MAX_COLUMNS:
            raise IngestError(f"The file has {len(schema.names):,} columns; Cupola reads tables of at most "
                              f"{MAX_COLUMNS:,} columns.")
        return pq.read_table(path)
    except IngestError:
        raise
    except (pa.ArrowException, OSError) as error:
        raise IngestError(f"The Parquet file could not be read: {str(error).splitlines()[0][:300]}") from None


def read_npz(path) -> pa.Table:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise IngestError(f"The .npz file could not be read: {error}") from None
    columns: dict[str, pa.Array] = {}
    length = None
    with archive:
        for name in archive.files:
            try:
                array = archive[name]
            except ValueError:
                raise IngestError(f"Array “{name}” holds Python objects; Cupola reads only plain numeric, "
                                  "boolean, text or date arrays (no pickles).") from None
            if array.ndim == 0 or array.ndim > 2:
                raise IngestError(f"Array “{name}” has {array.ndim} dimensions; a table takes 1-D or 2-D arrays "
                                  "(for images, upload a zip of class folders).")
            if length is None:
                length = len(array)
            elif len(array) != length:
                raise IngestError(f"Array “{name}” has {len(array)} rows but the first array has {length}; "
                                  "all arrays must have the same length.")
            parts = [array] if array.ndim == 1 else [array[:, i] for i in range(array.shape[1])]
            if len(columns) + len(parts) > MAX_COLUMNS:
                raise IngestError(f"The arrays make more than {MAX_COLUMNS:,} columns; Cupola reads tables of at "
                                  f"most {MAX_COLUMNS:,} columns.")
            for i, part in enumerate(parts):
                column = name if array.ndim == 1 else f"{name}_{i}"
                if part.dtype.kind not in "biufUSM":
                    raise IngestError(f"Array “{name}” has type {part.dtype}, which Cupola does not read.")
                if part.dtype.kind == "S":
                    part = np.char.decode(part, "latin-1")
                columns[column] = pa.array(part)
    if not columns:
        raise IngestError("The .npz file contains no arrays.")
    return pa.table(columns)


# ----------------------------------------------------------------------------- typing


def _is_categorical(n_unique: int, n_present: int) -> bool:
    return n_unique <= 1000 and (n_unique <= 20 or n_unique <= n_present // 2)


def normalise(table: pa.Table) -> tuple[pa.Table, dict[str, str]]:
    """Cast every column to one of the five Cupola types; returns the table and name → type."""
    if table.num_columns > MAX_COLUMNS:
        raise IngestError(f"The file has {table.num_columns:,} columns; Cupola reads tables of at most "
                          f"{MAX_COLUMNS:,} columns.")
    columns, types = [], {}
    for name, column in zip(table.column_names, table.columns):
        t = column.type
        if pa.types.is_dictionary(t):
            column, t = column.cast(t.value_type), t.value_type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t):
            column, kind = column.cast(pa.float64()), "numeric"
        elif pa.types.is_boolean(t):
            kind = "boolean"
        elif pa.types.is_date(t) or pa.types.is_timestamp(t):
            if pa.types.is_timestamp(t) and t.tz is not None:
                column = column.cast(pa.timestamp(t.unit))  # stored as naive UTC
            column, kind = column.cast(pa.timestamp("ns")), "datetime"
        elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_time(t) or pa.types.is_duration(t):
            column = column.cast(pa.string())
            kind = "text"  # refined below from the number of distinct values
        elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
            try:
                column = column.cast(pa.string())
            except pa.ArrowInvalid:
                raise IngestError(f"Column “{name}” holds binary data, which Cupola does not read.") from None
            kind = "text"
        else:
            raise IngestError(f"Column “{name}” has the nested type {t}, which Cupola does not read; "
                              "flatten it to plain columns.")
        if kind == "text":
            n_present = len(column) - column.null_count
            if _is_categorical(pc.count_distinct(column).as_py(), n_present):
                kind = "categorical"
        columns.append(column)
        types[name] = kind
    return pa.table(columns, names=table.column_names), types


# ----------------------------------------------------------------------------- statistics


def _finite(value):
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def column_stats(column: pa.ChunkedArray, kind: str) -> dict:
    n = len(column)
    missing = column.null_count
    if kind == "numeric":
        values = column.to_numpy(zero_copy_only=False)  # nulls come out as NaN
        nan = np.isnan(values)
        missing = int(nan.sum())
        if missing:
            values = values[~nan]
            column = pa.chunked_array([values])
    if kind == "numeric":
        result: dict = {"type": kind, "missing": int(missing), **_numeric_unique(values)}
    else:
        result = {"type": kind, "missing": int(missing), "unique": int(pc.count_distinct(column).as_py())}
    present = n - missing
    if kind == "numeric" and present:
        finite = values if np.isfinite(values.sum()) else values[np.isfinite(values)]
        result.update(min=_finite(float(values.min())), max=_finite(float(values.max())),
                      mean=_finite(float(finite.mean())) if len(finite) else None,
                      std=_finite(float(finite.std(ddof=1))) if len(finite) > 1 else None)
        if len(finite):
            counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
            result["histogram"] = {"counts": counts.tolist(), "edges": [float(e) for e in edges]}
    elif kind == "datetime" and present:
        low, high = pc.min_max(column).values()
        result.update(min=str(low.as_py()), max=str(high.as_py()))
    if kind in ("categorical", "text", "boolean") or (kind == "numeric" and result["unique"] <= COUNTS_MAX_UNIQUE):
        counts = pc.value_counts(column.drop_null())
        pairs = sorted(((v.as_py(), c.as_py()) for v, c in zip(counts.field("values"), counts.field("counts"))),
                       key=lambda pair: (-pair[1], str(pair[0])))
        result["top"] = [[_label(v), c] for v, c in pairs[:TOP_VALUES]]
        if result["unique"] <= COUNTS_MAX_UNIQUE:
            result["counts"] = [[_label(v), c] for v, c in pairs]
    if kind == "text" and present:
        lengths = pc.utf8_length(column.drop_null())
        result["mean_length"] = float(pc.mean(lengths).as_py())
    return result


UNIQUE_SAMPLE = 50_000
SKETCH_SIZE = 4096


def _numeric_unique(values: np.ndarray) -> dict:
    """The number of distinct values: exact for discrete columns, estimated for continuous ones.

    Counting a million distinct floats exactly costs more than parsing them; a column whose
    first 50,000 values already hold over 1,000 distinct ones is estimated by distinct sampling:
    the values whose 64-bit hash falls below 2**64 / 2**s are counted exactly and scaled by 2**s
    (about 1.5 % error at 4,096 kept), marked ``unique_estimated``.
    """
    head = values[:UNIQUE_SAMPLE]
    if len(values) <= UNIQUE_SAMPLE or len(pd.unique(head)) <= 1000:
        return {"unique": int(len(pd.unique(values)))}
    hashes = pd.util.hash_array(values)
    shift = max(0, int(np.log2(len(values) / SKETCH_SIZE)))
    while shift > 0:
        kept = len(pd.unique(hashes[hashes < (np.uint64(1) << np.uint64(64 - shift))]))
        if kept >= SKETCH_SIZE:
            return {"unique": min(kept << shift, len(values)), "unique_estimated": True}
        shift -= 1
    return {"unique": int(len(pd.unique(values)))}


def _label(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _hash_column(column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_floating(column.type):
        return pd.util.hash_array(column.to_numpy(zero_copy_only=False))
    if pa.types.is_timestamp(column.type) or pa.types.is_boolean(column.type):
        return pd.util.hash_array(column.cast(pa.int64()).fill_null(-(2**62)).to_numpy())
    # Strings: hash their codes in one dictionary, not a million Python objects.
    codes = pc.dictionary_encode(column.combine_chunks()).indices.fill_null(-1)
    return pd.util.hash_array(codes.to_numpy().astype(np.int64))


def duplicate_rows(table: pa.Table, pool: ThreadPoolExecutor) -> int:
    """Rows equal to an earlier row, found by a 64-bit hash of every row."""
    if table.num_rows < 2 or table.num_columns == 0:
        return 0
    combined = np.zeros(table.num_rows, dtype=np.uint64)
    for hashed in pool.map(_hash_column, table.columns):
        combined *= np.uint64(1_000_003)
        combined ^= hashed
    return int(pd.Series(combined).duplicated().sum())


def table_stats(table: pa.Table, types: dict[str, str]) -> tuple[list[dict], dict]:
    # pyarrow and numpy kernels release the GIL, so columns are described in parallel.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        described = list(pool.map(column_stats, table.columns, [types[n] for n in table.column_names]))
        duplicates = duplicate_rows(table, pool)
    columns = [{"name": name, **entry} for name, entry in zip(table.column_names, described)]
    constant = [c["name"] for c in columns if c["unique"] <= 1]
    summary = {"n_rows": table.num_rows, "n_columns": table.num_columns,
               "duplicate_rows": duplicates, "constant_columns": constant}
    return columns, summary


# ----------------------------------------------------------------------------- writing


def _json_cell(value):
    if value is None:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (int, bool, str)):
        return value
    return str(value)


def write_table(table: pa.Table, path: Path) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=1 << 20)


def read_table(path: Path) -> pa.Table:
    # The table's buffers keep the mapping open; pages are read from disk as they are touched.
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def write_preview(table: pa.Table, out_dir: Path) -> None:
    head = table.slice(0, PREVIEW_ROWS)
    rows = [[_json_cell(head.column(i)[r].as_py()) for i in range(head.num_columns)] for r in range(head.num_rows)]
    (out_dir / PREVIEW_FILE).write_text(json.dumps({"columns": table.column_names, "rows": rows}))


def read_source(path, file_format: str, notes: list[str]) -> pa.Table:
    if file_format == "csv":
        text_format = sniff_text(path)
        notes.extend(text_format.notes)
        table = read_csv(path, text_format)
        if table.num_rows == 0:
            raise IngestError(f"The file has a header ({len(text_format.column_names)} columns) but no rows of data.")
        return table
    if file_format == "parquet":
        return read_parquet(path)
    if file_format == "npz":
        return read_npz(path)
    raise IngestError(f"Files of format {file_format} are not tables.")


def ingest_table(path, out_dir: Path, *, file_format: str) -> dict:
    """Read, type, describe and store a table. Returns {"schema", "stats", "n_rows"}."""
    notes: list[str] = []
    table, types = normalise(read_source(path, file_format, notes))
    if table.num_rows == 0:
        raise IngestError("The table has no rows of data.")
    column_entries, summary = table_stats(table, types)
    write_table(table, out_dir / TABLE_FILE)
    write_preview(table, out_dir)
    schema = {"kind": "table", "format": file_format, "notes": notes,
              "columns": [{"name": c["name"], "type": c["type"], "missing": c["missing"]} for c in column_entries]}
    stats = {**summary, "columns": column_entries}
    return {"schema": schema, "stats": stats, "n_rows": table.num_rows}


def ingest_series(path, out_dir: Path, *, file_format: str, time_column: str | None = None) -> dict:
    """A table with an optional time column; every other column must be numeric."""
    notes: list[str] = []
    table, types = normalise(read_source(path, file_format, notes))
    if time_column is None:
        time_column = next((name for name, kind in types.items() if kind == "datetime"), None)
    elif time_column not in types:
        raise IngestError(f"The time column “{time_column}” is not in the file.")
    values = [name for name in table.column_names if name != time_column]
    for name in values:
        if types[name] != "numeric":
            raise IngestError(f"Column “{name}” is {types[name]}; every column of a time series other than "
                              "the time column must be numeric.")
    if not values:
        raise IngestError("A time series needs at least one numeric value column besides the time column.")
    if time_column is not None:
        if types[time_column] not in ("datetime", "numeric"):
            raise IngestError(f"The time column “{time_column}” holds {types[time_column]} values; "
                              "it must hold dates, times or numbers.")
        order = pc.sort_indices(table, sort_keys=[(time_column, "ascending")])
        if not pc.all(pc.equal(order, pa.array(np.arange(table.num_rows)))).as_py():
            table = table.take(order)
            notes.append(f"Rows were sorted by “{time_column}”.")
    column_entries, summary = table_stats(table, types)
    write_table(table, out_dir / TABLE_FILE)
    write_preview(table, out_dir)
    step = max(1, table.num_rows // SERIES_CHART_POINTS)
    sample = table.take(pa.array(np.arange(0, table.num_rows, step)))
    chart = {"x": [_json_cell(v) for v in (sample.column(time_column).to_pylist() if time_column
                                             else range(0, table.num_rows, step))],
             "series": {name: [_json_cell(v) for v in sample.column(name).to_pylist()] for name in values[:10]}}
    schema = {"kind": "series", "format": file_format, "notes": notes, "time_column": time_column,
              "value_columns": values,
              "columns": [{"name": c["name"], "type": c["type"], "missing": c["missing"]} for c in column_entries]}
    stats = {**summary, "columns": column_entries, "chart": chart}
    return {"schema": schema, "stats": stats, "n_rows": table.num_rows}
