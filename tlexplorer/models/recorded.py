"""Rebuild the architecture a run or bundle recorded (``{"name", "num_classes", "kwargs"}``) safely.

A recorded spec is data from a file: it may only choose among the built-in architectures and the
factories allowed in this process (:mod:`tlexplorer.models.factories`), never download weights, and a
malformed spec is a one-line error.
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from ..errors import ModelError
from .architectures import INPUT_SIZE, MODEL_NAMES, build_model
from .factories import how_to_allow, is_allowed, is_factory_name

_JSON_SCALARS = (str, int, float, bool, type(None))


def _json_value(value: Any) -> bool:
    if isinstance(value, _JSON_SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_value(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _json_value(v) for k, v in value.items())
    return False


def parse_recorded_spec(spec: Any) -> "tuple[str, int, dict]":
    """``(name, num_classes, kwargs)`` of a recorded model spec, checked; ``ModelError`` otherwise."""
    if not isinstance(spec, Mapping):
        raise ModelError(f"recorded model spec is not an object: {spec!r:.80}")
    name, num_classes = spec.get("name"), spec.get("num_classes")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(name, str) or not name:
        raise ModelError(f"recorded model spec has no architecture name: {spec!r:.80}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ModelError(f"recorded model {name!r} has num_classes {num_classes!r}, "
                         "expected an integer ≥ 2")
    if not isinstance(kwargs, Mapping) or not _json_value(kwargs):
        raise ModelError(f"recorded model {name!r} has kwargs that are not plain JSON values")
    if "pretrained" in kwargs:  # a recorded model never downloads weights
        raise ModelError(f"recorded model {name!r} asks for pretrained weights in its kwargs")
    return name, num_classes, dict(kwargs)


def recorded_model_problem(spec: Any) -> "str | None":
    """Why the recorded model cannot be built in this process (one line), or None when it can.

    Cheap: imports and builds nothing.
    """
    try:
        name, _n, _kw = parse_recorded_spec(spec)
    except ModelError as exc:
        return str(exc)
    if is_factory_name(name):
        if not is_allowed(name):
            return f"the model is the factory {name!r}, which this process may not import: " \
                   f"{how_to_allow(name)}"
        return None
    if name not in INPUT_SIZE:
        return f"unknown architecture {name!r} (built in: {', '.join(MODEL_NAMES)})"
    return None


def build_recorded_model(spec: Any) -> nn.Module:
    """The recorded architecture with fresh weights (never pretrained); ``ModelError`` when it
    cannot be built here (see :func:`recorded_model_problem`)."""
    problem = recorded_model_problem(spec)
    if problem is not None:
        raise ModelError(problem)
    name, num_classes, kwargs = parse_recorded_spec(spec)
    return build_model(name, num_classes, pretrained=False, **kwargs)


__all__ = ["build_recorded_model", "parse_recorded_spec", "recorded_model_problem"]
