"""Shared machinery of the forward passes in ``analysis``: layer lookup, hooks that are always removed,
eval mode and device that are always restored, and batch streaming over tensors or DataLoaders."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import torch
from torch import Tensor, nn

from ..config import resolve_device
from ..errors import LayerError

LayerSpec = Union[str, nn.Module]
Inputs = Union[Tensor, Iterable[Any]]


class StopForward(Exception):
    """Raised by a hook to end a forward pass as soon as everything needed has been captured."""


class Hooks:
    """Forward (pre-)hooks that are removed on exit, also when the forward pass raises.

    Examples
    --------
    >>> with Hooks() as hooks:                       # doctest: +SKIP
    ...     hooks.forward(model.conv1, lambda m, i, o: None)
    ...     model(x)
    """

    def __init__(self) -> None:
        self._handles: list = []

    def forward(self, module: nn.Module, fn: Callable) -> None:
        self._handles.append(module.register_forward_hook(fn))

    def pre(self, module: nn.Module, fn: Callable) -> None:
        self._handles.append(module.register_forward_pre_hook(fn))

    def __enter__(self) -> "Hooks":
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _conv_linear_names(model: nn.Module) -> str:
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return shown or "(no Conv2d/Linear modules)"


def resolve_layers(model: nn.Module, layers: "LayerSpec | Sequence[LayerSpec]") -> list[tuple[str, nn.Module]]:
    """``(name, module)`` pairs for layer names or modules of ``model``, in the order given, no repeats.

    Raises
    ------
    LayerError
        A name that is not a module of ``model``, or a module that is not part of it.
    """
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("no layers given: pass layer names or modules")
    by_name = dict(model.named_modules())
    by_module = {}
    for name, module in by_name.items():
        by_module.setdefault(module, name)
    resolved: list[tuple[str, nn.Module]] = []
    seen = set()
    for layer in layers:
        if isinstance(layer, nn.Module):
            if layer not in by_module:
                raise LayerError(f"{type(layer).__name__} module is not part of {type(model).__name__}")
            name, module = by_module[layer], layer
        else:
            if not isinstance(layer, str) or layer == "" or layer not in by_name:
                raise LayerError(f"layer {layer!r} is not in {type(model).__name__}; "
                                 f"available: {_conv_linear_names(model)}")
            name, module = layer, by_name[layer]
        if name not in seen:
            seen.add(name)
            resolved.append((name, module))
    return resolved


def layer_name(model: nn.Module, layer: LayerSpec) -> tuple[str, nn.Module]:
    """One ``(name, module)`` pair (see :func:`resolve_layers`)."""
    return resolve_layers(model, [layer])[0]


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type == "cuda":
        ia = torch.cuda.current_device() if a.index is None else a.index
        ib = torch.cuda.current_device() if b.index is None else b.index
        return ia == ib
    return True


@contextmanager
def eval_on_device(model: nn.Module, device=None) -> Iterator[tuple[torch.device, torch.dtype]]:
    """Put ``model`` in eval mode on ``device`` (resolved by :func:`tlexplorer.config.resolve_device`);
    restore every module's training flag and the model's device on exit, also on error.

    Yields ``(device, dtype)``; ``dtype`` is that of the model's first floating-point parameter
    (inputs are cast to it), else the default dtype.
    """
    target = resolve_device(device)
    tensors = list(model.parameters()) + list(model.buffers())
    floats = [t for t in tensors if t.is_floating_point()]
    dtype = floats[0].dtype if floats else torch.get_default_dtype()
    previous = tensors[0].device if tensors else None
    moved = previous is not None and not _same_device(previous, target)
    # Per-module flags: a model with a frozen (eval) BatchNorm inside a training model stays that way.
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        if moved:
            model.to(target)
        yield target, dtype
    finally:
        if moved:
            model.to(previous)
        for module, training in modes.items():
            module.training = training


def check_images(x: Any, what: str = "inputs") -> Tensor:
    """``x`` must be a 4-D tensor (N, C, H, W); a one-line ValueError naming its shape otherwise."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{what} must be a tensor (N, C, H, W) or batches of (x, y), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{what} must be a 4-D tensor (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{what} is empty: shape {tuple(x.shape)}")
    return x


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def forward_fits(model: nn.Module, x: Tensor, shape: "tuple | None" = None) -> Tensor:
    """Run ``model(x)`` and turn a failure into a one-line ValueError naming the input shape
    (``shape``: the user's batch, when ``x`` is a probe built from it).

    Used on the first pass, so that a wrong channel count or size is reported as such rather than
    as a shape error deep inside the network.
    """
    try:
        return model(x)
    except (StopForward, LayerError):
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        shape = tuple(x.shape) if shape is None else tuple(shape)
        raise ValueError(f"inputs of shape {shape} do not fit {type(model).__name__}: "
                         f"{first_line(exc)}") from exc


