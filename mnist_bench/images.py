"""The one decoding guard for users' image files: every surface that reads an image a user
supplies (`mnist-bench predict`, the server's ``POST /predict``, `mnist-bench finetune`'s
folder) decodes it here, and nowhere else.

    pixels = read_image_bytes(data, name="upload")          # (H, W) or (H, W, 3) uint8/float64
    pixels = read_image_file("digit.jpg")                    # the same from a file

What it guards against, before a pixel is decoded: a file that declares more pixels than
`MAX_PIXELS` (PIL parses only the header on open; a 2 KB PNG can declare 40000x40000, i.e.
1.6 GB once decoded) -> `ImageTooLarge`. What it reads correctly: 8-bit grayscale, RGB, 16-bit
and 32-bit integer grayscale (``I;16``, ``I``: scaled to 0..255), CMYK and YCbCr (to RGB),
bilevel and palette images, and transparency (``LA``, ``RGBA``, ``PA``, a palette's
transparent index) composited over white paper, as a drawing on a transparent background is
seen; the EXIF orientation of a phone photo is applied. What it refuses, by name: bytes that
are no image or a truncated one (`UnreadableImage`), an animated image (several frames: which
one holds the digit is a guess we do not make) and modes whose pixel range is unknown (32-bit
float ``F``) (`UnsupportedImage`). Every refusal is a `ValueError` naming the file.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS = 25_000_000  # a 24-megapixel camera's photo; prepare_photo holds a few float64
# copies (~200 MB each at this size). The server sets a lower limit (serving.MAX_PIXELS).
WHITE = 255
_INTEGER_GRAY = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_TRANSPARENT = ("LA", "La", "PA", "RGBA", "RGBa")


class ImageError(ValueError):
    """An image a user supplied that is not read; the message names the file and why."""


class UnreadableImage(ImageError):
    """The bytes are no image PIL can decode, or a truncated or damaged one."""


class ImageTooLarge(ImageError):
    """The image declares more pixels than the limit (checked before decoding)."""


class UnsupportedImage(ImageError):
    """An image that decodes, but not into one digit we can read (animated, float pixels)."""


# -- helpers ------------------------------------------------------------------------------


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Open (parse the header of) `data`; PIL's own refusals become `ImageError`s."""
    try:
        # PIL warns above Image.MAX_IMAGE_PIXELS (89 M) and raises above twice that, on open;
        # every limit here is lower, so its warning is our refusal, not a line on stderr.
        # (catch_warnings is process-wide: a thread racing it at worst keeps this filter.)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        declared = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise ImageTooLarge(
            f"{name}: image too large: it declares {declared}, over the {max_pixels:,}-pixel limit"
        ) from exc
    except Exception as exc:  # PIL raises many types on hostile bytes
        raise UnreadableImage(f"{name}: cannot read image: {_why(exc)}") from exc


def _why(exc: BaseException) -> str:
    text = str(exc).split("\n")[0]
    if "BytesIO" in text:  # PIL's message then names an in-memory object, not the file
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_declared(img: Image.Image, name: str, max_pixels: int) -> None:
    width, height = img.size
    if width < 1 or height < 1:
        raise UnreadableImage(f"{name}: cannot read image: it declares {width}x{height} pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{name}: image too large: {width}x{height} pixels, over the {max_pixels:,}-pixel limit"
        )
    if getattr(img, "is_animated", False):
        raise UnsupportedImage(
            f"{name}: unsupported image: animated {img.format}, {img.n_frames} frames; "
            "send one still image of the digit"
        )
    if img.mode == "F":
        raise UnsupportedImage(f"{name}: unsupported image: 32-bit float pixels (mode F)")


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    paper = Image.new("RGBA", rgba.size, (WHITE, WHITE, WHITE, 255))
    return Image.alpha_composite(paper, rgba).convert("RGB")


def _to_array(img: Image.Image) -> np.ndarray:
    """(H, W) or (H, W, 3) pixels of a decoded image, 0..255."""
    if img.mode in _INTEGER_GRAY:  # 16/32-bit integer grayscale: 0..65535 -> 0..255
        values = np.asarray(img, dtype=np.float64)
        return np.clip(values, 0.0, 65535.0) * (255.0 / 65535.0)
    has_alpha = img.mode in _TRANSPARENT or "transparency" in img.info
    if has_alpha:
        return np.asarray(_composite_on_white(img))
    if img.mode in ("L", "RGB"):
        return np.asarray(img)
    if img.mode == "1":
        return np.asarray(img.convert("L"))
    return np.asarray(img.convert("RGB"))  # P, CMYK, YCbCr, LAB, HSV...


# -- public functions ---------------------------------------------------------------------


def read_image_bytes(
    data: bytes, *, name: str = "image", max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Decode one image a user supplied, guarded (see the module docstring).

    Parameters
    ----------
    data : bytes
        The encoded image: PNG, JPEG, or anything else PIL reads.
    name : str, default="image"
        What error messages call it: the file's path, or e.g. "upload".
    max_pixels : int, default=`MAX_PIXELS`
        Width x height above which the image is refused before decoding.

    Returns
    -------
    ndarray of shape (H, W) or (H, W, 3)
        uint8 for 8-bit images; float64 in [0, 255] for 16/32-bit integer grayscale. EXIF
        orientation applied; transparency composited over white.

    Raises
    ------
    ImageTooLarge, UnreadableImage, UnsupportedImage
        All `ImageError`, a `ValueError`, with a one-line message starting with `name`.
    """
    if not data:
        raise UnreadableImage(f"{name}: cannot read image: empty, expected a PNG or JPEG image")
    img = _open(data, name, max_pixels)
    with img:
        _check_declared(img, name, max_pixels)
        try:
            img.load()
            upright = ImageOps.exif_transpose(img)
            array = _to_array(upright)
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(f"{name}: image too large to decode: {_why(exc)}") from exc
        except MemoryError as exc:
            raise ImageTooLarge(f"{name}: not enough memory to decode the image") from exc
        except Exception as exc:  # truncated or damaged data, any decoder
            raise UnreadableImage(f"{name}: cannot read image: {_why(exc)}") from exc
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise UnreadableImage(f"{name}: cannot read image: empty, shape {array.shape}")
    return array


def read_image_file(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """`read_image_bytes` of a file, named by its path in every error.

    A file over ``8 * max_pixels`` bytes + 1 MiB is refused without being read: no image
    within the limit needs more (no format read here stores a pixel in over 8 bytes).

    Raises
    ------
    ImageError
        As `read_image_bytes`, also for a missing or unreadable file.
    """
    path = Path(path)
    limit = max_pixels * 8 + (1 << 20)
    try:
        size = path.stat().st_size
        if size > limit:
            raise ImageTooLarge(f"{path}: file of {size:,} bytes exceeds {limit:,} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableImage(f"{path}: cannot read image: {exc.strerror or exc}") from exc
    return read_image_bytes(data, name=str(path), max_pixels=max_pixels)
