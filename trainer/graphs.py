"""Training steps replayed as CUDA graphs.

A small model's GPU step is a few hundred kernel launches, and each costs the host more time than
the GPU spends on it. So once a batch size has been trained on eagerly (the warm-up: kernels
compiled, cuBLAS ready, memory pooled), the next step of that size is captured into a CUDA graph
(forward, backward, update, and the epoch's loss and metric sums) and every later one is a single
launch. The last, smaller batch of an epoch gets a graph of its own.

What changes from one step to the next is put where the graph reads it, on the device:
- the batch: the graph gathers its rows from the resident data set through an index buffer that
  the host refills before each launch (rows that stay on the host are copied into a fixed buffer);
- the optimizer's scalars (learning rate, bias corrections, decay): the host plans an epoch's rows
  in one copy (``Optimizer.plan_steps``) and each step loads its row on the device, so no
  host-to-device copy (which may wait for the stream) comes between two launches;
- the epoch's loss and metric sums: accumulators on the device, zeroed when an epoch begins;
- dropout's masks: ``backend.CounterRandom`` hashes a seed and a step count kept on the device,
  and the step advances the count there.

Safety, since a graph replays whatever it captured:
- each graph's temporaries come from a memory pool of its own, kept with the graph and used by
  nothing else, so no later allocation hands its memory out again;
- pinned host memory may not be allocated during a capture: a host-to-device copy (a Python number
  turned into an array) would be captured from a staging buffer that later copies overwrite, so
  the capture fails instead;
- the second launch of every graph is checked against an eager step from the same state. A
  mismatch, a capture that fails or a launch the driver refuses turns graphs off for the rest of
  the fit; the eager result is kept and ``model.step_graphs`` says why.

On NumPy (``CUPOLA_CUDA_GRAPHS=emulate``, for the tests) the graph is emulated: a capture runs
nothing and records the host state a real capture would bake in (the optimizer's step counter and
host scalars, the layers' generators and their draw counts); a launch runs the step with that
state put back. A step that reads host state where it should read a device buffer then trains
differently from the eager path, which the tests compare with, bit for bit.
"""
import contextlib
import threading

import numpy as np

from trainer import backend

# The second launch of each graph must match an eager step to this fraction of the step's change
# (cuBLAS runs the same kernels either way; atomic adds may round differently).
CHECK_RTOL = 1e-3


class CaptureError(RuntimeError):
    """CUDA refused to capture a step (a host synchronisation, a host copy, ...)."""


def _describe(error):
    return str(error) if isinstance(error, CaptureError) else f"{type(error).__name__}: {error}"


class _NoPinnedMemory:
    """CuPy's pinned-memory allocator while a capture runs: refused to the capturing thread (whose
    host-to-device copy would be captured from a staging buffer that later copies overwrite),
    the default pool's to any other thread (the setting is process-wide)."""

    def __init__(self, default):
        self.thread, self.default = threading.get_ident(), default

    def __call__(self, size):
        if threading.get_ident() != self.thread:
            return self.default(size)
        raise CaptureError("a host-to-device copy inside the training step (it would be replayed from a "
                           "staging buffer that later copies overwrite)")


class _CudaGraph:
    def __init__(self, step):
        import cupy

        self.pool = cupy.cuda.MemoryPool()  # the graph's temporaries, handed to nobody else
        self.stream = cupy.cuda.Stream(non_blocking=True)
        default = cupy.get_default_pinned_memory_pool().malloc
        cupy.cuda.set_pinned_memory_allocator(_NoPinnedMemory(default))
        try:
            with cupy.cuda.using_allocator(self.pool.malloc), self.stream:
                self.stream.begin_capture()
                try:
                    step()
                except BaseException as error:
                    with contextlib.suppress(Exception):  # the capture is invalid already; report the first error
                        self.stream.end_capture()
                    raise CaptureError(f"{type(error).__name__}: {error}") from error
                try:
                    self.graph = self.stream.end_capture()
                except Exception as error:  # cudaErrorStreamCaptureInvalidated and the like
                    raise CaptureError(f"{type(error).__name__}: {error}") from error
        finally:
            cupy.cuda.set_pinned_memory_allocator(default)

    def launch(self):
        self.graph.launch()  # on the current stream, after the host's copies into the buffers


