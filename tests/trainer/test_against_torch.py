"""Forward values and gradients equal PyTorch's (float64) for layers and losses.

PyTorch is a test-only reference; the whole module is skipped where it is not installed.
"""
import numpy as np
import pytest

from trainer import core, layers, losses
from trainer import functions as F
from trainer.core import Variable

torch = pytest.importorskip("torch")
tnf = torch.nn.functional

RTOL, ATOL = 1e-7, 1e-9


def rand(*shape, seed=0, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def t(array):
    return torch.tensor(np.ascontiguousarray(array), dtype=torch.float64, requires_grad=True)


def close(ours, theirs, rtol=RTOL, atol=ATOL):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


def run_layer(layer, x, upstream_seed=9):
    """Our output and gradients (input, then each weight) for a fixed upstream gradient."""
    layer.build(x.shape[1:], np.random.default_rng(0), dtype=np.float64)
    xv = Variable(x)
    y = layer(xv)
    g = rand(*y.shape, seed=upstream_seed)
    y.backward(g)
    return y.data, g, xv.grad, {k: p.grad for k, p in layer.params.items()}


def torch_backward(y, g):
    y.backward(torch.tensor(g))


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu", "elu", "softmax"])
def test_dense_matches_torch(activation):
    x = rand(5, 4)
    layer = layers.Dense(3, activation=activation)
    y, g, gx, grads = run_layer(layer, x)
    tx, tw, tb = t(x), t(layer.params["kernel"].data), t(layer.params["bias"].data)
    z = tx @ tw + tb
    ty = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": tnf.gelu, "elu": tnf.elu,
          "softmax": lambda v: torch.softmax(v, -1)}[activation](z)
    torch_backward(ty, g)
    close(y, ty, atol=1e-7)  # GELU's erf is a 1e-7 approximation
    close(gx, tx.grad, atol=1e-7)
    close(grads["kernel"], tw.grad, atol=1e-7)
    close(grads["bias"], tb.grad, atol=1e-7)


def tf_same_pad(size, kernel, stride):
    return F.same_padding(size, kernel, stride)


@pytest.mark.parametrize("padding,strides", [("valid", 1), ("same", 1), ("same", 2), ("valid", 2)])
def test_conv2d_matches_torch(padding, strides):
    x = rand(2, 7, 6, 3)
    layer = layers.Conv2D(4, 3, strides=strides, padding=padding, activation="relu")
    y, g, gx, grads = run_layer(layer, x)
    tx, tw, tb = t(x), t(layer.params["kernel"].data), t(layer.params["bias"].data)
    xn = tx.permute(0, 3, 1, 2)
    if padding == "same":
        (top, bottom), (left, right) = tf_same_pad(7, 3, strides), tf_same_pad(6, 3, strides)
        xn = tnf.pad(xn, (left, right, top, bottom))
    ty = torch.relu(tnf.conv2d(xn, tw.permute(3, 2, 0, 1), tb, stride=strides)).permute(0, 2, 3, 1)
    torch_backward(ty, g)
    close(y, ty)
    close(gx, tx.grad)
    close(grads["kernel"], tw.grad)
    close(grads["bias"], tb.grad)


@pytest.mark.parametrize("padding,strides,kernel", [("valid", 1, 3), ("same", 1, 4), ("same", 2, 3), ("valid", 3, 2)])
def test_conv1d_matches_torch(padding, strides, kernel):
    x = rand(2, 11, 3)
    layer = layers.Conv1D(4, kernel, strides=strides, padding=padding, activation="tanh")
    y, g, gx, grads = run_layer(layer, x)
    tx, tw, tb = t(x), t(layer.params["kernel"].data), t(layer.params["bias"].data)
    xn = tx.permute(0, 2, 1)  # (N, steps, C) -> (N, C, steps)
    if padding == "same":
        xn = tnf.pad(xn, tf_same_pad(11, kernel, strides))
    ty = torch.tanh(tnf.conv1d(xn, tw.permute(2, 1, 0), tb, stride=strides)).permute(0, 2, 1)
    torch_backward(ty, g)
    close(y, ty)
    close(gx, tx.grad)
    close(grads["kernel"], tw.grad)
    close(grads["bias"], tb.grad)


