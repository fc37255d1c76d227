"""The feature view: ranking order, checked neurons and biplot axes, the discriminability plot."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import holoviews as hv
import numpy as np
import pytest

from tlexplorer.aggregates import aggregates_for
from tlexplorer.app.state import Session
from tlexplorer.app.views import features
from tlexplorer.app.views.features import FeatureView, active_axes, mirrored_histogram_svg
from tlexplorer.app.views.neuron_detail import feature_vis_service

_spec = importlib.util.spec_from_file_location(
    "tlx_synthetic_bundle", Path(__file__).parent / "synthetic_bundle.py")
synthetic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synthetic)

LAYERS = (("features.conv1", "conv", 6), ("features.conv2", "conv", 8),
          ("classifier.fc6", "linear", 10))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = synthetic.make_synthetic_bundle(tmp_path_factory.mktemp("feat") / "bundle",
                                           classes=("0", "1", "2"), per_class=10, layers=LAYERS,
                                           seed=7)
    b = synthetic.open_test_bundle(path)
    feature_vis_service(b).unavailable = "synthetic bundle: no model"
    return b


@pytest.fixture()
def session(bundle):
    return Session(bundle)


def test_mirrored_histogram_svg():
    svg = mirrored_histogram_svg([0, 2, 2], [4, 0, 0], width=30, height=20)

    # drawn in units of 10 per bin across and tenths of a pixel up and down (the axis at 100)
    assert "viewBox='0 0 30 200'" in svg

    def boxes(color):  # (x, y, w, h) of each bin's box in the domain's path
        path = re.search(rf"<path fill='{color}' d='([^']*)'", svg).group(1)
        return [tuple(float(v) for v in box) for box in re.findall(
            r"M([\d.]+) ([\d.]+)h([\d.]+)v([\d.]+)h-[\d.]+z", path)]

    src, tgt = boxes("#d62728"), boxes("#1f77b4")
    assert len(src) == 2 and len(tgt) == 1
    assert all(y + h == 100 for _x, y, _w, h in src)  # above the axis
    assert all(y == 100 for _x, y, _w, _h in tgt)  # below it
    # shares: source bins hold 1/2 each, the target bin 1 -> target bar twice as tall
    assert tgt[0][3] == pytest.approx(2 * src[0][3])
    assert [x for x, *_ in src] == [10.0, 20.0] and tgt[0][0] == 0.0


def test_active_axes_top_five_then_checked():
    import pandas as pd

    frame = pd.DataFrame({"layer": list("abcdefg"), "neuron": range(7)})
    assert active_axes(frame, []) == [(c, i) for i, c in enumerate("abcde")]
    assert active_axes(frame, [("g", 6), ("a", 0), ("zz", 1)])[-1] == ("g", 6)
    assert len(active_axes(frame, [("g", 6), ("a", 0)])) == 6


def test_order_follows_session(session, bundle):
    session.feature_scope = "1"
    view = FeatureView(session=session)
    agg = aggregates_for(bundle)
    desc = agg.feature_ranking("1", "descending")
    assert view.ranking["label"].tolist() == desc["label"].to_list()
    assert view.ranking["rank"].tolist()[0] == 1
    session.feature_order = "ascending"
    asc = agg.feature_ranking("1", "ascending")
    assert view.ranking["label"].tolist() == asc["label"].to_list()
    assert view._table.value["label"].tolist() == asc["label"].to_list()
    top = list(zip(asc["layer"].to_list()[:5], asc["neuron"].to_list()[:5]))
    assert view.axes == top
    assert view._table.value["axis"].tolist()[:6] == ["●"] * 5 + [""]


def test_checked_neurons_change_the_axes(session):
    session.feature_scope = "__all__"
    view = FeatureView(session=session)
    before = list(view.axes)
    assert len(before) == 5
    last = view.ranking.iloc[-1]
    key = (last["layer"], int(last["neuron"]))
    session.checked_neurons = [key]
    assert view.axes == before + [key]
    assert view._table.selection == [len(view.ranking) - 1]
    assert view._table.value["axis"].iloc[-1] == "●"
    # the plot's axes overlay follows: the arrows carry the new label
    labels = [el for el in view.plot_elements().traverse(lambda e: e, [hv.Labels])]
    shown = set().union(*(set(el.data["label"]) for el in labels))
    assert f"{last['layer'].split('.')[-1]} #{int(last['neuron'])}" in shown
    # checking rows in the table writes back to the session
    view._table.selection = [0, 1]
    assert session.checked_neurons == [(view.ranking.iloc[i]["layer"],
                                        int(view.ranking.iloc[i]["neuron"])) for i in (0, 1)]
    session.checked_neurons = []
    assert view.axes == before


def test_scope_changes_plot_and_summary(session, bundle, monkeypatch):
    session.feature_scope = "2"
    view = FeatureView(session=session)
    plot = view._plot.object
    points = [el for el in view.plot_elements().traverse(lambda e: e, [hv.Points])
              if el.label in ("source", "target")]
    assert sum(len(p) for p in points) == 20  # 10 source + 10 target instances of class 2
    assert "CV accuracy" in view._summary.object
    revision = view.plot_revision
    session.feature_scope = "__all__"
    # the same plot, its data updated in place (no new figure for the browser to lay out)
    assert view._plot.object is plot and view.plot_revision == revision + 1
    points = [el for el in view.plot_elements().traverse(lambda e: e, [hv.Points])
              if el.label in ("source", "target")]
    assert sum(len(p) for p in points) == len(view.points) > 20
    assert view.ranking["rank"].tolist()[0] == 1


def test_many_points_are_rasterized(session, monkeypatch):
    monkeypatch.setattr(features, "DATASHADE_THRESHOLD", 5)
    view = FeatureView(session=session)
    # beyond the threshold the scatter is rasterized by datashader (an RGB DynamicMap)
    assert view._shade
    rendered = hv.render(view._plot.object, backend="bokeh")
    assert any(type(r.glyph).__name__ == "ImageRGBA" for r in rendered.renderers)
    session.feature_scope = "2"
    assert view._shade and len(view.points) == 20


def test_panel_builds(session):
    view = FeatureView(session=session)
    layout = view.__panel__()
    assert layout is view.__panel__()
    assert layout.get_root() is not None


def test_biplot_labels_do_not_overlap():
    from tlexplorer.app.views.features import place_labels

    ends = np.array([[1.0, 1.0], [1.0, 1.01], [1.02, 0.99], [-1.0, 0.5], [-1.0, 0.5], [0.3, -2.0]])
    texts = ["features.conv5 #173"] * len(ends)
    placed = place_labels(ends, texts, span_x=4.0, span_y=6.0)
    assert len(placed) == len(ends)
    boxes = []
    for (x, y, align), text in zip(placed, texts):
        w, h = 0.025 * len(text), 0.06
        x0 = x / 4.0 if align == "left" else x / 4.0 - w
        boxes.append((x0, y / 6.0 - h / 2, x0 + w, y / 6.0 + h / 2))
        assert align == ("left" if x >= 0 else "right")
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] - 1e-9 and b[0] < a[2] - 1e-9 and a[1] < b[3] - 1e-9
                        and b[1] < a[3] - 1e-9)


def test_short_layer_names_stay_unambiguous():
    from tlexplorer.aggregates import short_layer_names

    assert short_layer_names(["features.conv5", "classifier.fc6"]) == {
        "features.conv5": "conv5", "classifier.fc6": "fc6"}
    names = short_layer_names(["layer1.0.conv1", "layer2.0.conv1", "layer2.0.downsample.0", "fc"])
    assert names == {"layer1.0.conv1": "layer1.0.conv1", "layer2.0.conv1": "layer2.0.conv1",
                     "layer2.0.downsample.0": "downsample.0", "fc": "fc"}


def test_the_scatter_is_projected_over_the_active_neurons(session):
    """§5.4.2: the points move with the top five / checked neurons (z[:, a] @ comp[a] + origin)."""
    session.feature_scope = "__all__"
    view = FeatureView(session=session)
    agg = view._agg
    top = np.asarray(view.points)
    np.testing.assert_allclose(top, agg.active_projection("__all__", view.axes), atol=1e-6)
    last = view.ranking.iloc[-1]
    session.checked_neurons = [(last["layer"], int(last["neuron"]))]
    assert len(view.axes) == 6
    moved = np.asarray(view.points)
    np.testing.assert_allclose(moved, agg.active_projection("__all__", view.axes), atol=1e-6)
    assert not np.allclose(moved, top)
    full = agg.discriminability_projection("__all__", [])
    assert not np.allclose(top[:, 0], full["x"])  # not the all-neuron projection


def test_the_biplot_draws_on_a_canvas_not_webgl(session):
    view = FeatureView(session=session)
    assert hv.render(view._plot.object, backend="bokeh").output_backend == "canvas"
