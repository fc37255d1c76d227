"""The page grid's stylesheet: every page part has an area in every width's grid, and the
widths follow the flex layout used in notebooks (the browser checks are in tests/ui)."""
from __future__ import annotations

import re

from tlexplorer.app import dashboard
from tlexplorer.app.page_grid import AREAS, grid_css


def _grids(css: str) -> list[tuple[int, list[str], list[list[str]]]]:
    out = []
    for least, columns, areas in re.findall(
            r"(?:@container \(min-width: (\d+)px\) \{ )?#main > \.main-margin \{ "
            r"grid-template-columns: ([^;]+); grid-template-areas: ([^;]+); \}", css):
        rows = [row.split() for row in re.findall(r'"([^"]+)"', areas)]
        out.append((int(least or 0), columns, rows))
    return out


def test_every_part_has_an_area_at_every_width():
    grids = _grids(grid_css())
    assert [least for least, *_ in grids] == [0, 1080, 1520]
    for least, _columns, rows in grids:
        assert {name for row in rows for name in row} == set(AREAS.values()), least
        assert len({len(row) for row in rows}) == 1, least  # a rectangle


def test_each_view_card_class_has_an_area():
    cards = {css for _title, css in dashboard.VIEWS.values()}
    assert cards <= set(AREAS)


def test_column_thresholds_are_the_flex_bases():
    """Three columns from the sum of the three flex bases, two from the first two: where the
    notebook's FlexBox (dashboard.FLEX) wraps."""
    basis = {part: int(flex.split()[-1].removesuffix("px"))
             for part, (flex, _min) in dashboard.FLEX.items()}
    assert [least for least, *_ in _grids(grid_css())][1:] == [
        basis["left"] + basis["network"], sum(basis.values())]


def test_columns_are_basis_plus_their_share_of_the_rest():
    """At 1890 px (a 1920 px window) the flex layout gives 440 + 370/3.6 and 640 + 1.6 × 370/3.6
    px; the grid's calc() columns give the same."""
    *_, (_least, columns, _rows) = _grids(grid_css())
    width = 1890

    def size(column: str) -> float:
        basis, rest, share = re.fullmatch(
            r"calc\((\d+)px \+ \(100% - (\d+)px\) \* ([\d.]+)\)", column).groups()
        return int(basis) + (width - int(rest)) * float(share)

    sizes = re.findall(r"calc\([^()]*\([^()]*\)[^()]*\)", grid_css().splitlines()[-1])
    assert len(sizes) == 2
    assert abs(size(sizes[0]) - (440 + 370 / 3.6)) < 0.1
    assert abs(size(sizes[1]) - (640 + 1.6 * 370 / 3.6)) < 0.1


def test_fig1_arrangement_where_wide():
    *_, (least, _columns, rows) = _grids(grid_css())
    assert rows[-2:] == [["stats", "network", "features"], ["instances", "network", "features"]]