@pytest.mark.parametrize("pool,strides", [(2, None), (3, 1), (3, 2)])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling1d_matches_torch(kind, pool, strides):
    x = rand(2, 9, 3)
    layer = (layers.MaxPooling1D if kind == "max" else layers.AveragePooling1D)(pool, strides=strides)
    y, g, gx, _ = run_layer(layer, x)
    tx = t(x)
    fn = tnf.max_pool1d if kind == "max" else tnf.avg_pool1d
    ty = fn(tx.permute(0, 2, 1), pool, strides or pool).permute(0, 2, 1)
    torch_backward(ty, g)
    close(y, ty)
    close(gx, tx.grad)


@pytest.mark.parametrize("shape", [(7, 3), (4, 5, 3)])
def test_global_max_pooling_matches_torch_and_sends_a_tie_to_the_first_maximum(shape):
    x = rand(2, *shape)
    x[0, ..., 0] = 0.5  # channel 0 of sample 0 is flat: every cell a maximum
    layer = layers.GlobalMaxPooling1D() if len(shape) == 2 else layers.GlobalMaxPooling2D()
    y, g, gx, _ = run_layer(layer, x)
    tx = t(x)
    channels_first = tx.permute(0, 2, 1) if len(shape) == 2 else tx.permute(0, 3, 1, 2)
    pool = tnf.adaptive_max_pool1d if len(shape) == 2 else tnf.adaptive_max_pool2d
    ty = pool(channels_first, 1).flatten(1)
    torch_backward(ty, g)
    close(y, ty)
    close(gx, tx.grad)
    assert np.count_nonzero(gx[0, ..., 0]) == 1 and gx[0].reshape(-1, shape[-1])[0, 0] == g[0, 0]


def test_global_average_pooling1d_matches_torch():
    x = rand(2, 6, 3)
    y, g, gx, _ = run_layer(layers.GlobalAveragePooling1D(), x)
    tx = t(x)
    ty = tx.mean(dim=1)
    torch_backward(ty, g)
    close(y, ty)
    close(gx, tx.grad)


@pytest.mark.parametrize("pool,strides", [(2, None), (3, 1), (3, 2)])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_matches_torch(kind, pool, strides):
    x = rand(2, 7, 8, 3)
    layer = (layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D)(pool, strides=strides)
    y, g, gx, _ = run_layer(layer, x)
    tx = t(x)
    fn = tnf.max_pool2d if kind == "max" else tnf.avg_pool2d
    ty = fn(tx.permute(0, 3, 1, 2), pool, strides or pool).permute(0, 2, 3, 1)
    torch_backward(ty, g)
    close(y, ty)
    close(gx, tx.grad)


@pytest.mark.parametrize("size,channels", [((8, 8), 1), ((9, 7), 5)])
def test_conv2d_relu_max_pool_fused_matches_torch(size, channels):
    # Sequential runs Conv2D(relu) + MaxPooling2D(2) as one fused function (F.Conv2DMaxPool).
    x = rand(2, *size, channels)
    x[:, :3] = 0.0  # a flat region: tied positive maxima after the ReLU
    conv = layers.Conv2D(4, 3, activation="relu")
    conv.build(x.shape[1:], np.random.default_rng(0), dtype=np.float64)
    conv.params["bias"].data[:] = 0.25
    xv = Variable(x)
    assert conv.pools_into(layers.MaxPooling2D(2))
    y = conv.call_pooled(xv)
    g = rand(*y.shape, seed=9)
    y.backward(g)
    tx, tw, tb = t(x), t(conv.params["kernel"].data), t(conv.params["bias"].data)
    z = torch.relu(tnf.conv2d(tx.permute(0, 3, 1, 2), tw.permute(3, 2, 0, 1), tb))
    ty = tnf.max_pool2d(z, 2).permute(0, 2, 3, 1)
    torch_backward(ty, g)
    close(y.data, ty)
    close(xv.grad, tx.grad)
    close(conv.params["kernel"].grad, tw.grad)
    close(conv.params["bias"].grad, tb.grad)


def test_global_average_pooling_matches_torch():
    x = rand(2, 4, 5, 3)
    y, g, gx, _ = run_layer(layers.GlobalAveragePooling2D(), x)
    tx = t(x)
    ty = tx.mean(dim=(1, 2))
    torch_backward(ty, g)
    close(y, ty)
    close(gx, tx.grad)


