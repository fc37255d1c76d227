"""Small image folders and fake torchvision files, written into tmp_path by the tests."""
from __future__ import annotations

import bz2
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _write_image(path: Path, seed: int, size=(12, 9), mode="RGB") -> Path:
    """A small random image in the format the suffix says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path)
    return path


def _make_domain(root: Path, counts: dict, office: bool = True, ext: str = ".png") -> Path:
    """``root/images/<class>/*`` (office) or ``root/<class>/*`` with ``counts[class]`` images."""
    base = root / "images" if office else root
    for k, (cls, n) in enumerate(sorted(counts.items())):
        for i in range(n):
            _write_image(base / cls / f"img_{i:03d}{ext}", seed=100 * k + i)
    return root


@pytest.fixture
def office(tmp_path):
    """An Office-31-like root with two domains over the classes bike, cup, pen."""
    counts = {"bike": 8, "cup": 7, "pen": 5}
    _make_domain(tmp_path / "office" / "amazon", counts)
    _make_domain(tmp_path / "office" / "webcam", {k: n - 2 for k, n in counts.items()}, ext=".jpg")
    return tmp_path / "office"


def _write_mnist(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> Path:
    """Raw MNIST idx files (the format torchvision.datasets.MNIST reads) under ``root/MNIST/raw``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, n) + labels.tobytes())
    return root


def _write_usps(root: Path, n: int = 40, seed: int = 1) -> Path:
    """``root/usps.bz2`` in the libsvm format torchvision.datasets.USPS reads (labels 1..10)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        values = rng.uniform(-1, 1, 256)
        lines.append(f"{i % 10 + 1} " + " ".join(f"{j + 1}:{v:.4f}" for j, v in enumerate(values)))
    (root / "usps.bz2").write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    return root


# The helpers as fixtures, so test modules need no import of this conftest.
@pytest.fixture
def write_image():
    return _write_image


@pytest.fixture
def make_domain():
    return _make_domain


@pytest.fixture
def write_mnist():
    return _write_mnist


@pytest.fixture
def write_usps():
    return _write_usps
