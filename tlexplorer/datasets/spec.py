"""Rebuild a :class:`TransferData` from its JSON-able spec (as stored in a run's ``config.json``).

Kinds::

    {"kind": "scenario", "name": "digits", "seed": 0, "per_class": 1000, "data_dir": "..."}
    {"kind": "folders", "source": "<root>/amazon", "target": "<root>/webcam",
     "image_size": 224, "norm": "imagenet", "seed": 0, "val_fraction": 0.15}
    {"kind": "torchvision", "source": {"name": "SVHN", "root": "...", "per_class": 1500},
     "target": {"name": "MNIST", "root": "...", "per_class": 150},
     "image_size": 32, "norm": "half", "seed": 0, "val_fraction": 0.15, "download": false}

Both domains share one label space, matched by class name in the source's order
(:func:`~tlexplorer.datasets.align.align_classes`).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from .align import align_classes
from .base import HALF_NORM, IMAGENET_NORM, TransferData

NORMS = {"half": HALF_NORM, "imagenet": IMAGENET_NORM}
SPEC_KINDS = ("scenario", "folders", "torchvision")
# Per-side keys of a torchvision spec passed on to load_torchvision_raw.
_TV_SIDE_KEYS = ("subset", "per_class", "domain", "download", "kwargs")


def resolve_norm(norm) -> "tuple[tuple[float, float, float], tuple[float, float, float]]":
    """A normalisation by name (``'half'``, ``'imagenet'``) or as ``(mean, std)`` of 3 floats each."""
    if isinstance(norm, str):
        if norm.lower() not in NORMS:
            raise DataError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)} or give [mean, std]")
        return NORMS[norm.lower()]
    try:
        mean, std = (tuple(float(v) for v in part) for part in norm)
    except (TypeError, ValueError) as exc:
        raise DataError(f"norm must be a name or [mean, std] of 3 floats each, got {norm!r}") from exc
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise DataError(f"norm must be [mean, std] of 3 floats each with std > 0, got {norm!r}")
    return mean, std


def _norm_to_json(norm):
    """A norm as the spec stores it: its name when it is a known one."""
    if isinstance(norm, str):
        resolve_norm(norm)
        return norm.lower()
    resolved = resolve_norm(norm)
    for name, value in NORMS.items():
        if tuple(map(tuple, value)) == resolved:
            return name
    return [list(resolved[0]), list(resolved[1])]


_KEYS = {
    "folders": {"kind", "source", "target", "image_size", "norm", "seed", "val_fraction"},
    "torchvision": {"kind", "source", "target", "image_size", "norm", "seed", "val_fraction", "download"},
}


def _check_keys(spec: dict) -> None:
    unknown = sorted(set(spec) - _KEYS[spec["kind"]])
    if unknown:
        raise DataError(f"data spec of kind {spec['kind']!r} has unknown keys {unknown}: "
                        f"use {sorted(_KEYS[spec['kind']])}")


def _require(spec: dict, key: str):
    if key not in spec:
        raise DataError(f"data spec of kind {spec.get('kind')!r} lacks {key!r}: {spec}")
    return spec[key]


def _int_key(spec: dict, key: str, default: int, low: int) -> int:
    """``spec[key]`` as an integer >= ``low``; a one-line error naming the key otherwise."""
    value = spec.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise DataError(f"data.{key} must be an integer >= {low}, got {value!r}")
    return value


def _fraction_key(spec: dict, key: str, default: float) -> float:
    """``spec[key]`` as a number strictly between 0 and 1."""
    value = spec.get(key, default)
    if isinstance(value, str):  # YAML 1.1 reads "1e-1" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise DataError(f"data.{key} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _distinct_names(source: str, target: str) -> "tuple[str, str]":
    # Instance ids start with the domain name; two domains of one name would collide.
    return (source, target) if source != target else (f"{source}-source", f"{target}-target")


def _load_folders(spec: dict) -> TransferData:
    from .folders import FileDomainSplit, scan_image_folder
    from .splits import stratified_split

    _check_keys(spec)
    image_size, seed = _int_key(spec, "image_size", 224, 1), _int_key(spec, "seed", 0, 0)
    val_fraction = _fraction_key(spec, "val_fraction", 0.15)
    norm = resolve_norm(spec.get("norm", "imagenet"))
    source_path, target_path = _require(spec, "source"), _require(spec, "target")
    src, tgt = scan_image_folder(source_path), scan_image_folder(target_path)
    # Both scans list their class folders sorted, so equal sets also come in the same order.
    classes = align_classes(src.classes, tgt.classes, source_name=src.domain, target_name=tgt.domain)
    names = _distinct_names(src.domain, tgt.domain)
    splits = []
    for folder, role, domain in ((src, "source", names[0]), (tgt, "target", names[1])):
        train_idx, val_idx = stratified_split(folder.labels, val_fraction, seed)
        splits += [FileDomainSplit([folder.files[j] for j in idx], folder.labels[idx], domain=domain,
                                   role=role, split=split, classes=classes, indices=idx,
                                   image_size=image_size, norm=norm)
                   for split, idx in (("train", train_idx), ("val", val_idx))]
    # The stored spec is complete and has absolute paths, so it rebuilds from any working directory.
    full = folders_spec(source_path, target_path, image_size=image_size, norm=spec.get("norm", "imagenet"),
                        seed=seed, val_fraction=val_fraction)
    return TransferData(list(classes), *splits, spec=full)


def _load_torchvision(spec: dict) -> TransferData:
    from .torchvision_sets import load_torchvision_raw, split_raw

    _check_keys(spec)
    image_size, seed = _int_key(spec, "image_size", 32, 1), _int_key(spec, "seed", 0, 0)
    val_fraction = _fraction_key(spec, "val_fraction", 0.15)
    norm = resolve_norm(spec.get("norm", "half"))
    sides = [_require(spec, "source"), _require(spec, "target")]
    for role, side in zip(("source", "target"), sides):
        if not isinstance(side, dict) or "name" not in side or "root" not in side:
            raise DataError(f"torchvision spec {role!r} must be {{'name': ..., 'root': ...}}, got {side!r}")
        unknown = sorted(set(side) - {"name", "root", *_TV_SIDE_KEYS})
        if unknown:
            raise DataError(f"torchvision spec {role!r} has unknown keys {unknown}")
    raws = []
    for side in sides:
        raws.append(load_torchvision_raw(
            side["name"], side["root"], image_size=image_size,
            download=bool(side.get("download", spec.get("download", False))),
            subset=side.get("subset", "train"), per_class=side.get("per_class"), seed=seed,
            domain=side.get("domain"), **side.get("kwargs", {})))
    src, tgt = raws
    classes = align_classes(src.classes, tgt.classes, source_name=src.domain, target_name=tgt.domain)
    if tgt.classes != classes:  # same names, other order: relabel the target into the source's order
        from .align import remap_labels

        tgt.labels, tgt.classes = remap_labels(tgt.labels, tgt.classes, classes), list(classes)
    src.domain, tgt.domain = _distinct_names(src.domain, tgt.domain)
    splits = [*split_raw(src, role="source", norm=norm, seed=seed, val_fraction=val_fraction),
              *split_raw(tgt, role="target", norm=norm, seed=seed, val_fraction=val_fraction)]
    full = torchvision_spec(*sides, image_size=image_size, norm=spec.get("norm", "half"), seed=seed,
                            val_fraction=val_fraction, download=bool(spec.get("download", False)))
    return TransferData(list(classes), *splits, spec=full)


def load_transfer_data(spec: dict) -> TransferData:
    """Build (or rebuild) the transfer data a spec describes.

    Parameters
    ----------
    spec : dict
        JSON-able; ``spec["kind"]`` is one of :data:`SPEC_KINDS` (see the module docstring).

    Returns
    -------
    TransferData
        With ``spec`` completed (defaults filled in, paths made absolute) so that
        ``load_transfer_data(data.spec)`` gives the same data again from any working directory.

    Raises
    ------
    DataError
        Unknown kind or scenario, a missing key, or data that cannot be read.
    ClassMismatchError
        The two domains' class names differ.
    """
    if not isinstance(spec, dict):
        raise DataError(f"a data spec is a dict with a 'kind', got {spec!r}")
    kind = spec.get("kind")
    if kind == "scenario":
        from ..scenarios import load_scenario

        options = {k: v for k, v in spec.items() if k not in ("kind", "name")}
        return load_scenario(_require(spec, "name"), progress=False, **options)
    if kind == "folders":
        return _load_folders(spec)
    if kind == "torchvision":
        return _load_torchvision(spec)
    raise DataError(f"unknown data spec kind {kind!r}: choose one of {', '.join(SPEC_KINDS)}")


def folders_spec(source: "str | os.PathLike", target: "str | os.PathLike", *, image_size: int = 224,
                 norm="imagenet", seed: int = 0, val_fraction: float = 0.15) -> dict:
    """The spec of two image-folder domains (paths made absolute), for :func:`load_transfer_data`."""
    return {"kind": "folders", "source": str(Path(source).expanduser().absolute()),
            "target": str(Path(target).expanduser().absolute()), "image_size": int(image_size),
            "norm": _norm_to_json(norm), "seed": int(seed), "val_fraction": float(val_fraction)}


def torchvision_spec(source: dict, target: dict, *, image_size: int = 32, norm="half", seed: int = 0,
                     val_fraction: float = 0.15, download: bool = False) -> dict:
    """The spec of two torchvision datasets, each ``{"name", "root", ...}`` (roots made absolute)."""
    sides = {}
    for role, side in (("source", source), ("target", target)):
        side = dict(side)
        side["root"] = str(Path(_require({"kind": "torchvision", **side}, "root")).expanduser().absolute())
        sides[role] = side
    return {"kind": "torchvision", **sides, "image_size": int(image_size), "norm": _norm_to_json(norm),
            "seed": int(seed), "val_fraction": float(val_fraction), "download": bool(download)}
