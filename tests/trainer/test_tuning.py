import numpy as np
import pytest

from trainer import Sequential, layers
from trainer.tuning import lr_find, suggest, with_learning_rate


def regression(seed=0, n=512):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=n)).astype(np.float32).reshape(-1, 1)
    return x, y


def model(optimizer="sgd"):
    m = Sequential([layers.Dense(16, activation="relu"), layers.Dense(1)], seed=0)
    m.compile(loss="mse", optimizer=optimizer)
    return m


def test_the_range_test_finds_a_rate_that_trains_and_leaves_the_model_as_it_was():
    x, y = regression()
    m = model({"type": "adam", "learning_rate": 0.5})
    m.build((4,))
    before = [w.copy() for w in m.get_weights()]
    found = lr_find(m, x, y, batch_size=32, start=1e-6, end=10.0, steps=100)
    rates = found["learning_rates"]
    assert rates[0] == pytest.approx(1e-6) and np.all(np.diff(rates) > 0)
    assert np.allclose(np.diff(np.log(rates)), np.log(10.0 / 1e-6) / 99)  # exponential steps
    # A rate of 10 is far too large for Adam here: the loss blows up at the end (a spike is counted at 4x
    # the median of the steps before it, so the smoothed curve rises behind the raw one).
    assert max(found["raw_losses"][-10:]) > 100 * min(found["raw_losses"])
    assert found["losses"][-1] > min(found["losses"])
    assert 1e-4 < found["suggestion"] < 1.0 and found["suggestion"] < found["minimum"] * 10
    for w, b in zip(m.get_weights(), before):
        assert np.array_equal(w, b)
    assert m.optimizer.iterations == 0 and m.optimizer.learning_rate == 0.5
    assert all(np.all(s == 0) for s in m.optimizer.slots.values())
    # ... and the suggestion trains: better than a rate a hundred times smaller in the same steps.
    losses = {}
    for rate in (found["suggestion"], found["suggestion"] / 100):
        trial = model({"type": "adam", "learning_rate": rate})
        history = trial.fit(x, y, epochs=3, batch_size=32, seed=0)
        losses[rate] = history.history["loss"][-1]
    assert losses[found["suggestion"]] < 0.5 * losses[found["suggestion"] / 100]


def test_the_losses_are_an_exponential_average_corrected_for_its_start_with_spikes_capped():
    x, y = regression()
    found = lr_find(model(), x, y, batch_size=64, start=1e-5, end=1e-3, steps=20, smoothing=0.9)
    raw, average = found["raw_losses"], 0.0
    for i, loss in enumerate(raw):
        recent = raw[max(0, i - 10):i]
        counted = min(loss, 4.0 * float(np.median(recent))) if len(recent) >= 3 else loss
        average = 0.9 * average + 0.1 * counted
        assert found["losses"][i] == pytest.approx(average / (1 - 0.9 ** (i + 1)))
    assert len(raw) == 20 and found["stopped"] == "end"  # 8 batches an epoch: the test went on into a second


def test_a_rare_large_batch_loss_is_noise_not_divergence():
    # A skewed target: most rows near 0, a few far out. Rates too small to learn anything, so any stop is noise.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4)).astype(np.float32)
    y = np.where(rng.random(2000) < 0.02, 30.0, 0.0).astype(np.float32).reshape(-1, 1)
    found = lr_find(model("adam"), x, y, batch_size=32, start=1e-9, end=1e-8, steps=60)
    assert found["stopped"] == "end" and found["suggestion"] is None  # no descent to suggest from, either
    assert max(found["raw_losses"]) > 4 * float(np.median(found["raw_losses"]))  # the spikes were there


def test_the_same_seed_gives_the_same_curve():
    x, y = regression()
    first = lr_find(model(), x, y, steps=30, seed=4)
    again = lr_find(model(), x, y, steps=30, seed=4)
    assert first == again


def test_the_suggestion_is_the_steepest_descent_before_the_lowest_loss():
    rates = np.logspace(-6, 0, 61)
    logs = np.log10(rates)
    losses = 1.0 / (1.0 + np.exp(3 * (logs + 3)))  # falls fastest at 1e-3 ...
    losses[50:] = np.linspace(losses[49], 5.0, 11)  # ... then blows up
    assert suggest(rates, losses) == pytest.approx(1e-3)
    assert suggest(rates, np.linspace(1.0, 2.0, 61)) is None  # it never fell
    assert suggest(rates[:3], losses[:3]) is None


