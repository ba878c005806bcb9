"""Layers: argument checking with Keras messages, lazy building, shape arithmetic that agrees
with the real forward pass, and a numerical gradient check through every layer type."""
import numpy as np
import pytest

from trainer import backend, core, layers
from trainer.core import Variable

LAYER_CASES = {
    "dense": (lambda: layers.Dense(3, activation="relu"), (4,)),
    "dense_softmax": (lambda: layers.Dense(3, activation="softmax"), (4,)),
    "dense_gelu_sequence": (lambda: layers.Dense(2, activation="gelu"), (3, 4)),
    "dense_l1_l2": (lambda: layers.Dense(2, kernel_regularizer={"l1": 0.1, "l2": 0.2}), (3,)),
    "conv_valid": (lambda: layers.Conv2D(2, 3, activation="tanh"), (5, 5, 2)),
    "conv_same_stride2": (lambda: layers.Conv2D(2, [3, 2], strides=2, padding="same", activation="elu"), (5, 6, 2)),
    "max_pool": (lambda: layers.MaxPooling2D(2), (4, 6, 2)),
    "max_pool_same": (lambda: layers.MaxPooling2D(3, strides=2, padding="same"), (5, 5, 2)),
    "avg_pool": (lambda: layers.AveragePooling2D(2), (4, 4, 2)),
    "avg_pool_same": (lambda: layers.AveragePooling2D(3, strides=2, padding="same"), (5, 5, 2)),
    "global_avg_pool": (lambda: layers.GlobalAveragePooling2D(), (3, 3, 2)),
    "conv1d_valid": (lambda: layers.Conv1D(3, 3, activation="tanh"), (6, 2)),
    "conv1d_same_stride2": (lambda: layers.Conv1D(2, 4, strides=2, padding="same", activation="relu"), (7, 3)),
    "conv1d_l2_no_bias": (lambda: layers.Conv1D(2, 2, use_bias=False, kernel_regularizer={"l2": 0.1}), (5, 2)),
    "max_pool1d": (lambda: layers.MaxPooling1D(2), (6, 2)),
    "max_pool1d_same": (lambda: layers.MaxPooling1D(3, strides=2, padding="same"), (7, 2)),
    "avg_pool1d_same": (lambda: layers.AveragePooling1D(3, strides=2, padding="same"), (7, 2)),
    "global_avg_pool1d": (lambda: layers.GlobalAveragePooling1D(), (5, 3)),
    "global_max_pool1d": (lambda: layers.GlobalMaxPooling1D(), (5, 3)),
    "global_max_pool2d": (lambda: layers.GlobalMaxPooling2D(), (3, 4, 2)),
    "flatten": (lambda: layers.Flatten(), (2, 3, 2)),
    "reshape": (lambda: layers.Reshape([-1, 3]), (2, 3, 2)),
    "batch_norm": (lambda: layers.BatchNormalization(), (3, 4)),
    "layer_norm": (lambda: layers.LayerNormalization(), (3, 4)),
    "position_embedding": (lambda: layers.PositionEmbedding(), (4, 3)),
    "position_embedding_longer": (lambda: layers.PositionEmbedding(sequence_length=7), (4, 3)),
    "transformer_encoder": (lambda: layers.TransformerEncoder(5, 2), (4, 6)),
    "transformer_encoder_first_norm_gelu": (lambda: layers.TransformerEncoder(3, 3, activation="gelu",
                                                                             normalize_first=True), (5, 3)),
    "transformer_encoder_dropout_inactive_in_test_mode": (lambda: layers.TransformerEncoder(4, 1, dropout=0.5), (3, 2)),
    "simple_rnn": (lambda: layers.SimpleRNN(3, return_sequences=True), (4, 2)),
    "lstm": (lambda: layers.LSTM(3), (4, 2)),
    "gru": (lambda: layers.GRU(3, return_sequences=True), (4, 2)),
    "bidirectional_lstm_concat": (lambda: layers.Bidirectional(layers.LSTM(3, return_sequences=True)), (4, 2)),
    "bidirectional_gru_sum": (lambda: layers.Bidirectional({"type": "GRU", "units": 3}, merge_mode="sum"), (4, 2)),
    "bidirectional_rnn_ave": (lambda: layers.Bidirectional({"type": "SimpleRNN", "units": 2, "return_sequences": True},
                                                           merge_mode="ave"), (3, 2)),
    "bidirectional_rnn_mul": (lambda: layers.Bidirectional({"type": "SimpleRNN", "units": 2}, merge_mode="mul"), (3, 2)),
    "activation": (lambda: layers.Activation("sigmoid"), (5,)),
    "dropout_inactive_in_test_mode": (lambda: layers.Dropout(0.5), (5,)),
    "random_flip_inactive_in_test_mode": (lambda: layers.RandomFlip("horizontal_and_vertical"), (3, 4, 2)),
    "random_translation_inactive_in_test_mode": (lambda: layers.RandomTranslation(0.3, 0.3), (3, 4, 2)),
}


