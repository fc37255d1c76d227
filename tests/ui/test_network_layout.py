"""Browser tier: the network relation view fits its panel at 1440×900, 1920×1080 and 2560×1440.

For a 7-layer network (the demo's shape) and a resnet18-shaped one (20 layers, ten pairs that a
residual sum or a parallel branch leaves without weights), at each size: the browser fitted the
layer window with square cells at a readable size, the canvas text is sized to the cells, no text
of the view leaves its box (or it ends in an ellipsis with a title), layer names and the reasons
of skipped pairs are drawn, and no idle spinner shows. A detail panel opens without shrinking the
plot. Screenshots go to ``test-artifacts/network_<bundle>_<size>.png``.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

import synthetic_bundle

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SIZES = [(1440, 900), (1920, 1080), (2560, 1440)]
DIGITS_LAYERS = (("features.conv1", "conv", 24), ("features.conv2", "conv", 48),
                 ("features.conv3", "conv", 64), ("features.conv4", "conv", 64),
                 ("features.conv5", "conv", 48), ("classifier.fc6", "linear", 192),
                 ("classifier.fc7", "linear", 96))

#: The network figure as the browser has it: size, ranges, window and font sizes.
FIGURE_STATE = """([id, window_id]) => {
    const model = (i) => Bokeh.documents.map(d => d.get_model_by_id(i)).find(m => m);
    const fig = model(id), win = model(window_id);
    if (!fig || fig.properties.inner_width.is_unset) { return null; }
    const texts = fig.renderers.filter(r => r.glyph.type === "Text").map(r => r.glyph);
    return {w: fig.inner_width, h: fig.inner_height,
            x: [fig.x_range.start, fig.x_range.end], y: [fig.y_range.start, fig.y_range.end],
            window: win && win.data.x0.length ? [win.data.x0[0], win.data.y0[0], win.data.x1[0],
                                                win.data.y1[0]] : null,
            fonts: texts.map(g => g.text_font_size.value), alphas: texts.map(g => g.text_alpha.value)};
}"""

#: Texts of the view that overflow their element (unless ellipsised with a title) or leave the
#: card, looking into shadow roots.
OVERFLOWS = """(root) => {
    const card = root.getBoundingClientRect();
    const out = [];
    const visit = (el) => {
        if (el.shadowRoot) { for (const c of el.shadowRoot.children) visit(c); }
        for (const c of el.children) visit(c);
        if (el.tagName === "OPTION" || el.tagName === "STYLE" || el.tagName === "SCRIPT") return;
        const own = [...el.childNodes].filter(n => n.nodeType === 3 && n.textContent.trim())
                                      .map(n => n.textContent.trim()).join(" ");
        if (!own || el.getClientRects().length === 0) return;
        const style = getComputedStyle(el);
        if (style.visibility === "hidden") return;
        if (style.display !== "inline" && el.clientWidth > 0
                && el.scrollWidth > el.clientWidth + 1) {
            const titled = el.title || (el.closest && el.closest("[title]"));
            if (!(style.textOverflow === "ellipsis" && titled)) {
                out.push(`${own} (${el.scrollWidth}px in ${el.clientWidth}px)`);
            }
        }
        const r = el.getBoundingClientRect();
        if (r.width > 0 && (r.left < card.left - 1 || r.right > card.right + 1)) {
            out.push(`${own} (outside the card)`);
        }
    };
    visit(root);
    return out;
}"""

#: Visible loading spinners inside the element (Panel's LoadingSpinner).
VISIBLE_SPINNERS = """(root) => {
    let n = 0;
    const visit = (el) => {
        if (el.shadowRoot) { for (const c of el.shadowRoot.children) visit(c); }
        for (const c of el.children) visit(c);
        const cls = (el.className && el.className.baseVal === undefined) ? String(el.className) : "";
        if (/loading|spinner/i.test(cls) && el.getClientRects().length > 0
                && getComputedStyle(el).visibility !== "hidden") { n += 1; }
    };
    visit(root);
    return n;
}"""


def _ui_conftest():
    """This folder's conftest as a module (its name is ambiguous under --import-mode=importlib)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tlx_ui_conftest",
                                                  Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _click_cell(page, figure_id: str, x: float, y: float) -> None:
    """Click where data point (x, y) of the Bokeh figure is drawn."""
    pos = page.evaluate(
        """([id, x, y]) => {
            const fig = Bokeh.documents.map(d => d.get_model_by_id(id)).find(m => m);
            const view = Bokeh.index.find_one(fig);
            const r = view.canvas_view.el.getBoundingClientRect();
            return [r.left + view.frame.x_scale.compute(x), r.top + view.frame.y_scale.compute(y)];
        }""", [figure_id, x, y])
    page.mouse.click(pos[0], pos[1])


