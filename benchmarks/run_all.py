"""Run every benchmark and write ``benchmarks/README.md`` from what they measured.

    python benchmarks/run_all.py            # engine (full recipes), ingestion (1M rows), load: many minutes
    python benchmarks/run_all.py --quick    # engine --quick, ingestion 200k rows, a 100 MB upload, 15 s of load

Steps, each in its own process, each one's command written beside its numbers:

- engine vs PyTorch per recipe: ``benchmarks/engine_report.py`` (``trainer.bench``), on the CPU, and on
  the GPU with ``--gpu`` where one is visible; ``--engine-json PATH`` adds a report measured elsewhere
  (for instance on a GPU machine with ``engine_report.py --device gpu --json PATH``);
- ingestion vs ``pandas.read_csv``: ``benchmarks/ingest_bench.py``;
- a 1 GB upload through the web server and the web processes' memory: ``benchmarks/upload_bench.py``;
- load (dashboard and live metrics latency, queue-to-start): ``benchmarks/load_bench.py``;
- what the worker adds to each epoch (rows, progress, checkpoints) over the bare fit: ``benchmarks/epoch_bench.py``;
- what a sweep's stopping rules save, against the same sweep without them: ``benchmarks/sweep_bench.py``;
- training from a memory-mapped set, batches read ahead vs on demand: ``benchmarks/feed_bench.py``
  (``--feed-json PATH`` adds a report measured elsewhere, e.g. ``feed-gpu.json`` of ``gpu_check.sh``);
- what a registered model's log costs a request, and a prediction job's time per row against one
  request's: ``benchmarks/serve_bench.py``.

Each step (but with ``--quick``) first flushes dirty pages and waits, up to two minutes, for the
1-minute load average to fall below 0.5, so that it does not start on the heat of the one before; the
README says where each started.

Nothing in the README is typed by hand: a step that fails is reported as failed, with its error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "benchmarks" / "README.md"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    memory = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    versions = {}
    for name in ("numpy", "pandas", "pyarrow", "torch", "django", "celery", "cupy"):
        try:
            from importlib import metadata

            versions[name] = metadata.version(name if name != "cupy" else "cupy-cuda12x")
        except metadata.PackageNotFoundError:
            continue
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": memory,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "versions": versions}


# OPENBLAS_CORETYPE pins OpenBLAS to a kernel older than the processor may support (these sandboxes
# set Haswell, AVX2, on AVX-512 machines: a third off the engine's GEMMs, and not PyTorch's, which
# has its own). The steps run without it and OPENBLAS_L2_SIZE unless --keep-blas-env; the engine
# report names the kernel used.
_BLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_keep_blas_env = False
_settle = True  # off with --quick: a smoke run does not wait for a quiet machine


def _environment() -> dict:
    return {k: v for k, v in os.environ.items() if _keep_blas_env or k not in _BLAS_PINS}


SETTLE_LOAD = 0.5  # the 1-minute load average a step waits for (the step before leaves ~1-2)
SETTLE_MAX_S = 120


def settle(below: float = SETTLE_LOAD, longest: float = SETTLE_MAX_S) -> tuple[float, float]:
    """Flush the page cache's dirty pages (the upload step leaves a gigabyte of them, and SQLite's
    commits then wait behind their writeback), then wait until the 1-minute load average is below
    ``below`` (at most ``longest`` seconds), so that each step starts on a machine as quiet as the
    one before it; returns (seconds waited, load)."""
    started = time.perf_counter()
    os.sync()
    while os.getloadavg()[0] >= below and time.perf_counter() - started < longest:
        time.sleep(2)
    return time.perf_counter() - started, round(os.getloadavg()[0], 2)


class Step:
    def __init__(self, name: str, argv: list[str], timeout: float):
        self.name, self.argv, self.timeout = name, argv, timeout
        self.command = " ".join(shlex.quote(a) for a in ["python", *argv[1:]])
        self.rc: int | None = None
        self.seconds = 0.0
        self.stdout = self.stderr = ""
        self.settled = (0.0, None)  # (seconds waited for a quiet machine, 1-minute load average then)

    def run(self) -> Step:
        if _settle:
            self.settled = settle()
        print(f"\n=== {self.name}: {self.command} (load average {self.settled[1]} after {self.settled[0]:.0f} s)",
              flush=True)
        started = time.perf_counter()
        try:
            done = subprocess.run(self.argv, cwd=ROOT, capture_output=True, text=True, timeout=self.timeout,
                                  env={**_environment(), "PYTHONPATH": str(ROOT)}, check=False)
            self.rc, self.stdout, self.stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as error:
            self.rc = -1
            self.stdout = error.stdout.decode(errors="replace") if isinstance(error.stdout, bytes) else (error.stdout or "")
            self.stderr = f"timed out after {self.timeout:.0f} s"
        self.seconds = time.perf_counter() - started
        print(self.stdout[-4000:])
        if self.rc:
            print(self.stderr[-4000:], file=sys.stderr)
        return self

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def failure(self) -> str:
        tail = (self.stderr or self.stdout).strip().splitlines()[-8:]
        return (f"**failed** (exit {self.rc}) after {self.seconds:.0f} s:\n\n```\n" + "\n".join(tail) + "\n```\n")


def _json_block(text: str) -> dict | None:
    """The last top-level JSON object printed with indentation (a line "{" … a line "}")."""
    lines = text.splitlines()
    for end in range(len(lines) - 1, -1, -1):
        if lines[end] == "}":
            for start in range(end, -1, -1):
                if lines[start] == "{":
                    try:
                        return json.loads("\n".join(lines[start:end + 1]))
                    except ValueError:
                        return None
    return None


def _started(step: Step | None) -> str:
    if step is None or step.settled[1] is None:
        return ""
    return f" Started at a 1-minute load average of {step.settled[1]} (after {step.settled[0]:.0f} s waiting for < {SETTLE_LOAD})."


def _engine_section(title: str, step: Step | None, report: dict | None, markdown: str | None, source: str) -> str:
    out = [f"### {title}\n", f"Command: `{source}`.{_started(step)}\n"]
    if step is not None and not step.ok:
        return "\n".join(out) + "\n" + step.failure()
    if report is None:
        return "\n".join(out) + "\nNo report.\n"
    if markdown:
        out.append(markdown.strip() + "\n")
    failed = [r["recipe"] for r in report.get("results", []) if "error" in r.get("cupola", {})]
    if failed:
        out.append(f"Recipes that failed on Cupola's side: {', '.join(failed)}.\n")
    out.append("`cupola/torch` is the ratio of wall-clock training times (below 1: Cupola is faster); quality is "
               "measured on each recipe's held-out split.\n")
    return "\n".join(out)


def _ingest_section(step: Step | None) -> str:
    out = ["## Ingestion vs `pandas.read_csv`\n"]
    if step is None:
        return "\n".join(out) + "\nNot run this time.\n"
    out.append(f"Command: `{step.command}`.{_started(step)}\n")
    report = _json_block(step.stdout) if step.ok else None
    if report is None:
        return "\n".join(out) + "\n" + (step.failure() if not step.ok else "No report parsed.\n")
    speed_ok = report["speed_vs_pandas"] >= 0.8
    rss_ok = report["peak_rss_over_file_size"] < 2
    out += [
        (f"A generated CSV of {report['rows']:,} rows × 20 columns ({report['file_mib']} MiB); best of the runs; "
        f"load average at the end {report.get('load_average')}.\n"),
        "| measure | value | target | met |", "| --- | ---: | --- | --- |",
        f"| `pandas.read_csv` | {report['pandas_read_csv_s']} s | | |",
        f"| Cupola ingestion (sniff, parse, type, statistics, store) | {report['cupola_ingest_s']} s | | |",
        (f"| of which the parse alone ({'compiled reader' if report.get('compiled_reader') else 'pyarrow reader'}) "
         f"| {report.get('cupola_parse_only_s', '-')} s | | |"),
        f"| speed vs pandas (best of each side) | {report['speed_vs_pandas']}× | ≥ 0.8× | {'yes' if speed_ok else 'no'} |",
        (f"| speed vs pandas, back-to-back pairs (median; all) | {report.get('speed_vs_pandas_median_pair', '-')}× "
         f"({', '.join(f'{r}×' for r in report.get('speed_vs_pandas_pairs', []))}) | | |"),
        (f"| Cupola peak RSS | {report['cupola_peak_rss_mib']} MiB (after imports {report['cupola_rss_after_imports_mib']}) "
        f"| | |"),
        f"| peak RSS / file size | {report['peak_rss_over_file_size']}× | < 2× | {'yes' if rss_ok else 'no'} |",
        f"| pandas peak RSS | {report['pandas_peak_rss_mib']} MiB | | |", "",
    ]
    return "\n".join(out)


def _section_start(title: str, step: Step | None, report: dict | None) -> tuple[list[str], str | None]:
    """A section's first lines; and its whole text instead where the step was not run or failed."""
    out = [f"## {title}\n"]
    if step is None:
        return out, "\n".join(out) + "\nNot run this time.\n"
    out.append(f"Command: `{step.command}`.{_started(step)}\n")
    if not step.ok or report is None:
        return out, "\n".join(out) + "\n" + step.failure()
    return out, None


