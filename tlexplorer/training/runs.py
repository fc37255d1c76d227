"""Read a run directory written by ``tlexplorer train`` (or assembled by hand).

A run directory holds ``config.json`` (written last: its presence means the run is complete),
``source.pt``, ``target.pt`` and ``history.parquet`` (``history.csv`` is accepted in its place
for histories imported from elsewhere). See docs/architecture.md, "Run directory".
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from torch import nn

from ..errors import RunError
from ..models import build_model, file_sha256, load_checkpoint, load_state_dict, output_layer, replace_head
from .history import read_history

CONFIG_FILE = "config.json"
SOURCE_FILE = "source.pt"
TARGET_FILE = "target.pt"
HISTORY_FILE = "history.parquet"
HISTORY_CSV = "history.csv"
RUN_FILES = (CONFIG_FILE, SOURCE_FILE, TARGET_FILE, HISTORY_FILE)


def model_from_state(spec: dict, state: dict) -> nn.Module:
    """Build ``spec``'s architecture (never downloading weights) and load ``state`` into it.

    The head is resized to the checkpoint's output layer when it differs from
    ``spec["num_classes"]`` (a fine-tuned model's head may differ from its source's).
    """
    num_classes = spec.get("num_classes")
    model = build_model(spec["name"], int(num_classes) if num_classes else 2, pretrained=False,
                        **(spec.get("kwargs") or {}))
    head_name, head = output_layer(model)
    weight = state.get(f"{head_name}.weight")
    if weight is not None and isinstance(head, nn.Linear) and weight.ndim == 2 \
            and weight.shape[0] != head.out_features:
        replace_head(model, int(weight.shape[0]))
    return model


def load_model_file(spec: dict, path: "str | os.PathLike") -> nn.Module:
    """A model of ``spec``'s architecture with the checkpoint at ``path`` loaded (strict)."""
    state = load_state_dict(path)
    model = model_from_state(spec, state)
    return load_checkpoint(model, path)


@dataclass
class Run:
    """A finished training run: its config, history and checkpoints.

    Attributes
    ----------
    run_dir : Path
    config : dict
        ``config.json`` (data spec, model spec, training options, versions, hashes, ...).
    history : polars.DataFrame
        The validated history table.
    """

    run_dir: Path
    config: dict
    history: pl.DataFrame

    @property
    def source_path(self) -> Path:
        return self.run_dir / SOURCE_FILE

    @property
    def target_path(self) -> Path:
        return self.run_dir / TARGET_FILE

    @property
    def model_spec(self) -> dict:
        return self.config["model"]

    def build_models(self, device=None, *, verify: bool = True) -> "tuple[nn.Module, nn.Module]":
        """``(source, target)`` with their checkpoints loaded, in eval mode.

        Parameters
        ----------
        device : optional
            Where to put them (default CPU).
        verify : bool
            Check each checkpoint's SHA-256 against ``config["checkpoints"]`` when recorded there.

        Raises
        ------
        RunError
            A checkpoint was changed after the run was written.
        tlexplorer.errors.ModelError
            A checkpoint that does not fit the architecture.
        """
        recorded = self.config.get("checkpoints") or {}
        models = []
        for role, path in (("source", self.source_path), ("target", self.target_path)):
            # loaded first: a damaged file (empty, NaN weights) is named for what it is
            model = load_model_file(self.model_spec, path)
            if verify and recorded.get(role):
                actual = file_sha256(path)
                if actual != recorded[role]:
                    raise RunError(f"{path}: checksum differs from the one in {CONFIG_FILE} "
                                   "(the checkpoint was replaced after training)")
            if device is not None:
                model = model.to(device)
            models.append(model.eval())
        return models[0], models[1]

    def data(self):
        """The run's :class:`~tlexplorer.datasets.TransferData`, rebuilt from ``config["data"]``."""
        spec = self.config.get("data")
        if not spec:
            raise RunError(f"{self.run_dir / CONFIG_FILE}: no data spec recorded (trained on in-memory "
                           "data); pass the data explicitly")
        from ..datasets import load_transfer_data

        return load_transfer_data(spec)


def load_run(run_dir: "str | os.PathLike") -> Run:
    """Open a run directory.

    Raises
    ------
    RunError
        One line naming the missing or unreadable file: no directory, no ``config.json`` (an
        unfinished or interrupted run), no ``source.pt``/``target.pt``, no history, or a config
        without a model spec.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: run directory not found")
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise RunError(f"{config_path}: missing; {run_dir} is not a finished run (a run directory "
                       f"holds {', '.join(RUN_FILES)})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{config_path}: not readable JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise RunError(f"{config_path}: expected a JSON object")
    model = config.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise RunError(f"{config_path}: missing \"model\": {{\"name\": ..., \"num_classes\": ..., \"kwargs\": ...}}")
    for name in (SOURCE_FILE, TARGET_FILE):
        if not (run_dir / name).is_file():
            raise RunError(f"{run_dir / name}: missing; the run directory needs both model checkpoints")
    history_path = run_dir / HISTORY_FILE
    if not history_path.is_file() and (run_dir / HISTORY_CSV).is_file():
        history_path = run_dir / HISTORY_CSV
    if not history_path.is_file():
        raise RunError(f"{run_dir / HISTORY_FILE}: missing; the run directory needs the training history")
    return Run(run_dir=run_dir, config=config, history=read_history(history_path))
