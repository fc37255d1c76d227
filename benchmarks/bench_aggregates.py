"""Benchmark: per-class aggregates and the network relation view's update on a focus-class change.

On a synthetic bundle of the digits scenario's shape (10 classes, ``--per-class`` instances per
class and domain, the digits AlexNet's 7 hidden layers of 32/64/96/96/64/256/128 neurons), measures

  (a) one per-class, per-layer aggregate, cold: both rankings, the similarity matrix and its four
      regions, and the weight block into the next layer (target: <= 100 ms);
  (b) a focus-class change with cold caches: every block of the network view computed
      (``BundleAggregates.network_block_data``);
  (c) the same on the server side of the view: ``session.focus_class = c`` until the Bokeh data
      sources hold the new glyphs (aggregates + ``layout_network`` + source updates; target
      <= 300 ms), cold and warm (class seen before);
  (d) ``layout_network`` alone.

    python benchmarks/bench_aggregates.py [--per-class 100] [--dir /tmp/tlx-bench-bundle]
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIGITS_LAYERS = (("features.conv1", "conv", 32), ("features.conv2", "conv", 64),
                 ("features.conv3", "conv", 96), ("features.conv4", "conv", 96),
                 ("features.conv5", "conv", 64), ("classifier.fc6", "linear", 256),
                 ("classifier.fc7", "linear", 128))
CLASSES = tuple(str(i) for i in range(10))
#: Caches that hold bundle-level loads (computed once per server process, not per class).
BUNDLE_LEVEL = ("array", "table", "instances", "neuron_groups", "weight_groups", "layer_metrics")


def synthetic_module():
    spec = importlib.util.spec_from_file_location(
        "tlx_synthetic_bundle", ROOT / "tests" / "app" / "synthetic_bundle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_bundle(directory: Path, per_class: int, k_weights: int):
    syn = synthetic_module()
    if not (directory / "manifest.json").is_file():
        # the pipeline keeps n_important(n1) * n_important(n2) weights per pair; one k for all here
        syn.build_synthetic_content = functools.partial(syn.build_synthetic_content,
                                                        k_weights=k_weights)
        t = time.perf_counter()
        syn.make_synthetic_bundle(directory, classes=CLASSES, per_class=per_class,
                                  layers=DIGITS_LAYERS, seed=0)
        print(f"wrote the synthetic bundle in {time.perf_counter() - t:.1f} s: {directory}")
    return syn.open_test_bundle(directory)


def ms(values):
    return f"median {statistics.median(values) * 1e3:7.1f} ms, max {max(values) * 1e3:7.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--k-weights", type=int, default=120)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    directory = args.dir or Path(tempfile.gettempdir()) / (
        f"tlx-bench-bundle-{args.per_class}-{args.k_weights}")
    bundle = make_bundle(directory, args.per_class, args.k_weights)

    from tlexplorer.aggregates import BundleAggregates
    from tlexplorer.app.state import Session
    from tlexplorer.app.views.network import NetworkView, layout_network
    from tlexplorer.app.views.neuron_detail import feature_vis_service

    names = [n for n, _k, _s in DIGITS_LAYERS]
    m_t = len(bundle.array("rows_target"))
    print(f"bundle: {len(CLASSES)} classes, {m_t} target instances, layers "
          + "/".join(str(s) for _n, _k, s in DIGITS_LAYERS))

    # warm the bundle-level loads (tables, arrays) once: a server has them after the first view
    warm = BundleAggregates(bundle)
    warm.network_block_data(CLASSES[0], names)

    def fresh_aggregates() -> BundleAggregates:
        """Per-class caches empty; bundle-level loads (arrays, tables, split tables) kept."""
        agg = BundleAggregates(bundle)
        for kind in BUNDLE_LEVEL:
            agg._cache(kind)._data.update(warm._cache(kind)._data)
        return agg

    # (a) per class, per layer, cold caches (fresh aggregates per class; bundle arrays loaded)
    per_layer = {n: [] for n in names}
    for cls in CLASSES[1:]:
        agg = fresh_aggregates()
        for i, layer in enumerate(names):
            t = time.perf_counter()
            agg.similarity_block(cls, layer)  # includes both rankings
            if i + 1 < len(names):
                for model in ("source", "target"):
                    agg.weight_block(model, cls, layer, names[i + 1])
            per_layer[layer].append(time.perf_counter() - t)
    print("\n(a) one class, one layer (rankings, similarity + regions, weight blocks), cold:")
    for layer in names:
        print(f"    {layer:16s} {ms(per_layer[layer])}")

    # (b) focus change: all blocks of one class, cold
    agg = fresh_aggregates()
    times = []
    for cls in CLASSES[1:]:
        t = time.perf_counter()
        agg.network_block_data(cls, names)
        times.append(time.perf_counter() - t)
    print(f"\n(b) focus change, all {len(names)} layers' blocks, cold:   {ms(times)}")

    # (c) the view on the server: session.focus_class -> data sources updated
    svc = feature_vis_service(bundle)
    svc.unavailable = "benchmark"
    session = Session(bundle)
    session.focus_class = CLASSES[0]
    import tlexplorer.aggregates as aggregates_module

    aggregates_module._REGISTRY[bundle.key] = fresh_aggregates()
    view = NetworkView(session=session)
    cold, hot = [], []
    for cls in CLASSES[1:]:
        t = time.perf_counter()
        session.focus_class = cls
        cold.append(time.perf_counter() - t)
    for cls in CLASSES[1:]:
        t = time.perf_counter()
        session.focus_class = cls
        hot.append(time.perf_counter() - t)
    n_glyphs = sum(len(next(iter(s.data.values()), [])) for s in view._sources.values())
    print(f"(c) view update (aggregates + layout + sources), cold:  {ms(cold)}")
    print(f"    view update, class seen before (cached aggregates): {ms(hot)}")
    print(f"    glyphs drawn: {n_glyphs}")

    # (d) layout alone
    data = view.data
    lt = []
    for _ in range(10):
        t = time.perf_counter()
        layout_network(data)
        lt.append(time.perf_counter() - t)
    print(f"(d) layout_network alone:                               {ms(lt)}")


if __name__ == "__main__":
    main()
