"""Per-class aggregates (tlexplorer.aggregates) against direct computations on a synthetic bundle."""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tlexplorer.aggregates import (ALL, BundleAggregates, aggregates_for, box_stats, histogram,
                                   layer_label)

_spec = importlib.util.spec_from_file_location(
    "tlx_synthetic_bundle", Path(__file__).parent / "app" / "synthetic_bundle.py")
synthetic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synthetic)

LAYERS = (("features.conv1", "conv", 10), ("features.conv2", "conv", 20),
          ("classifier.fc6", "linear", 12))
CLASSES = ("0", "1", "2")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = synthetic.make_synthetic_bundle(tmp_path_factory.mktemp("agg") / "bundle",
                                           classes=CLASSES, per_class=8, layers=LAYERS, seed=3)
    return synthetic.open_test_bundle(path)


@pytest.fixture()
def agg(bundle):
    return BundleAggregates(bundle)


def _cosine(a, b):
    a = a / np.linalg.norm(a, axis=0, keepdims=True)
    b = b / np.linalg.norm(b, axis=0, keepdims=True)
    return a.T @ b


# ------------------------------------------------------------------------------- small helpers
def test_histogram_counts_by_hand():
    h = histogram(np.array([0.0, 0.1, 0.5, 0.99, 1.0, 7.0, -3.0]), 0.0, 1.0, 4)
    # bins [0,.25) [.25,.5) [.5,.75) [.75,1]; 7 clips into the last, -3 into the first
    assert h.counts.tolist() == [3, 0, 1, 3]
    assert h.n == 7
    assert h.edges.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_box_stats_by_hand():
    st = box_stats([np.array([1.0, 2.0, 3.0, 4.0, 100.0]), np.array([])],
                   [np.array([True, True, False, True, True]), np.array([], bool)])
    assert (st.q1[0], st.median[0], st.q3[0]) == (2.0, 3.0, 4.0)
    assert (st.low[0], st.high[0]) == (1.0, 4.0)  # 100 is beyond q3 + 1.5 IQR = 7
    assert st.count.tolist() == [5, 0]
    assert st.share_no_source[0] == pytest.approx(0.2)
    assert np.isnan(st.median[1]) and np.isnan(st.share_no_source[1])


def test_layer_label():
    assert layer_label(4, 173) == "L5#173"


# ------------------------------------------------------------------------------- rows, rankings
def test_class_rows_follow_instances(agg, bundle):
    inst = bundle.table("instances").sort("row")
    rows_t = np.asarray(bundle.array("rows_target"))
    names = np.asarray(inst["class_name"].to_list())
    for cls in CLASSES:
        pos = agg.class_rows(cls)
        assert (names[rows_t[pos]] == cls).all()
        assert len(pos) == (names[rows_t] == cls).sum() == 8
    assert len(agg.class_rows(ALL)) == len(rows_t)
    assert len(agg.class_rows("1", "source")) == 8


def test_neuron_ranking_from_table(agg, bundle):
    t = bundle.table("neurons").filter((pl.col("model") == "target") & (pl.col("class") == "1")
                                       & (pl.col("layer") == "features.conv2")).sort("rank")
    r = agg.neuron_ranking("target", "1", "features.conv2")
    assert r.order.tolist() == t["neuron"].to_list()
    assert r.important.tolist() == t.filter(pl.col("important"))["neuron"].to_list()
    assert len(r.important) == 2  # ceil(10% of 20)
    assert r.others.tolist() == r.order[2:].tolist()


class _NoNeuronsTable:
    """The bundle without tables/neurons: rankings must be computed from conductance."""

    def __init__(self, bundle):
        self._b = bundle
        self.key = bundle.key + ":no-neurons"

    def has(self, name):
        return name != "neurons" and self._b.has(name)

    def __getattr__(self, name):
        return getattr(self._b, name)


def test_neuron_ranking_fallback_matches_table(bundle):
    agg = BundleAggregates(_NoNeuronsTable(bundle))
    ref = BundleAggregates(bundle)
    for model in ("source", "target"):
        for layer, _k, _n in LAYERS:
            got = agg.neuron_ranking(model, "2", layer)
            want = ref.neuron_ranking(model, "2", layer)
            assert got.important.tolist() == want.important.tolist()
            np.testing.assert_allclose(got.score, want.score)


