"""Run directory → analysis bundle: every forward/backward pass over the data, computed once.

Each stage writes its artefacts through :class:`tlexplorer.bundle.BundleWriter`, which keeps completed
artefacts (and completed chunks of the long conductance stage) in ``<bundle>.partial``; an interrupted
analysis resumes where it stopped and the finished bundle replaces any old one in one rename.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader

from . import __version__
from ._progress import fraction_bar_format
from ._stages import StageLog
from .config import available_cpus, package_versions, resolve_device
from .errors import BundleError, LayerError

ALL = "__all__"


@dataclass
class AnalyzeOptions:
    """What ``tlexplorer analyze`` computes and how. JSON-able; stored in the manifest."""

    layers: "list[str] | None" = None        # default: every hidden Conv2d/Linear layer
    n_steps: int = 50                         # integration steps of Layer Conductance
    method: str = "riemann_trapezoid"         # captum's integration method names
    per_class: "int | None" = None            # instances per class and domain attributed (None: all)
    batch_size: int = 64
    internal_batch_size: "int | None" = None  # path points per forward/backward (memory bound)
    max_chunk_mib: "int | None" = None        # most MiB of hooked outputs per pass (None: TLX_MAX_CHUNK_MIB,
                                              # else a tenth of the memory free on the device)
    device: "str | None" = None
    neuron_fraction: float = 0.1              # the paper's top 10% important neurons
    k_weights: "int | None" = None            # top-k weights per instance and kept (None: see weights)
    cv: int = 10                              # folds of the domain classifier (Algorithm 1)
    a_distance_max_per_domain: "int | None" = 2000  # balanced subsample of the proxy A-distance
    seed: int = 0
    feature_vis: bool = False                 # precompute important neurons' visualizations
    feature_vis_steps: int = 128
    include_source_on_source: bool = False
    thumbnail_size: int = 32
    chunk_size: int = 256                     # instances per resumable conductance chunk

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def max_chunk_bytes(self) -> "int | None":
        """The bound on one conductance pass's hooked outputs, in bytes: ``max_chunk_mib``, else
        ``TLX_MAX_CHUNK_MIB``, else None (the memory free on the device decides alone)."""
        from .config import settings

        mib = self.max_chunk_mib if self.max_chunk_mib is not None else settings().max_chunk_mib
        if mib is None:
            return None
        if not isinstance(mib, int) or isinstance(mib, bool) or mib < 1:
            raise ValueError(f"max_chunk_mib must be a positive whole number of MiB, got {mib!r}")
        return mib << 20

    def fingerprint(self) -> str:
        """Identity of everything that changes the bundle's numbers (resume only if equal)."""
        keep = {k: v for k, v in self.to_json().items()
                if k not in ("device", "batch_size", "internal_batch_size", "max_chunk_mib", "feature_vis")}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ context
@dataclass
class _Context:
    """What every stage needs: the run, the data, both models, the layers, the writer, options."""

    run: object
    data: object
    models: dict                    # {"source": nn.Module, "target": nn.Module}
    layers: list                    # [HiddenLayer]
    writer: object
    options: AnalyzeOptions
    device: torch.device
    progress: bool
    instances: pl.DataFrame = None  # the instances table (row order of every per-instance array)
    rows: dict = field(default_factory=dict)  # {"source": rows (M_s,), "target": rows (M_t,)}
    warnings: list = field(default_factory=list)
    completeness: dict = field(default_factory=dict)  # {combo: {layer: pooled relative gap}}
    stages: StageLog = field(default_factory=StageLog)  # seconds and peak memory per stage
    # {(model, layer_from): {(model, class, layer_from): top weights}} counted on a Dask cluster
    weight_tops: dict = field(default_factory=dict)
    pair_relations: "list | None" = None  # [models.dataflow.PairRelation], from the data flow
    background: object = None  # a BackgroundLayout while the t-SNE runs beside the model passes
    torch_threads: "int | None" = None  # torch's threads before the background took its share

    def poll_background(self) -> None:
        """Give torch its threads back once the background t-SNE has finished."""
        if self.torch_threads is not None and (self.background is None or self.background.done()):
            torch.set_num_threads(self.torch_threads)
            self.torch_threads = None

    @property
    def stage_seconds(self) -> dict:
        """{stage: wall seconds}: the table ``analyze`` ends with."""
        return self.stages.seconds

    @property
    def layer_names(self) -> list:
        return [layer.name for layer in self.layers]

    def dataset(self, rows: np.ndarray):
        """A torch Dataset over instance rows (rows index the concatenated splits)."""
        return _RowsDataset(self.data, self.instances, rows)

    def loader(self, rows: np.ndarray) -> DataLoader:
        return DataLoader(self.dataset(rows), batch_size=self.options.batch_size, shuffle=False)


class _RowsDataset(torch.utils.data.Dataset):
    """Instances by bundle row: row → (split, position) → (image, label)."""

    def __init__(self, data, instances: pl.DataFrame, rows: np.ndarray):
        self.splits = {(s.role, s.split): s for s in data.splits()}
        self.rows = np.asarray(rows, dtype=np.int64)
        self.role = instances["role"].to_numpy()
        self.split = instances["split"].to_numpy()
        self.position = instances["position"].to_numpy()

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        return self.splits[(self.role[row], self.split[row])][int(self.position[row])]


# ------------------------------------------------------------------------------------------- stages
def _timed(name: str):
    """Add a stage's wall time and peak memory to ``ctx.stages`` under ``name`` (the table
    ``analyze`` ends with, and the manifest's ``stages``)."""
    def decorate(stage):
        @functools.wraps(stage)
        def timed(ctx: _Context, *args):
            with ctx.stages.measure(name):
                return stage(ctx, *args)
        return timed
    return decorate