class _EmulatedGraph:
    def __init__(self, step, frozen):
        self.step = step
        self.frozen = [(owner, name, getattr(owner, name)) for owner, name in frozen]

    def launch(self):
        current = [getattr(owner, name) for owner, name, _ in self.frozen]
        for owner, name, value in self.frozen:
            setattr(owner, name, value)
        try:
            self.step()
        finally:
            for (owner, name, _), value in zip(self.frozen, current):
                setattr(owner, name, value)


class StepGraphs:
    """One graph per key (the batch size): eager the first time a key comes, captured the second
    (and launched), launched from then on; the second launch checked against an eager step."""

    def __init__(self, mode, frozen=()):
        self.mode = mode                # "cuda" or "emulate"
        self.frozen = list(frozen)      # (object, attribute) pairs a capture bakes in (emulation)
        self.graphs = {}
        self.launches = {}
        self.status = {"mode": mode, "captured": [], "launches": 0, "checked": 0, "off": None}

    @property
    def on(self):
        return self.status["off"] is None

    def turn_off(self, reason):
        if self.on:
            self.status["off"] = reason
            self.graphs.clear()

    def run(self, key, step, state, clear):
        """One training step for ``key``. ``step`` does the device work; ``state()`` lists the arrays
        a step changes (for the check); ``clear()`` drops what a failed capture left behind."""
        graph = self.graphs.get(key) if self.on else None
        if graph is None and self.on and key in self.launches:
            try:
                graph = self.graphs[key] = self._capture(step)
                self.status["captured"].append(key)
            except Exception as error:  # noqa: BLE001 - the warm-up ran this step eagerly: the capture failed
                self.turn_off(f"the capture of a batch of {key} failed: {_describe(error)}")
                clear()
        if graph is None:  # graphs off, the warm-up, or a refused capture
            self.launches.setdefault(key, 0)
            step()
            return
        self.launches[key] += 1
        self.status["launches"] += 1
        if self.launches[key] == 2:
            self._checked_launch(key, graph, step, state(), clear)
        else:
            self._launch(key, graph, step, clear)

    def _launch(self, key, graph, step, clear):
        """Launch ``graph``; where CUDA refuses (nothing of it ran), run the step eagerly. True if launched."""
        try:
            graph.launch()
        except Exception as error:  # noqa: BLE001 - whatever the driver says, the fit goes on without graphs
            self.turn_off(f"the launch of a batch of {key} failed: {_describe(error)}")
            clear()
            step()
            return False
        return True

    def _capture(self, step):
        return _CudaGraph(step) if self.mode == "cuda" else _EmulatedGraph(step, self.frozen)

    def _checked_launch(self, key, graph, step, state, clear):
        """Launch, keep the result, rewind, run the step eagerly, and compare."""
        xp = backend.get_array_module(state[0])
        before = [a.copy() for a in state]
        if not self._launch(key, graph, step, clear):
            return
        replayed = [a.copy() for a in state]
        for array, saved in zip(state, before):
            array[...] = saved
        clear()
        step()
        self.status["checked"] += 1
        for i, (eager, graphed, saved) in enumerate(zip(state, replayed, before)):
            if not eager.size:
                continue
            if eager.dtype.kind != "f":  # counters: their differences must not wrap around
                eager, graphed, saved = (a.astype(np.float64) for a in (eager, graphed, saved))
            error = float(xp.abs(graphed - eager).max())
            change = float(xp.abs(eager - saved).max())
            if not error <= CHECK_RTOL * change:  # also catches NaN
                self.turn_off(f"the graph of a batch of {key} gave other numbers than the eager step "
                              f"(state array {i}: off by {error:.3g} where the step changed it by {change:.3g})")
                return


