"""Training steps replayed from CUDA graphs (trainer.graphs), checked on NumPy by emulation.

An emulated capture runs nothing and keeps the host state a real capture would bake into the graph
(the optimizer's step counter and host scalars, the layers' generators); a launch runs the step
with that state put back. So a graphed fit that reads any of it where it should read a device
buffer trains differently from a fit one step at a time. Here both must agree bit for bit, over
the layers, optimizers, schedules, metrics and data paths a fit can take. On a GPU the same
comparisons run with real graphs (``-m gpu``), to a tolerance.
"""
import numpy as np
import pytest

from trainer import Sequential, backend, callbacks, graphs, layers, optimizers, schedules


@pytest.fixture(autouse=True)
def _graphs_default():
    yield
    backend.set_step_graphs("1")


def fit(build, x, y, mode, **options):
    backend.set_step_graphs(mode)
    model = build()
    history = model.fit(x, y, **{"epochs": 3, "batch_size": 16, "seed": 4, **options})
    return model, history.history


def assert_same_training(build, x, y, **options):
    """Eager and graphed fits give the same weights and logs; returns the graphed model."""
    eager, eager_logs = fit(build, x, y, "0", **options)
    graphed, graphed_logs = fit(build, x, y, "emulate", **options)
    assert_same_weights(eager, graphed)
    timing = ("epoch_time", "samples_per_second")
    assert {k: v for k, v in graphed_logs.items() if k not in timing} == \
        {k: v for k, v in eager_logs.items() if k not in timing}
    assert eager.step_graphs is None
    return graphed


def table(n=100, features=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    return x, rng


def labelled_table(n=100):
    x, rng = table(n)
    return x, rng.integers(0, 3, len(x))


def assert_same_weights(a, b):
    for left, right in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)


def classifier(optimizer, metrics=("accuracy",), hidden=(8,), loss="sparse_categorical_crossentropy", out=3,
               activation="softmax", extra=()):
    def build():
        model = Sequential([*(layers.Dense(h, activation="relu") for h in hidden), *extra,
                            layers.Dense(out, activation=activation)], seed=1)
        return model.compile(loss=loss, optimizer=optimizer(), metrics=list(metrics))
    return build


OPTIMIZERS = {
    "adam": lambda: optimizers.Adam(learning_rate=0.01),
    "adamw with a decaying rate": lambda: optimizers.AdamW(
        learning_rate=schedules.ExponentialDecay(0.02, decay_steps=3, decay_rate=0.7), weight_decay=0.01),
    "sgd nesterov": lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
    "sgd with warm-up": lambda: optimizers.SGD(
        learning_rate=schedules.CosineDecay(0.05, decay_steps=20, warmup_steps=5)),
    "rmsprop clipped": lambda: optimizers.RMSprop(learning_rate=0.01, clipnorm=0.5),
    "adagrad clipped": lambda: optimizers.Adagrad(learning_rate=0.1, global_clipnorm=1.0, clipvalue=0.2),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_graphed_fit_trains_exactly_as_one_step_at_a_time_with_every_optimizer(name):
    x, y = labelled_table()
    model = assert_same_training(classifier(OPTIMIZERS[name]), x, y)
    # 100 rows in batches of 16: six of 16 and one of 4, each size captured once and checked once.
    assert model.step_graphs == {"mode": "emulate", "captured": [16, 4], "launches": 21 - 2, "checked": 2,
                                 "off": None}


def test_the_graphed_steps_see_the_learning_rate_change_every_step():
    x, y = labelled_table()
    build = classifier(lambda: optimizers.SGD(learning_rate=schedules.ExponentialDecay(0.1, 1, 0.5)))
    graphed = assert_same_training(build, x, y)
    assert graphed.optimizer.iterations == 21
    assert graphed.optimizer.current_learning_rate() == pytest.approx(0.1 * 0.5 ** 21)
    assert graphed.optimizer.device_scalars is None  # the fit hands the optimizer back as it found it


def test_class_weights_reach_the_graphed_steps():
    x, y = labelled_table()
    build = classifier(lambda: optimizers.Adam(learning_rate=0.01))
    graphed = assert_same_training(build, x, y, class_weight="balanced")
    assert graphed.class_weights == pytest.approx(len(y) / (3 * np.bincount(y)))


def test_a_plateau_cut_between_epochs_reaches_the_graphed_steps():
    x, y = labelled_table()
    build = classifier(lambda: optimizers.Adam(learning_rate=0.05))
    def cut_every_epoch():  # after the first: no loss beats the best by 10
        return [callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)]
    eager, eager_logs = fit(build, x, y, "0", epochs=4, callbacks=cut_every_epoch())
    graphed, graphed_logs = fit(build, x, y, "emulate", epochs=4, callbacks=cut_every_epoch())
    assert graphed_logs["learning_rate"] == eager_logs["learning_rate"] == pytest.approx([0.05, 0.05, 0.025, 0.0125])  # epoch 0 is the first best
    assert_same_weights(eager, graphed)
    assert graphed.step_graphs["captured"] == [16, 4]


