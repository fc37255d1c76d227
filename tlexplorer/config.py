"""Where data and runs go, and which device computes; overridable with TLX_* environment variables."""
from __future__ import annotations

import os
from pathlib import Path

import param


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


def _env_positive_int(name: str) -> "int | None":
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    return number


class Settings(param.Parameterized):
    """Process-wide settings. Each can be overridden by an environment variable."""

    data_dir = param.Path(
        default=None, check_exists=False,
        doc="Where generated scenario data is cached (TLX_DATA_DIR; default ./data).")
    runs_dir = param.Path(
        default=None, check_exists=False,
        doc="Where training runs and analysis bundles go by default (TLX_RUNS_DIR; default ./runs).")
    device = param.String(
        default="auto",
        doc="'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N' (TLX_DEVICE).")
    max_chunk_mib = param.Integer(
        default=None, allow_None=True, bounds=(1, None),
        doc="Most MiB of hooked layer outputs one conductance pass may hold (TLX_MAX_CHUNK_MIB; "
            "default: a tenth of the memory free on the device).")

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            data_dir=str(_env_path("TLX_DATA_DIR", Path.cwd() / "data")),
            runs_dir=str(_env_path("TLX_RUNS_DIR", Path.cwd() / "runs")),
            device=os.environ.get("TLX_DEVICE", "auto"),
            max_chunk_mib=_env_positive_int("TLX_MAX_CHUNK_MIB"),
        )


def settings() -> Settings:
    """Fresh settings read from the environment (cheap; no global mutable state)."""
    return Settings.from_env()


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the system has one (Linux; a container
    or ``taskset`` may allow fewer than the machine has), else every CPU; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def package_versions() -> dict:
    """Versions of Python and the packages whose behaviour a run or bundle depends on (None: absent)."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for pkg in ("tlexplorer", "torch", "torchvision", "captum", "numpy", "scikit-learn", "polars",
                "openTSNE"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def resolve_device(device: "str | None" = None):
    """The torch device to compute on: the GPU when there is one, else the CPU.

    Parameters
    ----------
    device : str or torch.device, optional
        'auto' or None picks CUDA when available; anything else is passed to ``torch.device``.
    """
    import torch

    if device is None:
        device = os.environ.get("TLX_DEVICE", "auto")
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA GPU is available")
    return resolved
