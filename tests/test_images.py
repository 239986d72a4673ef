"""The decoding guard (`mnist_bench.images`) on every surface that reads users' images: odd
modes read correctly, hostile files refused by name, before decoding when they declare too many
pixels; `mnist-bench predict` exits 2 with one line, the server answers a 4xx JSON error and
keeps serving; a property test over mutated image bytes never sees a traceback or a 500."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.testclient import TestClient

from mnist_bench.cli import main
from mnist_bench.images import (
    ImageError,
    ImageTooLarge,
    UnreadableImage,
    UnsupportedImage,
    read_image_bytes,
    read_image_file,
)
from mnist_bench.preprocess import prepare_digit
from mnist_bench.serving import create_app

OK_OR_CLIENT_ERROR = {200, 400, 413, 422}


def _encode(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _seven(size: int = 60) -> np.ndarray:
    """A dark 7 on light paper, (size, size) uint8."""
    a = np.full((size, size), 240, np.uint8)
    a[size // 6 : size // 6 + size // 10, size // 5 : 4 * size // 5] = 20
    for r in range(size // 6, 5 * size // 6):
        c = 4 * size // 5 - (r - size // 6) // 2
        a[r, c - size // 20 : c + size // 20] = 20
    return a


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int) -> bytes:
    """A ~2 KB PNG whose header declares width x height 8-bit gray pixels (a 'bomb')."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress((b"\0" * (width + 1)) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")
    )


BOMB = _png_declaring(40000, 40000)


# -- modes read correctly -----------------------------------------------------------------


def test_sixteen_bit_gray_is_scaled():
    img = Image.fromarray(np.array([[0, 65535], [32768, 257]], dtype=np.uint16))
    pixels = read_image_bytes(_encode(img, "PNG"))
    np.testing.assert_allclose(pixels, [[0, 255], [32768 * 255 / 65535, 1]], atol=1e-9)


def test_cmyk_jpeg_reads_as_rgb_and_as_the_digit():
    gray = _seven()
    cmyk = Image.fromarray(gray).convert("RGB").convert("CMYK")
    pixels = read_image_bytes(_encode(cmyk, "JPEG", quality=95))
    assert pixels.shape == (60, 60, 3) and pixels.dtype == np.uint8
    expected = prepare_digit(gray)
    assert np.abs(prepare_digit(pixels).astype(int) - expected).mean() < 8


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_transparency_is_composited_on_white(mode):
    # Ink drawn opaque on a fully transparent background whose hidden colour is black: only
    # compositing over white paper shows the digit (dark on light), not a black square.
    gray = _seven()
    alpha = np.where(gray < 128, 255, 0).astype(np.uint8)
    la = Image.merge("LA", [Image.fromarray(np.zeros_like(gray)), Image.fromarray(alpha)])
    img = la if mode == "LA" else la.convert("RGBA")
    pixels = read_image_bytes(_encode(img, "PNG"))
    gray_out = pixels if pixels.ndim == 2 else pixels[..., 0]
    assert gray_out[0, 0] == 255 and gray_out[gray < 128].max() == 0


def test_palette_with_a_transparent_index_is_composited_on_white():
    gray = _seven()
    p = Image.fromarray(np.where(gray < 128, 1, 0).astype(np.uint8), mode="P")
    p.putpalette([0, 0, 0, 0, 0, 0] + [0] * 762)  # index 0 and 1 both black...
    pixels = read_image_bytes(_encode(p, "PNG", transparency=0))  # ...index 0 transparent
    assert pixels[0, 0].min() == 255 and pixels[gray < 128].max() == 0


def test_bilevel_and_exif_rotation():
    gray = _seven()
    bilevel = Image.fromarray(gray).convert("1")
    assert read_image_bytes(_encode(bilevel, "PNG")).shape == (60, 60)
    tall = np.full((40, 20), 255, np.uint8)
    tall[:5] = 0  # a dark band at the top of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    pixels = read_image_bytes(_encode(Image.fromarray(tall), "JPEG", exif=exif, quality=95))
    assert pixels.shape == (20, 40)  # viewed upright: landscape
    assert pixels[:, -5:].mean() < 40 and pixels[:, :-8].mean() > 215  # the band on the right


# -- refused by name ----------------------------------------------------------------------


