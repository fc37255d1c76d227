"""Instance thumbnails and feature visualizations over HTTP, instead of inside the page's data.

A scatter of thousands of points cannot carry every thumbnail in its data (a kilobyte each as a data
URI); with this endpoint each point carries a short URL and the browser fetches only the image
under the pointer. ``GET tlx-thumbnail/<bundle key>/<row>.png`` answers for bundles this process
has loaded (the configured ones: the key is a content hash, never a path), behind the server's
login like every page.

The feature ranking list shows a feature visualization per row: as URLs
(``tlx-featurevis/<bundle key>/<model>/<layer index>/<neuron>.png``) a scope change sends a few
bytes per row instead of a data URI, and the browser's cache serves a row seen before. Only
images already computed (memory or the bundle's cache) are served; the layer is an index into the
bundle's layers, so no name from a dataset is ever part of a URL.
"""
from __future__ import annotations

import io
import re

import numpy as np
from bokeh.server.views.auth_request_handler import AuthRequestHandler
from tornado.web import HTTPError, authenticated

ROUTE = r"/tlx-thumbnail/([0-9a-f]{8,128})/([0-9]{1,12})\.png"
URL_PREFIX = "tlx-thumbnail"
FEATURE_ROUTE = r"/tlx-featurevis/([0-9a-f]{8,128})/(source|target)/([0-9]{1,6})/([0-9]{1,9})\.png"
FEATURE_URL_PREFIX = "tlx-featurevis"
_KEY = re.compile(r"[0-9a-f]{8,128}")


def thumbnail_url(bundle_key: str, row: int) -> str:
    """Relative URL of a thumbnail (relative: works behind a proxy's path prefix too)."""
    return f"./{URL_PREFIX}/{bundle_key}/{int(row)}.png"


def feature_image_url(bundle_key: str, model: str, layer_index: int, neuron: int) -> str:
    """Relative URL of a computed feature visualization (see the module's docstring)."""
    return f"./{FEATURE_URL_PREFIX}/{bundle_key}/{model}/{int(layer_index)}/{int(neuron)}.png"


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 (H, W), (H, W, 1) or (H, W, 3) image as PNG."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.clip(arr, 0, 255).astype(np.uint8))).save(
        buf, format="PNG")
    return buf.getvalue()


def feature_png(bundle, model: str, layer_index: int, neuron: int) -> bytes:
    """PNG of a computed feature visualization; ``LookupError`` when there is none (yet)."""
    from tlexplorer.app.views.neuron_detail import feature_vis_service

    layers = bundle.layer_names
    if not 0 <= layer_index < len(layers):
        raise IndexError(layer_index)
    image = feature_vis_service(bundle).get(model, layers[layer_index], int(neuron))
    if image is None:
        raise LookupError(neuron)
    return png_bytes(image)


def thumbnail_png(bundle, row: int) -> bytes:
    """PNG bytes of instance ``row``'s thumbnail; ``IndexError`` for a row the bundle lacks."""
    thumbs = bundle.array("thumbnails")
    if not 0 <= row < thumbs.shape[0]:
        raise IndexError(row)
    return png_bytes(thumbs[row])


class _ImageHandler(AuthRequestHandler):
    """Serves images of loaded bundles, for logged-in users when the server has logins."""

    def _send(self, key: str, make) -> None:
        from tlexplorer.app.loading import loaded_bundle_by_key

        bundle = loaded_bundle_by_key(key) if _KEY.fullmatch(key) else None
        if bundle is None:
            raise HTTPError(404)
        try:
            png = make(bundle)
        except LookupError:  # IndexError, KeyError: no such row, layer or image
            raise HTTPError(404) from None
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "private, max-age=86400")  # a bundle never changes
        self.write(png)


class ThumbnailHandler(_ImageHandler):
    @authenticated
    def get(self, key: str, row: str) -> None:
        self._send(key, lambda bundle: thumbnail_png(bundle, int(row)))


class FeatureImageHandler(_ImageHandler):
    @authenticated
    def get(self, key: str, model: str, layer_index: str, neuron: str) -> None:
        self._send(key, lambda bundle: feature_png(bundle, model, int(layer_index), int(neuron)))


__all__ = ["FEATURE_ROUTE", "FeatureImageHandler", "ROUTE", "ThumbnailHandler",
           "feature_image_url", "feature_png", "png_bytes", "thumbnail_png", "thumbnail_url"]