def build(layer, input_shape, dtype=np.float64, seed=0):
    layer.build(input_shape, np.random.default_rng(seed), dtype=dtype)
    return layer


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_it_backpropagates_through_each_layer_type(xp, case, check_gradients):
    factory, input_shape = LAYER_CASES[case]
    layer = build(factory(), input_shape)
    names = list(layer.params)
    x = backend.to_device(np.random.default_rng(1).uniform(-1, 1, (3, *input_shape)))
    originals = [layer.params[n].data for n in names]

    def call(x, *weights):
        params = {n: w for n, w in zip(names, weights)}
        saved = dict(layer.params)
        layer.params.update(params)
        try:
            y = layer(x)
            reg = layer.regularization_loss()
            return y if reg is None else y + reg
        finally:
            layer.params.update(saved)

    context = core.test_mode() if case.endswith("inactive_in_test_mode") else _null()
    with context:
        check_gradients(call, x, *originals, rtol=1e-4, atol=1e-6)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_its_shape_arithmetic_matches_the_forward_pass(case):
    factory, input_shape = LAYER_CASES[case]
    layer = factory()
    expected_shape = layer.compute_output_shape(input_shape)
    expected_params = layer.count_params(input_shape)
    y = layer(np.zeros((2, *input_shape), dtype=np.float32))
    assert y.shape == (2, *expected_shape)
    assert sum(v.size for _, v in layer.weight_items()) == expected_params
    assert y.dtype == np.float32


def test_it_builds_lazily_from_the_first_input():
    layer = layers.Dense(4)
    assert not layer.built
    layer(np.ones((2, 7), dtype=np.float32))
    assert layer.params["kernel"].shape == (7, 4)
    assert layer.params["bias"].shape == (4,)


@pytest.mark.parametrize("make,message", [
    (lambda: layers.Dense(0), "Dense: units must be a positive integer. Received: units=0"),
    (lambda: layers.Dense(True), "Dense: units must be a positive integer. Received: units=True"),
    (lambda: layers.Dense(3, activation="swishy"), "Dense: activation must be one of"),
    (lambda: layers.Conv2D(8, 0), "Conv2D: kernel_size must be a positive integer or a list of two"),
    (lambda: layers.Conv2D(8, 3, padding="full"), 'Conv2D: padding must be one of "valid", "same"'),
    (lambda: layers.Conv1D(8, [3, 3]), "Conv1D: kernel_size must be a positive integer. Received: kernel_size=[3, 3]"),
    (lambda: layers.MaxPooling1D(2, strides=0), "MaxPooling1D: strides must be a positive integer"),
    (lambda: layers.Bidirectional(layers.Dense(3)), "Bidirectional: layer must be a recurrent layer's config"),
    (lambda: layers.Bidirectional({"type": "LSTM", "units": 0}), "Bidirectional: layer.units must be a positive integer"),
    (lambda: layers.Dropout(1.0), "Dropout: rate must be a number in [0, 1). Received: rate=1.0"),
    (lambda: layers.Dense(3, kernel_regularizer={"l3": 1}), "Dense: kernel_regularizer.l3 unknown key"),
    (lambda: layers.Reshape([-1, -1]), "Reshape: target_shape must be a list of positive integers"),
    (lambda: layers.RandomFlip("diagonal"), ('RandomFlip: mode must be one of "horizontal", "vertical", '
                                             '"horizontal_and_vertical". Received: mode=\'diagonal\'')),
    (lambda: layers.RandomTranslation(1.0, 0.1), ("RandomTranslation: height_factor must be a number in [0, 1). "
                                                  "Received: height_factor=1.0")),
])
def test_it_rejects_bad_arguments_with_keras_style_messages(make, message):
    with pytest.raises(ValueError) as error:
        make()
    assert str(error.value).startswith(message)


def test_it_names_the_shape_problem_of_a_conv_on_flat_input():
    with pytest.raises(ValueError, match=r"Conv2D expects an input of rank 3"):
        layers.Conv2D(4, 3).compute_output_shape((10,))
    with pytest.raises(ValueError, match=r"kernel_size \[5, 5\] is larger than the input \(3 x 3\)"):
        layers.Conv2D(4, 5).compute_output_shape((3, 3, 1))
    with pytest.raises(ValueError, match=r"Conv1D expects an input of rank 2 \(steps, channels\)"):
        layers.Conv1D(4, 3).compute_output_shape((8, 8, 1))
    with pytest.raises(ValueError, match=r"MaxPooling1D: pool_size 4 is larger than the input \(3 steps\)"):
        layers.MaxPooling1D(4).compute_output_shape((3, 2))


