"""Ingestion speed and memory against a plain ``pandas.read_csv`` of the same file.

    python benchmarks/ingest_bench.py [--rows 1000000] [--keep]

Generates a CSV of numeric, categorical, boolean and date columns (20 in all), then runs, each
in a fresh subprocess so peak RSS (``resource.getrusage``) belongs to that step alone:
``pandas.read_csv`` (default engine), Cupola's parse alone (the reader ingestion uses, typed, nothing
else: where the time goes; the compiled reader where it is built), and Cupola's ingestion (sniff,
parse, type, statistics, Arrow file and preview written). Prints the numbers and the load average (the machine may be
shared: compare runs taken under similar load); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate(path: Path, rows: int, seed: int = 0) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns = {}
    for i in range(14):
        values = rng.normal(100 * i, 10 + i, rows).round(4)
        values[rng.random(rows) < 0.01] = np.nan
        columns[f"x{i}"] = values
    for i in range(3):
        columns[f"n{i}"] = rng.integers(0, 1000, rows)
    columns["city"] = rng.choice(["Paris", "Lyon", "Nantes", "Lille", "Nice", "Brest"], rows)
    columns["flag"] = rng.random(rows) < 0.3
    columns["day"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, rows), unit="D")
    pd.DataFrame(columns).to_csv(path, index=False, date_format="%Y-%m-%d")


PANDAS_STEP = """
import json, resource, sys, time
import pandas as pd
t = time.perf_counter()
frame = pd.read_csv(sys.argv[1])
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "rows": len(frame),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CUPOLA_STEP = """
import json, os, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from webapp.datasets.ingest import ingest_table
from webapp.datasets.sniff import detect_format
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
result = ingest_table(sys.argv[1], Path(sys.argv[2]), file_format=detect_format(sys.argv[1]))
elapsed = time.perf_counter() - t
from webapp.datasets import csvscan
print(json.dumps({"seconds": elapsed, "rows": result["n_rows"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_after_imports_mb": baseline, "columns": len(result["schema"]["columns"]),
                  "compiled_reader": csvscan._csvscan is not None}))
"""

PARSE_STEP = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
from webapp.datasets.ingest import stream_csv
from webapp.datasets.sniff import sniff_text
t = time.perf_counter()
rows = stream_csv(sys.argv[1], sniff_text(sys.argv[1]), lambda schema, batches: sum(b.num_rows for b in batches))
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "rows": rows,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_step(code: str, *args: str) -> dict:
    output = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="best of N for each side")
    parser.add_argument("--csv", type=Path, help="use this CSV instead of generating one")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cupola-ingest-bench-"))
    csv_path = args.csv or work / "bench.csv"
    t = time.perf_counter()
    if args.csv is None:
        # In a child process: a forked child inherits its parent's peak RSS, which would blur the numbers.
        subprocess.run([sys.executable, "-c", (f"from benchmarks.ingest_bench import generate; from pathlib import Path; "
                                               f"generate(Path({str(csv_path)!r}), {args.rows})")], check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        print(f"generated {args.rows:,} rows × 20 columns in {time.perf_counter() - t:.1f} s")
        # The new file's pages go to disk now, not on kernel threads in the middle of the timings.
        os.sync()
    size_mb = csv_path.stat().st_size / 2**20
    print(f"{csv_path.name}: {size_mb:,.1f} MiB")
    pandas_runs, cupola_runs, parse_runs = [], [], []
    for _ in range(args.repeat):
        pandas_runs.append(run_step(PANDAS_STEP, str(csv_path)))
        parse_runs.append(run_step(PARSE_STEP, str(csv_path), str(ROOT)))
        out = work / f"out{len(cupola_runs)}"
        out.mkdir()
        cupola_runs.append(run_step(CUPOLA_STEP, str(csv_path), str(out), str(ROOT)))
        # Each run's output is removed before the next: kept, its page cache makes the next run's
        # writes wait for fresh pages, which on these VMs costs up to 10x a write into freed ones.
        shutil.rmtree(out)
    best_pandas = min(pandas_runs, key=lambda r: r["seconds"])
    best_cupola = min(cupola_runs, key=lambda r: r["seconds"])
    peak = max(r["peak_rss_mb"] for r in cupola_runs)
    report = {
        "cpu_count": os.cpu_count(), "load_average": [round(x, 1) for x in os.getloadavg()], "rows": best_cupola["rows"], "file_mib": round(size_mb, 1),
        "pandas_read_csv_s": round(best_pandas["seconds"], 2),
        "cupola_ingest_s": round(best_cupola["seconds"], 2),
        "cupola_parse_only_s": round(min(r["seconds"] for r in parse_runs), 2),
        "speed_vs_pandas": round(best_pandas["seconds"] / best_cupola["seconds"], 2),
        # Each repeat runs pandas then Cupola back to back: the median of those pairs' ratios moves
        # less with whatever else the machine is doing than the ratio of the two bests.
        "speed_vs_pandas_pairs": sorted(round(a["seconds"] / b["seconds"], 2) for a, b in zip(pandas_runs, cupola_runs)),
        "cupola_peak_rss_mib": round(peak, 1),
        "cupola_rss_after_imports_mib": round(best_cupola["rss_after_imports_mb"], 1),
        "peak_rss_over_file_size": round(peak / size_mb, 2),
        "pandas_peak_rss_mib": round(max(r["peak_rss_mb"] for r in pandas_runs), 1),
        "compiled_reader": best_cupola["compiled_reader"],
    }
    pairs = report["speed_vs_pandas_pairs"]
    report["speed_vs_pandas_median_pair"] = pairs[len(pairs) // 2]
    print(json.dumps(report, indent=2))
    print(f"ingestion is {report['speed_vs_pandas']}× the speed of pandas.read_csv (best of each side; "
          f"median of back-to-back pairs {report['speed_vs_pandas_median_pair']}×; target ≥ 0.8); "
          f"peak RSS {report['peak_rss_over_file_size']}× the file size (target < 2)")
    if not args.keep and args.csv is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
