"""The parameter joining each neuron of one layer to each neuron of the next (the weight squares'
brightness in the network relation view, paper §5.3.3)."""
from __future__ import annotations

import numpy as np
from torch import nn

__all__ = ["pair_weight_matrix"]


def pair_weight_matrix(module_to: nn.Module, neurons_from: int) -> np.ndarray:
    """One number per link n1 → n2 between consecutive layers.

    Parameters
    ----------
    module_to : nn.Conv2d or nn.Linear
        The later layer, whose weights act on the earlier layer's (channel-wise transformed) output.
        Whether the pair is channel-wise at all is checked by
        :func:`tlexplorer.analysis.contributions.weight_contributions`; call that first.
    neurons_from : int
        Neurons (channels) of the earlier layer.

    Returns
    -------
    ndarray (neurons_from, neurons_to), float32
        conv → conv: the kernel slice ``W[n2, n1]`` summed over space (its response to a constant
        map); conv → linear: the sum of n1's block of weights; linear → linear: ``W[n2, n1]``.
        The same reductions the per-instance contributions use, so weight and contribution agree in
        sign and scale for uniform activations.
    """
    weight = module_to.weight.detach().cpu().float()
    if isinstance(module_to, nn.Conv2d):
        if module_to.groups != 1 or weight.shape[1] != neurons_from:
            raise ValueError(f"{type(module_to).__name__} takes {weight.shape[1]} channels per group, "
                             f"not the {neurons_from} of the previous layer")
        matrix = weight.sum(dim=(2, 3))                       # (n2, n1)
    elif isinstance(module_to, nn.Linear):
        if weight.shape[1] % neurons_from:
            raise ValueError(f"Linear with {weight.shape[1]} inputs cannot be split into "
                             f"{neurons_from} equal blocks")
        matrix = weight.reshape(weight.shape[0], neurons_from, -1).sum(dim=2)  # (n2, n1)
    else:
        raise ValueError(f"{type(module_to).__name__} has no per-neuron weights")
    return matrix.T.contiguous().numpy().astype(np.float32)
