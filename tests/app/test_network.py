"""The network relation view: zig-zag layout geometry (pure) and the view's reactions to the session."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tlexplorer.app.links import is_shown
from tlexplorer.aggregates import aggregates_for
from tlexplorer.app.state import Session
from tlexplorer.app.views.network import (FIT_PAD, MAX_WINDOW_LAYERS, READABLE_UNIT_PX,
                                           NetworkView, col_model, default_layer_window,
                                           layout_network, overflowing_text, row_model,
                                           short_skip_reason, similarity_range, window_extent)
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
    # not shown yet: the figure's ranges hold the window (the browser fits them to its size)
    ext = view.frames["extent"].iloc[0]
    assert (view._figure.x_range.start, view._figure.x_range.end) == pytest.approx(
        (ext.x0 - FIT_PAD, ext.x1 + FIT_PAD))
    assert (view._figure.y_range.start, view._figure.y_range.end) == pytest.approx(
        (ext.y1 + FIT_PAD, ext.y0 - FIT_PAD))  # flipped: rows go down


def test_taps_select_neuron_and_weight(session):
    view = NetworkView(session=session)
    labels = view._sources["labels"]
    i = 2
    want = (labels.data["model"][i], labels.data["layer"][i], int(labels.data["neuron"][i]))
    labels.selected.indices = [i]  # what Bokeh's TapTool does in the browser
    assert session.selected_neuron == want
    assert labels.selected.indices == []
    assert is_shown(view.neuron_detail.panel)
    assert "tlx-neuron-detail" in view.neuron_detail.panel.css_classes
    squares = view._sources["squares"]
    squares.selected.indices = [0]
    d = squares.data
    assert session.selected_weight == (d["model"][0], d["layer_from"][0], d["layer_to"][0],
                                       int(d["n1"][0]), int(d["n2"][0]))
    assert is_shown(view.weight_detail._panel)
    session.selected_neuron = None
    assert not is_shown(view.neuron_detail.panel)


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
    assert not is_shown(detail.panel)
    session.selected_neuron = ("target", NAMES[1], 3)
    assert is_shown(detail.panel)
    top = aggregates_for(bundle).top_similar("target", NAMES[1], 3, session.focus_class, k=5)
    import panel as pn

    text = " ".join(b.name for b in detail.panel.select(pn.widgets.Button))
    for n in top["neuron"].to_list():
        assert f"#{n}" in text


def test_stretch_similarity_spreads_the_gray_scale_over_the_shown_range(data):
    paper = layout_network(data)
    stretched = layout_network(data, stretch_similarity=True)
    sim = stretched["cells"]["similarity"].to_numpy()
    lo, hi = np.percentile(sim, [2, 98])  # one range for every matrix in view
    blocks = stretched["blocks"][stretched["blocks"]["kind"] == "similarity"]
    assert len(blocks) == len(NAMES)
    for _, block in blocks.iterrows():
        assert (block.sim_lo, block.sim_hi) == pytest.approx((lo, hi))
    assert stretched["cells"]["color"].iloc[sim.argmin()] == "#fafafa"  # below the range: brightest
    assert stretched["cells"]["color"].iloc[sim.argmax()] == "#191919"  # above: darkest
    paper_blocks = paper["blocks"][paper["blocks"]["kind"] == "similarity"]
    assert set(paper_blocks["sim_lo"]) == {0.0} and set(paper_blocks["sim_hi"]) == {1.0}
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
    assert session.stretch_similarity  # readable by default: the gray scale spans what is shown
    stretched = list(view._sources["cells"].data["color"])
    block = view.frames["blocks"].iloc[0]
    lo, hi = _legend_range(view._scale_legend.object)  # the range is always in the legend
    assert lo < hi
    shown_digits = len(str(lo).split(".")[1])
    assert (lo, hi) == pytest.approx((block.sim_lo, block.sim_hi), abs=0.6 * 10 ** -shown_digits)
    session.stretch_similarity = False  # the paper's linear scale, one switch away
    assert list(view._sources["cells"].data["color"]) != stretched
    assert _legend_range(view._scale_legend.object) == (0.0, 1.0)


def _legend_range(html: str) -> tuple[float, float]:
    import re

    text = re.sub(r"<[^>]+>", " ", html)
    lo, hi = re.findall(r"[-\d.]+", text.split("similarity", 1)[1])[:2]
    return float(lo), float(hi)


# ------------------------------------------------------------------------------- text, captions
def test_text_stays_inside_its_boxes(data):
    for options in ({}, {"hide_unimportant": True}, {"hide_source_weights": True}):
        frames = layout_network(data, **options)
        assert overflowing_text(frames) == [], options
        assert len(frames["notes"]) and len(frames["labels"]) and len(frames["titles"])


def _covered(frames) -> list[str]:
    """Texts whose box covers a block, a skipped corner, a neuron index or a metric track."""
    from tlexplorer.app.views.network import NOTE_EM, TITLE_EM, _text_box

    rects = [(name, r.x - r.w / 2, r.y - r.h / 2, r.x + r.w / 2, r.y + r.h / 2)
             for name in ("blocks", "skipped", "labels", "tracks") for r in frames[name].itertuples()]
    texts = [(r.text, r.kind, _text_box(r.text, r.x, r.y, NOTE_EM, r.align))
             for r in frames["notes"].itertuples()]
    texts += [(r.text, "title", _text_box(r.text, r.x, r.y, TITLE_EM, "center"))
              for r in frames["titles"].itertuples()]
    out = []
    for text, kind, (a0, b0, a1, b1) in texts:
        for name, x0, y0, x1, y1 in rects:
            if name == "skipped" and kind == "skipped":
                continue  # a skipped corner's own note
            if a0 < x1 - 1e-9 and x0 < a1 - 1e-9 and b0 < y1 - 1e-9 and y0 < b1 - 1e-9:
                out.append(f"{text} on {name}")
    return out


def test_text_never_covers_a_block_or_an_index(data):
    for options in ({}, {"hide_unimportant": True}, {"hide_source_weights": True}):
        assert _covered(layout_network(data, **options)) == [], options


def test_overflow_check_finds_text_outside_its_box(data):
    frames = layout_network(data)
    notes = frames["notes"].copy()
    notes.loc[0, "text"] = "x" * 200
    assert overflowing_text({**frames, "notes": notes}) == ["x" * 200]


def test_layer_names_and_metrics_with_values_and_scales(data):
    frames = layout_network(data)
    notes = frames["notes"]
    names = notes[notes["kind"] == "layer-name"]
    assert list(names["text"]) == [f"L{data.layer_index[l] + 1} {l}" for l in NAMES]
    for layer in NAMES:
        mine = notes[notes["layer"] == layer]
        assert {"CKA", "A-dist"} <= set(mine["text"]) and {"0–1", "0–2"} <= set(mine["text"])
        values = mine[mine["kind"] == "metric-value"]["text"].tolist()
        metrics = data.metrics[layer]
        assert values == [f"{metrics[k]:.3f}" for k in ("cka_target_data", "cka_source_data",
                                                      "a_distance_source_model",
                                                      "a_distance_target_model")]
        bars = frames["metric_bars"][frames["metric_bars"]["layer"] == layer]
        tracks = frames["tracks"][frames["tracks"]["layer"] == layer]
        for bar, track in zip(bars.itertuples(), tracks.itertuples()):
            scale = 1.0 if bar.metric.startswith("cka") else 2.0  # the track is the full scale
            assert bar.w == pytest.approx(max(track.w * min(bar.value / scale, 1.0), 0.05))
            assert bar.x - bar.w / 2 == pytest.approx(track.x - track.w / 2)


def test_weight_corners_say_whose_weights_they_are(data):
    frames = layout_network(data)
    captions = frames["notes"][frames["notes"]["kind"] == "caption"]
    blocks = frames["blocks"][frames["blocks"]["kind"] == "weights"]
    assert len(blocks) == 2 * (len(NAMES) - 1)
    for block in blocks.itertuples():
        mine = captions[(captions["model"] == block.model)
                        & (captions["layer_from"] == block.layer_from)]
        assert f"{block.model} weights" in set(mine["text"])
        a, b = data.layer_index[block.layer_from] + 1, data.layer_index[block.layer_to] + 1
        assert f"L{a} → L{b}" in set(mine["text"])
        # in the strip just above the corner (reaching into the empty gap on its left)
        assert (mine["y1"] == block.y0).all() and (mine["x1"] == block.x1).all()
        assert (mine["x0"] == block.x0 - 2.6).all() and (mine["x"] >= block.x0 - 2.5).all()
        assert set(mine[mine["text"].str.endswith("weights")]["color"]) == {
            {"source": "#d62728", "target": "#1f77b4"}[block.model]}
    assert overflowing_text(frames) == []


def test_long_layer_names_end_in_an_ellipsis(tmp_path):
    long = "encoder.stage_three.block_eleven.depthwise_separable_convolution"
    path = synthetic.make_synthetic_bundle(
        tmp_path / "long", classes=("0", "1"), per_class=4, seed=2,
        layers=(("conv1", "conv", 8), (long, "conv", 12)))
    data = aggregates_for(synthetic.open_test_bundle(path)).network_block_data("1")
    frames = layout_network(data)
    names = frames["notes"][frames["notes"]["kind"] == "layer-name"]["text"].tolist()
    assert names[0] == "L1 conv1" and names[1].endswith("…") and names[1].startswith("L2 enc")
    assert f"L2: {long}" in " ".join(frames["hotspots"]["text"])  # the full name on hover
    assert overflowing_text(frames) == []


# ------------------------------------------------------------------------------- resnet18
@pytest.fixture(scope="module")
def resnet_bundle(tmp_path_factory):
    path = synthetic.make_synthetic_bundle(
        tmp_path_factory.mktemp("r18") / "bundle", classes=("0", "1", "2"), per_class=6, seed=3,
        layers=synthetic.RESNET18_LAYERS, skip_pairs=synthetic.RESNET18_SKIPS)
    b = synthetic.open_test_bundle(path)
    feature_vis_service(b).unavailable = "synthetic bundle: no model"
    return b


R18_NAMES = [n for n, _k, _s in synthetic.RESNET18_LAYERS]


def test_pair_skip_reasons_come_from_the_manifest(resnet_bundle):
    agg = aggregates_for(resnet_bundle)
    reason = agg.pair_skip_reason("layer1.0.conv2", "layer1.1.conv1")
    assert reason.startswith("the input of 'layer1.1.conv1' does not depend on 'layer1.0.conv2'")
    assert "residual sum" in reason and not reason.startswith("weights skipped")
    assert "does not run before" in agg.pair_skip_reason("layer2.0.conv2",
                                                         "layer2.0.downsample.0")
    assert agg.pair_skip_reason("conv1", "layer1.0.conv2") == (
        "not consecutive layers: 1 layer between them (layer1.0.conv1)")
    assert agg.pair_skip_reason("conv1", "layer1.0.conv1") == (
        "the analysis recorded no weights for this pair")  # nothing recorded, nothing invented
    data = agg.network_block_data("1", R18_NAMES)
    skipped = {(a, b) for a, b, _r in synthetic.RESNET18_SKIPS}
    assert set(data.skipped) == skipped
    assert not skipped & {(lf, lt) for _m, lf, lt in data.weights}


def test_resnet18_layout_names_layers_and_says_why_pairs_are_skipped(resnet_bundle):
    data = aggregates_for(resnet_bundle).network_block_data("1", R18_NAMES)
    frames = layout_network(data)
    notes = frames["notes"]
    names = notes[notes["kind"] == "layer-name"]["text"].tolist()
    assert names == [f"L{i + 1} {n}" for i, n in enumerate(R18_NAMES)]
    skipped = frames["skipped"]
    reasons = {(a, b): r for a, b, r in synthetic.RESNET18_SKIPS}
    assert len(skipped) == 2 * len(reasons)  # both models' corners of each skipped pair
    for row in skipped.itertuples():
        assert row.reason == reasons[(row.layer_from, row.layer_to)]
        assert row.short == short_skip_reason(row.reason)
        text = " ".join(notes[(notes["kind"] == "skipped") & (notes["model"] == row.model)
                              & (notes["layer_from"] == row.layer_from)]["text"])
        assert text.startswith("no weights:") and row.short.split()[0] in text
    assert {"residual sum", "parallel branches"} == set(skipped["short"])
    assert _covered(frames) == [] and _covered(layout_network(data, hide_unimportant=True)) == []
    # a skipped corner takes the place its weights would have: nothing overlaps it
    blocks = frames["blocks"]
    for row in skipped.itertuples():
        for b in blocks.itertuples():
            overlap = (abs(row.x - b.x) < (row.w + b.w) / 2 - 1e-9
                       and abs(row.y - b.y) < (row.h + b.h) / 2 - 1e-9)
            assert not overlap, (row.layer_from, b.kind, b.layer)
    assert overflowing_text(frames) == []


def test_short_skip_reasons():
    assert short_skip_reason("the input of 'b' does not depend on 'a' alone (a residual sum or "
                             "a concatenation?); skip this pair") == "residual sum"
    assert short_skip_reason("layer 'a' does not run before 'b'") == "parallel branches"
    assert short_skip_reason("not consecutive layers: 2 layers between them") == "not consecutive"
    assert short_skip_reason("something new") == "not computed"


# ------------------------------------------------------------------------------- the layer window
def _important(sizes, fraction=0.1):
    return [max(1, int(np.ceil(s * fraction))) for s in sizes]


DIGITS_SIZES = [24, 48, 64, 64, 48, 192, 96]  # the demo's AlexNet-like network
R18_SIZES = [s for _n, _k, s in synthetic.RESNET18_LAYERS]


@pytest.mark.parametrize("sizes", [DIGITS_SIZES, R18_SIZES], ids=["7 layers", "20 layers"])
def test_default_layer_window_is_readable_and_grows_with_the_plot(sizes):
    k = _important(sizes)
    windows = []
    for plot in ((570, 680), (770, 860), (1040, 1220)):  # the card at 1440, 1920, 2560 px
        start, stop = default_layer_window(k, plot)
        assert start == 0 and 2 <= stop <= MAX_WINDOW_LAYERS
        width, height = window_extent(k[start:stop])
        if stop > 2:  # beyond the minimum of one pair, every layer shown is readable
            assert (width + 2 * FIT_PAD) * READABLE_UNIT_PX <= plot[0]
            assert (height + 2 * FIT_PAD) * READABLE_UNIT_PX <= plot[1]
        if stop < min(len(k), MAX_WINDOW_LAYERS):  # and one more would not be
            wider, taller = window_extent(k[start:stop + 1])
            assert ((wider + 2 * FIT_PAD) * READABLE_UNIT_PX > plot[0]
                    or (taller + 2 * FIT_PAD) * READABLE_UNIT_PX > plot[1])
        windows.append(stop - start)
    assert windows == sorted(windows) and windows[-1] > windows[0]
    assert default_layer_window(k, (5000, 5000))[1] == MAX_WINDOW_LAYERS
    assert default_layer_window(k, (100, 100)) == (0, 2)  # never fewer than one pair
    assert default_layer_window(k, (770, 860), start=len(k) - 1) == (len(k) - 1, len(k))
    assert default_layer_window(k[:1], (770, 860)) == (0, 1)


def test_window_extent_matches_the_layout(data):
    k = [len(data.rankings[("target", l)].important) for l in NAMES]
    for hide in (False, True):
        ext = layout_network(data, hide_unimportant=hide)["extent"].iloc[0]
        assert window_extent(k, hide_unimportant=hide) == pytest.approx((ext.x1, ext.y1))


def test_view_opens_on_the_default_window_and_follows_the_plot(resnet_bundle):
    session = Session(resnet_bundle)
    assert session.layers == R18_NAMES  # the session's default: every layer
    view = NetworkView(session=session)
    start, stop = view.window()
    assert view.auto_window and start == 0 and 2 <= stop <= MAX_WINDOW_LAYERS
    assert session.layers == R18_NAMES[:stop] and view.data.layers == R18_NAMES[:stop]
    view.fit_window_to(380, 600)  # the browser reports a narrow plot: fewer layers
    assert view.window() == (0, 2) and view.plot_px == (380, 600)
    view.fit_window_to(1040, 1220)
    assert view.window()[1] > stop and view.data.layers == session.layers
    view.move_window(+3)  # the user moves it: it stays where they put it
    assert not view.auto_window
    moved = view.window()
    assert moved[0] == 3 and moved[1] - moved[0] == view.window()[1] - 3
    view.fit_window_to(380, 600)
    assert view.window() == moved
    view.move_window(+100)
    assert view.window()[1] == len(R18_NAMES)
    view.move_window(-100)
    assert view.window()[0] == 0


def test_hiding_regions_2_to_4_lets_the_default_window_hold_more_layers(resnet_bundle):
    session = Session(resnet_bundle)
    view = NetworkView(session=session)
    view.fit_window_to(570, 680)
    narrow = view.window()
    session.hide_unimportant = True  # narrower blocks: more layers fit
    assert view.window()[1] > narrow[1] and view.data.layers == session.layers
    assert len(view.frames["regions"]) == 0
    session.hide_unimportant = False
    assert view.window() == narrow


def test_view_keeps_the_layers_the_url_chose(resnet_bundle):
    session = Session(resnet_bundle, layers=R18_NAMES[4:12])
    view = NetworkView(session=session)
    assert not view.auto_window and view.window() == (4, 12)
    view.fit_window_to(380, 600)
    assert session.layers == R18_NAMES[4:12]


def test_small_network_shows_every_layer(session):
    view = NetworkView(session=session)
    assert session.layers == NAMES and view.window() == (0, len(NAMES))


# ------------------------------------------------------------------------------- title bar, details
def _find(layout, css):
    import panel as pn

    return [o for o in layout.select(pn.viewable.Viewable)
            if css in (getattr(o, "css_classes", None) or [])]


def test_details_float_over_the_plot_and_the_busy_text_shows_only_while_updating(session):
    import panel as pn

    view = NetworkView(session=session)
    layout = view.__panel__()
    plot = _find(layout, "tlx-network-plot")[0]
    details = _find(layout, "tlx-network-details")[0]
    assert details in plot.objects  # inside the plot area, out of its flow: no width taken
    assert details.styles["position"] == "absolute" and plot.styles["position"] == "relative"
    assert not is_shown(details)
    view.select_neuron("target", NAMES[1], 3)
    assert is_shown(details) and is_shown(view.neuron_detail.panel)
    # busy: a text on the canvas (nothing on the page moves); idle: nothing that looks like a control
    assert not layout.select(pn.indicators.LoadingSpinner)
    assert view._busy_label.text == ""
    view._set_updating(True, "updating: class 1…")
    assert view.updating and view._busy_label.text == "updating: class 1…"
    view._set_updating(False)
    assert not view.updating and view._busy_label.text == ""


def test_window_buttons_move_the_window(resnet_bundle):
    import panel as pn

    session = Session(resnet_bundle)
    view = NetworkView(session=session)
    layout = view.__panel__()
    back = _find(layout, "tlx-window-back")[0]
    ahead = _find(layout, "tlx-window-ahead")[0]
    assert back.disabled and not ahead.disabled
    size = view.window()[1]
    ahead.clicks += 1
    assert view.window() == (1, size + 1) and not back.disabled
    slider = layout.select(pn.widgets.IntRangeSlider)[0]
    assert slider.value == (2, size + 1)
    label = _find(layout, "tlx-network-titlebar")[0]
    text = " ".join(str(o.object) for o in label.select(pn.pane.HTML))
    assert f"L2–L{size + 1} of {len(R18_NAMES)}" in text
