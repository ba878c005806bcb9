"""Sequential: fit/evaluate/predict, callbacks, determinism, weights and exact resume from checkpoints."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import trainer
from trainer import Sequential, callbacks, layers, optimizers, schedules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def blobs(n=120, features=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centers = rng.normal(0, 3, (classes, features))
    x = (centers[y] + rng.normal(0, 1, (n, features))).astype(np.float32)
    return x, y


def classifier(seed=0, dropout=0.0, batch_norm=False):
    stack = [layers.Dense(16, activation="relu")]
    if batch_norm:
        stack.append(layers.BatchNormalization())
    if dropout:
        stack.append(layers.Dropout(dropout))
    stack.append(layers.Dense(3, activation="softmax"))
    model = Sequential(stack, seed=seed)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizers.Adam(learning_rate=0.01),
                  metrics=["accuracy"])
    return model


def test_it_reports_history_with_losses_metrics_and_learning_rate():
    x, y = blobs()
    history = classifier().fit(x, y, epochs=3, batch_size=16, validation_split=0.25, seed=0)
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                                    "epoch_time", "samples_per_second"}
    assert all(len(v) == 3 for v in history.history.values())
    assert history.history["learning_rate"] == [0.01] * 3


def test_it_predicts_probabilities_as_a_host_array_and_evaluates_a_dict():
    x, y = blobs()
    model = classifier()
    model.fit(x, y, epochs=20, batch_size=16, seed=0)
    p = model.predict(x[:7])
    assert isinstance(p, np.ndarray) and p.shape == (7, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    result = model.evaluate(x, y)
    assert set(result) == {"loss", "accuracy"} and result["accuracy"] > 0.9


def test_it_fuses_softmax_with_cross_entropy_and_sigmoid_with_binary_cross_entropy():
    model = classifier()
    assert model._fused
    binary = Sequential([layers.Dense(1, activation="sigmoid")])
    binary.compile(loss="binary_crossentropy", optimizer="adam")
    assert binary._fused
    plain = Sequential([layers.Dense(1, activation="sigmoid")])
    plain.compile(loss="mse", optimizer="adam")
    assert not plain._fused


def test_it_learns_a_binary_problem_with_binary_accuracy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    model = Sequential([layers.Dense(8, activation="tanh"), layers.Dense(1, activation="sigmoid")])
    model.compile(loss="binary_crossentropy", optimizer=optimizers.Adam(learning_rate=0.05), metrics=["accuracy"])
    model.fit(x, y, epochs=20, batch_size=20, seed=0)
    assert model.evaluate(x, y)["accuracy"] > 0.95


def test_it_regresses_with_mae_mse_and_rmse_metrics():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], dtype=np.float32) + 0.3
    model = Sequential([layers.Dense(1)])
    model.compile(loss="mse", optimizer=optimizers.SGD(learning_rate=0.1), metrics=["mae", "mse", "rmse"])
    history = model.fit(x, y, epochs=30, batch_size=10, seed=0)
    logs = model.evaluate(x, y)
    assert logs["mse"] < 1e-4
    assert np.isclose(logs["rmse"], np.sqrt(logs["mse"]), rtol=1e-5)
    assert history.history["mae"][-1] < history.history["mae"][0]


def test_it_produces_identical_weights_from_the_same_seed():
    x, y = blobs()
    runs = []
    for _ in range(2):
        model = classifier(seed=3, dropout=0.3)
        model.fit(x, y, epochs=3, batch_size=8, validation_split=0.2, seed=7)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    other = classifier(seed=3, dropout=0.3)
    other.fit(x, y, epochs=3, batch_size=8, validation_split=0.2, seed=8)
    assert any(not np.array_equal(a, b) for a, b in zip(runs[0], other.get_weights()))


def resumable_model(learning_rate=None):
    lr = learning_rate or schedules.CosineDecay(0.02, decay_steps=40, warmup_steps=5)
    model = Sequential([layers.Dense(16, activation="relu"), layers.BatchNormalization(), layers.Dropout(0.2),
                        layers.Dense(3, activation="softmax")], seed=11)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizers.Adam(learning_rate=lr, clipnorm=1.0),
                  metrics=["accuracy"])
    return model


def test_it_resumes_from_a_checkpoint_exactly_like_an_uninterrupted_run(tmp_path):
    x, y = blobs()
    fit = {"batch_size": 16, "validation_split": 0.2, "shuffle": True}
    straight = resumable_model()
    straight_history = straight.fit(x, y, epochs=6, seed=5, **fit)

    first = resumable_model()
    first.fit(x, y, epochs=3, seed=5, **fit)
    first.save_checkpoint(tmp_path / "ckpt.npz", epoch=3)

    resumed = resumable_model()
    epoch = resumed.load_checkpoint(tmp_path / "ckpt.npz")
    assert epoch == 3
    resumed_history = resumed.fit(x, y, epochs=6, initial_epoch=epoch, **fit)  # the seed comes from the checkpoint
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert resumed_history.history["loss"] == straight_history.history["loss"][3:]
    assert resumed.optimizer.iterations == straight.optimizer.iterations


def test_a_checkpoint_held_in_memory_keeps_its_epoch_while_training_goes_on(tmp_path):
    from trainer import io

    x, y = blobs()
    fit = {"batch_size": 16, "validation_split": 0.2, "shuffle": True}
    straight = resumable_model()
    straight.fit(x, y, epochs=5, seed=5, **fit)

    held = {}

    class Hold(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == 3:
                held["arrays"] = self.model.checkpoint_arrays(3, own=True)

    first = resumable_model()
    first.fit(x, y, epochs=4, seed=5, callbacks=[Hold()], **fit)  # trains one epoch past the snapshot
    io.write_checkpoint(tmp_path / "held.npz", held["arrays"])
    resumed = resumable_model()
    assert resumed.load_checkpoint(tmp_path / "held.npz") == 3
    resumed.fit(x, y, epochs=5, initial_epoch=3, **fit)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_it_resumes_from_files_written_by_model_checkpoint(tmp_path):
    x, y = blobs()
    model = resumable_model()
    saver = callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.npz"), monitor="loss")
    model.fit(x, y, epochs=2, batch_size=16, seed=1, callbacks=[saver])
    assert (tmp_path / "ckpt-01.npz").exists() and saver.last_path.endswith("ckpt-02.npz")
    restored = resumable_model()
    assert restored.load_checkpoint(saver.last_path) == 2
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_it_keeps_only_better_checkpoints_with_save_best_only(tmp_path):
    saver = callbacks.ModelCheckpoint(str(tmp_path / "best.npz"), monitor="val_loss", save_best_only=True)
    model = classifier()
    model.build((4,))
    saver.set_model(model)
    saver.on_epoch_end(0, {"val_loss": 1.0})
    first = (tmp_path / "best.npz").stat().st_mtime_ns
    saver.on_epoch_end(1, {"val_loss": 2.0})
    assert (tmp_path / "best.npz").stat().st_mtime_ns == first
    assert saver.best == 1.0


def test_it_saves_and_loads_weights_without_pickle(tmp_path):
    x, y = blobs()
    model = classifier(batch_norm=True)
    model.fit(x, y, epochs=2, batch_size=16, seed=0)
    model.save_weights(tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz", allow_pickle=False) as data:
        assert "layers.1.moving_mean" in data.files
    fresh = classifier(seed=99, batch_norm=True)
    fresh.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))
    wrong = Sequential([layers.Dense(5)], input_shape=(4,))
    with pytest.raises(ValueError, match="do not match"):
        wrong.load_weights(tmp_path / "w.npz")


def test_it_stops_between_batches_when_a_callback_sets_stop_training():
    x, y = blobs()
    seen = []

    class StopAfterThree(callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(batch)
            if batch == 2:
                self.model.stop_training = True

    history = classifier().fit(x, y, epochs=5, batch_size=10, callbacks=[StopAfterThree()], seed=0)
    assert seen == [0, 1, 2]
    assert len(history.history["loss"]) == 1


def test_it_calls_callbacks_in_keras_order_with_0_based_epochs():
    x, y = blobs(n=20)
    events = []
    cb = callbacks.LambdaCallback(
        on_train_begin=lambda logs: events.append("train_begin"),
        on_epoch_begin=lambda epoch, logs: events.append(f"epoch_begin {epoch}"),
        on_epoch_end=lambda epoch, logs: events.append(f"epoch_end {epoch}"),
        on_train_end=lambda logs: events.append("train_end"))
    classifier().fit(x, y, epochs=2, batch_size=20, callbacks=[cb], seed=0)
    assert events == ["train_begin", "epoch_begin 0", "epoch_end 0", "epoch_begin 1", "epoch_end 1", "train_end"]


def test_its_reporter_receives_timing_and_learning_rate_after_every_epoch():
    x, y = blobs()
    reports = []
    classifier().fit(x, y, epochs=2, batch_size=16, validation_data=(x[:10], y[:10]), seed=0,
                     callbacks=[callbacks.Reporter(lambda epoch, logs: reports.append((epoch, logs)))])
    assert [epoch for epoch, _ in reports] == [0, 1]
    logs = reports[-1][1]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_time", "samples_per_second"):
        assert isinstance(logs[key], float), key
    assert logs["samples_per_second"] > 0


def test_it_raises_a_training_error_when_the_loss_becomes_nan():
    x, y = blobs()
    x[5, 0] = np.nan
    with pytest.raises(trainer.TrainingError, match="loss became NaN at epoch 0"):
        classifier().fit(x, y, epochs=3, batch_size=16, callbacks=[callbacks.TerminateOnNaN()], seed=0)


def test_its_early_stopping_stops_after_patience_and_restores_the_best_weights():
    model = classifier()
    model.build((4,))
    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    stopper.set_model(model)
    stopper.on_train_begin()
    weights_at = {}
    for epoch, val_loss in enumerate([1.0, 0.5, 0.7, 0.6]):
        for w in model.trainable_weights:
            w.data[...] = epoch
        weights_at[epoch] = model.get_weights()
        stopper.on_epoch_end(epoch, {"val_loss": val_loss})
        if model.stop_training:
            break
    assert model.stop_training and stopper.stopped_epoch == 3 and stopper.best_epoch == 1
    stopper.on_train_end()
    for a, b in zip(model.get_weights(), weights_at[1]):
        np.testing.assert_array_equal(a, b)


def test_its_early_stopping_ends_a_real_fit_early():
    x, y = blobs()
    model = classifier()
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizers.SGD(learning_rate=1e-9))
    history = model.fit(x, y, epochs=50, batch_size=32, validation_split=0.2, seed=0,
                        callbacks=[callbacks.EarlyStopping(patience=2, min_delta=1e-3)])
    assert len(history.history["loss"]) == 3


def test_it_adds_kernel_regularization_to_the_loss():
    x, y = blobs(n=32)
    plain = Sequential([layers.Dense(3, activation="softmax")], seed=0)
    regular = Sequential([layers.Dense(3, activation="softmax", kernel_regularizer={"l2": 1.0})], seed=0)
    for model in (plain, regular):
        model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizers.SGD(learning_rate=0.0 + 1e-12))
    a = plain.evaluate(x, y)["loss"]
    b = regular.evaluate(x, y)["loss"]
    kernel = regular.layers[0].params["kernel"].data
    assert np.isclose(b - a, float((kernel.astype(np.float64) ** 2).sum()), rtol=1e-4)


def test_it_trains_a_small_cnn_and_an_lstm():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(32, 8, 8, 1)).astype(np.float32)
    labels = (images[:, :4].mean(axis=(1, 2, 3)) > images[:, 4:].mean(axis=(1, 2, 3))).astype(np.int64)
    cnn = Sequential([layers.Conv2D(4, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
                      layers.Conv2D(4, 3, activation="relu"), layers.GlobalAveragePooling2D(),
                      layers.Dense(2, activation="softmax")], seed=0)
    cnn.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = cnn.fit(images, labels, epochs=5, batch_size=8, seed=0)
    assert history.history["loss"][-1] < history.history["loss"][0]

    series = rng.normal(size=(64, 6, 2)).astype(np.float32)
    target = series[:, :, 0].sum(axis=1, keepdims=True)
    rnn = Sequential([layers.LSTM(8), layers.Dense(1)], seed=0)
    rnn.compile(loss="mse", optimizer=optimizers.Adam(learning_rate=0.02))
    history = rnn.fit(series, target, epochs=15, batch_size=16, seed=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


@pytest.mark.parametrize("pool,function", [
    (layers.MaxPooling2D(2), "Conv2DMaxPool"), (layers.MaxPooling2D(2, padding="same"), "MaxPool2D"),
    (layers.MaxPooling2D(3), "MaxPool2D"), (layers.AveragePooling2D(2), "AvgPool2D"),
])
def test_it_runs_a_convolution_and_the_max_pool_after_it_as_one_function(pool, function):
    x = np.random.default_rng(0).normal(size=(3, 9, 9, 2))
    model = Sequential([layers.Conv2D(4, 3, activation="relu"), pool, layers.Flatten(), layers.Dense(2)],
                       seed=0, dtype="float64")
    model.build(x.shape[1:])
    out = model(x)
    h = x  # the same layers called one by one never fuse
    for layer in model.layers:
        h = layer(h)
    np.testing.assert_allclose(out.data, h.data, rtol=1e-12)
    flatten = out.creator.inputs[0].creator  # Dense <- Flatten <- the pooling step
    assert type(flatten.inputs[0].creator).__name__ == function


def test_it_summarizes_layers_shapes_and_parameter_counts():
    model = classifier()
    model.build((4,))
    printed = []
    text = model.summary(print_fn=printed.append)
    assert printed == [text]
    assert "(None, 16)" in text and "Total params: 131" in text


def test_it_explains_label_mistakes():
    x, y = blobs()
    model = Sequential([layers.Dense(3, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    with pytest.raises(ValueError, match="Use sparse_categorical_crossentropy for integer labels"):
        model.fit(x, y, epochs=1)
    sparse = classifier()
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        sparse.fit(x, y + 1, epochs=1)


def test_it_accepts_optimizers_by_name_dict_or_instance():
    for optimizer in ("adam", {"type": "sgd", "learning_rate": 0.1, "momentum": 0.9}, optimizers.RMSprop()):
        model = Sequential([layers.Dense(1)])
        model.compile(loss="mse", optimizer=optimizer)
        model.fit(np.ones((4, 2), np.float32), np.ones(4, np.float32), epochs=1, verbose=0)
    assert model.optimizer.type == "rmsprop"


def test_it_round_trips_through_its_spec():
    model = Sequential([layers.Conv2D(4, 3, padding="same", activation="relu"), layers.Flatten(),
                        layers.Dense(2, activation="softmax")], input_shape=(5, 5, 1))
    model.compile(loss="sparse_categorical_crossentropy",
                  optimizer=optimizers.Adam(learning_rate=schedules.ExponentialDecay(0.01, 100, 0.9)),
                  metrics=["accuracy"])
    spec = model.to_spec()
    clone = Sequential.from_spec(spec)
    assert clone.to_spec() == spec
    assert clone.count_params() == model.count_params()


def test_it_reports_host_metrics_such_as_f1_when_trainer_metrics_is_present():
    pytest.importorskip("trainer.metrics")
    x, y = blobs()
    model = Sequential([layers.Dense(3, activation="softmax")], seed=0)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizers.Adam(0.05), metrics=["accuracy", "f1"])
    history = model.fit(x, y, epochs=5, batch_size=16, validation_split=0.2, seed=0)
    assert 0.0 <= history.history["val_f1"][-1] <= 1.0
    assert 0.0 <= model.evaluate(x, y)["f1"] <= 1.0


def test_it_trains_in_float64_when_asked_and_prints_progress_when_verbose(capsys):
    x, y = blobs(n=20)
    model = Sequential([layers.Dense(3, activation="softmax")], dtype="float64")
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=10, verbose=1, seed=0)
    assert model.get_weights()[0].dtype == np.float64
    assert model.predict(x).dtype == np.float64
    assert "Epoch 2/2 - loss:" in capsys.readouterr().out


def test_a_worker_can_train_from_a_spec_and_resume_after_dying(tmp_path):
    x, y = blobs()
    model_spec = {"layers": [{"type": "Dense", "units": 8, "activation": "relu"}, {"type": "Dropout", "rate": 0.2},
                             {"type": "Dense", "units": 3, "activation": "softmax"}],
                  "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam"},
                  "fit": {"epochs": 4, "batch_size": 16, "validation_split": 0.2, "seed": 3}}
    straight, _ = trainer.fit(model_spec, x, y)

    class Die(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("worker killed")

    ckpt = str(tmp_path / "run.npz")
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(model_spec, x, y, checkpoint_path=ckpt, callbacks=[Die()])
    resumed, history = trainer.fit(model_spec, x, y, checkpoint_path=ckpt, resume=True)
    assert len(history.history["loss"]) == 3  # epoch 1 died before its checkpoint was written
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_it_tags_every_step_of_a_sequence_with_sparse_labels():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 6, size=(64, 5))
    tags = (tokens >= 3).astype(np.int64)  # the tag of each token follows from the token
    model = Sequential([layers.Embedding(6, 8), layers.GRU(8, return_sequences=True),
                        layers.Dense(2, activation="softmax")], seed=0)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizers.Adam(0.05), metrics=["accuracy"])
    model.fit(tokens, tags, epochs=15, batch_size=16, seed=0)
    assert model.predict(tokens[:2]).shape == (2, 5, 2)
    assert model.evaluate(tokens, tags)["accuracy"] > 0.95


def test_it_resumes_early_stopping_where_it_left_off(tmp_path):
    x, y = blobs()
    x = x + np.random.default_rng(5).normal(0, 4, x.shape).astype(np.float32)  # noisy: validation stalls early

    def run(epochs, initial_epoch=0, checkpoint=None, resume_from=None):
        model = resumable_model()
        if resume_from is not None:
            initial_epoch = model.load_checkpoint(resume_from)
        stopper = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
        extra = [callbacks.ModelCheckpoint(checkpoint, monitor="loss")] if checkpoint else []
        history = model.fit(x, y, epochs=epochs, batch_size=16, validation_split=0.3, seed=2,
                            initial_epoch=initial_epoch, callbacks=[stopper, *extra])
        return model, stopper, history

    straight, stopper, _ = run(40)
    assert stopper.stopped_epoch is not None and stopper.stopped_epoch < 39
    cut = stopper.best_epoch + 1  # interrupted after the best epoch, before the stop
    run(cut, checkpoint=str(tmp_path / "ckpt.npz"))
    resumed, resumed_stopper, _ = run(40, resume_from=str(tmp_path / "ckpt.npz"))
    assert resumed_stopper.stopped_epoch == stopper.stopped_epoch
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_its_plateau_callback_follows_keras_rules_for_patience_cooldown_and_min_lr():
    model = classifier()
    model.build((4,))
    plateau = callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=2, min_lr=0.003)
    plateau.set_model(model)
    plateau.on_train_begin()
    rates = []
    # Epoch 0 improves; 1-2 are flat: cut. 3 is cooling down, 4-5 count: cut to min_lr. 6 cools down,
    # 7-8 count, but the rate is at min_lr already: no cut.
    for epoch, val_loss in enumerate([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]):
        plateau.on_epoch_end(epoch, {"val_loss": val_loss})
        rates.append(model.optimizer.current_learning_rate())
    assert [epoch for epoch, _ in plateau.reductions] == [2, 5]
    assert rates == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.005, 0.003, 0.003, 0.003, 0.003])
    plateau.on_epoch_end(9, {"loss": 0.1})  # the monitored value missing: nothing counts
    assert plateau.wait == 2


def test_its_plateau_callback_lowers_a_real_fits_rate_and_resumes_where_it_left_off(tmp_path):
    x, y = blobs()
    x = x + np.random.default_rng(5).normal(0, 4, x.shape).astype(np.float32)  # noisy: validation stalls early

    def run(epochs, checkpoint=None, resume_from=None):
        model = resumable_model(learning_rate=0.02)  # constant: the cuts alone change it
        initial_epoch = model.load_checkpoint(resume_from) if resume_from else 0
        plateau = callbacks.ReduceLROnPlateau(factor=0.5, patience=1)
        extra = [callbacks.ModelCheckpoint(checkpoint, monitor="loss")] if checkpoint else []
        history = model.fit(x, y, epochs=epochs, batch_size=16, validation_split=0.3, seed=2,
                            initial_epoch=initial_epoch, callbacks=[plateau, *extra])
        return model, plateau, history

    straight, plateau, history = run(12)
    assert len(plateau.reductions) >= 2
    first_cut = plateau.reductions[0][0]
    rates = history.history["learning_rate"]
    assert rates[first_cut + 1] == pytest.approx(rates[first_cut] / 2)
    run(first_cut + 2, checkpoint=str(tmp_path / "ckpt.npz"))  # interrupted after the first cut
    resumed, _, resumed_history = run(12, resume_from=str(tmp_path / "ckpt.npz"))
    assert resumed_history.history["learning_rate"] == pytest.approx(rates[first_cut + 2:])
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def _rare_positives(n=1000, rate=0.08, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(np.int64)
    return (rng.normal(size=(n, 4)) + y[:, None] * 0.9).astype(np.float32), y


@pytest.mark.parametrize("loss,units,activation,labels", [
    ("sparse_categorical_crossentropy", 2, "softmax", lambda y: y),
    ("categorical_crossentropy", 2, "softmax", lambda y: np.eye(2, dtype=np.float32)[y]),
    ("binary_crossentropy", 1, "sigmoid", lambda y: y.astype(np.float32)),
])
def test_balanced_class_weights_find_the_rare_class_that_an_unweighted_fit_misses(loss, units, activation, labels):
    x, y = _rare_positives()

    def recall(class_weight):
        model = Sequential([layers.Dense(8, activation="relu"), layers.Dense(units, activation=activation)], seed=0)
        model.compile(loss=loss, optimizer=optimizers.Adam(learning_rate=0.01))
        model.fit(x, labels(y), epochs=20, batch_size=32, seed=0, class_weight=class_weight)
        p = model.predict(x)
        predicted = (p[:, 0] > 0.5) if units == 1 else p.argmax(axis=1) == 1
        return float(predicted[y == 1].mean()), model.class_weights

    plain, none = recall(None)
    balanced, weights = recall("balanced")
    counts = np.bincount(y)
    assert none is None and weights == pytest.approx(len(y) / (2 * counts))  # scikit-learn's "balanced"
    assert plain < 0.5 and balanced > 0.8


def test_class_weights_given_by_list_or_dict_and_rejected_with_reasons():
    x, y = blobs()
    model = classifier()
    model.fit(x, y, epochs=1, class_weight={2: 3.0})
    assert model.class_weights == [1.0, 1.0, 3.0]  # Keras: a class not named weighs one
    model.fit(x, y, epochs=1, class_weight=[0.5, 1.0, 2.0])
    assert model.class_weights == [0.5, 1.0, 2.0]
    for bad, message in [([1.0, 2.0], "needs 3 weights"), ({3: 1.0}, "classes are 0 to 2"),
                         ([1.0, -1.0, 1.0], "finite non-negative"), ("even", "must be \"balanced\"")]:
        with pytest.raises(ValueError, match=message):
            model.fit(x, y, epochs=1, class_weight=bad)
    regression = Sequential([layers.Dense(1)], seed=0)
    regression.compile(loss="mse", optimizer="adam")
    with pytest.raises(ValueError, match="class_weight needs a classification loss"):
        regression.fit(x, y.astype(np.float32), epochs=1, class_weight="balanced")


def test_a_bidirectional_model_round_trips_through_its_spec_weights_and_checkpoints(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6, 2)).astype(np.float32), rng.normal(size=(40, 1)).astype(np.float32)

    def build():
        model = Sequential([layers.Bidirectional(layers.LSTM(4, return_sequences=True)),
                            layers.Bidirectional({"type": "GRU", "units": 3}, merge_mode="ave"), layers.Dense(1)], seed=3)
        return model.compile(loss="mse", optimizer="adam")

    model = build()
    model.fit(x, y, epochs=2, batch_size=8, seed=1)
    assert [name for name, _ in model.layers[0].weight_items()] == [
        "forward_kernel", "forward_recurrent_kernel", "forward_bias",
        "backward_kernel", "backward_recurrent_kernel", "backward_bias"]
    model.save_weights(tmp_path / "w.npz")
    model.save_checkpoint(tmp_path / "c.npz", epoch=2)
    again = Sequential.from_spec(model.to_spec())
    again.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    straight = build()
    straight.fit(x, y, epochs=4, batch_size=8, seed=1)
    resumed = build()
    resumed.fit(x, y, epochs=4, batch_size=8, seed=1, initial_epoch=resumed.load_checkpoint(tmp_path / "c.npz"))
    for a, b in zip(straight.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_its_weight_snapshots_are_copies_that_training_does_not_change():
    x, y = blobs()
    model = classifier()
    model.fit(x, y, epochs=1, batch_size=16, seed=0)
    snapshot = model.get_weights()
    frozen = [w.copy() for w in snapshot]
    model.fit(x, y, epochs=1, batch_size=16, seed=1)
    for kept, original, live in zip(snapshot, frozen, model.get_weights()):
        np.testing.assert_array_equal(kept, original)
        assert not np.array_equal(kept, live)


def test_it_thresholds_binary_accuracy_at_zero_for_a_from_logits_loss():
    x = np.array([[-2.0], [-0.2], [0.3], [3.0]], dtype=np.float32)
    y = np.array([0.0, 0.0, 1.0, 1.0], dtype=np.float32)
    model = Sequential([layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")])
    model.compile(loss={"type": "binary_crossentropy", "from_logits": True}, optimizer="sgd", metrics=["accuracy"])
    assert model.evaluate(x, y)["accuracy"] == 1.0


# ----------------------------------------------------------------------------- data larger than memory

def image_blobs(n=96, seed=0):
    """Small 6x6 grey images as whole numbers 0..255 (exact in uint8, float32 and float64)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = np.clip(y[:, None, None, None] * 60 + rng.integers(0, 120, (n, 6, 6, 1)), 0, 255)
    return x.astype(np.uint8), y


