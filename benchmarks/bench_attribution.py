"""Benchmark: Layer Conductance of all hidden layers in one pass vs captum, and weight contributions.

Seconds per image, median over repeats, for
  (a) captum ``LayerConductance`` looped over the 7 hidden layers,
  (b) ``tlexplorer.analysis.layer_conductance`` (all layers, one path),
  (c) the floor: one batched forward + backward of the N * (n_steps + 1) path points, nothing else;
      (c1) backward to the input (what IntegratedGradients costs), (c2) backward only down to the
      first hidden layer's output (the least backward any conductance of that layer needs),
on digits-alexnet (32x32) and torchvision alexnet (224x224), and with ``--models`` also resnet18
(224x224, 20 hidden layers; captum is skipped there: looped over 20 layers it takes hours on a CPU
and ran out of 139 GB on a GPU), random weights, eval mode, and weight contributions conv -> conv vs
a brute-force grouped convolution (CPU only).

It also prints the multiply-accumulate (MAC) bound on (a)/(b): captum's call for layer l costs a
full forward F plus a backward down to l, B_l (the data gradients of every conv/linear after l);
ours costs one F (the first conv on 2 of the n_steps + 1 points) plus B_1. Elementwise ops are not
counted, so measured ratios above the bound come from captum's per-call overheads.

    python benchmarks/bench_attribution.py --write docs/performance.md

writes the table into the "Attribution" section of ``docs/performance.md`` (between markers);

    python benchmarks/bench_attribution.py --captum-batches 1,2,4,8

only prints captum's seconds per image on AlexNet-224 for those numbers of images per call;

    python benchmarks/bench_attribution.py --device cuda --models digits-alexnet,alexnet,resnet18 \
        --digits-images 256 --alexnet-images 32 --resnet-images 32

runs everything on the GPU (each timing synchronises the device first and last).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import captum  # noqa: E402
from captum.attr import LayerConductance  # noqa: E402

from tlexplorer.analysis.attribution import layer_conductance  # noqa: E402
from tlexplorer.analysis.contributions import conv_contributions  # noqa: E402
from tlexplorer.models import build_model, hidden_layers  # noqa: E402

START, END = "<!-- bench_attribution:start -->", "<!-- bench_attribution:end -->"
METHOD = "riemann_trapezoid"


def path_points(x, n_steps):
    alphas = torch.linspace(0, 1, n_steps + 1, dtype=x.dtype, device=x.device)
    return torch.cat([a * x for a in alphas])


DEVICE = torch.device("cpu")  # set by --device


def run_captum(model, names, x, t, n_steps, ibs=None):
    for name in names:
        LayerConductance(model, model.get_submodule(name)).attribute(
            x, target=t, n_steps=n_steps, method=METHOD, internal_batch_size=ibs)


def run_ours(model, names, x, t, n_steps, ibs=None):
    layer_conductance(model, names, x, t, n_steps=n_steps, method=METHOD, device=DEVICE,
                      internal_batch_size=ibs, completeness_tol=None)


def run_floor_input(model, names, x, t, n_steps):
    """(c1): forward + backward to the input, default layout (what integrated gradients costs)."""
    points = path_points(x, n_steps).requires_grad_()
    out = model(points).gather(1, t.repeat(n_steps + 1).unsqueeze(1)).sum()
    torch.autograd.grad(out, points)


def run_floor_first_layer(model, names, x, t, n_steps):
    """(c2): forward + backward down to the first hidden layer's output only, channels-last like
    ours on the CPU (contiguous on a GPU, as ours): the least any conductance of that layer can cost."""
    kept = []
    handle = model.get_submodule(names[0]).register_forward_hook(lambda m, i, o: kept.append(o))
    try:
        layout = torch.channels_last if x.device.type == "cpu" else torch.contiguous_format
        points = path_points(x, n_steps).contiguous(memory_format=layout)
        out = model(points).gather(1, t.repeat(n_steps + 1).unsqueeze(1)).sum()
    finally:
        handle.remove()
    torch.autograd.grad(out, kept)


def brute_force(a, conv):
    w = conv.weight.detach()
    c_out, c_in, kh, kw = w.shape
    grouped = w.transpose(0, 1).reshape(c_in * c_out, 1, kh, kw)
    maps = F.conv2d(a, grouped, None, conv.stride, conv.padding, conv.dilation, groups=c_in)
    return maps.sum(dim=(2, 3)).view(a.shape[0], c_in, c_out)


def macs_in_order(model, size):
    """``[(module name, MACs per image)]`` of every conv/linear, in forward order."""
    rows = []

    def count(name):
        def fn(module, inputs, output):
            if isinstance(module, torch.nn.Conv2d):
                per_output = module.in_channels // module.groups * module.weight[0, 0].numel()
                rows.append((name, output[0].numel() * per_output))
            else:
                rows.append((name, module.in_features * module.out_features))
        return fn

    handles = [m.register_forward_hook(count(n)) for n, m in model.named_modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return rows


def mac_bound(model, names, size, n_steps):
    """captum's MACs / ours for one image: sum_l (F + B_l) / (F' + B_1), see the module docstring."""
    rows = macs_in_order(model, size)
    order = [name for name, _ in rows]
    forward = sum(m for _, m in rows)

    def backward_to(layer):
        return sum(m for _, m in rows[order.index(layer) + 1:])

    captum_macs = sum(forward + backward_to(layer) for layer in names)
    first_on_ends = rows[0][1] * (n_steps - 1) / (n_steps + 1) if order[0] == names[0] else 0
    return captum_macs / (forward - first_on_ends + backward_to(names[0]))


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def timed(fn, *args):
    _sync()
    start = time.perf_counter()
    fn(*args)
    _sync()
    return time.perf_counter() - start


def bench_conductance(label, model, size, n, n_steps, repeats, ibs_points, captum_too=True):
    names = [layer.name for layer in hidden_layers(model)]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=gen).to(DEVICE)
    t = torch.randint(0, 10, (n,), generator=gen).to(DEVICE)
    model = model.to(DEVICE)
    ibs = ibs_points * n  # memory-bounded variant: ibs_points path points per instance per pass
    fns = {"captum": run_captum, "ours": run_ours, "floor_input": run_floor_input,
           "floor_first": run_floor_first_layer,
           "captum_ibs": lambda *a: run_captum(*a, ibs=ibs), "ours_ibs": lambda *a: run_ours(*a, ibs=ibs)}
    if not captum_too:
        for key in ("captum", "captum_ibs"):
            del fns[key]
    for fn in fns.values():  # warm-up at full size, few steps: allocator, thread pool, imports
        fn(model, names, x, t, 4)
    times = {key: [] for key in fns}
    for _ in range(repeats):  # interleaved, so that load changes hit every variant alike
        for key, fn in fns.items():
            times[key].append(timed(fn, model, names, x, t, n_steps) / n)
    med = {key: statistics.median(v) for key, v in times.items()}
    best = {key: min(v) for key, v in times.items()}
    print(f"{label}: " + ", ".join(f"{k} {v:.4f} s/img ({', '.join(f'{s:.3f}' for s in times[k])})"
                                   for k, v in med.items()), flush=True)
    nan = float("nan")
    for key in ("captum", "captum_ibs"):
        med.setdefault(key, nan)
        best.setdefault(key, nan)
    med["bound"] = best["bound"] = mac_bound(model, names, size, n_steps) if captum_too else nan
    med["layers"] = best["layers"] = len(names)
    return med, best


def bench_contributions(label, model, layer_to, size, n, repeats):
    conv = model.get_submodule(layer_to)
    kept = []
    handle = conv.register_forward_pre_hook(lambda m, i: kept.append(i[0].detach()))
    try:
        with torch.no_grad():
            model(torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0)))
    finally:
        handle.remove()
    a = kept[0]
    threads = torch.get_num_threads()
    med = {}
    with torch.no_grad():
        torch.testing.assert_close(conv_contributions(a, conv), brute_force(a, conv), rtol=1e-3, atol=1e-3)
        # Also on one thread: ours is a few tiny GEMMs whose parallel regions mostly wait for the
        # second core when other jobs share it; the brute force is heavy enough not to notice.
        for n_threads in (threads, 1):
            torch.set_num_threads(n_threads)
            med[n_threads] = {}
            for key, fn in (("ours", conv_contributions), ("brute", brute_force)):
                # Warm-up by time: with 2 threads the first ~0.3 s of tiny ops after the model
                # passes run ~50x slower (thread pool settling), then stay fast.
                start, calls = time.perf_counter(), 0
                while calls < 3 or time.perf_counter() - start < 1.0:
                    fn(a, conv)
                    calls += 1
                med[n_threads][key] = statistics.median(timed(fn, a, conv) / n for _ in range(repeats))
    torch.set_num_threads(threads)
    print(f"{label}: " + "; ".join(f"{k} threads: ours {v['ours']:.2e} s/img, brute force "
                                   f"{v['brute']:.2e} s/img" for k, v in med.items()), flush=True)
    return med, tuple(a.shape[1:]), tuple(conv.weight.shape)


def captum_batch_scan(model, batches, n_steps):
    """Captum's seconds per image (fastest of 2) for each number of images per call."""
    names = [layer.name for layer in hidden_layers(model)]
    gen = torch.Generator().manual_seed(0)
    for n in batches:
        x = torch.randn(n, 3, 224, 224, generator=gen)
        t = torch.randint(0, 10, (n,), generator=gen)
        run_captum(model, names, x, t, 4)
        best = min(timed(run_captum, model, names, x, t, n_steps) / n for _ in range(2))
        print(f"alexnet 224x224, {n} images per call: captum {best:.3f} s/img", flush=True)


