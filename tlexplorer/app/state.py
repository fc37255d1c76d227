"""Per-session state: one :class:`Session` per browser session or notebook ``Explorer``.

Views receive the session through ``param.ClassSelector(class_=Session)`` and react to its
parameters with ``@param.depends``; nothing here is shared between sessions except the read-only
bundle.
"""
from __future__ import annotations

from typing import Any

import param

ALL_SCOPE = "__all__"


def layer_names(bundle: Any) -> list[str]:
    """Names of the bundle's analysed layers, in network order.

    ``bundle.layers`` holds the manifest's ``{"name", "kind", "neurons"}`` entries (dicts or objects
    with a ``name`` attribute); plain strings are accepted too.
    """
    names = []
    for layer in getattr(bundle, "layers", None) or []:
        if isinstance(layer, str):
            names.append(layer)
        elif isinstance(layer, dict):
            names.append(str(layer["name"]))
        else:
            names.append(str(getattr(layer, "name")))
    return names


def class_names(bundle: Any) -> list[str]:
    """The bundle's class names as strings, in label order."""
    return [str(c) for c in (getattr(bundle, "classes", None) or [])]


def default_focus_class(bundle: Any) -> str | None:
    """The class with the largest target − source accuracy gap (tables/confusion), else the first."""
    classes = class_names(bundle)
    if not classes:
        return None
    try:
        if bundle.has("confusion"):
            conf = bundle.table("confusion")
            gap = (conf["target_accuracy"] - conf["source_accuracy"]).to_list()
            names = [str(c) for c in conf["class"].to_list()]
            best = max(
                (g if g is not None else float("-inf"), -i, n)
                for i, (g, n) in enumerate(zip(gap, names))
            )
            if best[2] in classes:
                return best[2]
    except Exception:  # a missing/odd table must not stop the app from opening
        pass
    return classes[0]


def most_confused_with(bundle: Any, cls: str) -> str | None:
    """The class that the target model most often predicts for instances of ``cls``."""
    from tlexplorer.class_layouts import most_confused

    try:
        conf = bundle.table("confusion")
    except Exception:
        return None
    return most_confused(conf, cls)


class Session(param.Parameterized):
    """Everything one user has chosen: focus class, layers, toggles and selections.

    Create one per browser session (``create_app`` does) or per notebook ``Explorer``.
    ``Session(bundle)`` fills the choices of ``focus_class``, ``feature_scope`` and ``layers`` from the
    bundle and picks the class with the largest target − source accuracy gap as the focus class.
    """

    bundle = param.Parameter(constant=True, doc="The loaded, shared read-only Bundle")
    selected_classes = param.ListSelector(
        default=[], doc="Instance view: classes shown in the projection")
    focus_class = param.Selector(
        default=None, objects=[], allow_None=True,
        doc="Class shown by the network relation and feature views")
    layers = param.ListSelector(
        default=[], doc="Layers shown in the network relation view (default: all)")
    confusion_sort = param.String(
        default="difference",
        doc="Confusion table sort: a column ('class', 'source_accuracy', 'target_accuracy', "
            "'difference', ...) with optional ':asc'/':desc' (numbers default to descending)")
    feature_order = param.Selector(
        objects=["descending", "ascending"], default="descending",
        doc="Feature ranking list order by |discriminability|")
    feature_scope = param.Selector(
        default=None, objects=[], allow_None=True,
        doc="Class whose discriminability is shown, or '__all__'")
    hide_unimportant = param.Boolean(False, doc="Network view: hide regions 2-4")
    hide_source_weights = param.Boolean(
        False, doc="Network view: hide the source model's weight blocks")
    stretch_similarity = param.Boolean(
        True, doc="Network view: spread the similarity gray scale over the shown range "
                  "(readable when all similarities are high); False: the paper's 0 to 1")
    selected_neuron = param.Parameter(
        None, doc="(model, layer, neuron) clicked last, or None")
    selected_weight = param.Parameter(
        None, doc="(model, layer_from, layer_to, n1, n2) clicked last, or None")
    checked_neurons = param.List(
        default=[], doc="Feature view: (layer, neuron) rows activated in the biplot")
    selected_instances = param.List(
        default=[], doc="Instance rows chosen by box/lasso selection")
    thumbnail_urls = param.Boolean(
        False, doc="The server answers tlx-thumbnail/<key>/<row>.png: hover cards fetch images "
                   "by URL (else they carry them in the data)")
    status = param.String(default="", doc="Short status text for long-running jobs")
    busy = param.Boolean(False, doc="True while a background job of this session runs")

    def __init__(self, bundle: Any = None, **params: Any):
        super().__init__(**{k: v for k, v in params.items() if k not in _BUNDLE_DEPENDENT})
        if bundle is not None:
            with param.edit_constant(self):
                self.bundle = bundle
            self._configure(bundle)
        rest = {k: v for k, v in params.items() if k in _BUNDLE_DEPENDENT}
        if "focus_class" in rest:  # first, so that explicit other choices win over following it
            self.focus_class = rest.pop("focus_class")
        if rest:
            self.param.update(**rest)

    def _configure(self, bundle: Any) -> None:
        classes = class_names(bundle)
        layers = layer_names(bundle)
        self.param.focus_class.objects = classes
        self.param.selected_classes.objects = classes
        self.param.feature_scope.objects = [ALL_SCOPE, *classes]
        self.param.layers.objects = layers
        for name in ("focus_class", "selected_classes", "feature_scope", "layers"):
            self.param[name].check_on_set = True  # declared with no objects, so not by default
        focus = default_focus_class(bundle)
        other = most_confused_with(bundle, focus) if focus is not None else None
        selected = [c for c in (focus, other) if c is not None]
        self.param.update(
            focus_class=focus,
            feature_scope=focus if focus is not None else ALL_SCOPE,
            layers=list(layers),
            selected_classes=selected,
        )

    @param.depends("focus_class", watch=True)
    def _follow_focus(self) -> None:
        """Every view follows the focus class: the instance view shows it and its most frequent
        confusion, the feature view its discriminability (unless showing all classes)."""
        focus = self.focus_class
        if focus is None or self.bundle is None:
            return
        other = most_confused_with(self.bundle, focus)
        update: dict[str, Any] = {"selected_classes": [c for c in (focus, other) if c is not None]}
        if self.feature_scope != ALL_SCOPE:
            update["feature_scope"] = focus
        self.param.update(**update)

    # ------------------------------------------------------------------ helpers for views
    @property
    def classes(self) -> list[str]:
        """The bundle's class names (empty without a bundle)."""
        return class_names(self.bundle)

    @property
    def layer_names(self) -> list[str]:
        """All of the bundle's layer names in network order."""
        return layer_names(self.bundle)

    def set_status(self, text: str, busy: bool | None = None) -> None:
        """Set the status line (and ``busy`` when given) in one update."""
        update: dict[str, Any] = {"status": text}
        if busy is not None:
            update["busy"] = busy
        self.param.update(**update)


_BUNDLE_DEPENDENT = frozenset(
    {"selected_classes", "focus_class", "layers", "feature_scope"})

__all__ = ["ALL_SCOPE", "Session", "class_names", "default_focus_class", "layer_names",
           "most_confused_with"]
