"""Per-column statistics of a table, accumulated one record batch at a time (no Django).

``TableStatistics(names, kinds)`` takes batches already cast to Cupola's storage types
(float64, string, bool, timestamp[ns]) with ``add(batch)`` or ``add_stored(batches)``, then
``finish()`` returns the column entries and the summary. The numeric columns whose finite range
was given beforehand (``bin_over``, from ``FiniteRanges``) get histograms, counted as the values
go by. Memory is bounded whatever the number of rows:

- numeric: count, missing, min, max, and mean and variance merged block by block (Chan et al.);
- distinct values counted exactly up to ``EXACT_DISTINCT`` (always for tables of at most
  ``UNIQUE_SAMPLE`` rows), then estimated from the ``SKETCH_SIZE`` smallest 64-bit hashes
  (a K-minimum-values sketch, about 1.5 % error), marked ``unique_estimated``;
- text, categorical and boolean values counted exactly up to ``TEXT_EXACT_DISTINCT`` values,
  then the ``TOP_KEPT`` most frequent are kept (approximate counts) beside the sketch;
- duplicate rows from a 64-bit hash of every row; past ``MAX_ROW_HASHES`` rows only the rows
  whose hash falls below a threshold are kept (equal rows share a hash, so duplicates stay
  together) and the count is scaled up, marked ``duplicate_rows_estimated``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.acero  # Table.group_by loads it on first use, ~20 ms: at import, not mid-ingestion
import pyarrow.compute as pc

from webapp.datasets.csvscan import _csvscan  # None where the extension is not built

TOP_VALUES = 20
HISTOGRAM_BINS = 30
COUNTS_MAX_UNIQUE = 50  # value counts are kept for columns with at most this many values (class balance)
UNIQUE_SAMPLE = 50_000
EXACT_DISTINCT = 10_000
SKETCH_SIZE = 4096
TEXT_EXACT_DISTINCT = 100_000
TOP_KEPT = 1000
MAX_ROW_HASHES = 8_000_000  # 64 MB of row hashes
_MISSING_HASH = np.uint64(0x9E3779B97F4A7C15)
_BOOLEAN_HASHES = pd.util.hash_array(np.array([-1, 0, 1], np.int64))  # missing, False, True
_WORKERS = max(1, min(4, os.cpu_count() or 1))
_COSTS = {"numeric": 1, "boolean": 1, "datetime": 1, "text": 3}  # relative time to describe a column (measured)
_pool: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    """One pool per process for the column work (the compiled parts, Arrow and NumPy release the GIL)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(_WORKERS, "statistics")
    return _pool