@_timed("instances and thumbnails")
def _stage_instances(ctx: _Context) -> None:
    """The instances table (with each instance's position in its split) and thumbnails."""
    frames = []
    for split in ctx.data.splits():
        frames.append(split.instance_table().with_columns(pl.Series("position", np.arange(len(split)))))
    table = pl.concat(frames).with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    ctx.instances = table
    splits = {(s.role, s.split): s for s in ctx.data.splits()}
    size = ctx.options.thumbnail_size

    def thumbnails(start: int, stop: int) -> dict:
        part = table[start:stop]
        thumbs = np.zeros((len(part), size, size, 3), dtype=np.uint8)
        for i, (role, split, position) in enumerate(part.select("role", "split", "position").iter_rows()):
            thumbs[i] = _thumbnail(splits[(role, split)].raw_image(position), size)
        return {"thumbnails": thumbs}

    _write_chunked(ctx, ["thumbnails"], len(table), thumbnails, desc="thumbnails")


def _thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


@_timed("instances and thumbnails")
def _select_rows(ctx: _Context) -> None:
    """Instances attributed per domain: all, or ``per_class`` per class chosen with the seed."""
    rng = np.random.default_rng(ctx.options.seed)
    for role in ("source", "target"):
        part = ctx.instances.filter(pl.col("role") == role)
        chosen = []
        for label, name in enumerate(ctx.data.classes):
            rows = part.filter(pl.col("label") == label)["row"].to_numpy()
            if len(rows) == 0:  # recorded in the manifest; views skip the class on that side
                ctx.warnings.append(f"class {name!r} has no {role} instances; skipped")
                continue
            if ctx.options.per_class is not None and len(rows) > ctx.options.per_class:
                rows = np.sort(rng.choice(rows, ctx.options.per_class, replace=False))
            chosen.append(rows)
        ctx.rows[role] = np.sort(np.concatenate(chosen)).astype(np.int64)
        if not ctx.writer.has_array(f"rows_{role}"):
            ctx.writer.write_array(f"rows_{role}", ctx.rows[role])


@_timed("predictions and embedding")
def _stage_predictions(ctx: _Context) -> None:
    """Both models' predictions for every instance, and the target model's embedding (one pass each)."""
    all_rows = ctx.instances["row"].to_numpy()
    for model_name in ("source", "target"):
        want_embedding = model_name == "target"

        def outputs(result, model_name=model_name, want_embedding=want_embedding) -> dict:
            out = {"embedding": result.embedding.numpy().astype(np.float32)} if want_embedding else {}
            out[f"probabilities/{model_name}"] = result.predictions.probabilities.numpy().astype(np.float32)
            out[f"predictions/{model_name}"] = result.predictions.labels.numpy().astype(np.int64)
            return out  # predictions last: the array that marks the model done

        names = ["embedding"] * want_embedding + [f"probabilities/{model_name}", f"predictions/{model_name}"]
        compute = _forward(ctx, model_name, all_rows, outputs, embedding=want_embedding, predictions=True)
        _write_chunked(ctx, names, len(all_rows), compute, desc=f"predictions {model_name} model")


# ------------------------------------------------------------------------------ streamed arrays
#: Rows per resumable chunk of the forward passes (predictions and embedding, activations) and the
#: thumbnails, in conductance chunks (``chunk_size``): a forward pass costs ~1/(n_steps + 1) of a
#: conductance path, so conductance-sized chunks would be mostly per-chunk overhead. The Dask path
#: (``cluster.chunked``) uses the same chunks, so either path resumes from the other's.
FORWARD_CHUNKS = 8


def _spans(n: int, step: int) -> list:
    """``(chunk index, first row, end row)`` of ``n`` rows in chunks of ``step`` (at least one)."""
    return [(i, i * step, min(n, (i + 1) * step)) for i in range(max(1, math.ceil(n / step)))]


def whole_batches(start: int, stop: int, n: int, batch_size: int) -> tuple:
    """Rows ``start:stop`` widened to whole batches of one loader over ``n`` rows."""
    return start // batch_size * batch_size, min(n, -(-stop // batch_size) * batch_size)


def _write_chunked(ctx: _Context, names: list, n: int, compute, *, desc: str) -> None:
    """Arrays ``names`` of ``n`` rows each, computed a chunk at a time by ``compute(start, stop)``
    (``{name: array (stop - start, ...)}``), stored as chunks and concatenated on disk.

    So no stage holds an N-row array it does not need, and an interrupted stage resumes from the
    chunks stored (its own, or the Dask path's). A name whose array exists is not recomputed; the
    arrays are concatenated in the order of ``names``, so the last one marks the whole set done.
    """
    todo = [name for name in names if not ctx.writer.has_array(name)]
    if not todo:
        return
    spans = _spans(n, ctx.options.chunk_size * FORWARD_CHUNKS)
    with _tqdm(ctx, total=n, desc=desc, unit="img") as bar:
        for i, start, stop in spans:
            ctx.poll_background()
            if not all(ctx.writer.has_chunk(name, i) for name in todo):
                arrays = compute(start, stop)
                for name in todo:
                    ctx.writer.write_chunk(name, i, arrays[name])
            bar.update(stop - start)
    for name in todo:
        ctx.writer.concat_chunks(name, len(spans))


def _forward(ctx: _Context, model_name: str, rows: np.ndarray, outputs, **what):
    """``compute(start, stop)`` for :func:`_write_chunked`: ``outputs(capture)`` of rows
    ``start:stop`` of ``rows`` (``what``: :func:`~tlexplorer.analysis.activations.capture`'s
    options). Each chunk runs in the batches one loader over all ``rows`` would make, so a chunk's
    numbers do not depend on where the chunks start (the same as the Dask path's, byte for byte)."""
    from .analysis.activations import concat_captures, iter_capture

    def compute(start: int, stop: int) -> dict:
        lo, hi = whole_batches(start, stop, len(rows), ctx.options.batch_size)
        batches = iter_capture(ctx.models[model_name], ctx.loader(rows[lo:hi]), device=ctx.device, **what)
        with contextlib.closing(batches):
            arrays = outputs(concat_captures(list(batches)))
        return {name: array[start - lo:stop - lo] for name, array in arrays.items()}

    return compute


