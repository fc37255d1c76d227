"""Layer Conductance of many layers from one integrated-gradients path (paper §5.3.1, §5.4.1).

``captum.attr.LayerConductance`` computes one layer per call, so the conductance of the 7 hidden
layers of an AlexNet costs 7 forward and backward passes over the same ``n_steps + 1`` scaled inputs.
All layers can share them: hook every listed layer's output, take the gradient of the target output
with respect to all hooked outputs in one backward pass, and combine as captum does,

.. math:: \\mathrm{cond}(y) = \\sum_{k=0}^{n-1} \\bigl(y(\\alpha_{k+1}) - y(\\alpha_k)\\bigr)
          \\, \\frac{\\partial F}{\\partial y}(\\alpha_k),

with ``alpha_0 < ... < alpha_n`` the ``n_steps + 1`` points captum's ``method`` gives. The result
equals captum's per layer up to float rounding (tests check it).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .._progress import fraction_bar_format
from ..errors import LayerError
from .memory import pass_budget, points_per_pass
from ._hooks import (Hooks, Inputs, LayerSpec, batch_baseline, batch_targets, check_rows,
                     check_targets, eval_on_device, forward_fits, iter_batches, num_instances,
                     resolve_layers)

__all__ = ["layer_conductance", "CompletenessReport", "ConvergenceWarning", "SUPPORTED_METHODS",
           "DEFAULT_COMPLETENESS_TOL"]

#: Integration methods, as captum names them.
SUPPORTED_METHODS = ("riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle",
                     "gausslegendre")
#: Relative completeness gap above which :class:`ConvergenceWarning` is raised (see
#: :meth:`CompletenessReport.relative_gap`): the integrated-gradients paper (Sundararajan et al.
#: 2017, §6) takes "within 5%" of F(x) - F(baseline) as a good enough approximation of the integral.
DEFAULT_COMPLETENESS_TOL = 0.05
REDUCTIONS = ("max", "sum", "mean", None)


class ConvergenceWarning(UserWarning):
    """The conductance of a layer does not add up to ``F(x) - F(baseline)``: raise ``n_steps``."""


@dataclass(frozen=True)
class CompletenessReport:
    """How far each layer's total conductance is from ``F(x) - F(baseline)``.

    For a layer that every path from input to output crosses (a *cut*: any layer of a plain
    feed-forward CNN), the conductance summed over all its neurons (full maps, before the
    max-reduction) approaches ``F(x) - F(baseline)`` as ``n_steps`` grows; the gap measures the
    integration error. Layers inside a residual block are bypassed by the skip connection, so their
    sum is not expected to match (``cut[layer]`` is False) and they never trigger the warning.

    Attributes
    ----------
    sums : dict of str to Tensor (N,)
        Per layer and instance: the conductance summed over the layer's whole output.
    delta : Tensor (N,)
        ``F(x) - F(baseline)`` of the target output, per instance.
    cut : dict of str to bool
        Whether the layer was found to be a cut (see :func:`layer_conductance`, Notes).
    tolerance : float or None
        The threshold on :meth:`relative_gap` used for the warning.
    """

    sums: dict
    delta: Tensor
    cut: dict
    tolerance: "float | None" = DEFAULT_COMPLETENESS_TOL
    layers: tuple = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.sums))

    def gap(self, layer: str) -> Tensor:
        """``sums[layer] - delta``, per instance (N,)."""
        return self.sums[layer] - self.delta

    def relative_gap(self, layer: str) -> float:
        """``sum_i |sums_i - delta_i| / sum_i |delta_i|`` over the instances.

        Pooled over instances so that an instance whose output barely moves from the baseline
        (``delta_i`` near 0) does not make the ratio meaningless.
        """
        num = float(self.gap(layer).abs().sum())
        den = float(self.delta.abs().sum())
        if den == 0.0:
            return 0.0 if num == 0.0 else math.inf
        return num / den

    @property
    def relative_gaps(self) -> dict:
        """``{layer: relative_gap(layer)}``."""
        return {layer: self.relative_gap(layer) for layer in self.layers}

    def failing(self, tolerance: "float | None" = None) -> list:
        """Cut layers whose relative gap exceeds ``tolerance`` (default: ``self.tolerance``)."""
        tol = self.tolerance if tolerance is None else tolerance
        if tol is None:
            return []
        return [layer for layer in self.layers if self.cut[layer] and self.relative_gap(layer) > tol]

    @property
    def converged(self) -> bool:
        """No cut layer beyond the tolerance."""
        return not self.failing()

    def __str__(self) -> str:
        rows = [f"{'layer':<24} {'cut':>5} {'relative gap':>13}"]
        for layer in self.layers:
            rows.append(f"{layer:<24} {str(self.cut[layer]):>5} {self.relative_gap(layer):>13.2e}")
        return "\n".join(rows)


def path_alphas(method: str, n_steps: int) -> list:
    """The ``n_steps + 1`` path points (scaling factors in [0, 1], ascending) captum's
    LayerConductance evaluates for ``method``. Conductance uses no step weights: it differences
    consecutive layer outputs, so the method only moves the points (Gauss-Legendre nodes exclude 0
    and 1)."""
    if method not in SUPPORTED_METHODS:
        raise ValueError(f"unknown integration method {method!r}: choose one of "
                         f"{', '.join(SUPPORTED_METHODS)}")
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    from captum.attr._utils.approximation_methods import approximation_parameters

    # captum's own builders, so the points are bit-identical to LayerConductance's.
    _, alphas = approximation_parameters(method)
    return list(alphas(n_steps + 1))


class _Accumulator:
    """One layer's conductance, summed chunk by chunk: ``sum_k (y[k+1] - y[k]) * g[k]``.

    ``forward`` takes the layer's output on a chunk of ``steps x group`` path points (step major)
    and keeps what the sum needs of it: the step differences, plus the first and last steps to join
    consecutive chunks (no path point is evaluated twice). ``backward`` takes the gradient and adds
    the chunk's share. Tensors are handled in their memory layout (channels-last maps as
    (P, H, W, C)), so the sum over steps runs over contiguous blocks.
    """

    def __init__(self):
        self.total = None
        self.carry = None  # (y, g) of the previous chunk's last step
        self.perm = None
        self.pending = None

    def forward(self, out: Tensor, steps: int, group: int, more: bool) -> None:
        if self.perm is None:
            self.perm = _memory_order(out)
        y = out.detach().permute(self.perm)
        y = y.reshape(steps, group, *y.shape[1:])
        self.pending = {
            "diff": torch.sub(y[1:], y[:-1]) if steps > 1 else None,
            "first": y[0].clone() if self.carry is not None else None,
            "last": y[-1].clone() if more else None,
            "steps": steps, "group": group, "more": more,
            "like": (y.shape[1:], y.dtype, y.device),
        }

    def backward(self, grad: "Tensor | None") -> None:
        p, self.pending = self.pending, None
        shape, dtype, device = p["like"]
        if grad is None:  # the target output does not depend on this layer
            g = torch.zeros((p["steps"], *shape), dtype=dtype, device=device)
        else:
            g = grad.permute(self.perm)
            g = g.reshape(p["steps"], p["group"], *g.shape[1:])
        part = p["diff"].mul_(g[:-1]).sum(0) if p["diff"] is not None else None
        if self.carry is not None:  # the step that joins this chunk to the previous one
            prev_y, prev_g = self.carry
            joint = (p["first"] - prev_y) * prev_g
            part = joint if part is None else part + joint
        self.carry = (p["last"], g[-1].clone()) if p["more"] else None
        if part is not None:
            self.total = part if self.total is None else self.total + part

    def result(self) -> Tensor:
        return self.total.permute(_inverse(self.perm))


def _depends_on(out: Tensor, first: Tensor) -> bool:
    """Whether ``first`` is an ancestor of ``out`` in the autograd graph."""
    target = first.grad_fn
    stack = [out.grad_fn]
    seen = set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        if node is target or getattr(node, "variable", None) is first:  # a leaf has no grad_fn
            return True
        seen.add(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return False


class _PathRecorder:
    """Forward hooks of the attribution pass: each layer's output and gradient reach its
    :class:`_Accumulator`, from one forward and one backward pass for all layers.

    The first layer the forward pass reaches (and any layer not downstream of it) is *captured*:
    its output is kept and the rest of the network gets a clone, so that an in-place op after it
    (``ReLU(inplace=True)``) cannot overwrite the kept values, and the backward pass stops at it,
    returning its gradient (captum's trick). Every other layer is *streamed*: the hook takes the
    step differences of its output at once and registers a tensor hook that receives the gradient
    when the backward pass produces it (for the value before any in-place op) and frees it - no
    clone, and no gradient held to the end of the pass.
    """

    def __init__(self, model_name: str, accs: dict):
        self.model_name = model_name
        self.accs = accs
        self.active = True
        self.streamed: dict = {}  # name -> bool, decided on the first pass
        self.start_pass(1, 1, False)

    def start_pass(self, steps: int, group: int, more: bool, path=None) -> None:
        """``path``: ``(points, ends, alphas)`` of this pass - the path points fed to the model,
        the ``2G`` endpoints ``[baselines, inputs]`` and the chunk's ``steps`` scaling factors."""
        self.steps, self.group, self.more = steps, group, more
        self.path = path
        self.captured: dict = {}  # name -> kept output, forward order
        self.pending: set = set()  # streamed layers still waiting for their gradient
        self.seen: set = set()
        self.on_ends: set = set()  # affine layers run on the endpoints only in this pass

    def pre_hook(self, name: str):
        """An affine layer applied to the path points themselves (the first convolution of most
        CNNs) is affine in alpha: run it on the 2G endpoints only, and let :meth:`hook` spread
        its output over the path (saves n_steps - 1 of its n_steps + 1 evaluations)."""
        def fn(module, inputs):
            if (not self.active or self.path is None or self.steps <= 2 or len(inputs) != 1
                    or type(module) not in AFFINE_MODULES or inputs[0] is not self.path[0]):
                return None
            self.on_ends.add(name)
            return (self.path[1],)
        return fn

    def _spread(self, ends: Tensor) -> Tensor:
        """``y(alpha) = y(b) + alpha (y(x) - y(b))`` for the pass's alphas, in ``ends``' memory
        layout, from the layer's output on ``[baselines, inputs]``."""
        perm = _memory_order(ends)
        e = ends.detach().permute(perm)
        y_b, y_x = e[:self.group], e[self.group:]
        alphas = self.path[2].view(-1, *([1] * e.dim()))
        y = torch.addcmul(y_b.unsqueeze(0), alphas, (y_x - y_b).unsqueeze(0))
        return y.reshape(self.steps * self.group, *e.shape[1:]).permute(_inverse(perm))

    def hook(self, name: str):
        def fn(module, inputs, output):
            if not self.active:
                return None
            if not isinstance(output, Tensor):
                raise LayerError(f"layer {name!r} returns a {type(output).__name__}, not a tensor")
            if name in self.seen:
                raise LayerError(f"layer {name!r} runs more than once per forward pass of "
                                 f"{self.model_name}; its conductance is ambiguous")
            self.seen.add(name)
            if name in self.on_ends:  # a leaf on the path: captured below, the backward stops here
                output = self._spread(output)
            if name not in self.streamed:
                first = next(iter(self.captured.values()), None)
                self.streamed[name] = (first is not None and output.grad_fn is not None
                                       and _depends_on(output, first))
            if self.streamed[name]:
                self.accs[name].forward(output, self.steps, self.group, self.more)
                self.pending.add(name)

                def consume(grad):
                    self.pending.discard(name)
                    self.accs[name].backward(grad)
                output.register_hook(consume)
                return None
            if not output.requires_grad:  # frozen parameters: make it a leaf we can differentiate
                output.requires_grad_()
            self.captured[name] = output
            return output.clone()
        return fn


#: Modules whose output is an affine function of their input (exact types: a subclass may
#: override ``forward``).
AFFINE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _probe(model: nn.Module, named, x: Tensor, t0: int, check_cut: bool = True):
    """One small forward pass that fails early with one-line errors (input shape, unreached layers,
    target range) and finds which layers are cuts. Returns ``(num_classes, {name: is_cut},
    bytes of all hooked outputs per path point)``.

    A layer is a cut when a random input whose layer output is replaced by that of the first
    instance gives the first instance's target output: nothing bypasses the layer. All layers are
    tested in the same pass - row ``l`` of the batch carries the random input with layer ``l``
    overridden, the last row the instance itself (eval mode: rows do not interact).
    """
    model_name = type(model).__name__
    n_layers = len(named) if check_cut else 0  # without the cut test: one row, the instance
    x0 = x[:1]
    gen = torch.Generator().manual_seed(0)
    x_rand = torch.randn(x0.shape, generator=gen, dtype=torch.float64).to(x0)
    batch = torch.cat([x_rand.expand(n_layers, *x0.shape[1:]), x0])
    seen: dict = {}

    def override(name, row):
        def fn(module, inputs, output):
            if not isinstance(output, Tensor):
                raise LayerError(f"layer {name!r} returns a {type(output).__name__}, not a tensor")
            if name in seen:
                raise LayerError(f"layer {name!r} runs more than once per forward pass of "
                                 f"{model_name}; its conductance is ambiguous")
            seen[name] = output[0].numel() * output.element_size()
            if not check_cut:
                return None
            output = output.clone()
            output[row] = output[n_layers]
            return output
        return fn

    with Hooks() as hooks, torch.no_grad():
        for row, (name, module) in enumerate(named):
            hooks.forward(module, override(name, row))
        logits = forward_fits(model, batch, shape=x.shape)
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"{model_name} must return logits (N, classes), got {shape}")
    for name, _ in named:
        if name not in seen:
            raise LayerError(f"layer {name!r} is never reached by the forward pass of {model_name}")
    num_classes = logits.shape[1]
    check_targets(torch.tensor([t0]), num_classes)
    bytes_per_point = sum(seen.values())
    if not check_cut:
        return num_classes, {name: None for name, _ in named}, bytes_per_point
    f0 = logits[n_layers, t0]
    f = logits[:n_layers, t0]
    close = torch.isclose(f, f0.expand_as(f), rtol=1e-4, atol=1e-5 * (1.0 + float(f0.abs())))
    return num_classes, {name: bool(c) for (name, _), c in zip(named, close)}, bytes_per_point


