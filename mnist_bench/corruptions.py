"""The 15 MNIST-C corruptions (Mu & Gilmer 2019), seeded, vectorised over a batch of digits.

Each corruption is a pure function ``(images, seed) -> images``: uint8 (N, 28, 28) in, uint8
(N, 28, 28) out, the same seed giving the same bytes. The parameters are those MNIST-C used
to build its published data set (the default severity of each function in
`google-research/mnist-c`, ``corruptions.py``); `SEVERITIES` records them. This is our own
implementation with numpy / scipy / scikit-image, not a copy, so the pixels differ from the
published MNIST-C files where MNIST-C relied on ImageMagick or per-image randomness in a
different order; the distributions are the same.

    from mnist_bench.corruptions import CORRUPTIONS
    fogged = CORRUPTIONS["fog"](data.x_test, seed=3)  # uint8 (10000, 28, 28)

Intermediate values are floats in [0, 1]; the result is rounded to the nearest integer 0..255.
This module knows nothing of models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from scipy import ndimage

IMAGE_SIDE = 28
CENTER = (IMAGE_SIDE - 1) / 2  # 13.5: geometric corruptions keep the image centre fixed
FOG_MAP_SIZE = 256  # MNIST-C draws a 256x256 plasma fractal and keeps its top-left 28x28
FOG_CHUNK = 256  # fractals per chunk: 256 maps of 256x256 float32 are 64 MiB

# name -> the MNIST-C parameters used here (its `corruptions.py` default severity, 1..5).
SEVERITIES: dict[str, dict[str, object]] = {
    "shot_noise": {"severity": 5, "photons_at_white": 3},
    "impulse_noise": {"severity": 4, "amount": 0.17, "salt_vs_pepper": 0.5},
    "glass_blur": {"severity": 1, "sigma": 0.7, "max_delta": 1, "iterations": 2},
    "motion_blur": {"severity": 1, "radius": 10, "sigma": 3, "angle_deg": [-45, 45]},
    "shear": {"severity": 2, "shear_rad": 0.4, "sign": "random"},
    "scale": {"severity": 3, "scale": 0.7},
    "rotate": {"severity": 2, "rotation_rad": 0.4, "sign": "random"},
    "brightness": {"severity": 5, "added_value": 0.5},
    "translate": {"severity": 3, "shift_px": 3, "sign": "random per axis"},
    "stripe": {"severity": None, "inverted_columns": [[0, 7], [21, 28]]},
    "fog": {"severity": 5, "strength": 3.0, "wibble_decay": 1.4},
    "spatter": {
        "severity": 4,
        "loc": 0.65,
        "scale": 0.3,
        "sigma": 1,
        "threshold": 0.65,
        "mud_sigma": 1.5,
        "mud_value": 63,
    },
    "dotted_line": {"severity": None, "line_width_px": 2.3, "dash_px": 2},
    "zigzag": {"severity": None, "zig_length_px": 2, "zig_width_px": 2},
    "canny_edges": {"severity": None, "sigma": 1.0, "low": 0.1, "high": 0.2},
}

Corruption = Callable[[np.ndarray, int], np.ndarray]


# -- private helpers ----------------------------------------------------------------------


def _check_images(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(
            f"images must be uint8 of shape (N, 28, 28), got {x.dtype} of shape {x.shape}"
        )
    return x


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _corruption(
    body: Callable[[np.ndarray, np.random.Generator], np.ndarray],
) -> Corruption:
    """Wrap ``body(x float64 (N, 28, 28) in [0, 1], rng) -> float array`` as a public
    corruption: check the inputs, seed a fresh generator, round back to uint8."""

    @functools.wraps(body)
    def corrupt(images: np.ndarray, seed: int) -> np.ndarray:
        x = _check_images(images)
        rng = np.random.default_rng(_check_seed(seed))
        if len(x) == 0:
            return x.copy()
        out = body(x.astype(np.float64) / 255.0, rng)
        return np.rint(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)

    corrupt.__name__ = body.__name__.lstrip("_")
    corrupt.__qualname__ = corrupt.__name__
    return corrupt


def _random_signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size=shape)


def _warp(x: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Bilinear warp of (N, 28, 28) images, zero outside. ``matrices`` (N, 2, 2) maps each
    output pixel's (column, row) about the centre to the input position it samples, as
    scikit-image's ``warp(image, inverse_map)``."""
    rows, cols = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE].astype(np.float64) - CENTER
    m = matrices[:, :, :, None, None]  # (N, 2, 2, 1, 1)
    src_col = m[:, 0, 0] * cols + m[:, 0, 1] * rows + CENTER  # (N, 28, 28)
    src_row = m[:, 1, 0] * cols + m[:, 1, 1] * rows + CENTER
    index = np.broadcast_to(np.arange(len(x), dtype=np.float64)[:, None, None], src_row.shape)
    return ndimage.map_coordinates(
        x, [index, src_row, src_col], order=1, mode="grid-constant", cval=0.0
    )


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """scikit-image's ``gaussian`` (edge-replicating, truncated at 4 sigma) of each image."""
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode="nearest", truncate=4.0)


