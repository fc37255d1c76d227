"""The four views (stats, instances, network, features) and the colours they share.

Colours follow design.md "Visual encoding": red is the source domain/model, blue the target,
everywhere; mispredicted instances get a dark gray border. Class colours come from one categorical
palette without pure reds and blues, so that a class never reads as a domain; every view that
colours by class calls :func:`class_colors` with the bundle's class list and gets the same mapping.
"""
from __future__ import annotations

from typing import Iterable

SOURCE_COLOR = "#d62728"
TARGET_COLOR = "#1f77b4"
DOMAIN_COLORS = {"source": SOURCE_COLOR, "target": TARGET_COLOR}
#: Markers by domain/model: crosses for source, circles for target (paper §5.1, §5.2).
DOMAIN_MARKERS = {"source": "x", "target": "circle"}
MISPREDICTED_COLOR = "#3a3a3a"
#: Every table: headers wrap, and a cell cut short by its column (an ellipsis) shows its whole
#: text on hover.
TABLE_CONFIGURATION = {"columnDefaults": {"headerWordWrap": True, "tooltip": True}}
#: Cells whose content Panel wraps in a block (styled tables) end in an ellipsis too.
TABLE_STYLESHEETS = [".tabulator-cell > div { overflow: hidden; text-overflow: ellipsis; "
                     "white-space: nowrap; }"]
#: HoloViews plots draw on a 2-D canvas, not WebGL (HoloViews' default): our glyph scatters hold at
#: most a few thousand points (a datashader raster above), where WebGL only adds a GL context and a
#: copy of it into the canvas on every paint (a quarter of the first page's browser time without a
#: GPU, docs/performance.md).
CANVAS_BACKEND = {"plot.output_backend": "canvas"}
POSITIVE_COLOR = "#2ca02c"
NEGATIVE_COLOR = "#d62728"

#: Categorical class palette (Tableau/Category20 hues minus the domain red and blue).
CLASS_PALETTE = (
    "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f",
    "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79",
    "#637939", "#8c6d31", "#843c39", "#7b4173",
)


def class_colors(classes: Iterable[str]) -> dict[str, str]:
    """``{class name: hex colour}`` in class order; stable for a given class list.

    Beyond the 20 fixed colours, colorcet's Glasbey palette (installed with datashader/holoviews)
    provides distinct hues.
    """
    classes = [str(c) for c in classes]
    palette = list(CLASS_PALETTE)
    if len(classes) > len(palette):
        import colorcet

        extra = [c for c in colorcet.glasbey_dark if c.lower() not in {p.lower() for p in palette}]
        palette += extra
    while len(palette) < len(classes):  # more classes than named colours: cycle
        palette += palette[: len(classes) - len(palette)]
    return {c: palette[i] for i, c in enumerate(classes)}


__all__ = ["CANVAS_BACKEND", "CLASS_PALETTE", "DOMAIN_COLORS", "DOMAIN_MARKERS",
           "MISPREDICTED_COLOR", "TABLE_CONFIGURATION", "TABLE_STYLESHEETS",
           "NEGATIVE_COLOR", "POSITIVE_COLOR", "SOURCE_COLOR", "TARGET_COLOR", "class_colors"]
