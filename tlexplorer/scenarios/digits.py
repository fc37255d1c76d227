"""The built-in digits scenario: printed house-number digits → handwritten digits, made offline.

It rebuilds the paper's SVHN → MNIST case study (§6.2) without downloads:

* source domain ``printed``: digits rendered with PIL from the fonts that ship inside matplotlib, in
  the style of street-view house-number crops (random font, size, weight, slant, position, colours,
  textured background, neighbouring digits cut by the borders, blur and noise);
* target domain ``handwritten``: scikit-learn's 1,797 8×8 handwritten digits, upscaled to 32×32
  and drawn white on black like MNIST.

Both are cached as ``.npy`` files under ``<data_dir>/digits/``, keyed by generator version, seed and
``per_class``, and split 85% / 15% into train / validation per domain, stratified and seeded.
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..datasets.base import HALF_NORM, ArrayDomainSplit, TransferData
from ..datasets.splits import stratified_split
from ..errors import DataError

log = logging.getLogger(__name__)

#: Bump whenever the generated pixels change, so that old caches are not reused.
GENERATOR_VERSION = 1
CLASSES = [str(d) for d in range(10)]
IMAGE_SIZE = 32
SOURCE_DOMAIN, TARGET_DOMAIN = "printed", "handwritten"
VAL_FRACTION = 0.15
N_HANDWRITTEN = 1797

#: matplotlib's fonts with lining digits (cmmi10 has old-style figures; the STIX size/NonUni and
#: *Display fonts have no digits at all).
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmti10.ttf",
)

# Rendering canvas: wide enough for a neighbouring digit on each side, which the final affine
# warp into 32×32 then cuts at the left / right borders like an SVHN crop.
_CANVAS_W, _CANVAS_H = 96, 48
_BATCH = 500  # fixed, so the random stream (and thus the pixels) never depends on a batch setting


# --------------------------------------------------------------------------------------------- fonts
def font_paths() -> list[Path]:
    """The font files the printed domain draws from (those of :data:`FONT_FILES` that exist)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    found = [folder / name for name in FONT_FILES if (folder / name).is_file()]
    if not found:
        raise DataError(f"no usable font files in {folder}: the printed digits need matplotlib's fonts")
    return found


@lru_cache(maxsize=1024)  # fonts × pixel heights in use: a few hundred
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@lru_cache(maxsize=64)
def _digit_height_ratio(path: str) -> float:
    """Digit height in pixels per point of font size, to render digits at a chosen pixel height."""
    font = _font(path, 100)
    heights = [font.getbbox(str(d))[3] - font.getbbox(str(d))[1] for d in range(10)]
    return float(np.median(heights)) / 100.0


class _GlyphCache:
    """Tight uint8 masks of digits by (font, digit, pixel height, stroke); rendered once each."""

    def __init__(self, fonts: list[Path]):
        self.fonts = [str(f) for f in fonts]
        self._masks: dict = {}

    def mask(self, font: int, digit: int, height: int, stroke: int) -> np.ndarray:
        key = (font, digit, height, stroke)
        mask = self._masks.get(key)
        if mask is None:
            path = self.fonts[font]
            size = max(4, int(round(height / _digit_height_ratio(path))))
            face = _font(path, size)
            left, top, right, bottom = face.getbbox(str(digit), stroke_width=stroke)
            img = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
            ImageDraw.Draw(img).text((-left, -top), str(digit), fill=255, font=face,
                                     stroke_width=stroke, stroke_fill=255)
            mask = self._masks[key] = np.asarray(img, dtype=np.uint8)
        return mask


def _paste_max(canvas: np.ndarray, mask: np.ndarray, x0: int, y0: int) -> None:
    """``canvas[y0:, x0:] = max(canvas, mask)``, clipped to the canvas."""
    h, w = mask.shape
    cy0, cx0 = max(y0, 0), max(x0, 0)
    cy1, cx1 = min(y0 + h, canvas.shape[0]), min(x0 + w, canvas.shape[1])
    if cy1 <= cy0 or cx1 <= cx0:
        return
    region = canvas[cy0:cy1, cx0:cx1]
    np.maximum(region, mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0], out=region)


