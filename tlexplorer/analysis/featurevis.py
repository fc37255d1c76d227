"""Neuron feature visualization (paper §5.3.3; Olah, Mordvintsev & Schubert, "Feature Visualization",
Distill 2017), top activating instances, and the weight feature map.

:func:`visualize_neuron` / :func:`visualize_neurons` follow Lucid's recipe (``lucid.optvis``):

- **Parameterisation** (``decorrelate=True``): the image is an RGB Fourier spectrum (``torch.fft.irfft2``)
  whose coefficients are scaled by ``1 / max(f, 1/max(h, w))`` (a 1/f spectrum, ``decay_power=1``) times
  ``sqrt(h·w)`` and divided by 4 (Lucid's ``fft_image``); its colours are decorrelated with Lucid's
  ``color_correlation_svd_sqrt`` (the square root of ImageNet's colour covariance, normalised by its
  largest column norm), then squashed to [0, 1] by a sigmoid (Lucid's ``to_valid_rgb``). We use the
  ImageNet matrix for every model: it is a generic natural-image prior and only shapes the
  optimisation's metric, not which images are reachable. ``decorrelate=False`` optimises plain pixels
  (before the sigmoid) instead.
- **Objective**: a conv layer's neuron is a channel, and its objective is the mean of the channel's map
  (Lucid's ``channel`` objective); a linear layer's neuron is one unit. The value is taken at the
  module's output (for ``Conv2d``/``Linear``: before the ReLU, so the gradient never dies).
- **Transformation robustness** (``transforms=True``), each step and each image: pad with grey (0.5),
  jitter, random scale (0.9 … 1.1), random rotation (−10° … 10°, with extra weight on 0°) and jitter
  again (Lucid's ``standard_transforms``), then the model sees the central S×S window. Lucid's pixel
  sizes are for 224-pixel inputs and are scaled by ``S / 224`` (at least one pixel): for 32×32 inputs
  that is a pad of 2 and jitters of ±1 pixel. Jitter, scale and rotation are one ``F.affine_grid`` /
  ``F.grid_sample`` per step.
- Adam (learning rate 0.05, as Lucid).

Each neuron's image depends only on ``(seed, neuron)``: its initial spectrum and its random transforms
come from a generator seeded with both, so a neuron gets the same image alone or in a batch (up to
float rounding) and on every run on the CPU.

The model is used in eval mode; its parameters are not modified (``requires_grad`` is switched off while
optimising and restored), its train/eval flags are restored, and the hooks are removed on return or
error. The forward pass stops at the visualised layer, so early layers are cheap.
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import resolve_device
from ..errors import LayerError

__all__ = ["visualize_neuron", "visualize_neurons", "top_activating", "weight_feature_map",
           "COLOR_CORRELATION_SVD_SQRT"]

#: Lucid's square root of ImageNet's RGB colour covariance (``lucid.optvis.param.color``).
COLOR_CORRELATION_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02],
                                         [0.27, 0.00, -0.05],
                                         [0.27, -0.09, 0.03]], dtype=np.float32)
_COLOR = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))

# Lucid's standard_transforms for 224-pixel images: pad(12), jitter(8), scale, rotate, jitter(4).
_LUCID_SIZE = 224
_SCALES = tuple(1 + (i - 5) / 50.0 for i in range(11))
_ANGLES = tuple(range(-10, 11)) + (0,) * 5


class _StopForward(Exception):
    """Raised by a capture hook so that the forward pass stops at the layer it needs."""


# ---------------------------------------------------------------------------------------------
# model handling
# ---------------------------------------------------------------------------------------------

def _module(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if not isinstance(layer, str) or layer == "" or layer not in modules:
        names = ", ".join(n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Linear)))
        raise LayerError(f"layer {layer!r} is not in {type(model).__name__}; available: {names}")
    return modules[layer]


def _neuron_count(module: nn.Module) -> "int | None":
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    if isinstance(module, nn.Linear):
        return module.out_features
    return None


def _check_neurons(module: nn.Module, layer: str, neurons: Sequence[int]) -> None:
    count = _neuron_count(module)
    for n in neurons:
        if n < 0 or (count is not None and n >= count):
            raise LayerError(f"neuron {n} is out of range for layer {layer!r} "
                             f"({count if count is not None else 'unknown'} neurons)")


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def _frozen_eval(model: nn.Module):
    """Eval mode without parameter gradients; train flags and ``requires_grad`` restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in grads:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in grads:
            p.requires_grad_(flag)
        for m, flag in modes:
            m.train(flag)


