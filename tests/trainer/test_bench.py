import json
import math

import numpy as np
import pytest

from trainer import bench


@pytest.fixture(scope="module")
def quick_report():
    if not bench.cupola_available():
        pytest.skip("trainer.Sequential is not available yet")
    # One thread per side: on a shared 2-core machine, torch's two-thread pool can stall for
    # tens of milliseconds per step when another process holds a core; the test checks that
    # both sides run, not their speed.
    return bench.run(quick=True, device="cpu", threads=1)


def test_it_runs_every_recipe_on_the_engine_in_quick_mode(quick_report):
    assert [row["recipe"] for row in quick_report["results"]] == bench.ALL_NAMES
    for row in quick_report["results"]:
        side = row["cupola"]
        assert side["ran"], f"{row['recipe']}: {side.get('error')}"
        assert side["seconds"] > 0 and math.isfinite(side["samples_per_second"])
        assert side["warmup_seconds"] > 0  # timed apart from training


def test_it_runs_pytorch_beside_the_engine_with_finite_time_ratios(quick_report):
    pytest.importorskip("torch")
    for row in quick_report["results"]:
        assert row["torch"]["ran"], f"{row['recipe']}: {row['torch'].get('error')}"
        assert math.isfinite(row["time_ratio"]) and row["time_ratio"] > 0
    assert quick_report["environment"]["torch_threads"] >= 1


def test_it_reports_test_quality_for_both_sides(quick_report):
    rows = {row["recipe"]: row for row in quick_report["results"]}
    sides = ["cupola", "torch"] if "torch" in rows["keras_example"] else ["cupola"]
    for side in sides:
        assert 0 <= rows["keras_example"][side]["quality"]["accuracy"] <= 1
        assert math.isfinite(rows["mlp_regressor"][side]["quality"]["rmse"])
        assert math.isfinite(rows["lstm_co2"][side]["quality"]["r2"])
        assert rows["mlp_throughput"][side]["flop_per_second"] > 0


def test_it_formats_a_table_with_both_sides(quick_report):
    text = bench.format_report(quick_report)
    assert "keras_example" in text and "samples/s" in text and "peak RSS" in text
    assert "load average" in text and "threads used" in text


