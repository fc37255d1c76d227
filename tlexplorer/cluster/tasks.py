"""What a Dask worker runs: one chunk of a chunked stage's model passes.

Each task rebuilds the driver's inputs on its worker once per process (the run's data from its spec,
both models from checkpoints whose SHA-256 is checked against the driver's), computes its chunk on the
worker's device with the same analysis calls and the same batches as the single-process pipeline,
and returns plain numpy arrays. Nothing here writes to the bundle: the driver is its only writer.

Every ``*_chunk`` function returns ``(payload, stats)``; ``stats`` holds the seconds spent rebuilding
inputs (``setup_s``, 0 once cached) and computing (``compute_s``), for the overhead figures of
``benchmarks/bench_distributed.py``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader

from .. import errors
from ..errors import DataError, ModelError, TLXError


@dataclass(frozen=True)
class RunInputs:
    """What every task needs to rebuild the driver's models and data on a worker.

    Attributes
    ----------
    model_spec : dict
        The run's ``config["model"]`` (architecture name, classes, keyword arguments).
    checkpoints : dict
        ``{"source" | "target": (path, sha256)}``; a worker loads the path, or the bytes the driver
        sent, only when their SHA-256 matches.
    data_spec : dict
        The run's ``config["data"]``, rebuilt with :func:`tlexplorer.datasets.load_transfer_data`.
    data_hashes : dict
        The driver's ``data.hashes()``: a worker whose files differ fails instead of mixing data.
    options : AnalyzeOptions
    layer_names : tuple of str
    factories : tuple of str
        The model factory (``module:function``) the spec names, when the driver's operator allowed
        it; a worker allows it too (a Dask client runs code on its workers anyway, so this widens
        nothing), importing it from the worker's own ``sys.path``.
    """

    model_spec: dict
    checkpoints: dict
    data_spec: dict
    data_hashes: dict
    options: object
    layer_names: tuple
    factories: tuple = ()


@dataclass(frozen=True)
class TaskError:
    """A user-caused error (a :class:`~tlexplorer.errors.TLXError`) on a worker, returned instead of
    raised: Dask would log a traceback per attempt and retry a task whose inputs will not change."""

    kind: str       # the TLXError subclass's name
    message: str

    def exception(self) -> TLXError:
        cls = getattr(errors, self.kind, TLXError)
        return (cls if isinstance(cls, type) and issubclass(cls, TLXError) else TLXError)(self.message)


def _user_errors_returned(task):
    @functools.wraps(task)
    def run(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        except TLXError as exc:
            return TaskError(type(exc).__name__, str(exc))
    return run


# ------------------------------------------------------------------------------ per-process inputs
class _Inputs:
    """Models and data of recent runs in this worker process, keyed by content identity (data spec
    and hashes; model spec, checkpoint SHA-256, device and thread). Bounded: a long-lived worker
    serving many analyses keeps the last few."""

    def __init__(self, size: int = 8):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, build):
        with self._lock:  # loads are rare; one at a time keeps memory predictable
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key], 0.0
            started = time.perf_counter()
            value = build()
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return value, time.perf_counter() - started


_INPUTS = _Inputs()


def _identity(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _load_data(inputs: RunInputs):
    from ..datasets import load_transfer_data

    data = load_transfer_data(inputs.data_spec)
    found = data.hashes()
    differ = sorted(k for k in inputs.data_hashes if found.get(k) != inputs.data_hashes[k])
    if differ:
        raise DataError(f"the data this worker loaded from the run's spec differ from the driver's "
                        f"({', '.join(differ)}): workers need the same files at the same paths")
    return data


def checkpoint_bytes(path: str, sha256: str, blob: "bytes | None" = None) -> bytes:
    """The checkpoint's bytes (``blob`` when the driver sent them, else read from ``path``), only
    when their SHA-256 is ``sha256``.

    Raises
    ------
    ModelError
        The file cannot be read on this worker, or the bytes are not the driver's checkpoint.
    """
    if blob is None:
        try:
            blob = Path(path).read_bytes()
        except OSError as exc:
            raise ModelError(f"{path}: this worker cannot read the checkpoint ({exc.strerror or exc}); "
                             "put the run on a filesystem the workers share") from exc
    actual = hashlib.sha256(blob).hexdigest()
    if actual != sha256:
        raise ModelError(f"{path}: the checkpoint a worker got has SHA-256 {actual[:12]}…, the driver's "
                         f"has {sha256[:12]}…; was it replaced during the analysis?")
    return blob


def _load_model(spec: dict, path: str, blob: bytes, device: torch.device):
    """Build the model from verified bytes through the usual loader (``weights_only=True``)."""
    from ..training.runs import load_model_file

    with tempfile.TemporaryDirectory(prefix="tlx-ckpt-") as tmp:
        local = Path(tmp) / Path(path).name  # the loader's messages name the run's file
        local.write_bytes(blob)
        model = load_model_file(spec, local)
    return model.to(device).eval()


def pick_device(requested: "str | None", worker_name, cuda_count: int) -> torch.device:
    """The device a worker computes on.

    An explicit ``requested`` device (or ``TLX_DEVICE``) wins. Otherwise the CPU without a GPU, and
    with several GPUs visible to the worker a local cluster's worker ``i`` (Dask names them 0, 1, ...)
    takes GPU ``i mod count``, so ``--workers 8`` on an 8-GPU machine uses all eight. Workers that
    see one GPU (``CUDA_VISIBLE_DEVICES`` set per worker, as dask-cuda and job schedulers do) use it.
    """
    from ..config import resolve_device

    if requested not in (None, "auto") or os.environ.get("TLX_DEVICE", "auto") != "auto":
        return resolve_device(requested)
    if cuda_count == 0:
        return torch.device("cpu")
    if cuda_count > 1 and isinstance(worker_name, int):
        return torch.device(f"cuda:{worker_name % cuda_count}")
    return torch.device("cuda")


def _worker_device(inputs: RunInputs) -> torch.device:
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):  # called outside a worker (tests, debugging)
        name = None
    return pick_device(inputs.options.device, name, torch.cuda.device_count())


def allow_factories(names) -> None:
    """Allow the driver's model factories in this worker process (once each), importing them from
    its ``sys.path`` and the folders of its ``TLX_PYTHONPATH``."""
    from ..models.factories import ENV_PYTHONPATH, allow_factory, is_allowed

    for name in names:
        if not is_allowed(name):
            folders = [p for p in os.environ.get(ENV_PYTHONPATH, "").split(os.pathsep) if p]
            allow_factory(name, pythonpath=folders)


def _prepare(inputs: RunInputs, role: str, blob: "bytes | None"):
    """``(model, data, device, setup seconds)`` for this task, loading what is not cached yet."""
    allow_factories(inputs.factories)
    device = _worker_device(inputs)
    data, data_s = _INPUTS.get(("data", _identity(inputs.data_spec), _identity(inputs.data_hashes)),
                               lambda: _load_data(inputs))
    path, sha256 = inputs.checkpoints[role]
    # keyed by thread too: the passes hook the model's modules, so two threads never share one
    key = ("model", _identity(inputs.model_spec), sha256, str(device), threading.get_ident())
    model, model_s = _INPUTS.get(key, lambda: _load_model(
        inputs.model_spec, path, checkpoint_bytes(path, sha256, blob), device))
    return model, data, device, data_s + model_s


# ----------------------------------------------------------------------------------- chunk inputs
def _loader(data, where: pl.DataFrame, batch_size: int) -> DataLoader:
    """Batches of ``batch_size`` over the instances ``where`` lists, in order."""
    from ..pipeline import _RowsDataset

    return DataLoader(_RowsDataset(data, where, np.arange(len(where))), batch_size=batch_size,
                      shuffle=False)


def _kept(arrays: dict, keep: "tuple | None") -> dict:
    """The rows ``keep = (start, stop)`` of every array (all rows for None)."""
    if keep is None:
        return arrays
    return {name: np.ascontiguousarray(a[keep[0]:keep[1]]) for name, a in arrays.items()}


def _timed(setup_s: float, compute):
    started = time.perf_counter()
    payload = compute()
    return payload, {"setup_s": setup_s, "compute_s": time.perf_counter() - started}


# ------------------------------------------------------------------------------------------ tasks
# Each mirrors one loop of tlexplorer.pipeline with the same calls, arguments and batches; the tests
# compare whole bundles made both ways byte for byte. A row's numbers can depend on which rows share its
# batch (matrix-product kernels block by batch size), so the forward passes, which the pipeline runs as
# one loader over all rows, get ``where`` widened to whole batches of that loader and return the rows
# ``keep = (start, stop)`` of it.
@_user_errors_returned
def predictions_chunk(inputs: RunInputs, role: str, blob, where: pl.DataFrame, keep: "tuple | None"):
    """``_stage_predictions`` on a chunk: ``{"probabilities", "predictions" and, for the target
    model, "embedding": array}``."""
    from ..analysis.activations import capture

    model, data, device, setup_s = _prepare(inputs, role, blob)

    def compute():
        want_embedding = role == "target"
        result = capture(model, _loader(data, where, inputs.options.batch_size),
                         embedding=want_embedding, predictions=True, device=device)
        out = {"probabilities": result.predictions.probabilities.numpy().astype(np.float32),
               "predictions": result.predictions.labels.numpy().astype(np.int64)}
        if want_embedding:
            out["embedding"] = result.embedding.numpy().astype(np.float32)
        return _kept(out, keep)

    return _timed(setup_s, compute)


@_user_errors_returned
def conductance_chunk(inputs: RunInputs, role: str, blob, where: pl.DataFrame, keep: None = None):
    """``_stage_conductance`` on one of its chunks: ``({layer: (n, neurons) float32}, completeness
    record)``. ``keep`` is None: the pipeline loads each conductance chunk on its own."""
    from ..analysis.attribution import layer_conductance

    model, data, device, setup_s = _prepare(inputs, role, blob)
    opts, names = inputs.options, list(inputs.layer_names)

    def compute():
        result, report = layer_conductance(
            model, names, _loader(data, where, opts.batch_size), None, n_steps=opts.n_steps,
            method=opts.method, internal_batch_size=opts.internal_batch_size,
            max_chunk_bytes=opts.max_chunk_bytes(), device=device, return_report=True, completeness_tol=None)
        arrays = {layer: result[layer].numpy().astype(np.float32) for layer in names}
        record = {"cut": {l: bool(report.cut[l]) for l in names},
                  "abs_gap": {l: float(report.gap(l).abs().sum()) for l in names},
                  "abs_delta": float(report.delta.abs().sum())}
        return arrays, record

    return _timed(setup_s, compute)


@_user_errors_returned
def activations_chunk(inputs: RunInputs, role: str, blob, where: pl.DataFrame, keep: "tuple | None"):
    """The activations part of ``_stage_conductance``: ``{layer: (n, neurons) float32}``, max over
    space."""
    from ..analysis.activations import capture

    model, data, device, setup_s = _prepare(inputs, role, blob)

    def compute():
        result = capture(model, _loader(data, where, inputs.options.batch_size),
                         layers=list(inputs.layer_names), reduce="max", device=device)
        return _kept({name: result.activations[name].numpy().astype(np.float32)
                      for name in inputs.layer_names}, keep)

    return _timed(setup_s, compute)


@_user_errors_returned
def weight_counts_chunk(inputs: RunInputs, role: str, blob, where: pl.DataFrame, labels: np.ndarray,
                        layer_from: str, layer_to: str, k: int, batch: int):
    """The counting loop of ``_stage_weights`` on a chunk of target instances.

    Returns ``{class label: (flat indices int64, counts int64, instances)}`` - each class's counts of
    how often each weight was among an instance's top ``k``, sparse because a chunk's instances
    select few of the ``n1 * n2`` weights - or None when the pair has no per-neuron weights (the
    driver then skips it with a warning, as the single-process pipeline does).
    """
    from ..analysis.contributions import iter_weight_contributions
    from ..analysis.weights import WeightCounter
    from ..errors import LayerError

    model, data, device, setup_s = _prepare(inputs, role, blob)

    def compute():
        counters = {}
        start = 0
        try:
            for contrib in iter_weight_contributions(model, layer_from, layer_to,
                                                     _loader(data, where, batch), device=device):
                batch_labels = labels[start:start + len(contrib)]
                for c in np.unique(batch_labels):
                    mask = torch.from_numpy(batch_labels == c).to(contrib.device)
                    counter = counters.setdefault(int(c), WeightCounter(*contrib.shape[1:], k))
                    counter.update(contrib[mask], k)
                start += len(contrib)
        except LayerError:
            return None
        out = {}
        for c, counter in counters.items():
            flat = counter.counts.ravel()
            idx = np.flatnonzero(flat)
            out[c] = (idx.astype(np.int64), flat[idx], counter.n_instances)
        return out

    return _timed(setup_s, compute)