def test_an_epochs_scalars_are_planned_in_one_copy_and_loaded_step_by_step():
    from trainer.core import Parameter

    optimizer = optimizers.AdamW(learning_rate=schedules.ExponentialDecay(0.1, 2, 0.5), weight_decay=0.01)
    optimizer.build([Parameter(np.ones(3, dtype=np.float32))])
    optimizer.iterations = 5
    expected = []
    for _ in range(3):  # what three eager steps would take
        lr = optimizer.current_learning_rate()
        optimizer.iterations += 1
        expected.append(optimizer.step_scalars(lr))
    optimizer.iterations = 5
    optimizer.use_device_scalars(4)
    optimizer.plan_steps(3)
    assert optimizer.iterations == 5  # planning counts nothing
    assert [optimizer.device_scalars.next() for _ in range(3)] == expected
    assert int(optimizer.device_scalars.counter[0]) == 3
    with pytest.raises(ValueError, match="5 steps planned, room for 4"):
        optimizer.plan_steps(5)
    optimizer.use_device_scalars(0)
    assert optimizer.device_scalars is None


def test_binary_and_regression_metrics_add_up_on_the_device_as_they_do_on_the_host():
    x, rng = table()
    y = (x[:, 0] + rng.normal(scale=0.5, size=len(x)) > 0).astype(np.float32)
    assert_same_training(classifier(OPTIMIZERS["adam"], ("accuracy", "mae", "mse", "rmse"), loss="binary_crossentropy",
                                    out=1, activation="sigmoid"), x, y, validation_split=0.2)
    target = x @ rng.normal(size=5).astype(np.float32)
    assert_same_training(classifier(OPTIMIZERS["sgd nesterov"], ("mae", "rmse"), loss="mse", out=1,
                                    activation=None), x, target)


def test_convolutions_batch_norm_and_a_regularizer_train_the_same_graphed():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 8, 8, 2)).astype(np.float32)
    y = rng.integers(0, 4, len(x))

    def build():
        model = Sequential([layers.Conv2D(4, 3, activation="relu", kernel_regularizer={"l2": 1e-3}),
                            layers.MaxPooling2D(2), layers.BatchNormalization(), layers.Flatten(),
                            layers.Dense(4, activation="softmax")], seed=2)
        return model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizers.Adam(0.01),
                             metrics=["accuracy"])

    model = assert_same_training(build, x, y, batch_size=12)
    assert model.step_graphs["captured"] == [12, 4]


def test_recurrent_and_embedding_models_train_the_same_graphed():
    rng = np.random.default_rng(3)
    series = rng.normal(size=(50, 6, 2)).astype(np.float32)
    assert_same_training(lambda: Sequential([layers.LSTM(5), layers.Dense(1)], seed=3).compile(
        loss="mse", optimizer=optimizers.Adam(0.01)), series, series[:, -1, :1] * 2, batch_size=8)
    tokens = rng.integers(0, 20, size=(60, 7))
    assert_same_training(lambda: Sequential([layers.Embedding(20, 4), layers.GRU(6), layers.Dense(2, activation="softmax")],
                                            seed=3).compile(loss="sparse_categorical_crossentropy",
                                                            optimizer=optimizers.Adam(0.01), metrics=["accuracy"]),
                         tokens, (tokens[:, 0] > 9).astype(np.int64), batch_size=16)


