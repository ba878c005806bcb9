"""Engine benchmark report: the engine against PyTorch on the standard recipes (`trainer.bench`),
as the printed table, a JSON file for `benchmarks/run_all.py`, and a Markdown summary table
that can be pasted into docs or a pull request.

    python benchmarks/engine_report.py                     # full recipes, a few minutes on 2 cores
    python benchmarks/engine_report.py --quick --markdown var/engine.md --json var/engine.json
    python benchmarks/engine_report.py --seeds 5 --recipe cnn_digits

Full runs train each recipe with its ``report_seeds`` per side by default (3; 8 for the LSTM,
whose test R² depends much on the initialisation): quality as mean ± std, the time ratio from
the summed times, and whether the quality rule holds on the means. --quick uses 1 seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer import bench


def _number(value, digits):
    return "-" if value is None else f"{value:,.{digits}f}"


QUICK_SEEDS = 1


def markdown_table(report):
    env = report["environment"]
    lines = [
        f"Engine benchmark {env['date']}{' (quick)' if report['quick'] else ''}: {env['cpu']}, "
        f"{env['threads']} threads, device {env['device']}, BLAS {', '.join(env.get('blas') or ['unknown'])}"
        + bench.cpu_kernels_note(env, ", ") + "; "
        "seeds: training seeds per side "
        "(quality mean ± std over them, times summed)"
        + (f", torch {env['torch_version']}" if "torch_version" in env else ", torch absent")
        + (f", TF32 {env['torch_tf32_matmul']}" if env.get("torch_tf32_matmul") is not None else ""),
        "",
        ("| recipe | seeds | cupola s | torch s | cupola/torch | cupola samples/s | torch samples/s "
         "| cupola quality | torch quality | quality rule |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for row in report["results"]:
        cupola, torch_side = row["cupola"], row.get("torch", {})
        seeds = len(row.get("seeds", [report.get("seed")]))

        def quality(side, seeds=seeds):
            if "error" in side:
                return "failed"
            if "flop_per_second" in side:
                return f"{side['flop_per_second'] / 1e9:.1f} GFLOP/s"
            std = side.get("quality_std", {}) if seeds > 1 else {}
            return ", ".join(f"{k} {v:.4f}" + (f" ± {std[k]:.4f}" if k in std else "")
                             for k, v in side.get("quality", {}).items()) or "-"

        rule = row.get("quality_rule")
        rule_text = "-" if rule is None else ("met" if rule["met"] else "not met: " + ", ".join(
            c["rule"] for c in rule["checks"].values() if not c["met"]))

        lines.append(
            f"| {row['recipe']} | {seeds} | {_number(cupola.get('seconds'), 2)} "
            f"| {_number(torch_side.get('seconds'), 2)} "
            f"| {_number(row.get('time_ratio'), 2)} | {_number(cupola.get('samples_per_second'), 0)} "
            f"| {_number(torch_side.get('samples_per_second'), 0)} | {quality(cupola)} | {quality(torch_side)} "
            f"| {rule_text} |"
        )
    notes = [f"- {row['recipe']}: CUDA graphs: {bench.step_graphs_note(row['cupola']['step_graphs'])}"
             for row in report["results"] if "step_graphs" in row["cupola"]]
    peak = bench.tf32_peak_flops(env.get("gpu_name"))
    for row in report["results"]:
        percent = bench.percent_of_tf32_peak(row["cupola"], env)
        if percent is not None:
            notes.append(f"- {row['recipe']}: {percent:.1f} % of the "
                         f"{env['gpu_name']}'s dense TF32 peak ({peak / 1e12:.0f} TFLOP/s); engine TF32 "
                         f"(CUPY_TF32) {env.get('cupy_tf32')}")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", action="append", choices=bench.ALL_NAMES)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--seeds", type=int,
                        help=f"training seeds per side (default: each recipe's report_seeds, {QUICK_SEEDS} "
                             "with --quick)")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--markdown", metavar="PATH")
    args = parser.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else None)
    try:
        report = bench.run(args.recipe, quick=args.quick, device=args.device, threads=args.threads, seeds=seeds)
    except ValueError as error:  # a bad seed or thread count, or a device that is not there
        parser.error(str(error))
    print(bench.format_report(report))
    table = markdown_table(report)
    print()
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
