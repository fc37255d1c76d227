"""A bundle is data and a URL is text: neither chooses code nor becomes markup in the page."""
from __future__ import annotations

import html

import panel as pn
import pytest

from synthetic_bundle import make_synthetic_bundle
from tlexplorer.app.dashboard import create_app
from tlexplorer.app.views.neuron_detail import FeatureVisService

HUBCONF = """
import pathlib
pathlib.Path({marker!r}).write_text("the bundle's code ran")
def x(**kwargs):
    pathlib.Path({marker!r}).write_text("the bundle's code ran")
"""

PAYLOAD = "<img src=x onerror=alert(1)>"


@pytest.fixture()
def hub_bundle(tmp_path):
    """A bundle whose manifest names ``torch.hub:load`` on a ``hubconf.py`` inside it."""
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil"
    spec = {"name": "torch.hub:load", "num_classes": 3,
            "kwargs": {"repo_or_dir": str(path), "model": "x", "source": "local",
                       "trust_repo": True}}
    make_synthetic_bundle(path, per_class=8, model=spec)
    (path / "hubconf.py").write_text(HUBCONF.format(marker=str(marker)))
    return path, marker


def test_a_bundle_naming_code_never_runs_it(hub_bundle):
    path, marker = hub_bundle
    from tlexplorer.bundle import open_bundle

    open_bundle(path).verify()  # a well-formed bundle: the reader has no reason to refuse it
    app = create_app(str(path), query={}).tlx_app
    assert app.session is not None
    # the page says in one line why images are not computed live, and how to allow it
    text = " ".join(app.messages)
    assert "torch.hub:load" in text and "--allow-factory torch.hub:load" in text
    service = FeatureVisService(app.session.bundle)
    assert "--allow-factory" in service.unavailable
    layer = app.session.layer_names[0]
    future = service.request("target", layer, 0)
    with pytest.raises(RuntimeError, match="may not import"):
        future.result(timeout=30)
    with pytest.raises(Exception, match="may not import"):
        service.model("target")
    weight = service.request_weight_map("target", layer, app.session.layer_names[1], 0, 0, 0)
    with pytest.raises(Exception, match="may not import"):
        weight.result(timeout=30)
    assert not marker.exists()


def test_url_arguments_are_text_in_messages(synth_path):
    query = {"class": PAYLOAD, "layer": "<svg onload=alert(2)>", "bundle": "<b>x</b>"}
    tpl = create_app(str(synth_path), query=query)
    app = tpl.tlx_app
    shown = [a.object for a in app.alerts.objects]
    assert len(shown) == 3
    for raw in query.values():
        assert any(raw in m for m in app.messages)  # the message names the value...
        assert not any(raw in s for s in shown)      # ...which the page shows escaped
        assert any(html.escape(raw) in s for s in shown)


def test_class_names_are_escaped_in_widgets_and_status(tmp_path):
    classes = (PAYLOAD, "b&c", "'\"><script>alert(3)</script>")
    path = make_synthetic_bundle(tmp_path / "b", classes=classes, per_class=8,
                                 domains=("<svg onload=alert(4)>", "t<i>x</i>"))
    app = create_app(str(path), query={}).tlx_app
    session = app.session
    session.status = f"Network view: class {PAYLOAD}: done"
    assert PAYLOAD not in app.status.object and html.escape(PAYLOAD) in app.status.object
    selector = app.views["instances"].__panel__().select(pn.widgets.MultiChoice)[0]
    assert list(selector.options.values()) == list(classes)
    assert all("<" not in label for label in selector.options)
    selector.value = [PAYLOAD]
    assert session.selected_classes == [PAYLOAD]
    # every HTML pane of the page shows the names only escaped
    for pane in tpl_html_panes(app):
        for raw in (*classes, "<svg onload=alert(4)>", "t<i>x</i>"):
            assert raw not in str(pane.object), (raw, pane.object[:200])


def tpl_html_panes(app):
    out = []
    for view in app.views.values():
        out += view.__panel__().select(pn.pane.HTML)
    out += app.alerts.select(pn.pane.HTML)
    return out
