"""Reading tables and series into typed columns, and describing them with statistics.

Pure functions, no Django. Input: the uploaded file and a folder to write into. Output:
``table.arrow`` (the typed columns, Arrow IPC, read back by ``storage.load_table``), ``preview.json``
(the first rows, for the page), and the schema and statistics as plain dicts.

A CSV is never held whole in memory. It is typed from its first megabyte, then parsed in blocks
by the compiled reader (``webapp.datasets.csvscan``) or pyarrow's streaming reader; each block is
cast to Cupola's types and written to the Arrow file, the numeric columns' ranges measured on the
way. A second pass over the memory-mapped file computes the statistics
(``webapp.datasets.statistics``), histograms included. Memory stays near a few blocks plus
bounded sketches.
"""

from __future__ import annotations

import csv
import json
import math
import mmap
import queue
import re
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc
import pyarrow.parquet as pq

from webapp.datasets import csvscan
from webapp.datasets.sniff import MAX_COLUMNS, IngestError, TextFormat, sniff_text
from webapp.datasets.statistics import FiniteRanges, TableStatistics, is_categorical

TABLE_FILE = "table.arrow"  # Arrow IPC: written at disk speed, read back memory-mapped
PREVIEW_FILE = "preview.json"
PREVIEW_ROWS = 200
SERIES_CHART_POINTS = 2000

