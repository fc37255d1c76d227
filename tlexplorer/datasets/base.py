"""One split of one domain as a torch Dataset with stable instance ids, and a transfer pair of domains."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import polars as pl
import torch
from torch.utils.data import Dataset

#: Normalisation used by the digits scenario (images scaled to [-1, 1]).
HALF_NORM = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
#: ImageNet normalisation, for torchvision models.
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

SPLITS = ("train", "val")
ROLES = ("source", "target")


def instance_id(domain: str, split: str, index: int) -> str:
    """The stable id every later step keys an instance by: ``domain/split/index``."""
    return f"{domain}/{split}/{index:06d}"


class DomainSplit(Dataset):
    """Base class: one split (train or val) of one domain.

    Subclasses implement :meth:`raw_image`. Items are ``(image, label)`` with ``image`` a float32
    tensor of shape (3, S, S), normalised with ``mean``/``std``.

    Attributes
    ----------
    domain : str
        The domain's name (e.g. ``"printed"``, ``"amazon"``).
    role : {'source', 'target'}
    split : {'train', 'val'}
    classes : list of str
        The label space shared by both domains, index = label.
    labels : ndarray of int64, shape (N,)
    paths : list of str or None
        Source file of each instance ('' when generated in memory).
    indices : ndarray of int64, shape (N,)
        The instance's index within its domain before splitting (stable across runs).
    image_size : int
    mean, std : tuple of 3 floats
    """

    def __init__(self, domain: str, role: str, split: str, classes: Sequence[str],
                 labels: np.ndarray, indices: np.ndarray, paths: "Sequence[str] | None",
                 image_size: int, norm=HALF_NORM):
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.domain, self.role, self.split = domain, role, split
        self.classes = list(classes)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.paths = list(paths) if paths is not None else [""] * len(self.labels)
        self.image_size = int(image_size)
        self.mean, self.std = tuple(norm[0]), tuple(norm[1])
        self._mean_t = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        self._std_t = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def raw_image(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 of shape (S, S, 3)."""
        raise NotImplementedError

    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """uint8 (S, S, 3) → normalised float32 (3, S, S)."""
        image = np.ascontiguousarray(image)
        if not image.flags.writeable:  # memory-mapped or PIL-backed: torch wants its own buffer
            image = image.copy()
        x = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
        return (x - self._mean_t) / self._std_t

    def to_uint8(self, x: torch.Tensor) -> np.ndarray:
        """Inverse of :meth:`to_tensor` for display: float (3, S, S) → uint8 (S, S, 3)."""
        img = (x.detach().cpu() * self._std_t + self._mean_t).clamp(0, 1)
        return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)

    def __getitem__(self, i: int):
        return self.to_tensor(self.raw_image(i)), int(self.labels[i])

    @property
    def ids(self) -> list[str]:
        return [instance_id(self.domain, self.split, int(j)) for j in self.indices]

    def instance_table(self) -> pl.DataFrame:
        """One row per instance: instance_id, role, domain, split, index, path, label, class_name."""
        return pl.DataFrame({
            "instance_id": self.ids,
            "role": [self.role] * len(self),
            "domain": [self.domain] * len(self),
            "split": [self.split] * len(self),
            "index": self.indices,
            "path": self.paths,
            "label": self.labels,
            "class_name": [self.classes[j] for j in self.labels],
        })

    def content_hash(self) -> str:
        """SHA-256 over ids, labels and paths (and pixels for in-memory data): the input's identity."""
        digest = hashlib.sha256()
        digest.update("\n".join(self.ids).encode())
        digest.update(self.labels.tobytes())
        digest.update("\n".join(self.paths).encode())
        self._hash_extra(digest)
        return digest.hexdigest()

    def _hash_extra(self, digest) -> None:
        """Subclasses add what else identifies their content (e.g. pixel bytes)."""


class ArrayDomainSplit(DomainSplit):
    """A split held in memory as uint8 images of shape (N, S, S, 3)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, domain: str, role: str, split: str,
                 classes: Sequence[str], indices: "np.ndarray | None" = None,
                 paths: "Sequence[str] | None" = None, norm=HALF_NORM):
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 of shape (N, S, S, 3), got {images.dtype} {images.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if indices is None:
            indices = np.arange(len(images))
        super().__init__(domain, role, split, classes, labels, indices, paths, images.shape[1], norm)
        self.images = images

    def raw_image(self, i: int) -> np.ndarray:
        return self.images[i]

    def __getitem__(self, i: int):
        return self.to_tensor(self.images[i]), int(self.labels[i])

    def _hash_extra(self, digest) -> None:
        digest.update(np.ascontiguousarray(self.images).tobytes())


@dataclass
class TransferData:
    """A source → target transfer problem: both domains, split, over one label space."""

    classes: list[str]
    source_train: DomainSplit
    source_val: DomainSplit
    target_train: DomainSplit
    target_val: DomainSplit
    spec: dict = field(default_factory=dict)  # how to rebuild it (see datasets.load_transfer_data)

    @property
    def source_name(self) -> str:
        return self.source_train.domain

    @property
    def target_name(self) -> str:
        return self.target_train.domain

    @property
    def image_size(self) -> int:
        return self.source_train.image_size

    def split(self, role: str, split: str) -> DomainSplit:
        return getattr(self, f"{role}_{split}")

    def splits(self) -> "list[DomainSplit]":
        return [self.source_train, self.source_val, self.target_train, self.target_val]

    def instance_table(self) -> pl.DataFrame:
        return pl.concat([s.instance_table() for s in self.splits()])

    def hashes(self) -> dict:
        return {f"{s.role}_{s.split}": s.content_hash() for s in self.splits()}
