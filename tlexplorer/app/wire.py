"""What an update costs on the websocket: small columns inside the message, not as buffers.

Bokeh sends every NumPy array as a binary buffer of its own: two websocket frames per array, next
to the message's three, however small the array. A class switch updates a few dozen small columns
(arrows, labels, box plots) and sent a hundred frames. Small columns travel better inside the
message's JSON:

- :func:`json_columns` turns the frames our own Bokeh views build into plain lists, with floats
  cut to the digits the view can show;
- :func:`inline_small_arrays` makes Bokeh itself write one-dimensional numeric arrays of up to
  :data:`INLINE_ARRAY_ELEMENTS` elements as JSON lists (the form it uses for Python lists), for
  the plots HoloViews builds. Larger arrays (a scatter's coordinates) stay binary.
"""
from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import pandas as pd

#: Significant digits kept for floats: far below a pixel for positions, above every displayed digit.
SIGNIFICANT_DIGITS = 6


def _float_list(values: np.ndarray) -> list:
    fmt = f"%.{SIGNIFICANT_DIGITS}g"
    return [float(fmt % v) if math.isfinite(v) else v for v in values.tolist()]


def json_column(values: Any) -> list:
    """One column as a plain list (floats to :data:`SIGNIFICANT_DIGITS` significant digits)."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return _float_list(array.astype(np.float64))
    if array.dtype.kind in "iub":
        return array.tolist()
    return [v.item() if isinstance(v, np.generic) else v for v in array.tolist()]


def json_columns(frame: pd.DataFrame) -> dict[str, list]:
    """A frame as data-source data that Bokeh serialises into the message, not as buffers."""
    return {c: json_column(frame[c].to_numpy()) for c in frame.columns}


#: One-dimensional numeric arrays up to this size are written into the message's JSON.
INLINE_ARRAY_ELEMENTS = 256
_PATCH_LOCK = threading.Lock()


def inline_small_arrays() -> None:
    """Make Bokeh write small 1-D numeric arrays as JSON lists (once per process; idempotent).

    A JSON list is what Bokeh sends for a Python list column, so the browser reads both alike;
    everything else (large arrays, images, strings) is encoded by Bokeh as before.
    """
    from bokeh.core.serialization import Serializer

    with _PATCH_LOCK:
        if getattr(Serializer, "_tlx_inline_small_arrays", False):
            return
        encode_ndarray = Serializer._encode_ndarray

        def _encode_ndarray(self, obj: np.ndarray):
            if obj.ndim == 1 and obj.size <= INLINE_ARRAY_ELEMENTS and obj.dtype.kind in "fiub":
                return self._encode_list(obj.tolist())
            return encode_ndarray(self, obj)

        Serializer._encode_ndarray = _encode_ndarray
        Serializer._tlx_inline_small_arrays = True


__all__ = ["INLINE_ARRAY_ELEMENTS", "SIGNIFICANT_DIGITS", "inline_small_arrays", "json_column",
           "json_columns"]