INFER_BLOCK_BYTES = 1 << 20  # column types come from the first block (later misfits are retried as text)
PARSE_BLOCK_BYTES = 1 << 20  # small blocks stay in cache; pyarrow parses ahead on another thread
FAST_CHUNK_BYTES = csvscan.CHUNK_BYTES  # the compiled reader's chunks: about one stored batch each
BATCH_ROWS = 1 << 15  # rows described and written at a time
TRUE_VALUES, FALSE_VALUES = ["true", "True", "TRUE"], ["false", "False", "FALSE"]
NULL_VALUES = ["", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "#N/A", "-NaN", "-nan", "n/a"]
_UNCONVERTIBLE = re.compile(r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to (\w+)")


# ----------------------------------------------------------------------------- reading


def _csv_options(text_format: TextFormat, block_size: int, newlines_in_values: bool, column_types=None):
    read_options = pacsv.ReadOptions(
        column_names=text_format.column_names, skip_rows=1 if text_format.has_header else 0,
        encoding="utf8" if text_format.encoding.startswith("utf-8") else "latin1", block_size=block_size,
        use_threads=column_types is not None)  # typing reads one block: no need to read ahead
    parse_options = pacsv.ParseOptions(delimiter=text_format.delimiter, newlines_in_values=newlines_in_values)
    convert_options = pacsv.ConvertOptions(
        column_types=column_types or {}, null_values=NULL_VALUES, strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        true_values=TRUE_VALUES, false_values=FALSE_VALUES)
    return {"read_options": read_options, "parse_options": parse_options, "convert_options": convert_options}


@contextmanager
def _open_csv(path, *, head: bool = False, **options):
    """pyarrow's streaming CSV reader over a plain Python file, or over the file's first block of
    whole rows alone (``head``, to type the columns).

    Given the path itself, pyarrow reads ahead through its own I/O layer and buffered about
    70 MB before parsing the first block (peak RSS past 2x a 152 MB file); a Python file is read
    as the blocks are parsed, at the same speed. Even so it reads some 40 MB ahead on a thread of
    its own, which typing the first block does not need."""
    with open(path, "rb") as source:
        if head:
            data = source.read(options["read_options"].block_size)
            if source.read(1):
                data = data[:data.rfind(b"\n") + 1] or data
            source = pa.BufferReader(data)
        with pacsv.open_csv(source, **options) as reader:
            yield reader


def stream_csv(path, text_format: TextFormat, consume: Callable):
    """``consume(schema, batches)`` over the CSV's record batches, typed from its first block; its result.

    Integers are widened to float64 (what they become anyway). The compiled fast path
    (``webapp.datasets.csvscan``) reads the file where it can, pyarrow's streaming reader otherwise,
    with the same rules. A later block that does not fit a column's type (a word in a column of
    numbers) makes that column text and starts again, so ``consume`` must be able to start over.
    Parsing in parallel needs rows that never span lines; a quoted newline makes the fast passes
    fail, and pyarrow's pass that allows them starts again.
    """
    types, newlines_in_values, fast = None, False, True
    for _ in range(len(text_format.column_names) + 3):
        try:
            if types is None:
                with _open_csv(path, head=not newlines_in_values,
                               **_csv_options(text_format, INFER_BLOCK_BYTES, newlines_in_values)) as reader:
                    types = {f.name: pa.float64() if pa.types.is_integer(f.type) or pa.types.is_null(f.type) else f.type
                             for f in reader.schema}
            schema = pa.schema(list(types.items()))
            if fast and not newlines_in_values and csvscan.reads(text_format.encoding, text_format.delimiter,
                                                                 schema.types):
                try:
                    return consume(schema, csvscan.ChunkReader(
                        path, schema=schema, delimiter=text_format.delimiter, has_header=text_format.has_header,
                        null_values=NULL_VALUES, true_values=TRUE_VALUES, false_values=FALSE_VALUES,
                        chunk_bytes=FAST_CHUNK_BYTES))
                except csvscan.GiveWay:
                    fast = False
                    continue
                except csvscan.Unconvertible as error:
                    types[text_format.column_names[error.column]] = pa.string()
                    continue
            options = _csv_options(text_format, PARSE_BLOCK_BYTES, newlines_in_values, types)
            with _open_csv(path, **options) as reader:
                return consume(reader.schema, _regrouped(reader, BATCH_ROWS))
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as error:
            message = str(error)
            unconvertible = _UNCONVERTIBLE.search(message)
            if unconvertible and types is not None and unconvertible.group(2) != "string":
                name = text_format.column_names[int(unconvertible.group(1))]
                types[name] = pa.string()
                continue
            if not newlines_in_values:
                types, newlines_in_values = None, True
                continue
            raise _explain_csv_error(path, text_format, message) from None
    raise IngestError("The file's column types could not be settled; check that each column holds one kind of value.")


def read_csv(path, text_format: TextFormat) -> pa.Table:
    """The whole CSV as one table (for small files and tests; ingestion streams it)."""
    return stream_csv(path, text_format, lambda schema, batches: pa.Table.from_batches(list(batches), schema))


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


def storage_type(name: str, t: pa.DataType) -> tuple[pa.DataType, str]:
    """The Arrow type a column is stored as, and its Cupola kind ("text" until its values are counted)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t):
        return pa.float64(), "numeric"
    if pa.types.is_boolean(t):
        return t, "boolean"
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return pa.timestamp("ns"), "datetime"
    if (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_time(t) or pa.types.is_duration(t)
            or pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        return pa.string(), "text"
    raise IngestError(f"Column “{name}” has the nested type {t}, which Cupola does not read; "
                      "flatten it to plain columns.")


def cast_column(name: str, column, target: pa.DataType):
    t = column.type
    if pa.types.is_dictionary(t):
        column, t = column.cast(t.value_type), t.value_type
    if pa.types.is_timestamp(t) and t.tz is not None:
        column = column.cast(pa.timestamp(t.unit))  # stored as naive UTC
    if column.type == target:
        return column
    try:
        return column.cast(target)
    except pa.ArrowInvalid:
        raise IngestError(f"Column “{name}” holds binary data, which Cupola does not read.") from None


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
            if is_categorical(pc.count_distinct(column).as_py(), n_present):
                kind = "categorical"
        columns.append(column)
        types[name] = kind
    return pa.table(columns, names=table.column_names), types


# ----------------------------------------------------------------------------- writing


def _json_cell(value):
    if value is None:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (int, bool, str)):
        return value
    return str(value)


def read_table(path: Path) -> pa.Table:
    # The table's buffers keep the mapping open; pages are read from disk as they are touched.
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def _regrouped(batches: Iterable[pa.RecordBatch], rows: int):
    """Parsed blocks gathered into batches of about ``rows`` rows (fewer, larger steps to describe)."""
    held, count = [], 0
    for batch in batches:
        held.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield held[0] if len(held) == 1 else pa.concat_batches(held)
            held, count = [], 0
    if held:
        yield held[0] if len(held) == 1 else pa.concat_batches(held)


def _read_ahead(batches: Iterable[pa.RecordBatch], depth: int = 2):
    """The batches, parsed on a thread of their own while the caller describes the previous ones.

    pyarrow parses without the GIL; ``depth`` bounds how many batches wait in memory.
    """
    waiting: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for batch in batches:
                if not offer(batch):
                    return
            offer(done)
        except Exception as error:  # noqa: BLE001 - any error is handed to the consumer, which raises it
            offer(error)

    producer = threading.Thread(target=produce, name="csv-read-ahead", daemon=True)
    producer.start()
    try:
        while (item := waiting.get()) is not done:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()
        producer.join()


def store_table(schema: pa.Schema, batches: Iterable[pa.RecordBatch], out_dir: Path) -> tuple[list[dict], dict]:
    """Cast each batch to Cupola's types and write it to ``table.arrow``; then describe the stored table.

    Returns the column entries and the summary (``n_rows`` among them); writes ``preview.json``.
    """
    if len(schema) > MAX_COLUMNS:
        raise IngestError(f"The file has {len(schema):,} columns; Cupola reads tables of at most "
                          f"{MAX_COLUMNS:,} columns.")
    typed = [storage_type(field.name, field.type) for field in schema]
    target = pa.schema([(field.name, arrow_type) for field, (arrow_type, _) in zip(schema, typed)])
    preview: list[list] = []
    path = out_dir / TABLE_FILE
    ranges = FiniteRanges()

    def cast():  # on the read-ahead thread, while this one writes the batch before
        for batch in batches:
            batch = pa.RecordBatch.from_arrays(
                [cast_column(field.name, batch.column(i), field.type) for i, field in enumerate(target)], schema=target)
            ranges.add(batch)
            yield batch

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, target) as writer:
        for batch in _read_ahead(cast()):
            writer.write_batch(batch)
            if len(preview) < PREVIEW_ROWS:
                head = batch.slice(0, PREVIEW_ROWS - len(preview))
                preview.extend([_json_cell(v) for v in row] for row in zip(*(c.to_pylist() for c in head.columns)))
    (out_dir / PREVIEW_FILE).write_text(json.dumps({"columns": schema.names, "rows": preview}))
    # The statistics in one pass over the stored table: with every range known, the histograms
    # are counted as the values go by.
    statistics = TableStatistics(schema.names, [kind for _, kind in typed])
    statistics.bin_over(ranges.ranges)
    stored = _MappedTable(path)
    statistics.add_stored(stored.batches, stored.release)
    return statistics.finish()


class _MappedTable:
    """The stored table memory-mapped (no copy), and ``release(batch index, columns)`` to let go
    of the pages of those neighbouring columns of a batch once read (they stay in the page cache),
    so RSS holds a few batches' worth and not the whole file."""

    def __init__(self, path: Path):
        with open(path, "rb") as source:
            self.mapped = mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ)  # closed when its last view goes
        self.base = pa.py_buffer(self.mapped)
        reader = pa.ipc.open_file(self.base)
        self.batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]

    def release(self, index: int, columns: list[int]) -> None:
        spans = [(b.address - self.base.address, b.address - self.base.address + b.size)
                 for i in columns for b in self.batches[index].column(i).buffers()
                 if b is not None and b.size and self.base.address <= b.address < self.base.address + self.base.size]
        if spans:
            start = min(a for a, _ in spans) // mmap.PAGESIZE * mmap.PAGESIZE
            end = min(max(b for _, b in spans), self.base.size)
            if end > start:
                self.mapped.madvise(mmap.MADV_DONTNEED, start, end - start)


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
    if file_format == "csv":
        text_format = sniff_text(path)
        notes.extend(text_format.notes)
        column_entries, summary = stream_csv(path, text_format,
                                             lambda schema, batches: store_table(schema, batches, out_dir))
        if summary["n_rows"] == 0:
            raise IngestError(f"The file has a header ({len(text_format.column_names)} columns) but no rows of data.")
    else:
        table = read_source(path, file_format, notes)
        column_entries, summary = store_table(table.schema, table.to_batches(max_chunksize=BATCH_ROWS), out_dir)
        if summary["n_rows"] == 0:
            raise IngestError("The table has no rows of data.")
    schema = {"kind": "table", "format": file_format, "notes": notes,
              "columns": [{"name": c["name"], "type": c["type"], "missing": c["missing"]} for c in column_entries]}
    stats = {**summary, "columns": column_entries}
    return {"schema": schema, "stats": stats, "n_rows": summary["n_rows"]}


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
    column_entries, summary = store_table(table.schema, table.to_batches(max_chunksize=BATCH_ROWS), out_dir)
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
