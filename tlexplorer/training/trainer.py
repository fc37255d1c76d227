"""Train the source model, fine-tune a copy on the target domain, and record a per-epoch history."""
from __future__ import annotations

import copy
import datetime as _dt
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from .._io import write_json
from ..config import package_versions, resolve_device
from ..datasets.base import ArrayDomainSplit, DomainSplit, TransferData
from ..errors import ModelError, RunError
from ..models import build_model, file_sha256, output_layer, replace_head, save_checkpoint
from .config_file import ConfigError, TrainOptions, normalize_model_spec, options_from_any
from .history import (DATASETS, HISTORY_SCHEMA, best_accuracies, final_accuracies, validate_history,
                      write_history)
from .recorder import evaluate_model
from .runs import CONFIG_FILE, HISTORY_FILE, SOURCE_FILE, TARGET_FILE, load_model_file

#: Splits smaller than this (as float32 tensors) are converted once and held in memory; larger ones
#: are streamed through a DataLoader every epoch.
PRELOAD_MAX_BYTES = 1 << 30
#: Preloaded splits up to this size are moved to the GPU once when training there.
DEVICE_CACHE_MAX_BYTES = 2 << 30


@dataclass
class RunResult:
    """What :func:`train_transfer` returns: the run directory's content, models still in memory.

    Attributes
    ----------
    run_dir : Path
    config : dict
        As written to ``config.json``.
    history : polars.DataFrame
        The history table (see :mod:`tlexplorer.training.history`).
    source_model, target_model : nn.Module
        The trained models, in eval mode, on the training device.
    """

    run_dir: Path
    config: dict
    history: pl.DataFrame
    source_model: nn.Module
    target_model: nn.Module

    def final_accuracies(self) -> dict:
        """``{model: {dataset: accuracy}}`` at each model's last epoch."""
        return final_accuracies(self.history)

    def best_accuracies(self) -> dict:
        """``{model: {dataset: best accuracy over epochs}}``."""
        return best_accuracies(self.history)

    def summary(self) -> str:
        """A few lines for the terminal: the run directory, final accuracies, score and time."""
        final, best = self.final_accuracies(), self.best_accuracies()
        lines = [f"run: {self.run_dir}"]
        for model in ("source", "target"):
            if model in final:
                lines.append(f"{model} model (last epoch): " + ", ".join(
                    f"{d} {a:.3f}" for d, a in sorted(final[model].items())))
        if "target_val" in best.get("target", {}) and "target_val" in best.get("source", {}):
            score = best["target"]["target_val"] - best["source"]["target_val"]
            lines.append(f"transferability score (best target - best source accuracy on target_val): {score:+.3f}")
        seconds = self.seconds
        if "train" in seconds:
            lines.append(f"training time: {seconds['train']:.0f} s (source {seconds['source']:.0f} s, "
                         f"target {seconds['target']:.0f} s)")
        lines.extend(f"warning: {w}" for w in self.config.get("warnings", []))
        return "\n".join(lines)

    @property
    def seconds(self) -> dict:
        """Wall-clock seconds: ``prepare`` (data to tensors), ``source``, ``target`` (each incl.
        ``source_eval`` / ``target_eval``), ``train`` (source + target)."""
        return self.config.get("seconds", {})


def _quiet_generator() -> torch.Generator:
    """A DataLoader draws its workers' base seed from its generator, by default the global RNG:
    a private one keeps the dropout masks (global RNG) the same whether data is streamed or not."""
    return torch.Generator().manual_seed(0)


