import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from trainer import Sequential, layers
from trainer.onnx_export import OnnxExportError, export_onnx, to_onnx_model, verify_onnx

# Tolerance: ONNX Runtime sums in a different order than the engine; float32 allows ~1e-4 relative.
RTOL, ATOL = 1e-4, 1e-5


def randomize_batch_norm(model, rng):
    """Move BatchNormalization (and the Transformer's zero biases and unit norms) off their identity
    initialisation so the export is really tested."""
    for layer in model.layers:
        if isinstance(layer, (layers.BatchNormalization, layers.TransformerEncoder)):
            for value in layer.state.values():
                value[...] = rng.uniform(0.5, 1.5, value.shape)
            for parameter in layer.params.values():
                parameter.data[...] = rng.normal(size=parameter.data.shape)


def export_and_compare(model, input_shape, x, tmp_path):
    path = export_onnx(model, tmp_path / "model.onnx", input_shape)
    return verify_onnx(model, path, x, rtol=RTOL, atol=ATOL)


CASES = {
    "dense_dropout_batchnorm_gelu": (
        lambda: [layers.Dense(16, activation="relu"), layers.Dropout(0.3), layers.BatchNormalization(),
                 layers.Dense(8, activation="gelu"), layers.Dense(3, activation="softmax")],
        (5,),
    ),
    "conv_same_strided_pools": (
        lambda: [layers.Conv2D(4, 3, activation="relu", padding="same"), layers.BatchNormalization(),
                 layers.MaxPooling2D(2), layers.Conv2D(6, (3, 2), strides=2, activation="elu"),
                 layers.AveragePooling2D(2, padding="same"), layers.Flatten(), layers.Dense(2, activation="sigmoid")],
        (11, 10, 2),
    ),
    "conv_global_pool_leaky": (
        lambda: [layers.Conv2D(4, 3), layers.Activation("leaky_relu"), layers.GlobalAveragePooling2D(),
                 layers.Dense(2)],
        (8, 8, 1),
    ),
    "augmented_conv": (  # the augmentation layers are training-only: left out of the graph
        lambda: [layers.RandomFlip("horizontal_and_vertical"), layers.RandomTranslation(0.3, 0.3),
                 layers.Conv2D(3, 3, activation="relu"), layers.Flatten(), layers.Dense(2, activation="softmax")],
        (6, 6, 1),
    ),
    "conv1d_pools_on_a_series": (
        lambda: [layers.Conv1D(6, 3, padding="same", activation="relu"), layers.MaxPooling1D(2),
                 layers.Conv1D(4, 4, strides=2, activation="elu"), layers.AveragePooling1D(3, strides=2, padding="same"),
                 layers.Flatten(), layers.Dense(2, activation="softmax")],
        (17, 3),
    ),
    "transformer_on_a_series": (
        lambda: [layers.Dense(8), layers.PositionEmbedding(sequence_length=12), layers.TransformerEncoder(16, 2),
                 layers.TransformerEncoder(6, 4, activation="gelu", normalize_first=True),
                 layers.GlobalAveragePooling1D(), layers.Dense(1)],
        (10, 3),
    ),
    "conv1d_into_lstm_and_global_pool": (
        lambda: [layers.Conv1D(5, 2, use_bias=False), layers.BatchNormalization(), layers.LSTM(4, return_sequences=True),
                 layers.GlobalAveragePooling1D(), layers.Dense(1)],
        (9, 2),
    ),
    "global_max_pools": (
        lambda: [layers.Conv1D(4, 3, activation="relu"), layers.GlobalMaxPooling1D(), layers.Dense(2)],
        (8, 2),
    ),
    "conv_global_max_pool": (
        lambda: [layers.Conv2D(4, 3, activation="tanh"), layers.GlobalMaxPooling2D(), layers.Dense(2)],
        (6, 7, 2),
    ),
    "bidirectional_lstm_into_gru": (
        lambda: [layers.Bidirectional(layers.LSTM(4, return_sequences=True)),
                 layers.Bidirectional({"type": "GRU", "units": 3}, merge_mode="ave"), layers.Dense(1)],
        (6, 3),
    ),
    "bidirectional_rnn_sequences_sum_and_mul": (
        lambda: [layers.Bidirectional({"type": "SimpleRNN", "units": 3, "return_sequences": True}, merge_mode="sum"),
                 layers.Bidirectional({"type": "SimpleRNN", "units": 2}, merge_mode="mul"), layers.Dense(2)],
        (5, 2),
    ),
    "stacked_lstm": (lambda: [layers.LSTM(7, return_sequences=True), layers.LSTM(5), layers.Dense(1)], (6, 3)),
    "gru_rnn_layer_norm": (
        lambda: [layers.GRU(7, return_sequences=True), layers.SimpleRNN(4), layers.LayerNormalization(),
                 layers.Dense(1, activation="tanh")],
        (6, 3),
    ),
    "reshape_to_image": (
        lambda: [layers.Reshape((4, 4, 1)), layers.Conv2D(2, 2), layers.Reshape((-1,)), layers.Dense(3)],
        (16,),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_it_exports_a_model_that_onnxruntime_predicts_identically(case, tmp_path):
    build, input_shape = CASES[case]
    rng = np.random.default_rng(0)
    model = Sequential(build(), seed=1).build(input_shape)
    randomize_batch_norm(model, rng)
    x = rng.normal(size=(4, *input_shape)).astype(np.float32)
    assert export_and_compare(model, input_shape, x, tmp_path) <= 1e-4


def test_it_exports_embedding_indices_into_an_lstm(tmp_path):
    model = Sequential([layers.Embedding(20, 4), layers.LSTM(3), layers.Dense(2, activation="softmax")], seed=0)
    x = np.random.default_rng(1).integers(0, 20, (6, 5)).astype(np.float32)
    model.build((5,))
    export_and_compare(model, (5,), x, tmp_path)


def test_it_exports_a_trained_keras_example_and_keeps_its_predictions(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32).reshape(-1, 1)
    model = Sequential([layers.Dense(10, activation="relu"), layers.Dense(1, activation="sigmoid")], seed=0)
    model.compile(loss="binary_crossentropy", optimizer="adam")
    model.fit(x, y, epochs=2, batch_size=10, seed=0)
    export_and_compare(model, (8,), x, tmp_path)


def test_it_exports_a_trained_cnn_on_a_batch_of_one(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.random((16, 12, 12, 1), dtype=np.float32)
    y = rng.integers(0, 3, 16)
    model = Sequential([layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
                        layers.Dense(3, activation="softmax")], seed=0)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    model.fit(x, y, epochs=1, batch_size=8, seed=0)
    export_and_compare(model, (12, 12, 1), x[:1], tmp_path)


def test_it_declares_a_dynamic_batch_axis_and_names_the_tensors():
    model = Sequential([layers.Dense(2)], seed=0)
    proto = to_onnx_model(model, (3,))
    (graph_input,) = proto.graph.input
    (graph_output,) = proto.graph.output
    assert graph_input.name == "input" and graph_output.name == "output"
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3]
    assert proto.producer_name == "cupola"


def test_it_names_an_unsupported_layer():
    class Custom(layers.Layer):
        pass

    model = Sequential([layers.Dense(2), Custom()], seed=0)
    with pytest.raises(OnnxExportError, match=r"layer 1 \(Custom\) is not supported"):
        to_onnx_model(model, (3,))


def test_it_rejects_an_input_shape_other_than_the_one_the_model_was_built_for():
    model = Sequential([layers.Dense(2)], seed=0).build((3,))
    with pytest.raises(ValueError, match="built for inputs \\(3,\\)"):
        to_onnx_model(model, (4,))
    with pytest.raises(ValueError, match="input_shape=\\(0,\\)"):
        to_onnx_model(model, (0,))

