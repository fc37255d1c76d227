"""Browser tier: at 1440×900, 1920×1080 and 2560×1440 no text of the views is cut off by its
box, unless it ends in an ellipsis that shows the whole text on hover (a title or a table cell's
tooltip). Screenshots of each size go to test-artifacts/ (look at them)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import synthetic_bundle

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SIZES = [(1440, 900), (1920, 1080), (2560, 1440)]
READY = [".tlx-accuracy-chart canvas", ".tlx-network-plot canvas",
         ".tlx-discriminability-plot canvas", ".tlx-instance-scatter canvas"]

#: Every text node of an element (shadow roots included) that a clipping ancestor cuts short
#: without an ellipsis, or that ends in an ellipsis with no way to read the rest.
CLIPPED_TEXT = """(root) => {
  const out = [];
  const parentOf = el => el.parentElement || (el.getRootNode() && el.getRootNode().host) || null;
  const clipper = (el, r) => {
    for (let a = parentOf(el); a; a = parentOf(a)) {
      const cs = getComputedStyle(a);
      if (cs.overflowX === 'visible' && cs.overflowY === 'visible') continue;
      if (cs.overflowX === 'auto' || cs.overflowX === 'scroll') return null;  // scrolls: reachable
      const b = a.getBoundingClientRect();
      if (b.width === 0 || b.height === 0) return null;
      if (r.right > b.right + 1 || r.left < b.left - 1) return a;
    }
    return null;
  };
  const walk = n => {
    const kids = n.shadowRoot ? [n.shadowRoot, ...n.childNodes] : [...n.childNodes];
    for (const c of kids) {
      if (c.nodeType === 3 && c.textContent.trim() && c.parentElement) {
        const el = c.parentElement;
        if (el.closest('.choices__button')) continue;  // icon buttons hide their label on purpose
        const range = document.createRange();
        range.selectNodeContents(c);
        const r = range.getBoundingClientRect();
        if (r.width === 0) continue;
        const cs = getComputedStyle(el);
        if (cs.textOverflow === 'ellipsis' && el.scrollWidth > el.clientWidth + 1) {
          if (!(el.title || el.closest('[title]') || el.closest('.tabulator-cell')
                || el.closest('.tabulator-col')))
            out.push('ellipsis without the whole text: ' + c.textContent.trim().slice(0, 50));
          continue;
        }
        if (clipper(el, r)) out.push('cut off: ' + c.textContent.trim().slice(0, 50));
      } else if (c.nodeType === 1 || c.nodeType === 11) walk(c);
    }
  };
  walk(root);
  return out;
}"""


@pytest.mark.parametrize("width,height", SIZES)
def test_no_text_of_the_views_is_cut_off(browser, served, width, height):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        page.goto(served.url)
        for selector in READY:
            page.wait_for_selector(selector, state="attached", timeout=60000)
        time.sleep(2.0)  # background jobs (network blocks, feature images) settle
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"layout-{width}x{height}.png"))
        problems = {area: page.locator(f".tlx-area-{area}").first.evaluate(CLIPPED_TEXT)
                    for area in ("stats", "instances", "network", "features")}
        assert {a: p for a, p in problems.items() if p} == {}
        _assert_fig1_arrangement(page, width)
    finally:
        context.close()


def _assert_fig1_arrangement(page, width: int) -> None:
    """The cards (each a root of the page, placed by app/page_grid.py) sit where Fig. 1 has them:
    stats over instances, network beside them, features on the right where the window is wide
    enough and below otherwise; none overlaps another or leaves the window."""
    box = {area: page.locator(f".tlx-area-{area}").first.bounding_box()
           for area in ("stats", "instances", "network", "features")}
    stats, instances, network, features = (box[a] for a in box)
    assert abs(stats["x"] - instances["x"]) < 1 and instances["y"] >= stats["y"] + stats["height"]
    assert network["x"] >= stats["x"] + stats["width"] and abs(network["y"] - stats["y"]) < 1
    if width >= 1600:
        assert features["x"] >= network["x"] + network["width"]
        assert abs(features["y"] - stats["y"]) < 1
    else:
        assert features["y"] >= max(instances["y"] + instances["height"],
                                    network["y"] + network["height"])
        assert features["width"] > 0.9 * (network["x"] + network["width"] - stats["x"])
    for a, first in box.items():
        assert first["width"] > 400 and first["x"] + first["width"] <= width, a
        for b, other in box.items():
            if a < b:
                apart = (first["x"] + first["width"] <= other["x"] + 1
                         or other["x"] + other["width"] <= first["x"] + 1
                         or first["y"] + first["height"] <= other["y"] + 1
                         or other["y"] + other["height"] <= first["y"] + 1)
                assert apart, (a, b)


def test_the_bundle_selector_shows_the_chosen_name_legibly(browser, serve_bundle, tmp_path):
    """With several bundles the header has a selector; the chosen name must not take the
    header's white text colour onto the selector's white background (it did)."""
    paths = [synthetic_bundle.make_synthetic_bundle(tmp_path / name, per_class=8, seed=i)
             for i, name in enumerate(("first", "second"))]
    served = serve_bundle(paths)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    try:
        page.goto(served.url)
        select = page.locator(".tlx-bundle-select select").first
        select.wait_for(state="attached", timeout=60000)
        value, color, background = select.evaluate(
            "s => [s.value, getComputedStyle(s).color, getComputedStyle(s).backgroundColor]")
        assert value == "first"
        assert color != background and color != "rgb(255, 255, 255)"
    finally:
        context.close()