@contextlib.contextmanager
def _capture(module: nn.Module, *, inputs: bool = False):
    """Capture a module's first output (or first positional input) and stop the forward pass there."""
    store: dict = {}

    if inputs:
        def hook(mod, args):
            store["value"] = args[0]
            raise _StopForward
        handle = module.register_forward_pre_hook(hook)
    else:
        def hook(mod, args, output):
            store["value"] = output
            raise _StopForward
        handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def _run_to(model: nn.Module, x: torch.Tensor, store: dict, layer: str) -> torch.Tensor:
    try:
        model(x)
    except _StopForward:
        pass
    if "value" not in store:
        raise LayerError(f"the forward pass of {type(model).__name__} never reaches layer {layer!r}")
    value = store.pop("value")
    if not isinstance(value, torch.Tensor):
        raise LayerError(f"layer {layer!r} returns a {type(value).__name__}, not a tensor")
    return value


def _select(output: torch.Tensor, module: nn.Module, neurons: torch.Tensor) -> torch.Tensor:
    """Objective per image: image b's neuron ``neurons[b]`` (a channel's mean map or a unit)."""
    b = torch.arange(output.shape[0], device=output.device)
    if isinstance(module, nn.Linear) or output.ndim == 2:
        # a unit; any extra (token) dimensions are averaged
        flat = output.reshape(output.shape[0], -1, output.shape[-1])
        return flat[b, :, neurons].mean(dim=1)
    # a channel: dimension 1, averaged over the rest (Lucid's "channel" objective)
    return output[b, neurons].reshape(output.shape[0], -1).mean(dim=1)


# ---------------------------------------------------------------------------------------------
# parameterisation and transforms
# ---------------------------------------------------------------------------------------------

def _generator(seed: int, neuron: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(neuron)]).generate_state(2)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(state[0]) << 32 | int(state[1]))
    return gen


def _spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> torch.Tensor:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power
    return torch.as_tensor(scale * np.sqrt(w * h), dtype=torch.float32)


class _Images:
    """A batch of parameterised images: ``params`` are optimised, ``rgb()`` gives (B, 3, S, S) in [0, 1]."""

    def __init__(self, gens: "list[torch.Generator]", size: int, decorrelate: bool,
                 device: torch.device, sd: float = 0.01):
        self.size, self.decorrelate = size, decorrelate
        if decorrelate:
            shape = (3, size, size // 2 + 1, 2)  # real and imaginary parts
            self.scale = _spectrum_scale(size, size).to(device)[None, None]
            self.color = torch.as_tensor(_COLOR, device=device)
        else:
            shape = (3, size, size)
        init = torch.stack([torch.randn(shape, generator=g) * sd for g in gens])
        self.params = init.to(device).requires_grad_(True)

    def rgb(self) -> torch.Tensor:
        if not self.decorrelate:
            return torch.sigmoid(self.params)
        spectrum = torch.view_as_complex(self.params) * self.scale
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size)) / 4.0
        image = torch.einsum("ij,bjhw->bihw", self.color, image)
        return torch.sigmoid(image)


