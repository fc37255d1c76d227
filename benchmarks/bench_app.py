"""Time the instance view's scatter at 1,000,000 points: datashader raster at several zooms.

Builds an in-memory bundle stand-in with N instances in 10 classes (Gaussian blobs, both domains,
~15% mispredicted), an ``InstanceView`` showing all classes, and then times

- ``render``: the DynamicMap callback alone (count points in range, datashader ``rasterize`` with
  ``count_cat``, shading, spreading, mispredicted halo) for the full view and zooms 2×…64×,
- ``update``: a ``RangeXY`` event on a rendered Bokeh plot (callback + HoloViews/Bokeh model update,
  i.e. what the server does between the user's zoom and the websocket message).

Prints a markdown table: wall-clock and CPU seconds (CPU is what the work costs on a busy box).

    python benchmarks/bench_app.py                 # N = 1,000,000
    python benchmarks/bench_app.py --n 200000 --repeat 5
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import polars as pl


class _MemoryBundle:
    """Just what Session and InstanceView read, in memory (benchmark only, never package code)."""

    def __init__(self, n: int, classes: int = 10, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.classes = [f"class{i}" for i in range(classes)]
        self.layers = [{"name": "features.conv1", "kind": "conv", "neurons": 8}]
        self.manifest = {"classes": self.classes, "layers": self.layers, "scores": {}}
        self.key = f"bench-app-{n}-{seed}"
        self.path = f"/memory/{self.key}"
        label = rng.integers(0, classes, n)
        centres = rng.normal(scale=20.0, size=(classes, 2))
        xy = centres[label] + rng.normal(scale=4.0, size=(n, 2))
        role = np.where(rng.random(n) < 0.5, "source", "target")
        wrong = rng.random(n) < 0.15
        pred = np.where(wrong, (label + 1) % classes, label)
        self._tables = {
            "instances": pl.DataFrame({
                "row": np.arange(n, dtype=np.int64), "instance_id": [f"i{i}" for i in range(n)],
                "role": role, "domain": np.where(role == "source", "printed", "handwritten"),
                "label": label.astype(np.int64),
                "class_name": np.array(self.classes)[label], "source_pred": label.astype(np.int64),
                "target_pred": pred.astype(np.int64), "x": xy[:, 0], "y": xy[:, 1]}),
            "confusion": pl.DataFrame({
                "class": self.classes, "source_accuracy": np.linspace(0.5, 0.9, classes),
                "target_accuracy": np.full(classes, 0.9),
                "target_misclassified": [[{"class": self.classes[(i + 1) % classes],
                                           "count": 3}] for i in range(classes)]}),
        }
        self._thumbs = np.zeros((n, 8, 8, 3), dtype=np.uint8)

    def has(self, name: str) -> bool:
        return name in self._tables

    def table(self, name: str) -> pl.DataFrame:
        return self._tables[name]

    def array(self, name: str):
        if name == "thumbnails":
            return self._thumbs
        raise KeyError(name)


def _timed(fn, repeat: int):
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return float(np.median(walls)), float(np.median(cpus))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="instances")
    parser.add_argument("--repeat", type=int, default=3, help="timings per row (median shown)")
    parser.add_argument("--width", type=int, default=600)
    parser.add_argument("--height", type=int, default=420)
    args = parser.parse_args(argv)

    import holoviews as hv

    from tlexplorer.app.state import Session
    from tlexplorer.app.views.instances import InstanceView, instance_frame, warm_up

    t0 = time.perf_counter()
    warm_up()
    compile_s = time.perf_counter() - t0
    bundle = _MemoryBundle(args.n)
    t0 = time.perf_counter()
    instance_frame(bundle)
    frame_s = time.perf_counter() - t0
    session = Session(bundle)
    t0 = time.perf_counter()
    session.selected_classes = list(bundle.classes)
    view = InstanceView(session=session)
    view_s = time.perf_counter() - t0
    (x0, x1), (y0, y1) = view.extent()
    cx, cy = (x0 + x1) / 2 + 3.0, (y0 + y1) / 2 - 2.0
    w, h = args.width, args.height

    print(f"# bench_app: N = {args.n:,} points, {len(bundle.classes)} classes, "
          f"raster {w}×{h}, threshold {view.raster_threshold:,}")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"numba warm-up {compile_s:.2f} s · shared instance frame {frame_s:.2f} s · "
          f"view (all classes) {view_s:.2f} s\n")
    print("| step | zoom | visible points | mode | wall s | CPU s |")
    print("|---|---|---:|---|---:|---:|")
    for zoom in (1, 2, 8, 64, 2000):
        hx, hy = (x1 - x0) / (2 * zoom), (y1 - y0) / (2 * zoom)
        xr, yr = (cx - hx, cx + hx), (cy - hy, cy + hy)

        def render():
            view._render(x_range=xr, y_range=yr, width=w, height=h, revision=view.revision)
        render()
        wall, cpu = _timed(render, args.repeat)
        print(f"| render | {zoom}× | {view.visible_count:,} | {view.mode} | {wall:.3f} | "
              f"{cpu:.3f} |")

    # the server's whole update after a zoom: stream event → callback → Bokeh model update
    plot = hv.renderer("bokeh").get_plot(view.plot())
    plot.state.width, plot.state.height = w, h
    stream = view._range
    for zoom in (1, 4, 16):
        hx, hy = (x1 - x0) / (2 * zoom), (y1 - y0) / (2 * zoom)

        shift = iter(np.linspace(0, hx * 0.1, args.repeat))

        def update(hx=hx, hy=hy):  # a slightly different range each time: a real pan/zoom
            d = next(shift)
            stream.event(x_range=(cx - hx + d, cx + hx + d), y_range=(cy - hy, cy + hy))
        wall, cpu = _timed(update, args.repeat)
        print(f"| update | {zoom}× | {view.visible_count:,} | {view.mode} | {wall:.3f} | "
              f"{cpu:.3f} |")


if __name__ == "__main__":
    main()
