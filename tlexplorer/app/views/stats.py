"""Statistics summary (paper §5.1, Fig. 1 A): accuracy chart, transferability score, confusion table.

Reads ``tables/history``, ``tables/confusion`` and ``manifest["scores"]``. Clicking a row of the
confusion table sets ``session.focus_class``; the table's sort order follows
``session.confusion_sort`` and writes it back when the user sorts a column.
"""
from __future__ import annotations

import html
from typing import Any

import pandas as pd
import panel as pn
import param
import polars as pl

from tlexplorer.app.export import PLOT_TOOLS, csv_download, flatten_for_csv
from tlexplorer.app.links import batched
from tlexplorer.app.state import Session
from tlexplorer.app.views import (NEGATIVE_COLOR, POSITIVE_COLOR, SOURCE_COLOR, TABLE_CONFIGURATION,
                                  TABLE_STYLESHEETS, TARGET_COLOR)

#: Line colour by dataset; the two validation series (own domain) share one colour.
DATASET_COLORS = {"source_train": SOURCE_COLOR, "target_train": TARGET_COLOR, "val": "#2ca02c"}
#: The paper's three series per model (§5.1); the other rows of the history feed the score.
MODEL_SERIES = {
    "source": ("source_train", "target_train", "source_val"),
    "target": ("source_train", "target_train", "target_val"),
}
MODEL_MARKERS = {"source": "x", "target": "circle"}
MODEL_SUFFIX = {"source": "S", "target": "T"}

NEUTRAL_COLOR = "#666666"
SCORE_DEFINITION = (
    "Transferability score: the best accuracy of the target model on the target validation set "
    "minus the best accuracy of the source model on it (paper §5.1). Positive: fine-tuning "
    "improved the target domain; negative: the transfer hurt.")

#: Confusion table columns: field → header.
CONFUSION_TITLES = {
    "class": "class",
    "source_accuracy": "source acc",
    "target_accuracy": "target acc",
    "difference": "difference",
    "misclassified_source": "source (S)",
    "misclassified_target": "target (T)",
}


def series_label(model: str, dataset: str) -> str:
    """Legend entry, e.g. ``"source train (S)"``, ``"target val (T)"``."""
    return f"{dataset.replace('_', ' ')} ({MODEL_SUFFIX[model]})"


def dataset_color(dataset: str) -> str:
    return DATASET_COLORS["val" if dataset.endswith("_val") else dataset]


def accuracy_series(history: pl.DataFrame) -> list[dict[str, Any]]:
    """The chart's 6 series: ``{model, dataset, label, color, marker, epoch, accuracy}``."""
    out = []
    for model, datasets in MODEL_SERIES.items():
        for dataset in datasets:
            rows = history.filter((pl.col("model") == model) & (pl.col("dataset") == dataset))
            rows = rows.sort("epoch")
            out.append({
                "model": model, "dataset": dataset, "label": series_label(model, dataset),
                "color": dataset_color(dataset), "marker": MODEL_MARKERS[model],
                "epoch": rows["epoch"].to_numpy(), "accuracy": rows["accuracy"].to_numpy(),
            })
    return out


def accuracy_chart(history: pl.DataFrame):
    """The 6-series accuracy line chart (a Bokeh figure): x epochs, y accuracy in [0, 1].

    Crosses mark the source model's series (dashed lines), circles the target model's; colour is
    the dataset. Built with Bokeh directly: a static chart of 12 glyphs, which HoloViews would
    render as 12 element plots at several times the cost per session.
    """
    from bokeh.models import ColumnDataSource, HoverTool, Legend, LegendItem
    from bokeh.plotting import figure

    fig = figure(height=240, sizing_mode="stretch_width", y_range=(0, 1.02),
                 x_axis_label="epoch", y_axis_label="accuracy", title="Accuracy per epoch",
                 tools=["pan", "wheel_zoom", "reset", *PLOT_TOOLS], toolbar_location="above")
    fig.toolbar.logo = None
    fig.xaxis.ticker.desired_num_ticks = 6
    fig.xaxis.ticker.min_interval = 1  # whole epochs
    items, markers = [], []
    for series in accuracy_series(history):
        src = ColumnDataSource({"epoch": series["epoch"], "accuracy": series["accuracy"],
                                "series": [series["label"]] * len(series["epoch"])})
        line = fig.line("epoch", "accuracy", source=src, color=series["color"], line_width=2,
                        line_dash="dashed" if series["model"] == "source" else "solid")
        dots = fig.scatter("epoch", "accuracy", source=src, marker=series["marker"],
                           size=9 if series["model"] == "source" else 7, line_width=2,
                           color=series["color"],
                           fill_color="white" if series["marker"] == "circle" else None)
        markers.append(dots)
        items.append(LegendItem(label=series["label"], renderers=[line, dots]))
    fig.add_tools(HoverTool(renderers=markers, tooltips=[
        ("series", "@series"), ("epoch", "@epoch"), ("accuracy", "@accuracy{0.000}")]))
    legend = Legend(items=items, label_text_font_size="9pt", spacing=0, padding=4,
                    glyph_width=22, location="center")
    fig.add_layout(legend, "right")
    return fig


