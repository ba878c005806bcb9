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
        "cupola_device": "gpu", "numpy": "2", "blas": None, "cupy_tf32": False, "torch_version": "2.13",
        "torch_threads": 16, "torch_device_name": "NVIDIA H100", "torch_tf32_matmul": False, "torch_tf32_cudnn": False,
    }
    text = bench.format_report({"environment": environment, "quick": False, "results": []})
    assert "TF32 matmul=False cudnn=False (set explicitly)" in text
    assert "engine TF32 (CUPY_TF32): False" in text
