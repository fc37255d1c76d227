"""A class switch in the browser updates all four views, and a revisited class is not recomputed.

Checked by content (what the browser's document holds), never by time; the times are measured
by ``benchmarks/bench_interaction.py``.
"""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.browser

#: The browser's view of the four views: what each one shows now.
SHOWN = """() => {
    const doc = Bokeh.documents[0];
    const models = [...doc._all_models.values()];
    const scatter = models.find(m => m.type === "ColumnDataSource" && m.data.instance_id
                                     && m.data.instance_id.length > 0);
    const labels = doc.get_model_by_name("tlx-network-labels");
    return {
        network_neurons: labels ? [...labels.data.neuron].map(Number) : null,
        instance_classes: scatter ? [...new Set(scatter.data.class_name)].sort() : null,
    };
}"""


def _wait(predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _open(page, served):
    n = len(served.apps)
    page.goto(served.url)
    for selector in (".tlx-confusion-table .tabulator-row", ".tlx-instance-scatter canvas",
                     ".tlx-network-plot canvas", ".tlx-discriminability-plot canvas"):
        page.wait_for_selector(selector, state="attached", timeout=30000)
    return served.wait_for_app(n + 1)


def _click_row(page, cls: str) -> None:
    page.locator('.tlx-confusion-table .tabulator-cell[tabulator-field="class"]',
                 has_text=cls).first.click()


def _all_views_show(page, app, cls: str, deep_text) -> bool:
    """Whether the browser shows class ``cls`` in all four views (and the server agrees)."""
    network = app.views["network"]
    features = app.views["features"]
    instances = app.views["instances"]
    if network.data is None or network.data.cls != cls or instances.reprojecting:
        return False
    shown = page.evaluate(SHOWN)
    selected = page.locator(".tlx-confusion-table .tabulator-row.tabulator-selected")
    stats_ok = selected.count() == 1 and deep_text(selected.first.locator(
        '[tabulator-field="class"]').first).strip() == cls
    first_row = page.locator(".tlx-feature-ranking .tabulator-row").first
    features_ok = (features.scope == cls and first_row.count() == 1
                   and str(features.ranking["label"].iloc[0]) in deep_text(first_row))
    network_ok = (page.locator(".tlx-network-titlebar select").first.input_value() == cls
                  and shown["network_neurons"] == [int(n) for n in network.frames["labels"]
                                                   ["neuron"]])
    instances_ok = shown["instance_classes"] == sorted(app.session.selected_classes) \
        and cls in shown["instance_classes"]
    return stats_ok and features_ok and network_ok and instances_ok


def test_a_class_switch_updates_all_four_views_and_a_revisit_recomputes_nothing(
        page, served, deep_text, monkeypatch):
    from tlexplorer import class_layouts
    from tlexplorer.app.views import features, instances, network

    app = _open(page, served)
    first = app.session.focus_class
    others = [c for c in app.session.classes if c != first]
    cls, then = others[0], others[1]

    _click_row(page, cls)
    assert _wait(lambda: _all_views_show(page, app, cls, deep_text)), "a view missed the switch"
    _click_row(page, then)
    assert _wait(lambda: _all_views_show(page, app, then, deep_text))

    # back to the first class: shown again from what was computed, in every view
    calls: list = []

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            calls.append((name, args, kwargs))
            return fn(*args, **kwargs)
        return wrapper

    layout = network.layout_network
    monkeypatch.setattr(network, "layout_network", lambda data, **kw: (
        calls.append(("network layout", data.cls)), layout(data, **kw))[1])
    monkeypatch.setattr(features.FeatureView, "_axes_parts",
                        counting("feature axes", features.FeatureView._axes_parts))
    monkeypatch.setattr(instances.InstanceView, "_glyph_frame",
                        counting("instance glyphs", instances.InstanceView._glyph_frame))
    monkeypatch.setattr(class_layouts, "lay_out", counting("class layout", class_layouts.lay_out))
    _click_row(page, cls)
    assert _wait(lambda: _all_views_show(page, app, cls, deep_text))
    time.sleep(0.5)  # anything that would still recompute has started by now
    # (the network view may still lay out other classes ahead, in the background)
    recomputed = [c for c in calls if not (c[0] == "network layout" and c[1] != cls)]
    assert recomputed == [], recomputed
    assert not page.js_errors