def small_cnn():
    model = Sequential([layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
                        layers.Dropout(0.2), layers.Dense(3, activation="softmax")], seed=3)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizers.Adam(learning_rate=0.01),
                  metrics=["accuracy"])
    return model


@pytest.mark.parametrize("stored", ["uint8", "float64", "float32 over the resident limit"])
def test_it_trains_on_a_memory_mapped_set_exactly_as_on_the_same_values_in_memory(xp, tmp_path, monkeypatch, stored):
    x, y = image_blobs()
    reference = small_cnn()
    history = reference.fit(x.astype(np.float32), y, epochs=3, batch_size=16, validation_split=0.25, seed=5)

    dtype = stored.split()[0]
    mapped = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=dtype, shape=x.shape)
    mapped[:] = x
    mapped.flush()
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    if dtype == "float32":
        monkeypatch.setenv("CUPOLA_RESIDENT_BYTES", "0")  # same dtype, but too big: streamed batches
    model = small_cnn()
    streamed = model.fit(mapped, y, epochs=3, batch_size=16, validation_split=0.25, seed=5)

    assert streamed.history["loss"] == history.history["loss"]
    assert streamed.history["val_loss"] == history.history["val_loss"]
    for a, b in zip(model.get_weights(), reference.get_weights()):
        assert np.array_equal(a, b)
    assert model.evaluate(mapped, y) == reference.evaluate(x.astype(np.float32), y)
    assert np.array_equal(model.predict(mapped, batch_size=10), reference.predict(x.astype(np.float32), batch_size=10))


