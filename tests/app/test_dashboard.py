"""Dashboard: the page factory, bad input shown as alerts, URL arguments, several bundles,
the notebook Explorer and the server entry points (without a browser)."""
from __future__ import annotations

import json
import shutil
import time

import panel as pn
import pytest

from tlexplorer.app import dashboard
from tlexplorer.app.dashboard import Explorer, create_app, view_classes
from tlexplorer.app.page_grid import grid_css
from tlexplorer.app.state import Session
from tlexplorer.errors import BundleError


@pytest.fixture()
def app(synth_path):
    return create_app(str(synth_path), query={}).tlx_app


def _alert_texts(tpl):
    # Template.select trips over its BrowserInfo item in Panel 1.9; the alerts live in main
    return [str(a.object) for item in tpl.main for a in item.select(pn.pane.HTML)
            if "tlx-alert" in a.css_classes]


def test_real_views_are_used():
    classes = view_classes()
    assert classes["network"].__name__ == "NetworkView"
    assert classes["features"].__name__ == "FeatureView"


def test_create_app_builds_the_four_views(synth_path):
    tpl = create_app(str(synth_path), query={})
    assert isinstance(tpl, pn.template.FastListTemplate)
    app = tpl.tlx_app
    assert app.messages == []
    assert set(app.views) == {"stats", "instances", "network", "features"}
    assert isinstance(app.session, Session)
    assert all(v.session is app.session for v in app.views.values())
    # each card is a root of the page (a view arriving lays out its own card only), placed in
    # Fig. 1's areas by the page's grid stylesheet (tests/app/test_page_grid.py, tests/ui)
    cards = [item for item in tpl.main if "tlx-card" in item.css_classes]
    assert [card.css_classes[-1] for card in cards] == [
        "tlx-area-stats", "tlx-area-instances", "tlx-area-network", "tlx-area-features"]
    assert all(card.visible and card.height for card in cards)
    assert grid_css() in tpl.config.raw_css


def test_each_call_is_a_new_session(synth_path):
    a = create_app(str(synth_path), query={}).tlx_app
    b = create_app(str(synth_path), query={}).tlx_app
    assert a.session is not b.session and a.session.bundle is b.session.bundle
    before = b.session.focus_class
    a.session.focus_class = next(c for c in a.session.classes if c != before)
    assert b.session.focus_class == before


def test_not_a_bundle_gives_an_alert(tmp_path):
    tpl = create_app(str(tmp_path / "nope"), query={})
    assert tpl.tlx_app.session is None
    texts = _alert_texts(tpl)
    assert len(texts) == 1 and "nope" in texts[0] and "Traceback" not in texts[0]
    assert not any(card.panel.visible for card in tpl.tlx_app.cards.values())  # no empty cards


