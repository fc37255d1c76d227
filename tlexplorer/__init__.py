"""tlexplorer: explain and diagnose transfer learning between a source and a target deep network.

The public API is imported lazily so that ``import tlexplorer`` stays fast and never imports
panel/holoviews (only :class:`Explorer` and :func:`create_app` do).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Explorer": "tlexplorer.app.dashboard",
    "create_app": "tlexplorer.app.dashboard",
    "open_bundle": "tlexplorer.bundle",
    "bundle_models": "tlexplorer.bundled",
    "feature_visualization": "tlexplorer.bundled",
    "analyze": "tlexplorer.pipeline",
    "AnalyzeOptions": "tlexplorer.pipeline",
    "train_transfer": "tlexplorer.training",
    "TrainOptions": "tlexplorer.training",
    "HistoryRecorder": "tlexplorer.training",
    "load_run": "tlexplorer.training",
    "import_run": "tlexplorer.training.imports",
    "load_scenario": "tlexplorer.scenarios",
    "load_transfer_data": "tlexplorer.datasets",
    "build_model": "tlexplorer.models",
    "allow_factory": "tlexplorer.models.factories",
    "hidden_layers": "tlexplorer.models",
    "load_checkpoint": "tlexplorer.models",
    "save_checkpoint": "tlexplorer.models",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tlexplorer' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
