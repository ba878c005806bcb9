"""The benchmark scripts that have no other test still run, and say what they measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_epoch_benchmark_trains_the_three_ways_and_counts_their_checkpoints(tmp_path):
    out = tmp_path / "epoch.json"
    done = subprocess.run([sys.executable, "benchmarks/epoch_bench.py", "--epochs", "60", "--rounds", "1",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["seconds"]) == {"bare fit", "every epoch written", "worker default"}
    assert report["checkpoint_files"]["every epoch written"] == 60
    assert 2 <= report["checkpoint_files"]["worker default"] <= 20 + 3
    assert "worker default / every epoch written (time)" in done.stdout


def test_the_sweep_benchmark_runs_the_sweep_each_way_and_the_rules_train_fewer_epochs(tmp_path):
    out = tmp_path / "sweep.json"
    done = subprocess.run([sys.executable, "benchmarks/sweep_bench.py", "--epochs", "8", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    full = report["results"]["every run to the end"]
    assert full["epochs_trained"] == full["epochs_asked"] == 12 * 8 and full["stopped"] == 0 and full["queries"] == 0
    assert 0 < full["best"]["value"] <= 1 and "same best run" in done.stdout
    for mode in ("median rule", "successive halving"):
        stopped = report["results"][mode]
        assert stopped["stopped"] >= 1 and stopped["epochs_trained"] < full["epochs_trained"], mode
        assert stopped["queries"] >= stopped["stopped"], mode
        assert full["points"] == stopped["points"] and len(full["points"]) == 12  # the same sweep each way
    # With 8 epochs, halving judges at epoch 3 only: each of its stopped runs trained 3 epochs, and
    # it asked once for each run that had at least 3 others before it there (the 4th run on).
    halving = report["results"]["successive halving"]
    assert report["rungs"] == [3] and halving["epochs_trained"] == 12 * 8 - 5 * halving["stopped"]
    assert halving["queries"] == 12 and report["results"]["median rule"]["queries"] >= 12


def test_the_serving_benchmark_logs_each_request_and_its_job_predicts_every_row(tmp_path):
    import os

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_all import _serve_section

    out = tmp_path / "serve.json"
    env = dict(os.environ, CUPOLA_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "benchmarks/serve_bench.py", "--rows", "3000", "--request-rows", "200",
                           "--repeats", "2", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["job_rows"] == 3000 and report["one_request_rows"] == 3000
    assert report["log_rows"] == 1 + 2  # the warm-up and the logged repeats; the bare ones wrote nothing
    assert report["log_overhead_ratio"] > 0 and report["job_vs_request_per_row"] > 0
    from run_all import Step

    step = Step("serve", [sys.executable, "benchmarks/serve_bench.py"], timeout=1)
    step.rc = 0  # as if run_all had run it
    section = _serve_section(step, report)
    assert f"| log overhead | {report['log_overhead_ratio']:.2f}× |" in section
