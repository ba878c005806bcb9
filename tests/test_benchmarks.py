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


def test_the_sweep_benchmark_runs_the_sweep_both_ways_and_the_rule_trains_fewer_epochs(tmp_path):
    out = tmp_path / "sweep.json"
    done = subprocess.run([sys.executable, "benchmarks/sweep_bench.py", "--epochs", "8", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    full, median = report["results"]["every run to the end"], report["results"]["median rule"]
    assert full["epochs_trained"] == full["epochs_asked"] == 12 * 8 and full["stopped"] == 0
    assert median["stopped"] >= 1 and median["epochs_trained"] < full["epochs_trained"]
    assert median["verdicts"] >= median["stopped"] and full["verdicts"] == 0
    assert 0 < full["best"]["value"] <= 1 and "same best run" in done.stdout
    assert full["points"] == median["points"] and len(full["points"]) == 12  # the same sweep both ways