def _ids(view) -> list[str]:
    return [view._figure.id, view._sources["extent"].id]


def _wait(predicate, timeout=30.0, interval=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("netlayout")
    digits = synthetic_bundle.make_synthetic_bundle(root / "digits", classes=("0", "1", "2"),
                                                    per_class=8, layers=DIGITS_LAYERS, seed=4)
    resnet = synthetic_bundle.make_synthetic_bundle(
        root / "resnet18", classes=tuple(str(c) for c in range(6)), per_class=6, seed=3,
        layers=synthetic_bundle.RESNET18_LAYERS, skip_pairs=synthetic_bundle.RESNET18_SKIPS)
    return {"digits": digits, "resnet18": resnet}


@pytest.fixture(scope="module", params=["digits", "resnet18"])
def served_net(request, bundles):
    """One bundle served at a time (conftest's recording factory is one per process)."""
    served, stop = _ui_conftest().start_served(bundles[request.param])
    served.name = request.param
    yield served
    stop()


def _open(page, served, size):
    """Load the page at ``size``; returns (app, view, figure state) once the browser fitted the
    view's final window (the default window follows the plot's size the browser reports)."""
    page.set_viewport_size({"width": size[0], "height": size[1]})
    n = len(served.apps)
    page.goto(served.url)
    page.wait_for_selector(".tlx-network-plot canvas", state="attached", timeout=60000)
    app = served.wait_for_app(n + 1)
    assert _wait(lambda: "network" in app.views)
    view = app.views["network"]
    state = {}

    def settled():
        if view.updating or view.data is None or not view.frames:
            return False
        if view.data.layers != list(app.session.layers) or view.plot_px[0] == 700:
            return False
        s = page.evaluate(FIGURE_STATE, _ids(view))
        e = view.frames["extent"].iloc[0]
        if not s or s["window"] != pytest.approx([e.x0, e.y0, e.x1, e.y1]):
            return False
        state.update(s)
        return s["x"][0] <= e.x0 and s["x"][1] >= e.x1
    assert _wait(settled), "the browser did not fit the network view's window"
    time.sleep(0.3)  # the text sizes follow the ranges
    state.update(page.evaluate(FIGURE_STATE, _ids(view)))
    return app, view, state


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_network_view_fits_its_panel(page, served_net, size):
    from tlexplorer.app.views.network import (LABEL_EM, NOTE_EM, READABLE_UNIT_PX, TEXT_UNIT_PX,
                                              TITLE_EM, overflowing_text)

    name = served_net.name
    app, view, state = _open(page, served_net, size)
    ARTIFACTS.mkdir(exist_ok=True)
    card = page.locator(".tlx-area-network").first
    page.screenshot(path=str(ARTIFACTS / f"network_{name}_{size[0]}x{size[1]}_page.png"))
    card.screenshot(path=str(ARTIFACTS / f"network_{name}_{size[0]}x{size[1]}.png"))

    # the window is fitted with square cells, and readable unless it is the minimum of one pair
    e = view.frames["extent"].iloc[0]
    unit_x = state["w"] / (state["x"][1] - state["x"][0])
    unit_y = state["h"] / (state["y"][0] - state["y"][1])  # flipped: rows go down
    assert unit_x == pytest.approx(unit_y, rel=0.01)
    assert state["y"][1] <= e.y0 and state["y"][0] >= e.y1 and state["x"][0] <= e.x0
    start, stop = view.window()
    assert 2 <= stop - start <= 5 and view.auto_window
    if stop - start > 2:
        assert unit_x >= READABLE_UNIT_PX * 0.97
    # canvas text is sized in cells: it keeps to the boxes the layout checked
    for font, em in zip(state["fonts"], (LABEL_EM, TITLE_EM, NOTE_EM)):
        assert float(font[:-2]) == pytest.approx(em * min(unit_x, TEXT_UNIT_PX[1]), abs=0.15)
    assert state["alphas"] == [1, 1, 1]
    assert overflowing_text(view.frames) == []

    # no text of the view's HTML overflows, and no idle spinner shows
    assert card.evaluate(OVERFLOWS) == []
    titlebar = page.locator(".tlx-network-titlebar").first
    assert titlebar.evaluate(VISIBLE_SPINNERS) == 0
    box, bar = card.bounding_box(), titlebar.bounding_box()
    assert bar["x"] + bar["width"] <= box["x"] + box["width"] + 1

    notes = view.frames["notes"]
    names = notes[notes["kind"] == "layer-name"]["text"].tolist()
    shown = app.session.layers
    assert names == [f"L{app.session.layer_names.index(n) + 1} {n}" for n in shown]
    if name == "resnet18":
        _move_to_a_skipped_pair(page, app, view, size)
    assert not page.js_errors


def _move_to_a_skipped_pair(page, app, view, size):
    """The ▶ button moves the window until it holds layer1.0.conv2 → layer1.1.conv1 (a residual
    sum between them): that corner is drawn hatched, with its reason."""
    from tlexplorer.app.views.network import overflowing_text

    pair = ["layer1.0.conv2", "layer1.1.conv1"]
    moved = 0
    while not all(layer in app.session.layers for layer in pair) and moved < 4:
        before = view.window()
        page.locator(".tlx-window-ahead button").first.click()
        assert _wait(lambda: view.window() == (before[0] + 1, before[1] + 1))
        moved += 1
    assert _wait(lambda: not view.updating and view.data.layers == list(app.session.layers))
    assert view.auto_window == (moved == 0)  # a moved window stays where the user put it
    skipped = view.frames["skipped"]
    assert set(skipped["layer_from"]) >= {pair[0]} and "residual sum" in set(skipped["short"])
    notes = view.frames["notes"]
    assert "no weights: residual sum" in " ".join(notes[notes["kind"] == "skipped"]["text"])
    assert overflowing_text(view.frames) == []
    start, stop = view.window()
    label = page.locator(".tlx-layer-window").first
    want = f"L{start + 1}–L{stop} of {len(app.session.layer_names)}"
    assert _wait(lambda: label.inner_text() == want, timeout=10)
    time.sleep(0.5)
    page.locator(".tlx-area-network").first.screenshot(
        path=str(ARTIFACTS / f"network_resnet18_{size[0]}x{size[1]}_moved.png"))


def test_detail_panel_does_not_shrink_the_plot(page, served_net):
    app, view, before = _open(page, served_net, (1920, 1080))
    label = view.frames["labels"].iloc[0]
    _click_cell(page, view._figure.id, float(label["x"]), float(label["y"]))
    assert _wait(lambda: app.session.selected_neuron is not None)
    detail = page.locator(".tlx-neuron-detail").first
    detail.wait_for(state="visible", timeout=10000)
    time.sleep(0.5)
    after = page.evaluate(FIGURE_STATE, _ids(view))
    assert (after["w"], after["h"]) == (before["w"], before["h"])
    assert after["x"] == pytest.approx(before["x"]) and after["y"] == pytest.approx(before["y"])
    plot = page.locator(".tlx-network-plot").first.bounding_box()
    panel = page.locator(".tlx-network-details").first.bounding_box()
    assert plot["x"] <= panel["x"] and panel["x"] + panel["width"] <= plot["x"] + plot["width"]
    assert panel["y"] + panel["height"] <= plot["y"] + plot["height"] + 1  # over the plot, inside it
    page.locator(".tlx-area-network").first.screenshot(
        path=str(ARTIFACTS / f"network_{served_net.name}_1920x1080_detail.png"))
    assert not page.js_errors