def _upload_section(step: Step | None, report: dict | None) -> str:
    out, ended = _section_start("Upload through the web server", step, report)
    if ended:
        return ended
    out += [
        (f"A {report['file_bytes'] / 1e9:.2f} GB CSV generated while it is sent, one multipart `POST` to the API on "
         f"`manage.py up` (gunicorn, {report['web_processes']} processes); each gunicorn process's RSS sampled "
         "every 20 ms, after two 1 MB uploads that warm the workers up.\n"),
        "| measure | value | target | met |", "| --- | ---: | --- | --- |",
        f"| upload | {report['upload_s']} s ({report['upload_mb_per_s']} MB/s) | | |",
        f"| largest web process RSS before | {report['web_rss_before_mib']} MiB | | |",
        (f"| its largest growth during the upload | {report['web_rss_growth_mib']} MiB "
         f"({report['growth_over_file']:.2%} of the file) | < {report['growth_target']:.0%} of the file "
         f"| {'yes' if report['meets_target'] else 'no'} |"),
        f"| then ingestion on the worker | {report['ingestion']} in {report['ingestion_s']} s | | |", "",
    ]
    return "\n".join(out)


def _load_section(step: Step | None, report: dict | None) -> str:
    out, ended = _section_start("Load: dashboards and live metrics on `manage.py up`", step, report)
    if ended:
        return ended
    config = report["config"]
    out += [
        (f"A workspace with {report['seed']['runs']:,} finished runs ({report['seed']['epochs_per_run']} metric rows "
        f"each) and one run training on the embedded worker meanwhile; loopback; gunicorn with 2 processes × 4 threads "
        f"(`up --web-workers 2 --concurrency 1`). Each client waits {config['interval']} s between requests (the run page "
        f"polls every 2 s). {report['elapsed_s']} s of mixed load, after {config['duration'] / 2:.0f} s of the pollers "
        f"alone.\n"),
        "| endpoint | clients | requests | req/s | errors | p50 ms | p95 ms | max ms | target p95 | SQL queries | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    rows = [("dashboard", config["dashboard_clients"], report["latency"]["dashboard"]),
            ("live metrics", config["metrics_clients"], report["latency"]["live_metrics"]),
            ("live metrics, pollers alone", config["metrics_clients"], report["live_metrics_alone"])]
    for label, clients, row in rows:
        key = "dashboard" if label == "dashboard" else "live_metrics"
        queries = report["queries"].get(key, {}).get("queries", "")
        out.append(f"| {label} | {clients} | {row['requests']} | {row['per_second']} | {row['errors']} | {row['p50_ms']} "
                   f"| {row['p95_ms']} | {row['max_ms']} | < {row['target_p95_ms']:.0f} ms | {queries} "
                   f"| {'yes' if row['meets_target'] else 'no'} |")
    q = report["queue_to_start"]
    out += ["",
            (f"Queue-to-start on an idle embedded worker (`created_at` → `started_at`, {q['samples']} one-epoch runs "
            f"one after another): median {q['median_s'] * 1000:.0f} ms, max {q['max_s'] * 1000:.0f} ms "
            f"(target < 1 s: {'met' if q['meets_target'] else 'missed'}).\n"),
            "Each view rendered once more in-process after the load: " + ", ".join(
                f"{name} {v['queries']} SQL queries, {v['in_process_ms']} ms, {v['bytes']:,} bytes"
                for name, v in report["queries"].items()) + ".\n",
            f"The training run completed {report['training_under_load']['epochs_done']} epochs during the load.\n"]
    return "\n".join(out)


