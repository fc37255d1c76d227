"""The analysis at the paper's size: digits with 1,500 source and all (~180) target images per class,
7 hidden layers, n_steps 50. Prints wall time per stage and peak memory.

Usage: python benchmarks/bench_analyze.py [--work /tmp/tlx-bench] [--per-class 1500] [--n-steps 50]
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from tlexplorer import pipeline
from tlexplorer.pipeline import AnalyzeOptions, analyze
from tlexplorer.scenarios import load_scenario
from tlexplorer.training import TrainOptions, train_transfer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/tlx-bench"))
    parser.add_argument("--per-class", type=int, default=1500)
    parser.add_argument("--n-steps", type=int, default=50)
    args = parser.parse_args()
    run_dir = args.work / f"run-{args.per_class}"
    if not (run_dir / "config.json").exists():
        data = load_scenario("digits", per_class=args.per_class, data_dir=args.work / "data")
        started = time.perf_counter()
        train_transfer(data, "digits-alexnet", TrainOptions(), run_dir, overwrite=True)
        print(f"train: {time.perf_counter() - started:.0f} s")

    stages = {}
    for name in [n for n in dir(pipeline) if n.startswith("_stage_")]:
        original = getattr(pipeline, name)

        def timed(*a, _original=original, _name=name, **k):
            t0 = time.perf_counter()
            try:
                return _original(*a, **k)
            finally:
                stages[_name] = time.perf_counter() - t0

        setattr(pipeline, name, timed)
    started = time.perf_counter()
    analyze(run_dir, args.work / f"bundle-{args.per_class}", resume=False,
            options=AnalyzeOptions(n_steps=args.n_steps))  # every instance of both domains
    total = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print("| stage | seconds |\n|---|---:|")
    for name, seconds in stages.items():
        print(f"| {name[len('_stage_'):]} | {seconds:.0f} |")
    print(f"| **total** | **{total:.0f}** |\n\npeak memory (max RSS): {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