@pytest.mark.parametrize("shape", [(8, 3), (2, 3, 4, 3)])
def test_batch_norm_matches_torch_in_training_and_inference(shape):
    x = rand(*shape, low=-2, high=5)
    layer = layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    y, g, gx, grads = run_layer(layer, x)
    tx, tg, tb = t(x), t(np.ones(3)), t(np.zeros(3))
    channels_first = tx.reshape(-1, 3)
    ty = tnf.batch_norm(channels_first, None, None, tg, tb, training=True, eps=1e-3).reshape(shape)
    torch_backward(ty, g)
    close(y, ty)
    close(gx, tx.grad)
    close(grads["gamma"], tg.grad)
    close(grads["beta"], tb.grad)
    # Keras updates the moving variance with the biased batch variance.
    flat = x.reshape(-1, 3)
    close(layer.state["moving_mean"], 0.1 * flat.mean(axis=0))
    close(layer.state["moving_variance"], 0.9 + 0.1 * flat.var(axis=0))
    with core.test_mode():
        xv = Variable(x)
        y = layer(xv)
        y.backward(g)
    tx = t(x)
    mean, var = layer.state["moving_mean"], layer.state["moving_variance"]
    ty = tnf.batch_norm(tx.reshape(-1, 3), torch.tensor(mean), torch.tensor(var), training=False,
                        eps=1e-3).reshape(shape)
    torch_backward(ty, g)
    close(y.data, ty)
    close(xv.grad, tx.grad)


def test_layer_norm_matches_torch():
    x = rand(2, 3, 5)
    layer = layers.LayerNormalization()
    y, g, gx, grads = run_layer(layer, x)
    tx, tg, tb = t(x), t(np.ones(5)), t(np.zeros(5))
    ty = tnf.layer_norm(tx, (5,), tg, tb, eps=1e-3)
    torch_backward(ty, g)
    close(y, ty)
    close(gx, tx.grad)
    close(grads["gamma"], tg.grad)
    close(grads["beta"], tb.grad)


