"""Optimizers on one flat buffer, their Keras update rules, clipping, weight decay and schedules."""
import math

import numpy as np
import pytest

from trainer import optimizers, schedules
from trainer.core import Parameter


def params_with_grads(seed=0):
    rng = np.random.default_rng(seed)
    params = [Parameter(rng.normal(size=(3, 2)).astype(np.float32)), Parameter(rng.normal(size=4).astype(np.float32))]
    return params


def set_grads(params, seed=1):
    rng = np.random.default_rng(seed)
    grads = [rng.normal(size=p.shape).astype(np.float32) for p in params]
    for p, g in zip(params, grads):
        p.grad = g.copy()
    return grads


def test_it_packs_parameters_into_one_flat_buffer_updated_in_place():
    params = params_with_grads()
    before = [p.data.copy() for p in params]
    opt = optimizers.SGD(learning_rate=0.1)
    opt.build(params)
    assert all(np.shares_memory(p.data, opt.flat) for p in params)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.data, b)
    grads = set_grads(params)
    opt.step()
    for p, b, g in zip(params, before, grads):
        np.testing.assert_allclose(p.data, b - 0.1 * g, rtol=1e-6)
        assert p.grad is None


def reference_run(opt, steps=3):
    params = params_with_grads()
    opt.build(params)
    history = []
    for step in range(steps):
        set_grads(params, seed=step + 1)
        opt.step()
        history.append([p.data.astype(np.float64).copy() for p in params])
    return history


def manual(update, steps=3):
    """Apply a per-array update rule on float64 copies; ``update(w, g, state, t)``."""
    params = params_with_grads()
    ws = [p.data.astype(np.float64) for p in params]
    states = [{} for _ in ws]
    history = []
    for step in range(steps):
        grads = [g.astype(np.float64) for g in set_grads(params, seed=step + 1)]
        for w, g, state in zip(ws, grads, states):
            update(w, g, state, step + 1)
        history.append([w.copy() for w in ws])
    return history


def assert_same_history(a, b, rtol=1e-5):
    for step_a, step_b in zip(a, b):
        for x, y in zip(step_a, step_b):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-6)


def test_its_sgd_with_momentum_and_nesterov_follow_keras():
    def sgd(w, g, s, t, momentum=0.9, lr=0.1, nesterov=False):
        v = s.setdefault("v", np.zeros_like(w))
        v *= momentum
        v -= lr * g
        w += momentum * v - lr * g if nesterov else v
    assert_same_history(reference_run(optimizers.SGD(0.1, momentum=0.9)), manual(sgd))
    assert_same_history(reference_run(optimizers.SGD(0.1, momentum=0.9, nesterov=True)),
                        manual(lambda w, g, s, t: sgd(w, g, s, t, nesterov=True)))


def test_its_adam_rmsprop_and_adagrad_follow_keras():
    def adam(w, g, s, t, lr=0.01, b1=0.9, b2=0.999, eps=1e-7):
        m = s.setdefault("m", np.zeros_like(w))
        v = s.setdefault("v", np.zeros_like(w))
        m[...] = b1 * m + (1 - b1) * g
        v[...] = b2 * v + (1 - b2) * g * g
        w -= lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)

    def rmsprop(w, g, s, t, lr=0.01, rho=0.9, eps=1e-7):
        v = s.setdefault("v", np.zeros_like(w))
        v[...] = rho * v + (1 - rho) * g * g
        w -= lr * g / np.sqrt(v + eps)

    def adagrad(w, g, s, t, lr=0.01, eps=1e-7):
        acc = s.setdefault("acc", np.full_like(w, 0.1))
        acc += g * g
        w -= lr * g / np.sqrt(acc + eps)

    assert_same_history(reference_run(optimizers.Adam(0.01)), manual(adam))
    assert_same_history(reference_run(optimizers.RMSprop(0.01)), manual(rmsprop))
    assert_same_history(reference_run(optimizers.Adagrad(0.01)), manual(adagrad))


def test_its_adamw_decays_weights_decoupled_from_the_gradient():
    params = params_with_grads()
    before = [p.data.copy() for p in params]
    opt = optimizers.AdamW(learning_rate=0.1, weight_decay=0.5)
    opt.build(params)
    for p in params:
        p.grad = np.zeros_like(p.data)
    opt.step()
    for p, b in zip(params, before):
        np.testing.assert_allclose(p.data, b * (1 - 0.1 * 0.5), rtol=1e-6)


def test_it_clips_by_value_by_norm_per_weight_and_by_global_norm():
    for opt, check in [
        (optimizers.SGD(1.0, clipvalue=0.1), lambda step: np.abs(step).max() <= 0.1 + 1e-7),
        (optimizers.SGD(1.0, clipnorm=0.5), None),
        (optimizers.SGD(1.0, global_clipnorm=0.5), None),
    ]:
        params = params_with_grads()
        before = [p.data.copy() for p in params]
        opt.build(params)
        for p in params:
            p.grad = np.full(p.shape, 10.0, dtype=np.float32)
        opt.step()
        steps = [b - p.data for p, b in zip(params, before)]
        if check is not None:
            assert all(check(s) for s in steps)
        elif opt.clipnorm is not None:
            for s in steps:
                assert np.isclose(np.linalg.norm(s), 0.5, rtol=1e-5)
        else:
            total = math.sqrt(sum(float((s ** 2).sum()) for s in steps))
            assert np.isclose(total, 0.5, rtol=1e-5)


