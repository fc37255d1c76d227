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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/tlx-bench-dist"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the single process")
    args = parser.parse_args()

    import torch

    from tlexplorer import pipeline
    from tlexplorer.cluster import chunked, start_local_cluster
    from tlexplorer.demo import DEMO_ANALYSIS
    from tlexplorer.pipeline import AnalyzeOptions, analyze

    stages = {}  # seconds of the stages that hold the chunked passes, per run
    for name in ("_stage_predictions", "_stage_conductance", "_stage_weights"):
        def timed(*a, _original=getattr(pipeline, name), _name=name, **k):
            started = time.perf_counter()
            try:
                return _original(*a, **k)
            finally:
                stages[_name] = time.perf_counter() - started

        setattr(pipeline, name, timed)

    run_dir = demo_run(args.work)
    options = AnalyzeOptions(**DEMO_ANALYSIS)
    torch.set_num_threads(args.threads)
    print(f"load average before: {load()}")

    started = time.perf_counter()
    single = analyze(run_dir, args.work / "bundle-single", options=options, progress=False, resume=False)
    single_s = time.perf_counter() - started
    print(f"1 process x {args.threads} threads: {single_s:.1f} s, of which the chunked passes' stages "
          f"{sum(stages.values()):.1f} s (load {load()})")

    captured = []
    original = chunked.run_chunked_passes

    def recording(ctx, client):
        captured.append(original(ctx, client))
        return captured[-1]

    chunked.run_chunked_passes = recording
    started = time.perf_counter()
    cluster, client = start_local_cluster(args.workers, dashboard_address=":0")
    startup_s = time.perf_counter() - started
    try:
        started = time.perf_counter()
        spread = analyze(run_dir, args.work / "bundle-dask", options=options, progress=False, resume=False,
                         client=client)
        dask_s = time.perf_counter() - started
    finally:
        client.close()
        cluster.close()
    stats = captured[0]
    print(f"{args.workers} workers x 1 thread: {dask_s:.1f} s + {startup_s:.1f} s cluster start, of which "
          f"the chunked passes {stats.wall_s:.1f} s and what their stages do on the driver "
          f"{sum(stages.values()):.1f} s (load {load()})")
    print(f"bundles byte-identical (every file's SHA-256): {content(single) == content(spread)}")

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
    over = (t["setup_s"] + t["fetch_s"]) / t["tasks"]
    print(f"conductance chunks ({options.chunk_size} instances): {t['compute_s'] / t['tasks']:.2f} s compute, "
          f"{over:.3f} s loading + transfer ({over / (t['compute_s'] / t['tasks']):.1%})")


if __name__ == "__main__":  # the workers re-import this file when they start: run nothing then
    main()
