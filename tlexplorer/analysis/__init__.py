"""Pure computation behind every view: tensors and arrays in, arrays and polars frames out.

Nothing here knows about bundles or the UI. Names are imported lazily (``tlexplorer.analysis.X``
loads only X's module), so the app and the pipeline pay only for what they use.
"""
from __future__ import annotations

import importlib

_MODULES = {
    "statistics": ["transferability_score", "best_accuracy", "confusion_table"],
    "neurons": ["neuron_rank_scores", "important_neurons", "n_important", "importance_ranks",
                "neuron_ranking"],
    "weights": ["default_k", "top_k_mask", "WeightCounter", "important_weights", "inherited_weights",
                "WeightInheritance"],
    "similarity": ["neuron_similarity", "most_similar", "linear_cka"],
    "discriminability": ["DomainDiscriminability", "domain_discriminability"],
    "discrepancy": ["proxy_a_distance"],
    "changes": ["weight_change", "rank_shift"],
    "attribution": ["layer_conductance", "CompletenessReport", "ConvergenceWarning"],
    "contributions": ["weight_contributions", "iter_weight_contributions", "conv_contributions", "conv_patch_sums"],
    "activations": ["Predictions", "Capture", "capture", "capture_activations", "predict", "iter_capture",
                    "concat_captures"],
    "parameters": ["pair_weight_matrix"],
    "embedding": ["tsne_layout", "project_subset", "prepare_embeddings"],
    "featurevis": ["visualize_neuron", "visualize_neurons", "top_activating", "weight_feature_map"],
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
