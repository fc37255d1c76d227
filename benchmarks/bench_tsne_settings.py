"""Where the time of the analysis's t-SNE goes, per phase, for each thread count and gradient method.

Phases of ``tsne_layout``: PCA to 50 dimensions, the perplexity affinities (exact kNN + calibration),
the PCA initialisation, and the 750 iterations (250 early exaggeration + 500) with the negative
gradient by FFT interpolation (openTSNE's ``fft``: single-threaded in openTSNE 1.0, only the attractive
forces use ``n_jobs``) or Barnes-Hut (``bh``: every part uses ``n_jobs``). "1-NN same label" is the
share of points whose nearest 2-D neighbour has their label (a quality check).

    python benchmarks/bench_tsne_settings.py --embedding BUNDLE/arrays/embedding.npy \\
        --labels BUNDLE/arrays/predictions/target.npy --threads 1 2
    python benchmarks/bench_tsne_settings.py --synthetic 16797        # 10 clusters, 128-D
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _clock():
    return time.perf_counter(), time.process_time()


def _since(start):
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def one_run(x, labels, n_jobs: int, method: str, blas_threads: "int | None", iterations: tuple):
    from openTSNE import TSNEEmbedding, initialization
    from threadpoolctl import threadpool_limits

    from tlexplorer.analysis.embedding import _affinities, prepare_embeddings

    times = {}
    with threadpool_limits(blas_threads):
        t = _clock()
        z = prepare_embeddings(x, random_state=0)
        times["pca"] = _since(t)
        t = _clock()
        aff = _affinities(z, 30.0, n_jobs, 0, False)
        times["affinities"] = _since(t)
        t = _clock()
        init = initialization.pca(z, random_state=0)
        times["init"] = _since(t)
    t = _clock()
    emb = TSNEEmbedding(init, aff, negative_gradient_method=method, n_jobs=n_jobs, random_state=0)
    early, normal = iterations
    emb = emb.optimize(n_iter=early, exaggeration=12, momentum=0.5)
    emb = emb.optimize(n_iter=normal, momentum=0.8)
    times["optimize"] = _since(t)
    layout = np.asarray(emb)
    quality = None
    if labels is not None:
        from sklearn.neighbors import NearestNeighbors

        _, idx = NearestNeighbors(n_neighbors=2).fit(layout).kneighbors(layout)
        quality = float((labels[idx[:, 1]] == labels).mean())
    return times, quality, float(emb.kl_divergence)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedding", help=".npy of (instances, features)")
    parser.add_argument("--labels", help=".npy of (instances,) int labels for the quality check")
    parser.add_argument("--synthetic", type=int, default=None, help="points of synthetic clusters instead")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--methods", nargs="+", default=["fft", "bh"])
    parser.add_argument("--iterations", type=int, nargs=2, default=[250, 500])
    parser.add_argument("--blas", choices=["same", "one", "free"], default="same",
                        help="BLAS threads during PCA and kNN: as n_jobs, 1, or the library's default")
    args = parser.parse_args(argv)
    if args.synthetic:
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 10, args.synthetic)
        x = (rng.normal(size=(10, 128))[labels] * 0.6 + rng.normal(size=(args.synthetic, 128))).astype(np.float32)
    else:
        x = np.load(args.embedding)
        labels = np.load(args.labels) if args.labels else None
    print(f"{len(x)} points, {x.shape[1]} features; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}")
    print("| method | n_jobs | BLAS | PCA s | affinities s | init s | optimize s (CPU s) | total s | 1-NN same label | KL |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for method in args.methods:
        for n_jobs in args.threads:
            blas = {"same": n_jobs, "one": 1, "free": None}[args.blas]
            times, quality, kl = one_run(x, labels, n_jobs, method, blas, tuple(args.iterations))
            total = sum(w for w, _ in times.values())
            q = "" if quality is None else f"{quality:.3f}"
            print(f"| {method} | {n_jobs} | {args.blas} | {times['pca'][0]:.1f} | {times['affinities'][0]:.1f} | "
                  f"{times['init'][0]:.1f} | {times['optimize'][0]:.1f} ({times['optimize'][1]:.1f}) | "
                  f"{total:.1f} | {q} | {kl:.3f} |", flush=True)
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