def _f(value: float, spec: str, suffix: str = "") -> str:
    """A number, or n/a for a variant that was not run (NaN)."""
    return "n/a" if value != value else f"{value:{spec}}{suffix}"


def table(results, contrib, args, load_before, load_after) -> str:
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()} "
        f"({os.cpu_count()} cores), torch {torch.__version__}, captum {captum.__version__}, "
        f"{torch.cuda.get_device_name(DEVICE) if DEVICE.type == 'cuda' else 'CPU'}, "
        f"`torch.set_num_threads({args.threads})`, n_steps={args.n_steps} ({METHOD}), random "
        f"weights, eval mode, float32; {args.repeats} interleaved repeats; load average "
        f"{load_before:.1f} before, {load_after:.1f} after.",
        "",
        "Seconds per image with `internal_batch_size=None`: captum evaluates all path points of a "
        "layer in one pass, ours picks its chunk size automatically (on the CPU about 64 MiB of "
        "hooked outputs per pass, on a GPU a tenth of its free memory); both floors are one pass "
        "over all path points. Captum is not run on resnet18 (n/a). \"MAC "
        "bound\": captum's multiply-accumulates over ours (conv and linear layers only), what "
        "(a)/(b) would be if both ran at the same MACs per second.",
        "",
        "| model (input, images) | (a) captum × each layer | (b) ours | (c1) floor: fwd + bwd to input "
        "| (c2) floor: fwd + bwd to 1st layer, channels-last | (a)/(b) | MAC bound on (a)/(b) "
        "| (b)/(c1) | (b)/(c2) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, (med, best) in results:
        for what, m in (("median", med), ("fastest", best)):
            lines.append(
                f"| {label}, {what} | {_f(m['captum'], '.3f')} | {m['ours']:.3f} | {m['floor_input']:.3f} | "
                f"{m['floor_first']:.3f} | **{_f(m['captum'] / m['ours'], '.1f', '×')}** | {_f(m['bound'], '.2f', '×')} | "
                f"{m['ours'] / m['floor_input']:.2f} | {m['ours'] / m['floor_first']:.2f} |")
    lines += ["", "Rows \"fastest\": each variant's fastest repeat - other jobs on the shared cores "
              "only ever add time, so these are the less noisy estimate.",
              "", f"Memory-bounded, `internal_batch_size = {args.ibs_points} × images` for both "
              "(captum re-evaluates the step shared by consecutive chunks, ours carries it over):", "",
              "| model (input, images) | (a) captum × each layer | (b) ours | (a)/(b) |", "|---|---|---|---|"]
    for label, (med, best) in results:
        for what, m in (("median", med), ("fastest", best)):
            lines.append(f"| {label}, {what} | {_f(m['captum_ibs'], '.3f')} | {m['ours_ibs']:.3f} | "
                         f"**{_f(m['captum_ibs'] / m['ours_ibs'], '.1f', '×')}** |")
    if not contrib:
        return "\n".join(lines)
    lines += ["", "Weight contributions conv → conv (`conv_contributions` on the captured input of "
              "layer_to vs a brute-force grouped convolution), seconds per image:", "",
              "| pair (input of layer_to, kernel) | threads | ours (patch sums) | brute-force grouped conv "
              "| speed-up |", "|---|---|---|---|---|"]
    for label, (med, a_shape, w_shape) in contrib:
        for n_threads, m in med.items():
            lines.append(f"| {label} ({a_shape}, {w_shape}) | {n_threads} | {m['ours']:.2e} | "
                         f"{m['brute']:.2e} | **{m['brute'] / m['ours']:.0f}×** |")
    return "\n".join(lines)