def test_refusals_name_the_file_and_the_problem():
    frames = [Image.fromarray(_seven()), Image.fromarray(255 - _seven())]
    gif = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    float_tiff = _encode(Image.fromarray(np.ones((8, 8), np.float32)), "TIFF")
    png = _encode(Image.fromarray(_seven()), "PNG")
    cases = [
        (BOMB, ImageTooLarge, "declares 1,600,000,000 pixels, over the 4,000,000-pixel limit"),
        (
            _png_declaring(3000, 3000),
            ImageTooLarge,
            "3000x3000 pixels, over the 4,000,000-pixel limit",
        ),
        (_png_declaring(10000, 10000), ImageTooLarge, "declares 100,000,000 pixels"),  # warns
        (gif, UnsupportedImage, "animated GIF, 2 frames"),
        (float_tiff, UnsupportedImage, "mode F"),
        (png[: len(png) // 2], UnreadableImage, "cannot read image"),
        (b"", UnreadableImage, "empty"),
        (b"GIF89a" + b"\0" * 20, UnreadableImage, "cannot read image"),
    ]
    for data, kind, message in cases:
        with pytest.raises(kind, match=message) as info:
            read_image_bytes(data, name="d.png", max_pixels=4_000_000)
        assert isinstance(info.value, ValueError) and str(info.value).startswith("d.png: ")
        assert "\n" not in str(info.value)


def test_read_image_file_refuses_a_file_too_big_without_reading(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(b"\0" * (8 * 100 + (1 << 20) + 1))
    with pytest.raises(ImageTooLarge, match=r"big\.png: file of"):
        read_image_file(path, max_pixels=100)
    with pytest.raises(UnreadableImage, match=r"nope\.png: cannot read image"):
        read_image_file(tmp_path / "nope.png")


def test_predict_command_refuses_a_bomb_in_one_line(tmp_path, capsys):
    (tmp_path / "bomb.png").write_bytes(BOMB)
    assert main(["predict", "results/model.keras", str(tmp_path / "bomb.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bomb.png: image too large" in err
    assert "Traceback" not in err


# -- the server ---------------------------------------------------------------------------


def _proba(x: np.ndarray) -> np.ndarray:
    """A stand-in model: probabilities from the ink's mean (the decoding is under test here;
    the published model's answers are test_serving's)."""
    logits = np.outer(x.reshape(len(x), -1).mean(axis=1), np.arange(10, dtype=np.float32))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(_proba, model_info={}), raise_server_exceptions=False) as c:
        yield c


def test_server_refuses_a_bomb_with_413_and_keeps_serving(client):
    response = client.post("/predict", content=BOMB, headers={"content-type": "image/png"})
    assert response.status_code == 413, response.text
    assert "upload: image too large: it declares 1,600,000,000 pixels" in response.json()["error"]
    frames = [Image.fromarray(_seven()), Image.fromarray(255 - _seven())]
    gif = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert client.post("/predict", content=gif).status_code == 422
    ok = client.post("/predict", content=_encode(Image.fromarray(_seven()), "PNG"))
    assert ok.status_code == 200 and len(ok.json()["probabilities"]) == 10


# -- property: any bytes derived from a valid image ---------------------------------------

_SEEDS = [
    _encode(Image.fromarray(_seven(48)), "PNG"),
    _encode(Image.fromarray(_seven(48)).convert("RGB"), "JPEG", quality=90),
    _encode(Image.fromarray(_seven(32)).convert("P"), "GIF"),
    _encode(Image.fromarray(_seven(32).astype(np.uint16) * 257), "PNG"),
]


@st.composite
def _mutated_images(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    kind = draw(st.sampled_from(["truncate", "flip", "header", "size"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "header":  # garbage in the first 64 bytes, where formats keep their sizes
        i = draw(st.integers(0, 63))
        data[i : i + 4] = draw(st.binary(min_size=4, max_size=4))
        return bytes(data)
    return _png_declaring(draw(st.integers(1, 1 << 20)), draw(st.integers(1, 1 << 16)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_mutated_images())
def test_mutated_images_are_read_or_refused_cleanly(client, data):
    try:
        pixels = read_image_bytes(data, name="x.png", max_pixels=4_000_000)
    except ImageError as exc:
        assert str(exc).startswith("x.png: ") and "\n" not in str(exc)
    else:
        assert pixels.ndim in (2, 3) and np.isfinite(pixels).all()
        assert pixels.min() >= 0 and pixels.max() <= 255
    response = client.post("/predict", content=data, headers={"content-type": "image/png"})
    assert response.status_code in OK_OR_CLIENT_ERROR, response.text
    assert "error" in response.json() or "digit" in response.json()