# ------------------------------------------------------------------------------- similarity
def test_similarity_equals_direct_cosine(agg, bundle):
    pos = agg.class_rows("0")
    for layer, _k, _n in LAYERS:
        a_s = np.asarray(bundle.array(f"conductance/source_on_target/{layer}"), float)[pos]
        a_t = np.asarray(bundle.array(f"conductance/target_on_target/{layer}"), float)[pos]
        np.testing.assert_allclose(agg.similarity("0", layer), _cosine(a_s, a_t), atol=1e-5)


def test_similarity_block_regions_partition_the_matrix(agg):
    for layer, _k, n in LAYERS:
        sb = agg.similarity_block("1", layer)
        s = agg.similarity("1", layer)
        total = sb.cells.size + sb.hist_is_ot.n + sb.hist_os_it.n + sb.hist_os_ot.n
        assert total == n * n
        np.testing.assert_array_equal(sb.cells, s[np.ix_(sb.imp_source, sb.imp_target)])
        k_s, k_t = len(sb.imp_source), len(sb.imp_target)
        assert sb.hist_is_ot.n == k_s * (n - k_t)
        assert sb.hist_os_it.n == (n - k_s) * k_t
        assert sb.hist_is_ot.counts.sum() == sb.hist_is_ot.n


def test_top_similar_is_sorted_column(agg):
    s = agg.similarity("2", "features.conv2")
    top = agg.top_similar("target", "features.conv2", 7, "2", k=5)
    assert top["model"].unique().to_list() == ["source"]
    col = s[:, 7]
    assert top["neuron"].to_list() == np.argsort(-col, kind="stable")[:5].tolist()
    np.testing.assert_allclose(top["similarity"].to_numpy(), np.sort(col)[::-1][:5], rtol=1e-6)
    back = agg.top_similar("source", "features.conv2", 3, "2", k=3)
    assert back["neuron"].to_list() == np.argsort(-s[3, :], kind="stable")[:3].tolist()


# ------------------------------------------------------------------------------- weights
def test_weight_block_regions(agg, bundle):
    lf, lt = "features.conv2", "classifier.fc6"
    for model in ("source", "target"):
        wb = agg.weight_block(model, "0", lf, lt)
        w = np.asarray(bundle.array(f"weights/{model}/{lf}__{lt}"))
        imp1 = agg.neuron_ranking(model, "0", lf).important
        imp2 = agg.neuron_ranking(model, "0", lt).important
        np.testing.assert_array_equal(wb.values, w[np.ix_(imp1, imp2)])
        iw = agg.important_weights(model, "0", lf, lt)
        n1, n2 = iw["n1"].to_numpy(), iw["n2"].to_numpy()
        in1, in2 = np.isin(n1, imp1), np.isin(n2, imp2)
        # every important weight lands in exactly one of the four regions
        assert int((wb.count > 0).sum()) == int((in1 & in2).sum())
        assert int(wb.box_from.count.sum()) == int((in1 & ~in2).sum())
        assert int(wb.box_to.count.sum()) == int((~in1 & in2).sum())
        assert wb.n_important_other == int((~in1 & ~in2).sum())
        assert wb.hist_other.n == (w.shape[0] - len(imp1)) * (w.shape[1] - len(imp2))
        for row in iw.filter(pl.Series(in1 & in2)).iter_rows(named=True):
            a = int(np.flatnonzero(imp1 == row["n1"])[0])
            b = int(np.flatnonzero(imp2 == row["n2"])[0])
            assert wb.count[a, b] == row["count"] and wb.rank[a, b] == row["rank"]
            want = -1 if model == "source" else int(row["inherited"])
            assert wb.inherited[a, b] == want
        if model == "source":
            assert (wb.inherited == -1).all()
            assert np.isnan(wb.box_from.share_no_source).all()


