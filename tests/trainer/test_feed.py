"""feed: resident and host row sets, batches read ahead by a thread, and the GPU branch's ordering."""
import sys
import threading
import time
import types

import numpy as np
import pytest

from tests.trainer.test_models import small_cnn
from trainer import Sequential, backend, feed, layers
from trainer.feed import Batches, Rows


def mapped(tmp_path, array, name="x"):
    """``array`` as a read-only memory map on disk."""
    out = np.lib.format.open_memmap(tmp_path / f"{name}.npy", mode="w+", dtype=array.dtype, shape=array.shape)
    out[:] = array
    out.flush()
    return np.load(tmp_path / f"{name}.npy", mmap_mode="r")


def collect(batches, order=None, gather=True):
    return [(begin, end, None if xb is None else np.array(xb), None if yb is None else np.array(yb))
            for begin, end, xb, yb in batches.epoch(order, gather=gather)]


def expected(x, y, n, batch_size, order, dtype=np.float32):
    rows = np.arange(n) if order is None else order
    return [(b, min(b + batch_size, n), x[rows[b:b + batch_size]].astype(dtype), y[rows[b:b + batch_size]])
            for b in range(0, n, batch_size)]


def same(got, wanted):
    assert len(got) == len(wanted)
    for (b, e, xb, yb), (b2, e2, xw, yw) in zip(got, wanted):
        assert (b, e) == (b2, e2)
        assert xb.dtype == xw.dtype and np.array_equal(xb, xw)
        assert np.array_equal(yb, yw)


@pytest.fixture(autouse=True)
def threaded(monkeypatch):
    """The thread reads ahead here unless a test says otherwise (by default it does on the GPU only),
    and the default resident limit holds (these sets are small: in memory, they fit)."""
    monkeypatch.setenv("CUPOLA_READ_AHEAD", "1")
    monkeypatch.delenv("CUPOLA_RESIDENT_BYTES", raising=False)


def test_the_thread_reads_ahead_by_default_on_the_gpu_only(monkeypatch, tmp_path):
    monkeypatch.delenv("CUPOLA_READ_AHEAD")
    assert feed.read_ahead(LazyGpu()) and not feed.read_ahead(np)
    on_disk = Rows(mapped(tmp_path, np.zeros((10, 3), dtype=np.uint8)), np.float32)
    assert not Batches(on_disk, None, 4).threaded
    monkeypatch.setenv("CUPOLA_READ_AHEAD", "yes")
    with pytest.raises(ValueError, match="CUPOLA_READ_AHEAD must be 1 or 0. Received: 'yes'"):
        Batches(on_disk, None, 4)


def test_it_keeps_a_foreign_dtype_memory_map_on_disk_and_an_in_memory_set_on_the_device(tmp_path):
    on_disk = mapped(tmp_path, np.zeros((10, 3), dtype=np.uint8))
    assert not Rows(on_disk, np.float32).resident
    assert Rows(np.zeros((10, 3), dtype=np.float64), np.float32).resident  # cast once
    assert Rows(np.zeros((10, 3), dtype=np.float32), np.float32).resident
    batch = Rows(on_disk, np.float32).host_batch(np.array([7, 2, 5]), 0, 0)
    assert batch.dtype == np.float32 and batch.shape == (3, 3)


@pytest.mark.parametrize("read_ahead", ["1", "0"])
@pytest.mark.parametrize("shuffled", [True, False])
def test_host_and_resident_sets_give_the_rows_asked_for_in_order(tmp_path, monkeypatch, read_ahead, shuffled):
    monkeypatch.setenv("CUPOLA_READ_AHEAD", read_ahead)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (103, 4, 3), dtype=np.uint8)
    y = rng.integers(0, 5, 103)
    order = rng.permutation(103) if shuffled else None
    batches = Batches(Rows(mapped(tmp_path, x), np.float32), Rows(y, y.dtype), 16)
    assert batches.threaded == (read_ahead == "1") and len(batches.fed) == 1  # x read from the host, y resident
    for _epoch in range(2):  # a second epoch reuses the slots
        same(collect(batches, order), expected(x, y, 103, 16, order))


