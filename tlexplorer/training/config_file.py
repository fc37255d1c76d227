"""Training options and the ``tlexplorer train --config FILE`` file (YAML or JSON).

A config file has three sections::

    data: {kind: folders, source: /data/office31/amazon, target: /data/office31/webcam,
           image_size: 224, norm: imagenet}
    model: {name: alexnet, pretrained: false}
    training: {epochs_source: 30, epochs_target: 20, lr_source: 0.01, lr_target: 0.001,
               freeze: [features.0]}

``data`` is passed as is to :func:`tlexplorer.datasets.load_transfer_data` (which checks it);
``model`` and ``training`` are checked here. Relative paths are taken as given (relative to the
working directory of the command), like every other path argument of the CLI.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TLXError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "constant")
INITS = ("kaiming", "model")
MODEL_KEYS = ("name", "num_classes", "kwargs", "pretrained", "source_checkpoint")
SECTIONS = ("data", "model", "training")


class ConfigError(TLXError):
    """A training option, model spec or config file entry that cannot be used."""


@dataclass
class TrainOptions:
    """How :func:`tlexplorer.training.train_transfer` trains the source model and fine-tunes the target.

    The defaults train the built-in digits scenario (``digits-alexnet``, 32×32) on a 2-core CPU in
    about a minute (source model ~0.96 on source_val, target model ~0.96-0.99 on target_val, the
    source model ~0.6 there): Adam with a cosine learning-rate decay, the source for
    ``epochs_source`` epochs, then a copy fine-tuned on the target with a smaller learning rate.

    Attributes
    ----------
    epochs_source : int
        Epochs of source training (ignored when the model spec names a ``source_checkpoint``).
    epochs_target : int
        Epochs of fine-tuning on the target training set.
    batch_size : int
        Mini-batch size of both phases (evaluation uses twice as many).
    optimizer : {'adam', 'adamw', 'sgd'}
        ``sgd`` uses ``momentum`` (Nesterov); ``adamw`` decouples ``weight_decay``.
    lr_source, lr_target : float
        Peak learning rates of source training and fine-tuning.
    lr_head : float or None
        Learning rate of the output layer during fine-tuning (None: ``lr_target``). A replaced
        head (class counts differ) often wants a larger one.
    momentum : float
        SGD momentum (unused by Adam).
    weight_decay : float
    schedule : {'cosine', 'constant'}
        Cosine decay from the peak to 0 over each phase's steps, or a constant rate.
    init : {'kaiming', 'model'}
        How a source model trained from scratch starts (not one from a checkpoint or pretrained):
        He-normal weights (fan-in, ReLU gain) and zero biases in every Conv2d and Linear, or the
        architecture's own initialisation. PyTorch's default init shrinks the signal through
        digits-alexnet's eight ReLU layers so much that training can stall at chance for epochs.
    freeze : list of str
        Module-name prefixes whose parameters stay fixed during fine-tuning (``features.conv1``,
        ``features.0``); frozen modules also stay in eval mode (BatchNorm statistics, dropout).
    seed : int
        Seeds initialisation, head replacement, shuffling, dropout and the evaluation subsample.
    eval_max_per_class : int or None
        After every epoch each *training* set is evaluated on a fixed stratified subsample of at most
        this many instances per class (None: all); validation sets are always evaluated in full.
    num_workers : int
        DataLoader workers for datasets that are streamed rather than held in memory.
    num_threads : int or None
        torch's intra-op CPU threads while training on the CPU (restored afterwards). None: torch's
        setting (one per core), lowered to the cores left idle by other processes (1-minute load
        average) -- with more threads than free cores, torch's spinning threads make training
        5-10x slower (measured on 2 cores). The number used is recorded in ``config.json``; pin
        it to reproduce a run bit for bit (results differ slightly between thread counts).
    device : str
        'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'.
    """

    epochs_source: int = 5
    epochs_target: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    lr_source: float = 1e-3
    lr_target: float = 3e-4
    lr_head: "float | None" = None
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    init: str = "kaiming"
    freeze: "list[str]" = field(default_factory=list)
    seed: int = 0
    eval_max_per_class: "int | None" = 100
    num_workers: int = 0
    num_threads: "int | None" = None
    device: str = "auto"

    def __post_init__(self):
        _check_int(self, "epochs_source", 1)
        _check_int(self, "epochs_target", 1)
        _check_int(self, "batch_size", 1)
        _check_choice(self, "optimizer", OPTIMIZERS)
        _check_float(self, "lr_source", positive=True)
        _check_float(self, "lr_target", positive=True)
        if self.lr_head is not None:
            _check_float(self, "lr_head", positive=True)
        _check_float(self, "momentum", low=0.0, high=1.0)
        _check_float(self, "weight_decay", low=0.0)
        _check_choice(self, "schedule", SCHEDULES)
        _check_choice(self, "init", INITS)
        if isinstance(self.freeze, str):
            self.freeze = [self.freeze]
        if not isinstance(self.freeze, (list, tuple)) or not all(isinstance(p, str) and p for p in self.freeze):
            raise ConfigError(f"freeze must be a list of module-name prefixes, got {self.freeze!r}")
        self.freeze = [p.rstrip(".") for p in self.freeze]
        _check_int(self, "seed", 0)
        if self.eval_max_per_class is not None:
            _check_int(self, "eval_max_per_class", 1)
        _check_int(self, "num_workers", 0)
        if self.num_threads is not None:
            _check_int(self, "num_threads", 1)
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

    def to_dict(self) -> dict:
        """A JSON-able dict that :meth:`from_dict` turns back into equal options."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: "dict | None") -> "TrainOptions":
        """Options from a dict, with a one-line :class:`ConfigError` for an unknown key or bad value."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training option {unknown[0]!r}; valid options: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def field_names(cls) -> "list[str]":
        return [f.name for f in dataclasses.fields(cls)]


def _check_int(obj, name: str, low: int) -> None:
    value = getattr(obj, name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
        setattr(obj, name, value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_float(obj, name: str, *, positive: bool = False, low: "float | None" = None,
                 high: "float | None" = None) -> None:
    value = getattr(obj, name)
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if positive and value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    if low is not None and value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"{name} must be <= {high}, got {value!r}")
    setattr(obj, name, value)


def _check_choice(obj, name: str, choices) -> None:
    value = getattr(obj, name)
    if isinstance(value, str):
        value = value.lower()
        setattr(obj, name, value)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def normalize_model_spec(spec: "dict | str | None") -> dict:
    """Check a model spec and fill defaults: ``{"name", "num_classes" (None: the data's class count),
    "kwargs" (with the architecture's defaults, see :func:`tlexplorer.models.architecture_kwargs`),
    "pretrained", "source_checkpoint"}``.

    Raises
    ------
    ConfigError
        An unknown key, a missing name or a value of the wrong type.
    """
    if isinstance(spec, str):
        spec = {"name": spec}
    if spec is None:
        spec = {"name": "digits-alexnet"}
    if not isinstance(spec, dict):
        raise ConfigError(f"model spec must be a mapping with a 'name', got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(MODEL_KEYS))
    if unknown:
        raise ConfigError(f"unknown model key {unknown[0]!r}; valid keys: {', '.join(MODEL_KEYS)}")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"model name must be a non-empty string, got {name!r}")
    num_classes = spec.get("num_classes")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 2):
        raise ConfigError(f"model num_classes must be an integer >= 2, got {num_classes!r}")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"model kwargs must be a mapping, got {kwargs!r}")
    pretrained = spec.get("pretrained", False)
    if not isinstance(pretrained, bool):
        raise ConfigError(f"model pretrained must be true or false, got {pretrained!r}")
    ckpt = spec.get("source_checkpoint")
    if ckpt is not None and not isinstance(ckpt, (str, os.PathLike)):
        raise ConfigError(f"model source_checkpoint must be a path, got {ckpt!r}")
    from ..models import architecture_kwargs

    return {"name": name, "num_classes": num_classes, "kwargs": architecture_kwargs(name, kwargs),
            "pretrained": pretrained,
            "source_checkpoint": str(ckpt) if ckpt is not None else None}


def _read_mapping(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError, json.JSONDecodeError
        first = " ".join(str(exc).split())[:200]
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} ({first})") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping with sections {', '.join(SECTIONS)}, "
                          f"got {type(doc).__name__}")
    return doc


def load_train_config(path: "str | os.PathLike") -> "tuple[dict, dict, TrainOptions]":
    """Read a training config file (``.yaml``/``.yml`` or ``.json``).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    data_spec : dict
        For :func:`tlexplorer.datasets.load_transfer_data` (checked there).
    model_spec : dict
        Normalised by :func:`normalize_model_spec`; ``num_classes`` None means the data's class count.
    options : TrainOptions

    Raises
    ------
    ConfigError
        One line naming the file and the key at fault (unknown section or key, bad value).
    """
    path = Path(path)
    doc = _read_mapping(path)
    unknown = sorted(set(doc) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section {unknown[0]!r}; valid sections: {', '.join(SECTIONS)}")
    if "data" not in doc:
        raise ConfigError(f"{path}: missing section 'data' (the source and target domains)")
    data_spec = doc["data"]
    if not isinstance(data_spec, dict) or "kind" not in data_spec:
        raise ConfigError(f"{path}: data must be a mapping with a 'kind', got {data_spec!r}")
    try:
        model_spec = normalize_model_spec(doc.get("model"))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    training = doc.get("training") or {}
    if not isinstance(training, dict):
        raise ConfigError(f"{path}: training must be a mapping of options, got {training!r}")
    try:
        options = TrainOptions.from_dict(training)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(f"{path}: {msg}" if msg.startswith("unknown") else f"{path}: training.{msg}") from None
    return dict(data_spec), model_spec, options


def options_from_any(options: "TrainOptions | dict | None", **overrides: Any) -> TrainOptions:
    """``TrainOptions`` from options, a dict or None (defaults), with keyword overrides."""
    if options is None:
        options = TrainOptions()
    elif isinstance(options, dict):
        options = TrainOptions.from_dict(options)
    elif not isinstance(options, TrainOptions):
        raise ConfigError(f"options must be TrainOptions or a dict, got {type(options).__name__}")
    if overrides:
        options = TrainOptions.from_dict({**options.to_dict(), **overrides})
    return options
