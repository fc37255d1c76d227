"""Users' image folders as lazily loaded domains.

Two layouts are read, per domain:

* Office-31: ``<root>/<domain>/images/<class>/<image>`` — pass ``<root>/<domain>``;
* plain: ``<root>/<class>/<image>`` — pass ``<root>`` (the domain is named after it).

Class names are the class folders' names; images are found recursively inside each class folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ClassMismatchError, DataError
from .base import IMAGENET_NORM, DomainSplit
from .splits import stratified_split

#: File name endings (lower case) read as images; other files (``Thumbs.db``, ``.txt``) are ignored.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

_LAYOUTS = "<root>/<class>/<image> or <root>/<domain>/images/<class>/<image>"


def load_image(path: "str | os.PathLike", image_size: int) -> np.ndarray:
    """Read an image file as RGB and resize it to a square.

    The image is squashed to ``image_size`` × ``image_size`` (the aspect ratio is not kept, so
    nothing is cropped away); EXIF rotation is applied and transparency composited on white.

    Parameters
    ----------
    path : path
    image_size : int

    Returns
    -------
    ndarray of uint8, shape (image_size, image_size, 3)

    Raises
    ------
    DataError
        The file is missing, truncated or not an image; the message names the file.
    """
    size = (int(image_size), int(image_size))
    try:
        with Image.open(path) as img:
            img.draft("RGB", size)  # JPEG: decode at a reduced scale when much larger (fast)
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                img = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img.alpha_composite(rgba)
            img = img.convert("RGB").resize(size, Image.Resampling.BILINEAR)
            return np.array(img, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read image {path}: {reason}") from exc


@dataclass(frozen=True)
class ImageFolder:
    """What :func:`scan_image_folder` found in one domain's folder.

    Attributes
    ----------
    domain : str
        The domain's name: the folder's name (``amazon`` for ``office31/amazon``).
    class_root : Path
        The folder holding the class folders.
    classes : list of str
        The label space, index = label.
    files : list of Path
        Every image, sorted by path relative to ``class_root``; position = the instance's index.
    labels : ndarray of int64, shape (N,)
    """

    domain: str
    class_root: Path
    classes: list
    files: list
    labels: np.ndarray


def _visible(name: str) -> bool:
    return not name.startswith(".") and name != "__MACOSX"


def _class_root(path: Path) -> "tuple[str, Path]":
    """(domain name, folder of class folders) for either layout."""
    subdirs = [p for p in path.iterdir() if p.is_dir() and _visible(p.name)]
    if len(subdirs) == 1 and subdirs[0].name == "images":   # Office-31: <root>/<domain>/images
        return path.name, subdirs[0]
    if path.name == "images" and path.parent.name:           # <root>/<domain>/images passed itself
        return path.parent.name, path
    return path.name, path


def _class_images(class_dir: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        found.extend(Path(dirpath) / f for f in filenames
                     if _visible(f) and f.lower().endswith(IMAGE_EXTENSIONS))
    return found


def scan_image_folder(path: "str | os.PathLike",
                      classes: "Sequence[str] | None" = None) -> ImageFolder:
    """Find the classes and image files of one domain's folder (no image is opened).

    Parameters
    ----------
    path : path
        ``<root>/<domain>`` of an Office-31 layout (or its ``images`` folder), or a folder of class
        folders.
    classes : sequence of str, optional
        The label space to use, in this order; class folders not in it are skipped. Default: every
        class folder, sorted by name.

    Returns
    -------
    ImageFolder

    Raises
    ------
    DataError
        The folder is missing, has no class folders, or a class folder has no images.
    ClassMismatchError
        A class of ``classes`` has no folder.
    """
    path = Path(path).expanduser().absolute()
    if not path.is_dir():
        raise DataError(f"image folder not found: {path}")
    domain, root = _class_root(path)
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p.name))
    if not found:
        raise DataError(f"no class folders in {root}: expected {_LAYOUTS}")
    if classes is None:
        classes = found
    else:
        classes = [str(c) for c in classes]
        missing = [c for c in classes if c not in set(found)]
        if missing:
            raise ClassMismatchError(f"class folders missing in {root}: {missing}")
    entries = []
    for label, name in enumerate(classes):
        images = _class_images(root / name)
        if not images:
            raise DataError(f"class folder {root / name} has no images "
                            f"({', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)})")
        entries.extend((p.relative_to(root).as_posix(), p, label) for p in images)
    entries.sort(key=lambda e: e[0])  # index = position in the sorted file list: stable across runs
    return ImageFolder(domain, root, list(classes), [e[1] for e in entries],
                       np.array([e[2] for e in entries], dtype=np.int64))


class FileDomainSplit(DomainSplit):
    """A split whose images are files, opened (and resized) only when an item is read.

    Parameters
    ----------
    paths : sequence of path
        One image file per instance.
    labels : array-like of int, shape (N,)
    domain, role, split, classes, indices, image_size, norm
        As :class:`~tlexplorer.datasets.base.DomainSplit`.
    """

    def __init__(self, paths: Sequence, labels: np.ndarray, *, domain: str, role: str, split: str,
                 classes: Sequence[str], indices: np.ndarray, image_size: int, norm=IMAGENET_NORM):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        super().__init__(domain, role, split, classes, labels, indices, [str(p) for p in paths],
                         image_size, norm)

    def raw_image(self, i: int) -> np.ndarray:
        return load_image(self.paths[i], self.image_size)

    def _hash_extra(self, digest) -> None:
        # File sizes: cheap, and they catch an image replaced under the same name.
        sizes = []
        for p in self.paths:
            try:
                sizes.append(os.stat(p).st_size)
            except OSError as exc:
                raise DataError(f"cannot read image {p}: {exc.strerror or exc}") from exc
        digest.update(np.asarray(sizes, dtype=np.int64).tobytes())
        digest.update(str(self.image_size).encode())


def image_folder_domain(path: "str | os.PathLike", *, role: str, image_size: int = 224,
                        norm=IMAGENET_NORM, seed: int = 0, val_fraction: float = 0.15,
                        classes: "Sequence[str] | None" = None
                        ) -> "tuple[FileDomainSplit, FileDomainSplit]":
    """One domain from an image folder, split into train and validation (stratified, seeded).

    Parameters
    ----------
    path : path
        See :func:`scan_image_folder`.
    role : {'source', 'target'}
    image_size : int
        Images are resized to (image_size, image_size).
    norm : (mean, std)
        Per-channel normalisation, e.g. ``IMAGENET_NORM``.
    seed : int
    val_fraction : float
    classes : sequence of str, optional
        The shared label space (e.g. from :func:`~tlexplorer.datasets.align.align_classes`).

    Returns
    -------
    train, val : FileDomainSplit
        Instance ids ``{domain}/{split}/{index:06d}`` with ``index`` the position in the domain's
        sorted file list; ``paths`` the absolute file paths.
    """
    folder = scan_image_folder(path, classes)
    train_idx, val_idx = stratified_split(folder.labels, val_fraction, seed)
    return tuple(
        FileDomainSplit([folder.files[j] for j in idx], folder.labels[idx], domain=folder.domain,
                        role=role, split=split, classes=folder.classes, indices=idx,
                        image_size=image_size, norm=norm)
        for split, idx in (("train", train_idx), ("val", val_idx)))