def score_words(score: "float | None") -> "tuple[str, str, str]":
    """``(text, colour, words)`` of a transferability score, following its sign as shown: a score
    that rounds to ±0.00 is no gain (both models may be at chance), not a boost."""
    if score is None:
        return "n/a", "#666", "not recorded"
    text = f"{score:+.2f}"
    if round(score, 2) == 0:
        return text.replace("-", "±").replace("+", "±"), NEUTRAL_COLOR, "no gain from transfer"
    if score > 0:
        return text, POSITIVE_COLOR, "gain from transfer"
    return text, NEGATIVE_COLOR, "negative transfer"


def _misclassified_text(entries: Any) -> str:
    if entries is None:
        return ""
    parts = []
    for e in entries:
        parts.append(f"{e['class']} ({e['count']})" if isinstance(e, dict) else str(e))
    return ", ".join(parts)


def confusion_display(confusion: pl.DataFrame) -> pd.DataFrame:
    """The confusion table as shown: class, accuracies, difference, misclassified-into text."""
    diff = (confusion["difference"] if "difference" in confusion.columns
            else confusion["target_accuracy"] - confusion["source_accuracy"])
    return pd.DataFrame({
        "class": [str(c) for c in confusion["class"].to_list()],
        "source_accuracy": confusion["source_accuracy"].to_numpy(),
        "target_accuracy": confusion["target_accuracy"].to_numpy(),
        "difference": diff.to_numpy(),
        "misclassified_source": [_misclassified_text(v) for v in
                                 confusion["source_misclassified"].to_list()],
        "misclassified_target": [_misclassified_text(v) for v in
                                 confusion["target_misclassified"].to_list()],
    })


def parse_sort(spec: str) -> tuple[str, str]:
    """``"difference"`` → ``("difference", "desc")``; ``"class:asc"`` → ``("class", "asc")``."""
    field, _, direction = (spec or "difference").partition(":")
    field = field.strip() or "difference"
    if field not in CONFUSION_TITLES:
        field = "difference"
    direction = direction.strip().lower()
    if direction not in ("asc", "desc"):
        direction = "asc" if field == "class" else "desc"
    return field, direction


