"""The driver's side of a distributed analysis: the chunked stages' model passes as Dask tasks.

:func:`run_chunked_passes` plans one task per chunk of every model pass the pipeline would make -
predictions and embeddings, Layer Conductance of each model-on-domain combination, activations, and
the weight-contribution counts - submits them all, and stores each result as it arrives: arrays as
chunks through the bundle writer (so a killed driver resumes from the finished chunks), conductance
chunks with their completeness records under the pipeline's own names, weight counts merged per class
in memory. When every chunk of an artefact is in, it is concatenated exactly as ``write_array`` would
write the whole array; the pipeline's stages then find their arrays done and only do the driver-side
work (t-SNE, tables, rankings, discriminability). The driver stays the only writer of the bundle.
"""
from __future__ import annotations

import functools
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import polars as pl

from ..pipeline import FORWARD_CHUNKS, _spans, whole_batches
from . import tasks
from .client import require_distributed

log = logging.getLogger(__name__)

# FORWARD_CHUNKS (the pipeline's): rows per task of the forward-only passes (predictions,
# activations) and the weight counts, in chunks of ``chunk_size``: conductance-sized chunks would be
# mostly scheduling overhead (see docs/distributed.md). The same chunks as the pipeline's streamed
# arrays, so either path resumes from the other's.
#: Automatic retries of a task that raised (a worker that dies is rescheduled by Dask anyway).
RETRIES = 2
#: Dask's order among tasks ready at the same time (higher first): the long conductance chunks
#: start first so the short ones fill in at the end.
PRIORITY = {"conductance": 3, "weights": 2, "predictions": 1, "activations": 1}


@dataclass
class _Group:
    """Chunks that together make artefacts; ``finish()`` runs once when all are stored."""

    chunks: set
    finish: Callable[[], None]


@dataclass
class _Job:
    kind: str
    label: str                  # for the task key (dashboard) and error messages
    func: Callable
    args: tuple
    store: Callable[[object], None]
    group: _Group
    chunk: int


@dataclass
class ChunkStats:
    """What the chunks cost per kind of pass, summed over its tasks.

    ``totals[kind]`` holds ``tasks``, ``setup_s`` (rebuilding models and data on a worker, 0 once
    cached there), ``compute_s`` (the pass itself, on the worker), ``fetch_s`` (the driver receiving
    the result: transfer and deserialisation), ``store_s`` (the driver writing it) and ``bytes`` (the
    result's arrays).
    """

    workers: int = 0
    wall_s: float = 0.0   # first submit to last result stored
    totals: dict = field(default_factory=dict)

    def add(self, kind: str, **values) -> None:
        total = self.totals.setdefault(kind, {"tasks": 0, "setup_s": 0.0, "compute_s": 0.0,
                                              "fetch_s": 0.0, "store_s": 0.0, "bytes": 0})
        total["tasks"] += 1
        for name, value in values.items():
            total[name] += value


def _nbytes(payload) -> int:
    if isinstance(payload, np.ndarray):
        return payload.nbytes
    if isinstance(payload, dict):
        return sum(_nbytes(v) for v in payload.values())
    if isinstance(payload, (tuple, list)):
        return sum(_nbytes(v) for v in payload)
    return 0


# ---------------------------------------------------------------------------------------- planning
def _inputs(ctx) -> tasks.RunInputs:
    from ..models import file_sha256
    from ..models.factories import is_allowed, is_factory_name

    recorded = ctx.run.config.get("checkpoints") or {}
    checkpoints = {role: (str(path), recorded.get(role) or file_sha256(path))
                   for role, path in (("source", ctx.run.source_path), ("target", ctx.run.target_path))}
    name = ctx.run.model_spec["name"]
    return tasks.RunInputs(model_spec=ctx.run.model_spec, checkpoints=checkpoints,
                           data_spec=ctx.run.config["data"], data_hashes=ctx.data.hashes(),
                           options=ctx.options, layer_names=tuple(ctx.layer_names),
                           factories=(name,) if is_factory_name(name) and is_allowed(name) else ())


def _workers_see(client, path: str) -> bool:
    """Whether every worker connected now can read ``path`` (else its bytes are sent)."""
    return all(client.run(os.path.isfile, path).values())


def _blobs(client, inputs: tasks.RunInputs) -> dict:
    """Per model, None (workers read the checkpoint path) or a future of its bytes on the workers."""
    from pathlib import Path

    out = {}
    for role, (path, _sha) in inputs.checkpoints.items():
        if _workers_see(client, path):
            out[role] = None
        else:
            log.info("sending %s to the workers (they cannot read it)", path)
            [out[role]] = client.scatter([Path(path).read_bytes()], broadcast=True)
    return out