def _lines(c0: np.ndarray, r0: np.ndarray, c1: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """Anti-aliased line segments, one image per endpoint set: arrays of shape S -> float
    (*S, 28, 28) in [0, 1]. Intensity falls as ``1 + log(1 - d / 2.3)`` with the vertical
    distance d from the line (MNIST-C's profile), zero outside the columns c0..c1."""
    cc = np.arange(IMAGE_SIDE, dtype=np.float64)  # columns
    rr = cc[:, None]  # rows
    c0, r0, c1, r1 = (np.asarray(v, dtype=np.float64)[..., None, None] for v in (c0, r0, c1, r1))
    vertical = c1 == c0
    slope = (r1 - r0) / np.where(vertical, 1.0, c1 - c0)
    dist = np.clip(np.abs(rr - (slope * (cc - c0) + r0)), 0.0, 2.3 - 1e-10)
    line = np.clip(np.log(1.0 - dist / 2.3) + 1.0, 0.0, 1.0)
    inside = (cc >= np.floor(c0)) & (cc < np.ceil(c1)) & ~vertical
    return line * inside


def _plasma(rng: np.random.Generator, n: int, decay: float) -> np.ndarray:
    """``n`` diamond-square fractals (MNIST-C's ``plasma_fractal``), each normalised to
    [0, 1] over its whole 256x256 map and cropped to its top-left 28x28: float (n, 28, 28)."""
    size = FOG_MAP_SIZE
    maps = np.zeros((n, size, size), dtype=np.float32)
    step, wibble = size, 100.0

    def jittered(total: np.ndarray) -> np.ndarray:
        noise = wibble * rng.uniform(-wibble, wibble, total.shape).astype(np.float32)
        return total / 4 + noise

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:size:step, 0:size:step]  # squares: centre = mean of 4 corners
        total = corners + np.roll(corners, -1, axis=1)
        total = total + np.roll(total, -1, axis=2)
        maps[:, half:size:step, half:size:step] = jittered(total)
        centres = maps[:, half:size:step, half:size:step]  # diamonds: edges' midpoints
        corners = maps[:, 0:size:step, 0:size:step]
        total = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, 0:size:step, half:size:step] = jittered(total)
        total = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half:size:step, 0:size:step] = jittered(total)
        step, wibble = half, wibble / decay
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return ((maps[:, :IMAGE_SIDE, :IMAGE_SIDE] - low) / (high - low)).astype(np.float64)


# -- the corruptions (private bodies; the public names are wrapped below) -----------------


def _shot_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    photons = SEVERITIES["shot_noise"]["photons_at_white"]
    return rng.poisson(x * photons) / photons


def _impulse_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hit = rng.random(x.shape) < SEVERITIES["impulse_noise"]["amount"]
    salt = rng.random(x.shape) < SEVERITIES["impulse_noise"]["salt_vs_pepper"]
    return np.where(hit, salt.astype(np.float64), x)


def _glass_blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Blur, quantise to uint8 as MNIST-C does, swap pixels locally, blur again. The swaps run
    # in MNIST-C's order (each may move a pixel already moved), one position at a time but
    # for the whole batch at once.
    sigma, delta = SEVERITIES["glass_blur"]["sigma"], SEVERITIES["glass_blur"]["max_delta"]
    y = np.floor(_blur(x, sigma) * 255.0) / 255.0
    n = np.arange(len(y))
    for _ in range(SEVERITIES["glass_blur"]["iterations"]):
        for h in range(IMAGE_SIDE - delta, delta, -1):
            for w in range(IMAGE_SIDE - delta, delta, -1):
                swap = rng.random(len(y)) < 0.5
                dx, dy = rng.integers(-delta, delta, size=(2, len(y)))  # -delta .. delta-1
                k, h2, w2 = n[swap], h + dy[swap], w + dx[swap]
                here, there = y[k, h, w], y[k, h2, w2]
                y[k, h, w], y[k, h2, w2] = there, here
    return _blur(y, sigma)


