"""Instance view: class filter, raster/glyph switch by visible count, hover/tap details,
box and lasso selection, and the background re-projection."""
from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import holoviews as hv
import numpy as np
import pandas as pd
import polars as pl
import pytest

from tlexplorer.app.views import class_colors
from tlexplorer.app.views.instances import (InstanceView, instance_frame, rasterize_points,
                                            thumbnail_uri)


@pytest.fixture()
def view(synth_session):
    # the classes' own layout arrives from a background job: tests of the global layout skip it
    return InstanceView(session=synth_session, project_classes=False)


def _layers(overlay):
    return {el.group: el for el in overlay}


def test_default_classes_are_focus_and_its_confusion(view, synth_session):
    s = synth_session
    assert s.selected_classes[0] == s.focus_class and len(s.selected_classes) == 2
    table = s.bundle.table("instances")
    expected = table.filter(pl.col("class_name").is_in(s.selected_classes))["row"].to_list()
    assert sorted(view.shown_rows.tolist()) == sorted(expected)


def test_class_and_domain_filters_change_the_scatter(view, synth_session):
    rev = view.revision
    synth_session.selected_classes = ["0"]
    assert view.revision == rev + 1
    assert set(view._sub["class_name"].astype(str)) == {"0"}
    view.domain = "target"
    assert set(view._sub["role"].astype(str)) == {"target"}
    overlay = view._render(revision=view.revision)
    glyphs = _layers(overlay)["Instances"]
    assert set(glyphs.dimension_values("class_name")) == {"0"}
    assert len(glyphs) == len(view.shown_rows) == 40


def test_switches_between_raster_and_glyphs_by_visible_count(view):
    n = len(view.shown_rows)
    view.raster_threshold = n - 1
    full = view._render(revision=view.revision, width=300, height=200)
    assert view.mode == "raster" and view.visible_count == n
    layers = _layers(full)
    assert layers["Density"].data.shape == (200, 300, 4) and len(layers["Instances"]) == 0
    assert layers["Density"].data[..., 3].max() > 0
    # zoom onto a few points: real glyphs again
    x, y = view._sx[0], view._sy[0]
    zoom = view._render(x_range=(x - 0.5, x + 0.5), y_range=(y - 0.5, y + 0.5),
                        width=300, height=200, revision=view.revision)
    assert view.mode == "glyphs" and 1 <= view.visible_count < n
    layers = _layers(zoom)
    assert len(layers["Instances"]) == view.visible_count
    assert layers["Density"].data.shape == (1, 1, 4)
    # the overlay always has the same layers, so the plot is built once
    assert [type(e).__name__ for e in full] == [type(e).__name__ for e in zoom]


def test_glyphs_encode_class_domain_and_misprediction(view, synth_session):
    overlay = view._render(revision=view.revision)
    layers = _layers(overlay)
    glyphs, mis = layers["Instances"], layers["Mispredicted"]
    frame = glyphs.dframe()
    assert set(frame["marker"]) == {"x", "circle"}  # one per domain
    table = synth_session.bundle.table("instances")
    wrong = table.filter((pl.col("target_pred") != pl.col("label"))
                         & pl.col("class_name").is_in(synth_session.selected_classes))
    assert len(mis) == wrong.height > 0
    assert frame["thumb"].str.contains("data:image/png;base64,").all()
    assert frame["prediction"].str.endswith(" ✗").sum() == wrong.height
    # the rendered plot: colour by class (shared palette), marker by domain, selection tools
    from bokeh.models import BoxSelectTool, GlyphRenderer, LassoSelectTool, TapTool

    fig = hv.render(view.plot())
    main = next(r for r in fig.select(GlyphRenderer) if "instance_id" in r.data_source.data)
    data = main.data_source.data
    colors = class_colors(synth_session.classes)
    mapper = main.glyph.fill_color["transform"]  # class name -> colour, in the browser
    assert list(data[main.glyph.fill_color["field"]]) == list(data["class_name"])
    mapped = {f: c.lower() for f, c in zip(mapper.factors, mapper.palette)}
    assert all(mapped[c] == colors[c].lower() for c in set(data["class_name"]))
    # the hover card's domain line comes from the marker: one text per domain
    table = synth_session.bundle.table("instances")
    formatter = view._hover.formatters["@marker"]
    for role, marker in (("source", "x"), ("target", "circle")):
        domain = table.filter(pl.col("role") == role)["domain"][0]
        assert f'"{marker}": "{domain} ({role})"' in formatter.code
    assert set(data["marker"]) == {"x", "circle"}
    assert {BoxSelectTool, LassoSelectTool, TapTool} <= {type(t) for t in fig.tools}
    assert [type(r.glyph).__name__ for r in fig.renderers] == ["ImageRGBA", "Scatter", "Scatter"]


def test_hover_thumbnails_only_up_to_the_limit(view):
    view.hover_thumbnails = 3
    glyphs = _layers(view._render(revision=view.revision))["Instances"]
    assert (glyphs.dframe()["thumb"] == "").all()