def _memory_order(t: Tensor) -> tuple:
    """The permutation of ``t``'s dims under which it is contiguous, batch first (identity for
    contiguous tensors; channels-last (N, C, H, W) gives (0, 2, 3, 1))."""
    identity = tuple(range(t.dim()))
    if t.is_contiguous():
        return identity
    perm = tuple(sorted(identity, key=lambda d: (-t.stride(d), d)))
    if perm[0] != 0 or not t.permute(perm).is_contiguous():
        return identity
    return perm


def _inverse(perm: tuple) -> tuple:
    """The permutation that undoes ``tensor.permute(perm)``."""
    return tuple(sorted(range(len(perm)), key=perm.__getitem__))


def _conductance_group(model, names, rec: _PathRecorder, x, b, t, alphas: Tensor, steps_per_chunk,
                       endpoints_on_path: bool, memory_format=torch.contiguous_format, on_pass=None):
    """Fill the accumulators of ``rec`` with the conductance of G instances; return ``F(x) - F(b)``
    (G,).

    The ``n_steps + 1`` points of each instance are processed ``steps_per_chunk`` at a time, step
    major (as captum orders them); one forward and one backward pass per chunk serve every layer.
    ``on_pass(instances)`` is called after each pass with the share of the G paths it covered.
    """
    n_points = alphas.numel()
    g_count = x.shape[0]
    diff = x - b
    ends = torch.cat([b, x]).contiguous(memory_format=memory_format)  # for affine first layers
    f_start = f_end = None
    for s0 in range(0, n_points, steps_per_chunk):
        s1 = min(s0 + steps_per_chunk, n_points)
        steps = s1 - s0
        a = alphas[s0:s1].view(steps, *([1] * x.dim()))
        points = (b.unsqueeze(0) + a * diff.unsqueeze(0)).reshape(steps * g_count, *x.shape[1:])
        points = points.contiguous(memory_format=memory_format)
        rec.start_pass(steps, g_count, s1 < n_points, path=(points, ends, alphas[s0:s1]))
        with torch.enable_grad():
            logits = model(points)
            selected = logits.gather(1, t.repeat(steps).unsqueeze(1)).squeeze(1)
            captured = list(rec.captured)
            # Down to the first layer only; streamed layers get their gradients on the way.
            grads = torch.autograd.grad(selected.sum(), [rec.captured[name] for name in captured],
                                        allow_unused=True)
        for name, grad in zip(captured, grads):
            rec.accs[name].forward(rec.captured[name], steps, g_count, s1 < n_points)
            rec.accs[name].backward(grad)
        for name in list(rec.pending):  # the target output does not depend on these layers
            rec.accs[name].backward(None)
        selected = selected.detach().view(steps, g_count)
        if s0 == 0:
            f_start = selected[0]
        if s1 == n_points:
            f_end = selected[-1]
        del grads, logits, selected
        rec.start_pass(1, 1, False)  # drop references to this chunk's tensors
        if on_pass is not None:
            on_pass(g_count * steps / n_points)
    if endpoints_on_path:
        return f_end - f_start
    # Gauss-Legendre / Riemann left, right, middle: the path misses x or the baseline.
    rec.active = False
    try:
        with torch.no_grad():
            ends = model(torch.cat([x, b])).gather(1, t.repeat(2).unsqueeze(1)).squeeze(1)
    finally:
        rec.active = True
    return ends[:g_count] - ends[g_count:]