def test_a_resident_set_is_left_to_the_caller_when_it_indexes_itself(tmp_path):
    x, y = np.arange(20, dtype=np.float32).reshape(10, 2), np.arange(10)
    got = collect(Batches(Rows(mapped(tmp_path, x.astype(np.float64)), np.float32), Rows(y, y.dtype), 4),
                  gather=False)
    assert [g[3] for g in got] == [None, None, None]
    assert np.array_equal(np.concatenate([g[2] for g in got]), x)


def test_predicting_batches_have_no_targets(tmp_path):
    x = np.arange(30, dtype=np.uint8).reshape(10, 3)
    got = collect(Batches(Rows(mapped(tmp_path, x), np.float32), None, 4))
    assert [g[3] for g in got] == [None] * 3
    assert np.array_equal(np.concatenate([g[2] for g in got]), x.astype(np.float32))


def read_ahead_threads():
    return [t for t in threading.enumerate() if t.name == "cupola-read-ahead"]


def test_the_thread_reads_at_most_the_ring_ahead_and_never_into_a_batch_in_use(tmp_path):
    x = np.repeat(np.arange(40, dtype=np.uint8)[:, None], 3, axis=1)
    rows = Rows(mapped(tmp_path, x), np.float32)
    reads = []
    original = rows.host_batch

    def counted(*args, **kwargs):
        reads.append(args[1])
        return original(*args, **kwargs)

    rows.host_batch = counted
    batches = Batches(rows, None, 4)
    for begin, end, xb, _ in batches.epoch():
        time.sleep(0.02)  # a slow step: the thread has time to run ahead as far as it may
        assert len(reads) <= begin // 4 + feed.SLOTS
        assert np.array_equal(xb, x[begin:end].astype(np.float32))  # not overwritten while in use
    assert reads == list(range(0, 40, 4))


def test_breaking_off_an_epoch_stops_its_thread_and_the_next_epoch_starts_afresh(tmp_path):
    x = np.arange(60, dtype=np.uint8).reshape(20, 3)
    batches = Batches(Rows(mapped(tmp_path, x), np.float32), None, 2)
    each = batches.epoch()
    next(each)
    assert len(read_ahead_threads()) == 1
    each.close()  # what early stopping does
    assert read_ahead_threads() == []
    got = collect(batches)
    assert np.array_equal(np.concatenate([g[2] for g in got]), x.astype(np.float32))
    assert read_ahead_threads() == []


def test_a_read_that_fails_is_raised_in_the_training_thread_at_its_batch(tmp_path):
    x = np.arange(60, dtype=np.uint8).reshape(20, 3)
    rows = Rows(mapped(tmp_path, x), np.float32)
    original = rows.host_batch

    def failing(host_indices, begin, end, out=None):
        if begin == 8:
            raise OSError("Input/output error reading x.npy")
        return original(host_indices, begin, end, out=out)

    rows.host_batch = failing
    seen = []
    with pytest.raises(OSError, match="Input/output error"):
        for begin, _end, _xb, _ in Batches(rows, None, 4).epoch():
            seen.append(begin)
    assert seen == [0, 4]
    assert read_ahead_threads() == []


@pytest.mark.parametrize("graphs", ["0", "emulate"])
def test_a_fit_reads_ahead_and_trains_bit_for_bit_as_it_does_reading_on_demand(tmp_path, monkeypatch, graphs):
    monkeypatch.setenv("CUPOLA_CUDA_GRAPHS", graphs)
    rng = np.random.default_rng(1)
    x = mapped(tmp_path, rng.integers(0, 256, (90, 8, 8, 1), dtype=np.uint8))
    y = rng.integers(0, 3, 90)
    results = []
    for read_ahead in ("0", "1"):
        monkeypatch.setenv("CUPOLA_READ_AHEAD", read_ahead)
        model = small_cnn()
        history = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.2, seed=4)
        assert model.data_feed == {"device": "cpu", "resident": False, "read_ahead": read_ahead == "1"}  # per batch
        results.append((history.history["loss"], history.history["val_loss"], model.get_weights(),
                        model.predict(x, batch_size=32)))
    (loss, val_loss, weights, predicted), (loss2, val_loss2, weights2, predicted2) = results
    assert loss == loss2 and val_loss == val_loss2
    assert all(np.array_equal(a, b) for a, b in zip(weights, weights2))
    assert np.array_equal(predicted, predicted2)