#: Fewest instances whose t-SNE runs in a background process beside the model passes; below, it takes
#: a few seconds and runs in turn (a spawned process costs ~2 s to start and import).
BACKGROUND_TSNE_MIN_POINTS = 5_000


def _tsne_threads(device: torch.device, cpus: int) -> int:
    """Threads of the background t-SNE: on a GPU machine all CPUs but one (the one that drives the
    GPU; from 4 threads on the t-SNE uses Barnes-Hut, whose forces spread over them); on a CPU-only
    one a quarter of them (at least 1: the FFT gradient is single-threaded), the rest stay with torch
    (docs/performance.md, "t-SNE")."""
    if device.type == "cuda":
        return max(1, cpus - 1)
    return max(1, cpus // 4)


def _start_projection(ctx: _Context) -> None:
    """Start the t-SNE in a background process when it pays (enough instances, a spare CPU): the
    model passes that follow keep the GPU or torch's threads busy meanwhile. On the CPU torch gives
    the t-SNE's threads up until it finishes (two thread pools on the same cores slow both down)."""
    from ._background import BackgroundLayout

    cpus = available_cpus()
    if (ctx.writer.has_array("tsne") or len(ctx.instances) < BACKGROUND_TSNE_MIN_POINTS
            or (ctx.device.type == "cpu" and cpus < 2)):
        return
    jobs = _tsne_threads(ctx.device, cpus)
    with ctx.stages.measure("t-SNE projection (start in the background)"):
        # the child reads the file itself; it stays in place until _stage_projection's wait
        ctx.background = BackgroundLayout(ctx.writer.array_path("embedding"), random_state=ctx.options.seed,
                                          n_jobs=jobs)
    if ctx.device.type == "cpu":
        ctx.torch_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, min(ctx.torch_threads, cpus - jobs)))
    if ctx.progress:
        print(f"t-SNE of {len(ctx.instances)} instances runs in the background ({jobs} thread(s))")


def _stop_projection(ctx: _Context) -> None:
    """End a background t-SNE that is no longer wanted (a stage failed) and restore torch's threads."""
    if ctx.background is not None:
        ctx.background.stop()
        ctx.background = None
    ctx.poll_background()


@_timed("t-SNE projection")
def _stage_projection(ctx: _Context) -> None:
    """One seeded 2-D t-SNE of every instance's embedding (never recomputed on a click): the
    background's result (this stage's time is then only the wait for it), else computed here."""
    from .analysis.embedding import tsne_layout

    if ctx.background is not None:
        background, ctx.background = ctx.background, None
        layout, seconds = background.result()
        ctx.poll_background()
        ctx.stages.background[f"t-SNE projection ({background.n_jobs} thread(s), beside the model passes)"] = seconds
        ctx.writer.write_array("tsne", layout.astype(np.float32))
        return
    if ctx.writer.has_array("tsne"):
        return
    embedding = ctx.writer.read_array("embedding")
    layout = tsne_layout(np.asarray(embedding), random_state=ctx.options.seed, progress=ctx.progress)
    ctx.writer.write_array("tsne", layout.astype(np.float32))


@_timed("tables")
def _stage_tables(ctx: _Context) -> dict:
    """instances (+ predictions, layout), history and confusion tables; returns the scores."""
    from .analysis.statistics import confusion_table, transferability_score

    source_pred = ctx.writer.read_array("predictions/source")
    target_pred = ctx.writer.read_array("predictions/target")
    layout = ctx.writer.read_array("tsne")
    instances = ctx.instances.with_columns(
        pl.Series("source_pred", np.asarray(source_pred)), pl.Series("target_pred", np.asarray(target_pred)),
        pl.Series("x", np.asarray(layout[:, 0])), pl.Series("y", np.asarray(layout[:, 1])))
    ctx.writer.write_table("instances", instances.drop("position"))
    history = ctx.run.history
    ctx.writer.write_table("history", history)
    val = instances.filter((pl.col("role") == "target") & (pl.col("split") == "val"))
    confusion = confusion_table(val["label"].to_numpy(), val["source_pred"].to_numpy(),
                                val["target_pred"].to_numpy(), ctx.data.classes)
    ctx.writer.write_table("confusion", confusion)

    def best(model: str, dataset: str):
        part = history.filter((pl.col("model") == model) & (pl.col("dataset") == dataset))
        return float(part["accuracy"].max()) if len(part) else None

    return {"transferability_score": transferability_score(history),
            "best_target_model_on_target_val": best("target", "target_val"),
            "best_source_model_on_target_val": best("source", "target_val"),
            "best_source_model_on_source_val": best("source", "source_val"),
            "best_target_model_on_source_val": best("target", "source_val"),
            "final_target_model_on_target_val_here": float((val["target_pred"] == val["label"]).mean()),
            "final_source_model_on_target_val_here": float((val["source_pred"] == val["label"]).mean())}


def _combos(ctx: _Context) -> list:
    combos = [("target", "target"), ("source", "target"), ("target", "source")]
    if ctx.options.include_source_on_source:
        combos.append(("source", "source"))
    return combos


