"""The memory high-water marks a run reports: reset at its start, read at its end."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# In a fresh process: one that has trained before keeps freed pages (the tuned allocator holds them), so
# what a new block adds to its resident size depends on what ran earlier.
PROBE = """
import json, numpy as np
from trainer import backend
reset = backend.reset_memory_peaks()
before = backend.memory_peaks()["peak_rss_mb"]
block = np.ones(200 * 2 ** 20 // 8)  # 200 MiB, touched
held = backend.memory_peaks()
del block
print(json.dumps({"reset": reset, "before": before, "held": held}))
"""


def test_the_peak_counts_what_was_held_since_the_reset():
    answer = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=True)
    probe = json.loads(answer.stdout)
    assert probe["held"]["peak_rss_mb"] - probe["before"] > 150
    assert probe["held"]["gpu_pool_mb"] is None  # on the CPU
