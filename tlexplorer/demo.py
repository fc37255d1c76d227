"""`tlexplorer demo`: the whole chain on the built-in digits scenario, reusing what already exists."""
from __future__ import annotations

import os
import time
from pathlib import Path

#: Analysis settings of the demo: every target instance, a per-class sample of the source domain.
DEMO_ANALYSIS = {"per_class": 150, "n_steps": 32}


def run_summary(history) -> str:
    """Best accuracies per model and validation set, and the transferability score, as text."""
    from .analysis.statistics import best_accuracy, transferability_score

    lines = []
    for model in ("source", "target"):
        parts = []
        for dataset in ("source_val", "target_val"):
            try:
                parts.append(f"{dataset} {best_accuracy(history, model, dataset):.3f}")
            except ValueError:
                continue
        lines.append(f"  {model} model, best accuracy: " + ", ".join(parts))
    try:
        lines.append(f"  transferability score: {transferability_score(history):+.3f}")
    except ValueError:
        pass
    return "\n".join(lines)


def _run_is_complete(run_dir: Path, per_class: int) -> bool:
    """A finished digits run with this many instances per class and today's digits-alexnet (a run
    of an earlier version, whose defaults differed, is retrained)."""
    import json

    from .models import architecture_kwargs

    config = run_dir / "config.json"  # written last by the trainer: present means complete
    if not config.is_file():
        return False
    try:
        config = json.loads(config.read_text())
    except ValueError:
        return False
    spec, model = config.get("data", {}), config.get("model", {})
    return (spec.get("name") == "digits" and spec.get("per_class") == per_class
            and model.get("kwargs") == architecture_kwargs("digits-alexnet"))


def _bundle_matches_run(bundle_dir: Path, run_dir: Path) -> bool:
    """A finished bundle computed from this run's checkpoints (a retrained run invalidates it)."""
    import json

    from .bundle import open_bundle
    from .errors import BundleError

    try:
        bundle = open_bundle(bundle_dir)
        run_config = json.loads((run_dir / "config.json").read_text())
    except (BundleError, OSError, ValueError):
        return False
    return bundle.manifest.get("inputs", {}).get("checkpoints") == run_config.get("checkpoints")


def _started_at() -> float:
    """When the user started waiting: ``scripts/demo.sh`` exports its start (``TLX_DEMO_STARTED``,
    epoch seconds) so that the set-up counts; otherwise now."""
    now = time.time()
    try:
        started = float(os.environ.get("TLX_DEMO_STARTED", ""))
    except ValueError:
        return now
    return started if 0 <= now - started < 24 * 3600 else now  # ignore a stale export


def _ready_line(started: float, steps: dict) -> str:
    """``[demo] ready after N s (set-up a s, data b s, ...)``: everything the user waited for."""
    parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in steps.items())
    return f"[demo] ready after {time.time() - started:.0f} s ({parts})"


def run_demo(*, out="runs/digits", port=5006, address=None, serve=True, show=False, per_class=1000,
             progress=True) -> int:
    """Build the digits data, train and fine-tune, analyse, then serve the dashboard.

    Prints what each step does and, once the dashboard answers (or after the analysis with
    ``serve=False``), how long the user waited and for what.
    """
    started = _started_at()
    from .pipeline import AnalyzeOptions, analyze

    steps = {"set-up and start": time.time() - started}  # the install, Python and torch's import

    out = Path(out)
    bundle_dir = out / "bundle"
    if _run_is_complete(out, per_class):
        print(f"[demo] reusing the trained models in {out}")
    else:
        from .scenarios import load_scenario
        from .training import TrainOptions, train_transfer

        print("[demo] 1/3 building the digits scenario (printed -> handwritten)")
        t0 = time.time()
        data = load_scenario("digits", per_class=per_class, progress=progress)
        steps["data"] = time.time() - t0
        print("[demo] 2/3 training the source model and fine-tuning the target model")
        t0 = time.time()
        result = train_transfer(data, {"name": "digits-alexnet", "num_classes": len(data.classes)},
                                TrainOptions(), out, progress=progress, overwrite=True)
        steps["training"] = time.time() - t0
        print(run_summary(result.history))
    if _bundle_matches_run(bundle_dir, out):
        print(f"[demo] reusing the analysis bundle {bundle_dir}")
    else:
        print("[demo] 3/3 analysing: conductance of every hidden layer, neurons, weights, domains")
        t0 = time.time()
        analyze(out, bundle_dir, options=AnalyzeOptions(**DEMO_ANALYSIS), progress=progress)
        steps["analysis"] = time.time() - t0
    if not serve:
        print(_ready_line(started, steps))
        return 0
    from ._ready import HEALTH, probe_host, when_answering
    from .app.serve import serve as serve_app

    url = f"http://{address or 'localhost'}:{port}/"
    print("[demo] starting the dashboard server (imports and a warm-up page; its address follows once "
          "it answers)")
    t0 = time.time()

    def announce():
        steps["server start"] = time.time() - t0
        print(f"{_ready_line(started, steps)}: open {url}", flush=True)

    when_answering(f"http://{probe_host(address)}:{port}/{HEALTH}", announce)
    serve_app([bundle_dir], port=port, address=address, show=show, verbose=False)
    return 0
