"""A small, complete analysis bundle (schema 1) with plausible random content, for app tests.

``make_synthetic_bundle(path)`` writes every table and array of docs/architecture.md
"The analysis bundle, schema 1" without training or analysing anything, so that views can be
built and driven in well under a second. Content is seeded and self-consistent where views rely on
it (predictions ↔ confusion table ↔ accuracies; conductance ↔ neuron ranks; row counts ↔ rows_*).

``open_test_bundle(path)`` opens it with ``tlexplorer.bundle.open_bundle`` when the reader exists,
else with a minimal stand-in that lives only here (never in package code).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np
import polars as pl

SOURCE_DOMAIN = "printed"
TARGET_DOMAIN = "handwritten"
COMBOS = ("target_on_target", "source_on_target", "target_on_source")
DEFAULT_LAYERS = (("features.conv1", "conv", 8), ("features.conv2", "conv", 8),
                  ("classifier.fc6", "linear", 12))
THUMB = 16
#: The 20 convolutions of a torchvision resnet18 in registration order, with their channels.
RESNET18_LAYERS = (("conv1", "conv", 64),) + tuple(
    (f"layer{stage}.{block}.{name}", "conv", 64 * 2 ** (stage - 1))
    for stage in (1, 2, 3, 4) for block in (0, 1)
    for name in (("conv1", "conv2", "downsample.0") if stage > 1 and block == 0
                 else ("conv1", "conv2")))
_RESIDUAL = ("the input of {b!r} does not depend on {a!r} alone (a residual sum or a "
             "concatenation?); skip this pair")
_PARALLEL = "layer {a!r} does not run before {b!r} ({a!r} → {b!r})"
#: The consecutive resnet18 pairs the analysis skips, with the reasons it gives: a residual sum
#: feeds every block's first convolution, and a downsample runs beside (not after) conv2.
RESNET18_SKIPS = tuple(
    (a, b, (_PARALLEL if b.endswith("downsample.0") else _RESIDUAL).format(a=a, b=b))
    for (a, _ka, _na), (b, _kb, _nb) in zip(RESNET18_LAYERS, RESNET18_LAYERS[1:])
    if (b.endswith("conv1") and a != "conv1") or b.endswith("downsample.0"))
EPOCHS = 5


def _component(text: str) -> str:
    """A class name as an artefact name segment, as the pipeline writes it."""
    try:
        from tlexplorer.bundle.schema import safe_component
    except ImportError:
        return text
    return safe_component(text)


def _important_count(n: int, fraction: float) -> int:
    return max(1, int(math.ceil(n * fraction)))


def _rank_desc(values: np.ndarray) -> np.ndarray:
    """1 = largest; ties broken by index (stable)."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[order] = np.arange(1, len(values) + 1)
    return ranks


def _average_ranks_rows(a: np.ndarray) -> np.ndarray:
    """Ascending ranks within each row, ties share their average rank (as scipy's rankdata)."""
    out = np.empty(a.shape, dtype=np.float64)
    for i, row in enumerate(a):
        order = np.argsort(row, kind="stable")
        ranks = np.empty(len(row), dtype=np.float64)
        ranks[order] = np.arange(1, len(row) + 1)
        for v in np.unique(row):
            tied = row == v
            if tied.sum() > 1:
                ranks[tied] = ranks[tied].mean()
        out[i] = ranks
    return out


def _thumbnail(rng: np.random.Generator, label: int, n_classes: int, domain: str) -> np.ndarray:
    """A recognisable little image: a class-dependent bar on a domain-dependent background."""
    img = np.full((THUMB, THUMB, 3), 235 if domain == "source" else 20, dtype=np.uint8)
    img = np.clip(img.astype(int) + rng.integers(-15, 16, img.shape), 0, 255).astype(np.uint8)
    col = int((label + 0.5) * THUMB / max(n_classes, 1)) % THUMB
    colour = np.array([200, 40, 40] if domain == "source" else [40, 80, 220], dtype=np.uint8)
    img[2:-2, max(col - 1, 0):col + 2] = colour
    return img


