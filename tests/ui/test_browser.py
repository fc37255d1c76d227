"""Browser tier: the served dashboard in Debian's chromium (Playwright).

Run with ``pytest -m browser tests/ui``. Screenshots go to ``test-artifacts/``; the page-ready
time of the first test is written to ``test-artifacts/page_ready.txt``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

#: One selector per view that exists once the view has rendered.
VIEW_READY = {
    "stats chart": ".tlx-accuracy-chart canvas",
    "confusion table": ".tlx-confusion-table .tabulator-row",
    "instance scatter": ".tlx-instance-scatter canvas",
    "network": ".tlx-network-plot canvas",
    "features": ".tlx-discriminability-plot canvas",
}
#: Generous bound for a shared 2-core CI box; the measured time is reported, the target is 3 s.
PAGE_READY_LIMIT_S = float(os.environ.get("TLX_PAGE_READY_LIMIT", "20"))


def _wait(predicate, timeout=15.0, interval=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _open(page, served, query=""):
    n = len(served.apps)
    start = time.perf_counter()
    page.goto(served.url + query)
    for selector in VIEW_READY.values():
        page.wait_for_selector(selector, state="attached", timeout=30000)
    ready = time.perf_counter() - start
    return served.wait_for_app(n + 1), ready


def _shot(page, name):
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


from page_text import deep_text as _deep_text  # noqa: E402


def _network_title_class(page) -> str:
    return page.locator(".tlx-network-titlebar select").first.input_value()


def test_every_view_renders(page, served):
    app, ready = _open(page, served)
    # a second load measures the steady state (the first one also pays for JS/CSS caching)
    app, ready_again = _open(page, served)
    (ARTIFACTS / "page_ready.txt").write_text(json.dumps(
        {"first_s": round(ready, 2), "second_s": round(ready_again, 2),
         "load_avg": os.getloadavg()}) + "\n")
    _shot(page, "dashboard")
    assert ready_again < PAGE_READY_LIMIT_S
    assert app.session is not None and app.messages == []
    for name, selector in VIEW_READY.items():
        assert page.locator(selector).count() >= 1, name
    rows = page.locator(".tlx-confusion-table .tabulator-row")
    assert rows.count() == len(app.session.classes)
    assert _deep_text(page.locator(".tlx-score-value").first).strip().startswith(("+", "-"))
    assert _network_title_class(page) == app.session.focus_class
    assert not page.js_errors


def test_table_row_click_changes_the_network_class(page, served):
    app, _ = _open(page, served)
    session = app.session
    other = next(c for c in session.classes if c != session.focus_class)
    cell = page.locator('.tlx-confusion-table .tabulator-cell[tabulator-field="class"]',
                        has_text=other).first
    cell.click()
    assert _wait(lambda: session.focus_class == other)
    assert _wait(lambda: _network_title_class(page) == other)
    network = app.views["network"]
    assert _wait(lambda: network.data is not None and network.data.cls == other)
    assert _wait(lambda: f"class={other}" in page.url)  # the focus class is in the URL
    _shot(page, "row_click")


def test_similarity_switch_goes_to_the_papers_scale_and_back(page, served):
    app, _ = _open(page, served)
    network = app.views["network"]
    assert _wait(lambda: network.frames and len(network.frames["cells"]) > 0)
    assert app.session.stretch_similarity  # readable by default: the shown range
    before = list(network.frames["cells"]["color"])
    page.locator(".tlx-similarity-switch button", has_text="0–1").first.click()
    assert _wait(lambda: not app.session.stretch_similarity)
    assert _wait(lambda: list(network.frames["cells"]["color"]) != before)
    legend = page.locator(".tlx-similarity-scale").first
    assert _wait(lambda: "similarity 0.00" in _deep_text(legend)
                 and "1.00" in _deep_text(legend))  # the range is always in the legend
    _shot(page, "similarity_paper_scale")
    page.locator(".tlx-similarity-switch button", has_text="shown range").first.click()
    assert _wait(lambda: app.session.stretch_similarity)
    assert _wait(lambda: list(network.frames["cells"]["color"]) == before)
    assert not page.js_errors


def test_class_selection_changes_the_scatter(page, served):
    app, _ = _open(page, served)
    session, view = app.session, app.views["instances"]
    chosen = list(session.selected_classes)
    assert len(chosen) == 2
    assert _wait(lambda: not view.reprojecting, timeout=60)
    scatter = page.locator(".tlx-instance-scatter").first
    before = scatter.screenshot()
    # remove the second class with the chip's "x" in the MultiChoice
    page.locator(".tlx-class-selector .choices__button").nth(1).click()
    assert _wait(lambda: len(session.selected_classes) == 1)
    left = session.selected_classes[0]
    assert left in chosen
    assert _wait(lambda: set(view._sub["class_name"].astype(str)) == {left})
    time.sleep(1.0)  # let the browser draw the new frame
    after = scatter.screenshot()
    assert before != after
    _shot(page, "class_selection")


def _click_data_point(page, figure_id: str, x: float, y: float, click: bool = True) -> None:
    """Click (or only hover) where data point (x, y) of the Bokeh figure is drawn."""
    pos = page.evaluate(
        """([id, x, y]) => {
            const fig = Bokeh.documents.map(d => d.get_model_by_id(id)).find(m => m);
            const view = Bokeh.index.find_one(fig);
            const r = view.canvas_view.el.getBoundingClientRect();
            return [r.left + view.frame.x_scale.compute(x), r.top + view.frame.y_scale.compute(y)];
        }""", [figure_id, x, y])
    if click:
        page.mouse.click(pos[0], pos[1])
    else:
        page.mouse.move(pos[0] - 3, pos[1] - 3)
        page.mouse.move(pos[0], pos[1])


def _scatter_figure_id(view) -> str:
    import panel as pn

    pane = view.__panel__().select(pn.pane.HoloViews)[0]
    return next(iter(pane._models.values()))[0].id


def test_scatter_hover_tap_and_raster(page, served):
    app, _ = _open(page, served)
    view = app.views["instances"]
    assert _wait(lambda: not view.reprojecting, timeout=60)  # the classes' own layout is in
    page.locator(".tlx-instance-scatter").first.scroll_into_view_if_needed()
    time.sleep(0.5)
    fig = _scatter_figure_id(view)
    i = int(len(view._sx) // 2)
    x, y = float(view._sx[i]), float(view._sy[i])
    _click_data_point(page, fig, x, y, click=False)  # hover
    tooltip = page.locator(".tlx-tooltip").first
    tooltip.wait_for(state="visible", timeout=10000)
    assert page.locator(".tlx-tooltip").count() == 1  # the nearest instance only
    img = tooltip.locator("img").first
    assert "tlx-thumbnail/" in img.get_attribute("src")  # fetched from the server on hover
    assert _wait(lambda: img.evaluate("i => i.complete && i.naturalWidth > 0"))
    assert "target model" in _deep_text(tooltip)
    _shot(page, "hover")
    _click_data_point(page, fig, x, y)  # tap: pins the instance in the detail pane
    assert _wait(lambda: view.tapped_row is not None)
    info = app.session.bundle.table("instances").row(view.tapped_row, named=True)
    detail = page.locator(".tlx-instance-detail").first
    assert _wait(lambda: info["instance_id"] in _deep_text(detail))
    # many visible points: the scatter becomes a datashader raster (here: lower the threshold)
    served.run_in_session(app, lambda: view.param.update(raster_threshold=10,
                                                         revision=view.revision + 1))
    assert _wait(lambda: view.mode == "raster")
    lengths = """(id) => Bokeh.documents.map(d => d.get_model_by_id(id)).find(m => m)
                     .renderers.map(r => [r.glyph.type, r.data_source.get_length()])"""
    assert _wait(lambda: page.evaluate(lengths, fig) == [["ImageRGBA", 1], ["Scatter", 0],
                                                         ["Scatter", 0]])
    page.mouse.move(5, 5)
    time.sleep(0.5)
    _shot(page, "raster")


def test_neuron_click_opens_its_detail_panel(page, served):
    app, _ = _open(page, served)
    network = app.views["network"]
    assert _wait(lambda: network.frames and len(network.frames["labels"]) > 0)
    labels = network.frames["labels"]
    label = labels.iloc[0]
    assert page.locator(".tlx-neuron-detail").count() == 0 or not page.locator(
        ".tlx-neuron-detail").first.is_visible()
    _click_data_point(page, network._figure.id, float(label["x"]), float(label["y"]))
    want = (str(label["model"]), str(label["layer"]), int(label["neuron"]))
    assert _wait(lambda: app.session.selected_neuron == want)
    detail = page.locator(".tlx-neuron-detail").first
    detail.wait_for(state="visible", timeout=10000)
    assert f"{label['neuron']}" in _deep_text(detail)
    _shot(page, "neuron_detail")


def test_bad_url_arguments_show_an_alert(page, served):
    app, _ = _open(page, served, "?class=zzz&layer=features.conv9")
    alert = page.locator(".tlx-alert").first
    alert.wait_for(state="visible", timeout=10000)
    text = " ".join(_deep_text(a) for a in page.locator(".tlx-alert").all())
    assert "zzz" in text and "features.conv9" in text
    assert app.session is not None  # the page still works
    _shot(page, "bad_url")


def test_everything_is_served_locally(page, served):
    """Offline (a lab network without internet): every request goes to the server itself."""
    elsewhere, failed = [], []
    host = served.url.split("/")[2]
    page.on("request", lambda r: elsewhere.append(r.url)
            if not r.url.startswith(("data:", "blob:")) and r.url.split("/")[2] != host else None)
    page.on("requestfailed", lambda r: failed.append(r.url))
    _open(page, served)
    time.sleep(1.0)
    assert elsewhere == [] and failed == []