def test_unshuffled_and_host_resident_batches_reach_the_graph(monkeypatch, tmp_path):
    x, y = labelled_table(90)
    build = classifier(OPTIMIZERS["adam"])
    assert_same_training(build, x, y, shuffle=False)
    mapped = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=x.shape)
    mapped[:] = x
    mapped.flush()
    monkeypatch.setenv("CUPOLA_RESIDENT_BYTES", "0")  # every batch read from the map and copied in
    model = assert_same_training(build, np.load(tmp_path / "x.npy", mmap_mode="r"), y)
    assert model.step_graphs["off"] is None


def test_batch_callbacks_see_each_loss_and_can_stop_in_the_middle_of_an_epoch():
    x, y = labelled_table()
    runs = {}
    for mode in ("0", "emulate"):
        backend.set_step_graphs(mode)
        model = classifier(OPTIMIZERS["adam"])()
        seen = runs[mode] = (model, [])

        def on_batch_end(batch, logs, model=model, seen=seen[1]):
            seen.append((batch, logs["size"], logs["loss"]))
            if len(seen) == 17:
                model.stop_training = True

        model.fit(x, y, epochs=5, batch_size=16, seed=4, callbacks=[callbacks.LambdaCallback(on_batch_end=on_batch_end)])
    (eager, eager_seen), (graphed, graphed_seen) = runs["0"], runs["emulate"]
    assert len(graphed_seen) == 17
    assert graphed_seen == eager_seen
    assert graphed_seen[6][1] == 4  # the last batch of the first epoch
    assert len(graphed.history.history["loss"]) == 3
    assert_same_weights(eager, graphed)


def test_a_second_fit_continues_the_first_and_resumes_the_same_graphed():
    x, y = labelled_table()
    runs = {}
    for mode in ("0", "emulate"):
        backend.set_step_graphs(mode)
        model = classifier(OPTIMIZERS["adamw with a decaying rate"])()
        model.fit(x, y, epochs=2, batch_size=16, seed=4)
        model.fit(x, y, epochs=4, batch_size=32, seed=4, initial_epoch=2)
        runs[mode] = model
    assert runs["emulate"].optimizer.iterations == 7 * 2 + 4 * 2
    assert_same_weights(runs["0"], runs["emulate"])


def test_a_transformer_with_dropout_trains_the_same_graphed_drawing_new_masks(monkeypatch):
    rng = np.random.default_rng(5)
    series = rng.normal(size=(48, 6, 2)).astype(np.float32)
    target = series[:, -1, :1] - series[:, 0, :1]

    def build(rate):
        return lambda: Sequential([layers.Dense(8), layers.PositionEmbedding(),
                                   layers.TransformerEncoder(12, 2, dropout=rate), layers.GlobalAveragePooling1D(),
                                   layers.Dense(1)], seed=3).compile(loss="mse", optimizer=optimizers.Adam(0.01))

    assert_same_training(build(0.0), series, target, batch_size=16)
    graphed, logs = fit(build(0.2), series, target, "emulate")
    assert graphed.step_graphs["captured"] == [16] and graphed.step_graphs["launches"] > 0
    monkeypatch.setattr(graphs.StepGraphs, "on", property(lambda self: False))
    eager, eager_logs = fit(build(0.2), series, target, "emulate")
    assert_same_weights(eager, graphed)
    assert logs["loss"] == eager_logs["loss"]
    plain, _ = fit(build(0.0), series, target, "emulate")  # the masks change what it learns
    assert not np.array_equal(plain.get_weights()[0], graphed.get_weights()[0])


def test_dropout_draws_new_masks_in_every_replayed_step(monkeypatch):
    x, y = labelled_table()
    build = classifier(OPTIMIZERS["adam"], extra=(layers.Dropout(0.3),))
    graphed, graphed_logs = fit(build, x, y, "emulate")
    assert graphed.step_graphs["captured"] == [16, 4] and graphed.step_graphs["off"] is None
    assert isinstance(graphed.layers[1].rng, backend.CounterRandom)
    # The same fit with every step eager (graphs emulated, so the same generator): the same numbers.
    monkeypatch.setattr(graphs.StepGraphs, "on", property(lambda self: False))
    eager, eager_logs = fit(build, x, y, "emulate")
    assert eager.step_graphs["launches"] == 0
    assert_same_weights(eager, graphed)
    assert graphed_logs["loss"] == eager_logs["loss"]
    # Had the replays drawn the masks of their capture, training would differ: without dropout it does.
    plain, _ = fit(classifier(OPTIMIZERS["adam"], extra=(layers.Dropout(0.0),)), x, y, "emulate")
    assert not np.array_equal(plain.get_weights()[0], graphed.get_weights()[0])