class _Transforms:
    """Lucid's standard transforms, drawn up front for every step and image from each image's generator."""

    def __init__(self, gens: "list[torch.Generator]", steps: int, size: int, device: torch.device):
        ratio = size / _LUCID_SIZE
        self.pad = max(1, round(12 * ratio))
        j1, j2 = max(1, round(8 * ratio)), max(1, round(4 * ratio))
        self.size, self.device = size, device
        scales = torch.tensor(_SCALES)
        angles = torch.tensor(_ANGLES, dtype=torch.float32) * (math.pi / 180.0)
        draws = []
        for g in gens:
            t1 = torch.randint(-j1, j1 + 1, (steps, 2), generator=g).float()
            s = scales[torch.randint(len(scales), (steps,), generator=g)]
            a = angles[torch.randint(len(angles), (steps,), generator=g)]
            t2 = torch.randint(-j2, j2 + 1, (steps, 2), generator=g).float()
            draws.append(torch.cat([t1, s[:, None], a[:, None], t2], dim=1))
        self.draws = torch.stack(draws, dim=1).to(device)  # (steps, B, 6)
        ys, xs = torch.meshgrid(torch.arange(size) + 0.5 - size / 2, torch.arange(size) + 0.5 - size / 2,
                                indexing="ij")
        self.base = torch.stack([xs, ys], dim=-1).to(device)  # (S, S, 2) pixel offsets from the centre

    def __call__(self, x: torch.Tensor, step: int) -> torch.Tensor:
        p, size = self.pad, self.size
        x = F.pad(x, (p, p, p, p), value=0.5)
        d = self.draws[step]
        t1, s, a, t2 = d[:, 0:2], d[:, 2], d[:, 3], d[:, 4:6]
        cos, sin = torch.cos(a), torch.sin(a)
        # output pixel u -> source pixel: undo jitter 2, rotation and scale, then jitter 1
        u = self.base[None] - t2[:, None, None, :]
        ux, uy = u[..., 0], u[..., 1]
        c, sn, sc = cos[:, None, None], sin[:, None, None], s[:, None, None]
        vx = (c * ux + sn * uy) / sc - t1[:, None, None, 0]
        vy = (-sn * ux + c * uy) / sc - t1[:, None, None, 1]
        half = (size + 2 * p) / 2.0
        grid = torch.stack([vx, vy], dim=-1) / half
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _normaliser(mean, std, device) -> "Callable[[torch.Tensor], torch.Tensor]":
    m = torch.as_tensor(np.asarray(mean, dtype=np.float32).reshape(-1), device=device).view(1, -1, 1, 1)
    s = torch.as_tensor(np.asarray(std, dtype=np.float32).reshape(-1), device=device).view(1, -1, 1, 1)
    if m.numel() not in (1, 3) or s.numel() not in (1, 3):
        raise ValueError(f"mean and std need 1 or 3 values, got {m.numel()} and {s.numel()}")
    if not torch.all(s > 0):
        raise ValueError(f"std must be positive, got {std}")
    return lambda x: (x - m) / s