def _motion_blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # ImageMagick's -motion-blur: a one-sided Gaussian-weighted smear along a random angle,
    # 2 * radius + 1 taps at rounded whole-pixel offsets.
    p = SEVERITIES["motion_blur"]
    angle = np.deg2rad(rng.uniform(*p["angle_deg"], size=len(x)))  # (N,)
    taps = np.arange(2 * p["radius"] + 1)
    weights = np.exp(-(taps**2) / (2.0 * p["sigma"] ** 2))
    weights /= weights.sum()
    pad = len(taps)
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    n = np.arange(len(x))[:, None, None]
    rows, cols = np.mgrid[pad : pad + IMAGE_SIDE, pad : pad + IMAGE_SIDE]
    out = np.zeros_like(x)
    for tap, weight in zip(taps, weights, strict=True):
        dc = np.ceil(tap * np.cos(angle) - 0.5).astype(np.int64)[:, None, None]
        dr = np.ceil(tap * np.sin(angle) - 0.5).astype(np.int64)[:, None, None]
        out += weight * padded[n, rows + dr, cols + dc]
    return out


def _shear(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # scikit-image's AffineTransform(shear=s) as MNIST-C used it: x' = x - sin(s) y, y' = cos(s) y.
    s = SEVERITIES["shear"]["shear_rad"] * _random_signs(rng, (len(x),))
    m = np.zeros((len(x), 2, 2))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 1] = 1.0, -np.sin(s), np.cos(s)
    return _warp(x, m)


