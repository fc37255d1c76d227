"""Time the instance view's projections: the global t-SNE layout and the on-demand subset re-projection.

Synthetic data: 10 Gaussian clusters in 128 dimensions (like a CNN's pre-FC embedding). Prints a
markdown table: wall-clock seconds, CPU seconds of the process (all threads; on a busy machine it
shows what the work costs when the wall clock does not), and "1-NN same cluster" is the share of points whose nearest 2-D neighbour is of their own
cluster (a quality check: it is ~1.0 for a good layout of well separated clusters).

    python benchmarks/bench_embedding.py                       # N = 2,000 / 20,000 / 100,000
    python benchmarks/bench_embedding.py --sizes 2000 20000 --threads 2 --subset 2000
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def clustered(n: int, d: int = 128, k: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 0.6
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


def same_cluster_1nn(layout: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.neighbors import NearestNeighbors

    _, idx = NearestNeighbors(n_neighbors=2).fit(layout).kneighbors(layout)
    return float((labels[idx[:, 1]] == labels).mean())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 20_000, 100_000],
                        help="numbers of instances for tsne_layout")
    parser.add_argument("--subset", type=int, default=2_000,
                        help="points re-projected by project_subset (from the smallest size's data)")
    parser.add_argument("--threads", type=int, default=2, help="n_jobs for openTSNE")
    parser.add_argument("--dims", type=int, default=128)
    args = parser.parse_args(argv)

    from tlexplorer.analysis.embedding import project_subset, tsne_layout

    rows = []
    for n in args.sizes:
        x, y = clustered(n, args.dims)
        start, cpu_start = time.perf_counter(), time.process_time()
        layout = tsne_layout(x, n_jobs=args.threads)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        rows.append(("`tsne_layout`", f"{n:,}", f"{seconds:.1f}", f"{cpu:.1f}",
                     f"{same_cluster_1nn(layout, y):.3f}"))
        print(f"tsne_layout N={n}: {seconds:.1f} s", flush=True)

    # the instance view re-projects the instances of a few selected classes out of a global layout
    base_n = max(args.subset * 5, 10_000)
    x, y = clustered(base_n, args.dims, seed=1)
    layout = tsne_layout(x, n_jobs=args.threads)
    subset = np.flatnonzero(np.isin(y, np.arange(10)[:5]))[:args.subset]
    for threads in sorted({1, args.threads}):
        start, cpu_start = time.perf_counter(), time.process_time()
        proj = project_subset(x, layout, subset, n_jobs=threads)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        rows.append((f"`project_subset` ({threads} thread{'s' if threads > 1 else ''})",
                     f"{len(subset):,} of {base_n:,}", f"{seconds:.2f}", f"{cpu:.2f}",
                     f"{same_cluster_1nn(proj, y[subset]):.3f}"))
        print(f"project_subset n={len(subset)} threads={threads}: {seconds:.2f} s", flush=True)

    machine = platform.processor() or platform.machine()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    print(f"\n{args.dims}-dim, 10 clusters; n_jobs={args.threads}; {cores} CPUs ({machine}); "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| function | points | wall s | CPU s | 1-NN same cluster |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
