"""Runs from models trained elsewhere: two checkpoints and a history become a run directory."""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import polars as pl

from ..datasets import TransferData
from ..errors import RunError
from .config_file import normalize_model_spec
from .history import read_history, validate_history
from .recorder import HistoryRecorder
from .runs import CONFIG_FILE, Run, load_model_file, load_run
from ..config import package_versions
from .trainer import write_run


def import_run(data: TransferData, model_spec, source_checkpoint: "str | os.PathLike",
               target_checkpoint: "str | os.PathLike", history=None, out_dir="runs/imported", *,
               overwrite: bool = False) -> Run:
    """Make a run directory (what ``tlexplorer analyze`` reads) from your own trained models.

    Parameters
    ----------
    data : TransferData
        The two domains (``load_transfer_data``/``load_scenario``); its ``spec`` is recorded so the
        analysis rebuilds the same data.
    model_spec : dict or str
        ``{"name": "resnet18"}``, ``{"name": "mypkg.nets:make_net", "kwargs": {...}}`` (any CNN of
        yours, built as ``make_net(num_classes=..., **kwargs)``) or a name.
    source_checkpoint, target_checkpoint : path
        ``state_dict`` files, read with ``weights_only=True``; the target's head may differ in size.
    history : path, polars.DataFrame, HistoryRecorder or None
        Per-epoch accuracies (CSV or Parquet with ``model, epoch, dataset, accuracy, loss``). Without
        one the accuracy chart is empty and the transferability score is computed from the final
        models' accuracies on the target validation set, recorded as epoch 1.
    out_dir : path
    overwrite : bool
        Replace a finished run in ``out_dir``.
    """
    out_dir = Path(out_dir)
    if (out_dir / CONFIG_FILE).exists() and not overwrite:
        raise RunError(f"{out_dir}: already holds a finished run; pass overwrite=True to replace it")
    spec = normalize_model_spec(model_spec)
    spec["num_classes"] = spec.get("num_classes") or len(data.classes)
    source = load_model_file(spec, source_checkpoint)
    target = load_model_file(spec, target_checkpoint)
    if history is None:
        history = _final_accuracies(data, source, target)
    elif isinstance(history, HistoryRecorder):
        history = history.frame()
    elif not isinstance(history, pl.DataFrame):
        history = read_history(history)
    history = validate_history(history, where="imported history")
    config = {
        "data": data.spec,
        "model": {"name": spec["name"], "num_classes": spec["num_classes"], "kwargs": spec.get("kwargs") or {}},
        "training": None,
        "imported": {"source": str(Path(source_checkpoint).resolve()),
                     "target": str(Path(target_checkpoint).resolve())},
        "classes": list(data.classes),
        "domains": {"source": data.source_name, "target": data.target_name},
        "versions": package_versions(),
        "data_hashes": data.hashes(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "warnings": [],
    }
    write_run(out_dir, source, target, history, config)
    return load_run(out_dir)


def _final_accuracies(data: TransferData, source, target) -> pl.DataFrame:
    """One epoch of history from the given models: each on both validation sets."""
    from torch.utils.data import DataLoader

    recorder = HistoryRecorder()
    for name, model in (("source", source), ("target", target)):
        for dataset in ("source_val", "target_val"):
            split = data.source_val if dataset == "source_val" else data.target_val
            recorder.evaluate(model, DataLoader(split, batch_size=128), model=name, epoch=1, dataset=dataset)
    return recorder.frame()
