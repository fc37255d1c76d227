"""The served page's arrangement of the four view cards (Fig. 1), as CSS on the template.

Each card is a root of its own in the Bokeh document, laid out by the browser's CSS grid rather
than by a Bokeh layout around all four. Why: Bokeh lays a whole layout root out again whenever
anything inside it changes size or children (``LayoutDOMView.invalidate_layout`` climbs to the
root). With the four cards in one layout, each view arriving in its card, and each view's update
after a click, made the browser measure the other three views' tables and plots again; with a
root per card only that card is laid out (measured in ``docs/performance.md``, "Linked views").

The grid follows the flex layout it replaces (``dashboard.dashboard_layout``, still used in
notebooks): stats over instances | network | features where the page is at least 1520 px wide
(the three columns' flex bases), the feature view below the other two from 1080 px, and one
column below that. The page scrolls; the cards keep their heights.
"""
from __future__ import annotations

from functools import cache

#: Grid area of each page part: the CSS class on its root -> area name.
AREAS = {"tlx-alerts": "alerts", "tlx-analysis-warnings-area": "warnings",
         "tlx-area-stats": "stats", "tlx-area-instances": "instances",
         "tlx-area-network": "network", "tlx-area-features": "features"}

#: Each column's basis (px), grow factor and least width (px), shared with the notebook's flex
#: layout (``dashboard.FLEX``): a column is its basis plus its share of the width left over
#: (what ``flex: grow 1 basis`` gives), so both pages have the same widths.
COLUMNS = {"left": (440, 1.0, 420), "network": (640, 1.6, 600), "features": (440, 1.0, 420)}


def _columns(parts: tuple[str, ...]) -> str:
    bases = _least_width(parts)
    grows = sum(COLUMNS[part][1] for part in parts)
    sizes = [f"calc({basis}px + (100% - {bases}px) * {grow / grows:.4f})"
             for basis, grow, _least in (COLUMNS[part] for part in parts[:-1])]
    return " ".join(sizes + ["minmax(0, 1fr)"])  # the last takes what is left (rounding)


def _least_width(parts: tuple[str, ...]) -> int:
    return sum(COLUMNS[part][0] for part in parts)


#: (least width of the main area in px, column sizes, rows of areas).
_LAYOUTS = (
    (0, "minmax(0, 1fr)", ("alerts", "warnings", "stats", "instances", "network", "features")),
    (_least_width(("left", "network")), _columns(("left", "network")),
     ("alerts alerts", "warnings warnings", "stats network", "instances network",
      "features features")),
    (_least_width(("left", "network", "features")), _columns(("left", "network", "features")),
     ("alerts alerts alerts", "warnings warnings warnings", "stats network features",
      "instances network features")),
)


def _grid(columns: str, rows: tuple[str, ...]) -> str:
    areas = " ".join(f'"{row}"' for row in rows)
    return (f"#main > .main-margin {{ grid-template-columns: {columns}; "
            f"grid-template-areas: {areas}; }}")


@cache  # the same text for every page
def grid_css() -> str:
    """The stylesheet that arranges the template's main area (``template.config.raw_css``)."""
    rules = [
        # the query container: the main area's width, whatever the window and scrollbar
        "#main { container-type: inline-size; }",
        "#main > .main-margin { display: grid; align-items: start; height: auto; }",
        "#main > .main-margin > .card-margin { margin: 0; min-width: 0; }",
    ]
    rules += [f"#main > .main-margin > .card-margin:has(.{css}) {{ grid-area: {area}; }}"
              for css, area in AREAS.items()]
    for least, columns, rows in _LAYOUTS:
        rule = _grid(columns, rows)
        rules.append(f"@container (min-width: {least}px) {{ {rule} }}" if least else rule)
    return "\n".join(rules)


__all__ = ["AREAS", "COLUMNS", "grid_css"]
