"""Record a per-epoch history from your own training loop, and the evaluation both loops share."""
from __future__ import annotations

import math
import operator
import os
from pathlib import Path
from typing import Iterable

import polars as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from .history import DATASETS, HISTORY_SCHEMA, MODELS, HistoryError, validate_history, write_history


@torch.no_grad()
def evaluate_model(model: nn.Module, batches: Iterable, device=None) -> "tuple[float, float, int]":
    """Accuracy and mean cross-entropy of ``model`` over ``(x, y)`` batches, in eval mode.

    The model's train/eval mode is restored afterwards.

    Parameters
    ----------
    model : nn.Module
        Maps float (B, 3, S, S) to logits (B, C).
    batches : iterable of (Tensor (B, ...), Tensor (B,) int64)
        A DataLoader or any iterable of input/label batches.
    device : torch.device or str, optional
        Where to compute (default: where the model's parameters are).

    Returns
    -------
    accuracy : float
    loss : float
        Mean cross-entropy per instance.
    n : int
        Instances evaluated.
    """
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    try:
        for x, y in batches:
            x = x.to(device, non_blocking=True)
            y = torch.as_tensor(y).to(device, non_blocking=True)
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += int(y.shape[0])
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluate_model got no batches")
    return correct / n, loss_sum / n, n


class HistoryRecorder:
    """Collect history rows from any training loop and save them as the table ``tlexplorer`` reads.

    Examples
    --------
    >>> rec = HistoryRecorder()
    >>> for epoch in range(1, epochs + 1):                      # doctest: +SKIP
    ...     train_one_epoch(model)
    ...     rec.evaluate(model, source_val_loader, model="source", epoch=epoch, dataset="source_val")
    ...     rec.log(model="source", epoch=epoch, dataset="source_train", accuracy=acc, loss=loss)
    >>> rec.save("runs/mine/history.parquet")                  # doctest: +SKIP

    Each row is checked when logged (names, 1-based epoch, accuracy in [0, 1]); the whole table
    (no repeated rows) when saved.
    """

    def __init__(self):
        self._rows: list[dict] = []

    def __len__(self) -> int:
        return len(self._rows)

    def log(self, *, model: str, epoch: int, dataset: str, accuracy: float,
            loss: "float | None" = None) -> None:
        """Add one row.

        Parameters
        ----------
        model : {'source', 'target'}
        epoch : int
            1-based.
        dataset : {'source_train', 'target_train', 'source_val', 'target_val'}
        accuracy : float
            In [0, 1].
        loss : float, optional
            Mean cross-entropy.

        Raises
        ------
        HistoryError
            A value outside the schema, named.
        """
        if model not in MODELS:
            raise HistoryError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        if dataset not in DATASETS:
            raise HistoryError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
        epoch = _as_epoch(epoch)
        accuracy = _as_float(accuracy, "accuracy")
        if not 0.0 <= accuracy <= 1.0:
            raise HistoryError(f"accuracy must be in [0, 1], got {accuracy!r}")
        if loss is not None:
            loss = _as_float(loss, "loss")
            if loss < 0:
                raise HistoryError(f"loss must be >= 0, got {loss!r}")
        self._rows.append({"model": model, "epoch": epoch, "dataset": dataset,
                           "accuracy": accuracy, "loss": loss})

    def evaluate(self, model_nn: nn.Module, loader, *, model: str, epoch: int, dataset: str,
                 device=None) -> "tuple[float, float]":
        """Evaluate ``model_nn`` on ``loader`` and log its accuracy and mean cross-entropy.

        Parameters
        ----------
        model_nn : nn.Module
        loader : DataLoader, Dataset or iterable of (x, y) batches
            A Dataset of ``(image, label)`` items is batched for you (256 per batch).
        model, epoch, dataset
            The row's keys, as in :meth:`log`.
        device : optional
            Default: the device of ``model_nn``'s parameters.

        Returns
        -------
        accuracy, loss : float
        """
        if isinstance(loader, Dataset) and not isinstance(loader, torch.utils.data.IterableDataset):
            # a private generator: iterating a DataLoader otherwise draws from the global RNG
            loader = DataLoader(loader, batch_size=256, shuffle=False, generator=torch.Generator().manual_seed(0))
        accuracy, loss, _ = evaluate_model(model_nn, loader, device)
        self.log(model=model, epoch=epoch, dataset=dataset, accuracy=accuracy, loss=loss)
        return accuracy, loss

    def frame(self) -> pl.DataFrame:
        """The rows as a validated history table."""
        df = pl.DataFrame(self._rows, schema=HISTORY_SCHEMA, orient="row") if self._rows \
            else pl.DataFrame(schema=HISTORY_SCHEMA)
        return validate_history(df, where="recorded history")

    def save(self, path: "str | os.PathLike") -> Path:
        """Write the table atomically (Parquet, or CSV for a ``.csv`` path)."""
        return write_history(self.frame(), path)


def _as_float(value, name: str) -> float:
    if isinstance(value, torch.Tensor):
        value = value.item()
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise HistoryError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise HistoryError(f"{name} must be finite, got {value!r}")
    return value


def _as_epoch(epoch) -> int:
    value = None
    if not isinstance(epoch, bool):
        try:
            value = operator.index(epoch)
        except TypeError:
            if isinstance(epoch, float) and epoch.is_integer():
                value = int(epoch)
    if value is None or value < 1:
        raise HistoryError(f"epoch must be an integer >= 1 (1-based), got {epoch!r}")
    return value
