import math

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import confusion_matrix

from tlexplorer.analysis.statistics import (
    CONFUSION_SCHEMA,
    best_accuracy,
    confusion_table,
    transferability_score,
)


def history():
    rows = []
    acc = {
        ("source", "source_train"): [0.6, 0.8, 0.9],
        ("source", "source_val"): [0.55, 0.75, 0.85],
        ("source", "target_train"): [0.3, 0.35, 0.3],
        ("source", "target_val"): [0.25, 0.4, 0.3],
        ("target", "source_train"): [0.7, 0.6, 0.5],
        ("target", "target_train"): [0.5, 0.8, 0.95],
        ("target", "target_val"): [0.45, 0.7, float("nan")],
    }
    for (model, dataset), values in acc.items():
        for epoch, a in enumerate(values, start=1):
            rows.append({"model": model, "epoch": epoch, "dataset": dataset, "accuracy": a, "loss": 1.0 - a})
    return pl.DataFrame(rows)


def test_transferability_score():
    h = history()
    assert transferability_score(h) == pytest.approx(0.7 - 0.4)  # the NaN epoch is ignored
    assert best_accuracy(h, "source", "source_val") == pytest.approx(0.85)
    worse = h.with_columns(
        pl.when((pl.col("model") == "target") & (pl.col("dataset") == "target_val"))
        .then(0.1)
        .otherwise(pl.col("accuracy"))
        .alias("accuracy")
    )
    assert transferability_score(worse) == pytest.approx(0.1 - 0.4)


def test_transferability_score_errors_name_what_is_missing():
    h = history()
    with pytest.raises(ValueError, match="accuracy"):
        transferability_score(h.drop("accuracy"))
    with pytest.raises(ValueError, match="model='source' on dataset='target_val'"):
        transferability_score(h.filter(~((pl.col("model") == "source") & (pl.col("dataset") == "target_val"))))
    with pytest.raises(TypeError):
        transferability_score(h.to_dicts())


def test_confusion_table_hand_computed():
    classes = ["cat", "dog", "fox", "owl"]
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 3])
    src = np.array([1, 2, 0, 2, 1, 0, 0, 3])  # cat: 1/4, wrong -> dog 1, fox 2; dog: 1/3
    tgt = np.array([0, 0, 0, 3, 0, 2, 1, 1])  # cat: 3/4, wrong -> owl 1; dog: tie cat 1, fox 1
    t = confusion_table(labels, src, tgt, classes)
    assert t.schema == pl.Schema(CONFUSION_SCHEMA)
    assert t["class"].to_list() == classes and t["label"].to_list() == [0, 1, 2, 3]
    assert t["n"].to_list() == [4, 3, 0, 1]
    sa, ta, diff = (t[c].to_list() for c in ("source_accuracy", "target_accuracy", "difference"))
    assert sa[2] is None and ta[2] is None and diff[2] is None  # no instances -> null, not NaN
    assert [sa[i] for i in (0, 1, 3)] == pytest.approx([0.25, 1 / 3, 1.0])
    assert [ta[i] for i in (0, 1, 3)] == pytest.approx([0.75, 1 / 3, 0.0])
    assert [diff[i] for i in (0, 1, 3)] == pytest.approx([0.5, 0.0, -1.0])
    assert t["source_misclassified"].to_list() == [
        [{"class": "fox", "count": 2}, {"class": "dog", "count": 1}],
        [{"class": "cat", "count": 2}],
        [],
        [],
    ]
    assert t["target_misclassified"].to_list() == [
        [{"class": "owl", "count": 1}],
        [{"class": "cat", "count": 1}, {"class": "fox", "count": 1}],  # tie -> class order
        [],
        [{"class": "dog", "count": 1}],
    ]


def test_confusion_table_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 300)
    src = np.where(rng.random(300) < 0.5, labels, rng.integers(0, 5, 300))
    tgt = np.where(rng.random(300) < 0.8, labels, rng.integers(0, 5, 300))
    classes = list("abcde")
    t = confusion_table(labels, src, tgt, classes)
    for model, pred in (("source", src), ("target", tgt)):
        cm = confusion_matrix(labels, pred, labels=range(5))
        np.testing.assert_allclose(t[f"{model}_accuracy"].to_numpy(), np.diag(cm) / cm.sum(1))
        for c, entries in enumerate(t[f"{model}_misclassified"].to_list()):
            expected = {classes[j]: cm[c, j] for j in range(5) if j != c and cm[c, j] > 0}
            assert {e["class"]: e["count"] for e in entries} == expected
            counts = [e["count"] for e in entries]
            assert counts == sorted(counts, reverse=True)
    assert t["n"].sum() == 300


def test_confusion_table_validation():
    with pytest.raises(ValueError, match="outside 0..1"):
        confusion_table([0, 2], [0, 0], [0, 0], ["a", "b"])
    with pytest.raises(ValueError, match="entries"):
        confusion_table([0, 1], [0], [0, 1], ["a", "b"])
    empty = confusion_table(np.array([], dtype=int), [], [], ["a", "b"])
    assert empty["n"].to_list() == [0, 0] and empty["source_accuracy"].null_count() == 2
    assert not math.isnan(confusion_table([0], [0.0], [1.0], ["a", "b"])["difference"][0])
