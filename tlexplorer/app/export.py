"""Exports from the views: tables as CSV, plots as PNG.

Tables: :func:`csv_download` gives a ``pn.widgets.FileDownload`` whose callback writes the
current polars frame as CSV (nested list/struct columns flattened to text) when clicked; nothing
is computed until then.

Plots: every HoloViews/Bokeh plot keeps Bokeh's toolbar *save* tool, which downloads the plot as
a PNG in the browser, offline. A server-side "Download PNG" (``hv.save`` / ``bokeh.io.export_png``)
needs selenium plus a webdriver, which the package does not depend on, so we rely on the
toolbar tool (:data:`PLOT_TOOLS` is what views add).
"""
from __future__ import annotations

import io
import re
from typing import Callable

import panel as pn
import polars as pl

#: Toolbar tools every exported plot keeps; "save" is the PNG export.
PLOT_TOOLS = ["save"]


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        if set(value) >= {"class", "count"}:
            return f"{value['class']} ({value['count']})"
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell_text(v) for v in value)
    return str(value)


def flatten_for_csv(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with list/struct/object columns turned into text, so that CSV can hold it.

    A list of ``{class, count}`` structs becomes ``"3 (4), 8 (2)"`` as in the confusion table.
    """
    out = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, (pl.List, pl.Struct, pl.Array, pl.Object)):
            out.append(pl.Series(name, [_cell_text(v) for v in frame[name].to_list()],
                                 dtype=pl.String))
        else:
            out.append(frame[name])
    return pl.DataFrame(out)


def to_csv_bytes(frame: pl.DataFrame) -> io.BytesIO:
    """UTF-8 CSV of ``frame`` (flattened) in a rewound buffer, as FileDownload wants it."""
    buf = io.BytesIO(flatten_for_csv(frame).write_csv().encode("utf-8"))
    buf.seek(0)
    return buf


def safe_filename(text: str) -> str:
    """A filename-friendly version of ``text`` (class names may hold anything)."""
    return re.sub(r"[^\w.\-]+", "_", str(text)).strip("_") or "export"


def csv_download(frame_fn: Callable[[], pl.DataFrame], filename: str, *,
                 label: str = "CSV", **params) -> pn.widgets.FileDownload:
    """A FileDownload button that exports ``frame_fn()`` as CSV when clicked.

    Parameters
    ----------
    frame_fn : callable
        Returns the polars frame to export (called at click time, so it reflects the session).
    filename : str
        Suggested file name (``.csv`` appended when missing).
    label : str
        Button text.
    """
    if not filename.endswith(".csv"):
        filename += ".csv"
    params.setdefault("button_type", "light")
    params.setdefault("width", 90)
    params.setdefault("height", 30)
    params.setdefault("margin", (5, 5))
    return pn.widgets.FileDownload(
        callback=lambda: to_csv_bytes(frame_fn()), filename=filename, label=label,
        embed=False, **params)


__all__ = ["PLOT_TOOLS", "csv_download", "flatten_for_csv", "safe_filename", "to_csv_bytes"]
