import polars as pl
import pytest

from tlexplorer.errors import RunError, TLXError
from tlexplorer.training import (HISTORY_SCHEMA, HistoryError, best_accuracies, final_accuracies, read_history,
                                 validate_history, write_history)


def good_frame():
    return pl.DataFrame({
        "model": ["target", "source", "source", "source"],
        "epoch": [1, 2, 1, 1],
        "dataset": ["target_val", "source_val", "source_val", "target_val"],
        "accuracy": [0.9, 0.8, 0.5, 0.3],
        "loss": [0.2, 0.6, 1.2, 2.0],
    })


def test_validate_sorts_and_keeps_schema():
    df = validate_history(good_frame().with_columns(pl.lit(1).alias("extra")))
    assert dict(df.schema) == HISTORY_SCHEMA
    assert df["model"].to_list() == ["source", "source", "source", "target"]
    assert df["epoch"].to_list() == [1, 1, 2, 1]
    assert final_accuracies(df) == {"source": {"source_val": 0.8}, "target": {"target_val": 0.9}}
    assert best_accuracies(df)["source"] == {"source_val": 0.8, "target_val": 0.3}


def test_missing_loss_becomes_null():
    df = validate_history(good_frame().drop("loss"))
    assert df["loss"].null_count() == 4 and df.schema["loss"] == pl.Float64


@pytest.mark.parametrize("column, value, message", [
    ("model", "teacher", "model = 'teacher'"),
    ("dataset", "source_test", "dataset = 'source_test'"),
    ("epoch", 0, "epochs are 1-based"),
    ("accuracy", 1.5, "accuracy must be in [0, 1]"),
    ("accuracy", float("nan"), "accuracy"),
    ("loss", -0.1, "loss must be a non-negative"),
])
def test_bad_values_are_named(column, value, message):
    df = good_frame().with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit(value)).otherwise(pl.col(column)).alias(column))
    with pytest.raises(HistoryError) as info:
        validate_history(df, where="h.csv")
    text = str(info.value)
    assert "\n" not in text and text.startswith("h.csv: ") and message in text and "row" in text


def test_missing_column_and_duplicates_and_percent():
    with pytest.raises(HistoryError, match="missing column 'dataset'"):
        validate_history(good_frame().drop("dataset"))
    dup = pl.concat([good_frame(), good_frame().head(1)])
    with pytest.raises(HistoryError, match="repeats"):
        validate_history(dup)
    pct = good_frame().with_columns(pl.col("accuracy") * 100)
    with pytest.raises(HistoryError, match="percentage"):
        validate_history(pct)
    with pytest.raises(HistoryError, match="'epoch' must be an integer, got '1.5'"):
        validate_history(good_frame().with_columns(pl.Series("epoch", [1.0, 1.5, 1.0, 2.0])))
    assert issubclass(HistoryError, RunError) and issubclass(HistoryError, TLXError)


def test_csv_import_with_and_without_loss(tmp_path):
    path = tmp_path / "hist.csv"
    path.write_text("model,epoch,dataset,accuracy,loss,lr\n"
                    "source,1,source_train,0.5,1.0,0.1\n"
                    "source,1,target_val,0.25,,0.1\n"
                    "target,1,target_val,0.75,0.5,0.1\n")
    df = read_history(path)
    assert df.height == 3 and df.columns == list(HISTORY_SCHEMA)
    assert df["loss"].null_count() == 1
    path.write_text("model,epoch,dataset,accuracy\nsource,1,source_val,0.9\nsource,2.0,source_val,0.95\n")
    assert read_history(path)["epoch"].to_list() == [1, 2]
    path.write_text("model,epoch,dataset,accuracy\nsource,one,source_val,0.9\n")
    with pytest.raises(HistoryError, match=r"hist.csv: column 'epoch' must be an integer, got 'one'"):
        read_history(path)
    with pytest.raises(RunError, match="nope.csv: history file not found"):
        read_history(tmp_path / "nope.csv")


@pytest.mark.parametrize("name", ["h.parquet", "h.csv"])
def test_write_read_round_trip_is_atomic(tmp_path, name):
    df = validate_history(good_frame())
    write_history(df, tmp_path / name)
    assert read_history(tmp_path / name).equals(df)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    with pytest.raises(HistoryError):
        write_history(good_frame().with_columns(pl.lit(2.0).alias("accuracy")), tmp_path / "bad.parquet")
    assert [p.name for p in tmp_path.iterdir()] == [name]
