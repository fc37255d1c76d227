"""The network relation view: zig-zag layout geometry (pure) and the view's reactions to the session."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tlexplorer.aggregates import aggregates_for
from tlexplorer.app.state import Session
from tlexplorer.app.views.network import (NetworkView, col_model, layout_network, row_model,
                                           similarity_range)
from tlexplorer.app.views.neuron_detail import feature_vis_service

_spec = importlib.util.spec_from_file_location(
    "tlx_synthetic_bundle", Path(__file__).parent / "synthetic_bundle.py")
synthetic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synthetic)

LAYERS = (("features.conv1", "conv", 10), ("features.conv2", "conv", 20),
          ("features.conv3", "conv", 20), ("classifier.fc6", "linear", 12))
NAMES = [n for n, _k, _s in LAYERS]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = synthetic.make_synthetic_bundle(tmp_path_factory.mktemp("net") / "bundle",
                                           classes=("0", "1", "2"), per_class=8, layers=LAYERS,
                                           seed=5)
    b = synthetic.open_test_bundle(path)
    # the synthetic models are not real networks: keep the feature-vis worker idle in tests
    feature_vis_service(b).unavailable = "synthetic bundle: no model"
    return b


@pytest.fixture(scope="module")
def data(bundle):
    return aggregates_for(bundle).network_block_data("1", NAMES)


def _block(frames, kind, row, col):
    b = frames["blocks"]
    hit = b[(b["kind"] == kind) & (b["row_index"] == row) & (b["col_index"] == col)]
    return None if hit.empty else hit.iloc[0]


# ------------------------------------------------------------------------------- layout
def test_domains_alternate():
    assert [row_model(i) for i in range(4)] == ["target", "source", "target", "source"]
    assert [col_model(i) for i in range(4)] == ["source", "target", "source", "target"]


def test_zigzag_block_positions(data):
    fr = layout_network(data)
    n = len(NAMES)
    for i in range(n):
        m = _block(fr, "similarity", i, i)
        assert m is not None and m["row_model"] == row_model(i) and m["col_model"] == col_model(i)
    for i in range(n - 1):
        right, below = _block(fr, "weights", i, i + 1), _block(fr, "weights", i + 1, i)
        # the corner right of matrix i holds row_model(i)'s weights layer i -> i+1 ...
        assert right["model"] == row_model(i) and not right["transposed"]
        assert (right["layer_from"], right["layer_to"]) == (NAMES[i], NAMES[i + 1])
        # ... the corner below it the other model's, transposed
        assert below["model"] == row_model(i + 1) and below["transposed"]
        assert (below["layer_from"], below["layer_to"]) == (NAMES[i], NAMES[i + 1])
    # design.md: right of S1 target weights L1->L2, below S1 source weights L1->L2
    assert _block(fr, "weights", 0, 1)["model"] == "target"
    assert _block(fr, "weights", 1, 0)["model"] == "source"
    # blocks never overlap
    b = fr["blocks"]
    for i in range(len(b)):
        for j in range(i + 1, len(b)):
            p, q = b.iloc[i], b.iloc[j]
            overlap = (p.x0 < q.x1 and q.x0 < p.x1) and (p.y0 < q.y1 and q.y0 < p.y1)
            assert not overlap, (p.kind, p.row_index, p.col_index, q.kind, q.row_index, q.col_index)
    # the diagonal runs from the top left to the bottom right
    diag = b[b["kind"] == "similarity"].sort_values("row_index")
    assert diag["x0"].is_monotonic_increasing and diag["y0"].is_monotonic_increasing


def test_weight_squares_align_with_matrix_labels(data):
    fr = layout_network(data)
    labels, sq = fr["labels"], fr["squares"]
    # block right of matrix 0: target weights; rows = L1 target rows of matrix 0, columns = L2
    # target columns of matrix 1
    blk = sq[(sq["model"] == "target") & (sq["layer_from"] == NAMES[0])]
    assert len(blk)
    rows = labels[(labels["axis"] == "row") & (labels["layer"] == NAMES[0])]
    cols = labels[(labels["axis"] == "col") & (labels["layer"] == NAMES[1])]
    assert set(rows["model"]) == {"target"} and set(cols["model"]) == {"target"}
    y_of = dict(zip(rows["neuron"], rows["y"]))
    x_of = dict(zip(cols["neuron"], cols["x"]))
    for s in blk.itertuples():
        assert s.y == pytest.approx(y_of[s.n1]) and s.x == pytest.approx(x_of[s.n2])
    # the transposed source block below matrix 0: rows = L2 source (matrix 1 rows), cols = L1
    # source (matrix 0 columns)
    blk = sq[(sq["model"] == "source") & (sq["layer_from"] == NAMES[0])]
    rows = labels[(labels["axis"] == "row") & (labels["layer"] == NAMES[1])]
    cols = labels[(labels["axis"] == "col") & (labels["layer"] == NAMES[0])]
    assert set(rows["model"]) == {"source"} and set(cols["model"]) == {"source"}
    y_of = dict(zip(rows["neuron"], rows["y"]))
    x_of = dict(zip(cols["neuron"], cols["x"]))
    for s in blk.itertuples():
        assert s.y == pytest.approx(y_of[s.n2]) and s.x == pytest.approx(x_of[s.n1])


def test_cells_and_labels_match_similarity(data):
    fr = layout_network(data)
    cells = fr["cells"]
    sb = data.similarity[NAMES[1]]  # matrix 1: source rows, target columns
    c = cells[cells["layer"] == NAMES[1]]
    assert len(c) == sb.cells.size
    assert set(c["row_model"]) == {"source"} and set(c["col_model"]) == {"target"}
    for r in c.itertuples():
        a = int(np.flatnonzero(sb.imp_source == r.row_neuron)[0])
        b = int(np.flatnonzero(sb.imp_target == r.col_neuron)[0])
        assert r.similarity == pytest.approx(float(sb.cells[a, b]))
    # brightness: similarity 0 brightest, 1 darkest
    lum = c["color"].map(lambda h: int(h[1:3], 16)).to_numpy()
    order = np.argsort(c["similarity"].to_numpy())
    assert (np.diff(lum[order]) <= 0).all()
    lab = fr["labels"]
    assert set(lab[lab["model"] == "source"]["color"]) == {"#d62728"}
    assert set(lab[lab["model"] == "target"]["color"]) == {"#1f77b4"}


def test_red_dots_and_pies_only_on_the_target_side(data):
    fr = layout_network(data)
    assert set(fr["dots"]["model"]) <= {"target"}
    assert set(fr["wedges"]["model"]) <= {"target"}
    assert len(fr["wedges"]) > 0
    sq = fr["squares"]
    inherited = sq[(sq["model"] == "target") & (sq["inherited"] == 1)]
    assert len(fr["dots"]) == len(inherited)
    # each pie's wedges cover the full circle
    for (_lf, _sl, _n), g in fr["wedges"].groupby(["layer_from", "side_layer", "neuron"]):
        assert (g["end"] - g["start"]).sum() == pytest.approx(2 * np.pi)


def test_regions_present_and_box_counts(data):
    fr = layout_network(data)
    reg = fr["regions"]
    n = len(NAMES)
    assert len(reg[reg["kind"] == "similarity"]) == 3 * n
    assert len(reg[reg["kind"] == "weights"]) == 3 * 2 * (n - 1)
    wb = data.weights[("target", NAMES[0], NAMES[1])]
    boxes = fr["boxes"]
    got = boxes[(boxes["model"] == "target") & (boxes["layer_from"] == NAMES[0])]["count"].sum()
    assert got == wb.box_from.count.sum() + wb.box_to.count.sum()


def test_hide_source_weights(data):
    fr = layout_network(data, hide_source_weights=True)
    assert set(fr["blocks"][fr["blocks"]["kind"] == "weights"]["model"]) == {"target"}
    assert set(fr["squares"]["model"]) == {"target"}
    assert "source" not in set(fr["regions"]["model"])
    # the rest of the layout stays where it was
    full = layout_network(data)
    np.testing.assert_allclose(full["cells"][["x", "y"]].to_numpy(),
                               fr["cells"][["x", "y"]].to_numpy())


def test_hide_unimportant(data):
    fr = layout_network(data, hide_unimportant=True)
    for name in ("regions", "bars", "boxes", "whiskers", "medians", "wedges"):
        assert fr[name].empty, name
    full = layout_network(data)
    assert len(fr["cells"]) == len(full["cells"]) and len(fr["squares"]) == len(full["squares"])
    assert fr["extent"].iloc[0].x1 < full["extent"].iloc[0].x1


# ------------------------------------------------------------------------------- the view
@pytest.fixture()
def session(bundle):
    return Session(bundle)


def test_view_reacts_to_focus_class(session, bundle):
    view = NetworkView(session=session)
    session.focus_class = "0"
    src = view._sources["cells"].data
    agg = aggregates_for(bundle)
    sb = agg.similarity_block("0", NAMES[0])
    first = [i for i, l in enumerate(src["layer"]) if l == NAMES[0]]
    np.testing.assert_allclose(np.sort(np.asarray(src["similarity"])[first]),
                               np.sort(sb.cells.ravel().astype(float)))
    before = np.asarray(src["similarity"]).copy()
    session.focus_class = "2"
    after = np.asarray(view._sources["cells"].data["similarity"])
    assert view.data.cls == "2"
    assert not np.array_equal(before, after)
    sb2 = agg.similarity_block("2", NAMES[0])
    first = [i for i, l in enumerate(view._sources["cells"].data["layer"]) if l == NAMES[0]]
    np.testing.assert_allclose(np.sort(after[first]), np.sort(sb2.cells.ravel().astype(float)))


def test_view_switches_and_layers(session):
    view = NetworkView(session=session)
    n_sq = len(view._sources["squares"].data["x"])
    session.hide_source_weights = True
    assert set(view._sources["squares"].data["model"]) == {"target"}
    assert len(view._sources["squares"].data["x"]) < n_sq
    session.hide_unimportant = True
    assert len(view._sources["regions"].data["x"]) == 0
    session.param.update(hide_unimportant=False, hide_source_weights=False)
    session.layers = NAMES[1:3]
    assert view.data.layers == NAMES[1:3]
    assert set(view.frames["blocks"]["layer_from"]) == set(NAMES[1:3])
    assert view._figure.width == pytest.approx(
        (view.frames["extent"].iloc[0].x1 + 1.0) * view.unit_px + 10, abs=2)


def test_taps_select_neuron_and_weight(session):
    view = NetworkView(session=session)
    labels = view._sources["labels"]
    i = 2
    want = (labels.data["model"][i], labels.data["layer"][i], int(labels.data["neuron"][i]))
    labels.selected.indices = [i]  # what Bokeh's TapTool does in the browser
    assert session.selected_neuron == want
    assert labels.selected.indices == []
    assert view.neuron_detail.panel.visible
    assert "tlx-neuron-detail" in view.neuron_detail.panel.css_classes
    squares = view._sources["squares"]
    squares.selected.indices = [0]
    d = squares.data
    assert session.selected_weight == (d["model"][0], d["layer_from"][0], d["layer_to"][0],
                                       int(d["n1"][0]), int(d["n2"][0]))
    assert view.weight_detail._panel.visible
    session.selected_neuron = None
    assert not view.neuron_detail.panel.visible


def test_panel_builds(session):
    view = NetworkView(session=session)
    layout = view.__panel__()
    assert layout is view.__panel__()  # built once
    model = layout.get_root()
    assert model is not None


# ------------------------------------------------------------------------------- detail panels
@pytest.mark.slow
def test_feature_vis_service_computes_in_background_and_caches(tmp_path):
    """The real path: models/{model}.pt of a digits AlexNet, feature vis + weight map off the loop."""
    import json

    import torch

    from tlexplorer.app.views.neuron_detail import FeatureVisService
    from tlexplorer.models import build_model, save_checkpoint

    path = synthetic.make_synthetic_bundle(tmp_path / "b", classes=("0", "1"), per_class=3,
                                           layers=LAYERS[:2], seed=1)
    torch.manual_seed(0)
    for which in ("source", "target"):
        save_checkpoint(build_model("digits-alexnet", 2), path / "models" / f"{which}.pt")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["model"] = {"name": "digits-alexnet", "num_classes": 2, "kwargs": {}}
    manifest["image"] = {"size": 32, "mean": [0.5] * 3, "std": [0.5] * 3}
    manifest["options"]["feature_vis_steps"] = 3
    (path / "manifest.json").write_text(json.dumps(manifest))
    bundle = synthetic.StandInBundle(path)  # the stand-in does not check file sizes
    svc = FeatureVisService(bundle)
    assert svc.get("target", "features.conv1", 4) is None
    got = []
    image = svc.request("target", "features.conv1", 4, got.append).result(120)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert got and got[0] is image
    assert (path / "cache" / "featurevis" / "target" / "features.conv1" / "4.npy").is_file()
    assert FeatureVisService(bundle).get("target", "features.conv1", 4) is not None  # from disk
    fmap = svc.request_weight_map("target", "features.conv1", "features.conv2", 1, 2, row=0
                                  ).result(120)
    assert fmap.ndim == 2 and fmap.dtype == np.float32


def test_neuron_detail_lists_similar_neurons(session, bundle):
    from tlexplorer.app.views.neuron_detail import NeuronDetail

    detail = NeuronDetail(session=session)
    assert not detail.panel.visible
    session.selected_neuron = ("target", NAMES[1], 3)
    assert detail.panel.visible
    top = aggregates_for(bundle).top_similar("target", NAMES[1], 3, session.focus_class, k=5)
    import panel as pn

    text = " ".join(b.name for b in detail.panel.select(pn.widgets.Button))
    for n in top["neuron"].to_list():
        assert f"#{n}" in text


def test_stretch_similarity_spreads_each_layers_gray_scale(data):
    paper = layout_network(data)
    stretched = layout_network(data, stretch_similarity=True)
    blocks = stretched["blocks"][stretched["blocks"]["kind"] == "similarity"]
    for _, block in blocks.iterrows():
        cells = stretched["cells"][stretched["cells"]["layer"] == block.layer]
        sim = cells["similarity"].to_numpy()
        lo, hi = np.percentile(sim, [2, 98])
        if hi <= lo:  # one value (or all equal): mid gray
            lo, hi = lo - 0.5, lo + 0.5
        else:
            assert cells["color"].iloc[sim.argmin()] == "#fafafa"  # at or below the range: brightest
            assert cells["color"].iloc[sim.argmax()] == "#191919"  # at or above: darkest
        assert (block.sim_lo, block.sim_hi) == pytest.approx((lo, hi))
        assert any(f"gray {lo:.2f}–{hi:.2f}" in t for t in stretched["metric_text"]["text"])
    paper_blocks = paper["blocks"][paper["blocks"]["kind"] == "similarity"]
    assert set(paper_blocks["sim_lo"]) == {0.0} and set(paper_blocks["sim_hi"]) == {1.0}
    assert not any("gray" in t for t in paper["metric_text"]["text"])
    np.testing.assert_array_equal(paper["cells"][["x", "y"]], stretched["cells"][["x", "y"]])
    assert len(set(stretched["cells"]["color"])) > len(set(paper["cells"]["color"]))


def test_similarity_range_edge_cases():
    assert similarity_range(np.array([0.9, 0.95]), stretch=False) == (0.0, 1.0)
    assert similarity_range(np.array([0.9, 0.9]), stretch=True) == (0.4, 1.4)  # flat: mid gray
    assert similarity_range(np.array([np.nan]), stretch=True) == (0.0, 1.0)
    lo, hi = similarity_range(np.r_[0.1, np.linspace(0.9, 1.0, 99)], stretch=True)
    assert lo > 0.85 and hi < 1.0  # one outlier does not set the range


def test_view_stretch_switch(session):
    view = NetworkView(session=session)
    before = list(view._sources["cells"].data["color"])
    assert "similarity 0 " in view._scale_legend.object
    session.stretch_similarity = True
    assert list(view._sources["cells"].data["color"]) != before
    assert "per layer" in view._scale_legend.object