def _augmented_image_model():
    return Sequential([layers.RandomFlip("horizontal_and_vertical"), layers.RandomTranslation(0.2, 0.2),
                       layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
                       layers.Dense(3, activation="softmax")], seed=2).compile(
        loss="sparse_categorical_crossentropy", optimizer=optimizers.Adam(0.01), metrics=["accuracy"])


def test_augmentation_draws_new_flips_and_shifts_in_every_replayed_step(monkeypatch):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(60, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, 60)
    graphed, graphed_logs = fit(_augmented_image_model, x, y, "emulate")
    assert graphed.step_graphs["captured"] == [16, 12] and graphed.step_graphs["off"] is None
    monkeypatch.setattr(graphs.StepGraphs, "on", property(lambda self: False))
    eager, eager_logs = fit(_augmented_image_model, x, y, "emulate")
    assert_same_weights(eager, graphed)
    assert graphed_logs["loss"] == eager_logs["loss"]


def test_the_counter_generator_draws_from_its_device_state():
    rng = backend.CounterRandom(np, [7, 0, 1])
    rng.next_step()
    first = rng.random((4000,))
    second = rng.random((4000,))  # a second draw in the same step: other numbers
    assert first.dtype == np.float32 and 0.0 <= first.min() and first.max() < 1.0
    assert abs(first.mean() - 0.5) < 0.02 and abs(np.mean(first < 0.3) - 0.3) < 0.03
    assert np.corrcoef(first, second)[0, 1] < 0.05
    saved = rng.state.copy()
    rng.next_step()
    third = rng.random((4000,))
    assert not np.array_equal(third, first)
    rng.state[...] = saved  # rewinding the device state rewinds the numbers, as a graph's check does
    rng.next_step()
    np.testing.assert_array_equal(rng.random((4000,)), third)
    again = backend.CounterRandom(np, [7, 0, 1])
    again.next_step()
    np.testing.assert_array_equal(again.random((4000,)), first)  # the same seed, the same numbers
    other = backend.CounterRandom(np, [7, 1, 1])
    other.next_step()
    assert not np.array_equal(other.random((4000,)), first)
    rng.seed([7, 0, 1])  # reseeded in place, as each epoch does
    rng.next_step()
    np.testing.assert_array_equal(rng.random((40, 100)).reshape(-1), first)


class LeakyAdam(optimizers.Adam):
    """Reads its step counter inside the update, as a graph-unsafe optimizer would."""

    def update(self, w, g, s, xp):
        super().update(w, g, {**s, "alpha": s["lr"] / (1.0 - self.beta_1 ** self.iterations)}, xp)


def test_a_step_that_reads_host_state_is_caught_at_its_second_launch(monkeypatch):
    x, y = labelled_table()
    build = classifier(lambda: LeakyAdam(learning_rate=0.01))
    graphed = assert_same_training(build, x, y)  # the check's eager step is kept, and the rest run eagerly
    # The replay kept the step counter of its capture; the eager step counted on.
    assert "gave other numbers than the eager step (state array 0" in graphed.step_graphs["off"]
    assert graphed.step_graphs["checked"] == 1
    # Without the check, the emulated replays would have trained differently.
    monkeypatch.setattr(graphs.StepGraphs, "_checked_launch", lambda self, key, graph, *rest: graph.launch())
    eager, _ = fit(build, x, y, "0")
    unchecked, _ = fit(build, x, y, "emulate")
    assert unchecked.step_graphs["off"] is None
    assert not np.array_equal(eager.get_weights()[0], unchecked.get_weights()[0])


def test_a_graph_that_disagrees_with_the_eager_step_is_dropped_and_the_eager_result_kept(monkeypatch):
    x, y = labelled_table()
    launch = graphs._EmulatedGraph.launch
    launches = []

    def drifting_launch(self):
        launch(self)
        launches.append(self)
        if len(launches) >= 2:  # a replay that goes wrong from its second launch on
            graphed_model[0].optimizer.flat += 1e-3

    graphed_model = []
    build = classifier(OPTIMIZERS["adam"])

    def build_and_keep():
        model = build()
        graphed_model.append(model)
        return model

    eager, eager_logs = fit(build, x, y, "0")
    monkeypatch.setattr(graphs._EmulatedGraph, "launch", drifting_launch)
    graphed, graphed_logs = fit(build_and_keep, x, y, "emulate")
    status = graphed.step_graphs
    assert status["checked"] == 1 and status["captured"] == [16]
    assert "gave other numbers than the eager step" in status["off"]
    assert graphed_logs["loss"] == eager_logs["loss"]
    assert_same_weights(eager, graphed)


