"""The analysis at the paper's size: digits with 1,500 source and all (~180) target images per class,
7 hidden layers, n_steps 50. Prints wall time and memory per stage (from the bundle manifest's
``stages``: resident memory at the stage's start and its peak during the stage) and the whole
analysis over its conductance stage, the ratio docs/performance.md tracks. The stages after the
manifest (class layouts) are in the table ``analyze`` prints before it, with their peak.

Usage: python benchmarks/bench_analyze.py [--work /tmp/tlx-bench] [--per-class 1500] [--n-steps 50]
                                          [--device cpu|cuda] [--max-chunk-mib N]

Training (once per --work and --per-class, on --device) is excluded from every figure.
"""
from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

from tlexplorer.bundle import open_bundle
from tlexplorer.pipeline import AnalyzeOptions, analyze
from tlexplorer.scenarios import load_scenario
from tlexplorer.training import TrainOptions, train_transfer

CONDUCTANCE = "conductance and activations"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/tlx-bench"))
    parser.add_argument("--per-class", type=int, default=1500)
    parser.add_argument("--n-steps", type=int, default=50)
    parser.add_argument("--device", default=None, help="cpu, cuda (default: the GPU when there is one)")
    parser.add_argument("--max-chunk-mib", type=int, default=None)
    args = parser.parse_args()
    if args.device:  # training takes its device from the environment
        os.environ["TLX_DEVICE"] = args.device
    run_dir = args.work / f"run-{args.per_class}"
    if not (run_dir / "config.json").exists():
        data = load_scenario("digits", per_class=args.per_class, data_dir=args.work / "data")
        started = time.perf_counter()
        train_transfer(data, "digits-alexnet", TrainOptions(), run_dir, overwrite=True)
        print(f"train: {time.perf_counter() - started:.0f} s")

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    bundle = analyze(run_dir, args.work / f"bundle-{args.per_class}", resume=False,
                     options=AnalyzeOptions(n_steps=args.n_steps, device=args.device,
                                            max_chunk_mib=args.max_chunk_mib))  # every instance
    total = time.perf_counter() - started
    load_after = os.getloadavg()[0]
    manifest = open_bundle(bundle).manifest
    stages = {stage["name"]: stage for stage in manifest["stages"]}
    print(f"\nper-class {args.per_class}: {manifest['counts']}, n_steps {args.n_steps}, "
          f"device {manifest['options']['device'] or 'auto'}; load average {load_before:.2f} before, "
          f"{load_after:.2f} after")
    print(f"peak RSS per stage ({manifest['peak_rss_scope']}); RSS at its start\n")
    print("| stage | seconds | RSS at start GB | peak RSS GB | peak GPU GB |\n|---|---:|---:|---:|---:|")
    for name, stage in stages.items():
        print(f"| {name} | {stage['seconds']:.1f} | {_gb(stage.get('start_rss_bytes'))} | "
              f"{_gb(stage['peak_rss_bytes'])} | {_gb(stage['peak_device_bytes'])} |")
    peak = max([s["peak_rss_bytes"] or 0 for s in stages.values()]
               + [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024])
    print(f"| **total (analyze call; the process's peak)** | **{total:.1f}** | | {peak / 2**30:.2f} | |")
    for entry in manifest["background"]:
        print(f"| {entry['name']} (beside the stages, not in the total) | {entry['seconds']:.1f} | | |")
    conductance = stages[CONDUCTANCE]["seconds"]
    print(f"\nwhole analysis / conductance stage: {total / conductance:.3f} "
          f"({total:.1f} s / {conductance:.1f} s); everything but conductance: {total - conductance:.1f} s")


def _gb(value: "int | None") -> str:
    return "" if value is None else f"{value / 2**30:.2f}"


if __name__ == "__main__":
    main()