class _Feed:
    """The (x, y) batches of one split: one normalised tensor in memory when small, else streamed."""

    def __init__(self, split: DomainSplit, *, device: torch.device, num_workers: int,
                 channels_last: bool = False):
        self.split = split
        self.channels_last = channels_last
        self.n = len(split)
        self.num_workers = num_workers
        self.device = device
        self.x = self.y = None
        nbytes = self.n * 3 * split.image_size ** 2 * 4
        if isinstance(split, ArrayDomainSplit) and type(split).__getitem__ is ArrayDomainSplit.__getitem__:
            # Same arithmetic as DomainSplit.to_tensor, vectorised: identical values, no per-item cost.
            mean = torch.tensor(split.mean, dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(split.std, dtype=torch.float32).view(1, 3, 1, 1)
            x = torch.from_numpy(np.ascontiguousarray(split.images)).permute(0, 3, 1, 2).float().div_(255.0)
            self.x = ((x - mean) / std).contiguous()
            self.y = torch.as_tensor(split.labels, dtype=torch.int64)
        elif nbytes <= PRELOAD_MAX_BYTES:
            xs, ys = [], []
            for x, y in DataLoader(split, batch_size=256, shuffle=False, num_workers=num_workers,
                                   generator=_quiet_generator()):
                xs.append(x)
                ys.append(torch.as_tensor(y, dtype=torch.int64))
            self.x = torch.cat(xs).contiguous() if xs else torch.empty(0)
            self.y = torch.cat(ys) if ys else torch.empty(0, dtype=torch.int64)
        if self.x is not None and channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)  # x[idx] keeps the layout
        if self.x is not None and device.type == "cuda" and nbytes <= DEVICE_CACHE_MAX_BYTES:
            self.x, self.y = self.x.to(device), self.y.to(device)

    def batches(self, positions: "np.ndarray | None", batch_size: int,
                generator: "torch.Generator | None" = None, drop_singleton: bool = False):
        """Yield ``(x, y)`` over ``positions`` (all rows when None), shuffled when a generator is given."""
        order = torch.arange(self.n) if positions is None else torch.as_tensor(positions, dtype=torch.int64)
        if generator is not None:
            order = order[torch.randperm(len(order), generator=generator)]
        stop = len(order)
        if drop_singleton and stop % batch_size == 1 and stop > 1:
            stop -= 1  # a batch of one breaks BatchNorm in train mode
        if self.x is not None:
            on_device = self.x.device
            for i in range(0, stop, batch_size):
                idx = order[i:i + batch_size].to(on_device)
                yield self.x[idx], self.y[idx]
            return
        loader = DataLoader(Subset(self.split, order[:stop].tolist()), batch_size=batch_size, shuffle=False,
                            num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                            generator=_quiet_generator())
        for x, y in loader:
            yield (x.contiguous(memory_format=torch.channels_last) if self.channels_last else x), y


def stratified_subsample(labels: np.ndarray, max_per_class: "int | None", seed) -> "np.ndarray | None":
    """Sorted row positions keeping at most ``max_per_class`` rows of each label, chosen at random
    with ``seed``; None when every row is kept."""
    labels = np.asarray(labels)
    if max_per_class is None:
        return None
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        if len(pos) > max_per_class:
            pos = rng.choice(pos, max_per_class, replace=False)
        keep.append(pos)
    out = np.sort(np.concatenate(keep)) if keep else np.empty(0, dtype=np.int64)
    return None if len(out) == len(labels) else out.astype(np.int64)


