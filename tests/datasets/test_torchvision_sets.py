"""torchvision datasets on disk: real torchvision classes reading test-made files; no downloads."""
from __future__ import annotations

import numpy as np
import pytest

from tlexplorer.datasets import HALF_NORM, load_transfer_data, torchvision_domain, torchvision_spec
from tlexplorer.datasets.torchvision_sets import load_torchvision_raw, to_uint8_square
from tlexplorer.errors import ClassMismatchError, DataError


def test_mnist_from_idx_files(tmp_path, write_mnist):
    root = write_mnist(tmp_path / "tv", n_train=60)
    train, val = torchvision_domain("mnist", root, role="target", image_size=32, norm=HALF_NORM, seed=0)
    assert train.domain == "mnist" and train.role == "target"
    assert train.classes == [str(d) for d in range(10)]
    assert len(train) + len(val) == 60
    np.testing.assert_array_equal(np.bincount(val.labels, minlength=10), np.ones(10))  # round(6 * .15)
    assert train.images.shape[1:] == (32, 32, 3) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(train.images[..., 0], train.images[..., 1])  # grey → 3 channels
    # index = position in the dataset, whose labels the fake files set to position % 10
    np.testing.assert_array_equal(train.labels, train.indices % 10)
    assert val.ids[0] == f"mnist/val/{val.indices[0]:06d}"
    again = torchvision_domain("MNIST", root, role="target", image_size=32, norm=HALF_NORM, seed=0)
    assert again[0].content_hash() == train.content_hash()


def test_mnist_pixels_match_the_file_at_native_size(tmp_path, write_mnist):
    root = write_mnist(tmp_path / "tv", n_train=30, seed=3)
    raw = load_torchvision_raw("MNIST", root, image_size=28, subset="test")
    assert raw.domain == "mnist-test" and len(raw.labels) == 20
    data = (tmp_path / "tv" / "MNIST" / "raw" / "t10k-images-idx3-ubyte").read_bytes()[16:]
    expected = np.frombuffer(data, np.uint8).reshape(20, 28, 28)
    np.testing.assert_array_equal(raw.images[..., 2], expected)


def test_usps_per_class_sampling(tmp_path, write_usps):
    root = write_usps(tmp_path / "usps", n=40)
    raw = load_torchvision_raw("USPS", root, image_size=16, per_class=3, seed=0)
    np.testing.assert_array_equal(np.bincount(raw.labels), np.full(10, 3))
    assert raw.images.shape == (30, 16, 16, 3)
    np.testing.assert_array_equal(raw.labels, raw.indices % 10)
    other = load_torchvision_raw("USPS", root, image_size=16, per_class=3, seed=1)
    assert not np.array_equal(raw.indices, other.indices)


def test_classes_subset(tmp_path, write_mnist):
    root = write_mnist(tmp_path / "tv")
    raw = load_torchvision_raw("MNIST", root, image_size=28, classes=["7", "3"])
    assert raw.classes == ["7", "3"]
    np.testing.assert_array_equal(np.where(raw.labels == 0, 7, 3), raw.indices % 10)
    with pytest.raises(ClassMismatchError, match="cat"):
        load_torchvision_raw("MNIST", root, classes=["3", "cat"])


def test_missing_dataset_is_one_line_and_never_downloads(tmp_path):
    with pytest.raises(DataError) as info:
        torchvision_domain("SVHN", tmp_path / "nothing", role="source", image_size=32, norm=HALF_NORM, seed=0)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "nothing") in message and "download=True" in message
    assert not (tmp_path / "nothing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"MNIST \(train\) not found .*empty.*download=True"):
        torchvision_domain("MNIST", tmp_path / "empty", role="source", image_size=32, norm=HALF_NORM, seed=0)
    assert not any((tmp_path / "empty").rglob("*.gz"))


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(DataError, match="unknown torchvision dataset 'ImageNet5': choose one of MNIST"):
        torchvision_domain("ImageNet5", tmp_path, role="source", image_size=32, norm=HALF_NORM, seed=0)


def test_to_uint8_square_layouts():
    rng = np.random.default_rng(0)
    chw = rng.integers(0, 256, (2, 3, 8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8_square(chw, 8), chw.transpose(0, 2, 3, 1))
    hwc = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8_square(hwc, 8), hwc)
    flat = np.full((1, 4, 4), 200, np.uint8)
    assert (to_uint8_square(flat, 12) == 200).all() and to_uint8_square(flat, 12).shape == (1, 12, 12, 3)


def test_torchvision_spec_usps_to_mnist(tmp_path, write_mnist, write_usps):
    spec = torchvision_spec({"name": "USPS", "root": write_usps(tmp_path / "usps", n=50)},
                            {"name": "MNIST", "root": write_mnist(tmp_path / "tv"), "per_class": 4},
                            image_size=20, seed=0)
    assert spec["norm"] == "half" and spec["download"] is False
    data = load_transfer_data(spec)
    assert data.classes == [str(d) for d in range(10)]
    assert (data.source_name, data.target_name) == ("usps", "mnist")
    assert len(data.target_train) + len(data.target_val) == 40
    assert data.image_size == 20
    assert load_transfer_data(data.spec).hashes() == data.hashes()


def test_spec_errors(tmp_path):
    with pytest.raises(DataError, match="unknown data spec kind 'zip'"):
        load_transfer_data({"kind": "zip"})
    with pytest.raises(DataError, match="lacks 'target'"):
        load_transfer_data({"kind": "folders", "source": str(tmp_path)})
    with pytest.raises(DataError, match="unknown keys"):
        load_transfer_data({"kind": "torchvision", "source": {"name": "MNIST", "root": "x", "colour": 1},
                            "target": {"name": "MNIST", "root": "x"}})
    with pytest.raises(DataError, match="unknown norm"):
        load_transfer_data({"kind": "folders", "source": str(tmp_path), "target": str(tmp_path), "norm": "z"})
