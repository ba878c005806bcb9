"""A fit's rows, handed out a batch at a time, with the host's reads done ahead of the step.

``Rows`` is one training array (x or y) in the dtype the model reads. When it fits
(``backend.resident_limit_bytes()``) it is moved to the device once, and a batch is a device
gather. Otherwise it stays where it is - a memory map stays on disk - and each batch's rows are
read, cast and copied on their own, so memory grows with the batch and not with the data set.

``Batches`` hands out the batches of an epoch. The host rows of the coming batches are read
by a thread of its own while the device trains on the current one, into a ring of a few fixed
slots:

- on the CPU a slot is one host buffer per row set, which the step reads directly;
- on the GPU a slot is a pinned host buffer and a device buffer per row set. The thread copies on
  a side stream and records an event there; the training stream waits for that event (on the
  GPU, not the host) before the batch's first use. Once the step that read the slot has been
  enqueued, the training stream records another event, which the side stream waits for before it
  copies into the slot again. So copies overlap the training, but never its reads.

A slot goes back to the thread only after that, so the thread can't overtake the training by more
than the ring. The batches come out in the order planned, bit for bit the rows a read on demand
gives. Where the thread is off (``read_ahead``: on the CPU by default) each batch is read when it
is asked for, in the training thread: into one slot on the CPU, into two in turn on the GPU, so that
a batch's copy still overlaps the step before it. An error in the thread is raised in the training
thread at the batch it concerns, and the thread never outlives the epoch: it stops when the epoch
ends, breaks off (early stopping) or fails.

``data.ImageRows`` (an image run's splits: views of the stored uint8 images) are read a chunk at a
time where they fit; on the GPU they stay uint8 there and each batch is cast and scaled on the
device (``Rows.device_rows``).
"""
import os
import queue
import threading

import numpy as np

from trainer import backend
from trainer import data as data_module

SLOTS = 3  # one batch in use, up to two read ahead


class Rows:
    """The rows of a training array (x or y) handed out as device batches of one dtype.

    Resident when the array already has ``dtype``, or is an in-memory array whose cast copy fits,
    and when the result is within ``backend.resident_limit_bytes()``. On the GPU, ``ImageRows``
    for a float32 model stay uint8 there (a quarter of the memory, a quarter of the copy) and each
    batch is cast and scaled on the device. All give the same batches, bit for bit.
    """

    def __init__(self, array, dtype):
        self.host = array
        self.dtype = np.dtype(dtype)
        images = isinstance(array, data_module.ImageRows) and backend.xp() is not np and self.dtype == np.float32
        stored = np.dtype(np.uint8) if images else self.dtype
        fits = array.size * stored.itemsize <= backend.resident_limit_bytes()
        same = array.dtype == self.dtype
        self.resident = fits and (same or not isinstance(array, np.memmap))
        self.data = self._to_device(stored) if self.resident else array

    def _to_device(self, stored):
        if not isinstance(self.host, data_module.ImageRows) or backend.xp() is np:
            return backend.to_device(self.host, dtype=self.dtype)
        data = backend.xp().empty(self.host.shape, dtype=stored)  # a chunk at a time, never whole on the host
        for begin, end in self.host.chunks():
            rows = self.host.stored(np.arange(begin, end)) if stored != self.dtype else self.host_batch(None, begin, end)
            backend.copy_to_device(data[begin:end], rows)
        return data

    def device_rows(self, index=None, begin=0, end=None):
        """The resident rows at the device indices ``index`` (or ``begin:end``) in ``dtype``."""
        batch = self.data[begin:end] if index is None else self.data.take(index, axis=0)
        if batch.dtype != self.dtype:  # images kept as uint8: cast and scaled as ImageRows.read does
            batch = batch.astype(self.dtype)
            if self.host.scale:
                batch *= data_module.IMAGE_SCALE
        return batch

    def __len__(self):
        return len(self.host)

    def host_batch(self, host_indices, begin, end, out=None):
        """The rows ``host_indices`` (or, when None, ``begin:end``) of the host array, cast (into ``out``)."""
        if isinstance(self.host, data_module.ImageRows):
            positions = np.arange(begin, end) if host_indices is None else host_indices
            if out is None:
                out = np.empty((len(positions), *self.host.shape[1:]), dtype=self.dtype)
            return self.host.read(positions, out=out)
        if host_indices is not None:
            return data_module.gather_rows(self.host, host_indices, self.dtype, out=out)
        if out is None:
            return np.asarray(self.host[begin:end], dtype=self.dtype)
        out[...] = self.host[begin:end]
        return out


def read_ahead(xp):
    """Whether host rows are read by a thread ahead of the step: CUPOLA_READ_AHEAD=1 or 0, and by
    default on the GPU only. There the training thread only launches work, and a batch's read (tens
    of microseconds for 128 images) is as long as a small model's step. On the CPU it is a few
    percent of a step, and the thread takes a core from the BLAS, which uses them all
    (``benchmarks/feed_bench.py`` measures both)."""
    value = os.environ.get("CUPOLA_READ_AHEAD", "").strip()
    if value in ("0", "1"):
        return value == "1"
    if value:
        raise ValueError(f"CUPOLA_READ_AHEAD must be 1 or 0. Received: {value!r}")
    return xp is not np


class _Slot:
    """Room for one batch of each host row set: a host buffer, and on the GPU a device buffer and
    the two events that order the side stream's copy and the training stream's reads."""

    def __init__(self, rows, batch_size, xp):
        shapes = [((batch_size, *r.host.shape[1:]), r.dtype) for r in rows]
        if xp is np:
            self.host = self.device = [np.empty(shape, dtype) for shape, dtype in shapes]
            self.copied = self.consumed = None
        else:
            import cupyx

            self.host = [cupyx.empty_pinned(shape, dtype) for shape, dtype in shapes]
            self.device = [xp.empty(shape, dtype) for shape, dtype in shapes]
            self.copied = xp.cuda.Event(disable_timing=True)
            self.consumed = xp.cuda.Event(disable_timing=True)