def test_weight_block_box_values(agg, bundle):
    lf, lt = "features.conv1", "features.conv2"
    wb = agg.weight_block("target", "1", lf, lt)
    w = np.asarray(bundle.array(f"weights/target/{lf}__{lt}"))
    iw = agg.important_weights("target", "1", lf, lt)
    imp2 = wb.imp_to
    for j, n2 in enumerate(imp2):
        sel = iw.filter((pl.col("n2") == int(n2)) & ~pl.col("n1").is_in(wb.imp_from.tolist()))
        vals = w[sel["n1"].to_numpy(), int(n2)]
        assert wb.box_to.count[j] == len(vals)
        if len(vals):
            assert wb.box_to.median[j] == pytest.approx(np.median(vals))
            share = 1 - sel["inherited"].cast(pl.Float64).mean()
            assert wb.box_to.share_no_source[j] == pytest.approx(share)


# ------------------------------------------------------------------------------- whole view
def test_network_block_data_has_every_block(agg):
    data = agg.network_block_data("2")
    assert data.layers == [name for name, _k, _n in LAYERS]
    assert set(data.similarity) == set(data.layers)
    assert set(data.weights) == {(m, a, b) for m in ("source", "target")
                                 for a, b in zip(data.layers, data.layers[1:])}
    assert data.metrics["features.conv1"]["cka_target_data"] == pytest.approx(0.95)
    sub = agg.network_block_data("2", ["classifier.fc6", "features.conv1"])
    assert sub.layers == ["features.conv1", "classifier.fc6"]  # network order
    # non-consecutive layers have no weight array: no blocks
    assert sub.weights == {}


def test_cache_keys_and_concurrency(bundle):
    agg = BundleAggregates(bundle)
    results = []

    def work():
        results.append(agg.network_block_data("1"))
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is results[0] for r in results)
    assert agg.cache_info()["network"]["misses"] == 1
    key = next(iter(agg._cache("network")._data))
    assert key[0] == bundle.key and key[1] == "1"


def test_lru_is_bounded(bundle):
    agg = BundleAggregates(bundle, maxsize=2)
    for cls in CLASSES:
        agg.similarity_block(cls, "features.conv1")
    assert len(agg._cache("similarity_block")) == 2


def test_aggregates_for_is_shared(bundle):
    assert aggregates_for(bundle) is aggregates_for(bundle)


# ------------------------------------------------------------------------------- feature view
def test_feature_ranking_order_and_histograms(agg, bundle):
    desc = agg.feature_ranking("1", "descending")
    asc = agg.feature_ranking("1", "ascending")
    assert desc["rank"].to_list() == sorted(desc["rank"].to_list())
    assert asc["rank"].to_list() == sorted(asc["rank"].to_list(), reverse=True)
    assert desc.height == sum(n for _l, _k, n in LAYERS)
    first = desc.row(0, named=True)
    assert first["rank"] == 1
    assert first["label"] == f"{first['layer']} #{first['neuron']}"
    # counts per domain add up to the class's instances of each domain
    assert all(sum(h) == 8 for h in desc["hist_source"].to_list())
    assert all(sum(h) == 8 for h in desc["hist_target"].to_list())
    cs = np.asarray(bundle.array(f"conductance/target_on_source/{first['layer']}"))
    vals = cs[agg.class_rows("1", "source"), first["neuron"]]
    want = histogram(vals, first["bin_lo"], first["bin_hi"], len(first["hist_source"])).counts
    assert first["hist_source"] == want.tolist()
    with pytest.raises(ValueError):
        agg.feature_ranking("1", "sideways")


def test_discriminability_projection(agg, bundle):
    summary = bundle.table("discriminability_summary").filter(pl.col("scope") == "2").row(
        0, named=True)
    proj = agg.discriminability_projection("2", [("features.conv2", 3), ("features.conv1", 1)])
    assert (proj["domain"] == "source").sum() == summary["n_source"]
    assert (proj["domain"] == "target").sum() == summary["n_target"]
    assert list(proj["domain"][:summary["n_source"]]) == ["source"] * summary["n_source"]
    assert proj["axis_label"] == ["features.conv2 #3", "features.conv1 #1"]
    table = bundle.table("discriminability").filter(pl.col("scope") == "2")
    row = table.with_row_index("i").filter((pl.col("layer") == "features.conv2")
                                           & (pl.col("neuron") == 3))["i"][0]
    np.testing.assert_allclose(proj["axes"][0], np.asarray(bundle.array("discriminability/2/axes"))[row])
    assert proj["cv_accuracy"] == pytest.approx(summary["cv_accuracy"])
    full = agg.discriminability_projection(ALL)
    assert len(full["axes"]) == table.height