def test_a_capture_that_fails_falls_back_to_eager_steps(monkeypatch):
    x, y = labelled_table()

    def refuse(self, step):
        for p in graphs_model[0].optimizer.params:  # what a half-done capture leaves behind
            p.grad = p.data * 0 + 1
        raise graphs.CaptureError("cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing")

    graphs_model = []
    build = classifier(OPTIMIZERS["adam"])

    def build_and_keep():
        graphs_model.append(build())
        return graphs_model[-1]

    eager, _ = fit(build, x, y, "0")
    monkeypatch.setattr(graphs.StepGraphs, "_capture", refuse)
    graphed, _ = fit(build_and_keep, x, y, "emulate")
    assert graphed.step_graphs["off"].startswith("the capture of a batch of 16 failed: cudaErrorStreamCapture")
    assert graphed.step_graphs["launches"] == 0
    assert_same_weights(eager, graphed)


@pytest.mark.parametrize("launch", [1, 2, 3])
def test_a_launch_that_cuda_refuses_falls_back_to_eager_steps(monkeypatch, launch):
    x, y = labelled_table()
    real_launch = graphs._EmulatedGraph.launch
    launches = []

    def refused_at(self):
        launches.append(self)
        if len(launches) == launch:  # the first, the checked or a later launch
            raise RuntimeError("cudaErrorLaunchFailure: unspecified launch failure")
        real_launch(self)

    eager, eager_logs = fit(classifier(OPTIMIZERS["adam"]), x, y, "0")
    monkeypatch.setattr(graphs._EmulatedGraph, "launch", refused_at)
    graphed, graphed_logs = fit(classifier(OPTIMIZERS["adam"]), x, y, "emulate")
    assert graphed.step_graphs["off"] == ("the launch of a batch of 16 failed: RuntimeError: cudaErrorLaunchFailure: "
                                          "unspecified launch failure")
    assert graphed.step_graphs["checked"] == (1 if launch == 3 else 0)
    assert graphed_logs["loss"] == eager_logs["loss"]
    assert_same_weights(eager, graphed)


def _image_model():
    return Sequential([layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(2), layers.BatchNormalization(),
                       layers.Flatten(), layers.Dropout(0.2), layers.Dense(4, activation="softmax")], seed=2).compile(
        loss="sparse_categorical_crossentropy", optimizer=optimizers.Adam(0.01), metrics=["accuracy"])


def _series_model():
    return Sequential([layers.LSTM(8), layers.Dense(1)], seed=3).compile(loss="mse", optimizer=optimizers.Adam(0.01),
                                                                         metrics=["mae"])


