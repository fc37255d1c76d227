"""torchvision datasets already on disk (MNIST, SVHN, USPS, CIFAR10, ...) as in-memory domains.

Nothing is downloaded unless ``download=True`` is passed: a missing dataset is a one-line
:class:`~tlexplorer.errors.DataError` that says where it was looked for.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import ClassMismatchError, DataError
from .base import HALF_NORM, ArrayDomainSplit
from .splits import stratified_split

# name → how its constructor picks the subset ("train": a bool ``train=``; "split": ``split=``)
# and whether its classes are plain digits (named "0".."9" so that MNIST, SVHN and USPS align).
_DATASETS = {
    "MNIST": ("train", True), "QMNIST": ("train", True), "USPS": ("train", True),
    "SVHN": ("split", True), "FashionMNIST": ("train", False), "KMNIST": ("train", False),
    "EMNIST": ("train", False), "CIFAR10": ("train", False), "CIFAR100": ("train", False),
    "STL10": ("split", False),
}
DATASET_NAMES = tuple(_DATASETS)
DIGIT_CLASSES = [str(d) for d in range(10)]
_RESIZE_CHUNK = 4096


def _canonical_name(name: str) -> str:
    by_lower = {n.lower(): n for n in _DATASETS}
    key = str(name).replace("-", "").replace("_", "").lower()
    if key not in by_lower:
        raise DataError(f"unknown torchvision dataset {name!r}: choose one of {', '.join(DATASET_NAMES)}")
    return by_lower[key]


@dataclass
class RawDomain:
    """A whole domain in memory, before splitting.

    Attributes
    ----------
    domain : str
    classes : list of str
    images : ndarray of uint8, shape (N, S, S, 3)
    labels : ndarray of int64, shape (N,)
    indices : ndarray of int64, shape (N,)
        Position of each image in the torchvision dataset (the instance's stable index).
    """

    domain: str
    classes: list
    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray


def to_uint8_square(images, image_size: int) -> np.ndarray:
    """Images of any torchvision layout as uint8 RGB squares.

    Parameters
    ----------
    images : array or tensor of uint8, shape (N, H, W), (N, H, W, C) or (N, C, H, W), C in {1, 3}
    image_size : int

    Returns
    -------
    ndarray of uint8, shape (N, image_size, image_size, 3)
        Grey images are repeated over the three channels; other sizes are resized (bilinear,
        antialiased).
    """
    x = torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x[:, None]                                        # (N, 1, H, W)
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)                             # channels last → first
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"cannot read images of shape {tuple(np.shape(images))} as (N, C, H, W)")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    size = int(image_size)
    if tuple(x.shape[2:]) != (size, size):
        parts = []
        for start in range(0, len(x), _RESIZE_CHUNK):
            chunk = x[start:start + _RESIZE_CHUNK].float()
            chunk = torch.nn.functional.interpolate(chunk, size=(size, size), mode="bilinear",
                                                    align_corners=False, antialias=True)
            parts.append(chunk.round_().clamp_(0, 255).to(torch.uint8))
        x = torch.cat(parts) if parts else torch.empty((0, 3, size, size), dtype=torch.uint8)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy().astype(np.uint8, copy=False))


def _raw_arrays(dataset) -> "tuple[np.ndarray, np.ndarray]":
    """(images, labels) straight from the dataset's arrays, or item by item when it has none."""
    data = getattr(dataset, "data", None)
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = getattr(dataset, "labels", None)
    if data is not None and targets is not None:
        data = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        if data.dtype == np.uint8 and data.ndim in (3, 4):
            return data, np.asarray(targets, dtype=np.int64)
    images, labels = [], []
    for img, label in dataset:  # slow path: PIL images one by one
        images.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
        labels.append(int(label))
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _open_dataset(name: str, root: Path, subset: str, download: bool, kwargs: dict):
    import torchvision

    kind, _ = _DATASETS[name]
    cls = getattr(torchvision.datasets, name)
    if kind == "train":
        if subset not in ("train", "test"):
            raise DataError(f"{name} has subsets 'train' and 'test', not {subset!r}")
        args = {"train": subset == "train"}
    else:
        args = {"split": subset}
    hint = "pass download=True (CLI: --download) to fetch it"
    if not download and not root.is_dir():
        raise DataError(f"{name} not found: no folder {root}; {hint}")
    try:
        return cls(str(root), download=download, **args, **kwargs)
    except (RuntimeError, OSError, ValueError, KeyError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if download:
            raise DataError(f"could not download {name} into {root}: {reason}") from exc
        raise DataError(f"{name} ({subset}) not found or unreadable in {root} ({reason}); {hint}") from exc


def load_torchvision_raw(name: str, root: "str | os.PathLike", *, image_size: int = 32,
                         download: bool = False, subset: str = "train",
                         per_class: "int | None" = None, seed: int = 0,
                         classes: "Sequence[str] | None" = None, domain: "str | None" = None,
                         **dataset_kwargs) -> RawDomain:
    """A torchvision dataset as one in-memory domain (not yet split).

    Parameters
    ----------
    name : str
        One of :data:`DATASET_NAMES` (case-insensitive).
    root : path
        The ``root`` torchvision reads (e.g. the folder holding ``MNIST/raw`` or ``train_32x32.mat``).
    image_size : int
    download : bool
        Let torchvision download the dataset into ``root`` when it is missing.
    subset : str
        The dataset's own split to use: ``'train'`` (default) or ``'test'`` (SVHN: also ``'extra'``).
    per_class : int, optional
        Keep at most this many instances per class (seeded choice), like the paper's sampling.
    seed : int
    classes : sequence of str, optional
        Keep only these classes, labelled in this order.
    domain : str, optional
        The domain's name; default the lower-case dataset name (plus ``-{subset}`` when not train).
    **dataset_kwargs
        Passed to the dataset's constructor (e.g. ``split='digits'`` for EMNIST).

    Returns
    -------
    RawDomain
    """
    name = _canonical_name(name)
    root = Path(root).expanduser().absolute()
    dataset = _open_dataset(name, root, subset, download, dataset_kwargs)
    images, labels = _raw_arrays(dataset)
    own_classes = DIGIT_CLASSES if _DATASETS[name][1] else [str(c) for c in getattr(dataset, "classes", [])]
    if not own_classes:
        own_classes = [str(c) for c in range(int(labels.max()) + 1)]
    indices = np.arange(len(labels), dtype=np.int64)
    if classes is not None:
        classes = [str(c) for c in classes]
        missing = [c for c in classes if c not in own_classes]
        if missing:
            raise ClassMismatchError(f"classes missing in {name}: {missing}")
        new_label = np.full(len(own_classes), -1, dtype=np.int64)
        for j, c in enumerate(classes):
            new_label[own_classes.index(c)] = j
        labels = new_label[labels]
        indices = indices[labels >= 0]
        labels = labels[labels >= 0]
    else:
        classes = own_classes
    if per_class is not None:
        rng = np.random.default_rng(seed)
        keep = [rng.choice(np.flatnonzero(labels == c), min(int(per_class), int((labels == c).sum())),
                           replace=False) for c in np.unique(labels)]
        keep = np.sort(np.concatenate(keep))
        indices, labels = indices[keep], labels[keep]
    images = to_uint8_square(images[indices], image_size)
    if domain is None:
        domain = name.lower() if subset == "train" else f"{name.lower()}-{subset}"
    return RawDomain(domain, list(classes), images, labels, indices)


def split_raw(raw: RawDomain, *, role: str, norm=HALF_NORM, seed: int = 0,
              val_fraction: float = 0.15) -> "tuple[ArrayDomainSplit, ArrayDomainSplit]":
    """Split a :class:`RawDomain` into train and validation (stratified, seeded).

    Returns
    -------
    train, val : ArrayDomainSplit
        Instance ids ``{domain}/{split}/{index:06d}`` with ``index`` the dataset position.
    """
    train_pos, val_pos = stratified_split(raw.labels, val_fraction, seed)
    return tuple(
        ArrayDomainSplit(raw.images[pos], raw.labels[pos], domain=raw.domain, role=role, split=split,
                         classes=raw.classes, indices=raw.indices[pos], norm=norm)
        for split, pos in (("train", train_pos), ("val", val_pos)))


def torchvision_domain(name: str, root: "str | os.PathLike", *, role: str, image_size: int = 32,
                       norm=HALF_NORM, seed: int = 0, download: bool = False,
                       val_fraction: float = 0.15, subset: str = "train",
                       per_class: "int | None" = None, classes: "Sequence[str] | None" = None,
                       domain: "str | None" = None, **dataset_kwargs
                       ) -> "tuple[ArrayDomainSplit, ArrayDomainSplit]":
    """One domain from a torchvision dataset on disk, split into train and validation.

    Parameters are those of :func:`load_torchvision_raw` and :func:`split_raw`.

    Returns
    -------
    train, val : ArrayDomainSplit
        uint8 (N, image_size, image_size, 3) images.

    Raises
    ------
    DataError
        Unknown dataset name, or the dataset is not in ``root`` and ``download`` is False.
    """
    raw = load_torchvision_raw(name, root, image_size=image_size, download=download, subset=subset,
                               per_class=per_class, seed=seed, classes=classes, domain=domain,
                               **dataset_kwargs)
    return split_raw(raw, role=role, norm=norm, seed=seed, val_fraction=val_fraction)
