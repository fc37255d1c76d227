"""The demo's analysis on one process against a local Dask cluster, and what each chunk costs.

Trains the demo's run once (digits, 1,000 printed images per class, default training), then analyses
it with the demo's settings (150 source images per class, every target image, n_steps 32) twice:
1 process with 2 torch threads, and 2 Dask workers of 1 thread each. Checks that both bundles are the
same byte for byte and prints both times and the per-chunk figures of the cluster run: compute,
model/data loading, and everything else a chunk costs (scheduling, serialisation, transfer, the
driver's writes, idle workers at the end).

Usage: python benchmarks/bench_distributed.py [--work /tmp/tlx-bench-dist] [--workers 2] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def content(bundle: Path) -> dict:
    """The manifest without its creation time: it holds every file's SHA-256, taken as written."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.pop("created")
    return manifest


def demo_run(work: Path) -> Path:
    from tlexplorer.scenarios import load_scenario
    from tlexplorer.training import TrainOptions, train_transfer

    run_dir = work / "run"
    if not (run_dir / "config.json").exists():
        data = load_scenario("digits", per_class=1000, data_dir=work / "data", progress=False)
        started = time.perf_counter()
        train_transfer(data, {"name": "digits-alexnet", "num_classes": len(data.classes)}, TrainOptions(),
                       run_dir, progress=False, overwrite=True)
        print(f"train: {time.perf_counter() - started:.0f} s")
    return run_dir


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def per_chunk_report(stats, chunk_size: int) -> None:
    totals = stats.totals
    n = sum(t["tasks"] for t in totals.values())
    compute = sum(t["compute_s"] for t in totals.values())
    setup = sum(t["setup_s"] for t in totals.values())
    rest = stats.wall_s * stats.workers - compute - setup
    print(f"\nchunked passes: {stats.wall_s:.1f} s wall on {stats.workers} workers, {n} chunks")
    print("| pass | chunks | compute s | loading s | driver: fetch s | driver: write s | result KB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, t in totals.items():
        k = t["tasks"]
        print(f"| {kind} | {k} | {t['compute_s'] / k:.3f} | {t['setup_s'] / k:.3f} | {t['fetch_s'] / k:.4f} "
              f"| {t['store_s'] / k:.4f} | {t['bytes'] / k / 1024:.0f} |")
    print("(per chunk: compute and model/data loading on a worker; receiving and writing on the driver)")
    print(f"\noverhead per chunk, all passes: loading {setup / n:.3f} s + the rest of the workers' time "
          f"(scheduling, serialisation, idle tail) {rest / n:.3f} s = {(setup + rest) / n:.3f} s against "
          f"{compute / n:.3f} s of compute ({(setup + rest) / compute:.1%})")
    t = totals["conductance"]
    over = (t["setup_s"] + t["fetch_s"] + t["store_s"]) / t["tasks"]
    print(f"conductance chunks ({chunk_size} instances): {t['compute_s'] / t['tasks']:.2f} s compute, "
          f"{over:.3f} s loading, transfer and writing ({over / (t['compute_s'] / t['tasks']):.1%})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/tlx-bench-dist"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the single process")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each")
    args = parser.parse_args()

    import torch

    from tlexplorer import pipeline
    from tlexplorer.cluster import chunked, start_local_cluster
    from tlexplorer.demo import DEMO_ANALYSIS
    from tlexplorer.pipeline import AnalyzeOptions, analyze

    stages = {}  # seconds of the stages that hold the chunked passes, in the last run
    for name in ("_stage_predictions", "_stage_conductance", "_stage_weights"):
        def timed(*a, _original=getattr(pipeline, name), _name=name, **k):
            started = time.perf_counter()
            try:
                return _original(*a, **k)
            finally:
                stages[_name] = time.perf_counter() - started

        setattr(pipeline, name, timed)
    captured = []
    original = chunked.run_chunked_passes

    def recording(ctx, client):
        captured.append(original(ctx, client))
        return captured[-1]

    chunked.run_chunked_passes = recording

    run_dir = demo_run(args.work)
    options = AnalyzeOptions(**DEMO_ANALYSIS)
    torch.set_num_threads(args.threads)
    single_runs, dask_runs, same = [], [], []
    for repeat in range(args.repeats):  # interleaved: other jobs on the machine hit both alike
        before = load()
        started = time.perf_counter()
        single = analyze(run_dir, args.work / "bundle-single", options=options, progress=False, resume=False)
        single_runs.append(time.perf_counter() - started)
        print(f"1 process x {args.threads} threads: {single_runs[-1]:.1f} s, of which the stages with the "
              f"chunked passes {sum(stages.values()):.1f} s (load before {before}, after {load()})")

        before = load()
        started = time.perf_counter()
        cluster, client = start_local_cluster(args.workers, dashboard_address=":0")
        startup_s = time.perf_counter() - started
        try:
            started = time.perf_counter()
            spread = analyze(run_dir, args.work / "bundle-dask", options=options, progress=False,
                             resume=False, client=client)
            dask_runs.append(time.perf_counter() - started)
        finally:
            client.close()
            cluster.close()
        print(f"{args.workers} workers x 1 thread: {dask_runs[-1]:.1f} s + {startup_s:.1f} s cluster start, of "
              f"which the chunked passes {captured[-1].wall_s:.1f} s and the rest of their stages "
              f"{sum(stages.values()):.1f} s (load before {before}, after {load()})")
        same.append(content(single) == content(spread))
    print(f"bundles byte-identical (every file's SHA-256): {all(same)}")
    best = min(range(args.repeats), key=lambda i: dask_runs[i])
    print(f"fastest: 1 process {min(single_runs):.1f} s, {args.workers} workers {dask_runs[best]:.1f} s")
    per_chunk_report(captured[best], options.chunk_size)


if __name__ == "__main__":  # the workers re-import this file when they start: run nothing then
    main()