def _auto_chunk(bytes_per_point: int, n_points: int, device: torch.device,
                max_bytes: "int | None" = None) -> int:
    """Path points per pass for ``internal_batch_size=None``, from the memory free on the device
    (:mod:`tlexplorer.analysis.memory`), never above ``max_bytes`` of hooked outputs."""
    target, limit = pass_budget(device, max_bytes)
    return points_per_pass(bytes_per_point, n_points, target, limit)


def _reduce(t: Tensor, reduce: "str | None") -> Tensor:
    if reduce is None or t.dim() <= 2:
        return t
    dims = tuple(range(2, t.dim()))
    if reduce == "max":
        return t.amax(dim=dims)
    if reduce == "sum":
        return t.sum(dim=dims)
    return t.mean(dim=dims)


def layer_conductance(model: nn.Module, layers: "LayerSpec | Sequence[LayerSpec]", inputs: Inputs,
                      target: Any = None, *, n_steps: int = 50, method: str = "riemann_trapezoid",
                      baseline: Any = None, internal_batch_size: "int | None" = None,
                      max_chunk_bytes: "int | None" = None, reduce: "str | None" = "max", device=None, progress: bool = False,
                      return_report: bool = False,
                      completeness_tol: "float | None" = DEFAULT_COMPLETENESS_TOL,
                      callback: "Callable[[float], object] | None" = None):
    """Layer Conductance of every neuron of several layers, from one integrated-gradients path.

    Equal, layer by layer, to ``captum.attr.LayerConductance(model, layer).attribute(inputs,
    baselines=baseline, target=target, n_steps=n_steps, method=method)`` (then reduced), at the cost
    of one forward and one backward pass over the ``N * (n_steps + 1)`` path points for all layers
    together.

    Parameters
    ----------
    model : nn.Module
        Returns logits (N, classes). Put in eval mode for the call (each module's mode is restored
        after) and moved to ``device`` and back when it lives elsewhere.
    layers : str, nn.Module or sequence of them
        Layer names (as :func:`tlexplorer.models.hidden_layers` gives them) or the modules
        themselves. The conductance is that of the module's output (before a following ReLU).
    inputs : Tensor (N, C, H, W) or iterable of (x, y) batches
        Images, or a DataLoader streamed batch by batch (results are concatenated on the CPU).
        Inputs are cast to the model's dtype (float32 by default).
    target : int, Tensor (N,) or None
        Class index per instance (or one for all). None with batches of ``(x, y)``: each
        instance's true label ``y``.
    n_steps : int
        Integration steps; the path has ``n_steps + 1`` points, as in captum.
    method : {'riemann_trapezoid', 'riemann_left', 'riemann_right', 'riemann_middle', 'gausslegendre'}
        Where the path points lie (captum's ``method``). Note captum's own default is
        ``gausslegendre``; ours is ``riemann_trapezoid``, whose path includes the baseline and the
        input, so completeness is measured without an extra forward pass.
    baseline : None, float, Tensor (C, H, W), (1, C, H, W) or (N, C, H, W)
        The path's start; zeros by default.
    internal_batch_size : int, optional
        Most path points per forward/backward pass: bounds memory. None: automatic, from the memory
        free on the device when the first batch arrives (:mod:`tlexplorer.analysis.memory`): a
        tenth of it for hooked layer outputs, on the CPU at most about 64 MiB (faster there), whole
        paths of several instances for small models, one instance's path for AlexNet at 224x224.
        Unlike captum, chunks share no re-evaluated points: the last step of a chunk carries over
        to the next.
    max_chunk_bytes : int, optional
        With ``internal_batch_size=None``: no pass holds more than this many bytes of hooked layer
        outputs (at least one path point per pass).
    reduce : {'max', 'sum', 'mean', None}
        How a conv layer's conductance map becomes one value per channel: ``'max'`` over space
        (paper §5.3.1); None returns the full maps (N, C, H, W).
    device : str or torch.device, optional
        Where to compute; default :func:`tlexplorer.config.resolve_device` (the GPU when there is one).
    progress : bool
        Show a tqdm progress bar (instances, with fractions of one instance's path).
    return_report : bool
        Also return the :class:`CompletenessReport`.
    completeness_tol : float or None
        Warn (:class:`ConvergenceWarning`) when a cut layer's relative completeness gap exceeds it
        (default 0.05, i.e. 5%); None: never warn.
    callback : callable, optional
        ``callback(instances)`` after every forward/backward pass with the number of instances it
        completed: a fraction when one instance's path takes several passes (large models), so a
        caller's progress moves within a batch. The calls add up to N.

    Returns
    -------
    conductance : dict of str to Tensor
        ``{layer name: (N, neurons)}`` on the CPU in the model's dtype, in the order of ``layers``
        (full output shape with ``reduce=None``).
    report : CompletenessReport
        Only with ``return_report=True``.

    Raises
    ------
    LayerError
        A layer that is not in the model, never reached by the forward pass, or run more than once
        per pass.
    ValueError
        Inputs that are not 4-D or do not fit the model, a target out of range, a bad ``method``,
        ``n_steps``, ``reduce`` or ``internal_batch_size``.

    Notes
    -----
    Completeness: for a layer that is a cut of the network, the conductance summed over the whole
    layer output approaches ``F(x) - F(baseline)``. A layer is tested for being a cut on the first
    instance: run a random input with the layer's output replaced by that of the instance; the
    target output is unchanged exactly when nothing bypasses the layer (inside a residual block it
    changes). All layers are tested in one small batched forward pass, skipped when neither the
    report nor the warning is asked for. The hooks are removed on return and on error.

    Speed (see ``docs/performance.md``): the backward pass runs down to the first hooked layer only;
    later layers receive their gradients through tensor hooks as the backward pass produces them and
    are not cloned; on the CPU the path points are channels-last; a conv or linear layer that takes
    the path points themselves is affine in alpha, so it runs on the baseline and the input only.

    Examples
    --------
    >>> model = build_model("digits-alexnet", 10)                  # doctest: +SKIP
    >>> names = [layer.name for layer in hidden_layers(model)]
    >>> cond = layer_conductance(model, names, loader)             # true labels as targets
    >>> cond["features.conv1"].shape
    torch.Size([N, 32])
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    alphas_list = path_alphas(method, n_steps)
    if internal_batch_size is not None and (not isinstance(internal_batch_size, int)
                                            or internal_batch_size < 1):
        raise ValueError(f"internal_batch_size must be a positive int or None, got {internal_batch_size!r}")
    named = resolve_layers(model, layers)
    names = [name for name, _ in named]
    if isinstance(inputs, Tensor) and inputs.dim() > 0:  # fail before any work; loaders: at the end
        check_rows(target, inputs.shape[0], "target")
        check_rows(baseline, inputs.shape[0], "baseline")
    n_points = n_steps + 1
    endpoints_on_path = alphas_list[0] == 0.0 and alphas_list[-1] == 1.0

    chunks: dict = {name: [] for name in names}
    sums: dict = {name: [] for name in names}
    deltas: list = []
    cut: "dict | None" = None
    rec = _PathRecorder(type(model).__name__, {})
    total = num_instances(inputs)
    bar = tqdm(total=total, unit="img", desc="layer conductance", disable=not progress,
               bar_format=fraction_bar_format(total))

    def on_pass(instances: float) -> None:
        bar.update(instances)
        if callback is not None:
            callback(instances)

    try:
        with eval_on_device(model, device) as (dev, dtype), Hooks() as hooks:
            alphas = torch.tensor(alphas_list, dtype=dtype, device=dev)
            # oneDNN convolutions and max pooling run ~20% faster on channels-last tensors on the
            # CPU; values are the same up to float rounding.
            memory_format = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
            num_classes = None
            for x, y, offset in iter_batches(inputs):
                x = x.to(device=dev, dtype=dtype)
                batch = x.shape[0]
                t = batch_targets(target, y, offset, batch).to(dev)
                b = batch_baseline(baseline, offset, batch, x)
                if num_classes is None:
                    # Before any hook of the main pass exists: cheap one-instance checks.
                    num_classes, cut, per_point = _probe(
                        model, named, x, int(t[0].clamp(min=0)),
                        check_cut=return_report or completeness_tol is not None)
                    chunk = internal_batch_size or _auto_chunk(per_point, n_points, dev, max_chunk_bytes)
                    for name, module in named:
                        hooks.pre(module, rec.pre_hook(name))
                        hooks.forward(module, rec.hook(name))
                check_targets(t, num_classes)
                # Whole paths of `group` instances per pass, or slices of one instance's path.
                group = min(batch, max(1, chunk // n_points))
                steps_per_chunk = min(n_points, max(1, chunk // group))
                for g0 in range(0, batch, group):
                    g1 = min(g0 + group, batch)
                    rec.accs = {name: _Accumulator() for name in names}
                    delta = _conductance_group(model, names, rec, x[g0:g1], b[g0:g1], t[g0:g1],
                                               alphas, steps_per_chunk, endpoints_on_path, memory_format,
                                               on_pass)
                    for name in names:
                        full = rec.accs[name].result()
                        sums[name].append(full.flatten(1).sum(1).cpu())
                        chunks[name].append(_reduce(full, reduce).contiguous().cpu())
                    deltas.append(delta.cpu())
    finally:
        bar.close()
    if not deltas:
        raise ValueError("inputs hold no instances")
    total = sum(d.shape[0] for d in deltas)
    check_rows(target, total, "target")
    check_rows(baseline, total, "baseline")
    result = {name: torch.cat(chunks[name]) for name in names}
    report = CompletenessReport(sums={name: torch.cat(sums[name]) for name in names},
                                delta=torch.cat(deltas), cut=cut, tolerance=completeness_tol)
    failing = report.failing()
    if failing:
        gaps = ", ".join(f"{layer} {report.relative_gap(layer):.1%}" for layer in failing)
        warnings.warn(f"conductance does not add up to F(x) - F(baseline) within "
                      f"{completeness_tol:.0%} ({gaps}); raise n_steps (now {n_steps})",
                      ConvergenceWarning, stacklevel=2)
    return (result, report) if return_report else result
