"""Browser tier: names from a dataset and values from a URL are shown as text, never run."""
from __future__ import annotations

import time
import urllib.parse

import pytest

import synthetic_bundle

pytestmark = pytest.mark.browser

CLASSES = ("<img src=x onerror=\"window.__xss=1;alert(1)\">", "b&c <b>bold</b>",
           "'\"><script>window.__xss=2</script>")
DOMAINS = ("<svg onload=\"window.__xss=3\">", "t<i>x</i>")
URL_PAYLOAD = "<img src=y onerror=\"window.__xss=4;alert(4)\">"
READY = [".tlx-accuracy-chart canvas", ".tlx-confusion-table .tabulator-row",
         ".tlx-instance-scatter canvas", ".tlx-network-plot canvas",
         ".tlx-discriminability-plot canvas"]


@pytest.fixture(scope="module")
def served_payloads(tmp_path_factory, serve_bundle):
    path = synthetic_bundle.make_synthetic_bundle(
        tmp_path_factory.mktemp("xss") / "payloads", classes=CLASSES, per_class=20, seed=1,
        domains=DOMAINS)
    return serve_bundle(path)


def test_payload_names_and_url_values_stay_text(page, served_payloads, deep_text):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    query = urllib.parse.urlencode({"class": URL_PAYLOAD, "layer": URL_PAYLOAD,
                                    "bundle": URL_PAYLOAD})
    page.goto(served_payloads.url + "?" + query)
    for selector in READY:
        page.wait_for_selector(selector, state="attached", timeout=60000)
    app = served_payloads.wait_for_app(len(served_payloads.apps))
    # open the class selector's list, hover and click through the confusion table
    page.locator(".tlx-class-selector .choices").first.click()
    time.sleep(0.5)
    for row in page.locator(".tlx-confusion-table .tabulator-row").all():
        row.click()
        time.sleep(0.3)
    page.mouse.move(5, 5)
    time.sleep(1.0)
    text = deep_text(page.locator("body"))
    page.screenshot(path=str(synthetic_bundle.Path(__file__).resolve().parents[2]
                             / "test-artifacts" / "xss.png"))
    assert dialogs == []
    assert page.evaluate("window.__xss") is None
    assert URL_PAYLOAD in text                 # the URL's value, shown literally in the alert
    for name in CLASSES:
        assert name in text, name              # every class name, shown literally
    assert app.session is not None and not page.js_errors
