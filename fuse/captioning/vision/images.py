"""Loading images from files, PIL images and arrays into RGB, with clear errors.

Every input ends up as an 8-bit RGB :class:`PIL.Image.Image`: grayscale is replicated, alpha
(RGBA, LA, transparent palettes) is composited on white (clip art is drawn on transparency),
16-bit and float images are rescaled to 0..255, CMYK/YCbCr/palette are converted, and the EXIF
orientation is applied. Huge images are decoded reduced (JPEG draft mode) and shrunk to
``max_side``; images over ``max_pixels`` are refused before decoding. Unreadable files raise
:class:`ImageLoadError` (a ``ValueError``) naming the file and what to do.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

MAX_PIXELS = 400_000_000  # refuse to decode more than this (PIL's bomb guard is 179M)
MAX_SIDE = 2048  # images are shrunk to this longest side right after decoding
TINY_SIDE = 16  # below this a warning says the scorer sees little


class ImageLoadError(ValueError):
    """An image that cannot be read or understood; ``source`` names it."""

    def __init__(self, source, message: str):
        super().__init__(f"{_describe(source)}: {message}")
        self.source = source
        self.reason = message


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"image {str(source)!r}"
    return f"image ({type(source).__name__})"


def _from_array(arr: np.ndarray, source) -> Image.Image:
    """An 8-bit RGB/RGBA image from an array ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` with C in 1, 3, 4."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ImageLoadError(source, f"an image array must be (H, W), (H, W, 1|3|4) or (1|3|4, H, W); got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageLoadError(source, f"the image is empty (shape {a.shape})")
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageLoadError(source, "the image has NaN or infinite pixel values")
        hi = float(a.max()) if a.size else 0.0
        a = np.clip(a * 255.0 if hi <= 1.0 else a, 0, 255).round().astype(np.uint8)
    elif a.dtype == np.uint16 or (np.issubdtype(a.dtype, np.integer) and a.max(initial=0) > 255):
        a = a.astype(np.float64)
        lo = min(0.0, float(a.min()))
        hi = 65535.0 if a.max() <= 65535 and lo == 0 else float(a.max())
        a = np.clip((a - lo) / max(hi - lo, 1.0) * 255.0, 0, 255).round().astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        a = np.clip(a, 0, 255).astype(np.uint8)
    else:
        raise ImageLoadError(source, f"unsupported pixel dtype {a.dtype}; use uint8, uint16, bool or float in [0, 1]")
    mode = "L" if a.ndim == 2 else ("RGB" if a.shape[-1] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(a), mode)


def to_rgb(im: Image.Image, source=None, background=(255, 255, 255)) -> Image.Image:
    """Any PIL image as 8-bit RGB (alpha composited on ``background``, 16-bit/float rescaled)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        im = _from_array(np.asarray(im), source)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "La", "RGBa", "PA"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        bg = Image.new("RGB", im.size, background)
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    if im.mode == "1":
        im = im.convert("L")
    return im.convert("RGB") if im.mode != "RGB" else im


def load_image(source, *, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Load one image as 8-bit RGB.

    Args:
        source: a path, a :class:`PIL.Image.Image`, or an array ``(H, W[, C])`` / ``(C, H, W)``
            (uint8, uint16, bool, or float in [0, 1]); a torch tensor is taken as an array.
        max_side: longest side kept after decoding (larger images are shrunk, aspect kept).
        max_pixels: files with more pixels are refused before decoding.

    Returns:
        an RGB PIL image, at most ``max_side`` on its longest side.

    Raises:
        ImageLoadError: missing, unreadable, corrupt, empty or absurdly large images.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageLoadError(source, "no such file; check the path")
        if path.is_dir():
            raise ImageLoadError(source, "is a folder, not an image file; pass the image files inside it")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                try:
                    with Image.open(path) as im:
                        w, h = im.size
                        if w * h > max_pixels:
                            raise ImageLoadError(source, f"{w}x{h} pixels is more than max_pixels={max_pixels}; "
                                                         "shrink it first or raise max_pixels")
                        if im.format == "JPEG" and max(w, h) > 2 * max_side:
                            im.draft("RGB", (max_side, max_side))  # decode reduced: far less memory
                        im.load()
                        im = ImageOps.exif_transpose(im)
                        out = to_rgb(im, source)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
        except ImageLoadError:
            raise
        except UnidentifiedImageError:
            raise ImageLoadError(source, "not an image format PIL can read (PNG, JPEG, TIFF, BMP, GIF, WebP ...)") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise ImageLoadError(source, f"the file is corrupt or truncated ({type(e).__name__}: {e})") from None
    elif isinstance(source, Image.Image):
        if source.size[0] == 0 or source.size[1] == 0:
            raise ImageLoadError(source, f"the image is empty ({source.size})")
        out = to_rgb(source, source)
    elif hasattr(source, "__array__") or isinstance(source, (list, tuple)):
        if hasattr(source, "detach"):
            source = source.detach().cpu().numpy()
        out = to_rgb(_from_array(np.asarray(source), source), source)
    else:
        raise ImageLoadError(source, "pass a file path, a PIL image or an array (H, W[, C])")
    if max(out.size) > max_side:
        out = out.copy()
        out.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    if min(out.size) < TINY_SIDE:
        logger.warning("%s is tiny (%dx%d): it is upscaled, and the scorer sees little", _describe(source), *out.size)
    return out


def load_images(sources, *, on_error: str = "raise", **kwargs) -> tuple[list[Image.Image | None], list[str | None]]:
    """Load many images; with ``on_error="skip"`` a bad one gives ``None`` and its error message.

    Returns:
        ``(images, errors)``, both as long as ``sources``.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    images, errors = [], []
    for s in sources:
        try:
            images.append(load_image(s, **kwargs))
            errors.append(None)
        except ImageLoadError as e:
            if on_error == "raise":
                raise
            logger.warning("skipping %s", e)
            images.append(None)
            errors.append(str(e))
    return images, errors
