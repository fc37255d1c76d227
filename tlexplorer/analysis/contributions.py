"""Per-instance weight contributions between two consecutive layers (paper §5.3.1, Weight Extraction
step 1): how much neuron ``n1`` of ``layer_from`` drives neuron ``n2`` of ``layer_to`` on an instance.

For a convolution the contribution of input channel ``n1`` to output channel ``n2`` is the spatial
sum of ``W[n2, n1]`` convolved over ``n1``'s activation map. The spatial sum of a convolution is
linear, so it needs no ``N_from x N_to`` feature maps: for each kernel offset ``(i, j)`` sum the input
over the positions that offset touches (given stride, padding and dilation), giving ``S`` of shape
(N, C_in, kh, kw), and contract with the kernel: ``sum_ij W[n2, n1, i, j] * S[n, n1, i, j]``.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ..errors import LayerError
from ._hooks import (Hooks, Inputs, LayerSpec, StopForward, eval_on_device, forward_fits,
                     iter_batches, layer_name, num_instances)

__all__ = ["weight_contributions", "iter_weight_contributions", "conv_contributions", "conv_patch_sums"]


def _conv_padding(conv: nn.Conv2d) -> tuple:
    """(left, right, top, bottom) zero padding of ``conv``, for int/tuple and 'same'/'valid'."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0, 0, 0, 0)
        pads = []
        for k, d in zip(reversed(conv.kernel_size), reversed(conv.dilation)):  # width first, as F.pad
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    ph, pw = conv.padding
    return (pw, pw, ph, ph)


def _touched(k: int, size: int, out: int, stride: int, dilation: int, before: int, dtype, device) -> Tensor:
    """Indicator (k, size): 1 where kernel offset ``i`` reads input position ``p`` for some output
    position ``o`` (``o * stride + i * dilation - before == p``). Padded positions drop out."""
    o = torch.arange(out, device=device)
    i = torch.arange(k, device=device)
    pos = o.unsqueeze(0) * stride + i.unsqueeze(1) * dilation - before  # (k, out)
    mat = torch.zeros(k, size + 1, dtype=dtype, device=device)
    pos = torch.where((pos >= 0) & (pos < size), pos, size)  # out-of-range → a dump column
    # Output positions of one offset are distinct (stride >= 1), so a plain scatter of ones is exact.
    mat.scatter_(1, pos, 1.0)
    return mat[:, :size]


def conv_patch_sums(a: Tensor, conv: nn.Conv2d) -> Tensor:
    """For each input channel and kernel offset, the sum of the input over the positions the offset
    touches.

    Parameters
    ----------
    a : Tensor (N, C_in, H, W)
        The input of ``conv``.
    conv : nn.Conv2d

    Returns
    -------
    Tensor (N, C_in, kh, kw)
        ``S`` such that the spatial sum of ``conv(a)`` (without bias) over output channel ``d`` is
        ``sum_{c,i,j} W[d, c, i, j] * S[:, c, i, j]``.
    """
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    dh, dw = conv.dilation
    left, right, top, bottom = _conv_padding(conv)
    if conv.padding_mode != "zeros" and any((left, right, top, bottom)):
        # Reflect/replicate/circular padding carries values: pad explicitly, then no padding.
        a = F.pad(a, (left, right, top, bottom), mode=conv.padding_mode)
        left = right = top = bottom = 0
    n, c, h, w = a.shape
    h_out = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + left + right - dw * (kw - 1) - 1) // sw + 1
    rows = _touched(kh, h, h_out, sh, dh, top, a.dtype, a.device)      # (kh, H)
    cols = _touched(kw, w, w_out, sw, dw, left, a.dtype, a.device)     # (kw, W)
    # One GEMM: (N*C, H*W) @ (H*W, kh*kw), the second factor marking which positions each
    # offset (i, j) reads.
    touched = (rows.t()[:, None, :, None] * cols.t()[None, :, None, :]).reshape(h * w, kh * kw)
    return (a.reshape(n * c, h * w) @ touched).view(n, c, kh, kw)


def conv_contributions(a: Tensor, conv: nn.Conv2d) -> Tensor:
    """Spatial sum of each input channel's convolution with each output channel's kernel slice.

    Parameters
    ----------
    a : Tensor (N, C_in, H, W)
        The input of ``conv``.
    conv : nn.Conv2d
        ``groups == 1``.

    Returns
    -------
    Tensor (N, C_in, C_out)
        ``out[n, c, d] = sum over output positions of (W[d, c] * a[n, c])``, bias excluded; a
        (non-contiguous) view of the per-channel products.
    """
    if conv.groups != 1:
        raise LayerError(f"grouped convolution (groups={conv.groups}) is not supported")
    weight = conv.weight.detach().to(a.dtype)
    s = conv_patch_sums(a, conv)
    n, c = s.shape[:2]
    # (C, N, K) @ (C, K, D) → (C, N, D): one small matmul per input channel.
    out = torch.bmm(s.reshape(n, c, -1).transpose(0, 1),
                    weight.reshape(weight.shape[0], c, -1).permute(1, 2, 0))
    return out.transpose(0, 1)