def _where(ctx, rows: np.ndarray) -> pl.DataFrame:
    """The columns a worker needs to find these instances in its own copy of the data."""
    return ctx.instances[rows].select("role", "split", "position")


@dataclass
class _ArrayPass:
    """One model pass over some rows whose per-row outputs become artefacts, chunk by chunk."""

    kind: str                # conductance, predictions or activations
    what: str                # the combination or model, for task labels
    func: Callable           # a tasks.*_chunk function
    model: str
    rows: np.ndarray
    step: int                # rows per chunk
    names: dict              # the task's output key -> artefact name, in concatenation order
    # batches as in one loader over all rows (forward passes), not one loader per chunk (conductance)
    global_batches: bool = True
    record: "str | None" = None  # conductance: JSON name of the chunks' completeness records

    def store(self, writer, chunk: int, result) -> None:
        arrays, record = result if self.record else (result, None)
        if record is not None:
            writer.write_json(f"{self.record}/{chunk:05d}", record)
        for key, name in self.names.items():
            writer.write_chunk(name, chunk, arrays[key])

    def concat(self, writer, n_chunks: int) -> None:
        for name in self.names.values():
            writer.concat_chunks(name, n_chunks)


def _array_jobs(ctx, p: _ArrayPass, inputs, blobs) -> list:
    """Jobs for the chunks of ``p`` not stored yet (none when its arrays exist)."""
    writer, names = ctx.writer, list(p.names.values())
    if all(writer.has_array(n) for n in names):
        return []
    spans = _spans(len(p.rows), p.step)
    group = _Group({i for i, _a, _b in spans if not all(writer.has_chunk(n, i) for n in names)},
                   functools.partial(p.concat, writer, len(spans)))
    if not group.chunks:
        group.finish()
    jobs = []
    for i, a, b in spans:
        if i in group.chunks:
            lo, hi = whole_batches(a, b, len(p.rows), ctx.options.batch_size) if p.global_batches else (a, b)
            keep = (a - lo, b - lo) if p.global_batches else None
            jobs.append(_Job(p.kind, f"{p.kind}/{p.what}-{i:05d}", p.func,
                             (inputs, p.model, blobs[p.model], _where(ctx, p.rows[lo:hi]), keep),
                             functools.partial(p.store, writer, i), group, i))
    return jobs


def _plan(ctx, inputs, blobs) -> list:
    """Every job of the analysis. Conductance uses the pipeline's own chunks, so either path resumes
    from the other's; the forward passes use larger ones (see FORWARD_CHUNKS)."""
    from ..pipeline import _combos

    layers, forward = ctx.layer_names, ctx.options.chunk_size * FORWARD_CHUNKS
    passes = []
    for model_name, domain in _combos(ctx):
        combo = f"{model_name}_on_{domain}"
        passes.append(_ArrayPass("conductance", combo, tasks.conductance_chunk, model_name,
                                 ctx.rows[domain], ctx.options.chunk_size,
                                 {l: f"conductance/{combo}/{l}" for l in layers},
                                 global_batches=False, record=f"completeness/{combo}"))
    all_rows = ctx.instances["row"].to_numpy()
    for model_name in ("source", "target"):
        names = {"embedding": "embedding"} if model_name == "target" else {}
        names.update({k: f"{k}/{model_name}" for k in ("probabilities", "predictions")})  # last: marks done
        passes.append(_ArrayPass("predictions", model_name, tasks.predictions_chunk, model_name,
                                 all_rows, forward, names))
    for model_name, domain in [("target", "target"), ("source", "target"), ("target", "source"),
                               ("source", "source")]:
        combo = f"{model_name}_on_{domain}"
        passes.append(_ArrayPass("activations", combo, tasks.activations_chunk, model_name,
                                 ctx.rows[domain], forward, {l: f"activations/{combo}/{l}" for l in layers}))
    return [job for p in passes for job in _array_jobs(ctx, p, inputs, blobs)] + \
        _weight_jobs(ctx, inputs, blobs)


class _WeightMerge:
    """Per class, the counts of one model and pair summed over its chunks; their top ``k`` go to
    ``ctx.weight_tops`` once all chunks are in, unless the pair has no per-neuron weights (then the
    pipeline skips it with its own warning)."""

    def __init__(self, ctx, model_name: str, layer_from: str, classes, n1: int, n2: int, k: int):
        from ..analysis.weights import WeightCounter

        self.ctx, self.key, self.k = ctx, (model_name, layer_from), k
        self.counters = {c: WeightCounter(n1, n2, k) for c in classes}
        self.skipped = False

    def store(self, result) -> None:
        if result is None:
            self.skipped = True
            return
        for c, (idx, counts, n) in result.items():
            self.counters[c].add_counts(idx, counts, n)

    def finish(self) -> None:
        if not self.skipped:
            model_name, layer_from = self.key
            self.ctx.weight_tops[self.key] = {(model_name, c, layer_from): counter.top(self.k)
                                              for c, counter in self.counters.items()}