def _torch_rnn(module, layer, cell, suffix=""):
    w, u, b = (layer.params[k].data for k in ("kernel", "recurrent_kernel", "bias"))
    h = layer.units
    if cell == "gru":
        # Keras gate order (z, r, h) -> PyTorch (r, z, n).
        order = np.r_[h:2 * h, 0:h, 2 * h:3 * h]
        w, u, b_in, b_rec = w[:, order], u[:, order], b[0][order], b[1][order]
    else:
        b_in, b_rec = b, np.zeros_like(b)
    params = [t(w.T), t(u.T), t(b_in), t(b_rec)]
    targets = [getattr(module, f"{name}_l0{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    with torch.no_grad():
        for target, value in zip(targets, params):
            target.copy_(value)
    return targets, order if cell == "gru" else None


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_recurrent_layers_match_torch(cell, return_sequences):
    x = rand(3, 5, 4)
    cls = {"simple_rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}[cell]
    layer = cls(6, return_sequences=return_sequences)
    y, g, gx, grads = run_layer(layer, x)
    module_cls = {"simple_rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    module = module_cls(4, 6, batch_first=True).double()
    (w_ih, w_hh, b_ih, b_hh), order = _torch_rnn(module, layer, cell)
    tx = t(x)
    seq = module(tx)[0]
    ty = seq if return_sequences else seq[:, -1]
    torch_backward(ty, g)
    close(y, ty)
    close(gx, tx.grad)
    if cell == "gru":
        inverse = np.argsort(order)
        close(grads["kernel"], w_ih.grad.numpy().T[:, inverse])
        close(grads["recurrent_kernel"], w_hh.grad.numpy().T[:, inverse])
        close(grads["bias"], np.stack([b_ih.grad.numpy()[inverse], b_hh.grad.numpy()[inverse]]))
    else:
        close(grads["kernel"], w_ih.grad.numpy().T)
        close(grads["recurrent_kernel"], w_hh.grad.numpy().T)
        close(grads["bias"], b_ih.grad)


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bidirectional_recurrent_layers_match_torch(cell, return_sequences):
    x = rand(3, 5, 4)
    layer = layers.Bidirectional({"type": cell.upper(), "units": 6, "return_sequences": return_sequences})
    y, g, gx, grads = run_layer(layer, x)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](4, 6, batch_first=True, bidirectional=True).double()
    _torch_rnn(module, layer.forward_layer, cell)
    (w_ih, w_hh, _, _), order = _torch_rnn(module, layer.backward_layer, cell, "_reverse")
    tx = t(x)
    seq = module(tx)[0]  # (N, T, 2H): both directions in step order
    ty = seq if return_sequences else torch.cat([seq[:, -1, :6], seq[:, 0, 6:]], dim=-1)  # each one's last step
    torch_backward(ty, g)
    close(y, ty)
    close(gx, tx.grad)
    columns = slice(None) if order is None else np.argsort(order)
    close(grads["backward_kernel"], w_ih.grad.numpy().T[:, columns])
    close(grads["backward_recurrent_kernel"], w_hh.grad.numpy().T[:, columns])


def _labels():
    return np.array([0, 2, 1, 2, 0])


LOSS_CASES = {
    "mse": ("mse", lambda p, y: tnf.mse_loss(p, y), "real"),
    "mae": ("mae", lambda p, y: tnf.l1_loss(p, y), "real"),
    "huber": ({"type": "huber", "delta": 0.5}, lambda p, y: tnf.huber_loss(p, y, delta=0.5), "real"),
    "binary_crossentropy": ("binary_crossentropy", lambda p, y: tnf.binary_cross_entropy(p, y), "prob"),
    "binary_crossentropy_logits": ({"type": "binary_crossentropy", "from_logits": True},
                                   lambda p, y: tnf.binary_cross_entropy_with_logits(p, y), "logit"),
    "categorical_crossentropy": ("categorical_crossentropy",
                                 lambda p, y: -(y * torch.log(p)).sum(-1).mean(), "softmax"),
    "categorical_crossentropy_logits": ({"type": "categorical_crossentropy", "from_logits": True},
                                        lambda p, y: tnf.cross_entropy(p, y), "logit_multi"),
    "sparse_categorical_crossentropy": ("sparse_categorical_crossentropy",
                                        lambda p, y: tnf.nll_loss(torch.log(p), y), "softmax_sparse"),
    "sparse_categorical_crossentropy_logits": ({"type": "sparse_categorical_crossentropy", "from_logits": True},
                                               lambda p, y: tnf.cross_entropy(p, y), "logit_sparse"),
}


@pytest.mark.parametrize("case", sorted(LOSS_CASES))
def test_every_loss_matches_torch(case):
    spec, torch_loss, kind = LOSS_CASES[case]
    labels = _labels()
    if kind == "real":
        pred, target = rand(5, 3), rand(5, 3, seed=1)
    elif kind == "prob":
        pred, target = rand(5, 1, low=0.05, high=0.95), (rand(5, 1, seed=1) > 0).astype(np.float64)
    elif kind == "logit":
        pred, target = rand(5, 1, low=-4, high=4), (rand(5, 1, seed=1) > 0).astype(np.float64)
    elif kind in ("softmax", "softmax_sparse"):
        logits = rand(5, 3, low=-2, high=2)
        pred = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        target = np.eye(3)[labels] if kind == "softmax" else labels
    else:
        pred = rand(5, 3, low=-3, high=3)
        target = labels if kind == "logit_sparse" else np.eye(3)[labels]
    loss = losses.get(spec)
    pv = Variable(pred)
    ours = loss(target, pv)
    ours.backward()
    tp = t(pred)
    ty = torch.tensor(target) if target.dtype.kind == "i" else torch.tensor(target, dtype=torch.float64)
    theirs = torch_loss(tp, ty)
    theirs.backward()
    close(ours.data, theirs)
    close(pv.grad, tp.grad)


WEIGHTED_CASES = ["binary_crossentropy", "binary_crossentropy_logits", "categorical_crossentropy",
                  "categorical_crossentropy_logits", "sparse_categorical_crossentropy",
                  "sparse_categorical_crossentropy_logits"]


@pytest.mark.parametrize("case", WEIGHTED_CASES)
def test_every_classification_loss_weighs_its_samples_as_torch_does(case):
    """Per-sample weights (fit's class_weight): the sum of weighted losses over the batch size (Keras'
    reduction), which is torch's unreduced loss times the weights, averaged."""
    spec, _, kind = LOSS_CASES[case]
    labels = _labels()
    weights = np.array([0.5, 2.0, 1.0, 3.0, 0.0])
    if kind in ("prob", "logit"):
        pred = rand(5, 1, low=0.05, high=0.95) if kind == "prob" else rand(5, 1, low=-4, high=4)
        target = (rand(5, 1, seed=1) > 0).astype(np.float64)
        fn = tnf.binary_cross_entropy if kind == "prob" else tnf.binary_cross_entropy_with_logits
        torch_rows = lambda p, y: fn(p, y, reduction="none").reshape(-1)
    elif kind in ("softmax", "softmax_sparse"):
        logits = rand(5, 3, low=-2, high=2)
        pred = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        target = np.eye(3)[labels] if kind == "softmax" else labels
        torch_rows = lambda p, y: tnf.nll_loss(torch.log(p), y.argmax(-1) if y.ndim == 2 else y,
                                               reduction="none")
    else:
        pred = rand(5, 3, low=-3, high=3)
        target = labels if kind == "logit_sparse" else np.eye(3)[labels]
        torch_rows = lambda p, y: tnf.cross_entropy(p, y, reduction="none")
    pv = Variable(pred)
    ours = losses.get(spec)(target, pv, weights=weights)
    ours.backward()
    tp = t(pred)
    ty = torch.tensor(target) if target.dtype.kind == "i" else torch.tensor(target, dtype=torch.float64)
    theirs = (torch_rows(tp, ty) * torch.tensor(weights)).mean()
    theirs.backward()
    close(ours.data, theirs)
    close(pv.grad, tp.grad)


def torch_transformer_encoder(layer, width):
    """PyTorch's TransformerEncoderLayer (float64, no dropout) holding ``layer``'s weights."""
    w = {key: torch.tensor(np.asarray(p.data)) for key, p in layer.params.items()}
    block = torch.nn.TransformerEncoderLayer(width, layer.num_heads, layer.intermediate_dim, dropout=0.0,
                                             activation=layer.activation, layer_norm_eps=layer.layer_norm_epsilon,
                                             batch_first=True, norm_first=layer.normalize_first, dtype=torch.float64)
    with torch.no_grad():
        block.self_attn.in_proj_weight.copy_(torch.cat([w[f"{part}_kernel"].T for part in ("query", "key", "value")]))
        block.self_attn.in_proj_bias.copy_(torch.cat([w[f"{part}_bias"] for part in ("query", "key", "value")]))
        block.self_attn.out_proj.weight.copy_(w["output_kernel"].T)
        block.self_attn.out_proj.bias.copy_(w["output_bias"])
        for ours, theirs in (("intermediate", block.linear1), ("feedforward", block.linear2)):
            theirs.weight.copy_(w[f"{ours}_kernel"].T)
            theirs.bias.copy_(w[f"{ours}_bias"])
        for ours, theirs in (("attention_norm", block.norm1), ("feedforward_norm", block.norm2)):
            theirs.weight.copy_(w[f"{ours}_gamma"])
            theirs.bias.copy_(w[f"{ours}_beta"])
    return block


@pytest.mark.parametrize("normalize_first, activation", [(False, "relu"), (True, "gelu")])
def test_transformer_encoder_matches_torch(normalize_first, activation):
    x = rand(3, 5, 8)
    layer = layers.TransformerEncoder(12, 2, activation=activation, normalize_first=normalize_first)
    y, g, gx, grads = run_layer(layer, x)
    block = torch_transformer_encoder(layer, 8).train()  # training mode: the plain path, not the fused one
    tx = t(x)
    ty = block(tx)
    torch_backward(ty, g)
    close(y, ty, atol=1e-7)  # GELU's erf is a 1e-7 approximation
    close(gx, tx.grad, atol=1e-7)
    in_proj = block.self_attn.in_proj_weight.grad.numpy()
    for index, part in enumerate(("query", "key", "value")):
        close(grads[f"{part}_kernel"], in_proj[index * 8:(index + 1) * 8].T, atol=1e-7)
        close(grads[f"{part}_bias"], block.self_attn.in_proj_bias.grad[index * 8:(index + 1) * 8], atol=1e-7)
    close(grads["output_kernel"], block.self_attn.out_proj.weight.grad.T, atol=1e-7)
    close(grads["intermediate_kernel"], block.linear1.weight.grad.T, atol=1e-7)
    close(grads["feedforward_bias"], block.linear2.bias.grad, atol=1e-7)
    close(grads["attention_norm_gamma"], block.norm1.weight.grad, atol=1e-7)
    close(grads["feedforward_norm_beta"], block.norm2.bias.grad, atol=1e-7)


# ---------------------------------------------------------------------------- padding masks
MASK_LENGTHS = np.array([5, 2, 4])  # three sequences of 5 steps, padded after their length


def _padding_mask():
    return np.arange(5)[None, :] < MASK_LENGTHS[:, None]


def run_masked(layer, x, mask, upstream_seed=9):
    layer.build(x.shape[1:], np.random.default_rng(0), dtype=np.float64)
    xv = Variable(x)
    y = layer(xv, mask=mask)
    g = rand(*y.shape, seed=upstream_seed)
    y.backward(g)
    return y.data, g, xv.grad


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_masked_recurrent_layers_match_torch_on_packed_sequences(cell, return_sequences):
    x = rand(3, 5, 4)
    layer = {"lstm": layers.LSTM, "gru": layers.GRU}[cell](6, return_sequences=return_sequences)
    y, g, gx = run_masked(layer, x, _padding_mask())
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](4, 6, batch_first=True).double()
    (w_ih, w_hh, _, _), order = _torch_rnn(module, layer, cell)
    tx = t(x)
    packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(MASK_LENGTHS), batch_first=True,
                                                     enforce_sorted=False)
    out, state = module(packed)
    if return_sequences:  # zeros after each length, as Keras' return_sequences gives them
        ty = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=5)[0]
    else:
        ty = (state[0] if cell == "lstm" else state)[0]
    torch_backward(ty, g)
    close(y, ty)
    close(gx, tx.grad)
    columns = slice(None) if order is None else np.argsort(order)
    close(layer.params["kernel"].grad, w_ih.grad.numpy().T[:, columns])
    close(layer.params["recurrent_kernel"].grad, w_hh.grad.numpy().T[:, columns])