def kaiming_init_(model: nn.Module) -> nn.Module:
    """He-normal weights (fan-in, ReLU gain) and zero biases for every Conv2d and Linear, in place."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def _frozen_parameters(model: nn.Module, prefixes) -> "dict[str, list[str]]":
    """``{prefix: parameter names under it}``; a prefix matching nothing is a :class:`ConfigError`."""
    params = [n for n, _ in model.named_parameters()]
    out = {}
    for prefix in prefixes:
        hit = [n for n in params if n == prefix or n.startswith(prefix + ".")]
        if not hit:
            with_params = list(dict.fromkeys(n.rpartition(".")[0] for n in params))
            raise ConfigError(f"freeze: {prefix!r} matches no parameter of {type(model).__name__}; "
                              f"modules with parameters: {', '.join(with_params)}")
        out[prefix] = hit
    return out


def _frozen_modules(model: nn.Module, prefixes) -> "list[nn.Module]":
    """Freeze the parameters under each module-name prefix; return the frozen modules."""
    if not prefixes:
        return []
    names = dict(model.named_modules())
    params = dict(model.named_parameters())
    frozen = []
    for prefix, hit in _frozen_parameters(model, prefixes).items():
        for n in hit:
            params[n].requires_grad_(False)
        frozen += [m for n, m in names.items() if n == prefix or n.startswith(prefix + ".")]
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"freeze: {', '.join(prefixes)} freezes every parameter; nothing left to fine-tune")
    return frozen


def _optimizer(groups, options: TrainOptions) -> torch.optim.Optimizer:
    if options.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=options.momentum, nesterov=options.momentum > 0,
                               weight_decay=options.weight_decay)
    if options.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=options.weight_decay)
    return torch.optim.Adam(groups, weight_decay=options.weight_decay)


def _head_groups(model: nn.Module, lr: float, lr_head: "float | None") -> list:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if lr_head is None:
        return [{"params": [p for _, p in trainable], "lr": lr}]
    head_name, _ = output_layer(model)
    head = [p for n, p in trainable if n.startswith(head_name + ".")]
    body = [p for n, p in trainable if not n.startswith(head_name + ".")]
    return [g for g in ({"params": body, "lr": lr}, {"params": head, "lr": lr_head}) if g["params"]]


def idle_threads(limit: int) -> int:
    """At most ``limit`` threads, and no more than the cores other processes leave idle
    (``os.cpu_count()`` minus the 1-minute load average, rounded; at least 1)."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # not available on this platform
        return limit
    idle = int((os.cpu_count() or limit) - load + 0.5)
    return max(1, min(limit, idle))


