"""Padding masks: Embedding(mask_zero=True) and the layers that read its mask."""
import numpy as np
import pytest

from trainer import layers, spec
from trainer.core import Variable
from trainer.layers import ShapeError
from trainer.models import Sequential

STEPS, VOCABULARY = 7, 20


def padded_indices(seed=0):
    """Six sequences of token indices with their padding (0) after them: lengths 4, 0, 6, 7, 1, 3."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCABULARY, (6, STEPS))
    for row, length in enumerate((4, 0, 6, 7, 1, 3)):
        x[row, length:] = 0
    return x.astype(np.float32)


def lengths_of(x):
    return (x != 0).sum(axis=1)


READERS = {  # the layers between the embedding and the output, for each way of reading a mask
    "average": lambda: [layers.GlobalAveragePooling1D()],
    "maximum": lambda: [layers.GlobalMaxPooling1D()],
    "lstm": lambda: [layers.LSTM(5)],
    "gru_sequences": lambda: [layers.GRU(4, return_sequences=True), layers.GlobalAveragePooling1D()],
    "simple_rnn": lambda: [layers.SimpleRNN(3)],
    "bidirectional": lambda: [layers.Bidirectional({"type": "LSTM", "units": 3})],
    "bidirectional_sequences": lambda: [layers.Bidirectional({"type": "GRU", "units": 3, "return_sequences": True}),
                                        layers.GlobalMaxPooling1D()],
    "batch_norm": lambda: [layers.BatchNormalization(), layers.GlobalAveragePooling1D()],
    "transformer": lambda: [layers.Dense(8), layers.Dropout(0.1), layers.TransformerEncoder(12, 2),
                            layers.LayerNormalization(), layers.GlobalAveragePooling1D()],
}


def text_model(reader, steps, mask_zero=True):
    model = Sequential([layers.Embedding(VOCABULARY, 8, mask_zero=mask_zero), *READERS[reader](),
                        layers.Dense(2)], seed=1)
    return model.build((steps,))


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_sequences_padding_never_changes_what_the_model_says_of_it(reader):
    x = padded_indices()
    model = text_model(reader, STEPS)
    padded = model.predict(x)
    for row, length in enumerate(lengths_of(x)):
        if length == 0:
            continue
        alone = text_model(reader, int(length))
        alone.set_weights(model.get_weights())
        np.testing.assert_allclose(alone.predict(x[row:row + 1, :length]), padded[row:row + 1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_without_mask_zero_the_padding_is_read_as_a_token(reader):
    x = padded_indices()
    masked, unmasked = text_model(reader, STEPS), text_model(reader, STEPS, mask_zero=False)
    unmasked.set_weights(masked.get_weights())
    assert not np.allclose(masked.predict(x), unmasked.predict(x))


@pytest.mark.parametrize("reader", ["average", "maximum", "lstm", "bidirectional"])
def test_an_all_padding_sequence_reads_as_zeros(reader):
    model = Sequential([layers.Embedding(VOCABULARY, 8, mask_zero=True), *READERS[reader]()], seed=1).build((STEPS,))
    out = model.predict(np.zeros((2, STEPS), dtype=np.float32))
    assert np.array_equal(out, np.zeros_like(out))


def test_recurrent_sequences_are_zero_after_each_sequences_length():
    x = padded_indices()
    model = Sequential([layers.Embedding(VOCABULARY, 4, mask_zero=True), layers.LSTM(3, return_sequences=True)],
                       seed=0).build((STEPS,))
    out = model.predict(x)
    after = np.arange(STEPS)[None, :] >= lengths_of(x)[:, None]
    assert np.all(out[after] == 0) and np.all(np.abs(out[~after]).sum(axis=-1) > 0)


MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=bool)
GRADIENT_CASES = {
    "average": lambda: layers.GlobalAveragePooling1D(),
    "maximum": lambda: layers.GlobalMaxPooling1D(),
    "lstm": lambda: layers.LSTM(3),
    "gru_sequences": lambda: layers.GRU(3, return_sequences=True),
    "simple_rnn": lambda: layers.SimpleRNN(3),
    "bidirectional": lambda: layers.Bidirectional({"type": "LSTM", "units": 2}),
    "bidirectional_sequences": lambda: layers.Bidirectional({"type": "GRU", "units": 2, "return_sequences": True}),
    "transformer": lambda: layers.TransformerEncoder(6, 2),
}


@pytest.mark.parametrize("case", sorted(GRADIENT_CASES))
def test_each_mask_reader_backpropagates_to_its_input_and_weights(case, check_gradients):
    layer = GRADIENT_CASES[case]()
    # An all-padding sequence's attention scores are all -1e9 + s: central differences cannot see s.
    mask = MASK[:3] if case == "transformer" else MASK
    x = np.random.default_rng(3).standard_normal((len(mask), 5, 4))
    layer.build((5, 4), np.random.default_rng(0), dtype=np.float64)
    params = list(layer.params)

    def fn(v, *weights):
        for key, w in zip(params, weights):
            layer.params[key] = w
        return layer(v, mask=mask)

    check_gradients(fn, x, *[layer.params[key].data.copy() for key in params], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", ["average", "maximum", "lstm", "transformer"])
def test_the_padded_steps_get_no_gradient_from_what_the_layer_reads(case):
    layer = GRADIENT_CASES[case]()
    v = Variable(np.random.default_rng(3).standard_normal((4, 5, 4)))
    out = layer(v, mask=MASK)
    if case == "transformer":  # its padded steps' own outputs are left to the layers after it
        out = layers.GlobalAveragePooling1D()(out, mask=MASK)
    out.backward(np.ones(out.shape))
    assert np.all(v.grad[~MASK] == 0) and np.any(v.grad[MASK] != 0)


def test_a_layer_that_mixes_steps_refuses_the_mask_when_the_model_is_built():
    model = Sequential([layers.Embedding(VOCABULARY, 8, mask_zero=True), layers.Conv1D(4, 3), layers.Flatten()])
    with pytest.raises(ShapeError, match="Conv1D cannot take the padding mask .* set mask_zero to false"):
        model.build((STEPS,))
    Sequential([layers.Embedding(VOCABULARY, 8), layers.Conv1D(4, 3), layers.Flatten()]).build((STEPS,))
    # after a layer that reads it, the mask is gone
    Sequential([layers.Embedding(VOCABULARY, 8, mask_zero=True), layers.LSTM(4, return_sequences=True),
                layers.GlobalAveragePooling1D(), layers.Dense(3)]).build((STEPS,))


def test_the_spec_check_names_the_layer_that_cannot_take_the_mask():
    bad = {"input_shape": [STEPS], "layers": [
        {"type": "Embedding", "input_dim": VOCABULARY, "output_dim": 8, "mask_zero": True},
        {"type": "Flatten"}, {"type": "Dense", "units": 2}]}
    with pytest.raises(spec.SpecError) as caught:
        spec.validate(bad)
    assert any(path == "layers[1]" and "Flatten cannot take the padding mask" in message
               for path, message in caught.value.errors)


def test_a_masked_text_model_trains_and_its_cuda_graph_steps_match_eager_ones(monkeypatch):
    x = padded_indices(seed=5).repeat(8, axis=0)
    y = (x[:, 0] > VOCABULARY / 2).astype(np.int64)
    results = []
    for graphs in ("0", "emulate"):
        monkeypatch.setenv("CUPOLA_CUDA_GRAPHS", graphs)
        model = text_model("lstm", STEPS)
        model.compile(loss={"type": "sparse_categorical_crossentropy", "from_logits": True}, optimizer="adam",
                      metrics=["accuracy"])
        history = model.fit(x, y, epochs=6, batch_size=16, seed=2)
        results.append((history.history["loss"], model.get_weights()))
    (loss, weights), (loss2, weights2) = results
    assert loss[-1] < loss[0]
    assert loss == loss2 and all(np.array_equal(a, b) for a, b in zip(weights, weights2))


@pytest.mark.parametrize("reader", ["lstm", "bidirectional_sequences", "transformer", "batch_norm"])
def test_a_masked_fit_on_each_backend_gives_the_numpy_losses(xp, reader):
    # On the GPU the mask, the lengths and the gathers stay on the device, inside the CUDA graphs.
    from trainer import backend

    x = padded_indices(seed=5).repeat(8, axis=0)
    y = (x[:, 0] > VOCABULARY / 2).astype(np.int64)

    def losses():
        model = text_model(reader, STEPS)
        model.compile(loss={"type": "sparse_categorical_crossentropy", "from_logits": True}, optimizer="adam")
        history = model.fit(x, y, epochs=3, batch_size=16, seed=2)
        return history.history["loss"], backend.to_host(model.predict(x))

    found, predicted = losses()
    assert np.all(np.isfinite(found)) and found[-1] < found[0]
    backend.set_device("cpu")
    expected, expected_predicted = losses()
    np.testing.assert_allclose(found, expected, rtol=1e-4)
    np.testing.assert_allclose(predicted, expected_predicted, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_the_onnx_export_carries_the_mask_and_predicts_padded_texts_identically(reader, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from trainer.onnx_export import export_onnx, verify_onnx

    model = text_model(reader, STEPS)
    path = export_onnx(model, tmp_path / "model.onnx", (STEPS,))
    assert verify_onnx(model, path, padded_indices(), rtol=1e-4, atol=1e-5) <= 1e-4


def test_batch_normalisation_learns_the_same_statistics_whatever_the_padding():
    x = padded_indices()
    models = []
    for steps in (STEPS, STEPS + 5):  # the same texts, five more padding steps each
        model = Sequential([layers.Embedding(VOCABULARY, 8, mask_zero=True), layers.BatchNormalization(momentum=0.0),
                            layers.GlobalAveragePooling1D(), layers.Dense(2, activation="softmax")], seed=1)
        model.build((steps,))
        models.append(model)
    models[1].set_weights(models[0].get_weights())
    wide = np.concatenate([x, np.zeros((len(x), 5), dtype=x.dtype)], axis=1)
    y = np.array([0, 1, 0, 1, 1, 0])
    for model, rows in zip(models, (x, wide)):
        model.compile(optimizer={"type": "sgd", "learning_rate": 0.1}, loss="sparse_categorical_crossentropy")
        model.fit(rows, y, epochs=3, batch_size=6, verbose=0, shuffle=False)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # gradients and moving statistics alike
    np.testing.assert_allclose(models[0].predict(x), models[1].predict(wide), rtol=1e-5, atol=1e-6)
    assert not np.allclose(models[0].layers[1].state["moving_mean"], 0)  # it did learn statistics
