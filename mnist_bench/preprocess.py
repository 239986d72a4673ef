"""Turning pixels into model inputs: scaling, one-hot labels, and users' photos of digits.

`preprocess_images` and `one_hot` prepare MNIST arrays for the model. `prepare_photo` makes a
photo or scan of one handwritten digit look like an MNIST digit, the way MNIST itself was made
(LeCun et al., http://yann.lecun.com/exdb/mnist/): light ink on a dark background, the digit
scaled with anti-aliasing to fit a 20x20 box, then placed in a 28x28 field so that its centre
of mass sits at the centre. `prepare_image_file` does the same from a PNG/JPEG/.npy file, and
`prepare_digit` from an array in memory (the server's uploads and canvas drawings).

Pixel values are 0..255 everywhere in this module, whatever the dtype: an input of floats
already scaled to [0, 1] is not recognised as such (it would read as a nearly black image).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .images import read_image_file

IMAGE_SIZE = 28  # MNIST field, pixels
DIGIT_BOX = 20  # MNIST digits were scaled so their longer side fits 20 pixels
CENTRE = 14.0  # centre of mass target (row, col), in pixel indices: MNIST's mean is (14, 14)
INK_FRACTION = 0.1  # a pixel is ink above this fraction of the ink level (ignores paper noise)
INK_LEVEL_PERCENTILE = 90  # the ink level: this percentile of the inked pixels, stretched to 255
_ACCEPTED_SHAPES = "(n, 28, 28), (n, 28, 28, 1) or (n, 784)"
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601-2 luma, as PIL's convert("L")


# -- checks ---------------------------------------------------------------------------------


def _check_numeric(a: np.ndarray, what: str) -> None:
    """Raise unless `a` holds real numbers (no bool, complex, object or strings)."""
    if a.dtype == np.bool_ or not (
        np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
    ):
        raise ValueError(f"{what} must be an integer or float array, got dtype {a.dtype}")


def _check_pixels(a: np.ndarray, what: str) -> None:
    """Raise unless every value of `a` is a finite pixel value in [0, 255]."""
    _check_numeric(a, what)
    if a.dtype == np.uint8 or a.size == 0:
        return
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise ValueError(f"{what} contain NaN or infinite values; expected pixel values 0..255")
    low, high = a.min(), a.max()
    if low < 0 or high > 255:
        raise ValueError(f"{what} must be pixel values in [0, 255], got values in [{low}, {high}]")


# -- model inputs ---------------------------------------------------------------------------


def preprocess_images(x: np.ndarray) -> np.ndarray:
    """Scale MNIST-style images to the model's input: pixel / 255, one channel.

    Parameters
    ----------
    x : array-like of shape (n, 28, 28), (n, 28, 28, 1) or (n, 784)
        Pixel values in [0, 255]: uint8, or any integer or float dtype. Floats already scaled
        to [0, 1] are not accepted as such: they would be divided by 255 again.

    Returns
    -------
    ndarray of shape (n, 28, 28, 1), float32 in [0, 1]
        ``x / 255`` computed in float32 (exactly ``np.float32(p) / np.float32(255)``); a new
        array, `x` is never modified.

    Raises
    ------
    ValueError
        For another shape, a non-numeric dtype, NaN or infinite values, or values outside
        [0, 255].
    """
    a = np.asarray(x)
    pixels = IMAGE_SIZE * IMAGE_SIZE
    layouts = {(IMAGE_SIZE, IMAGE_SIZE), (IMAGE_SIZE, IMAGE_SIZE, 1), (pixels,)}
    if a.ndim < 2 or a.shape[1:] not in layouts:
        raise ValueError(f"images must have shape {_ACCEPTED_SHAPES}, got shape {a.shape}")
    _check_pixels(a, "images")
    out = a.reshape(len(a), IMAGE_SIZE, IMAGE_SIZE, 1).astype(np.float32)  # always a copy
    out /= np.float32(255.0)
    return out


def one_hot(y: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """One-hot encode integer class labels.

    Parameters
    ----------
    y : array-like of shape (n,)
        Class labels in [0, num_classes - 1]; an integer dtype, or floats with integer values.
    num_classes : int, default 10
        Number of classes (columns).

    Returns
    -------
    ndarray of shape (n, num_classes), float32
        Row ``i`` is 1 in column ``y[i]`` and 0 elsewhere.

    Raises
    ------
    ValueError
        For input that is not 1-D, non-integer values, or labels outside [0, num_classes - 1].
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes}")
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (n,), got shape {labels.shape}")
    _check_numeric(labels, "labels")
    if np.issubdtype(labels.dtype, np.floating) and not (
        np.isfinite(labels).all() and (labels == np.round(labels)).all()
    ):
        raise ValueError("labels must be integers, got non-integer values")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must be in [0, {num_classes - 1}], got values in "
            f"[{labels.min()}, {labels.max()}]"
        )
    out = np.zeros((len(labels), num_classes), dtype=np.float32)
    out[np.arange(len(labels)), labels.astype(np.intp)] = 1.0
    return out