# ---------------------------------------------------------------------------- the GPU branch, on NumPy
class LazyGpu:
    """CuPy's module as far as ``feed`` uses it, over NumPy, with a side stream that runs a copy
    as late as CUDA may: when the training stream waits for an event recorded after it (the
    training stream's own work, NumPy's, is done when it is enqueued). The host learns that a copy
    has left its pinned buffer only from ``Event.synchronize``; writing into a pinned buffer
    before then is refused. So a hand-out that does not wait for its copy reads the slot's old
    rows, and a refill of a pinned buffer still in flight raises."""

    def __init__(self):
        fake, lock = self, threading.RLock()
        self.copies = 0
        in_flight = {}  # id of a pinned buffer -> (stream, index of its last copy)

        class Stream:
            def __init__(self, non_blocking=False):
                self.pending, self.done, self.known = [], 0, 0  # known: copies the host knows are done

            def enqueue(self, work):
                with lock:
                    self.pending.append(work)
                    return self.done + len(self.pending)

            def run_until(self, count):
                with lock:
                    while self.done < count:
                        self.pending.pop(0)()
                        self.done += 1

            def wait_event(self, event):
                if self is fake.training and event.mark is not None:  # on the GPU, not the host
                    event.mark[0].run_until(event.mark[1])

        class Event:
            def __init__(self, disable_timing=False):
                self.mark = None

            def record(self, stream=None):
                stream = stream or fake.training
                with lock:
                    self.mark = (stream, stream.done + len(stream.pending))

            def synchronize(self):
                if self.mark is not None:
                    stream, count = self.mark
                    stream.run_until(count)
                    stream.known = max(stream.known, count)

        def root(array):
            while isinstance(array.base, np.ndarray):
                array = array.base
            return id(array)

        class PinnedArray(np.ndarray):
            def __setitem__(self, key, value):
                stream, index = in_flight.get(root(self), (None, 0))
                if stream is not None and index > stream.known:
                    raise AssertionError("a pinned buffer refilled while its copy may still read it")
                super().__setitem__(key, value)

        class DeviceArray(np.ndarray):
            def set(self, host, stream=None):
                # CuPy's own checks (cupy/_core/core.pyx, ndarray.set)
                if not isinstance(host, np.ndarray):
                    raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
                if host.dtype != self.dtype or host.shape != self.shape:
                    raise TypeError(f"{host.dtype}{host.shape} array cannot be set to {self.dtype}{self.shape}")
                if not (self.flags.c_contiguous and host.flags.c_contiguous):
                    raise RuntimeError("Cannot set to non-contiguous array")  # (CuPy would copy a host one)
                device, source = self.view(np.ndarray), host.view(np.ndarray)

                def copy():  # reads the pinned buffer when it runs, as the DMA does
                    device[...] = source
                    fake.copies += 1
                in_flight[root(host)] = (stream, stream.enqueue(copy))

        self.training = Stream()
        self.cuda = types.SimpleNamespace(
            Stream=Stream, Event=Event, get_current_stream=lambda: self.training,
            runtime=types.SimpleNamespace(getDevice=lambda: 0),
            Device=lambda index: types.SimpleNamespace(use=lambda: None))
        self.empty = lambda shape, dtype: np.full(shape, -1, dtype).view(DeviceArray)
        self.empty_pinned = lambda shape, dtype: np.full(shape, -2, dtype).view(PinnedArray)