@pytest.mark.parametrize(("optimizer", "expected"), [
    ("adam", {"type": "adam", "learning_rate": 0.01}),
    ({"type": "sgd", "learning_rate": 0.1, "momentum": 0.9}, {"type": "sgd", "learning_rate": 0.01, "momentum": 0.9}),
    ({"type": "adam", "learning_rate": {"type": "cosine", "initial_learning_rate": 0.1, "decay_steps": 100}},
     {"type": "adam", "learning_rate": {"type": "cosine", "initial_learning_rate": 0.01, "decay_steps": 100}}),
    ({"type": "adam", "learning_rate": {"type": "cosine", "initial_learning_rate": 0.0, "decay_steps": 100,
                                        "warmup_steps": 10, "warmup_target": 0.1}},
     {"type": "adam", "learning_rate": {"type": "cosine", "initial_learning_rate": 0.0, "decay_steps": 100,
                                        "warmup_steps": 10, "warmup_target": 0.01}}),
    ({"type": "adam", "learning_rate": {"type": "linear_warmup", "warmup_steps": 5, "schedule": 0.1}},
     {"type": "adam", "learning_rate": {"type": "linear_warmup", "warmup_steps": 5, "schedule": 0.01}}),
])
def test_a_found_rate_goes_where_the_optimizer_starts(optimizer, expected):
    spec = {"layers": [], "compile": {"loss": "mse", "optimizer": optimizer}}
    changed = with_learning_rate(spec, 0.01)
    assert changed["compile"]["optimizer"] == expected
    assert spec["compile"]["optimizer"] == optimizer  # a copy: the spec given is left alone


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"start": 0}, "start must be a number in \\(0, 10\\). Received: start=0"),
    ({"start": 1e-3, "end": 1e-4}, "end must be larger than start"),
    ({"steps": 5}, "steps must be an integer in \\[10, 10000\\]. Received: steps=5"),
    ({"divergence": 1}, "divergence must be larger than 1"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
])
def test_it_rejects_bad_settings_naming_them(kwargs, message):
    x, y = regression(n=64)
    with pytest.raises(ValueError, match=message):
        lr_find(model(), x, y, **kwargs)


def test_a_spec_asking_for_the_range_test_trains_at_its_suggestion():
    from trainer import spec as tspec

    x, y = regression()
    spec = {"input_shape": [4], "layers": [{"type": "Dense", "units": 16, "activation": "relu"}, {"type": "Dense", "units": 1}],
            "compile": {"loss": "mse", "optimizer": {"type": "adam", "learning_rate": 1e-6}},
            "fit": {"epochs": 2, "batch_size": 32, "seed": 0, "find_learning_rate": {"start": 1e-6, "end": 10.0}}}
    model, history = tspec.fit(spec, x, y)
    assert model.lr_find["suggestion"] > 1e-4
    assert history.history["learning_rate"] == [pytest.approx(model.lr_find["suggestion"])] * 2
    assert tspec.validate(spec)["fit"]["find_learning_rate"] == {"start": 1e-6, "end": 10.0, "steps": 100}
    with pytest.raises(tspec.SpecError, match="fit.find_learning_rate.end: must be larger than start"):
        tspec.validate(dict(spec, fit={"find_learning_rate": {"start": 0.1, "end": 0.01}}))
    with pytest.raises(tspec.SpecError, match="fit.find_learning_rate.steps"):
        tspec.validate(dict(spec, fit={"find_learning_rate": {"steps": 3}}))


def test_the_range_test_runs_on_each_backend_and_gives_the_numpy_curve(xp):
    # On the GPU each step is the eager fused step, its loss read once; the curve matches the CPU's.
    x, y = regression()
    found = lr_find(model({"type": "adam", "learning_rate": 0.01}), x, y, batch_size=64, start=1e-5, end=1.0,
                    steps=30, seed=1)
    from trainer import backend

    backend.set_device("cpu")
    expected = lr_find(model({"type": "adam", "learning_rate": 0.01}), x, y, batch_size=64, start=1e-5, end=1.0,
                       steps=30, seed=1)
    assert found["learning_rates"] == expected["learning_rates"]
    np.testing.assert_allclose(found["losses"], expected["losses"], rtol=1e-4)