def test_its_batch_norm_tracks_moving_statistics_and_uses_them_in_test_mode():
    layer = layers.BatchNormalization(momentum=0.5)
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(256, 2)).astype(np.float32)
    for _ in range(20):
        layer(x)
    np.testing.assert_allclose(layer.state["moving_mean"], x.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(layer.state["moving_variance"], x.var(axis=0), rtol=1e-4)
    with core.test_mode():
        y = layer(x).data
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-3)


def test_its_dropout_zeroes_about_rate_of_the_units_and_keeps_the_expected_sum():
    layer = layers.Dropout(0.25)
    layer.rng = backend.random_generator(0)
    y = layer(np.ones((200, 100), dtype=np.float32)).data
    assert abs((y == 0).mean() - 0.25) < 0.01
    assert abs(y.mean() - 1.0) < 0.02
    with core.test_mode():
        assert np.array_equal(layer(np.ones((2, 3), dtype=np.float32)).data, np.ones((2, 3)))


def _images(n=400, h=3, w=4):
    return np.random.default_rng(0).normal(size=(n, h, w, 1)).astype(np.float32)


@pytest.mark.parametrize("mode,flips", [("horizontal", [(False, False), (False, True)]),
                                        ("vertical", [(False, False), (True, False)]),
                                        ("horizontal_and_vertical",
                                         [(False, False), (False, True), (True, False), (True, True)])])
def test_its_random_flip_mirrors_each_image_with_probability_one_half_when_training(mode, flips):
    layer = layers.RandomFlip(mode)
    layer.rng = backend.random_generator(0)
    x = _images()
    y = layer(x).data
    seen = []
    for image, out in zip(x, y, strict=True):
        kinds = [(rows, columns) for rows, columns in flips
                 if np.array_equal(out, image[::-1 if rows else 1, ::-1 if columns else 1])]
        assert kinds, "an image came out as none of the allowed flips"
        seen.append(kinds[0])
    counts = [seen.count(kind) for kind in flips]
    assert min(counts) > 0.6 * len(x) / len(flips)  # each about equally often
    assert not np.array_equal(layer(x).data, y)  # drawn anew each call
    with core.test_mode():
        assert layer(x).data is x or np.array_equal(layer(x).data, x)


def test_its_random_translation_shifts_each_image_within_its_limits_and_fills_with_zeros():
    layer = layers.RandomTranslation(0.34, 0.25)  # at most one pixel each way on 3 x 4
    layer.rng = backend.random_generator(1)
    x = _images() + 10.0  # no zeros of its own
    y = layer(x).data
    shifts = []
    for image, out in zip(x, y, strict=True):
        padded = np.pad(image, ((1, 1), (1, 1), (0, 0)))
        found = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                 if np.array_equal(out, padded[1 - dy:4 - dy, 1 - dx:5 - dx])]
        assert found, "an image came out as no allowed shift"
        shifts.append(found[0])
    assert len(set(shifts)) == 9
    with core.test_mode():
        assert np.array_equal(layer(x).data, x)
    assert layers.RandomTranslation(0.1, 0.1)(x).data is x  # under one pixel either way: nothing to do


def test_augmentation_layers_need_images():
    with pytest.raises(ValueError, match=r"RandomFlip expects an input of rank 3"):
        layers.RandomFlip().compute_output_shape((10,))


def test_its_embedding_maps_indices_and_rejects_out_of_range_ones():
    layer = layers.Embedding(5, 3)
    y = layer(np.array([[0, 4], [1, 1]]))
    assert y.shape == (2, 2, 3)
    np.testing.assert_array_equal(y.data[1, 0], layer.params["embeddings"].data[1])
    with pytest.raises(ValueError, match=r"indices must be in \[0, 5\)"):
        layer(np.array([[5]]))


def test_its_lstm_starts_with_a_forget_bias_of_one():
    layer = layers.LSTM(2)
    layer(np.zeros((1, 3, 4), dtype=np.float32))
    np.testing.assert_array_equal(layer.params["bias"].data, [0, 0, 1, 1, 0, 0, 0, 0])


def test_it_round_trips_each_layer_config():
    for factory, _ in LAYER_CASES.values():
        layer = factory()
        config = layer.get_config()
        assert layers.from_config(config).get_config() == config


def test_it_gives_variables_gradients_through_a_layer():
    layer = layers.Dense(2)
    x = Variable(np.ones((3, 4), dtype=np.float32))
    layer(x).backward(np.ones((3, 2), dtype=np.float32))
    np.testing.assert_allclose(layer.params["bias"].grad, [3.0, 3.0])
    assert x.grad.shape == (3, 4)


def test_it_backpropagates_through_an_embedding_layer(xp, check_gradients):
    layer = build(layers.Embedding(5, 3), (4,))
    indices = backend.to_device(np.array([[0, 4, 4, 2], [1, 0, 3, 3]]))

    def call(embeddings):
        saved = layer.params["embeddings"]
        layer.params["embeddings"] = embeddings
        try:
            return layer(indices)
        finally:
            layer.params["embeddings"] = saved

    check_gradients(call, layer.params["embeddings"].data)