def write_section(path: Path, body: str, command: str) -> None:
    block = f"{START}\nRegenerate with `{command}`.\n\n{body}\n{END}"
    text = path.read_text() if path.exists() else "# Performance\n"
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Attribution\n\n" + block + "\n"
    path.write_text(text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--models", default="digits-alexnet,alexnet",
                        help="comma-separated: digits-alexnet, alexnet, resnet18")
    parser.add_argument("--resnet-images", type=int, default=2)
    parser.add_argument("--n-steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--digits-images", type=int, default=16)
    parser.add_argument("--alexnet-images", type=int, default=2)
    parser.add_argument("--ibs-points", type=int, default=8,
                        help="memory-bounded variant: path points per image per pass")
    parser.add_argument("--write", type=Path, default=None, help="markdown file to update")
    parser.add_argument("--captum-batches", default=None,
                        help="only scan captum's s/img on AlexNet-224 over these images per call, e.g. 1,2,4,8")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA GPU here")
    models = [m for m in args.models.split(",") if m]
    unknown = set(models) - {"digits-alexnet", "alexnet", "resnet18"}
    if unknown:
        parser.error(f"--models: unknown {', '.join(sorted(unknown))}")
    torch.set_num_threads(args.threads)
    if args.captum_batches:
        torch.manual_seed(0)
        captum_batch_scan(build_model("alexnet", 10).eval(),
                          [int(n) for n in args.captum_batches.split(",")], args.n_steps)
        return
    load_before = os.getloadavg()[0]

    built = {}
    for name in models:
        torch.manual_seed(0)
        built[name] = build_model(name, 10).eval()
    sizes = {"digits-alexnet": 32, "alexnet": 224, "resnet18": 224}
    images = {"digits-alexnet": args.digits_images, "alexnet": args.alexnet_images,
              "resnet18": args.resnet_images}
    results = [(f"{name} ({sizes[name]}×{sizes[name]}, {images[name]})",
                bench_conductance(name, built[name], sizes[name], images[name], args.n_steps,
                                  args.repeats, args.ibs_points, captum_too=name != "resnet18"))
               for name in models]
    contrib = []
    if DEVICE.type == "cpu":  # the contributions are computed on the CPU by the pipeline's counters
        if "digits-alexnet" in built:
            contrib.append(("digits-alexnet conv2 → conv3", bench_contributions(
                "digits conv2→conv3", built["digits-alexnet"], "features.conv3", 32, 64, args.repeats * 5)))
        if "alexnet" in built:
            contrib.append(("alexnet features.3 → features.6", bench_contributions(
                "alexnet conv2→conv3", built["alexnet"], "features.6", 224, 8, args.repeats * 5)))
    load_after = os.getloadavg()[0]
    body = table(results, contrib, args, load_before, load_after)
    print(body)
    if args.write is not None:
        command = "python benchmarks/bench_attribution.py --write docs/performance.md"
        write_section(args.write, body, command)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