def test_it_matches_torch_sgd_with_momentum():
    torch = pytest.importorskip("torch")
    params = params_with_grads()
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt = optimizers.SGD(0.05, momentum=0.8)
    opt.build(params)
    topt = torch.optim.SGD(tparams, lr=0.05, momentum=0.8)
    for step in range(4):
        grads = set_grads(params, seed=step + 1)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_it_saves_and_restores_its_state():
    params = params_with_grads()
    opt = optimizers.Adam(0.01)
    opt.build(params)
    set_grads(params)
    opt.step()
    opt.lr_factor = 0.25  # a plateau's cut
    state = opt.get_state()
    assert int(state["iterations"]) == 1 and set(state) == {"m", "v", "iterations", "lr_factor"}
    other = optimizers.Adam(0.01)
    other.build(params_with_grads())
    other.set_state(state)
    np.testing.assert_array_equal(other.slots["m"], opt.slots["m"])
    assert other.iterations == 1
    assert other.current_learning_rate() == pytest.approx(0.0025)
    del state["lr_factor"]  # a checkpoint written before plateau cuts existed
    other.set_state(state)
    assert other.current_learning_rate() == pytest.approx(0.01)


def test_it_builds_from_names_and_dicts_and_rejects_bad_arguments():
    assert isinstance(optimizers.get("adam"), optimizers.Adam)
    opt = optimizers.get({"type": "sgd", "learning_rate": 0.2, "momentum": 0.5, "nesterov": True})
    assert (opt.learning_rate, opt.momentum, opt.nesterov) == (0.2, 0.5, True)
    opt = optimizers.get({"type": "adam", "learning_rate": {"type": "exponential", "initial_learning_rate": 0.1,
                                                              "decay_steps": 10, "decay_rate": 0.5}})
    assert isinstance(opt.learning_rate, schedules.ExponentialDecay)
    assert optimizers.get(opt.get_config()).get_config() == opt.get_config()
    with pytest.raises(ValueError, match="Unknown optimizer"):
        optimizers.get("nadam")
    with pytest.raises(ValueError, match=r"Adam: beta_1 must be a number in \[0, 1\). Received: beta_1=1.0"):
        optimizers.Adam(beta_1=1.0)


def test_its_schedules_follow_keras_formulas():
    exp = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert math.isclose(exp(5), 0.1 * 0.5 ** 0.5)
    stair = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert stair(9) == 0.1 and math.isclose(stair(10), 0.05)
    step = schedules.StepDecay(0.1, step_size=3, gamma=0.5)
    assert [round(step(s), 6) for s in (0, 2, 3, 6)] == [0.1, 0.1, 0.05, 0.025]
    cos = schedules.CosineDecay(0.1, decay_steps=10, alpha=0.1)
    assert cos(0) == pytest.approx(0.1) and cos(10) == pytest.approx(0.01) and cos(5) == pytest.approx(0.055)
    warm = schedules.CosineDecay(0.0, decay_steps=10, warmup_steps=5, warmup_target=0.1)
    assert warm(0) == 0.0 and warm(5) == pytest.approx(0.1) and warm(15) == pytest.approx(0.0)
    ramp = schedules.LinearWarmup(0.2, warmup_steps=4)
    assert [ramp(s) for s in (0, 3, 4, 100)] == pytest.approx([0.05, 0.2, 0.2, 0.2])
    wrapped = schedules.StepDecay(0.1, step_size=2, gamma=0.5, warmup_steps=2)
    assert [wrapped(s) for s in (0, 1, 2, 4)] == pytest.approx([0.05, 0.1, 0.1, 0.05])
    assert schedules.get(cos.get_config()).get_config() == cos.get_config()


def test_it_uses_the_scheduled_rate_for_each_step():
    opt = optimizers.SGD(schedules.StepDecay(1.0, step_size=1, gamma=0.5))
    params = params_with_grads()
    opt.build(params)
    rates = []
    for _ in range(3):
        set_grads(params)
        rates.append(opt.step())
    assert rates == [1.0, 0.5, 0.25]


DEVICE_CASES = {
    "sgd": lambda: optimizers.SGD(0.1), "momentum": lambda: optimizers.SGD(0.1, momentum=0.9),
    "nesterov": lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True), "adam": lambda: optimizers.Adam(0.01),
    "adamw": lambda: optimizers.AdamW(0.01, weight_decay=0.1), "rmsprop": lambda: optimizers.RMSprop(0.01),
    "adagrad": lambda: optimizers.Adagrad(0.01),
}


@pytest.mark.parametrize("name", sorted(DEVICE_CASES))
def test_its_updates_on_each_backend_equal_the_numpy_rules(xp, name):
    # On the GPU each update is one fused kernel over the flat buffer; on the CPU, in-place ufuncs.
    from trainer import backend

    expected = reference_run(DEVICE_CASES[name]())
    params = [Parameter(backend.to_device(p.data)) for p in params_with_grads()]
    opt = DEVICE_CASES[name]()
    opt.build(params)
    for step, want in enumerate(expected):
        for p, g in zip(params, set_grads(params, seed=step + 1)):
            p.grad = backend.to_device(g)
        opt.step()
        for p, w in zip(params, want):
            np.testing.assert_allclose(backend.to_host(p.data), w, rtol=1e-5, atol=1e-6)