# -- photos of digits -----------------------------------------------------------------------


def _to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) float64 in [0, 255] from a grayscale, RGB or RGBA array of pixel values."""
    a = np.asarray(image)
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))):
        raise ValueError(
            f"image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {a.shape}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"image is empty, shape {a.shape}")
    _check_pixels(a, "image pixels")
    a = a.astype(np.float64)
    if a.ndim == 2:
        return a
    if a.shape[2] == 1:
        return a[:, :, 0]
    gray = a[:, :, :3] @ _LUMA
    if a.shape[2] == 4:  # composite over white paper: transparent pixels are background
        alpha = a[:, :, 3] / 255.0
        gray = alpha * gray + (1.0 - alpha) * 255.0
    return gray


def _light_on_dark(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """`gray` inverted if its border is light, as MNIST is light ink on dark; and its background.

    The background level is the median of the border pixels: robust to ink touching an edge.
    """
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background > 127.5:
        return 255.0 - gray, 255.0 - background
    return gray, background


def _ink(gray: np.ndarray) -> np.ndarray:
    """Ink intensity (H, W) in [0, 255], light on dark: background 0, the stroke's ink 255."""
    gray, background = _light_on_dark(gray)
    ink = np.clip(gray - background, 0.0, None)
    if ink.max() <= 0:
        raise ValueError("no ink found: no pixel differs from the image's border")
    # Stretch a high percentile of the inked pixels to 255, not the maximum: one noisy pixel
    # would otherwise leave the whole stroke dim (MNIST strokes are saturated).
    level = np.percentile(ink[ink > INK_FRACTION * ink.max()], INK_LEVEL_PERCENTILE)
    return np.clip(ink * (255.0 / level), 0.0, 255.0)


def _crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """The bounding box of the pixels above INK_FRACTION of the ink level."""
    rows = np.flatnonzero((ink > INK_FRACTION * 255.0).any(axis=1))
    cols = np.flatnonzero((ink > INK_FRACTION * 255.0).any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _fit_box(digit: np.ndarray) -> np.ndarray:
    """Resize so the longer side is DIGIT_BOX pixels, keeping the aspect ratio."""
    h, w = digit.shape
    scale = DIGIT_BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL wants (width, height)
    # Bilinear in PIL widens its kernel when shrinking (anti-aliasing) and, unlike Lanczos,
    # has no negative lobes, so no ringing and no ink lost at the box's edges.
    image = Image.fromarray(digit.astype(np.float32))  # mode "F": no rounding before pasting
    resized = image.resize(size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float64), 0.0, 255.0)


def _paste_centred(digit: np.ndarray) -> np.ndarray:
    """Place `digit` in a 28x28 field with its centre of mass at (CENTRE, CENTRE)."""
    h, w = digit.shape
    rows, cols = np.indices(digit.shape)
    mass = digit.sum()
    com_row, com_col = (rows * digit).sum() / mass, (cols * digit).sum() / mass
    top = int(np.clip(round(CENTRE - com_row), 0, IMAGE_SIZE - h))  # clipped: stay inside
    left = int(np.clip(round(CENTRE - com_col), 0, IMAGE_SIZE - w))
    field = np.zeros((IMAGE_SIZE, IMAGE_SIZE))
    field[top : top + h, left : left + w] = digit
    return field