def test_its_command_line_prints_the_table_and_writes_json(quick_report, tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert bench.main(["--quick", "--recipe", "keras_example", "--threads", "1", "--json", str(path)]) == 0
    assert "== keras_example" in capsys.readouterr().out
    report = json.loads(path.read_text())
    assert report["quick"] is True and [r["recipe"] for r in report["results"]] == ["keras_example"]
    assert report["results"][0]["cupola"]["ran"]


def test_it_counts_parameters_of_the_keras_example_by_hand():
    architecture = bench.RECIPES["keras_example"].architecture
    assert bench.count_parameters(architecture, (8,)) == 8 * 10 + 10 + 10 * 1 + 1


def test_it_counts_parameters_of_the_cnn_and_lstm_by_hand():
    cnn = bench.RECIPES["cnn_digits"].architecture
    # 28 -> conv3 26 -> pool 13 -> conv3 11 -> pool 5: 5*5*64 = 1600 flattened.
    expected = (9 * 1 * 32 + 32) + (9 * 32 * 64 + 64) + (1600 * 128 + 128) + (128 * 10 + 10)
    assert bench.count_parameters(cnn, (28, 28, 1)) == expected
    lstm = bench.RECIPES["lstm_co2"].architecture
    assert bench.count_parameters(lstm, (10, 1)) == 4 * 32 * (1 + 32 + 1) + 33


def test_it_counts_parameters_of_the_1d_cnn_and_the_bidirectional_lstm_by_hand():
    cnn = bench.RECIPES["conv1d_co2"].architecture
    # 10 steps -> same conv 10 -> pool 5 -> same conv 5: 5*32 = 160 flattened.
    assert bench.count_parameters(cnn, (10, 1)) == (3 * 1 * 32 + 32) + (3 * 32 * 32 + 32) + (160 + 1)
    bilstm = bench.RECIPES["bilstm_co2"].architecture
    assert bench.count_parameters(bilstm, (10, 1)) == 2 * 4 * 32 * (1 + 32 + 1) + (64 + 1)
    transformer = bench.RECIPES["transformer_co2"].architecture
    attention, feed_forward = 4 * (32 * 32 + 32) + 2 * 32, (32 * 64 + 64) + (64 * 32 + 32) + 2 * 32
    assert bench.count_parameters(transformer, (10, 1)) == (32 + 32) + 10 * 32 + attention + feed_forward + (320 + 1)


@pytest.mark.parametrize("name", ["conv1d_co2", "bilstm_co2", "transformer_co2"])
def test_both_sides_build_the_series_recipes_with_the_same_parameters(name):
    torch = pytest.importorskip("torch")
    from trainer import Sequential, layers

    architecture = bench.RECIPES[name].architecture
    model = bench.build_torch_model(architecture, (10, 1), "mse")
    ours = Sequential([bench._cupola_layer(layers, spec) for spec in architecture])
    ours.compile(optimizer="adam", loss="mse")
    assert ours.predict(np.zeros((4, 10, 1), np.float32)).shape == (4, 1)
    counted = bench.count_parameters(architecture, (10, 1))
    # PyTorch's LSTM has a second bias per gate (bias_hh, zero here) that Keras' has not.
    assert ours.count_params() == counted == sum(p.numel() for n, p in model.named_parameters() if "bias_hh" not in n)
    x = np.zeros((4, 10, 1), np.float32)
    side = bench.TorchSide(bench.RECIPES[name], bench.Dataset(x, np.zeros((4, 1), np.float32), x, x[:, 0], "regression",
                                                              "zeros"), seed=0, device="cpu")
    assert tuple(side.predict(x).shape) == (4, 1)  # the series arrive channels first under a 1-D convolution
    if name == "bilstm_co2":
        lstm = model[0].lstm
        assert lstm.bidirectional and torch.all(lstm.bias_ih_l0_reverse[32:64] == 1)
        recurrent = lstm.weight_hh_l0_reverse.detach().numpy()
        assert np.allclose(recurrent.T @ recurrent, np.eye(32), atol=1e-4)
    if name == "transformer_co2":  # pre-norm, without dropout, each projection initialised on its own
        block = model[2]
        assert block.norm_first and block.dropout.p == 0 and not block.self_attn.in_proj_bias.any()
        limit = np.sqrt(6 / (32 + 32))
        assert 0.8 * limit < block.self_attn.in_proj_weight.abs().max().item() <= limit


def test_it_upsamples_digits_to_28_pixels_keeping_the_range():
    images = np.zeros((2, 8, 8), dtype=np.uint8)
    images[0, 2:6, 3:5] = 255
    out = bench.upsample_images(images, 28)
    assert out.shape == (2, 28, 28) and out.dtype == np.uint8
    assert out[0].max() == 255 and out[1].max() == 0
    assert out[0, 14, 14] == 255 and out[0, 0, 0] == 0


def test_it_loads_the_digit_images_with_their_labels():
    pytest.importorskip("PIL")
    images, labels = bench.load_digits_images()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert sorted(set(labels.tolist())) == list(range(10))


def test_it_reads_missing_csv_cells_as_nan(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,x\n,y\n")
    columns = bench.read_csv_columns(path)
    assert np.isnan(columns["a"][1]) and columns["b"].tolist() == ["x", "y"]


def test_it_builds_a_torch_model_with_keras_initialisation():
    torch = pytest.importorskip("torch")
    model = bench.build_torch_model(bench.RECIPES["lstm_co2"].architecture, (10, 1), "mse")
    lstm = model[0].lstm
    assert torch.all(lstm.bias_ih_l0[32:64] == 1) and torch.all(lstm.bias_hh_l0 == 0)
    recurrent = lstm.weight_hh_l0.detach().numpy()  # (128, 32) with orthonormal columns
    assert np.allclose(recurrent.T @ recurrent, np.eye(32), atol=1e-4)
    out = model(torch.zeros(4, 10, 1))
    assert tuple(out.shape) == (4, 1)


def test_it_rejects_an_unknown_recipe():
    with pytest.raises(ValueError, match="unknown recipe 'gpt'"):
        bench.run(["gpt"])


def test_it_states_tf32_settings_for_both_sides_on_a_gpu():
    environment = {
        "date": "2026-01-01T00:00:00+00:00", "machine": "box", "cpu": "cpu", "cpu_cores_usable": 16, "threads": 16,
        "platform": "Linux", "load_average_at_start": [0.1], "load_average_at_end": [0.2], "device": "gpu",
        "cupola_device": "gpu", "numpy": "2", "blas": None, "cupy_tf32": False, "cupola_fused_kernels": True,
        "torch_version": "2.13",
        "torch_threads": 16, "torch_device_name": "NVIDIA H100", "torch_tf32_matmul": False, "torch_tf32_cudnn": False,
    }
    text = bench.format_report({"environment": environment, "quick": False, "results": []})
    assert "TF32 matmul=False cudnn=False (set explicitly)" in text
    assert "engine TF32 (CUPY_TF32): False; fused kernels (CUPOLA_FUSED_KERNELS): True" in text


GPU_ENVIRONMENT = {
    "date": "2026-01-01T00:00:00+00:00", "machine": "box", "cpu": "cpu", "cpu_cores_usable": 16, "threads": 16,
    "platform": "Linux", "load_average_at_start": [0.1], "load_average_at_end": [0.2], "device": "gpu",
    "cupola_device": "gpu", "numpy": "2", "blas": None, "cupy_tf32": True, "cupola_fused_kernels": True,
    "cupola_cuda_graphs": True, "gpu_name": "NVIDIA H100 80GB HBM3",
}


def gpu_report(results):
    return bench.format_report({"environment": GPU_ENVIRONMENT, "quick": False, "results": results})


def result_row(recipe, cupola):
    return {"recipe": recipe, "title": recipe, "data": "d", "train_rows": 10, "test_rows": 0, "epochs": 1,
            "batch_size": 4, "optimizer": "Adam", "loss": "mse", "cupola": {"ran": True, "seconds": 1.0,
                                                                             "samples_per_second": 10.0, **cupola}}


def test_it_reports_what_each_fit_did_with_cuda_graphs():
    on = {"mode": "cuda", "captured": [64, 16], "launches": 900, "checked": 2, "off": None}
    off = {"mode": "cuda", "captured": [64], "launches": 1, "checked": 1,
           "off": "the graph of a batch of 64 gave other numbers than the eager step"}
    text = gpu_report([result_row("keras_example", {"step_graphs": on}), result_row("lstm_co2", {"step_graphs": off})])
    assert "CUDA graphs (CUPOLA_CUDA_GRAPHS): True" in text
    assert "CUDA graphs: batch sizes captured 64, 16; 900 launches, 2 checked" in text
    assert "turned off: the graph of a batch of 64 gave other numbers" in text
    runs = [{"ran": True, "seconds": 1.0, "samples_per_second": 1.0, "step_graphs": on},
            {"ran": True, "seconds": 1.0, "samples_per_second": 1.0, "step_graphs": off}]
    assert bench.combine_runs(runs, [0, 1])["step_graphs"] == off  # a seed that turned them off is shown


def test_it_reports_the_large_mlp_as_a_fraction_of_the_dense_tf32_peak():
    assert bench.tf32_peak_flops("NVIDIA H100 80GB HBM3") == 494.7e12
    assert bench.tf32_peak_flops("NVIDIA H100 PCIe") == 378.0e12
    assert bench.tf32_peak_flops("NVIDIA H200") == 494.7e12
    assert bench.tf32_peak_flops("Some GPU") is None and bench.tf32_peak_flops(None) is None
    text = gpu_report([result_row(bench.THROUGHPUT, {"flop_per_second": 247.35e12})])
    assert "% of dense TF32 peak" in text and "50.0" in text
    assert "dense TF32 peak of the NVIDIA H100 80GB HBM3: 495 TFLOP/s" in text
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import engine_report

    markdown = engine_report.markdown_table({"environment": GPU_ENVIRONMENT, "quick": False, "results": [
        result_row(bench.THROUGHPUT, {"flop_per_second": 247.35e12})]})
    assert "- mlp_throughput: 50.0 % of the NVIDIA H100 80GB HBM3's dense TF32 peak (495 TFLOP/s)" in markdown


def test_it_combines_seeds_into_summed_times_and_mean_and_std_quality():
    runs = [
        {"ran": True, "seconds": 1.0, "samples_per_second": 100.0, "quality": {"accuracy": 0.90}, "peak_rss_mb": 10.0,
         "peak_rss_reset": True, "warmup_seconds": 0.5},
        {"ran": True, "seconds": 3.0, "samples_per_second": 100 / 3, "quality": {"accuracy": 0.94}, "peak_rss_mb": 12.0,
         "peak_rss_reset": True, "warmup_seconds": 0.1},
    ]
    combined = bench.combine_runs(runs, [0, 1])
    assert combined["ran"] and combined["seconds"] == 4.0 and combined["seeds"] == [0, 1]
    assert combined["samples_per_second"] == pytest.approx(200 / 4)
    assert combined["quality"]["accuracy"] == pytest.approx(0.92)
    assert combined["quality_std"]["accuracy"] == pytest.approx(np.std([0.90, 0.94], ddof=1))
    assert combined["quality_per_seed"]["accuracy"] == [0.90, 0.94] and combined["peak_rss_mb"] == 12.0
    assert combined["warmup_seconds"] == 0.5  # the first seed's warm-up holds the one-time compilation
    failed = bench.combine_runs([runs[0], {"ran": False, "error": "boom", "peak_rss_mb": 1.0}], [0, 1])
    assert not failed["ran"] and failed["error"] == "boom" and "quality" not in failed


def test_it_applies_the_issues_quality_rule_to_the_means():
    assert bench.quality_rule({"accuracy": 0.951}, {"accuracy": 0.96})["met"]
    missed = bench.quality_rule({"accuracy": 0.949}, {"accuracy": 0.96})
    assert not missed["met"] and not missed["checks"]["accuracy"]["met"]
    assert bench.quality_rule({"r2": 0.95, "rmse": 1.05}, {"r2": 0.97, "rmse": 1.0})["met"]
    regression = bench.quality_rule({"r2": 0.95, "rmse": 1.06}, {"r2": 0.96, "rmse": 1.0})
    assert not regression["met"] and regression["checks"]["r2"]["met"] and not regression["checks"]["rmse"]["met"]
    assert bench.quality_rule({"r2": 0.5}, {}) is None


def test_it_trains_each_side_once_per_seed_on_a_fixed_split(monkeypatch):
    if not bench.cupola_available():
        pytest.skip("trainer.Sequential is not available yet")
    loads = []
    recipe = bench.RECIPES["keras_example"]
    load = recipe.load
    monkeypatch.setattr(recipe, "load", lambda quick, seed: loads.append(seed) or load(quick, seed))
    report = bench.run(["keras_example"], quick=True, device="cpu", threads=1, seed=4, seeds=2)
    row = report["results"][0]
    assert loads == [4] and report["seeds"] == 2 and row["seeds"] == [4, 5]
    sides = ["cupola", "torch"] if "torch" in row else ["cupola"]
    for side in sides:
        assert row[side]["ran"], row[side].get("error")
        assert len(row[side]["quality_per_seed"]["accuracy"]) == 2 and len(row[side]["seconds_per_seed"]) == 2
        assert row[side]["seconds"] == pytest.approx(sum(row[side]["seconds_per_seed"]))
    if "torch" in row:
        assert row["time_ratio"] == pytest.approx(row["cupola"]["seconds"] / row["torch"]["seconds"])
        assert isinstance(row["quality_rule"]["met"], bool)
        assert "quality rule on the means" in bench.format_report(report)
    assert "± " in bench.format_report(report)


def test_it_rejects_a_non_positive_number_of_seeds():
    with pytest.raises(ValueError, match="seeds must be a positive integer"):
        bench.run(["keras_example"], seeds=0)


def test_without_a_number_of_seeds_each_recipe_trains_its_report_seeds(monkeypatch):
    seen = {}

    def fake_run_recipe(recipe, **kwargs):
        seen[recipe.name] = kwargs["seeds"]

    monkeypatch.setattr(bench, "run_recipe", fake_run_recipe)
    monkeypatch.setattr(bench, "cupola_available", lambda: False)
    bench.run(["cnn_digits", "lstm_co2"], seeds=None, use_torch=False)
    assert seen == {"cnn_digits": 3, "lstm_co2": 8}
    bench.run(["lstm_co2"], seeds=2, use_torch=False)  # an explicit count applies to every recipe
    assert seen["lstm_co2"] == 2


def test_the_engine_report_passes_seeds_through_and_shows_the_rule(monkeypatch, tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import engine_report

    calls = []
    environment = {"date": "d", "cpu": "c", "threads": 1, "device": "cpu"}
    row = {"recipe": "cnn_digits", "seeds": [0, 1, 2], "cupola": {"seconds": 2.0, "samples_per_second": 5.0, "quality": {"accuracy": 0.95},
                                              "quality_std": {"accuracy": 0.01}},
           "torch": {"seconds": 1.0, "samples_per_second": 10.0, "quality": {"accuracy": 0.97},
                     "quality_std": {"accuracy": 0.005}},
           "time_ratio": 2.0, "quality_rule": bench.quality_rule({"accuracy": 0.95}, {"accuracy": 0.97})}

    def fake_run(recipes, **kwargs):
        calls.append(kwargs["seeds"])
        return {"environment": environment, "quick": kwargs["quick"], "seeds": kwargs["seeds"], "results": [row]}

    monkeypatch.setattr(engine_report.bench, "run", fake_run)
    monkeypatch.setattr(engine_report.bench, "format_report", lambda report: "")
    out = tmp_path / "e.md"
    assert engine_report.main(["--markdown", str(out)]) == 0
    assert engine_report.main(["--quick"]) == 0
    assert engine_report.main(["--seeds", "5"]) == 0
    assert calls == [None, engine_report.QUICK_SEEDS, 5]  # None: each recipe's report_seeds
    table = out.read_text()
    assert "| cnn_digits | 3 |" in table
    assert "accuracy 0.9500 ± 0.0100" in table and "not met: accuracy >= torch - 0.01" in table


@pytest.mark.parametrize("cupy_gpu,torch_gpu,auto", [(True, True, "gpu"), (True, False, "cpu"), (False, True, "cpu")])
def test_it_takes_the_gpu_only_when_both_sides_can_use_it(monkeypatch, cupy_gpu, torch_gpu, auto):
    from trainer import backend

    torch = pytest.importorskip("torch")
    monkeypatch.setattr(backend, "gpu_available", lambda: cupy_gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: torch_gpu)
    assert bench.choose_device("auto", use_torch=True) == auto
    assert bench.choose_device("cpu", use_torch=True) == "cpu"
    assert bench.choose_device("auto", use_torch=False) == ("gpu" if cupy_gpu else "cpu")
    if auto == "gpu":
        assert bench.choose_device("gpu", use_torch=True) == "gpu"
    else:
        with pytest.raises(ValueError, match="--device gpu was asked for, but " + ("this PyTorch" if cupy_gpu else "CuPy")):
            bench.choose_device("gpu", use_torch=True)


def test_its_command_line_refuses_a_gpu_that_is_not_there(monkeypatch, capsys):
    from trainer import backend

    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        bench.main(["--device", "gpu", "--no-torch", "--recipe", "keras_example"])
    assert stop.value.code == 2
    assert "CuPy finds no GPU here" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "on"), [("0", False), ("1", True), ("2", True), ("yes", False), (None, False)])
def test_the_engines_tf32_setting_is_read_as_cupy_reads_it(monkeypatch, value, on):
    from trainer import backend

    if value is None:
        monkeypatch.delenv("CUPY_TF32", raising=False)
    else:
        monkeypatch.setenv("CUPY_TF32", value)
    assert backend.tf32_matmul() is on
