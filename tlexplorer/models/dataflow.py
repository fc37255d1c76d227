"""Which consecutive analysed layers are joined by per-neuron weights, read from the data flow.

The paper's weight extraction (§5.3.1 B) needs layer ``i + 1`` to take layer ``i``'s output
through per-channel operations only (ReLU, batch norm, pooling, flattening). In a residual network
that is not so for every pair in registration order: a block's first convolution takes a residual
*sum*, and a block's ``downsample`` convolution is a *parallel branch* to the block's last
convolution, never taking its output. :func:`pair_relations` traces the model with ``torch.fx``
and says for each consecutive pair whether it is direct and, if not, why, so the pipeline computes
weights for direct pairs only and the view can show the others with their reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch import nn


@dataclass(frozen=True)
class PairRelation:
    """How layer ``to`` takes its input relative to layer ``frm`` (the one before it)."""

    frm: str
    to: str
    direct: bool
    reason: str  # empty for a direct pair

    def as_dict(self) -> dict:
        return {"from": self.frm, "to": self.to, "direct": self.direct, "reason": self.reason}


def _tensor_inputs(node) -> list:
    """The node's inputs that carry activations (not ``x.size(0)``/``x.shape`` look-ups, and not
    parameters or buffers read with ``get_attr``)."""
    from torch.fx import Node

    found = []

    def visit(arg):
        if isinstance(arg, Node):
            if arg.op != "get_attr" and not (
                    arg.op == "call_method" and arg.target in ("size", "dim")) and not (
                    arg.op == "call_function" and arg.target is getattr):
                found.append(arg)
        elif isinstance(arg, (list, tuple)):
            for a in arg:
                visit(a)
        elif isinstance(arg, dict):
            for a in arg.values():
                visit(a)
    visit(node.args)
    visit(node.kwargs)
    return found


def _feeder(node, layers: "set[str]") -> "tuple[str, str]":
    """Walk back from ``node``'s input through single-input operations: ``("layer", name)`` for
    the analysed layer it reaches, ``("merge", what)`` at a join of several paths, or
    ``("input", "")`` at the network's input."""
    inputs = _tensor_inputs(node)
    current = inputs[0] if inputs else None
    while current is not None:
        if current.op == "placeholder":
            return "input", ""
        if current.op == "call_module" and current.target in layers:
            return "layer", str(current.target)
        inputs = _tensor_inputs(current)
        if len(inputs) > 1:  # a residual sum, a concatenation, a gate: several paths join
            name = getattr(current.target, "__name__", str(current.target))
            return "merge", "a concatenation" if "cat" in name or "stack" in name else "a sum"
        current = inputs[0] if inputs else None
    return "input", ""


def _reaches(start, goal) -> bool:
    """Whether ``goal`` is downstream of ``start`` in the graph."""
    todo, seen = [start], set()
    while todo:
        node = todo.pop()
        if node is goal:
            return True
        if node in seen:
            continue
        seen.add(node)
        todo.extend(node.users)
    return False


def pair_relations(model: nn.Module, layers: Sequence[str]) -> "list[PairRelation] | None":
    """For each consecutive pair of ``layers`` (network order): direct, or why not.

    Returns None when the model cannot be traced symbolically (data-dependent control flow); the
    caller then tries each pair as before.
    """
    from torch.fx import symbolic_trace

    try:
        graph = symbolic_trace(model).graph
    except Exception:  # not traceable: no data-flow facts, callers fall back
        return None
    names = set(layers)
    nodes = {str(n.target): n for n in graph.nodes if n.op == "call_module" and n.target in names}
    out = []
    for frm, to in zip(layers[:-1], layers[1:]):
        node = nodes.get(to)
        if node is None:  # called more than once or not at all in forward: undecided
            out.append(PairRelation(frm, to, True, ""))
            continue
        kind, what = _feeder(node, names)
        if frm in nodes and not _reaches(nodes[frm], node):
            out.append(PairRelation(frm, to, False, f"parallel branches: {to} does not take "
                                    f"{frm}'s output (both start from the same input)"))
        elif kind == "layer" and what == frm:
            out.append(PairRelation(frm, to, True, ""))
        elif kind == "merge":
            out.append(PairRelation(frm, to, False, f"{to} takes {what} of several paths "
                                    "(a residual connection), not one layer's neurons"))
        elif kind == "layer":
            out.append(PairRelation(frm, to, False, f"parallel branches: {to} takes {what}'s "
                                    f"output, not {frm}'s"))
        else:
            out.append(PairRelation(frm, to, False, f"{to} takes the network's input"))
    return out


__all__ = ["PairRelation", "pair_relations"]