def _weight_jobs(ctx, inputs, blobs) -> list:
    """Counting jobs per model and consecutive pair (see :class:`_WeightMerge`)."""
    from ..analysis.weights import default_k
    from ..pipeline import _class_positions, _contribution_batch, _layer_pairs

    if ctx.writer.has_table("important_weights"):
        return []
    rows = ctx.rows["target"]
    labels = ctx.instances["label"].to_numpy()[rows]
    classes = _class_positions(ctx, "target")
    neurons = {layer.name: layer.neurons for layer in ctx.layers}
    jobs = []
    for layer_from, layer_to in _layer_pairs(ctx):
        n1, n2 = neurons[layer_from], neurons[layer_to]
        k = ctx.options.k_weights or default_k(n1, n2)
        batch = _contribution_batch(ctx.options, n1, n2)
        # whole batches per chunk, so that every batch is one of the single-process pipeline's
        spans = _spans(len(rows), max(batch, ctx.options.chunk_size * FORWARD_CHUNKS // batch * batch))
        for model_name in ("source", "target"):
            merge = _WeightMerge(ctx, model_name, layer_from, classes, n1, n2, k)
            group = _Group({i for i, _a, _b in spans}, merge.finish)
            for i, a, b in spans:
                jobs.append(_Job("weights", f"weights/{model_name}/{layer_from}__{layer_to}-{i:05d}",
                                 tasks.weight_counts_chunk,
                                 (inputs, model_name, blobs[model_name], _where(ctx, rows[a:b]),
                                  labels[a:b], layer_from, layer_to, k, batch), merge.store, group, i))
    return jobs


# ----------------------------------------------------------------------------------------- running
def run_chunked_passes(ctx, client) -> ChunkStats:
    """Compute every chunked model pass of ``ctx``'s analysis on the Dask cluster of ``client``.

    Parameters
    ----------
    ctx : tlexplorer.pipeline._Context
        After the instances table and the attributed rows are known; its writer receives the arrays.
    client : distributed.Client

    Returns
    -------
    ChunkStats
        Setup and compute seconds per kind of pass (for benchmarks/bench_distributed.py).

    Raises
    ------
    Exception
        A task's own error after its retries (e.g. ``DataError`` when a worker's data differ), or
        :class:`tlexplorer.errors.ClusterError` when a chunk kept killing its workers. Chunks stored
        before that stay in the work directory; rerunning resumes from them.
    """
    require_distributed()
    from distributed import as_completed
    from tqdm.auto import tqdm

    stats = ChunkStats(workers=len(client.scheduler_info(n_workers=-1)["workers"]))
    inputs = _inputs(ctx)
    blobs = _blobs(client, inputs)
    jobs = _plan(ctx, inputs, blobs)
    if not jobs:
        return stats
    if ctx.progress and client.dashboard_link:
        print(f"Dask dashboard: {client.dashboard_link}", flush=True)
    token = uuid.uuid4().hex[:8]  # keys unique per analysis: a shared cluster keeps no stale results
    started = time.perf_counter()
    pending = {client.submit(job.func, *job.args, key=f"tlx-{job.label}-{token}", retries=RETRIES,
                             priority=PRIORITY[job.kind], pure=False): job for job in jobs}
    bar = tqdm(total=len(jobs), unit="chunk", disable=not ctx.progress,
               desc=f"chunked passes on {stats.workers} Dask worker{'s' * (stats.workers != 1)}")
    try:
        for future in as_completed(list(pending), loop=client.loop):
            job = pending.pop(future)
            received = time.perf_counter()
            payload, task_stats = _result(future, job)
            future.release()  # the worker may drop the result now
            stored = time.perf_counter()
            job.store(payload)
            job.group.chunks.discard(job.chunk)
            if not job.group.chunks:
                job.group.finish()
            stats.add(job.kind, **task_stats, fetch_s=stored - received,
                      store_s=time.perf_counter() - stored, bytes=_nbytes(payload))
            bar.update()
    finally:
        bar.close()
        if pending:  # an error or Ctrl-C: stop the rest; finished chunks are on disk
            client.cancel(list(pending))
        for blob in blobs.values():
            if blob is not None:
                blob.release()
    stats.wall_s = time.perf_counter() - started
    log.info("chunked passes: %s", stats)
    return stats


def _result(future, job: _Job):
    from distributed import KilledWorker

    from ..errors import ClusterError

    try:
        result = future.result()
    except KilledWorker as exc:
        raise ClusterError(f"chunk {job.label} stopped its Dask workers several times (out of memory or "
                           f"a crash); see the worker logs ({exc})") from exc
    if isinstance(result, tasks.TaskError):
        raise result.exception()
    return result
