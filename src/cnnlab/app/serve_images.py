"""Uploaded image bytes -> the model's uint8 input, refusing what should not be decoded.

Checks in the order that costs least: empty body (400), a format Pillow recognises from
the header and that we allow (415), the pixel count read from the header **before any
pixel is decoded** (413; Pillow's own decompression-bomb check only warns between 1x and
2x its limit), then the decode itself (400 for truncated or damaged files).

Conversions, each chosen so that the model sees what a person sees:

- EXIF orientation is applied (a phone photo stored sideways is predicted upright);
- GIF and other multi-frame files: the first frame;
- 16-bit and 32-bit integer greys (``I;16``, ``I``) are rescaled to 8 bits by their
  bit depth, not clipped at 255 as Pillow's ``convert("L")`` would;
- palette images go through RGBA, so transparency is honoured;
- alpha is composited over **black**, the background of the digit and clothing sets
  the models here learn (a transparent PNG of a white shirt stays a white shirt);
- CMYK (and Adobe's inverted CMYK JPEGs, which Pillow reads) converts to RGB;
- then grey (``L``) or ``RGB`` as the model's channels ask, resized bilinearly to its
  input as ``cnnlab predict`` does.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
DEFAULT_MAX_PIXELS = 25_000_000  # 5000 x 5000: a large photo, far from a bomb


@dataclass
class UploadError(Exception):
    """An upload refused: the HTTP status and the message of its JSON error body."""

    status: int
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class Decoded:
    """An upload ready for the model."""

    image: torch.Tensor  # uint8 (C, H, W) at the model's input size
    size: tuple[int, int]  # (H, W) of the upright original
    format: str
    mode: str  # Pillow's mode as stored, e.g. "CMYK", "I;16", "RGBA"


def decode_upload(
    data: bytes, input_shape: tuple[int, ...], max_pixels: int = DEFAULT_MAX_PIXELS
) -> Decoded:
    """Check and decode ``data`` into the model's input (C, H, W) = ``input_shape``.

    Raises:
        UploadError: 400 empty or damaged, 413 too many pixels, 415 not an allowed format.
    """
    if not data:
        raise UploadError(400, "received an empty body; expected image bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        raise UploadError(
            415, f"not an image Pillow can identify; expected one of {', '.join(ALLOWED_FORMATS)}"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's own check, from the header, fired first: beyond twice its limit
        raise UploadError(413, f"{e}; the limit is {max_pixels:,} pixels") from None
    if img.format not in ALLOWED_FORMATS:
        raise UploadError(
            415, f"received a {img.format} image; expected one of {', '.join(ALLOWED_FORMATS)}"
        )
    width, height = img.size
    if width * height > max_pixels:
        raise UploadError(
            413,
            f"received a {width}x{height} image ({width * height:,} pixels); the limit is "
            f"{max_pixels:,} pixels",
        )
    mode = img.mode
    try:
        img.seek(0)  # the first frame of an animation
        img.load()
        upright_img: Image.Image = ImageOps.exif_transpose(img)
        array = _to_channels(upright_img, input_shape[0])
    except (OSError, ValueError, SyntaxError) as e:
        raise UploadError(400, f"damaged or truncated {img.format} image ({e})") from None
    _c, h, w = input_shape
    upright = (array.shape[0], array.shape[1])
    resized = Image.fromarray(array).resize((w, h), Image.Resampling.BILINEAR)
    out = np.asarray(resized, dtype=np.uint8)
    out = out[None] if out.ndim == 2 else out.transpose(2, 0, 1)
    return Decoded(torch.from_numpy(out.copy()), upright, str(img.format or ""), mode)


def _to_channels(img: Image.Image, channels: int) -> np.ndarray:
    """(H, W) uint8 for one channel, (H, W, 3) for three, by the rules in the docstring."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(img, dtype=np.float64)
        # 16-bit files (Pillow reads some as "I"); wider values keep their own range
        top = max(65535.0, float(values.max(initial=0)))
        grey = Image.fromarray(np.clip(values / top * 255 + 0.5, 0, 255).astype(np.uint8))
        return np.asarray(grey if channels == 1 else grey.convert("RGB"))
    if img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        span = max(float(values.max(initial=0) - values.min(initial=0)), 1e-12)
        grey = Image.fromarray(((values - values.min()) / span * 255 + 0.5).astype(np.uint8))
        return np.asarray(grey if channels == 1 else grey.convert("RGB"))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    return np.asarray(img.convert("L" if channels == 1 else "RGB"))
