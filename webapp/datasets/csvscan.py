"""The CSV fast path: a file read in chunks of whole rows, each parsed by the compiled ``_csvscan``
straight into Arrow arrays, on as many threads as there are cores. No Django.

``ingest.stream_csv`` uses it when the extension is built, the file is UTF-8 and every column's
type is one it reads (numbers, booleans, dates, text, and timestamps or times, which are read as
text and cast by Arrow). It gives way to pyarrow's reader, which has the same rules and explains
errors, by raising ``GiveWay`` (a ragged row, a quoted line break, a lone carriage return, bytes
that are not UTF-8, a timestamp Arrow's cast does not take), and reports a value that does not fit
its column's type with ``Unconvertible`` (the column is then read as text, as with pyarrow).
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    from webapp.datasets import _csvscan
except ImportError:  # no C compiler at install time: ingestion uses pyarrow's reader
    _csvscan = None

CHUNK_BYTES = 5 << 20  # about 32k rows of a typical table: one stored batch per chunk
_BOM = b"\xef\xbb\xbf"


def _filled(view: np.ndarray, byte: int) -> np.ndarray:
    view.fill(byte)
    return view


class GiveWay(Exception):
    """The file needs pyarrow's reader (or its error message)."""


class Unconvertible(Exception):
    def __init__(self, column: int):
        super().__init__(f"column {column} holds a value of another type")
        self.column = column


def _kind(t: pa.DataType) -> str | None:
    if pa.types.is_float64(t):
        return "f"
    if pa.types.is_boolean(t):
        return "b"
    if pa.types.is_date32(t):
        return "d"
    if pa.types.is_string(t) or pa.types.is_date(t) or pa.types.is_timestamp(t) or pa.types.is_time(t):
        return "s"
    return None


def reads(encoding: str, delimiter: str, types: list[pa.DataType]) -> bool:
    """Whether the fast path reads a file of this encoding, delimiter and column types."""
    return (_csvscan is not None and encoding in ("utf-8", "utf-8-sig") and len(delimiter.encode()) == 1
            and all(_kind(t) for t in types))


def _row_end(fd: int, start: int, end: int, size: int, probe: int = 1 << 16) -> int:
    """After the last line break in [start, end); for a row longer than that, after the first one past it."""
    position = end
    while position > start:
        low = max(start, position - probe)
        cut = os.pread(fd, position - low, low).rfind(b"\n")
        if cut >= 0:
            return low + cut + 1
        position = low
    while end < size:
        block = os.pread(fd, probe, end)
        cut = block.find(b"\n")
        if cut >= 0:
            return end + cut + 1
        end += len(block)
    return size


def _tokens(values: list[str]) -> tuple[bytes, ...]:
    return tuple(v.encode() for v in values)


class Slabs:
    """Memory for the chunks' columns, used again once no array of an earlier chunk refers to it.

    Fresh memory costs a page fault per page on first touch (the kernel zeroes it), which was a
    third of ingestion's time. A slab is free when nothing but the pool refers to it: its
    reference count is then the one a fresh slab has at the same point of the same loop (measured
    there each time, so no interpreter detail of borrowed references can fool it). A chunk takes
    the first free slab that is large enough."""

    def __init__(self):
        self.slabs: list[np.ndarray] = []
        self.free_references = -1
        self.lock = threading.Lock()

    def take(self, size: int) -> np.ndarray:
        with self.lock:
            fresh = len(self.slabs)
            self.slabs.append(np.empty(size, np.uint8))  # kept only if no other slab is free
            for index, slab in enumerate(self.slabs):
                if index == fresh:
                    self.free_references = sys.getrefcount(slab)
                    return slab[:size]  # the view is taken before the lock is let go
                if len(slab) >= size and sys.getrefcount(slab) == self.free_references:
                    self.slabs.pop()
                    return slab[:size]
            raise AssertionError("unreachable: the fresh slab is the last")