def _to_uint8(rgb: torch.Tensor) -> np.ndarray:
    return (rgb.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------

def visualize_neurons(model: nn.Module, layer: str, neurons: Sequence[int], *, image_size: int,
                      mean: Sequence[float], std: Sequence[float], steps: int = 256, lr: float = 0.05,
                      seed: int = 0, device=None, decorrelate: bool = True, transforms: bool = True,
                      batch_size: int = 64,
                      callback: "Optional[Callable[[int, int], object]]" = None,
                      on_step: "Optional[Callable[[int], object]]" = None) -> np.ndarray:
    """Feature visualizations of several neurons of one layer, optimised together (one image each).

    Parameters
    ----------
    model : nn.Module
        Not modified; used in eval mode.
    layer : str
        Module name (``model.named_modules()``), e.g. ``'features.conv3'``.
    neurons : sequence of int
        Channels (conv) or units (linear) to visualise; repeats are allowed.
    image_size : int
        Side S of the model's square input.
    mean, std : sequence of 3 floats
        The model's input normalisation.
    steps : int
        Adam steps (256 by default; 128 already gives a clear picture on 32×32 models).
    lr : float
        Adam learning rate.
    seed : int
        With the neuron index, seeds that neuron's initial image and its random transforms.
    device : str or torch.device, optional
        Where to optimise (``'auto'``, ``'cpu'``, ``'cuda'``, ... as :func:`tlexplorer.config.resolve_device`).
        Default: the model's device. Another device works on a copy of the model.
    decorrelate : bool
        Fourier + colour-decorrelated parameterisation (Lucid's default) instead of plain pixels.
    transforms : bool
        Lucid's jitter/scale/rotate robustness transforms at every step.
    batch_size : int
        Neurons optimised at once (memory bound for large models).
    callback : callable, optional
        ``callback(done, total)`` after each batch (progress); an exception it raises aborts.
    on_step : callable, optional
        ``on_step(k)`` after every optimisation step of a batch of ``k`` neurons: progress within a
        batch (``steps`` calls per batch).

    Returns
    -------
    ndarray, shape (len(neurons), S, S, 3), uint8

    Raises
    ------
    LayerError
        Unknown layer, neuron out of range, or a layer the forward pass does not reach.
    """
    neurons = [int(n) for n in neurons]
    module = _module(model, layer)
    _check_neurons(module, layer, neurons)
    size = int(image_size)
    if size < 1 or steps < 0 or batch_size < 1:
        raise ValueError(f"need image_size >= 1, steps >= 0 and batch_size >= 1, got "
                         f"{image_size}, {steps}, {batch_size}")
    out = np.zeros((len(neurons), size, size, 3), dtype=np.uint8)
    if not neurons:
        return out
    dev = _model_device(model) if device is None else resolve_device(device)
    if dev != _model_device(model):
        model = copy.deepcopy(model).to(dev)
        module = _module(model, layer)
    normalise = _normaliser(mean, std, dev)

    with _frozen_eval(model), _capture(module) as store, torch.enable_grad():
        for start in range(0, len(neurons), batch_size):
            chunk = neurons[start:start + batch_size]
            gens = [_generator(seed, n) for n in chunk]
            images = _Images(gens, size, decorrelate, dev)
            jitter = _Transforms(gens, steps, size, dev) if transforms else None
            target = torch.as_tensor(chunk, device=dev)
            optimizer = torch.optim.Adam([images.params], lr=lr)
            for step in range(steps):
                optimizer.zero_grad(set_to_none=True)
                x = images.rgb()
                if jitter is not None:
                    x = jitter(x, step)
                act = _select(_run_to(model, normalise(x), store, layer), module, target)
                (-act.sum()).backward()
                optimizer.step()
                if on_step is not None:
                    on_step(len(chunk))
            with torch.no_grad():
                out[start:start + len(chunk)] = _to_uint8(images.rgb())
            if callback is not None:
                callback(start + len(chunk), len(neurons))
    return out


def visualize_neuron(model: nn.Module, layer: str, neuron: int, *, image_size: int,
                     mean: Sequence[float], std: Sequence[float], steps: int = 256, lr: float = 0.05,
                     seed: int = 0, device=None, decorrelate: bool = True,
                     transforms: bool = True) -> np.ndarray:
    """Feature visualization of one neuron by activation maximisation (Lucid's recipe).

    See :func:`visualize_neurons` for the parameters and the module docstring for the method.

    Returns
    -------
    ndarray, shape (S, S, 3), uint8
    """
    return visualize_neurons(model, layer, [neuron], image_size=image_size, mean=mean, std=std,
                             steps=steps, lr=lr, seed=seed, device=device, decorrelate=decorrelate,
                             transforms=transforms)[0]


def top_activating(activations, k: int = 9, *, rows=None) -> np.ndarray:
    """Instances with the largest activation per neuron, largest first.

    Parameters
    ----------
    activations : array_like, shape (instances, neurons)
        E.g. ``arrays/activations/{combo}/{layer}.npy`` (max over space per instance and neuron).
    k : int
        How many per neuron (at most the number of instances).
    rows : array_like of int, shape (instances,), optional
        Instance row of each activation row (e.g. ``rows_target``); returned instead of positions.

    Returns
    -------
    ndarray, shape (neurons, min(k, instances)), int64
        Ties are broken by the lower position; NaN counts as the smallest value.
    """
    a = np.asarray(activations, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"activations must be 2-D (instances, neurons), got shape {a.shape}")
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    n, m = a.shape
    k = min(int(k), n)
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.shape != (n,):
            raise ValueError(f"rows must have one entry per activation row ({n}), got {rows.shape}")
    if k == 0 or m == 0:
        return np.zeros((m, k), dtype=np.int64)
    neg = -np.nan_to_num(a, nan=-np.inf)  # ascending order of neg = descending activation
    if k < n:
        cand = np.argpartition(neg, k - 1, axis=0)[:k]  # (k, neurons), unordered
    else:
        cand = np.broadcast_to(np.arange(n)[:, None], (n, m))
    vals = np.take_along_axis(neg, cand, axis=0)
    order = np.lexsort((cand, vals), axis=0)  # by value, then position
    top = np.take_along_axis(cand, order, axis=0).T.astype(np.int64)
    return rows[top] if rows is not None else np.ascontiguousarray(top)


def _block_shape(block: int, ref_shape: "tuple[int, ...] | None") -> "tuple[int, int]":
    """Spatial shape of one channel's flattened block entering a linear layer."""
    if ref_shape is not None and len(ref_shape) == 2:
        h, w = ref_shape
        # keep the aspect ratio of the channel's map at layer_from (pooling shrinks both sides alike)
        for hh in range(1, block + 1):
            if block % hh == 0 and hh * w == (block // hh) * h:
                return hh, block // hh
    r = math.isqrt(block)
    return (r, r) if r * r == block else (1, block)


def weight_feature_map(model: nn.Module, layer_from: str, layer_to: str, n1: int, n2: int,
                       x: torch.Tensor) -> np.ndarray:
    """The weight feature map of the weight joining neuron ``n1`` of ``layer_from`` to ``n2`` of
    ``layer_to`` for one instance (shown when a weight square is clicked, paper §5.3.3).

    - conv → conv: ``W[n2, n1]`` convolved (with ``layer_to``'s stride, padding and dilation, no bias)
      over channel ``n1`` of the input of ``layer_to`` — ``n1``'s activation map after its ReLU and
      pooling: n1's contribution to n2's pre-activation map.
    - conv → linear: ``W[n2, block] * input[block]`` over ``n1``'s flattened block of the linear layer's
      input, reshaped to the block's spatial shape (square, or the aspect of ``n1``'s map).
    - linear → linear: the 1×1 map ``W[n2, n1] * input[n1]``.

    Parameters
    ----------
    model : nn.Module
    layer_from, layer_to : str
        Consecutive analysed layers (``Conv2d`` or ``Linear``).
    n1, n2 : int
        Neuron of ``layer_from`` and of ``layer_to``.
    x : Tensor, shape (1, C, H, W)
        One normalised instance.

    Returns
    -------
    ndarray, shape (h, w), float32
        Zeros when a grouped convolution does not connect ``n1`` to ``n2``.
    """
    src, dst = _module(model, layer_from), _module(model, layer_to)
    if not isinstance(dst, (nn.Conv2d, nn.Linear)):
        raise LayerError(f"layer {layer_to!r} is a {type(dst).__name__}; weight feature maps need a "
                         "Conv2d or Linear layer")
    n_from = _neuron_count(src)
    if n_from is None:
        raise LayerError(f"layer {layer_from!r} is a {type(src).__name__}; only Conv2d and Linear "
                         "layers have neurons")
    _check_neurons(src, layer_from, [n1])
    _check_neurons(dst, layer_to, [n2])
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one instance of shape (1, C, H, W), got {tuple(x.shape)}")
    dev = _model_device(model)
    x = x.to(dev, torch.float32)

    from_shape = None
    with _frozen_eval(model), torch.no_grad():
        if isinstance(dst, nn.Linear) and isinstance(src, nn.Conv2d):
            with _capture(src) as store:
                from_shape = tuple(_run_to(model, x, store, layer_from).shape[2:])
        with _capture(dst, inputs=True) as store:
            inp = _run_to(model, x, store, layer_to)
        weight = dst.weight.detach()

        if isinstance(dst, nn.Conv2d):
            if inp.ndim != 4:
                raise LayerError(f"layer {layer_to!r} receives a {inp.ndim}-D input, expected 4-D")
            per_group_in = dst.in_channels // dst.groups
            per_group_out = dst.out_channels // dst.groups
            if dst.in_channels != n_from:
                raise LayerError(f"layer {layer_to!r} takes {dst.in_channels} channels but "
                                 f"{layer_from!r} has {n_from} neurons: not consecutive")
            channel = inp[:, n1:n1 + 1]
            kernel = weight[n2:n2 + 1, n1 % per_group_in:n1 % per_group_in + 1]
            if dst.padding_mode != "zeros":
                channel = F.pad(channel, dst._reversed_padding_repeated_twice, mode=dst.padding_mode)
                padding = 0
            else:
                padding = dst.padding
            fmap = F.conv2d(channel, kernel, None, dst.stride, padding, dst.dilation)[0, 0]
            if n1 // per_group_in != n2 // per_group_out:
                fmap = torch.zeros_like(fmap)
            return fmap.cpu().numpy().astype(np.float32)

        flat = inp.reshape(-1)
        if flat.numel() != dst.in_features:
            raise LayerError(f"layer {layer_to!r} receives {flat.numel()} features, "
                             f"expected {dst.in_features}")
        if dst.in_features % n_from:
            raise LayerError(f"layer {layer_to!r}'s {dst.in_features} inputs do not split into "
                             f"{n_from} blocks, one per neuron of {layer_from!r}")
        block = dst.in_features // n_from
        sl = slice(n1 * block, (n1 + 1) * block)
        contrib = (weight[n2, sl] * flat[sl]).cpu().numpy().astype(np.float32)
        return contrib.reshape(_block_shape(block, from_shape))