@_timed("conductance and activations")
def _stage_conductance(ctx: _Context) -> None:
    """Layer Conductance of every hidden layer, all layers from one integrated-gradients pass,
    streamed in resumable chunks; plus the layers' activations (max over space) in one forward."""
    from .analysis.attribution import layer_conductance

    opts = ctx.options
    for model_name, domain in _combos(ctx):
        combo = f"{model_name}_on_{domain}"
        model, rows = ctx.models[model_name], ctx.rows[domain]
        if all(ctx.writer.has_array(f"conductance/{combo}/{l}") for l in ctx.layer_names):
            continue
        n_chunks = max(1, math.ceil(len(rows) / opts.chunk_size))
        bar = _tqdm(ctx, total=len(rows), desc=f"conductance {combo}", unit="img",
                    bar_format=fraction_bar_format(len(rows)))
        for chunk in range(n_chunks):
            ctx.poll_background()
            part = rows[chunk * opts.chunk_size:(chunk + 1) * opts.chunk_size]
            names = [f"conductance/{combo}/{layer}" for layer in ctx.layer_names]
            if not all(ctx.writer.has_chunk(name, chunk) for name in names):
                # The completeness check is collected (and reported in the manifest) instead of
                # warning once per chunk.
                # the bar moves with every pass, within a chunk and within one instance's path
                result, report = layer_conductance(
                    model, ctx.layer_names, ctx.loader(part), None, n_steps=opts.n_steps,
                    method=opts.method, internal_batch_size=opts.internal_batch_size,
                    max_chunk_bytes=opts.max_chunk_bytes(), device=ctx.device, return_report=True, completeness_tol=None,
                    callback=bar.update)
                for name, layer in zip(names, ctx.layer_names):
                    ctx.writer.write_chunk(name, chunk, result[layer].numpy().astype(np.float32))
                ctx.writer.write_json(f"completeness/{combo}/{chunk:05d}", {
                    "cut": {l: bool(report.cut[l]) for l in ctx.layer_names},
                    "abs_gap": {l: float(report.gap(l).abs().sum()) for l in ctx.layer_names},
                    "abs_delta": float(report.delta.abs().sum())})
            else:
                bar.update(len(part))
        bar.close()
        for layer in ctx.layer_names:
            ctx.writer.concat_chunks(f"conductance/{combo}/{layer}", n_chunks)
    _record_completeness(ctx)
    for model_name, domain in [("target", "target"), ("source", "target"), ("target", "source"),
                               ("source", "source")]:
        combo = f"{model_name}_on_{domain}"
        names = {layer: f"activations/{combo}/{layer}" for layer in ctx.layer_names}

        def outputs(result, names=names) -> dict:
            return {names[layer]: value.numpy().astype(np.float32) for layer, value in result.activations.items()}

        rows = ctx.rows[domain]
        compute = _forward(ctx, model_name, rows, outputs, layers=ctx.layer_names, reduce="max")
        _write_chunked(ctx, list(names.values()), len(rows), compute, desc=f"activations {combo}")


def _record_completeness(ctx: _Context, tolerance: float = 0.05) -> None:
    """Pool the chunks' completeness checks: Σ|Σ conductance − ΔF| / Σ|ΔF| per combo and layer."""
    ctx.completeness = {}
    for model_name, domain in _combos(ctx):
        combo = f"{model_name}_on_{domain}"
        reports = [ctx.writer.read_json(n) for n in sorted(
            name for name in _json_names(ctx.writer) if name.startswith(f"completeness/{combo}/"))]
        delta = sum(r["abs_delta"] for r in reports)
        gaps = {l: (sum(r["abs_gap"][l] for r in reports) / delta if delta else 0.0) for l in ctx.layer_names}
        ctx.completeness[combo] = gaps
        failing = [f"{l} {g:.1%}" for l, g in gaps.items() if reports and reports[0]["cut"][l] and g > tolerance]
        if failing:
            ctx.warnings.append(f"{combo}: conductance sums miss F(x) - F(baseline) by more than "
                                f"{tolerance:.0%} ({', '.join(failing)}); raise n_steps "
                                f"(now {ctx.options.n_steps})")


def _completeness_exempt(ctx: _Context) -> dict:
    """{layer: why} for the layers whose conductance need not add up to F(x) − F(baseline)."""
    reports = [ctx.writer.read_json(n) for n in _json_names(ctx.writer)
               if n.startswith("completeness/")][:1]
    if not reports:
        return {}
    return {layer: ("a residual (skip) connection bypasses it: not every path from the input to "
                    "the output crosses this layer, so its conductance sums to only part of "
                    "F(x) − F(baseline); its completeness gap is not a warning")
            for layer, cut in reports[0]["cut"].items() if not cut}


def _json_names(writer) -> list:
    """Names of the JSON artefacts written so far (``completed()`` lists relative paths)."""
    return [path[len("json/"):-len(".json")] for path in writer.completed()
            if path.startswith("json/") and path.endswith(".json")]


def _class_positions(ctx: _Context, domain: str) -> dict:
    """{class label: positions within rows_{domain}} for classes that have instances there."""
    labels = ctx.instances["label"].to_numpy()[ctx.rows[domain]]
    return {c: np.flatnonzero(labels == c) for c in range(len(ctx.data.classes)) if np.any(labels == c)}


@_timed("important neurons")
def _stage_neurons(ctx: _Context) -> pl.DataFrame:
    """Neuron extraction (§5.3.1 A1–A4): rank sums per model, class and layer on target instances."""
    from .analysis.neurons import neuron_ranking

    if ctx.writer.has_table("neurons"):
        return ctx.writer.read_table("neurons")
    scopes = [(ctx.data.classes[c], pos) for c, pos in _class_positions(ctx, "target").items()]
    scopes.append((ALL, np.arange(len(ctx.rows["target"]))))
    frames = []
    for model_name in ("source", "target"):
        for layer in ctx.layers:
            # memory-mapped: each scope copies only its own rows
            conductance = ctx.writer.read_array(f"conductance/{model_name}_on_target/{layer.name}", mmap=True)
            for scope, positions in scopes:
                ranking = neuron_ranking(conductance[positions], fraction=ctx.options.neuron_fraction)
                frames.append(ranking.select(pl.lit(model_name).alias("model"), pl.lit(scope).alias("class"),
                                             pl.lit(layer.name).alias("layer"), pl.all()))
    table = pl.concat(frames)
    ctx.writer.write_table("neurons", table)
    return table


def _important(neurons: pl.DataFrame, model: str, scope: str, layer: str) -> np.ndarray:
    """Important neuron indices, most important first."""
    part = neurons.filter((pl.col("model") == model) & (pl.col("class") == scope)
                          & (pl.col("layer") == layer) & pl.col("important")).sort("rank")
    return part["neuron"].to_numpy()


