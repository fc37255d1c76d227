"""The per-epoch history table: schema, validation, Parquet/CSV reading and atomic writing.

One row per (model, epoch, dataset)::

    model     str      'source' or 'target'
    epoch     int64    1-based
    dataset   str      'source_train', 'target_train', 'source_val' or 'target_val'
    accuracy  float64  in [0, 1]
    loss      float64  mean cross-entropy (null when unknown, e.g. an imported history without it)
"""
from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from .._io import atomic_path
from ..errors import RunError

MODELS = ("source", "target")
DATASETS = ("source_train", "target_train", "source_val", "target_val")
HISTORY_SCHEMA = {
    "model": pl.Utf8,
    "epoch": pl.Int64,
    "dataset": pl.Utf8,
    "accuracy": pl.Float64,
    "loss": pl.Float64,
}
COLUMNS = tuple(HISTORY_SCHEMA)
REQUIRED = ("model", "epoch", "dataset", "accuracy")


class HistoryError(RunError):
    """A history table with a missing column or a bad value."""


def empty_history() -> pl.DataFrame:
    """A history with no rows and the schema's columns."""
    return pl.DataFrame(schema=HISTORY_SCHEMA)


def _first_bad(df: pl.DataFrame, mask: pl.Series, column: str) -> str:
    i = int(mask.arg_true()[0])
    return f"row {i}: {column} = {df[column][i]!r}"


def validate_history(df: pl.DataFrame, *, where: str = "history") -> pl.DataFrame:
    """Check a history table and return it in the schema's column order, types and row order.

    Extra columns are dropped; a missing ``loss`` column becomes nulls. Rows are sorted by model,
    epoch and dataset.

    Parameters
    ----------
    df : polars.DataFrame
    where : str
        Names the table in errors (e.g. its file).

    Raises
    ------
    HistoryError
        One line naming the column and the first bad value: a missing column, a type that does not
        cast, a model or dataset outside the allowed names, an epoch < 1, an accuracy outside [0, 1]
        (a percentage is named as such), a negative or NaN loss, or a repeated (model, epoch, dataset).
    """
    if not isinstance(df, pl.DataFrame):
        raise HistoryError(f"{where}: expected a polars DataFrame, got {type(df).__name__}")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise HistoryError(f"{where}: missing column {missing[0]!r}; a history has columns "
                           f"{', '.join(COLUMNS)} (loss optional), got {', '.join(df.columns) or 'none'}")
    if "loss" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Float64).alias("loss"))
    df = df.select(COLUMNS)
    cast = []
    for column, dtype in HISTORY_SCHEMA.items():
        series = df[column]
        if series.dtype == dtype:
            cast.append(series)
            continue
        if dtype == pl.Utf8:
            if not isinstance(series.dtype, (pl.Categorical, pl.Enum, pl.Null)):
                raise HistoryError(f"{where}: column {column!r} must be text, got {series.dtype}")
            cast.append(series.cast(pl.Utf8))
            continue
        converted = None
        if series.dtype.is_numeric() or series.dtype in (pl.Utf8, pl.Null):
            try:
                converted = series.cast(pl.Float64, strict=True)
            except Exception:
                converted = None
        if converted is not None and dtype == pl.Int64:
            finite = converted.drop_nulls()
            if (finite.is_nan() | (finite != finite.round())).any():
                converted = None
            else:
                converted = converted.cast(pl.Int64)
        if converted is None:
            kind = "an integer" if dtype == pl.Int64 else "a number"
            text = series.cast(pl.Utf8, strict=False)
            bad = [v for v, c in zip(text, series.cast(pl.Float64, strict=False)) if v is not None and
                   (c is None or (dtype == pl.Int64 and (c != c or c != round(c))))]
            raise HistoryError(f"{where}: column {column!r} must be {kind}"
                               + (f", got {bad[0]!r}" if bad else f" (type {series.dtype})"))
        cast.append(converted)
    df = pl.DataFrame(cast)

    for column in REQUIRED:
        nulls = df[column].is_null()
        if nulls.any():
            raise HistoryError(f"{where}: column {column!r} has an empty value in row {int(nulls.arg_true()[0])}")
    bad = ~df["model"].is_in(MODELS)
    if bad.any():
        raise HistoryError(f"{where}: {_first_bad(df, bad, 'model')}; model must be one of {', '.join(MODELS)}")
    bad = ~df["dataset"].is_in(DATASETS)
    if bad.any():
        raise HistoryError(f"{where}: {_first_bad(df, bad, 'dataset')}; dataset must be one of {', '.join(DATASETS)}")
    bad = df["epoch"] < 1
    if bad.any():
        raise HistoryError(f"{where}: {_first_bad(df, bad, 'epoch')}; epochs are 1-based")
    acc = df["accuracy"]
    bad = acc.is_nan() | (acc < 0) | (acc > 1)
    if bad.any():
        hint = " (a percentage? divide by 100)" if bool(((acc > 1) & (acc <= 100)).all()) else ""
        raise HistoryError(f"{where}: {_first_bad(df, bad, 'accuracy')}; accuracy must be in [0, 1]{hint}")
    loss = df["loss"]
    bad = (loss.is_nan() | (loss < 0)).fill_null(False)
    if bad.any():
        raise HistoryError(f"{where}: {_first_bad(df, bad, 'loss')}; loss must be a non-negative number or empty")
    dup = df.select(["model", "epoch", "dataset"]).is_duplicated()
    if dup.any():
        i = int(dup.arg_true()[0])
        raise HistoryError(f"{where}: row {i} repeats (model={df['model'][i]!r}, epoch={df['epoch'][i]}, "
                           f"dataset={df['dataset'][i]!r})")
    return df.sort(["model", "epoch", "dataset"])