def build_synthetic_content(*, classes: Iterable[str] = ("0", "1", "2"), per_class: int = 6,
                            layers=DEFAULT_LAYERS, seed: int = 0, k_weights: int = 6,
                            neuron_fraction: float = 0.1,
                            domains: "tuple[str, str]" = (SOURCE_DOMAIN, TARGET_DOMAIN),
                            skip_pairs: "Iterable[tuple[str, str, str]]" = ()):
    """The bundle's manifest fields, tables and arrays as in-memory objects.

    ``skip_pairs`` lists ``(layer_from, layer_to, reason)`` of consecutive pairs without weights
    (a residual sum between them, ...): their weight arrays and important weights are left out and
    the manifest warns as the pipeline does (``weights skipped: 'a' → 'b': reason``).

    Returns
    -------
    (manifest, tables, arrays) : (dict, dict[str, pl.DataFrame], dict[str, np.ndarray])
        Table names are relative to ``tables/`` and array names to ``arrays/``, without suffix.
    """
    rng = np.random.default_rng(seed)
    classes = [str(c) for c in classes]
    n_classes = len(classes)
    layers = [(str(n), str(k), int(s)) for n, k, s in layers]

    # ---------------------------------------------------------------- instances
    rows = []
    # class-dependent accuracies so the focus class (largest target - source gap) is deterministic
    src_acc_on_tgt = np.linspace(0.75, 0.25, n_classes)
    tgt_acc_on_tgt = np.full(n_classes, 0.9)
    n_val = max(1, int(round(per_class * 0.15)))
    centers = rng.normal(scale=12.0, size=(n_classes, 2))
    for role, domain in zip(("source", "target"), domains):
        index = 0
        for label, name in enumerate(classes):
            for j in range(per_class):
                split = "val" if j >= per_class - n_val else "train"
                if role == "source":
                    p_src, p_tgt = 0.95, 0.8
                else:
                    p_src, p_tgt = src_acc_on_tgt[label], tgt_acc_on_tgt[label]

                def predict(p):
                    if n_classes == 1 or rng.random() < p:
                        return label
                    # confusions go mostly to the next class so "misclassified into" is readable
                    return (label + 1) % n_classes if rng.random() < 0.7 else int(
                        rng.choice([c for c in range(n_classes) if c != label]))

                shift = np.array([3.0, 0.0]) if role == "target" else np.zeros(2)
                x, y = centers[label] + shift + rng.normal(scale=2.0, size=2)
                rows.append({
                    "instance_id": f"{domain}/{split}/{index:06d}", "role": role,
                    "domain": domain, "split": split, "index": index,
                    "path": f"{domain}/{name}/{index:06d}.png", "label": label,
                    "class_name": name, "source_pred": predict(p_src),
                    "target_pred": predict(p_tgt), "x": float(x), "y": float(y),
                })
                index += 1
    instances = pl.DataFrame(rows).with_row_index("row").with_columns(
        pl.col("row").cast(pl.Int64), pl.col("index").cast(pl.Int64),
        pl.col("label").cast(pl.Int64), pl.col("source_pred").cast(pl.Int64),
        pl.col("target_pred").cast(pl.Int64), pl.col("x").cast(pl.Float64),
        pl.col("y").cast(pl.Float64))
    n = instances.height

    arrays: dict[str, np.ndarray] = {}
    arrays["thumbnails"] = np.stack([
        _thumbnail(rng, r["label"], n_classes, r["role"]) for r in instances.iter_rows(named=True)])
    emb_dim = 16
    emb = rng.normal(size=(n, emb_dim)).astype(np.float32)
    emb[:, :2] += instances.select("x", "y").to_numpy().astype(np.float32) / 4
    arrays["embedding"] = emb
    arrays["tsne"] = instances.select("x", "y").to_numpy().astype(np.float32)
    rows_by_domain = {
        "source": instances.filter(pl.col("role") == "source")["row"].to_numpy().astype(np.int64),
        "target": instances.filter(pl.col("role") == "target")["row"].to_numpy().astype(np.int64),
    }
    arrays["rows_source"] = rows_by_domain["source"]
    arrays["rows_target"] = rows_by_domain["target"]
    labels = instances["label"].to_numpy()

    # ---------------------------------------------------------------- conductance, activations
    for combo in COMBOS:
        domain = combo.split("_on_")[1]
        m = len(rows_by_domain[domain])
        for name, _kind, size in layers:
            base = rng.gamma(2.0, 1.0, size=(1, size))
            cls_effect = rng.normal(scale=0.8, size=(n_classes, size))
            lab = labels[rows_by_domain[domain]]
            cond = base + cls_effect[lab] + rng.normal(scale=0.3, size=(m, size))
            arrays[f"conductance/{combo}/{name}"] = cond.astype(np.float32)
            arrays[f"activations/{combo}/{name}"] = np.abs(
                cond * 1.5 + rng.normal(scale=0.2, size=(m, size))).astype(np.float32)

    # ---------------------------------------------------------------- weights
    for model in ("source", "target"):
        for (l1, _k1, n1), (l2, _k2, n2) in zip(layers, layers[1:]):
            w = rng.normal(scale=0.3, size=(n1, n2)).astype(np.float32)
            arrays[f"weights/{model}/{l1}__{l2}"] = w

    # ---------------------------------------------------------------- neurons
    tgt_rows = rows_by_domain["target"]
    tgt_labels = labels[tgt_rows]
    neuron_frames = []
    ranks_by = {}
    for model in ("source", "target"):
        combo = f"{model}_on_target"
        for scope in [*classes, "__all__"]:
            mask = np.ones(len(tgt_rows), bool) if scope == "__all__" else (
                tgt_labels == classes.index(scope))
            for name, _kind, size in layers:
                cond = arrays[f"conductance/{combo}/{name}"][mask]
                score = _average_ranks_rows(cond).sum(axis=0) if len(cond) else np.zeros(size)
                rank = _rank_desc(score)
                ranks_by[(model, scope, name)] = rank
                neuron_frames.append(pl.DataFrame({
                    "model": [model] * size, "class": [scope] * size, "layer": [name] * size,
                    "neuron": np.arange(size, dtype=np.int64), "score": score.astype(np.float64),
                    "rank": rank, "important": rank <= _important_count(size, neuron_fraction),
                }))
    neurons = pl.concat(neuron_frames)

    # ---------------------------------------------------------------- important weights
    iw_frames = []
    for scope in [*classes, "__all__"]:
        chosen_src = {}
        for model in ("source", "target"):
            for (l1, _k1, n1), (l2, _k2, n2) in zip(layers, layers[1:]):
                k = min(k_weights, n1 * n2)
                if model == "target" and (scope, l1) in chosen_src:
                    # most target important weights are inherited (§5.3.2), some are new
                    prev = chosen_src[(scope, l1)]
                    keep = prev[: max(1, (2 * len(prev)) // 3)]
                    fresh = [p for p in rng.permutation(n1 * n2) if p not in keep]
                    flat = np.array(list(keep) + fresh[: k - len(keep)])
                else:
                    flat = rng.choice(n1 * n2, size=k, replace=False)
                if model == "source":
                    chosen_src[(scope, l1)] = list(flat)
                counts = np.sort(rng.integers(1, per_class * 2 + 1, size=k))[::-1]
                a, b = np.divmod(flat, n2)
                src_set = set(chosen_src.get((scope, l1), []))
                iw_frames.append(pl.DataFrame({
                    "model": [model] * k, "class": [scope] * k, "layer_from": [l1] * k,
                    "layer_to": [l2] * k, "n1": a.astype(np.int64), "n2": b.astype(np.int64),
                    "count": counts.astype(np.int64), "rank": np.arange(1, k + 1, dtype=np.int64),
                    "inherited": pl.Series([None] * k, dtype=pl.Boolean) if model == "source"
                    else pl.Series([int(f) in src_set for f in flat], dtype=pl.Boolean),
                    "n1_match": pl.Series([None] * k, dtype=pl.Int64) if model == "source"
                    else pl.Series(rng.integers(0, n1, size=k), dtype=pl.Int64),
                    "n2_match": pl.Series([None] * k, dtype=pl.Int64) if model == "source"
                    else pl.Series(rng.integers(0, n2, size=k), dtype=pl.Int64),
                }))
    important_weights = pl.concat(iw_frames)

    # ---------------------------------------------------------------- confusion (target val set)
    tgt = instances.filter(pl.col("role") == "target")
    conf_rows = []
    for label, name in enumerate(classes):
        sub = tgt.filter(pl.col("label") == label)
        entry = {"class": name, "label": label, "n": sub.height}
        for model in ("source", "target"):
            preds = sub[f"{model}_pred"].to_numpy()
            entry[f"{model}_accuracy"] = float((preds == label).mean()) if len(preds) else 0.0
            wrong = preds[preds != label]
            vals, cnt = np.unique(wrong, return_counts=True)
            order = np.lexsort((vals, -cnt))
            entry[f"{model}_misclassified"] = [
                {"class": classes[int(vals[i])], "count": int(cnt[i])} for i in order]
        entry["difference"] = entry["target_accuracy"] - entry["source_accuracy"]
        conf_rows.append(entry)
    mis_type = pl.List(pl.Struct({"class": pl.String, "count": pl.Int64}))
    confusion = pl.DataFrame(conf_rows, schema={
        "class": pl.String, "label": pl.Int64, "n": pl.Int64, "source_accuracy": pl.Float64,
        "source_misclassified": mis_type, "target_accuracy": pl.Float64,
        "target_misclassified": mis_type, "difference": pl.Float64,
    }).select("class", "label", "n", "source_accuracy", "target_accuracy", "difference",
              "source_misclassified", "target_misclassified")

    # ---------------------------------------------------------------- history
    hist = []
    finals = {
        ("source", "source_train"): 0.98, ("source", "target_train"): 0.45,
        ("source", "source_val"): 0.85, ("source", "target_val"): 0.42,
        ("target", "source_train"): 0.8, ("target", "target_train"): 0.97,
        ("target", "target_val"): 0.88, ("target", "source_val"): 0.75,
    }
    for (model, dataset), final in finals.items():
        start = 0.1 if model == "source" else {"target_train": 0.45, "target_val": 0.42}.get(
            dataset, final + 0.1)
        for epoch in range(1, EPOCHS + 1):
            t = 1 - math.exp(-1.2 * epoch)
            acc = float(np.clip(start + (final - start) * t + rng.normal(scale=0.01), 0, 1))
            hist.append({"model": model, "epoch": epoch, "dataset": dataset, "accuracy": acc,
                         "loss": float(-math.log(max(acc, 1e-3)) + 0.05)})
    history = pl.DataFrame(hist).with_columns(pl.col("epoch").cast(pl.Int64))
    best = lambda m, d: float(history.filter(  # noqa: E731
        (pl.col("model") == m) & (pl.col("dataset") == d))["accuracy"].max())

    # ---------------------------------------------------------------- discriminability
    d_rows, summaries = [], []
    for scope in ["__all__", *classes]:
        coefs = []
        for name, _kind, size in layers:
            for neuron in range(size):
                coefs.append((name, neuron, float(rng.normal(scale=0.5))))
        ranks = _rank_desc(np.abs(np.array([c for _l, _n, c in coefs])))
        for (name, neuron, coef), r in zip(coefs, ranks):
            d_rows.append({"scope": scope, "layer": name, "neuron": neuron, "coef": coef,
                           "rank": int(r)})
        if scope == "__all__":
            ms, mt = len(rows_by_domain["source"]), len(rows_by_domain["target"])
        else:
            lab = classes.index(scope)
            ms = int((labels[rows_by_domain["source"]] == lab).sum())
            mt = int((labels[rows_by_domain["target"]] == lab).sum())
        proj = np.concatenate([rng.normal(loc=(-1.0, 0.0), size=(ms, 2)),
                               rng.normal(loc=(1.0, 0.0), size=(mt, 2))]).astype(np.float32)
        # standardised inputs and components from which the projection follows, as analyze
        # writes them (the plot over the active neurons only is z[:, a] @ comp[a] + origin)
        z = rng.normal(size=(ms + mt, len(coefs))).astype(np.float32)
        z[ms:, 0] += 1.5  # one neuron tells the domains apart
        comp = rng.normal(scale=0.5, size=(len(coefs), 2))
        origin = np.array([0.1, 0.0])
        proj = (z.astype(np.float64) @ comp + origin).astype(np.float32)
        arrays[f"discriminability/{_component(scope)}/projection"] = proj
        arrays[f"discriminability/{_component(scope)}/axes"] = comp.astype(np.float32)
        arrays[f"discriminability/{_component(scope)}/standardized"] = z
        arrays[f"discriminability/{_component(scope)}/components"] = comp
        arrays[f"discriminability/{_component(scope)}/origin"] = origin
        summaries.append({"scope": scope, "cv_accuracy": float(rng.uniform(0.6, 0.95)),
                          "C": 1.0, "n_source": ms, "n_target": mt, "n_features": len(coefs)})
    discriminability = pl.DataFrame(d_rows).with_columns(
        pl.col("neuron").cast(pl.Int64), pl.col("rank").cast(pl.Int64))
    discriminability_summary = pl.DataFrame(summaries).with_columns(
        pl.col("n_source").cast(pl.Int64), pl.col("n_target").cast(pl.Int64),
        pl.col("n_features").cast(pl.Int64))

    # ---------------------------------------------------------------- layer metrics, changes
    layer_metrics = pl.DataFrame({
        "layer": [name for name, _k, _s in layers],
        "cka_target_data": np.linspace(0.95, 0.6, len(layers)),
        "cka_source_data": np.linspace(0.97, 0.7, len(layers)),
        "a_distance_source_model": np.linspace(0.6, 1.6, len(layers)),
        "a_distance_target_model": np.linspace(0.5, 1.2, len(layers)),
    })
    ch = []
    for name, _kind, size in layers:
        rs, rt = ranks_by[("source", "__all__", name)], ranks_by[("target", "__all__", name)]
        for neuron in range(size):
            ch.append({"layer": name, "neuron": neuron,
                       "weight_change": float(abs(rng.normal(scale=0.1))),
                       "rank_source": int(rs[neuron]), "rank_target": int(rt[neuron]),
                       "rank_shift": int(rs[neuron] - rt[neuron])})
    neuron_changes = pl.DataFrame(ch).with_columns(
        pl.col("neuron").cast(pl.Int64), pl.col("rank_source").cast(pl.Int64),
        pl.col("rank_target").cast(pl.Int64), pl.col("rank_shift").cast(pl.Int64))

    tables = {
        "history": history, "instances": instances, "confusion": confusion, "neurons": neurons,
        "important_weights": important_weights, "discriminability": discriminability,
        "discriminability_summary": discriminability_summary, "layer_metrics": layer_metrics,
        "neuron_changes": neuron_changes,
    }
    best_src, best_tgt = best("source", "target_val"), best("target", "target_val")
    manifest = {
        "schema_version": 1,
        "tlexplorer_version": "0.1.0",
        "created": "2024-01-01T00:00:00+00:00",
        "versions": {"python": "3", "numpy": np.__version__, "polars": pl.__version__},
        "source_domain": domains[0],
        "target_domain": domains[1],
        "classes": classes,
        "model": {"name": "synthetic", "num_classes": n_classes, "kwargs": {}},
        "layers": [{"name": name, "kind": kind, "neurons": size} for name, kind, size in layers],
        "options": {"n_steps": 4, "method": "riemann_trapezoid", "per_class": per_class,
                    "k_weights": k_weights, "neuron_fraction": neuron_fraction, "seed": seed},
        "inputs": {"checkpoints": {"source": "0" * 64, "target": "1" * 64},
                   "history": "2" * 64, "data": {"source": "3" * 64, "target": "4" * 64}},
        "combos": list(COMBOS),
        "scores": {"transferability_score": best_tgt - best_src,
                   "best_source_accuracy_target_val": best_src,
                   "best_target_accuracy_target_val": best_tgt},
        "warnings": [],
    }
    _skip_weight_pairs(manifest, tables, arrays, skip_pairs)
    return manifest, tables, arrays


def _skip_weight_pairs(manifest, tables, arrays, skip_pairs) -> None:
    """Leave out the weights of ``skip_pairs`` (after everything else is drawn, so that the
    random content of the other artefacts does not depend on them)."""
    for layer_from, layer_to, reason in skip_pairs:
        for model in ("source", "target"):
            arrays.pop(f"weights/{model}/{layer_from}__{layer_to}", None)
        iw = tables["important_weights"]
        tables["important_weights"] = iw.filter(
            ~((pl.col("layer_from") == layer_from) & (pl.col("layer_to") == layer_to)))
        manifest["warnings"].append(f"weights skipped: {layer_from!r} → {layer_to!r}: {reason}")


def make_synthetic_bundle(path, *, classes=("0", "1", "2"), per_class: int = 6,
                          layers=DEFAULT_LAYERS, seed: int = 0,
                          domains: "tuple[str, str]" = (SOURCE_DOMAIN, TARGET_DOMAIN),
                          model: "dict | None" = None,
                          skip_pairs: "Iterable[tuple[str, str, str]]" = ()) -> Path:
    """Write a complete schema-1 bundle with plausible random content into ``path``.

    Parameters
    ----------
    path : str or Path
        Directory to create (parents too); existing files of the same names are replaced.
    classes : sequence of str
        Class names, in label order.
    per_class : int
        Instances per class in each domain (about 15% of them in the validation split).
    layers : sequence of (name, kind, neurons)
        The analysed layers in network order.
    seed : int
        Seed of all random content.
    domains : (str, str)
        Names of the source and the target domain.
    model : dict, optional
        The manifest's model spec (default: a "synthetic" architecture no process can build).
    skip_pairs : sequence of (layer_from, layer_to, reason)
        Consecutive layer pairs without weights, each with the reason the manifest warns of.

    Returns
    -------
    Path
        The bundle directory.
    """
    path = Path(path)
    manifest, tables, arrays = build_synthetic_content(
        classes=classes, per_class=per_class, layers=layers, seed=seed, domains=domains,
        skip_pairs=skip_pairs)
    if model is not None:
        manifest["model"] = model
    try:
        from tlexplorer.bundle import BundleWriter
    except ImportError:
        return _write_directly(path, manifest, tables, arrays, layers, len(list(classes)))
    import tempfile

    writer = BundleWriter(path, resume=False, durable=False)
    for name, frame in tables.items():
        writer.write_table(name, frame)
    for name, arr in arrays.items():
        writer.write_array(name, arr)
    with tempfile.TemporaryDirectory() as tmp:
        for rel in _write_models(Path(tmp), layers, len(list(classes))):
            writer.write_file(rel, Path(tmp) / rel)
    return writer.finalize(manifest)


def _write_directly(path: Path, manifest, tables, arrays, layers, n_classes: int) -> Path:
    """The same files without the bundle package's writer (while it did not exist)."""
    path.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict] = {}
    for name, frame in tables.items():
        rel = f"tables/{name}.parquet"
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path / rel)
        files[rel] = _file_entry(path, rel, [frame.height, frame.width], "parquet")
    for name, arr in arrays.items():
        rel = f"arrays/{name}.npy"
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(path / rel, arr, allow_pickle=False)
        files[rel] = _file_entry(path, rel, list(arr.shape), str(arr.dtype))
    for rel in _write_models(path, layers, n_classes):
        files[rel] = _file_entry(path, rel, None, None)
    manifest["files"] = dict(sorted(files.items()))
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def _file_entry(root: Path, rel: str, shape, dtype) -> dict:
    """The manifest's ``files`` entry, made by the bundle package's schema when it exists."""
    try:
        from tlexplorer.bundle.schema import file_entry
    except ImportError:
        return {"shape": shape, "dtype": dtype, "bytes": (root / rel).stat().st_size}
    return file_entry(root / rel, rel)


