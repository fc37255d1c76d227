"""Statistics summary: accuracy chart series, transferability score, confusion table and exports."""
from __future__ import annotations

import io
from types import SimpleNamespace

import polars as pl
import pytest

from tlexplorer.app.export import flatten_for_csv, to_csv_bytes
from tlexplorer.app.views import NEGATIVE_COLOR, POSITIVE_COLOR, SOURCE_COLOR, TARGET_COLOR
from tlexplorer.app.views.stats import (StatsView, accuracy_chart, accuracy_series,
                                        confusion_display, parse_sort, series_label)


def test_accuracy_chart_has_the_papers_six_series(synth_bundle):
    from bokeh.models import GlyphRenderer, SaveTool

    history = synth_bundle.table("history")
    series = {s["label"]: s for s in accuracy_series(history)}
    assert set(series) == {"source train (S)", "target train (S)", "source val (S)",
                           "source train (T)", "target train (T)", "target val (T)"}
    assert all(s["marker"] == ("x" if s["model"] == "source" else "circle")
               for s in series.values())
    assert series["source train (S)"]["color"] == series["source train (T)"]["color"] \
        == SOURCE_COLOR
    assert series["target train (S)"]["color"] == series["target train (T)"]["color"] \
        == TARGET_COLOR
    assert series["source val (S)"]["color"] == series["target val (T)"]["color"]  # own domain
    expected = history.filter((pl.col("model") == "target") & (pl.col("dataset") == "target_val"))
    assert list(series["target val (T)"]["accuracy"]) == expected.sort("epoch")["accuracy"].to_list()
    fig = accuracy_chart(history)
    assert fig.y_range.start == 0 and fig.y_range.end == pytest.approx(1.02)
    legend = fig.legend[0]
    assert [i.label.value for i in legend.items] == list(series)
    assert all(len(i.renderers) == 2 for i in legend.items)  # line + markers per entry
    markers = [r.glyph.marker for r in fig.select(GlyphRenderer) if hasattr(r.glyph, "marker")]
    assert sorted(markers) == ["circle"] * 3 + ["x"] * 3
    assert any(isinstance(t, SaveTool) for t in fig.tools)  # PNG export
    for s in series.values():
        assert ((s["accuracy"] >= 0) & (s["accuracy"] <= 1)).all() and len(s["accuracy"]) == 5
    assert series_label("target", "target_val") == "target val (T)"


def test_confusion_display_formats_misclassified(synth_bundle):
    frame = confusion_display(synth_bundle.table("confusion"))
    assert list(frame.columns) == ["class", "source_accuracy", "target_accuracy", "difference",
                                   "misclassified_source", "misclassified_target"]
    conf = synth_bundle.table("confusion")
    row = conf.row(0, named=True)
    expected = ", ".join(f"{e['class']} ({e['count']})" for e in row["source_misclassified"])
    assert frame["misclassified_source"].iloc[0] == expected
    hand = confusion_display(pl.DataFrame({
        "class": ["8"], "source_accuracy": [0.5], "target_accuracy": [0.75],
        "difference": [0.25],
        "source_misclassified": [[{"class": "3", "count": 4}, {"class": "8", "count": 2}]],
        "target_misclassified": [[]]}))
    assert hand["misclassified_source"].iloc[0] == "3 (4), 8 (2)"
    assert hand["misclassified_target"].iloc[0] == ""


def test_row_click_sets_focus_class(synth_session):
    view = StatsView(session=synth_session)
    view.__panel__()
    table = view._table
    target = next(i for i, c in enumerate(table.value["class"]) if c != synth_session.focus_class)
    name = table.value["class"].iloc[target]
    view._on_row_click(SimpleNamespace(row=target, column="class"))
    assert synth_session.focus_class == name
    assert table.selection == [target]


def test_sorting_follows_the_session(synth_session):
    view = StatsView(session=synth_session)
    view.__panel__()
    diffs = list(view._table.value["difference"])
    assert diffs == sorted(diffs, reverse=True)  # default: largest gap first
    synth_session.confusion_sort = "class:asc"
    assert list(view._table.value["class"]) == ["0", "1", "2"]
    assert view._table.sorters == [{"field": "class", "dir": "asc"}]
    focus = synth_session.focus_class
    assert view._table.value["class"].iloc[view._table.selection[0]] == focus
    # sorting in the browser writes back
    view._table.sorters = [{"field": "target_accuracy", "dir": "asc"}]
    assert synth_session.confusion_sort == "target_accuracy:asc"
    assert parse_sort("nonsense") == ("difference", "desc")


def test_score_colour_and_tooltip(synth_session, monkeypatch):
    view = StatsView(session=synth_session)
    score = synth_session.bundle.manifest["scores"]["transferability_score"]
    html = view._score_html()
    assert f"{score:+.2f}" in html and "title=" in html and "best accuracy" in html
    assert (POSITIVE_COLOR if score >= 0 else NEGATIVE_COLOR) in html
    monkeypatch.setattr(view, "score", lambda: -0.25)
    html = view._score_html()
    assert "-0.25" in html and NEGATIVE_COLOR in html
    assert "negative transfer" in html
    monkeypatch.setattr(view, "score", lambda: 0.31)
    assert "gain from transfer" in view._score_html()
    # both models at chance: +0.00 is no gain, shown neither green nor red
    for zero in (0.0, 0.004, -0.003):
        monkeypatch.setattr(view, "score", lambda zero=zero: zero)
        html = view._score_html()
        assert "±0.00" in html and "no gain" in html
        assert POSITIVE_COLOR not in html and NEGATIVE_COLOR not in html
    monkeypatch.setattr(view, "score", lambda: None)
    assert "n/a" in view._score_html()


def test_tables_say_which_instances_they_count(synth_session):
    view = StatsView(session=synth_session)
    text = view._caption_html()
    n = int(synth_session.bundle.table("confusion")["n"].sum())
    assert "validation set" in text and f"{n:,} instances" in text


def test_tables_export_as_csv(synth_bundle):
    conf = synth_bundle.table("confusion")
    flat = flatten_for_csv(conf)
    assert flat.schema["source_misclassified"] == pl.String
    back = pl.read_csv(to_csv_bytes(conf))
    assert back.height == conf.height and back["class"].cast(pl.String).to_list() == \
        conf["class"].to_list()
    assert back["source_misclassified"][0] == flat["source_misclassified"][0]


def test_panel_builds_once_with_downloads(synth_session):
    import panel as pn

    view = StatsView(session=synth_session)
    layout = view.__panel__()
    assert layout is view.__panel__()
    downloads = layout.select(pn.widgets.FileDownload)
    assert {d.filename for d in downloads} == {"confusion.csv", "history.csv"}
    data = downloads[0].callback()
    assert isinstance(data, io.BytesIO) and data.getvalue().startswith(b"class,")
    assert layout.get_root() is not None
