"""Checkpoint I/O: ``state_dict`` files, loaded with ``weights_only=True`` and written atomically."""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from .._io import atomic_path
from ..errors import ModelError


def save_checkpoint(model: nn.Module, path: "str | os.PathLike") -> Path:
    """Write ``model.state_dict()`` (on the CPU) to ``path`` atomically."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}  # channels-last too
    with atomic_path(path) as tmp:
        # Through an open file torch names the zip's folder "archive", not after the random
        # temporary name: equal weights give equal bytes and sha256 (checkpoint hashes key caches).
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
    return path


# torch names the object it refused: "Unsupported global: GLOBAL mypkg.nets.Net was not an allowed ..."
_UNSUPPORTED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _unreadable(path: Path, exc: Exception) -> ModelError:
    """A one-line error for a checkpoint torch cannot load with ``weights_only=True``.

    torch's own message for a pickled object advises loading it unsafely; that advice is never
    passed on: the way out is saving the model's ``state_dict``.
    """
    if path.stat().st_size == 0:
        return ModelError(f"{path}: the checkpoint is an empty file (0 bytes), probably cut off while "
                          "being written; save it again")
    found = _UNSUPPORTED_GLOBAL.search(str(exc)) if isinstance(exc, pickle.UnpicklingError) else None
    if found:
        return ModelError(f"{path}: holds a pickled Python object ({found.group(1)}), not only tensors; "
                          "tlexplorer loads weights only: save the model with "
                          "torch.save(model.state_dict(), path) and use that file")
    words = " ".join(str(exc).split())[:200]
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in words:
        words = ""  # torch's text here suggests an unsafe load
    return ModelError(f"{path}: not a PyTorch checkpoint of weights ({type(exc).__name__}"
                      f"{': ' + words if words else ''}); expected a file written by "
                      "torch.save(model.state_dict(), path)")


def _check_finite(path: Path, state: dict) -> None:
    """NaN or infinite weights (a diverged training) fail here, naming the first such parameter."""
    for key, value in state.items():
        if value.is_floating_point() or value.is_complex():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                raise ModelError(f"{path}: parameter {key!r} has {bad} NaN or infinite values of "
                                 f"{value.numel()}; the training diverged: retrain with a lower "
                                 "learning rate or use an earlier checkpoint")


def load_state_dict(path: "str | os.PathLike") -> dict:
    """Read a state dict safely (``weights_only=True``); accepts ``{'state_dict': ...}`` wrappers.

    Raises
    ------
    ModelError
        One line naming the file: missing, empty, not a checkpoint, a pickled object rather than
        tensors, or NaN/infinite values (naming the parameter).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or empty file, pickle with arbitrary objects, ...
        raise _unreadable(path, exc) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: expected a state_dict of tensors")
    _check_finite(path, state)
    return state


def load_checkpoint(model: nn.Module, path: "str | os.PathLike") -> nn.Module:
    """Load ``path`` into ``model`` (strict); a checkpoint of another architecture is a one-line error."""
    state = load_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[0]})")
        if wrong_shape:
            k = wrong_shape[0]
            parts.append(f"{len(wrong_shape)} shape mismatches (e.g. {k}: "
                         f"{tuple(state[k].shape)} vs {tuple(own[k].shape)})")
        raise ModelError(f"{path}: checkpoint does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state)
    return model


def file_sha256(path: "str | os.PathLike") -> str:
    """Hex SHA-256 of a file's bytes (identity of checkpoints in caches and manifests)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
