"""Benchmark: the full default `train` on the built-in digits scenario (source + fine-tune + per-epoch
evaluations), with the acceptance checks of the training issue.

    python benchmarks/bench_train.py                 # default options, a temporary run directory
    python benchmarks/bench_train.py --out runs/digits --threads 2 --progress

The one-time generation of the digits data is timed separately and excluded from the train time.
Timings on shared machines are noisy: note `uptime`'s load average (printed) with any number quoted.

Acceptance (CPU, default settings): source model >= 0.90 on source_val, target model >= 0.90 on
target_val, the source model's target_val accuracy at least 0.20 below the target model's, and the
train <= 240 s. Exit status 1 when a check fails (with --check).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

LIMIT_S = 240.0


def _load() -> "tuple[float, float, float]":
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="run directory (default: a temporary one, deleted afterwards)")
    parser.add_argument("--data-dir", help="digits data cache (default: TLX_DATA_DIR or ./data)")
    parser.add_argument("--threads", type=int, help="TrainOptions.num_threads (default: torch's, lowered to the idle cores)")
    parser.add_argument("--device", default="cpu", help="cpu (default, as the acceptance says), auto, cuda")
    parser.add_argument("--progress", action="store_true", help="show the per-epoch progress bars")
    parser.add_argument("--check", action="store_true", help="exit 1 when an acceptance check fails")
    args = parser.parse_args(argv)

    import torch

    from tlexplorer.scenarios.digits import load_digits_scenario
    from tlexplorer.training import TrainOptions, train_transfer

    load = _load()
    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load average {' '.join(f'{x:.2f}' for x in load)}")

    t0 = time.perf_counter()
    data = load_digits_scenario(data_dir=args.data_dir, progress=args.progress)
    t_data = time.perf_counter() - t0
    print(f"data: {t_data:.1f} s (generated or read from the cache; excluded), "
          + ", ".join(f"{s.role}_{s.split} {len(s)}" for s in data.splits()))

    options = TrainOptions(device=args.device, num_threads=args.threads)
    print("options:", options.to_dict())

    def report(event):
        if not args.progress:
            m = event["metrics"]
            print(f"  {event['model']} epoch {event['epoch']:2d}/{event['epochs']}  {event['seconds']:5.1f} s  "
                  + "  ".join(f"{k} {v['accuracy']:.3f}" for k, v in m.items()), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "run"
        t0 = time.perf_counter()
        result = train_transfer(data, {"name": "digits-alexnet"}, options, out, progress=args.progress,
                                callback=report, overwrite=bool(args.out))
        t_train = time.perf_counter() - t0

    sec = result.seconds
    print(f"threads used: {result.config['num_threads']}")
    final, best = result.final_accuracies(), result.best_accuracies()
    src_on_src = final["source"]["source_val"]
    tgt_on_tgt = final["target"]["target_val"]
    src_on_tgt = best["source"]["target_val"]
    score = best["target"]["target_val"] - best["source"]["target_val"]
    print(f"time: train {t_train:.1f} s = {t_train / 60:.2f} min (source {sec['source']:.1f} s incl. eval "
          f"{sec['source_eval']:.1f} s; target {sec['target']:.1f} s incl. eval {sec['target_eval']:.1f} s; "
          f"prepare {sec['prepare']:.1f} s; writing the rest)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in _load())}")
    print(f"source model: source_val {src_on_src:.3f}, source_train {final['source']['source_train']:.3f}, "
          f"target_val {final['source']['target_val']:.3f} (best {src_on_tgt:.3f})")
    print(f"target model: target_val {tgt_on_tgt:.3f}, target_train {final['target']['target_train']:.3f}, "
          f"source_val {final['target']['source_val']:.3f}")
    print(f"transferability score (best target - best source on target_val): {score:+.3f}")
    checks = {
        "source model >= 0.90 on source_val": src_on_src >= 0.90,
        "target model >= 0.90 on target_val": tgt_on_tgt >= 0.90,
        "source model (best epoch) >= 0.20 below target model on target_val": tgt_on_tgt - src_on_tgt >= 0.20,
        f"train <= {LIMIT_S:.0f} s": t_train <= LIMIT_S,
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 1 if args.check and not all(checks.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
