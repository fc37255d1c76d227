"""Statistics of the two models' performance (paper §5.1).

* :func:`transferability_score`: best target-model accuracy minus best source-model accuracy, both
  on the target validation set, from the training history table.
* :func:`confusion_table`: per-class accuracies of both models on the target validation set and the
  classes each model confuses the class with.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from .neurons import _to_numpy

__all__ = ["CONFUSION_SCHEMA", "best_accuracy", "confusion_table", "transferability_score"]

_MISCLASSIFIED = pl.List(pl.Struct({"class": pl.String, "count": pl.Int64}))

#: Column types of :func:`confusion_table` (and of the bundle's ``tables/confusion.parquet``).
CONFUSION_SCHEMA = {
    "class": pl.String,
    "label": pl.Int64,
    "n": pl.Int64,
    "source_accuracy": pl.Float64,
    "target_accuracy": pl.Float64,
    "difference": pl.Float64,
    "source_misclassified": _MISCLASSIFIED,
    "target_misclassified": _MISCLASSIFIED,
}


def best_accuracy(history: pl.DataFrame, model: str, dataset: str) -> float:
    """Highest accuracy a model reached on a dataset over the epochs of the history table.

    Parameters
    ----------
    history : polars.DataFrame
        The history table (columns ``model``, ``dataset``, ``accuracy`` at least; see
        ``docs/architecture.md``).
    model : {"source", "target"}
    dataset : {"source_train", "target_train", "source_val", "target_val"}

    Returns
    -------
    float
        The maximum over the matching rows, ignoring null and NaN accuracies.

    Raises
    ------
    ValueError
        When a column is missing or no row of that model and dataset has an accuracy.
    """
    if not isinstance(history, pl.DataFrame):
        raise TypeError(f"history must be a polars DataFrame, got {type(history).__name__}")
    missing = [c for c in ("model", "dataset", "accuracy") if c not in history.columns]
    if missing:
        raise ValueError(f"history table lacks column(s) {', '.join(missing)}; has {history.columns}")
    acc = (
        history.filter((pl.col("model") == model) & (pl.col("dataset") == dataset))
        .get_column("accuracy")
        .cast(pl.Float64)
        .drop_nulls()
        .drop_nans()
    )
    if acc.len() == 0:
        raise ValueError(
            f"history table has no accuracy for model={model!r} on dataset={dataset!r}"
        )
    return float(acc.max())


def transferability_score(history: pl.DataFrame) -> float:
    """The paper's transferability score (§5.1).

    Parameters
    ----------
    history : polars.DataFrame
        The history table: ``model`` (source/target), ``epoch``, ``dataset``
        (source_train/target_train/source_val/target_val), ``accuracy``, ``loss``.

    Returns
    -------
    float
        ``max accuracy(target model, target_val) - max accuracy(source model, target_val)`` over
        the epochs, in ``[-1, 1]``. Positive: fine-tuning improved on the source model.

    Raises
    ------
    ValueError
        Naming the missing column, or the missing ``(model, dataset)`` rows.
    """
    target = best_accuracy(history, "target", "target_val")
    source = best_accuracy(history, "source", "target_val")
    return target - source


def _labels(x, name: str, n: int | None, n_classes: int) -> np.ndarray:
    arr = _to_numpy(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, labels has {n}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer class indices")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"{name} holds class indices outside 0..{n_classes - 1}")
    return arr


def _misclassified(row: np.ndarray, label: int, classes: Sequence[str]) -> list[dict]:
    counts = row.copy()
    counts[label] = 0
    idx = np.flatnonzero(counts)
    idx = idx[np.lexsort((idx, -counts[idx]))]  # most frequent first, ties in class order
    return [{"class": classes[i], "count": int(counts[i])} for i in idx]


def confusion_table(labels, source_pred, target_pred, classes: Sequence[str]) -> pl.DataFrame:
    """Per-class performance of both models on the target validation set (paper §5.1).

    Parameters
    ----------
    labels : array_like of int, shape (instances,)
        True class index of every target validation instance.
    source_pred, target_pred : array_like of int, shape (instances,)
        Class predicted by the source model and by the target model.
    classes : sequence of str, length C
        Class names, index = class label.

    Returns
    -------
    polars.DataFrame, C rows in label order, types :data:`CONFUSION_SCHEMA`
        ``class``, ``label``, ``n`` (instances of the class), ``source_accuracy``,
        ``target_accuracy`` (share of the class predicted correctly; null when ``n == 0``),
        ``difference`` (target - source; null when ``n == 0``), ``source_misclassified`` and
        ``target_misclassified``: lists of ``{class, count}`` giving the wrong classes the model
        predicted for instances of the class, most frequent first, ties in class order, classes
        never predicted left out.
    """
    classes = [str(c) for c in classes]
    n_classes = len(classes)
    if n_classes == 0:
        raise ValueError("classes must not be empty")
    y = _labels(labels, "labels", None, n_classes)
    ps = _labels(source_pred, "source_pred", y.shape[0], n_classes)
    pt = _labels(target_pred, "target_pred", y.shape[0], n_classes)
    cm_s = np.bincount(y * n_classes + ps, minlength=n_classes**2).reshape(n_classes, n_classes)
    cm_t = np.bincount(y * n_classes + pt, minlength=n_classes**2).reshape(n_classes, n_classes)
    n = cm_s.sum(axis=1)
    diag = np.arange(n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc_s = np.where(n > 0, cm_s[diag, diag] / n, np.nan)
        acc_t = np.where(n > 0, cm_t[diag, diag] / n, np.nan)
    frame = pl.DataFrame(
        {
            "class": classes,
            "label": np.arange(n_classes, dtype=np.int64),
            "n": n.astype(np.int64),
            "source_accuracy": acc_s,
            "target_accuracy": acc_t,
            "difference": acc_t - acc_s,
            "source_misclassified": [_misclassified(cm_s[c], c, classes) for c in range(n_classes)],
            "target_misclassified": [_misclassified(cm_t[c], c, classes) for c in range(n_classes)],
        },
        schema=CONFUSION_SCHEMA,
    )
    # NaN marks "no instances"; store it as null so that sorting and averaging skip it.
    return frame.with_columns(
        pl.col("source_accuracy", "target_accuracy", "difference").fill_nan(None)
    )