def test_newer_schema_gives_an_alert(synth_path, tmp_path):
    newer = tmp_path / "newer"
    shutil.copytree(synth_path, newer)
    manifest = json.loads((newer / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (newer / "manifest.json").write_text(json.dumps(manifest))
    tpl = create_app(str(newer), query={})
    texts = _alert_texts(tpl)
    assert len(texts) == 1 and "99" in texts[0] and "newer" in texts[0]


def test_url_class_and_layer(synth_path):
    app = create_app(str(synth_path), query={"class": "0", "layer": "features.conv2"}).tlx_app
    assert app.messages == []
    assert app.session.focus_class == "0" and app.session.layers == ["features.conv2"]
    # ?class=3 arrives as an int from Panel's query parsing
    app = create_app(str(synth_path), query={"class": 1}).tlx_app
    assert app.session.focus_class == "1"


def test_bad_url_arguments_give_alerts(synth_path):
    app = create_app(str(synth_path),
                     query={"class": "3", "layer": "features.conv9", "bundle": "other"}).tlx_app
    assert app.session is not None  # the page still works
    text = " ".join(app.messages)
    assert "'3'" in text and "features.conv9" in text and "'other'" in text
    assert app.session.layers == app.session.layer_names


def test_several_bundles_give_a_selector(synth_path, tmp_path):
    from synthetic_bundle import make_synthetic_bundle

    other = make_synthetic_bundle(tmp_path / "other", classes=("a", "b"), per_class=4, seed=3)
    tpl = create_app([str(synth_path), str(other), str(tmp_path / "missing")], query={})
    app = tpl.tlx_app
    selects = [w for w in tpl.header if isinstance(w, pn.widgets.Select)]
    assert len(selects) == 1 and list(selects[0].options) == ["bundle", "other", "missing"]
    first = app.session
    app.bundle_name = "other"
    assert app.session is not first and app.session.classes == ["a", "b"]
    assert app.views["stats"].session is app.session
    app.bundle_name = "missing"
    assert app.session is None and "missing" in app.messages[0]
    assert not any(card.panel.visible for card in app.cards.values())
    app.bundle_name = "bundle"
    assert app.session.classes == ["0", "1", "2"] and app.messages == []
    assert all(card.panel.visible for card in app.cards.values())


def test_bundle_from_the_url_only_among_configured(synth_path, tmp_path):
    from synthetic_bundle import make_synthetic_bundle

    other = make_synthetic_bundle(tmp_path / "other", classes=("a", "b"), per_class=4, seed=3)
    app = create_app({"main": str(synth_path), "second": str(other)},
                     query={"bundle": "second"}).tlx_app
    assert app.bundle_name == "second" and app.session.classes == ["a", "b"]
    app = create_app({"main": str(synth_path)}, query={"bundle": str(other)}).tlx_app
    assert app.bundle_name == "main" and "not served here" in app.messages[0]


def test_explorer_for_notebooks(synth_bundle):
    ex = Explorer(synth_bundle)
    assert ex.stats is ex.stats and ex.stats.session is ex.session
    assert type(ex.instances).__name__ == "InstanceView"
    assert type(ex.network).__name__ == "NetworkView"
    assert type(ex.features).__name__ == "FeatureView"
    layout = ex.__panel__()
    assert isinstance(layout, pn.FlexBox)
    with pytest.raises(TypeError):
        Explorer()


def test_explorer_from_path_and_toplevel_import(synth_path):
    import tlexplorer

    ex = tlexplorer.Explorer(str(synth_path))
    assert ex.session.bundle.classes == ["0", "1", "2"]


def test_serve_helpers(synth_path, tmp_path, capsys):
    from tlexplorer.app.serve import app_factory, check_sources

    with pytest.raises(BundleError):
        check_sources([str(tmp_path / "a"), str(tmp_path / "b")])
    sources = check_sources([str(synth_path), str(tmp_path / "gone")])
    assert "gone" in capsys.readouterr().err
    assert list(sources) == ["bundle", "gone"] and sources["bundle"].is_absolute()
    factory = app_factory(sources)
    a, b = factory(), factory()
    assert a is not b and a.tlx_app.session is not b.tlx_app.session


def test_main_reads_args(monkeypatch):
    from tlexplorer.app.main import configured_bundles

    assert configured_bundles(["x", "y"]) == ["x", "y"]
    monkeypatch.setenv("TLX_BUNDLES", "a:b")
    monkeypatch.setattr("sys.argv", ["main.py"])
    assert configured_bundles() == ["a", "b"]


def test_url_adapter_checks_values(app):
    state = dashboard._UrlState(app, cls=app.session.focus_class)
    state.cls = 0  # what ?class=0 gives
    assert app.session.focus_class == "0"
    state.cls = "zzz"
    assert app.session.focus_class == "0" and state.cls == "0"
    assert any("zzz" in m for m in app.messages)


def test_served_with_basic_auth_asks_for_a_login(synth_path, run_server):
    import urllib.error
    import urllib.request

    url = run_server(synth_path, basic_auth="s3cret")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(url, timeout=5)
    info.value.close()
    assert info.value.code == 302 and "login" in info.value.headers["Location"]
    with urllib.request.urlopen(url + "login", timeout=5) as response:
        page = response.read().decode()
    assert "password" in page.lower()


def test_url_adapter_switches_only_to_configured_bundles(synth_path, tmp_path):
    from synthetic_bundle import make_synthetic_bundle

    other = make_synthetic_bundle(tmp_path / "other", classes=("a", "b"), per_class=4, seed=3)
    app = create_app({"main": str(synth_path), "2": str(other)}, query={}).tlx_app
    state = dashboard._UrlState(app, cls=app.session.focus_class, bundle=app.bundle_name)
    state.bundle = "/etc"
    assert app.bundle_name == "main"
    state.bundle = 2  # ?bundle=2 arrives as an int
    assert app.bundle_name == "2" and app.session.classes == ["a", "b"]


def test_a_changed_file_is_named_in_its_view_and_the_others_work(synth_path, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(synth_path, changed)
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["note"] = "a copy"  # another content key: nothing cached for the original is reused
    (changed / "manifest.json").write_text(json.dumps(manifest))
    target = changed / "tables" / "discriminability.parquet"
    data = bytearray(target.read_bytes())
    for i in range(-96, -32):  # 64 flipped bytes, same size: only the sha256 notices
        data[i] ^= 0xFF
    target.write_bytes(bytes(data))
    app = create_app(str(changed), query={}).tlx_app
    assert app.session is not None
    assert set(app.views) == {"stats", "network", "instances"}
    error = app.cards["features"].body.objects[0].object
    assert "discriminability.parquet: corrupt" in error and "sha256" in error
    for key in ("stats", "network", "instances"):
        assert app.cards[key].body.objects[0] is app.views[key].__panel__()


def test_three_sessions_at_once_are_all_served(synth_path, run_server):
    """Three browser sessions opened together: each gets its frame, then all four views."""
    from page_probe import open_pages
    from tlexplorer.app import builds

    url = run_server(synth_path, num_threads=2)
    built = builds.build_queue().built
    results = open_pages(url, 3, timeout=180)
    assert [r.error for r in results] == [None, None, None]
    assert all(r.done_s is not None and r.frame_s < r.done_s for r in results)
    # the queue counts a page once its last step has returned to the worker, which may be just
    # after the browser (here: the probe) received that step's message
    end = time.monotonic() + 10
    while builds.build_queue().built < built + 3 and time.monotonic() < end:
        time.sleep(0.05)
    assert builds.build_queue().built >= built + 3


def test_analysis_warnings_are_a_count_that_opens_the_list(synth_path, tmp_path):
    warned = tmp_path / "warned"
    shutil.copytree(synth_path, warned)
    manifest = json.loads((warned / "manifest.json").read_text())
    manifest["warnings"] = ["pair a -> b skipped: <residual> sum", "completeness gap in c"]
    (warned / "manifest.json").write_text(json.dumps(manifest))
    app = create_app(str(warned), query={}).tlx_app
    toggle, listing = app.analysis_warnings.objects
    assert toggle.name.endswith("2 warnings from the analysis") and not listing.visible
    assert "&lt;residual&gt;" in listing.object and "completeness gap in c" in listing.object
    toggle.value = True
    assert listing.visible
    assert create_app(str(synth_path), query={}).tlx_app.analysis_warnings.objects == []