def _linear_contributions(u: Tensor, linear: nn.Linear, channels: "int | None") -> Tensor:
    weight = linear.weight.detach().to(u.dtype)  # (D, F)
    n = u.shape[0]
    u = u.reshape(n, -1)
    if channels is None:  # linear → linear: W[n2, n1] · a[n1]
        return u.unsqueeze(2) * weight.t().unsqueeze(0)
    # conv → linear: n1's block of weights dotted with n1's flattened map.
    return torch.einsum("ncs,dcs->ncd", u.reshape(n, channels, -1),
                        weight.reshape(weight.shape[0], channels, -1))


def _layer_to_input(model, src, dst, x: Tensor, mix=None, shape=None):
    """One forward pass, stopped once ``layer_to``'s input is formed. Returns ``(y, u)``:
    ``layer_from``'s output (None when it did not run before) and ``layer_to``'s input (None when
    never reached). ``mix(output) -> output`` may rewrite ``layer_from``'s output (the probe);
    ``shape`` names the user's batch in input-shape errors."""
    (src_name, src_mod), (_, dst_mod) = src, dst
    got: dict = {}

    def on_src(module, inputs, output):
        if "y" in got:
            raise LayerError(f"layer {src_name!r} runs more than once per forward pass")
        if not isinstance(output, Tensor):
            raise LayerError(f"layer {src_name!r} returns a {type(output).__name__}, not a tensor")
        got["y"] = output
        return None if mix is None else mix(output)

    def on_dst(module, inputs):
        got["u"] = inputs[0].detach()  # nothing runs after StopForward: no copy needed
        raise StopForward

    with Hooks() as hooks, torch.no_grad():
        hooks.forward(src_mod, on_src)
        hooks.pre(dst_mod, on_dst)
        try:
            forward_fits(model, x, shape=shape)
        except StopForward:
            pass
    return got.get("y"), got.get("u")


def _close(a: Tensor, b: Tensor) -> bool:
    scale = float(torch.maximum(a.abs().max(), b.abs().max())) if a.numel() else 0.0
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5 * (scale + 1e-12)))


def _check_pair(model, src, dst, x: Tensor) -> "int | None":
    """Verify that ``layer_to``'s input is a channel-wise function of ``layer_from``'s output alone;
    return the channel count to view a flattened input by (conv → linear) or None. Raises
    LayerError naming the pair otherwise.

    One forward pass of 5 rows: the first instance ``x0``, a seeded random input ``x1``, and three
    copies of ``x1`` whose ``layer_from`` output is rewritten in the hook:
    1. ``layer_from`` must run before ``layer_to``'s input is formed, and channel counts must fit;
    2. row 2 takes ``x0``'s whole output: ``layer_to``'s input must then be ``x0``'s (no other path
       into ``layer_to``: a residual sum or a concatenation fails here);
    3. rows 3 and 4 take random channel subsets from ``x0`` and the rest from ``x1``: the same
       channels of ``layer_to``'s input, and only those, must follow (each channel depends on its
       own channel only: ReLU, pooling, BatchNorm and dropout pass; LocalResponseNorm or any
       channel-mixing op fails).
    Eval mode keeps the rows independent.
    """
    (src_name, _), (dst_name, dst_mod) = src, dst
    pair = f"{src_name!r} → {dst_name!r}"
    x0 = x[:1]
    x1 = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(x0)
    masks: list = []

    def mix(output: Tensor) -> Tensor:
        output = output.clone()
        n_ch = output.shape[1] if output.dim() > 1 else 1
        masks.clear()
        output[2] = output[0]
        for row, seed in ((3, 1), (4, 2)):
            mask = torch.rand(n_ch, generator=torch.Generator().manual_seed(seed)) < 0.5
            masks.append(mask)
            m = mask.view(n_ch, *([1] * (output.dim() - 2))).to(output.device)
            output[row] = torch.where(m, output[0], output[1])
        return output

    y, u = _layer_to_input(model, src, dst, torch.cat([x0, x1.expand(4, *x0.shape[1:])]), mix,
                           shape=x.shape)
    if u is None:
        raise LayerError(f"layer {dst_name!r} is never reached by the forward pass of {type(model).__name__}")
    if y is None:
        raise LayerError(f"layer {src_name!r} does not run before {dst_name!r} ({pair})")

    if isinstance(dst_mod, nn.Conv2d):
        if dst_mod.groups != 1:
            raise LayerError(f"{pair}: grouped convolution (groups={dst_mod.groups}) is not supported")
        if y.dim() != 4 or u.dim() != 4 or dst_mod.in_channels != y.shape[1]:
            raise LayerError(f"{pair}: {dst_name!r} takes {dst_mod.in_channels} channels but "
                             f"{src_name!r} outputs shape {tuple(y.shape[1:])}")
        channels = None
    elif isinstance(dst_mod, nn.Linear):
        if y.dim() == 4:
            channels = y.shape[1]
            if dst_mod.in_features % channels:
                raise LayerError(f"{pair}: {dst_name!r} has {dst_mod.in_features} inputs, not a "
                                 f"multiple of the {channels} channels of {src_name!r}")
        elif y.dim() == 2:
            if dst_mod.in_features != y.shape[1]:
                raise LayerError(f"{pair}: {dst_name!r} has {dst_mod.in_features} inputs but "
                                 f"{src_name!r} has {y.shape[1]} outputs")
            channels = None
        else:
            raise LayerError(f"{pair}: {src_name!r} outputs shape {tuple(y.shape[1:])}")
    else:
        raise LayerError(f"{pair}: {dst_name!r} is a {type(dst_mod).__name__}; weight contributions "
                         "need a Conv2d or Linear layer_to")

    v = u.reshape(u.shape[0], y.shape[1], -1)  # (rows, channels of layer_from, rest)
    if not _close(v[2], v[0]):
        raise LayerError(f"{pair}: the input of {dst_name!r} does not depend on {src_name!r} alone "
                         "(a residual sum or a concatenation?); skip this pair")
    for row, mask in zip((3, 4), masks):
        expected = torch.where(mask.view(-1, 1).to(v.device), v[0], v[1])
        if not _close(v[row], expected):
            raise LayerError(f"{pair}: the input of {dst_name!r} is not a channel-wise function of "
                             f"{src_name!r}'s output (channels mix on the way); skip this pair")
    return channels