def _gpu_cases():
    rng = np.random.default_rng(5)
    x, y = labelled_table(300)
    images = rng.normal(size=(150, 10, 10, 1)).astype(np.float32)
    series = rng.normal(size=(150, 12, 2)).astype(np.float32)
    return {
        "mlp": (classifier(OPTIMIZERS["adamw with a decaying rate"], hidden=(32, 32), extra=(layers.Dropout(0.2),)),
                x, y, [32, 12]),
        "cnn": (_image_model, images, rng.integers(0, 4, len(images)), [32, 22]),
        "augmented cnn": (_augmented_image_model, images, rng.integers(0, 3, len(images)), [32, 22]),
        "lstm": (_series_model, series, series[:, -1, :1] - series[:, 0, 1:], [32, 22]),
    }


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["mlp", "cnn", "augmented cnn", "lstm"])
def test_real_cuda_graphs_train_as_the_eager_steps_do_on_the_gpu(case):
    if not backend.gpu_available():
        pytest.skip("CuPy or a CUDA device is not available")
    build, x, y, captured = _gpu_cases()[case]
    backend.set_device("gpu")
    try:
        runs = {mode: fit(build, x, y, mode, epochs=4, batch_size=32) for mode in ("0", "1")}
    finally:
        backend.set_device("cpu")
    status = runs["1"][0].step_graphs
    assert status["mode"] == "cuda" and status["off"] is None, status
    assert status["captured"] == captured and status["checked"] == 2
    for a, b in zip(runs["0"][0].get_weights(), runs["1"][0].get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(runs["1"][1]["loss"], runs["0"][1]["loss"], rtol=1e-5)


@pytest.mark.gpu
def test_a_host_copy_inside_a_capture_is_refused_on_the_gpu():
    if not backend.gpu_available():
        pytest.skip("CuPy or a CUDA device is not available")
    import cupy

    target = cupy.zeros(4, dtype=cupy.float32)

    def step():
        target[...] += cupy.asarray(np.arange(4, dtype=np.float32))

    step()  # eager: fine
    with pytest.raises(graphs.CaptureError, match="host-to-device copy"):
        graphs._CudaGraph(step)
    np.testing.assert_array_equal(cupy.asnumpy(target), np.arange(4))  # the refused capture ran nothing


class FakeCupy:
    """Just enough of CuPy's graph API to follow _CudaGraph's bookkeeping on a machine without a GPU:
    which allocator is in force while the step runs, and what is left in force afterwards."""

    def __init__(self, end_error=None):
        import contextlib
        import types

        self.calls, self.pinned = [], "default"
        fake = self

        class Stream:
            def __init__(self, non_blocking=False):
                fake.calls.append(("stream", non_blocking))

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def begin_capture(self):
                fake.calls.append(("begin", fake.pinned))

            def end_capture(self):
                fake.calls.append(("end", fake.pinned))
                if end_error:
                    raise end_error
                return types.SimpleNamespace(launch=lambda: fake.calls.append(("launch",)))

        @contextlib.contextmanager
        def using_allocator(allocator):
            fake.calls.append(("allocator", allocator.__self__.__class__.__name__))
            yield

        def set_pinned_memory_allocator(allocator):
            fake.pinned = "refused" if isinstance(allocator, graphs._NoPinnedMemory) else allocator

        class MemoryPool:
            def malloc(self, size):
                raise AssertionError("not called by the fake step")

        self.cuda = types.SimpleNamespace(Stream=Stream, MemoryPool=MemoryPool, using_allocator=using_allocator,
                                          set_pinned_memory_allocator=set_pinned_memory_allocator)
        self.get_default_pinned_memory_pool = lambda: types.SimpleNamespace(malloc="default")


def test_a_cuda_capture_runs_the_step_on_its_own_pool_and_stream_and_restores_pinned_memory(monkeypatch):
    fake = FakeCupy()
    monkeypatch.setitem(__import__("sys").modules, "cupy", fake)
    graph = graphs._CudaGraph(lambda: fake.calls.append(("step", fake.pinned)))
    graph.launch()
    assert fake.calls == [("stream", True), ("allocator", "MemoryPool"), ("begin", "refused"), ("step", "refused"),
                          ("end", "refused"), ("launch",)]
    assert fake.pinned == "default"


def test_while_a_capture_runs_only_the_capturing_thread_is_refused_pinned_memory():
    import threading

    refuse = graphs._NoPinnedMemory(lambda size: f"{size} pinned bytes")
    with pytest.raises(graphs.CaptureError, match="host-to-device copy inside the training step"):
        refuse(64)
    elsewhere = []
    thread = threading.Thread(target=lambda: elsewhere.append(refuse(64)))
    thread.start()
    thread.join()
    assert elsewhere == ["64 pinned bytes"]


@pytest.mark.parametrize("where", ["step", "end"])
def test_a_refused_cuda_capture_is_a_capture_error_and_restores_pinned_memory(monkeypatch, where):
    fake = FakeCupy(end_error=RuntimeError("cudaErrorStreamCaptureInvalidated") if where == "end" else None)
    monkeypatch.setitem(__import__("sys").modules, "cupy", fake)

    def step():
        if where == "step":
            raise RuntimeError("cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing")

    with pytest.raises(graphs.CaptureError, match="RuntimeError: cudaErrorStreamCapture"):
        graphs._CudaGraph(step)
    assert fake.calls[-1] == ("end", "refused")  # the capture is always ended
    assert fake.pinned == "default"