# ---------------------------------------------------------------------------------- printed digits
_MIN_CONTRAST = 60.0
_LUMA = np.array([0.299, 0.587, 0.114])


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ _LUMA


def _random_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """float (n, 3) RGB in [0, 255] from HSV with saturation skewed low (most plates are muted)."""
    h, s, v = rng.random(n) * 6.0, 0.85 * rng.random(n) ** 2, rng.uniform(0.05, 1.0, n)
    # Vectorised HSV → RGB: the classic sextant formula.
    k = np.stack([(5.0 + h) % 6, (3.0 + h) % 6, (1.0 + h) % 6], axis=1)
    rgb = v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return rgb * 255.0


def _draw_params(rng: np.random.Generator, n: int, n_fonts: int) -> dict:
    """Every per-image random choice of a batch, drawn up front (vectorised, reproducible)."""
    p = {
        "font": rng.integers(0, n_fonts, n),
        "height": rng.integers(13, 24, n),                   # digit height in px of the 32×32 crop
        "stroke": (rng.random(n) < 0.2).astype(int),         # faux bold on top of the bold fonts
        "left": rng.random(n) < 0.5, "right": rng.random(n) < 0.5,  # neighbouring digits
        "left_digit": rng.integers(0, 10, n), "right_digit": rng.integers(0, 10, n),
        "gap": rng.integers(2, 6, n),
        "angle": rng.normal(0.0, 0.06, n).clip(-0.15, 0.15),  # radians
        "shear": rng.normal(0.0, 0.08, n).clip(-0.2, 0.2),
        "aspect": rng.uniform(0.85, 1.2, n),
        "dx": rng.normal(0.0, 1.2, n).clip(-3, 3), "dy": rng.normal(0.0, 1.2, n).clip(-3, 3),
        "blur": rng.choice([0.0, 0.4, 0.7, 1.0], n, p=[0.3, 0.3, 0.25, 0.15]),
        "noise": rng.uniform(0.0, 10.0, n),
    }
    # Colours: mostly muted like painted plates and walls, with enough luminance contrast between
    # the digit and its background to read it.
    bg, fg = _random_colours(rng, n), _random_colours(rng, n)
    for _ in range(20):  # resample the low-contrast pairs; bounded, and seeded like the rest
        weak = np.abs(_luminance(fg) - _luminance(bg)) < _MIN_CONTRAST
        if not weak.any():
            break
        fg[weak] = _random_colours(rng, int(weak.sum()))
    weak = np.abs(_luminance(fg) - _luminance(bg)) < _MIN_CONTRAST
    fg[weak] = np.where(_luminance(bg[weak])[:, None] > 127, 20.0, 235.0)  # fall back to dark/light
    p["bg"], p["fg"] = bg, fg
    # Background texture: a linear gradient and low-frequency noise, per image.
    p["grad_dir"] = rng.uniform(0, 2 * np.pi, n)
    p["grad_amp"] = rng.uniform(-45, 45, n)
    p["tex_amp"] = rng.uniform(0, 35, n)
    p["tex"] = rng.normal(0, 1, (n, 4, 4, 3))
    p["pixel_noise"] = rng.normal(0, 1, (n, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    return p


def _glyph_layer(glyphs: _GlyphCache, label: int, p: dict, i: int) -> np.ndarray:
    """The digit (and its neighbours) as a float32 (32, 32) coverage mask in [0, 1]."""
    font, height, stroke = int(p["font"][i]), int(p["height"][i]), int(p["stroke"][i])
    canvas = np.zeros((_CANVAS_H, _CANVAS_W), dtype=np.uint8)
    center = glyphs.mask(font, label, height, stroke)
    h, w = center.shape
    x0, y0 = (_CANVAS_W - w) // 2, (_CANVAS_H - h) // 2
    _paste_max(canvas, center, x0, y0)
    gap = int(p["gap"][i])
    if p["left"][i]:
        m = glyphs.mask(font, int(p["left_digit"][i]), height, stroke)
        _paste_max(canvas, m, x0 - gap - m.shape[1], y0 + h - m.shape[0])  # bottoms aligned
    if p["right"][i]:
        m = glyphs.mask(font, int(p["right_digit"][i]), height, stroke)
        _paste_max(canvas, m, x0 + w + gap, y0 + h - m.shape[0])
    # Affine warp canvas → 32×32: rotation · shear · horizontal stretch, centred with a jitter.
    a, s, k = float(p["angle"][i]), float(p["shear"][i]), float(p["aspect"][i])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    forward = rot @ np.array([[1.0, s], [0.0, 1.0]]) @ np.diag([k, 1.0])
    inverse = np.linalg.inv(forward)
    c_out = np.array([IMAGE_SIZE / 2 + p["dx"][i], IMAGE_SIZE / 2 + p["dy"][i]])
    c_in = np.array([x0 + w / 2, y0 + h / 2])
    offset = c_in - inverse @ c_out  # input = inverse @ output + offset
    coeffs = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    warped = Image.fromarray(canvas).transform((IMAGE_SIZE, IMAGE_SIZE), Image.Transform.AFFINE,
                                               coeffs, resample=Image.Resampling.BILINEAR)
    return np.asarray(warped, dtype=np.float32) / 255.0


def _backgrounds(p: dict, n: int) -> np.ndarray:
    """float32 (n, 32, 32, 3): flat colour + gradient + smooth texture."""
    coords = (np.arange(IMAGE_SIZE, dtype=np.float32) - (IMAGE_SIZE - 1) / 2) / (IMAGE_SIZE / 2)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    ramp = (np.cos(p["grad_dir"])[:, None, None] * xx + np.sin(p["grad_dir"])[:, None, None] * yy)
    bg = p["bg"][:, None, None, :] + (p["grad_amp"][:, None, None] * ramp)[..., None]
    # Smooth texture: a 4×4 random field upsampled bilinearly (separable linear interpolation).
    up = np.linspace(0, 3, IMAGE_SIZE)
    lo = np.minimum(np.floor(up).astype(int), 2)
    t = (up - lo)[:, None]
    field = p["tex"]                                                     # (n, 4, 4, 3)
    rows = field[:, lo] * (1 - t)[None, :, :, None] + field[:, lo + 1] * t[None, :, :, None]
    tex = rows[:, :, lo] * (1 - t)[None, None, :, :] + rows[:, :, lo + 1] * t[None, None, :, :]
    return (bg + p["tex_amp"][:, None, None, None] * tex).astype(np.float32)


def render_printed(labels: np.ndarray, rng: np.random.Generator, *,
                   progress: bool = False) -> np.ndarray:
    """Render house-number-style printed digits.

    Parameters
    ----------
    labels : array-like of int in 0..9, shape (N,)
        The digit at the centre of each image.
    rng : numpy.random.Generator
        The only source of randomness: the same generator state gives the same pixels.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    ndarray of uint8, shape (N, 32, 32, 3)
    """
    from tqdm.auto import tqdm

    labels = np.asarray(labels, dtype=np.int64)
    glyphs = _GlyphCache(font_paths())
    out = np.empty((len(labels), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    with tqdm(total=len(labels), desc="printed digits", unit="img", disable=not progress) as bar:
        for start in range(0, len(labels), _BATCH):
            batch = labels[start:start + _BATCH]
            n = len(batch)
            p = _draw_params(rng, n, len(glyphs.fonts))
            alpha = np.stack([_glyph_layer(glyphs, int(batch[i]), p, i) for i in range(n)])[..., None]
            img = _backgrounds(p, n) * (1 - alpha) + p["fg"][:, None, None, :].astype(np.float32) * alpha
            img = np.clip(img, 0, 255).astype(np.uint8)
            for i in range(n):  # lens / motion softness, as in street-view crops
                if p["blur"][i] > 0:
                    img[i] = np.asarray(Image.fromarray(img[i]).filter(ImageFilter.GaussianBlur(float(p["blur"][i]))))
            noisy = img + p["noise"][:, None, None, None].astype(np.float32) * p["pixel_noise"]
            out[start:start + n] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
            bar.update(n)
    return out


def make_printed(per_class: int = 1000, seed: int = 0, *,
                 progress: bool = False) -> "tuple[np.ndarray, np.ndarray]":
    """Generate the ``printed`` domain: ``per_class`` images of each digit, in a seeded order.

    Returns
    -------
    images : ndarray of uint8, shape (10 * per_class, 32, 32, 3)
    labels : ndarray of int64, shape (10 * per_class,)
    """
    if int(per_class) < 2:
        raise DataError(f"per_class must be at least 2, got {per_class}")
    if int(seed) < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed}")
    rng = np.random.default_rng([int(seed), GENERATOR_VERSION])
    labels = rng.permutation(np.repeat(np.arange(10, dtype=np.int64), int(per_class)))
    return render_printed(labels, rng, progress=progress), labels


# ------------------------------------------------------------------------------ handwritten digits
def make_handwritten() -> "tuple[np.ndarray, np.ndarray]":
    """The ``handwritten`` domain: scikit-learn's digits as MNIST-like 32×32 images.

    Each 8×8 image (values 0–16) is upscaled bicubically to 24×24 and centred in a 32×32 black frame
    (MNIST centres its digits in a 20×20 box of 28×28); a contrast curve then sharpens the
    upscaled blobs into strokes. Deterministic; there is no randomness here.

    Returns
    -------
    images : ndarray of uint8, shape (1797, 32, 32, 3)
        White digit on black, the three channels equal.
    labels : ndarray of int64, shape (1797,)
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = bunch.images.astype(np.float32) / 16.0
    inner, pad = 24, (IMAGE_SIZE - 24) // 2
    out = np.zeros((len(small), IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for i, img in enumerate(small):
        big = Image.fromarray(img, mode="F").resize((inner, inner), Image.Resampling.BICUBIC)
        out[i, pad:pad + inner, pad:pad + inner] = np.asarray(big)
    # Smoothstep around 0.4: thin soft halos go dark, stroke cores saturate → crisp pen strokes.
    x = np.clip((out - 0.15) / 0.6, 0.0, 1.0)
    x = x * x * (3 - 2 * x)
    grey = np.rint(x * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=3), bunch.target.astype(np.int64)


# ------------------------------------------------------------------------------------------ caching
def _save_npy(path: Path, array: np.ndarray) -> None:
    from .._io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: np.save adds no suffix
        np.save(fh, array, allow_pickle=False)


def _load_npy(path: Path) -> "np.ndarray | None":
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as exc:  # truncated, garbage or pickled content
        log.warning("regenerating corrupt cache file %s (%s)", path, exc)
        return None


def _cached(stem: Path, make: Callable[[], "tuple[np.ndarray, np.ndarray]"],
            n: int) -> "tuple[np.ndarray, np.ndarray]":
    """Images and labels from ``{stem}-images.npy`` / ``-labels.npy``, or ``make()`` them and save."""
    images_path = stem.with_name(stem.name + "-images.npy")
    labels_path = stem.with_name(stem.name + "-labels.npy")
    images, labels = _load_npy(images_path), _load_npy(labels_path)
    valid = (images is not None and labels is not None
             and images.dtype == np.uint8 and images.shape == (n, IMAGE_SIZE, IMAGE_SIZE, 3)
             and labels.dtype == np.int64 and labels.shape == (n,)
             and labels.min(initial=0) >= 0 and labels.max(initial=0) < len(CLASSES))
    if valid:
        return images, labels
    images, labels = make()
    _save_npy(images_path, images)
    _save_npy(labels_path, labels)
    return images, labels


def default_data_dir() -> Path:
    """``tlexplorer.config.settings().data_dir`` (``TLX_DATA_DIR``, default ``./data``)."""
    from ..config import settings

    return Path(settings().data_dir)


def cache_dir(data_dir: "str | os.PathLike | None" = None) -> Path:
    """Where the digits scenario caches its arrays: ``<data_dir>/digits``."""
    return Path(data_dir if data_dir is not None else default_data_dir()).expanduser() / "digits"


def load_printed(per_class: int = 1000, seed: int = 0, *, data_dir=None,
                 progress: bool = False) -> "tuple[np.ndarray, np.ndarray]":
    """The ``printed`` domain from the cache, generated on first use. Shapes as :func:`make_printed`."""
    stem = cache_dir(data_dir) / f"printed-v{GENERATOR_VERSION}-seed{int(seed)}-n{int(per_class)}"
    return _cached(stem, lambda: make_printed(per_class, seed, progress=progress), 10 * int(per_class))


def load_handwritten(*, data_dir=None) -> "tuple[np.ndarray, np.ndarray]":
    """The ``handwritten`` domain from the cache (it depends on no seed). Shapes as :func:`make_handwritten`."""
    stem = cache_dir(data_dir) / f"handwritten-v{GENERATOR_VERSION}"
    return _cached(stem, make_handwritten, N_HANDWRITTEN)


# ------------------------------------------------------------------------------------------ scenario
def _split_domain(images: np.ndarray, labels: np.ndarray, *, domain: str, role: str,
                  seed: int) -> "tuple[ArrayDomainSplit, ArrayDomainSplit]":
    train_idx, val_idx = stratified_split(labels, VAL_FRACTION, seed)
    return tuple(
        ArrayDomainSplit(images[idx], labels[idx], domain=domain, role=role, split=split,
                         classes=CLASSES, indices=idx, norm=HALF_NORM)
        for split, idx in (("train", train_idx), ("val", val_idx)))


def load_digits_scenario(*, seed: int = 0, per_class: int = 1000,
                         data_dir: "str | os.PathLike | None" = None,
                         progress: bool = True) -> TransferData:
    """The digits scenario: printed (source) → handwritten (target), 32×32 RGB, 10 classes.

    Parameters
    ----------
    seed : int
        Seeds the printed images and both domains' train / validation splits.
    per_class : int
        Printed images per digit (the handwritten domain has its fixed 1,797 images).
    data_dir : path, optional
        The data directory; arrays are cached in ``<data_dir>/digits``. Default:
        ``tlexplorer.config.settings().data_dir`` (``TLX_DATA_DIR``).
    progress : bool
        Show a progress bar while generating (not when loading from the cache).

    Returns
    -------
    TransferData
        ``ArrayDomainSplit`` s of uint8 (N, 32, 32, 3) images normalised with ``HALF_NORM``; the
        printed domain has ``10 * per_class`` images, 85% of each class in train; ``spec`` is
        ``{"kind": "scenario", "name": "digits", "seed", "per_class", "data_dir"}``.
    """
    seed, per_class = int(seed), int(per_class)
    base_dir = Path(data_dir if data_dir is not None else default_data_dir()).expanduser().absolute()
    printed = load_printed(per_class, seed, data_dir=base_dir, progress=progress)
    handwritten = load_handwritten(data_dir=base_dir)
    source_train, source_val = _split_domain(*printed, domain=SOURCE_DOMAIN, role="source", seed=seed)
    target_train, target_val = _split_domain(*handwritten, domain=TARGET_DOMAIN, role="target", seed=seed)
    spec = {"kind": "scenario", "name": "digits", "seed": seed, "per_class": per_class,
            "data_dir": str(base_dir)}
    return TransferData(list(CLASSES), source_train, source_val, target_train, target_val, spec)