def test_top_activating(agg, bundle):
    rows = agg.top_activating("target", "features.conv1", 2, k=3, cls="0")
    act = np.asarray(bundle.array("activations/target_on_target/features.conv1"))
    pos = agg.class_rows("0")
    want = np.asarray(bundle.array("rows_target"))[pos[np.argsort(-act[pos, 2], kind="stable")[:3]]]
    assert rows.tolist() == want.tolist()


def test_active_projection_equals_transform_over_the_active_neurons(tmp_path):
    """§5.4.2: the discriminability plot over the top five / checked neurons is exactly
    DomainDiscriminability.transform(x, neurons=...), from what analyze stores."""
    from tlexplorer.aggregates import BundleAggregates
    from tlexplorer.analysis.discriminability import domain_discriminability
    from tlexplorer.bundle import BundleWriter, open_bundle

    rng = np.random.default_rng(3)
    src, tgt = rng.normal(size=(30, 6)), rng.normal(loc=0.4, size=(25, 6))
    fitted = domain_discriminability(src, tgt, cv=3, random_state=0)
    columns = [("conv1", 0), ("conv1", 2), ("conv2", 1), ("conv2", 4), ("fc", 3), ("fc", 5)]
    w = BundleWriter(tmp_path / "b", durable=False)
    w.write_table("discriminability", pl.DataFrame({
        "scope": "__all__", "layer": [l for l, _ in columns],
        "neuron": np.array([n for _, n in columns], np.int64), "coef": fitted.coef_,
        "rank": np.arange(1, 7, dtype=np.int64)}))
    base = "discriminability/__all__"
    w.write_array(f"{base}/projection", np.asarray(fitted.projection_, np.float32))
    w.write_array(f"{base}/standardized",
                  np.asarray(fitted.scaler_.transform(np.vstack([src, tgt])), np.float32))
    w.write_array(f"{base}/components", fitted.components_)
    w.write_array(f"{base}/origin", fitted.origin_)
    bundle = open_bundle(w.finalize({"classes": ["a", "b"], "layers": [
        {"name": "conv1", "kind": "conv", "neurons": 3}, {"name": "conv2", "kind": "conv",
                                                          "neurons": 5},
        {"name": "fc", "kind": "linear", "neurons": 6}]}))
    agg = BundleAggregates(bundle)
    x = np.vstack([src, tgt])
    for active in ([("conv2", 4), ("conv1", 0)], columns, [("fc", 5)]):
        idx = [columns.index(a) for a in active]
        np.testing.assert_allclose(agg.active_projection("__all__", active),
                                   fitted.transform(x, neurons=idx), atol=2e-5)
    np.testing.assert_allclose(agg.active_projection("__all__", columns), fitted.projection_,
                               atol=2e-5)


def test_skipped_pairs_take_their_reason_from_the_recorded_data_flow():
    from types import SimpleNamespace

    from tlexplorer.aggregates import BundleAggregates
    from tlexplorer.app.views.network import short_skip_reason

    manifest = {"layers": [{"name": n, "kind": "conv", "neurons": 4} for n in ("a", "b", "c")],
                "layer_pairs": [
                    {"from": "a", "to": "b", "direct": True, "reason": ""},
                    {"from": "b", "to": "c", "direct": False,
                     "reason": "parallel branches: c does not take b's output"}],
                "warnings": []}
    agg = BundleAggregates(SimpleNamespace(manifest=manifest, layers=manifest["layers"],
                                           key="k-dataflow", path="/nowhere"))
    reason = agg.pair_skip_reason("b", "c")
    assert reason.startswith("parallel branches") and short_skip_reason(reason) == \
        "parallel branches"
    assert short_skip_reason("c takes a sum of several paths (a residual connection)") == \
        "residual sum"