def num_instances(inputs: Inputs) -> "int | None":
    """Number of instances of a tensor or DataLoader when known (for progress bars)."""
    if isinstance(inputs, Tensor):
        return int(inputs.shape[0]) if inputs.dim() > 0 else None
    dataset = getattr(inputs, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None


def _per_instance(value: Any, offset: int, n: int, what: str):
    """Slice a per-instance tensor for the batch at ``offset``; scalars pass through."""
    if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] != 1:
        if value.shape[0] < offset + n:
            raise ValueError(f"{what} has {value.shape[0]} rows but the inputs have at least {offset + n}")
        return value[offset:offset + n]
    return value


def iter_batches(inputs: Inputs) -> Iterator[tuple[Tensor, "Tensor | None", int]]:
    """``(x, y or None, offset)`` per batch: a tensor is one batch; an iterable yields ``(x, y, ...)``
    tuples or bare tensors (no labels)."""
    if isinstance(inputs, Tensor):
        yield check_images(inputs), None, 0
        return
    if isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__iter__"):
        raise ValueError(f"inputs must be a tensor (N, C, H, W) or an iterable of (x, y) batches, "
                         f"got {type(inputs).__name__}")
    offset = 0
    for batch in inputs:
        if isinstance(batch, (tuple, list)):
            if not batch:
                raise ValueError("empty batch in inputs")
            x, y = batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            x, y = batch, None
        x = check_images(x, "a batch of inputs")
        if y is not None:
            y = torch.as_tensor(y)
        yield x, y, offset
        offset += x.shape[0]


def check_rows(value: Any, n: int, what: str) -> None:
    """A per-instance ``target`` or ``baseline`` must have one row per instance (``n`` in all)."""
    if isinstance(value, (int, float)) or value is None:
        return
    v = torch.as_tensor(value)
    if what == "baseline":
        rows = v.shape[0] if v.dim() == 4 else 1
    else:
        rows = v.numel()
    if rows not in (1, n):
        raise ValueError(f"{what} has {rows} entries for {n} instances")


def batch_targets(target: Any, y: "Tensor | None", offset: int, n: int) -> Tensor:
    """Class indices (n,) of one batch: ``target`` (int, or per-instance tensor sliced at ``offset``),
    or the batch's labels ``y`` when ``target`` is None."""
    if target is None:
        if y is None:
            raise ValueError("no target: pass target= (int or tensor (N,)) or batches of (x, y) "
                             "whose labels are the targets")
        t = y
    else:
        t = _per_instance(torch.as_tensor(target), offset, n, "target")
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"target must hold integer class indices, got dtype {t.dtype}")
    t = t.reshape(-1).long()
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"target has {t.numel()} entries for a batch of {n} instances")
    return t


def check_targets(t: Tensor, num_classes: int) -> None:
    bad = (t < 0) | (t >= num_classes)
    if bool(bad.any()):
        value = int(t[bad][0])
        raise ValueError(f"target {value} is out of range for a model with {num_classes} outputs")


def batch_baseline(baseline: Any, offset: int, n: int, x: Tensor) -> Tensor:
    """The baselines (n, C, H, W) of one batch: zeros by default, a scalar, one image (C, H, W) or
    (1, C, H, W), or per-instance images sliced at ``offset``."""
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, (int, float)):
        return torch.full_like(x, float(baseline))
    b = torch.as_tensor(baseline)
    if b.dim() == 3:
        b = b.unsqueeze(0)
    if b.dim() != 4 or tuple(b.shape[1:]) != tuple(x.shape[1:]):
        raise ValueError(f"baseline of shape {tuple(b.shape)} does not match inputs of shape "
                         f"(N, {', '.join(map(str, x.shape[1:]))})")
    b = _per_instance(b, offset, n, "baseline")
    return b.to(device=x.device, dtype=x.dtype).expand_as(x)
