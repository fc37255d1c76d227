"""Users' image folders: both layouts, lazy loading, stable ids, hashes and one-line errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tlexplorer.datasets import (IMAGENET_NORM, FileDomainSplit, folders_spec, image_folder_domain,
                                 load_image, load_transfer_data, scan_image_folder)
from tlexplorer.errors import ClassMismatchError, DataError


def test_office31_layout(office):
    train, val = image_folder_domain(office / "amazon", role="source", image_size=16,
                                     norm=IMAGENET_NORM, seed=0)
    assert isinstance(train, FileDomainSplit)
    assert train.domain == val.domain == "amazon"
    assert train.classes == ["bike", "cup", "pen"]
    assert (train.split, val.split, train.role) == ("train", "val", "source")
    assert len(train) + len(val) == 20
    np.testing.assert_array_equal(np.bincount(val.labels, minlength=3), [1, 1, 1])  # round(.15 n)
    img = train.raw_image(0)
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    x, y = val[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == int(val.labels[0])
    assert (train.mean, train.std) == IMAGENET_NORM


def test_index_is_position_in_sorted_file_list_and_paths_kept(office):
    folder = scan_image_folder(office / "amazon")
    rel = [f.relative_to(office / "amazon" / "images").as_posix() for f in folder.files]
    assert rel == sorted(rel) and rel[0] == "bike/img_000.png"
    train, val = image_folder_domain(office / "amazon", role="source", image_size=8, norm=IMAGENET_NORM, seed=0)
    for split in (train, val):
        for idx, path, label in zip(split.indices, split.paths, split.labels):
            assert path == str(folder.files[idx])
            assert split.classes[label] == folder.files[idx].parent.name
    ids = train.ids + val.ids
    assert len(set(ids)) == len(ids) == 20
    assert ids[0] == "amazon/train/000000"
    table = val.instance_table()
    assert table["path"].to_list() == val.paths and table["instance_id"].to_list() == val.ids


def test_ids_and_content_hash_stable(office, write_image):
    a = image_folder_domain(office / "webcam", role="target", image_size=8, norm=IMAGENET_NORM, seed=1)
    b = image_folder_domain(office / "webcam", role="target", image_size=8, norm=IMAGENET_NORM, seed=1)
    assert [s.ids for s in a] == [s.ids for s in b]
    assert [s.content_hash() for s in a] == [s.content_hash() for s in b]
    c = image_folder_domain(office / "webcam", role="target", image_size=8, norm=IMAGENET_NORM, seed=2)
    assert c[1].ids != a[1].ids and c[1].content_hash() != a[1].content_hash()
    # Replacing an image by one of another size changes the identity.
    before = a[0].content_hash()
    write_image(office / "webcam" / "images" / "bike" / "img_000.jpg", seed=999, size=(40, 30))
    assert a[0].content_hash() != before


def test_plain_layout_and_images_folder_itself(tmp_path, make_domain):
    root = make_domain(tmp_path / "sketches", {"cat": 4, "dog": 3}, office=False, ext=".bmp")
    train, val = image_folder_domain(root, role="target", image_size=10, norm=IMAGENET_NORM, seed=0)
    assert train.domain == "sketches" and train.classes == ["cat", "dog"]
    assert len(train) + len(val) == 7
    office_root = make_domain(tmp_path / "dslr", {"cat": 2, "dog": 2})
    assert scan_image_folder(office_root / "images").domain == "dslr"


def test_non_images_hidden_files_and_nested_folders(tmp_path, make_domain, write_image):
    root = make_domain(tmp_path / "d", {"a": 2, "b": 2}, office=False)
    (root / "a" / "notes.txt").write_text("x")
    (root / "a" / ".hidden.png").write_bytes(b"junk")
    (root / ".git").mkdir()
    write_image(root / "b" / "sub" / "deep.JPEG", seed=5)
    folder = scan_image_folder(root)
    assert folder.classes == ["a", "b"]
    assert [f.name for f in folder.files] == ["img_000.png", "img_001.png", "img_000.png", "img_001.png", "deep.JPEG"]


@pytest.mark.parametrize("mode, suffix", [("L", ".png"), ("RGBA", ".png"), ("P", ".gif"),
                                          ("RGB", ".webp"), ("RGB", ".tif"), ("LA", ".png")])
def test_image_modes_become_rgb(tmp_path, mode, suffix, write_image):
    path = write_image(tmp_path / f"x{suffix}", seed=0, size=(20, 10), mode=mode)
    img = load_image(path, 6)
    assert img.shape == (6, 6, 3) and img.dtype == np.uint8


def test_palette_transparency_composited_on_white(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0] * 256)
    img.info["transparency"] = 0
    img.save(tmp_path / "t.png", transparency=0)
    assert (load_image(tmp_path / "t.png", 4) == 255).all()


def test_missing_folder(tmp_path):
    with pytest.raises(DataError) as info:
        image_folder_domain(tmp_path / "nope", role="source", image_size=8, norm=IMAGENET_NORM, seed=0)
    assert str(info.value) == f"image folder not found: {tmp_path / 'nope'}"


def test_folder_without_class_folders(tmp_path, write_image):
    write_image(tmp_path / "loose" / "a.png", seed=0)
    with pytest.raises(DataError, match=r"^no class folders in .*loose: expected"):
        scan_image_folder(tmp_path / "loose")


def test_empty_class_folder(tmp_path, make_domain):
    root = make_domain(tmp_path / "d", {"a": 2}, office=True)
    (root / "images" / "b").mkdir()
    (root / "images" / "b" / "readme.txt").write_text("no images")
    with pytest.raises(DataError) as info:
        scan_image_folder(root)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"class folder {root / 'images' / 'b'} has no images")


def test_unreadable_image_raises_when_loaded(tmp_path, make_domain):
    root = make_domain(tmp_path / "d", {"a": 3, "b": 3}, office=False)
    bad = root / "a" / "img_001.png"
    bad.write_bytes(b"this is not a png")
    train, val = image_folder_domain(root, role="source", image_size=8, norm=IMAGENET_NORM, seed=0)
    split = train if str(bad) in train.paths else val
    i = split.paths.index(str(bad))
    with pytest.raises(DataError) as info:
        split[i]
    assert str(info.value).startswith(f"cannot read image {bad}: ") and "\n" not in str(info.value)
    truncated = root / "b" / "img_000.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(DataError, match="cannot read image .*img_000.png"):
        load_image(truncated, 8)


def test_classes_argument_selects_and_orders(office):
    train, val = image_folder_domain(office / "amazon", role="source", image_size=8, norm=IMAGENET_NORM,
                                     seed=0, classes=["pen", "bike"])
    assert train.classes == ["pen", "bike"]
    assert len(train) + len(val) == 13
    assert all(train.classes[l] in p for l, p in zip(train.labels, train.paths))
    with pytest.raises(ClassMismatchError, match=r"\['tv'\]"):
        scan_image_folder(office / "amazon", classes=["bike", "tv"])


def test_folders_spec_roundtrip(office):
    spec = folders_spec(office / "amazon", office / "webcam", image_size=12, norm="imagenet", seed=0)
    assert spec == {"kind": "folders", "source": str(office / "amazon"), "target": str(office / "webcam"),
                    "image_size": 12, "norm": "imagenet", "seed": 0, "val_fraction": 0.15}
    data = load_transfer_data(spec)
    assert data.classes == ["bike", "cup", "pen"]
    assert (data.source_name, data.target_name) == ("amazon", "webcam")
    assert [s.role for s in data.splits()] == ["source", "source", "target", "target"]
    assert data.target_val.raw_image(0).shape == (12, 12, 3)
    assert load_transfer_data(data.spec).hashes() == data.hashes()
    assert data.spec == spec


def test_folders_spec_class_mismatch(office, tmp_path, make_domain):
    make_domain(office / "dslr", {"bike": 2, "cup": 2, "tv": 2})
    with pytest.raises(ClassMismatchError) as info:
        load_transfer_data(folders_spec(office / "amazon", office / "dslr"))
    assert str(info.value) == ("classes differ between domains: missing in target (dslr): ['pen']; "
                               "missing in source (amazon): ['tv']")


@pytest.mark.parametrize("key, value, message", [
    ("image_size", "big", "data.image_size must be an integer >= 1, got 'big'"),
    ("image_size", 0, "data.image_size must be an integer >= 1, got 0"),
    ("seed", 1.5, "data.seed must be an integer >= 0, got 1.5"),
    ("val_fraction", "half", "data.val_fraction must be a number between 0 and 1, got 'half'"),
])
def test_bad_spec_values_name_the_key(office, key, value, message):
    spec = {**folders_spec(office / "amazon", office / "webcam"), key: value}
    with pytest.raises(DataError) as info:
        load_transfer_data(spec)
    assert str(info.value) == message


def test_same_domain_names_get_distinct_ids(tmp_path, make_domain):
    a = make_domain(tmp_path / "x" / "photos", {"a": 2, "b": 2}, office=False)
    b = make_domain(tmp_path / "y" / "photos", {"a": 2, "b": 2}, office=False)
    data = load_transfer_data(folders_spec(a, b, image_size=8))
    ids = [i for s in data.splits() for i in s.ids]
    assert len(set(ids)) == len(ids)
    assert (data.source_name, data.target_name) == ("photos-source", "photos-target")


def test_spec_is_completed_with_absolute_paths(office, monkeypatch):
    monkeypatch.chdir(office)
    data = load_transfer_data({"kind": "folders", "source": "amazon", "target": "webcam", "image_size": 8})
    assert data.spec == {"kind": "folders", "source": str(office / "amazon"), "target": str(office / "webcam"),
                         "image_size": 8, "norm": "imagenet", "seed": 0, "val_fraction": 0.15}
    with pytest.raises(DataError, match=r"unknown keys \['img_size'\]"):
        load_transfer_data({"kind": "folders", "source": "amazon", "target": "webcam", "img_size": 8})