def is_categorical(n_unique: int, n_present: int) -> bool:
    return n_unique <= 1000 and (n_unique <= 20 or n_unique <= n_present // 2)


def _finite(value):
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def _label(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _string_hashes(values: pa.Array) -> np.ndarray:
    """A 64-bit hash of each string (the same function throughout one process)."""
    if _csvscan is None or not pa.types.is_string(values.type):
        return pd.util.hash_array(values.to_numpy(zero_copy_only=False))
    hashes = np.empty(len(values), np.uint64)
    _, offsets, data = values.buffers()
    _csvscan.string_hashes(offsets, data if data is not None else b"", values.offset, len(values), hashes)
    return hashes


CODED_DISTINCT = 4096  # the compiled encoding's most distinct values a block; Arrow's (faster there) past them


def _dictionary_encode(array: pa.Array, compiled: bool = True) -> tuple[pa.Array, np.ndarray, np.ndarray, bool]:
    """The distinct strings in first-seen order (as ``pc.dictionary_encode``), each row's index
    into them (-1 for a null), each row's hash (``_string_hashes``'; the missing hash for a null),
    and whether the compiled encoding did it (not past CODED_DISTINCT values, nor when not asked)."""
    if compiled and _csvscan is not None and pa.types.is_string(array.type) and len(array):
        validity, offsets, data = array.buffers()
        codes, hashes = np.empty(len(array), np.int32), np.empty(len(array), np.uint64)
        firsts = np.empty(min(len(array), CODED_DISTINCT), np.int64)
        distinct = _csvscan.string_codes(offsets, data if data is not None else b"",
                                         validity if array.null_count else None, array.offset, len(array), codes,
                                         hashes, firsts)
        if distinct >= 0:
            return array.take(pa.array(firsts[:distinct])), codes, hashes, True
    # Hash each distinct string once, then spread the hashes by the dictionary's indices.
    encoded = pc.dictionary_encode(array)
    values = encoded.dictionary
    indices = encoded.indices.fill_null(-1).to_numpy()  # a null's -1 takes the last: the missing hash
    return values, indices, np.append(_string_hashes(values), _MISSING_HASH)[indices], False


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by a sort: NumPy 2's hash-based unique takes ~17x longer on the sketch's few
    thousand 64-bit hashes, and the sketch merges them once per block of every column."""
    values = np.sort(values)
    if len(values) > 1:
        values = values[np.concatenate(([True], values[1:] != values[:-1]))]
    return values


def _sorted_pairs(values, counts) -> list:
    return sorted(zip(values, counts), key=lambda pair: (-pair[1], str(pair[0])))


class DistinctCount:
    """Distinct values of a numeric array stream: exact while few, then a K-minimum-values sketch."""

    def __init__(self):
        self.rows = 0
        self.exact: np.ndarray | None = np.empty(0)
        self.sketch: np.ndarray | None = None
        self.waiting: list[np.ndarray] = []  # candidates for a full sketch, merged some at a time
        self.n_waiting = 0
        self._scratch: np.ndarray | None = None

    def scratch(self, n: int) -> np.ndarray:
        """A buffer for the compiled passes to write ``n`` hashes into, the same one each block
        (``add_hashes`` copies what it keeps)."""
        if self._scratch is None or len(self._scratch) < n:
            self._scratch = np.empty(n, np.uint64)
        return self._scratch

    def add(self, values: np.ndarray, hashes: np.ndarray | None = None) -> None:
        """``hashes``: ``pd.util.hash_array(values)`` when the caller has it already."""
        self.rows += len(values)
        if self.exact is not None:
            self.exact = pd.unique(np.concatenate([self.exact, pd.unique(values)]))
            if len(self.exact) > EXACT_DISTINCT and self.rows > UNIQUE_SAMPLE:
                self._add_hashes(pd.util.hash_array(self.exact))
                self.exact = None
        else:
            self._add_hashes(pd.util.hash_array(values) if hashes is None else hashes)

    def limit(self) -> int:
        """Hashes above this one cannot change the count (the sketch is full of smaller ones)."""
        if self.exact is None and len(self.sketch) == SKETCH_SIZE:
            return int(self.sketch[-1])
        return 2**64 - 1

    def add_hashes(self, hashes: np.ndarray, rows: int) -> None:
        """``add`` of ``rows`` values, given by hashes that are a bijection of them (the compiled
        reader's), those above ``limit()`` left out. The exact count keeps them sorted: NumPy's
        vectorised sort merges a block into tens of thousands of values faster than a hash set
        would (the compiled pass hands a few-valued block's hashes back once each, not per row)."""
        self.rows += rows
        if self.exact is None:
            if len(self.sketch) < SKETCH_SIZE:
                self._add_hashes(hashes)
                return
            # Few hashes get under a full sketch's limit: merging them a block at a time cost a sort
            # of the sketch per block; they wait until a quarter of a sketch's worth has come.
            self.waiting.append(hashes.copy())  # the caller's buffer is used again
            self.n_waiting += len(hashes)
            if self.n_waiting >= SKETCH_SIZE // 4:
                self._merge_waiting()
            return
        self.exact = _sorted_unique(np.concatenate([self.exact.astype(np.uint64, copy=False), hashes]))
        if len(self.exact) > EXACT_DISTINCT and self.rows > UNIQUE_SAMPLE:
            self._add_hashes(self.exact)
            self.exact = None

    def _add_hashes(self, hashes: np.ndarray) -> None:
        kept = self.sketch if self.sketch is not None else np.empty(0, dtype=np.uint64)
        if len(kept) == SKETCH_SIZE:
            hashes = hashes[hashes < kept[-1]]
        if len(hashes) > 4 * SKETCH_SIZE:  # sort only the smallest few, unless duplicates crowd them
            smallest = _sorted_unique(hashes[hashes <= np.partition(hashes, 4 * SKETCH_SIZE)[4 * SKETCH_SIZE]])
            if len(smallest) >= SKETCH_SIZE:
                hashes = smallest[:SKETCH_SIZE]
        if len(hashes):
            kept = _sorted_unique(np.concatenate([kept, hashes]))[:SKETCH_SIZE]
        self.sketch = kept

    def _merge_waiting(self) -> None:
        if self.waiting:
            self._add_hashes(np.concatenate(self.waiting))
            self.waiting, self.n_waiting = [], 0

    def result(self, present: int) -> dict:
        self._merge_waiting()
        if self.exact is not None:
            return {"unique": len(self.exact)}
        if len(self.sketch) < SKETCH_SIZE:  # every distinct hash was kept
            return {"unique": len(self.sketch), "unique_estimated": True}
        estimate = (SKETCH_SIZE - 1) * 2.0**64 / (float(self.sketch[-1]) + 1)
        return {"unique": int(min(round(estimate), present)), "unique_estimated": True}


class NumericColumn:
    def __init__(self):
        self.rows = self.missing = self.n_finite = 0
        self.low = self.high = None  # over present values, infinities included
        self.finite_low = self.finite_high = None
        self.mean = self.m2 = 0.0
        self.distinct = DistinctCount()
        self.counts: tuple[np.ndarray, np.ndarray] | None = (np.empty(0), np.empty(0, dtype=np.int64))
        self.histogram_counts = self.edges = None

    def add(self, array: pa.Array, row_hashes: np.ndarray, weight: np.uint64) -> np.ndarray | None:
        """Counts the values; returns their hashes for ``row_hashes``, or None where it added them in."""
        if _csvscan is not None and pa.types.is_float64(array.type):
            return self._add_compiled(array, row_hashes, weight)
        values = array.to_numpy(zero_copy_only=False)  # nulls come out as NaN
        if self.edges is not None:
            # Within a finite range np.histogram leaves out NaN (missing) and infinite values itself.
            self.histogram_counts += np.histogram(values, bins=self.edges)[0]
        hashes = pd.util.hash_array(values)
        self.rows += len(values)
        nan = np.isnan(values)
        n_nan = int(nan.sum())
        present_hashes = hashes
        if n_nan:
            self.missing += n_nan
            values, present_hashes = values[~nan], hashes[~nan]
        if not len(values):
            return hashes
        low, high = float(values.min()), float(values.max())
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        finite = values if math.isfinite(low) and math.isfinite(high) else values[np.isfinite(values)]
        if len(finite):
            self._merge_moments(finite)
        self.distinct.add(values, present_hashes)
        if self.counts is not None:
            self._count(values)
        return hashes

    def _add_compiled(self, array: pa.Array, row_hashes: np.ndarray, weight: np.uint64) -> None:
        """``add`` by the compiled reader's statistics, one pass over the Arrow buffers (GIL released).

        Its hashes are a bijection of the values' bits, so counting distinct hashes counts values;
        only those the distinct count can still keep come back (all of them while it is exact)."""
        validity, data = array.buffers()
        present = self.distinct.scratch(len(array))
        histogram = (self.histogram_counts, self.edges) if self.edges is not None else ()
        missing, n_finite, low, high, finite_low, finite_high, mean, m2, kept = _csvscan.float_stats(
            data, validity, array.offset, len(array), row_hashes, present, self.distinct.limit(), int(weight),
            *histogram)
        hashes = present[:kept]
        self.rows += len(array)
        self.missing += missing
        if missing == len(array):
            return
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        if n_finite:
            self._merge(n_finite, mean, m2, finite_low, finite_high)
        self.distinct.add_hashes(hashes, len(array) - missing)
        if self.counts is not None:
            if self.distinct.exact is None or len(self.distinct.exact) > COUNTS_MAX_UNIQUE:  # holds all so far
                self.counts = None
            else:
                values = array.to_numpy(zero_copy_only=False)
                self._count(values[~np.isnan(values)])

    def _merge_moments(self, finite: np.ndarray) -> None:
        mean = float(finite.mean())
        self._merge(len(finite), mean, float(np.square(finite - mean).sum()), float(finite.min()), float(finite.max()))

    def _merge(self, n: int, mean: float, m2: float, low: float, high: float) -> None:
        total = self.n_finite + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n_finite * n / total
        self.n_finite = total
        self.finite_low = low if self.finite_low is None else min(self.finite_low, low)
        self.finite_high = high if self.finite_high is None else max(self.finite_high, high)

    def _count(self, values: np.ndarray) -> None:
        block_values, block_counts = np.unique(values, return_counts=True)
        if len(block_values) > COUNTS_MAX_UNIQUE:
            self.counts = None
            return
        merged, inverse = np.unique(np.concatenate([self.counts[0], block_values]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([self.counts[1], block_counts])).astype(np.int64)
        self.counts = None if len(merged) > COUNTS_MAX_UNIQUE else (merged, counts)

    def bin_over(self, low: float, high: float) -> None:
        """The column's finite values span [low, high] (measured before): ``add`` counts them into
        the histogram as it goes (a column without edges gets no histogram)."""
        self.edges = np.histogram_bin_edges(np.empty(0), HISTOGRAM_BINS, (low, high))
        self.histogram_counts = np.zeros(HISTOGRAM_BINS, np.int64)

    def result(self) -> dict:
        present = self.rows - self.missing
        result = {"type": "numeric", "missing": self.missing, **self.distinct.result(present)}
        if present:
            result.update(min=_finite(self.low), max=_finite(self.high),
                          mean=_finite(self.mean) if self.n_finite else None,
                          std=_finite(math.sqrt(self.m2 / (self.n_finite - 1))) if self.n_finite > 1 else None)
            if self.histogram_counts is not None:
                result["histogram"] = {"counts": self.histogram_counts.tolist(), "edges": [float(e) for e in self.edges]}
        if self.counts is not None and result["unique"] <= COUNTS_MAX_UNIQUE:
            pairs = _sorted_pairs([float(v) for v in self.counts[0]], [int(c) for c in self.counts[1]])
            result["top"] = [[_label(v), c] for v, c in pairs[:TOP_VALUES]]
            result["counts"] = [[_label(v), c] for v, c in pairs]
        return result


class DatetimeColumn:
    def __init__(self):
        self.rows = self.missing = 0
        self.low = self.high = None
        self.distinct = DistinctCount()

    def add(self, array: pa.Array, row_hashes: np.ndarray, weight: np.uint64) -> np.ndarray | None:
        if _csvscan is not None and pa.types.is_timestamp(array.type) and array.type.unit == "ns":
            return self._add_compiled(array, row_hashes, weight)
        self.rows += len(array)
        self.missing += array.null_count
        ints = array.cast(pa.int64())
        hashes = pd.util.hash_array(ints.fill_null(-(2**62)).to_numpy())
        present = ints.drop_null().to_numpy()
        if len(present):
            low, high = int(present.min()), int(present.max())
            self.low = low if self.low is None else min(self.low, low)
            self.high = high if self.high is None else max(self.high, high)
            self.distinct.add(present)
        return hashes

    def _add_compiled(self, array: pa.Array, row_hashes: np.ndarray, weight: np.uint64) -> None:
        """``add`` in one compiled pass over the int64 nanoseconds; distinct values counted by their
        hashes, a bijection of the values."""
        validity, data = array.buffers()
        present = self.distinct.scratch(len(array))
        missing, low, high, kept = _csvscan.int_stats(data, validity, array.offset, len(array), row_hashes, present,
                                                       self.distinct.limit(), int(weight))
        self.rows += len(array)
        self.missing += missing
        if low <= high:
            self.low = low if self.low is None else min(self.low, low)
            self.high = high if self.high is None else max(self.high, high)
        self.distinct.add_hashes(present[:kept], len(array) - missing)

    def result(self) -> dict:
        result = {"type": "datetime", "missing": self.missing, **self.distinct.result(self.rows - self.missing)}
        if self.low is not None:
            as_text = lambda v: str(pa.scalar(v, type=pa.timestamp("ns")).as_py())
            result.update(min=as_text(self.low), max=as_text(self.high))
        return result


class CountedColumn:
    """Text, categorical and boolean columns: value counts merged in Arrow, bounded when huge."""

    def __init__(self, kind: str):
        self.kind = kind
        self.rows = self.missing = 0
        self.length_sum = 0
        self.pending: list[pa.StructArray] = []
        self.pending_rows = 0
        self.counts: pa.Table | None = None  # values, counts
        self.sketch: DistinctCount | None = None
        self.coded = True  # text blocks through the compiled dictionary encoding

    def add(self, array: pa.Array, row_hashes: np.ndarray, weight: np.uint64) -> np.ndarray:
        self.rows += len(array)
        self.missing += array.null_count
        if self.kind == "boolean":
            codes = array.cast(pa.int8()).fill_null(-1).to_numpy()
            hashes = _BOOLEAN_HASHES[codes + 1]
            trues = int(np.count_nonzero(codes == 1))
            falses = len(array) - array.null_count - trues
            kept = [(value, n) for value, n in ((True, trues), (False, falses)) if n]
            counted = pa.StructArray.from_arrays(
                [pa.array([v for v, _ in kept], pa.bool_()), pa.array([n for _, n in kept], pa.int64())],
                names=["values", "counts"])
        else:
            # A column whose block had too many values for the compiled encoding goes to Arrow's after.
            values, indices, hashes, self.coded = _dictionary_encode(array, self.coded)
            counts = np.bincount(indices[indices >= 0] if array.null_count else indices, minlength=len(values))
            # Lengths of the distinct values, times how often each comes
            self.length_sum += int(np.dot(pc.utf8_length(values).to_numpy(zero_copy_only=False), counts))
            counted = pa.StructArray.from_arrays([values, pa.array(counts.astype(np.int64))], names=["values", "counts"])
        if self.sketch is not None:
            self.sketch._add_hashes(pd.util.hash_array(counted.field("values").to_numpy(zero_copy_only=False)))
        self.pending.append(counted)
        self.pending_rows += len(counted)
        if self.pending_rows > TEXT_EXACT_DISTINCT:
            self._compact()
        return hashes

    def _compact(self) -> None:
        parts = ([self.counts] if self.counts is not None else []) + [
            pa.table({"values": c.field("values"), "counts": c.field("counts")}) for c in self.pending]
        self.pending, self.pending_rows = [], 0
        if not parts:
            return
        grouped = pa.concat_tables(parts).group_by("values").aggregate([("counts", "sum")])
        merged = pa.table({"values": grouped["values"], "counts": grouped["counts_sum"]})
        if len(merged) > TEXT_EXACT_DISTINCT and self.sketch is None:
            self.sketch = DistinctCount()
            self.sketch.exact = None
            self.sketch._add_hashes(pd.util.hash_array(merged.column("values").to_numpy(zero_copy_only=False)))
        if self.sketch is not None and len(merged) > TOP_KEPT:
            merged = merged.take(pc.select_k_unstable(merged, TOP_KEPT, [("counts", "descending")]))
        self.counts = merged

    def result(self) -> dict:
        self._compact()
        present = self.rows - self.missing
        values = self.counts.column("values").to_pylist() if self.counts is not None else []
        counts = self.counts.column("counts").to_pylist() if self.counts is not None else []
        if self.sketch is not None:
            unique = self.sketch.result(present)
        else:
            unique = {"unique": len(values)}
        kind = self.kind
        if kind == "text" and "unique_estimated" not in unique and is_categorical(unique["unique"], present):
            kind = "categorical"
        result = {"type": kind, "missing": self.missing, **unique}
        pairs = _sorted_pairs(values, counts)
        result["top"] = [[_label(v), c] for v, c in pairs[:TOP_VALUES]]
        if result["unique"] <= COUNTS_MAX_UNIQUE:
            result["counts"] = [[_label(v), c] for v, c in pairs]
        if kind == "text" and present:
            result["mean_length"] = self.length_sum / present
        return result


class RowHashes:
    """Rows equal to an earlier row, by a 64-bit hash of each row, in bounded memory."""

    def __init__(self):
        self.kept: list[np.ndarray] = []
        self.n_kept = 0
        self.shift = 0  # rows kept: hash < 2**(64 - shift)

    def add(self, combined: np.ndarray) -> None:
        """``combined``: each row's hash (``TableStatistics.add`` sums the columns' weighted hashes)."""
        if self.shift:
            combined = combined[combined < self._limit()]
        self.kept.append(combined)
        self.n_kept += len(combined)
        while self.n_kept > MAX_ROW_HASHES:
            self.shift += 1
            self.kept = [h[h < self._limit()] for h in self.kept]
            self.n_kept = sum(len(h) for h in self.kept)

    def _limit(self) -> np.uint64:
        return np.uint64(1) << np.uint64(64 - self.shift)

    def result(self) -> dict:
        if self.n_kept < 2:
            return {"duplicate_rows": 0}
        hashes = np.concatenate(self.kept)
        hashes.sort()  # equal hashes side by side: every one after the first of its run is a duplicate
        duplicates = int(np.count_nonzero(hashes[1:] == hashes[:-1]))
        if not self.shift:
            return {"duplicate_rows": duplicates}
        return {"duplicate_rows": duplicates << self.shift, "duplicate_rows_estimated": True}


_ACCUMULATORS = {"numeric": NumericColumn, "datetime": DatetimeColumn,
                 "boolean": lambda: CountedColumn("boolean"), "text": lambda: CountedColumn("text")}


def _runs(costs: list[int], parts: int) -> list[list[int]]:
    """The indices cut into ``parts`` runs of neighbours, of about equal total cost."""
    total, runs, current, spent = sum(costs), [], [], 0
    for i, cost in enumerate(costs):
        current.append(i)
        spent += cost
        if len(runs) < parts - 1 and spent >= total * (len(runs) + 1) / parts:
            runs.append(current)
            current = []
    return runs + [current] if current else runs


class FiniteRanges:
    """The smallest and largest finite value of each float64 column, batch by batch (for ``bin_over``)."""

    def __init__(self):
        self.ranges: dict[int, tuple[float, float]] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        for i, array in enumerate(batch.columns):
            if not pa.types.is_float64(array.type):
                continue
            if _csvscan is not None:
                validity, data = array.buffers()
                low, high = _csvscan.float_range(data, validity, array.offset, len(array))
            else:
                values = array.to_numpy(zero_copy_only=False)
                values = values[np.isfinite(values)]
                low, high = (values.min(), values.max()) if len(values) else (math.inf, -math.inf)
            if low <= high:
                old = self.ranges.get(i, (low, high))
                self.ranges[i] = (min(old[0], float(low)), max(old[1], float(high)))


class TableStatistics:
    """Columns are described apart, in groups of about equal cost on as many threads as there are
    cores. A row's hash is the sum of its values' hashes, each times an odd weight of its column,
    so the groups' sums add up to the same whatever their order."""

    def __init__(self, names: list[str], kinds: list[str]):
        self.names = names
        self.columns = [_ACCUMULATORS[kind]() for kind in kinds]
        self.weights = pd.util.hash_array(np.arange(len(kinds), dtype=np.int64)) | np.uint64(1)
        self.groups = _runs([_COSTS[kind] for kind in kinds], min(_WORKERS, len(kinds))) if kinds else []
        self.rows = RowHashes()
        self.n_rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.add_stored([batch])

    def add_stored(self, batches: list[pa.RecordBatch], release: Callable[[int, list[int]], None] | None = None) -> None:
        """``add`` of every batch, each group of columns a task of its own over all the batches (no
        waiting on each other between batches). The groups are runs of neighbouring columns, so
        ``release(batch index, columns)`` can let go of one span of a stored batch once its
        group is done with it."""
        if not self.columns:
            self.n_rows += sum(batch.num_rows for batch in batches)
            return

        def describe(group):
            parts = []
            for index, batch in enumerate(batches):
                parts.append(self._add_columns(batch, group))
                if release is not None:
                    release(index, group)
            return parts

        for batch, (row_hashes, *others) in zip(batches, zip(*_threads().map(describe, self.groups))):
            for other in others:
                row_hashes += other
            self.n_rows += batch.num_rows
            self.rows.add(row_hashes)

    def _add_columns(self, batch: pa.RecordBatch, indices) -> np.ndarray:
        """Describes these columns of the batch (each column on one thread only); their part of the row hashes."""
        row_hashes = np.zeros(batch.num_rows, np.uint64)
        for i in indices:
            hashes = self.columns[i].add(batch.column(i), row_hashes, self.weights[i])
            if hashes is not None:
                row_hashes += hashes * self.weights[i]
        return row_hashes

    def bin_over(self, ranges: dict[int, tuple[float, float]]) -> None:
        """Numeric columns' finite ranges, measured before ``add`` (see ``FiniteRanges``): their
        histograms are then counted as the values are added."""
        for i, (low, high) in ranges.items():
            self.columns[i].bin_over(low, high)

    def finish(self) -> tuple[list[dict], dict]:
        """The column entries and the summary."""
        columns = [{"name": name, **column.result()} for name, column in zip(self.names, self.columns)]
        constant = [c["name"] for c in columns if c["unique"] <= 1]
        summary = {"n_rows": self.n_rows, "n_columns": len(self.names), **self.rows.result(),
                   "constant_columns": constant}
        if self.n_rows < 2:
            summary["duplicate_rows"] = 0
        return columns, summary