def _scale(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    m = np.broadcast_to(np.eye(2) / SEVERITIES["scale"]["scale"], (len(x), 2, 2))
    return _warp(x, m)


def _rotate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r = SEVERITIES["rotate"]["rotation_rad"] * _random_signs(rng, (len(x),))
    cos, sin = np.cos(r), np.sin(r)
    m = np.stack([np.stack([cos, -sin], axis=1), np.stack([sin, cos], axis=1)], axis=1)
    return _warp(x, m)


def _brightness(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # MNIST-C raises V in HSV; for a grey pixel V is the grey value, so this is an addition.
    return x + SEVERITIES["brightness"]["added_value"]


def _translate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    shift = SEVERITIES["translate"]["shift_px"] * _random_signs(rng, (len(x), 2))  # (dx, dy)
    index = np.broadcast_to(np.arange(len(x), dtype=np.float64)[:, None, None], x.shape)
    rows, cols = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE].astype(np.float64)
    src_col = cols + shift[:, 0, None, None]
    src_row = rows + shift[:, 1, None, None]
    return ndimage.map_coordinates(x, [index, src_row, src_col], order=1, mode="grid-constant")


def _stripe(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = x.copy()
    for start, stop in SEVERITIES["stripe"]["inverted_columns"]:
        out[:, :, start:stop] = 1.0 - out[:, :, start:stop]
    return out


def _fog(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    strength, decay = SEVERITIES["fog"]["strength"], SEVERITIES["fog"]["wibble_decay"]
    plasma = np.concatenate(
        [_plasma(rng, len(x[i : i + FOG_CHUNK]), decay) for i in range(0, len(x), FOG_CHUNK)]
    )
    brightest = x.max(axis=(1, 2), keepdims=True)  # rescaled so the digit's peak is kept
    return (x + strength * plasma) * brightest / (brightest + strength)


def _spatter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    p = SEVERITIES["spatter"]
    liquid = _blur(rng.normal(p["loc"], p["scale"], x.shape), p["sigma"])
    mud = _blur((liquid > p["threshold"]).astype(np.float64), p["mud_sigma"])
    mud[mud < 0.8] = 0.0
    return x * (1.0 - mud) + p["mud_value"] / 255.0 * mud


def _dotted_line(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r0, r1 = rng.integers(0, IMAGE_SIDE - 1, size=(2, len(x)))
    zeros, lasts = np.zeros(len(x)), np.full(len(x), IMAGE_SIDE - 1.0)
    line = _lines(zeros, r0, lasts, r1)
    dash = SEVERITIES["dotted_line"]["dash_px"]
    line[:, :, (np.arange(IMAGE_SIDE) // dash) % 2 == 0] = 0.0  # every other 2-column dash
    return x + line


def _zigzag_points(r0: np.ndarray, r1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-C's zigzag from column 2 to 25: its 8 vertices per image, (N, 8) columns, rows."""
    a, b = SEVERITIES["zigzag"]["zig_length_px"], SEVERITIES["zigzag"]["zig_width_px"]
    c0, c1 = 2.0, 25.0
    theta = np.arctan((r1 - r0) / (c1 - c0))  # (N,)
    length = (c1 - c0) / np.cos(theta)  # 23 .. 23.6 here: always 6 zigs, then a last point
    zigs = np.arange(int((c1 - c0 - a) // (2 * a)) + 1)
    along = np.concatenate([[0.0], (2 * zigs + 1) * a])[None, :].repeat(len(r0), axis=0)
    across = np.concatenate([[0.0], b * (-1.0) ** zigs])[None, :].repeat(len(r0), axis=0)
    last_full = 2 * a * (length // (2 * a))
    along = np.concatenate([along, length[:, None]], axis=1)
    tail = across[:, -1] / (2 * (length - last_full))
    across = np.concatenate([across, tail[:, None]], axis=1)
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    return c0 + cos * along - sin * across, r0[:, None] + sin * along + cos * across


def _zigzag(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r0 = rng.integers(0, IMAGE_SIDE - 1, size=len(x)).astype(np.float64)
    r1 = r0 + rng.integers(-5, 5, size=len(x))
    cols, rows = _zigzag_points(r0, r1)  # (N, 8)
    out = x.copy()
    for i in range(cols.shape[1] - 1):  # 7 segments, each drawn on the whole batch
        out += _lines(cols[:, i], rows[:, i], cols[:, i + 1], rows[:, i + 1])
    # MNIST-C clips after each segment; with non-negative segments that equals one final clip.
    return out


def _canny_edges(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from skimage import feature  # imported here: only this corruption needs scikit-image

    p = SEVERITIES["canny_edges"]
    return np.stack(
        [
            feature.canny(image, sigma=p["sigma"], low_threshold=p["low"], high_threshold=p["high"])
            for image in x  # canny is 2-D only; about 0.2 ms per digit
        ]
    ).astype(np.float64)


# -- public names -------------------------------------------------------------------------

shot_noise = _corruption(_shot_noise)
impulse_noise = _corruption(_impulse_noise)
glass_blur = _corruption(_glass_blur)
motion_blur = _corruption(_motion_blur)
shear = _corruption(_shear)
scale = _corruption(_scale)
rotate = _corruption(_rotate)
brightness = _corruption(_brightness)
translate = _corruption(_translate)
stripe = _corruption(_stripe)
fog = _corruption(_fog)
spatter = _corruption(_spatter)
dotted_line = _corruption(_dotted_line)
zigzag = _corruption(_zigzag)
canny_edges = _corruption(_canny_edges)

CORRUPTIONS: dict[str, Corruption] = {
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "shear": shear,
    "scale": scale,
    "rotate": rotate,
    "brightness": brightness,
    "translate": translate,
    "stripe": stripe,
    "fog": fog,
    "spatter": spatter,
    "dotted_line": dotted_line,
    "zigzag": zigzag,
    "canny_edges": canny_edges,
}
"""The 15 MNIST-C corruptions in MNIST-C's order. Each ``fn(images, seed)`` takes uint8
(N, 28, 28) digits (0 = black background) and a non-negative integer seed and returns new
uint8 (N, 28, 28) digits; the input is never modified; ``ValueError`` for any other dtype,
shape or seed. Deterministic corruptions (brightness, scale, stripe, canny edges) ignore the
seed."""


def corrupt(name: str, images: np.ndarray, seed: int) -> np.ndarray:
    """Apply the corruption `name` of `CORRUPTIONS`.

    Parameters
    ----------
    name : str
        One of the keys of `CORRUPTIONS`.
    images : ndarray of shape (N, 28, 28), uint8
        Digits, 0 = background.
    seed : int
        Non-negative; the same seed gives the same bytes.

    Returns
    -------
    ndarray of shape (N, 28, 28), uint8

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones), or bad images or seed.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose one of {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name](images, seed)