class GraphedSteps:
    """The batches of a fit whose steps are replayed from CUDA graphs: the batch's rows, the
    optimizer's scalars and the epoch's sums all live on the device. ``train`` is the fit's
    ``feed.Batches`` (row sets resident on the device, or read a batch at a time from the host)."""

    def __init__(self, model, train, fused, step_graphs):
        self.model, self.train, self.fused = model, train, fused
        self.x, self.y = train.x, train.y
        self.xp = backend.xp()
        self.graphs = step_graphs
        self.loss_sum = self.xp.zeros((), dtype=np.float64)
        self.last_loss = None   # the last batch's loss (batch logs on the CPU)
        self.sums = {}          # metric -> device accumulator of the epoch
        self.counts = {}        # batch size -> metric -> count a batch adds
        self.buffers = {}       # batch size -> [index, x rows or None, y rows or None]
        self.steps = {}         # batch size -> the step's device work
        self.positions = None   # 0..n-1 on the device: the index when there is no shuffle
        self.steps_per_epoch = -(-len(train) // train.batch_size)
        model.optimizer.use_device_scalars(self.steps_per_epoch)

    def close(self):
        self.model.optimizer.use_device_scalars(0)

    def epoch(self, order, order_device, cbs, batch_logs):
        """Train one epoch; returns (samples seen, loss sum, metric totals, last learning rate)."""
        model, optimizer = self.model, self.model.optimizer
        n = len(self.train)
        for total in (self.loss_sum, *self.sums.values()):
            total[...] = 0
        if order_device is None and self.train.gathers:
            if self.positions is None or len(self.positions) != n:
                self.positions = self.xp.arange(n, dtype=np.int64)
            order_device = self.positions
        counts = {}
        seen, lr = 0, optimizer.current_learning_rate()
        optimizer.plan_steps(self.steps_per_epoch)
        with contextlib.closing(self.train.epoch(order, order_device, gather=False)) as batches:
            for batch, (begin, end, x_rows, y_rows) in enumerate(batches):
                size = end - begin
                self._load(size, order_device, begin, end, x_rows, y_rows)
                lr = optimizer.prepare_step()
                self.graphs.run(size, self._step(size), self._state, self._clear)
                seen += size
                for name, count in self.counts[size].items():
                    counts[name] = counts.get(name, 0) + count
                if batch_logs:
                    logs = {"batch": batch, "size": size}
                    if self.xp is np:
                        logs["loss"] = float(self.last_loss)
                    cbs.on_batch_end(batch, logs)
                if model.stop_training:
                    break
        return seen, self.loss_sum, {name: (self.sums[name], counts[name]) for name in self.sums}, lr

    def _load(self, size, order_device, begin, end, x_rows, y_rows):
        """Put the batch where the graph of its size reads it: the resident sets' row index, the
        host sets' rows (read ahead by ``train``) into the graph's own buffers."""
        buffers = self.buffers.get(size)
        if buffers is None:
            buffers = self.buffers[size] = [self.xp.empty(size, dtype=np.int64)] + [
                None if rows.resident else self.xp.empty((size, *rows.host.shape[1:]), dtype=rows.dtype)
                for rows in (self.x, self.y)]
        index = buffers[0]
        if order_device is not None:
            index[...] = order_device[begin:end]
        for buffer, rows in zip(buffers[1:], (x_rows, y_rows)):
            if buffer is not None:
                buffer[...] = rows

    def _step(self, size):
        step = self.steps.get(size)
        if step is None:
            step = self.steps[size] = self._make_step(size, *self.buffers[size])
        return step

    def _make_step(self, size, index, x_buffer, y_buffer):
        model, xp = self.model, self.xp
        logits = self.fused or model.loss.from_logits

        def step():
            xb = self.x.device_rows(index) if x_buffer is None else x_buffer
            yb = self.y.device_rows(index) if y_buffer is None else y_buffer
            loss, out = model._forward_backward(xb, yb, self.fused)
            model.optimizer.apply_step()
            self.loss_sum += loss * size
            if self.last_loss is None:  # made in the warm-up, before any capture
                self.last_loss = xp.zeros((), dtype=loss.dtype)
            self.last_loss[...] = loss
            counts = {}
            for name, (value, count) in (model._batch_sums(yb, out, logits) if model.metrics else {}).items():
                total = self.sums.get(name)
                if total is None:
                    total = self.sums[name] = xp.zeros((), dtype=value.dtype)
                total += value
                counts[name] = count
            self.counts[size] = counts

        return step

    def _state(self):
        """The arrays a step changes."""
        optimizer = self.model.optimizer
        return [optimizer.flat, *optimizer.slots.values(), optimizer.device_scalars.counter,
                *(array for layer in self.model.layers for array in layer.state.values()),
                self.model._dropout_rng.state, self.loss_sum, self.last_loss, *self.sums.values()]

    def _clear(self):
        for p in self.model.optimizer.params:
            p.grad = None
