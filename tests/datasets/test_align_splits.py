"""Label alignment by class name and the seeded stratified split."""
from __future__ import annotations

import numpy as np
import pytest

from tlexplorer.datasets import align_classes, remap_labels, stratified_split
from tlexplorer.errors import ClassMismatchError, DataError


def test_align_keeps_source_order():
    assert align_classes(["b", "a", "c"], ["a", "c", "b"]) == ["b", "a", "c"]


def test_align_mismatch_message_lists_both_sides():
    with pytest.raises(ClassMismatchError) as info:
        align_classes(["bike", "cup"], ["cup", "tv"], source_name="amazon", target_name="webcam")
    assert str(info.value) == ("classes differ between domains: missing in target (webcam): ['bike']; "
                               "missing in source (amazon): ['tv']")


def test_align_mismatch_in_capitalisation_only_says_so():
    with pytest.raises(ClassMismatchError) as info:
        align_classes(["Star", "circle", "Box"], ["star", "circle", "box", "dot"])
    assert str(info.value).endswith("; 'Star' vs 'star', 'Box' vs 'box' differ only in capitalisation: "
                                    "rename them to match exactly")


def test_align_one_sided_mismatch_and_duplicates():
    with pytest.raises(ClassMismatchError, match=r"^classes differ between domains: missing in source \(source\): \['x'\]$"):
        align_classes(["a"], ["a", "x"])
    with pytest.raises(ClassMismatchError, match="duplicate"):
        align_classes(["a", "a"], ["a"])


def test_remap_labels():
    np.testing.assert_array_equal(remap_labels([0, 1, 2, 0], ["c", "a", "b"], ["a", "b", "c"]), [2, 0, 1, 2])
    with pytest.raises(ClassMismatchError, match="'z'"):
        remap_labels([1], ["a", "z"], ["a"])


def test_stratified_split_ratio_partition_and_determinism():
    labels = np.repeat(np.arange(4), [100, 20, 7, 1])
    train, val = stratified_split(labels, 0.15, seed=5)
    assert train.dtype == np.int64 and val.dtype == np.int64
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    np.testing.assert_array_equal(np.bincount(labels[val], minlength=4), [15, 3, 1, 0])
    assert set(labels[train]) == {0, 1, 2, 3}  # the single-instance class stays in train
    again = stratified_split(labels, 0.15, seed=5)
    np.testing.assert_array_equal(again[1], val)
    assert not np.array_equal(stratified_split(labels, 0.15, seed=6)[1], val)


def test_stratified_split_keeps_one_in_train_even_at_high_fraction():
    train, val = stratified_split(np.array([0, 0, 1, 1, 1]), 0.9, seed=0)
    assert sorted(np.bincount(np.array([0, 0, 1, 1, 1])[train])) == [1, 1]


def test_stratified_split_rejects_bad_fraction():
    with pytest.raises(DataError, match="val_fraction"):
        stratified_split(np.zeros(3, int), 1.0, seed=0)