@pytest.mark.parametrize("read_ahead", ["1", "0"])
def test_the_gpu_branch_waits_for_each_copy_and_never_refills_a_pinned_buffer_in_flight(tmp_path, monkeypatch,
                                                                                       read_ahead):
    monkeypatch.setenv("CUPOLA_READ_AHEAD", read_ahead)
    gpu = LazyGpu()
    monkeypatch.setitem(sys.modules, "cupyx", types.SimpleNamespace(empty_pinned=gpu.empty_pinned))
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (50, 3), dtype=np.uint8)
    y = rng.integers(0, 4, 50).astype(np.float32)
    x_rows = Rows(mapped(tmp_path, x), np.float32)
    y_rows = Rows(mapped(tmp_path, y.astype(np.float64), "y"), np.float32)  # both from the host
    monkeypatch.setattr(backend, "xp", lambda: gpu)
    batches = Batches(x_rows, y_rows, 8)
    order = rng.permutation(50)
    for _epoch in range(2):
        got = collect(batches, order)
        same(got, expected(x, y, 50, 8, order))
        time.sleep(0.05)  # the slots of a finished epoch are reused by the next
    assert gpu.copies == 2 * 2 * 7  # two sets, seven batches, two epochs: each batch copied once


@pytest.mark.gpu
def test_on_the_gpu_host_batches_copied_on_a_side_stream_train_as_batches_read_on_demand(tmp_path, monkeypatch):
    if not backend.gpu_available():
        pytest.skip("CuPy or a CUDA device is not available")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (200, 8, 8, 1), dtype=np.uint8)
    y = rng.integers(0, 3, 200)
    on_disk = mapped(tmp_path, x)
    backend.set_device("gpu")
    try:
        order = rng.permutation(200)
        same([(b, e, backend.to_host(xb), backend.to_host(yb)) for b, e, xb, yb in
              Batches(Rows(on_disk, np.float32), Rows(y, y.dtype), 32).epoch(order)], expected(x, y, 200, 32, order))
        for graphs in ("0", "1"):
            monkeypatch.setenv("CUPOLA_CUDA_GRAPHS", graphs)
            runs = []
            for read_ahead in ("0", "1"):
                monkeypatch.setenv("CUPOLA_READ_AHEAD", read_ahead)
                model = small_cnn()
                history = model.fit(on_disk, y, epochs=3, batch_size=32, seed=4)
                runs.append((history.history["loss"], model.get_weights(), model.step_graphs,
                             model.predict(on_disk, batch_size=64)))  # host batches on the GPU predicted too
            (loss, weights, _, predicted), (loss2, weights2, status, predicted2) = runs
            assert loss == loss2 and np.array_equal(predicted, predicted2)
            assert all(np.array_equal(a, b) for a, b in zip(weights, weights2))
            if graphs == "1":
                assert status["off"] is None and status["captured"] == [32, 8], status
        from trainer.data import ImageRows, scale_images  # kept as uint8 on the GPU, scaled per batch there

        rows = Rows(ImageRows(on_disk), np.float32)
        assert rows.resident and rows.data.dtype == np.uint8
        fits = []
        for x_given in (scale_images(x), ImageRows(on_disk)):
            model = small_cnn()
            fits.append((model.fit(x_given, y, epochs=2, batch_size=32, seed=4).history["loss"], model.get_weights()))
        assert fits[0][0] == fits[1][0]
        assert all(np.array_equal(a, b) for a, b in zip(fits[0][1], fits[1][1]))
    finally:
        backend.set_device("cpu")


@pytest.mark.parametrize("read_ahead", ["1", "0"])
def test_predicting_keeps_each_batch_even_where_the_output_is_the_input_buffer(tmp_path, monkeypatch, read_ahead):
    monkeypatch.setenv("CUPOLA_READ_AHEAD", read_ahead)
    x = np.arange(120, dtype=np.uint8).reshape(10, 4, 3)
    model = Sequential([layers.Flatten()], input_shape=(4, 3))
    assert np.array_equal(model.predict(mapped(tmp_path, x), batch_size=3), x.reshape(10, 12).astype(np.float32))