def test_a_masked_bidirectional_lstm_matches_torch_on_packed_sequences():
    x = rand(3, 5, 4)
    layer = layers.Bidirectional({"type": "LSTM", "units": 6})
    y, g, gx = run_masked(layer, x, _padding_mask())
    module = torch.nn.LSTM(4, 6, batch_first=True, bidirectional=True).double()
    _torch_rnn(module, layer.forward_layer, "lstm")
    (w_ih, _, _, _), _ = _torch_rnn(module, layer.backward_layer, "lstm", "_reverse")
    tx = t(x)
    packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(MASK_LENGTHS), batch_first=True,
                                                     enforce_sorted=False)
    h = module(packed)[1][0]  # (2, N, H): each direction's state after the whole sequence
    ty = torch.cat([h[0], h[1]], dim=-1)
    torch_backward(ty, g)
    close(y, ty)
    close(gx, tx.grad)
    close(layer.params["backward_kernel"].grad, w_ih.grad.numpy().T)


def test_a_masked_transformer_encoder_matches_torch_with_a_key_padding_mask():
    x = rand(3, 5, 8)
    mask = _padding_mask()
    layer = layers.TransformerEncoder(12, 2)
    layer.build(x.shape[1:], np.random.default_rng(0), dtype=np.float64)
    # Each side's outputs at the padded steps are its own; the kept ones and what they take from x match.
    g = rand(3, 5, 8, seed=9) * mask[:, :, None]
    ours = Variable(x)
    y = layer(ours, mask=mask)
    y.backward(g)
    block = torch_transformer_encoder(layer, 8).train()
    tx = t(x)
    ty = block(tx, src_key_padding_mask=torch.tensor(~mask))
    torch_backward(ty, g)
    close(y.data[mask], ty.detach().numpy()[mask], atol=1e-7)
    close(ours.grad, tx.grad, atol=1e-7)


@pytest.mark.parametrize("pooling", ["average", "maximum"])
def test_masked_global_pooling_matches_torch(pooling):
    x = rand(3, 5, 4)
    mask = _padding_mask()
    layer = layers.GlobalAveragePooling1D() if pooling == "average" else layers.GlobalMaxPooling1D()
    y, g, gx = run_masked(layer, x, mask)
    tx = t(x)
    kept = torch.tensor(mask, dtype=torch.float64)[:, :, None]
    if pooling == "average":
        ty = (tx * kept).sum(1) / kept.sum(1)
    else:
        ty = tx.masked_fill(~torch.tensor(mask)[:, :, None], float("-inf")).amax(1)
    torch_backward(ty, g)
    close(y, ty)
    close(gx, tx.grad)