MEMORY_PROBE = r"""
import json, sys
import numpy as np
from trainer import Sequential, layers

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

x = np.load(sys.argv[1], mmap_mode="r")
if sys.argv[3] == "ImageRows":  # float32 rows [0, 1] read from the uint8 map (an image run's training set)
    from trainer.data import ImageRows
    x = ImageRows(x)
y = np.load(sys.argv[2])
model = Sequential([layers.Flatten(), layers.Dense(8, activation="relu"), layers.Dense(10)], seed=0)
model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
model.fit(x[:512], y[:512], epochs=1, batch_size=128, seed=0)  # imports, weights, allocator warmed up
before = status("VmHWM")
model.fit(x, y, epochs=2, batch_size=128, validation_split=0.2, seed=0)
model.evaluate(x, y)
model.predict(x)
print(json.dumps({"growth": status("VmHWM") - before}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc for the peak RSS")
@pytest.mark.parametrize("given", ["uint8 map", "ImageRows"])
def test_its_peak_memory_grows_with_the_batch_not_with_a_memory_mapped_set(tmp_path, given):
    rows = 40_000  # 31 MB of uint8 on disk, 125 MB once cast to float32
    rng = np.random.default_rng(0)
    x = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=(rows, 28, 28, 1))
    x[:] = rng.integers(0, 256, x.shape, dtype=np.uint8)
    x.flush()
    np.save(tmp_path / "y.npy", rng.integers(0, 10, rows))
    file_bytes, cast_bytes = x.nbytes, x.nbytes * 4
    del x
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    env.pop("CUPOLA_RESIDENT_BYTES", None)
    if given == "ImageRows":  # float32 already, the model's dtype: kept on the "device" where it fits, so say it doesn't
        env["CUPOLA_RESIDENT_BYTES"] = str(16 << 20)
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), given],
                          capture_output=True, text=True, env=env, timeout=300, check=True)
    growth = json.loads(done.stdout.strip().splitlines()[-1])["growth"]
    # The pages of the map read so far count in the RSS too (clean, the kernel drops them under
    # pressure); beyond them only a few batches. Casting the set whole would add 125 MB.
    assert growth < file_bytes + 16 * 2**20, growth
    assert growth < cast_bytes / 3, growth


def test_it_cuts_at_its_last_hidden_layer_and_gives_its_output_from_the_same_pass():
    model = Sequential([layers.Conv2D(filters=4, kernel_size=3, activation="relu"), layers.MaxPooling2D(pool_size=2),
                        layers.Flatten(), layers.Dense(units=16, activation="relu"), layers.Dropout(rate=0.5),
                        layers.Dense(units=3, activation="softmax")], input_shape=(8, 8, 1), seed=0)
    x = np.random.default_rng(0).random((10, 8, 8, 1)).astype("float32")
    # The Dense(16) before the last Dense (through the Dropout between, the identity when predicting).
    assert model.feature_layer() == 3
    assert model.feature_layer(max_size=36) == 3 and model.feature_layer(max_size=15) is None
    outputs, features = model.predict_features(x, 3, batch_size=4)
    np.testing.assert_array_equal(outputs, model.predict(x))
    by_hand = Sequential(model.layers[:4])
    by_hand.built, by_hand.input_shape = True, (8, 8, 1)
    np.testing.assert_allclose(features, by_hand.predict(x), rtol=1e-6, atol=1e-7)
    # Cut between a convolution and its max-pool (otherwise run as one function): the convolution's own output.
    outputs, features = model.predict_features(x, 0, batch_size=3)
    np.testing.assert_array_equal(outputs, model.predict(x))
    assert features.shape == (10, 6 * 6 * 4) and features.min() >= 0  # after its ReLU, flattened per sample
    assert model.predict_features(x[:0], 2)[1].shape == (0, 36)
    with pytest.raises(ValueError, match="layer must be 0..5"):
        model.predict_features(x, 6)
    # No hidden layer (a logistic regression): nothing to cut at.
    assert Sequential([layers.Dense(units=2, activation="softmax")], input_shape=(3,)).feature_layer() is None
    assert Sequential([layers.Dropout(rate=0.2), layers.Dense(units=2)], input_shape=(3,)).feature_layer() is None