def weight_contributions(model: nn.Module, layer_from: LayerSpec, layer_to: LayerSpec, inputs: Inputs,
                         *, device=None, progress: bool = False) -> Tensor:
    """How much each neuron of ``layer_from`` contributes to each neuron of ``layer_to``, per instance.

    Parameters
    ----------
    model : nn.Module
        Put in eval mode for the call (restored after).
    layer_from, layer_to : str or nn.Module
        Consecutive layers; ``layer_to`` is a Conv2d (``groups=1``) or Linear. Its actual input
        (captured by a forward pre-hook: ``layer_from``'s output after ReLU, pooling, ...) is what
        the weights act on.
    inputs : Tensor (N, C, H, W) or iterable of (x, y) batches
        Streamed batch by batch; labels are ignored.
    device : str or torch.device, optional
        Default :func:`tlexplorer.config.resolve_device`.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    Tensor (N, neurons of layer_from, neurons of layer_to)
        On the CPU, in the model's dtype:

        - conv → conv: ``sum over output positions of (W[n2, n1] * a[n1])``, the spatial sum of
          ``n1``'s map convolved with the kernel slice joining it to ``n2``;
        - conv → linear: ``W[n2, block of n1] · a[n1].flatten()``, where ``layer_to``'s input is
          viewed as (channels, h * w);
        - linear → linear: ``W[n2, n1] * a[n1]``.

        Biases are excluded: they belong to ``n2`` alone, not to any ``n1 → n2`` link.

    Raises
    ------
    LayerError
        ``layer_to``'s input is not a channel-wise function of ``layer_from``'s output alone (a
        residual sum, a concatenation, a channel-mixing op), channel counts do not fit, a grouped
        convolution, or a layer that is missing or not reached. Callers skip such pairs.
    ValueError
        Inputs that are not 4-D or do not fit the model.

    Notes
    -----
    The pair is verified once, on the first instance, by the probe of ``_check_pair``: override
    ``layer_from``'s output on a random input and check ``layer_to``'s input follows it exactly,
    then swap random subsets of channels and check the same channels, and only those, follow.
    """
    results = [part.cpu() for part in iter_weight_contributions(model, layer_from, layer_to, inputs,
                                                                device=device, progress=progress)]
    if not results:
        raise ValueError("inputs hold no instances")
    return torch.cat(results)


def iter_weight_contributions(model: nn.Module, layer_from: LayerSpec, layer_to: LayerSpec,
                              inputs: Inputs, *, device=None, progress: bool = False) -> Iterator[Tensor]:
    """:func:`weight_contributions` batch by batch: yields Tensor (B, neurons of layer_from, neurons
    of layer_to) on the compute device, so that callers can reduce each batch (e.g. the paper's
    top-k counts) where the whole (N, n1, n2) tensor would not fit: AlexNet's fc6 → fc7 is 4096 x
    4096 values per instance. The model stays in eval mode on ``device`` until the iterator is
    exhausted or closed.
    """
    src = layer_name(model, layer_from)
    dst = layer_name(model, layer_to)
    dst_mod = dst[1]
    bar = tqdm(total=num_instances(inputs), unit="img", desc="weight contributions", disable=not progress)
    try:
        with eval_on_device(model, device) as (dev, dtype):
            channels: Any = ...
            for x, _, _ in iter_batches(inputs):
                x = x.to(device=dev, dtype=dtype)
                if channels is ...:
                    channels = _check_pair(model, src, dst, x)
                _, u = _layer_to_input(model, src, dst, x)
                with torch.no_grad():
                    if isinstance(dst_mod, nn.Conv2d):
                        contrib = conv_contributions(u, dst_mod)
                    else:
                        contrib = _linear_contributions(u, dst_mod, channels)
                bar.update(x.shape[0])
                yield contrib
    finally:
        bar.close()
