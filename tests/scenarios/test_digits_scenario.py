"""The built-in digits scenario: determinism, shapes, balance, splits and the on-disk cache."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tlexplorer.datasets import ArrayDomainSplit, HALF_NORM, load_transfer_data
from tlexplorer.errors import DataError
from tlexplorer.scenarios import SCENARIOS, load_scenario
from tlexplorer.scenarios import digits
from tlexplorer.scenarios.digits import load_digits_scenario, make_handwritten, make_printed

PER_CLASS = 20


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def scenario(data_dir):
    return load_digits_scenario(seed=0, per_class=PER_CLASS, data_dir=data_dir, progress=False)


def _cache_files(data_dir, kind="printed"):
    return sorted((data_dir / "digits").glob(f"{kind}-*.npy"))


def test_printed_same_seed_same_pixels_other_seed_other_pixels():
    a_img, a_lab = make_printed(per_class=5, seed=3)
    b_img, b_lab = make_printed(per_class=5, seed=3)
    c_img, c_lab = make_printed(per_class=5, seed=4)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert a_img.shape == c_img.shape
    assert not np.array_equal(a_img, c_img)


def test_printed_does_not_touch_the_global_rng():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    make_printed(per_class=2, seed=0)
    assert np.random.random() == expected


def test_printed_shapes_dtypes_and_balance():
    images, labels = make_printed(per_class=7, seed=0)
    assert images.shape == (70, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 7))
    # Colourful, textured images: channels differ and pixels vary within an image.
    assert (images.std(axis=(1, 2, 3)) > 5).all()
    assert np.abs(images[..., 0].astype(int) - images[..., 2]).mean() > 1


def test_printed_rejects_tiny_per_class():
    with pytest.raises(DataError, match="per_class"):
        make_printed(per_class=1)


def test_every_font_renders_ten_distinct_digits():
    glyphs = digits._GlyphCache(digits.font_paths())
    assert len(glyphs.fonts) >= 10
    for f in range(len(glyphs.fonts)):
        masks = [glyphs.mask(f, d, 20, 0) for d in range(10)]
        assert all(m.max() > 200 and 14 <= m.shape[0] <= 27 for m in masks), glyphs.fonts[f]
        assert len({m.tobytes() for m in masks}) == 10, glyphs.fonts[f]


def test_handwritten_is_mnist_like():
    images, labels = make_handwritten()
    assert images.shape == (1797, 32, 32, 3) and images.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(10))
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grey
    # White strokes on a black frame: the 4-pixel border is black, the centre has bright pixels.
    assert images[:, :4].max() == 0 and images[:, :, -4:].max() == 0
    assert (images.max(axis=(1, 2, 3)) == 255).all()
    assert np.median(images) == 0


def test_scenario_structure(scenario, data_dir):
    assert scenario.classes == [str(d) for d in range(10)]
    assert scenario.source_name == "printed" and scenario.target_name == "handwritten"
    assert scenario.image_size == 32
    for split in scenario.splits():
        assert isinstance(split, ArrayDomainSplit)
        assert (split.mean, split.std) == HALF_NORM
        assert split.images.dtype == np.uint8 and split.images.shape[1:] == (32, 32, 3)
        assert split.classes == scenario.classes
    assert [s.role for s in scenario.splits()] == ["source", "source", "target", "target"]
    assert len(scenario.source_train) + len(scenario.source_val) == 10 * PER_CLASS
    assert len(scenario.target_train) + len(scenario.target_val) == 1797
    x, y = scenario.source_train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert scenario.spec == {"kind": "scenario", "name": "digits", "seed": 0, "per_class": PER_CLASS,
                             "data_dir": str(data_dir)}
    json.dumps(scenario.spec)


def test_stratified_85_15_split(scenario):
    for role in ("source", "target"):
        train, val = scenario.split(role, "train"), scenario.split(role, "val")
        n_train = np.bincount(train.labels, minlength=10)
        n_val = np.bincount(val.labels, minlength=10)
        np.testing.assert_array_equal(n_val, np.round((n_train + n_val) * 0.15).astype(int))
        # Indices partition the domain, so ids are unique across splits.
        both = np.concatenate([train.indices, val.indices])
        assert sorted(both) == list(range(len(both)))
    ids = [i for s in scenario.splits() for i in s.ids]
    assert len(set(ids)) == len(ids)
    assert scenario.target_val.ids[0].startswith("handwritten/val/")


def test_scenario_is_reproducible_and_seed_dependent(scenario, data_dir, tmp_path):
    again = load_digits_scenario(seed=0, per_class=PER_CLASS, data_dir=tmp_path, progress=False)
    assert again.hashes() == scenario.hashes()
    np.testing.assert_array_equal(again.source_val.images, scenario.source_val.images)
    other = load_digits_scenario(seed=1, per_class=PER_CLASS, data_dir=data_dir, progress=False)
    assert other.source_train.content_hash() != scenario.source_train.content_hash()
    assert not np.array_equal(other.target_val.indices, scenario.target_val.indices)  # split reseeded


def test_cache_is_reused_and_keyed_by_setting(scenario, data_dir):
    files = _cache_files(data_dir)
    assert files and all(f.name.startswith("printed-v") for f in files)
    images_file = next(f for f in files if f.name.endswith(f"seed0-n{PER_CLASS}-images.npy"))
    cached = np.load(images_file, allow_pickle=False)
    # Overwrite the cache with recognisable pixels: a reload must return them (not regenerate).
    np.save(images_file, np.full_like(cached, 7))
    try:
        reused = load_digits_scenario(seed=0, per_class=PER_CLASS, data_dir=data_dir, progress=False)
        assert (reused.source_train.images == 7).all()
        bigger = load_digits_scenario(seed=0, per_class=PER_CLASS + 1, data_dir=data_dir, progress=False)
        assert len(bigger.source_train) + len(bigger.source_val) == 10 * (PER_CLASS + 1)
        assert not (bigger.source_train.images == 7).all()
    finally:
        np.save(images_file, cached)
    assert not list((data_dir / "digits").glob(".*.tmp"))  # atomic writes leave no temp files


@pytest.mark.parametrize("damage", ["garbage", "truncated", "pickled", "wrong_shape"])
def test_corrupt_cache_is_regenerated(damage, tmp_path, scenario, data_dir):
    (tmp_path / "digits").mkdir()
    for f in _cache_files(data_dir, "handwritten"):  # reuse: only the printed cache is under test
        shutil.copy(f, tmp_path / "digits" / f.name)
    first = load_digits_scenario(seed=2, per_class=3, data_dir=tmp_path, progress=False)
    path = next(f for f in _cache_files(tmp_path) if f.name.endswith("-images.npy"))
    if damage == "garbage":
        path.write_bytes(b"not an npy file at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "pickled":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        np.save(path, np.zeros((5, 32, 32, 3), np.uint8))
    again = load_digits_scenario(seed=2, per_class=3, data_dir=tmp_path, progress=False)
    assert again.hashes() == first.hashes()
    assert np.load(path, allow_pickle=False).shape == (30, 32, 32, 3)


def test_corrupt_handwritten_cache_is_regenerated(scenario, data_dir):
    path = _cache_files(data_dir, "handwritten")[0]
    path.write_bytes(b"\x93NUMPY garbage")
    again = load_digits_scenario(seed=0, per_class=PER_CLASS, data_dir=data_dir, progress=False)
    assert again.target_train.content_hash() == scenario.target_train.content_hash()


def test_default_data_dir_follows_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("TLX_DATA_DIR", str(tmp_path))
    data = load_digits_scenario(seed=0, per_class=2, progress=False)
    assert data.spec["data_dir"] == str(tmp_path)
    assert _cache_files(tmp_path)


def test_registry_and_spec_roundtrip(scenario):
    assert SCENARIOS == {"digits": load_digits_scenario}
    rebuilt = load_transfer_data(scenario.spec)
    assert rebuilt.hashes() == scenario.hashes()
    assert rebuilt.spec == scenario.spec
    with pytest.raises(DataError) as info:
        load_scenario("x")
    assert str(info.value) == "unknown scenario 'x': choose one of digits"
    with pytest.raises(DataError, match="scenario 'digits'"):
        load_scenario("digits", colour="red")