def _write_models(path: Path, layers, n_classes: int) -> list[str]:
    """Tiny state_dicts with one tensor per layer (shapes only matter to readers that check)."""
    try:
        import torch
    except ImportError:  # the app never loads them; keep the helper usable without torch
        return []
    out = []
    for model in ("source", "target"):
        sd = {f"{name}.weight": torch.zeros(size, 1) for name, _k, size in layers}
        rel = f"models/{model}.pt"
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        torch.save(sd, path / rel)
        out.append(rel)
    return out


# ------------------------------------------------------------------ stand-in reader (tests only)
class StandInBundle:
    """The few reader methods the app uses, for as long as ``tlexplorer.bundle`` has no reader."""

    def __init__(self, path):
        self.path = Path(path).resolve()
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            from tlexplorer.errors import BundleError
            raise BundleError(f"{self.path}: not an analysis bundle (no manifest.json)")
        self.manifest = json.loads(manifest_path.read_text())
        if int(self.manifest.get("schema_version", 0)) > 1:
            from tlexplorer.errors import BundleError
            raise BundleError(
                f"{manifest_path}: schema_version {self.manifest['schema_version']} is newer than "
                "this tlexplorer understands (1)")
        self.classes = list(self.manifest["classes"])
        self.layers = list(self.manifest["layers"])
        self.key = f"{self.path}:{self.manifest.get('created')}"
        self._tables: dict[str, pl.DataFrame] = {}
        self._cache: dict[str, np.ndarray] = {}

    def has(self, name: str) -> bool:
        return ((self.path / "tables" / f"{name}.parquet").is_file()
                or (self.path / "arrays" / f"{name}.npy").is_file())

    def table(self, name: str) -> pl.DataFrame:
        if name not in self._tables:
            self._tables[name] = pl.read_parquet(self.path / "tables" / f"{name}.parquet")
        return self._tables[name]

    def array(self, name: str) -> np.ndarray:
        return np.load(self.path / "arrays" / f"{name}.npy", mmap_mode="r", allow_pickle=False)

    def cache_array(self, name: str):
        p = self.path / "cache" / f"{name}.npy"
        return np.load(p, allow_pickle=False) if p.is_file() else None

    def write_cache_array(self, name: str, arr: np.ndarray) -> None:
        p = self.path / "cache" / f"{name}.npy"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, arr, allow_pickle=False)


def reader_available() -> bool:
    """Whether the real reader (``tlexplorer.bundle.open_bundle``) exists yet."""
    try:
        from tlexplorer.bundle import open_bundle  # noqa: F401
    except ImportError:
        return False
    return True


def open_test_bundle(path):
    """Open with the real reader when it exists, else with :class:`StandInBundle`."""
    if reader_available():
        from tlexplorer.bundle import open_bundle
        return open_bundle(path)
    return StandInBundle(path)