def _epoch_section(step: Step | None, report: dict | None) -> str:
    out, ended = _section_start("What the worker adds to each epoch of a run", step, report)
    if ended:
        return ended
    out += [
        (f"{report['epochs']} epochs of an Iris MLP (batch {report['batch_size']}: a few milliseconds an epoch, where "
         f"reporting costs most), best of {report['rounds']} round(s) in alternating order in one process, on a fresh "
         f"data folder (SQLite in WAL mode, files on disk). The worker's times are the whole `run_execute`: data "
         f"preparation, the test-split evaluation and the final weights included.\n"),
        "| how | seconds | ms per epoch | added per epoch over the bare fit | checkpoint files left |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for mode, seconds in report["seconds"].items():
        added = report["added_ms_per_epoch"].get(mode)
        out.append(f"| {mode} | {seconds:.3f} | {report['ms_per_epoch'][mode]:.2f} "
                   f"| {'' if added is None else f'{added:.2f} ms'} | {report['checkpoint_files'].get(mode, '')} |")
    out += ["", (f"`every epoch written` is the worker writing each epoch's rows and checkpoint when it ends (as it did "
                 f"before rows and checkpoints of short epochs were held back); the default takes "
                 f"{report['default_over_every_epoch']:.2f}× its time.\n")]
    return "\n".join(out)


def _sweep_section(step: Step | None, report: dict | None) -> str:
    out, ended = _section_start("A sweep's stopping rules", step, report)
    if ended:
        return ended
    median, halving = report["stopping"]["median rule"], report["stopping"]["successive halving"]
    full = report["results"]["every run to the end"]
    out += [
        (f"A random search of {full['runs']} runs ({', '.join(report['space'])}) over the 8×8 digits, "
         f"{report['epochs']} epochs each, run one after another by the worker's `run_execute` as one worker takes "
         f"them from its queue; the same sweep with every run trained to the end, with the median rule (from "
         f"epoch {median['grace_epochs']}, at least {median['min_runs']} other runs to compare with) and with "
         f"successive halving (the best 1 in {halving['reduction_factor']} go on at epochs "
         f"{', '.join(map(str, report['rungs']))}, once {halving['min_runs']} others got there).\n"),
        "| sweep | epochs trained | seconds | runs stopped | best run | its best val_accuracy | its test accuracy |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for mode, r in report["results"].items():
        best = r["best"]
        params = ", ".join(f"{k} {v}" for k, v in best["params"].items())
        out.append(f"| {mode} | {r['epochs_trained']} of {r['epochs_asked']} | {r['seconds']:.2f} | {r['stopped']} "
                   f"| {params} | {best['value']:.4f} | {best['test_accuracy']:.4f} |")
    out.append("")
    for mode, ratios in report["rules"].items():
        r = report["results"][mode]
        found = ("the same best run" if ratios["same_best"] else
                 f"**a different best run** (it stopped the best one at epoch {ratios['best_stopped_at']})")
        out.append(f"- {mode.capitalize()} trained {ratios['epochs_ratio']:.2f}× the epochs in {ratios['time_ratio']:.2f}× "
                   f"the time and found {found}; each of its {r['queries']} verdicts (one aggregate query at each epoch "
                   f"it judges) took {r['query_ms']:.2f} ms.")
    out.append("\nEach run's data preparation and test evaluation stay whatever a rule stops.\n")
    return "\n".join(out)


def _serve_section(step: Step | None, report: dict | None) -> str:
    out, ended = _section_start("Serving: the model log and prediction jobs", step, report)
    if ended:
        return ended
    out += [
        (f"An MLP on a generated table of {report['rows']:,} rows, registered as a model; side by side in one "
         f"process (`benchmarks/serve_bench.py`). A {report['request_rows']:,}-row CSV sent {report['repeats']} times "
         f"to `/api/v1/models/<id>/predict` without its log and drift check, then with them (medians); then the "
         f"whole table as a prediction job (`batch.job_execute`, chunks into a CSV) against one request of "
         f"{report['one_request_rows']:,} rows.\n"),
        "| measure | value |",
        "| --- | ---: |",
        f"| request without the log | {report['request_seconds_bare'] * 1000:.1f} ms |",
        f"| request with its log and drift check | {report['request_seconds_logged'] * 1000:.1f} ms |",
        f"| log overhead | {report['log_overhead_ratio']:.2f}× |",
        f"| one request, rows per second | {report['one_request_rows_per_second']:,.0f} |",
        f"| prediction job, rows per second | {report['job_rows_per_second']:,.0f} |",
        f"| job time per row against the request's | {report['job_vs_request_per_row']:.2f}× |",
        "",
    ]
    return "\n".join(out)


def _feed_table(report: dict) -> list[str]:
    out = [(f"{report['rows']:,} digits upsampled to 28×28×1 uint8 ({report['file_mib']} MiB, "
            f"`np.load(mmap_mode=\"r\")`), {report['epochs']} epoch(s) per fit, batch 128, {report['pairs']} rounds "
            f"in alternating order, on the {report['device'].upper()} ({report['blas_threads']} BLAS threads).\n"),
           ("| model | page cache | read ahead samples/s | on demand samples/s | resident samples/s "
            "| on demand / read ahead (time) | resident / read ahead (time) | same losses |"),
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in report["results"]:
        speed = r["samples_per_second"]
        out.append(f"| {r['model']} | {r['page_cache']} | {speed['read ahead']:,.0f} | {speed['on demand']:,.0f} "
                   f"| {speed['resident']:,.0f} | {r['read_ahead_over_on_demand']}× | {r['read_ahead_over_resident']}× "
                   f"| {'yes' if r['identical_losses'] else '**no**'} |")
    return out + [""]


def _feed_section(step: Step | None, report: dict | None, elsewhere: list[dict]) -> str:
    title = "Training from a memory-mapped set: batches read ahead vs on demand"
    out, ended = _section_start(title, step, report)
    if ended and not elsewhere:
        return ended
    if ended:
        out = [ended]
    else:
        out += _feed_table(report)
    for other in elsewhere:
        out += [f"Measured elsewhere ({other.get('source', 'feed report')}):\n", *_feed_table(other)]
    out.append("A ratio above 1 means reading ahead trains faster. By default the thread reads ahead on the GPU "
               "only (`CUPOLA_READ_AHEAD`); `resident` is the same set in memory as float32, moved to the device "
               "once.\n")
    return "\n".join(out)


def write_readme(meta: dict, sections: list[str]) -> None:
    m = meta["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    head = [
        "# Benchmarks\n",
        "<!-- Generated by benchmarks/run_all.py: do not edit by hand; run it again. -->\n",
        f"Measured {meta['date']} with `{meta['command']}` (took {meta['seconds'] / 60:.1f} min).\n",
        (f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']} memory, {m['os']}, Python {m['python']}; {versions}. "
        f"Load average before the run: {meta['load_before']}.\n"),
    ]
    README.write_text("\n".join(head) + "\n" + "\n".join(sections))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run every benchmark and write benchmarks/README.md.")
    parser.add_argument("--quick", action="store_true", help="small versions of each benchmark (minutes, not more)")
    parser.add_argument("--skip", action="append", default=[], choices=("engine", "ingest", "upload", "load", "epoch", "sweep", "feed", "serve"))
    parser.add_argument("--gpu", action="store_true", help="also run the engine recipes on the GPU")
    parser.add_argument("--engine-json", action="append", default=[], metavar="PATH",
                        help="an engine_report.py --json report measured elsewhere, added as its own section")
    parser.add_argument("--feed-json", action="append", default=[], metavar="PATH",
                        help="a feed_bench.py --json report measured elsewhere (feed-gpu.json of gpu_check.sh)")
    parser.add_argument("--keep-blas-env", action="store_true",
                        help=f"keep {' and '.join(_BLAS_PINS)} for the steps (they are dropped by default)")
    args = parser.parse_args(argv)
    global _keep_blas_env, _settle
    _keep_blas_env, _settle = args.keep_blas_env, not args.quick
    command = "python benchmarks/run_all.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    started = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="cupola-bench-"))
    py = sys.executable
    sections = []

    sections.append("## Engine vs PyTorch (`trainer.bench`)\n")
    if "engine" in args.skip:
        sections.append("Not run this time.\n")
    devices = ["cpu"] + (["gpu"] if args.gpu else [])
    for device in devices:
        if "engine" in args.skip:
            break
        out_json, out_md = work / f"engine-{device}.json", work / f"engine-{device}.md"
        argv_ = [py, "benchmarks/engine_report.py", "--device", device, "--json", str(out_json),
                 "--markdown", str(out_md)] + (["--quick"] if args.quick else [])
        step = Step(f"engine on {device}", argv_, timeout=3600).run()
        step.command = step.command.replace(str(out_json), f"engine-{device}.json").replace(str(out_md),
                                                                                         f"engine-{device}.md")
        report = json.loads(out_json.read_text()) if step.ok and out_json.exists() else None
        markdown = out_md.read_text() if step.ok and out_md.exists() else None
        sections.append(_engine_section(f"On the {device.upper()}{' (quick recipes)' if args.quick else ''}",
                                        step, report, markdown, step.command))
    gpu_measured = args.gpu
    for path in args.engine_json:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from engine_report import markdown_table

        report = json.loads(Path(path).read_text())
        gpu_measured = gpu_measured or report["environment"].get("device") == "gpu"
        sections.append(_engine_section(f"Measured elsewhere: {report['environment'].get('device', '?')} "
                                        f"({Path(path).name})", None, report, markdown_table(report),
                                        report.get("command", f"python benchmarks/engine_report.py --json {Path(path).name}")))

    if "engine" not in args.skip and not gpu_measured:
        sections.append("### On the GPU\n\nNot measured in this run: no GPU was at hand. On a GPU machine, "
                        "`OUT=out bash benchmarks/gpu_check.sh` runs the GPU tests and the recipes against PyTorch "
                        "(with and without CUDA graphs, and the large MLP with TF32 on both sides); then "
                        "`python benchmarks/run_all.py --engine-json out/engine-gpu.json --feed-json "
                        "out/feed-gpu.json` adds them here.\n")

    ingest = None
    if "ingest" not in args.skip:
        rows = 200_000 if args.quick else 1_000_000
        ingest = Step("ingestion", [py, "benchmarks/ingest_bench.py", "--rows", str(rows)], timeout=1800).run()
    sections.append(_ingest_section(ingest))

    def json_step(name: str, script: str, extra: list[str], timeout: float) -> tuple[Step | None, dict | None]:
        """Run ``script --json PATH`` unless skipped: the step and the report it wrote (None if it failed)."""
        if name in args.skip:
            return None, None
        out_json = work / f"{name}.json"
        step = Step(name, [py, script, *extra, "--json", str(out_json)], timeout=timeout).run()
        step.command = step.command.replace(f" --json {out_json}", "")
        return step, json.loads(out_json.read_text()) if step.ok and out_json.exists() else None

    upload, upload_report = json_step("upload", "benchmarks/upload_bench.py",
                                      ["--megabytes", "100"] if args.quick else [], 1800)
    sections.append(_upload_section(upload, upload_report))
    load, load_report = json_step("load", "benchmarks/load_bench.py",
                                  ["--duration", "15" if args.quick else "30"], 1200)
    sections.append(_load_section(load, load_report))
    epoch, epoch_report = json_step("epoch", "benchmarks/epoch_bench.py",
                                    ["--epochs", "100", "--rounds", "1"] if args.quick else [], 600)
    sections.append(_epoch_section(epoch, epoch_report))
    sweep, sweep_report = json_step("sweep", "benchmarks/sweep_bench.py", ["--epochs", "10"] if args.quick else [], 600)
    sections.append(_sweep_section(sweep, sweep_report))
    feed, feed_report = json_step("feed", "benchmarks/feed_bench.py",
                                  ["--rows", "20000", "--pairs", "2"] if args.quick else [], 900)
    elsewhere = [{**json.loads(Path(path).read_text()), "source": Path(path).name} for path in args.feed_json]
    sections.append(_feed_section(feed, feed_report, elsewhere))
    serve, serve_report = json_step("serve", "benchmarks/serve_bench.py",
                                    ["--rows", "20000", "--repeats", "5"] if args.quick else ["--repeats", "40"], 900)
    sections.append(_serve_section(serve, serve_report))

    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "command": command,
            "seconds": time.perf_counter() - started, "machine": machine(), "load_before": load_before}
    write_readme(meta, sections)
    print(f"\nwrote {README.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