def prepare_photo(image: np.ndarray) -> np.ndarray:
    """Turn a photo or scan of one handwritten digit into an MNIST-style 28x28 digit.

    Steps, following how MNIST was made: convert to grayscale (RGBA is composited over white);
    invert when the background is light, judged by the median of the border pixels; subtract
    that background and stretch the ink level (the `INK_LEVEL_PERCENTILE` percentile of the
    inked pixels) to 255; crop to the bounding box of the pixels above `INK_FRACTION` of that
    level (faint paper noise does not widen it; no binarisation); resize with anti-aliasing,
    keeping the aspect ratio, so the longer side is 20 pixels; paste into a 28x28 field so the
    ink's centre of mass lands on pixel (14, 14), rounded to whole pixels and clipped so the
    digit stays inside.

    Parameters
    ----------
    image : array-like of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
        Grayscale, RGB or RGBA pixel values in [0, 255] (any integer or float dtype), any size.

    Returns
    -------
    ndarray of shape (28, 28), uint8 in [0, 255]
        Light digit on a black background, ready for `preprocess_images`.

    Raises
    ------
    ValueError
        For an unsupported shape or values, or "no ink found" for a blank (constant) image.
    """
    digit = _fit_box(_crop_to_ink(_ink(_to_gray(image))))
    return np.round(_paste_centred(digit)).astype(np.uint8)


def load_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file (PNG, JPEG, anything PIL reads) or a NumPy ``.npy`` array.

    Image files go through the decoding guard, `mnist_bench.images.read_image_file`: the
    declared size is checked before decoding, odd modes are read or refused by name.

    Parameters
    ----------
    path : path
        The file. ``.npy`` files are read with NumPy (no pickles), anything else with PIL.

    Returns
    -------
    ndarray of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
        Pixel values: uint8 for 8-bit images, float64 scaled to [0, 255] for 16-bit ones,
        the stored dtype for ``.npy`` files.

    Raises
    ------
    ValueError
        Naming the file, when it cannot be read, is empty, too large, or holds another shape
        (`mnist_bench.images.ImageError` for image files).
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        return read_image_file(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read image: {exc}") from exc
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))):
        raise ValueError(
            f"{path}: expected an image of shape (H, W) or (H, W, 1|3|4), got {array.shape}"
        )
    if array.size == 0:
        raise ValueError(f"{path}: the image is empty, shape {array.shape}")
    return array


def prepare_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a digit from a file and make it MNIST-style.

    A photo of any other size goes through `prepare_photo`. An image or ``.npy`` array that
    is already 28x28 is taken as an MNIST digit as is: only converted to grayscale and
    inverted if its background is light, never cropped, rescaled or re-centred (so an MNIST
    digit saved to a file reads back unchanged).

    Parameters
    ----------
    path : path
        PNG, JPEG (anything PIL reads) or ``.npy`` file, pixel values in [0, 255].

    Returns
    -------
    ndarray of shape (28, 28), uint8 in [0, 255]

    Raises
    ------
    ValueError
        Naming the file, when it cannot be read or holds no usable digit.
    """
    image = load_image_file(path)
    try:
        return prepare_digit(image)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def prepare_digit(image: np.ndarray) -> np.ndarray:
    """Make an image of one digit MNIST-style: `prepare_image_file` for an array in memory.

    An image of any size but 28x28 goes through `prepare_photo` (bounding box, 20x20, centre
    of mass in 28x28). A 28x28 image is taken as an MNIST digit as is: only converted to
    grayscale and inverted if its background is light.

    Parameters
    ----------
    image : array-like of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
        Pixel values in [0, 255], any integer or float dtype.

    Returns
    -------
    ndarray of shape (28, 28), uint8 in [0, 255]

    Raises
    ------
    ValueError
        For an unsupported shape or values, or "no ink found" for a blank image.
    """
    image = np.asarray(image)
    if image.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        return prepare_photo(image)
    gray, _ = _light_on_dark(_to_gray(image))
    if gray.max() == gray.min():  # a blank 28x28 image is no digit either
        raise ValueError("no ink found: every pixel has the same value")
    return np.round(gray).astype(np.uint8)