class StatsView(pn.viewable.Viewer):
    """Accuracy chart, transferability score and confusion table of one session."""

    session = param.ClassSelector(class_=Session, doc="The session this view shows and drives")

    def __init__(self, **params):
        super().__init__(**params)
        self._layout = None
        self._table: "pn.widgets.Tabulator | None" = None
        self._syncing = False

    # ------------------------------------------------------------------ data
    @property
    def bundle(self):
        return self.session.bundle

    def history(self) -> pl.DataFrame:
        return self.bundle.table("history")

    def confusion(self) -> pl.DataFrame:
        return self.bundle.table("confusion")

    def score(self) -> "float | None":
        value = (self.bundle.manifest.get("scores") or {}).get("transferability_score")
        return None if value is None else float(value)

    def confusion_frame(self) -> pd.DataFrame:
        """The confusion table's rows as displayed (pandas), in the session's sort order."""
        frame = confusion_display(self.confusion())
        field, direction = parse_sort(self.session.confusion_sort)
        return frame.sort_values(field, ascending=direction == "asc", kind="stable").reset_index(
            drop=True)

    # ------------------------------------------------------------------ widgets
    def _score_html(self) -> str:
        text, color, word = score_words(self.score())
        tip = html.escape(SCORE_DEFINITION, quote=True)
        return (f'<div class="tlx-score" title="{tip}" style="text-align:center;">'
                f'<div style="font-size:12px;color:#555;">Transferability<br>score</div>'
                f'<div class="tlx-score-value" style="font-size:40px;font-weight:700;'
                f'color:{color};line-height:1.1;">{text}</div>'
                f'<div style="font-size:11px;color:{color};">{word}</div></div>')

    def _caption_html(self) -> str:
        """Which instances the table's accuracies come from (the instance view counts others)."""
        conf = self.confusion()
        n = int(conf["n"].sum()) if "n" in conf.columns else None
        count = f" ({n:,} instances)" if n is not None else ""
        return (f'<div style="font-size:12px;color:#555;">Per class, on the target domain\'s '
                f'validation set{count}: each model\'s accuracy and the classes it predicts '
                'instead (paper §5.1).</div>')

    def _build_table(self) -> pn.widgets.Tabulator:
        field, direction = parse_sort(self.session.confusion_sort)
        frame = self.confusion_frame()
        table = pn.widgets.Tabulator(
            frame, show_index=False, disabled=True, selectable=1, layout="fit_columns",
            sizing_mode="stretch_both", min_height=180,
            titles=CONFUSION_TITLES,
            groups={"misclassified into": ["misclassified_source", "misclassified_target"]},
            formatters={
                "source_accuracy": {"type": "money", "precision": 3, "symbol": ""},
                "target_accuracy": {"type": "money", "precision": 3, "symbol": ""},
                "difference": {"type": "money", "precision": 3, "symbol": ""},
            },
            text_align={"source_accuracy": "right", "target_accuracy": "right",
                        "difference": "right"},
            widths={"class": 70, "source_accuracy": 72, "target_accuracy": 72,
                    "difference": 80},
            configuration=TABLE_CONFIGURATION, stylesheets=TABLE_STYLESHEETS,
            sorters=[{"field": field, "dir": direction}],
            header_tooltips={
                "difference": "target acc − source acc on the target validation set",
                "misclassified_source": "classes the source model predicts instead (count)",
                "misclassified_target": "classes the target model predicts instead (count)",
            },
            css_classes=["tlx-confusion-table"],
        )
        table.style.map(
            lambda v: f"color: {POSITIVE_COLOR if v > 0 else NEGATIVE_COLOR if v < 0 else '#333'}",
            subset=["difference"])
        table.on_click(self._on_row_click)
        table.param.watch(self._on_sorters, "sorters")
        return table

    def __panel__(self):
        if self._layout is not None:
            return self._layout
        chart = pn.pane.Bokeh(accuracy_chart(self.history()), sizing_mode="stretch_width",
                              height=240)
        chart = pn.Column(chart, sizing_mode="stretch_width", css_classes=["tlx-accuracy-chart"],
                          margin=0)
        score = pn.pane.HTML(self._score_html(), width=120, margin=(30, 5, 5, 5))
        tip = pn.widgets.TooltipIcon(value=SCORE_DEFINITION, margin=(0, 5))
        self._table = self._build_table()
        self._sync_selection()
        caption = pn.pane.HTML(self._caption_html(), sizing_mode="stretch_width",
                               margin=(0, 5), css_classes=["tlx-confusion-caption"])
        downloads = pn.Row(
            csv_download(lambda: flatten_for_csv(self.confusion()), "confusion.csv",
                         label="Confusion CSV", width=130),
            csv_download(self.history, "history.csv", label="History CSV", width=120),
            margin=0)
        self._layout = pn.Column(
            pn.Row(pn.Column(score, tip, width=130), chart, sizing_mode="stretch_width",
                   height=250),
            caption, self._table, downloads,
            sizing_mode="stretch_both", css_classes=["tlx-stats-view"])
        return self._layout

    # ------------------------------------------------------------------ interaction
    def select_class(self, name: str) -> None:
        """What a click on the row of class ``name`` does: make it the focus class."""
        if name in self.session.param.focus_class.objects:
            self.session.focus_class = name

    def _on_row_click(self, event) -> None:
        row = getattr(event, "row", None)
        if row is None or self._table is None:
            return
        value = self._table.value
        if 0 <= row < len(value):
            with batched():  # everything the class switch changes, in one message
                self.select_class(str(value["class"].iloc[row]))

    def _on_sorters(self, event) -> None:
        if self._syncing or not event.new:
            return
        first = event.new[0]
        field, direction = first.get("field"), first.get("dir", "desc")
        if field in CONFUSION_TITLES:
            self.session.confusion_sort = f"{field}:{direction}"

    @param.depends("session.focus_class", watch=True)
    def _sync_selection(self) -> None:
        if self._table is None:
            return
        classes = list(self._table.value["class"])
        focus = self.session.focus_class
        selection = [classes.index(focus)] if focus in classes else []
        if self._table.selection != selection:
            self._table.selection = selection

    @param.depends("session.confusion_sort", watch=True)
    def _apply_sort(self) -> None:
        if self._table is None:
            return
        field, direction = parse_sort(self.session.confusion_sort)
        self._syncing = True
        try:
            self._table.param.update(value=self.confusion_frame(),
                                     sorters=[{"field": field, "dir": direction}])
        finally:
            self._syncing = False
        self._sync_selection()


__all__ = ["StatsView", "accuracy_chart", "accuracy_series", "confusion_display", "series_label"]
