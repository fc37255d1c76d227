"""Instance thumbnails over HTTP, so that a hover card can show any instance's image.

A scatter of thousands of points cannot carry every thumbnail in its data (a kilobyte each as a data
URI); with this endpoint each point carries a short URL and the browser fetches only the image
under the pointer. ``GET tlx-thumbnail/<bundle key>/<row>.png`` answers for bundles this process
has loaded (the configured ones: the key is a content hash, never a path), behind the server's
login like every page.
"""
from __future__ import annotations

import io
import re

import numpy as np
from bokeh.server.views.auth_request_handler import AuthRequestHandler
from tornado.web import HTTPError, authenticated

ROUTE = r"/tlx-thumbnail/([0-9a-f]{8,128})/([0-9]{1,12})\.png"
URL_PREFIX = "tlx-thumbnail"
_KEY = re.compile(r"[0-9a-f]{8,128}")

def thumbnail_url(bundle_key: str, row: int) -> str:
    """Relative URL of a thumbnail (relative: works behind a proxy's path prefix too)."""
    return f"./{URL_PREFIX}/{bundle_key}/{int(row)}.png"


def thumbnail_png(bundle, row: int) -> bytes:
    """PNG bytes of instance ``row``'s thumbnail; ``IndexError`` for a row the bundle lacks."""
    from PIL import Image

    thumbs = bundle.array("thumbnails")
    if not 0 <= row < thumbs.shape[0]:
        raise IndexError(row)
    arr = np.asarray(thumbs[row])
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8))).save(buf, format="PNG")
    return buf.getvalue()


class ThumbnailHandler(AuthRequestHandler):
    """Serves thumbnails of loaded bundles, for logged-in users when the server has logins."""

    @authenticated
    def get(self, key: str, row: str) -> None:
        from tlexplorer.app.loading import loaded_bundle_by_key

        bundle = loaded_bundle_by_key(key) if _KEY.fullmatch(key) else None
        if bundle is None:
            raise HTTPError(404)
        try:
            png = thumbnail_png(bundle, int(row))
        except (IndexError, KeyError):
            raise HTTPError(404) from None
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "private, max-age=86400")  # a bundle never changes
        self.write(png)


__all__ = ["ROUTE", "ThumbnailHandler", "thumbnail_png", "thumbnail_url"]