@pytest.mark.parametrize("where", ["resident", "read from the map"])
def test_a_fit_on_image_rows_trains_exactly_as_on_the_scaled_images_in_memory(tmp_path, monkeypatch, where):
    from trainer.data import ImageRows, scale_images

    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, (120, 8, 8, 1), dtype=np.uint8)
    y = rng.integers(0, 3, 120)
    train = rng.permutation(120)[:100]
    reference = small_cnn()
    history = reference.fit(scale_images(images[train]), y[train], epochs=2, batch_size=16, validation_split=0.2,
                            seed=5)
    if where != "resident":
        monkeypatch.setenv("CUPOLA_RESIDENT_BYTES", "0")
    x = ImageRows(mapped(tmp_path, images), train)
    model = small_cnn()
    streamed = model.fit(x, y[train], epochs=2, batch_size=16, validation_split=0.2, seed=5)
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert streamed.history[name] == history.history[name]
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), reference.get_weights()))
    assert model.evaluate(x, y[train]) == reference.evaluate(scale_images(images[train]), y[train])


def test_on_the_gpu_image_rows_stay_uint8_read_a_chunk_at_a_time_and_each_batch_is_scaled_there(monkeypatch):
    from trainer import data
    from trainer.data import ImageRows, scale_images

    class NumpyUnderAnotherName:  # the GPU branch: xp is not np
        def __getattr__(self, name):
            return getattr(np, name)

    images = np.random.default_rng(7).integers(0, 256, (30, 4, 4, 1), dtype=np.uint8)
    monkeypatch.setattr(data, "_CHUNK_BYTES", 4 * 16 * 7)  # seven float32 images a chunk
    read = []
    original = ImageRows.stored
    monkeypatch.setattr(ImageRows, "stored", lambda self, positions: read.append(len(positions)) or
                        original(self, positions))
    monkeypatch.setattr(backend, "xp", lambda: NumpyUnderAnotherName())
    rows = Rows(ImageRows(images), np.float32)
    assert rows.resident and rows.data.dtype == np.uint8 and read == [7, 7, 7, 7, 2]
    assert np.array_equal(rows.data, images)
    index = np.array([29, 3, 3, 17])
    for batch, expected_rows in ((rows.device_rows(index), scale_images(images[index])),
                                 (rows.device_rows(begin=5, end=12), scale_images(images[5:12]))):
        assert batch.dtype == np.float32 and np.array_equal(batch, expected_rows)
    unscaled = Rows(ImageRows(images, scale=False), np.float32)
    assert np.array_equal(unscaled.device_rows(index), images[index].astype(np.float32))
    # Only uint8 that fits where float32 might not; a float64 model keeps the float32 values, cast.
    monkeypatch.setenv("CUPOLA_RESIDENT_BYTES", str(images.size))
    assert Rows(ImageRows(images), np.float32).resident and not Rows(ImageRows(images), np.float64).resident
    monkeypatch.delenv("CUPOLA_RESIDENT_BYTES")
    wide = Rows(ImageRows(images), np.float64)
    assert wide.data.dtype == np.float64 and np.array_equal(wide.data, scale_images(images).astype(np.float64))


def test_a_resident_validation_split_is_read_once_per_fit_even_for_host_computed_metrics(monkeypatch):
    from trainer.data import ImageRows

    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, (60, 6, 6, 1), dtype=np.uint8)
    y = rng.integers(0, 3, 60)
    reads = []
    original = ImageRows.read
    monkeypatch.setattr(ImageRows, "read", lambda self, positions, out=None: reads.append(len(positions)) or
                        original(self, positions, out=out))
    model = small_cnn()
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy", "f1"])
    history = model.fit(ImageRows(images[:40]), y[:40], validation_data=(ImageRows(images[40:]), y[40:]), epochs=3,
                        batch_size=8, seed=0)
    assert len(history.history["val_f1"]) == 3
    assert sorted(reads) == [20, 40]  # each split once, when it was put on the device; no epoch read them again