def test_tap_shows_the_nearest_instance(view, synth_session):
    view._render(revision=view.revision, width=400, height=300)
    row = int(view._sub["row"].iloc[3])
    view._on_tap(x=float(view._sx[3]), y=float(view._sy[3]))
    assert view.tapped_row == row
    html = view.tap_detail_html()
    info = synth_session.bundle.table("instances").row(row, named=True)
    assert info["instance_id"] in html and "data:image/png;base64," in html
    view._on_tap(x=1e9, y=1e9)  # far from every point: nothing changes
    assert view.tapped_row == row
    uri = thumbnail_uri(synth_session.bundle, row)
    assert uri == thumbnail_uri(synth_session.bundle, row)  # cached


def test_box_and_lasso_selection(view, synth_session):
    x0, x1 = np.percentile(view._sx, [20, 80])
    y0, y1 = np.percentile(view._sy, [20, 80])
    view._on_bounds(bounds=(x0, y0, x1, y1))
    inside = ((view._sx >= x0) & (view._sx <= x1) & (view._sy >= y0) & (view._sy <= y1))
    assert sorted(synth_session.selected_instances) == sorted(
        view._sub["row"].to_numpy()[inside].tolist())
    view._on_lasso(geometry=np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
    assert len(synth_session.selected_instances) == int(inside.sum())
    triangle = np.array([[x0, y0], [x1, y0], [x0, y1]])
    view._on_lasso(geometry=triangle)
    assert 0 < len(synth_session.selected_instances) < int(inside.sum()) + 1
    assert len(view.selected_frame()) == len(synth_session.selected_instances)


def test_reprojection_runs_in_background_and_updates_the_layout(view, synth_session,
                                                                monkeypatch):
    calls = {}

    def fake_project_subset(embeddings, layout, subset, *, random_state=0, callback=None,
                            **kw):
        calls["args"] = (embeddings.shape, layout.shape, np.asarray(subset).copy(), kw)
        for i in range(1, 11):
            callback(i * 10, 100)
        return np.column_stack([np.arange(len(subset)), -np.arange(len(subset))]).astype(
            np.float32)

    module = types.ModuleType("tlexplorer.analysis.embedding")
    module.project_subset = fake_project_subset
    monkeypatch.setitem(sys.modules, "tlexplorer.analysis.embedding", module)
    rows = view.shown_rows[:12].tolist()
    synth_session.selected_instances = rows
    job = view.reproject_selection()
    assert job is not None
    job.wait(10)
    assert calls["args"][0][0] == calls["args"][1][0] == synth_session.bundle.table(
        "instances").height
    np.testing.assert_array_equal(calls["args"][2], sorted(rows))
    assert view.reprojected and not view.reprojecting and view.progress == 1.0
    assert calls["args"][3] == {"n_jobs": 1} and not synth_session.busy
    np.testing.assert_array_equal(view.shown_rows, sorted(rows))
    np.testing.assert_array_equal(view._sx, np.arange(12))
    view.reset_projection()
    assert not view.reprojected and len(view.shown_rows) > 12


def test_reprojection_needs_a_selection(view, synth_session):
    synth_session.selected_instances = [1, 2]
    assert view.reproject_selection() is None
    assert "at least 5" in synth_session.status


def test_class_details(view, synth_session):
    frame = view.details_frame()
    assert frame["class"].to_list() == [c for c in synth_session.classes
                                        if c in synth_session.selected_classes]
    assert (frame["n_S"] == 40).all() and (frame["n_T"] == 40).all()
    table = synth_session.bundle.table("instances")
    c = frame["class"][0]
    tgt = table.filter((pl.col("class_name") == c) & (pl.col("role") == "target"))
    wrong = int((tgt["target_pred"] != tgt["label"]).sum())
    assert frame["mispredicted_T"][0] == wrong
    assert frame["target_acc_T"][0] == pytest.approx(1 - wrong / 40)


def test_rasterize_keeps_category_colours_and_orientation():
    frame = pd.DataFrame({"x": [0.1, 0.9], "y": [0.9, 0.1],
                          "class_name": pd.Categorical(["a", "b"], categories=["a", "b"])})
    pts = hv.Points(frame, ["x", "y"], ["class_name"])
    colors = np.array([[255, 0, 0], [0, 0, 255]], np.float32)
    img = rasterize_points(pts, None, x_range=(0, 1), y_range=(0, 1), width=10, height=10,
                           colors=colors, visible=2)
    assert img.shape == (10, 10, 4)
    top_left, bottom_right = img[:3, :3], img[-3:, -3:]
    assert top_left[..., 3].max() > 0 and top_left[..., 0].max() == 255  # "a" is red, up left
    assert bottom_right[..., 3].max() > 0 and bottom_right[..., 2].max() == 255
    mis = hv.Points(frame.iloc[:1], ["x", "y"], ["class_name"])
    haloed = rasterize_points(pts, mis, x_range=(0, 1), y_range=(0, 1), width=10, height=10,
                              colors=colors, visible=2)
    assert (haloed[..., 3] > 0).sum() > (img[..., 3] > 0).sum()  # a gray ring around "a"


def test_instance_frame_is_shared(synth_bundle):
    assert instance_frame(synth_bundle) is instance_frame(synth_bundle)
    frame = instance_frame(synth_bundle)
    assert list(frame["class_name"].cat.categories) == synth_bundle.classes


def test_panel_builds(view):
    layout = view.__panel__()
    assert layout is view.__panel__()
    assert layout.get_root() is not None
    assert view.mode == "glyphs"


def test_reprojection_with_the_real_embedding_function(view, synth_session):
    pytest.importorskip("openTSNE")
    rows = view.shown_rows[:40].tolist()
    synth_session.selected_instances = rows
    job = view.reproject_selection()
    xy = job.wait(60)
    assert xy.shape == (40, 2) and np.isfinite(xy).all()
    assert view.reprojected and sorted(view.shown_rows.tolist()) == sorted(rows)
    assert synth_session.status.endswith("done")


def test_panes_are_built_once_and_updated(view, synth_session):
    import panel as pn

    layout = view.__panel__()
    details = layout.select(pn.widgets.Tabulator)[0]
    legend = view._panes["legend"]
    synth_session.selected_classes = ["1"]
    assert layout.select(pn.widgets.Tabulator)[0] is details
    assert list(details.value["class"]) == ["1"]
    assert "1</span>" in legend.object
    view._on_tap(x=float(view._sx[0]), y=float(view._sy[0]))
    assert "data:image/png" in view._panes["tap"].object
    synth_session.selected_instances = [1, 2, 3]
    assert "3 selected" in view._panes["selection"].object


def test_selected_classes_get_their_own_layout_cached_per_class_set(synth_session):
    import time

    from tlexplorer.app.views import instances

    instances._CLASS_LAYOUTS.clear()
    s = synth_session
    shutil.rmtree(Path(s.bundle.path) / "cache" / "class_layouts", ignore_errors=True)
    view = InstanceView(session=s)
    classes = tuple(sorted(s.selected_classes))
    assert view.reprojecting and view._class_job is not None
    view._class_job.wait(60)
    end = time.monotonic() + 10
    while not view.reprojected and time.monotonic() < end:
        time.sleep(0.05)
    assert view.reprojected and view._override_kind == "classes"
    rows = view._class_rows(classes)
    assert sorted(view.shown_rows.tolist()) == sorted(rows.tolist())
    layout = np.asarray(s.bundle.array("tsne"))[rows]
    assert not np.allclose(np.column_stack([view._override[1]]), layout)  # its own positions
    assert "selected classes on their own" in view.selection_html()
    # a selection belongs to the classes it was made on; another class set starts over
    s.selected_instances = rows[:3].tolist()
    other = next(c for c in s.classes if c not in classes)
    s.selected_classes = [other]
    assert s.selected_instances == [] and not view.reprojected
    view._class_job.wait(60)
    # back to the first set: from the cache, at once, also in another session's view
    s.selected_classes = list(classes)
    assert view.reprojected and view._class_job is None
    second = InstanceView(session=s)
    assert second.reprojected and second._class_job is None
    np.testing.assert_array_equal(second._override[1], view._override[1])
    # and from the bundle's cache in a process that has not laid it out (a fresh server)
    instances._CLASS_LAYOUTS.clear()
    third = InstanceView(session=s)
    assert third.reprojected and third._class_job is None
    np.testing.assert_array_equal(third._override[1], view._override[1])


def test_a_class_keeps_its_colour_whatever_is_selected(view, synth_session):
    colors = class_colors(synth_session.classes)
    from bokeh.models import GlyphRenderer

    for chosen in (["0", "1"], ["1", "2"], ["1"]):
        synth_session.selected_classes = chosen
        fig = hv.render(view.plot())
        main = next(r for r in fig.select(GlyphRenderer) if "instance_id" in r.data_source.data)
        mapper = main.glyph.fill_color["transform"]
        # every class, selected or not, in the browser's colour mapper with its own colour
        assert {f: c.lower() for f, c in zip(mapper.factors, mapper.palette)} == {
            c: v.lower() for c, v in colors.items()}
        assert set(main.data_source.data["class_name"]) == set(chosen)


def test_what_the_browser_reports_after_drawing_draws_nothing_again(view):
    events = []
    view._render(revision=view.revision)  # glyphs
    view._viewport.add_subscriber(lambda **contents: events.append(contents))
    (x0, x1), (y0, y1) = view._rendered_range
    view._on_range(x_range=(x0, x1), y_range=(y0, y1))  # the range it drew
    view._on_plot_size(width=640, height=480)  # glyphs do not depend on the pixel size
    assert events == []
    view._on_range(x_range=(x0, (x0 + x1) / 2), y_range=(y0, y1))  # a zoom
    assert len(events) == 1
    # a raster is drawn for the plot's pixel size: a new size draws it again
    view.raster_threshold = 0
    view._render(revision=view.revision, x_range=(x0, x1), y_range=(y0, y1))
    assert view.mode == "raster"
    view._on_plot_size(width=700, height=500)
    assert len(events) == 2 and view._size == (700, 500)


def test_the_scatter_draws_on_a_canvas_not_webgl(view):
    assert hv.render(view.plot()).output_backend == "canvas"