def _carve(slab: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Consecutive byte views of ``slab``, each starting on a 64-byte boundary."""
    views, offset = [], 0
    for size in sizes:
        views.append(slab[offset:offset + size])
        offset += -(-size // 64) * 64
    return views


def _slab_size(sizes: list[int]) -> int:
    return sum(-(-size // 64) * 64 for size in sizes)


class ChunkReader:
    """The record batches of a CSV file, in order, with ``schema``; see the module's docstring."""

    def __init__(self, path, *, schema: pa.Schema, delimiter: str, has_header: bool, null_values: list[str],
                 true_values: list[str], false_values: list[str], chunk_bytes: int | None = None):
        self.path, self.schema = path, schema
        self.kinds = "".join(_kind(field.type) for field in schema).encode()
        self.delimiter, self.has_header = delimiter, has_header
        self.tokens = (_tokens(null_values), _tokens(true_values), _tokens(false_values))
        self.chunk_bytes = chunk_bytes or CHUNK_BYTES
        self.workers = max(1, min(4, os.cpu_count() or 1))
        self.slabs = Slabs()
        self.local = threading.local()  # each parsing thread's read buffer

    def __iter__(self):
        """Ranges of whole rows, each read by the thread that parses it into a buffer of its own,
        used again for its next range (fresh memory would fault on every page)."""
        with open(self.path, "rb") as source, ThreadPoolExecutor(self.workers, "csv-chunk") as pool:
            fd = source.fileno()
            waiting: deque = deque()
            try:
                for index, (start, end) in enumerate(self._ranges(fd, os.fstat(fd).st_size)):
                    waiting.append(pool.submit(self._parse_range, fd, start, end, index == 0 and self.has_header))
                    if len(waiting) > self.workers:
                        yield waiting.popleft().result()
                while waiting:
                    yield waiting.popleft().result()
            finally:
                for future in waiting:
                    future.cancel()
        self.slabs, self.local = Slabs(), threading.local()  # the memory goes once its last batch does

    def _ranges(self, fd: int, size: int):
        """Whole rows: each range ends after a line break (the file's end may lack one)."""
        start = len(_BOM) if os.pread(fd, len(_BOM), 0) == _BOM else 0
        while start < size:
            end = min(start + self.chunk_bytes, size)
            if end < size:
                end = _row_end(fd, start, end, size)
            yield start, end
            start = end

    def _parse_range(self, fd: int, start: int, end: int, skip_header: bool):
        buffer = getattr(self.local, "buffer", None)
        if buffer is None or len(buffer) < end - start:
            # NumPy asks for huge pages for large arrays: a few page faults where a bytearray takes 1,300.
            buffer = self.local.buffer = np.empty(max(end - start, self.chunk_bytes + (1 << 16)), np.uint8)
        with memoryview(buffer) as whole, whole[:end - start] as data:
            if os.preadv(fd, [data], start) != end - start:
                raise GiveWay("the file changed while it was read")
            return self._parse(data, skip_header)

    def _parse(self, data, skip_header: bool) -> pa.RecordBatch:
        capacity = _csvscan.count_lines(data) + 1
        bitmap = (capacity + 7) // 8
        sizes = []  # per column: values (float64, bitmap or int32 offsets), validity, and text bytes
        for kind in self.kinds.decode():
            sizes += {"f": [8 * capacity, bitmap], "b": [bitmap, bitmap], "d": [4 * capacity, bitmap]}.get(
                kind, [4 * (capacity + 1), bitmap, len(data)])
        views = iter(_carve(self.slabs.take(_slab_size(sizes)), sizes))
        outputs = []
        for kind in self.kinds.decode():
            if kind == "f":  # validity all set: the parser clears a null's bit
                outputs.append((next(views).view(np.float64), _filled(next(views), 255)))
            elif kind == "b":
                outputs.append((_filled(next(views), 0), _filled(next(views), 255)))
            elif kind == "d":
                outputs.append((next(views).view(np.int32), _filled(next(views), 255)))
            else:
                outputs.append((next(views).view(np.int32), _filled(next(views), 255), next(views)))
        status, rows, _, column, nulls, lengths = _csvscan.parse(
            data, self.kinds, self.delimiter, int(skip_header), *self.tokens, outputs, capacity)
        if status == _csvscan.BAD_VALUE:
            raise Unconvertible(column)
        if status != _csvscan.OK:
            raise GiveWay(status)
        arrays = []
        for i, (field, kind, buffers) in enumerate(zip(self.schema, self.kinds.decode(), outputs)):
            validity = pa.py_buffer(buffers[1]) if nulls[i] else None
            if kind == "f":
                arrays.append(pa.Array.from_buffers(pa.float64(), rows, [validity, pa.py_buffer(buffers[0])],
                                                    null_count=nulls[i]))
            elif kind in "bd":
                arrays.append(pa.Array.from_buffers(pa.bool_() if kind == "b" else pa.date32(), rows,
                                                    [validity, pa.py_buffer(buffers[0])], null_count=nulls[i]))
            else:
                text = pa.Array.from_buffers(pa.string(), rows, [validity, pa.py_buffer(buffers[0]),
                                                                 pa.py_buffer(buffers[2][:lengths[i]])],
                                             null_count=nulls[i])
                try:
                    text.validate(full=True)  # UTF-8
                    arrays.append(text if field.type == pa.string() else pc.cast(text, field.type))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                    raise GiveWay(str(error)) from None
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)