def _pair_relations(ctx: _Context) -> list:
    """Each consecutive pair of analysed layers, direct or why not (from the model's data flow;
    every pair counts as direct for a model torch.fx cannot trace, and the weights stage then
    finds out by trying)."""
    if ctx.pair_relations is None:
        from .models.dataflow import PairRelation, pair_relations

        ctx.pair_relations = pair_relations(ctx.models["source"], ctx.layer_names) or [
            PairRelation(a, b, True, "") for a, b in zip(ctx.layer_names[:-1], ctx.layer_names[1:])]
    return ctx.pair_relations


def _layer_pairs(ctx: _Context) -> list:
    """The consecutive pairs joined by per-neuron weights: never two parallel branches, never a
    layer whose input is a residual sum."""
    return [(r.frm, r.to) for r in _pair_relations(ctx) if r.direct]


def _contribution_batch(options: AnalyzeOptions, n1: int, n2: int) -> int:
    """Instances per batch of weight contributions: (batch, n1, n2) floats near 256 MB (AlexNet
    fc6 → fc7 is 16M per instance)."""
    return max(1, min(options.batch_size, 2 ** 26 // (n1 * n2)))


@_timed("important weights")
def _stage_weights(ctx: _Context) -> None:
    """Weight extraction (§5.3.1 B1–B3) per class and consecutive pair, both models, plus the
    inherited check (§5.3.2) and each pair's parameter matrix for the view's brightness."""
    from .analysis.contributions import iter_weight_contributions, weight_contributions
    from .analysis.parameters import pair_weight_matrix
    from .analysis.similarity import neuron_similarity
    from .analysis.weights import WeightCounter, default_k, inherited_weights

    if ctx.writer.has_table("important_weights"):
        return
    classes = _class_positions(ctx, "target")
    rows = ctx.rows["target"]
    labels = ctx.instances["label"].to_numpy()[rows]
    frames = []
    top = {}  # (model, class label, layer_from) -> the counter's top-k weights
    # one bar over every pair and both models (instances each), named after the pair at work
    bar = _tqdm(ctx, total=2 * len(rows) * len(_layer_pairs(ctx)), desc="weight contributions", unit="img")
    for layer_from, layer_to in _layer_pairs(ctx):
        first = ctx.dataset(rows[:1])[0][0][None]
        try:  # a residual sum or concatenation between the two layers: no per-neuron weights
            for model_name in ("source", "target"):
                weight_contributions(ctx.models[model_name], layer_from, layer_to, first, device=ctx.device)
        except LayerError as exc:
            ctx.warnings.append(f"weights skipped: {exc}")
            bar.update(2 * len(rows))
            continue
        n_from = next(l.neurons for l in ctx.layers if l.name == layer_from)
        matrices = {m: pair_weight_matrix(ctx.models[m].get_submodule(layer_to), n_from)
                    for m in ("source", "target")}
        for model_name, matrix in matrices.items():
            ctx.writer.write_array(f"weights/{model_name}/{layer_from}__{layer_to}", matrix.astype(np.float32))
            n1, n2 = matrix.shape
            k = ctx.options.k_weights or default_k(n1, n2)
            if (model_name, layer_from) in ctx.weight_tops:  # counted on a Dask cluster
                top.update(ctx.weight_tops[(model_name, layer_from)])
                bar.update(len(rows))
                continue
            counters = {c: WeightCounter(n1, n2) for c in classes}
            batch = _contribution_batch(ctx.options, n1, n2)
            loader = DataLoader(ctx.dataset(rows), batch_size=batch, shuffle=False)
            start = 0
            bar.set_postfix_str(f"{model_name} {layer_from} -> {layer_to}")
            for contrib in iter_weight_contributions(ctx.models[model_name], layer_from, layer_to,
                                                     loader, device=ctx.device):
                batch_labels = labels[start:start + len(contrib)]
                for c in np.unique(batch_labels):
                    mask = torch.from_numpy(batch_labels == c).to(contrib.device)
                    counters[int(c)].update(contrib[mask], k)
                start += len(contrib)
                bar.update(len(contrib))
            for c, counter in counters.items():
                top[(model_name, c, layer_from)] = counter.top(k)
    bar.close()
    for layer_from, layer_to in _tqdm(ctx, _layer_pairs(ctx), desc="inherited weights", unit="pair"):
        if ("target", next(iter(classes)), layer_from) not in top:
            continue
        cond = {(m, l): ctx.writer.read_array(f"conductance/{m}_on_target/{l}", mmap=True)  # rows per class
                for m in ("source", "target") for l in (layer_from, layer_to)}
        for c, positions in classes.items():
            source_top = top[("source", c, layer_from)]
            target_top = top[("target", c, layer_from)]
            sim_from = neuron_similarity(cond[("source", layer_from)][positions], cond[("target", layer_from)][positions])
            sim_to = neuron_similarity(cond[("source", layer_to)][positions], cond[("target", layer_to)][positions])
            match = inherited_weights((target_top["n1"], target_top["n2"]),
                                      (source_top["n1"], source_top["n2"]), sim_from, sim_to)
            for model_name, weights in (("source", source_top), ("target", target_top)):
                frame = pl.DataFrame({
                    "model": model_name, "class": ctx.data.classes[c], "layer_from": layer_from,
                    "layer_to": layer_to, "n1": np.asarray(weights["n1"], dtype=np.int64),
                    "n2": np.asarray(weights["n2"], dtype=np.int64),
                    "count": np.asarray(weights["count"], dtype=np.int64),
                    "rank": np.arange(1, len(weights["n1"]) + 1, dtype=np.int64)})
                if model_name == "target":
                    # -1 marks a neuron without any similar source neuron (all-zero conductance)
                    frame = frame.with_columns(
                        pl.Series("inherited", match.inherited, dtype=pl.Boolean),
                        pl.Series("n1_match", match.n1_match, dtype=pl.Int64).replace(-1, None),
                        pl.Series("n2_match", match.n2_match, dtype=pl.Int64).replace(-1, None))
                else:
                    frame = frame.with_columns(pl.lit(None, dtype=pl.Boolean).alias("inherited"),
                                               pl.lit(None, dtype=pl.Int64).alias("n1_match"),
                                               pl.lit(None, dtype=pl.Int64).alias("n2_match"))
                frames.append(frame)
    ctx.writer.write_table("important_weights", pl.concat(frames) if frames else _empty_weights())


def _empty_weights() -> pl.DataFrame:
    return pl.DataFrame(schema={"model": pl.String, "class": pl.String, "layer_from": pl.String,
                                "layer_to": pl.String, "n1": pl.Int64, "n2": pl.Int64, "count": pl.Int64,
                                "rank": pl.Int64, "inherited": pl.Boolean, "n1_match": pl.Int64,
                                "n2_match": pl.Int64})


@_timed("domain discriminability")
def _stage_discriminability(ctx: _Context, neurons: pl.DataFrame) -> None:
    """Domain discriminability (§5.4.1, Algorithm 1) of the target model's important neurons, per
    class and over all classes, with the projection and biplot axes of §5.4.2."""
    from .analysis.discriminability import fit_scopes
    from .bundle import safe_component

    if ctx.writer.has_table("discriminability"):
        return
    source_classes, target_classes = _class_positions(ctx, "source"), _class_positions(ctx, "target")
    scopes = [(ctx.data.classes[c], source_classes[c], target_classes[c])
              for c in target_classes if c in source_classes]
    scopes.append((ALL, np.arange(len(ctx.rows["source"])), np.arange(len(ctx.rows["target"]))))
    # memory-mapped: a scope reads only its rows' important neurons, a layer at a time
    cond_s = {l: ctx.writer.read_array(f"conductance/target_on_source/{l}", mmap=True) for l in ctx.layer_names}
    cond_t = {l: ctx.writer.read_array(f"conductance/target_on_target/{l}", mmap=True) for l in ctx.layer_names}

    def features(cond: dict, positions: np.ndarray, important: dict) -> np.ndarray:
        """(instances, important neurons of every layer in turn), float64."""
        return np.hstack([cond[l][np.ix_(positions, important[l])] for l in ctx.layer_names]).astype(np.float64)

    inputs = []  # (scope, columns, source features, target features)
    for scope, pos_s, pos_t in scopes:
        important = {l: _important(neurons, "target", scope, l) for l in ctx.layer_names}
        columns = [(l, n) for l in ctx.layer_names for n in important[l]]
        inputs.append((scope, columns, features(cond_s, pos_s, important), features(cond_t, pos_t, important)))
    # one process per scope (as many as there are CPUs): every fit is seeded, so the same as in turn
    fits = fit_scopes([(src, tgt) for _, _, src, tgt in inputs], cv=ctx.options.cv,
                      random_state=ctx.options.seed)
    rows, summary = [], []
    for (scope, columns, src, tgt), fitted in zip(inputs, fits):
        coef = np.asarray(fitted.coef_, dtype=np.float64)
        order = np.lexsort((np.arange(len(coef)), -np.abs(coef)))
        rank = np.empty(len(coef), dtype=np.int64)
        rank[order] = np.arange(1, len(coef) + 1)
        rows.append(pl.DataFrame({"scope": scope, "layer": [l for l, _ in columns],
                                  "neuron": np.array([n for _, n in columns], dtype=np.int64),
                                  "coef": coef, "rank": rank}))
        summary.append({"scope": scope, "cv_accuracy": float(fitted.cv_accuracy_), "C": float(fitted.C_),
                        "n_source": len(src), "n_target": len(tgt), "n_features": len(columns)})
        ctx.writer.write_array(f"discriminability/{safe_component(scope)}/projection", np.asarray(fitted.projection_, np.float32))
        ctx.writer.write_array(f"discriminability/{safe_component(scope)}/axes", np.asarray(fitted.axes_, np.float32))
        # what the app needs to project over a subset of neurons (§5.4.2: the top five or the
        # checked ones) exactly as fitted.transform(x, neurons=...): z, components and origin
        z = fitted.scaler_.transform(np.vstack([src, tgt]))
        ctx.writer.write_array(f"discriminability/{safe_component(scope)}/standardized", np.asarray(z, np.float32))
        ctx.writer.write_array(f"discriminability/{safe_component(scope)}/components", np.asarray(fitted.components_, np.float64))
        ctx.writer.write_array(f"discriminability/{safe_component(scope)}/origin", np.asarray(fitted.origin_, np.float64))
    ctx.writer.write_table("discriminability_summary", pl.DataFrame(summary))
    ctx.writer.write_table("discriminability", pl.concat(rows))


@_timed("layer metrics")
def _stage_layer_metrics(ctx: _Context) -> None:
    """Beyond the paper: linear CKA between the models (float64, on the analysis's device) and
    proxy A-distance per layer and model (on a balanced subsample, docs/analysis-choices.md)."""
    from .analysis.discrepancy import proxy_a_distance
    from .analysis.similarity import linear_cka_torch

    if ctx.writer.has_table("layer_metrics"):
        return

    def act(combo, layer):
        return np.asarray(ctx.writer.read_array(f"activations/{combo}/{layer}"))

    def a_distance(source, target):
        return float(proxy_a_distance(source, target, random_state=ctx.options.seed,
                                      max_per_domain=ctx.options.a_distance_max_per_domain))

    records = []
    for layer in _tqdm(ctx, ctx.layer_names, desc="layer metrics (CKA, A-distance)", unit="layer"):
        a = {combo: act(combo, layer) for combo in
             ("source_on_source", "source_on_target", "target_on_source", "target_on_target")}
        records.append({
            "layer": layer,
            "cka_target_data": linear_cka_torch(a["source_on_target"], a["target_on_target"], device=ctx.device),
            "cka_source_data": linear_cka_torch(a["source_on_source"], a["target_on_source"], device=ctx.device),
            "a_distance_source_model": a_distance(a["source_on_source"], a["source_on_target"]),
            "a_distance_target_model": a_distance(a["target_on_source"], a["target_on_target"]),
        })
    ctx.writer.write_table("layer_metrics", pl.DataFrame(records))


@_timed("neuron changes")
def _stage_changes(ctx: _Context, neurons: pl.DataFrame) -> None:
    """Beyond the paper: per neuron, the relative change of its incoming weights and its rank shift."""
    from .analysis.changes import rank_shift, weight_change

    if ctx.writer.has_table("neuron_changes"):
        return
    source_modules = dict(ctx.models["source"].named_modules())
    target_modules = dict(ctx.models["target"].named_modules())
    frames = []
    for layer in ctx.layer_names:
        change = weight_change(source_modules[layer].weight.detach().cpu().numpy(),
                               target_modules[layer].weight.detach().cpu().numpy())

        def ranks(model):
            part = neurons.filter((pl.col("model") == model) & (pl.col("class") == ALL)
                                  & (pl.col("layer") == layer)).sort("neuron")
            return part["score"].to_numpy(), part["rank"].to_numpy()

        (score_s, rank_s), (score_t, rank_t) = ranks("source"), ranks("target")
        frames.append(pl.DataFrame({
            "layer": layer, "neuron": np.arange(len(change), dtype=np.int64),
            "weight_change": np.asarray(change, dtype=np.float64), "rank_source": rank_s,
            "rank_target": rank_t, "rank_shift": np.asarray(rank_shift(score_s, score_t), dtype=np.int64)}))
    ctx.writer.write_table("neuron_changes", pl.concat(frames))


def _precompute_feature_vis(bundle, models: dict, neurons: pl.DataFrame, *, device, progress: bool) -> int:
    """Feature visualizations of every important neuron of both models, cached in the finished
    bundle (``cache/featurevis/...``, where the app looks first) with the bundle's settings. Each
    batch is written as soon as it is optimised, so an interrupted run keeps what it finished and
    the next one resumes; returns how many images were made."""
    from .analysis.featurevis import visualize_neurons
    from .bundled import feature_vis_settings

    todo = []  # (model, layer, neurons without an image yet)
    for model_name in ("source", "target"):
        for layer in bundle.layer_names:
            wanted = neurons.filter((pl.col("model") == model_name) & (pl.col("layer") == layer)
                                    & pl.col("important"))["neuron"].unique().sort().to_list()
            missing = [n for n in wanted if bundle.cache_array(f"featurevis/{model_name}/{layer}/{n}") is None]
            if missing:
                todo.append((model_name, layer, missing))
    total = sum(len(missing) for _, _, missing in todo)
    settings = feature_vis_settings(bundle.manifest)
    steps = settings["steps"]
    bar = _tqdm(None, total=total, desc="feature visualizations", unit="neuron",
                bar_format=fraction_bar_format(total), disable=not progress)
    done = 0
    with bar:
        for model_name, layer, missing in todo:
            bar.set_postfix_str(f"{model_name} {layer}")
            for start in range(0, len(missing), FEATURE_VIS_BATCH):
                batch = missing[start:start + FEATURE_VIS_BATCH]
                images = visualize_neurons(models[model_name], layer, batch, device=device,
                                           batch_size=len(batch), **settings,
                                           on_step=lambda k: bar.update(k / max(steps, 1)))
                for neuron, picture in zip(batch, images):
                    if not bundle.write_cache_array(f"featurevis/{model_name}/{layer}/{neuron}", picture):
                        raise BundleError(f"{bundle.path / 'cache'}: cannot write feature visualizations "
                                          f"(read-only folder or full disk); the {done} made so far "
                                          "are kept and the same command resumes")
                    done += 1
                if steps == 0:
                    bar.update(len(batch))
    return done


def _fill_class_layouts(path: Path, stages: StageLog, progress: bool) -> None:
    """The instance view's layout of each focus class with its most confused class, laid out now
    into the bundle's cache so that a class switch in the app computes none (resumable)."""
    from .bundle import open_bundle
    from .class_layouts import fill_default_layouts

    with _stage(stages, "class layouts"):
        fill_default_layouts(open_bundle(path), progress=progress)


#: Neurons optimised together by ``--feature-vis`` (and written together: the unit of resume).
FEATURE_VIS_BATCH = 32


# ---------------------------------------------------------------------------------------- progress
def _tqdm(ctx: "_Context | None", iterable=None, **kwargs):
    """A tqdm bar, silent when progress is off."""
    from tqdm.auto import tqdm

    if ctx is not None:
        kwargs.setdefault("disable", not ctx.progress)
    return tqdm(iterable, **kwargs)


@contextlib.contextmanager
def _stage(stages: StageLog, name: str):
    """Time one stage of the analysis (and its peak memory) into ``stages`` under ``name``."""
    with stages.measure(name):
        yield


def stage_table(seconds: dict, warnings: "list[str]" = (), background: "dict | None" = None,
                peak_rss: "dict | None" = None) -> str:
    """The stage times (and the analysis's warnings) as the text ``analyze`` ends with; work that ran
    beside the stages (``background``) is listed after the total, which it is not part of. With
    ``peak_rss`` ({stage: bytes}) each measured stage also shows its peak resident memory."""
    background, peak_rss = background or {}, peak_rss or {}
    width = max([len(name) for name in [*seconds, *background]] + [len("total")])

    def peak(name: str) -> str:
        return f"  {peak_rss[name] / 2**30:11.2f}" if peak_rss.get(name) else ""

    lines = [f"{'stage':<{width}}  seconds" + ("  peak RSS GB" if peak_rss else "")]
    lines += [f"{name:<{width}}  {value:7.1f}{peak(name)}" for name, value in seconds.items()]
    lines.append(f"{'total':<{width}}  {sum(seconds.values()):7.1f}")
    lines += [f"{name:<{width}}  {value:7.1f}  (beside the stages above)" for name, value in background.items()]
    lines += [f"warning: {text}" for text in warnings]
    return "\n".join(lines)


def _finished_bundle(out: Path, fingerprint: str):
    """The finished bundle at ``out`` if it was computed with this fingerprint, else None."""
    from .bundle import open_bundle

    if not (out / "manifest.json").is_file():
        return None
    try:
        bundle = open_bundle(out)
    except BundleError:
        return None
    return bundle if bundle.manifest.get("fingerprint") == fingerprint else None


# -------------------------------------------------------------------------------------------- driver
def analyze(run_dir, out=None, *, options: "AnalyzeOptions | None" = None, progress: bool = True,
            resume: bool = True, client=None) -> Path:
    """Compute the analysis bundle of a training run.

    Parameters
    ----------
    run_dir : path
        A run directory written by ``tlexplorer train`` (or by :func:`tlexplorer.train_transfer`).
    out : path, optional
        The bundle directory (default ``run_dir/bundle``). Replaced atomically when finished.
    options : AnalyzeOptions, optional
    progress : bool
        Progress bars on the terminal, and a table of stage times and the warnings at the end.
    resume : bool
        Reuse the completed work of an interrupted analysis with the same options, and a finished
        bundle at ``out`` computed with the same options and inputs: then only the feature
        visualizations it lacks are added (``options.feature_vis``).
    client : distributed.Client, optional
        Run the chunked model passes as tasks on this Dask cluster (docs/distributed.md); the
        bundle is the same, byte for byte. None: everything in this process.

    Returns
    -------
    Path of the finished bundle.
    """
    from .bundle import BundleWriter, open_bundle
    from .models import hidden_layers
    from .training import load_run

    options = options or AnalyzeOptions()
    started = time.perf_counter()
    run = load_run(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / "bundle"
    device = resolve_device(options.device)
    data = run.data()
    source, target = run.build_models()
    models = {"source": source.to(device).eval(), "target": target.to(device).eval()}
    layers = hidden_layers(target, options.layers)
    hidden_layers(source, [l.name for l in layers])  # the same layers must exist in both models
    stages = StageLog(device)
    stages.add_seconds("run, data and models", time.perf_counter() - started)
    seconds = stages.seconds

    # Completed work of an interrupted analysis is reused only for the same options and inputs.
    fingerprint = hashlib.sha256(json.dumps([options.fingerprint(), run.config.get("checkpoints"),
                                             data.hashes()], sort_keys=True).encode()).hexdigest()[:20]
    finished = _finished_bundle(out, fingerprint) if resume else None
    if finished is not None:  # e.g. `analyze --feature-vis` after a plain `analyze`
        if progress:
            print(f"{out}: already analysed with these options and inputs (--restart recomputes it)")
        if options.feature_vis:
            with _stage(stages, "feature visualizations"):
                _precompute_feature_vis(finished, models, finished.table("neurons"), device=device,
                                        progress=progress)
        _fill_class_layouts(out, stages, progress)
        if progress:
            print(stage_table(seconds, finished.manifest.get("warnings", []), peak_rss=stages.peak_rss))
        return out

    writer = BundleWriter(out, resume=resume, fingerprint=fingerprint)
    ctx = _Context(run=run, data=data, models=models, layers=layers, writer=writer, options=options,
                   device=device, progress=progress, stages=stages)
    torch.manual_seed(options.seed)
    _stage_instances(ctx)
    _select_rows(ctx)
    if client is not None:  # the stages below then find their model passes' arrays done
        from .cluster.chunked import run_chunked_passes

        with _stage(stages, "model passes on the Dask cluster"):
            run_chunked_passes(ctx, client)
    _stage_predictions(ctx)
    _start_projection(ctx)
    try:
        _stage_conductance(ctx)
        neurons = _stage_neurons(ctx)
        _stage_weights(ctx)
        _stage_discriminability(ctx, neurons)
        _stage_layer_metrics(ctx)
        _stage_changes(ctx, neurons)
        _stage_projection(ctx)
    finally:
        _stop_projection(ctx)
    scores = _stage_tables(ctx)
    started = time.perf_counter()
    writer.write_file("models/source.pt", run.source_path)
    writer.write_file("models/target.pt", run.target_path)

    manifest = {
        "tlexplorer_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "source_domain": data.source_name, "target_domain": data.target_name,
        "classes": list(data.classes),
        "model": run.config["model"],
        "layers": [{"name": l.name, "kind": l.kind, "neurons": l.neurons} for l in layers],
        "options": options.to_json(),
        "fingerprint": fingerprint,
        "inputs": {"checkpoints": run.config.get("checkpoints", {}), "data": data.hashes(),
                   "data_spec": run.config.get("data"), "run_dir": str(Path(run_dir).resolve())},
        "combos": [f"{m}_on_{d}" for m, d in _combos(ctx)],
        "counts": {"instances": len(ctx.instances), "rows_source": len(ctx.rows["source"]),
                   "rows_target": len(ctx.rows["target"])},
        "image": {"size": data.image_size, "mean": list(data.target_train.mean),
                  "std": list(data.target_train.std)},
        "scores": scores,
        "completeness": ctx.completeness,
        "completeness_exempt": _completeness_exempt(ctx),
        "layer_pairs": [r.as_dict() for r in _pair_relations(ctx)],
        "warnings": ctx.warnings,
        **stages.as_manifest(),
    }
    path = writer.finalize(manifest)
    seconds["bundle"] = time.perf_counter() - started
    _fill_class_layouts(path, stages, progress)
    if options.feature_vis:
        with _stage(stages, "feature visualizations"):
            _precompute_feature_vis(open_bundle(path), models, neurons, device=device, progress=progress)
    if progress:
        print(stage_table(seconds, ctx.warnings, stages.background, stages.peak_rss))
    return path