class Batches:
    """The batches of ``x`` and ``y`` (two ``Rows``; ``y`` may be None) of at most ``batch_size`` rows."""

    def __init__(self, x, y, batch_size):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.xp = backend.xp()
        self.fed = [rows for rows in (x, y) if rows is not None and not rows.resident]
        self.threaded = bool(self.fed) and read_ahead(self.xp)
        # Read here, one slot does on the CPU; the GPU's two let a batch's copy overlap the step before.
        count = (SLOTS if self.threaded else 1 if self.xp is np else 2) if self.fed else 0
        self.slots = [_Slot(self.fed, batch_size, self.xp) for _ in range(count)]
        on_gpu = bool(self.fed) and self.xp is not np
        self.stream = self.xp.cuda.Stream(non_blocking=True) if on_gpu else None  # the copies' side stream
        self.device_id = self.xp.cuda.runtime.getDevice() if on_gpu else None  # the thread's, too

    def __len__(self):
        return len(self.x)

    @property
    def status(self):
        """How the rows reach the device: {"device": "cpu" or "gpu", "resident": every set kept
        whole on the device, "read_ahead": host sets read by the thread ahead of the step}."""
        return {"device": "cpu" if self.xp is np else "gpu", "resident": not self.fed, "read_ahead": self.threaded}

    @property
    def gathers(self):
        """True when a row set is resident: its batches are gathered on the device by row index."""
        return any(rows is not None and rows.resident for rows in (self.x, self.y))

    def device_order(self, order):
        """The row order ``order`` on the device where a resident set is gathered by it, else None."""
        return backend.to_device(order) if order is not None and self.gathers else None

    def epoch(self, order=None, order_device=None, gather=True):
        """Yield ``(begin, end, xb, yb)`` for each batch, in the row order ``order`` (host) /
        ``order_device`` (its device copy; None: ``order`` is moved when a resident set needs it),
        or in storage order when ``order`` is None. A host row set's batch is a slot's buffer,
        valid until the next batch is asked for. A resident set's batch is gathered from the
        device, or, with ``gather=False``, left as None for the caller to index itself."""
        n, size = len(self.x), self.batch_size
        if order_device is None and gather:
            order_device = self.device_order(order)
        plan = [(begin, min(begin + size, n)) for begin in range(0, n, size)]
        fed = self._fed_batches(plan, order)
        try:
            for begin, end in plan:
                arrays = iter(next(fed))
                out = []
                for rows in (self.x, self.y):
                    if rows is None or not rows.resident:
                        out.append(next(arrays) if rows is not None else None)
                    elif not gather:
                        out.append(None)
                    elif order is None:
                        out.append(rows.device_rows(begin=begin, end=end))
                    else:
                        out.append(rows.device_rows(order_device[begin:end]))
                yield begin, end, out[0], out[1]
        finally:
            fed.close()

    # ------------------------------------------------------------------ host rows
    def _fed_batches(self, plan, order):
        """Each planned batch of the host row sets, as slot buffers (read ahead by a thread, or here)."""
        if not self.fed:
            for _ in plan:
                yield []
            return
        if not self.threaded:
            for i, (begin, end) in enumerate(plan):
                slot = self.slots[i % len(self.slots)]
                self._fill(slot, order, begin, end)
                yield self._hand_out(slot, end - begin)
                self._release(slot)
            return
        free, ready, stop = queue.SimpleQueue(), queue.SimpleQueue(), threading.Event()
        for slot in self.slots:
            free.put(slot)
        thread = threading.Thread(target=self._read, args=(plan, order, free, ready, stop), daemon=True,
                                  name="cupola-read-ahead")
        thread.start()
        try:
            for begin, end in plan:
                slot = ready.get()
                if isinstance(slot, BaseException):
                    raise slot
                yield self._hand_out(slot, end - begin)
                self._release(slot)
                free.put(slot)
        finally:
            stop.set()
            free.put(None)  # wakes the thread if it waits for a slot
            thread.join()
            for slot in self.slots:  # a slot held at a break: nothing may copy into it before its reads
                self._release(slot)

    def _read(self, plan, order, free, ready, stop):
        """The thread: fill a free slot with each planned batch and hand it over, until stopped."""
        try:
            if self.device_id is not None:
                self.xp.cuda.Device(self.device_id).use()
            for begin, end in plan:
                slot = free.get()
                if slot is None or stop.is_set():
                    return
                self._fill(slot, order, begin, end)
                ready.put(slot)
        except BaseException as error:  # noqa: BLE001 - raised in the training thread, at its batch
            ready.put(error)

    def _fill(self, slot, order, begin, end):
        size = end - begin
        host_indices = order[begin:end] if order is not None else None
        if slot.copied is not None:
            slot.copied.synchronize()  # the slot's last copy has left its pinned buffer
        for rows, buffer in zip(self.fed, slot.host):
            rows.host_batch(host_indices, begin, end, out=buffer[:size])
        if self.stream is not None:
            self.stream.wait_event(slot.consumed)  # the step that read the slot last has run
            for host, device in zip(slot.host, slot.device):
                device[:size].set(host[:size], stream=self.stream)
            slot.copied.record(self.stream)

    def _hand_out(self, slot, size):
        if slot.copied is not None:
            self.xp.cuda.get_current_stream().wait_event(slot.copied)
        return [device[:size] for device in slot.device]

    def _release(self, slot):
        if slot.consumed is not None:
            slot.consumed.record(self.xp.cuda.get_current_stream())