def read_history(path: "str | os.PathLike") -> pl.DataFrame:
    """Read and validate a history from Parquet (``.parquet``/``.pq``) or CSV (any other suffix).

    A CSV needs a header with ``model,epoch,dataset,accuracy`` and optionally ``loss``; other
    columns are ignored.

    Raises
    ------
    RunError
        The file is missing or unreadable.
    HistoryError
        Its content breaks the schema (see :func:`validate_history`).
    """
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: history file not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pl.read_parquet(path)
        else:
            df = pl.read_csv(path, infer_schema_length=None,
                             schema_overrides={"model": pl.Utf8, "dataset": pl.Utf8})
    except Exception as exc:
        first = " ".join(str(exc).split())[:200]
        raise RunError(f"{path}: cannot read history ({type(exc).__name__}: {first})") from exc
    return validate_history(df, where=str(path))


def write_history(df: pl.DataFrame, path: "str | os.PathLike") -> Path:
    """Validate ``df`` and write it atomically: CSV for a ``.csv`` suffix, Parquet otherwise."""
    path = Path(path)
    df = validate_history(df, where=str(path))
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".csv":
            df.write_csv(tmp)
        else:
            df.write_parquet(tmp)
    return path


def final_accuracies(df: pl.DataFrame) -> dict:
    """``{model: {dataset: accuracy at the model's last epoch}}``."""
    out: dict = {}
    for model in MODELS:
        rows = df.filter(pl.col("model") == model)
        if rows.height == 0:
            continue
        last = rows.filter(pl.col("epoch") == rows["epoch"].max())
        out[model] = {d: float(a) for d, a in zip(last["dataset"], last["accuracy"])}
    return out


def best_accuracies(df: pl.DataFrame) -> dict:
    """``{model: {dataset: best accuracy over epochs}}`` (the transferability score uses
    ``best[target][target_val] - best[source][target_val]``)."""
    out: dict = {}
    for (model, dataset), rows in df.group_by(["model", "dataset"], maintain_order=True):
        out.setdefault(model, {})[dataset] = float(rows["accuracy"].max())
    return out