class _Phase:
    """Shared state of one training phase (source or target)."""

    def __init__(self, *, feeds, eval_positions, options, device, progress, callback, rows):
        self.feeds, self.eval_positions = feeds, eval_positions
        self.options, self.device, self.progress = options, device, progress
        self.callback, self.rows = callback, rows

    def evaluate(self, model: nn.Module, role: str, epoch: int) -> dict:
        metrics = {}
        eval_bs = self.options.batch_size * 2
        for dataset in DATASETS:
            acc, loss, _ = evaluate_model(
                model, self.feeds[dataset].batches(self.eval_positions.get(dataset), eval_bs), self.device)
            metrics[dataset] = {"accuracy": acc, "loss": loss}
            self.rows.append({"model": role, "epoch": epoch, "dataset": dataset, "accuracy": acc, "loss": loss})
        return metrics

    def train(self, model: nn.Module, role: str, epochs: int, groups: list, frozen: list,
              generator: torch.Generator) -> float:
        """Train ``epochs`` epochs on ``{role}_train``, evaluating after each; returns seconds spent evaluating."""
        opts = self.options
        feed = self.feeds[f"{role}_train"]
        optimizer = _optimizer(groups, opts)
        steps_per_epoch = max(1, math.ceil(feed.n / opts.batch_size))
        total = epochs * steps_per_epoch
        if opts.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))
        else:
            scheduler = None
        own_val = f"{role}_val"
        eval_seconds = 0.0
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            model.train()
            for module in frozen:
                module.eval()
            loss_sum = torch.zeros((), device=self.device)
            correct = torch.zeros((), device=self.device, dtype=torch.int64)
            seen, shown = 0, time.perf_counter()
            with tqdm(total=feed.n, desc=f"{role} {epoch}/{epochs}", unit="img", disable=not self.progress,
                      leave=True, dynamic_ncols=True) as bar:
                for x, y in feed.batches(None, opts.batch_size, generator, drop_singleton=True):
                    x = x.to(self.device, non_blocking=True)
                    y = y.to(self.device, non_blocking=True)
                    logits = model(x)
                    loss = F.cross_entropy(logits, y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if scheduler is not None:
                        scheduler.step()
                    loss_sum += loss.detach() * len(y)
                    correct += (logits.detach().argmax(1) == y).sum()
                    seen += len(y)
                    bar.update(len(y))
                    # the running means twice a second (each read waits for the GPU), not per step count
                    if self.progress and time.perf_counter() - shown >= 0.5:
                        bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{int(correct) / seen:.3f}")
                        shown = time.perf_counter()
                if self.progress:
                    bar.set_postfix(loss=f"{float(loss_sum) / max(seen, 1):.3f}",
                                    acc=f"{int(correct) / max(seen, 1):.3f}", val="evaluating")
                t1 = time.perf_counter()
                metrics = self.evaluate(model, role, epoch)
                eval_seconds += time.perf_counter() - t1
                bar.set_postfix(loss=f"{float(loss_sum) / max(seen, 1):.3f}", acc=f"{int(correct) / max(seen, 1):.3f}",
                                val=f"{metrics[own_val]['accuracy']:.3f}")
            if self.callback is not None:
                self.callback({"model": role, "epoch": epoch, "epochs": epochs, "metrics": metrics,
                               "seconds": time.perf_counter() - t0})
        model.eval()
        return eval_seconds


def _train_both(data, spec, options, phase, device, cuda_devices, seconds, warnings, callback, channels_last):
    """Source phase then target phase under a forked, seeded RNG; returns (source, target, source classes)."""
    n_classes = len(data.classes)
    ckpt = spec["source_checkpoint"]
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(options.seed)
        if ckpt is not None:
            source = load_model_file({**spec, "num_classes": spec["num_classes"] or n_classes}, ckpt)
            src_classes = output_layer(source)[1].out_features
            if spec["num_classes"] not in (None, src_classes):
                raise ModelError(f"{ckpt}: checkpoint has {src_classes} outputs but model num_classes is "
                                 f"{spec['num_classes']}")
            source = source.to(device).eval()
            if channels_last:
                source = source.to(memory_format=torch.channels_last)
            if spec["pretrained"]:
                warnings.append("model.pretrained ignored: the source model comes from source_checkpoint")
            t0 = time.perf_counter()
            if src_classes == n_classes:
                metrics = phase.evaluate(source, "source", 1)
                if callback is not None:
                    callback({"model": "source", "epoch": 1, "epochs": 1, "metrics": metrics,
                              "seconds": time.perf_counter() - t0})
            else:
                warnings.append(f"the source checkpoint has {src_classes} outputs and the data {n_classes} "
                                "classes: no source-model accuracies recorded")
            seconds["source"] = time.perf_counter() - t0
            seconds["source_eval"] = seconds["source"]
        else:
            src_classes = n_classes
            source = build_model(spec["name"], n_classes, pretrained=spec["pretrained"], **spec["kwargs"])
            if options.init == "kaiming" and not spec["pretrained"]:
                kaiming_init_(source)
            _frozen_parameters(source, options.freeze)  # a typo fails now, not after the source epochs
            source = source.to(device)
            if channels_last:
                source = source.to(memory_format=torch.channels_last)
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(options.seed)
            seconds["source_eval"] = phase.train(source, "source", options.epochs_source,
                                                 [{"params": list(source.parameters()), "lr": options.lr_source}],
                                                 [], gen)
            seconds["source"] = time.perf_counter() - t0

        torch.manual_seed(options.seed + 1)
        target = copy.deepcopy(source)
        if src_classes != n_classes:
            replace_head(target, n_classes)
            target = target.to(device)
        for p in target.parameters():
            p.requires_grad_(True)
        frozen = _frozen_modules(target, options.freeze)
        groups = _head_groups(target, options.lr_target, options.lr_head)
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(options.seed + 1)
        seconds["target_eval"] = phase.train(target, "target", options.epochs_target, groups, frozen, gen)
        seconds["target"] = time.perf_counter() - t0
        for p in target.parameters():
            p.requires_grad_(True)
    if channels_last:
        source = source.to(memory_format=torch.contiguous_format)
        target = target.to(memory_format=torch.contiguous_format)
    return source, target, src_classes


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise RunError(f"{out_dir}: exists and is not a directory")
    if (out_dir / CONFIG_FILE).exists() and not overwrite:
        raise RunError(f"{out_dir / CONFIG_FILE}: the directory already holds a finished run; "
                       "choose another directory or overwrite it")


def train_transfer(data: TransferData, model_spec: "dict | str | None" = None,
                   options: "TrainOptions | dict | None" = None, out_dir="runs/run", *,
                   progress: bool = True, callback: "Callable[[dict], None] | None" = None,
                   overwrite: bool = False) -> RunResult:
    """Train a source model, fine-tune a copy on the target domain, and write the run directory.

    1. **Source.** ``model_spec`` built with ``num_classes`` = the data's class count (seeded,
       initialised as ``options.init`` says), trained on ``source_train`` for ``epochs_source`` epochs — or, with ``model_spec["source_checkpoint"]``,
       loaded from the user's checkpoint and not trained (its evaluation is recorded once, as epoch 1).
       ``pretrained: true`` starts a torchvision model from ImageNet weights.
    2. **Target.** A copy of the final source model (a fresh, seeded head when the source's head size
       differs from the data's class count, :func:`~tlexplorer.models.replace_head`), with the
       parameters under ``options.freeze`` fixed, fine-tuned on ``target_train`` for ``epochs_target``
       epochs at ``lr_target`` (``lr_head`` for the output layer).
    3. After **every** epoch the model being trained is evaluated (eval mode) on ``source_train``,
       ``target_train`` (each on a fixed stratified subsample of ``eval_max_per_class`` per class),
       ``source_val`` and ``target_val`` (in full); accuracy and mean cross-entropy go to the history.

    No epoch-0 rows are recorded for the target model: before its first epoch the fine-tuned copy *is*
    the source model's final state, whose rows are the source model's last epoch (with a replaced head
    it would only measure a random head). Epochs stay 1-based as the history contract says.

    Everything is seeded from ``options.seed`` (initialisation, head, shuffling, dropout, subsample)
    and runs under a forked RNG, so the caller's global RNG state is untouched. On the CPU two runs
    with the same inputs and the same thread count (``options.num_threads``; the count used is in
    ``config.json``) give identical histories and checkpoints; on a GPU cuDNN may differ slightly.
    On the CPU models and batches use the channels-last layout (faster oneDNN convolutions); the
    returned models and the checkpoints are in the default layout.

    The run directory receives ``source.pt``, ``target.pt``, ``history.parquet`` and last
    ``config.json``, each written atomically, and only after training finished: an interrupted run
    (Ctrl-C, an exception from ``callback``) leaves no file behind, and a directory with
    ``config.json`` is a complete run.

    Parameters
    ----------
    data : TransferData
    model_spec : dict or str, optional
        ``{"name": "digits-alexnet", "num_classes": None, "kwargs": {}, "pretrained": False,
        "source_checkpoint": None}``; a string is a name. Default ``digits-alexnet``.
    options : TrainOptions or dict, optional
        Default :class:`TrainOptions`.
    out_dir : path-like
        The run directory (created).
    progress : bool
        Show a tqdm bar per epoch (postfix: running loss/accuracy, then the validation accuracy).
    callback : callable, optional
        Called after each epoch with ``{"model", "epoch", "epochs", "metrics": {dataset:
        {"accuracy", "loss"}}, "seconds"}``; raising from it aborts training, writing nothing.
    overwrite : bool
        Replace a finished run in ``out_dir``; otherwise that is a :class:`RunError` (raised before
        training starts). While the new run is written the old ``config.json`` is removed first.

    Returns
    -------
    RunResult

    Raises
    ------
    ConfigError
        Bad options or model spec, a freeze prefix that matches nothing.
    ModelError
        Unknown architecture, a checkpoint that does not fit.
    RunError
        ``out_dir`` holds a finished run and ``overwrite`` is False.
    """
    options = options_from_any(options)
    spec = normalize_model_spec(model_spec)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    classes = list(data.classes)
    n_classes = len(classes)
    device = resolve_device(options.device)
    ckpt = spec["source_checkpoint"]
    if ckpt is None and spec["num_classes"] not in (None, n_classes):
        raise ConfigError(f"model num_classes={spec['num_classes']} but the data has {n_classes} classes; "
                          "a source model trained here uses the data's classes (leave num_classes out)")
    if ckpt is not None and not Path(ckpt).is_file():
        raise ModelError(f"{ckpt}: source checkpoint not found")
    warnings: list[str] = []
    t_start = time.perf_counter()

    data_hashes = data.hashes()
    # oneDNN's convolutions run faster on channels-last tensors (measured on digits-alexnet, 1 thread:
    # training +20%, evaluation x2.3); CUDA keeps the default layout.
    channels_last = device.type == "cpu"
    feeds = {f"{s.role}_{s.split}": _Feed(s, device=device, num_workers=options.num_workers,
                                          channels_last=channels_last)
             for s in data.splits()}
    eval_positions, eval_record = {}, {"max_per_class": options.eval_max_per_class, "seed": options.seed,
                                       "applies_to": ["source_train", "target_train"], "splits": {}}
    for k, name in enumerate(DATASETS):
        labels = feeds[name].split.labels
        pos = stratified_subsample(labels, options.eval_max_per_class, [options.seed, k]) \
            if name.endswith("_train") else None
        eval_positions[name] = pos
        entry = {"n": int(len(labels) if pos is None else len(pos)), "of": int(len(labels))}
        if pos is not None:
            entry["positions"] = pos.tolist()  # row positions within the split
        eval_record["splits"][name] = entry
    t_data = time.perf_counter()

    rows: list[dict] = []
    phase = _Phase(feeds=feeds, eval_positions=eval_positions, options=options, device=device,
                   progress=progress, callback=callback, rows=rows)
    seconds = {"prepare": t_data - t_start}
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    threads_before = torch.get_num_threads()
    if options.num_threads:
        threads = options.num_threads
    elif device.type == "cpu":
        threads = idle_threads(threads_before)
    else:
        threads = threads_before
    torch.set_num_threads(threads)
    try:
        source, target, src_classes = _train_both(data, spec, options, phase, device, cuda_devices,
                                                  seconds, warnings, callback, channels_last)
    finally:
        torch.set_num_threads(threads_before)

    history = validate_history(pl.DataFrame(rows, schema=HISTORY_SCHEMA, orient="row"), where="training history")
    seconds["train"] = seconds["source"] + seconds["target"]
    config = {
        "data": data.spec,
        "model": {"name": spec["name"], "num_classes": src_classes, "kwargs": spec["kwargs"]},
        "training": options.to_dict(),
        "seed": options.seed,
        "source_init": {"trained": ckpt is None, "pretrained": bool(spec["pretrained"]) and ckpt is None,
                        "init": options.init if ckpt is None and not spec["pretrained"] else None,
                        "checkpoint": str(Path(ckpt).resolve()) if ckpt else None,
                        "checkpoint_sha256": file_sha256(ckpt) if ckpt else None},
        "classes": classes,
        "domains": {"source": data.source_name, "target": data.target_name},
        "versions": package_versions(),
        "data_hashes": data_hashes,
        "eval_subsample": eval_record,
        "device": str(device),
        "num_threads": threads,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "summary": {"final": final_accuracies(history), "best": best_accuracies(history)},
        "warnings": warnings,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }
    write_run(out_dir, source, target, history, config)
    return RunResult(run_dir=out_dir, config=config, history=history, source_model=source.eval(),
                     target_model=target.eval())


def write_run(out_dir: Path, source: nn.Module, target: nn.Module, history: pl.DataFrame, config: dict) -> None:
    """Write the run's files atomically, ``config.json`` last (its presence marks a complete run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CONFIG_FILE).unlink(missing_ok=True)
    save_checkpoint(source, out_dir / SOURCE_FILE)
    save_checkpoint(target, out_dir / TARGET_FILE)
    write_history(history, out_dir / HISTORY_FILE)
    config["checkpoints"] = {"source": file_sha256(out_dir / SOURCE_FILE),
                             "target": file_sha256(out_dir / TARGET_FILE)}
    config["history_sha256"] = file_sha256(out_dir / HISTORY_FILE)
    write_json(out_dir / CONFIG_FILE, config)
