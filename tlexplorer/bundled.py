"""A finished bundle's two models, and a neuron's feature visualization made from them with the
bundle's own settings: what a notebook or script needs beyond the bundle's tables and arrays.

A bundle never chooses code to import: built-in architectures are built by name; a bundle of your
own architecture (``"mypkg.nets:make_net"``) needs the factory itself, passed by you.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from .errors import ModelError

__all__ = ["bundle_models", "feature_visualization", "feature_vis_settings"]

MODELS = ("source", "target")


def _open(bundle):
    from .bundle import open_bundle

    return open_bundle(bundle) if isinstance(bundle, (str, os.PathLike)) else bundle


def feature_vis_settings(manifest: dict) -> dict:
    """The keyword arguments of :func:`tlexplorer.analysis.featurevis.visualize_neurons` that make a
    bundle's feature visualizations: the input size and normalisation of the target domain, the
    analysis's ``feature_vis_steps`` and ``seed`` (the dashboard's images use the same)."""
    from .models import INPUT_SIZE

    image = manifest.get("image") or {}
    size = image.get("size") or INPUT_SIZE.get((manifest.get("model") or {}).get("name"), 32)
    options = manifest.get("options") or {}
    return {"image_size": int(size), "mean": tuple(image.get("mean") or (0.5, 0.5, 0.5)),
            "std": tuple(image.get("std") or (0.5, 0.5, 0.5)),
            "steps": int(options.get("feature_vis_steps", 64) or 64),
            "seed": int(options.get("seed", 0) or 0)}


def bundle_models(bundle, *, factory: "Callable | None" = None, device=None) -> dict:
    """The bundle's source and target models (``models/source.pt``, ``models/target.pt``), in eval mode.

    Parameters
    ----------
    bundle : Bundle or path
    factory : callable, optional
        For a bundle of your own architecture: the factory it was built with, called as
        ``factory(num_classes=..., **kwargs)`` with the kwargs the bundle recorded. Built-in
        architectures (``digits-alexnet``, ``alexnet``, ``vgg11``, ``resnet18``) and factories
        allowed in this process (:func:`tlexplorer.allow_factory`) need none.
    device : str or torch.device, optional
        Where to put them (default: the CPU).

    Returns
    -------
    dict
        ``{"source": nn.Module, "target": nn.Module}``.

    Raises
    ------
    ModelError
        A bundle of a custom architecture without ``factory``; a checkpoint that does not fit.
    """
    from .models import load_checkpoint, load_state_dict
    from .models.recorded import recorded_model_problem
    from .training.runs import model_from_state

    bundle = _open(bundle)
    spec = dict(bundle.manifest.get("model") or {})
    problem = recorded_model_problem(spec) if factory is None else None
    if problem:
        raise ModelError(f"{bundle.path}: {problem}; or pass the factory itself: "
                         "bundle_models(bundle, factory=make_net) (a bundle never chooses code to "
                         "import)")
    models = {}
    for which in MODELS:
        path = bundle.file(f"models/{which}.pt")
        if factory is None:
            net = model_from_state(spec, load_state_dict(path))
        else:
            net = factory(num_classes=int(spec["num_classes"]), **(spec.get("kwargs") or {}))
        load_checkpoint(net, path)
        models[which] = (net.to(device) if device is not None else net).eval()
    return models


def feature_visualization(bundle, model: str, layer: str, neuron: int, *, models: "dict | None" = None,
                          steps: "int | None" = None, device=None,
                          factory: "Callable | None" = None) -> np.ndarray:
    """One neuron's feature visualization, as the dashboard shows it.

    Taken from the bundle's cache (``cache/featurevis/{model}/{layer}/{neuron}``, filled by
    ``tlexplorer analyze --feature-vis`` and by the dashboard), else optimised with the bundle's
    settings (:func:`feature_vis_settings`) and cached there for the dashboard.

    Parameters
    ----------
    bundle : Bundle or path
    model : {'source', 'target'}
    layer : str
        An analysed layer (``bundle.layer_names``).
    neuron : int
        Channel (conv) or unit (linear) index.
    models : dict, optional
        :func:`bundle_models`'s result, to build the models once for many neurons.
    steps : int, optional
        Other optimisation steps than the bundle's (quicker previews); such images are not cached.
    device : str or torch.device, optional
        Where to optimise (default: the GPU when there is one).
    factory : callable, optional
        See :func:`bundle_models`.

    Returns
    -------
    ndarray, shape (S, S, 3), uint8
    """
    from .analysis.featurevis import visualize_neurons
    from .config import resolve_device

    bundle = _open(bundle)
    if model not in MODELS:
        raise ValueError(f"model must be 'source' or 'target', got {model!r}")
    settings = feature_vis_settings(bundle.manifest)
    own = steps is None or int(steps) == settings["steps"]
    name = f"featurevis/{model}/{layer}/{int(neuron)}"
    if own:
        cached = bundle.cache_array(name)
        if cached is not None:
            return cached
    else:
        settings["steps"] = int(steps)
    if models is None:
        models = bundle_models(bundle, factory=factory)
    image = visualize_neurons(models[model], layer, [int(neuron)], device=resolve_device(device),
                              **settings)[0]
    if own:
        bundle.write_cache_array(name, image)  # False on a read-only bundle: the image is still returned
    return image
